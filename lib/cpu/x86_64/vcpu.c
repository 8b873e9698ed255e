/* SPDX-License-Identifier: Apache-2.0 */
/* The x86 side of a vCPU: register, FPU, LAPIC and MSR access, its CPUID
 * table, and the long-mode boot state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../arch.h"
#include "../cpu_internal.h"

/* Every vCPU gets a CPUID table, built from what KVM supports (fetched once
 * per VM) and applied before it first runs. */
int vmm_arch_vcpu_init(struct vmm_vcpu *vcpu)
{
    int r = vmm_vm_fetch_supported_cpuid(vcpu->vm);
    if (r < 0) {
        vmm_log_error("KVM_GET_SUPPORTED_CPUID: %s", vmm_strerror(r));
        return r;
    }
    vcpu->cpuid = calloc(MAX_CPUID_ENTRIES, sizeof(*vcpu->cpuid));
    return vcpu->cpuid ? 0 : -ENOMEM;
}

uint64_t vmm_arch_vcpu_pc(struct vmm_vcpu *vcpu)
{
    struct kvm_regs regs;
    return vmm_vcpu_get_regs(vcpu, &regs) == 0 ? regs.rip : 0;
}

/* ---- register state ---- */

int vmm_vcpu_get_regs(struct vmm_vcpu *vcpu, struct kvm_regs *regs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_REGS, regs);
}

int vmm_vcpu_set_regs(struct vmm_vcpu *vcpu, const struct kvm_regs *regs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_REGS, (void *)regs);
}

int vmm_vcpu_get_sregs(struct vmm_vcpu *vcpu, struct kvm_sregs *sregs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_SREGS, sregs);
}

int vmm_vcpu_set_sregs(struct vmm_vcpu *vcpu, const struct kvm_sregs *sregs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_SREGS, (void *)sregs);
}

int vmm_vcpu_get_fpu(struct vmm_vcpu *vcpu, struct kvm_fpu *fpu)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_FPU, fpu);
}

int vmm_vcpu_set_fpu(struct vmm_vcpu *vcpu, const struct kvm_fpu *fpu)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_FPU, (void *)fpu);
}

int vmm_vcpu_get_lapic(struct vmm_vcpu *vcpu, struct kvm_lapic_state *lapic)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_LAPIC, lapic);
}

int vmm_vcpu_set_lapic(struct vmm_vcpu *vcpu, const struct kvm_lapic_state *lapic)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_LAPIC, (void *)lapic);
}

/* KVM_GET/SET_MSRS take a header followed by the entries. */
static int msrs_ioctl(struct vmm_vcpu *vcpu, unsigned long req, struct kvm_msr_entry *entries,
                      unsigned n)
{
    if (n == 0)
        return 0;
    if (n > 1024)
        return -E2BIG;
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
    if (!m)
        return -ENOMEM;
    m->nmsrs = n;
    memcpy(m->entries, entries, n * sizeof(m->entries[0]));
    int r = vmm_kvm_ioctl(vcpu->fd, req, m);
    if (r > 0 && req == KVM_GET_MSRS)
        memcpy(entries, m->entries, (size_t)r * sizeof(m->entries[0]));
    free(m);
    return r;
}

int vmm_vcpu_get_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *entries, unsigned n)
{
    return msrs_ioctl(vcpu, KVM_GET_MSRS, entries, n);
}

int vmm_vcpu_set_msrs(struct vmm_vcpu *vcpu, const struct kvm_msr_entry *entries, unsigned n)
{
    return msrs_ioctl(vcpu, KVM_SET_MSRS, (struct kvm_msr_entry *)entries, n);
}

/* ---- CPUID ---- */

static int cpuid_push(struct vmm_vcpu *vcpu)
{
    struct kvm_cpuid2 *c =
        calloc(1, sizeof(*c) + vcpu->cpuid_count * sizeof(struct kvm_cpuid_entry2));
    if (!c)
        return -ENOMEM;
    c->nent = vcpu->cpuid_count;
    memcpy(c->entries, vcpu->cpuid, vcpu->cpuid_count * sizeof(struct kvm_cpuid_entry2));
    int r = vmm_kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, c);
    free(c);
    if (r < 0)
        vmm_log_error("vCPU %u: KVM_SET_CPUID2: %s", vcpu->index, vmm_strerror(r));
    return r;
}

/* Build (for the current vCPU count) and apply the CPUID table, unless the
 * application set its own or it is already applied for this count. KVM lets
 * the table change until the vCPU first runs. */
int vmm_arch_vcpu_apply_cpuid(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    if (vcpu->cpuid_user_set || vcpu->has_run || vcpu->cpuid_applied_for == vm->nr_vcpus)
        return 0;
    int n = vmm_x86_cpuid_build(vm->supported_cpuid->entries, vm->supported_cpuid->nent,
                                vcpu->index, vm->nr_vcpus, vcpu->cpuid, MAX_CPUID_ENTRIES);
    if (n < 0)
        return n;
    vcpu->cpuid_count = (unsigned)n;
    int r = cpuid_push(vcpu);
    if (r == 0)
        vcpu->cpuid_applied_for = vm->nr_vcpus;
    return r;
}

int vmm_vcpu_get_cpuid(struct vmm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries, unsigned max)
{
    if (!vcpu->cpuid_user_set && vcpu->cpuid_applied_for != vcpu->vm->nr_vcpus) {
        int n =
            vmm_x86_cpuid_build(vcpu->vm->supported_cpuid->entries, vcpu->vm->supported_cpuid->nent,
                                vcpu->index, vcpu->vm->nr_vcpus, vcpu->cpuid, MAX_CPUID_ENTRIES);
        if (n < 0)
            return n;
        vcpu->cpuid_count = (unsigned)n;
    }
    unsigned copy = vcpu->cpuid_count < max ? vcpu->cpuid_count : max;
    if (entries && copy)
        memcpy(entries, vcpu->cpuid, copy * sizeof(*entries));
    return (int)vcpu->cpuid_count;
}

int vmm_vcpu_set_cpuid(struct vmm_vcpu *vcpu, const struct kvm_cpuid_entry2 *entries, unsigned n)
{
    if (n > MAX_CPUID_ENTRIES)
        return -E2BIG;
    if (n && !entries)
        return -EINVAL;
    unsigned old_count = vcpu->cpuid_count;
    struct kvm_cpuid_entry2 *old = malloc(old_count * sizeof(*old) + 1);
    if (!old)
        return -ENOMEM;
    memcpy(old, vcpu->cpuid, old_count * sizeof(*old));
    memcpy(vcpu->cpuid, entries, n * sizeof(*entries));
    vcpu->cpuid_count = n;
    int r = cpuid_push(vcpu);
    if (r < 0) {
        memcpy(vcpu->cpuid, old, old_count * sizeof(*old));
        vcpu->cpuid_count = old_count;
    } else {
        vcpu->cpuid_user_set = true;
    }
    free(old);
    return r;
}

/* ---- boot state ---- */

int vmm_vcpu_set_boot_state(struct vmm_vcpu *vcpu, const struct vmm_x86_boot_state *boot)
{
    struct vmm_x86_boot_state b;
    if (!boot || VMM_ABI_COPY_IN(&b, boot) < 0)
        return -EINVAL;
    struct kvm_regs regs;
    vmm_x86_boot_regs(&regs, &b);
    return vmm_x86_enter_boot_state(vcpu, vmm_x86_boot_sregs, &regs, "long mode");
}
