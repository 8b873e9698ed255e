/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_vsock: a byte stream through a Unix socket pair (the floor) and
 * through libvmm's virtio-vsock device driven from the host side, in one
 * process (no KVM).
 *
 *   floor:  write(a, 64 KiB) and read(b) in turns on a socketpair
 *   tx:     the program plays the guest's driver on a connection it opened
 *           to "<path>_5000": transmit chains of a header and PAYLOAD bytes
 *           fill the ring within the device's credit (learnt from the
 *           CREDIT_UPDATEs in the receive ring), a QueueNotify kicks it,
 *           the event loop runs the device (pop, header checks, sendmsg to
 *           the socket), the program reads the socket's other end
 *   rx:     the program writes the socket, the device reads it into
 *           posted receive buffers (4 KiB, as Linux's driver posts), the
 *           program reaps and reposts them
 *
 * Figures: MiB/s of each (median of the rounds), the ratio against the
 * floor, and the CPU time per KiB (CLOCK_PROCESS_CPUTIME_ID). Bytes are
 * checked for count at both ends. Nothing is asserted on time.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"
#include "virtio/mmio_regs.h"

#define QSIZE     256u
#define ROUNDS    5
#define CHUNK     (64u << 10)
#define HDR       44
#define PAYLOAD   (32u << 10) /* stream bytes per transmit packet */
#define RXLEN     (4096u + HDR)
#define CID       3
#define G_MEM     (32ull << 20)
#define G_RX_RING 0x0ull /* desc, avail at +0x1000, used at +0x2000 */
#define G_TX_RING 0x4000ull
#define G_EV_RING 0x8000ull
#define G_RX_BUF  0x100000ull
#define G_TX_BUF  0x400000ull /* QSIZE slots of HDR + PAYLOAD: 8.2 MiB */
#define TX_SLOT   (HDR + PAYLOAD)

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct result {
    double mibs, cpu_ns_kib;
    bool short_count;
};

static void finish(struct result *r, uint64_t bytes, uint64_t got, uint64_t t0, uint64_t c0)
{
    uint64_t t1 = bench_now_ns(), c1 = cpu_ns();
    r->mibs = (double)bytes / (1 << 20) * 1e9 / (double)(t1 - t0);
    r->cpu_ns_kib = (double)(c1 - c0) / ((double)bytes / 1024);
    r->short_count = got != bytes;
}

static uint64_t drain(int fd)
{
    static uint8_t buf[CHUNK];
    uint64_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return got;
        got += (uint64_t)n;
    }
}

static void floor_run(uint64_t bytes, struct result *res)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("bench_vsock: socketpair");
        exit(1);
    }
    static uint8_t buf[CHUNK];
    memset(buf, 0x5a, sizeof(buf));
    uint64_t sent = 0, got = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    while (got < bytes) {
        if (sent < bytes) {
            ssize_t n = send(sv[0], buf, CHUNK, MSG_DONTWAIT);
            if (n > 0)
                sent += (uint64_t)n;
        }
        got += drain(sv[1]);
    }
    finish(res, bytes, got, t0, c0);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the device, driven from the host side ---- */

struct drv {
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_event_loop *loop;
    struct vmm_virtio_mmio *mmio;
    uint16_t avail[3], used_seen[3];
    uint32_t fwd_cnt;  /* the device's, from its packets */
    uint32_t tx_cnt;   /* stream bytes sent on the connection */
    uint32_t rx_bytes; /* stream bytes received (our fwd_cnt) */
    int sock;          /* the host's end of the connection */
};

static void drv_irq(void *opaque)
{
    (void)opaque;
}

static void w32(struct drv *d, uint64_t off, uint32_t v)
{
    vmm_virtio_mmio_bus_ops()->write(d->mmio, off, (const uint8_t *)&v, 4);
}

static uint64_t ring_of(unsigned q)
{
    return q == 0 ? G_RX_RING : q == 1 ? G_TX_RING : G_EV_RING;
}

static void desc(struct drv *d, unsigned q, unsigned i, uint64_t addr, uint32_t len, uint16_t fl)
{
    uint8_t *p = d->host + ring_of(q) + 16ull * i;
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &fl, 2);
    memset(p + 14, 0, 2);
}

static void make_avail(struct drv *d, unsigned q, uint16_t head)
{
    uint8_t *avail = d->host + ring_of(q) + 0x1000;
    memcpy(avail + 4 + 2 * (d->avail[q] % QSIZE), &head, 2);
    d->avail[q]++;
    __atomic_store_n((uint16_t *)(avail + 2), d->avail[q], __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct drv *d, unsigned q)
{
    return __atomic_load_n((uint16_t *)(d->host + ring_of(q) + 0x2002), __ATOMIC_ACQUIRE);
}

static void used_elem(struct drv *d, unsigned q, uint16_t slot, uint32_t *id, uint32_t *len)
{
    memcpy(id, d->host + ring_of(q) + 0x2004 + 8 * (slot % QSIZE), 4);
    memcpy(len, d->host + ring_of(q) + 0x2008 + 8 * (slot % QSIZE), 4);
}

/* A packet header from the guest (CID 3, port 1024) to host port 5000. */
static void put_hdr(struct drv *d, uint8_t *b, uint16_t op, uint32_t len)
{
    uint64_t src = CID, dst = 2;
    uint32_t sp = 1024, dp = 5000, ba = 0x7fffffff, fc = d->rx_bytes;
    uint16_t type = 1;
    memset(b + 32, 0, 4);
    memcpy(b, &src, 8);
    memcpy(b + 8, &dst, 8);
    memcpy(b + 16, &sp, 4);
    memcpy(b + 20, &dp, 4);
    memcpy(b + 24, &len, 4);
    memcpy(b + 28, &type, 2);
    memcpy(b + 30, &op, 2);
    memcpy(b + 36, &ba, 4);
    memcpy(b + 40, &fc, 4);
}

/* Reap the receive ring: stream bytes counted, the device's fwd_cnt kept;
 * buffers go back. Returns the packets seen. */
static unsigned rx_reap(struct drv *d)
{
    unsigned n = 0;
    uint16_t u = used_idx(d, 0);
    while (d->used_seen[0] != u) {
        uint32_t id, len;
        used_elem(d, 0, d->used_seen[0]++, &id, &len);
        const uint8_t *b = d->host + G_RX_BUF + (uint64_t)id * RXLEN;
        uint16_t op;
        memcpy(&op, b + 30, 2);
        memcpy(&d->fwd_cnt, b + 40, 4);
        if (op == 5 && len > HDR)
            d->rx_bytes += len - HDR;
        make_avail(d, 0, (uint16_t)id);
        n++;
    }
    if (n)
        w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return n;
}

static int drv_create(struct drv *d, const char *path, int lfd)
{
    memset(d, 0, sizeof(*d));
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = G_MEM);
    struct vmm_region_info ri = VMM_INIT(struct vmm_region_info);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_vsock_config vc = VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = CID,
                                                 .path = path, .queue_size = QSIZE);
    int r;
    if ((r = vmm_memory_create(&d->mem)) < 0 || (r = vmm_memory_add_region(d->mem, &rc)) < 0 ||
        (r = vmm_memory_region_info(d->mem, 0, &ri)) < 0 ||
        (r = vmm_event_loop_create(&d->loop)) < 0 || (r = vmm_virtio_vsock_create(&vc, &dev)) < 0)
        return r;
    d->host = ri.host;
    struct vmm_virtio_mmio_config mc = VMM_INIT(struct vmm_virtio_mmio_config, .mem = d->mem,
                                                .loop = d->loop, .interrupt = drv_irq);
    if ((r = vmm_virtio_mmio_create(&mc, &dev, &d->mmio)) < 0)
        return r;
    uint32_t st = VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER;
    w32(d, VMM_VIRTIO_MMIO_STATUS, st);
    w32(d, VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(d, VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(VMM_VIRTIO_F_VERSION_1 >> 32));
    st |= VMM_VIRTIO_STATUS_FEATURES_OK;
    w32(d, VMM_VIRTIO_MMIO_STATUS, st);
    for (unsigned q = 0; q < 3; q++) {
        w32(d, VMM_VIRTIO_MMIO_QUEUE_SEL, q);
        w32(d, VMM_VIRTIO_MMIO_QUEUE_NUM, QSIZE);
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring_of(q));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(ring_of(q) + 0x1000));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(ring_of(q) + 0x2000));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    }
    w32(d, VMM_VIRTIO_MMIO_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK);
    for (unsigned i = 0; i < QSIZE; i++) {
        desc(d, 0, i, G_RX_BUF + (uint64_t)i * RXLEN, RXLEN, 2 /* WRITE */);
        make_avail(d, 0, (uint16_t)i);
        desc(d, 1, i, G_TX_BUF + (uint64_t)i * TX_SLOT, TX_SLOT, 0);
    }
    w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    /* The connection: REQUEST to host port 5000, accepted there. */
    put_hdr(d, d->host + G_TX_BUF, 1 /* REQUEST */, 0);
    desc(d, 1, 0, G_TX_BUF, HDR, 0);
    make_avail(d, 1, 0);
    w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    for (int i = 0; i < 100 && rx_reap(d) == 0; i++)
        (void)vmm_event_loop_run_once(d->loop, 10);
    d->used_seen[1] = used_idx(d, 1);
    d->sock = accept(lfd, NULL, NULL);
    return d->sock < 0 ? -errno : 0;
}

static void drv_destroy(struct drv *d)
{
    close(d->sock);
    vmm_virtio_mmio_destroy(d->mmio);
    vmm_event_loop_destroy(d->loop);
    vmm_memory_destroy(d->mem);
}

/* Guest to host: transmit packets within the device's credit. */
static void dev_tx(struct drv *d, uint64_t bytes, struct result *res)
{
    for (unsigned i = 0; i < QSIZE; i++)
        memset(d->host + G_TX_BUF + (uint64_t)i * TX_SLOT + HDR, 0x5a, PAYLOAD);
    uint64_t sent = 0, got = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    uint16_t in_flight = 0;
    while (got < bytes) {
        bool posted = false;
        while (sent < bytes && in_flight < QSIZE &&
               d->tx_cnt - d->fwd_cnt + PAYLOAD <= VMM_VIRTIO_VSOCK_BUF_ALLOC) {
            uint16_t slot = d->avail[1] % QSIZE;
            put_hdr(d, d->host + G_TX_BUF + (uint64_t)slot * TX_SLOT, 5 /* RW */, PAYLOAD);
            desc(d, 1, slot, G_TX_BUF + (uint64_t)slot * TX_SLOT, TX_SLOT, 0);
            make_avail(d, 1, slot);
            d->tx_cnt += PAYLOAD;
            sent += PAYLOAD;
            in_flight++;
            posted = true;
        }
        if (posted)
            w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        (void)vmm_event_loop_run_once(d->loop, 0);
        uint16_t u = used_idx(d, 1);
        in_flight = (uint16_t)(in_flight - (uint16_t)(u - d->used_seen[1]));
        d->used_seen[1] = u;
        got += drain(d->sock);
        (void)rx_reap(d);
    }
    finish(res, bytes, got, t0, c0);
}

/* Host to guest: the socket written, the receive ring reaped. */
static void dev_rx(struct drv *d, uint64_t bytes, struct result *res)
{
    static uint8_t buf[CHUNK];
    memset(buf, 0x5a, sizeof(buf));
    uint32_t start = d->rx_bytes;
    uint64_t sent = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    while (d->rx_bytes - start < bytes) {
        if (sent < bytes) {
            size_t want = bytes - sent < CHUNK ? bytes - sent : CHUNK;
            ssize_t n = send(d->sock, buf, want, MSG_DONTWAIT);
            if (n > 0)
                sent += (uint64_t)n;
        }
        (void)vmm_event_loop_run_once(d->loop, 0);
        (void)rx_reap(d);
    }
    finish(res, bytes, d->rx_bytes - start, t0, c0);
}

static int cmp_res(const void *a, const void *b)
{
    double x = ((const struct result *)a)->mibs, y = ((const struct result *)b)->mibs;
    return x < y ? -1 : x > y;
}

static void report(const char *what, struct result *fl, struct result *dv)
{
    qsort(fl, ROUNDS, sizeof(*fl), cmp_res);
    qsort(dv, ROUNDS, sizeof(*dv), cmp_res);
    const struct result *f = &fl[ROUNDS / 2], *v = &dv[ROUNDS / 2];
    bool bad = false;
    for (int i = 0; i < ROUNDS; i++)
        bad |= fl[i].short_count || dv[i].short_count;
    printf("%s: socketpair floor %7.0f MiB/s (%5.0f ns CPU/KiB), virtio-vsock %7.0f MiB/s "
           "(%5.0f ns CPU/KiB): %.2fx%s\n",
           what, f->mibs, f->cpu_ns_kib, v->mibs, v->cpu_ns_kib, v->mibs / f->mibs,
           bad ? " (byte counts differ!)" : "");
}

int main(int argc, char **argv)
{
    uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 256;
    /* The receive side advertises a 2 GiB buffer and never updates it. */
    if (mib < 1 || mib > 256) {
        fprintf(stderr, "bench_vsock: MiB a round: 1 to 256\n");
        return 2;
    }
    uint64_t bytes = (mib << 20) / PAYLOAD * PAYLOAD;
    char dir[] = "/tmp/bench-vsock-XXXXXX", path[64], lpath[80];
    const char *tmp = getenv("TMPDIR");
    char tdir[256];
    snprintf(tdir, sizeof(tdir), "%s/bench-vsock-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *dp = strlen(tdir) < 40 ? mkdtemp(tdir) : mkdtemp(dir);
    if (!dp) {
        perror("bench_vsock: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/v", dp);
    snprintf(lpath, sizeof(lpath), "%s_5000", path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", lpath);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
        perror("bench_vsock: listening");
        return 1;
    }
    struct drv d;
    int r = drv_create(&d, path, lfd);
    if (r < 0) {
        fprintf(stderr, "bench_vsock: device: %s\n", vmm_strerror(r));
        return 1;
    }
    printf("bench_vsock: %llu MiB a round, median of %d rounds, one process (no KVM); "
           "%u-byte transmit packets, %u-byte receive buffers\n",
           (unsigned long long)(bytes >> 20), ROUNDS, PAYLOAD, RXLEN);
    struct result fl[ROUNDS], dv[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        floor_run(bytes, &fl[i]);
        dev_tx(&d, bytes, &dv[i]);
    }
    report("guest to host", fl, dv);
    for (int i = 0; i < ROUNDS; i++) {
        floor_run(bytes, &fl[i]);
        dev_rx(&d, bytes, &dv[i]);
    }
    report("host to guest", fl, dv);
    drv_destroy(&d);
    close(lfd);
    unlink(lpath);
    rmdir(dp);
    return 0;
}
