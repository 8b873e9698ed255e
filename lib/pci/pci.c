/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PCI root complex (see pci.h): type-0 configuration headers with
 * per-byte write masks, both configuration mechanisms (0xCF8/0xCFC and
 * ECAM), BAR placement and decoding, MSI-X tables in BARs feeding KVM MSI
 * routes through irqfds, and shared INTx lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/bus.h>
#include <vmm/machine.h>
#include <vmm/memory.h>
#include <vmm/pci.h>
#include <vmm/vm.h>

#include "pci_internal.h"
#include "snapshot/snapshot_internal.h"
#include "vmm_internal.h"

/* Warnings a guest can cause (refused writes) over a bus's life. */
#define PCI_LOG_BUDGET 16

struct msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl;
};

struct vmm_pci_dev {
    struct vmm_pci_bus *bus;
    unsigned slot;
    struct vmm_pci_device desc;
    struct vmm_pci_device_ops ops;
    char name[32];

    /* Configuration space, guarded by the bus lock. */
    uint8_t cfg[PCI_CFG_SIZE];
    uint8_t wmask[PCI_CFG_SIZE];
    unsigned cap_off[VMM_PCI_MAX_CAPS];
    unsigned msix_cap;                   /* 0: none */
    uint64_t bar_addr[VMM_PCI_MAX_BARS]; /* where each BAR answers (VMM_PCI_BAR_NONE) */

    /* MSI-X, guarded by msix_lock (a leaf lock). */
    pthread_mutex_t msix_lock;
    bool msix_enabled, msix_fmask;
    struct msix_entry *table;
    uint64_t *pba;
    unsigned *gsi; /* per vector (MSI-X's, then MSI's), on a VM */
    int *irqfd;    /* per vector, on a VM; -1: none */
    /* MSI, also guarded by msix_lock: the guest's programming as last
     * written (copied from configuration space) and the pending bits. */
    unsigned msi_cap; /* 0: none */
    bool msi_enabled;
    unsigned msi_count; /* vectors enabled (Multiple Message Enable) */
    uint32_t msi_addr_lo, msi_addr_hi, msi_mask, msi_pending;
    uint16_t msi_data;

    /* What irq_mode last reported (msix_lock). */
    unsigned irq_mode, irq_mode_vectors;

    /* INTx, guarded by the bus's intx_lock. */
    bool intx_level;
    bool intx_disabled; /* the command register's INTx Disable */

    /* Why a snapshot of the VM is refused (NULL: the function can be
     * saved), vmm_pci_dev_set_snap_refusal. */
    const char *snap_refusal;
};

struct vmm_pci_bus {
    struct vmm_pci_config cfg;
    struct vmm_vm *vm; /* NULL standalone */
    pthread_mutex_t lock;
    pthread_mutex_t intx_lock;
    uint32_t config_address; /* the 0xCF8 latch */
    struct vmm_pci_dev *slots[VMM_PCI_SLOTS];
    uint64_t next_mmio32, next_mmio64, next_io; /* placement cursors */
    bool intx_line[4];                          /* per intx_gsi[] entry */
    struct vmm_bus *pio, *mmio;                 /* attached to */
    unsigned attached;                          /* ranges registered, ATTACH_* bits */
    struct vmm_log_limit refused_log;
    struct vmm_pci_stats stats; /* counters updated atomically */
};

#define ATTACH_PORTS  (1u << 0)
#define ATTACH_IO     (1u << 1)
#define ATTACH_ECAM   (1u << 2)
#define ATTACH_MMIO32 (1u << 3)
#define ATTACH_MMIO64 (1u << 4)

#define STAT_INC(b, field) __atomic_fetch_add(&(b)->stats.field, 1, __ATOMIC_RELAXED)

static void refused(struct vmm_pci_bus *b, const char *what, unsigned slot, uint64_t off)
{
    STAT_INC(b, refused_writes);
    vmm_log_limited(&b->refused_log, PCI_LOG_BUDGET, "pci: refused %s (slot %u, 0x%" PRIx64 ")",
                    what, slot, off);
}

/* ---- small helpers ---- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static bool in_range(uint64_t a, uint64_t len, uint64_t base, uint64_t size)
{
    return size && a >= base && len <= size && a - base <= size - len;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* An address a local APIC takes MSIs at (Intel SDM vol. 3, 11.11.1). */
static bool msi_address_ok(uint32_t lo, uint32_t hi)
{
    return hi == 0 && (lo & 0xfff00000u) == 0xfee00000u;
}

/* ---- MSI-X ---- */

/* Install or remove vector v's route after a change (msix_lock held). */
static void msix_update_route(struct vmm_pci_dev *d, unsigned v)
{
    const struct msix_entry *e = &d->table[v];
    bool valid = d->msix_enabled && !d->msix_fmask && !(e->ctrl & PCI_MSIX_ENTRY_MASKED) &&
                 msi_address_ok(e->addr_lo, e->addr_hi);
    if (d->ops.vector_deliverable)
        d->ops.vector_deliverable(d->desc.opaque, true, v, valid);
    if (!d->bus->vm)
        return;
    int r = vmm_vm_msi_route_set(d->bus->vm, d->gsi[v], e->addr_lo, e->data, valid);
    if (r < 0)
        vmm_log_warn("%s: MSI-X vector %u route: %s", d->name, v, vmm_strerror(r));
}

/* Send the message of route slot s (an index into gsi/irqfd: MSI-X vector
 * v is slot v, MSI vector i slot msix_vectors + i) now (msix_lock held). */
static void send_message(struct vmm_pci_dev *d, unsigned s, uint32_t addr, uint32_t data)
{
    struct vmm_pci_bus *b = d->bus;
    STAT_INC(b, msix_delivered);
    if (b->vm) {
        uint64_t one = 1;
        if (write(d->irqfd[s], &one, sizeof(one)) < 0)
            vmm_log_debug("%s: irqfd write: %s", d->name, vmm_strerror(-errno));
    } else if (b->cfg.msi) {
        b->cfg.msi(b->cfg.irq_opaque, addr, data);
    }
}

/* Send MSI-X vector v now (msix_lock held, vector deliverable). */
static void msix_send(struct vmm_pci_dev *d, unsigned v)
{
    send_message(d, v, d->table[v].addr_lo, d->table[v].data);
}

static bool msix_deliverable(const struct vmm_pci_dev *d, unsigned v)
{
    const struct msix_entry *e = &d->table[v];
    return d->msix_enabled && !d->msix_fmask && !(e->ctrl & PCI_MSIX_ENTRY_MASKED) &&
           msi_address_ok(e->addr_lo, e->addr_hi);
}

/* Send what is pending and deliverable now (msix_lock held). */
static void msix_flush_pending(struct vmm_pci_dev *d, unsigned v)
{
    uint64_t bit = 1ull << (v % 64);
    if ((d->pba[v / 64] & bit) && msix_deliverable(d, v)) {
        d->pba[v / 64] &= ~bit;
        msix_send(d, v);
    }
}

int vmm_pci_msix_notify(struct vmm_pci_dev *d, unsigned v)
{
    if (!d || v >= d->desc.msix_vectors)
        return -EINVAL;
    pthread_mutex_lock(&d->msix_lock);
    int r = 0;
    if (!d->msix_enabled) {
        r = -EAGAIN;
    } else if (msix_deliverable(d, v)) {
        msix_send(d, v);
    } else {
        d->pba[v / 64] |= 1ull << (v % 64);
        STAT_INC(d->bus, msix_pending);
    }
    pthread_mutex_unlock(&d->msix_lock);
    return r;
}

bool vmm_pci_msix_enabled(struct vmm_pci_dev *d)
{
    pthread_mutex_lock(&d->msix_lock);
    bool on = d->msix_enabled;
    pthread_mutex_unlock(&d->msix_lock);
    return on;
}

static void msi_update(struct vmm_pci_dev *d);

/* Tell the device which interrupt mode the guest chose (bus lock held;
 * msix_lock not held). */
static void irq_mode_report(struct vmm_pci_dev *d)
{
    if (!d->ops.irq_mode)
        return;
    pthread_mutex_lock(&d->msix_lock);
    unsigned mode = VMM_PCI_IRQ_INTX, n = 0;
    if (d->msix_enabled) {
        mode = VMM_PCI_IRQ_MSIX;
        n = d->desc.msix_vectors;
    } else if (d->msi_enabled) {
        mode = VMM_PCI_IRQ_MSI;
        n = d->msi_count;
    }
    bool changed = mode != d->irq_mode || n != d->irq_mode_vectors;
    d->irq_mode = mode;
    d->irq_mode_vectors = n;
    pthread_mutex_unlock(&d->msix_lock);
    if (changed)
        d->ops.irq_mode(d->desc.opaque, mode, n);
}

/* The guest wrote the MSI-X Message Control (bus lock held). */
static void msix_control_changed(struct vmm_pci_dev *d)
{
    uint16_t ctl = (uint16_t)(d->cfg[d->msix_cap + 2] | d->cfg[d->msix_cap + 3] << 8);
    pthread_mutex_lock(&d->msix_lock);
    bool en = ctl & PCI_MSIX_ENABLE, fmask = ctl & PCI_MSIX_FMASK;
    if (en != d->msix_enabled || fmask != d->msix_fmask) {
        d->msix_enabled = en;
        d->msix_fmask = fmask;
        for (unsigned v = 0; v < d->desc.msix_vectors; v++) {
            msix_update_route(d, v);
            msix_flush_pending(d, v);
        }
        if (d->msi_cap)
            msi_update(d); /* MSI-X on turns MSI off */
    }
    pthread_mutex_unlock(&d->msix_lock);
}

/* A table access: 4 or 8 bytes, naturally aligned (else refused/all ones). */
static void msix_table_access(struct vmm_pci_dev *d, uint64_t off, void *data, uint32_t len,
                              bool write)
{
    if ((len != 4 && len != 8) || (off & (len - 1))) {
        if (write)
            refused(d->bus, "MSI-X table access width", d->slot, off);
        else
            memset(data, 0xff, len);
        return;
    }
    unsigned v = (unsigned)(off / PCI_MSIX_ENTRY_SIZE);
    pthread_mutex_lock(&d->msix_lock);
    struct msix_entry *e = &d->table[v];
    uint32_t *w = (uint32_t *)e;
    unsigned word = (unsigned)(off % PCI_MSIX_ENTRY_SIZE) / 4;
    for (unsigned i = 0; i < len / 4; i++) {
        if (write) {
            uint32_t val;
            memcpy(&val, (const uint8_t *)data + 4 * i, 4);
            /* Vector Control: only the mask bit exists. */
            w[word + i] = word + i == 3 ? (val & PCI_MSIX_ENTRY_MASKED) : val;
        } else {
            memcpy((uint8_t *)data + 4 * i, &w[word + i], 4);
        }
    }
    if (write) {
        msix_update_route(d, v);
        msix_flush_pending(d, v);
    }
    pthread_mutex_unlock(&d->msix_lock);
}

static void msix_pba_read(struct vmm_pci_dev *d, uint64_t off, void *data, uint32_t len)
{
    uint8_t bytes[8];
    pthread_mutex_lock(&d->msix_lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t o = off + i;
        bytes[i] = (uint8_t)(d->pba[o / 8] >> (8 * (o % 8)));
    }
    pthread_mutex_unlock(&d->msix_lock);
    memcpy(data, bytes, len);
}

static uint64_t msix_table_size(const struct vmm_pci_dev *d)
{
    return (uint64_t)d->desc.msix_vectors * PCI_MSIX_ENTRY_SIZE;
}

static uint64_t msix_pba_size(const struct vmm_pci_dev *d)
{
    return (d->desc.msix_vectors + 63) / 64 * 8;
}

/* ---- MSI ---- */

/* The message of MSI vector i: Message Data with its low bits replaced by
 * the vector number (multiple messages). */
static uint32_t msi_data_of(const struct vmm_pci_dev *d, unsigned i)
{
    return (d->msi_data & ~(d->msi_count - 1)) | i;
}

static bool msi_deliverable(const struct vmm_pci_dev *d, unsigned i)
{
    return d->msi_enabled && !d->msix_enabled && i < d->msi_count && !(d->msi_mask & (1u << i)) &&
           msi_address_ok(d->msi_addr_lo, d->msi_addr_hi);
}

/* Install or remove every MSI vector's route, and send what became
 * deliverable while pending (msix_lock held). */
static void msi_update(struct vmm_pci_dev *d)
{
    for (unsigned i = 0; i < d->desc.msi_vectors; i++) {
        bool ok = msi_deliverable(d, i);
        if (d->ops.vector_deliverable)
            d->ops.vector_deliverable(d->desc.opaque, false, i, ok);
        if (d->bus->vm) {
            int r = vmm_vm_msi_route_set(d->bus->vm, d->gsi[d->desc.msix_vectors + i],
                                         d->msi_addr_lo, msi_data_of(d, i), ok);
            if (r < 0)
                vmm_log_warn("%s: MSI vector %u route: %s", d->name, i, vmm_strerror(r));
        }
        if (ok && (d->msi_pending & (1u << i))) {
            d->msi_pending &= ~(1u << i);
            send_message(d, d->desc.msix_vectors + i, d->msi_addr_lo, msi_data_of(d, i));
        }
    }
}

/* The guest wrote the MSI capability (bus lock held): take its programming. */
static void msi_changed(struct vmm_pci_dev *d)
{
    const uint8_t *c = d->cfg + d->msi_cap;
    uint16_t ctl = (uint16_t)(c[2] | c[3] << 8);
    unsigned mme = (ctl >> 4) & 7, mmc = (ctl >> 1) & 7;
    pthread_mutex_lock(&d->msix_lock);
    d->msi_enabled = ctl & PCI_MSI_ENABLE;
    /* More than the device has (a hostile MME) means what it has. */
    d->msi_count = 1u << (mme < mmc ? mme : mmc);
    d->msi_addr_lo = get32(c + PCI_MSI_ADDR_LO);
    d->msi_addr_hi = get32(c + PCI_MSI_ADDR_HI);
    d->msi_data = (uint16_t)(c[PCI_MSI_DATA] | c[PCI_MSI_DATA + 1] << 8);
    d->msi_mask = get32(c + PCI_MSI_MASK);
    msi_update(d);
    pthread_mutex_unlock(&d->msix_lock);
}

int vmm_pci_msi_notify(struct vmm_pci_dev *d, unsigned i)
{
    if (!d || i >= d->desc.msi_vectors)
        return -EINVAL;
    pthread_mutex_lock(&d->msix_lock);
    int r = 0;
    if (!d->msi_enabled || d->msix_enabled || i >= d->msi_count) {
        r = -EAGAIN;
    } else if (msi_deliverable(d, i)) {
        send_message(d, d->desc.msix_vectors + i, d->msi_addr_lo, msi_data_of(d, i));
    } else {
        d->msi_pending |= 1u << i;
        STAT_INC(d->bus, msix_pending);
    }
    pthread_mutex_unlock(&d->msix_lock);
    return r;
}

/* ---- INTx ---- */

/* Recompute the line of intx_gsi[pin] (intx_lock held). */
static void intx_update(struct vmm_pci_bus *b, unsigned pin)
{
    bool level = false;
    for (unsigned s = pin; s < VMM_PCI_SLOTS; s += 4) {
        struct vmm_pci_dev *d = b->slots[s];
        if (d && d->intx_level && !d->intx_disabled)
            level = true;
    }
    if (level == b->intx_line[pin])
        return;
    b->intx_line[pin] = level;
    unsigned gsi = b->cfg.intx_gsi[pin];
    if (b->vm) {
        int r = vmm_vm_set_irq(b->vm, gsi, level);
        if (r < 0)
            vmm_log_debug("pci: INTx on GSI %u: %s", gsi, vmm_strerror(r));
    } else if (b->cfg.intx) {
        b->cfg.intx(b->cfg.irq_opaque, gsi, level);
    }
}

void vmm_pci_intx_set(struct vmm_pci_dev *d, bool level)
{
    if (!d || !d->desc.intx)
        return;
    pthread_mutex_lock(&d->bus->intx_lock);
    d->intx_level = level;
    intx_update(d->bus, d->slot % 4);
    pthread_mutex_unlock(&d->bus->intx_lock);
}

/* ---- BAR decoding ---- */

static uint64_t bar_raw_address(const struct vmm_pci_dev *d, unsigned i)
{
    uint32_t lo = get32(&d->cfg[PCI_BAR0 + 4 * i]);
    if (d->desc.bars[i].flags & VMM_PCI_BAR_IO)
        return lo & ~3u;
    uint64_t a = lo & ~0xfu;
    if (d->desc.bars[i].flags & VMM_PCI_BAR_MEM64)
        a |= (uint64_t)get32(&d->cfg[PCI_BAR0 + 4 * (i + 1)]) << 32;
    return a;
}

/* Where BAR i answers given the guest's programming (bus lock held). */
static uint64_t bar_decode(const struct vmm_pci_dev *d, unsigned i)
{
    const struct vmm_pci_bar *bar = &d->desc.bars[i];
    const struct vmm_pci_config *c = &d->bus->cfg;
    uint16_t cmd = (uint16_t)(d->cfg[PCI_COMMAND] | d->cfg[PCI_COMMAND + 1] << 8);
    if (!bar->size)
        return VMM_PCI_BAR_NONE;
    uint64_t a = bar_raw_address(d, i);
    if (bar->flags & VMM_PCI_BAR_IO) {
        if ((cmd & PCI_COMMAND_IO) && in_range(a, bar->size, c->io_base, c->io_size))
            return a;
        return VMM_PCI_BAR_NONE;
    }
    if ((cmd & PCI_COMMAND_MEMORY) && (in_range(a, bar->size, c->mmio32_base, c->mmio32_size) ||
                                       in_range(a, bar->size, c->mmio64_base, c->mmio64_size)))
        return a;
    return VMM_PCI_BAR_NONE;
}

/* Re-decode every BAR of d and tell the device about moves (bus lock held). */
static void bars_remap(struct vmm_pci_dev *d)
{
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        uint64_t a = bar_decode(d, i);
        if (a == d->bar_addr[i])
            continue;
        d->bar_addr[i] = a;
        if (a == VMM_PCI_BAR_NONE && d->desc.bars[i].size && bar_raw_address(d, i) &&
            (d->cfg[PCI_COMMAND] & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY)))
            vmm_log_debug("%s: BAR %u at 0x%" PRIx64 " lies outside its window: not decoded",
                          d->name, i, bar_raw_address(d, i));
        if (d->ops.bar_moved)
            d->ops.bar_moved(d->desc.opaque, i, a);
    }
}

uint64_t vmm_pci_bar_address(struct vmm_pci_dev *d, unsigned bar)
{
    if (!d || bar >= VMM_PCI_MAX_BARS)
        return VMM_PCI_BAR_NONE;
    pthread_mutex_lock(&d->bus->lock);
    uint64_t a = d->bar_addr[bar];
    pthread_mutex_unlock(&d->bus->lock);
    return a;
}

/* ---- configuration space ---- */

static bool overlaps(unsigned reg, uint32_t len, unsigned start, unsigned n)
{
    return reg < start + n && start < reg + len;
}

static void cfg_read(struct vmm_pci_bus *b, unsigned slot, unsigned fn, unsigned reg, void *data,
                     uint32_t len)
{
    STAT_INC(b, config_reads);
    struct vmm_pci_dev *d = slot < VMM_PCI_SLOTS && fn == 0 ? b->slots[slot] : NULL;
    if (!d) {
        memset(data, 0xff, len); /* no function: all ones */
        return;
    }
    if (reg >= PCI_CFG_SIZE || len > PCI_CFG_SIZE - reg) {
        memset(data, 0, len); /* no extended capabilities */
        return;
    }
    uint8_t bytes[4];
    memcpy(bytes, &d->cfg[reg], len);
    /* MSI Pending Bits live in the MSI state. */
    if (d->msi_cap && overlaps(reg, len, d->msi_cap + PCI_MSI_PENDING, 4)) {
        uint8_t pend[4];
        pthread_mutex_lock(&d->msix_lock);
        put32(pend, d->msi_pending);
        pthread_mutex_unlock(&d->msix_lock);
        for (unsigned i = 0; i < 4; i++) {
            unsigned o = d->msi_cap + PCI_MSI_PENDING + i;
            if (o >= reg && o < reg + len)
                bytes[o - reg] = pend[i];
        }
    }
    /* Interrupt Status mirrors the INTx line. */
    if (reg <= PCI_STATUS && PCI_STATUS < reg + len) {
        pthread_mutex_lock(&b->intx_lock);
        if (d->intx_level)
            bytes[PCI_STATUS - reg] |= PCI_STATUS_INTERRUPT;
        pthread_mutex_unlock(&b->intx_lock);
    }
    memcpy(data, bytes, len);
}

static void cfg_write(struct vmm_pci_bus *b, unsigned slot, unsigned fn, unsigned reg,
                      const void *data, uint32_t len)
{
    STAT_INC(b, config_writes);
    struct vmm_pci_dev *d = slot < VMM_PCI_SLOTS && fn == 0 ? b->slots[slot] : NULL;
    if (!d || reg >= PCI_CFG_SIZE || len > PCI_CFG_SIZE - reg) {
        refused(b, d ? "write past the configuration header" : "write to an empty slot", slot, reg);
        return;
    }
    const uint8_t *in = data;
    bool changed = false;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t *p = &d->cfg[reg + i];
        uint8_t v = (uint8_t)((*p & ~d->wmask[reg + i]) | (in[i] & d->wmask[reg + i]));
        changed |= v != *p;
        *p = v;
    }
    if (d->ops.config_write)
        d->ops.config_write(d->desc.opaque, reg, data, len);
    if (!changed)
        return;
    if (overlaps(reg, len, PCI_COMMAND, 2)) {
        pthread_mutex_lock(&b->intx_lock);
        d->intx_disabled = d->cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
        if (d->desc.intx)
            intx_update(b, d->slot % 4);
        pthread_mutex_unlock(&b->intx_lock);
    }
    if (overlaps(reg, len, PCI_COMMAND, 2) || overlaps(reg, len, PCI_BAR0, 24))
        bars_remap(d);
    if (d->msix_cap && overlaps(reg, len, d->msix_cap + 2, 2))
        msix_control_changed(d);
    if (d->msi_cap && overlaps(reg, len, d->msi_cap + 2, PCI_MSI_CAP_SIZE - 2))
        msi_changed(d);
    if ((d->msix_cap && overlaps(reg, len, d->msix_cap + 2, 2)) ||
        (d->msi_cap && overlaps(reg, len, d->msi_cap + 2, 2)))
        irq_mode_report(d);
}

/* An access of len at reg: 1, 2 or 4 bytes, naturally aligned. */
static bool cfg_access_ok(unsigned reg, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4) && !(reg & (len - 1));
}

/* 0xCF8..0xCFF: CONFIG_ADDRESS (a 4-byte access at 0xCF8) and CONFIG_DATA. */
static void ports_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    pthread_mutex_lock(&b->lock);
    if (off == 0 && len == 4) {
        memcpy(data, &b->config_address, 4);
    } else if (off >= 4 && cfg_access_ok((unsigned)off - 4, len) &&
               (b->config_address & PCI_CONFIG_ENABLE) && !(b->config_address & 0x7f000000u) &&
               ((b->config_address >> 16) & 0xff) == 0) {
        uint32_t a = b->config_address;
        cfg_read(b, (a >> 11) & 0x1f, (a >> 8) & 7, (a & 0xfc) + (unsigned)(off - 4), data, len);
    } else {
        memset(data, 0xff, len);
    }
    pthread_mutex_unlock(&b->lock);
}

static void ports_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    pthread_mutex_lock(&b->lock);
    if (off == 0 && len == 4) {
        memcpy(&b->config_address, data, 4);
    } else if (off >= 4 && cfg_access_ok((unsigned)off - 4, len) &&
               (b->config_address & PCI_CONFIG_ENABLE) && !(b->config_address & 0x7f000000u) &&
               ((b->config_address >> 16) & 0xff) == 0) {
        uint32_t a = b->config_address;
        cfg_write(b, (a >> 11) & 0x1f, (a >> 8) & 7, (a & 0xfc) + (unsigned)(off - 4), data, len);
    } else if (off >= 4) {
        refused(b, "CONFIG_DATA access (disabled, other bus or misaligned)", 0, off);
    }
    /* Other widths at 0xCF8..0xCFB (0xCF9 is a PC's reset register) are not ours. */
    pthread_mutex_unlock(&b->lock);
}

static void ecam_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    unsigned reg = off & 0xfff;
    if (!cfg_access_ok(reg, len)) {
        memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&b->lock);
    cfg_read(b, (off >> 15) & 0x1f, (off >> 12) & 7, reg, data, len);
    pthread_mutex_unlock(&b->lock);
}

static void ecam_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    unsigned reg = off & 0xfff;
    pthread_mutex_lock(&b->lock);
    if (cfg_access_ok(reg, len))
        cfg_write(b, (off >> 15) & 0x1f, (off >> 12) & 7, reg, data, len);
    else
        refused(b, "misaligned ECAM write", (unsigned)(off >> 15) & 0x1f, reg);
    pthread_mutex_unlock(&b->lock);
}

/* ---- BAR windows ---- */

/* The device and BAR answering at addr (len bytes, wholly inside). */
static struct vmm_pci_dev *bar_lookup(struct vmm_pci_bus *b, uint64_t addr, uint32_t len, bool io,
                                      unsigned *bar, uint64_t *off)
{
    struct vmm_pci_dev *found = NULL;
    pthread_mutex_lock(&b->lock);
    for (unsigned s = 1; s < VMM_PCI_SLOTS && !found; s++) {
        struct vmm_pci_dev *d = b->slots[s];
        for (unsigned i = 0; d && i < VMM_PCI_MAX_BARS; i++) {
            const struct vmm_pci_bar *bd = &d->desc.bars[i];
            if (d->bar_addr[i] == VMM_PCI_BAR_NONE || !(bd->flags & VMM_PCI_BAR_IO) != !io ||
                !in_range(addr, len, d->bar_addr[i], bd->size))
                continue;
            found = d;
            *bar = i;
            *off = addr - d->bar_addr[i];
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return found;
}

static void bar_access(struct vmm_pci_bus *b, uint64_t addr, void *data, uint32_t len, bool io,
                       bool write)
{
    unsigned bar;
    uint64_t off;
    struct vmm_pci_dev *d = bar_lookup(b, addr, len, io, &bar, &off);
    STAT_INC(b, bar_accesses);
    if (!d) {
        if (!write)
            memset(data, 0xff, len);
        return;
    }
    if (d->desc.msix_vectors && bar == d->desc.msix_bar) {
        if (in_range(off, len, d->desc.msix_table_offset, msix_table_size(d))) {
            msix_table_access(d, off - d->desc.msix_table_offset, data, len, write);
            return;
        }
        if (in_range(off, len, d->desc.msix_pba_offset, msix_pba_size(d))) {
            if (write)
                refused(b, "write to the MSI-X PBA", d->slot, off);
            else
                msix_pba_read(d, off - d->desc.msix_pba_offset, data, len);
            return;
        }
    }
    if (write) {
        if (d->ops.bar_write)
            d->ops.bar_write(d->desc.opaque, bar, off, data, len);
    } else if (d->ops.bar_read) {
        d->ops.bar_read(d->desc.opaque, bar, off, data, len);
    } else {
        memset(data, 0xff, len);
    }
}

static void mmio32_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.mmio32_base + off, data, len, false, false);
}

static void mmio32_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.mmio32_base + off, (void *)data, len, false, true);
}

static void mmio64_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.mmio64_base + off, data, len, false, false);
}

static void mmio64_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.mmio64_base + off, (void *)data, len, false, true);
}

static void io_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.io_base + off, data, len, true, false);
}

static void io_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct vmm_pci_bus *b = opaque;
    bar_access(b, b->cfg.io_base + off, (void *)data, len, true, true);
}

static const struct vmm_bus_ops ports_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = ports_read, .write = ports_write};
static const struct vmm_bus_ops ecam_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = ecam_read, .write = ecam_write};
static const struct vmm_bus_ops mmio32_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = mmio32_read, .write = mmio32_write};
static const struct vmm_bus_ops mmio64_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = mmio64_read, .write = mmio64_write};
static const struct vmm_bus_ops io_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = io_read, .write = io_write};

/* ---- devices ---- */

static void dev_free(struct vmm_pci_dev *d)
{
    if (d->ops.destroy)
        d->ops.destroy(d->desc.opaque);
    for (unsigned v = 0; d->irqfd && v < d->desc.msix_vectors + d->desc.msi_vectors; v++) {
        if (d->irqfd[v] < 0)
            continue;
        (void)vmm_vm_irqfd_remove(d->bus->vm, d->irqfd[v], d->gsi[v]);
        close(d->irqfd[v]);
        vmm_vm_msi_route_free(d->bus->vm, d->gsi[v]);
    }
    free(d->irqfd);
    free(d->gsi);
    free(d->table);
    free(d->pba);
    pthread_mutex_destroy(&d->msix_lock);
    free(d);
}

/* Check a description against itself (sizes, flags, MSI-X and caps). */
static int desc_check(const struct vmm_pci_device *dv)
{
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        const struct vmm_pci_bar *bar = &dv->bars[i];
        if (!bar->size)
            continue;
        if (bar->flags & ~(VMM_PCI_BAR_IO | VMM_PCI_BAR_MEM64 | VMM_PCI_BAR_PREFETCH))
            return -EINVAL;
        if (bar->size & (bar->size - 1))
            return -EINVAL;
        if (bar->flags & VMM_PCI_BAR_IO) {
            if (bar->flags != VMM_PCI_BAR_IO || bar->size < 4 || bar->size > 256)
                return -EINVAL;
        } else if (bar->size < 16 ||
                   (!(bar->flags & VMM_PCI_BAR_MEM64) && bar->size > (1u << 31))) {
            return -EINVAL;
        }
        if (bar->flags & VMM_PCI_BAR_MEM64) {
            if (i == VMM_PCI_MAX_BARS - 1 || dv->bars[i + 1].size)
                return -EINVAL; /* the upper half takes the next slot */
            i++;
        }
    }
    if (dv->msix_vectors) {
        unsigned n = dv->msix_vectors;
        uint64_t tsize = (uint64_t)n * PCI_MSIX_ENTRY_SIZE, psize = (n + 63) / 64 * 8;
        if (n > VMM_PCI_MSIX_MAX || dv->msix_bar >= VMM_PCI_MAX_BARS)
            return -EINVAL;
        const struct vmm_pci_bar *bar = &dv->bars[dv->msix_bar];
        if (!bar->size || (bar->flags & VMM_PCI_BAR_IO) || (dv->msix_table_offset & 7) ||
            (dv->msix_pba_offset & 7) || !in_range(dv->msix_table_offset, tsize, 0, bar->size) ||
            !in_range(dv->msix_pba_offset, psize, 0, bar->size) ||
            (dv->msix_table_offset < dv->msix_pba_offset + psize &&
             dv->msix_pba_offset < dv->msix_table_offset + tsize) ||
            dv->msix_table_offset > UINT32_MAX || dv->msix_pba_offset > UINT32_MAX)
            return -EINVAL;
    }
    if (dv->msi_vectors > 32 || (dv->msi_vectors & (dv->msi_vectors - 1)))
        return -EINVAL;
    if (dv->nr_caps > VMM_PCI_MAX_CAPS || (dv->nr_caps && !dv->caps))
        return -EINVAL;
    unsigned room = PCI_CFG_SIZE - PCI_CAP_START - (dv->msix_vectors ? PCI_MSIX_CAP_SIZE : 0) -
                    (dv->msi_vectors ? PCI_MSI_CAP_SIZE : 0);
    for (unsigned i = 0; i < dv->nr_caps; i++) {
        unsigned need = align_up(2u + dv->caps[i].len, 4);
        if (dv->caps[i].len < 2 || dv->caps[i].len > 64 || !dv->caps[i].data || need > room)
            return -EINVAL;
        room -= need;
    }
    return 0;
}

/* Lay out the type-0 header, its write masks and capabilities. */
static void header_init(struct vmm_pci_dev *d)
{
    const struct vmm_pci_device *dv = &d->desc;
    uint8_t *c = d->cfg, *w = d->wmask;
    put16(c + PCI_VENDOR_ID, dv->vendor_id);
    put16(c + PCI_DEVICE_ID, dv->device_id);
    put16(w + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                               PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    c[PCI_REVISION] = dv->revision;
    c[PCI_PROG_IF] = dv->prog_if;
    put16(c + PCI_CLASS_DEVICE, dv->class_code);
    w[PCI_CACHE_LINE] = 0xff;
    w[PCI_LATENCY] = 0xff;
    put16(c + PCI_SUBSYSTEM_VENDOR_ID, dv->subsystem_vendor_id);
    put16(c + PCI_SUBSYSTEM_ID, dv->subsystem_id);
    if (dv->intx) {
        c[PCI_INTERRUPT_PIN] = 1; /* INTA */
        unsigned gsi = d->bus->cfg.intx_gsi[d->slot % 4];
        c[PCI_INTERRUPT_LINE] = gsi < 0xff ? (uint8_t)gsi : 0xff;
    }
    w[PCI_INTERRUPT_LINE] = 0xff;

    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        const struct vmm_pci_bar *bar = &dv->bars[i];
        if (!bar->size)
            continue;
        uint8_t *r = c + PCI_BAR0 + 4 * i, *m = w + PCI_BAR0 + 4 * i;
        uint64_t mask = ~(bar->size - 1);
        if (bar->flags & VMM_PCI_BAR_IO) {
            put32(r, 1);
            put32(m, (uint32_t)mask & 0xfffcu);
            continue;
        }
        uint32_t flags = (bar->flags & VMM_PCI_BAR_PREFETCH ? PCI_BAR_PREFETCH : 0) |
                         (bar->flags & VMM_PCI_BAR_MEM64 ? PCI_BAR_MEM64 : 0);
        put32(r, flags);
        put32(m, (uint32_t)mask & ~0xfu);
        if (bar->flags & VMM_PCI_BAR_MEM64) {
            put32(m + 4, (uint32_t)(mask >> 32));
            i++;
        }
    }

    /* Capabilities: MSI-X first, then the device's, each 4-byte aligned. */
    unsigned off = PCI_CAP_START;
    uint8_t *prev_next = &c[PCI_CAP_PTR];
    if (dv->msix_vectors) {
        d->msix_cap = off;
        *prev_next = (uint8_t)off;
        c[off] = PCI_CAP_ID_MSIX;
        put16(c + off + 2, (uint16_t)(dv->msix_vectors - 1));
        put16(w + off + 2, PCI_MSIX_ENABLE | PCI_MSIX_FMASK);
        put32(c + off + 4, (uint32_t)dv->msix_table_offset | dv->msix_bar);
        put32(c + off + 8, (uint32_t)dv->msix_pba_offset | dv->msix_bar);
        prev_next = &c[off + 1];
        off += PCI_MSIX_CAP_SIZE;
    }
    if (dv->msi_vectors) {
        /* 64-bit addresses and per-vector masking; Multiple Message Capable
         * says how many vectors the device has. */
        unsigned mmc = (unsigned)__builtin_ctz(dv->msi_vectors);
        d->msi_cap = off;
        d->msi_count = 1;
        *prev_next = (uint8_t)off;
        c[off] = PCI_CAP_ID_MSI;
        put16(c + off + 2, (uint16_t)(PCI_MSI_64BIT | PCI_MSI_PVM | mmc << 1));
        put16(w + off + 2, PCI_MSI_ENABLE | PCI_MSI_MME_MASK);
        put32(w + off + PCI_MSI_ADDR_LO, 0xfffffffcu);
        put32(w + off + PCI_MSI_ADDR_HI, 0xffffffffu);
        put16(w + off + PCI_MSI_DATA, 0xffff);
        put32(w + off + PCI_MSI_MASK, (uint32_t)((1ull << dv->msi_vectors) - 1));
        prev_next = &c[off + 1];
        off += PCI_MSI_CAP_SIZE;
    }
    for (unsigned i = 0; i < dv->nr_caps; i++) {
        d->cap_off[i] = off;
        *prev_next = (uint8_t)off;
        c[off] = dv->caps[i].id;
        memcpy(c + off + 2, dv->caps[i].data, dv->caps[i].len);
        prev_next = &c[off + 1];
        off += align_up(2u + dv->caps[i].len, 4);
    }
    if (c[PCI_CAP_PTR])
        put16(c + PCI_STATUS, PCI_STATUS_CAP_LIST);
}

/* Place BAR i in its window (bus lock held). */
static int bar_place(struct vmm_pci_bus *b, struct vmm_pci_dev *d, unsigned i)
{
    const struct vmm_pci_bar *bar = &d->desc.bars[i];
    uint64_t *next, base, size;
    if (bar->flags & VMM_PCI_BAR_IO) {
        next = &b->next_io, base = b->cfg.io_base, size = b->cfg.io_size;
    } else if ((bar->flags & VMM_PCI_BAR_MEM64) && (bar->flags & VMM_PCI_BAR_PREFETCH) &&
               b->cfg.mmio64_size) {
        next = &b->next_mmio64, base = b->cfg.mmio64_base, size = b->cfg.mmio64_size;
    } else {
        next = &b->next_mmio32, base = b->cfg.mmio32_base, size = b->cfg.mmio32_size;
    }
    uint64_t a = align_up(*next, bar->size);
    if (!in_range(a, bar->size, base, size))
        return -ENOSPC;
    *next = a + bar->size;
    uint8_t *r = d->cfg + PCI_BAR0 + 4 * i;
    put32(r, (uint32_t)((get32(r) & (bar->flags & VMM_PCI_BAR_IO ? 3u : 0xfu)) | (uint32_t)a));
    if (bar->flags & VMM_PCI_BAR_MEM64)
        put32(r + 4, (uint32_t)(a >> 32));
    return 0;
}

/* The MSI-X table and, on a VM, a GSI and an irqfd for every MSI-X and
 * MSI vector. */
static int vectors_init(struct vmm_pci_bus *b, struct vmm_pci_dev *d)
{
    unsigned nx = d->desc.msix_vectors, n = nx + d->desc.msi_vectors;
    if (nx) {
        d->table = calloc(nx, sizeof(*d->table));
        d->pba = calloc((nx + 63) / 64, sizeof(*d->pba));
        if (!d->table || !d->pba)
            return -ENOMEM;
        for (unsigned v = 0; v < nx; v++)
            d->table[v].ctrl = PCI_MSIX_ENTRY_MASKED;
    }
    if (!b->vm)
        return 0;
    d->gsi = calloc(n, sizeof(*d->gsi));
    d->irqfd = malloc(n * sizeof(*d->irqfd));
    if (!d->gsi || !d->irqfd) {
        /* dev_free walks irqfd only once it is initialised. */
        free(d->gsi);
        free(d->irqfd);
        d->gsi = NULL;
        d->irqfd = NULL;
        return -ENOMEM;
    }
    for (unsigned v = 0; v < n; v++)
        d->irqfd[v] = -1;
    for (unsigned v = 0; v < n; v++) {
        int r = vmm_vm_msi_route_alloc(b->vm, &d->gsi[v]);
        if (r < 0)
            return r;
        d->irqfd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->irqfd[v] < 0) {
            r = -errno;
            vmm_vm_msi_route_free(b->vm, d->gsi[v]);
            return r;
        }
        r = vmm_vm_irqfd(b->vm, d->irqfd[v], d->gsi[v], -1);
        if (r < 0) {
            vmm_log_error("%s: irqfd for interrupt vector %u: %s", d->name, v, vmm_strerror(r));
            close(d->irqfd[v]);
            d->irqfd[v] = -1;
            vmm_vm_msi_route_free(b->vm, d->gsi[v]);
            return r;
        }
    }
    return 0;
}

/* Build a device in slot (bus lock held). On failure the device is freed
 * (ops->destroy called). */
static int dev_create(struct vmm_pci_bus *b, const struct vmm_pci_device *dv,
                      const struct vmm_pci_device_ops *ops, unsigned slot, struct vmm_pci_dev **out)
{
    struct vmm_pci_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        if (ops->destroy)
            ops->destroy(dv->opaque);
        return -ENOMEM;
    }
    d->bus = b;
    d->slot = slot;
    d->desc = *dv;
    d->desc.caps = NULL; /* copied into cfg by header_init */
    d->desc.name = NULL;
    d->ops = *ops;
    snprintf(d->name, sizeof(d->name), "%s", dv->name ? dv->name : "pci");
    pthread_mutex_init(&d->msix_lock, NULL);
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++)
        d->bar_addr[i] = VMM_PCI_BAR_NONE;
    d->snap_refusal = "an application's device model, whose state a snapshot cannot hold";
    d->desc.caps = dv->caps;
    header_init(d);
    d->desc.caps = NULL;
    int r = 0;
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS && r == 0; i++)
        if (d->desc.bars[i].size)
            r = bar_place(b, d, i);
    if (r == 0 && (d->desc.msix_vectors || d->desc.msi_vectors))
        r = vectors_init(b, d);
    if (r < 0) {
        vmm_log_error("%s: cannot add to the PCI bus: %s", d->name, vmm_strerror(r));
        dev_free(d);
        return r;
    }
    b->slots[slot] = d;
    *out = d;
    return 0;
}

int vmm_pci_add_device(struct vmm_pci_bus *b, const struct vmm_pci_device *dev,
                       struct vmm_pci_dev **out)
{
    struct vmm_pci_device dv;
    struct vmm_pci_device_ops ops;
    if (!dev || VMM_ABI_COPY_IN(&dv, dev) < 0 || (dv.ops && VMM_ABI_COPY_IN(&ops, dv.ops) < 0))
        return -EINVAL;
    if (!dv.ops)
        ops = (struct vmm_pci_device_ops){.size = sizeof(ops)};
    int r = b ? desc_check(&dv) : -EINVAL;
    if (r < 0) {
        if (ops.destroy)
            ops.destroy(dv.opaque);
        return r;
    }
    pthread_mutex_lock(&b->lock);
    unsigned slot = 1;
    while (slot < VMM_PCI_SLOTS && b->slots[slot])
        slot++;
    struct vmm_pci_dev *d = NULL;
    if (slot == VMM_PCI_SLOTS) {
        r = -ENOSPC;
        if (ops.destroy)
            ops.destroy(dv.opaque);
    } else {
        r = dev_create(b, &dv, &ops, slot, &d);
    }
    pthread_mutex_unlock(&b->lock);
    if (r == 0) {
        vmm_log_debug("%s: PCI 00:%02x.0", d->name, slot);
        if (out)
            *out = d;
    }
    return r;
}

int vmm_pci_vector_eventfd(struct vmm_pci_dev *d, bool msix, unsigned vector)
{
    if (!d || vector >= (msix ? d->desc.msix_vectors : d->desc.msi_vectors))
        return -EINVAL;
    if (!d->bus->vm)
        return -ENOENT;
    return d->irqfd[msix ? vector : d->desc.msix_vectors + vector];
}

unsigned vmm_pci_intx_gsi(const struct vmm_pci_dev *d)
{
    return d->bus->cfg.intx_gsi[d->slot % 4];
}

unsigned vmm_pci_dev_bdf(const struct vmm_pci_dev *d)
{
    return d->slot << 3;
}

unsigned vmm_pci_cap_offset(const struct vmm_pci_dev *d, unsigned index)
{
    return index < VMM_PCI_MAX_CAPS ? d->cap_off[index] : 0;
}

struct vmm_pci_bus *vmm_pci_dev_bus(struct vmm_pci_dev *d)
{
    return d->bus;
}

struct vmm_vm *vmm_pci_bus_vm(struct vmm_pci_bus *b)
{
    return b->vm;
}

/* ---- snapshots ---- */

void vmm_pci_dev_set_snap_refusal(struct vmm_pci_dev *d, const char *why)
{
    pthread_mutex_lock(&d->bus->lock);
    d->snap_refusal = why;
    pthread_mutex_unlock(&d->bus->lock);
}

int vmm_pci_bus_snap_check(struct vmm_pci_bus *b)
{
    int r = 0;
    pthread_mutex_lock(&b->lock);
    for (unsigned s = 0; s < VMM_PCI_SLOTS && r == 0; s++) {
        struct vmm_pci_dev *d = b->slots[s];
        if (d && d->snap_refusal) {
            vmm_log_error("snapshot: PCI 00:%02x.0 (%s) cannot be saved: %s", s, d->name,
                          d->snap_refusal);
            r = -ENOTSUP;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return r;
}

int vmm_pci_bus_snap_save(struct vmm_pci_bus *b, struct vmm_snap_writer *w)
{
    pthread_mutex_lock(&b->lock);
    struct pci_snap_bus head = {.version = PCI_SNAP_VERSION, .config_address = b->config_address};
    for (unsigned s = 0; s < VMM_PCI_SLOTS; s++)
        if (b->slots[s])
            head.slots |= 1u << s;
    snap_put(w, &head, sizeof(head));
    for (unsigned s = 0; s < VMM_PCI_SLOTS; s++) {
        struct vmm_pci_dev *d = b->slots[s];
        if (!d)
            continue;
        struct pci_snap_fn fn = {
            .slot = s,
            .vendor_device = get32(d->cfg + PCI_VENDOR_ID),
            .msix_vectors = d->desc.msix_vectors,
            .msi_vectors = d->desc.msi_vectors,
        };
        memcpy(fn.bar_addr, d->bar_addr, sizeof(fn.bar_addr));
        memcpy(fn.cfg, d->cfg, sizeof(fn.cfg));
        pthread_mutex_lock(&b->intx_lock);
        fn.intx_level = d->intx_level;
        pthread_mutex_unlock(&b->intx_lock);
        pthread_mutex_lock(&d->msix_lock);
        fn.msi_pending = d->msi_pending;
        snap_put(w, &fn, sizeof(fn));
        snap_put(w, d->table, msix_table_size(d));
        snap_put(w, d->pba, msix_pba_size(d));
        pthread_mutex_unlock(&d->msix_lock);
    }
    pthread_mutex_unlock(&b->lock);
    return w->err;
}

static int snap_bad(const struct vmm_pci_dev *d, const char *what, unsigned n)
{
    vmm_log_error("restore: PCI 00:%02x.0 (%s): %s %u", d->slot, d->name, what, n);
    return -EBADMSG;
}

/* One function's state (bus lock held). */
static int fn_restore(struct vmm_pci_dev *d, struct vmm_snap_reader *r)
{
    struct pci_snap_fn fn;
    if (snap_get(r, &fn, sizeof(fn)) < 0)
        return snap_bad(d, "truncated state, at slot", d->slot);
    if (fn.slot != d->slot)
        return snap_bad(d, "state out of order: it names slot", fn.slot);
    if (fn.vendor_device != get32(d->cfg + PCI_VENDOR_ID) ||
        fn.msix_vectors != d->desc.msix_vectors || fn.msi_vectors != d->desc.msi_vectors) {
        vmm_log_error("restore: PCI 00:%02x.0 (%s) is not the function saved there (%04x:%04x, "
                      "%u MSI-X and %u MSI vectors)",
                      d->slot, d->name, fn.vendor_device & 0xffff, fn.vendor_device >> 16,
                      fn.msix_vectors, fn.msi_vectors);
        return -EINVAL;
    }
    /* The guest writes only what the write masks let through. */
    for (unsigned i = 0; i < PCI_CFG_SIZE; i++)
        if ((fn.cfg[i] ^ d->cfg[i]) & ~d->wmask[i])
            return snap_bad(d, "read-only bits changed in configuration register", i);
    if (fn.intx_level > 1 || (fn.intx_level && !d->desc.intx))
        return snap_bad(d, "INTx level", fn.intx_level);
    if (fn.msi_pending & ~(uint32_t)((1ull << fn.msi_vectors) - 1))
        return snap_bad(d, "MSI pending bits beyond the vectors:", fn.msi_pending);

    unsigned nx = d->desc.msix_vectors;
    struct msix_entry table[VMM_PCI_MSIX_MAX];
    uint64_t pba[VMM_PCI_MSIX_MAX / 64];
    if (snap_get(r, table, msix_table_size(d)) < 0 || snap_get(r, pba, msix_pba_size(d)) < 0)
        return snap_bad(d, "truncated MSI-X state, at slot", d->slot);
    uint16_t ctl =
        d->msix_cap ? (uint16_t)(fn.cfg[d->msix_cap + 2] | fn.cfg[d->msix_cap + 3] << 8) : 0;
    bool en = ctl & PCI_MSIX_ENABLE, fmask = ctl & PCI_MSIX_FMASK;
    for (unsigned v = 0; v < nx; v++) {
        const struct msix_entry *e = &table[v];
        bool pending = pba[v / 64] & (1ull << (v % 64));
        if (e->ctrl & ~PCI_MSIX_ENTRY_MASKED)
            return snap_bad(d, "reserved Vector Control bits in MSI-X vector", v);
        if (pending && en && !fmask && !(e->ctrl & PCI_MSIX_ENTRY_MASKED) &&
            msi_address_ok(e->addr_lo, e->addr_hi))
            return snap_bad(d, "pending yet deliverable: MSI-X vector", v);
    }
    for (unsigned v = nx; v < (unsigned)msix_pba_size(d) * 8; v++)
        if (pba[v / 64] & (1ull << (v % 64)))
            return snap_bad(d, "MSI-X pending bit beyond the table:", v);

    /* Where the BARs answered must follow from the registers (and lie in
     * their windows). */
    uint8_t old[PCI_CFG_SIZE];
    memcpy(old, d->cfg, sizeof(old));
    memcpy(d->cfg, fn.cfg, sizeof(fn.cfg));
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        if (bar_decode(d, i) != fn.bar_addr[i]) {
            vmm_log_error("restore: PCI 00:%02x.0 (%s): BAR %u at 0x%" PRIx64
                          " does not follow from its registers or lies outside its window",
                          d->slot, d->name, i, fn.bar_addr[i]);
            memcpy(d->cfg, old, sizeof(old));
            return -EBADMSG;
        }
    }

    pthread_mutex_lock(&d->bus->intx_lock);
    d->intx_level = fn.intx_level;
    d->intx_disabled = d->cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
    pthread_mutex_unlock(&d->bus->intx_lock);
    bars_remap(d);
    pthread_mutex_lock(&d->msix_lock);
    if (nx) {
        memcpy(d->table, table, msix_table_size(d));
        memcpy(d->pba, pba, msix_pba_size(d));
    }
    d->msix_enabled = en;
    d->msix_fmask = fmask;
    for (unsigned v = 0; v < nx; v++)
        msix_update_route(d, v);
    d->msi_pending = fn.msi_pending;
    pthread_mutex_unlock(&d->msix_lock);
    if (d->msi_cap)
        msi_changed(d); /* routes, and what is pending and deliverable goes out */
    irq_mode_report(d);
    return 0;
}

int vmm_pci_bus_snap_restore(struct vmm_pci_bus *b, struct vmm_snap_reader *r)
{
    struct pci_snap_bus head;
    if (snap_get(r, &head, sizeof(head)) < 0) {
        vmm_log_error("restore: the PCI root complex's state is truncated");
        return -EBADMSG;
    }
    if (head.version != PCI_SNAP_VERSION) {
        vmm_log_error("restore: the PCI root complex's state has format version %" PRIu32
                      ", this library reads %u",
                      head.version, PCI_SNAP_VERSION);
        return -EPROTO;
    }
    pthread_mutex_lock(&b->lock);
    uint32_t have = 0;
    for (unsigned s = 0; s < VMM_PCI_SLOTS; s++)
        if (b->slots[s])
            have |= 1u << s;
    int rc = 0;
    if (head.pad) {
        vmm_log_error("restore: malformed state of the PCI root complex");
        rc = -EBADMSG;
    } else if (head.slots != have) {
        vmm_log_error("restore: the snapshot's PCI functions (slots 0x%" PRIx32
                      ") are not this VM's (0x%" PRIx32 ")",
                      head.slots, have);
        rc = -EINVAL;
    }
    for (unsigned s = 0; s < VMM_PCI_SLOTS && rc == 0; s++)
        if (b->slots[s])
            rc = fn_restore(b->slots[s], r);
    if (rc == 0) {
        b->config_address = head.config_address;
        /* The lines as the functions drive them; the interrupt controller's
         * own state (restored with it) holds their levels already. */
        pthread_mutex_lock(&b->intx_lock);
        for (unsigned pin = 0; pin < 4; pin++) {
            bool level = false;
            for (unsigned s = pin; s < VMM_PCI_SLOTS; s += 4) {
                struct vmm_pci_dev *d = b->slots[s];
                level |= d && d->intx_level && !d->intx_disabled;
            }
            b->intx_line[pin] = level;
        }
        pthread_mutex_unlock(&b->intx_lock);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static int pci_snap_freeze(void *opaque)
{
    return vmm_pci_bus_snap_check(opaque);
}

static int pci_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    return vmm_pci_bus_snap_save(opaque, w);
}

static int pci_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    int rc = vmm_pci_bus_snap_restore(opaque, r);
    if (rc == 0 && snap_done(r) < 0) {
        vmm_log_error("restore: the PCI root complex's state has trailing bytes");
        rc = -EBADMSG;
    }
    return rc;
}

static const struct vmm_snap_part_ops pci_snap = {
    .name = "PCI root complex",
    .tag = SNAP_TAG_PCI,
    .freeze = pci_snap_freeze,
    .save = pci_snap_save,
    .restore = pci_snap_restore,
};

/* ---- the bus ---- */

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static int bus_new(const struct vmm_pci_config *cfg, struct vmm_vm *vm, struct vmm_pci_bus **out)
{
    struct vmm_pci_config c;
    if (!out || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    if (!cfg)
        c = (struct vmm_pci_config){.size = sizeof(c)};
    if (!c.ecam_base)
        c.ecam_base = VMM_PCI_ECAM_BASE;
    if (!c.mmio32_size) {
        c.mmio32_base = c.mmio32_base ? c.mmio32_base : VMM_PCI_MMIO32_BASE;
        c.mmio32_size = VMM_PCI_MMIO32_SIZE;
    }
    if (!c.io_size) {
        c.io_base = c.io_base ? c.io_base : VMM_PCI_IO_BASE;
        c.io_size = VMM_PCI_IO_SIZE;
    }
    static const unsigned default_gsi[4] = {16, 17, 18, 19};
    if (!c.intx_gsi[0] && !c.intx_gsi[1] && !c.intx_gsi[2] && !c.intx_gsi[3])
        memcpy(c.intx_gsi, default_gsi, sizeof(default_gsi));
    bool ok = !(c.ecam_base & (VMM_PCI_ECAM_SIZE - 1)) &&
              c.mmio32_base + c.mmio32_size > c.mmio32_base &&
              c.mmio32_base + c.mmio32_size <= (1ull << 32) && !(c.mmio32_base & 0xfff) &&
              !(c.mmio64_base & 0xfff) && c.mmio64_base + c.mmio64_size >= c.mmio64_base &&
              (uint64_t)c.io_base + c.io_size <= 0x10000 && !(c.io_base & 0xff) &&
              !ranges_overlap(c.ecam_base, VMM_PCI_ECAM_SIZE, c.mmio32_base, c.mmio32_size) &&
              !ranges_overlap(c.ecam_base, VMM_PCI_ECAM_SIZE, c.mmio64_base, c.mmio64_size) &&
              !ranges_overlap(c.mmio32_base, c.mmio32_size, c.mmio64_base, c.mmio64_size) &&
              !ranges_overlap(c.io_base, c.io_size, VMM_PCI_CONFIG_PORT, 8);
    /* Four distinct lines: each is driven from one pin's state. */
    for (unsigned i = 0; i < 4; i++) {
        ok = ok && c.intx_gsi[i] < VMM_IOAPIC_PINS;
        for (unsigned j = 0; j < i; j++)
            ok = ok && c.intx_gsi[i] != c.intx_gsi[j];
    }
    if (!ok)
        return -EINVAL;
    struct vmm_pci_bus *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->cfg = c;
    b->vm = vm;
    b->next_mmio32 = c.mmio32_base;
    b->next_mmio64 = c.mmio64_base;
    b->next_io = c.io_base;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->intx_lock, NULL);
    /* Slot 0: the host bridge. */
    struct vmm_pci_device host = {
        .size = sizeof(host),
        .vendor_id = PCI_HOST_VENDOR,
        .device_id = PCI_HOST_DEVICE,
        .subsystem_vendor_id = PCI_HOST_VENDOR,
        .subsystem_id = PCI_HOST_DEVICE,
        .class_code = PCI_CLASS_BRIDGE_HOST,
        .name = "pci-host",
    };
    struct vmm_pci_device_ops none = {.size = sizeof(none)};
    struct vmm_pci_dev *d;
    int r = dev_create(b, &host, &none, 0, &d);
    if (r < 0) {
        vmm_pci_bus_destroy(b);
        return r;
    }
    d->snap_refusal = NULL; /* all its state is its configuration space */
    *out = b;
    return 0;
}

int vmm_pci_bus_create(const struct vmm_pci_config *cfg, struct vmm_pci_bus **out)
{
    return bus_new(cfg, NULL, out);
}

void vmm_pci_bus_destroy(struct vmm_pci_bus *b)
{
    if (!b)
        return;
    for (unsigned s = 0; s < VMM_PCI_SLOTS; s++)
        if (b->slots[s])
            dev_free(b->slots[s]);
    pthread_mutex_destroy(&b->intx_lock);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void vmm_pci_bus_detach(struct vmm_pci_bus *b)
{
    if (!b)
        return;
    if (b->attached & ATTACH_PORTS)
        (void)vmm_bus_unregister(b->pio, VMM_PCI_CONFIG_PORT);
    if (b->attached & ATTACH_IO)
        (void)vmm_bus_unregister(b->pio, b->cfg.io_base);
    if (b->attached & ATTACH_ECAM)
        (void)vmm_bus_unregister(b->mmio, b->cfg.ecam_base);
    if (b->attached & ATTACH_MMIO32)
        (void)vmm_bus_unregister(b->mmio, b->cfg.mmio32_base);
    if (b->attached & ATTACH_MMIO64)
        (void)vmm_bus_unregister(b->mmio, b->cfg.mmio64_base);
    b->attached = 0;
}

int vmm_pci_bus_attach(struct vmm_pci_bus *b, struct vmm_bus *pio, struct vmm_bus *mmio)
{
    if (!b || !pio || !mmio || b->attached)
        return -EINVAL;
    b->pio = pio;
    b->mmio = mmio;
    const struct {
        struct vmm_bus *bus;
        uint64_t base, size;
        const struct vmm_bus_ops *ops;
        unsigned bit;
    } ranges[] = {
        {pio, VMM_PCI_CONFIG_PORT, 8, &ports_ops, ATTACH_PORTS},
        {pio, b->cfg.io_base, b->cfg.io_size, &io_ops, ATTACH_IO},
        {mmio, b->cfg.ecam_base, VMM_PCI_ECAM_SIZE, &ecam_ops, ATTACH_ECAM},
        {mmio, b->cfg.mmio32_base, b->cfg.mmio32_size, &mmio32_ops, ATTACH_MMIO32},
        {mmio, b->cfg.mmio64_base, b->cfg.mmio64_size, &mmio64_ops, ATTACH_MMIO64},
    };
    for (unsigned i = 0; i < VMM_ARRAY_SIZE(ranges); i++) {
        if (!ranges[i].size)
            continue;
        int r = vmm_bus_register(ranges[i].bus, ranges[i].base, ranges[i].size, ranges[i].ops, b);
        if (r < 0) {
            vmm_log_error("pci: registering [0x%" PRIx64 ", +0x%" PRIx64 "): %s", ranges[i].base,
                          ranges[i].size, vmm_strerror(r));
            vmm_pci_bus_detach(b);
            return r;
        }
        b->attached |= ranges[i].bit;
    }
    return 0;
}

static void pci_vm_cleanup(void *opaque)
{
    struct vmm_pci_bus *b = opaque;
    vmm_pci_bus_detach(b);
    vmm_pci_bus_destroy(b);
}

/* The first 1 GiB boundary above 4 GiB and every RAM region. */
static uint64_t default_mmio64_base(const struct vmm_memory *mem)
{
    uint64_t top = 1ull << 32;
    unsigned n = mem ? vmm_memory_region_count(mem) : 0;
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = {.size = sizeof(info)};
        if (vmm_memory_region_info(mem, i, &info) == 0 && info.gpa + info.len > top)
            top = info.gpa + info.len;
    }
    return align_up(top, 1ull << 30);
}

int vmm_vm_add_pci(struct vmm_vm *vm, const struct vmm_pci_config *cfg, struct vmm_pci_bus **out)
{
    struct vmm_pci_config c;
    if (!vm || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    if (!cfg)
        c = (struct vmm_pci_config){.size = sizeof(c)};
    if (!c.mmio64_size) {
        c.mmio64_base = default_mmio64_base(vmm_vm_memory(vm));
        c.mmio64_size = PCI_DEFAULT_MMIO64_SIZE;
    }
    c.msi = NULL;
    c.intx = NULL;
    struct vmm_pci_bus *b;
    int r = bus_new(&c, vm, &b);
    if (r < 0)
        return r;
    r = vmm_pci_bus_attach(b, vmm_vm_pio_bus(vm), vmm_vm_mmio_bus(vm));
    if (r < 0) {
        vmm_pci_bus_destroy(b);
        return r;
    }
    uint32_t instance = (uint32_t)(b->cfg.ecam_base >> 20);
    r = vmm_snap_register(vm, &pci_snap, instance, b);
    if (r < 0) {
        pci_vm_cleanup(b);
        return r;
    }
    r = vmm_vm_add_cleanup(vm, pci_vm_cleanup, b);
    if (r < 0) {
        vmm_snap_unregister(vm, SNAP_TAG_PCI, instance);
        pci_vm_cleanup(b);
        return r;
    }
    if (out)
        *out = b;
    return 0;
}

int vmm_pci_add_to_machine(const struct vmm_pci_bus *b, struct vmm_machine *m)
{
    if (!b || !m || !VMM_ABI_OUT_OK(m) ||
        m->size < offsetof(struct vmm_machine, pci) + sizeof(m->pci))
        return -EINVAL;
    if (m->nr_reserved >= VMM_MACHINE_MAX_RESERVED)
        return -ENOSPC;
    m->reserved[m->nr_reserved++] =
        (struct vmm_machine_range){.base = b->cfg.ecam_base, .size = VMM_PCI_ECAM_SIZE};
    m->pci = (struct vmm_machine_pci){
        .present = true,
        .ecam_base = b->cfg.ecam_base,
        .mmio32_base = b->cfg.mmio32_base,
        .mmio32_size = b->cfg.mmio32_size,
        .mmio64_base = b->cfg.mmio64_base,
        .mmio64_size = b->cfg.mmio64_size,
        .io_base = b->cfg.io_base,
        .io_size = b->cfg.io_size,
    };
    memcpy(m->pci.intx_gsi, b->cfg.intx_gsi, sizeof(m->pci.intx_gsi));
    return 0;
}

int vmm_pci_get_stats(struct vmm_pci_bus *b, struct vmm_pci_stats *stats)
{
    if (!b || !stats || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct vmm_pci_stats s;
    s.size = sizeof(s);
    s.config_reads = __atomic_load_n(&b->stats.config_reads, __ATOMIC_RELAXED);
    s.config_writes = __atomic_load_n(&b->stats.config_writes, __ATOMIC_RELAXED);
    s.refused_writes = __atomic_load_n(&b->stats.refused_writes, __ATOMIC_RELAXED);
    s.bar_accesses = __atomic_load_n(&b->stats.bar_accesses, __ATOMIC_RELAXED);
    s.msix_delivered = __atomic_load_n(&b->stats.msix_delivered, __ATOMIC_RELAXED);
    s.msix_pending = __atomic_load_n(&b->stats.msix_pending, __ATOMIC_RELAXED);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
