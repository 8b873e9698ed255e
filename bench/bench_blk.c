/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_blk: 4 KiB random reads from a file at queue depth 1 and 32, through
 * raw liburing (the floor) and through libvmm's virtio-blk device driven from
 * the host side, interleaved in one process on the same file.
 *
 * The libvmm path is the device's whole fast path minus the guest: this
 * program plays the driver. It lays a split virtqueue out in guest memory,
 * fills the available ring with request chains (16-byte header, 4 KiB
 * buffer, status byte), kicks the queue with a QueueNotify write (an eventfd
 * write, as KVM's ioeventfd does), runs the event loop the device is on
 * (notify -> pop -> io_uring -> completion eventfd -> used ring -> interrupt
 * callback) and reaps used entries, refilling as they come back.
 *
 * Figures: IOPS of each (median of the rounds), the ratio, and at depth 1
 * the CPU time per request (CLOCK_PROCESS_CPUTIME_ID, every thread) and,
 * where perf_event_open has a hardware counter, instructions per request.
 * Nothing is asserted on time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"
#include "virtio/mmio_regs.h"

#define BLOCK          4096u
#define DEFAULT_SIZE   (256ull << 20)
#define DEFAULT_OPS32  200000ul
#define DEFAULT_OPS1   50000ul
#define DEFAULT_ROUNDS 5
#define MAX_DEPTH      64u

/* The libvmm path's guest memory layout. */
#define G_MEM    (8ull << 20)
#define G_QSIZE  256u
#define G_DESC   0x0ull
#define G_AVAIL  0x1000ull
#define G_USED   0x2000ull
#define G_HDR    0x10000ull  /* 16 bytes per slot */
#define G_STATUS 0x20000ull  /* 1 byte per slot */
#define G_DATA   0x100000ull /* BLOCK per slot */

/* ---- shared pieces ---- */

/* The same sequence of block numbers for every run (xorshift64*). */
struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r, uint64_t nblocks)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (r->s * 0x2545f4914f6cdd1dull) % nblocks;
}

/* Every block of the file starts with its own number, so every read can be
 * checked for landing where it was aimed. */
static int make_file(const char *dir, uint64_t size, char *path, size_t n)
{
    if ((size_t)snprintf(path, n, "%s/bench-blk-XXXXXX", dir) >= n)
        return -ENAMETOOLONG;
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    const size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    for (uint64_t off = 0; off < size; off += chunk) {
        for (size_t b = 0; b < chunk; b += BLOCK) {
            uint64_t blk = (off + b) / BLOCK;
            memset(buf + b, (int)(blk & 0xff), BLOCK);
            memcpy(buf + b, &blk, sizeof(blk));
        }
        if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
            int err = errno ? -errno : -EIO;
            free(buf);
            close(fd);
            unlink(path);
            return err;
        }
    }
    free(buf);
    return fd;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Instructions retired by this process (threads it starts included), where
 * the host has a hardware counter; kernel time included when allowed. */
static struct {
    int fd;
    const char *scope;
    char why[96];
} insns = {.fd = -1};

static void insns_open(void)
{
    struct perf_event_attr a = {
        .type = PERF_TYPE_HARDWARE,
        .size = sizeof(a),
        .config = PERF_COUNT_HW_INSTRUCTIONS,
        .disabled = 1,
        .inherit = 1,
        .exclude_hv = 1,
    };
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    insns.scope = "user+kernel";
    if (fd < 0 && (errno == EACCES || errno == EPERM)) {
        a.exclude_kernel = 1;
        fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
        insns.scope = "user only";
    }
    if (fd < 0)
        snprintf(insns.why, sizeof(insns.why), "perf_event_open: %s", strerror(errno));
    insns.fd = fd;
}

static void insns_start(void)
{
    if (insns.fd >= 0) {
        ioctl(insns.fd, PERF_EVENT_IOC_RESET, 0);
        ioctl(insns.fd, PERF_EVENT_IOC_ENABLE, 0);
    }
}

static uint64_t insns_stop(void)
{
    uint64_t v = 0;
    if (insns.fd < 0)
        return 0;
    ioctl(insns.fd, PERF_EVENT_IOC_DISABLE, 0);
    if (read(insns.fd, &v, sizeof(v)) != sizeof(v))
        return 0;
    return v;
}

/* What one run measured. */
struct result {
    double iops;
    double cpu_ns_per_op;
    double insns_per_op;
    uint64_t bad; /* reads that came back wrong */
};

static void finish(struct result *res, uint64_t ops, uint64_t t0, uint64_t c0, uint64_t bad)
{
    uint64_t t1 = bench_now_ns(), c1 = cpu_ns();
    uint64_t in = insns_stop();
    res->iops = (double)ops * 1e9 / (double)(t1 - t0);
    res->cpu_ns_per_op = (double)(c1 - c0) / (double)ops;
    res->insns_per_op = (double)in / (double)ops;
    res->bad = bad;
}

static bool block_ok(const uint8_t *buf, uint64_t blk)
{
    uint64_t got;
    memcpy(&got, buf, sizeof(got));
    return got == blk && buf[BLOCK - 1] == (uint8_t)blk;
}

/* ---- the floor: raw liburing ---- */

static void raw_prep(struct io_uring_sqe *sqe, int fd, bool fixed, const struct iovec *iov,
                     uint64_t offset)
{
    io_uring_prep_read(sqe, fixed ? 0 : fd, iov->iov_base, (unsigned)iov->iov_len, offset);
    if (fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
}

static int raw_run(int fd, uint64_t nblocks, unsigned depth, uint64_t ops, struct result *res)
{
    struct io_uring ring;
    int r = io_uring_queue_init(depth, &ring, 0);
    if (r < 0)
        return r;
    uint8_t *bufs = aligned_alloc(4096, (size_t)depth * BLOCK);
    uint64_t blk_of[MAX_DEPTH];
    struct iovec iov[MAX_DEPTH];
    if (!bufs) {
        io_uring_queue_exit(&ring);
        return -ENOMEM;
    }
    /* The best plain liburing does for one-buffer reads, as the device's
     * back end does: IORING_OP_READ on a registered file. */
    bool fixed = io_uring_register_files(&ring, &fd, 1) == 0;
    struct rng g = {0x9e3779b97f4a7c15ull};
    uint64_t issued = 0, done = 0, bad = 0;
    uint64_t t0 = bench_now_ns(), c0 = cpu_ns();
    insns_start();
    for (unsigned i = 0; i < depth && issued < ops; i++, issued++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        blk_of[i] = rng_next(&g, nblocks);
        iov[i] = (struct iovec){bufs + (size_t)i * BLOCK, BLOCK};
        raw_prep(sqe, fd, fixed, &iov[i], blk_of[i] * BLOCK);
        io_uring_sqe_set_data64(sqe, i);
    }
    while (done < ops) {
        r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR)
            break;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            unsigned i = (unsigned)cqe->user_data;
            if (cqe->res != BLOCK || !block_ok(iov[i].iov_base, blk_of[i]))
                bad++;
            seen++;
            done++;
            if (issued < ops) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                blk_of[i] = rng_next(&g, nblocks);
                raw_prep(sqe, fd, fixed, &iov[i], blk_of[i] * BLOCK);
                io_uring_sqe_set_data64(sqe, i);
                issued++;
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    finish(res, done, t0, c0, bad);
    free(bufs);
    io_uring_queue_exit(&ring);
    return r < 0 && r != -EINTR ? r : 0;
}

/* ---- libvmm: virtio-blk driven from the host side ---- */

struct drv {
    struct vmm_memory *mem;
    uint8_t *host; /* guest memory at gpa 0 */
    struct vmm_event_loop *loop;
    struct vmm_virtio_mmio *mmio;
    uint16_t avail_idx;
    uint16_t used_seen;
    uint64_t irqs;
};

static void drv_irq(void *opaque)
{
    ((struct drv *)opaque)->irqs++;
}

static void drv_w32(struct drv *d, uint64_t off, uint32_t v)
{
    vmm_virtio_mmio_bus_ops()->write(d->mmio, off, (const uint8_t *)&v, 4);
}

static uint32_t drv_r32(struct drv *d, uint64_t off)
{
    uint32_t v = 0;
    vmm_virtio_mmio_bus_ops()->read(d->mmio, off, (uint8_t *)&v, 4);
    return v;
}

static void drv_destroy(struct drv *d)
{
    vmm_virtio_mmio_destroy(d->mmio);
    vmm_event_loop_destroy(d->loop);
    vmm_memory_destroy(d->mem);
}

/* Guest memory, the device on a standalone transport with an event loop,
 * and the driver's set-up sequence up to DRIVER_OK. */
static int drv_create(struct drv *d, const char *path, bool direct)
{
    memset(d, 0, sizeof(*d));
    struct vmm_region_config rc = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = G_MEM};
    struct vmm_region_info ri = VMM_INIT(struct vmm_region_info);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_blk_config bc =
        VMM_INIT(struct vmm_virtio_blk_config, .path = path, .readonly = true, .direct = direct,
                 .queue_size = G_QSIZE);
    int r;
    if ((r = vmm_memory_create(&d->mem)) < 0 || (r = vmm_memory_add_region(d->mem, &rc)) < 0 ||
        (r = vmm_memory_region_info(d->mem, 0, &ri)) < 0 ||
        (r = vmm_event_loop_create(&d->loop)) < 0 || (r = vmm_virtio_blk_create(&bc, &dev)) < 0)
        goto fail;
    d->host = ri.host;
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .mem = d->mem, .loop = d->loop,
                 .interrupt = drv_irq, .irq_opaque = d);
    if ((r = vmm_virtio_mmio_create(&mc, &dev, &d->mmio)) < 0)
        goto fail;
    uint32_t st = VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER;
    drv_w32(d, VMM_VIRTIO_MMIO_STATUS, st);
    drv_w32(d, VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    drv_w32(d, VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(VMM_VIRTIO_F_VERSION_1 >> 32));
    st |= VMM_VIRTIO_STATUS_FEATURES_OK;
    drv_w32(d, VMM_VIRTIO_MMIO_STATUS, st);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_SEL, 0);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_NUM, G_QSIZE);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)G_DESC);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)G_AVAIL);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)G_USED);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    st |= VMM_VIRTIO_STATUS_DRIVER_OK;
    drv_w32(d, VMM_VIRTIO_MMIO_STATUS, st);
    if (drv_r32(d, VMM_VIRTIO_MMIO_STATUS) != st) {
        fprintf(stderr, "bench_blk: the device refused the driver's set-up\n");
        r = -EIO;
        goto fail;
    }
    return 0;
fail:
    drv_destroy(d);
    return r;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Write slot's chain (descriptors 3*slot ..) once; later requests reuse it
 * and only change the header's sector. */
static void drv_layout_slot(struct drv *d, unsigned slot)
{
    const uint64_t addr[3] = {G_HDR + 16ull * slot, G_DATA + (uint64_t)BLOCK * slot,
                              G_STATUS + slot};
    const uint32_t len[3] = {16, BLOCK, 1};
    const uint16_t flags[3] = {1 /* NEXT */, 1 | 2 /* NEXT|WRITE */, 2 /* WRITE */};
    for (unsigned k = 0; k < 3; k++) {
        uint8_t *p = d->host + G_DESC + 16ull * (3 * slot + k);
        put64(p, addr[k]);
        put32(p + 8, len[k]);
        put16(p + 12, flags[k]);
        put16(p + 14, (uint16_t)(3 * slot + k + 1));
    }
    put32(d->host + G_HDR + 16ull * slot, VMM_VIRTIO_BLK_T_IN);
    put32(d->host + G_HDR + 16ull * slot + 4, 0);
}

/* Make slot's request (a read of blk) available; published by drv_publish. */
static void drv_post(struct drv *d, unsigned slot, uint64_t blk)
{
    put64(d->host + G_HDR + 16ull * slot + 8, blk * (BLOCK / 512));
    d->host[G_STATUS + slot] = 0xff;
    put16(d->host + G_AVAIL + 4 + 2ull * (d->avail_idx % G_QSIZE), (uint16_t)(3 * slot));
    d->avail_idx++;
}

static void drv_publish_and_kick(struct drv *d)
{
    __atomic_store_n((uint16_t *)(d->host + G_AVAIL + 2), d->avail_idx, __ATOMIC_RELEASE);
    drv_w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static int vmm_run(struct drv *d, uint64_t nblocks, unsigned depth, uint64_t ops,
                   struct result *res)
{
    uint64_t blk_of[MAX_DEPTH];
    struct rng g = {0x9e3779b97f4a7c15ull};
    uint64_t issued = 0, done = 0, bad = 0;
    int r = 0;
    for (unsigned i = 0; i < depth; i++)
        drv_layout_slot(d, i);
    uint64_t t0 = bench_now_ns(), c0 = cpu_ns();
    insns_start();
    for (unsigned i = 0; i < depth && issued < ops; i++, issued++) {
        blk_of[i] = rng_next(&g, nblocks);
        drv_post(d, i, blk_of[i]);
    }
    drv_publish_and_kick(d);
    uint64_t stalled_since = 0; /* when the device last had nothing (0: it had) */
    while (done < ops) {
        /* The VM's loop (vmm_event_loop_run) waits without a timeout, which
         * spares epoll_wait a timer: look without one first (in this
         * single-threaded driver the kick is there already), and only when
         * nothing came wait with the watchdog's timeout. */
        r = vmm_event_loop_run_once(d->loop, 0);
        if (r == 0)
            r = vmm_event_loop_run_once(d->loop, 1000);
        if (r < 0)
            break;
        uint16_t used = __atomic_load_n((uint16_t *)(d->host + G_USED + 2), __ATOMIC_ACQUIRE);
        /* run_once also returns 0 when a signal (io_uring's async retry
         * raises one) cut the wait short: only a second without any used
         * entry is a stuck device. The clock is read only then. */
        if (used != d->used_seen) {
            stalled_since = 0;
        } else if (r == 0) {
            uint64_t now = bench_now_ns();
            if (!stalled_since)
                stalled_since = now;
            if (now - stalled_since < 1000000000ull)
                continue;
            fprintf(stderr, "bench_blk: the device made no progress in 1 s\n");
            r = -ETIMEDOUT;
            break;
        }
        bool posted = false;
        while (d->used_seen != used) {
            const uint8_t *e = d->host + G_USED + 4 + 8ull * (d->used_seen % G_QSIZE);
            uint32_t id, len;
            memcpy(&id, e, 4);
            memcpy(&len, e + 4, 4);
            d->used_seen++;
            unsigned slot = id / 3;
            if (slot >= depth) {
                bad++;
                continue;
            }
            if (len != BLOCK + 1 || d->host[G_STATUS + slot] != VMM_VIRTIO_BLK_S_OK ||
                !block_ok(d->host + G_DATA + (uint64_t)BLOCK * slot, blk_of[slot]))
                bad++;
            done++;
            if (issued < ops) {
                blk_of[slot] = rng_next(&g, nblocks);
                drv_post(d, slot, blk_of[slot]);
                issued++;
                posted = true;
            }
        }
        if (posted)
            drv_publish_and_kick(d);
        r = 0;
    }
    finish(res, done, t0, c0, bad);
    return r;
}

/* ---- main ---- */

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm: %s: %s\n", vmm_log_level_name(level), msg);
}

static void usage(const char *prog)
{
    printf("Usage: %s [--file PATH] [--size MIB] [--ops1 N] [--ops32 N] [--rounds N]\n"
           "4 KiB random reads at queue depth 1 and 32: raw liburing vs libvmm's virtio-blk\n"
           "driven from the host side, interleaved in one process.\n"
           "  --file PATH  read this file or block device (never written; default: a new\n"
           "               temporary file in $TMPDIR or /tmp, page-cache warm, removed at\n"
           "               the end)\n"
           "  --size MIB   size of the temporary file (default %llu)\n"
           "  --ops1 N     reads per run at depth 1 (default %lu)\n"
           "  --ops32 N    reads per run at depth 32 (default %lu)\n"
           "  --rounds N   runs of each (default %d)\n"
           "  --only raw|libvmm  run one side only (for profiling; no ratios)\n"
           "  --direct     O_DIRECT on both sides: every read goes to the device and\n"
           "               completes outside submit, through the completion eventfd\n"
           "               (slow on a virtual disk: give small --ops1/--ops32)\n",
           prog, DEFAULT_SIZE >> 20, DEFAULT_OPS1, DEFAULT_OPS32, DEFAULT_ROUNDS);
}

struct series {
    struct result raw[1000], lib[1000];
};

static double median_of(struct result *r, unsigned long n, size_t field)
{
    double v[1000];
    for (unsigned long i = 0; i < n; i++)
        memcpy(&v[i], (const char *)&r[i] + field, sizeof(double));
    return bench_percentile(v, n, 50);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    unsigned long size_mib = DEFAULT_SIZE >> 20, ops1 = DEFAULT_OPS1, ops32 = DEFAULT_OPS32;
    unsigned long rounds = DEFAULT_ROUNDS;
    int only = 0; /* 1: raw only, 2: libvmm only (for profiling) */
    bool direct = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long *num = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(a, "--file") && v) {
            file = v;
        } else if (!strcmp(a, "--size")) {
            num = &size_mib;
        } else if (!strcmp(a, "--ops1")) {
            num = &ops1;
        } else if (!strcmp(a, "--ops32")) {
            num = &ops32;
        } else if (!strcmp(a, "--rounds")) {
            num = &rounds;
        } else if (!strcmp(a, "--only") && v && (!strcmp(v, "raw") || !strcmp(v, "libvmm"))) {
            only = !strcmp(v, "raw") ? 1 : 2;
        } else if (!strcmp(a, "--direct")) {
            direct = true;
            continue;
        } else {
            fprintf(stderr, "bench_blk: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
        if (num && (!v || (*num = bench_parse_count(v)) == 0)) {
            fprintf(stderr, "bench_blk: %s needs a positive number\n", a);
            return 2;
        }
        i++;
    }
    if (rounds > 1000 || size_mib > (1ul << 20)) {
        fprintf(stderr, "bench_blk: at most 1000 rounds and 1 TiB\n");
        return 2;
    }
    vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_WARN);

    char tmp[PATH_MAX] = "";
    int fd;
    if (file) {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "bench_blk: cannot open %s: %s\n", file, strerror(errno));
            return 1;
        }
    } else {
        const char *dir = getenv("TMPDIR");
        fd = make_file(dir && *dir ? dir : "/tmp", (uint64_t)size_mib << 20, tmp, sizeof(tmp));
        if (fd < 0) {
            fprintf(stderr, "bench_blk: cannot make the test file: %s\n", strerror(-fd));
            return 1;
        }
        file = tmp;
    }
    struct stat st;
    uint64_t bytes = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        bytes = (uint64_t)st.st_size;
    else if (ioctl(fd, _IOR(0x12, 114, size_t), &bytes) < 0) /* BLKGETSIZE64 */
        bytes = 0;
    uint64_t nblocks = bytes / BLOCK;
    if (nblocks < MAX_DEPTH) {
        fprintf(stderr, "bench_blk: %s is too small\n", file);
        return 1;
    }
    /* Warm the page cache over the whole file for both paths alike. */
    {
        static uint8_t buf[1 << 20];
        for (uint64_t off = 0; off < bytes; off += sizeof(buf))
            if (pread(fd, buf, sizeof(buf), (off_t)off) <= 0)
                break;
    }
    insns_open();
    struct drv d;
    /* The floor reads through its own O_DIRECT descriptor. */
    int raw_fd = fd;
    if (direct && (raw_fd = open(file, O_RDONLY | O_CLOEXEC | O_DIRECT)) < 0) {
        fprintf(stderr, "bench_blk: cannot open %s with O_DIRECT: %s\n", file, strerror(errno));
        if (tmp[0])
            unlink(tmp);
        return 1;
    }
    int r = drv_create(&d, file, direct);
    if (r < 0) {
        fprintf(stderr, "bench_blk: libvmm set-up failed: %s\n", strerror(-r));
        return 1;
    }
    printf("blk: 4 KiB random reads over %llu MiB of %s (%s); "
           "%lu rounds each, interleaved raw/libvmm\n",
           (unsigned long long)(bytes >> 20), tmp[0] ? "a temporary file" : file,
           direct ? "O_DIRECT" : "page cache warm, buffered I/O", rounds);

    static struct series s1, s32;
    const unsigned depths[2] = {1, 32};
    int status = 0;
    uint64_t irqs0 = d.irqs;
    for (unsigned k = 0; k < 2 && !status; k++) {
        unsigned depth = depths[k];
        uint64_t ops = depth == 1 ? ops1 : ops32;
        struct series *s = depth == 1 ? &s1 : &s32;
        struct result warm;
        /* Warm both paths before anything is timed. */
        if ((r = raw_run(raw_fd, nblocks, depth, ops / 10 + 1, &warm)) < 0 ||
            (r = vmm_run(&d, nblocks, depth, ops / 10 + 1, &warm)) < 0) {
            fprintf(stderr, "bench_blk: warm-up failed: %s\n", strerror(-r));
            status = 1;
            break;
        }
        for (unsigned long i = 0; i < rounds; i++) {
            for (int pass = 0; pass < 2; pass++) {
                if ((pass == 0) == (i % 2 == 0))
                    r = only == 2 ? 0 : raw_run(raw_fd, nblocks, depth, ops, &s->raw[i]);
                else
                    r = only == 1 ? 0 : vmm_run(&d, nblocks, depth, ops, &s->lib[i]);
                if (r < 0)
                    break;
            }
            if (r < 0) {
                fprintf(stderr, "bench_blk: round %lu failed: %s\n", i + 1, strerror(-r));
                status = 1;
                break;
            }
            if (s->raw[i].bad || s->lib[i].bad) {
                fprintf(stderr, "bench_blk: wrong data: raw %llu, libvmm %llu reads\n",
                        (unsigned long long)s->raw[i].bad, (unsigned long long)s->lib[i].bad);
                status = 1;
            }
            printf("blk: depth %2u round %lu: raw %8.0f IOPS (%6.0f ns CPU/op), libvmm %8.0f "
                   "IOPS (%6.0f ns CPU/op)\n",
                   depth, i + 1, s->raw[i].iops, s->raw[i].cpu_ns_per_op, s->lib[i].iops,
                   s->lib[i].cpu_ns_per_op);
        }
    }
    if (!status && !only) {
        for (unsigned k = 0; k < 2; k++) {
            unsigned depth = depths[k];
            struct series *s = depth == 1 ? &s1 : &s32;
            double raw = median_of(s->raw, rounds, offsetof(struct result, iops));
            double lib = median_of(s->lib, rounds, offsetof(struct result, iops));
            printf("blk: depth %2u: raw %.0f IOPS, libvmm %.0f IOPS, ratio %.3f%s\n", depth, raw,
                   lib, lib / raw, depth == 32 ? " (target >= 0.90)" : "");
        }
        double rc32 = median_of(s32.raw, rounds, offsetof(struct result, cpu_ns_per_op));
        double lc32 = median_of(s32.lib, rounds, offsetof(struct result, cpu_ns_per_op));
        printf("blk: depth 32 CPU per request (all threads): raw %.0f ns, libvmm %.0f ns, "
               "CPU-bound IOPS ratio raw/libvmm %.3f\n",
               rc32, lc32, rc32 / lc32);
        double rc = median_of(s1.raw, rounds, offsetof(struct result, cpu_ns_per_op));
        double lc = median_of(s1.lib, rounds, offsetof(struct result, cpu_ns_per_op));
        printf("blk: depth  1 CPU per request (all threads): raw %.0f ns, libvmm %.0f ns, "
               "libvmm - raw %+.0f ns\n",
               rc, lc, lc - rc);
        if (insns.fd >= 0) {
            double ri = median_of(s1.raw, rounds, offsetof(struct result, insns_per_op));
            double li = median_of(s1.lib, rounds, offsetof(struct result, insns_per_op));
            printf("blk: depth  1 instructions per request (%s): raw %.0f, libvmm %.0f, "
                   "libvmm - raw %+.0f\n",
                   insns.scope, ri, li, li - ri);
        } else {
            printf("blk: instructions per request: not measured (%s)\n", insns.why);
        }
        printf("blk: libvmm interrupts raised: %llu\n", (unsigned long long)(d.irqs - irqs0));
    }
    drv_destroy(&d);
    if (insns.fd >= 0)
        close(insns.fd);
    if (raw_fd != fd)
        close(raw_fd);
    close(fd);
    if (tmp[0])
        unlink(tmp);
    return status;
}
