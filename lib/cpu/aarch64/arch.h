/* SPDX-License-Identifier: Apache-2.0 */
/* arm64 pieces reached from the generic VM/vCPU code: the vGICv3 and the
 * vCPU target KVM prefers. */
#ifndef VMM_CPU_AARCH64_ARCH_H
#define VMM_CPU_AARCH64_ARCH_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Interrupt IDs the vGIC has: 32 private ones (SGIs, PPIs), then SPIs. */
#define VMM_ARM64_GIC_NR_IRQS 128u

struct vmm_arm64_vm {
    pthread_mutex_t gic_lock; /* guards the vGIC's creation */
    int gic_fd;               /* the KVM_DEV_TYPE_ARM_VGIC_V3 device; -1: none yet */
    bool gic_ready;           /* created, addressed and CTRL_INIT done */
    bool have_target;
    struct kvm_vcpu_init target; /* KVM_ARM_PREFERRED_TARGET, fetched once */
};

/* Create the vGICv3 (distributor and redistributors where vmm/arm64.h says,
 * VMM_ARM64_GIC_NR_IRQS interrupts) and initialise it, once per VM, with
 * every vCPU created and none run yet. Thread-safe; logs why it fails. */
struct vmm_vm;
int vmm_arm64_gic_init(struct vmm_vm *vm);

/* KVM_{GET,SET}_ONE_REG id of core register field at byte offset off of
 * struct kvm_regs (a 64-bit one). */
#define VMM_ARM64_CORE_REG(off)                                                                    \
    (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | ((uint64_t)(off) / sizeof(uint32_t)))

#endif /* VMM_CPU_AARCH64_ARCH_H */
