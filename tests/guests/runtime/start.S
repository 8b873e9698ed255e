/* SPDX-License-Identifier: Apache-2.0 */
/* Guest entry: every vCPU arrives here at once in long mode with RDI = vCPU
 * index, RSI = vCPU count and no stack; give each its own and run guest_main. */
#include "config.h"

    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    cmp $GUEST_MAX_CPUS, %rdi
    jae 1f
    /* stack top of vCPU n: guest_stacks + (n + 1) * GUEST_STACK_SIZE */
    lea 1(%rdi), %rax
    shl $GUEST_STACK_SHIFT, %rax
    lea guest_stacks(%rax), %rsp
    xor %ebp, %ebp
    mov %edi, %edi
    mov %esi, %esi
    push %rdi
    push %rsi
    call guest_runtime_init
    pop %rsi
    pop %rdi
    call guest_main
    mov %eax, %edi
    call guest_exit
    /* vCPUs past the stack area only halt */
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

    .section .guest_stacks, "aw", @nobits
    .balign 4096
    .globl guest_stacks
guest_stacks:
    .skip GUEST_MAX_CPUS * GUEST_STACK_SIZE

    .section .note.GNU-stack, "", @progbits
