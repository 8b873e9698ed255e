/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-pci transport, modern (virtio 1.2 section 4.1): the common
 * configuration structure and its queue state machine, ISR, device
 * configuration and notification structures in BAR 0, notifications through
 * ioeventfds handled on the event loop, interrupts as per-queue MSI-X vectors
 * (or INTx with the ISR while MSI-X is off).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/pci.h>
#include <vmm/virtio.h>
#include <vmm/virtio_pci.h>
#include <vmm/vm.h>

#include "event/event_internal.h"
#include "pci/pci_internal.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/pci_regs.h"
#include "virtio_internal.h"

#define VPCI_LOG_BUDGET 16

struct vpci_queue {
    uint16_t size;
    uint16_t vector;
    bool enabled;
    bool reset_done; /* queue_reset reads 1 after a queue reset until re-enabled */
    uint64_t desc, driver, device;
    bool ioeventfd; /* its notify eventfd (t.notify) bound to its notification address with KVM */
};

struct vmm_virtio_pci {
    struct vmm_virtio_transport t; /* first: the device's handle */
    struct vmm_pci_dev *pdev;      /* NULL until the function exists */
    struct vmm_vm *vm;             /* NULL standalone */
    unsigned nr_vectors;
    uint64_t bar; /* where BAR 0 answers (VMM_PCI_BAR_NONE) */

    uint32_t dfselect, gfselect;
    uint64_t driver_features;
    uint16_t queue_select;
    uint16_t config_vector;
    uint8_t isr;
    struct vpci_queue q[VMM_VIRTIO_MAX_QUEUES];

    struct vmm_log_limit refused_log;
    struct vmm_virtio_pci_stats stats;
};

static struct vmm_virtio_pci *to_vp(struct vmm_virtio_transport *t)
{
    return (struct vmm_virtio_pci *)t;
}

static void refused(struct vmm_virtio_pci *vp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void refused(struct vmm_virtio_pci *vp, const char *fmt, ...)
{
    vp->stats.refused_writes++;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    unsigned bdf = vp->pdev ? vmm_pci_dev_bdf(vp->pdev) : 0;
    vmm_log_limited(&vp->refused_log, VPCI_LOG_BUDGET, "%s@%02x.%x: refused: %s", vp->t.name,
                    bdf >> 3, bdf & 7, msg);
}

static void vp_refused(struct vmm_virtio_transport *t, const char *msg)
{
    refused(to_vp(t), "%s", msg);
}

/* ---- interrupts ---- */

/* Send vector (MSI-X on) or set cause in the ISR and raise INTx (lock held). */
static void send(struct vmm_virtio_pci *vp, uint16_t vector, uint32_t cause)
{
    if (!vp->pdev)
        return;
    if (vmm_pci_msix_enabled(vp->pdev)) {
        /* The config-change bit is set for a driver that reads the ISR anyway. */
        if (cause == VMM_VIRTIO_INT_CONFIG)
            vp->isr |= cause;
        if (vector == VMM_PCI_NO_VECTOR)
            return; /* the driver asked for none */
        if (vmm_pci_msix_notify(vp->pdev, vector) == 0) {
            vp->stats.msix_interrupts++;
            return;
        }
    }
    vp->isr |= cause;
    vp->stats.intx_interrupts++;
    vmm_pci_intx_set(vp->pdev, true);
}

static void vp_raise(struct vmm_virtio_transport *t, uint32_t cause)
{
    struct vmm_virtio_pci *vp = to_vp(t);
    send(vp, cause == VMM_VIRTIO_INT_CONFIG ? vp->config_vector : VMM_PCI_NO_VECTOR, cause);
}

static void vp_raise_queue(struct vmm_virtio_transport *t, unsigned index)
{
    struct vmm_virtio_pci *vp = to_vp(t);
    send(vp, vp->q[index].vector, VMM_VIRTIO_INT_VRING);
}

/* ---- queue notifications ---- */

static uint64_t notify_addr(const struct vmm_virtio_pci *vp, unsigned i)
{
    return vp->bar + VPCI_NOTIFY_OFFSET + (uint64_t)i * VPCI_NOTIFY_MULTIPLIER;
}

static void bind_ioeventfd(struct vmm_virtio_pci *vp, unsigned i)
{
    struct vpci_queue *q = &vp->q[i];
    if (!vp->vm || vp->t.notify[i].fd < 0 || q->ioeventfd || !q->enabled ||
        vp->bar == VMM_PCI_BAR_NONE)
        return;
    /* Drivers write the queue index as 16 bits; other widths reach the BAR. */
    int r = vmm_vm_ioeventfd(vp->vm, vp->t.notify[i].fd, notify_addr(vp, i), 2, 0, 0);
    if (r == 0)
        q->ioeventfd = true;
    else
        vmm_log_debug("%s: ioeventfd for queue %u: %s", vp->t.name, i, vmm_strerror(r));
}

static void unbind_ioeventfd(struct vmm_virtio_pci *vp, unsigned i)
{
    struct vpci_queue *q = &vp->q[i];
    if (!q->ioeventfd)
        return;
    (void)vmm_vm_ioeventfd_remove(vp->vm, vp->t.notify[i].fd, notify_addr(vp, i), 2, 0, 0);
    q->ioeventfd = false;
}

/* The transport's queue_enabled. */
static bool vp_queue_enabled(struct vmm_virtio_transport *t, unsigned i, uint32_t *size)
{
    struct vmm_virtio_pci *vp = to_vp(t);
    *size = vp->q[i].size;
    return vp->q[i].enabled;
}

/* ---- queues ---- */

static void queue_forget(struct vmm_virtio_pci *vp, unsigned i)
{
    struct vpci_queue *q = &vp->q[i];
    unbind_ioeventfd(vp, i);
    q->enabled = false;
    q->size = (uint16_t)vp->t.dev.queue_max_size;
    q->vector = VMM_PCI_NO_VECTOR;
    q->desc = q->driver = q->device = 0;
    q->reset_done = false;
    vp->t.notify[i].kicked = false;
}

static void queue_enable(struct vmm_virtio_pci *vp, unsigned i)
{
    struct vmm_virtio_transport *t = &vp->t;
    struct vpci_queue *q = &vp->q[i];
    if (!(t->status & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        refused(vp, "queue %u enabled before FEATURES_OK", i);
        return;
    }
    if ((t->status & VMM_VIRTIO_STATUS_DRIVER_OK) && !q->reset_done) {
        refused(vp, "queue %u enabled after DRIVER_OK", i);
        return;
    }
    vmm_virtq_set_features(t->queues[i], t->features);
    int r = vmm_virtq_enable(t->queues[i], q->size, q->desc, q->driver, q->device);
    if (r < 0) {
        refused(vp,
                "queue %u: size %u, descriptors 0x%" PRIx64 ", driver 0x%" PRIx64
                ", device 0x%" PRIx64 ": %s",
                i, q->size, q->desc, q->driver, q->device,
                r == -EFAULT ? "outside guest memory" : "bad size or alignment");
        return;
    }
    q->enabled = true;
    q->reset_done = false;
    bind_ioeventfd(vp, i);
    if (t->status & VMM_VIRTIO_STATUS_DRIVER_OK)
        vmm_virtio_notify_queue(&vp->t, i);
}

static void queue_reset_one(struct vmm_virtio_pci *vp, unsigned i)
{
    struct vmm_virtio_transport *t = &vp->t;
    if (!(t->features & VMM_VIRTIO_F_RING_RESET)) {
        refused(vp, "queue_reset without VIRTIO_F_RING_RESET");
        return;
    }
    if (t->dev.ops->queue_reset)
        t->dev.ops->queue_reset(t->dev.opaque, i);
    vmm_virtq_reset(t->queues[i]);
    queue_forget(vp, i);
    vp->q[i].reset_done = true;
}

static void device_reset(struct vmm_virtio_pci *vp)
{
    vmm_virtio_transport_reset(&vp->t);
    for (unsigned i = 0; i < vp->t.dev.num_queues; i++)
        queue_forget(vp, i);
    vp->dfselect = vp->gfselect = 0;
    vp->driver_features = 0;
    vp->queue_select = 0;
    vp->config_vector = VMM_PCI_NO_VECTOR;
    vp->isr = 0;
    if (vp->pdev)
        vmm_pci_intx_set(vp->pdev, false);
}

static void activate(struct vmm_virtio_pci *vp)
{
    if (!vmm_virtio_transport_activate(&vp->t))
        return;
    for (unsigned i = 0; i < vp->t.dev.num_queues; i++)
        if (vp->q[i].enabled)
            vmm_virtio_notify_queue(&vp->t, i);
}

/* ---- the common configuration structure ---- */

static struct vpci_queue *selected(struct vmm_virtio_pci *vp)
{
    return vp->queue_select < vp->t.dev.num_queues ? &vp->q[vp->queue_select] : NULL;
}

/* Width of the field at off (0: none there). */
static unsigned common_width(uint64_t off)
{
    switch (off) {
    case VPCI_DFSELECT:
    case VPCI_DF:
    case VPCI_GFSELECT:
    case VPCI_GF:
        return 4;
    case VPCI_STATUS:
    case VPCI_CFG_GENERATION:
        return 1;
    case VPCI_Q_DESC:
    case VPCI_Q_DRIVER:
    case VPCI_Q_DEVICE:
        return 8;
    default:
        return off <= VPCI_Q_RESET && !(off & 1) ? 2 : 0;
    }
}

static uint64_t common_read(struct vmm_virtio_pci *vp, uint64_t off)
{
    struct vmm_virtio_transport *t = &vp->t;
    struct vpci_queue *q = selected(vp);
    switch (off) {
    case VPCI_DFSELECT:
        return vp->dfselect;
    case VPCI_DF:
        return vp->dfselect < 2 ? (uint32_t)(t->offered >> (32 * vp->dfselect)) : 0;
    case VPCI_GFSELECT:
        return vp->gfselect;
    case VPCI_GF:
        return vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0;
    case VPCI_MSIX_CONFIG:
        return vp->config_vector;
    case VPCI_NUM_QUEUES:
        return t->dev.num_queues;
    case VPCI_STATUS:
        return t->status & 0xff;
    case VPCI_CFG_GENERATION:
        return t->config_generation & 0xff;
    case VPCI_Q_SELECT:
        return vp->queue_select;
    case VPCI_Q_SIZE:
        return q ? q->size : 0;
    case VPCI_Q_MSIX_VECTOR:
        return q ? q->vector : VMM_PCI_NO_VECTOR;
    case VPCI_Q_ENABLE:
        return q ? q->enabled : 0;
    case VPCI_Q_NOTIFY_OFF:
        return q ? vp->queue_select : 0;
    case VPCI_Q_DESC:
        return q ? q->desc : 0;
    case VPCI_Q_DRIVER:
        return q ? q->driver : 0;
    case VPCI_Q_DEVICE:
        return q ? q->device : 0;
    case VPCI_Q_RESET:
        return q ? q->reset_done : 0;
    default:
        return 0; /* queue_notif_config_data: no VIRTIO_F_NOTIF_CONFIG_DATA */
    }
}

/* The selected queue, if its set-up registers may change now. */
static struct vpci_queue *queue_for_setup(struct vmm_virtio_pci *vp, const char *reg)
{
    struct vpci_queue *q = selected(vp);
    if (!q) {
        refused(vp, "%s for queue %u, which does not exist", reg, vp->queue_select);
        return NULL;
    }
    if (q->enabled) {
        refused(vp, "%s for queue %u while it is enabled", reg, vp->queue_select);
        return NULL;
    }
    return q;
}

/* A vector the driver asks for: one the function has, else NO_VECTOR (the
 * driver reads that back and knows it was refused). */
static uint16_t vector_or_none(struct vmm_virtio_pci *vp, uint64_t v)
{
    return v < vp->nr_vectors ? (uint16_t)v : VMM_PCI_NO_VECTOR;
}

/* Write v (width bytes, or 4 into half of a 64-bit field at base + 4*high). */
static void common_write(struct vmm_virtio_pci *vp, uint64_t off, uint64_t v, unsigned len)
{
    struct vmm_virtio_transport *t = &vp->t;
    struct vpci_queue *q;
    uint64_t *area = NULL;
    switch (off & ~7ull) {
    case VPCI_Q_DESC:
    case VPCI_Q_DRIVER:
    case VPCI_Q_DEVICE:
        if (!(q = queue_for_setup(vp, "queue address")))
            return;
        area = (off & ~7ull) == VPCI_Q_DESC     ? &q->desc
               : (off & ~7ull) == VPCI_Q_DRIVER ? &q->driver
                                                : &q->device;
        if (len == 8)
            *area = v;
        else if (off & 4)
            *area = (*area & 0xffffffffull) | v << 32;
        else
            *area = (*area & ~0xffffffffull) | (uint32_t)v;
        return;
    }
    switch (off) {
    case VPCI_DFSELECT:
        vp->dfselect = (uint32_t)v;
        return;
    case VPCI_GFSELECT:
        vp->gfselect = (uint32_t)v;
        return;
    case VPCI_GF:
        if (t->status & (VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK)) {
            refused(vp, "driver_feature after FEATURES_OK");
        } else if (vp->gfselect >= 2) {
            if (v)
                refused(vp, "driver_feature word %u: 0x%" PRIx64, vp->gfselect, v);
        } else if (vp->gfselect == 1) {
            vp->driver_features = (vp->driver_features & 0xffffffffull) | v << 32;
        } else {
            vp->driver_features = (vp->driver_features & ~0xffffffffull) | v;
        }
        return;
    case VPCI_MSIX_CONFIG:
        vp->config_vector = vector_or_none(vp, v);
        return;
    case VPCI_STATUS: {
        int step = vmm_virtio_transport_write_status(t, (uint32_t)v, vp->driver_features);
        if (step == VMM_VIRTIO_STEP_RESET)
            device_reset(vp);
        else if (step == VMM_VIRTIO_STEP_ACTIVATE)
            activate(vp);
        return;
    }
    case VPCI_Q_SELECT:
        vp->queue_select = (uint16_t)v;
        return;
    case VPCI_Q_SIZE:
        if ((q = queue_for_setup(vp, "queue_size")))
            q->size = (uint16_t)v; /* checked when the queue is enabled */
        return;
    case VPCI_Q_MSIX_VECTOR:
        if ((q = selected(vp)))
            q->vector = vector_or_none(vp, v);
        else
            refused(vp, "queue_msix_vector for queue %u, which does not exist", vp->queue_select);
        return;
    case VPCI_Q_ENABLE:
        if (!(q = selected(vp)))
            refused(vp, "queue_enable for queue %u, which does not exist", vp->queue_select);
        else if (v != 1)
            refused(vp, "queue_enable 0x%" PRIx64 " (only 1 may be written)", v);
        else if (!q->enabled)
            queue_enable(vp, vp->queue_select);
        return;
    case VPCI_Q_RESET:
        if (!selected(vp) || v != 1)
            refused(vp, "queue_reset 0x%" PRIx64 " for queue %u", v, vp->queue_select);
        else
            queue_reset_one(vp, vp->queue_select);
        return;
    default:
        refused(vp, "write of 0x%" PRIx64 " to read-only common field 0x%" PRIx64, v, off);
        return;
    }
}

/* An access to the common structure: the field's width, or 4 bytes at
 * either half of a 64-bit field. */
static bool common_access_ok(uint64_t off, uint32_t len)
{
    unsigned w = common_width(off & ~7ull) == 8 ? 8 : common_width(off);
    if (w == 8)
        return len == 8 ? !(off & 7) : len == 4 && !(off & 3);
    return w && len == w;
}

/* ---- BAR 0 ---- */

static void bar_read(void *opaque, unsigned bar, uint64_t off, void *data, uint32_t len)
{
    struct vmm_virtio_pci *vp = opaque;
    struct vmm_virtio_transport *t = &vp->t;
    memset(data, 0, len);
    if (bar != 0)
        return;
    vmm_virtio_lock(t);
    if (off < VPCI_COMMON_SIZE) {
        if (common_access_ok(off, len)) {
            /* A 64-bit field reads whole or by 32-bit halves. */
            bool wide = common_width(off & ~7ull) == 8;
            uint64_t v = common_read(vp, wide ? off & ~7ull : off);
            if (wide && (off & 4))
                v >>= 32;
            memcpy(data, &v, len);
        }
    } else if (off == VPCI_ISR_OFFSET) {
        /* Reading the ISR acknowledges it and lowers INTx. */
        uint8_t isr = vp->isr;
        vp->isr = 0;
        if (vp->pdev)
            vmm_pci_intx_set(vp->pdev, false);
        memcpy(data, &isr, 1);
    } else if (off >= VPCI_DEVICE_OFFSET && off < VPCI_NOTIFY_OFFSET) {
        uint64_t c = off - VPCI_DEVICE_OFFSET;
        if (c < t->dev.config_size && len <= t->dev.config_size - c)
            t->dev.ops->config_read(t->dev.opaque, (uint32_t)c, data, len);
    }
    vmm_virtio_unlock(t);
}

static void bar_write(void *opaque, unsigned bar, uint64_t off, const void *data, uint32_t len)
{
    struct vmm_virtio_pci *vp = opaque;
    struct vmm_virtio_transport *t = &vp->t;
    if (bar != 0)
        return;
    uint64_t v = 0;
    memcpy(&v, data, len);
    vmm_virtio_lock(t);
    if (off < VPCI_COMMON_SIZE) {
        if (common_access_ok(off, len))
            common_write(vp, off, v, len);
        else
            refused(vp, "%u-byte write at common offset 0x%" PRIx64, len, off);
    } else if (off >= VPCI_DEVICE_OFFSET && off < VPCI_NOTIFY_OFFSET) {
        uint64_t c = off - VPCI_DEVICE_OFFSET;
        if (c < t->dev.config_size && len <= t->dev.config_size - c) {
            if (t->dev.ops->config_write)
                t->dev.ops->config_write(t->dev.opaque, (uint32_t)c, data, len);
        } else {
            refused(vp, "device configuration write at 0x%" PRIx64, c);
        }
    } else if (off >= VPCI_NOTIFY_OFFSET &&
               off < VPCI_NOTIFY_OFFSET + (uint64_t)t->dev.num_queues * VPCI_NOTIFY_MULTIPLIER) {
        /* Only what no ioeventfd caught: a queue not enabled, another width. */
        unsigned i = (unsigned)((off - VPCI_NOTIFY_OFFSET) / VPCI_NOTIFY_MULTIPLIER);
        vp->stats.notify_exits++;
        if (vp->q[i].enabled && vmm_virtio_driver_ok(t))
            vmm_virtio_notify_queue(&vp->t, i);
    } else {
        refused(vp, "write at BAR offset 0x%" PRIx64, off);
    }
    vmm_virtio_unlock(t);
}

/* BAR 0 moved or decoding changed: follow it with the ioeventfds. Called
 * with the PCI bus lock held (which is taken before the device lock). */
static void bar_moved(void *opaque, unsigned bar, uint64_t addr)
{
    struct vmm_virtio_pci *vp = opaque;
    if (bar != 0)
        return;
    vmm_virtio_lock(&vp->t);
    for (unsigned i = 0; i < vp->t.dev.num_queues; i++)
        unbind_ioeventfd(vp, i);
    vp->bar = addr;
    for (unsigned i = 0; i < vp->t.dev.num_queues; i++)
        bind_ioeventfd(vp, i);
    vmm_virtio_unlock(&vp->t);
}

/* ---- snapshots: the common configuration, queues, then the device ---- */

static unsigned vp_bdf(const struct vmm_virtio_pci *vp)
{
    return vp->pdev ? vmm_pci_dev_bdf(vp->pdev) : 0;
}

/* The function's name in snapshot log lines. */
static const char *vp_where(const struct vmm_virtio_pci *vp, char *buf, size_t len)
{
    snprintf(buf, len, "%s@%02x.0", vp->t.name, vp_bdf(vp) >> 3);
    return buf;
}

int vmm_virtio_pci_snap_freeze(struct vmm_virtio_pci *vp)
{
    char where[64];
    return vmm_virtio_snap_freeze(&vp->t, vp_where(vp, where, sizeof(where)));
}

void vmm_virtio_pci_snap_thaw(struct vmm_virtio_pci *vp)
{
    vmm_virtio_snap_thaw(&vp->t);
}

int vmm_virtio_pci_snap_save(struct vmm_virtio_pci *vp, struct vmm_snap_writer *w)
{
    struct vmm_virtio_transport *t = &vp->t;
    struct vpci_snap im = {
        .version = VPCI_SNAP_VERSION,
        .type = t->dev.type,
        .num_queues = t->dev.num_queues,
        .nr_vectors = vp->nr_vectors,
        .offered = t->offered,
        .features = t->features,
        .driver_features = vp->driver_features,
        .status = t->status,
        .config_generation = t->config_generation,
        .dfselect = vp->dfselect,
        .gfselect = vp->gfselect,
        .queue_select = vp->queue_select,
        .config_vector = vp->config_vector,
        .isr = vp->isr,
        .activated = t->activated,
    };
    snap_put(w, &im, sizeof(im));
    for (unsigned i = 0; i < t->dev.num_queues; i++) {
        const struct vpci_queue *q = &vp->q[i];
        struct vpci_snap_queue qi = {.size = q->size,
                                     .vector = q->vector,
                                     .enabled = q->enabled,
                                     .reset_done = q->reset_done,
                                     .desc = q->desc,
                                     .driver = q->driver,
                                     .device = q->device};
        int r = vmm_virtq_snap_save(t->queues[i], &qi.pos);
        if (r < 0)
            return r;
        snap_put(w, &qi, sizeof(qi));
    }
    return t->snap->save(t->dev.opaque, w);
}

#define VPCI_STATUS_KNOWN                                                                          \
    (VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK |    \
     VMM_VIRTIO_STATUS_DRIVER_OK | VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET |                          \
     VMM_VIRTIO_STATUS_FAILED)

static int vp_bad(struct vmm_virtio_pci *vp, const char *what, uint64_t v)
{
    vmm_log_error("restore: %s@%02x.0: %s 0x%" PRIx64, vp->t.name, vp_bdf(vp) >> 3, what, v);
    return -EBADMSG;
}

/* A saved vector: one the function has, or none. */
static bool vector_ok(const struct vmm_virtio_pci *vp, uint16_t v)
{
    return v == VMM_PCI_NO_VECTOR || v < vp->nr_vectors;
}

static int restore_locked(struct vmm_virtio_pci *vp, struct vmm_snap_reader *r)
{
    struct vmm_virtio_transport *t = &vp->t;
    struct vpci_snap im;
    struct vpci_snap_queue qi[VMM_VIRTIO_MAX_QUEUES];
    if (snap_get(r, &im, sizeof(im)) < 0)
        return vp_bad(vp, "truncated state, size", r->left);
    if (im.version != VPCI_SNAP_VERSION) {
        vmm_log_error("restore: %s@%02x.0: state format version %" PRIu32 ", this library reads %u",
                      t->name, vp_bdf(vp) >> 3, im.version, VPCI_SNAP_VERSION);
        return -EPROTO;
    }
    if (im.type != t->dev.type || im.num_queues != t->dev.num_queues || im.offered != t->offered ||
        im.nr_vectors != vp->nr_vectors) {
        vmm_log_error("restore: %s@%02x.0 is not the device saved there (type %" PRIu32 ", %" PRIu32
                      " queues, features 0x%" PRIx64 ")",
                      t->name, vp_bdf(vp) >> 3, im.type, im.num_queues, im.offered);
        return -EINVAL;
    }
    if (snap_get(r, qi, im.num_queues * sizeof(qi[0])) < 0)
        return vp_bad(vp, "truncated queue state, size", r->left);
    if (im.status & ~VPCI_STATUS_KNOWN)
        return vp_bad(vp, "device status", im.status);
    if (im.features & ~im.offered)
        return vp_bad(vp, "features not offered", im.features & ~im.offered);
    /* Activated exactly when the driver set DRIVER_OK, unless the device
     * failed that activation (it then set NEEDS_RESET). */
    bool live = (im.status & VMM_VIRTIO_STATUS_DRIVER_OK) &&
                !(im.status & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if (im.activated > 1 || (im.activated && !(im.status & VMM_VIRTIO_STATUS_DRIVER_OK)) ||
        (!im.activated && live))
        return vp_bad(vp, "activation", im.activated);
    if (im.isr & ~(VMM_VIRTIO_INT_VRING | VMM_VIRTIO_INT_CONFIG))
        return vp_bad(vp, "ISR", im.isr);
    if (!vector_ok(vp, im.config_vector))
        return vp_bad(vp, "configuration vector beyond the MSI-X table:", im.config_vector);
    if (im.pad[0] || im.pad[1])
        return vp_bad(vp, "padding", (uint64_t)im.pad[0] | (uint64_t)im.pad[1] << 8);
    for (unsigned i = 0; i < im.num_queues; i++) {
        const struct vpci_snap_queue *s = &qi[i];
        if (s->enabled > 1 || s->reset_done > 1 || (s->enabled && s->reset_done) || s->pad[0] ||
            s->pad[1] || s->pos.broken > 1 || s->pos.pad)
            return vp_bad(vp, "malformed state of queue", i);
        if (!vector_ok(vp, s->vector))
            return vp_bad(vp, "queue vector beyond the MSI-X table:", s->vector);
        if (s->enabled && (!vmm_is_pow2(s->size) || s->size > t->dev.queue_max_size))
            return vp_bad(vp, "queue size (not a power of two, or above the maximum)", s->size);
        if (s->enabled && !(im.status & VMM_VIRTIO_STATUS_FEATURES_OK))
            return vp_bad(vp, "a queue enabled before FEATURES_OK, status", im.status);
    }

    t->features = im.features;
    t->status = im.status;
    t->config_generation = im.config_generation;
    vp->driver_features = im.driver_features;
    vp->dfselect = im.dfselect;
    vp->gfselect = im.gfselect;
    vp->queue_select = im.queue_select;
    vp->config_vector = im.config_vector;
    vp->isr = im.isr;
    for (unsigned i = 0; i < t->dev.num_queues; i++) {
        struct vpci_queue *q = &vp->q[i];
        q->size = qi[i].size;
        q->vector = qi[i].vector;
        q->desc = qi[i].desc;
        q->driver = qi[i].driver;
        q->device = qi[i].device;
        q->reset_done = qi[i].reset_done;
        vmm_virtq_set_features(t->queues[i], t->features);
        if (!qi[i].enabled)
            continue;
        if (vmm_virtq_enable(t->queues[i], q->size, q->desc, q->driver, q->device) < 0) {
            vmm_log_error("restore: %s@%02x.0: queue %u does not fit guest memory", t->name,
                          vp_bdf(vp) >> 3, i);
            return -EINVAL;
        }
        vmm_virtq_snap_restore(t->queues[i], &qi[i].pos);
        q->enabled = true;
        bind_ioeventfd(vp, i); /* at BAR 0 as the bus's restore placed it */
    }
    char where[64];
    return vmm_virtio_snap_restore_device(t, im.activated, r, vp_where(vp, where, sizeof(where)));
}

int vmm_virtio_pci_snap_restore(struct vmm_virtio_pci *vp, struct vmm_snap_reader *r)
{
    if (!vp->t.snap) {
        vmm_log_error("restore: %s@%02x.0 cannot be restored from a snapshot", vp->t.name,
                      vp_bdf(vp) >> 3);
        return -ENOTSUP;
    }
    vmm_virtio_lock(&vp->t);
    int rc = restore_locked(vp, r);
    vmm_virtio_unlock(&vp->t);
    return rc;
}

static int vp_snap_freeze(void *opaque)
{
    return vmm_virtio_pci_snap_freeze(opaque);
}

static void vp_snap_thaw(void *opaque)
{
    vmm_virtio_pci_snap_thaw(opaque);
}

static int vp_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    return vmm_virtio_pci_snap_save(opaque, w);
}

static int vp_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    return vmm_virtio_pci_snap_restore(opaque, r);
}

static const struct vmm_snap_part_ops vp_snap = {
    .name = "virtio-pci device",
    .tag = SNAP_TAG_VPCI,
    .freeze = vp_snap_freeze,
    .thaw = vp_snap_thaw,
    .save = vp_snap_save,
    .restore = vp_snap_restore,
};

/* ---- create / destroy ---- */

static void vp_free(struct vmm_virtio_pci *vp)
{
    struct vmm_virtio_transport *t = &vp->t;
    for (unsigned i = 0; i < t->dev.num_queues; i++)
        unbind_ioeventfd(vp, i);
    vp->pdev = NULL; /* going away with us: no more interrupts */
    vmm_virtio_transport_fini(t);
    free(vp);
}

static void pci_destroy(void *opaque)
{
    vp_free(opaque);
}

static const struct vmm_pci_device_ops vp_pci_ops = {
    .size = sizeof(struct vmm_pci_device_ops),
    .bar_read = bar_read,
    .bar_write = bar_write,
    .bar_moved = bar_moved,
    .destroy = pci_destroy,
};

/* The PCI class for a device type (virtio 1.2 leaves it to the device). */
static uint16_t class_for(uint32_t type)
{
    switch (type) {
    case VMM_VIRTIO_ID_NET:
        return 0x0200; /* Ethernet controller */
    case VMM_VIRTIO_ID_BLOCK:
        return 0x0180; /* mass storage, other */
    case VMM_VIRTIO_ID_CONSOLE:
        return 0x0780; /* communication, other */
    default:
        return 0x00ff; /* unclassified */
    }
}

/* A virtio_pci_cap (and notify's multiplier) as the body after id/next. */
static void cap_body(uint8_t *b, uint8_t len, uint8_t type, uint32_t offset, uint32_t length)
{
    memset(b, 0, len);
    b[0] = (uint8_t)(len + 2); /* cap_len counts the id and next bytes */
    b[1] = type;
    b[2] = 0; /* BAR 0 */
    for (unsigned i = 0; i < 4; i++) {
        b[6 + i] = (uint8_t)(offset >> (8 * i));
        b[10 + i] = (uint8_t)(length >> (8 * i));
    }
}

int vmm_virtio_pci_add(struct vmm_pci_bus *bus, const struct vmm_virtio_pci_config *cfg,
                       const struct vmm_virtio_device *dev, struct vmm_virtio_pci **out)
{
    struct vmm_virtio_pci_config c = {.size = sizeof(c)};
    struct vmm_vm *vm = bus ? vmm_pci_bus_vm(bus) : NULL;
    int r;
    if (!bus || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0)) {
        vmm_virtio_device_destroy_unused(dev);
        return -EINVAL;
    }
    if (vm && !c.mem)
        c.mem = vmm_vm_memory(vm);
    if (vm && !c.loop)
        c.loop = vmm_vm_event_loop(vm);
    if (!c.mem || (vm && !c.loop)) {
        vmm_log_error("virtio-pci: no guest memory or event loop");
        vmm_virtio_device_destroy_unused(dev);
        return -EINVAL;
    }
    struct vmm_virtio_pci *vp = calloc(1, sizeof(*vp));
    if (!vp) {
        vmm_virtio_device_destroy_unused(dev);
        return -ENOMEM;
    }
    vp->vm = vm;
    vp->bar = VMM_PCI_BAR_NONE;
    vp->config_vector = VMM_PCI_NO_VECTOR;
    r = vmm_virtio_transport_init(&vp->t, dev, c.mem, c.loop);
    if (r < 0) {
        free(vp);
        vmm_virtio_device_destroy_unused(dev);
        return r;
    }
    vp->t.raise = vp_raise;
    vp->t.raise_queue = vp_raise_queue;
    vp->t.refused = vp_refused;
    vp->t.queue_enabled = vp_queue_enabled;
    vp->t.notifies = &vp->stats.notifies;
    vp->nr_vectors = vp->t.dev.num_queues + 1;
    for (unsigned i = 0; i < vp->t.dev.num_queues; i++)
        queue_forget(vp, i);

    r = vmm_virtio_notify_watch(&vp->t);
    if (r < 0)
        goto fail;
    if (vp->t.dev.ops->attach) {
        r = vp->t.dev.ops->attach(vp->t.dev.opaque, &vp->t);
        if (r < 0)
            goto fail;
    }
    vp->t.attached = true;

    uint8_t common[14], isr[14], notify[18], device[14];
    cap_body(common, sizeof(common), VPCI_CAP_COMMON, 0, VPCI_COMMON_SIZE);
    cap_body(isr, sizeof(isr), VPCI_CAP_ISR, VPCI_ISR_OFFSET, 1);
    cap_body(notify, sizeof(notify), VPCI_CAP_NOTIFY, VPCI_NOTIFY_OFFSET,
             vp->t.dev.num_queues * VPCI_NOTIFY_MULTIPLIER);
    notify[14] = VPCI_NOTIFY_MULTIPLIER;
    cap_body(device, sizeof(device), VPCI_CAP_DEVICE, VPCI_DEVICE_OFFSET, vp->t.dev.config_size);
    struct vmm_pci_cap caps[4] = {
        {.id = VPCI_CAP_VENDOR, .len = sizeof(common), .data = common},
        {.id = VPCI_CAP_VENDOR, .len = sizeof(isr), .data = isr},
        {.id = VPCI_CAP_VENDOR, .len = sizeof(notify), .data = notify},
        {.id = VPCI_CAP_VENDOR, .len = sizeof(device), .data = device},
    };
    struct vmm_pci_device pd = {
        .size = sizeof(pd),
        .vendor_id = VPCI_VENDOR,
        .device_id = (uint16_t)(VPCI_DEVICE_BASE + vp->t.dev.type),
        .subsystem_vendor_id = VPCI_VENDOR,
        .subsystem_id = VPCI_SUBSYSTEM,
        .revision = 1,
        .class_code = class_for(vp->t.dev.type),
        .bars = {[0] = {.size = VPCI_BAR_SIZE, .flags = VMM_PCI_BAR_MEM64}},
        .msix_vectors = vp->nr_vectors,
        .msix_bar = 0,
        .msix_table_offset = VPCI_MSIX_TABLE_OFFSET,
        .msix_pba_offset = VPCI_MSIX_PBA_OFFSET,
        .intx = true,
        .nr_caps = vp->t.dev.config_size ? 4 : 3,
        .caps = caps,
        .ops = &vp_pci_ops,
        .opaque = vp,
        .name = vp->t.name,
    };
    /* From here the bus owns vp: on failure it calls pci_destroy. */
    struct vmm_pci_dev *pdev;
    r = vmm_pci_add_device(bus, &pd, &pdev);
    if (r < 0)
        return r;
    vmm_virtio_lock(&vp->t);
    vp->pdev = pdev;
    vmm_virtio_unlock(&vp->t);
    /* The bus saves the function's PCI side, the transport the rest (a
     * device model without snapshot support is refused at freeze). */
    if (vm) {
        r = vmm_snap_register(vm, &vp_snap, vmm_pci_dev_bdf(pdev), vp);
        if (r < 0) {
            /* Stays on the bus, owned by it, until the VM goes; its
             * refusal keeps snapshots of the VM from leaving it out. */
            vmm_log_error("%s: cannot take part in snapshots: %s", vp->t.name, vmm_strerror(r));
            return r;
        }
    }
    vmm_pci_dev_set_snap_refusal(pdev, NULL);
    if (out)
        *out = vp;
    return 0;

fail:
    vp_free(vp); /* destroys the device too */
    return r;
}

struct vmm_virtio_transport *vmm_virtio_pci_transport(struct vmm_virtio_pci *vp)
{
    return &vp->t;
}

struct vmm_pci_dev *vmm_virtio_pci_dev(struct vmm_virtio_pci *vp)
{
    return vp->pdev;
}

int vmm_virtio_pci_get_stats(struct vmm_virtio_pci *vp, struct vmm_virtio_pci_stats *stats)
{
    if (!vp || !stats || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    vmm_virtio_lock(&vp->t);
    struct vmm_virtio_pci_stats s = vp->stats;
    s.size = sizeof(s);
    s.status = vp->t.status;
    vmm_virtio_unlock(&vp->t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
