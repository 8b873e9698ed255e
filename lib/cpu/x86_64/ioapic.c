/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IOAPIC of the split irqchip (an 82093AA-style IOAPIC, version 0x11,
 * 24 pins). Local APICs live in KVM; this model turns each redirection entry
 * into an MSI: it delivers with KVM_SIGNAL_MSI and mirrors every entry into
 * KVM's GSI routing table, so irqfds on GSI n follow the guest's programming
 * and KVM knows which vectors are level-triggered (their EOIs come back as
 * KVM_EXIT_IOAPIC_EOI). A resampling irqfd (split irqchip: x86_64/vm.c)
 * is a second source on its pin, raised by the irqfd and lowered by the
 * pin's EOI, as KVM's own IOAPIC does with its resamplers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../cpu_internal.h"
#include "snapshot/snapshot_internal.h"

#define IOAPIC_REG_SELECT 0x00
#define IOAPIC_REG_WINDOW 0x10

#define IOAPIC_ID      0x00
#define IOAPIC_VERSION 0x01
#define IOAPIC_ARB     0x02
#define IOAPIC_REDIR0  0x10

#define IOAPIC_VERSION_VALUE (0x11u | ((VMM_IOAPIC_PINS - 1u) << 16))

/* Redirection entry bits. */
#define RTE_VECTOR       0xffull
#define RTE_DELIV_MODE   (7ull << 8)
#define RTE_DEST_LOGICAL (1ull << 11)
#define RTE_DELIV_STATUS (1ull << 12)
#define RTE_POLARITY_LOW (1ull << 13)
#define RTE_REMOTE_IRR   (1ull << 14)
#define RTE_LEVEL        (1ull << 15)
#define RTE_MASKED       (1ull << 16)
#define RTE_DEST_SHIFT   56
/* Bits the guest may not write. */
#define RTE_READ_ONLY (RTE_DELIV_STATUS | RTE_REMOTE_IRR)

struct vmm_ioapic {
    pthread_mutex_t lock;
    struct vmm_ioapic_backend be;
    uint32_t select;
    uint32_t id;
    uint64_t rte[VMM_IOAPIC_PINS];
    uint32_t line; /* bit n: input level of pin n */
    uint32_t rs;   /* bit n: pin n raised by a resampling irqfd, until its EOI */
};

int vmm_ioapic_create(const struct vmm_ioapic_backend *backend, struct vmm_ioapic **out)
{
    struct vmm_ioapic *io = calloc(1, sizeof(*io));
    if (!io)
        return -ENOMEM;
    pthread_mutex_init(&io->lock, NULL);
    io->be = *backend;
    for (unsigned i = 0; i < VMM_IOAPIC_PINS; i++)
        io->rte[i] = RTE_MASKED;
    *out = io;
    return 0;
}

void vmm_ioapic_destroy(struct vmm_ioapic *io)
{
    if (!io)
        return;
    pthread_mutex_destroy(&io->lock);
    free(io);
}

/* The MSI a redirection entry stands for (Intel SDM vol. 3, 11.11). */
static void rte_to_msi(uint64_t rte, uint64_t *address, uint32_t *data)
{
    uint64_t dest = (rte >> RTE_DEST_SHIFT) & 0xff;
    *address = 0xfee00000ull | (dest << 12) | ((rte & RTE_DEST_LOGICAL) ? (1ull << 2) : 0);
    *data = (uint32_t)(rte & (RTE_VECTOR | RTE_DELIV_MODE));
    if (rte & RTE_LEVEL)
        *data |= (1u << 15) | (1u << 14); /* level-triggered, assert */
}

/* Push the whole routing table to KVM. Caller holds the lock. */
static void sync_routes(struct vmm_ioapic *io)
{
    uint64_t addr[VMM_IOAPIC_PINS];
    uint32_t data[VMM_IOAPIC_PINS];
    bool valid[VMM_IOAPIC_PINS];
    for (unsigned i = 0; i < VMM_IOAPIC_PINS; i++) {
        valid[i] = !(io->rte[i] & RTE_MASKED);
        rte_to_msi(io->rte[i], &addr[i], &data[i]);
    }
    int r = io->be.set_routes(io->be.opaque, addr, data, valid, VMM_IOAPIC_PINS);
    if (r < 0)
        vmm_log_warn("ioapic: updating KVM's GSI routes: %s", vmm_strerror(r));
}

/* Send pin's interrupt. Level-triggered pins stay busy (remote IRR) until
 * the EOI. Caller holds the lock. */
static void deliver(struct vmm_ioapic *io, unsigned pin)
{
    uint64_t rte = io->rte[pin];
    uint64_t addr;
    uint32_t data;
    rte_to_msi(rte, &addr, &data);
    if (rte & RTE_LEVEL)
        io->rte[pin] |= RTE_REMOTE_IRR;
    int r = io->be.signal_msi(io->be.opaque, addr, data);
    if (r < 0)
        vmm_log_debug("ioapic: pin %u: MSI not delivered: %s", pin, vmm_strerror(r));
}

/* Pin's input: either source. Caller holds the lock. */
static bool pin_up(const struct vmm_ioapic *io, unsigned pin)
{
    return ((io->line | io->rs) >> pin) & 1;
}

/* Pin was raised (input was before): deliver as its entry says. Caller
 * holds the lock. */
static void raised(struct vmm_ioapic *io, unsigned pin, bool was)
{
    uint64_t rte = io->rte[pin];
    if (rte & RTE_MASKED)
        return;
    if (rte & RTE_LEVEL) {
        if (!(rte & RTE_REMOTE_IRR))
            deliver(io, pin);
    } else if (!was) {
        deliver(io, pin);
    }
}

int vmm_ioapic_set_irq(struct vmm_ioapic *io, unsigned pin, bool level)
{
    if (pin >= VMM_IOAPIC_PINS)
        return -EINVAL;
    pthread_mutex_lock(&io->lock);
    /* An active-low pin's electrical level is the inverse of the request;
     * callers speak of asserted/deasserted, so polarity only matters to the
     * guest's view. We model lines as "asserted" and ignore polarity. */
    bool was = pin_up(io, pin);
    if (level)
        io->line |= 1u << pin;
    else
        io->line &= ~(1u << pin);
    if (level)
        raised(io, pin, was);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

int vmm_ioapic_resample_raise(struct vmm_ioapic *io, unsigned pin)
{
    if (pin >= VMM_IOAPIC_PINS)
        return -EINVAL;
    pthread_mutex_lock(&io->lock);
    bool was = pin_up(io, pin);
    io->rs |= 1u << pin;
    raised(io, pin, was);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

void vmm_ioapic_resample_lower(struct vmm_ioapic *io, unsigned pin)
{
    if (pin >= VMM_IOAPIC_PINS)
        return;
    pthread_mutex_lock(&io->lock);
    io->rs &= ~(1u << pin);
    pthread_mutex_unlock(&io->lock);
}

uint32_t vmm_ioapic_eoi(struct vmm_ioapic *io, uint8_t vector)
{
    uint32_t resampled = 0;
    pthread_mutex_lock(&io->lock);
    for (unsigned pin = 0; pin < VMM_IOAPIC_PINS; pin++) {
        uint64_t rte = io->rte[pin];
        if ((rte & RTE_VECTOR) != vector || !(rte & RTE_LEVEL) || !(rte & RTE_REMOTE_IRR))
            continue;
        io->rte[pin] &= ~RTE_REMOTE_IRR;
        /* The resampling source drops; its owner asks the device again. */
        if (io->rs & (1u << pin)) {
            io->rs &= ~(1u << pin);
            resampled |= 1u << pin;
        }
        /* Still asserted: the device wants service again. */
        if ((io->line & (1u << pin)) && !(rte & RTE_MASKED))
            deliver(io, pin);
    }
    pthread_mutex_unlock(&io->lock);
    return resampled;
}

static uint32_t reg_read(struct vmm_ioapic *io, uint32_t reg)
{
    switch (reg) {
    case IOAPIC_ID:
        return io->id;
    case IOAPIC_VERSION:
        return IOAPIC_VERSION_VALUE;
    case IOAPIC_ARB:
        return io->id;
    default:
        if (reg >= IOAPIC_REDIR0 && reg < IOAPIC_REDIR0 + 2 * VMM_IOAPIC_PINS) {
            unsigned pin = (reg - IOAPIC_REDIR0) / 2;
            return (reg & 1) ? (uint32_t)(io->rte[pin] >> 32) : (uint32_t)io->rte[pin];
        }
        return 0xffffffffu;
    }
}

static void reg_write(struct vmm_ioapic *io, uint32_t reg, uint32_t val)
{
    if (reg == IOAPIC_ID) {
        io->id = val & 0x0f000000u;
        return;
    }
    if (reg < IOAPIC_REDIR0 || reg >= IOAPIC_REDIR0 + 2 * VMM_IOAPIC_PINS)
        return; /* version/arbitration are read-only; the rest do not exist */
    unsigned pin = (reg - IOAPIC_REDIR0) / 2;
    uint64_t old = io->rte[pin];
    uint64_t rte;
    if (reg & 1)
        rte = (old & 0xffffffffull) | ((uint64_t)val << 32);
    else
        rte = (old & ~0xffffffffull) | val;
    rte = (rte & ~RTE_READ_ONLY) | (old & RTE_READ_ONLY);
    /* Switching to edge mode drops a pending level acknowledgement. */
    if (!(rte & RTE_LEVEL))
        rte &= ~RTE_REMOTE_IRR;
    io->rte[pin] = rte;
    if (rte != old)
        sync_routes(io);
    /* Unmasking a level-triggered pin whose line is up delivers at once. */
    if ((rte & RTE_LEVEL) && !(rte & RTE_MASKED) && !(rte & RTE_REMOTE_IRR) && pin_up(io, pin))
        deliver(io, pin);
}

static void ioapic_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct vmm_ioapic *io = opaque;
    uint32_t val = 0xffffffffu;
    pthread_mutex_lock(&io->lock);
    if (offset == IOAPIC_REG_SELECT)
        val = io->select;
    else if (offset == IOAPIC_REG_WINDOW)
        val = reg_read(io, io->select);
    pthread_mutex_unlock(&io->lock);
    /* Only 32-bit accesses are defined; narrower ones see the low bytes. */
    uint64_t wide = val;
    memcpy(data, &wide, len <= 8 ? len : 8);
}

static void ioapic_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_ioapic *io = opaque;
    uint32_t val = 0;
    memcpy(&val, data, len < 4 ? len : 4);
    pthread_mutex_lock(&io->lock);
    if (offset == IOAPIC_REG_SELECT)
        io->select = val & 0xff;
    else if (offset == IOAPIC_REG_WINDOW)
        reg_write(io, io->select, val);
    pthread_mutex_unlock(&io->lock);
}

static const struct vmm_bus_ops ioapic_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = ioapic_read, .write = ioapic_write};

const struct vmm_bus_ops *vmm_ioapic_bus_ops(void)
{
    return &ioapic_ops;
}

/* ---- KVM backend ---- */

/* ---- snapshots: the registers, the input lines and the select ---- */

static int ioapic_freeze(void *opaque)
{
    struct vmm_ioapic *io = opaque;
    pthread_mutex_lock(&io->lock);
    return 0;
}

static void ioapic_thaw(void *opaque)
{
    struct vmm_ioapic *io = opaque;
    pthread_mutex_unlock(&io->lock);
}

static int ioapic_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vmm_ioapic *io = opaque;
    snap_put_u32(w, io->select);
    snap_put_u32(w, io->id);
    snap_put_u32(w, io->line);
    snap_put(w, io->rte, sizeof(io->rte));
    return 0;
}

static int ioapic_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vmm_ioapic *io = opaque;
    uint32_t select, id, line;
    uint64_t rte[VMM_IOAPIC_PINS];
    if (snap_get_u32(r, &select) < 0 || snap_get_u32(r, &id) < 0 || snap_get_u32(r, &line) < 0 ||
        snap_get(r, rte, sizeof(rte)) < 0 || snap_done(r) < 0 ||
        (line >> (VMM_IOAPIC_PINS - 1) >> 1)) {
        vmm_log_error("restore: malformed IOAPIC state");
        return -EBADMSG;
    }
    pthread_mutex_lock(&io->lock);
    io->select = select;
    io->id = id & 0x0f000000u;
    io->line = line;
    memcpy(io->rte, rte, sizeof(rte));
    sync_routes(io);
    pthread_mutex_unlock(&io->lock);
    return 0;
}

static const struct vmm_snap_part_ops ioapic_snap = {
    .name = "IOAPIC",
    .tag = SNAP_TAG_IOAPIC,
    .freeze = ioapic_freeze,
    .thaw = ioapic_thaw,
    .save = ioapic_save,
    .restore = ioapic_restore,
};

const struct vmm_snap_part_ops *vmm_ioapic_snap_ops(void)
{
    return &ioapic_snap;
}

int vmm_ioapic_kvm_signal_msi(void *opaque, uint64_t address, uint32_t data)
{
    struct vmm_vm *vm = opaque;
    struct kvm_msi msi = {
        .address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data};
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);
    return r < 0 ? r : 0;
}

int vmm_ioapic_kvm_set_routes(void *opaque, const uint64_t *address, const uint32_t *data,
                              const bool *valid, unsigned n)
{
    struct kvm_irq_routing_entry e[VMM_IOAPIC_PINS];
    unsigned k = 0;
    if (n > VMM_IOAPIC_PINS)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (!valid[i])
            continue;
        e[k++] =
            (struct kvm_irq_routing_entry){.gsi = i,
                                           .type = KVM_IRQ_ROUTING_MSI,
                                           .u.msi = {.address_lo = (uint32_t)address[i],
                                                     .address_hi = (uint32_t)(address[i] >> 32),
                                                     .data = data[i]}};
    }
    return vmm_vm_routes_set_chip(opaque, e, k);
}
