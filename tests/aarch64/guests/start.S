/* SPDX-License-Identifier: Apache-2.0 */
/* Entry of the arm64 test guests: an arm64 Linux Image header (so vmm-run's
 * Image loader boots them), then a stack and main(x0 = the device tree).
 * Secondary vCPUs started by PSCI CPU_ON enter at secondary_entry with
 * x0 = their stack top (the CPU_ON context). MMU off throughout. */
    .section .text.head, "ax"
    .global _start
_start:
    b       entry                   /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   _image_size             /* image_size */
    .quad   0xa                     /* flags: little-endian, 4K pages, anywhere */
    .quad   0, 0, 0                 /* res2-4 */
    .long   0x644d5241              /* magic "ARM\x64" */
    .long   0                       /* res5 */

entry:
    ldr     x1, =stack_top
    mov     sp, x1
    bl      main
    b       guest_exit

    .global secondary_entry
secondary_entry:
    mov     sp, x0
    bl      secondary_main
1:  wfi
    b       1b

    .global psci_call
psci_call:                          /* x0 = function, x1-x3 = arguments */
    hvc     #0
    ret

    .bss
    .balign 16
    .space  8192
stack_top:
