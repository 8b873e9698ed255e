/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Virtual CPUs: creation, register state, the x86_64 boot state and the run
 * loop of one vCPU.
 *
 * Threads: every vCPU belongs to the VM that created it. vmm_vcpu_run must be
 * called from one thread at a time (the vCPU's thread); register get/set only
 * while the vCPU is not running (before a run, after it returned, or while
 * the VM is paused). Everything else is documented per function.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vcpu;

/*
 * Create vCPU index (0-based; its APIC id is the index) on vm, with CPUID
 * built from what KVM supports: a consistent topology for the vCPUs the VM
 * will have (the count is taken at the first vmm_vcpu_run or vmm_vm_run, so
 * create them all first), the hypervisor bit and the KVM paravirtual leaves.
 * Indices must be created in order 0, 1, 2... The VM owns the vCPU.
 * Returns 0, -EINVAL (index out of order), -EBUSY (the VM is running) or a
 * -errno from KVM (-ENOSPC past the host's vCPU limit).
 */
VMM_API VMM_MUST_USE int vmm_vcpu_create(struct vmm_vm *vm, unsigned index, struct vmm_vcpu **out);

/* The vCPU's index and its VM. */
VMM_API unsigned vmm_vcpu_index(const struct vmm_vcpu *vcpu);
VMM_API struct vmm_vm *vmm_vcpu_vm(struct vmm_vcpu *vcpu);

/* Register state, straight from/to KVM. Return 0 or a -errno from KVM. */
VMM_API VMM_MUST_USE int vmm_vcpu_get_regs(struct vmm_vcpu *vcpu, struct kvm_regs *regs);
VMM_API VMM_MUST_USE int vmm_vcpu_set_regs(struct vmm_vcpu *vcpu, const struct kvm_regs *regs);
VMM_API VMM_MUST_USE int vmm_vcpu_get_sregs(struct vmm_vcpu *vcpu, struct kvm_sregs *sregs);
VMM_API VMM_MUST_USE int vmm_vcpu_set_sregs(struct vmm_vcpu *vcpu, const struct kvm_sregs *sregs);
VMM_API VMM_MUST_USE int vmm_vcpu_get_fpu(struct vmm_vcpu *vcpu, struct kvm_fpu *fpu);
VMM_API VMM_MUST_USE int vmm_vcpu_set_fpu(struct vmm_vcpu *vcpu, const struct kvm_fpu *fpu);
VMM_API VMM_MUST_USE int vmm_vcpu_get_lapic(struct vmm_vcpu *vcpu, struct kvm_lapic_state *lapic);
VMM_API VMM_MUST_USE int vmm_vcpu_set_lapic(struct vmm_vcpu *vcpu,
                                            const struct kvm_lapic_state *lapic);

/*
 * Read or write n MSRs: entries[i].index names each; get fills .data.
 * Returns the number of MSRs processed (n on full success; fewer means the
 * MSR at that position is not supported) or a -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_get_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *entries,
                                           unsigned n);
VMM_API VMM_MUST_USE int vmm_vcpu_set_msrs(struct vmm_vcpu *vcpu,
                                           const struct kvm_msr_entry *entries, unsigned n);

/*
 * The CPUID table the vCPU will present. get copies up to max entries and
 * returns how many there are (which may exceed max). set replaces the table
 * (the CPUID filter: take the table from get, edit or drop leaves, set it
 * back) and applies it. Set before the vCPU first runs. Return a count/0 or
 * -errno (-E2BIG for more than 256 entries).
 */
VMM_API int vmm_vcpu_get_cpuid(struct vmm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries,
                               unsigned max);
VMM_API VMM_MUST_USE int vmm_vcpu_set_cpuid(struct vmm_vcpu *vcpu,
                                            const struct kvm_cpuid_entry2 *entries, unsigned n);

/*
 * Named features for editing a CPUID table between vmm_vcpu_get_cpuid and
 * vmm_vcpu_set_cpuid. The default table offers what KVM supports, including
 * the KVM paravirtual features of leaf 0x40000001 (kvmclock, async-pf,
 * steal-time, pv-eoi, pv-unhalt, ...); this is how an application takes any
 * of them away, or hides CPU features a nested hypervisor cannot virtualise
 * (e.g. "xsave", which also hides AVX and its successors).
 *
 * vmm_cpuid_set_feature: on = false clears every bit the name stands for that
 * is present in the table; on = true sets the feature's main bit again (only
 * meaningful for a bit KVM supports, i.e. one the table had). Returns the
 * number of bits changed, -ENOENT for an unknown name, -ENOTSUP when turning
 * on a feature whose leaf is not in the table, -EINVAL for NULL arguments.
 *
 * vmm_cpuid_feature_name: the i-th known name (and a one-line description
 * through what, if not NULL), NULL past the end.
 */
VMM_API int vmm_cpuid_set_feature(struct kvm_cpuid_entry2 *entries, unsigned n, const char *name,
                                  bool on);
VMM_API const char *vmm_cpuid_feature_name(unsigned i, const char **what);

/*
 * x86_64 entry state for a guest program (used by the ELF loader path):
 *
 * - 64-bit long mode, paging on (CR0.PE|PG, CR4.PAE, EFER.LME|LMA, EFER.NX),
 *   SSE enabled (CR4.OSFXSR|OSXMMEXCPT, CR0.MP), the FPU initialised;
 * - the first 4 GiB of guest-physical space identity-mapped with 2 MiB pages
 *   (read/write, executable; accesses to addresses without RAM behind them
 *   reach the MMIO bus);
 * - flat 64-bit code segment (selector 0x8) and data segments (0x10); a GDT
 *   with those at VMM_X86_BOOT_GDT; no IDT (IDTR limit 0) and no TSS beyond
 *   KVM's default: the guest sets up its own before enabling interrupts;
 * - RFLAGS = 0x2 (interrupts off), RIP = entry, RSP = stack,
 *   RDI = arg0 and RSI = arg1, all other general registers 0.
 *
 * The page tables and GDT live in guest memory in
 * [VMM_X86_BOOT_AREA_START, VMM_X86_BOOT_AREA_END); guest images must not be
 * loaded there (the ELF loader refuses to by default).
 */
#define VMM_X86_BOOT_AREA_START 0x1000ull
#define VMM_X86_BOOT_AREA_END   0x10000ull
#define VMM_X86_BOOT_GDT        0x1000ull
#define VMM_X86_BOOT_PML4       0x2000ull

/* A second long-mode GDT, written with the first, with the Linux 64-bit boot
 * protocol's selectors: flat 64-bit code at __BOOT_CS (0x10) and data at
 * __BOOT_DS (0x18). vmm_linux_set_entry (linux.h) switches to it. */
#define VMM_X86_BOOT_GDT_LINUX       0x1400ull
#define VMM_X86_BOOT_GDT_LINUX_LIMIT 31u
#define VMM_X86_BOOT_LINUX_CS        0x10u
#define VMM_X86_BOOT_LINUX_DS        0x18u

struct vmm_x86_boot_state {
    uint64_t entry; /* RIP */
    uint64_t stack; /* RSP (0: the guest sets its own stack first thing) */
    uint64_t arg0;  /* RDI */
    uint64_t arg1;  /* RSI */
};

/*
 * Put the vCPU in the long-mode entry state above, writing the page tables
 * and GDT into guest memory (they must fit in RAM: -EFAULT otherwise).
 * Returns 0 or -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_boot_state(struct vmm_vcpu *vcpu,
                                                 const struct vmm_x86_boot_state *boot);

/*
 * x86 32-bit protected-mode entry state (the PVH boot ABI, used by the Linux
 * loader's PVH path, linux.h):
 *
 * - CR0 = PE (and the fixed ET bit): paging off; CR4 = 0, EFER = 0, CR3 = 0;
 * - flat 4 GiB 32-bit code segment (selector 0x8, execute/read) and data
 *   segments DS/ES/FS/GS/SS (0x10, read/write), from a GDT at
 *   VMM_X86_BOOT_GDT32 in the boot area (beside the long-mode GDT, so vCPUs
 *   in either state can share the area); TR a 32-bit busy TSS at 0 with limit
 *   0x67; no IDT;
 * - EFLAGS = 0x2 (interrupts off), EIP = entry, ESP = stack, EBX = ebx,
 *   ESI = esi, all other general registers 0; the FPU initialised.
 *
 * The guest sets up its own GDT, IDT, stack and paging.
 */
#define VMM_X86_BOOT_GDT32 0x1800ull

struct vmm_x86_pm32_boot_state {
    uint32_t entry; /* EIP */
    uint32_t stack; /* ESP (0: the guest sets its own) */
    uint32_t ebx;   /* EBX (PVH: the hvm_start_info address) */
    uint32_t esi;   /* ESI */
};

/*
 * Put the vCPU in the 32-bit protected-mode entry state above, writing the
 * boot area (GDTs and long-mode page tables) into guest memory if no vCPU of
 * the VM did yet (-EFAULT without RAM there). Returns 0 or -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_boot_state_pm32(struct vmm_vcpu *vcpu,
                                                      const struct vmm_x86_pm32_boot_state *boot);

/*
 * Run the vCPU on the calling thread until something ends the run for the
 * whole VM (guest exit, power-off, reset, fatal exit, vmm_vm_stop, a device's
 * vmm_vm_request_exit), dispatching PIO/MMIO exits to the buses meanwhile.
 * The reason is stored in *exit (the VM's first reason when several vCPUs
 * end it). Returns 0 (see exit->reason) or -EBUSY when already running on
 * another thread. Single-vCPU embedders can call this directly; vmm_vm_run
 * calls it on one thread per vCPU.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_run(struct vmm_vcpu *vcpu, struct vmm_exit *exit);

/* Count of KVM exits this vCPU handled in userspace since creation. */
VMM_API uint64_t vmm_vcpu_exit_count(const struct vmm_vcpu *vcpu);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VCPU_H */
