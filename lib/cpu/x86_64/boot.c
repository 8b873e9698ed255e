/* SPDX-License-Identifier: Apache-2.0 */
/* The x86_64 long-mode entry state: identity page tables and a flat GDT in
 * the boot area, and the register values documented in vcpu.h; also the
 * 32-bit protected-mode (PVH) entry state, with its own GDT in the area, and
 * the Linux entry states built on the two. */
#include <errno.h>
#include <string.h>

#include "../arch.h"
#include "../cpu_internal.h"

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_PS (1ull << 7)

#define BOOT_PDPT 0x3000ull
#define BOOT_PD   0x4000ull /* four pages: 0x4000 .. 0x7fff, 2 MiB pages for 4 GiB */

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)

#define CR4_PAE        (1ull << 5)
#define CR4_OSFXSR     (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)

#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

/* Flat descriptors: null, 64-bit code (0x08), data (0x10). */
static const uint64_t boot_gdt[] = {
    0x0000000000000000ull, 0x00af9b000000ffffull, /* code: present, DPL 0, exec/read, L=1, G=1 */
    0x00cf93000000ffffull,                        /* data: present, DPL 0, read/write, D/B=1, G=1 */
};

/* The 32-bit protected-mode entry (vmm_vcpu_set_boot_state_pm32): null,
 * 32-bit code (0x08), data (0x10). */
static const uint64_t boot_gdt32[] = {
    0x0000000000000000ull, 0x00cf9b000000ffffull, /* code: present, DPL 0, exec/read, D=1, G=1 */
    0x00cf93000000ffffull,                        /* data: present, DPL 0, read/write, B=1, G=1 */
};

/* The Linux 64-bit boot protocol's layout (vmm_vcpu_set_linux_entry): null,
 * unused, 64-bit code at __BOOT_CS (0x10), data at __BOOT_DS (0x18). */
static const uint64_t boot_gdt_linux[] = {
    0x0000000000000000ull, 0x0000000000000000ull,
    0x00af9b000000ffffull, /* code: present, DPL 0, exec/read, L=1, G=1 */
    0x00cf93000000ffffull, /* data: present, DPL 0, read/write, D/B=1, G=1 */
};

_Static_assert(BOOT_PD + 4 * 0x1000 <= VMM_X86_BOOT_AREA_END, "page tables outside boot area");
_Static_assert(VMM_X86_BOOT_GDT + sizeof(boot_gdt) <= VMM_X86_BOOT_GDT_LINUX,
               "GDT overlaps the Linux GDT");
_Static_assert(VMM_X86_BOOT_GDT_LINUX + sizeof(boot_gdt_linux) <= VMM_X86_BOOT_GDT32,
               "Linux GDT overlaps GDT32");
_Static_assert(sizeof(boot_gdt_linux) - 1 == VMM_X86_BOOT_GDT_LINUX_LIMIT, "Linux GDT limit");
_Static_assert(VMM_X86_BOOT_GDT32 + sizeof(boot_gdt32) <= VMM_X86_BOOT_PML4, "GDT32 overlaps PML4");

int vmm_x86_write_boot_tables(struct vmm_memory *mem)
{
    /* Written in place: the tables are 24 KiB and go straight to guest RAM. */
    const uint64_t len = BOOT_PD + 4 * 0x1000 - VMM_X86_BOOT_GDT;
    void *area;
    int r = vmm_memory_get_ptr(mem, VMM_X86_BOOT_GDT, len, VMM_ACCESS_WRITE, &area);
    if (r < 0)
        return r;
    uint8_t *base = area;
    uint64_t *pml4 = (uint64_t *)(base + (VMM_X86_BOOT_PML4 - VMM_X86_BOOT_GDT));
    uint64_t *pdpt = (uint64_t *)(base + (BOOT_PDPT - VMM_X86_BOOT_GDT));
    uint64_t *pd = (uint64_t *)(base + (BOOT_PD - VMM_X86_BOOT_GDT));
    memset(base, 0, len);
    memcpy(base, boot_gdt, sizeof(boot_gdt));
    memcpy(base + (VMM_X86_BOOT_GDT32 - VMM_X86_BOOT_GDT), boot_gdt32, sizeof(boot_gdt32));
    memcpy(base + (VMM_X86_BOOT_GDT_LINUX - VMM_X86_BOOT_GDT), boot_gdt_linux,
           sizeof(boot_gdt_linux));
    pml4[0] = BOOT_PDPT | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (BOOT_PD + i * 0x1000) | PTE_P | PTE_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
    vmm_memory_mark_dirty(mem, VMM_X86_BOOT_GDT, len);
    return 0;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type, bool code)
{
    *s = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code ? 0 : 1,
        .s = 1,
        .l = code ? 1 : 0,
        .g = 1,
    };
}

void vmm_x86_boot_sregs(struct kvm_sregs *sregs)
{
    flat_segment(&sregs->cs, 0x08, 0xb, true);
    flat_segment(&sregs->ds, 0x10, 0x3, false);
    sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
    sregs->gdt.base = VMM_X86_BOOT_GDT;
    sregs->gdt.limit = sizeof(boot_gdt) - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0;
    sregs->cr3 = VMM_X86_BOOT_PML4;
    sregs->cr4 |= CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs->efer |= EFER_LME | EFER_LMA | EFER_NXE;
}

void vmm_x86_boot_regs(struct kvm_regs *regs, const struct vmm_x86_boot_state *boot)
{
    *regs = (struct kvm_regs){
        .rflags = 0x2,
        .rip = boot->entry,
        .rsp = boot->stack,
        .rdi = boot->arg0,
        .rsi = boot->arg1,
    };
}

void vmm_x86_boot_fpu(struct kvm_fpu *fpu)
{
    *fpu = (struct kvm_fpu){.fcw = 0x37f, .mxcsr = 0x1f80};
}

/* ---- 32-bit protected mode (PVH) ---- */

static void flat_segment32(struct kvm_segment *s, uint16_t selector, uint8_t type)
{
    *s = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = 1,
        .s = 1,
        .l = 0,
        .g = 1,
    };
}

static void boot_sregs_pm32(struct kvm_sregs *sregs)
{
    flat_segment32(&sregs->cs, 0x08, 0xb);
    flat_segment32(&sregs->ds, 0x10, 0x3);
    sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
    sregs->tr =
        (struct kvm_segment){.base = 0, .limit = 0x67, .type = 0xb, .present = 1, .s = 0, .g = 0};
    sregs->gdt.base = VMM_X86_BOOT_GDT32;
    sregs->gdt.limit = sizeof(boot_gdt32) - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0;
    sregs->cr0 = CR0_PE | CR0_ET;
    sregs->cr2 = 0;
    sregs->cr3 = 0;
    sregs->cr4 = 0;
    sregs->efer = 0;
}

int vmm_x86_enter_boot_state(struct vmm_vcpu *vcpu, void (*set_sregs)(struct kvm_sregs *sregs),
                             const struct kvm_regs *regs, const char *mode)
{
    struct vmm_vm *vm = vcpu->vm;
    if (!vm->mem)
        return -EFAULT;
    int r;
    if (!vm->boot_tables_written) {
        r = vmm_x86_write_boot_tables(vm->mem);
        if (r < 0) {
            vmm_log_error("boot GDT and page tables need RAM at [0x%llx, 0x%llx)",
                          VMM_X86_BOOT_AREA_START, VMM_X86_BOOT_AREA_END);
            return r;
        }
        vm->boot_tables_written = true;
    }
    /* EFER.NX and friends are checked against the guest's CPUID. */
    r = vmm_arch_vcpu_apply_cpuid(vcpu);
    if (r < 0)
        return r;

    struct kvm_sregs sregs;
    r = vmm_vcpu_get_sregs(vcpu, &sregs);
    if (r < 0)
        return r;
    set_sregs(&sregs);
    r = vmm_vcpu_set_sregs(vcpu, &sregs);
    if (r < 0) {
        vmm_log_error("vCPU %u: KVM_SET_SREGS (%s): %s", vcpu->index, mode, vmm_strerror(r));
        return r;
    }
    struct kvm_fpu fpu;
    vmm_x86_boot_fpu(&fpu);
    r = vmm_vcpu_set_fpu(vcpu, &fpu);
    if (r < 0)
        return r;
    r = vmm_vcpu_set_regs(vcpu, regs);
    if (r < 0)
        return r;
    /* With an in-kernel LAPIC, KVM parks application processors until an
     * INIT/SIPI; a guest entered directly must run at once. */
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp);
}

int vmm_vcpu_set_boot_state_pm32(struct vmm_vcpu *vcpu, const struct vmm_x86_pm32_boot_state *boot)
{
    struct vmm_x86_pm32_boot_state b;
    if (!vcpu || !boot || VMM_ABI_COPY_IN(&b, boot) < 0)
        return -EINVAL;
    struct kvm_regs regs = {
        .rflags = 0x2,
        .rip = b.entry,
        .rsp = b.stack,
        .rbx = b.ebx,
        .rsi = b.esi,
    };
    return vmm_x86_enter_boot_state(vcpu, boot_sregs_pm32, &regs, "protected mode");
}

/* ---- Linux (the 64-bit boot protocol and PVH) ---- */

/* The long-mode state with the boot protocol's selectors: the same flat
 * segments, from the GDT with the __BOOT_CS/__BOOT_DS layout. */
static void boot_sregs_linux64(struct kvm_sregs *sregs)
{
    vmm_x86_boot_sregs(sregs);
    sregs->cs.selector = VMM_X86_BOOT_LINUX_CS;
    sregs->ds.selector = sregs->es.selector = sregs->fs.selector = sregs->gs.selector =
        sregs->ss.selector = VMM_X86_BOOT_LINUX_DS;
    sregs->gdt.base = VMM_X86_BOOT_GDT_LINUX;
    sregs->gdt.limit = sizeof(boot_gdt_linux) - 1;
}

int vmm_vcpu_set_linux_ap_state(struct vmm_vcpu *vcpu)
{
    if (!vcpu)
        return -EINVAL;
    struct kvm_msr_entry msr = {.index = VMM_X86_MSR_MTRR_DEF_TYPE,
                                .data = VMM_X86_MTRR_DEF_TYPE_WB};
    int r = vmm_vcpu_set_msrs(vcpu, &msr, 1);
    if (r < 0)
        return r;
    return r == 1 ? 0 : -ENOTSUP;
}

int vmm_vcpu_set_linux_entry(struct vmm_vcpu *vcpu, const struct vmm_x86_linux_entry *entry)
{
    struct vmm_x86_linux_entry e;
    if (!vcpu || !entry || VMM_ABI_COPY_IN(&e, entry) < 0)
        return -EINVAL;
    /* Interrupts off; RSI or EBX the parameters, as the two ABIs ask. */
    struct kvm_regs regs = {.rflags = 0x2, .rip = e.entry, .rsp = e.stack};
    int r;
    switch (e.mode) {
    case VMM_X86_LINUX_ENTRY_64:
        regs.rsi = e.params;
        r = vmm_x86_enter_boot_state(vcpu, boot_sregs_linux64, &regs, "Linux 64-bit");
        break;
    case VMM_X86_LINUX_ENTRY_PVH:
        if (e.entry > UINT32_MAX || e.params > UINT32_MAX || e.stack > UINT32_MAX)
            return -EINVAL;
        regs.rbx = e.params;
        r = vmm_x86_enter_boot_state(vcpu, boot_sregs_pm32, &regs, "PVH");
        break;
    default:
        return -EINVAL;
    }
    return r < 0 ? r : vmm_vcpu_set_linux_ap_state(vcpu);
}
