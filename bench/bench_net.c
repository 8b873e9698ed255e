/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_net: Ethernet frames through a real tap, raw (the floor) and
 * through libvmm's virtio-net device driven from the host side, in one
 * process, in a network namespace of its own (root: CAP_NET_ADMIN and
 * CAP_SYS_ADMIN).
 *
 *   tx  floor:  writev(tap, [virtio-net header, frame]) per frame
 *       device: the program plays the driver: transmit chains (header and
 *               frame in one buffer) fill the ring, a QueueNotify write
 *               kicks it (an eventfd write, as KVM's ioeventfd does), the
 *               event loop runs the device (pop, header check, writev to the
 *               tap, used ring, interrupt callback), used entries are reaped
 *               and posted again
 *   rx  floor:  a packet socket on the tap sends a batch of frames, read(tap)
 *               takes them
 *       device: the same sends; the device reads them into posted receive
 *               buffers (one per frame, no mergeable buffers), the program
 *               reaps and reposts them
 *
 * Figures: frames per second of each (median of the rounds), the ratio, and
 * the CPU time per frame (CLOCK_PROCESS_CPUTIME_ID, every thread). Frames
 * are counted at both ends: a lost one is reported. Nothing is asserted on
 * time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"
#include "virtio/mmio_regs.h"

#define HDR       VMM_VIRTIO_NET_HDR_SIZE
#define ETHERTYPE 0x88b5
#define QSIZE     256u
#define BATCH     64u /* frames the host side sends before the receiver takes them */
#define ROUNDS    5
#define G_MEM     (8ull << 20)
#define G_RX_RING 0x0ull /* desc, avail at +0x1000, used at +0x2000 */
#define G_TX_RING 0x4000ull
#define G_RX_BUF  0x100000ull /* 2 KiB per slot */
#define G_TX_BUF  0x300000ull
#define SLOT      2048u

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct result {
    double fps;
    double cpu_ns;
    uint64_t lost;
};

static void finish(struct result *r, uint64_t frames, uint64_t t0, uint64_t c0, uint64_t lost)
{
    uint64_t t1 = bench_now_ns(), c1 = cpu_ns();
    r->fps = (double)frames * 1e9 / (double)(t1 - t0);
    r->cpu_ns = (double)(c1 - c0) / (double)frames;
    r->lost = lost;
}

static void make_frame(uint8_t *f, size_t len)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
    f[12] = ETHERTYPE >> 8;
    f[13] = ETHERTYPE & 0xff;
    for (size_t i = 14; i < len; i++)
        f[i] = (uint8_t)i;
}

static int if_up(const char *name)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int f = open(path, O_WRONLY | O_CLOEXEC);
    if (f >= 0) {
        if (write(f, "1", 1) != 1)
            perror("bench_net: disable_ipv6");
        close(f);
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int r = s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ? -errno : 0;
    ifr.ifr_flags |= IFF_UP;
    if (r == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        r = -errno;
    if (s >= 0)
        close(s);
    return r;
}

/* A packet socket on the tap: the host side of the network. */
static int packet_socket(const char *name)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYPE),
                              .sll_ifindex = (int)if_nametoindex(name)};
    if (s < 0 || bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        perror("bench_net: packet socket");
        exit(1);
    }
    int big = 8 << 20;
    (void)setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
    return s;
}

/* ---- the floor: the tap itself ---- */

static int floor_tap(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int hdr = HDR;
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        perror("bench_net: floor tap");
        exit(1);
    }
    return fd;
}

static void floor_tx(int fd, size_t len, uint64_t frames, struct result *res)
{
    uint8_t hdr[HDR] = {0}, f[SLOT];
    make_frame(f, len);
    struct iovec iov[2] = {{hdr, HDR}, {f, len}};
    uint64_t lost = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    for (uint64_t i = 0; i < frames; i++)
        if (writev(fd, iov, 2) != (ssize_t)(HDR + len))
            lost++;
    finish(res, frames, t0, c0, lost);
}

static void floor_rx(int fd, int pkt, size_t len, uint64_t frames, struct result *res)
{
    uint8_t f[SLOT], buf[SLOT + HDR];
    make_frame(f, len);
    uint64_t lost = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    for (uint64_t done = 0; done < frames; done += BATCH) {
        for (unsigned i = 0; i < BATCH; i++)
            if (send(pkt, f, len, 0) != (ssize_t)len)
                lost++;
        for (unsigned i = 0; i < BATCH; i++) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n < 0 && errno == EAGAIN) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 100) == 1)
                    n = read(fd, buf, sizeof(buf));
            }
            if (n != (ssize_t)(HDR + len))
                lost++;
        }
    }
    finish(res, frames, t0, c0, lost);
}

/* ---- libvmm: virtio-net driven from the host side ---- */

struct drv {
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_event_loop *loop;
    struct vmm_virtio_mmio *mmio;
    uint16_t avail[2], used_seen[2]; /* by queue: 0 rx, 1 tx */
    bool rx_posted;                  /* every receive buffer is in the ring */
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
    return q == 0 ? G_RX_RING : G_TX_RING;
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

static uint16_t used_id(struct drv *d, unsigned q, uint16_t slot)
{
    uint32_t id;
    memcpy(&id, d->host + ring_of(q) + 0x2004 + 8 * (slot % QSIZE), 4);
    return (uint16_t)id;
}

static int drv_create(struct drv *d, const char *tap)
{
    memset(d, 0, sizeof(*d));
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = G_MEM);
    struct vmm_region_info ri = VMM_INIT(struct vmm_region_info);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_net_config nc =
        VMM_INIT(struct vmm_virtio_net_config, .tap = tap, .queue_size = QSIZE);
    int r;
    if ((r = vmm_memory_create(&d->mem)) < 0 || (r = vmm_memory_add_region(d->mem, &rc)) < 0 ||
        (r = vmm_memory_region_info(d->mem, 0, &ri)) < 0 ||
        (r = vmm_event_loop_create(&d->loop)) < 0 || (r = vmm_virtio_net_create(&nc, &dev)) < 0)
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
    for (unsigned q = 0; q < 2; q++) {
        w32(d, VMM_VIRTIO_MMIO_QUEUE_SEL, q);
        w32(d, VMM_VIRTIO_MMIO_QUEUE_NUM, QSIZE);
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)ring_of(q));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)(ring_of(q) + 0x1000));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)(ring_of(q) + 0x2000));
        w32(d, VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    }
    w32(d, VMM_VIRTIO_MMIO_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK);
    return 0;
}

static void drv_destroy(struct drv *d)
{
    vmm_virtio_mmio_destroy(d->mmio);
    vmm_event_loop_destroy(d->loop);
    vmm_memory_destroy(d->mem);
}

static void dev_tx(struct drv *d, size_t len, uint64_t frames, struct result *res)
{
    uint8_t f[SLOT];
    make_frame(f, len);
    for (unsigned i = 0; i < QSIZE; i++) {
        memset(d->host + G_TX_BUF + (uint64_t)i * SLOT, 0, HDR);
        memcpy(d->host + G_TX_BUF + (uint64_t)i * SLOT + HDR, f, len);
        desc(d, 1, i, G_TX_BUF + (uint64_t)i * SLOT, (uint32_t)(HDR + len), 0);
    }
    uint64_t sent = 0, done = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    for (unsigned i = 0; i < QSIZE && sent < frames; i++, sent++)
        make_avail(d, 1, (uint16_t)i);
    w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    while (done < frames) {
        (void)vmm_event_loop_run_once(d->loop, 1000);
        uint16_t u = used_idx(d, 1);
        bool posted = false;
        while (d->used_seen[1] != u) {
            uint16_t id = used_id(d, 1, d->used_seen[1]++);
            done++;
            if (sent < frames) {
                make_avail(d, 1, id);
                sent++;
                posted = true;
            }
        }
        if (posted)
            w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    }
    struct vmm_virtio_net_stats s = VMM_INIT(struct vmm_virtio_net_stats);
    (void)vmm_virtio_net_get_stats(vmm_virtio_mmio_transport(d->mmio), &s);
    finish(res, frames, t0, c0, s.tx_dropped);
}

static void dev_rx(struct drv *d, int pkt, size_t len, uint64_t frames, struct result *res)
{
    uint8_t f[SLOT];
    make_frame(f, len);
    for (unsigned i = 0; i < QSIZE && !d->rx_posted; i++) {
        desc(d, 0, i, G_RX_BUF + (uint64_t)i * SLOT, SLOT, 2 /* WRITE */);
        make_avail(d, 0, (uint16_t)i);
    }
    d->rx_posted = true;
    w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    (void)vmm_event_loop_run_once(d->loop, 0);
    struct vmm_virtio_net_stats s0 = VMM_INIT(struct vmm_virtio_net_stats);
    (void)vmm_virtio_net_get_stats(vmm_virtio_mmio_transport(d->mmio), &s0);
    uint64_t lost = 0, done = 0, t0 = bench_now_ns(), c0 = cpu_ns();
    for (uint64_t batch = 0; batch < frames; batch += BATCH) {
        for (unsigned i = 0; i < BATCH; i++)
            if (send(pkt, f, len, 0) != (ssize_t)len)
                lost++;
        uint64_t want = batch + BATCH - lost;
        for (int spins = 0; done < want && spins < 1000; spins++) {
            (void)vmm_event_loop_run_once(d->loop, 100);
            uint16_t u = used_idx(d, 0);
            bool posted = false;
            while (d->used_seen[0] != u) {
                make_avail(d, 0, used_id(d, 0, d->used_seen[0]++));
                done++;
                posted = true;
            }
            if (posted)
                w32(d, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        }
    }
    struct vmm_virtio_net_stats s = VMM_INIT(struct vmm_virtio_net_stats);
    (void)vmm_virtio_net_get_stats(vmm_virtio_mmio_transport(d->mmio), &s);
    finish(res, frames, t0, c0, lost + (frames - lost - done) + (s.rx_dropped - s0.rx_dropped));
}

static int cmp_res(const void *a, const void *b)
{
    double x = ((const struct result *)a)->fps, y = ((const struct result *)b)->fps;
    return x < y ? -1 : x > y;
}

static void report(const char *what, size_t len, struct result *fl, struct result *dv)
{
    qsort(fl, ROUNDS, sizeof(*fl), cmp_res);
    qsort(dv, ROUNDS, sizeof(*dv), cmp_res);
    const struct result *f = &fl[ROUNDS / 2], *v = &dv[ROUNDS / 2];
    uint64_t lost = 0;
    for (int i = 0; i < ROUNDS; i++)
        lost += fl[i].lost + dv[i].lost;
    printf("%s %4zu-byte frames: tap floor %8.0f frames/s (%5.2f Gbit/s, %5.0f ns CPU/frame), "
           "virtio-net %8.0f frames/s (%5.2f Gbit/s, %5.0f ns CPU/frame): %.2fx%s\n",
           what, len, f->fps, f->fps * (double)len * 8 / 1e9, f->cpu_ns, v->fps,
           v->fps * (double)len * 8 / 1e9, v->cpu_ns, v->fps / f->fps,
           lost ? " (frames lost!)" : "");
}

int main(int argc, char **argv)
{
    uint64_t frames = argc > 1 ? strtoull(argv[1], NULL, 0) : 200000;
    frames = (frames + BATCH - 1) / BATCH * BATCH;
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "bench_net: needs root (a network namespace of its own): %s\n",
                strerror(errno));
        return 1;
    }
    int ffd = floor_tap("floor0");
    struct drv d;
    int r = drv_create(&d, "dev0");
    if (r < 0) {
        fprintf(stderr, "bench_net: device: %s\n", vmm_strerror(r));
        return 1;
    }
    if (if_up("floor0") < 0 || if_up("dev0") < 0) {
        fprintf(stderr, "bench_net: cannot bring the taps up\n");
        return 1;
    }
    int fpkt = packet_socket("floor0"), dpkt = packet_socket("dev0");
    printf("bench_net: %llu frames a round, median of %d rounds, same process and kernel\n",
           (unsigned long long)frames, ROUNDS);
    static const size_t lens[] = {60, 1514};
    for (size_t l = 0; l < 2; l++) {
        struct result fl[ROUNDS], dv[ROUNDS];
        for (int i = 0; i < ROUNDS; i++) {
            floor_tx(ffd, lens[l], frames, &fl[i]);
            dev_tx(&d, lens[l], frames, &dv[i]);
        }
        report("tx", lens[l], fl, dv);
        for (int i = 0; i < ROUNDS; i++) {
            floor_rx(ffd, fpkt, lens[l], frames, &fl[i]);
            dev_rx(&d, dpkt, lens[l], frames, &dv[i]);
        }
        report("rx", lens[l], fl, dv);
    }
    drv_destroy(&d);
    close(ffd);
    return 0;
}
