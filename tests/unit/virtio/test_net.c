/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net on a real tap, driven from the host side: the test plays the
 * guest's driver through the virtio-mmio registers and rings (vq_driver.h),
 * and the network's side through a packet socket bound to the tap, so every
 * frame really goes through the kernel's tun driver. Each test runs in a
 * network namespace of its own where it can make one (root), else on a tap
 * named after the process. Needs /dev/net/tun and CAP_NET_ADMIN (CI runs as
 * root with both); exits 77 without /dev/net/tun.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_net.h>

#include "check_compat.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/mmio_regs.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE    16
#define ETHERTYP 0x88b5 /* IEEE local experimental: nothing else sends it */
#define HDR      VMM_VIRTIO_NET_HDR_SIZE

#define ACK     VMM_VIRTIO_STATUS_ACKNOWLEDGE
#define DRV     VMM_VIRTIO_STATUS_DRIVER
#define FEAT_OK VMM_VIRTIO_STATUS_FEATURES_OK
#define DRV_OK  VMM_VIRTIO_STATUS_DRIVER_OK

static struct td d;       /* rx of pair 0 (and the memory) */
static struct td ring[4]; /* tx0, rx1, tx1, ctrl */
static struct vmm_virtio_mmio *m;
static const struct vmm_bus_ops *ops;
static struct vmm_event_loop *loop;
static unsigned irqs;
static char tap[IFNAMSIZ];
static int pkt = -1; /* packet socket on the tap */

static void on_irq(void *opaque)
{
    (void)opaque;
    irqs++;
}

static uint32_t rd(uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    ops->read(m, off, (uint8_t *)&v, 4);
    return v;
}

static void wr(uint64_t off, uint32_t v)
{
    ops->write(m, off, (const uint8_t *)&v, 4);
}

static uint64_t offered(void)
{
    wr(VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t lo = rd(VMM_VIRTIO_MMIO_DEVICE_FEATURES);
    wr(VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    return lo | (uint64_t)rd(VMM_VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

static void setup_queue(unsigned sel, const struct td *r)
{
    wr(VMM_VIRTIO_MMIO_QUEUE_SEL, sel);
    wr(VMM_VIRTIO_MMIO_QUEUE_NUM, r->size);
    wr(VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)r->desc);
    wr(VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)r->avail);
    wr(VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)r->used);
    wr(VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_QUEUE_READY), 1);
}

static void set_flags_up(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int f = open(path, O_WRONLY | O_CLOEXEC);
    if (f >= 0) { /* no router solicitations or MLD reports on the tap */
        ck_assert_int_eq(write(f, "1", 1), 1);
        close(f);
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP;
    ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
    close(s);
}

/* The tap's legacy ethtool flag cmd (ETHTOOL_GTSO, ETHTOOL_GTXCSUM): what
 * TUNSETOFFLOAD turned on for frames going to the device. */
static unsigned tap_ethtool(uint32_t cmd)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    struct ethtool_value ev = {.cmd = cmd};
    struct ifreq ifr = {.ifr_data = (void *)&ev};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
    ck_assert_int_eq(ioctl(s, SIOCETHTOOL, &ifr), 0);
    close(s);
    return ev.data;
}

static void setup(void)
{
    /* A namespace of our own keeps the tap off the host; without the
     * privilege for one, a name no other test process uses. */
    if (unshare(CLONE_NEWNET) == 0)
        snprintf(tap, sizeof(tap), "vmmnet0");
    else
        snprintf(tap, sizeof(tap), "vmmn%d", (int)getpid() % 1000000);
    irqs = 0;
    td_init(&d, QSIZE);
    for (unsigned i = 0; i < 4; i++)
        td_other_ring(&ring[i], &d, QSIZE, 0x15000 + 0x400ull * i, 0x15100 + 0x400ull * i,
                      0x15200 + 0x400ull * i);
    ops = vmm_virtio_mmio_bus_ops();
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
}

static void teardown(void)
{
    vmm_virtio_mmio_destroy(m);
    m = NULL;
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    vmm_event_loop_destroy(loop);
    if (pkt >= 0)
        close(pkt);
    pkt = -1;
    td_fini(&d);
}

/* Create the device with cfg (its tap set here), bring the tap up and
 * open the packet socket on it. */
static void net_create(struct vmm_virtio_net_config *cfg)
{
    cfg->tap = tap;
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_net_create(cfg, &dev);
    ck_assert_msg(r == 0, "creating tap %s: %s", tap, strerror(-r));
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000, .gsi = 5, .mem = d.mem,
                 .loop = loop, .interrupt = on_irq);
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m), 0);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_DEVICE_ID), VMM_VIRTIO_ID_NET);
    set_flags_up(tap);
    pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYP));
    ck_assert_int_ge(pkt, 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYP),
                              .sll_ifindex = (int)if_nametoindex(tap)};
    ck_assert_int_gt(sll.sll_ifindex, 0);
    ck_assert_int_eq(bind(pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
    int one = 1;
    ck_assert_int_eq(setsockopt(pkt, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)), 0);
}

/* Negotiate features and make queues [0, nq) ready: 0 on d, the others on
 * ring[]. */
static void net_start(uint64_t features, unsigned nq)
{
    wr(VMM_VIRTIO_MMIO_STATUS, ACK);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV);
    features |= VMM_VIRTIO_F_VERSION_1;
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_STATUS), ACK | DRV | FEAT_OK);
    setup_queue(0, &d);
    for (unsigned i = 1; i < nq; i++)
        setup_queue(i, &ring[i - 1]);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK | DRV_OK);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_STATUS), ACK | DRV | FEAT_OK | DRV_OK);
}

static void net_up(struct vmm_virtio_net_config *cfg, uint64_t features)
{
    net_create(cfg);
    net_start(features, 2);
}

static struct vmm_virtio_net_stats stats(void)
{
    struct vmm_virtio_net_stats s = VMM_INIT(struct vmm_virtio_net_stats);
    ck_assert_int_eq(vmm_virtio_net_get_stats(vmm_virtio_mmio_transport(m), &s), 0);
    return s;
}

/* An Ethernet frame of len bytes (broadcast, our ethertype, a pattern
 * from seed). */
static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
    f[12] = ETHERTYP >> 8;
    f[13] = ETHERTYP & 0xff;
    for (size_t i = 14; i < len; i++)
        f[i] = (uint8_t)(seed + i * 7);
}

/* The host sends a frame into the tap (the device reads it). */
static void host_send(const uint8_t *f, size_t len)
{
    ck_assert_int_eq(send(pkt, f, len, 0), (ssize_t)len);
}

/* The next frame the device wrote to the tap (within a few seconds);
 * *status gets its PACKET_AUXDATA tp_status. Returns its length, or -1 when
 * none came within wait_ms. */
static ssize_t host_recv(uint8_t *buf, size_t size, int wait_ms, uint32_t *status)
{
    struct pollfd p = {.fd = pkt, .events = POLLIN};
    /* The device writes from the loop: run it while waiting. */
    for (int waited = 0; waited <= wait_ms; waited += 10) {
        if (poll(&p, 1, 0) == 1)
            break;
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 10), 0);
    }
    if (poll(&p, 1, 0) != 1)
        return -1;
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } ctl;
    struct iovec iov = {buf, size};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(pkt, &mh, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    if (status) {
        *status = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(c), sizeof(aux));
                *status = aux.tp_status;
            }
    }
    return n;
}

/* The guest transmits hdr + frame from one readable buffer at gpa. */
static void guest_tx(struct td *r, unsigned queue, uint16_t slot, uint64_t gpa, const uint8_t *hdr,
                     const uint8_t *f, size_t len)
{
    static const uint8_t zero[HDR];
    memcpy(td_ptr(r, gpa), hdr ? hdr : zero, HDR);
    memcpy(td_ptr(r, gpa + HDR), f, len);
    td_desc(r, slot, gpa, (uint32_t)(HDR + len), 0, 0);
    td_avail(r, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, queue);
}

/* Run the loop until r's used index reaches want (bounded). */
static void run_until_used(struct td *r, uint16_t want)
{
    for (int i = 0; i < 400 && td_used_idx(r) != want; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 25), 0);
    ck_assert_uint_eq(td_used_idx(r), want);
}

/* Post a receive buffer of len bytes at gpa in slot. */
static void guest_rx_post(uint16_t slot, uint64_t gpa, uint32_t len)
{
    memset(td_ptr(&d, gpa), 0xee, len);
    td_desc(&d, slot, gpa, len, TD_F_WRITE, 0);
    td_avail(&d, slot);
}

static uint16_t num_buffers(uint64_t gpa)
{
    return td_get_u16(&d, gpa + 10);
}

START_TEST(test_net_create_errors)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    ck_assert_int_eq(vmm_virtio_net_create(NULL, &dev), -EINVAL);
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL); /* no tap */
    c.tap = "a-name-far-too-long-for-ifnamsiz";
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    c.tap = tap;
    c.queue_size = 3;
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    c.queue_size = 0;
    c.queue_pairs = VMM_VIRTIO_NET_MAX_PAIRS + 1;
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    c.queue_pairs = 0;
    c.mtu = 67;
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    c.mtu = 0;
    memcpy(c.mac, "\x01\x00\x5e\x00\x00\x01", 6); /* multicast */
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    memset(c.mac, 0, 6);
    /* vhost-net takes no rate limit; without /dev/vhost-net (this host;
     * the nested level 1 has it) it cannot be. */
    c.vhost = true;
    c.rx_packets_per_sec = 10;
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -EINVAL);
    c.rx_packets_per_sec = 0;
    if (access("/dev/vhost-net", F_OK) != 0)
        ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), -ENOENT);
    c.vhost = false;
    /* A transport without an event loop cannot serve it. */
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .mem = d.mem, .interrupt = on_irq);
    struct vmm_virtio_mmio *x;
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &x), -EINVAL);
    /* Not a network device. */
    ck_assert_int_eq(vmm_virtio_net_set_link(NULL, true), -EINVAL);
    /* A single-queue tap cannot be attached to as a multiqueue one. */
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), 0);
    struct vmm_virtio_device dev2 = VMM_INIT(struct vmm_virtio_device);
    c.queue_pairs = 2;
    ck_assert_int_lt(vmm_virtio_net_create(&c, &dev2), 0);
    vmm_virtio_device_free(&dev);
}
END_TEST

START_TEST(test_net_config_and_link)
{
    struct vmm_virtio_net_config c =
        VMM_INIT(struct vmm_virtio_net_config, .mac = {0x52, 0x54, 0, 1, 2, 3}, .mtu = 1400);
    net_create(&c);
    uint64_t f = offered();
    uint64_t want = VMM_VIRTIO_NET_F_MAC | VMM_VIRTIO_NET_F_STATUS | VMM_VIRTIO_NET_F_MRG_RXBUF |
                    VMM_VIRTIO_NET_F_MTU | VMM_VIRTIO_NET_F_CSUM | VMM_VIRTIO_NET_F_HOST_TSO4 |
                    VMM_VIRTIO_NET_F_HOST_TSO6 | VMM_VIRTIO_NET_F_GUEST_CSUM |
                    VMM_VIRTIO_NET_F_GUEST_TSO4 | VMM_VIRTIO_NET_F_GUEST_TSO6;
    ck_assert_uint_eq(f & want, want);
    ck_assert_uint_eq(f & (VMM_VIRTIO_NET_F_MQ | VMM_VIRTIO_NET_F_CTRL_VQ), 0);
    uint8_t cfg[12];
    for (unsigned i = 0; i < sizeof(cfg); i++)
        ops->read(m, VMM_VIRTIO_MMIO_CONFIG + i, cfg + i, 1);
    ck_assert_mem_eq(cfg, "\x52\x54\x00\x01\x02\x03", 6);
    ck_assert_uint_eq(cfg[6] | cfg[7] << 8, 1); /* VIRTIO_NET_S_LINK_UP */
    ck_assert_uint_eq(cfg[8] | cfg[9] << 8, 1); /* max_virtqueue_pairs */
    ck_assert_uint_eq(cfg[10] | cfg[11] << 8, 1400);
    net_start(VMM_VIRTIO_NET_F_MAC | VMM_VIRTIO_NET_F_STATUS, 2);

    /* Link down: a configuration interrupt, the status bit clear, frames
     * the guest sends dropped, frames for it left in the tap. */
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    unsigned before = irqs;
    ck_assert_int_eq(vmm_virtio_net_set_link(t, false), 0);
    ck_assert_uint_gt(irqs, before);
    ck_assert(rd(VMM_VIRTIO_MMIO_INTERRUPT_STATUS) & VMM_VIRTIO_INT_CONFIG);
    uint16_t status = 0xffff;
    ops->read(m, VMM_VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&status, 2);
    ck_assert_uint_eq(status, 0);
    uint8_t fr[100], got[200];
    make_frame(fr, sizeof(fr), 1);
    guest_tx(&ring[0], 1, 0, TD_BUF, NULL, fr, sizeof(fr));
    run_until_used(&ring[0], 1);
    ck_assert_int_eq(host_recv(got, sizeof(got), 100, NULL), -1);
    ck_assert_uint_eq(stats().tx_dropped, 1);
    host_send(fr, sizeof(fr));
    guest_rx_post(0, TD_BUF + 0x1000, 2048);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_uint_eq(td_used_idx(&d), 0);
    /* Up again: the waiting frame arrives. */
    ck_assert_int_eq(vmm_virtio_net_set_link(t, true), 0);
    run_until_used(&d, 1);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x1000 + HDR), fr, sizeof(fr));
}
END_TEST

START_TEST(test_net_tx_and_hostile_chains)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_up(&c, VMM_VIRTIO_NET_F_MAC);
    struct td *tx = &ring[0];
    uint8_t fr[300], got[400];
    make_frame(fr, sizeof(fr), 3);
    guest_tx(tx, 1, 0, TD_BUF, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
    ck_assert_mem_eq(got, fr, sizeof(fr));
    run_until_used(tx, 1);
    uint32_t id, len;
    td_used_elem(tx, 0, &id, &len);
    ck_assert_uint_eq(len, 0);

    /* A frame split over three descriptors (header alone, then two pieces). */
    memset(td_ptr(tx, TD_BUF + 0x1000), 0, HDR);
    memcpy(td_ptr(tx, TD_BUF + 0x2000), fr, 100);
    memcpy(td_ptr(tx, TD_BUF + 0x3000), fr + 100, 200);
    td_desc(tx, 1, TD_BUF + 0x1000, HDR, TD_F_NEXT, 2);
    td_desc(tx, 2, TD_BUF + 0x2000, 100, TD_F_NEXT, 3);
    td_desc(tx, 3, TD_BUF + 0x3000, 200, 0, 0);
    td_avail(tx, 1);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
    ck_assert_mem_eq(got, fr, sizeof(fr));
    run_until_used(tx, 2);

    /* Hostile chains, each completed with 0 bytes and dropped: shorter
     * than the header; a device-writable buffer; a frame over 65553 bytes;
     * a TSO header the guest did not negotiate; a checksum offload without
     * VIRTIO_NET_F_CSUM. */
    td_desc(tx, 4, TD_BUF, 8, 0, 0);
    td_avail(tx, 4);
    td_desc(tx, 5, TD_BUF, HDR + 100, TD_F_NEXT, 6);
    td_desc(tx, 6, TD_BUF + 0x4000, 64, TD_F_WRITE, 0);
    td_avail(tx, 5);
    td_desc(tx, 7, TD_BUF, HDR + 65554, 0, 0);
    td_avail(tx, 7);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    run_until_used(tx, 5);
    uint8_t hdr[HDR] = {0, 1 /* GSO_TCPV4 */};
    guest_tx(tx, 1, 8, TD_BUF + 0x8000, hdr, fr, sizeof(fr));
    run_until_used(tx, 6);
    uint8_t csum[HDR] = {1 /* NEEDS_CSUM */, 0, 0, 0, 0, 0, 14, 0, 2, 0};
    guest_tx(tx, 1, 9, TD_BUF + 0x9000, csum, fr, sizeof(fr));
    run_until_used(tx, 7);
    ck_assert_int_eq(host_recv(got, sizeof(got), 100, NULL), -1);
    for (unsigned i = 2; i < 7; i++) {
        td_used_elem(tx, i, &id, &len);
        ck_assert_uint_eq(len, 0);
    }
    struct vmm_virtio_net_stats s = stats();
    ck_assert_uint_eq(s.tx_packets, 2);
    ck_assert_uint_eq(s.tx_bytes, 2 * sizeof(fr));
    ck_assert_uint_eq(s.tx_dropped, 5);
    /* The queue still works. */
    guest_tx(tx, 1, 10, TD_BUF, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
}
END_TEST

START_TEST(test_net_tx_checksum_offload)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_up(&c, VMM_VIRTIO_NET_F_CSUM);
    uint8_t fr[120], got[200];
    make_frame(fr, sizeof(fr), 5);
    /* NEEDS_CSUM where a UDP checksum would be (start 34, offset 6): the
     * kernel takes the frame as CHECKSUM_PARTIAL, which the packet socket
     * reports as TP_STATUS_CSUMNOTREADY. */
    uint8_t hdr[HDR] = {1, 0, 0, 0, 0, 0, 34, 0, 6, 0};
    guest_tx(&ring[0], 1, 0, TD_BUF, hdr, fr, sizeof(fr));
    uint32_t st = 0;
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, &st), (ssize_t)sizeof(fr));
    ck_assert(st & TP_STATUS_CSUMNOTREADY);
    guest_tx(&ring[0], 1, 1, TD_BUF + 0x1000, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, &st), (ssize_t)sizeof(fr));
    ck_assert(!(st & TP_STATUS_CSUMNOTREADY));
    /* A checksum position past the frame is refused by the device. */
    uint8_t bad[HDR] = {1, 0, 0, 0, 0, 0, 110, 0, 16, 0};
    guest_tx(&ring[0], 1, 2, TD_BUF + 0x2000, bad, fr, sizeof(fr));
    run_until_used(&ring[0], 3);
    ck_assert_uint_eq(stats().tx_dropped, 1);
}
END_TEST

START_TEST(test_net_rx_offloads_follow_features)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_create(&c);
    /* Nothing negotiated yet: the tap hands the device no TSO frames. */
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTSO), 0);
    net_start(VMM_VIRTIO_NET_F_GUEST_CSUM | VMM_VIRTIO_NET_F_GUEST_TSO4, 2);
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTXCSUM), 1);
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTSO), 1);
    /* A reset takes them back; a guest without GUEST_CSUM gets none. */
    wr(VMM_VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTSO), 0);
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTXCSUM), 0);
    net_start(VMM_VIRTIO_NET_F_GUEST_TSO4, 2);
    ck_assert_uint_eq(tap_ethtool(ETHTOOL_GTSO), 0);
}
END_TEST

START_TEST(test_net_rx)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_up(&c, VMM_VIRTIO_NET_F_MAC);
    uint8_t fr[200];
    make_frame(fr, sizeof(fr), 9);
    /* A frame for a guest with no buffers waits in the tap, and the tap is
     * no longer watched: the loop goes idle. */
    host_send(fr, sizeof(fr));
    ck_assert_int_ge(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 50), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 50), 0);
    ck_assert_uint_eq(td_used_idx(&d), 0);

    /* A readable receive chain and one shorter than the header are
     * completed unused; the frame goes to the next good buffer. */
    td_desc(&d, 0, TD_BUF, 64, 0, 0);
    td_avail(&d, 0);
    td_desc(&d, 1, TD_BUF + 0x100, HDR - 1, TD_F_WRITE, 0);
    td_avail(&d, 1);
    guest_rx_post(2, TD_BUF + 0x1000, 1600);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    run_until_used(&d, 3);
    uint32_t id, len;
    td_used_elem(&d, 0, &id, &len);
    ck_assert_uint_eq(len, 0);
    td_used_elem(&d, 1, &id, &len);
    ck_assert_uint_eq(len, 0);
    td_used_elem(&d, 2, &id, &len);
    ck_assert_uint_eq(id, 2);
    ck_assert_uint_eq(len, HDR + sizeof(fr));
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x1000 + HDR), fr, sizeof(fr));
    ck_assert_uint_eq(num_buffers(TD_BUF + 0x1000), 1);
    ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, TD_BUF + 0x1000 + 1), 0); /* gso_type NONE */

    /* A frame larger than the guest's buffer is dropped and the buffer
     * kept: the next frame that fits lands in it. */
    guest_rx_post(3, TD_BUF + 0x2000, HDR + 100);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    host_send(fr, sizeof(fr));
    for (int i = 0; i < 50 && stats().rx_dropped == 0; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 20), 0);
    ck_assert_uint_eq(stats().rx_dropped, 1);
    ck_assert_uint_eq(td_used_idx(&d), 3);
    host_send(fr, 60);
    run_until_used(&d, 4);
    td_used_elem(&d, 3, &id, &len);
    ck_assert_uint_eq(id, 3);
    ck_assert_uint_eq(len, HDR + 60);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x2000 + HDR), fr, 60);
    struct vmm_virtio_net_stats s = stats();
    ck_assert_uint_eq(s.rx_packets, 2);
    ck_assert_uint_eq(s.rx_bytes, sizeof(fr) + 60);

    /* The tap's MTU raised behind the device's back: a buffer that held
     * any frame at activation takes one plain read, and the tap cuts a
     * longer frame to the buffer's length. The cut frame is dropped, not
     * handed on, and the buffer takes the next one. */
    int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sk, 0);
    struct ifreq ifr = {.ifr_mtu = 4000};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
    ck_assert_int_eq(ioctl(sk, SIOCSIFMTU, &ifr), 0);
    close(sk);
    guest_rx_post(4, TD_BUF + 0x3000, 1600);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    uint8_t big[2000];
    make_frame(big, sizeof(big), 5);
    host_send(big, sizeof(big));
    for (int i = 0; i < 50 && stats().rx_dropped == 1; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 20), 0);
    ck_assert_uint_eq(stats().rx_dropped, 2);
    ck_assert_uint_eq(td_used_idx(&d), 4);
    host_send(fr, sizeof(fr));
    run_until_used(&d, 5);
    td_used_elem(&d, 4, &id, &len);
    ck_assert_uint_eq(id, 4);
    ck_assert_uint_eq(len, HDR + sizeof(fr));
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x3000 + HDR), fr, sizeof(fr));
    ck_assert_uint_eq(stats().rx_packets, 3);
}
END_TEST

START_TEST(test_net_rx_mergeable)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_up(&c, VMM_VIRTIO_NET_F_MRG_RXBUF);
    for (uint16_t i = 0; i < 4; i++)
        guest_rx_post(i, TD_BUF + 0x1000ull * i, 256);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    uint8_t fr[600];
    make_frame(fr, sizeof(fr), 11);
    host_send(fr, sizeof(fr));
    run_until_used(&d, 3);
    /* 612 bytes over three 256-byte buffers, num_buffers in the first. */
    uint32_t id, len, want[3] = {256, 256, HDR + sizeof(fr) - 512};
    for (unsigned i = 0; i < 3; i++) {
        td_used_elem(&d, i, &id, &len);
        ck_assert_uint_eq(id, i);
        ck_assert_uint_eq(len, want[i]);
    }
    ck_assert_uint_eq(num_buffers(TD_BUF), 3);
    uint8_t got[600];
    memcpy(got, td_ptr(&d, TD_BUF + HDR), 256 - HDR);
    memcpy(got + 256 - HDR, td_ptr(&d, TD_BUF + 0x1000), 256);
    memcpy(got + 512 - HDR, td_ptr(&d, TD_BUF + 0x2000), want[2]);
    ck_assert_mem_eq(got, fr, sizeof(fr));
    /* The fourth buffer takes the next small frame alone. */
    host_send(fr, 100);
    run_until_used(&d, 4);
    td_used_elem(&d, 3, &id, &len);
    ck_assert_uint_eq(len, HDR + 100);
    ck_assert_uint_eq(num_buffers(TD_BUF + 0x3000), 1);
    struct vmm_virtio_net_stats s = stats();
    ck_assert_uint_eq(s.rx_packets, 2);
    ck_assert_uint_eq(s.rx_buffers, 4);
}
END_TEST

START_TEST(test_net_rate_limit)
{
    /* 1000 bytes a second out, one frame a second in. A frame goes while
     * the bucket is not empty: two 600-byte frames leave at once, the rest
     * wait for the timer. Only the order of things is asserted. */
    struct vmm_virtio_net_config c =
        VMM_INIT(struct vmm_virtio_net_config, .tx_bytes_per_sec = 1000, .rx_packets_per_sec = 1);
    net_up(&c, 0);
    uint8_t fr[600], got[700];
    make_frame(fr, sizeof(fr), 13);
    struct td *tx = &ring[0];
    for (uint16_t i = 0; i < 4; i++) {
        memset(td_ptr(tx, TD_BUF + 0x1000ull * i), 0, HDR);
        memcpy(td_ptr(tx, TD_BUF + 0x1000ull * i + HDR), fr, sizeof(fr));
        td_desc(tx, i, TD_BUF + 0x1000ull * i, HDR + sizeof(fr), 0, 0);
        td_avail(tx, i);
    }
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    ck_assert_int_ge(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_uint_lt(td_used_idx(tx), 4);
    ck_assert_uint_ge(stats().throttled, 1);
    run_until_used(tx, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));

    for (uint16_t i = 0; i < 3; i++)
        guest_rx_post(i, TD_BUF + 0x8000 + 0x1000ull * i, 1600);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    for (int i = 0; i < 3; i++)
        host_send(fr, 100);
    for (int i = 0; i < 400 && td_used_idx(&d) == 0; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 25), 0);
    ck_assert_uint_lt(td_used_idx(&d), 3);
    run_until_used(&d, 3);
    ck_assert_uint_ge(stats().throttled, 2);
}
END_TEST

START_TEST(test_net_multiqueue)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config, .queue_pairs = 2);
    net_create(&c);
    uint64_t f = offered();
    ck_assert(f & VMM_VIRTIO_NET_F_MQ);
    ck_assert(f & VMM_VIRTIO_NET_F_CTRL_VQ);
    wr(VMM_VIRTIO_MMIO_QUEUE_SEL, 4);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    wr(VMM_VIRTIO_MMIO_QUEUE_SEL, 5);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    uint16_t pairs = 0;
    ops->read(m, VMM_VIRTIO_MMIO_CONFIG + 8, (uint8_t *)&pairs, 2);
    ck_assert_uint_eq(pairs, 2);
    net_start(VMM_VIRTIO_NET_F_MQ | VMM_VIRTIO_NET_F_CTRL_VQ, 5);
    ck_assert_uint_eq(stats().queue_pairs_active, 1);

    /* Control commands: VQ_PAIRS_SET 2 (OK), 3 (ERR), an unknown class
     * (ERR), one without room for the ack (completed with 0). */
    struct td *ctrl = &ring[3];
    struct {
        uint8_t cmd[4];
        uint32_t len;
        uint8_t want;
    } cmds[] = {
        {{4, 0, 2, 0}, 4, 0},
        {{4, 0, 3, 0}, 4, 1},
        {{99, 1, 0, 0}, 2, 1},
    };
    for (uint16_t i = 0; i < 3; i++) {
        uint64_t at = TD_BUF + 0x100ull * i;
        memcpy(td_ptr(ctrl, at), cmds[i].cmd, 4);
        *(uint8_t *)td_ptr(ctrl, at + 0x80) = 0xaa;
        td_desc(ctrl, 2 * i, at, cmds[i].len, TD_F_NEXT, (uint16_t)(2 * i + 1));
        td_desc(ctrl, 2 * i + 1, at + 0x80, 1, TD_F_WRITE, 0);
        td_avail(ctrl, (uint16_t)(2 * i));
    }
    td_desc(ctrl, 6, TD_BUF + 0x400, 4, 0, 0);
    td_avail(ctrl, 6);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 4);
    run_until_used(ctrl, 4);
    for (unsigned i = 0; i < 3; i++) {
        uint32_t id, len;
        td_used_elem(ctrl, i, &id, &len);
        ck_assert_uint_eq(len, 1);
        ck_assert_uint_eq(*(uint8_t *)td_ptr(ctrl, TD_BUF + 0x100ull * i + 0x80), cmds[i].want);
    }
    struct vmm_virtio_net_stats s = stats();
    ck_assert_uint_eq(s.queue_pairs_active, 2);
    ck_assert_uint_eq(s.ctrl_cmds, 4);

    /* Both transmit queues reach the tap. */
    uint8_t fr[100], got[200];
    make_frame(fr, sizeof(fr), 17);
    guest_tx(&ring[2], 3, 0, TD_BUF + 0x1000, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
    ck_assert_mem_eq(got, fr, sizeof(fr));
    guest_tx(&ring[0], 1, 0, TD_BUF + 0x2000, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
    /* A frame from the host reaches one of the two receive queues. */
    guest_rx_post(0, TD_BUF + 0x3000, 1600);
    td_desc(&ring[1], 0, TD_BUF + 0x4000, 1600, TD_F_WRITE, 0);
    td_avail(&ring[1], 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    host_send(fr, sizeof(fr));
    for (int i = 0; i < 400 && td_used_idx(&d) + td_used_idx(&ring[1]) == 0; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 25), 0);
    ck_assert_uint_eq(td_used_idx(&d) + td_used_idx(&ring[1]), 1);
    ck_assert_uint_eq(stats().rx_packets, 1);
}
END_TEST

/* Quiesce device m and save its state into w (which the caller frees);
 * returns what quiesce said (nothing saved unless 0). */
static int net_save(struct vmm_snap_writer *w)
{
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    snap_writer_init(w);
    ck_assert_ptr_nonnull(t->snap);
    vmm_virtio_lock(t);
    int r = t->snap->quiesce(t->dev.opaque);
    if (r == 0) {
        ck_assert_int_eq(t->snap->save(t->dev.opaque, w), 0);
        if (t->snap->thaw)
            t->snap->thaw(t->dev.opaque);
    }
    vmm_virtio_unlock(t);
    ck_assert_int_eq(w->err, 0);
    return r;
}

/* What a restored device shows. */
struct restored {
    uint8_t mac[6];
    uint16_t status;
    struct vmm_virtio_net_stats stats;
};

/* Restore buf[0..len) into a fresh device on tap name (made with 2 queue
 * pairs), which the driver brought up as it did m: features, 5 queues, as
 * virtio-mmio's restore activates it before the device's part. Returns
 * what restore said. */
static int restore_into(const char *name, uint64_t features, const uint8_t *buf, size_t len,
                        struct restored *out)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config, .tap = name,
                                              .queue_pairs = 2, .mac = {0x52, 0, 0, 0, 0, 9});
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_net_create(&c, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0001000, .gsi = 6, .mem = d.mem,
                 .loop = loop, .interrupt = on_irq);
    struct vmm_virtio_mmio *saved = m;
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m), 0);
    net_start(features, 5);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    struct vmm_snap_reader r = {.p = buf, .left = len};
    vmm_virtio_lock(t);
    int rc = t->snap->restore(t->dev.opaque, &r);
    if (rc == 0)
        rc = snap_done(&r);
    vmm_virtio_unlock(t);
    ops->read(m, VMM_VIRTIO_MMIO_CONFIG, out->mac, 6);
    ops->read(m, VMM_VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&out->status, 2);
    out->stats = stats();
    vmm_virtio_mmio_destroy(m);
    m = saved;
    return rc;
}

/* A multiqueue device with two pairs enabled, a receive buffer held and
 * link down is saved: the buffer goes back to the ring untouched (and is
 * taken again on the source, where a frame then lands in it), and a fresh
 * device on another tap takes MAC, link status, pairs and counters over.
 * Every corrupt field is refused. */
START_TEST(test_net_snapshot_round_trip)
{
    struct vmm_virtio_net_config c =
        VMM_INIT(struct vmm_virtio_net_config, .queue_pairs = 2, .mac = {0x52, 0x54, 0, 1, 2, 3});
    net_create(&c);
    uint64_t feat = VMM_VIRTIO_NET_F_MAC | VMM_VIRTIO_NET_F_STATUS | VMM_VIRTIO_NET_F_MQ |
                    VMM_VIRTIO_NET_F_CTRL_VQ;
    net_start(feat, 5);
    struct td *ctrl = &ring[3];
    memcpy(td_ptr(ctrl, TD_BUF), "\x04\x00\x02\x00", 4);
    td_desc(ctrl, 0, TD_BUF, 4, TD_F_NEXT, 1);
    td_desc(ctrl, 1, TD_BUF + 0x80, 1, TD_F_WRITE, 0);
    td_avail(ctrl, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 4);
    run_until_used(ctrl, 1);
    ck_assert_uint_eq(stats().queue_pairs_active, 2);
    uint8_t fr[100], got[200];
    make_frame(fr, sizeof(fr), 3);
    guest_tx(&ring[0], 1, 0, TD_BUF + 0x1000, NULL, fr, sizeof(fr));
    ck_assert_int_eq(host_recv(got, sizeof(got), 2000, NULL), (ssize_t)sizeof(fr));
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    /* The device holds a receive buffer, waiting for a frame. */
    guest_rx_post(0, TD_BUF + 0x3000, 1600);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    struct virtq_snap pos;
    for (int i = 0; i < 100 && vmm_virtq_snap_save(vmm_virtio_queue(t, 0), &pos) == 0; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(vmm_virtq_snap_save(vmm_virtio_queue(t, 0), &pos), -EBUSY);
    ck_assert_int_eq(vmm_virtio_net_set_link(t, false), 0);

    struct vmm_snap_writer w;
    ck_assert_int_eq(net_save(&w), 0);
    ck_assert_int_eq(vmm_virtq_snap_save(vmm_virtio_queue(t, 0), &pos), 0);
    ck_assert_uint_eq(pos.last_avail, 0);
    ck_assert_uint_eq(td_used_idx(&d), 0);
    ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, TD_BUF + 0x3000), 0xee); /* untouched */
    /* The source goes on: the buffer is taken again and gets a frame. */
    ck_assert_int_eq(vmm_virtio_net_set_link(t, true), 0);
    host_send(fr, sizeof(fr));
    run_until_used(&d, 1);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x3000 + HDR), fr, sizeof(fr));

    char other[IFNAMSIZ] = "vmmnet1"; /* another tap (our namespace, or named after us) */
    if (strcmp(tap, "vmmnet0") != 0)
        snprintf(other, sizeof(other), "vmmo%d", (int)getpid() % 1000000);
    struct restored r;
    ck_assert_int_eq(restore_into(other, feat, w.buf, w.len, &r), 0);
    ck_assert_mem_eq(r.mac, c.mac, 6);
    ck_assert_uint_eq(r.status, 0); /* link down, as saved */
    ck_assert_uint_eq(r.stats.queue_pairs_active, 2);
    ck_assert_uint_eq(r.stats.tx_packets, 1);
    ck_assert_uint_eq(r.stats.ctrl_cmds, 1);

    /* Truncated, then each field corrupted: version, tap name (not
     * terminated), multicast MAC, an MTU not offered, link status, pairs
     * (0, past the device's), features, tap offloads, back end, padding,
     * the counters' size. Restoring onto vhost-net that was not: -EINVAL.
     * A device the driver brought up with other features: -EBADMSG. */
    ck_assert_int_eq(restore_into(other, feat, w.buf, w.len - 1, &r), -EBADMSG);
    static const struct {
        unsigned off;
        uint32_t v;
        unsigned width;
        int want;
    } bad[] = {
        {0, 2, 4, -EBADMSG},     {4, 0x61616161, 4, -EBADMSG}, {20, 0x53, 1, -EBADMSG},
        {26, 1500, 2, -EBADMSG}, {28, 2, 4, -EBADMSG},         {32, 1, 4, -EBADMSG},
        {36, 0, 4, -EBADMSG},    {36, 3, 4, -EBADMSG},         {48, 0, 4, -EBADMSG},
        {64, 0x20, 4, -EBADMSG}, {56, 1u << 31, 4, -EBADMSG},  {40, 2, 4, -EBADMSG},
        {44, 1, 4, -EBADMSG},    {68, 8, 4, -EBADMSG},         {40, 1, 4, -EINVAL},
    };
    uint8_t *b = malloc(w.len);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(b, w.buf, w.len);
        if (bad[i].off == 4)
            memset(b + 4, 'a', IFNAMSIZ);
        else
            memcpy(b + bad[i].off, &bad[i].v, bad[i].width);
        ck_assert_msg(restore_into(other, feat, b, w.len, &r) == bad[i].want, "corrupt field at %u",
                      bad[i].off);
    }
    free(b);
    ck_assert_int_eq(restore_into(other, feat & ~VMM_VIRTIO_NET_F_STATUS, w.buf, w.len, &r),
                     -EBADMSG);
    snap_writer_fini(&w);
}
END_TEST

/* A receive buffer held with a malformed one completed after it cannot go
 * back untouched (the driver would see it taken twice): the snapshot
 * completes it empty rather than being refused. */
START_TEST(test_net_snapshot_completes_buffers_that_cannot_go_back)
{
    struct vmm_virtio_net_config c = VMM_INIT(struct vmm_virtio_net_config);
    net_up(&c, VMM_VIRTIO_NET_F_MAC | VMM_VIRTIO_NET_F_MRG_RXBUF);
    /* The device takes receive buffers when a frame comes (not at a notify):
     * one too large for buffer 0 makes it take 0 (held; the frame dropped)
     * and 1 (malformed: refused, used), so 0 cannot go back untouched. */
    guest_rx_post(0, TD_BUF + 0x1000, 200);
    td_desc(&d, 1, TD_BUF + 0x2000, 64, 0, 0); /* readable: refused, used */
    td_avail(&d, 1);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    uint8_t big[300];
    make_frame(big, sizeof(big), 4);
    host_send(big, sizeof(big));
    run_until_used(&d, 1);
    /* The snapshot is not refused (a guest could hold that state to keep
     * its VM from being saved): buffer 0 is completed empty instead. */
    struct vmm_snap_writer w;
    ck_assert_int_eq(net_save(&w), 0);
    snap_writer_fini(&w);
    ck_assert_uint_eq(td_used_idx(&d), 2);
    uint32_t id, len;
    td_used_elem(&d, 1, &id, &len);
    ck_assert_uint_eq(id, 0);
    ck_assert_uint_eq(len, 0);
}
END_TEST

static Suite *net_suite(void)
{
    Suite *s = suite_create("virtio-net");
    TCase *tc = tcase_create("tap");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_net_create_errors);
    tcase_add_test(tc, test_net_config_and_link);
    tcase_add_test(tc, test_net_tx_and_hostile_chains);
    tcase_add_test(tc, test_net_tx_checksum_offload);
    tcase_add_test(tc, test_net_rx_offloads_follow_features);
    tcase_add_test(tc, test_net_rx);
    tcase_add_test(tc, test_net_rx_mergeable);
    tcase_add_test(tc, test_net_rate_limit);
    tcase_add_test(tc, test_net_multiqueue);
    tcase_add_test(tc, test_net_snapshot_round_trip);
    tcase_add_test(tc, test_net_snapshot_completes_buffers_that_cannot_go_back);
    suite_add_tcase(s, tc);
    return s;
}

static void print_log(void *opaque, enum vmm_log_level level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "libvmm %s: %s\n", vmm_log_level_name(level), msg);
}

int main(void)
{
    vmm_log_set_handler(print_log, NULL, VMM_LOG_WARN);
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        printf("skipped: /dev/net/tun is missing (CI runs as root with it)\n");
        return 77;
    }
    return vmm_test_run_suite(net_suite());
}
