/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The split virtqueue against a hostile driver: the input is a program of
 * driver moves (guest memory writes, descriptors, available entries, raw
 * index and flag stores) and device moves (pop, push, free, read, write,
 * iovecs, notify, reset) over 64 KiB of guest memory in two adjacent regions,
 * so buffers may straddle a region boundary. Direct and indirect
 * descriptors and VIRTIO_RING_F_EVENT_IDX come from the input.
 *
 * Invariants checked on every chain popped: segment counts within
 * min(queue size, VMM_VIRTQ_MAX_CHAIN), totals equal to the segments' sum,
 * every segment non-empty and inside guest memory, reads and writes within
 * their part; and the memory held stays within VMM_VIRTQ_MAX_HELD_BYTES.
 */
#include <errno.h>
#include <sys/uio.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>

#include "fuzz_common.h"

#define MEM_BASE 0x10000ull
#define MEM_HALF 0x8000ull
#define MEM_SIZE (2 * MEM_HALF)
#define MAX_HELD 64

enum op {
    OP_MEMWRITE,
    OP_DESC,
    OP_AVAIL,
    OP_AVAIL_IDX,
    OP_POP,
    OP_PUSH,
    OP_FREE,
    OP_READ,
    OP_WRITE,
    OP_IOV,
    OP_NOTIFY,
    OP_RESET,
    OP_FLAGS,
    OP_DRAIN,
    OP_COUNT
};

struct fuzz_queue {
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_virtq *q;
    unsigned size;
    vmm_gpa_t desc, avail, used;
    uint16_t avail_idx;
    struct vmm_virtq_chain *held[MAX_HELD];
    unsigned nheld;
    uint64_t interrupts, resumes;
};

static uint8_t *host_at(struct fuzz_queue *f, vmm_gpa_t gpa, size_t len)
{
    if (gpa < MEM_BASE || gpa - MEM_BASE > MEM_SIZE || len > MEM_SIZE - (gpa - MEM_BASE))
        return NULL;
    return f->host + (gpa - MEM_BASE);
}

static void put_u16(struct fuzz_queue *f, vmm_gpa_t gpa, uint16_t v)
{
    uint8_t *p = host_at(f, gpa, 2);
    if (p)
        memcpy(p, &v, 2);
}

static void on_interrupt(void *opaque, struct vmm_virtq *q)
{
    (void)q;
    ((struct fuzz_queue *)opaque)->interrupts++;
}

static void on_resume(void *opaque, struct vmm_virtq *q)
{
    (void)q;
    ((struct fuzz_queue *)opaque)->resumes++;
}

static void check_chain(struct fuzz_queue *f, const struct vmm_virtq_chain *c)
{
    unsigned n = c->nr_readable + c->nr_writable;
    unsigned limit = f->size < VMM_VIRTQ_MAX_CHAIN ? f->size : VMM_VIRTQ_MAX_CHAIN;
    /* Empty buffers are left out, so a chain may have no segment at all. */
    FZ_CHECK(n <= limit);
    FZ_CHECK(c->queue == f->q);
    uint64_t rd = 0, wr = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct vmm_virtq_seg *s = &c->seg[i];
        FZ_CHECK(s->len > 0);
        FZ_CHECK(vmm_memory_check_range(f->mem, s->gpa, s->len) == 0);
        if (i < c->nr_readable)
            rd += s->len;
        else
            wr += s->len;
    }
    FZ_CHECK(rd == c->readable_len && wr == c->writable_len);
}

static void check_held(struct fuzz_queue *f)
{
    struct vmm_virtq_stats st = {.size = sizeof(st)};
    FZ_CHECK(vmm_virtq_get_stats(f->q, &st) == 0);
    FZ_CHECK(st.held_bytes <= VMM_VIRTQ_MAX_HELD_BYTES);
}

static struct vmm_virtq_chain *take_held(struct fuzz_queue *f, uint8_t which)
{
    if (!f->nheld)
        return NULL;
    unsigned i = which % f->nheld;
    struct vmm_virtq_chain *c = f->held[i];
    f->held[i] = f->held[--f->nheld];
    return c;
}

static const struct vmm_virtq_chain *peek_held(struct fuzz_queue *f, uint8_t which)
{
    return f->nheld ? f->held[which % f->nheld] : NULL;
}

static void enable(struct fuzz_queue *f, uint64_t features)
{
    vmm_virtq_set_features(f->q, features);
    /* May fail (bad alignment, outside memory): the queue stays off and
     * every pop says empty, which is worth fuzzing too. */
    (void)vmm_virtq_enable(f->q, f->size, f->desc, f->avail, f->used);
}

static void run(struct fuzz_queue *f, struct fz *in)
{
    static uint8_t buf[1 << 16];
    uint8_t cfg = fz_u8(in);
    f->size = 1u << (cfg % 10); /* 1 .. 512 */
    uint64_t features = (cfg & 0x40 ? VMM_VIRTIO_F_INDIRECT_DESC : 0) |
                        (cfg & 0x80 ? VMM_VIRTIO_F_EVENT_IDX : 0) | VMM_VIRTIO_F_VERSION_1;
    /* Ring areas: offsets into guest memory (any value; enable checks). */
    f->desc = MEM_BASE + fz_u16(in);
    f->avail = MEM_BASE + fz_u16(in);
    f->used = MEM_BASE + fz_u16(in);
    enable(f, features);

    for (unsigned steps = 0; fz_more(in) && steps < 4096; steps++) {
        uint8_t op = fz_u8(in) % OP_COUNT;
        switch (op) {
        case OP_MEMWRITE: {
            uint16_t off = fz_u16(in);
            size_t len;
            const uint8_t *src = fz_take(in, fz_u8(in), &len);
            if (len > MEM_SIZE - off)
                len = MEM_SIZE - off;
            memcpy(f->host + off, src, len);
            break;
        }
        case OP_DESC: {
            /* Descriptor slot of the ring's table, or of an indirect
             * table anywhere (16-byte slots of guest memory). */
            uint16_t slot = fz_u16(in);
            uint8_t mode = fz_u8(in);
            vmm_gpa_t at = mode & 1 ? MEM_BASE + (slot % (MEM_SIZE / 16)) * 16ull
                                    : f->desc + 16ull * (slot % f->size);
            uint64_t addr = mode & 2 ? fz_u64(in) : MEM_BASE + fz_u16(in);
            uint32_t len = mode & 4 ? fz_u32(in) : fz_u16(in);
            uint16_t flags = fz_u8(in), next = fz_u16(in);
            uint8_t *p = host_at(f, at, 16);
            if (p) {
                memcpy(p, &addr, 8);
                memcpy(p + 8, &len, 4);
                memcpy(p + 12, &flags, 2);
                memcpy(p + 14, &next, 2);
            }
            break;
        }
        case OP_AVAIL:
            put_u16(f, f->avail + 4 + 2ull * (f->avail_idx & (f->size - 1)), fz_u16(in));
            f->avail_idx++;
            put_u16(f, f->avail + 2, f->avail_idx);
            break;
        case OP_AVAIL_IDX:
            f->avail_idx = fz_u16(in);
            put_u16(f, f->avail + 2, f->avail_idx);
            break;
        case OP_POP: {
            struct vmm_virtq_chain *c;
            int r = vmm_virtq_pop(f->q, &c);
            FZ_CHECK(r == 0 || r == 1 || r == -EIO || r == -ENOMEM);
            if (r == 1) {
                check_chain(f, c);
                if (f->nheld < MAX_HELD)
                    f->held[f->nheld++] = c;
                else
                    (void)vmm_virtq_push(f->q, c, 0);
            }
            check_held(f);
            break;
        }
        case OP_PUSH: {
            struct vmm_virtq_chain *c = take_held(f, fz_u8(in));
            uint32_t written = fz_u32(in);
            int r = vmm_virtq_push(f->q, c, written);
            FZ_CHECK(r == 0 || r == -EIO || r == -EFAULT);
            break;
        }
        case OP_FREE:
            vmm_virtq_chain_free(take_held(f, fz_u8(in)));
            break;
        case OP_READ:
        case OP_WRITE: {
            bool write = op == OP_WRITE;
            const struct vmm_virtq_chain *c = peek_held(f, fz_u8(in));
            uint64_t off = fz_u32(in);
            size_t len = fz_u16(in);
            if (!c)
                break;
            uint64_t part = write ? c->writable_len : c->readable_len;
            int r = write ? vmm_virtq_chain_write(c, off, buf, len)
                          : vmm_virtq_chain_read(c, off, buf, len);
            FZ_CHECK(r == -EFAULT || r == -EROFS ||
                     (r >= 0 && (uint64_t)r <= len &&
                      (off >= part ? r == 0 : (uint64_t)r <= part - off)));
            break;
        }
        case OP_IOV: {
            const struct vmm_virtq_chain *c = peek_held(f, fz_u8(in));
            uint8_t m = fz_u8(in);
            uint64_t off = fz_u32(in), len = fz_u32(in);
            if (!c)
                break;
            struct iovec iov[16];
            unsigned max = 1 + (m >> 1) % 16;
            bool writable = m & 1;
            int r = vmm_virtq_chain_iov(c, writable, off, len, iov, max);
            FZ_CHECK(r == -ENOSPC || r == -EFAULT || r == -EROFS || (r >= 0 && (unsigned)r <= max));
            uint64_t total = 0;
            for (int i = 0; i < r; i++) {
                /* Every iovec lies in the guest's memory. */
                uint8_t *b = iov[i].iov_base;
                FZ_CHECK(b >= f->host && iov[i].iov_len <= MEM_SIZE &&
                         (size_t)(b - f->host) <= MEM_SIZE - iov[i].iov_len);
                total += iov[i].iov_len;
            }
            uint64_t part = writable ? c->writable_len : c->readable_len;
            FZ_CHECK(total <= len && total <= part);
            break;
        }
        case OP_NOTIFY:
            (void)vmm_virtq_notify(f->q);
            break;
        case OP_RESET:
            /* Chains still held become stale: pushing them only frees. */
            vmm_virtq_reset(f->q);
            f->avail_idx = 0;
            features ^= fz_u8(in) & 1 ? VMM_VIRTIO_F_EVENT_IDX : 0;
            enable(f, features);
            break;
        case OP_FLAGS: {
            /* The driver's flags and used_event, and the device's
             * used-ring flags a driver may scribble over. */
            uint8_t which = fz_u8(in);
            uint16_t v = fz_u16(in);
            if (which & 1)
                put_u16(f, f->avail, v);
            else
                put_u16(f, f->avail + 4 + 2ull * f->size, v); /* used_event */
            break;
        }
        case OP_DRAIN: {
            /* What a device does on a notification: pop until empty. */
            struct vmm_virtq_chain *c;
            int r;
            for (unsigned i = 0; i <= f->size && (r = vmm_virtq_pop(f->q, &c)) > 0; i++) {
                check_chain(f, c);
                (void)vmm_virtq_push(f->q, c, (uint32_t)c->writable_len);
            }
            (void)vmm_virtq_notify(f->q);
            break;
        }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool logs_set;
    if (!logs_set) {
        fz_quiet_logs();
        logs_set = true;
    }
    struct fuzz_queue f = {0};
    f.host = calloc(1, MEM_SIZE);
    FZ_CHECK(f.host);
    FZ_CHECK(vmm_memory_create(&f.mem) == 0);
    FZ_CHECK(vmm_memory_add_external(f.mem, MEM_BASE, MEM_HALF, f.host) >= 0);
    FZ_CHECK(vmm_memory_add_external(f.mem, MEM_BASE + MEM_HALF, MEM_HALF, f.host + MEM_HALF) >= 0);
    struct vmm_virtq_callbacks cb = {
        .size = sizeof(cb), .interrupt = on_interrupt, .resume = on_resume, .opaque = &f};
    FZ_CHECK(vmm_virtq_create(f.mem, 0, 512, &cb, &f.q) == 0);

    struct fz in = {data, size};
    run(&f, &in);

    /* Chains may outlive their queue (freed after destroy). */
    unsigned split = f.nheld / 2;
    for (unsigned i = split; i < f.nheld; i++)
        vmm_virtq_chain_free(f.held[i]);
    vmm_virtq_destroy(f.q);
    for (unsigned i = 0; i < split; i++)
        vmm_virtq_chain_free(f.held[i]);
    vmm_memory_destroy(f.mem);
    free(f.host);
    return 0;
}
