/* SPDX-License-Identifier: Apache-2.0 */
/* Coalesced writes (KVM_REGISTER_COALESCED_MMIO, KVM_CAP_COALESCED_PIO):
 * guest writes to a registered range do not exit; KVM appends them to a
 * ring shared with user space (a page of every vCPU's kvm_run mapping), and
 * the vCPU that next exits, for whatever reason, hands them to the buses in
 * order before its own exit is handled. */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cpu_internal.h"

unsigned vmm_coalesced_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t max,
                             struct vmm_bus *pio, struct vmm_bus *mmio)
{
    uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
    uint32_t last = __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    /* The ring is the kernel's, but an index past the ring would make us
     * read past the page: such a ring is left alone. */
    if (first >= max || last >= max)
        return 0;
    while (first != last) {
        const struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[first];
        uint32_t len = e->len;
        if (len >= 1 && len <= sizeof(e->data))
            (void)vmm_bus_write(e->pio ? pio : mmio, e->phys_addr, e->data, len);
        first = (first + 1) % max;
        __atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
        n++;
    }
    return n;
}

void vmm_vcpu_coalesced_drain(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    struct kvm_coalesced_mmio_ring *ring =
        (void *)((char *)vcpu->run + (size_t)vm->coalesced_page * (size_t)getpagesize());
    if (__atomic_load_n(&ring->first, __ATOMIC_RELAXED) ==
        __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&vm->coalesced_lock);
    vmm_coalesced_drain(ring, vm->coalesced_max, vm->pio, vm->mmio);
    pthread_mutex_unlock(&vm->coalesced_lock);
}

int vmm_vm_coalesce_writes(struct vmm_vm *vm, uint64_t addr, uint32_t len, bool pio)
{
    if (len == 0 || addr + len < addr || (pio && (addr > 0xffff || addr + len > 0x10000)))
        return -EINVAL;
    int page = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
    if (page <= 0 || (pio && ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0))
        return -ENOTSUP;
    size_t psize = (size_t)getpagesize();
    if (((size_t)page + 1) * psize > vm->run_size)
        return -ENOTSUP;
    /* Draining is on before KVM can append anything. */
    pthread_mutex_lock(&vm->coalesced_lock);
    vm->coalesced_max = (uint32_t)((psize - sizeof(struct kvm_coalesced_mmio_ring)) /
                                   sizeof(struct kvm_coalesced_mmio));
    __atomic_store_n(&vm->coalesced_page, (unsigned)page, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vm->coalesced_lock);
    struct kvm_coalesced_mmio_zone zone = {.addr = addr, .size = len, .pio = pio ? 1 : 0};
    return vmm_kvm_ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &zone);
}
