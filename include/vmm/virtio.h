/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Virtio (1.2, modern only): virtqueues and the device model interface, what
 * every transport and device shares. The transport is in virtio_mmio.h, the
 * devices in virtio_blk.h, virtio_console.h and virtio_rng.h.
 *
 * Three layers, each unaware of the one above it:
 *
 *   device models (rng, console, blk, ...)   see struct vmm_virtio_device,
 *        |                                   struct vmm_virtio_transport and
 *        |                                   "pop a chain / push it used"
 *   transports (virtio-mmio; PCI later)      own the queues and the register
 *        |                                   state machine, deliver
 *        |                                   notifications and interrupts
 *   virtqueues (split ring; packed later)    parse and check guest rings
 *
 * A device never sees ring layout: it pops a struct vmm_virtq_chain (the
 * buffers the driver offered, already copied out of guest memory and
 * checked), reads its device-readable part and fills its device-writable
 * part, then pushes it back with the number of bytes written.
 *
 * Threads and locking. Each device on a transport has one lock (a mutex).
 * The transport holds it while it handles a register access (vCPU threads)
 * and while it calls any device callback below, so a device's callbacks never
 * run concurrently with each other or with register accesses. Queue
 * notifications reach the device on the VM's event loop thread (ioeventfd),
 * never on a vCPU thread. Work a device starts on its own (an input fd
 * becoming readable, an I/O completion) must take the lock with
 * vmm_virtio_lock()/vmm_virtio_unlock() around every queue or transport
 * call. A virtqueue has no lock of its own: it is used under its device's
 * lock. Never take the lock inside a callback (it is already held), and never
 * call vmm_event_loop_remove() with it held from a thread other than the
 * loop's (remove waits for a running callback, which may wait for the lock).
 *
 * Hostile drivers. Every ring index, descriptor and address comes from the
 * guest. A malformed chain (bad index, loop, address outside guest memory,
 * bad indirect table, readable after writable, longer than the queue
 * allows...) is never handed to the device: the queue completes it at once
 * with 0 bytes written, counts it (vmm_virtq_get_stats) and logs it (the
 * first few in the device's life; resets do not start the count again), and
 * pop goes on to the next chain. A ring that cannot be trusted at all (the
 * available index moving by more than the queue size, a head index past the
 * queue size, ring memory that disappears) breaks the queue: pop returns
 * -EIO from then on, and the transport sets DEVICE_NEEDS_RESET and raises a
 * configuration-change interrupt, as virtio 1.2 section 2.1.2 describes,
 * until the driver resets the device (or the queue, with
 * VIRTIO_F_RING_RESET). Breaks are logged like malformed chains.
 *
 * Bounded cost per request. A chain is at most min(queue size,
 * VMM_VIRTQ_MAX_CHAIN) descriptors long, indirect ones included (virtio 1.2
 * section 2.7.5.3.1 forbids drivers longer ones); an indirect table longer
 * than that is refused unread. The chains a device holds on one queue may
 * take at most VMM_VIRTQ_MAX_HELD_BYTES of host memory: past that, pop
 * leaves the driver's buffers in the ring (returns 0) until the device
 * releases chains, and the release that makes room has the transport notify
 * the device again (struct vmm_virtq_callbacks.resume). Nothing is dropped.
 */
#ifndef VMM_VIRTIO_H
#define VMM_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <vmm/error.h>
#include <vmm/event.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants from the virtio 1.2 specification ---- */

/* Device types (section 5). */
#define VMM_VIRTIO_ID_NET     1
#define VMM_VIRTIO_ID_BLOCK   2
#define VMM_VIRTIO_ID_CONSOLE 3
#define VMM_VIRTIO_ID_RNG     4
#define VMM_VIRTIO_ID_BALLOON 5
#define VMM_VIRTIO_ID_VSOCK   19

/* Device status bits (section 2.1). */
#define VMM_VIRTIO_STATUS_ACKNOWLEDGE        1u
#define VMM_VIRTIO_STATUS_DRIVER             2u
#define VMM_VIRTIO_STATUS_DRIVER_OK          4u
#define VMM_VIRTIO_STATUS_FEATURES_OK        8u
#define VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET 64u
#define VMM_VIRTIO_STATUS_FAILED             128u

/* Reserved feature bits (section 6) the library knows. Device-specific bits
 * are 0..23 and 50 up (VMM_VIRTIO_DEVICE_FEATURES_MASK). */
#define VMM_VIRTIO_F_INDIRECT_DESC   (1ull << 28) /* VIRTIO_RING_F_INDIRECT_DESC */
#define VMM_VIRTIO_F_EVENT_IDX       (1ull << 29) /* VIRTIO_RING_F_EVENT_IDX */
#define VMM_VIRTIO_F_VERSION_1       (1ull << 32)
#define VMM_VIRTIO_F_ACCESS_PLATFORM (1ull << 33)
#define VMM_VIRTIO_F_RING_PACKED     (1ull << 34)
#define VMM_VIRTIO_F_IN_ORDER        (1ull << 35)
#define VMM_VIRTIO_F_RING_RESET      (1ull << 40)

/* The bits of struct vmm_virtio_device.features a transport offers: the
 * device-type-specific ranges 0..23 and 50..63. Reserved bits a device sets
 * there (NOTIFICATION_DATA, IN_ORDER, ...) are dropped: they describe the
 * queues and transport, which offer only what they implement. */
#define VMM_VIRTIO_DEVICE_FEATURES_MASK (((1ull << 24) - 1) | ~((1ull << 50) - 1))

/* Features the library's queues and transports implement and always offer
 * on top of a device's own (struct vmm_virtio_device.features). */
#define VMM_VIRTIO_TRANSPORT_FEATURES                                                              \
    (VMM_VIRTIO_F_INDIRECT_DESC | VMM_VIRTIO_F_EVENT_IDX | VMM_VIRTIO_F_VERSION_1 |                \
     VMM_VIRTIO_F_RING_RESET)

/* Interrupt causes (the virtio-mmio InterruptStatus bits). */
#define VMM_VIRTIO_INT_VRING  1u /* used buffer notification */
#define VMM_VIRTIO_INT_CONFIG 2u /* configuration change notification */

/* The most queues a device may have, and the largest split queue. */
#define VMM_VIRTIO_MAX_QUEUES 64
#define VMM_VIRTQ_MAX_SIZE    32768

/* The longest chain any queue accepts, whatever its size (QEMU's limit):
 * a device never gets more segments than this in one chain. */
#define VMM_VIRTQ_MAX_CHAIN 1024
/* Host memory the chains a device holds on one queue (popped, not yet
 * pushed or freed) may take: about 48 bytes per segment, 512 per short
 * chain. A queue of 256 full of the largest virtio-blk requests a driver
 * may make (VMM_VIRTIO_BLK_SEG_MAX data segments) fits; a driver that sends
 * longer chains waits for completions rather than pinning more. */
#define VMM_VIRTQ_MAX_HELD_BYTES (2u << 20)

/* ---- virtqueues: what a device sees ---- */

struct vmm_virtq;

/* One guest buffer of a chain: [gpa, gpa + len) lies wholly in guest memory
 * (checked at pop time; it may span adjacent memory regions). len > 0. */
struct vmm_virtq_seg {
    vmm_gpa_t gpa;
    uint32_t len;
};

/*
 * A descriptor chain popped from a queue: plain data, owned by the device
 * from vmm_virtq_pop until it hands it back with vmm_virtq_push (or frees it
 * with vmm_virtq_chain_free). The library allocates it (with the ring's
 * bookkeeping beside it, out of the device's reach), so it needs no size
 * field: fields may be appended. The segments were copied out of the guest's
 * descriptor table (direct or indirect) and checked; the guest cannot change
 * them any more, only the bytes of the buffers they point to.
 *
 * seg[0 .. nr_readable) are device-readable (the driver's request),
 * seg[nr_readable .. nr_readable + nr_writable) device-writable (room for the
 * reply), in chain order; at most VMM_VIRTQ_MAX_CHAIN segments in all.
 * Totals are at most VMM_VIRTQ_MAX_CHAIN * 4 GiB, so they never overflow a
 * uint64_t.
 */
struct vmm_virtq_chain {
    struct vmm_virtq *queue; /* the queue it came from (borrowed) */
    unsigned nr_readable;
    unsigned nr_writable;
    uint64_t readable_len; /* sum of the readable segments' lengths */
    uint64_t writable_len; /* sum of the writable segments' lengths */
    struct vmm_virtq_seg *seg;
    void *priv; /* free for the device's own use (e.g. its request) */
};

/*
 * Pop the next chain the driver made available. Returns 1 with *out set (the
 * device owns it now), 0 when the queue is empty (or not ready, or the
 * chains the device holds have spent VMM_VIRTQ_MAX_HELD_BYTES: then the
 * resume callback runs once releases make room), -EIO when the queue is
 * broken (see above; the device should stop using it), or -ENOMEM.
 * Malformed chains are completed with 0 bytes and skipped, never returned.
 * With VIRTIO_RING_F_EVENT_IDX, popping the queue empty publishes
 * avail_event so the driver notifies again for the next buffer (and
 * re-checks the ring afterwards, so no buffer made available meanwhile is
 * missed): a device that pops until 0 never loses a notification.
 * The available index is read (with acquire ordering) only when the device
 * has consumed every entry seen in the previous read.
 */
VMM_API VMM_MUST_USE int vmm_virtq_pop(struct vmm_virtq *q, struct vmm_virtq_chain **out);

/*
 * Hand chain back to the driver as used with `written` bytes written into its
 * device-writable part (clamped to writable_len, with a log line), and free
 * it. A chain popped before the queue was last reset is only freed. Does not
 * interrupt the guest: call vmm_virtq_notify after a batch of pushes.
 * Returns 0, -EIO (queue broken; chain freed) or -EFAULT. chain may be NULL
 * (no-op). Freed chains are kept for reuse by the queue's next pops; a chain
 * pushed or freed a second time is refused with -EINVAL and a log line (the
 * ring is not written), as far as the queue can still tell.
 */
VMM_API int vmm_virtq_push(struct vmm_virtq *q, struct vmm_virtq_chain *chain, uint32_t written);

/* Free a chain without completing it (the driver never sees it used: only
 * for when the device is being reset or destroyed). Accepts NULL. A chain
 * may be freed after its queue was destroyed. */
VMM_API void vmm_virtq_chain_free(struct vmm_virtq_chain *chain);

/*
 * Send a used-buffer notification if chains were pushed (or malformed ones
 * completed) since the last one and the driver asked for it
 * (VIRTQ_AVAIL_F_NO_INTERRUPT clear, or with VIRTIO_RING_F_EVENT_IDX when
 * used_event says so, with vring_need_event wrap-around semantics).
 * Returns true when an interrupt was raised.
 */
VMM_API bool vmm_virtq_notify(struct vmm_virtq *q);

/* The queue's index on its device, its negotiated size (0 when not set up),
 * and whether the driver has made it ready (and it is not broken). */
VMM_API unsigned vmm_virtq_index(const struct vmm_virtq *q);
VMM_API unsigned vmm_virtq_size(const struct vmm_virtq *q);
VMM_API bool vmm_virtq_ready(const struct vmm_virtq *q);

/*
 * Copy len bytes of chain's device-readable part, starting offset bytes in,
 * into dst. Returns the bytes copied (less than len when the readable part
 * ends first), or -EFAULT (guest memory gone) / -EINVAL (len > INT_MAX).
 */
VMM_API VMM_MUST_USE int vmm_virtq_chain_read(const struct vmm_virtq_chain *chain, uint64_t offset,
                                              void *dst, size_t len);

/* Copy len bytes of src into chain's device-writable part at offset. Returns
 * the bytes copied (less than len when the writable part ends first), -EFAULT,
 * -EROFS (read-only guest memory) or -EINVAL (len > INT_MAX). */
VMM_API VMM_MUST_USE int vmm_virtq_chain_write(const struct vmm_virtq_chain *chain, uint64_t offset,
                                               const void *src, size_t len);

/*
 * Host iovecs over [offset, offset + len) of chain's readable part (writable
 * false) or writable part (writable true), for zero-copy I/O (readv/writev,
 * io_uring). A segment that crosses from one memory region into the next is
 * split into one iovec per region, so the count can exceed the segment count.
 * The range is clamped to the end of the part. The host pointers stay valid
 * until the memory map is destroyed; the guest may change the bytes under
 * them at any time. Writable iovecs mark the guest pages dirty.
 * Returns the number of iovecs filled (0 for an empty range), -ENOSPC when
 * more than max_iov are needed (nothing useful filled), -EFAULT or -EROFS.
 */
VMM_API VMM_MUST_USE int vmm_virtq_chain_iov(const struct vmm_virtq_chain *chain, bool writable,
                                             uint64_t offset, uint64_t len, struct iovec *iov,
                                             unsigned max_iov);

/* Counters of one queue. */
struct vmm_virtq_stats {
    uint32_t size;         /* sizeof(struct vmm_virtq_stats); growth convention (abi.h) */
    uint64_t popped;       /* chains handed to the device */
    uint64_t pushed;       /* used entries written (including bad chains) */
    uint64_t bad_chains;   /* malformed chains completed with 0 bytes */
    uint64_t interrupts;   /* used-buffer notifications sent */
    uint64_t suppressed;   /* notifications the driver did not want */
    uint64_t stale_pushes; /* pushes of chains from before a reset */
    bool broken;           /* the queue needs a reset */
    uint64_t held_bytes;   /* host memory of the chains the device holds now */
    uint64_t throttled;    /* times pop held back for VMM_VIRTQ_MAX_HELD_BYTES */
};

/* Copy q's counters into *stats, whose .size the caller has set (abi.h).
 * Returns 0, or -EINVAL (NULL, or a size the library does not know: nothing
 * is written). Under the device lock, like every queue call (the queue has
 * no lock of its own). */
VMM_API int vmm_virtq_get_stats(const struct vmm_virtq *q, struct vmm_virtq_stats *stats);

/* ---- virtqueues: what a transport (and a unit test) uses ---- */

/* How a queue tells its transport about events. Both are called with the
 * device lock held, from whatever thread called the queue function. */
struct vmm_virtq_callbacks {
    uint32_t size; /* sizeof(struct vmm_virtq_callbacks); growth convention (abi.h) */
    /* Raise a used-buffer interrupt. */
    void (*interrupt)(void *opaque, struct vmm_virtq *q);
    /* The queue broke (see the top of this file); called once per break. */
    void (*broken)(void *opaque, struct vmm_virtq *q);
    void *opaque;
    /* Pop held back for the held-memory budget, and a push or chain_free
     * has just made room: have the device pop again soon. Called from inside
     * that push or chain_free, so it must not pop itself (the transports
     * signal the queue's notification instead). NULL: none. */
    void (*resume)(void *opaque, struct vmm_virtq *q);
};

/*
 * Create a split queue on mem (borrowed; must outlive the queue), with index
 * (its number on the device) and max_size (a power of two, 1..32768).
 * cb may be NULL (no interrupts); the queue keeps a copy of it. Returns 0,
 * -EINVAL (also a cb->size the library does not know) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_virtq_create(struct vmm_memory *mem, unsigned index, unsigned max_size,
                                          const struct vmm_virtq_callbacks *cb,
                                          struct vmm_virtq **out);
VMM_API void vmm_virtq_destroy(struct vmm_virtq *q); /* accepts NULL */

/* Negotiated features that change ring behaviour (EVENT_IDX, INDIRECT_DESC);
 * set before enabling. */
VMM_API void vmm_virtq_set_features(struct vmm_virtq *q, uint64_t features);

/*
 * Enable the queue with the driver's layout: size (a power of two up to the
 * queue's max), the descriptor table, the driver area (avail ring) and the
 * device area (used ring). Checks alignment (16, 2, 4) and that each area
 * lies wholly in guest memory. Returns 0, -EINVAL (bad size or alignment) or
 * -EFAULT (outside guest memory); on error the queue stays disabled.
 */
VMM_API VMM_MUST_USE int vmm_virtq_enable(struct vmm_virtq *q, unsigned size, vmm_gpa_t desc,
                                          vmm_gpa_t driver, vmm_gpa_t device);

/* Disable the queue and forget its layout and indices (device reset or
 * queue reset). Chains still held by the device become stale: pushing them
 * only frees them. */
VMM_API void vmm_virtq_reset(struct vmm_virtq *q);

/* ---- the device model interface ---- */

struct vmm_virtio_transport;

/*
 * Callbacks of a device model. All but attach and destroy run with the device
 * lock held: the config and status ones on the vCPU thread that made the
 * register access, queue_notify on the event loop thread (on the vCPU thread
 * for a standalone transport without a loop). attach and destroy run without
 * it, when no other callback can run. opaque is struct
 * vmm_virtio_device.opaque. Every callback but config_read may be NULL.
 * Growth convention (abi.h): the transport keeps a copy of the first .size
 * bytes, and a callback past them is NULL.
 */
struct vmm_virtio_device_ops {
    uint32_t size; /* sizeof(struct vmm_virtio_device_ops) */
    /* Once, when the device is put on a transport, before the guest can see
     * it: keep t (valid until destroy) and add the device's own fds to
     * vmm_virtio_event_loop(t). Return 0 or -errno (the transport then fails
     * to create, and calls destroy). */
    int (*attach)(void *opaque, struct vmm_virtio_transport *t);
    /* Read len bytes of device configuration space at offset into data
     * (little-endian). The transport has checked offset + len <= config_size. */
    void (*config_read)(void *opaque, uint32_t offset, void *data, uint32_t len);
    /* A driver write to configuration space (checked as above). NULL: writes
     * are ignored. */
    void (*config_write)(void *opaque, uint32_t offset, const void *data, uint32_t len);
    /* The driver set DRIVER_OK: the queues it made ready can be used, with
     * features negotiated. Return 0, or -errno to make the transport set
     * DEVICE_NEEDS_RESET. */
    int (*activate)(void *opaque, uint64_t features);
    /* The driver reset the device (wrote 0 to status) or the transport is
     * going away: stop using the queues, finish or abandon requests in flight
     * so no more guest memory is written, free held chains
     * (vmm_virtq_chain_free) and return to the initial state. The queues are
     * reset right after it returns. */
    void (*reset)(void *opaque);
    /* The driver notified queue index (already ready, DRIVER_OK set). Event
     * loop thread. Pop until vmm_virtq_pop returns 0 (or the device cannot
     * take more for now), push, then vmm_virtq_notify. */
    void (*queue_notify)(void *opaque, unsigned index);
    /* VIRTIO_F_RING_RESET: the driver is resetting queue index alone; like
     * reset, for one queue. The queue is reset after it returns. */
    void (*queue_reset)(void *opaque, unsigned index);
    /* The transport is being destroyed (after reset): free the device. Also
     * called when attach or the transport's creation fails. Without the lock,
     * so it may remove its fds from the event loop. */
    void (*destroy)(void *opaque);
};

/*
 * A device model's description, handed to a transport (which copies it) or
 * filled by a vmm_virtio_*_create. Zero means default; growth convention
 * (abi.h): a transport refuses a size it does not know, here or in ops, with
 * -EINVAL and without calling ops->destroy.
 */
struct vmm_virtio_device {
    uint32_t size;           /* sizeof(struct vmm_virtio_device) */
    uint32_t type;           /* VMM_VIRTIO_ID_* */
    uint64_t features;       /* device features offered (only those in
                                VMM_VIRTIO_DEVICE_FEATURES_MASK); the transport
                                adds VMM_VIRTIO_TRANSPORT_FEATURES */
    unsigned num_queues;     /* 1 .. VMM_VIRTIO_MAX_QUEUES */
    unsigned queue_max_size; /* power of two 1..32768; default 256 */
    uint32_t config_size;    /* bytes of device configuration space */
    const struct vmm_virtio_device_ops *ops;
    void *opaque;
    const char *name; /* for log lines ("virtio-rng"); default "virtio" */
};

/* Take and release the device lock, for work the device starts itself (its
 * own fds, timers, completions). Not from inside a device callback. */
VMM_API void vmm_virtio_lock(struct vmm_virtio_transport *t);
VMM_API void vmm_virtio_unlock(struct vmm_virtio_transport *t);

/* Queue index of the device (NULL when index >= num_queues). Borrowed, valid
 * until the transport is destroyed. */
VMM_API struct vmm_virtq *vmm_virtio_queue(struct vmm_virtio_transport *t, unsigned index);

/* The features negotiated (valid once FEATURES_OK was accepted). Lock held. */
VMM_API uint64_t vmm_virtio_features(const struct vmm_virtio_transport *t);

/* True between DRIVER_OK and the next reset (and not NEEDS_RESET). Lock held. */
VMM_API bool vmm_virtio_driver_ok(const struct vmm_virtio_transport *t);

/* The device's configuration changed: bump ConfigGeneration and send a
 * configuration-change interrupt (when DRIVER_OK). Lock held. */
VMM_API void vmm_virtio_config_changed(struct vmm_virtio_transport *t);

/* The device cannot go on: set DEVICE_NEEDS_RESET and send a configuration-
 * change interrupt. Lock held. */
VMM_API void vmm_virtio_set_needs_reset(struct vmm_virtio_transport *t);

/* The event loop the device's back end runs on (NULL when the transport has
 * none, e.g. standalone in a unit test), and the guest memory. Borrowed. */
VMM_API struct vmm_event_loop *vmm_virtio_event_loop(struct vmm_virtio_transport *t);
VMM_API struct vmm_memory *vmm_virtio_memory(struct vmm_virtio_transport *t);

/* Free a device description made by a vmm_virtio_*_create that was never
 * handed to a transport (calls its ops->destroy). Accepts NULL. */
VMM_API void vmm_virtio_device_free(struct vmm_virtio_device *dev);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_H */
