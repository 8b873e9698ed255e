/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Split virtqueues (virtio 1.2 section 2.7): the descriptor table, available
 * and used rings in guest memory, descriptor chains (direct and indirect),
 * used-buffer notification suppression (flags and event index), and the
 * chain helpers devices use (gather, scatter, iovecs).
 *
 * Everything the guest wrote is copied out of guest memory before it is
 * checked and used; every walk is bounded. A queue has no lock of its own:
 * its device's lock serialises every call (see virtio.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>

#include "virtio_internal.h"

/* Ring layout (little-endian; x86 hosts only for now). */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTQ_DESC_SIZE 16
#define VIRTQ_USED_ELEM 8

/* An indirect table holds at most this many descriptors (the largest queue
 * size: tables may be longer than the queue they sit in). */
#define VIRTQ_MAX_INDIRECT VMM_VIRTQ_MAX_SIZE

/* Malformed chains logged at warning level per queue before going quiet. */
#define VIRTQ_LOG_BUDGET 8

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == VIRTQ_DESC_SIZE, "descriptor layout");

struct vmm_virtq {
    struct vmm_memory *mem;
    const char *label; /* device name for log lines */
    unsigned index;
    unsigned max_size;
    struct vmm_virtq_callbacks cb;

    /* Layout, set by enable. */
    bool ready;
    bool broken;
    unsigned size;
    vmm_gpa_t desc, avail, used;
    bool event_idx;
    bool indirect;

    uint16_t last_avail;   /* next available entry to consume */
    uint16_t shadow_avail; /* avail->idx as last read */
    uint16_t used_idx;     /* next used entry to write (published) */
    uint16_t signalled_used;
    uint32_t reset_gen;

    /* Scratch for collecting a chain's segments before allocating it. */
    struct vmm_virtq_seg *scratch;
    unsigned scratch_cap;

    unsigned log_budget;
    struct vmm_virtq_stats stats;
};

/* Addresses of the ring fields. */
static vmm_gpa_t avail_idx_addr(const struct vmm_virtq *q)
{
    return q->avail + 2;
}
static vmm_gpa_t avail_ring_addr(const struct vmm_virtq *q, unsigned slot)
{
    return q->avail + 4 + 2 * (vmm_gpa_t)slot;
}
static vmm_gpa_t used_event_addr(const struct vmm_virtq *q)
{
    return q->avail + 4 + 2 * (vmm_gpa_t)q->size;
}
static vmm_gpa_t used_idx_addr(const struct vmm_virtq *q)
{
    return q->used + 2;
}
static vmm_gpa_t used_elem_addr(const struct vmm_virtq *q, unsigned slot)
{
    return q->used + 4 + VIRTQ_USED_ELEM * (vmm_gpa_t)slot;
}
static vmm_gpa_t avail_event_addr(const struct vmm_virtq *q)
{
    return q->used + 4 + VIRTQ_USED_ELEM * (vmm_gpa_t)q->size;
}

static uint64_t avail_area_size(unsigned size)
{
    return 6 + 2 * (uint64_t)size;
}
static uint64_t used_area_size(unsigned size)
{
    return 6 + VIRTQ_USED_ELEM * (uint64_t)size;
}

int vmm_virtq_create(struct vmm_memory *mem, unsigned index, unsigned max_size,
                     const struct vmm_virtq_callbacks *cb, struct vmm_virtq **out)
{
    if (!mem || !out || !vmm_is_pow2(max_size) || max_size > VMM_VIRTQ_MAX_SIZE)
        return -EINVAL;
    struct vmm_virtq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->mem = mem;
    q->index = index;
    q->max_size = max_size;
    if (cb)
        q->cb = *cb;
    q->log_budget = VIRTQ_LOG_BUDGET;
    q->label = "virtio";
    *out = q;
    return 0;
}

void vmm_virtq_set_label(struct vmm_virtq *q, const char *label)
{
    q->label = label;
}

void vmm_virtq_destroy(struct vmm_virtq *q)
{
    if (!q)
        return;
    free(q->scratch);
    free(q);
}

void vmm_virtq_set_features(struct vmm_virtq *q, uint64_t features)
{
    q->event_idx = (features & VMM_VIRTIO_F_EVENT_IDX) != 0;
    q->indirect = (features & VMM_VIRTIO_F_INDIRECT_DESC) != 0;
}

int vmm_virtq_enable(struct vmm_virtq *q, unsigned size, vmm_gpa_t desc, vmm_gpa_t driver,
                     vmm_gpa_t device)
{
    if (!vmm_is_pow2(size) || size > q->max_size)
        return -EINVAL;
    if ((desc & 15) || (driver & 1) || (device & 3))
        return -EINVAL;
    if (vmm_memory_check_range(q->mem, desc, (uint64_t)size * VIRTQ_DESC_SIZE) < 0 ||
        vmm_memory_check_range(q->mem, driver, avail_area_size(size)) < 0 ||
        vmm_memory_check_range(q->mem, device, used_area_size(size)) < 0)
        return -EFAULT;
    q->size = size;
    q->desc = desc;
    q->avail = driver;
    q->used = device;
    q->last_avail = q->shadow_avail = 0;
    q->used_idx = q->signalled_used = 0;
    q->broken = false;
    q->ready = true;
    return 0;
}

void vmm_virtq_reset(struct vmm_virtq *q)
{
    q->ready = false;
    q->broken = false;
    q->size = 0;
    q->desc = q->avail = q->used = 0;
    q->last_avail = q->shadow_avail = 0;
    q->used_idx = q->signalled_used = 0;
    q->event_idx = q->indirect = false;
    q->reset_gen++;
    q->log_budget = VIRTQ_LOG_BUDGET;
}

unsigned vmm_virtq_index(const struct vmm_virtq *q)
{
    return q->index;
}

unsigned vmm_virtq_size(const struct vmm_virtq *q)
{
    return q->ready ? q->size : 0;
}

bool vmm_virtq_ready(const struct vmm_virtq *q)
{
    return q->ready && !q->broken;
}

void vmm_virtq_get_stats(const struct vmm_virtq *q, struct vmm_virtq_stats *stats)
{
    *stats = q->stats;
    stats->broken = q->broken;
}

/* The driver broke the ring's rules in a way no single chain can absorb. */
static int queue_break(struct vmm_virtq *q, const char *why)
{
    if (!q->broken) {
        q->broken = true;
        vmm_log_warn("%s: queue %u: %s; the device needs a reset", q->label, q->index, why);
        if (q->cb.broken)
            q->cb.broken(q->cb.opaque, q);
    }
    return -EIO;
}

static void log_bad_chain(struct vmm_virtq *q, uint16_t head, const char *why)
{
    if (q->log_budget > 0) {
        q->log_budget--;
        vmm_log_warn("%s: queue %u: malformed chain at head %u: %s%s", q->label, q->index, head,
                     why, q->log_budget == 0 ? " (further ones logged at debug level)" : "");
    } else {
        vmm_log_debug("%s: queue %u: malformed chain at head %u: %s", q->label, q->index, head,
                      why);
    }
}

/* Write one used element and publish it (release: the element and the
 * buffer contents before the index). */
static int used_append(struct vmm_virtq *q, uint32_t id, uint32_t len)
{
    uint32_t elem[2] = {id, len};
    int r = vmm_memory_write(q->mem, used_elem_addr(q, q->used_idx & (q->size - 1)), elem,
                             sizeof(elem));
    if (r == 0)
        r = vmm_memory_store_u16(q->mem, used_idx_addr(q), (uint16_t)(q->used_idx + 1));
    if (r < 0)
        return queue_break(q, "the used ring is not writable");
    q->used_idx++;
    q->stats.pushed++;
    return 0;
}

static int scratch_add(struct vmm_virtq *q, unsigned n, vmm_gpa_t gpa, uint32_t len)
{
    if (n == q->scratch_cap) {
        unsigned cap = q->scratch_cap ? q->scratch_cap * 2 : 16;
        struct vmm_virtq_seg *s = realloc(q->scratch, cap * sizeof(*s));
        if (!s)
            return -ENOMEM;
        q->scratch = s;
        q->scratch_cap = cap;
    }
    q->scratch[n] = (struct vmm_virtq_seg){.gpa = gpa, .len = len};
    return 0;
}

/* What parse_chain found. */
struct chain_shape {
    unsigned nr_readable, nr_writable;
    uint64_t readable_len, writable_len;
    const char *why; /* set when the chain is malformed */
};

/*
 * Walk the chain starting at head (< size), copying each descriptor out of
 * guest memory before looking at it, into q->scratch. Returns 0 with shape
 * filled, -EINVAL (shape->why says why) or -ENOMEM.
 */
static int parse_chain(struct vmm_virtq *q, uint16_t head, struct chain_shape *shape)
{
    *shape = (struct chain_shape){0};
    vmm_gpa_t table = q->desc; /* the table being walked */
    unsigned table_size = q->size;
    bool in_indirect = false;
    unsigned steps = 0; /* descriptors visited in the current table */
    unsigned n = 0;
    bool seen_writable = false;
    unsigned i = head;

    for (;;) {
        if (i >= table_size) {
            shape->why = in_indirect ? "next index past the indirect table"
                                     : "descriptor index past the queue size";
            return -EINVAL;
        }
        /* A chain visits each descriptor of a table at most once: more
         * steps than the table has entries means a loop. */
        if (++steps > table_size) {
            shape->why = "descriptor loop";
            return -EINVAL;
        }
        struct virtq_desc d;
        if (vmm_memory_read_obj(q->mem, table + (vmm_gpa_t)i * VIRTQ_DESC_SIZE, &d) < 0) {
            shape->why = "descriptor table outside guest memory";
            return -EINVAL;
        }
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!q->indirect) {
                shape->why = "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
                return -EINVAL;
            }
            if (in_indirect) {
                shape->why = "indirect table inside an indirect table";
                return -EINVAL;
            }
            if (d.flags & VIRTQ_DESC_F_NEXT) {
                shape->why = "indirect descriptor with the NEXT flag";
                return -EINVAL;
            }
            if (d.len == 0 || d.len % VIRTQ_DESC_SIZE) {
                shape->why = "indirect table length zero or not a multiple of 16";
                return -EINVAL;
            }
            if (d.len / VIRTQ_DESC_SIZE > VIRTQ_MAX_INDIRECT) {
                shape->why = "indirect table too long";
                return -EINVAL;
            }
            if (vmm_memory_check_range(q->mem, d.addr, d.len) < 0) {
                shape->why = "indirect table outside guest memory";
                return -EINVAL;
            }
            in_indirect = true;
            table = d.addr;
            table_size = d.len / VIRTQ_DESC_SIZE;
            steps = 0;
            i = 0;
            continue;
        }
        if (vmm_memory_check_range(q->mem, d.addr, d.len) < 0) {
            shape->why = "buffer outside guest memory";
            return -EINVAL;
        }
        if (d.flags & VIRTQ_DESC_F_WRITE) {
            seen_writable = true;
            shape->nr_writable++;
            shape->writable_len += d.len;
        } else {
            if (seen_writable) {
                shape->why = "device-readable descriptor after a device-writable one";
                return -EINVAL;
            }
            shape->nr_readable++;
            shape->readable_len += d.len;
        }
        /* Empty buffers carry nothing: keep them out of the segment list. */
        if (d.len > 0) {
            if (scratch_add(q, n, d.addr, d.len) < 0)
                return -ENOMEM;
            n++;
        } else if (d.flags & VIRTQ_DESC_F_WRITE) {
            shape->nr_writable--;
        } else {
            shape->nr_readable--;
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        i = d.next;
    }
}

/* Read avail->idx and check it moved sanely. 0 or -EIO. */
static int refresh_avail(struct vmm_virtq *q)
{
    uint16_t idx;
    if (vmm_memory_load_u16(q->mem, avail_idx_addr(q), &idx) < 0)
        return queue_break(q, "the available ring is not readable");
    if ((uint16_t)(idx - q->last_avail) > q->size)
        return queue_break(q, "available index moved by more than the queue size");
    q->shadow_avail = idx;
    return 0;
}

/* The queue looks empty: with EVENT_IDX ask for a notification at the next
 * buffer, then look once more so one made available meanwhile is not missed.
 * Returns 1 when entries arrived, 0 when still empty, -EIO. */
static int publish_avail_event(struct vmm_virtq *q)
{
    if (!q->event_idx)
        return 0;
    if (vmm_memory_store_u16(q->mem, avail_event_addr(q), q->last_avail) < 0)
        return queue_break(q, "the used ring is not writable");
    /* The store must be visible before we re-read the index (the driver
     * does the mirror image: writes idx, then reads avail_event). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int r = refresh_avail(q);
    if (r < 0)
        return r;
    return q->shadow_avail != q->last_avail;
}

int vmm_virtq_pop(struct vmm_virtq *q, struct vmm_virtq_chain **out)
{
    *out = NULL;
    if (q->broken)
        return -EIO;
    if (!q->ready)
        return 0;
    /* Malformed chains are completed here and skipped; at most a queue's
     * worth per call, so a driver cannot keep us here. */
    for (unsigned skipped = 0; skipped <= q->size; skipped++) {
        if (q->last_avail == q->shadow_avail) {
            int r = refresh_avail(q);
            if (r < 0)
                return r;
            if (q->last_avail == q->shadow_avail) {
                r = publish_avail_event(q);
                if (r <= 0)
                    return r;
            }
        }
        uint16_t head;
        if (vmm_memory_load_u16(q->mem, avail_ring_addr(q, q->last_avail & (q->size - 1)), &head) <
            0)
            return queue_break(q, "the available ring is not readable");
        if (head >= q->size)
            return queue_break(q, "head index past the queue size");
        q->last_avail++;

        struct chain_shape shape;
        int r = parse_chain(q, head, &shape);
        if (r == -ENOMEM) {
            q->last_avail--;
            return r;
        }
        if (r < 0) {
            log_bad_chain(q, head, shape.why);
            q->stats.bad_chains++;
            r = used_append(q, head, 0);
            if (r < 0)
                return r;
            continue;
        }
        unsigned nseg = shape.nr_readable + shape.nr_writable;
        struct vmm_virtq_chain *c = malloc(sizeof(*c) + nseg * sizeof(struct vmm_virtq_seg));
        if (!c) {
            q->last_avail--;
            return -ENOMEM;
        }
        *c = (struct vmm_virtq_chain){
            .queue = q,
            .nr_readable = shape.nr_readable,
            .nr_writable = shape.nr_writable,
            .readable_len = shape.readable_len,
            .writable_len = shape.writable_len,
            .seg = (struct vmm_virtq_seg *)(c + 1),
            .id = head,
            .ndesc = 1,
            .reset_gen = q->reset_gen,
        };
        if (nseg)
            memcpy(c->seg, q->scratch, nseg * sizeof(struct vmm_virtq_seg));
        q->stats.popped++;
        *out = c;
        return 1;
    }
    return 0;
}

int vmm_virtq_push(struct vmm_virtq *q, struct vmm_virtq_chain *chain, uint32_t written)
{
    if (!chain)
        return 0;
    int r = 0;
    if (chain->queue != q || chain->reset_gen != q->reset_gen || !q->ready) {
        /* Popped before a reset: the driver has forgotten it. */
        q->stats.stale_pushes++;
    } else if (q->broken) {
        r = -EIO;
    } else {
        if (written > chain->writable_len) {
            vmm_log_warn("%s: queue %u: device reported %u bytes written into %llu writable",
                         q->label, q->index, written, (unsigned long long)chain->writable_len);
            written = (uint32_t)chain->writable_len;
        }
        r = used_append(q, chain->id, written);
    }
    free(chain);
    return r;
}

void vmm_virtq_chain_free(struct vmm_virtq_chain *chain)
{
    free(chain);
}

/* vring_need_event: the driver wants an interrupt when the used index moves
 * past event, i.e. event lies in [old, new). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool vmm_virtq_notify(struct vmm_virtq *q)
{
    if (!q->ready || q->used_idx == q->signalled_used)
        return false;
    /* Our used index store must be visible before we read the driver's
     * suppression state, or both sides could miss each other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    bool need;
    uint16_t old = q->signalled_used;
    q->signalled_used = q->used_idx;
    if (q->event_idx) {
        uint16_t event;
        /* An unreadable used_event: interrupt rather than lose one. */
        need = vmm_memory_load_u16(q->mem, used_event_addr(q), &event) < 0 ||
               need_event(event, q->used_idx, old);
    } else {
        uint16_t flags;
        need = vmm_memory_load_u16(q->mem, q->avail, &flags) < 0 ||
               !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    if (!need) {
        q->stats.suppressed++;
        return false;
    }
    q->stats.interrupts++;
    if (q->cb.interrupt)
        q->cb.interrupt(q->cb.opaque, q);
    return true;
}

/* ---- chain helpers ---- */

/* The segments of one part of a chain. */
static const struct vmm_virtq_seg *part(const struct vmm_virtq_chain *c, bool writable, unsigned *n)
{
    *n = writable ? c->nr_writable : c->nr_readable;
    return writable ? c->seg + c->nr_readable : c->seg;
}

static int chain_copy(const struct vmm_virtq_chain *c, bool writable, uint64_t offset, void *buf,
                      size_t len)
{
    if (len > INT_MAX)
        return -EINVAL;
    unsigned n;
    const struct vmm_virtq_seg *s = part(c, writable, &n);
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (offset >= s[i].len) {
            offset -= s[i].len;
            continue;
        }
        size_t chunk = s[i].len - offset;
        if (chunk > len - done)
            chunk = len - done;
        int r = writable ? vmm_memory_write(c->queue->mem, s[i].gpa + offset,
                                            (const uint8_t *)buf + done, chunk)
                         : vmm_memory_read(c->queue->mem, s[i].gpa + offset, (uint8_t *)buf + done,
                                           chunk);
        if (r < 0)
            return r;
        done += chunk;
        offset = 0;
    }
    return (int)done;
}

int vmm_virtq_chain_read(const struct vmm_virtq_chain *chain, uint64_t offset, void *dst,
                         size_t len)
{
    return chain_copy(chain, false, offset, dst, len);
}

int vmm_virtq_chain_write(const struct vmm_virtq_chain *chain, uint64_t offset, const void *src,
                          size_t len)
{
    return chain_copy(chain, true, offset, (void *)src, len);
}

int vmm_virtq_chain_iov(const struct vmm_virtq_chain *chain, bool writable, uint64_t offset,
                        uint64_t len, struct iovec *iov, unsigned max_iov)
{
    unsigned n;
    const struct vmm_virtq_seg *s = part(chain, writable, &n);
    struct vmm_memory *mem = chain->queue->mem;
    unsigned access = writable ? VMM_ACCESS_WRITE : VMM_ACCESS_READ;
    unsigned count = 0;
    for (unsigned i = 0; i < n && len > 0; i++) {
        if (offset >= s[i].len) {
            offset -= s[i].len;
            continue;
        }
        vmm_gpa_t gpa = s[i].gpa + offset;
        uint64_t left = s[i].len - offset;
        if (left > len)
            left = len;
        len -= left;
        offset = 0;
        /* One iovec per memory region the range touches. */
        while (left > 0) {
            struct vmm_region_info info;
            if (vmm_memory_find_region(mem, gpa, &info) < 0)
                return -EFAULT;
            uint64_t chunk = info.gpa + info.size - gpa;
            if (chunk > left)
                chunk = left;
            if (count == max_iov)
                return -ENOSPC;
            void *p;
            int r = vmm_memory_get_ptr(mem, gpa, chunk, access, &p);
            if (r < 0)
                return r;
            iov[count].iov_base = p;
            iov[count].iov_len = chunk;
            count++;
            gpa += chunk;
            left -= chunk;
        }
    }
    return (int)count;
}
