/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Entries of the linux_boot guest, one per Linux boot protocol:
 * - linux_entry64, at image + 0x200 like a bzImage's: 64-bit mode, RSI = the
 *   zero page (the 64-bit boot protocol);
 * - pvh_entry32, named by a XEN_ELFNOTE_PHYS32_ENTRY note: 32-bit protected
 *   mode, paging off, EBX = hvm_start_info (PVH). It records its entry state,
 *   builds page tables for the first 1 GiB and enters long mode.
 * Both end in linux_main(protocol, params).
 */
#define PROTO_64  1
#define PROTO_PVH 2

    /* The first 0x200 bytes: a bzImage's 32-bit entry, which this guest
     * does not offer. */
    .section .text.head, "ax", @progbits
    .code32
    .globl linux_head
linux_head:
1:  cli
    hlt
    jmp 1b

    .section .text.entry64, "ax", @progbits
    .code64
    .globl linux_entry64
    .type linux_entry64, @function
linux_entry64:
    cli
    cld
    lea stack_top(%rip), %rsp     /* the loader gives no stack */
    pushfq
    pop %rax
    mov %rsi, entry_params(%rip)
    mov %rax, entry_flags(%rip)
    mov %cs, %ax
    mov %ax, entry_cs(%rip)
    mov %ds, %ax
    mov %ax, entry_ds(%rip)
    mov %ss, %ax
    mov %ax, entry_ss(%rip)
    /* a bzImage's .bss is not the loader's business: clear it (the stack is in it) */
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    lea stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov $PROTO_64, %edi
    mov entry_params(%rip), %rsi
    call linux_main
    mov %eax, %edi
    call guest_exit
    .size linux_entry64, . - linux_entry64

    .section .text.pvh, "ax", @progbits
    .code32
    .globl pvh_entry32
    .type pvh_entry32, @function
pvh_entry32:
    cli
    cld
    mov %ebx, entry_params
    mov %cr0, %eax
    mov %eax, entry_cr0
    mov $stack_top, %esp
    pushfl
    popl %eax
    mov %eax, entry_flags
    mov %cs, %ax
    mov %ax, entry_cs
    mov %ds, %ax
    mov %ax, entry_ds
    mov %ss, %ax
    mov %ax, entry_ss
    /* PML4 -> PDPT -> one PD of 2 MiB pages: the first 1 GiB, identity */
    mov $pml4, %edi
    xor %eax, %eax
    mov $(3 * 4096 / 4), %ecx
    rep stosl
    movl $(pdpt + 3), pml4
    movl $(pd + 3), pdpt
    mov $pd, %edi
    mov $0x83, %eax               /* present, writable, 2 MiB */
    mov $512, %ecx
2:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b
    mov %cr4, %eax
    or $0x20, %eax                /* PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx         /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax          /* PG | PE */
    mov %eax, %cr0
    lgdt gdt64_ptr
    ljmp $0x08, $pvh_long
    .code64
pvh_long:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    lea stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov $PROTO_PVH, %edi
    mov entry_params(%rip), %rsi
    call linux_main
    mov %eax, %edi
    call guest_exit
    .size pvh_entry32, . - pvh_entry32

    .section .data, "aw", @progbits
    .balign 8
gdt64:
    .quad 0
    .quad 0x00af9b000000ffff      /* 0x08: 64-bit code */
    .quad 0x00cf93000000ffff      /* 0x10: data */
gdt64_ptr:
    .word 3 * 8 - 1
    .long gdt64
    .long 0
    .globl entry_params, entry_flags, entry_cr0, entry_cs, entry_ds, entry_ss
entry_params:
    .quad 0
entry_flags:
    .quad 0
entry_cr0:
    .quad 0
entry_cs:
    .word 0
entry_ds:
    .word 0
entry_ss:
    .word 0

    .section .bss, "aw", @nobits
    .balign 4096
pml4:
    .skip 4096
pdpt:
    .skip 4096
pd:
    .skip 4096
    .balign 16
stack:
    .skip 8192
stack_top:

    /* The PVH entry: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", a 32-bit address. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_entry32

    .section .note.GNU-stack, "", @progbits
