/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net on real taps, over virtio-mmio with an event loop: the input
 * picks the device (one queue pair, or two with the control queue; an MTU,
 * a queue size, rate limits) and then plays a hostile guest (fuzz_mmio.h's
 * language: transmit chains with any header, lengths, directions and
 * fragmentation, receive buffers of any shape, control commands, resets),
 * while the network side sends it frames through a packet socket on the
 * tap, and the link goes down and up.
 *
 * The taps are made once, persistent, in a network namespace of the
 * target's own where it can make one (root; else named after the process),
 * so each input attaches a new device to an existing tap as vmm-run does
 * with one the user made.
 *
 * Checked: no memory error, UB or leak (the sanitizers); destroy leaves no
 * fd on the event loop and touches no guest memory afterwards; the number
 * of active queue pairs stays within what the device offers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmm/virtio_net.h>

#include "fuzz_mmio.h"

#define ETHERTYP 0x88b5 /* IEEE local experimental */

enum op { OP_RX = FM_OP_COUNT, OP_LINK, OP_STATS, OP_COUNT };

/* taps[0]: one queue pair; taps[1]: multiqueue, for two pairs. */
static struct {
    char name[IFNAMSIZ];
    int pkt; /* packet socket on it: frames in, the guest's frames out */
} taps[2];
static struct vmm_event_loop *loop;

static void make_tap(unsigned i, bool multiqueue)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    FZ_CHECK(fd >= 0);
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    if (multiqueue)
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", taps[i].name);
    FZ_CHECK(ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0);
    close(fd);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
    ifr.ifr_flags |= IFF_UP;
    FZ_CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    close(s);
    taps[i].pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETHERTYP));
    FZ_CHECK(taps[i].pkt >= 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYP),
                              .sll_ifindex = (int)if_nametoindex(taps[i].name)};
    FZ_CHECK(bind(taps[i].pkt, (struct sockaddr *)&sll, sizeof(sll)) == 0);
}

static void remove_taps(void)
{
    for (unsigned i = 0; i < 2; i++) {
        struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | (i ? IFF_MULTI_QUEUE : 0)};
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", taps[i].name);
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0)
            (void)ioctl(fd, TUNSETPERSIST, 0);
        if (fd >= 0)
            close(fd);
    }
}

static void init_once(void)
{
    fz_quiet_logs();
    bool own_ns = unshare(CLONE_NEWNET) == 0;
    for (unsigned i = 0; i < 2; i++) {
        if (own_ns)
            snprintf(taps[i].name, sizeof(taps[i].name), "fz%u", i);
        else
            snprintf(taps[i].name, sizeof(taps[i].name), "fz%u.%d", i, (int)getpid() % 100000);
        make_tap(i, i == 1);
    }
    if (!own_ns)
        atexit(remove_taps);
    FZ_CHECK(vmm_event_loop_create(&loop) == 0);
}

/* A frame from the network to the guest: Ethernet header to the device's
 * address or broadcast, the input's payload and length. */
static void send_frame(unsigned tap, struct fz *in)
{
    static uint8_t frame[9216];
    uint16_t len = fz_u16(in) % sizeof(frame);
    size_t take;
    const uint8_t *src = fz_take(in, fz_u8(in), &take);
    memset(frame, 0xff, 6); /* broadcast: the tap takes it whatever the MAC */
    memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
    frame[12] = ETHERTYP >> 8;
    frame[13] = ETHERTYP & 0xff;
    memcpy(frame + 14, src, take < sizeof(frame) - 14 ? take : sizeof(frame) - 14);
    if (len < 14)
        len = 14;
    ssize_t w = send(taps[tap].pkt, frame, len, MSG_DONTWAIT);
    (void)w; /* a full queue or a down tap drops it, as a network would */
}

static void drain(unsigned tap)
{
    uint8_t buf[2048];
    while (recv(taps[tap].pkt, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        init_once();
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    unsigned tap = cfg & 1;
    struct vmm_virtio_net_config nc =
        VMM_INIT(struct vmm_virtio_net_config, .tap = taps[tap].name, .queue_pairs = tap ? 2 : 1,
                 .mtu = cfg & 2 ? 1400 : 0, .queue_size = cfg & 4 ? 16 : 256,
                 .tx_packets_per_sec = cfg & 8 ? 100 : 0, .rx_bytes_per_sec = cfg & 8 ? 4096 : 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    FZ_CHECK(vmm_virtio_net_create(&nc, &dev) == 0);
    struct fm f;
    fm_open(&f, &dev, tap ? 5 : 2, loop);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(f.m);
    for (unsigned steps = 0; fz_more(&in) && steps < 1024; steps++) {
        unsigned op = fz_u8(&in) % OP_COUNT;
        switch (op) {
        case OP_RX:
            send_frame(tap, &in);
            break;
        case OP_LINK:
            FZ_CHECK(vmm_virtio_net_set_link(t, fz_u8(&in) & 1) == 0);
            break;
        case OP_STATS: {
            struct vmm_virtio_net_stats st = VMM_INIT(struct vmm_virtio_net_stats);
            FZ_CHECK(vmm_virtio_net_get_stats(t, &st) == 0);
            FZ_CHECK(st.queue_pairs_active >= 1 && st.queue_pairs_active <= nc.queue_pairs);
            break;
        }
        default:
            fm_step(&f, &in, op);
            break;
        }
    }
    fm_close(&f);
    drain(tap);
    return 0;
}
