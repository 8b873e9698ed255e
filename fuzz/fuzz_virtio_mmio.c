/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-mmio with the library's devices behind it: virtio-blk over a real
 * io_uring on a scratch image, the console over pipes, and the rng (with and
 * without a rate limit). The input picks the device and whether the
 * transport has an event loop, then plays a hostile guest: raw register
 * reads and writes of any width anywhere in the window (configuration space
 * included), a quick driver set-up with features and queue sizes of its
 * choosing, descriptors, available entries, guest memory writes (request
 * headers, indirect tables), notifications, console input, resets, and
 * turns of the event loop. Guest memory is 64 KiB in two adjacent regions.
 *
 * Checked: no memory error, UB or leak (the sanitizers), the magic value
 * reads right, and the transport goes away cleanly with requests in flight:
 * destroy resets the device, which must not touch guest memory afterwards
 * (freed right after it: ASan sees a late access from the host side) and
 * must leave no fd of its own on the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_rng.h>

#include "fuzz_common.h"
#include "virtio/mmio_regs.h"

#define MEM_BASE  0x10000ull
#define MEM_HALF  0x8000ull
#define MEM_SIZE  (2 * MEM_HALF)
#define Q_AREA    0x4000ull /* per queue: desc, then avail at +0x1000, used at +0x2000 */
#define IMG_BYTES (1u << 20)

enum op {
    OP_MEMWRITE,
    OP_DESC,
    OP_AVAIL,
    OP_REG_WRITE,
    OP_REG_READ,
    OP_SETUP,
    OP_KICK,
    OP_LOOP,
    OP_RESET,
    OP_INPUT,
    OP_BLK_REQ,
    OP_COUNT
};

struct drv_queue {
    unsigned size;
    uint16_t avail_idx;
};

struct fuzz_mmio {
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_event_loop *loop; /* NULL: notifications on the caller */
    struct vmm_virtio_mmio *m;
    struct drv_queue dq[2];
    unsigned nq;
    uint64_t irqs;
};

/* Made once: the scratch image, the console's pipes, the event loop. */
static char img_path[PATH_MAX];
static int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
static struct vmm_event_loop *shared_loop;

static void init_once(void)
{
    fz_quiet_logs();
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(img_path, sizeof(img_path), "%s/libvmm-fuzz-blk-XXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(img_path);
    FZ_CHECK(fd >= 0 && ftruncate(fd, IMG_BYTES) == 0);
    close(fd);
    /* Removed at exit; the device opens it by path each run. */
    FZ_CHECK(pipe2(in_pipe, O_CLOEXEC | O_NONBLOCK) == 0);
    FZ_CHECK(pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) == 0);
    FZ_CHECK(vmm_event_loop_create(&shared_loop) == 0);
}

static void remove_image(void)
{
    if (img_path[0])
        unlink(img_path);
}

static void count_irq(void *opaque)
{
    ((struct fuzz_mmio *)opaque)->irqs++;
}

static void wr(struct fuzz_mmio *f, uint64_t off, uint64_t v, uint32_t len)
{
    vmm_virtio_mmio_bus_ops()->write(f->m, off, (const uint8_t *)&v, len);
}

static uint32_t rd(struct fuzz_mmio *f, uint64_t off)
{
    uint32_t v = 0;
    vmm_virtio_mmio_bus_ops()->read(f->m, off, (uint8_t *)&v, 4);
    return v;
}

static void put(struct fuzz_mmio *f, vmm_gpa_t gpa, const void *src, size_t len)
{
    if (gpa >= MEM_BASE && gpa - MEM_BASE <= MEM_SIZE && len <= MEM_SIZE - (gpa - MEM_BASE))
        memcpy(f->host + (gpa - MEM_BASE), src, len);
}

static vmm_gpa_t q_desc(unsigned q)
{
    return MEM_BASE + q * Q_AREA;
}

/* A driver's set-up of queue q, as Linux does it, with the input's choices
 * of features and size; then DRIVER_OK. The device may refuse any step. */
static void setup(struct fuzz_mmio *f, struct fz *in)
{
    uint64_t want = fz_u64(in);
    uint8_t qsel = fz_u8(in) % 2, size_log = fz_u8(in);
    wr(f, VMM_VIRTIO_MMIO_STATUS, 0, 4);
    wr(f, VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE, 4);
    wr(f, VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER, 4);
    uint64_t offered = 0;
    for (unsigned sel = 0; sel < 2; sel++) {
        wr(f, VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel, 4);
        offered |= (uint64_t)rd(f, VMM_VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
    }
    uint64_t feat = (offered & want) | VMM_VIRTIO_F_VERSION_1;
    for (unsigned sel = 0; sel < 2; sel++) {
        wr(f, VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel, 4);
        wr(f, VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> (32 * sel)), 4);
    }
    uint32_t st =
        VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK;
    wr(f, VMM_VIRTIO_MMIO_STATUS, st, 4);
    for (unsigned q = 0; q < f->nq; q++) {
        if (f->nq > 1 && q != qsel && size_log & 0x80)
            continue;                         /* leave the other queue off */
        unsigned size = 1u << (size_log % 9); /* 1 .. 256 */
        f->dq[q] = (struct drv_queue){.size = size};
        /* Fresh rings, as a driver allocates them. */
        memset(f->host + (q_desc(q) - MEM_BASE) + 0x1000, 0, 0x2000);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_SEL, q, 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_NUM, size, 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q_desc(q), 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, 0, 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(q_desc(q) + 0x1000), 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0, 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(q_desc(q) + 0x2000), 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0, 4);
        wr(f, VMM_VIRTIO_MMIO_QUEUE_READY, 1, 4);
    }
    wr(f, VMM_VIRTIO_MMIO_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK, 4);
}

static void desc(struct fuzz_mmio *f, struct fz *in)
{
    uint16_t slot = fz_u16(in);
    uint8_t mode = fz_u8(in);
    unsigned q = (mode >> 3) % 2;
    unsigned size = f->dq[q].size ? f->dq[q].size : 1;
    vmm_gpa_t at =
        mode & 1 ? MEM_BASE + (slot % (MEM_SIZE / 16)) * 16ull : q_desc(q) + 16ull * (slot % size);
    uint64_t addr = mode & 2 ? fz_u64(in) : MEM_BASE + fz_u16(in);
    uint32_t len = mode & 4 ? fz_u32(in) : fz_u16(in);
    uint16_t flags = fz_u8(in), next = fz_u16(in);
    uint8_t d[16];
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
    put(f, at, d, sizeof(d));
}

static void avail(struct fuzz_mmio *f, unsigned q, uint16_t head)
{
    struct drv_queue *d = &f->dq[q];
    unsigned size = d->size ? d->size : 1;
    vmm_gpa_t ring = q_desc(q) + 0x1000;
    put(f, ring + 4 + 2ull * (d->avail_idx & (size - 1)), &head, 2);
    d->avail_idx++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    put(f, ring + 2, &d->avail_idx, 2);
}

/* A well-formed virtio-blk request of the input's type and sector, in three
 * descriptors from slot first of queue 0 (header, data, status; no data for
 * a length of 0), made available: the shape the fuzzer would take long to
 * find by itself. */
static void blk_req(struct fuzz_mmio *f, struct fz *in)
{
    uint16_t first = fz_u8(in);
    uint32_t type = fz_u8(in) % 16;
    uint64_t sector = fz_u16(in);
    uint32_t dlen = (uint32_t)(fz_u8(in) % 9) * 512;
    if (type == VMM_VIRTIO_BLK_T_GET_ID && dlen)
        dlen = VMM_VIRTIO_BLK_ID_BYTES;
    unsigned size = f->dq[0].size ? f->dq[0].size : 1;
    vmm_gpa_t hdr = MEM_BASE + 0x8000 + 0x100ull * (first % 32), data = MEM_BASE + 0xa000;
    vmm_gpa_t status = hdr + 0x20;
    uint8_t h[16] = {0};
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    put(f, hdr, h, sizeof(h));
    bool dev_writes = type == VMM_VIRTIO_BLK_T_IN || type == VMM_VIRTIO_BLK_T_GET_ID;
    struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
    } d[3] = {
        {hdr, 16, 1, 0},
        {data, dlen, (uint16_t)(1 | (dev_writes ? 2 : 0)), 0},
        {status, 1, 2, 0},
    };
    if (!dlen)
        d[1] = d[2];
    unsigned n = dlen ? 3 : 2;
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = (first + i) % size;
        d[i].next = (uint16_t)((first + i + 1) % size);
        put(f, q_desc(0) + 16ull * slot, &d[i], 16);
    }
    avail(f, 0, (uint16_t)(first % size));
}

static void drain_output(void)
{
    uint8_t buf[4096];
    while (read(out_pipe[0], buf, sizeof(buf)) > 0)
        ;
    while (read(in_pipe[0], buf, sizeof(buf)) > 0)
        ;
}

static int make_device(struct fuzz_mmio *f, uint8_t cfg, struct vmm_virtio_device *dev)
{
    switch ((cfg & 0x0f) % 3) {
    case 0: {
        struct vmm_virtio_blk_config bc =
            VMM_INIT(struct vmm_virtio_blk_config, .path = img_path, .readonly = cfg & 0x10,
                     .no_discard = cfg & 0x20, .queue_size = cfg & 0x40 ? 16 : 256);
        f->nq = 1;
        return vmm_virtio_blk_create(&bc, dev);
    }
    case 1: {
        struct vmm_virtio_console_config cc = VMM_INIT(
            struct vmm_virtio_console_config, .in_fd = cfg & 0x10 ? -1 : in_pipe[0],
            .out_fd = cfg & 0x20 ? -1 : out_pipe[1], .cols = cfg & 0x40 ? 80 : 0, .rows = 25);
        f->nq = 2;
        return vmm_virtio_console_create(&cc, dev);
    }
    default: {
        struct vmm_virtio_rng_config rc =
            VMM_INIT(struct vmm_virtio_rng_config, .rate_limit = cfg & 0x10 ? 4096 : 0);
        f->nq = 1;
        return vmm_virtio_rng_create(&rc, dev);
    }
    }
}

static void run(struct fuzz_mmio *f, struct fz *in)
{
    static const uint32_t widths[4] = {1, 2, 4, 8};
    for (unsigned steps = 0; fz_more(in) && steps < 2048; steps++) {
        uint8_t op = fz_u8(in) % OP_COUNT;
        switch (op) {
        case OP_MEMWRITE: {
            uint16_t off = fz_u16(in);
            size_t len;
            const uint8_t *src = fz_take(in, fz_u8(in), &len);
            put(f, MEM_BASE + off, src, len);
            break;
        }
        case OP_DESC:
            desc(f, in);
            break;
        case OP_AVAIL: {
            uint8_t q = fz_u8(in);
            avail(f, q % f->nq, fz_u16(in));
            break;
        }
        case OP_REG_WRITE: {
            uint16_t off = fz_u16(in) % 0x200;
            uint32_t len = widths[fz_u8(in) % 4];
            wr(f, off, fz_u64(in), len);
            break;
        }
        case OP_REG_READ: {
            uint16_t off = fz_u16(in) % 0x200;
            uint64_t v = 0;
            vmm_virtio_mmio_bus_ops()->read(f->m, off, (uint8_t *)&v, widths[fz_u8(in) % 4]);
            break;
        }
        case OP_SETUP:
            setup(f, in);
            break;
        case OP_KICK:
            wr(f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, fz_u8(in) % 4, 4);
            break;
        case OP_LOOP:
            if (f->loop)
                (void)vmm_event_loop_run_once(f->loop, 0);
            break;
        case OP_RESET:
            wr(f, VMM_VIRTIO_MMIO_STATUS, 0, 4);
            memset(f->dq, 0, sizeof(f->dq));
            break;
        case OP_INPUT: {
            size_t len;
            const uint8_t *src = fz_take(in, fz_u8(in), &len);
            ssize_t w = write(in_pipe[1], src, len);
            (void)w; /* full: the console has not read it yet */
            break;
        }
        case OP_BLK_REQ:
            blk_req(f, in);
            wr(f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0, 4);
            break;
        }
    }
    /* Let what is in flight finish or stay in flight for destroy. */
    if (f->loop)
        for (int i = 0; i < 4; i++)
            (void)vmm_event_loop_run_once(f->loop, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!shared_loop) {
        init_once();
        atexit(remove_image);
    }
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    struct fuzz_mmio f = {0};
    f.loop = cfg & 0x80 ? NULL : shared_loop;
    f.host = calloc(1, MEM_SIZE);
    FZ_CHECK(f.host);
    FZ_CHECK(vmm_memory_create(&f.mem) == 0);
    FZ_CHECK(vmm_memory_add_external(f.mem, MEM_BASE, MEM_HALF, f.host) >= 0);
    FZ_CHECK(vmm_memory_add_external(f.mem, MEM_BASE + MEM_HALF, MEM_HALF, f.host + MEM_HALF) >= 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    FZ_CHECK(make_device(&f, cfg, &dev) == 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000, .gsi = 5, .mem = f.mem,
                 .loop = f.loop, .interrupt = count_irq, .irq_opaque = &f);
    FZ_CHECK(vmm_virtio_mmio_create(&mc, &dev, &f.m) == 0);
    FZ_CHECK(rd(&f, VMM_VIRTIO_MMIO_MAGIC_VALUE) == VMM_VIRTIO_MMIO_MAGIC);

    run(&f, &in);

    vmm_virtio_mmio_destroy(f.m);
    FZ_CHECK(vmm_event_loop_count(shared_loop) == 0);
    vmm_memory_destroy(f.mem);
    free(f.host);
    drain_output();
    return 0;
}
