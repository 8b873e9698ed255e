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
 * Each of the 16 device configurations has a tap of its own, made once,
 * persistent, in a network namespace of the target's own where it can make
 * one (root; else named after the process), and a device on it made at its
 * first input and kept (fuzz_mmio.h's fm_begin/fm_end): between inputs the
 * device is reset through its transport, its link set up again, and the
 * frames its tap queued for it and the guest's frames on the packet socket
 * are dropped, so every input starts from the same state. A rate-limited
 * device whose buckets let a frame through is destroyed after the input
 * (the next one gets a new device with full buckets, as the first did), and
 * any device after KEEP_RUNS inputs (so that destroy's checks run too).
 *
 * Checked: no memory error, UB or leak (the sanitizers); no access to guest
 * memory after a reset or destroy; destroy leaves no fd on the event loop;
 * the number of active queue pairs stays within what the device offers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <dirent.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/virtio_net.h>

#include "fuzz_mmio.h"

#define ETHERTYP 0x88b5 /* IEEE local experimental */

enum op { OP_RX = FM_OP_COUNT, OP_LINK, OP_STATS, OP_COUNT };

#define NCFG      16   /* device configurations: the input's first byte, low 4 bits */
#define MAX_FDS   2    /* tap queues per device */
#define KEEP_RUNS 4096 /* inputs a device serves before it is destroyed and made again */

/* Configuration c: its tap (multiqueue for two pairs when c & 1), and the
 * device on it while it lives. */
static struct {
    char name[IFNAMSIZ];
    int pkt; /* packet socket on it: frames in, the guest's frames out */
    bool live;
    struct fm f;
    struct vmm_event_loop *loop;
    int fds[MAX_FDS]; /* the device's tap queues (found in /proc/self/fd) */
    unsigned nfds, runs;
} cfgs[NCFG];
static bool own_ns, inited;

/* No IPv6 on the taps: its router solicitations and reports would reach
 * the devices at times of the kernel's choosing, not the input's. */
static void no_ipv6(const char *conf)
{
    char at[96];
    snprintf(at, sizeof(at), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", conf);
    int fd = open(at, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t w = write(fd, "1", 1);
        (void)w; /* not root: the frames are noise the checks allow */
        close(fd);
    }
}

static void make_tap(unsigned i, bool multiqueue)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    FZ_CHECK(fd >= 0);
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    if (multiqueue)
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", cfgs[i].name);
    FZ_CHECK(ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0);
    close(fd);
    no_ipv6(cfgs[i].name);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
    ifr.ifr_flags |= IFF_UP;
    FZ_CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    close(s);
    cfgs[i].pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETHERTYP));
    FZ_CHECK(cfgs[i].pkt >= 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_protocol = htons(ETHERTYP),
                              .sll_ifindex = (int)if_nametoindex(cfgs[i].name)};
    FZ_CHECK(bind(cfgs[i].pkt, (struct sockaddr *)&sll, sizeof(sll)) == 0);
}

static void close_device(unsigned c)
{
    fm_close(&cfgs[c].f);
    vmm_event_loop_destroy(cfgs[c].loop);
    cfgs[c].live = false;
}

/* At exit: destroy the devices (their checks run), then the taps unless
 * the namespace takes them. */
static void finish(void)
{
    for (unsigned c = 0; c < NCFG; c++)
        if (cfgs[c].live)
            close_device(c);
    for (unsigned i = 0; i < NCFG && !own_ns; i++) {
        struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | (i & 1 ? IFF_MULTI_QUEUE : 0)};
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", cfgs[i].name);
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
    own_ns = unshare(CLONE_NEWNET) == 0;
    if (own_ns)
        no_ipv6("default");
    for (unsigned i = 0; i < NCFG; i++) {
        if (own_ns)
            snprintf(cfgs[i].name, sizeof(cfgs[i].name), "fz%u", i);
        else
            snprintf(cfgs[i].name, sizeof(cfgs[i].name), "fz%u.%d", i, (int)getpid() % 100000);
        make_tap(i, i & 1);
    }
    atexit(finish);
    inited = true;
}

/* Whether fd is a tap queue of a device that lives (not c's). */
static bool known_tap(int fd, unsigned c)
{
    for (unsigned k = 0; k < NCFG; k++)
        for (unsigned i = 0; k != c && cfgs[k].live && i < cfgs[k].nfds; i++)
            if (cfgs[k].fds[i] == fd)
                return true;
    return false;
}

/* Configuration c's tap queues: the fds open on /dev/net/tun that no other
 * device holds (the target closes its own). */
static void find_taps(unsigned c)
{
    struct stat tun;
    FZ_CHECK(stat("/dev/net/tun", &tun) == 0);
    DIR *d = opendir("/proc/self/fd");
    FZ_CHECK(d);
    cfgs[c].nfds = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) ||
            st.st_rdev != tun.st_rdev || known_tap(fd, c))
            continue;
        FZ_CHECK(cfgs[c].nfds < MAX_FDS);
        cfgs[c].fds[cfgs[c].nfds++] = fd;
    }
    closedir(d);
}

/* Configuration c's device, made now if it has none. */
static void open_device(unsigned c, const struct vmm_virtio_net_config *nc)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    FZ_CHECK(vmm_virtio_net_create(nc, &dev) == 0);
    FZ_CHECK(vmm_event_loop_create(&cfgs[c].loop) == 0);
    fm_open(&cfgs[c].f, &dev, nc->queue_pairs > 1 ? 5 : 2, cfgs[c].loop);
    find_taps(c);
    FZ_CHECK(cfgs[c].nfds == nc->queue_pairs);
    /* The tap has a queue again: its carrier is on, and the kernel sends
     * frames through it once its link watch has seen that (until then it
     * drops them). Wait for that, as a device kept from before has. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(s >= 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", cfgs[c].name);
    for (int i = 0; i < 5000; i++) {
        FZ_CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
        if (ifr.ifr_flags & IFF_RUNNING)
            break;
        usleep(200);
    }
    FZ_CHECK(ifr.ifr_flags & IFF_RUNNING);
    FZ_CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0); /* after the link watch's work (RTNL) */
    close(s);
    cfgs[c].live = true;
    cfgs[c].runs = 0;
}

/* A frame from the network to the guest: Ethernet header to the device's
 * address or broadcast, the input's payload and length. */
static void send_frame(unsigned c, struct fz *in)
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
    ssize_t w = send(cfgs[c].pkt, frame, len, MSG_DONTWAIT);
    (void)w; /* a full queue or a down tap drops it, as a network would */
}

/* Drop what the network has for configuration c: the guest's frames on
 * the packet socket, and (the device reset, so it reads none) the frames
 * its tap queued for it, which a new device would not find. */
static void drain(unsigned c)
{
    static uint8_t buf[65536 + 64];
    while (recv(cfgs[c].pkt, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    for (unsigned i = 0; i < cfgs[c].nfds; i++)
        while (read(cfgs[c].fds[i], buf, sizeof(buf)) > 0)
            ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!inited)
        init_once();
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    unsigned c = cfg % NCFG, tap = cfg & 1;
    struct vmm_virtio_net_config nc =
        VMM_INIT(struct vmm_virtio_net_config, .tap = cfgs[c].name, .queue_pairs = tap ? 2 : 1,
                 .mtu = cfg & 2 ? 1400 : 0, .queue_size = cfg & 4 ? 16 : 256,
                 .tx_packets_per_sec = cfg & 8 ? 100 : 0, .rx_bytes_per_sec = cfg & 8 ? 4096 : 0);
    if (!cfgs[c].live)
        open_device(c, &nc);
    struct fm *f = &cfgs[c].f;
    fm_begin(f);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(f->m);
    FZ_CHECK(vmm_virtio_net_set_link(t, true) == 0);
    struct vmm_virtio_net_stats st0 = VMM_INIT(struct vmm_virtio_net_stats);
    FZ_CHECK(vmm_virtio_net_get_stats(t, &st0) == 0);
    for (unsigned steps = 0; fz_more(&in) && steps < 1024; steps++) {
        unsigned op = fz_u8(&in) % OP_COUNT;
        switch (op) {
        case OP_RX:
            send_frame(c, &in);
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
            fm_step(f, &in, op);
            break;
        }
    }
    fm_end(f);
    drain(c);
    struct vmm_virtio_net_stats st = VMM_INIT(struct vmm_virtio_net_stats);
    FZ_CHECK(vmm_virtio_net_get_stats(t, &st) == 0);
    FZ_CHECK(st.queue_pairs_active == 1);
    bool spent = (cfg & 8) && (st.tx_packets != st0.tx_packets || st.rx_packets != st0.rx_packets);
    if (spent || ++cfgs[c].runs == KEEP_RUNS)
        close_device(c);
    return 0;
}
