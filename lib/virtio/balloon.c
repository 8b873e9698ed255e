/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio memory balloon (virtio 1.2 section 5.5): inflateq 0 and
 * deflateq 1 carry arrays of 32-bit page frame numbers (4 KiB pages), then,
 * in this order and only when negotiated (the driver numbers the queues it
 * uses without gaps), statsq and reporting_vq.
 *
 * Inflated pages are read in batches, sorted and merged into runs, and each
 * run goes back to the host by the call its region's backing needs:
 * MADV_DONTNEED for private anonymous memory (and the caller's own external
 * memory, page-aligned parts only), FALLOC_FL_PUNCH_HOLE for memfd and file
 * backing, which are shared mappings MADV_DONTNEED does not free. hugetlb
 * memory goes back only in whole huge pages (fallocate rounds inward; an
 * anonymous hugetlb run is rounded inward here). Read-only regions are left
 * alone. Free page reports are device-writable buffers that are the free
 * memory itself: each goes back the same way.
 *
 * Free page hinting: the host starts a command (a new ID of 2 or more in
 * free_page_hint_cmd_id); the driver answers with a buffer holding that ID,
 * then device-writable buffers of free pages it holds until the host sets
 * DONE, then a buffer holding STOP. Pages hinted while the command is
 * active (the driver's ID matched the device's, and no STOP came) go back
 * like reports; hints of a stale or unknown command are given back untouched.
 *
 * Page poison: a driver that negotiated VIRTIO_BALLOON_F_PAGE_POISON and
 * wrote a non-zero poison_val expects free pages to read back as that
 * value; dropping them would make them read back as zeros, so reported and
 * hinted pages are then kept (counted in kept_bytes). Inflated pages are the
 * driver's to refill and still go back.
 *
 * Work per chain is bounded: at most BALLOON_MAX_PFNS page numbers of one
 * chain are looked at; a guest that sends more gets the rest ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmm/virtio.h>
#include <vmm/virtio_balloon.h>
#include <vmm/virtio_mmio.h>

#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define PAGE_SHIFT 12
#define PAGE_SZ    (1ull << PAGE_SHIFT)
/* The huge page size hugetlb regions are assumed to use (x86-64's default). */
#define HUGE_SZ (2ull << 20)

#define BALLOON_CONFIG   8  /* num_pages, actual */
#define BALLOON_CONFIG_X 16 /* ..., free_page_hint_cmd_id, poison_val */
#define CMD_ID_STOP      0
#define CMD_ID_DONE      1
#define BALLOON_BATCH    256   /* page numbers read and merged at a time */
#define BALLOON_MAX_PFNS 65536 /* per chain: 256 MiB of guest memory */
#define STAT_SIZE        10    /* struct virtio_balloon_stat: le16 tag, le64 val (packed) */
#define STATS_MAX        64    /* entries looked at per statistics buffer */

enum role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_HINT, ROLE_REPORTING };

struct balloon {
    struct vmm_virtio_transport *t;
    uint32_t target_pages, actual_pages;
    uint32_t cmd_id;     /* free_page_hint_cmd_id */
    uint32_t next_id;    /* the next command ID to hand out (2 or more) */
    bool hint_active;    /* the driver answered cmd_id and has not stopped */
    uint32_t poison_val; /* as the driver wrote it */
    uint32_t config_size;
    struct vmm_virtq_chain *stats_chain; /* the buffer the driver left for the next request */
    unsigned stats_queue;
    struct vmm_virtio_balloon_stats stats;
    struct vmm_log_limit bad_log, discard_log;
    uint32_t pfns[BALLOON_BATCH];
};

/* What queue index is, with the features negotiated. */
static enum role queue_role(struct balloon *b, unsigned index)
{
    uint64_t f = vmm_virtio_features(b->t);
    unsigned next = 2;
    if (index == 0)
        return ROLE_INFLATE;
    if (index == 1)
        return ROLE_DEFLATE;
    if (f & VMM_VIRTIO_BALLOON_F_STATS_VQ) {
        if (index == next)
            return ROLE_STATS;
        next++;
    }
    if (f & VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT) {
        if (index == next)
            return ROLE_HINT;
        next++;
    }
    if ((f & VMM_VIRTIO_BALLOON_F_REPORTING) && index == next)
        return ROLE_REPORTING;
    return ROLE_NONE;
}

/* Give [gpa, gpa + len) of one region back to the host. Returns the bytes
 * given back. */
static uint64_t discard_in_region(struct balloon *b, const struct vmm_region_info *r, vmm_gpa_t gpa,
                                  uint64_t len)
{
    if (r->flags & VMM_MEMORY_F_READONLY)
        return 0;
    uint64_t off = gpa - r->gpa;
    bool huge = r->flags & VMM_MEMORY_F_HUGETLB;
    if (r->fd >= 0) {
        /* Shared memfd/file mappings: only a hole frees the pages (on
         * hugetlbfs the kernel keeps partial huge pages). */
        uint64_t start = off, end = off + len;
        if (huge) {
            start = (start + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
            end &= ~(HUGE_SZ - 1);
            if (end <= start)
                return 0;
        }
        if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(r->fd_offset + start), (off_t)(end - start)) < 0) {
            vmm_log_limited(&b->discard_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-balloon: punching a hole at 0x%" PRIx64 ": %s", gpa,
                            vmm_strerror(-errno));
            return 0;
        }
        return end - start;
    }
    /* Private anonymous (or the caller's own) memory: whole host pages. */
    uint64_t align = huge ? HUGE_SZ : PAGE_SZ;
    uintptr_t host = (uintptr_t)r->host + off;
    uintptr_t start = (host + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t end = (host + len) & ~(uintptr_t)(align - 1);
    if (end <= start)
        return 0;
    if (madvise((void *)start, end - start, MADV_DONTNEED) < 0) {
        vmm_log_limited(&b->discard_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-balloon: MADV_DONTNEED at 0x%" PRIx64 ": %s", gpa,
                        vmm_strerror(-errno));
        return 0;
    }
    return end - start;
}

/* Give guest range [gpa, gpa + len) back, region by region; a range that
 * leaves guest memory is counted bad and skipped. */
static void discard(struct balloon *b, vmm_gpa_t gpa, uint64_t len)
{
    struct vmm_memory *mem = vmm_virtio_memory(b->t);
    if (len == 0 || gpa + len < gpa || vmm_memory_check_range(mem, gpa, len) < 0) {
        b->stats.bad_pages++;
        vmm_log_limited(&b->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-balloon: [0x%" PRIx64 ", +0x%" PRIx64 ") is not guest memory", gpa,
                        len);
        return;
    }
    while (len > 0) {
        struct vmm_region_info r = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_find_region(mem, gpa, &r) < 0)
            return; /* checked above */
        uint64_t n = r.gpa + r.len - gpa;
        if (n > len)
            n = len;
        b->stats.returned_bytes += discard_in_region(b, &r, gpa, n);
        gpa += n;
        len -= n;
    }
}

/* Sort a[0..n) in place (heapsort): not qsort, which in glibc may call
 * sysinfo(2) to size a buffer (for 256 entries or more), a call the seccomp
 * filters (lib/seccomp) do not allow the event loop. */
static void sort_u32(uint32_t *a, unsigned n)
{
    for (unsigned end = n, start = n / 2;;) {
        if (start > 0) {
            start--;
        } else {
            if (end <= 1)
                return;
            end--;
            uint32_t t = a[0];
            a[0] = a[end];
            a[end] = t;
        }
        for (unsigned root = start, child; (child = 2 * root + 1) < end; root = child) {
            if (child + 1 < end && a[child] < a[child + 1])
                child++;
            if (a[root] >= a[child])
                break;
            uint32_t t = a[root];
            a[root] = a[child];
            a[child] = t;
        }
    }
}

/* An inflate or deflate chain: its page numbers (whole ones only). */
static void pfn_chain(struct balloon *b, const struct vmm_virtq_chain *c, bool inflate)
{
    uint64_t count = c->readable_len / 4;
    if (count > BALLOON_MAX_PFNS) {
        vmm_log_limited(&b->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-balloon: %" PRIu64
                        " page numbers in one buffer; taking the first %u",
                        count, BALLOON_MAX_PFNS);
        count = BALLOON_MAX_PFNS;
    }
    for (uint64_t done = 0; done < count;) {
        unsigned n = count - done < BALLOON_BATCH ? (unsigned)(count - done) : BALLOON_BATCH;
        if (vmm_virtq_chain_read(c, done * 4, b->pfns, n * 4ull) != (int)(n * 4))
            return;
        done += n;
        if (!inflate) {
            /* Deflated pages come back on the guest's next touch. */
            b->stats.deflated_pages += n;
            continue;
        }
        b->stats.inflated_pages += n;
        sort_u32(b->pfns, n);
        for (unsigned i = 0; i < n;) {
            unsigned j = i + 1;
            while (j < n && (b->pfns[j] == b->pfns[j - 1] || b->pfns[j] == b->pfns[j - 1] + 1))
                j++;
            uint64_t first = b->pfns[i], last = b->pfns[j - 1];
            discard(b, first << PAGE_SHIFT, (last - first + 1) << PAGE_SHIFT);
            i = j;
        }
    }
}

/* Whether free pages must keep their content (the driver poisons them). */
static bool poisoned(struct balloon *b)
{
    return (vmm_virtio_features(b->t) & VMM_VIRTIO_BALLOON_F_PAGE_POISON) && b->poison_val != 0;
}

/* Free guest memory [gpa, gpa + len) the driver gave (reported or hinted):
 * back to the host unless it must keep its poison. */
static void free_range(struct balloon *b, vmm_gpa_t gpa, uint64_t len)
{
    if (!poisoned(b)) {
        discard(b, gpa, len);
    } else if (len && gpa + len >= gpa &&
               vmm_memory_check_range(vmm_virtio_memory(b->t), gpa, len) == 0) {
        b->stats.kept_bytes += len;
    } else {
        b->stats.bad_pages++;
    }
}

/* A free page report: every device-writable buffer is free guest memory. */
static void report_chain(struct balloon *b, const struct vmm_virtq_chain *c)
{
    for (unsigned i = 0; i < c->nr_writable; i++) {
        const struct vmm_virtq_seg *s = &c->seg[c->nr_readable + i];
        b->stats.reported_bytes += s->len;
        free_range(b, s->gpa, s->len);
    }
}

/* A free page hint chain: a command ID the driver answers with (readable
 * part), and/or free pages (writable part), used while the command is
 * active. */
static void hint_chain(struct balloon *b, const struct vmm_virtq_chain *c)
{
    if (c->readable_len) {
        uint32_t id;
        if (c->readable_len != 4 || vmm_virtq_chain_read(c, 0, &id, 4) != 4) {
            b->hint_active = false;
            b->stats.bad_hints++;
            vmm_log_limited(&b->bad_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-balloon: a %" PRIu64 "-byte hint command (4 expected)",
                            c->readable_len);
        } else if (id == CMD_ID_STOP) {
            b->hint_active = false;
        } else if (id >= 2 && id == b->cmd_id) {
            b->hint_active = true;
        } else {
            b->hint_active = false;
            b->stats.bad_hints++;
            vmm_log_limited(&b->bad_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-balloon: hint command %" PRIu32 " (the device's is %" PRIu32
                            ")",
                            id, b->cmd_id);
        }
    }
    for (unsigned i = 0; i < c->nr_writable; i++) {
        const struct vmm_virtq_seg *s = &c->seg[c->nr_readable + i];
        if (!b->hint_active) {
            b->stats.bad_hints++;
            continue;
        }
        b->stats.hinted_bytes += s->len;
        free_range(b, s->gpa, s->len);
    }
}

/* A statistics buffer: record it, and keep the chain for the next request. */
static void stats_chain(struct balloon *b, struct vmm_virtq *q, struct vmm_virtq_chain *c)
{
    unsigned n = (unsigned)(c->readable_len / STAT_SIZE);
    if (n > STATS_MAX)
        n = STATS_MAX;
    for (unsigned i = 0; i < n; i++) {
        uint8_t e[STAT_SIZE];
        if (vmm_virtq_chain_read(c, (uint64_t)i * STAT_SIZE, e, STAT_SIZE) != STAT_SIZE)
            break;
        uint16_t tag;
        uint64_t val;
        memcpy(&tag, e, 2);
        memcpy(&val, e + 2, 8);
        if (tag < VMM_VIRTIO_BALLOON_S_NR) { /* unknown tags are skipped (5.5.6.3) */
            b->stats.guest[tag] = val;
            b->stats.guest_valid |= 1u << tag;
        }
    }
    b->stats.stats_updates++;
    /* One buffer is held; a driver that sends another gets the older back. */
    if (b->stats_chain)
        (void)vmm_virtq_push(q, b->stats_chain, 0);
    b->stats_chain = c;
}

static void balloon_queue_notify(void *opaque, unsigned index)
{
    struct balloon *b = opaque;
    enum role role = queue_role(b, index);
    if (role == ROLE_NONE)
        return;
    struct vmm_virtq *q = vmm_virtio_queue(b->t, index);
    struct vmm_virtq_chain *c;
    while (vmm_virtq_pop(q, &c) > 0) {
        switch (role) {
        case ROLE_INFLATE:
        case ROLE_DEFLATE:
            pfn_chain(b, c, role == ROLE_INFLATE);
            break;
        case ROLE_REPORTING:
            report_chain(b, c);
            break;
        case ROLE_HINT:
            hint_chain(b, c);
            break;
        case ROLE_STATS:
            b->stats_queue = index;
            stats_chain(b, q, c);
            continue; /* held */
        case ROLE_NONE:
            break;
        }
        (void)vmm_virtq_push(q, c, 0);
    }
    vmm_virtq_notify(q);
}

/* ---- snapshots: the config space, the hinting command and the counters ---- */

/* The statistics buffer the device holds goes back to the driver (used,
 * nothing written): a snapshot holds no chain, and the driver answers with
 * fresh statistics in a new buffer, which the (restored) device then holds
 * like any other (5.5.6.3: a used buffer is the device asking for them). */
static int balloon_quiesce(void *opaque)
{
    struct balloon *b = opaque;
    if (b->stats_chain) {
        struct vmm_virtq *q = vmm_virtio_queue(b->t, b->stats_queue);
        (void)vmm_virtq_push(q, b->stats_chain, 0);
        b->stats_chain = NULL;
        vmm_virtq_notify(q);
    }
    return 0;
}

static int balloon_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    struct balloon *b = opaque;
    snap_put_u32(w, b->config_size);
    snap_put_u32(w, b->target_pages);
    snap_put_u32(w, b->actual_pages);
    snap_put_u32(w, b->cmd_id);
    snap_put_u32(w, b->next_id);
    snap_put_u32(w, b->hint_active);
    snap_put_u32(w, b->poison_val);
    snap_put_u32(w, b->stats_queue);
    snap_put_u32(w, (uint32_t)sizeof(b->stats));
    snap_put(w, &b->stats, sizeof(b->stats));
    return 0;
}

static int balloon_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct balloon *b = opaque;
    uint32_t v[9];
    struct vmm_virtio_balloon_stats s;
    for (unsigned i = 0; i < 9; i++)
        if (snap_get_u32(r, &v[i]) < 0)
            goto bad;
    if (v[0] != b->config_size) {
        vmm_log_error("restore: virtio-balloon saved with another feature set (config %" PRIu32
                      " bytes)",
                      v[0]);
        return -EINVAL;
    }
    /* The command ID is STOP, DONE or one handed out (below next_id's
     * range end); statistics come on queue 2 only. */
    if (v[4] < 2 || v[4] > INT32_MAX || v[3] > INT32_MAX || v[5] > 1 || (v[7] != 0 && v[7] != 2) ||
        v[8] != sizeof(s) || snap_get(r, &s, sizeof(s)) < 0 || s.size != sizeof(s) ||
        s.guest_valid >> VMM_VIRTIO_BALLOON_S_NR)
        goto bad;
    b->target_pages = v[1];
    b->actual_pages = v[2];
    b->cmd_id = v[3];
    b->next_id = v[4];
    b->hint_active = v[5];
    b->poison_val = v[6];
    b->stats_queue = v[7];
    b->stats = s;
    return 0;
bad:
    vmm_log_error("restore: malformed virtio-balloon state");
    return -EBADMSG;
}

static const struct virtio_snap_ops balloon_snap = {
    .quiesce = balloon_quiesce, .save = balloon_snap_save, .restore = balloon_snap_restore};

static int balloon_attach(void *opaque, struct vmm_virtio_transport *t)
{
    ((struct balloon *)opaque)->t = t;
    t->snap = &balloon_snap;
    return 0;
}

static void config_fill(const struct balloon *b, uint8_t *cfg)
{
    memcpy(cfg, &b->target_pages, 4);
    memcpy(cfg + 4, &b->actual_pages, 4);
    memcpy(cfg + 8, &b->cmd_id, 4);
    memcpy(cfg + 12, &b->poison_val, 4);
}

static void balloon_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct balloon *b = opaque;
    uint8_t cfg[BALLOON_CONFIG_X];
    config_fill(b, cfg);
    memcpy(data, cfg + offset, len); /* the transport checked the range */
}

static void balloon_config_write(void *opaque, uint32_t offset, const void *data, uint32_t len)
{
    struct balloon *b = opaque;
    uint8_t cfg[BALLOON_CONFIG_X];
    config_fill(b, cfg);
    memcpy(cfg + offset, data, len);
    /* num_pages and the command ID are the device's. */
    memcpy(&b->actual_pages, cfg + 4, 4);
    if (b->config_size > 12)
        memcpy(&b->poison_val, cfg + 12, 4);
}

static void drop_stats_chain(struct balloon *b)
{
    vmm_virtq_chain_free(b->stats_chain);
    b->stats_chain = NULL;
}

static void balloon_reset(void *opaque)
{
    struct balloon *b = opaque;
    drop_stats_chain(b);
    b->actual_pages = 0;
    b->poison_val = 0;
    b->hint_active = false;
    b->cmd_id = CMD_ID_STOP;
}

static void balloon_queue_reset(void *opaque, unsigned index)
{
    struct balloon *b = opaque;
    if (b->stats_chain && index == b->stats_queue)
        drop_stats_chain(b);
}

static void balloon_destroy(void *opaque)
{
    struct balloon *b = opaque;
    drop_stats_chain(b);
    free(b);
}

static const struct vmm_virtio_device_ops balloon_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = balloon_attach,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .reset = balloon_reset,
    .queue_notify = balloon_queue_notify,
    .queue_reset = balloon_queue_reset,
    .destroy = balloon_destroy,
};

int vmm_virtio_balloon_create(const struct vmm_virtio_balloon_config *cfg,
                              struct vmm_virtio_device *dev)
{
    struct vmm_virtio_balloon_config c = {0};
    if (!dev || !VMM_ABI_OUT_OK(dev) || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    unsigned qsize = c.queue_size ? c.queue_size : 256;
    if (!vmm_is_pow2(qsize) || qsize > VMM_VIRTQ_MAX_SIZE ||
        (c.target_bytes >> PAGE_SHIFT) > UINT32_MAX)
        return -EINVAL;
    struct balloon *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->target_pages = (uint32_t)(c.target_bytes >> PAGE_SHIFT);
    b->stats.size = sizeof(b->stats);
    uint64_t f = 0;
    if (c.stats)
        f |= VMM_VIRTIO_BALLOON_F_STATS_VQ;
    if (c.deflate_on_oom)
        f |= VMM_VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
    if (c.reporting)
        f |= VMM_VIRTIO_BALLOON_F_REPORTING;
    if (c.hinting)
        f |= VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT;
    /* A driver that poisons free pages can then still report or hint. */
    if (c.reporting || c.hinting)
        f |= VMM_VIRTIO_BALLOON_F_PAGE_POISON;
    b->config_size = (c.reporting || c.hinting) ? BALLOON_CONFIG_X : BALLOON_CONFIG;
    b->next_id = 2;
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_BALLOON,
        .features = f,
        .num_queues = 2 + (unsigned)c.stats + (unsigned)c.hinting + (unsigned)c.reporting,
        .queue_max_size = qsize,
        .config_size = b->config_size,
        .ops = &balloon_ops,
        .opaque = b,
        .name = "virtio-balloon",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_balloon(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                              const struct vmm_virtio_balloon_config *cfg,
                              struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_balloon_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}

int vmm_virtio_balloon_set_target(struct vmm_virtio_transport *t, uint64_t target_bytes)
{
    if (!t || t->caller_ops != &balloon_ops || (target_bytes >> PAGE_SHIFT) > UINT32_MAX)
        return -EINVAL;
    struct balloon *b = t->dev.opaque;
    vmm_virtio_lock(t);
    uint32_t pages = (uint32_t)(target_bytes >> PAGE_SHIFT);
    if (pages != b->target_pages) {
        b->target_pages = pages;
        vmm_virtio_config_changed(t);
    }
    vmm_virtio_unlock(t);
    return 0;
}

int vmm_virtio_balloon_hint(struct vmm_virtio_transport *t, bool start)
{
    if (!t || t->caller_ops != &balloon_ops)
        return -EINVAL;
    struct balloon *b = t->dev.opaque;
    if (!(t->dev.features & VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT))
        return -ENOTSUP;
    vmm_virtio_lock(t);
    if (start) {
        b->cmd_id = b->next_id;
        b->next_id = b->next_id == INT32_MAX ? 2 : b->next_id + 1;
    } else {
        b->cmd_id = CMD_ID_DONE;
    }
    b->hint_active = false;
    vmm_virtio_config_changed(t);
    uint32_t id = b->cmd_id;
    vmm_virtio_unlock(t);
    return (int)id; /* at most INT32_MAX */
}

int vmm_virtio_balloon_request_stats(struct vmm_virtio_transport *t)
{
    if (!t || t->caller_ops != &balloon_ops)
        return -EINVAL;
    struct balloon *b = t->dev.opaque;
    int r = -EAGAIN;
    vmm_virtio_lock(t);
    if (b->stats_chain) {
        struct vmm_virtq *q = vmm_virtio_queue(t, b->stats_queue);
        (void)vmm_virtq_push(q, b->stats_chain, 0);
        b->stats_chain = NULL;
        vmm_virtq_notify(q);
        r = 0;
    }
    vmm_virtio_unlock(t);
    return r;
}

int vmm_virtio_balloon_get_stats(struct vmm_virtio_transport *t,
                                 struct vmm_virtio_balloon_stats *stats)
{
    if (!t || !stats || t->caller_ops != &balloon_ops || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct balloon *b = t->dev.opaque;
    vmm_virtio_lock(t);
    struct vmm_virtio_balloon_stats s = b->stats;
    s.target_pages = b->target_pages;
    s.actual_pages = b->actual_pages;
    s.hint_cmd_id = b->cmd_id;
    s.poison_val = b->poison_val;
    vmm_virtio_unlock(t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
