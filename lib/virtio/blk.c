/* SPDX-License-Identifier: Apache-2.0 */
/* The virtio block device (virtio 1.2 section 5.2): request parsing and
 * checking, and their dispatch to the io_uring back end (blkio.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_blk.h>

#include "event/event_internal.h"
#include "virtio/blkio.h"
#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define SECTOR       512u
#define SECTOR_SHIFT 9
#define HDR_LEN      16u
#define DWZ_LEN      16u /* struct virtio_blk_discard_write_zeroes */
/* iovecs for one request's data: SEG_MAX segments, plus slack for segments
 * that cross from one memory region into the next. */
#define BLK_IOV_MAX (VMM_VIRTIO_BLK_SEG_MAX + 2)

/* The configuration space as the driver sees it (little-endian on x86). */
struct blk_config {
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct blk_config) == VMM_VIRTIO_BLK_CFG_SIZE, "config layout");
_Static_assert(__builtin_offsetof(struct blk_config, blk_size) == VMM_VIRTIO_BLK_CFG_BLK_SIZE,
               "config layout");
_Static_assert(__builtin_offsetof(struct blk_config, max_discard_sectors) ==
                   VMM_VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS,
               "config layout");
_Static_assert(__builtin_offsetof(struct blk_config, write_zeroes_may_unmap) ==
                   VMM_VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP,
               "config layout");

struct blk_hdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct blk_dwz {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

struct blk;

/* One request in flight: its chain and the iovecs the kernel reads. What a
 * completion reads, and the first iovecs, share the first cache line. */
struct blk_req {
    struct vmm_virtq_chain *chain;
    uint8_t *status; /* IN: the status byte's host address (NULL: write it by gpa) */
    uint64_t data_len;
    struct vmm_virtq *q;
    struct blk_req *next; /* free list */
    uint32_t type;
    struct iovec iov[BLK_IOV_MAX];
};

#define BLK_REQ_ALIGN 64

struct blk {
    struct vmm_virtio_transport *t;
    struct vmm_blkio *io;
    struct blk_config config;
    char serial[VMM_VIRTIO_BLK_ID_BYTES];
    uint64_t capacity; /* sectors */
    bool readonly;
    bool discard;      /* offered */
    bool write_zeroes; /* offered */
    bool watched;      /* the back end's eventfd is on the loop */
    bool retry;        /* a pop ran out of memory: pop again from the loop */
    bool draining;     /* reset: completions free their chains */
    bool notify;       /* pushed since the last vmm_virtq_notify */
    struct blk_req *free;
    struct vmm_log_limit bad_log, io_log; /* for the disk's life */
    struct vmm_virtio_blk_stats stats;
};

static void blk_log_bad(struct blk *d, const char *why, const struct vmm_virtq_chain *c)
{
    d->stats.bad_requests++;
    vmm_log_limited(&d->bad_log, VMM_VIRTIO_LOG_BUDGET,
                    "%s: bad request: %s (readable %llu bytes, writable %llu)", d->t->name, why,
                    (unsigned long long)c->readable_len, (unsigned long long)c->writable_len);
}

static struct blk_req *req_get(struct blk *d)
{
    struct blk_req *r = d->free;
    if (r) {
        d->free = r->next;
        return r;
    }
    return aligned_alloc(BLK_REQ_ALIGN,
                         (sizeof(*r) + BLK_REQ_ALIGN - 1) & ~(size_t)(BLK_REQ_ALIGN - 1));
}

/* Field by field: the iovec array (2 KiB) is filled only as far as used. */
static void req_init(struct blk_req *r, struct vmm_virtq *q, struct vmm_virtq_chain *c,
                     uint32_t type, uint64_t data_len)
{
    r->q = q;
    r->chain = c;
    r->next = NULL;
    r->type = type;
    r->data_len = data_len;
    r->status = NULL;
}

static void req_put(struct blk *d, struct blk_req *r)
{
    r->next = d->free;
    d->free = r;
}

/* Write the status byte (the last writable byte) and push the chain with
 * `data` bytes of the writable part written before it. */
static void complete(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c, uint8_t status,
                     uint64_t data)
{
    if (status == VMM_VIRTIO_BLK_S_IOERR)
        d->stats.io_errors++;
    else if (status == VMM_VIRTIO_BLK_S_UNSUPP)
        d->stats.unsupported++;
    if (d->draining) {
        vmm_virtq_chain_free(c);
        return;
    }
    uint32_t written = 0;
    /* The guest may have made the status byte's memory vanish or read-only
     * in between: then the used length says nothing was written. */
    if (vmm_virtq_chain_write(c, c->writable_len - 1, &status, 1) == 1)
        written = (uint32_t)(data < c->writable_len - 1 ? data : c->writable_len - 1) + 1;
    (void)vmm_virtq_push(q, c, written);
    d->notify = true;
}

/* Complete a read whose status byte's host address is known: the kernel
 * wrote into the buffers after they were marked dirty, so mark them again
 * (a dirty-log fetch in between would have lost them). */
static void complete_in(struct blk *d, struct blk_req *r, uint8_t status, uint64_t data)
{
    struct vmm_virtq_chain *c = r->chain;
    if (status == VMM_VIRTIO_BLK_S_IOERR)
        d->stats.io_errors++;
    if (d->draining) {
        vmm_virtq_chain_free(c);
        return;
    }
    *r->status = status;
    vmm_virtq_chain_mark_dirty(c, c->writable_len);
    (void)vmm_virtq_push(r->q, c, (uint32_t)(data < r->data_len ? data : r->data_len) + 1);
    d->notify = true;
}

/* Sector range check: [sector, sector + count) inside the disk, in bytes
 * without overflow. Returns the byte offset or UINT64_MAX when outside. */
static uint64_t range_offset(const struct blk *d, uint64_t sector, uint64_t count)
{
    uint64_t end;
    if (__builtin_add_overflow(sector, count, &end) || end > d->capacity)
        return UINT64_MAX;
    return sector << SECTOR_SHIFT; /* sector < capacity < 2^55 */
}

static void blk_done(void *opaque, void *cookie, int64_t res)
{
    struct blk *d = opaque;
    struct blk_req *r = cookie;
    uint8_t status = VMM_VIRTIO_BLK_S_OK;
    uint64_t data = 0;
    switch (r->type) {
    case VMM_VIRTIO_BLK_T_IN:
        /* A short read (the image shrank under us) is an error too. */
        if (res > 0)
            data = (uint64_t)res;
        if (res != (int64_t)r->data_len)
            status = VMM_VIRTIO_BLK_S_IOERR;
        else
            d->stats.bytes_read += r->data_len;
        break;
    case VMM_VIRTIO_BLK_T_OUT:
        if (res != (int64_t)r->data_len)
            status = VMM_VIRTIO_BLK_S_IOERR;
        else
            d->stats.bytes_written += r->data_len;
        break;
    case VMM_VIRTIO_BLK_T_DISCARD:
        /* Discarding is a hint the device may ignore. */
        if (res < 0 && res != -EOPNOTSUPP)
            status = VMM_VIRTIO_BLK_S_IOERR;
        break;
    default:
        if (res < 0)
            status = VMM_VIRTIO_BLK_S_IOERR;
        break;
    }
    if (status != VMM_VIRTIO_BLK_S_OK)
        vmm_log_limited(&d->io_log, VMM_VIRTIO_LOG_BUDGET, "%s: request type %u failed: %s",
                        d->t->name, r->type, res < 0 ? vmm_strerror((int)res) : "short transfer");
    if (r->status)
        complete_in(d, r, status, data);
    else
        complete(d, r->q, r->chain, status, data);
    req_put(d, r);
}

/* Hand a checked request to the back end; on refusal answer IOERR. */
static void submit(struct blk *d, struct blk_req *r, int err)
{
    if (err == 0)
        return;
    vmm_log_limited(&d->io_log, VMM_VIRTIO_LOG_BUDGET,
                    "%s: request type %u refused by the back end: %s", d->t->name, r->type,
                    vmm_strerror(err));
    complete(d, r->q, r->chain, VMM_VIRTIO_BLK_S_IOERR, 0);
    req_put(d, r);
}

static void do_rw(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c,
                  const struct blk_hdr *h)
{
    bool in = h->type == VMM_VIRTIO_BLK_T_IN;
    /* IN: the header alone is readable, the data precedes the status byte.
     * OUT: the data follows the header, the status byte alone is writable. */
    uint64_t data_len = in ? c->writable_len - 1 : c->readable_len - HDR_LEN;
    if (in ? c->readable_len != HDR_LEN : c->writable_len != 1) {
        blk_log_bad(d, in ? "read with readable data" : "write with writable data", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (data_len % SECTOR) {
        blk_log_bad(d, "data length not a multiple of 512", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (!in && d->readonly) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    uint64_t offset = range_offset(d, h->sector, data_len >> SECTOR_SHIFT);
    if (offset == UINT64_MAX) {
        blk_log_bad(d, "sectors beyond the capacity", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (in)
        d->stats.reads++;
    else
        d->stats.writes++;
    if (data_len == 0) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_OK, 0);
        return;
    }
    if (data_len > VMM_BLKIO_MAX_RW) {
        blk_log_bad(d, "transfer too large", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    struct blk_req *r = req_get(d);
    if (!r) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    req_init(r, q, c, h->type, data_len);
    /* A read takes the status byte with the data, so its host address is
     * at hand at completion. */
    int n = vmm_virtq_chain_iov(c, in, in ? 0 : HDR_LEN, in ? data_len + 1 : data_len, r->iov,
                                BLK_IOV_MAX);
    if (n <= 0) {
        blk_log_bad(d, n == -ENOSPC ? "too many segments" : "data not in guest memory", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        req_put(d, r);
        return;
    }
    if (in) {
        struct iovec *last = &r->iov[n - 1];
        r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
        if (--last->iov_len == 0)
            n--;
    }
    submit(d, r,
           in ? vmm_blkio_readv(d->io, offset, r->iov, (unsigned)n, r)
              : vmm_blkio_writev(d->io, offset, r->iov, (unsigned)n, r));
}

static void do_discard_zeroes(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c,
                              const struct blk_hdr *h)
{
    bool discard = h->type == VMM_VIRTIO_BLK_T_DISCARD;
    if (discard ? !d->discard : !d->write_zeroes) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_UNSUPP, 0);
        return;
    }
    if (d->readonly) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    /* At most max_discard_seg (max_write_zeroes_seg) ranges, and nothing
     * writable but the status byte. */
    uint64_t seg_bytes = c->readable_len - HDR_LEN;
    if (seg_bytes == 0 || seg_bytes % DWZ_LEN ||
        seg_bytes / DWZ_LEN > VMM_VIRTIO_BLK_MAX_DISC_SEG || c->writable_len != 1) {
        blk_log_bad(d, "bad discard/write-zeroes segment count or writable data", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    struct blk_dwz s;
    if (vmm_virtq_chain_read(c, HDR_LEN, &s, sizeof(s)) != (int)sizeof(s)) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    /* Unknown flags, and unmap on a discard, are UNSUPP (section 5.2.6.2). */
    if ((s.flags & ~VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ||
        (discard && (s.flags & VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_UNSUPP, 0);
        return;
    }
    uint64_t offset = range_offset(d, s.sector, s.num_sectors);
    if (offset == UINT64_MAX || s.num_sectors > VMM_VIRTIO_BLK_MAX_DISCARD) {
        blk_log_bad(d, "discard/write-zeroes range beyond the capacity or limit", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    if (discard)
        d->stats.discards++;
    else
        d->stats.write_zeroes++;
    if (s.num_sectors == 0) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_OK, 0);
        return;
    }
    struct blk_req *r = req_get(d);
    if (!r) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    req_init(r, q, c, h->type, 0);
    uint64_t len = (uint64_t)s.num_sectors << SECTOR_SHIFT;
    submit(d, r,
           discard ? vmm_blkio_discard(d->io, offset, len, r)
                   : vmm_blkio_write_zeroes(d->io, offset, len,
                                            s.flags & VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, r));
}

static void do_get_id(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c)
{
    d->stats.get_ids++;
    /* The id is 20 bytes; a shorter buffer gets its start. */
    uint64_t room = c->writable_len - 1;
    size_t n = room < VMM_VIRTIO_BLK_ID_BYTES ? (size_t)room : VMM_VIRTIO_BLK_ID_BYTES;
    if (c->readable_len != HDR_LEN || room > VMM_VIRTIO_BLK_ID_BYTES ||
        (n && vmm_virtq_chain_write(c, 0, d->serial, n) != (int)n)) {
        blk_log_bad(d, "get-id with readable data, room past 20 bytes or an unwritable buffer", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    complete(d, q, c, VMM_VIRTIO_BLK_S_OK, n);
}

static void do_flush(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c)
{
    /* A flush is the header and the status byte, nothing more. */
    if (c->readable_len != HDR_LEN || c->writable_len != 1) {
        blk_log_bad(d, "flush with data", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    d->stats.flushes++;
    struct blk_req *r = req_get(d);
    if (!r) {
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    req_init(r, q, c, VMM_VIRTIO_BLK_T_FLUSH, 0);
    submit(d, r, vmm_blkio_flush(d->io, r));
}

/* Check one popped chain and start (or answer) its request. */
static void handle(struct blk *d, struct vmm_virtq *q, struct vmm_virtq_chain *c)
{
    if (c->writable_len == 0) {
        /* Nowhere to put a status: the driver learns only from the length. */
        blk_log_bad(d, "no device-writable status byte", c);
        (void)vmm_virtq_push(q, c, 0);
        d->notify = true;
        return;
    }
    struct blk_hdr h;
    if (c->readable_len < HDR_LEN || vmm_virtq_chain_read(c, 0, &h, sizeof(h)) != HDR_LEN) {
        blk_log_bad(d, "header shorter than 16 device-readable bytes", c);
        complete(d, q, c, VMM_VIRTIO_BLK_S_IOERR, 0);
        return;
    }
    switch (h.type) {
    case VMM_VIRTIO_BLK_T_IN:
    case VMM_VIRTIO_BLK_T_OUT:
        do_rw(d, q, c, &h);
        break;
    case VMM_VIRTIO_BLK_T_FLUSH:
        do_flush(d, q, c);
        break;
    case VMM_VIRTIO_BLK_T_GET_ID:
        do_get_id(d, q, c);
        break;
    case VMM_VIRTIO_BLK_T_DISCARD:
    case VMM_VIRTIO_BLK_T_WRITE_ZEROES:
        do_discard_zeroes(d, q, c, &h);
        break;
    default:
        complete(d, q, c, VMM_VIRTIO_BLK_S_UNSUPP, 0);
        break;
    }
}

/* Interrupt once for everything pushed since the last time. */
static void flush_notify(struct blk *d, struct vmm_virtq *q)
{
    if (d->notify && q) {
        d->notify = false;
        vmm_virtq_notify(q);
    }
}

/* Pop and start the requests one wake-up's budget allows (the rest on the
 * next wake-up), then submit them in one go (lock held). Every request takes
 * at most one back-end slot and the back end has one per queue entry
 * (depth == the largest queue size), so it has room for all a well-behaved
 * driver can make available; a driver that hands out a head twice gets
 * IOERR for what does not fit (vmm_blkio_* return -EBUSY). */
static void pop_all(struct blk *d, struct vmm_virtq *q)
{
    d->retry = false;
    if (!q || !vmm_virtio_driver_ok(d->t) || !vmm_virtq_ready(q))
        return;
    struct vmm_virtq_chain *c;
    int r = 0;
    unsigned chains = 0;
    while (chains < VMM_VIRTIO_WAKE_CHAINS && (r = vmm_virtq_pop(q, &c)) > 0) {
        handle(d, q, c);
        chains++;
    }
    if (chains == VMM_VIRTIO_WAKE_CHAINS)
        vmm_virtio_requeue(d->t, vmm_virtq_index(q));
    if (r == -ENOMEM) {
        /* The chains left wait for memory. The driver need not notify
         * again (EVENT_IDX), so come back from the event loop. */
        d->retry = true;
        if (d->watched)
            vmm_blkio_kick(d->io);
    }
    /* Requests the kernel finishes inside the submit call (page-cache
     * hits) complete in it. */
    (void)vmm_blkio_submit(d->io);
    if (!d->watched) {
        /* No event loop: finish everything here, synchronously. */
        while (vmm_blkio_inflight(d->io))
            if (vmm_blkio_wait(d->io) < 0)
                break;
    }
}

static void process_queue(struct blk *d)
{
    struct vmm_virtq *q = vmm_virtio_queue(d->t, 0);
    pop_all(d, q);
    flush_notify(d, q);
}

/* Event loop: the back end has completions, or pop_all asked for a retry. */
static void blk_io_event(void *opaque, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    struct blk *d = opaque;
    vmm_virtio_lock(d->t);
    (void)vmm_blkio_reap(d->io); /* edge-triggered: no read(2) */
    struct vmm_virtq *q = vmm_virtio_queue(d->t, 0);
    if (d->retry)
        pop_all(d, q);
    flush_notify(d, q); /* one interrupt for completions and retried pops */
    vmm_virtio_unlock(d->t);
}

/* ---- snapshots: requests finished first; the disk must match ---- */

/* Let every request in flight complete into the guest's queue, so that the
 * snapshot holds none (a request pending across a restore would never
 * complete). */
static int blk_quiesce(void *opaque)
{
    struct blk *d = opaque;
    while (vmm_blkio_inflight(d->io)) {
        int r = vmm_blkio_wait(d->io);
        if (r < 0) {
            vmm_log_error("virtio-blk: finishing requests in flight: %s", vmm_strerror(r));
            return r;
        }
    }
    flush_notify(d, vmm_virtio_queue(d->t, 0));
    return 0;
}

static int blk_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    struct blk *d = opaque;
    snap_put_u64(w, d->capacity);
    snap_put_u32(w, d->readonly);
    return 0;
}

static int blk_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct blk *d = opaque;
    uint64_t capacity;
    uint32_t readonly;
    if (snap_get_u64(r, &capacity) < 0 || snap_get_u32(r, &readonly) < 0 || readonly > 1) {
        vmm_log_error("restore: malformed virtio-blk state");
        return -EBADMSG;
    }
    if (capacity != d->capacity || !!readonly != d->readonly) {
        vmm_log_error("restore: the disk had %" PRIu64 " sectors%s, this one %" PRIu64 "%s",
                      capacity, readonly ? " (read-only)" : "", d->capacity,
                      d->readonly ? " (read-only)" : "");
        return -EINVAL;
    }
    return 0;
}

static const struct virtio_snap_ops blk_snap = {
    .quiesce = blk_quiesce, .save = blk_snap_save, .restore = blk_snap_restore};

static int blk_attach(void *opaque, struct vmm_virtio_transport *t)
{
    struct blk *d = opaque;
    d->t = t;
    t->snap = &blk_snap;
    struct vmm_event_loop *loop = vmm_virtio_event_loop(t);
    if (loop) {
        /* Edge-triggered: each completion signal or kick is one callback,
         * and the eventfd need not be read (vmm_blkio_reap). */
        int r = vmm_event_loop_add_edge(loop, vmm_blkio_fd(d->io), EPOLLIN, blk_io_event, d);
        if (r < 0)
            return r;
        d->watched = true;
    }
    return 0;
}

static void blk_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct blk *d = opaque;
    memcpy(data, (const uint8_t *)&d->config + offset, len);
}

static void blk_queue_notify(void *opaque, unsigned index)
{
    (void)index;
    process_queue(opaque);
}

/* Cancel the requests in flight and wait for them, freeing (not pushing)
 * their chains: after a reset no guest memory may be written, and nothing the
 * driver asked before it may complete into the queue it sets up next. */
static void blk_reset(void *opaque)
{
    struct blk *d = opaque;
    d->draining = true;
    if (vmm_blkio_cancel_all(d->io) < 0)
        vmm_log_limited(&d->io_log, VMM_VIRTIO_LOG_BUDGET,
                        "%s: reset: requests still in flight could not be cancelled", d->t->name);
    d->draining = false;
    d->retry = false;
    d->notify = false;
}

static void blk_queue_reset(void *opaque, unsigned index)
{
    (void)index;
    blk_reset(opaque); /* one queue: the same thing */
}

static void blk_free(struct blk *d)
{
    vmm_blkio_close(d->io);
    while (d->free) {
        struct blk_req *r = d->free;
        d->free = r->next;
        free(r);
    }
    free(d);
}

static void blk_destroy(void *opaque)
{
    struct blk *d = opaque;
    if (d->watched)
        (void)vmm_event_loop_remove(vmm_virtio_event_loop(d->t), vmm_blkio_fd(d->io));
    blk_free(d);
}

/* Data segments offered per request: the header and the status byte come on
 * top, and a chain may be no longer than the queue (virtio 1.2 section
 * 2.7.5.3.1; Linux takes seg_max as given, indirect descriptors or not). */
static uint32_t blk_seg_max(unsigned qsize)
{
    if (qsize <= 2)
        return 1; /* only a header and data in one descriptor fit */
    return qsize - 2 < VMM_VIRTIO_BLK_SEG_MAX ? qsize - 2 : VMM_VIRTIO_BLK_SEG_MAX;
}

static const struct vmm_virtio_device_ops blk_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = blk_attach,
    .config_read = blk_config_read,
    .reset = blk_reset,
    .queue_notify = blk_queue_notify,
    .queue_reset = blk_queue_reset,
    .destroy = blk_destroy,
};

int vmm_virtio_blk_create(const struct vmm_virtio_blk_config *cfg, struct vmm_virtio_device *dev)
{
    struct vmm_virtio_blk_config c;
    if (!cfg || !dev || !VMM_ABI_OUT_OK(dev) || VMM_ABI_COPY_IN(&c, cfg) < 0 || !c.path)
        return -EINVAL;
    cfg = &c;
    unsigned qsize = cfg->queue_size ? cfg->queue_size : 256;
    if (!vmm_is_pow2(qsize) || qsize > VMM_VIRTQ_MAX_SIZE || qsize > VMM_BLKIO_MAX_DEPTH)
        return -EINVAL;
    const char *serial = cfg->serial ? cfg->serial : "libvmm-blk";
    size_t slen = strlen(serial);
    if (slen > VMM_VIRTIO_BLK_ID_BYTES)
        return -EINVAL;
    struct blk *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    memcpy(d->serial, serial, slen);
    d->readonly = cfg->readonly;
    struct vmm_blkio_config bc = {
        .path = cfg->path, .readonly = cfg->readonly, .direct = cfg->direct, .depth = qsize};
    int r = vmm_blkio_open(&bc, blk_done, d, &d->io);
    if (r < 0) {
        free(d);
        return r;
    }
    uint64_t size = vmm_blkio_size(d->io);
    uint32_t bsize = vmm_blkio_block_size(d->io);
    if (size < SECTOR) {
        vmm_log_error("virtio-blk: %s is smaller than one sector", cfg->path);
        blk_free(d);
        return -EINVAL;
    }
    if (size % SECTOR)
        vmm_log_warn("virtio-blk: %s: the last %llu bytes (less than a sector) are not used",
                     cfg->path, (unsigned long long)(size % SECTOR));
    d->capacity = size >> SECTOR_SHIFT;
    d->stats.capacity = d->capacity;
    d->discard = !cfg->readonly && !cfg->no_discard;
    d->write_zeroes = !cfg->readonly && !cfg->no_write_zeroes;
    d->config = (struct blk_config){
        .capacity = d->capacity,
        .seg_max = blk_seg_max(qsize),
        .blk_size = bsize,
        .max_discard_sectors = VMM_VIRTIO_BLK_MAX_DISCARD,
        .max_discard_seg = VMM_VIRTIO_BLK_MAX_DISC_SEG,
        .discard_sector_alignment = bsize / SECTOR,
        .max_write_zeroes_sectors = VMM_VIRTIO_BLK_MAX_DISCARD,
        .max_write_zeroes_seg = VMM_VIRTIO_BLK_MAX_DISC_SEG,
        .write_zeroes_may_unmap = 1,
    };
    uint64_t features = VMM_VIRTIO_BLK_F_SEG_MAX | VMM_VIRTIO_BLK_F_BLK_SIZE |
                        VMM_VIRTIO_BLK_F_FLUSH | (cfg->readonly ? VMM_VIRTIO_BLK_F_RO : 0) |
                        (d->discard ? VMM_VIRTIO_BLK_F_DISCARD : 0) |
                        (d->write_zeroes ? VMM_VIRTIO_BLK_F_WRITE_ZEROES : 0);
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_BLOCK,
        .features = features,
        .num_queues = 1,
        .queue_max_size = qsize,
        .config_size = VMM_VIRTIO_BLK_CFG_SIZE,
        .ops = &blk_ops,
        .opaque = d,
        .name = "virtio-blk",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_blk(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                          const struct vmm_virtio_blk_config *cfg, struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_blk_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}

int vmm_virtio_blk_get_stats(struct vmm_virtio_transport *t, struct vmm_virtio_blk_stats *stats)
{
    if (!t || !stats || t->caller_ops != &blk_ops || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct blk *d = t->dev.opaque;
    vmm_virtio_lock(t);
    struct vmm_virtio_blk_stats s = d->stats;
    vmm_virtio_unlock(t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
