/* SPDX-License-Identifier: Apache-2.0 */
/* Private pieces shared by the files of lib/virtio: the generic transport
 * state every transport embeds, and small helpers. */
#ifndef VMM_VIRTIO_INTERNAL_H
#define VMM_VIRTIO_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmm/virtio.h>

#include "vmm_internal.h"

struct vmm_snap_writer;
struct vmm_snap_reader;

/*
 * A library device's part in snapshots, set by the device when it is
 * attached (t->snap); every call gets dev.opaque and runs with the
 * transport's lock held. quiesce finishes what the device has in flight
 * (completing its chains) or refuses (-EBUSY, logged); save appends the
 * device's own state; restore reads it back into a device the transport
 * has just activated as saved, and checks it (-EBADMSG, or -EINVAL for a
 * back end unlike the saved one, logged). thaw (optional) follows every
 * quiesce that succeeded, once the snapshot is taken or given up, for a
 * device that stopped something there (a vhost data plane) and takes it up
 * again. A device without these (an application's) cannot be snapshotted.
 */
struct virtio_snap_ops {
    int (*quiesce)(void *opaque);
    int (*save)(void *opaque, struct vmm_snap_writer *w);
    int (*restore)(void *opaque, struct vmm_snap_reader *r);
    void (*thaw)(void *opaque);
};

/* A queue's notifications, the same on every transport (device.c): the
 * eventfd the guest's notifications signal, watched by the event loop. */
struct vmm_virtio_notify {
    int fd;       /* eventfd the event loop watches; -1 without a loop */
    bool watched; /* fd is on the loop */
    bool kicked;  /* without a loop: notify the device again when it returns */
    struct vmm_virtio_transport *t;
    unsigned index;
};

/*
 * What every transport has in common; a transport embeds it and fills raise.
 * Everything here is guarded by lock.
 */
struct vmm_virtio_transport {
    pthread_mutex_t lock;
    struct vmm_virtio_device dev; /* the device's description (copied) */
    /* dev.ops points here: the device's table, zero-filled past its .size
     * (abi.h), so a callback an older device lacks reads as NULL. */
    struct vmm_virtio_device_ops ops;
    const struct vmm_virtio_device_ops *caller_ops; /* the table handed in (its identity) */
    const char *name;                               /* dev.name or "virtio" */
    struct vmm_memory *mem;
    struct vmm_event_loop *loop;
    struct vmm_virtq *queues[VMM_VIRTIO_MAX_QUEUES];
    uint64_t offered;  /* device features offered (device's + transport's) */
    uint64_t features; /* negotiated, valid once FEATURES_OK was accepted */
    uint32_t status;
    uint32_t config_generation;
    bool attached;  /* dev.ops->attach succeeded */
    bool activated; /* dev.ops->activate succeeded since the last reset */
    /* Warnings a driver can cause on every reset, budgeted for the device's
     * life (vmm_log_limited). */
    struct vmm_log_limit needs_reset_log, activate_log;
    /* Send an interrupt with cause VMM_VIRTIO_INT_* (lock held). */
    void (*raise)(struct vmm_virtio_transport *t, uint32_t cause);
    /* Have the device's queue_notify run for queue index soon, but not from
     * inside this call: the caller is a device releasing chains (lock
     * held). */
    void (*kick)(struct vmm_virtio_transport *t, unsigned index);
    /* A used-buffer interrupt for queue index, where the transport has one
     * per queue (virtio-pci's MSI-X vectors); NULL: raise(VRING). Lock held. */
    void (*raise_queue)(struct vmm_virtio_transport *t, unsigned index);
    /* Count and log a driver write the state machine refused (lock held). */
    void (*refused)(struct vmm_virtio_transport *t, const char *msg);
    /* The eventfd the guest's notifications of queue index signal (an
     * ioeventfd where the transport is on a VM), for a back end that
     * watches it itself (vhost): take true stops the transport's delivery
     * of them to queue_notify, false resumes it. Returns the fd, or -ENOTSUP
     * where the transport has none (standalone without an event loop).
     * NULL: not offered. Lock held. */
    int (*notify_fd)(struct vmm_virtio_transport *t, unsigned index, bool take);
    const struct virtio_snap_ops *snap; /* NULL: not a device snapshots can save */
    /* Per queue: its notifications (vmm_virtio_notify_*), and whether the
     * driver enabled it, with its size (lock held): only an enabled queue of
     * a live device gets them. notifies: the transport's count of those
     * handed to the device. kick and notify_fd start as device.c's. */
    struct vmm_virtio_notify notify[VMM_VIRTIO_MAX_QUEUES];
    bool (*queue_enabled)(struct vmm_virtio_transport *t, unsigned index, uint32_t *size);
    uint64_t *notifies;
};

/* Warning lines of one kind a device (or one of its queues) logs over its
 * life, for what a guest can cause at will, before going to debug level. */
#define VMM_VIRTIO_LOG_BUDGET 8

/* Work a device does for one wake-up (a notification, a completion, a
 * timer) before it lets the event loop serve its other fds: at most
 * VMM_VIRTIO_WAKE_CHAINS chains popped, and about VMM_VIRTIO_WAKE_BYTES
 * bytes moved (the chain that crosses it is finished). A device that stops
 * for the budget with chains perhaps left calls vmm_virtio_requeue, so the
 * rest is done on a later wake-up: one notification of a full ring cannot
 * hold the loop (and every other device on it) for the whole ring. */
#define VMM_VIRTIO_WAKE_CHAINS 64
#define VMM_VIRTIO_WAKE_BYTES  (1u << 20)

/* lib/virtio/device.c: have the device's queue_notify run again for queue
 * index on a later wake-up of the event loop (standalone: when the current
 * notification returns). Lock held; never calls the device from here. */
void vmm_virtio_requeue(struct vmm_virtio_transport *t, unsigned index);

/* lib/virtio/queue.c: name the queue's device in log lines (label must
 * outlive the queue). */
void vmm_virtq_set_label(struct vmm_virtq *q, const char *label);
/* Mark the first len bytes of chain's device-writable part dirty (after the
 * device wrote them through iovecs, e.g. by the kernel, since a dirty-log
 * fetch may have come between the hand-out and the write). */
void vmm_virtq_chain_mark_dirty(const struct vmm_virtq_chain *chain, uint64_t len);

/* The driver's layout of a ready queue (size and the areas' guest-physical
 * addresses), for a back end that runs the ring itself (vhost). 0, or
 * -ENODEV when the queue is not ready or broken. */
int vmm_virtq_layout(const struct vmm_virtq *q, unsigned *size, vmm_gpa_t *desc, vmm_gpa_t *driver,
                     vmm_gpa_t *device);
/* Send a used-buffer interrupt for q now (a back end that runs the ring
 * itself has applied the driver's suppression already). Lock held. */
void vmm_virtq_interrupt(struct vmm_virtq *q);
/* A queue's ring position in a snapshot. */
struct virtq_snap {
    uint16_t last_avail, used_idx, signalled_used;
    uint8_t broken, pad;
};
/* Read q's position: -EBUSY while the device holds chains of it. */
int vmm_virtq_snap_save(const struct vmm_virtq *q, struct virtq_snap *s);
/*
 * Hand chains[0..n) back to the driver's available ring untouched, for a
 * snapshot: they must be the last n chains taken from q (vmm_virtq_pop), in
 * the order taken, none pushed or freed, and nothing taken after them used.
 * Rewinds q's next-available position by n and releases the chains (the
 * device must not touch them again); the next pop (here, or in the VM a
 * snapshot restores) takes the same buffers again. 0, or -EINVAL with
 * nothing changed (logged) where the chains are not that. Lock held.
 */
int vmm_virtq_unpop(struct vmm_virtq *q, struct vmm_virtq_chain *const *chains, unsigned n);
/* Take a saved position over, right after vmm_virtq_enable. */
void vmm_virtq_snap_restore(struct vmm_virtq *q, const struct virtq_snap *s);

/*
 * lib/virtio/pci.c: a virtio-pci function in a snapshot, its section's
 * format (version VPCI_SNAP_VERSION): struct vpci_snap, num_queues struct
 * vpci_snap_queue, then the device's own state. The PCI side (BARs,
 * MSI-X) is the root complex's section (lib/pci). freeze brings the device
 * to rest and keeps the transport's lock until thaw; save runs between
 * them; restore checks every field (-EBADMSG, -EINVAL for another device,
 * -EPROTO for another version, logged), after the bus's restore.
 */
#define VPCI_SNAP_VERSION 1u

struct vpci_snap {
    uint32_t version, type, num_queues, nr_vectors;
    uint64_t offered, features, driver_features;
    uint32_t status, config_generation, dfselect, gfselect;
    uint16_t queue_select, config_vector;
    uint8_t isr, activated, pad[2];
};

struct vpci_snap_queue {
    uint16_t size, vector;
    uint8_t enabled, reset_done, pad[2];
    uint64_t desc, driver, device;
    struct virtq_snap pos;
};

struct vmm_virtio_pci;
int vmm_virtio_pci_snap_freeze(struct vmm_virtio_pci *vp);
void vmm_virtio_pci_snap_thaw(struct vmm_virtio_pci *vp);
int vmm_virtio_pci_snap_save(struct vmm_virtio_pci *vp, struct vmm_snap_writer *w);
int vmm_virtio_pci_snap_restore(struct vmm_virtio_pci *vp, struct vmm_snap_reader *r);

/* lib/virtio/device.c: the snapshot steps both transports share; where
 * names the device in log lines ("blk@0xd0000000", "net@03.0").
 * vmm_virtio_snap_freeze takes the transport's lock, lets the device finish
 * its requests (quiesce) and checks that no queue has chains out: 0 with
 * the lock kept until vmm_virtio_snap_thaw, or -ENOTSUP (a device snapshots
 * cannot save) / -EBUSY / the device's error with the device thawed and the
 * lock dropped. vmm_virtio_snap_restore_device runs after the transport
 * restored its registers and queues (lock held): activates the device if it
 * was, restores the device's own state, refuses trailing bytes (-EBADMSG),
 * and looks at every enabled queue once. */
int vmm_virtio_snap_freeze(struct vmm_virtio_transport *t, const char *where);
void vmm_virtio_snap_thaw(struct vmm_virtio_transport *t);
int vmm_virtio_snap_restore_device(struct vmm_virtio_transport *t, bool activated,
                                   struct vmm_snap_reader *r, const char *where);

/* lib/virtio/device.c */
/* Mark all of guest memory dirty where dirty tracking is on, for a device
 * whose back end (vhost) wrote guest memory without logging it: a diff
 * snapshot or a migration taken now then carries what it wrote. Logged
 * under who's name. */
void vmm_virtio_mark_all_dirty(struct vmm_virtio_transport *t, const char *who);
int vmm_virtio_transport_init(struct vmm_virtio_transport *t, const struct vmm_virtio_device *dev,
                              struct vmm_memory *mem, struct vmm_event_loop *loop);
/* The head descriptor index (split ring) of a popped chain: the ring's
 * bookkeeping, kept beside the chain rather than in it. For tests and log lines. */
uint16_t vmm_virtq_chain_head(const struct vmm_virtq_chain *chain);

/* Call ops->destroy of a description no transport took, when its sizes
 * (and its ops') are ones the library knows (abi.h). Returns whether it did. */
bool vmm_virtio_device_destroy_unused(const struct vmm_virtio_device *dev);
void vmm_virtio_transport_fini(struct vmm_virtio_transport *t);
/* With an event loop: an eventfd per queue for its notifications, on the
 * loop (edge-triggered). Returns 0 or a -errno; transport_fini undoes it. */
int vmm_virtio_notify_watch(struct vmm_virtio_transport *t);
/* Hand a notification of queue index to the device now (lock held).
 * Without an event loop, a queue kicked meanwhile (the device released
 * chains it had held back for) is handed over again when the device
 * returns: as often as that keeps happening, up to once per queue entry. */
void vmm_virtio_notify_deliver(struct vmm_virtio_transport *t, unsigned index);
/* Queue index wants a look: on the event loop, or right here standalone
 * (lock held; not from inside the device: that is t->kick). */
void vmm_virtio_notify_queue(struct vmm_virtio_transport *t, unsigned index);
/* Reset the device and every queue (lock held). */
void vmm_virtio_transport_reset(struct vmm_virtio_transport *t);

/* Format a refused driver write and hand it to t->refused. */
void vmm_virtio_refuse(struct vmm_virtio_transport *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What a status write asks of the transport. */
#define VMM_VIRTIO_STEP_RESET    1 /* the driver wrote 0: reset the device and the transport */
#define VMM_VIRTIO_STEP_ACTIVATE 2 /* DRIVER_OK was just set: vmm_virtio_transport_activate */

/*
 * The driver wrote v to the device status, having written driver_features
 * (lock held). Checks the step (bits only added, in the specification's
 * order), accepts or refuses the features at FEATURES_OK (leaving the bit
 * clear, as the specification says), records FAILED, and updates t->status.
 * Returns 0 or a VMM_VIRTIO_STEP_* for the transport to carry out.
 */
int vmm_virtio_transport_write_status(struct vmm_virtio_transport *t, uint32_t v,
                                      uint64_t driver_features);
/* DRIVER_OK: call the device's activate; on failure set DEVICE_NEEDS_RESET.
 * Returns whether the device is active (the transport then looks at its
 * ready queues). Lock held. */
bool vmm_virtio_transport_activate(struct vmm_virtio_transport *t);

static inline bool vmm_is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

#endif /* VMM_VIRTIO_INTERNAL_H */
