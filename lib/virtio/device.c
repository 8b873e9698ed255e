/* SPDX-License-Identifier: Apache-2.0 */
/* The transport-independent half of a virtio device: its description, lock,
 * queues, feature and status bookkeeping, and what device models call on
 * their transport. */
#include <errno.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/virtio.h>

#include "event/event_internal.h"
#include "memory/memory_view.h"
#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define DEFAULT_QUEUE_SIZE 256

static void queue_interrupt(void *opaque, struct vmm_virtq *q)
{
    struct vmm_virtio_transport *t = opaque;
    if (t->raise_queue)
        t->raise_queue(t, vmm_virtq_index(q));
    else
        t->raise(t, VMM_VIRTIO_INT_VRING);
}

static void queue_broken(void *opaque, struct vmm_virtq *q)
{
    (void)q;
    vmm_virtio_set_needs_reset(opaque);
}

/* The device released chains of a queue that had held back for its budget:
 * the driver's buffers still wait in the ring, and it will not notify again
 * for them. */
static void queue_resume(void *opaque, struct vmm_virtq *q)
{
    struct vmm_virtio_transport *t = opaque;
    if (t->kick)
        t->kick(t, vmm_virtq_index(q));
}

void vmm_virtio_requeue(struct vmm_virtio_transport *t, unsigned index)
{
    if (t->kick && index < t->dev.num_queues)
        t->kick(t, index);
}

/* ---- queue notifications ---- */

void vmm_virtio_notify_deliver(struct vmm_virtio_transport *t, unsigned i)
{
    if (i >= t->dev.num_queues)
        return;
    struct vmm_virtio_notify *n = &t->notify[i];
    uint32_t size = 0;
    for (unsigned round = 0; round <= size; round++) {
        n->kicked = false;
        if (!t->queue_enabled(t, i, &size) || !vmm_virtio_driver_ok(t))
            return;
        (*t->notifies)++;
        if (t->dev.ops->queue_notify)
            t->dev.ops->queue_notify(t->dev.opaque, i);
        if (!n->kicked)
            return;
    }
}

/* Event loop: queue i's notify eventfd fired. It is watched edge-triggered
 * and never read: each signal (a kick, KVM's ioeventfd) is one callback, and
 * the counter says nothing a look at the ring does not, so draining it would
 * cost a system call per notification for nothing. */
static void notify_event(void *opaque, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    struct vmm_virtio_notify *n = opaque;
    vmm_virtio_lock(n->t);
    vmm_virtio_notify_deliver(n->t, n->index);
    vmm_virtio_unlock(n->t);
}

void vmm_virtio_notify_queue(struct vmm_virtio_transport *t, unsigned i)
{
    if (t->notify[i].fd >= 0) {
        uint64_t one = 1;
        if (write(t->notify[i].fd, &one, sizeof(one)) < 0)
            vmm_log_debug("%s: notify eventfd write: %s", t->name, vmm_strerror(-errno));
    } else {
        vmm_virtio_notify_deliver(t, i);
    }
}

/* The transport's kick: from inside a device, so never a call back into it
 * from here; standalone, vmm_virtio_notify_deliver looks again when the
 * device returns. */
static void notify_kick(struct vmm_virtio_transport *t, unsigned i)
{
    if (t->notify[i].fd >= 0)
        vmm_virtio_notify_queue(t, i);
    else
        t->notify[i].kicked = true;
}

/* The transport's notify_fd: hand queue i's notification eventfd (bound to
 * its notification address with KVM where the transport does that) to a
 * back end that watches it itself, or take it back. */
static int notify_fd(struct vmm_virtio_transport *t, unsigned i, bool take)
{
    if (i >= t->dev.num_queues || !t->notify[i].watched)
        return -ENOTSUP;
    int r = vmm_event_loop_modify(t->loop, t->notify[i].fd, take ? 0 : EPOLLIN);
    return r < 0 ? r : t->notify[i].fd;
}

int vmm_virtio_notify_watch(struct vmm_virtio_transport *t)
{
    for (unsigned i = 0; t->loop && i < t->dev.num_queues; i++) {
        struct vmm_virtio_notify *n = &t->notify[i];
        n->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (n->fd < 0)
            return -errno;
        int r = vmm_event_loop_add_edge(t->loop, n->fd, EPOLLIN, notify_event, n);
        if (r < 0)
            return r;
        n->watched = true;
    }
    return 0;
}

/* ---- the transport ---- */

int vmm_virtio_transport_init(struct vmm_virtio_transport *t, const struct vmm_virtio_device *dev,
                              struct vmm_memory *mem, struct vmm_event_loop *loop)
{
    for (unsigned i = 0; i < VMM_VIRTIO_MAX_QUEUES; i++)
        t->notify[i] = (struct vmm_virtio_notify){.fd = -1, .t = t, .index = i};
    t->kick = notify_kick;
    t->notify_fd = notify_fd;
    struct vmm_virtio_device d;
    if (!dev || VMM_ABI_COPY_IN(&d, dev) < 0 || !d.ops || VMM_ABI_COPY_IN(&t->ops, d.ops) < 0 ||
        !t->ops.config_read || !mem || d.num_queues == 0 || d.num_queues > VMM_VIRTIO_MAX_QUEUES)
        return -EINVAL;
    t->caller_ops = d.ops;
    d.ops = &t->ops;
    t->dev = d;
    if (!t->dev.queue_max_size)
        t->dev.queue_max_size = DEFAULT_QUEUE_SIZE;
    if (!vmm_is_pow2(t->dev.queue_max_size) || t->dev.queue_max_size > VMM_VIRTQ_MAX_SIZE)
        return -EINVAL;
    /* virtio-mmio leaves 0xf00 bytes for configuration; PCI has more, but
     * no device of ours comes close. */
    if (t->dev.config_size > 0xf00)
        return -EINVAL;
    t->name = t->dev.name ? t->dev.name : "virtio";
    t->mem = mem;
    t->loop = loop;
    /* A device's reserved bits (RING_PACKED, NOTIFICATION_DATA, IN_ORDER,
     * ...) would promise what the queues do not do: only its own bits go. */
    if (t->dev.features & ~VMM_VIRTIO_DEVICE_FEATURES_MASK)
        vmm_log_debug("%s: not offering reserved feature bits 0x%" PRIx64, t->name,
                      (uint64_t)(t->dev.features & ~VMM_VIRTIO_DEVICE_FEATURES_MASK));
    t->offered =
        (t->dev.features & VMM_VIRTIO_DEVICE_FEATURES_MASK) | VMM_VIRTIO_TRANSPORT_FEATURES;
    int r = -pthread_mutex_init(&t->lock, NULL);
    if (r < 0)
        return r;
    struct vmm_virtq_callbacks cb = {.size = sizeof(cb),
                                     .interrupt = queue_interrupt,
                                     .broken = queue_broken,
                                     .opaque = t,
                                     .resume = queue_resume};
    for (unsigned i = 0; i < t->dev.num_queues; i++) {
        r = vmm_virtq_create(mem, i, t->dev.queue_max_size, &cb, &t->queues[i]);
        if (r == 0)
            vmm_virtq_set_label(t->queues[i], t->name);
        if (r < 0) {
            for (unsigned j = 0; j < i; j++)
                vmm_virtq_destroy(t->queues[j]);
            pthread_mutex_destroy(&t->lock);
            return r;
        }
    }
    return 0;
}

void vmm_virtio_transport_reset(struct vmm_virtio_transport *t)
{
    if (t->attached && t->dev.ops->reset)
        t->dev.ops->reset(t->dev.opaque);
    for (unsigned i = 0; i < t->dev.num_queues; i++)
        vmm_virtq_reset(t->queues[i]);
    t->features = 0;
    t->status = 0;
    t->activated = false;
}

void vmm_virtio_transport_fini(struct vmm_virtio_transport *t)
{
    for (unsigned i = 0; i < VMM_VIRTIO_MAX_QUEUES; i++) {
        if (t->notify[i].watched)
            (void)vmm_event_loop_remove(t->loop, t->notify[i].fd);
        t->notify[i].watched = false;
    }
    pthread_mutex_lock(&t->lock);
    vmm_virtio_transport_reset(t);
    pthread_mutex_unlock(&t->lock);
    if (t->dev.ops->destroy)
        t->dev.ops->destroy(t->dev.opaque);
    for (unsigned i = 0; i < t->dev.num_queues; i++)
        vmm_virtq_destroy(t->queues[i]);
    pthread_mutex_destroy(&t->lock);
    for (unsigned i = 0; i < VMM_VIRTIO_MAX_QUEUES; i++)
        if (t->notify[i].fd >= 0)
            close(t->notify[i].fd);
}

void vmm_virtio_lock(struct vmm_virtio_transport *t)
{
    pthread_mutex_lock(&t->lock);
}

void vmm_virtio_unlock(struct vmm_virtio_transport *t)
{
    pthread_mutex_unlock(&t->lock);
}

struct vmm_virtq *vmm_virtio_queue(struct vmm_virtio_transport *t, unsigned index)
{
    return index < t->dev.num_queues ? t->queues[index] : NULL;
}

uint64_t vmm_virtio_features(const struct vmm_virtio_transport *t)
{
    return t->features;
}

bool vmm_virtio_driver_ok(const struct vmm_virtio_transport *t)
{
    return (t->status & VMM_VIRTIO_STATUS_DRIVER_OK) &&
           !(t->status & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

void vmm_virtio_config_changed(struct vmm_virtio_transport *t)
{
    t->config_generation++;
    if (t->status & VMM_VIRTIO_STATUS_DRIVER_OK)
        t->raise(t, VMM_VIRTIO_INT_CONFIG);
}

void vmm_virtio_set_needs_reset(struct vmm_virtio_transport *t)
{
    if (t->status & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return;
    vmm_log_limited(&t->needs_reset_log, VMM_VIRTIO_LOG_BUDGET, "%s: device needs reset", t->name);
    t->status |= VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    /* Only a driver past DRIVER_OK listens for the interrupt; before that it
     * reads the status during set-up. */
    if (t->status & VMM_VIRTIO_STATUS_DRIVER_OK)
        t->raise(t, VMM_VIRTIO_INT_CONFIG);
}

struct vmm_event_loop *vmm_virtio_event_loop(struct vmm_virtio_transport *t)
{
    return t->loop;
}

struct vmm_memory *vmm_virtio_memory(struct vmm_virtio_transport *t)
{
    return t->mem;
}

bool vmm_virtio_device_destroy_unused(const struct vmm_virtio_device *dev)
{
    struct vmm_virtio_device d;
    struct vmm_virtio_device_ops ops;
    if (!dev || VMM_ABI_COPY_IN(&d, dev) < 0 || !d.ops || VMM_ABI_COPY_IN(&ops, d.ops) < 0)
        return false;
    if (ops.destroy)
        ops.destroy(d.opaque);
    return true;
}

void vmm_virtio_device_free(struct vmm_virtio_device *dev)
{
    if (!vmm_virtio_device_destroy_unused(dev))
        return;
    dev->ops = NULL;
    dev->opaque = NULL;
}

/* ---- the device status state machine, shared by the transports ---- */

void vmm_virtio_refuse(struct vmm_virtio_transport *t, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    t->refused(t, msg);
}

/* Whether the driver may go from old to v (NEEDS_RESET and FAILED left
 * out): bits only added, known ones, in the order the spec sets them. */
static bool status_step_allowed(struct vmm_virtio_transport *t, uint32_t old, uint32_t v)
{
    uint32_t added = v & ~old;
    if (old & ~v) {
        vmm_virtio_refuse(t, "status 0x%x clears bits of 0x%x (only a reset can)", v, old);
        return false;
    }
    if (v & ~(VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER |
              VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK)) {
        vmm_virtio_refuse(t, "status 0x%x has unknown bits", v);
        return false;
    }
    if ((v & VMM_VIRTIO_STATUS_DRIVER) && !(v & VMM_VIRTIO_STATUS_ACKNOWLEDGE)) {
        vmm_virtio_refuse(t, "status DRIVER without ACKNOWLEDGE");
        return false;
    }
    if ((v & VMM_VIRTIO_STATUS_FEATURES_OK) && !(v & VMM_VIRTIO_STATUS_DRIVER)) {
        vmm_virtio_refuse(t, "status FEATURES_OK without DRIVER");
        return false;
    }
    if ((added & VMM_VIRTIO_STATUS_DRIVER_OK) && !(v & VMM_VIRTIO_STATUS_FEATURES_OK)) {
        vmm_virtio_refuse(t, "status DRIVER_OK before FEATURES_OK");
        return false;
    }
    return true;
}

/* FEATURES_OK: accept the driver's features, or leave the bit clear (per
 * spec the driver sees that when it reads the status back). */
static bool accept_features(struct vmm_virtio_transport *t, uint64_t driver_features)
{
    uint64_t extra = driver_features & ~t->offered;
    if (extra) {
        vmm_virtio_refuse(t, "FEATURES_OK with features 0x%" PRIx64 " not offered", extra);
        return false;
    }
    if (!(driver_features & VMM_VIRTIO_F_VERSION_1)) {
        vmm_virtio_refuse(t, "FEATURES_OK without VIRTIO_F_VERSION_1");
        return false;
    }
    t->features = driver_features;
    for (unsigned i = 0; i < t->dev.num_queues; i++)
        vmm_virtq_set_features(t->queues[i], t->features);
    return true;
}

bool vmm_virtio_transport_activate(struct vmm_virtio_transport *t)
{
    int r = t->dev.ops->activate ? t->dev.ops->activate(t->dev.opaque, t->features) : 0;
    if (r < 0) {
        vmm_log_limited(&t->activate_log, VMM_VIRTIO_LOG_BUDGET, "%s: activation failed: %s",
                        t->name, vmm_strerror(r));
        vmm_virtio_set_needs_reset(t);
        return false;
    }
    t->activated = true;
    return true;
}

int vmm_virtio_transport_write_status(struct vmm_virtio_transport *t, uint32_t v,
                                      uint64_t driver_features)
{
    if (v == 0)
        return VMM_VIRTIO_STEP_RESET;
    /* NEEDS_RESET is the device's to set; keep ours, ignore the driver's. */
    uint32_t keep = t->status & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    v &= ~VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    uint32_t old = t->status & ~VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    uint32_t added = v & ~old;

    if (v & VMM_VIRTIO_STATUS_FAILED) {
        /* The driver gave up; take note and do nothing more. */
        t->status = old | VMM_VIRTIO_STATUS_FAILED | keep;
        return 0;
    }
    if (!status_step_allowed(t, old, v))
        return 0;
    /* FEATURES_OK refused in this very write (logged): so is DRIVER_OK,
     * which status_step_allowed let through because it was asked for
     * together with FEATURES_OK. */
    if ((added & VMM_VIRTIO_STATUS_FEATURES_OK) && !accept_features(t, driver_features)) {
        v &= ~(VMM_VIRTIO_STATUS_FEATURES_OK | (added & VMM_VIRTIO_STATUS_DRIVER_OK));
        added &= ~(VMM_VIRTIO_STATUS_FEATURES_OK | VMM_VIRTIO_STATUS_DRIVER_OK);
    }
    t->status = v | keep;
    return (added & VMM_VIRTIO_STATUS_DRIVER_OK) ? VMM_VIRTIO_STEP_ACTIVATE : 0;
}

void vmm_virtio_mark_all_dirty(struct vmm_virtio_transport *t, const char *who)
{
    struct vmm_memory *mem = t->mem;
    if (!memory_dirty_tracking_any(mem))
        return;
    vmm_log_info("%s: the kernel wrote guest memory outside the dirty log: all of it counts as "
                 "dirty",
                 who);
    for (unsigned i = 0; i < vmm_memory_region_count(mem); i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) == 0)
            vmm_memory_mark_dirty(mem, info.gpa, info.len);
    }
}

/* ---- snapshots: the steps both transports take around their registers ---- */

int vmm_virtio_snap_freeze(struct vmm_virtio_transport *t, const char *where)
{
    vmm_virtio_lock(t);
    int r = 0;
    if (!t->snap) {
        vmm_log_error("%s: this device cannot be saved in a snapshot", where);
        r = -ENOTSUP;
    } else if (t->snap->quiesce) {
        r = t->snap->quiesce(t->dev.opaque);
    }
    bool quiesced = r == 0;
    for (unsigned i = 0; i < t->dev.num_queues && r == 0; i++) {
        struct virtq_snap pos;
        if (vmm_virtq_snap_save(t->queues[i], &pos) < 0) {
            vmm_log_error("%s: queue %u still has requests out", where, i);
            r = -EBUSY;
        }
    }
    if (r < 0) {
        if (quiesced && t->snap->thaw)
            t->snap->thaw(t->dev.opaque);
        vmm_virtio_unlock(t);
    }
    return r;
}

void vmm_virtio_snap_thaw(struct vmm_virtio_transport *t)
{
    if (t->snap->thaw)
        t->snap->thaw(t->dev.opaque);
    vmm_virtio_unlock(t);
}

int vmm_virtio_snap_restore_device(struct vmm_virtio_transport *t, bool activated,
                                   struct vmm_snap_reader *r, const char *where)
{
    if (activated) {
        int rc = t->dev.ops->activate ? t->dev.ops->activate(t->dev.opaque, t->features) : 0;
        if (rc < 0) {
            vmm_log_error("restore: %s: activation failed: %s", where, vmm_strerror(rc));
            return rc;
        }
        t->activated = true;
    }
    int rc = t->snap->restore(t->dev.opaque, r);
    if (rc < 0)
        return rc;
    if (snap_done(r) < 0) {
        vmm_log_error("restore: %s: %zu trailing bytes in its state", where, r->left);
        return -EBADMSG;
    }
    /* A notification the saved VM's event loop had not handled yet is
     * gone: look at every queue once. */
    uint32_t size;
    if (vmm_virtio_driver_ok(t))
        for (unsigned i = 0; i < t->dev.num_queues; i++)
            if (t->queue_enabled(t, i, &size))
                vmm_virtio_notify_queue(t, i);
    return 0;
}
