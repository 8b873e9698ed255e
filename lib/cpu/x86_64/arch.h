/* SPDX-License-Identifier: Apache-2.0 */
/* x86_64 pieces reached from the generic VM/vCPU code: boot state, CPUID
 * tables and the split-irqchip IOAPIC. Another architecture supplies its own. */
#ifndef VMM_CPU_X86_64_ARCH_H
#define VMM_CPU_X86_64_ARCH_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/machine.h>
#include <vmm/memory.h>
#include <vmm/vcpu.h>

/* Where KVM (on Intel) keeps the real-mode TSS and identity map: three
 * pages just below the BIOS area, inside the 32-bit MMIO hole. */
#define VMM_X86_TSS_ADDR      0xfffbd000ull
#define VMM_X86_IDENTITY_ADDR 0xfffbc000ull

/* The IOAPIC sits at VMM_X86_IOAPIC_ADDR (vmm/machine.h), where the tables
 * the loader writes say it is. */
#define VMM_X86_IOAPIC_SIZE 0x1000ull

/* Write the long-mode page tables and GDT into the boot area. */
int vmm_x86_write_boot_tables(struct vmm_memory *mem);

/* Fill sregs/regs/fpu for the long-mode entry state described in vcpu.h. */
void vmm_x86_boot_sregs(struct kvm_sregs *sregs);
void vmm_x86_boot_regs(struct kvm_regs *regs, const struct vmm_x86_boot_state *boot);
void vmm_x86_boot_fpu(struct kvm_fpu *fpu);

/* Put vcpu in a boot state: write the boot GDTs and page tables into guest
 * memory once per VM, apply the CPUID table, then the segment/control
 * registers set_sregs makes, the boot FPU state, regs, and make the vCPU
 * runnable at once. mode names the state in error messages. */
struct vmm_vcpu;
int vmm_x86_enter_boot_state(struct vmm_vcpu *vcpu, void (*set_sregs)(struct kvm_sregs *sregs),
                             const struct kvm_regs *regs, const char *mode);

/*
 * Build the CPUID table of vCPU index out of nr_vcpus from KVM's supported
 * table: APIC ids, leaf 1/4/0xb/0x1f/0x80000008 topology, hypervisor bit,
 * KVM paravirtual leaves. Writes at most max entries to out and returns how
 * many it wrote, or -E2BIG.
 */
int vmm_x86_cpuid_build(const struct kvm_cpuid_entry2 *supported, unsigned n, unsigned index,
                        unsigned nr_vcpus, struct kvm_cpuid_entry2 *out, unsigned max);

/*
 * Add what KVM_GET_SUPPORTED_CPUID leaves out although KVM provides it: the
 * TSC-deadline timer (leaf 1 ECX bit 24) where KVM_CAP_TSC_DEADLINE_TIMER says
 * the in-kernel LAPIC emulates it. Without it Linux calibrates its LAPIC timer
 * against the 8254 PIT, which the split irqchip does not have.
 */
void vmm_x86_cpuid_add_kvm_features(int kvm_fd, struct kvm_cpuid2 *supported);

/*
 * Whether a host whose KVM supports the table host can give a guest the
 * CPUID features of guest (n entries): the feature words of leaves 1, 7,
 * 0xd.1 and 0x80000001, less the bits that are not host features
 * (hypervisor, HTT, OSXSAVE, OSPKE). Returns 0, or -ENOTSUP with why
 * naming the leaf, register and missing bits.
 */
int vmm_x86_cpuid_host_check(const struct kvm_cpuid_entry2 *guest, unsigned n,
                             const struct kvm_cpuid2 *host, char *why, size_t why_len);

/*
 * Route the in-kernel irqchip's GSIs as the MP table and the MADT describe
 * them: ISA IRQ 0 (the in-kernel PIT) reaches IOAPIC pin 2, as on a PC, where
 * KVM's default routes send it to pin 0, which no guest listens on.
 */
struct vmm_vm;
int vmm_x86_kernel_irqchip_routes(struct vmm_vm *vm);

/* The library's IOAPIC for the split irqchip. */
struct vmm_ioapic;

/* How the IOAPIC reaches KVM (replaced by a recorder in unit tests). */
struct vmm_ioapic_backend {
    /* Deliver one MSI. */
    int (*signal_msi)(void *opaque, uint64_t address, uint32_t data);
    /* Install routes: for pin i, valid[i] says whether a route exists. */
    int (*set_routes)(void *opaque, const uint64_t *address, const uint32_t *data,
                      const bool *valid, unsigned n);
    void *opaque;
};

int vmm_ioapic_create(const struct vmm_ioapic_backend *backend, struct vmm_ioapic **out);
void vmm_ioapic_destroy(struct vmm_ioapic *ioapic);
const struct vmm_bus_ops *vmm_ioapic_bus_ops(void);
int vmm_ioapic_set_irq(struct vmm_ioapic *ioapic, unsigned pin, bool level);
/* A resampling irqfd's source on pin: raised by the irqfd, lowered by the
 * pin's EOI (or by lower, when the irqfd goes). */
int vmm_ioapic_resample_raise(struct vmm_ioapic *ioapic, unsigned pin);
void vmm_ioapic_resample_lower(struct vmm_ioapic *ioapic, unsigned pin);
/* The guest's EOI of vector: returns the pins whose resampling source it
 * lowered (bit n: pin n), for their irqfds' resample eventfds. */
uint32_t vmm_ioapic_eoi(struct vmm_ioapic *ioapic, uint8_t vector);
/* lib/cpu/x86_64/vm.c: KVM_EXIT_IOAPIC_EOI under the split irqchip: the
 * IOAPIC's EOI, then the resample eventfds of the pins it lowered. */
void vmm_x86_ioapic_eoi(struct vmm_vm *vm, uint8_t vector);
/* Its part in snapshots (opaque: the ioapic; lib/snapshot). */
struct vmm_snap_part_ops;
const struct vmm_snap_part_ops *vmm_ioapic_snap_ops(void);
/* The KVM backend (opaque: the struct vmm_vm): MSIs by KVM_SIGNAL_MSI,
 * routes into the VM's GSI routing table (GSI n for pin n). */
int vmm_ioapic_kvm_signal_msi(void *vm, uint64_t address, uint32_t data);
int vmm_ioapic_kvm_set_routes(void *vm, const uint64_t *address, const uint32_t *data,
                              const bool *valid, unsigned n);

#endif /* VMM_CPU_X86_64_ARCH_H */
