/* SPDX-License-Identifier: Apache-2.0 */
/* The arm64 side of a vCPU: KVM_ARM_VCPU_INIT with PSCI 0.2, registers
 * through ONE_REG, the Linux entry state, and the vGIC's creation before the
 * first run. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/arm64.h>

#include "../arch.h"
#include "../cpu_internal.h"

int vmm_arch_vcpu_init(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    /* vmm_vcpu_create is not called concurrently on one VM (indices come in
     * order), so the target needs no lock. */
    if (!vm->arm64.have_target) {
        int r = vmm_kvm_ioctl(vm->vm_fd, KVM_ARM_PREFERRED_TARGET, &vm->arm64.target);
        if (r < 0) {
            vmm_log_error("KVM_ARM_PREFERRED_TARGET: %s", vmm_strerror(r));
            return r;
        }
        vm->arm64.have_target = true;
    }
    struct kvm_vcpu_init init = {.target = vm->arm64.target.target};
    init.features[0] = 1u << KVM_ARM_VCPU_PSCI_0_2;
    /* Secondary vCPUs wait for the guest's PSCI CPU_ON. */
    if (vcpu->index > 0)
        init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
    int r = vmm_kvm_ioctl(vcpu->fd, KVM_ARM_VCPU_INIT, &init);
    if (r < 0)
        vmm_log_error("KVM_ARM_VCPU_INIT %u: %s", vcpu->index, vmm_strerror(r));
    return r;
}

int vmm_arch_vcpu_apply_cpuid(struct vmm_vcpu *vcpu)
{
    return vmm_arm64_gic_init(vcpu->vm);
}

int vmm_vcpu_get_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t *val)
{
    if (!vcpu || !val || (id & KVM_REG_SIZE_MASK) != KVM_REG_SIZE_U64)
        return -EINVAL;
    struct kvm_one_reg reg = {.id = id, .addr = (uint64_t)(uintptr_t)val};
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_ONE_REG, &reg);
}

int vmm_vcpu_set_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t val)
{
    if (!vcpu || (id & KVM_REG_SIZE_MASK) != KVM_REG_SIZE_U64)
        return -EINVAL;
    struct kvm_one_reg reg = {.id = id, .addr = (uint64_t)(uintptr_t)&val};
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_ONE_REG, &reg);
}

uint64_t vmm_arch_vcpu_pc(struct vmm_vcpu *vcpu)
{
    uint64_t pc;
    return vmm_vcpu_get_one_reg(vcpu, VMM_ARM64_CORE_REG(offsetof(struct kvm_regs, regs.pc)),
                                &pc) == 0
               ? pc
               : 0;
}

/* PSTATE at entry: EL1h (SP_EL1), D, A, I, F masked (booting.rst). */
#define PSTATE_EL1H_DAIF 0x3c5ull

int vmm_vcpu_set_arm64_entry(struct vmm_vcpu *vcpu, uint64_t pc, uint64_t x0)
{
    if (!vcpu)
        return -EINVAL;
    const struct {
        size_t off;
        uint64_t val;
    } regs[] = {
        {offsetof(struct kvm_regs, regs.pstate), PSTATE_EL1H_DAIF},
        {offsetof(struct kvm_regs, regs.regs[0]), x0},
        {offsetof(struct kvm_regs, regs.regs[1]), 0},
        {offsetof(struct kvm_regs, regs.regs[2]), 0},
        {offsetof(struct kvm_regs, regs.regs[3]), 0},
        {offsetof(struct kvm_regs, regs.pc), pc},
    };
    for (size_t i = 0; i < VMM_ARRAY_SIZE(regs); i++) {
        int r = vmm_vcpu_set_one_reg(vcpu, VMM_ARM64_CORE_REG(regs[i].off), regs[i].val);
        if (r < 0) {
            vmm_log_error("vCPU %u: KVM_SET_ONE_REG: %s", vcpu->index, vmm_strerror(r));
            return r;
        }
    }
    return 0;
}

/* ---- x86-only hooks ---- */

int vmm_arch_vcpu_save(struct vmm_vcpu *vcpu, struct vmm_snap_writer *w)
{
    vmm_log_error("snapshots: not on arm64 yet");
    return -ENOTSUP;
}

int vmm_arch_vcpu_restore(struct vmm_vcpu *vcpu, struct vmm_snap_reader *r)
{
    vmm_log_error("snapshots: not on arm64 yet");
    return -ENOTSUP;
}
