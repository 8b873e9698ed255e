/* SPDX-License-Identifier: Apache-2.0 */
/* The arm64 side of a VM: its guest-physical address size, the in-kernel
 * vGICv3 (a KVM device, created and initialised before the first run, once
 * every vCPU exists) and interrupt lines as SPIs. Snapshots are x86-only. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <vmm/arm64.h>

#include "../arch.h"
#include "../cpu_internal.h"

/* The IPA size asked for: 40 bits (1 TiB) is every arm64 KVM's default and
 * covers the layout in vmm/arm64.h; a host that reports its limit gets it,
 * capped there, so huge guests could grow later without a new type. */
#define IPA_BITS_DEFAULT 40

int vmm_arch_vm_type(int kvm_fd, unsigned long *type)
{
    int max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
    /* 0: the host has only the default 40 bits, and type 0 means that. */
    if (max <= 0) {
        *type = 0;
        return 0;
    }
    if (max < 32) {
        vmm_log_error("KVM_CAP_ARM_VM_IPA_SIZE: %d bits cannot hold the arm64 layout", max);
        return -ENOTSUP;
    }
    *type = KVM_VM_TYPE_ARM_IPA_SIZE(max < IPA_BITS_DEFAULT ? max : IPA_BITS_DEFAULT);
    return 0;
}

int vmm_arch_vm_init(struct vmm_vm *vm)
{
    vm->arm64.gic_fd = -1;
    return -pthread_mutex_init(&vm->arm64.gic_lock, NULL);
}

int vmm_arch_irqchip_create(struct vmm_vm *vm)
{
    /* The split irqchip is x86's (vmm_kvm_check_caps refused it already);
     * the vGIC itself waits for the vCPUs (vmm_arm64_gic_init). */
    return vm->cfg.irqchip == VMM_IRQCHIP_KERNEL ? 0 : -ENOTSUP;
}

void vmm_arch_irqchip_destroy(struct vmm_vm *vm)
{
    if (vm->arm64.gic_fd >= 0)
        close(vm->arm64.gic_fd);
    vm->arm64.gic_fd = -1;
    /* vmm_arch_vm_init ran whenever vm_fd exists. */
    if (vm->vm_fd >= 0)
        pthread_mutex_destroy(&vm->arm64.gic_lock);
}

static int gic_attr(int fd, uint32_t group, uint64_t attr, void *val, const char *what)
{
    struct kvm_device_attr a = {.group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)val};
    int r = vmm_kvm_ioctl(fd, KVM_SET_DEVICE_ATTR, &a);
    if (r < 0)
        vmm_log_error("vGICv3: %s: %s", what, vmm_strerror(r));
    return r;
}

int vmm_arm64_gic_init(struct vmm_vm *vm)
{
    pthread_mutex_lock(&vm->arm64.gic_lock);
    int r = 0;
    if (vm->arm64.gic_ready)
        goto out;
    if (vm->nr_vcpus > VMM_ARM64_MAX_VCPUS) {
        vmm_log_error("vGICv3: %u vCPUs, the layout has redistributors for %u", vm->nr_vcpus,
                      VMM_ARM64_MAX_VCPUS);
        r = -E2BIG;
        goto out;
    }
    if (vm->arm64.gic_fd < 0) {
        struct kvm_create_device cd = {.type = KVM_DEV_TYPE_ARM_VGIC_V3};
        r = vmm_kvm_ioctl(vm->vm_fd, KVM_CREATE_DEVICE, &cd);
        if (r < 0) {
            vmm_log_error("KVM_CREATE_DEVICE (vGICv3): %s", vmm_strerror(r));
            goto out;
        }
        vm->arm64.gic_fd = (int)cd.fd;
        uint64_t dist = VMM_ARM64_GIC_DIST_BASE, redist = VMM_ARM64_GIC_REDIST_BASE;
        uint32_t nr_irqs = VMM_ARM64_GIC_NR_IRQS;
        if ((r = gic_attr(vm->arm64.gic_fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST,
                          &dist, "distributor address")) < 0 ||
            (r = gic_attr(vm->arm64.gic_fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST,
                          &redist, "redistributor address")) < 0 ||
            (r = gic_attr(vm->arm64.gic_fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs,
                          "number of interrupts")) < 0)
            goto out;
    }
    r = gic_attr(vm->arm64.gic_fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL,
                 "CTRL_INIT");
    if (r == 0)
        vm->arm64.gic_ready = true;
out:
    pthread_mutex_unlock(&vm->arm64.gic_lock);
    return r;
}

int vmm_arch_irqfd_prepare(struct vmm_vm *vm)
{
    if (vm->nr_vcpus == 0) {
        vmm_log_error("irqfd: create the vCPUs first (the vGIC takes irqfds once initialised, "
                      "and it needs every vCPU)");
        return -EAGAIN;
    }
    return vmm_arm64_gic_init(vm);
}

int vmm_arch_irqfd_resample(struct vmm_vm *vm, int fd, unsigned gsi, int resample_fd)
{
    return -ENOTSUP; /* the vGIC is KVM's: vmm_vm_irqfd resamples there */
}

int vmm_arch_irqfd_resample_remove(struct vmm_vm *vm, int fd, unsigned gsi)
{
    return -ENOENT;
}

int vmm_arch_irq_line(struct vmm_vm *vm, unsigned gsi, bool level)
{
    /* Before CTRL_INIT KVM refuses (-EBUSY): the vGIC exists from the
     * first run on. */
    struct kvm_irq_level irq = {
        .irq = (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (32u + gsi),
        .level = level,
    };
    return vmm_kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

/* ---- x86-only hooks ---- */

int vmm_arch_vm_save(struct vmm_vm *vm, struct vmm_snap_writer *w)
{
    vmm_log_error("snapshots: not on arm64 yet");
    return -ENOTSUP;
}

int vmm_arch_vm_restore(struct vmm_vm *vm, struct vmm_snap_reader *r)
{
    vmm_log_error("snapshots: not on arm64 yet");
    return -ENOTSUP;
}
