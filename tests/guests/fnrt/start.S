/* SPDX-License-Identifier: Apache-2.0 */
/* Function-VM guest entry: one vCPU in long mode, no stack yet. */
#define FNRT_STACK_SIZE 0x10000

    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    lea fnrt_stack + FNRT_STACK_SIZE(%rip), %rsp
    xor %ebp, %ebp
    call fnrt_main
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    .section .bss.fnrt_stack, "aw", @nobits
    .balign 4096
fnrt_stack:
    .skip FNRT_STACK_SIZE

    .section .note.GNU-stack, "", @progbits
