/* SPDX-License-Identifier: Apache-2.0 */
/* The public calls of one architecture on the other: each returns -ENOTSUP
 * (or NULL, nothing), so that one header set and one lib/vmm.map serve both
 * and an application learns at run time what its host cannot do. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/arm64.h>
#include <vmm/function.h>
#include <vmm/vcpu.h>

#if defined(__aarch64__)

/* x86 vCPU state: arm64 has ONE_REG (vmm_vcpu_get_one_reg) instead. */
int vmm_vcpu_get_regs(struct vmm_vcpu *vcpu, struct kvm_regs *regs)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_regs(struct vmm_vcpu *vcpu, const struct kvm_regs *regs)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_sregs(struct vmm_vcpu *vcpu, struct kvm_sregs *sregs)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_sregs(struct vmm_vcpu *vcpu, const struct kvm_sregs *sregs)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_fpu(struct vmm_vcpu *vcpu, struct kvm_fpu *fpu)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_fpu(struct vmm_vcpu *vcpu, const struct kvm_fpu *fpu)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_lapic(struct vmm_vcpu *vcpu, struct kvm_lapic_state *lapic)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_lapic(struct vmm_vcpu *vcpu, const struct kvm_lapic_state *lapic)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *entries, unsigned n)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_msrs(struct vmm_vcpu *vcpu, const struct kvm_msr_entry *entries, unsigned n)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_cpuid(struct vmm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries, unsigned max)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_cpuid(struct vmm_vcpu *vcpu, const struct kvm_cpuid_entry2 *entries, unsigned n)
{
    return -ENOTSUP;
}

int vmm_cpuid_set_feature(struct kvm_cpuid_entry2 *entries, unsigned n, const char *name, bool on)
{
    return -ENOTSUP;
}

const char *vmm_cpuid_feature_name(unsigned i, const char **what)
{
    return NULL;
}

/* x86 entry states: arm64 enters through vmm_vcpu_set_arm64_entry. */
int vmm_vcpu_set_boot_state(struct vmm_vcpu *vcpu, const struct vmm_x86_boot_state *boot)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_boot_state_pm32(struct vmm_vcpu *vcpu, const struct vmm_x86_pm32_boot_state *boot)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_linux_entry(struct vmm_vcpu *vcpu, const struct vmm_x86_linux_entry *entry)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_linux_ap_state(struct vmm_vcpu *vcpu)
{
    return -ENOTSUP;
}

/* Function VMs run an x86_64 guest runtime (lib/function). */
int vmm_fn_create(const struct vmm_fn_config *cfg, struct vmm_fn **out)
{
    return -ENOTSUP;
}

void vmm_fn_destroy(struct vmm_fn *fn)
{
}

int vmm_fn_register(struct vmm_fn *fn, const char *name, vmm_fn_host_fn fn_cb, void *opaque)
{
    return -ENOTSUP;
}

int vmm_fn_call(struct vmm_fn *fn, const char *name, const struct vmm_fn_val *args, unsigned nargs,
                uint64_t timeout_ns, struct vmm_fn_result *res)
{
    return -ENOTSUP;
}

void vmm_fn_cancel(struct vmm_fn *fn)
{
}

int vmm_fn_get_stats(const struct vmm_fn *fn, struct vmm_fn_stats *st)
{
    return -ENOTSUP;
}

#else /* x86_64 */

/* arm64 vCPU state and entry (lib/cpu/aarch64). */
int vmm_vcpu_set_arm64_entry(struct vmm_vcpu *vcpu, uint64_t pc, uint64_t x0)
{
    return -ENOTSUP;
}

int vmm_vcpu_get_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t *val)
{
    return -ENOTSUP;
}

int vmm_vcpu_set_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t val)
{
    return -ENOTSUP;
}

#endif
