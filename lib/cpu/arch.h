/* SPDX-License-Identifier: Apache-2.0 */
/* What the generic VM and vCPU code asks of the architecture. lib/cpu/x86_64/
 * implements these hooks; another architecture is a folder beside it with
 * its own. The generic code issues no architecture-specific ioctl. */
#ifndef VMM_CPU_ARCH_H
#define VMM_CPU_ARCH_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct vmm_vm;
struct vmm_vcpu;
struct kvm_cpuid2;

/* The machine type argument of KVM_CREATE_VM (arm64: the guest-physical
 * address size, KVM_VM_TYPE_ARM_IPA_SIZE; x86: 0). Logs why it fails. */
int vmm_arch_vm_type(int kvm_fd, unsigned long *type);

/* Right after KVM_CREATE_VM, before any vCPU or memory slot: VM-wide state
 * the architecture needs (x86: where KVM keeps the real-mode TSS). */
int vmm_arch_vm_init(struct vmm_vm *vm);

/* Create the interrupt controller vm->cfg.irqchip names (x86: the in-kernel
 * irqchip with its GSI routes and PIT, or the split irqchip with the
 * library's IOAPIC on vm->mmio). Logs why it fails. */
int vmm_arch_irqchip_create(struct vmm_vm *vm);

/* Undo vmm_arch_irqchip_create's userspace part; safe after a partial one. */
void vmm_arch_irqchip_destroy(struct vmm_vm *vm);

/* Before an irqfd is bound: the interrupt controller must be complete
 * (arm64: KVM takes irqfds only once the vGIC is initialised, which needs
 * every vCPU; x86: nothing). Logs why it fails. */
int vmm_arch_irqfd_prepare(struct vmm_vm *vm);

/* vmm_vm_irqfd with a resample_fd where KVM has no IOAPIC of its own (x86's
 * split irqchip): the event loop raises gsi's pin on fd, and the pin's EOI
 * lowers it and writes resample_fd; -ENOTSUP where the architecture cannot.
 * _remove undoes it for fd (-ENOENT: fd is no such irqfd). */
int vmm_arch_irqfd_resample(struct vmm_vm *vm, int fd, unsigned gsi, int resample_fd);
int vmm_arch_irqfd_resample_remove(struct vmm_vm *vm, int fd, unsigned gsi);

/* Drive interrupt line gsi (< VMM_IOAPIC_PINS) to level. */
int vmm_arch_irq_line(struct vmm_vm *vm, unsigned gsi, bool level);

/* What the host's KVM supports, as the architecture describes its vCPUs
 * (x86: KVM_GET_SUPPORTED_CPUID plus what it leaves out). Caller frees. */
int vmm_arch_fetch_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out);

/* Right after KVM_CREATE_VCPU and its kvm_run mapping: x86 allocates the
 * vCPU's CPUID table (KVM_GET_SUPPORTED_CPUID fetched once per VM); arm64
 * does KVM_ARM_VCPU_INIT with the preferred target and PSCI 0.2. Logs why it
 * fails. */
int vmm_arch_vcpu_init(struct vmm_vcpu *vcpu);

/* Before the vCPU's first KVM_RUN, with every vCPU of the VM created: x86
 * applies the vCPU's CPUID table for the current vCPU count, unless the
 * application set its own or it is already applied; arm64 creates and
 * initialises the vGIC once per VM (its redistributors need every vCPU). */
int vmm_arch_vcpu_apply_cpuid(struct vmm_vcpu *vcpu);

/* The vCPU's program counter (RIP, PC), for error reports; 0 if unknown. */
uint64_t vmm_arch_vcpu_pc(struct vmm_vcpu *vcpu);

/* ---- snapshots (lib/snapshot) ---- */

struct vmm_snap_writer;
struct vmm_snap_reader;

/* Append the vCPU's section (registers, MSRs, LAPIC, events, CPUID, TSC
 * frequency: all the architecture has) to w; the vCPU is not running and
 * owes the guest no exit completion. Returns 0 or -errno (logged). */
int vmm_arch_vcpu_save(struct vmm_vcpu *vcpu, struct vmm_snap_writer *w);

/* Load a vCPU section into a vCPU that has not run, in the order KVM needs;
 * refuses state this host cannot give the guest (-ENOTSUP) and malformed
 * state (-EBADMSG), logged. */
int vmm_arch_vcpu_restore(struct vmm_vcpu *vcpu, struct vmm_snap_reader *r);

/* The VM-wide section: its clock and any in-kernel interrupt controller and
 * timer. Restore sets the clock before any vCPU runs. */
int vmm_arch_vm_save(struct vmm_vm *vm, struct vmm_snap_writer *w);
int vmm_arch_vm_restore(struct vmm_vm *vm, struct vmm_snap_reader *r);

#endif /* VMM_CPU_ARCH_H */
