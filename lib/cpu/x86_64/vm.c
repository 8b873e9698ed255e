/* SPDX-License-Identifier: Apache-2.0 */
/* The x86 side of a VM: the TSS KVM needs, the interrupt controllers (in-kernel
 * irqchip with PIT, or split irqchip with the library's IOAPIC), interrupt
 * lines, and the CPUID KVM supports. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <vmm/event.h>

#include "../arch.h"
#include "../cpu_internal.h"
#include "snapshot/snapshot_internal.h"

/* Resampling irqfds under the split irqchip. KVM takes them only with its
 * own IOAPIC, so the event loop and the EOI exit do its part: a write to
 * fd raises the pin's resampling source, the pin's EOI lowers it and
 * writes resample_fd (VFIO then unmasks INTx, and raises fd again if the
 * device still asks). */
#define RESAMPLE_MAX 32

struct resample_irqfd {
    struct vmm_vm *vm;
    int fd, resample_fd;
    unsigned pin;
};

struct vmm_x86_resample {
    pthread_mutex_t lock; /* e[]; a leaf lock */
    struct resample_irqfd *e[RESAMPLE_MAX];
};

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
    vm->resample = calloc(1, sizeof(*vm->resample));
    if (!vm->resample)
        return -ENOMEM;
    pthread_mutex_init(&vm->resample->lock, NULL);
    r = vmm_snap_register(vm, vmm_ioapic_snap_ops(), 0, vm->ioapic);
    if (r < 0)
        return r;
    return vmm_bus_register(vm->mmio, VMM_X86_IOAPIC_ADDR, VMM_X86_IOAPIC_SIZE,
                            vmm_ioapic_bus_ops(), vm->ioapic);
}

static void resample_ready(void *opaque, int fd, uint32_t events)
{
    struct resample_irqfd *e = opaque;
    uint64_t v;
    (void)events;
    if (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        (void)vmm_ioapic_resample_raise(e->vm->ioapic, e->pin);
}

int vmm_arch_irqfd_resample(struct vmm_vm *vm, int fd, unsigned gsi, int resample_fd)
{
    if (!vm->ioapic || !vm->resample || gsi >= VMM_IOAPIC_PINS)
        return -ENOTSUP;
    struct vmm_event_loop *loop = vmm_vm_event_loop(vm);
    if (!loop)
        return -ENOMEM;
    struct vmm_x86_resample *rs = vm->resample;
    struct resample_irqfd *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    *e = (struct resample_irqfd){.vm = vm, .fd = fd, .resample_fd = resample_fd, .pin = gsi};
    int r = -ENOSPC;
    pthread_mutex_lock(&rs->lock);
    for (unsigned i = 0; i < RESAMPLE_MAX; i++) {
        if (rs->e[i] && rs->e[i]->fd == fd) {
            r = -EEXIST;
            break;
        }
    }
    for (unsigned i = 0; i < RESAMPLE_MAX && r == -ENOSPC; i++) {
        if (!rs->e[i]) {
            rs->e[i] = e;
            r = 0;
        }
    }
    pthread_mutex_unlock(&rs->lock);
    if (r == 0 && (r = vmm_event_loop_add(loop, fd, EPOLLIN, resample_ready, e)) < 0) {
        pthread_mutex_lock(&rs->lock);
        for (unsigned i = 0; i < RESAMPLE_MAX; i++)
            if (rs->e[i] == e)
                rs->e[i] = NULL;
        pthread_mutex_unlock(&rs->lock);
    }
    if (r < 0)
        free(e);
    return r;
}

int vmm_arch_irqfd_resample_remove(struct vmm_vm *vm, int fd, unsigned gsi)
{
    struct vmm_x86_resample *rs = vm->resample;
    struct resample_irqfd *e = NULL;
    if (!rs)
        return -ENOENT;
    pthread_mutex_lock(&rs->lock);
    for (unsigned i = 0; i < RESAMPLE_MAX && !e; i++) {
        if (rs->e[i] && rs->e[i]->fd == fd && rs->e[i]->pin == gsi) {
            e = rs->e[i];
            rs->e[i] = NULL;
        }
    }
    pthread_mutex_unlock(&rs->lock);
    if (!e)
        return -ENOENT;
    /* Waits for a running callback: e is unused afterwards. */
    (void)vmm_event_loop_remove(vm->loop, fd);
    vmm_ioapic_resample_lower(vm->ioapic, e->pin);
    free(e);
    return 0;
}

void vmm_x86_ioapic_eoi(struct vmm_vm *vm, uint8_t vector)
{
    uint32_t pins = vmm_ioapic_eoi(vm->ioapic, vector);
    struct vmm_x86_resample *rs = vm->resample;
    if (!pins || !rs)
        return;
    const uint64_t one = 1;
    pthread_mutex_lock(&rs->lock);
    for (unsigned i = 0; i < RESAMPLE_MAX; i++)
        if (rs->e[i] && (pins >> rs->e[i]->pin) & 1)
            (void)!write(rs->e[i]->resample_fd, &one, sizeof(one));
    pthread_mutex_unlock(&rs->lock);
}

void vmm_arch_irqchip_destroy(struct vmm_vm *vm)
{
    if (vm->resample) {
        for (unsigned i = 0; i < RESAMPLE_MAX; i++) {
            if (vm->resample->e[i]) {
                (void)vmm_event_loop_remove(vm->loop, vm->resample->e[i]->fd);
                free(vm->resample->e[i]);
            }
        }
        pthread_mutex_destroy(&vm->resample->lock);
        free(vm->resample);
        vm->resample = NULL;
    }
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
