/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2): the
 * register file and device status state machine, queue notifications through
 * ioeventfds handled on the VM's event loop, interrupts through an irqfd,
 * and the VM glue (bus window, cleanup, machine description and the Linux
 * command-line fragment).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/bus.h>
#include <vmm/event.h>
#include <vmm/machine.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#include "event/event_internal.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/mmio_regs.h"
#include "virtio_internal.h"

/* Refused register writes logged at warning level before going quiet. */
#define MMIO_LOG_BUDGET 16

/* The driver's view of one queue, as set through the registers. */
struct mmio_queue {
    uint32_t num;
    bool ready;
    bool reset_done; /* QueueReset reads 1 after a queue reset until re-enabled */
    uint64_t desc, driver, device;
    bool ioeventfd; /* its notify eventfd (t.notify) is bound to QueueNotify with KVM */
};

struct vmm_virtio_mmio {
    struct vmm_virtio_transport t; /* first: the device's handle */
    struct vmm_virtio_mmio_config cfg;
    struct vmm_vm *vm; /* NULL when standalone */
    int irq_fd;        /* irqfd on the VM's GSI; -1 when standalone */
    bool irqfd_bound;
    bool bus_registered;

    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint64_t driver_features;
    uint32_t queue_sel;
    uint32_t interrupt_status;
    uint32_t shm_sel;
    struct mmio_queue q[VMM_VIRTIO_MAX_QUEUES];

    struct vmm_log_limit refused_log;
    struct vmm_virtio_mmio_stats stats;
};

static struct vmm_virtio_mmio *to_mmio(struct vmm_virtio_transport *t)
{
    return (struct vmm_virtio_mmio *)t;
}

static void refused(struct vmm_virtio_mmio *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void refused(struct vmm_virtio_mmio *m, const char *fmt, ...)
{
    m->stats.refused_writes++;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vmm_log_limited(&m->refused_log, MMIO_LOG_BUDGET, "%s@0x%" PRIx64 ": refused: %s", m->t.name,
                    m->cfg.base, msg);
}

static void mmio_refused(struct vmm_virtio_transport *t, const char *msg)
{
    refused(to_mmio(t), "%s", msg);
}

/* ---- interrupts ---- */

static void mmio_raise(struct vmm_virtio_transport *t, uint32_t cause)
{
    struct vmm_virtio_mmio *m = to_mmio(t);
    m->interrupt_status |= cause;
    m->stats.interrupts++;
    if (m->irq_fd >= 0) {
        uint64_t one = 1;
        /* An eventfd write fails only when the counter would overflow, and
         * then the interrupt is pending anyway. */
        if (write(m->irq_fd, &one, sizeof(one)) < 0)
            vmm_log_debug("%s: irqfd write: %s", t->name, vmm_strerror(-errno));
    } else if (m->cfg.interrupt) {
        m->cfg.interrupt(m->cfg.irq_opaque);
    }
}

/* ---- queue notifications ---- */

static void bind_ioeventfd(struct vmm_virtio_mmio *m, unsigned i)
{
    struct mmio_queue *mq = &m->q[i];
    if (!m->vm || m->t.notify[i].fd < 0 || mq->ioeventfd)
        return;
    int r = vmm_vm_ioeventfd(m->vm, m->t.notify[i].fd, m->cfg.base + VMM_VIRTIO_MMIO_QUEUE_NOTIFY,
                             4, i, VMM_IOEVENTFD_DATAMATCH);
    /* Without it, QueueNotify writes reach the bus and signal the same fd. */
    if (r == 0)
        mq->ioeventfd = true;
}

static void unbind_ioeventfd(struct vmm_virtio_mmio *m, unsigned i)
{
    struct mmio_queue *mq = &m->q[i];
    if (!mq->ioeventfd)
        return;
    (void)vmm_vm_ioeventfd_remove(m->vm, m->t.notify[i].fd,
                                  m->cfg.base + VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 4, i,
                                  VMM_IOEVENTFD_DATAMATCH);
    mq->ioeventfd = false;
}

/* The transport's queue_enabled. */
static bool mmio_queue_enabled(struct vmm_virtio_transport *t, unsigned i, uint32_t *size)
{
    struct vmm_virtio_mmio *m = to_mmio(t);
    *size = m->q[i].num;
    return m->q[i].ready;
}

/* ---- queue set-up ---- */

static void queue_disable(struct vmm_virtio_mmio *m, unsigned i)
{
    unbind_ioeventfd(m, i);
    vmm_virtq_reset(m->t.queues[i]);
    m->q[i].ready = false;
}

/* Forget everything the driver wrote about queue i, whose virtq the caller
 * has reset. */
static void queue_forget(struct vmm_virtio_mmio *m, unsigned i)
{
    struct mmio_queue *mq = &m->q[i];
    unbind_ioeventfd(m, i);
    mq->ready = false;
    mq->num = m->t.dev.queue_max_size;
    mq->desc = mq->driver = mq->device = 0;
    mq->reset_done = false;
    m->t.notify[i].kicked = false;
}

/* Reset queue i and forget everything the driver wrote about it. */
static void queue_clear(struct vmm_virtio_mmio *m, unsigned i)
{
    vmm_virtq_reset(m->t.queues[i]);
    queue_forget(m, i);
}

static void queue_set_ready(struct vmm_virtio_mmio *m, unsigned i)
{
    struct vmm_virtio_transport *t = &m->t;
    struct mmio_queue *mq = &m->q[i];
    if (!(t->status & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        refused(m, "queue %u made ready before FEATURES_OK", i);
        return;
    }
    /* A live device may only bring a queue back after resetting it alone. */
    if ((t->status & VMM_VIRTIO_STATUS_DRIVER_OK) && !mq->reset_done) {
        refused(m, "queue %u set up after DRIVER_OK", i);
        return;
    }
    struct vmm_virtq *q = t->queues[i];
    vmm_virtq_set_features(q, t->features);
    int r = vmm_virtq_enable(q, mq->num, mq->desc, mq->driver, mq->device);
    if (r < 0) {
        refused(m,
                "queue %u: size %u, descriptors 0x%" PRIx64 ", driver 0x%" PRIx64
                ", device 0x%" PRIx64 ": %s",
                i, mq->num, mq->desc, mq->driver, mq->device,
                r == -EFAULT ? "outside guest memory" : "bad size or alignment");
        return;
    }
    mq->ready = true;
    mq->reset_done = false;
    bind_ioeventfd(m, i);
    /* A queue re-enabled on a live device may already hold buffers. */
    if (t->status & VMM_VIRTIO_STATUS_DRIVER_OK)
        vmm_virtio_notify_queue(&m->t, i);
}

static void queue_reset_one(struct vmm_virtio_mmio *m, unsigned i)
{
    struct vmm_virtio_transport *t = &m->t;
    if (!(t->features & VMM_VIRTIO_F_RING_RESET)) {
        refused(m, "QueueReset without VIRTIO_F_RING_RESET");
        return;
    }
    if (t->dev.ops->queue_reset)
        t->dev.ops->queue_reset(t->dev.opaque, i);
    queue_clear(m, i);
    m->q[i].reset_done = true;
}

/* ---- device status ---- */

static void device_reset(struct vmm_virtio_mmio *m)
{
    /* Resets the device, then every virtq; notifications that arrive
     * meanwhile wait for the lock and then find no queue ready. */
    vmm_virtio_transport_reset(&m->t);
    for (unsigned i = 0; i < m->t.dev.num_queues; i++)
        queue_forget(m, i);
    m->device_features_sel = m->driver_features_sel = 0;
    m->driver_features = 0;
    m->queue_sel = 0;
    m->shm_sel = 0;
    m->interrupt_status = 0;
}

/* DRIVER_OK: activate the device, then look at every ready queue. */
static void activate(struct vmm_virtio_mmio *m)
{
    if (!vmm_virtio_transport_activate(&m->t))
        return;
    /* Drivers fill queues (and notify) before DRIVER_OK; those notifications
     * were dropped, so look at every ready queue now. */
    for (unsigned i = 0; i < m->t.dev.num_queues; i++)
        if (m->q[i].ready)
            vmm_virtio_notify_queue(&m->t, i);
}

static void write_status(struct vmm_virtio_mmio *m, uint32_t v)
{
    int step = vmm_virtio_transport_write_status(&m->t, v, m->driver_features);
    if (step == VMM_VIRTIO_STEP_RESET)
        device_reset(m);
    else if (step == VMM_VIRTIO_STEP_ACTIVATE)
        activate(m);
}

/* ---- register file ---- */

static uint32_t read_reg(struct vmm_virtio_mmio *m, uint64_t off)
{
    struct vmm_virtio_transport *t = &m->t;
    struct mmio_queue *mq = m->queue_sel < t->dev.num_queues ? &m->q[m->queue_sel] : NULL;
    switch (off) {
    case VMM_VIRTIO_MMIO_MAGIC_VALUE:
        return VMM_VIRTIO_MMIO_MAGIC;
    case VMM_VIRTIO_MMIO_VERSION:
        return 2;
    case VMM_VIRTIO_MMIO_DEVICE_ID:
        return t->dev.type;
    case VMM_VIRTIO_MMIO_VENDOR_ID:
        return VMM_VIRTIO_MMIO_VENDOR;
    case VMM_VIRTIO_MMIO_DEVICE_FEATURES:
        return m->device_features_sel < 2 ? (uint32_t)(t->offered >> (32 * m->device_features_sel))
                                          : 0;
    case VMM_VIRTIO_MMIO_QUEUE_NUM_MAX:
        return mq ? t->dev.queue_max_size : 0;
    case VMM_VIRTIO_MMIO_QUEUE_READY:
        return mq ? mq->ready : 0;
    case VMM_VIRTIO_MMIO_INTERRUPT_STATUS:
        return m->interrupt_status;
    case VMM_VIRTIO_MMIO_STATUS:
        return t->status;
    case VMM_VIRTIO_MMIO_QUEUE_DESC_LOW:
        return mq ? (uint32_t)mq->desc : 0;
    case VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH:
        return mq ? (uint32_t)(mq->desc >> 32) : 0;
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        return mq ? (uint32_t)mq->driver : 0;
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        return mq ? (uint32_t)(mq->driver >> 32) : 0;
    case VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        return mq ? (uint32_t)mq->device : 0;
    case VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        return mq ? (uint32_t)(mq->device >> 32) : 0;
    case VMM_VIRTIO_MMIO_SHM_LEN_LOW:
    case VMM_VIRTIO_MMIO_SHM_LEN_HIGH:
    case VMM_VIRTIO_MMIO_SHM_BASE_LOW:
    case VMM_VIRTIO_MMIO_SHM_BASE_HIGH:
        return 0xffffffffu; /* no shared memory regions: length -1 */
    case VMM_VIRTIO_MMIO_QUEUE_RESET:
        return mq ? mq->reset_done : 0;
    case VMM_VIRTIO_MMIO_CONFIG_GENERATION:
        return t->config_generation;
    default:
        return 0; /* write-only or reserved */
    }
}

/* Registers that describe the selected queue may not change while it is
 * ready. Returns the queue or NULL (refused). */
static struct mmio_queue *queue_for_setup(struct vmm_virtio_mmio *m, const char *reg)
{
    if (m->queue_sel >= m->t.dev.num_queues) {
        refused(m, "%s for queue %u, which does not exist", reg, m->queue_sel);
        return NULL;
    }
    struct mmio_queue *mq = &m->q[m->queue_sel];
    if (mq->ready) {
        refused(m, "%s for queue %u while it is ready", reg, m->queue_sel);
        return NULL;
    }
    return mq;
}

static void set_half(uint64_t *reg, bool high, uint32_t v)
{
    if (high)
        *reg = (*reg & 0xffffffffull) | ((uint64_t)v << 32);
    else
        *reg = (*reg & ~0xffffffffull) | v;
}

static void write_driver_features(struct vmm_virtio_mmio *m, uint32_t v)
{
    if (m->t.status & (VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK)) {
        refused(m, "DriverFeatures after FEATURES_OK");
        return;
    }
    if (m->driver_features_sel >= 2) {
        if (v)
            refused(m, "DriverFeatures word %u: 0x%x", m->driver_features_sel, v);
        return;
    }
    set_half(&m->driver_features, m->driver_features_sel == 1, v);
}

static void write_queue_ready(struct vmm_virtio_mmio *m, uint32_t v)
{
    struct vmm_virtio_transport *t = &m->t;
    if (m->queue_sel >= t->dev.num_queues) {
        refused(m, "QueueReady for queue %u, which does not exist", m->queue_sel);
        return;
    }
    struct mmio_queue *mq = &m->q[m->queue_sel];
    if (v == 1 && !mq->ready)
        queue_set_ready(m, m->queue_sel);
    else if (v == 0 && mq->ready) {
        /* The device lets go of the queue's requests first, so none
         * completes into a queue the driver took away. */
        if (t->dev.ops->queue_reset)
            t->dev.ops->queue_reset(t->dev.opaque, m->queue_sel);
        queue_disable(m, m->queue_sel);
    } else if (v > 1)
        refused(m, "QueueReady 0x%x", v);
}

static void write_queue_notify(struct vmm_virtio_mmio *m, uint32_t v)
{
    struct vmm_virtio_transport *t = &m->t;
    /* With an ioeventfd bound this only sees writes KVM did not match: a
     * queue that is not ready or does not exist. */
    m->stats.notify_exits++;
    if (v >= t->dev.num_queues || !m->q[v].ready) {
        vmm_log_debug("%s: notify of queue %u, which is not ready", t->name, v);
        return;
    }
    if (!vmm_virtio_driver_ok(t))
        return; /* looked at when DRIVER_OK is set */
    vmm_virtio_notify_queue(&m->t, v);
}

static void write_queue_reset(struct vmm_virtio_mmio *m, uint32_t v)
{
    if (v != 1 || m->queue_sel >= m->t.dev.num_queues) {
        refused(m, "QueueReset 0x%x for queue %u", v, m->queue_sel);
        return;
    }
    queue_reset_one(m, m->queue_sel);
}

/* One half of the selected queue's descriptor, driver or device area. */
static void write_queue_area(struct vmm_virtio_mmio *m, uint64_t off, uint32_t v)
{
    struct mmio_queue *mq;
    switch (off) {
    case VMM_VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if ((mq = queue_for_setup(m, "QueueDesc")))
            set_half(&mq->desc, off == VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
        return;
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        if ((mq = queue_for_setup(m, "QueueDriver")))
            set_half(&mq->driver, off == VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
        return;
    default:
        if ((mq = queue_for_setup(m, "QueueDevice")))
            set_half(&mq->device, off == VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
        return;
    }
}

static void write_reg(struct vmm_virtio_mmio *m, uint64_t off, uint32_t v)
{
    struct mmio_queue *mq;
    switch (off) {
    case VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        m->device_features_sel = v;
        return;
    case VMM_VIRTIO_MMIO_DRIVER_FEATURES:
        write_driver_features(m, v);
        return;
    case VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        m->driver_features_sel = v;
        return;
    case VMM_VIRTIO_MMIO_QUEUE_SEL:
        m->queue_sel = v;
        return;
    case VMM_VIRTIO_MMIO_QUEUE_NUM:
        if ((mq = queue_for_setup(m, "QueueNum")))
            mq->num = v;
        return;
    case VMM_VIRTIO_MMIO_QUEUE_READY:
        write_queue_ready(m, v);
        return;
    case VMM_VIRTIO_MMIO_QUEUE_NOTIFY:
        write_queue_notify(m, v);
        return;
    case VMM_VIRTIO_MMIO_INTERRUPT_ACK:
        m->interrupt_status &= ~v;
        return;
    case VMM_VIRTIO_MMIO_STATUS:
        write_status(m, v);
        return;
    case VMM_VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
    case VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        write_queue_area(m, off, v);
        return;
    case VMM_VIRTIO_MMIO_SHM_SEL:
        m->shm_sel = v;
        return;
    case VMM_VIRTIO_MMIO_QUEUE_RESET:
        write_queue_reset(m, v);
        return;
    default:
        refused(m, "write of 0x%x to read-only or reserved register 0x%" PRIx64, v, off);
        return;
    }
}

static void mmio_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct vmm_virtio_mmio *m = opaque;
    struct vmm_virtio_transport *t = &m->t;
    memset(data, 0, len);
    vmm_virtio_lock(t);
    if (offset >= VMM_VIRTIO_MMIO_CONFIG) {
        uint64_t coff = offset - VMM_VIRTIO_MMIO_CONFIG;
        if (coff < t->dev.config_size && len <= t->dev.config_size - coff)
            t->dev.ops->config_read(t->dev.opaque, (uint32_t)coff, data, len);
    } else if (len == 4 && !(offset & 3)) {
        uint32_t v = read_reg(m, offset);
        memcpy(data, &v, 4);
    } else {
        vmm_log_debug("%s: %u-byte read of register 0x%" PRIx64, t->name, len, offset);
    }
    vmm_virtio_unlock(t);
}

static void mmio_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_virtio_mmio *m = opaque;
    struct vmm_virtio_transport *t = &m->t;
    vmm_virtio_lock(t);
    if (offset >= VMM_VIRTIO_MMIO_CONFIG) {
        uint64_t coff = offset - VMM_VIRTIO_MMIO_CONFIG;
        if (coff < t->dev.config_size && len <= t->dev.config_size - coff) {
            if (t->dev.ops->config_write)
                t->dev.ops->config_write(t->dev.opaque, (uint32_t)coff, data, len);
        } else {
            refused(m, "config write at 0x%" PRIx64 " past the configuration space", coff);
        }
    } else if (len == 4 && !(offset & 3)) {
        uint32_t v;
        memcpy(&v, data, 4);
        write_reg(m, offset, v);
    } else {
        refused(m, "%u-byte write of register 0x%" PRIx64, len, offset);
    }
    vmm_virtio_unlock(t);
}

static const struct vmm_bus_ops mmio_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = mmio_read, .write = mmio_write};

const struct vmm_bus_ops *vmm_virtio_mmio_bus_ops(void)
{
    return &mmio_ops;
}

/* ---- create / destroy ---- */

static void mmio_free(struct vmm_virtio_mmio *m)
{
    struct vmm_virtio_transport *t = &m->t;
    for (unsigned i = 0; i < t->dev.num_queues; i++)
        unbind_ioeventfd(m, i);
    /* Resets the device (no more interrupts), then destroys it. */
    vmm_virtio_transport_fini(t);
    if (m->irqfd_bound)
        (void)vmm_vm_irqfd_remove(m->vm, m->irq_fd, m->cfg.gsi);
    if (m->irq_fd >= 0)
        close(m->irq_fd);
    free(m);
}

/* Build a transport; vm may be NULL (standalone). On failure the device is
 * destroyed. */
static int mmio_create(const struct vmm_virtio_mmio_config *cfg,
                       const struct vmm_virtio_device *dev, struct vmm_vm *vm,
                       struct vmm_virtio_mmio **out)
{
    int r;
    struct vmm_virtio_mmio *m = NULL;
    struct vmm_virtio_mmio_config c;
    if (!cfg || VMM_ABI_COPY_IN(&c, cfg) < 0 || !c.mem || !dev || !out) {
        r = -EINVAL;
        goto fail_dev;
    }
    cfg = &c;
    m = calloc(1, sizeof(*m));
    if (!m) {
        r = -ENOMEM;
        goto fail_dev;
    }
    m->cfg = *cfg;
    m->vm = vm;
    m->irq_fd = -1;
    r = vmm_virtio_transport_init(&m->t, dev, cfg->mem, cfg->loop);
    if (r < 0) {
        free(m);
        m = NULL;
        goto fail_dev;
    }
    m->t.raise = mmio_raise;
    m->t.refused = mmio_refused;
    m->t.queue_enabled = mmio_queue_enabled;
    m->t.notifies = &m->stats.notifies;
    for (unsigned i = 0; i < m->t.dev.num_queues; i++)
        m->q[i].num = m->t.dev.queue_max_size;

    r = vmm_virtio_notify_watch(&m->t);
    if (r < 0)
        goto fail;
    if (vm) {
        m->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->irq_fd < 0) {
            r = -errno;
            goto fail;
        }
        r = vmm_vm_irqfd(vm, m->irq_fd, cfg->gsi, -1);
        if (r < 0) {
            vmm_log_error("%s: irqfd on GSI %u: %s", m->t.name, cfg->gsi, vmm_strerror(r));
            goto fail;
        }
        m->irqfd_bound = true;
    }
    if (m->t.dev.ops->attach) {
        r = m->t.dev.ops->attach(m->t.dev.opaque, &m->t);
        if (r < 0)
            goto fail;
    }
    m->t.attached = true;
    *out = m;
    return 0;

fail:
    mmio_free(m); /* destroys the device too */
    return r;
fail_dev:
    vmm_virtio_device_destroy_unused(dev);
    return r;
}

int vmm_virtio_mmio_create(const struct vmm_virtio_mmio_config *cfg,
                           const struct vmm_virtio_device *dev, struct vmm_virtio_mmio **out)
{
    return mmio_create(cfg, dev, NULL, out);
}

void vmm_virtio_mmio_destroy(struct vmm_virtio_mmio *mmio)
{
    if (mmio)
        mmio_free(mmio);
}

struct vmm_virtio_transport *vmm_virtio_mmio_transport(struct vmm_virtio_mmio *mmio)
{
    return &mmio->t;
}

/* ---- snapshots: registers, queues, then the device's own state ---- */

struct mmio_queue_image {
    uint32_t num, ready, reset_done, pad;
    uint64_t desc, driver, device;
    struct virtq_snap pos;
    uint8_t pad2[6];
};

struct mmio_image {
    uint32_t type, num_queues;
    uint64_t offered, features, driver_features;
    uint32_t status, config_generation;
    uint32_t device_features_sel, driver_features_sel, queue_sel, interrupt_status, shm_sel;
    uint32_t activated;
};

/* The device's name in snapshot log lines. */
static const char *mmio_where(const struct vmm_virtio_mmio *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s@0x%" PRIx64, m->t.name, m->cfg.base);
    return buf;
}

/* Hold the transport still: the device finishes its requests, and no
 * queue may have chains out. Keeps the lock until thaw. */
static int mmio_freeze(void *opaque)
{
    struct vmm_virtio_mmio *m = opaque;
    char where[64];
    return vmm_virtio_snap_freeze(&m->t, mmio_where(m, where, sizeof(where)));
}

static void mmio_thaw(void *opaque)
{
    struct vmm_virtio_mmio *m = opaque;
    vmm_virtio_snap_thaw(&m->t);
}

static int mmio_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vmm_virtio_mmio *m = opaque;
    struct vmm_virtio_transport *t = &m->t;
    struct mmio_image im = {
        .type = t->dev.type,
        .num_queues = t->dev.num_queues,
        .offered = t->offered,
        .features = t->features,
        .driver_features = m->driver_features,
        .status = t->status,
        .config_generation = t->config_generation,
        .device_features_sel = m->device_features_sel,
        .driver_features_sel = m->driver_features_sel,
        .queue_sel = m->queue_sel,
        .interrupt_status = m->interrupt_status,
        .shm_sel = m->shm_sel,
        .activated = t->activated,
    };
    snap_put(w, &im, sizeof(im));
    for (unsigned i = 0; i < t->dev.num_queues; i++) {
        struct mmio_queue *mq = &m->q[i];
        struct mmio_queue_image qi = {.num = mq->num,
                                      .ready = mq->ready,
                                      .reset_done = mq->reset_done,
                                      .desc = mq->desc,
                                      .driver = mq->driver,
                                      .device = mq->device};
        int r = vmm_virtq_snap_save(t->queues[i], &qi.pos);
        if (r < 0)
            return r;
        snap_put(w, &qi, sizeof(qi));
    }
    return t->snap->save(t->dev.opaque, w);
}

#define MMIO_STATUS_KNOWN                                                                          \
    (VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK |    \
     VMM_VIRTIO_STATUS_DRIVER_OK | VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET |                          \
     VMM_VIRTIO_STATUS_FAILED)

static int mmio_restore_locked(struct vmm_virtio_mmio *m, struct vmm_snap_reader *r)
{
    struct vmm_virtio_transport *t = &m->t;
    struct mmio_image im;
    struct mmio_queue_image qi[VMM_VIRTIO_MAX_QUEUES];
    if (snap_get(r, &im, sizeof(im)) < 0 || im.num_queues > VMM_VIRTIO_MAX_QUEUES ||
        snap_get(r, qi, im.num_queues * sizeof(qi[0])) < 0 || (im.status & ~MMIO_STATUS_KNOWN) ||
        (im.features & ~im.offered) || im.activated > 1)
        goto bad;
    /* Activated exactly when the driver set DRIVER_OK, unless the device
     * failed that activation (it then set NEEDS_RESET). */
    bool live = (im.status & VMM_VIRTIO_STATUS_DRIVER_OK) &&
                !(im.status & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    if (!im.activated && live)
        goto bad;
    if (im.type != t->dev.type || im.num_queues != t->dev.num_queues || im.offered != t->offered) {
        vmm_log_error("restore: %s@0x%" PRIx64 " is not the device saved there (type %" PRIu32
                      ", %" PRIu32 " queues, features 0x%" PRIx64 ")",
                      t->name, m->cfg.base, im.type, im.num_queues, im.offered);
        return -EINVAL;
    }
    t->features = im.features;
    t->status = im.status;
    t->config_generation = im.config_generation;
    m->driver_features = im.driver_features;
    m->device_features_sel = im.device_features_sel;
    m->driver_features_sel = im.driver_features_sel;
    m->queue_sel = im.queue_sel;
    m->interrupt_status = im.interrupt_status;
    m->shm_sel = im.shm_sel;
    for (unsigned i = 0; i < t->dev.num_queues; i++) {
        struct mmio_queue *mq = &m->q[i];
        if (qi[i].ready > 1 || qi[i].reset_done > 1 || qi[i].num > VMM_VIRTQ_MAX_SIZE)
            goto bad;
        mq->num = qi[i].num;
        mq->desc = qi[i].desc;
        mq->driver = qi[i].driver;
        mq->device = qi[i].device;
        mq->reset_done = qi[i].reset_done;
        vmm_virtq_set_features(t->queues[i], t->features);
        if (!qi[i].ready)
            continue;
        if (vmm_virtq_enable(t->queues[i], mq->num, mq->desc, mq->driver, mq->device) < 0) {
            vmm_log_error("restore: %s@0x%" PRIx64 ": queue %u does not fit guest memory", t->name,
                          m->cfg.base, i);
            return -EINVAL;
        }
        vmm_virtq_snap_restore(t->queues[i], &qi[i].pos);
        mq->ready = true;
        bind_ioeventfd(m, i);
    }
    char where[64];
    return vmm_virtio_snap_restore_device(t, im.activated, r, mmio_where(m, where, sizeof(where)));
bad:
    vmm_log_error("restore: malformed state of %s@0x%" PRIx64, t->name, m->cfg.base);
    return -EBADMSG;
}

static int mmio_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vmm_virtio_mmio *m = opaque;
    if (!m->t.snap) {
        vmm_log_error("restore: %s@0x%" PRIx64 " cannot be restored from a snapshot", m->t.name,
                      m->cfg.base);
        return -ENOTSUP;
    }
    vmm_virtio_lock(&m->t);
    int rc = mmio_restore_locked(m, r);
    vmm_virtio_unlock(&m->t);
    return rc;
}

static const struct vmm_snap_part_ops mmio_snap = {
    .name = "virtio-mmio device",
    .tag = SNAP_TAG_VIRTIO,
    .freeze = mmio_freeze,
    .thaw = mmio_thaw,
    .save = mmio_save,
    .restore = mmio_restore,
};

static void mmio_vm_cleanup(void *opaque)
{
    struct vmm_virtio_mmio *m = opaque;
    if (m->bus_registered)
        (void)vmm_bus_unregister(vmm_vm_mmio_bus(m->vm), m->cfg.base);
    mmio_free(m);
}

int vmm_vm_add_virtio_mmio(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                           const struct vmm_virtio_device *dev, struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_mmio_config cfg = {
        .size = sizeof(cfg),
        .base = base,
        .gsi = gsi,
        .mem = vm ? vmm_vm_memory(vm) : NULL,
        .loop = vm ? vmm_vm_event_loop(vm) : NULL,
    };
    struct vmm_virtio_mmio *m;
    int r;
    if (!vm || !cfg.mem || !cfg.loop || (base & (VMM_VIRTIO_MMIO_SIZE - 1)) ||
        gsi >= VMM_IOAPIC_PINS) {
        if (vm && !cfg.loop) {
            r = -ENOMEM;
        } else {
            if (vm && !cfg.mem)
                vmm_log_error("virtio-mmio: the VM has no memory yet");
            r = -EINVAL;
        }
        vmm_virtio_device_destroy_unused(dev);
        return r;
    }
    r = mmio_create(&cfg, dev, vm, &m);
    if (r < 0)
        return r;
    r = vmm_bus_register(vmm_vm_mmio_bus(vm), base, VMM_VIRTIO_MMIO_SIZE, &mmio_ops, m);
    if (r < 0) {
        vmm_log_error("%s: MMIO window at 0x%" PRIx64 ": %s", m->t.name, base, vmm_strerror(r));
        mmio_free(m);
        return r;
    }
    m->bus_registered = true;
    /* Windows are 4 KiB-aligned: base >> 12 names one (a clash, above 2^44, is refused). */
    r = vmm_snap_register(vm, &mmio_snap, (uint32_t)(base >> 12), m);
    if (r < 0) {
        mmio_vm_cleanup(m);
        return r;
    }
    r = vmm_vm_add_cleanup(vm, mmio_vm_cleanup, m);
    if (r < 0) {
        vmm_snap_unregister(vm, SNAP_TAG_VIRTIO, (uint32_t)(base >> 12));
        mmio_vm_cleanup(m);
        return r;
    }
    vmm_log_debug("%s at 0x%" PRIx64 ", GSI %u", m->t.name, base, gsi);
    if (out)
        *out = m;
    return 0;
}

int vmm_virtio_mmio_get_stats(struct vmm_virtio_mmio *mmio, struct vmm_virtio_mmio_stats *stats)
{
    if (!mmio || !stats || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    vmm_virtio_lock(&mmio->t);
    struct vmm_virtio_mmio_stats s = mmio->stats;
    s.status = mmio->t.status;
    vmm_virtio_unlock(&mmio->t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}

/* ---- describing the devices to the guest ---- */

void vmm_virtio_mmio_info(const struct vmm_virtio_mmio *mmio, struct vmm_machine_virtio *info)
{
    *info = (struct vmm_machine_virtio){
        .base = mmio->cfg.base, .size = VMM_VIRTIO_MMIO_SIZE, .gsi = mmio->cfg.gsi};
}

int vmm_virtio_mmio_add_to_machine(const struct vmm_virtio_mmio *mmio, struct vmm_machine *machine)
{
    /* The machine is the caller's: it must hold the fields written here. */
    if (!machine || !VMM_ABI_OUT_OK(machine) ||
        machine->size < offsetof(struct vmm_machine, virtio) + sizeof(machine->virtio))
        return -EINVAL;
    if (machine->nr_virtio >= VMM_MACHINE_MAX_VIRTIO)
        return -ENOSPC;
    vmm_virtio_mmio_info(mmio, &machine->virtio[machine->nr_virtio++]);
    return 0;
}

int vmm_virtio_mmio_cmdline(const struct vmm_machine *caller, char *buf, size_t size)
{
    struct vmm_machine copy;
    const struct vmm_machine *machine = &copy;
    if (!caller || VMM_ABI_COPY_IN(&copy, caller) < 0)
        return -EINVAL;
    if (size == 0)
        return -ENOSPC;
    buf[0] = '\0';
    size_t used = 0;
    unsigned n =
        machine->nr_virtio < VMM_MACHINE_MAX_VIRTIO ? machine->nr_virtio : VMM_MACHINE_MAX_VIRTIO;
    for (unsigned i = 0; i < n; i++) {
        const struct vmm_machine_virtio *v = &machine->virtio[i];
        uint64_t sz = v->size ? v->size : VMM_VIRTIO_MMIO_SIZE;
        char num[32];
        if (!(sz & ((1ull << 20) - 1)))
            snprintf(num, sizeof(num), "%" PRIu64 "M", sz >> 20);
        else if (!(sz & ((1ull << 10) - 1)))
            snprintf(num, sizeof(num), "%" PRIu64 "K", sz >> 10);
        else
            snprintf(num, sizeof(num), "%" PRIu64, sz);
        char item[96];
        int len = snprintf(item, sizeof(item), "%svirtio_mmio.device=%s@0x%" PRIx64 ":%" PRIu32,
                           i ? " " : "", num, v->base, v->gsi);
        if (len < 0 || (size_t)len >= sizeof(item) || (size_t)len >= size - used) {
            buf[0] = '\0';
            return -ENOSPC;
        }
        memcpy(buf + used, item, (size_t)len + 1);
        used += (size_t)len;
    }
    return (int)used;
}
