/* SPDX-License-Identifier: Apache-2.0 */
/*
 * KVM's GSI routing table of a VM. KVM_SET_GSI_ROUTING replaces the whole
 * table, so its two users share one copy here: the interrupt controller owns
 * the GSIs below VMM_IOAPIC_PINS (the in-kernel irqchip's pins, or the split
 * irqchip's IOAPIC entries as MSIs) and the MSI routes of PCI devices take
 * GSIs from VMM_IOAPIC_PINS up, one per vector, each fed by an irqfd.
 */
#include <errno.h>
#include <stdlib.h>

#include "cpu_internal.h"

/* Push chip routes plus the valid MSI routes to KVM (routes_lock held). */
static int commit(struct vmm_vm *vm)
{
    unsigned n = vm->nr_chip_routes;
    for (unsigned i = 0; i < vm->msi_cap; i++)
        n += vm->msi[i].used && vm->msi[i].valid;
    struct kvm_irq_routing *rt = calloc(1, sizeof(*rt) + n * sizeof(rt->entries[0]));
    if (!rt)
        return -ENOMEM;
    unsigned k = 0;
    for (unsigned i = 0; i < vm->nr_chip_routes; i++)
        rt->entries[k++] = vm->chip_routes[i];
    for (unsigned i = 0; i < vm->msi_cap; i++) {
        const struct vmm_msi_route *m = &vm->msi[i];
        if (!m->used || !m->valid)
            continue;
        struct kvm_irq_routing_entry *e = &rt->entries[k++];
        e->gsi = VMM_IOAPIC_PINS + i;
        e->type = KVM_IRQ_ROUTING_MSI;
        e->u.msi.address_lo = (uint32_t)m->address;
        e->u.msi.address_hi = (uint32_t)(m->address >> 32);
        e->u.msi.data = m->data;
    }
    rt->nr = k;
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, rt);
    free(rt);
    return r < 0 ? r : 0;
}

int vmm_vm_routes_set_chip(struct vmm_vm *vm, const struct kvm_irq_routing_entry *e, unsigned n)
{
    struct kvm_irq_routing_entry *copy = NULL;
    if (n) {
        copy = calloc(n, sizeof(*copy));
        if (!copy)
            return -ENOMEM;
        memcpy(copy, e, n * sizeof(*copy));
    }
    pthread_mutex_lock(&vm->routes_lock);
    free(vm->chip_routes);
    vm->chip_routes = copy;
    vm->nr_chip_routes = n;
    int r = commit(vm);
    pthread_mutex_unlock(&vm->routes_lock);
    return r;
}

int vmm_vm_msi_route_alloc(struct vmm_vm *vm, unsigned *gsi)
{
    pthread_mutex_lock(&vm->routes_lock);
    unsigned i;
    for (i = 0; i < vm->msi_cap; i++)
        if (!vm->msi[i].used)
            break;
    if (i == vm->msi_cap) {
        unsigned cap = vm->msi_cap ? vm->msi_cap * 2 : 32;
        struct vmm_msi_route *m = NULL;
        if (cap <= VMM_MAX_MSI_ROUTES)
            m = realloc(vm->msi, cap * sizeof(*m));
        if (!m) {
            pthread_mutex_unlock(&vm->routes_lock);
            return cap <= VMM_MAX_MSI_ROUTES ? -ENOMEM : -ENOSPC;
        }
        memset(m + vm->msi_cap, 0, (cap - vm->msi_cap) * sizeof(*m));
        vm->msi = m;
        vm->msi_cap = cap;
    }
    vm->msi[i] = (struct vmm_msi_route){.used = true};
    pthread_mutex_unlock(&vm->routes_lock);
    *gsi = VMM_IOAPIC_PINS + i;
    return 0;
}

static struct vmm_msi_route *msi_route(struct vmm_vm *vm, unsigned gsi)
{
    if (gsi < VMM_IOAPIC_PINS || gsi - VMM_IOAPIC_PINS >= vm->msi_cap)
        return NULL;
    struct vmm_msi_route *m = &vm->msi[gsi - VMM_IOAPIC_PINS];
    return m->used ? m : NULL;
}

int vmm_vm_msi_route_set(struct vmm_vm *vm, unsigned gsi, uint64_t address, uint32_t data,
                         bool valid)
{
    pthread_mutex_lock(&vm->routes_lock);
    struct vmm_msi_route *m = msi_route(vm, gsi);
    int r = -EINVAL;
    if (m) {
        r = 0;
        /* Unchanged: spare KVM a whole-table rebuild. */
        if (m->valid != valid || (valid && (m->address != address || m->data != data))) {
            *m = (struct vmm_msi_route){
                .used = true, .valid = valid, .address = address, .data = data};
            r = commit(vm);
        }
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return r;
}

void vmm_vm_msi_route_free(struct vmm_vm *vm, unsigned gsi)
{
    pthread_mutex_lock(&vm->routes_lock);
    struct vmm_msi_route *m = msi_route(vm, gsi);
    if (m) {
        bool was_valid = m->valid;
        *m = (struct vmm_msi_route){0};
        if (was_valid)
            (void)commit(vm);
    }
    pthread_mutex_unlock(&vm->routes_lock);
}

bool vmm_vm_gsi_routable(struct vmm_vm *vm, unsigned gsi)
{
    if (gsi < VMM_IOAPIC_PINS)
        return true;
    pthread_mutex_lock(&vm->routes_lock);
    bool ok = msi_route(vm, gsi) != NULL;
    pthread_mutex_unlock(&vm->routes_lock);
    return ok;
}

void vmm_vm_routes_fini(struct vmm_vm *vm)
{
    free(vm->chip_routes);
    free(vm->msi);
    pthread_mutex_destroy(&vm->routes_lock);
}
