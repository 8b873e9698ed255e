/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio-mmio driver for the device targets (fuzz_net, fuzz_vsock,
 * fuzz_balloon): guest memory of FM_MEM_SIZE bytes at FM_MEM_BASE in two
 * adjacent regions (mmap'd: a balloon may hand pages back with
 * MADV_DONTNEED), queue q's rings at FM_MEM_BASE + q * FM_Q_AREA
 * (descriptors, then the available ring at +0x1000 and the used ring at
 * +0x2000), free memory for buffers after the last queue's.
 *
 * fm_step runs one operation of the shared language: raw register reads and
 * writes of any width anywhere in the window, a driver's set-up with
 * features and queue sizes of the input's choice, single descriptors
 * anywhere, available entries, memory writes, whole chains of up to
 * FM_MAX_SEGS buffers (readable or writable, filled from the input) made
 * available and notified, resets and turns of the event loop. Operations
 * from FM_OP_COUNT up are the target's own.
 */
#ifndef VMM_FUZZ_MMIO_H
#define VMM_FUZZ_MMIO_H

#include <sys/mman.h>
#include <vmm/event.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>

#include "fuzz_common.h"
#include "virtio/mmio_regs.h"

#define FM_MEM_BASE  0x10000ull
#define FM_MEM_HALF  0x20000ull
#define FM_MEM_SIZE  (2 * FM_MEM_HALF)
#define FM_Q_AREA    0x3000ull
#define FM_MAX_Q     5
#define FM_DATA      (FM_MEM_BASE + FM_MAX_Q * FM_Q_AREA) /* buffers from here */
#define FM_DATA_SIZE (FM_MEM_BASE + FM_MEM_SIZE - FM_DATA)
#define FM_MAX_SEGS  8
#define FM_F_NEXT    1 /* descriptor flags (virtio 1.2 2.7.5) */
#define FM_F_WRITE   2

enum fm_op {
    FM_MEMWRITE,
    FM_DESC,
    FM_AVAIL,
    FM_REG_WRITE,
    FM_REG_READ,
    FM_SETUP,
    FM_KICK,
    FM_LOOP,
    FM_RESET,
    FM_CHAIN,
    FM_OP_COUNT
};

struct fm_queue {
    unsigned size;
    uint16_t avail_idx;
};

struct fm {
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_event_loop *loop; /* NULL: notifications on the caller */
    struct vmm_virtio_mmio *m;
    struct fm_queue dq[FM_MAX_Q];
    unsigned nq; /* queues the device has (at most FM_MAX_Q) */
    uint64_t irqs;
    bool used; /* guest memory was written (fm_open maps it zeroed) */
};

static void fm_count_irq(void *opaque)
{
    ((struct fm *)opaque)->irqs++;
}

static void fm_wr(struct fm *f, uint64_t off, uint64_t v, uint32_t len)
{
    vmm_virtio_mmio_bus_ops()->write(f->m, off, (const uint8_t *)&v, len);
}

static uint32_t fm_rd(struct fm *f, uint64_t off)
{
    uint32_t v = 0;
    vmm_virtio_mmio_bus_ops()->read(f->m, off, (uint8_t *)&v, 4);
    return v;
}

static void fm_put(struct fm *f, vmm_gpa_t gpa, const void *src, size_t len)
{
    if (gpa >= FM_MEM_BASE && gpa - FM_MEM_BASE <= FM_MEM_SIZE &&
        len <= FM_MEM_SIZE - (gpa - FM_MEM_BASE))
        memcpy(f->host + (gpa - FM_MEM_BASE), src, len);
}

static vmm_gpa_t fm_q_desc(unsigned q)
{
    return FM_MEM_BASE + q * FM_Q_AREA;
}

/* Turn the device's event loop until nothing is ready (at most max turns). */
static void fm_pump(struct fm *f, unsigned max)
{
    for (unsigned i = 0; f->loop && i < max && vmm_event_loop_run_once(f->loop, 0) > 0; i++)
        ;
}

/* The device's transport over fresh guest memory; loop may be NULL. */
static void fm_open(struct fm *f, struct vmm_virtio_device *dev, unsigned nq,
                    struct vmm_event_loop *loop)
{
    *f = (struct fm){.loop = loop, .nq = nq < FM_MAX_Q ? nq : FM_MAX_Q};
    f->host = mmap(NULL, FM_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FZ_CHECK(f->host != MAP_FAILED);
    FZ_CHECK(vmm_memory_create(&f->mem) == 0);
    FZ_CHECK(vmm_memory_add_external(f->mem, FM_MEM_BASE, FM_MEM_HALF, f->host) >= 0);
    FZ_CHECK(vmm_memory_add_external(f->mem, FM_MEM_BASE + FM_MEM_HALF, FM_MEM_HALF,
                                     f->host + FM_MEM_HALF) >= 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000, .gsi = 5, .mem = f->mem,
                 .loop = loop, .interrupt = fm_count_irq, .irq_opaque = f);
    FZ_CHECK(vmm_virtio_mmio_create(&mc, dev, &f->m) == 0);
    FZ_CHECK(fm_rd(f, VMM_VIRTIO_MMIO_MAGIC_VALUE) == VMM_VIRTIO_MMIO_MAGIC);
}

/* Destroy resets the device, which must not touch guest memory afterwards
 * (unmapped right after: a late access faults) and must leave no fd of its
 * own on the event loop. */
static void fm_close(struct fm *f)
{
    fm_pump(f, 4);
    vmm_virtio_mmio_destroy(f->m);
    if (f->loop)
        FZ_CHECK(vmm_event_loop_count(f->loop) == 0);
    vmm_memory_destroy(f->mem);
    munmap(f->host, FM_MEM_SIZE);
}

/*
 * A device kept across inputs (fm_open once, then fm_begin and fm_end around
 * each input, fm_close when it goes): so that every input starts from the
 * same state, fm_end resets the device through its transport (status 0) and
 * turns its loop until it is quiet, and fm_begin zeroes guest memory and
 * forgets the driver's rings. Destroy (fm_close) keeps its checks; a target
 * calls it from time to time.
 */
static inline void fm_begin(struct fm *f)
{
    if (f->used)
        memset(f->host, 0, FM_MEM_SIZE);
    f->used = true;
    memset(f->dq, 0, sizeof(f->dq));
    f->irqs = 0;
}

static inline void fm_end(struct fm *f)
{
    fm_pump(f, 4); /* what is in flight finishes, or is still in flight at the reset */
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, 0, 4);
    FZ_CHECK(fm_rd(f, VMM_VIRTIO_MMIO_STATUS) == 0);
    fm_pump(f, 64);
}

/* A driver's set-up, as Linux does it, with the input's features, queue
 * size and which queues to leave off; then DRIVER_OK. The device may refuse
 * any step. */
static void fm_setup(struct fm *f, struct fz *in)
{
    uint64_t want = fz_u64(in);
    uint8_t skip = fz_u8(in), size_log = fz_u8(in);
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, 0, 4);
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE, 4);
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER, 4);
    uint64_t offered = 0;
    for (unsigned sel = 0; sel < 2; sel++) {
        fm_wr(f, VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel, 4);
        offered |= (uint64_t)fm_rd(f, VMM_VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
    }
    uint64_t feat = (offered & want) | VMM_VIRTIO_F_VERSION_1;
    for (unsigned sel = 0; sel < 2; sel++) {
        fm_wr(f, VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> (32 * sel)), 4);
    }
    uint32_t st =
        VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK;
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, st, 4);
    unsigned size = 1u << (size_log % 9); /* 1 .. 256 */
    for (unsigned q = 0; q < f->nq; q++) {
        f->dq[q] = (struct fm_queue){0};
        if (skip & (1u << q))
            continue;
        f->dq[q].size = size;
        memset(f->host + (fm_q_desc(q) - FM_MEM_BASE) + 0x1000, 0, 0x2000);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_SEL, q, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_NUM, size, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)fm_q_desc(q), 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, 0, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(fm_q_desc(q) + 0x1000), 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(fm_q_desc(q) + 0x2000), 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0, 4);
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_READY, 1, 4);
    }
    fm_wr(f, VMM_VIRTIO_MMIO_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK, 4);
}

static void fm_put_desc(struct fm *f, vmm_gpa_t at, uint64_t addr, uint32_t len, uint16_t flags,
                        uint16_t next)
{
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    fm_put(f, at, d, sizeof(d));
}

/* One descriptor: in queue q's table, or anywhere in memory (an indirect
 * table), pointing at memory or at any address. */
static void fm_desc(struct fm *f, struct fz *in)
{
    uint16_t slot = fz_u16(in);
    uint8_t mode = fz_u8(in);
    unsigned q = (mode >> 3) % f->nq;
    unsigned size = f->dq[q].size ? f->dq[q].size : 1;
    vmm_gpa_t at = mode & 1 ? FM_MEM_BASE + (slot % (FM_MEM_SIZE / 16)) * 16ull
                            : fm_q_desc(q) + 16ull * (slot % size);
    uint64_t addr = mode & 2 ? fz_u64(in) : FM_MEM_BASE + fz_u32(in) % FM_MEM_SIZE;
    uint32_t len = mode & 4 ? fz_u32(in) : fz_u16(in);
    uint16_t flags = fz_u8(in), next = fz_u16(in);
    fm_put_desc(f, at, addr, len, flags, next);
}

static void fm_avail(struct fm *f, unsigned q, uint16_t head)
{
    struct fm_queue *d = &f->dq[q];
    unsigned size = d->size ? d->size : 1;
    vmm_gpa_t ring = fm_q_desc(q) + 0x1000;
    fm_put(f, ring + 4 + 2ull * (d->avail_idx & (size - 1)), &head, 2);
    d->avail_idx++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    fm_put(f, ring + 2, &d->avail_idx, 2);
}

/* A chain the input shapes: queue, first slot, then per buffer its length,
 * direction and leading bytes; laid out one after another in the buffer
 * area (wrapping), linked through the queue's table, made available and
 * notified. The shape a device parses, quicker than byte by byte. */
static void fm_chain(struct fm *f, struct fz *in)
{
    unsigned q = fz_u8(in) % f->nq;
    unsigned size = f->dq[q].size ? f->dq[q].size : 1;
    uint16_t first = fz_u8(in);
    unsigned n = 1 + fz_u8(in) % FM_MAX_SEGS;
    uint64_t off = fz_u16(in);
    for (unsigned i = 0; i < n; i++) {
        uint32_t len = fz_u16(in);
        uint8_t how = fz_u8(in);
        size_t take;
        const uint8_t *src = fz_take(in, fz_u8(in), &take);
        off %= FM_DATA_SIZE;
        vmm_gpa_t addr = FM_DATA + off;
        fm_put(f, addr, src, take < len ? take : len);
        uint16_t flags = (uint16_t)((how & 1 ? FM_F_WRITE : 0) | (i + 1 < n ? FM_F_NEXT : 0));
        fm_put_desc(f, fm_q_desc(q) + 16ull * ((first + i) % size), addr, len, flags,
                    (uint16_t)((first + i + 1) % size));
        off += len;
    }
    fm_avail(f, q, (uint16_t)(first % size));
    fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, q, 4);
}

/* Run one shared operation (op < FM_OP_COUNT). */
static void fm_step(struct fm *f, struct fz *in, unsigned op)
{
    static const uint32_t widths[4] = {1, 2, 4, 8};
    switch (op) {
    case FM_MEMWRITE: {
        uint32_t off = fz_u32(in) % FM_MEM_SIZE;
        size_t len;
        const uint8_t *src = fz_take(in, fz_u8(in), &len);
        fm_put(f, FM_MEM_BASE + off, src, len);
        break;
    }
    case FM_DESC:
        fm_desc(f, in);
        break;
    case FM_AVAIL: {
        uint8_t q = fz_u8(in);
        fm_avail(f, q % f->nq, fz_u16(in));
        break;
    }
    case FM_REG_WRITE: {
        uint16_t off = fz_u16(in) % 0x200;
        uint32_t len = widths[fz_u8(in) % 4];
        fm_wr(f, off, fz_u64(in), len);
        break;
    }
    case FM_REG_READ: {
        uint16_t off = fz_u16(in) % 0x200;
        uint64_t v = 0;
        vmm_virtio_mmio_bus_ops()->read(f->m, off, (uint8_t *)&v, widths[fz_u8(in) % 4]);
        break;
    }
    case FM_SETUP:
        fm_setup(f, in);
        break;
    case FM_KICK:
        fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, fz_u8(in) % (f->nq + 1), 4);
        break;
    case FM_LOOP:
        if (f->loop)
            (void)vmm_event_loop_run_once(f->loop, 0);
        break;
    case FM_RESET:
        fm_wr(f, VMM_VIRTIO_MMIO_STATUS, 0, 4);
        memset(f->dq, 0, sizeof(f->dq));
        break;
    case FM_CHAIN:
        fm_chain(f, in);
        break;
    }
}

#endif /* VMM_FUZZ_MMIO_H */
