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
 *
 * Fast paths. Each ring area (descriptor table, available ring, used ring)
 * that lies in one memory region, with the host alignment its atomic
 * accesses need, is reached through a host pointer found when the queue is
 * enabled, instead of a checked lookup per access. Regions are never
 * removed, moved or shrunk while the map lives (lib/memory/memory_view.h),
 * so such a pointer stays exact for as long as the queue is enabled; reset
 * drops it and enable finds it again. The pointers lead into guest memory
 * all the same: each descriptor is read once, with single loads, into a
 * local copy that is checked and used; indices and flags are read and
 * written with atomic accesses and the barriers of the slow path. An area
 * that straddles two regions (or is misaligned on the host, or a read-only
 * used ring) keeps the checked accessors of memory.h.
 *
 * Buffers: the region of the last buffer checked is kept (a view stays valid
 * for the map's life), so a chain whose buffers sit in one region costs no
 * lookup; each segment of a popped chain carries its host address when it
 * lies in one region, which the chain helpers use instead of a lookup.
 *
 * Chains come from a per-queue pool: a popped chain is taken from the pool's
 * free list (or allocated once) and goes back on push or chain_free, so the
 * steady state makes no allocation. A chain is on the free list only after
 * the device released it; a chain still held by the device is never handed
 * out again. Chains may outlive their queue (the pool is freed with the
 * last of them).
 *
 * Bounded work and memory per guest request. A chain is at most
 * min(queue size, VMM_VIRTQ_MAX_CHAIN) descriptors long, indirect ones
 * included (virtio 1.2 section 2.7.5.3.1), and an indirect table may hold no
 * more than that: a longer one is a malformed chain, refused before it is
 * walked. The chains the device holds (popped, not yet released) may take
 * at most VMM_VIRTQ_MAX_HELD_BYTES of host memory: pop starts a chain only
 * while the longest one the queue allows still fits, else it returns 0 and
 * leaves the driver's buffers in the ring, and the release that makes room
 * again calls the resume callback so the transport has the device look
 * again. Pop and release test the same condition, so a queue held back
 * always resumes once its chains come back.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>

#include "memory/memory_view.h"
#include "virtio_internal.h"

/* Ring layout (little-endian; x86 hosts only for now). */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTQ_DESC_SIZE 16
#define VIRTQ_USED_ELEM 8

/* Segments a pooled chain holds; longer chains get a chain of their own
 * size, freed when released. */
#define VIRTQ_POOL_SEGS 8
/* Released chains a queue keeps for reuse, at most (and at most its size:
 * a driver cannot have more chains in flight than the queue has entries). */
#define VIRTQ_POOL_MAX 256u

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == VIRTQ_DESC_SIZE, "descriptor layout");

/*
 * Where a segment lies on the host: its address when one region holds it all
 * (and, for a device-writable one, that region is writable), with the region
 * for dirty marking; host NULL: use the checked accessors. gpa and len are
 * the segment as checked: the chain is the device's, and a device that
 * changes a segment (to trim it, say) gets the checked accessors for it, not
 * a host address that no longer matches (seg_host).
 */
struct virtq_seg_host {
    uint8_t *host;
    struct memory_region *region;
    vmm_gpa_t gpa;
    uint32_t len;
};

struct virtq_pool;

/*
 * A chain as allocated: the device's part first, then cap segments, then
 * cap virtq_seg_host. Cache-line aligned: a short chain's header, segments
 * and host addresses take few lines, touched at pop and again at
 * completion, with the guest's data copies evicting them in between.
 */
struct virtq_box {
    struct vmm_virtq_chain c;
    /* The ring's bookkeeping, which the device must not touch. */
    uint16_t id;        /* head descriptor index (split) / buffer id (packed) */
    uint16_t ndesc;     /* ring slots the chain took (packed) */
    uint16_t avail_pos; /* the available ring entry it came from (unpop) */
    uint32_t reset_gen; /* the queue's reset count when popped */
    struct virtq_pool *pool;
    struct virtq_box *next; /* on the pool's free list */
    uint32_t cap;           /* segments it has room for; only VIRTQ_POOL_SEGS
                               ones are kept for reuse */
    bool in_flight;         /* held by the device (or being filled by pop) */
};

#define BOX_ALIGN 64

/* What a chain with room for cap segments takes on the heap. */
static size_t box_size(unsigned cap)
{
    size_t size = sizeof(struct virtq_box) +
                  cap * (sizeof(struct vmm_virtq_seg) + sizeof(struct virtq_seg_host));
    return (size + BOX_ALIGN - 1) & ~(size_t)(BOX_ALIGN - 1);
}

/* The budget must hold the longest chain, or a queue could stop for good. */
_Static_assert(sizeof(struct virtq_box) +
                       VMM_VIRTQ_MAX_CHAIN *
                           (sizeof(struct vmm_virtq_seg) + sizeof(struct virtq_seg_host)) +
                       BOX_ALIGN <=
                   VMM_VIRTQ_MAX_HELD_BYTES,
               "VMM_VIRTQ_MAX_HELD_BYTES holds a chain of VMM_VIRTQ_MAX_CHAIN segments");

static struct vmm_virtq_seg *box_seg(struct virtq_box *b)
{
    return (struct vmm_virtq_seg *)(b + 1);
}

static struct virtq_seg_host *box_hseg(const struct virtq_box *b)
{
    return (struct virtq_seg_host *)((struct vmm_virtq_seg *)(b + 1) + b->cap);
}

/* The pool of one queue. outstanding counts its chains not on the free list
 * (held by the device, or by a pop in progress), held their bytes. */
struct virtq_pool {
    struct virtq_box *free;
    unsigned nfree;
    unsigned max_free;
    unsigned outstanding;
    size_t held;
    bool throttled;      /* pop held back for the budget: resume on room */
    struct vmm_virtq *q; /* NULL once the queue is gone: chains are freed
                            as they return */
};

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
    /* Host addresses of the areas (NULL: checked accessors), set by enable,
     * cleared by reset; used_view is the used ring's region (dirty marking). */
    uint8_t *desc_host, *avail_host, *used_host;
    struct memory_view used_view;

    uint16_t last_avail;   /* next available entry to consume */
    uint16_t shadow_avail; /* avail->idx as last read */
    uint16_t used_idx;     /* next used entry to write (published) */
    uint16_t signalled_used;
    uint32_t reset_gen;

    /* The region of the last buffer found (zeroed: covers nothing). */
    struct memory_view last;

    /* Where the segments of a chain longer than VIRTQ_POOL_SEGS are
     * collected before it gets a chain of its own size. */
    struct vmm_virtq_seg *scratch;
    struct virtq_seg_host *scratch_host;
    unsigned scratch_cap;

    struct virtq_pool *pool;
    unsigned chain_max; /* the longest chain allowed, set by enable */
    size_t reserve;     /* box_size(chain_max): room pop needs to start one */

    struct vmm_log_limit bad_chain_log, break_log;
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

/* ---- ring access: through the cached host address, or checked ---- */

static int load_avail_u16(const struct vmm_virtq *q, vmm_gpa_t gpa, uint16_t *val)
{
    if (q->avail_host) {
        *val = __atomic_load_n((const uint16_t *)(const void *)(q->avail_host + (gpa - q->avail)),
                               __ATOMIC_ACQUIRE);
        return 0;
    }
    return vmm_memory_load_u16(q->mem, gpa, val);
}

static int store_used_u16(struct vmm_virtq *q, vmm_gpa_t gpa, uint16_t val)
{
    if (q->used_host) {
        __atomic_store_n((uint16_t *)(void *)(q->used_host + (gpa - q->used)), val,
                         __ATOMIC_RELEASE);
        memory_view_mark_dirty(&q->used_view, gpa, sizeof(val));
        return 0;
    }
    return vmm_memory_store_u16(q->mem, gpa, val);
}

/* Read descriptor i of a table (host: its host address, or NULL) into d:
 * one load per word, so what is checked is what is used. */
static int read_desc(const struct vmm_virtq *q, const uint8_t *host, vmm_gpa_t table, unsigned i,
                     struct virtq_desc *d)
{
    if (host) {
        const uint64_t *p = (const uint64_t *)(const void *)(host + (size_t)i * VIRTQ_DESC_SIZE);
        uint64_t w0 = __atomic_load_n(p, __ATOMIC_RELAXED);
        uint64_t w1 = __atomic_load_n(p + 1, __ATOMIC_RELAXED);
        d->addr = w0;
        d->len = (uint32_t)w1;
        d->flags = (uint16_t)(w1 >> 32);
        d->next = (uint16_t)(w1 >> 48);
        return 0;
    }
    return vmm_memory_read_obj(q->mem, table + (vmm_gpa_t)i * VIRTQ_DESC_SIZE, d);
}

/* The host address of [gpa, gpa + len) when one region holds it, its host
 * address is aligned to align, and (writable) the region is writable; else
 * NULL. view receives the region when not NULL. */
static uint8_t *area_host(const struct vmm_virtq *q, vmm_gpa_t gpa, uint64_t len, uintptr_t align,
                          bool writable, struct memory_view *view)
{
    struct memory_view v;
    if (memory_view_covers(&q->last, gpa, len))
        v = q->last;
    else if (memory_view_find(q->mem, gpa, &v) < 0 || !memory_view_covers(&v, gpa, len))
        return NULL;
    if (writable && v.readonly)
        return NULL;
    uint8_t *p = memory_view_ptr(&v, gpa);
    if ((uintptr_t)p & (align - 1))
        return NULL;
    if (view)
        *view = v;
    return p;
}

/* ---- the chain pool ---- */

/* A chain with room for cap segments, counted as held from now on. */
static struct virtq_box *box_alloc(unsigned cap, struct virtq_pool *pool)
{
    struct virtq_box *b = aligned_alloc(BOX_ALIGN, box_size(cap));
    if (!b)
        return NULL;
    b->c.seg = box_seg(b);
    b->pool = pool;
    b->next = NULL;
    b->cap = cap;
    b->in_flight = true;
    pool->outstanding++;
    pool->held += box_size(cap);
    return b;
}

/* A pooled chain (VIRTQ_POOL_SEGS segments) for pop to fill, or NULL. */
static struct virtq_box *pool_take(struct virtq_pool *p)
{
    struct virtq_box *b = p->free;
    if (!b)
        return box_alloc(VIRTQ_POOL_SEGS, p);
    p->free = b->next;
    p->nfree--;
    p->outstanding++;
    p->held += box_size(b->cap);
    b->in_flight = true;
    return b;
}

/* Whether the chains held leave room for the longest one q allows. */
static bool held_room(const struct vmm_virtq *q)
{
    return q->pool->held + q->reserve <= VMM_VIRTQ_MAX_HELD_BYTES;
}

/* b is not (or no longer) held: keep it for reuse or free it, and let a
 * queue that held back for its budget go on once there is room. */
static void box_put(struct virtq_box *b)
{
    b->in_flight = false;
    struct virtq_pool *p = b->pool;
    p->outstanding--;
    p->held -= box_size(b->cap);
    if (!p->q) {
        free(b);
        if (p->outstanding == 0)
            free(p);
        return;
    }
    if (b->cap == VIRTQ_POOL_SEGS && p->nfree < p->max_free) {
        b->next = p->free;
        p->free = b;
        p->nfree++;
    } else {
        free(b);
    }
    if (p->throttled && held_room(p->q)) {
        p->throttled = false;
        if (p->q->cb.resume)
            p->q->cb.resume(p->q->cb.opaque, p->q);
    }
}

/* The device is done with c. */
static void chain_release(struct vmm_virtq_chain *c)
{
    struct virtq_box *b = (struct virtq_box *)c;
    if (!b->in_flight) {
        /* A second release would put the chain on the free list twice and
         * hand it to two requests at once. */
        vmm_log_error("virtio: a chain was released twice (ignored)");
        return;
    }
    box_put(b);
}

static void pool_destroy(struct virtq_pool *p)
{
    while (p->free) {
        struct virtq_box *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
    p->q = NULL;
    if (p->outstanding == 0)
        free(p); /* else the last chain to come back frees it */
}

int vmm_virtq_create(struct vmm_memory *mem, unsigned index, unsigned max_size,
                     const struct vmm_virtq_callbacks *cb, struct vmm_virtq **out)
{
    struct vmm_virtq_callbacks c = {0};
    if (!mem || !out || !vmm_is_pow2(max_size) || max_size > VMM_VIRTQ_MAX_SIZE ||
        (cb && VMM_ABI_COPY_IN(&c, cb) < 0))
        return -EINVAL;
    struct vmm_virtq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->pool = calloc(1, sizeof(*q->pool));
    if (!q->pool) {
        free(q);
        return -ENOMEM;
    }
    q->pool->max_free = max_size < VIRTQ_POOL_MAX ? max_size : VIRTQ_POOL_MAX;
    q->pool->q = q;
    q->mem = mem;
    q->index = index;
    q->max_size = max_size;
    q->cb = c;
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
    pool_destroy(q->pool);
    free(q->scratch);
    free(q->scratch_host);
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
    uint64_t desc_len = (uint64_t)size * VIRTQ_DESC_SIZE;
    if (vmm_memory_check_range(q->mem, desc, desc_len) < 0 ||
        vmm_memory_check_range(q->mem, driver, avail_area_size(size)) < 0 ||
        vmm_memory_check_range(q->mem, device, used_area_size(size)) < 0)
        return -EFAULT;
    q->size = size;
    q->chain_max = size < VMM_VIRTQ_MAX_CHAIN ? size : VMM_VIRTQ_MAX_CHAIN;
    q->reserve = box_size(q->chain_max);
    q->desc = desc;
    q->avail = driver;
    q->used = device;
    /* Descriptors are read 8 bytes at a time, indices 2 and used elements
     * 4 bytes at a time. */
    q->desc_host = area_host(q, desc, desc_len, 8, false, NULL);
    q->avail_host = area_host(q, driver, avail_area_size(size), 2, false, NULL);
    q->used_host = area_host(q, device, used_area_size(size), 4, true, &q->used_view);
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
    q->desc_host = q->avail_host = q->used_host = NULL;
    q->last_avail = q->shadow_avail = 0;
    q->used_idx = q->signalled_used = 0;
    q->event_idx = q->indirect = false;
    q->reset_gen++;
    /* Chains held now come back stale; the driver's set-up kicks the queue
     * again. The log budgets stay spent: they are the device's for life. */
    q->pool->throttled = false;
}

int vmm_virtq_snap_save(const struct vmm_virtq *q, struct virtq_snap *s)
{
    if (q->pool->outstanding)
        return -EBUSY;
    *s = (struct virtq_snap){.last_avail = q->last_avail,
                             .used_idx = q->used_idx,
                             .signalled_used = q->signalled_used,
                             .broken = q->broken};
    return 0;
}

void vmm_virtq_snap_restore(struct vmm_virtq *q, const struct virtq_snap *s)
{
    q->last_avail = q->shadow_avail = s->last_avail;
    q->used_idx = s->used_idx;
    q->signalled_used = s->signalled_used;
    q->broken = s->broken != 0;
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

int vmm_virtq_layout(const struct vmm_virtq *q, unsigned *size, vmm_gpa_t *desc, vmm_gpa_t *driver,
                     vmm_gpa_t *device)
{
    if (!q->ready || q->broken)
        return -ENODEV;
    *size = q->size;
    *desc = q->desc;
    *driver = q->avail;
    *device = q->used;
    return 0;
}

void vmm_virtq_interrupt(struct vmm_virtq *q)
{
    if (!q->ready)
        return;
    q->stats.interrupts++;
    if (q->cb.interrupt)
        q->cb.interrupt(q->cb.opaque, q);
}

int vmm_virtq_get_stats(const struct vmm_virtq *q, struct vmm_virtq_stats *stats)
{
    if (!q || !stats || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct vmm_virtq_stats s = q->stats;
    s.broken = q->broken;
    s.held_bytes = q->pool->held;
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}

/* The driver broke the ring's rules in a way no single chain can absorb. */
static int queue_break(struct vmm_virtq *q, const char *why)
{
    if (!q->broken) {
        q->broken = true;
        vmm_log_limited(&q->break_log, VMM_VIRTIO_LOG_BUDGET,
                        "%s: queue %u: %s; the device needs a reset", q->label, q->index, why);
        if (q->cb.broken)
            q->cb.broken(q->cb.opaque, q);
    }
    return -EIO;
}

static void log_bad_chain(struct vmm_virtq *q, uint16_t head, const char *why)
{
    vmm_log_limited(&q->bad_chain_log, VMM_VIRTIO_LOG_BUDGET,
                    "%s: queue %u: malformed chain at head %u: %s", q->label, q->index, head, why);
}

/* Write one used element and publish it (release: the element and the
 * buffer contents before the index). */
static int used_append(struct vmm_virtq *q, uint32_t id, uint32_t len)
{
    unsigned slot = q->used_idx & (q->size - 1);
    uint16_t next = (uint16_t)(q->used_idx + 1);
    if (q->used_host) {
        uint32_t *e = (uint32_t *)(void *)(q->used_host + 4 + VIRTQ_USED_ELEM * (size_t)slot);
        __atomic_store_n(&e[0], id, __ATOMIC_RELAXED);
        __atomic_store_n(&e[1], len, __ATOMIC_RELAXED);
        __atomic_store_n((uint16_t *)(void *)(q->used_host + 2), next, __ATOMIC_RELEASE);
        if (__atomic_load_n(q->used_view.tracking, __ATOMIC_ACQUIRE)) {
            memory_region_dirty_gpa(q->used_view.region, used_elem_addr(q, slot), VIRTQ_USED_ELEM);
            memory_region_dirty_gpa(q->used_view.region, used_idx_addr(q), 2);
        }
    } else {
        uint32_t elem[2] = {id, len};
        int r = vmm_memory_write(q->mem, used_elem_addr(q, slot), elem, sizeof(elem));
        if (r == 0)
            r = vmm_memory_store_u16(q->mem, used_idx_addr(q), next);
        if (r < 0)
            return queue_break(q, "the used ring is not writable");
    }
    q->used_idx = next;
    q->stats.pushed++;
    return 0;
}

static int scratch_grow(struct vmm_virtq *q)
{
    unsigned cap = q->scratch_cap ? q->scratch_cap * 2 : 2 * VIRTQ_POOL_SEGS;
    struct vmm_virtq_seg *s = realloc(q->scratch, cap * sizeof(*s));
    if (!s)
        return -ENOMEM;
    q->scratch = s;
    struct virtq_seg_host *h = realloc(q->scratch_host, cap * sizeof(*h));
    if (!h)
        return -ENOMEM;
    q->scratch_host = h;
    q->scratch_cap = cap;
    return 0;
}

/* Check that [addr, addr + len) is guest memory and find where it lies on
 * the host (hs). last is the region of the previous buffer, updated when
 * this one lies in another. 0 or -EFAULT. */
static inline int check_buffer(struct vmm_virtq *q, struct memory_view *last, uint64_t addr,
                               uint32_t len, bool writable, struct virtq_seg_host *hs)
{
    if (__builtin_expect(!memory_view_covers(last, addr, len), 0)) {
        struct memory_view v;
        if (memory_view_find(q->mem, addr, &v) < 0)
            return -EFAULT;
        if (!memory_view_covers(&v, addr, len)) {
            /* Across adjacent regions, or past the end of memory. */
            if (vmm_memory_check_range(q->mem, addr, len) < 0)
                return -EFAULT;
            hs->host = NULL;
            return 0;
        }
        *last = v;
    }
    if (writable && last->readonly) {
        /* Writes through the checked path report -EROFS. */
        hs->host = NULL;
        return 0;
    }
    hs->host = memory_view_ptr(last, addr);
    hs->region = last->region;
    hs->gpa = addr;
    hs->len = len;
    return 0;
}

/* What parse_chain found. */
struct chain_shape {
    unsigned nr_readable, nr_writable;
    uint64_t readable_len, writable_len;
    bool spilled;    /* the segments are in q->scratch */
    const char *why; /* set when the chain is malformed */
};

/* Where a chain walk stands: the table it reads and the segments so far. */
struct chain_walk {
    struct vmm_virtq_seg *seg;
    struct virtq_seg_host *hseg;
    unsigned cap;              /* room in seg/hseg */
    vmm_gpa_t table;           /* the table being walked */
    const uint8_t *table_host; /* its host mapping, or NULL */
    unsigned table_size;
    bool in_indirect;
    unsigned steps;  /* descriptors visited in the current table */
    unsigned length; /* buffer descriptors, direct and indirect */
    unsigned n;      /* segments recorded */
    bool seen_writable;
};

/* Switch the walk to the indirect table d names. NULL, or why not. */
static const char *enter_indirect(struct vmm_virtq *q, struct chain_walk *w,
                                  const struct virtq_desc *d)
{
    if (!q->indirect)
        return "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
    if (w->in_indirect)
        return "indirect table inside an indirect table";
    if (d->flags & VIRTQ_DESC_F_NEXT)
        return "indirect descriptor with the NEXT flag";
    if (d->len == 0 || d->len % VIRTQ_DESC_SIZE)
        return "indirect table length zero or not a multiple of 16";
    /* Refused unread: a table longer than any chain may be is what a driver
     * out to waste our time would make. */
    if (d->len / VIRTQ_DESC_SIZE > q->chain_max)
        return "indirect table longer than a chain may be";
    /* One region holds the table (q->last tried first): read it in place.
     * Else it must still be guest memory, read word by word through the
     * checked accessors. */
    w->table_host = area_host(q, d->addr, d->len, 8, false, NULL);
    if (!w->table_host && vmm_memory_check_range(q->mem, d->addr, d->len) < 0)
        return "indirect table outside guest memory";
    w->in_indirect = true;
    w->table = d->addr;
    w->table_size = d->len / VIRTQ_DESC_SIZE;
    w->steps = 0;
    return NULL;
}

/* The chain is longer than the box has room for: go on in q->scratch,
 * copying what was recorded so far the first time. 0 or -ENOMEM. */
static int spill_to_scratch(struct vmm_virtq *q, struct chain_walk *w, struct chain_shape *shape)
{
    while (q->scratch_cap <= w->n) {
        if (scratch_grow(q) < 0)
            return -ENOMEM;
    }
    if (!shape->spilled) {
        memcpy(q->scratch, w->seg, w->n * sizeof(*w->seg));
        memcpy(q->scratch_host, w->hseg, w->n * sizeof(*w->hseg));
        shape->spilled = true;
    }
    w->seg = q->scratch;
    w->hseg = q->scratch_host;
    w->cap = q->scratch_cap;
    return 0;
}

/* Check the buffer d describes and record it. NULL, or why not. */
static inline const char *add_buffer(struct vmm_virtq *q, struct chain_walk *w,
                                     const struct virtq_desc *d, struct chain_shape *shape)
{
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    if (check_buffer(q, &q->last, d->addr, d->len, writable, &w->hseg[w->n]) < 0)
        return "buffer outside guest memory";
    if (writable) {
        w->seen_writable = true;
        shape->writable_len += d->len;
    } else {
        if (w->seen_writable)
            return "device-readable descriptor after a device-writable one";
        shape->readable_len += d->len;
    }
    /* Empty buffers carry nothing: keep them out of the segment list. */
    if (d->len > 0) {
        w->seg[w->n] = (struct vmm_virtq_seg){.gpa = d->addr, .len = d->len};
        w->n++;
        shape->nr_readable += !writable;
    }
    return NULL;
}

/*
 * Walk the chain starting at head (< size), copying each descriptor out of
 * guest memory before looking at it, into b's segments; past its room, into
 * q->scratch (shape->spilled). Returns 0 with shape filled, -EINVAL
 * (shape->why says why) or -ENOMEM.
 */
static int parse_chain(struct vmm_virtq *q, uint16_t head, struct virtq_box *b,
                       struct chain_shape *shape)
{
    struct chain_walk w = {.seg = box_seg(b),
                           .hseg = box_hseg(b),
                           .cap = b->cap,
                           .table = q->desc,
                           .table_host = q->desc_host,
                           .table_size = q->size};
    *shape = (struct chain_shape){0};
    unsigned i = head;
    const char *why;

    for (;;) {
        if (i >= w.table_size) {
            why = w.in_indirect ? "next index past the indirect table"
                                : "descriptor index past the queue size";
            goto bad;
        }
        /* A chain visits each descriptor of a table at most once: more
         * steps than the table has entries means a loop. */
        if (++w.steps > w.table_size) {
            why = "descriptor loop";
            goto bad;
        }
        struct virtq_desc d;
        if (read_desc(q, w.table_host, w.table, i, &d) < 0) {
            why = "descriptor table outside guest memory";
            goto bad;
        }
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if ((why = enter_indirect(q, &w, &d)))
                goto bad;
            i = 0;
            continue;
        }
        if (++w.length > q->chain_max) {
            why = "chain longer than the queue size allows";
            goto bad;
        }
        if (__builtin_expect(w.n == w.cap, 0) && spill_to_scratch(q, &w, shape) < 0) {
            shape->why = "out of memory";
            return -ENOMEM;
        }
        if ((why = add_buffer(q, &w, &d, shape)))
            goto bad;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        i = d.next;
    }
    /* Readable segments come first (add_buffer checked). */
    shape->nr_writable = w.n - shape->nr_readable;
    return 0;
bad:
    shape->why = why;
    return -EINVAL;
}

/* Read avail->idx and check it moved sanely. 0 or -EIO. */
static int refresh_avail(struct vmm_virtq *q)
{
    uint16_t idx;
    if (load_avail_u16(q, avail_idx_addr(q), &idx) < 0)
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
    if (store_used_u16(q, avail_event_addr(q), q->last_avail) < 0)
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
    if (!held_room(q)) {
        /* The buffers wait in the ring; the release that makes room calls
         * cb.resume. */
        if (!q->pool->throttled) {
            q->pool->throttled = true;
            q->stats.throttled++;
        }
        return 0;
    }
    struct virtq_box *b = NULL; /* the pooled chain being filled */
    int r = 0;
    /* Malformed chains are completed here and skipped; at most a queue's
     * worth per call, so a driver cannot keep us here. */
    for (unsigned skipped = 0; skipped <= q->size; skipped++) {
        if (q->last_avail == q->shadow_avail) {
            if ((r = refresh_avail(q)) < 0)
                goto out;
            if (q->last_avail == q->shadow_avail) {
                r = publish_avail_event(q);
                if (r <= 0)
                    goto out;
            }
        }
        uint16_t head;
        if (load_avail_u16(q, avail_ring_addr(q, q->last_avail & (q->size - 1)), &head) < 0) {
            r = queue_break(q, "the available ring is not readable");
            goto out;
        }
        if (head >= q->size) {
            r = queue_break(q, "head index past the queue size");
            goto out;
        }
        if (!b && !(b = pool_take(q->pool))) {
            r = -ENOMEM;
            goto out;
        }
        q->last_avail++;

        struct chain_shape shape;
        r = parse_chain(q, head, b, &shape);
        if (r == -ENOMEM) {
            q->last_avail--;
            goto out;
        }
        if (r < 0) {
            log_bad_chain(q, head, shape.why);
            q->stats.bad_chains++;
            if ((r = used_append(q, head, 0)) < 0)
                goto out;
            continue;
        }
        unsigned nseg = shape.nr_readable + shape.nr_writable;
        if (shape.spilled) {
            /* A chain of its own size, filled from the scratch. */
            struct virtq_box *big = box_alloc(nseg, q->pool);
            if (!big) {
                q->last_avail--;
                r = -ENOMEM;
                goto out;
            }
            memcpy(box_seg(big), q->scratch, nseg * sizeof(struct vmm_virtq_seg));
            memcpy(box_hseg(big), q->scratch_host, nseg * sizeof(struct virtq_seg_host));
            box_put(b);
            b = big;
        }
        struct vmm_virtq_chain *c = &b->c;
        c->queue = q;
        c->nr_readable = shape.nr_readable;
        c->nr_writable = shape.nr_writable;
        c->readable_len = shape.readable_len;
        c->writable_len = shape.writable_len;
        c->seg = box_seg(b); /* the device may have moved it */
        c->priv = NULL;
        b->id = head;
        b->ndesc = 1;
        b->avail_pos = (uint16_t)(q->last_avail - 1);
        b->reset_gen = q->reset_gen;
        q->stats.popped++;
        *out = c;
        return 1;
    }
    r = 0;
out:
    if (b)
        box_put(b);
    return r;
}

int vmm_virtq_push(struct vmm_virtq *q, struct vmm_virtq_chain *chain, uint32_t written)
{
    if (!chain)
        return 0;
    struct virtq_box *b = (struct virtq_box *)chain;
    if (!b->in_flight) {
        /* Pushed (or freed) already: completing its head again would
         * tell the driver about a buffer it may have reused. */
        vmm_log_error("%s: queue %u: a chain was pushed after it was released (ignored)", q->label,
                      q->index);
        return -EINVAL;
    }
    int r = 0;
    if (chain->queue != q || b->reset_gen != q->reset_gen || !q->ready) {
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
        r = used_append(q, b->id, written);
    }
    chain_release(chain);
    return r;
}

/*
 * Only the device's own state moves back: the available ring and the
 * descriptors are the driver's and were only read, the used ring is not
 * touched. The driver may not reuse a buffer before the device used it
 * (virtio 1.2 section 2.7), so the entries are still there for the next pop; what
 * a driver can see of our position is the avail_event we publish with
 * VIRTIO_F_EVENT_IDX, a hint that, lower, only asks for a notification the
 * driver would have sent anyway.
 */
int vmm_virtq_unpop(struct vmm_virtq *q, struct vmm_virtq_chain *const *chains, unsigned n)
{
    if (!q->ready || n > q->pool->outstanding || n > q->size) {
        vmm_log_error("%s: queue %u: %u chains handed back, more than are held", q->label, q->index,
                      n);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct virtq_box *b = (const struct virtq_box *)chains[i];
        /* The last n taken, in the order taken: a chain used, released or
         * taken after them (or a malformed one completed there) leaves a
         * gap, and rewinding over it would hand a used buffer out again. */
        if (!b || !b->in_flight || b->c.queue != q || b->reset_gen != q->reset_gen ||
            b->avail_pos != (uint16_t)(q->last_avail - n + i)) {
            vmm_log_error("%s: queue %u: chain %u of %u handed back is not the next one taken "
                          "but not used",
                          q->label, q->index, i, n);
            return -EINVAL;
        }
    }
    q->last_avail = (uint16_t)(q->last_avail - n);
    q->stats.popped -= n;
    for (unsigned i = 0; i < n; i++)
        chain_release(chains[i]);
    return 0;
}

uint16_t vmm_virtq_chain_head(const struct vmm_virtq_chain *chain)
{
    return ((const struct virtq_box *)chain)->id;
}

void vmm_virtq_chain_free(struct vmm_virtq_chain *chain)
{
    if (chain)
        chain_release(chain);
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
        need = load_avail_u16(q, used_event_addr(q), &event) < 0 ||
               need_event(event, q->used_idx, old);
    } else {
        uint16_t flags;
        need = load_avail_u16(q, q->avail, &flags) < 0 || !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
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

/* The segments of one part of a chain, and where they lie on the host. */
static const struct vmm_virtq_seg *part(const struct vmm_virtq_chain *c, bool writable, unsigned *n,
                                        const struct virtq_seg_host **hs)
{
    const struct virtq_box *b = (const struct virtq_box *)c;
    unsigned first = writable ? c->nr_readable : 0;
    *n = writable ? c->nr_writable : c->nr_readable;
    *hs = box_hseg(b) + first;
    return c->seg + first;
}

/* The host address of segment s when the queue found one and s is still the
 * segment it checked; else NULL (use the checked accessors). */
static inline uint8_t *seg_host(const struct vmm_virtq_seg *s, const struct virtq_seg_host *hs)
{
    return hs->host && hs->gpa == s->gpa && hs->len == s->len ? hs->host : NULL;
}

static int chain_copy(const struct vmm_virtq_chain *c, bool writable, uint64_t offset, void *buf,
                      size_t len)
{
    if (len > INT_MAX)
        return -EINVAL;
    unsigned n;
    const struct virtq_seg_host *hs;
    const struct vmm_virtq_seg *s = part(c, writable, &n, &hs);
    /* One look for the whole call when nothing is tracked. */
    bool mark = writable && memory_dirty_tracking_any(c->queue->mem);
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (offset >= s[i].len) {
            offset -= s[i].len;
            continue;
        }
        size_t chunk = s[i].len - offset;
        if (chunk > len - done)
            chunk = len - done;
        uint8_t *host = seg_host(&s[i], &hs[i]);
        if (host) {
            if (writable) {
                memcpy(host + offset, (const uint8_t *)buf + done, chunk);
                if (mark)
                    memory_region_dirty_gpa(hs[i].region, s[i].gpa + offset, chunk);
            } else {
                memcpy((uint8_t *)buf + done, host + offset, chunk);
            }
        } else {
            int r = writable ? vmm_memory_write(c->queue->mem, s[i].gpa + offset,
                                                (const uint8_t *)buf + done, chunk)
                             : vmm_memory_read(c->queue->mem, s[i].gpa + offset,
                                               (uint8_t *)buf + done, chunk);
            if (r < 0)
                return r;
        }
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
    const struct virtq_seg_host *hs;
    const struct vmm_virtq_seg *s = part(chain, writable, &n, &hs);
    struct vmm_memory *mem = chain->queue->mem;
    unsigned access = writable ? VMM_ACCESS_WRITE : VMM_ACCESS_READ;
    /* Writable iovecs mark their pages dirty (as vmm_memory_get_ptr would):
     * one look for the whole call when nothing is tracked. */
    bool mark = writable && memory_dirty_tracking_any(mem);
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
        uint8_t *host = seg_host(&s[i], &hs[i]);
        if (host) {
            /* One region holds the segment: one iovec. */
            if (count == max_iov)
                return -ENOSPC;
            if (mark)
                memory_region_dirty_gpa(hs[i].region, gpa, left);
            iov[count].iov_base = host + offset;
            iov[count].iov_len = left;
            count++;
            offset = 0;
            continue;
        }
        offset = 0;
        /* One iovec per memory region the range touches. */
        while (left > 0) {
            struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
            if (vmm_memory_find_region(mem, gpa, &info) < 0)
                return -EFAULT;
            uint64_t chunk = info.gpa + info.len - gpa;
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

void vmm_virtq_chain_mark_dirty(const struct vmm_virtq_chain *chain, uint64_t len)
{
    /* The common case costs one load, not a walk over the segments. */
    if (!memory_dirty_tracking_any(chain->queue->mem))
        return;
    unsigned n;
    const struct virtq_seg_host *hs;
    const struct vmm_virtq_seg *s = part(chain, true, &n, &hs);
    for (unsigned i = 0; i < n && len > 0; i++) {
        uint64_t chunk = s[i].len < len ? s[i].len : len;
        if (seg_host(&s[i], &hs[i]))
            memory_region_dirty_gpa(hs[i].region, s[i].gpa, chunk);
        else
            vmm_memory_mark_dirty(chain->queue->mem, s[i].gpa, chunk);
        len -= chunk;
    }
}
