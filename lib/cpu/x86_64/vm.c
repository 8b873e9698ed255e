/* SPDX-License-Identifier: Apache-2.0 */
/* The x86 side of a VM: the TSS KVM needs, the interrupt controllers (in-kernel
 * irqchip with PIT, or split irqchip with the library's IOAPIC), interrupt
 * lines, and the CPUID KVM supports. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../arch.h"
#include "../cpu_internal.h"
#include "snapshot/snapshot_internal.h"

int vmm_arch_vm_type(int kvm_fd, unsigned long *type)
{
    *type = 0;
    return 0;
}

int vmm_arch_irqfd_prepare(struct vmm_vm *vm)
{
    return 0;
}

int vmm_arch_vm_init(struct vmm_vm *vm)
{
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)VMM_X86_TSS_ADDR);
    if (r < 0)
        vmm_log_error("KVM_SET_TSS_ADDR: %s", vmm_strerror(r));
    return r;
}

int vmm_arch_irqchip_create(struct vmm_vm *vm)
{
    int r;
    if (vm->cfg.irqchip == VMM_IRQCHIP_KERNEL) {
        r = vmm_kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
        if (r < 0) {
            vmm_log_error("KVM_CREATE_IRQCHIP: %s", vmm_strerror(r));
            return r;
        }
        r = vmm_x86_kernel_irqchip_routes(vm);
        if (r < 0) {
            vmm_log_error("KVM_SET_GSI_ROUTING: %s", vmm_strerror(r));
            return r;
        }
        struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
        r = vmm_kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);
        if (r < 0)
            vmm_log_error("KVM_CREATE_PIT2: %s", vmm_strerror(r));
        return r;
    }

    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {VMM_IOAPIC_PINS}};
    r = vmm_kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap);
    if (r < 0) {
        vmm_log_error("enabling KVM_CAP_SPLIT_IRQCHIP: %s", vmm_strerror(r));
        return r;
    }
    struct vmm_ioapic_backend be = {.signal_msi = vmm_ioapic_kvm_signal_msi,
                                    .set_routes = vmm_ioapic_kvm_set_routes,
                                    .opaque = vm};
    r = vmm_ioapic_create(&be, &vm->ioapic);
    if (r < 0)
        return r;
    r = vmm_snap_register(vm, vmm_ioapic_snap_ops(), 0, vm->ioapic);
    if (r < 0)
        return r;
    return vmm_bus_register(vm->mmio, VMM_X86_IOAPIC_ADDR, VMM_X86_IOAPIC_SIZE,
                            vmm_ioapic_bus_ops(), vm->ioapic);
}

void vmm_arch_irqchip_destroy(struct vmm_vm *vm)
{
    if (vm->ioapic && vm->mmio)
        (void)vmm_bus_unregister(vm->mmio, VMM_X86_IOAPIC_ADDR);
    vmm_ioapic_destroy(vm->ioapic);
    vm->ioapic = NULL;
}

int vmm_arch_irq_line(struct vmm_vm *vm, unsigned gsi, bool level)
{
    if (vm->ioapic)
        return vmm_ioapic_set_irq(vm->ioapic, gsi, level);
    struct kvm_irq_level irq = {.irq = gsi, .level = level};
    return vmm_kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

int vmm_arch_fetch_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out)
{
    for (unsigned n = 128;; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        if (!c)
            return -ENOMEM;
        c->nent = n;
        int r = vmm_kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
        if (r == 0) {
            vmm_x86_cpuid_add_kvm_features(kvm_fd, c);
            *out = c;
            return 0;
        }
        free(c);
        if (r != -E2BIG || n >= 4096)
            return r;
    }
}

/* KVM_GET_SUPPORTED_CPUID costs a third of a millisecond and gives the same
 * answer for every VM of a /dev/kvm, so one copy serves the process. */
static pthread_mutex_t supported_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *supported_cache;
static char supported_path[256];

int vmm_vm_fetch_supported_cpuid(struct vmm_vm *vm)
{
    if (vm->supported_cpuid)
        return 0;
    pthread_mutex_lock(&supported_lock);
    int r = 0;
    if (!supported_cache || strcmp(supported_path, vm->cfg.kvm_path) != 0) {
        struct kvm_cpuid2 *c;
        r = vmm_arch_fetch_supported_cpuid(vm->kvm_fd, &c);
        if (r == 0 && strlen(vm->cfg.kvm_path) < sizeof(supported_path)) {
            free(supported_cache);
            supported_cache = c;
            snprintf(supported_path, sizeof(supported_path), "%s", vm->cfg.kvm_path);
        } else if (r == 0) {
            vm->supported_cpuid = c; /* path too long to cache: keep it per VM */
            pthread_mutex_unlock(&supported_lock);
            return 0;
        }
    }
    if (r == 0) {
        size_t size =
            sizeof(*supported_cache) + supported_cache->nent * sizeof(supported_cache->entries[0]);
        vm->supported_cpuid = malloc(size);
        if (vm->supported_cpuid)
            memcpy(vm->supported_cpuid, supported_cache, size);
        else
            r = -ENOMEM;
    }
    pthread_mutex_unlock(&supported_lock);
    return r;
}
