/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio network device (virtio 1.2 section 5.1) over a Linux tap
 * (Documentation/networking/tuntap.rst): receiveq 2k and transmitq 2k+1 of
 * queue pair k are served from tap queue k, the control queue (with more
 * than one pair) takes VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET.
 *
 * Transmit: the guest's virtio-net header is copied out and checked against
 * the negotiated offloads (a guest cannot have the kernel do work it did not
 * ask for, nor change the header between the check and the write), then
 * the header and the frame, read straight from guest memory, go to the tap
 * in one writev. Receive: chains are popped into a per-pair stash until they
 * can hold the largest frame the tap may send (one chain without
 * VIRTIO_NET_F_MRG_RXBUF), and one readv puts the next frame straight into
 * them; the header the kernel wrote gets num_buffers and the chains used are
 * pushed. A frame larger than the guest's buffers is read into a bounce
 * tail and dropped (counted), the buffers kept for the next one.
 *
 * Nothing blocks the event loop: the tap fds are non-blocking, each readiness
 * event moves a bounded burst, a tap that takes no more frames (EAGAIN)
 * parks the chain and waits for EPOLLOUT, and the tap is watched for input
 * only while the guest has posted receive buffers and the receive rate limit
 * allows, so a guest that posts none costs no CPU.
 *
 * With vhost-net each pair has a vhost-net instance that runs its two rings
 * in the kernel, straight on the tap queue: guest notifications reach it
 * through the transport's notification eventfds, its interrupts come back
 * through call eventfds the event loop relays; the control queue and the
 * tap's offloads stay here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_net.h>

#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define HDR VMM_VIRTIO_NET_HDR_SIZE

/* Header fields (struct virtio_net_hdr_v1). */
#define HDR_F_NEEDS_CSUM 1u
#define GSO_NONE         0u
#define GSO_TCPV4        1u
#define GSO_UDP          3u
#define GSO_TCPV6        4u
#define GSO_ECN          0x80u
#define HDR_NUM_BUFFERS  10 /* offset of num_buffers */

/* Configuration space (struct virtio_net_config up to mtu). */
#define NET_CONFIG_SIZE 12
#define NET_S_LINK_UP   1u

/* Control queue (section 5.1.6.5). */
#define CTRL_OK              0
#define CTRL_ERR             1
#define CTRL_MQ              4
#define CTRL_MQ_VQ_PAIRS_SET 0

/* The largest frame either way: a 64 KiB GSO payload with an Ethernet and a
 * VLAN header. */
#define NET_MAX_FRAME (65535u + 14 + 4)
/* Frames moved per readiness event or notification before the loop gets
 * to its other fds (the fd or queue is looked at again right after). */
#define NET_BURST 64
/* Receive chains a pair keeps popped ahead of the next frame. */
#define NET_RX_STASH 64
/* iovecs of one transmitted frame (header included), and of one receive
 * (stash chains and the bounce tail). */
#define NET_TX_IOV 64
#define NET_RX_IOV 256

/* The device's features besides the offloads the tap accepts. */
#define NET_BASE_FEATURES                                                                          \
    (VMM_VIRTIO_NET_F_MAC | VMM_VIRTIO_NET_F_STATUS | VMM_VIRTIO_NET_F_MRG_RXBUF)
#define NET_HOST_OFFLOADS                                                                          \
    (VMM_VIRTIO_NET_F_CSUM | VMM_VIRTIO_NET_F_HOST_TSO4 | VMM_VIRTIO_NET_F_HOST_TSO6 |             \
     VMM_VIRTIO_NET_F_HOST_ECN | VMM_VIRTIO_NET_F_HOST_UFO)
#define NET_GUEST_GSO                                                                              \
    (VMM_VIRTIO_NET_F_GUEST_TSO4 | VMM_VIRTIO_NET_F_GUEST_TSO6 | VMM_VIRTIO_NET_F_GUEST_UFO)
/* What tap_probe_offloads can find. */
#define NET_TAP_OFFLOADS (NET_GUEST_GSO | VMM_VIRTIO_NET_F_GUEST_CSUM | VMM_VIRTIO_NET_F_GUEST_ECN)

/* A token bucket: rate per second, one second of burst. tokens may go
 * below zero (a frame is never split); the bucket is open while above. */
struct bucket {
    uint64_t rate; /* 0: unlimited */
    int64_t tokens;
    struct timespec last;
};

struct net;

/* The interrupt relay of one vhost ring: vhost signals fd when the guest
 * wants an interrupt for queue q; the event loop passes it to the transport
 * (virtio-mmio must set InterruptStatus, so it cannot go to an irqfd). */
struct net_call {
    struct net *n;
    unsigned q;
    int fd;
    bool watched;
};

struct net_pair {
    struct net *n;
    unsigned index;
    int fd; /* this pair's tap queue */
    bool watched;
    bool dead;     /* the tap failed for good: off the loop */
    bool detached; /* tap queue detached (IFF_DETACH_QUEUE) */
    uint32_t events;
    bool rx_wait; /* the guest has no receive buffers: wait for a notify */
    struct vmm_virtq_chain *stash[NET_RX_STASH];
    unsigned nstash;
    uint64_t stash_bytes;
    struct vmm_virtq_chain *tx_parked; /* the tap said EAGAIN for it */
    /* vhost-net: one instance per pair, running its rx and tx rings. */
    int vhost_fd;
    bool vhost_started; /* rings handed over (the driver set them up) */
    bool vhost_backend; /* the rings point at the tap */
    bool kick_taken[2];
    struct net_call call[2];
};

struct net {
    struct vmm_virtio_transport *t;
    struct vmm_event_loop *loop;
    char tap[IFNAMSIZ];
    uint8_t mac[6];
    uint16_t mtu;
    unsigned max_pairs, active_pairs;
    bool link_up;
    uint64_t features;     /* negotiated, set at activate */
    uint64_t tap_offloads; /* the guest-side features the tap can do */
    unsigned tun_offload;  /* TUN_F_* set on the tap at activation */
    unsigned tap_off_set;  /* the TUN_F_* the tap was last given (a reset and
                              an activation give it only a change: each
                              TUNSETOFFLOAD takes the kernel's RTNL lock) */
    uint64_t rx_need;      /* receive bytes (header included) that hold any frame */
    struct bucket tx_bytes, tx_pkts, rx_bytes, rx_pkts;
    bool tx_throttled, rx_throttled;
    int timer_fd;
    int ctl_fd; /* a socket for the tap's MTU (SIOCGIFMTU), opened at creation */
    bool timer_watched, timer_armed;
    struct vmm_virtio_net_stats stats;
    struct vmm_log_limit bad_tx_log, bad_rx_log, tap_log, ctrl_log;
    /* vhost-net: the kernel runs the pairs' rings (the control queue stays
     * here). */
    bool vhost;
    uint64_t vhost_features;
    bool vhost_running;
    bool vhost_paused; /* stopped for a snapshot: thaw starts it again */
    struct net_pair pair[VMM_VIRTIO_NET_MAX_PAIRS];
    /* Scratch, used under the lock: receive and transmit iovecs, the tail a
     * too-large frame lands in, and the copy of a frame whose buffers are
     * too fragmented for NET_TX_IOV. */
    struct iovec rx_iov[NET_RX_IOV];
    uint8_t rx_tail[HDR + NET_MAX_FRAME];
    uint8_t tx_bounce[NET_MAX_FRAME];
};

/* ---- rate limiting ---- */

static void bucket_init(struct bucket *b, uint64_t rate)
{
    b->rate = rate;
    b->tokens = rate > INT64_MAX ? INT64_MAX : (int64_t)rate;
    clock_gettime(CLOCK_MONOTONIC, &b->last);
}

/* Refill for the time gone by; true when the bucket lets a frame through. */
static bool bucket_open(struct bucket *b)
{
    if (!b->rate)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns =
        (int64_t)(now.tv_sec - b->last.tv_sec) * 1000000000 + (now.tv_nsec - b->last.tv_nsec);
    if (ns > 0) {
        int64_t cap = b->rate > INT64_MAX ? INT64_MAX : (int64_t)b->rate;
        unsigned __int128 add = (unsigned __int128)b->rate * (uint64_t)ns / 1000000000u;
        if (add > 0) { /* else keep last, so fractions add up */
            b->tokens =
                add >= (unsigned __int128)(cap - b->tokens) ? cap : b->tokens + (int64_t)add;
            b->last = now;
        }
    }
    return b->tokens > 0;
}

static void bucket_take(struct bucket *b, uint64_t n)
{
    if (!b->rate)
        return;
    /* Bounded below, so a long run of huge frames cannot wrap it. */
    int64_t floor = -(b->rate > INT64_MAX / 4 ? INT64_MAX / 4 : (int64_t)b->rate);
    b->tokens = (int64_t)n > b->tokens - floor ? floor : b->tokens - (int64_t)n;
}

/* Nanoseconds until the bucket holds a token again (0: it does). */
static uint64_t bucket_wait_ns(const struct bucket *b)
{
    if (!b->rate || b->tokens > 0)
        return 0;
    uint64_t need = (uint64_t)(1 - b->tokens);
    unsigned __int128 ns = (unsigned __int128)need * 1000000000u / b->rate + 1;
    return ns > 1000000000u ? 1000000000u : (uint64_t)ns;
}

static void arm_timer(struct net *n)
{
    if (n->timer_fd < 0 || n->timer_armed)
        return;
    uint64_t ns = 0;
    const struct bucket *all[] = {&n->tx_bytes, &n->tx_pkts, &n->rx_bytes, &n->rx_pkts};
    for (size_t i = 0; i < VMM_ARRAY_SIZE(all); i++) {
        uint64_t w = bucket_wait_ns(all[i]);
        if (w > ns)
            ns = w;
    }
    if (ns < 100000u)
        ns = 100000u; /* at most 10000 wake-ups a second */
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)}};
    if (timerfd_settime(n->timer_fd, 0, &its, NULL) == 0)
        n->timer_armed = true;
}

static bool rx_allowed(struct net *n)
{
    /* Both buckets refill, whatever the first says. */
    bool bytes_open = bucket_open(&n->rx_bytes);
    bool open = bucket_open(&n->rx_pkts) && bytes_open;
    if (!open && !n->rx_throttled) {
        n->rx_throttled = true;
        n->stats.throttled++;
        arm_timer(n);
    }
    return open;
}

static bool tx_allowed(struct net *n)
{
    /* Both buckets refill, whatever the first says. */
    bool bytes_open = bucket_open(&n->tx_bytes);
    bool open = bucket_open(&n->tx_pkts) && bytes_open;
    if (!open && !n->tx_throttled) {
        n->tx_throttled = true;
        n->stats.throttled++;
        arm_timer(n);
    }
    return open;
}

/* ---- the tap ---- */

static unsigned pair_rx_q(const struct net_pair *p)
{
    return 2 * p->index;
}

static unsigned pair_tx_q(const struct net_pair *p)
{
    return 2 * p->index + 1;
}

static bool pair_live(const struct net_pair *p)
{
    const struct net *n = p->n;
    return !p->dead && p->index < n->active_pairs && n->link_up && vmm_virtio_driver_ok(n->t);
}

/* Watch the pair's tap for what it is waiting for now (lock held). */
static void pair_update_watch(struct net_pair *p)
{
    if (!p->watched)
        return;
    uint32_t want = 0;
    if (pair_live(p) && !p->n->vhost) {
        if (!p->rx_wait && !p->n->rx_throttled &&
            vmm_virtq_ready(vmm_virtio_queue(p->n->t, pair_rx_q(p))))
            want |= EPOLLIN;
        if (p->tx_parked)
            want |= EPOLLOUT;
    }
    if (want != p->events && vmm_event_loop_modify(p->n->loop, p->fd, want) == 0)
        p->events = want;
}

/* The tap failed for good (it was deleted, say): stop watching it (a
 * paused fd leaves the epoll set, so its EPOLLERR cannot spin the loop). */
static void pair_kill(struct net_pair *p, int err)
{
    struct net *n = p->n;
    vmm_log_limited(&n->tap_log, VMM_VIRTIO_LOG_BUDGET, "virtio-net: tap %s queue %u: %s", n->tap,
                    p->index, vmm_strerror(err));
    p->dead = true;
    pair_update_watch(p);
}

static void pair_attach(struct net_pair *p, bool attach)
{
    struct net *n = p->n;
    if (n->max_pairs == 1 || p->detached == !attach)
        return;
    struct ifreq ifr = {.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE};
    if (ioctl(p->fd, TUNSETQUEUE, &ifr) < 0) {
        vmm_log_warn("virtio-net: tap %s: %s queue %u: %s", n->tap,
                     attach ? "attaching" : "detaching", p->index, vmm_strerror(-errno));
        return;
    }
    p->detached = !attach;
}

/* Use queue pairs [0, count): the other tap queues are detached so the
 * kernel steers no frames to them. */
static void vhost_pair_sync(struct net_pair *p);

static void set_active_pairs(struct net *n, unsigned count)
{
    n->active_pairs = count;
    n->stats.queue_pairs_active = count;
    /* A pair's vhost rings leave its tap queue before it is detached, and
     * come back after it is attached. */
    for (unsigned i = count; i < n->max_pairs; i++) {
        vhost_pair_sync(&n->pair[i]);
        pair_attach(&n->pair[i], false);
        pair_update_watch(&n->pair[i]);
    }
    for (unsigned i = 0; i < count && i < n->max_pairs; i++) {
        pair_attach(&n->pair[i], true);
        vhost_pair_sync(&n->pair[i]);
        pair_update_watch(&n->pair[i]);
    }
}

/* ---- receive ---- */

static void rx_push(struct vmm_virtq *q, struct vmm_virtq_chain *c, uint32_t len)
{
    if (vmm_virtq_push(q, c, len) < 0)
        vmm_log_debug("virtio-net: receive push failed");
}

/* Pop receive chains until the stash can take any frame (lock held).
 * Returns false when it holds none (the guest must post more). */
static bool rx_fill_stash(struct net_pair *p, struct vmm_virtq *q)
{
    struct net *n = p->n;
    bool mrg = n->features & VMM_VIRTIO_NET_F_MRG_RXBUF;
    unsigned max = mrg ? NET_RX_STASH : 1;
    while (p->nstash < max && (p->nstash == 0 || p->stash_bytes < n->rx_need)) {
        struct vmm_virtq_chain *c;
        if (vmm_virtq_pop(q, &c) <= 0)
            break;
        /* Receive buffers are device-writable and hold at least the header
         * (section 5.1.6.3.1); anything else is completed unused. */
        if (c->nr_readable || c->writable_len < HDR) {
            vmm_log_limited(&n->bad_rx_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-net: receive chain with %" PRIu64 " readable and %" PRIu64
                            " writable bytes refused",
                            c->readable_len, c->writable_len);
            rx_push(q, c, 0);
            continue;
        }
        p->stash[p->nstash++] = c;
        p->stash_bytes += c->writable_len;
    }
    return p->nstash > 0;
}

/* iovecs over the stash (as many chains as fit) and the bounce tail;
 * returns the count, *cap the guest bytes they cover. */
static int rx_build_iov(struct net_pair *p, uint64_t *cap)
{
    struct net *n = p->n;
    int k = 0;
    *cap = 0;
    for (unsigned i = 0; i < p->nstash && *cap < HDR + NET_MAX_FRAME; i++) {
        struct vmm_virtq_chain *c = p->stash[i];
        int r = vmm_virtq_chain_iov(c, true, 0, c->writable_len, n->rx_iov + k,
                                    NET_RX_IOV - 1 - (unsigned)k);
        if (r <= 0)
            break;
        k += r;
        *cap += c->writable_len;
    }
    n->rx_iov[k].iov_base = n->rx_tail;
    n->rx_iov[k].iov_len = sizeof(n->rx_tail);
    return k + 1;
}

/* Hand the frame of len bytes now in the first chains of the stash to the
 * guest (lock held). */
static void rx_deliver(struct net_pair *p, struct vmm_virtq *q, uint64_t len)
{
    struct net *n = p->n;
    unsigned used = 0;
    uint64_t left = len;
    while (left > 0 && used < p->nstash) {
        struct vmm_virtq_chain *c = p->stash[used++];
        uint64_t take = left < c->writable_len ? left : c->writable_len;
        left -= take;
    }
    uint16_t nb = (uint16_t)used;
    /* The kernel wrote the first ten bytes of the header; num_buffers is
     * ours (1 without mergeable buffers, section 5.1.6.4). */
    if (vmm_virtq_chain_write(p->stash[0], HDR_NUM_BUFFERS, &nb, sizeof(nb)) != sizeof(nb))
        vmm_log_debug("virtio-net: writing num_buffers failed");
    left = len;
    for (unsigned i = 0; i < used; i++) {
        struct vmm_virtq_chain *c = p->stash[i];
        uint64_t take = left < c->writable_len ? left : c->writable_len;
        left -= take;
        p->stash_bytes -= c->writable_len;
        vmm_virtq_chain_mark_dirty(c, take);
        rx_push(q, c, (uint32_t)take);
    }
    memmove(p->stash, p->stash + used, (p->nstash - used) * sizeof(p->stash[0]));
    p->nstash -= used;
    n->stats.rx_packets++;
    n->stats.rx_bytes += len - HDR;
    n->stats.rx_buffers += used;
    bucket_take(&n->rx_bytes, len - HDR);
    bucket_take(&n->rx_pkts, 1);
}

/* Move frames from the tap into the guest's receive buffers (lock held). */
static void rx_process(struct net_pair *p)
{
    struct net *n = p->n;
    if (!pair_live(p) || n->vhost)
        return;
    struct vmm_virtq *q = vmm_virtio_queue(n->t, pair_rx_q(p));
    if (!vmm_virtq_ready(q))
        return;
    for (unsigned burst = 0; burst < NET_BURST; burst++) {
        if (!rx_allowed(n))
            break;
        if (!rx_fill_stash(p, q)) {
            p->rx_wait = true;
            break;
        }
        uint64_t cap;
        ssize_t r;
        struct iovec one;
        bool cut = false; /* a read that filled the buffer: the frame was cut */
        if (p->stash[0]->writable_len > n->rx_need &&
            vmm_virtq_chain_iov(p->stash[0], true, 0, p->stash[0]->writable_len, &one, 1) == 1) {
            /* One buffer longer than any frame the tap sends (the common
             * case without mergeable buffers): a plain read, without
             * readv's iovec import and the bounce tail. The tap cuts a
             * frame longer than the buffer to its length (the tap's MTU
             * raised since activation), so a read that fills it is one of
             * those: dropped below. */
            cap = one.iov_len;
            r = read(p->fd, one.iov_base, one.iov_len);
            cut = r == (ssize_t)one.iov_len;
        } else {
            int niov = rx_build_iov(p, &cap);
            if (niov == 1) {
                /* The first chain spans more regions than NET_RX_IOV:
                 * unusable. */
                p->stash_bytes -= p->stash[0]->writable_len;
                rx_push(q, p->stash[0], 0);
                memmove(p->stash, p->stash + 1, (--p->nstash) * sizeof(p->stash[0]));
                continue;
            }
            r = readv(p->fd, n->rx_iov, niov);
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r < 0) {
            pair_kill(p, -errno);
            break;
        }
        if ((uint64_t)r < HDR || (uint64_t)r > cap || cut) {
            /* Larger than the buffers the guest gave (or no frame at all):
             * dropped, the buffers kept for the next one. */
            n->stats.rx_dropped++;
            continue;
        }
        rx_deliver(p, q, (uint64_t)r);
    }
    vmm_virtq_notify(q);
}

/* ---- transmit ---- */

/* Whether the guest's header asks only for what was negotiated. */
static bool tx_header_ok(const struct net *n, const uint8_t *h, uint64_t frame_len)
{
    uint8_t flags = h[0], gso = h[1];
    uint16_t csum_start, csum_offset;
    memcpy(&csum_start, h + 6, 2);
    memcpy(&csum_offset, h + 8, 2);
    if (flags & ~HDR_F_NEEDS_CSUM)
        return false;
    if (flags & HDR_F_NEEDS_CSUM) {
        if (!(n->features & VMM_VIRTIO_NET_F_CSUM) ||
            (uint64_t)csum_start + csum_offset + 2 > frame_len)
            return false;
    }
    if ((gso & GSO_ECN) && !(n->features & VMM_VIRTIO_NET_F_HOST_ECN))
        return false;
    switch (gso & ~GSO_ECN) {
    case GSO_NONE:
        return !(gso & GSO_ECN);
    case GSO_TCPV4:
        return n->features & VMM_VIRTIO_NET_F_HOST_TSO4;
    case GSO_TCPV6:
        return n->features & VMM_VIRTIO_NET_F_HOST_TSO6;
    case GSO_UDP:
        return n->features & VMM_VIRTIO_NET_F_HOST_UFO;
    default:
        return false;
    }
}

static void tx_drop(struct net *n, const char *why, const struct vmm_virtq_chain *c)
{
    n->stats.tx_dropped++;
    vmm_log_limited(&n->bad_tx_log, VMM_VIRTIO_LOG_BUDGET,
                    "virtio-net: transmit chain (%" PRIu64 " readable, %" PRIu64
                    " writable bytes) dropped: %s",
                    c->readable_len, c->writable_len, why);
}

/* Send chain's frame to the tap. 0: sent or dropped (complete the chain),
 * -EAGAIN: the tap is full (park it). */
static int tx_send(struct net_pair *p, struct vmm_virtq_chain *c)
{
    struct net *n = p->n;
    if (!n->link_up) {
        n->stats.tx_dropped++;
        return 0;
    }
    if (c->nr_writable) {
        tx_drop(n, "it has device-writable buffers", c);
        return 0;
    }
    if (c->readable_len < HDR) {
        tx_drop(n, "shorter than the virtio-net header", c);
        return 0;
    }
    uint64_t frame = c->readable_len - HDR;
    if (frame > NET_MAX_FRAME || frame < 14) {
        tx_drop(n, frame < 14 ? "shorter than an Ethernet header" : "longer than 65553 bytes", c);
        return 0;
    }
    /* Read once: the guest may rewrite its buffer while the kernel reads. */
    uint8_t hdr[HDR];
    if (vmm_virtq_chain_read(c, 0, hdr, HDR) != HDR) {
        tx_drop(n, "header unreadable", c);
        return 0;
    }
    if (!tx_header_ok(n, hdr, frame)) {
        tx_drop(n, "its header asks for an offload that was not negotiated", c);
        return 0;
    }
    memset(hdr + HDR_NUM_BUFFERS, 0, 2);
    struct iovec iov[NET_TX_IOV];
    iov[0] = (struct iovec){.iov_base = hdr, .iov_len = HDR};
    int k = vmm_virtq_chain_iov(c, false, HDR, frame, iov + 1, NET_TX_IOV - 1);
    if (k == -ENOSPC) {
        /* Too fragmented for one writev: copy it. */
        if (vmm_virtq_chain_read(c, HDR, n->tx_bounce, frame) != (int)frame) {
            tx_drop(n, "buffers unreadable", c);
            return 0;
        }
        iov[1] = (struct iovec){.iov_base = n->tx_bounce, .iov_len = frame};
        k = 1;
    } else if (k <= 0) {
        tx_drop(n, "buffers unreadable", c);
        return 0;
    }
    ssize_t w;
    do {
        w = writev(p->fd, iov, k + 1);
    } while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -EAGAIN;
    if (w < 0) {
        n->stats.tx_dropped++;
        vmm_log_limited(&n->tap_log, VMM_VIRTIO_LOG_BUDGET, "virtio-net: writing to tap %s: %s",
                        n->tap, vmm_strerror(-errno));
        return 0;
    }
    n->stats.tx_packets++;
    n->stats.tx_bytes += frame;
    bucket_take(&n->tx_bytes, frame);
    bucket_take(&n->tx_pkts, 1);
    return 0;
}

/* Send what the guest queued on the pair's transmitq (lock held). */
static void tx_process(struct net_pair *p)
{
    struct net *n = p->n;
    if (!vmm_virtio_driver_ok(n->t) || p->dead || n->vhost)
        return;
    struct vmm_virtq *q = vmm_virtio_queue(n->t, pair_tx_q(p));
    unsigned burst = 0;
    while (burst < NET_BURST * 4 && tx_allowed(n)) {
        struct vmm_virtq_chain *c = p->tx_parked;
        p->tx_parked = NULL;
        if (!c && vmm_virtq_pop(q, &c) <= 0)
            break;
        if (tx_send(p, c) == -EAGAIN) {
            p->tx_parked = c;
            break;
        }
        (void)vmm_virtq_push(q, c, 0);
        burst++;
    }
    /* A full burst: look again on the loop's next turn, after other fds. */
    if (burst == NET_BURST * 4 && n->t->kick)
        n->t->kick(n->t, pair_tx_q(p));
    vmm_virtq_notify(q);
    pair_update_watch(p);
}

/* ---- control queue ---- */

static unsigned ctrl_q(const struct net *n)
{
    return (n->features & VMM_VIRTIO_NET_F_MQ) ? 2 * n->max_pairs : 2;
}

static uint8_t ctrl_command(struct net *n, const struct vmm_virtq_chain *c)
{
    uint8_t head[2];
    uint16_t pairs;
    if (vmm_virtq_chain_read(c, 0, head, 2) != 2)
        return CTRL_ERR;
    if (head[0] == CTRL_MQ && head[1] == CTRL_MQ_VQ_PAIRS_SET &&
        (n->features & VMM_VIRTIO_NET_F_MQ) && c->readable_len == 4 &&
        vmm_virtq_chain_read(c, 2, &pairs, 2) == 2 && pairs >= 1 && pairs <= n->max_pairs) {
        set_active_pairs(n, pairs);
        for (unsigned i = 0; i < pairs; i++) {
            n->pair[i].rx_wait = false;
            rx_process(&n->pair[i]);
            tx_process(&n->pair[i]);
        }
        return CTRL_OK;
    }
    vmm_log_limited(&n->ctrl_log, VMM_VIRTIO_LOG_BUDGET,
                    "virtio-net: control command class %u command %u (%" PRIu64 " bytes) refused",
                    head[0], head[1], c->readable_len);
    return CTRL_ERR;
}

static void ctrl_process(struct net *n)
{
    struct vmm_virtq *q = vmm_virtio_queue(n->t, ctrl_q(n));
    struct vmm_virtq_chain *c;
    while (vmm_virtq_pop(q, &c) > 0) {
        n->stats.ctrl_cmds++;
        /* The ack goes in the first writable byte; no room: nothing to say. */
        if (c->writable_len == 0) {
            (void)vmm_virtq_push(q, c, 0);
            continue;
        }
        uint8_t ack = ctrl_command(n, c);
        uint32_t len = vmm_virtq_chain_write(c, 0, &ack, 1) == 1 ? 1 : 0;
        (void)vmm_virtq_push(q, c, len);
    }
    vmm_virtq_notify(q);
}

/* ---- vhost-net ---- */

static void call_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct net_call *c = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0)
        return;
    vmm_virtio_lock(c->n->t);
    if (c->n->vhost_running)
        vmm_virtq_interrupt(vmm_virtio_queue(c->n->t, c->q));
    vmm_virtio_unlock(c->n->t);
}

static int vhost_ioctl(int fd, unsigned long req, void *arg, const char *what)
{
    if (ioctl(fd, req, arg) == 0)
        return 0;
    int e = -errno;
    vmm_log_warn("virtio-net: vhost-net: %s: %s", what, vmm_strerror(e));
    return e;
}

/* Point the pair's rings at its tap queue while the pair is in use (the
 * device running, the link up, the pair active and attached), or at
 * nothing: the kernel stops moving its frames, and has finished with guest
 * memory when this returns. Lock held. */
static void vhost_pair_sync(struct net_pair *p)
{
    struct net *n = p->n;
    bool want = n->vhost_running && p->vhost_started && n->link_up && p->index < n->active_pairs &&
                !p->detached;
    if (want == p->vhost_backend)
        return;
    for (unsigned q = 0; q < 2; q++) {
        struct vhost_vring_file f = {.index = q, .fd = want ? p->fd : -1};
        if (vhost_ioctl(p->vhost_fd, VHOST_NET_SET_BACKEND, &f, "setting the back end") < 0)
            return;
    }
    p->vhost_backend = want;
}

/* The host address of [gpa, gpa + len), which must lie in one region. */
static int ring_ptr(struct net *n, vmm_gpa_t gpa, uint64_t len, bool write, __u64 *hva)
{
    void *ptr;
    unsigned access = VMM_ACCESS_READ | (write ? VMM_ACCESS_WRITE : 0);
    int r = vmm_memory_get_ptr(vmm_virtio_memory(n->t), gpa, len, access, &ptr);
    if (r == 0)
        *hva = (uintptr_t)ptr;
    return r;
}

/* Stop the kernel's rings and take the notifications back (lock held). */
static void vhost_stop(struct net *n)
{
    if (!n->vhost_running)
        return;
    n->vhost_running = false;
    for (unsigned i = 0; i < n->max_pairs; i++) {
        struct net_pair *p = &n->pair[i];
        vhost_pair_sync(p);
        for (unsigned q = 0; q < 2 && p->vhost_started; q++) {
            struct vhost_vring_state st = {.index = q};
            (void)ioctl(p->vhost_fd, VHOST_GET_VRING_BASE, &st); /* stops the ring */
        }
        for (unsigned q = 0; q < 2; q++) {
            if (p->kick_taken[q]) {
                (void)n->t->notify_fd(n->t, 2 * i + q, false);
                p->kick_taken[q] = false;
            }
        }
        p->vhost_started = false;
    }
}

/* Hand pair p's rings (vhost ring 0 is its receiveq, 1 its transmitq) to
 * its vhost-net instance: features, the guest memory map, each ring's
 * layout, call and kick eventfds (the kick is the transport's notification
 * eventfd, bound to an ioeventfd on a VM, so guest notifications go
 * straight to the kernel). A pair whose queues the driver did not set up
 * (no VIRTIO_NET_F_MQ) is left alone. Lock held. */
static int vhost_pair_start(struct net_pair *p, const struct vhost_memory *table)
{
    struct net *n = p->n;
    struct vmm_virtio_transport *t = n->t;
    unsigned size[2];
    vmm_gpa_t desc[2], drv[2], dev[2];
    for (unsigned q = 0; q < 2; q++)
        if (vmm_virtq_layout(vmm_virtio_queue(t, 2 * p->index + q), &size[q], &desc[q], &drv[q],
                             &dev[q]) < 0)
            return 0;
    /* Where the rings are: 0 after the driver's set-up, or a position a
     * snapshot saved (or quiesce took back from the kernel). */
    struct virtq_snap pos[2];
    for (unsigned q = 0; q < 2; q++)
        if (vmm_virtq_snap_save(vmm_virtio_queue(t, 2 * p->index + q), &pos[q]) < 0)
            return -EBUSY;
    __u64 f = n->features & n->vhost_features;
    int r;
    if ((r = vhost_ioctl(p->vhost_fd, VHOST_SET_FEATURES, &f, "features")) < 0 ||
        (r = vhost_ioctl(p->vhost_fd, VHOST_SET_MEM_TABLE, (void *)table, "memory table")) < 0)
        return r;
    p->vhost_started = true; /* from here vhost_stop undoes what was done */
    for (unsigned q = 0; q < 2; q++) {
        struct vhost_vring_state num = {.index = q, .num = size[q]};
        struct vhost_vring_state base = {.index = q, .num = pos[q].last_avail};
        struct vhost_vring_addr addr = {.index = q};
        struct vhost_vring_file call = {.index = q, .fd = p->call[q].fd};
        if ((r = ring_ptr(n, desc[q], 16ull * size[q], false, &addr.desc_user_addr)) < 0 ||
            (r = ring_ptr(n, drv[q], 6 + 2ull * size[q], false, &addr.avail_user_addr)) < 0 ||
            (r = ring_ptr(n, dev[q], 6 + 8ull * size[q], true, &addr.used_user_addr)) < 0 ||
            (r = vhost_ioctl(p->vhost_fd, VHOST_SET_VRING_NUM, &num, "ring size")) < 0 ||
            (r = vhost_ioctl(p->vhost_fd, VHOST_SET_VRING_BASE, &base, "ring base")) < 0 ||
            (r = vhost_ioctl(p->vhost_fd, VHOST_SET_VRING_ADDR, &addr, "ring addresses")) < 0 ||
            (r = vhost_ioctl(p->vhost_fd, VHOST_SET_VRING_CALL, &call, "call eventfd")) < 0)
            return r;
        int kick = t->notify_fd(t, 2 * p->index + q, true);
        if (kick < 0)
            return kick;
        p->kick_taken[q] = true;
        struct vhost_vring_file kf = {.index = q, .fd = kick};
        if ((r = vhost_ioctl(p->vhost_fd, VHOST_SET_VRING_KICK, &kf, "kick eventfd")) < 0)
            return r;
        /* Have the kernel look at the ring once: buffers the driver made
         * available while it was stopped (a snapshot, a restore) came with
         * notifications it did not see. */
        uint64_t one = 1;
        if (write(kick, &one, sizeof(one)) < 0)
            vmm_log_debug("virtio-net: kicking vhost ring %u: %s", q, vmm_strerror(-errno));
    }
    return 0;
}

/* Hand the pairs' rings to vhost-net at DRIVER_OK (lock held); the pairs
 * in use then get their tap queues. */
static int vhost_start(struct net *n)
{
    struct vmm_virtio_transport *t = n->t;
    struct vmm_memory *mem = vmm_virtio_memory(t);
    if (!t->notify_fd)
        return -ENOTSUP;
    unsigned nr = vmm_memory_region_count(mem);
    struct vhost_memory *table = calloc(1, sizeof(*table) + nr * sizeof(table->regions[0]));
    if (!table)
        return -ENOMEM;
    table->nregions = nr;
    for (unsigned i = 0; i < nr; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) < 0) {
            free(table);
            return -EIO;
        }
        table->regions[i] = (struct vhost_memory_region){
            .guest_phys_addr = info.gpa,
            .memory_size = info.len,
            .userspace_addr = (uintptr_t)info.host,
        };
    }
    n->vhost_running = true;
    int r = 0;
    for (unsigned i = 0; i < n->max_pairs && r == 0; i++)
        r = vhost_pair_start(&n->pair[i], table);
    free(table);
    if (r == 0 && !n->pair[0].vhost_started) {
        vmm_log_limited(&n->ctrl_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-net: the first queue pair is not ready at DRIVER_OK");
        r = -EINVAL;
    }
    if (r < 0) {
        vhost_stop(n);
        return r;
    }
    for (unsigned i = 0; i < n->max_pairs; i++)
        vhost_pair_sync(&n->pair[i]);
    return 0;
}

/* Open a vhost-net instance for pair p: owner, features (the first pair's
 * are the device's). Returns 0 or -errno (logged). */
static int vhost_open(struct net_pair *p)
{
    struct net *n = p->n;
    p->vhost_fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
    if (p->vhost_fd < 0) {
        int e = -errno;
        vmm_log_warn("virtio-net: opening /dev/vhost-net: %s%s", vmm_strerror(e),
                     e == -ENOENT ? " (modprobe vhost_net)" : "");
        return e;
    }
    __u64 f;
    int r = vhost_ioctl(p->vhost_fd, VHOST_SET_OWNER, NULL, "owner");
    if (r == 0)
        r = vhost_ioctl(p->vhost_fd, VHOST_GET_FEATURES, &f, "features");
    if (r < 0)
        return r;
    /* The tap keeps the virtio-net header (its IFF_VNET_HDR): vhost passes
     * it through rather than adding its own; no dirty log. */
    if (p->index == 0)
        n->vhost_features = f & ~((1ull << VHOST_NET_F_VIRTIO_NET_HDR) | (1ull << VHOST_F_LOG_ALL));
    return 0;
}

/* ---- snapshots ---- */

/*
 * The device's state in a snapshot: the config space (MAC, MTU, link
 * status), the negotiated features with the offloads they put on the tap
 * (TUNSETOFFLOAD again at restore, by activation), the queue pairs the
 * driver enabled through the control queue, the back end (the tap's name,
 * for the log: restore takes the tap it is given; vhost or not) and the
 * counters. Ring positions are the transport's (vhost-net's come back from
 * the kernel at quiesce).
 */
#define NET_SNAP_VERSION 1
struct net_image {
    uint32_t version;
    char tap[IFNAMSIZ];
    uint8_t mac[6];
    uint16_t mtu;
    uint32_t link_up, max_pairs, active_pairs, vhost, pad;
    uint64_t features, tap_offloads;
    uint32_t tun_offload, stats_size;
};
_Static_assert(sizeof(struct net_image) == 72, "no padding in the saved image");

/* Take pair p's chains back into the rings untouched (receive buffers
 * held but not filled, a frame the tap would not take yet), so a snapshot
 * holds none; the queues look again on the loop's next turn. */
static int pair_hand_back(struct net_pair *p)
{
    struct net *n = p->n;
    int r = 0;
    if (p->tx_parked) {
        if (vmm_virtq_unpop(vmm_virtio_queue(n->t, pair_tx_q(p)), &p->tx_parked, 1) < 0) {
            vmm_log_error("virtio-net: tap %s queue %u: a frame waiting for the tap cannot be "
                          "handed back",
                          n->tap, p->index);
            r = -EBUSY;
        } else {
            p->tx_parked = NULL;
            vmm_virtio_requeue(n->t, pair_tx_q(p));
        }
    }
    if (p->nstash) {
        struct vmm_virtq *q = vmm_virtio_queue(n->t, pair_rx_q(p));
        if (vmm_virtq_unpop(q, p->stash, p->nstash) < 0) {
            /* The driver had a malformed buffer completed after them, so
             * they cannot go back untouched: they are completed empty
             * instead (a driver drops a receive buffer shorter than the
             * header and posts another), so that no guest can keep its VM
             * from being saved. No interrupt: the guest finds them with
             * the next frame's. */
            vmm_log_info("virtio-net: tap %s queue %u: %u receive buffers completed empty for "
                         "a snapshot",
                         n->tap, p->index, p->nstash);
            for (unsigned i = 0; i < p->nstash; i++)
                rx_push(q, p->stash[i], 0);
        }
        p->nstash = 0;
        p->stash_bytes = 0;
        p->rx_wait = false;
        vmm_virtio_requeue(n->t, pair_rx_q(p));
    }
    pair_update_watch(p);
    return r;
}

static void net_thaw(void *opaque)
{
    struct net *n = opaque;
    if (!n->vhost_paused)
        return;
    n->vhost_paused = false;
    int r = vhost_start(n);
    if (r < 0) {
        vmm_log_error("virtio-net: vhost-net did not start again after a snapshot: %s",
                      vmm_strerror(r));
        vmm_virtio_set_needs_reset(n->t);
    }
}

/* Stop vhost-net's rings and take their positions into the transport's
 * queues: the next available entry from VHOST_GET_VRING_BASE, the used
 * index from guest memory (the kernel's word to the driver). With the tap
 * detached the kernel has finished every buffer it took; one still out
 * would be lost, so that refuses the snapshot. An interrupt the kernel
 * signalled and the loop has not passed on yet is raised now. */
static int vhost_quiesce(struct net *n)
{
    struct vmm_virtio_transport *t = n->t;
    int r = 0;
    bool lost = false; /* a ring position could not be read */
    n->vhost_running = false;
    n->vhost_paused = true;
    for (unsigned i = 0; i < n->max_pairs; i++) {
        struct net_pair *p = &n->pair[i];
        vhost_pair_sync(p);
        for (unsigned q = 0; q < 2 && p->vhost_started; q++) {
            struct vmm_virtq *vq = vmm_virtio_queue(t, 2 * i + q);
            struct vhost_vring_state st = {.index = q};
            unsigned size;
            vmm_gpa_t desc, drv, dev;
            uint16_t used;
            if (vhost_ioctl(p->vhost_fd, VHOST_GET_VRING_BASE, &st, "ring base") < 0 ||
                vmm_virtq_layout(vq, &size, &desc, &drv, &dev) < 0 ||
                vmm_memory_read_obj(vmm_virtio_memory(t), dev + 2, &used) < 0) {
                lost = true;
                continue;
            }
            if ((uint16_t)st.num != used) {
                vmm_log_error("virtio-net: vhost-net queue %u has %u buffers in flight: no "
                              "snapshot",
                              2 * i + q, (uint16_t)(st.num - used));
                r = -EBUSY;
            }
            struct virtq_snap pos = {
                .last_avail = (uint16_t)st.num, .used_idx = used, .signalled_used = used};
            vmm_virtq_snap_restore(vq, &pos);
        }
        for (unsigned q = 0; q < 2; q++) {
            uint64_t v;
            if (p->call[q].fd >= 0 && read(p->call[q].fd, &v, sizeof(v)) == sizeof(v))
                vmm_virtq_interrupt(vmm_virtio_queue(t, 2 * i + q));
            if (p->kick_taken[q]) {
                (void)t->notify_fd(t, 2 * i + q, false);
                p->kick_taken[q] = false;
            }
        }
        p->vhost_started = false;
    }
    if (lost) {
        /* Starting vhost again from positions it did not give would hand
         * the guest's buffers out twice: the driver resets the device. */
        vmm_log_error("virtio-net: vhost-net ring positions unknown: the device needs a reset");
        n->vhost_paused = false;
        vmm_virtio_set_needs_reset(t);
        return -EIO;
    }
    if (r < 0) {
        net_thaw(n);
        return r;
    }
    vmm_virtio_mark_all_dirty(t, "virtio-net: vhost-net");
    return 0;
}

static int net_quiesce(void *opaque)
{
    struct net *n = opaque;
    if (n->vhost_running)
        return vhost_quiesce(n);
    int r = 0;
    for (unsigned i = 0; i < n->max_pairs; i++) {
        int e = pair_hand_back(&n->pair[i]);
        if (e < 0)
            r = e;
    }
    return r;
}

static int net_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    struct net *n = opaque;
    struct net_image im = {
        .version = NET_SNAP_VERSION,
        .mtu = n->mtu,
        .link_up = n->link_up,
        .max_pairs = n->max_pairs,
        .active_pairs = n->active_pairs,
        .vhost = n->vhost,
        .features = n->features,
        .tap_offloads = n->tap_offloads,
        .tun_offload = n->tun_offload,
        .stats_size = sizeof(n->stats),
    };
    memcpy(im.tap, n->tap, sizeof(im.tap));
    memcpy(im.mac, n->mac, sizeof(im.mac));
    snap_put(w, &im, sizeof(im));
    snap_put(w, &n->stats, sizeof(n->stats));
    return 0;
}

static int net_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct net *n = opaque;
    struct net_image im;
    struct vmm_virtio_net_stats st;
    const char *bad = NULL;
    if (snap_get(r, &im, sizeof(im)) < 0 || im.stats_size != sizeof(st) ||
        snap_get(r, &st, sizeof(st)) < 0 || st.size != sizeof(st))
        bad = "truncated";
    else if (im.version != NET_SNAP_VERSION)
        bad = "version";
    else if (!memchr(im.tap, '\0', sizeof(im.tap)) || !im.tap[0])
        bad = "tap name";
    else if (im.mac[0] & 1)
        bad = "MAC address";
    else if ((im.mtu && im.mtu < 68) || !im.mtu != !(n->t->offered & VMM_VIRTIO_NET_F_MTU))
        bad = "MTU";
    else if (im.link_up > 1)
        bad = "link status";
    else if (im.features != n->features)
        bad = "features";
    else if (im.active_pairs < 1 || im.active_pairs > im.max_pairs ||
             (im.active_pairs > 1 && !(im.features & VMM_VIRTIO_NET_F_MQ)) ||
             st.queue_pairs_active != im.active_pairs)
        bad = "queue pairs";
    else if (im.tun_offload != n->tun_offload || (im.tap_offloads & ~NET_TAP_OFFLOADS))
        bad = "tap offloads";
    else if (im.vhost > 1 || im.pad)
        bad = "back end";
    if (bad) {
        vmm_log_error("restore: malformed virtio-net state (%s)", bad);
        return -EBADMSG;
    }
    if (im.max_pairs != n->max_pairs || im.vhost != n->vhost ||
        (im.tap_offloads & ~n->tap_offloads)) {
        vmm_log_error("restore: virtio-net on tap %s is not the device saved (%u queue pairs%s, "
                      "offloads 0x%" PRIx64 " on tap %s)",
                      n->tap, im.max_pairs, im.vhost ? ", vhost-net" : "", im.tap_offloads, im.tap);
        return -EINVAL;
    }
    if (strcmp(im.tap, n->tap) != 0)
        vmm_log_info("restore: virtio-net saved on tap %s goes on tap %s", im.tap, n->tap);
    memcpy(n->mac, im.mac, sizeof(n->mac));
    n->mtu = im.mtu;
    n->link_up = im.link_up;
    n->stats = st;
    if (vmm_virtio_driver_ok(n->t))
        set_active_pairs(n, im.active_pairs);
    for (unsigned i = 0; i < n->max_pairs; i++) {
        vhost_pair_sync(&n->pair[i]);
        pair_update_watch(&n->pair[i]);
    }
    return 0;
}

static const struct virtio_snap_ops net_snap = {
    .quiesce = net_quiesce, .save = net_snap_save, .restore = net_snap_restore, .thaw = net_thaw};

/* ---- device callbacks ---- */

static void pair_event(void *opaque, int fd, uint32_t events)
{
    (void)fd;
    struct net_pair *p = opaque;
    struct net *n = p->n;
    vmm_virtio_lock(n->t);
    if (events & EPOLLOUT)
        tx_process(p);
    /* EPOLLERR (the tap went away) comes only while something is watched:
     * the read or write that follows sees the error and stops the pair. */
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        rx_process(p);
    pair_update_watch(p);
    vmm_virtio_unlock(n->t);
}

static void timer_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct net *n = opaque;
    uint64_t expirations;
    if (read(fd, &expirations, sizeof(expirations)) < 0)
        return;
    vmm_virtio_lock(n->t);
    n->timer_armed = false;
    n->rx_throttled = n->tx_throttled = false;
    for (unsigned i = 0; i < n->active_pairs; i++) {
        tx_process(&n->pair[i]);
        pair_update_watch(&n->pair[i]);
    }
    vmm_virtio_unlock(n->t);
}

static int net_attach(void *opaque, struct vmm_virtio_transport *t)
{
    struct net *n = opaque;
    n->t = t;
    t->snap = &net_snap;
    n->loop = vmm_virtio_event_loop(t);
    if (!n->loop) {
        vmm_log_error("virtio-net: the transport has no event loop");
        return -EINVAL;
    }
    for (unsigned i = 0; i < n->max_pairs; i++) {
        int r = vmm_event_loop_add(n->loop, n->pair[i].fd, 0, pair_event, &n->pair[i]);
        if (r < 0)
            return r;
        n->pair[i].watched = true;
    }
    for (unsigned i = 0; n->vhost && i < 2 * n->max_pairs; i++) {
        struct net_call *c = &n->pair[i / 2].call[i % 2];
        c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->fd < 0)
            return -errno;
        int r = vmm_event_loop_add(n->loop, c->fd, EPOLLIN, call_event, c);
        if (r < 0)
            return r;
        c->watched = true;
    }
    if (n->tx_bytes.rate || n->tx_pkts.rate || n->rx_bytes.rate || n->rx_pkts.rate) {
        n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (n->timer_fd < 0)
            return -errno;
        int r = vmm_event_loop_add(n->loop, n->timer_fd, EPOLLIN, timer_event, n);
        if (r < 0)
            return r;
        n->timer_watched = true;
    }
    return 0;
}

static void net_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct net *n = opaque;
    uint8_t cfg[NET_CONFIG_SIZE] = {0};
    uint16_t status = n->link_up ? NET_S_LINK_UP : 0;
    uint16_t pairs = (uint16_t)n->max_pairs;
    memcpy(cfg, n->mac, 6);
    memcpy(cfg + 6, &status, 2);
    memcpy(cfg + 8, &pairs, 2);
    memcpy(cfg + 10, &n->mtu, 2);
    memcpy(data, cfg + offset, len); /* the transport checked the range */
}

/* The tap's MTU now (frames it sends are at most that plus the Ethernet
 * and VLAN headers, without GSO). */
static unsigned tap_mtu(const struct net *n)
{
    struct ifreq ifr = {0};
    memcpy(ifr.ifr_name, n->tap, sizeof(ifr.ifr_name));
    unsigned mtu = 1500;
    if (n->ctl_fd >= 0 && ioctl(n->ctl_fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
        mtu = (unsigned)ifr.ifr_mtu;
    return mtu;
}

static int net_activate(void *opaque, uint64_t features)
{
    struct net *n = opaque;
    n->features = features;
    /* The receive offloads the guest takes, for the tap (TUN_F_* need
     * TUN_F_CSUM, as GUEST_TSO* need GUEST_CSUM). */
    unsigned off = 0;
    if (features & VMM_VIRTIO_NET_F_GUEST_CSUM) {
        off |= TUN_F_CSUM;
        if (features & VMM_VIRTIO_NET_F_GUEST_TSO4)
            off |= TUN_F_TSO4;
        if (features & VMM_VIRTIO_NET_F_GUEST_TSO6)
            off |= TUN_F_TSO6;
        if ((features & VMM_VIRTIO_NET_F_GUEST_ECN) && (off & (TUN_F_TSO4 | TUN_F_TSO6)))
            off |= TUN_F_TSO_ECN;
        if (features & VMM_VIRTIO_NET_F_GUEST_UFO)
            off |= TUN_F_UFO;
    }
    if (off != n->tap_off_set) {
        if (ioctl(n->pair[0].fd, TUNSETOFFLOAD, (unsigned long)off) < 0) {
            int e = -errno;
            vmm_log_error("virtio-net: tap %s: offloads 0x%x: %s", n->tap, off, vmm_strerror(e));
            return e;
        }
        n->tap_off_set = off;
    }
    n->tun_offload = off;
    uint64_t frame =
        (off & (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO)) ? NET_MAX_FRAME : tap_mtu(n) + 14u + 4u;
    n->rx_need = HDR + (frame < NET_MAX_FRAME ? frame : NET_MAX_FRAME);
    set_active_pairs(n, 1);
    return n->vhost ? vhost_start(n) : 0;
}

static void pair_drop_chains(struct net_pair *p, bool rx, bool tx)
{
    if (rx) {
        for (unsigned i = 0; i < p->nstash; i++)
            vmm_virtq_chain_free(p->stash[i]);
        p->nstash = 0;
        p->stash_bytes = 0;
        p->rx_wait = false;
    }
    if (tx) {
        vmm_virtq_chain_free(p->tx_parked);
        p->tx_parked = NULL;
    }
}

static void net_reset(void *opaque)
{
    struct net *n = opaque;
    vhost_stop(n);
    for (unsigned i = 0; i < n->max_pairs; i++)
        pair_drop_chains(&n->pair[i], true, true);
    n->features = 0;
    n->tun_offload = 0;
    n->vhost_paused = false;
    if (n->tap_off_set) {
        if (ioctl(n->pair[0].fd, TUNSETOFFLOAD, 0ul) < 0)
            vmm_log_debug("virtio-net: tap %s: clearing offloads: %s", n->tap,
                          vmm_strerror(-errno));
        else
            n->tap_off_set = 0;
    }
    /* Before DRIVER_OK nothing is watched (pair_live). */
    set_active_pairs(n, 1);
    if (n->timer_armed) {
        struct itimerspec off = {0};
        (void)timerfd_settime(n->timer_fd, 0, &off, NULL);
        n->timer_armed = false;
    }
    n->rx_throttled = n->tx_throttled = false;
}

static void net_queue_notify(void *opaque, unsigned index)
{
    struct net *n = opaque;
    if ((n->features & VMM_VIRTIO_NET_F_CTRL_VQ) && index == ctrl_q(n)) {
        ctrl_process(n);
        return;
    }
    unsigned pairs = (n->features & VMM_VIRTIO_NET_F_MQ) ? n->max_pairs : 1;
    if (index >= 2 * pairs)
        return;
    struct net_pair *p = &n->pair[index / 2];
    if (index % 2 == 0) {
        /* New buffers matter only to a pair that stopped for want of them:
         * otherwise the tap is watched (level-triggered) and its next frame
         * brings rx_process, and a read now would most often find it empty. */
        bool waited = p->rx_wait;
        p->rx_wait = false;
        if (waited)
            rx_process(p);
        pair_update_watch(p);
    } else {
        tx_process(p);
    }
}

static void net_queue_reset(void *opaque, unsigned index)
{
    struct net *n = opaque;
    if (n->vhost_running && index < 2 * n->max_pairs) {
        /* vhost-net cannot reset one ring: the device starts over. */
        vmm_log_limited(&n->ctrl_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-net: queue %u reset with vhost-net: the device needs a reset",
                        index);
        vhost_stop(n);
        vmm_virtio_set_needs_reset(n->t);
        return;
    }
    if (index < 2 * n->max_pairs) {
        struct net_pair *p = &n->pair[index / 2];
        pair_drop_chains(p, index % 2 == 0, index % 2 == 1);
        pair_update_watch(p);
    }
}

static void net_free(struct net *n)
{
    for (unsigned i = 0; i < n->max_pairs; i++) {
        struct net_pair *p = &n->pair[i];
        if (p->watched)
            (void)vmm_event_loop_remove(n->loop, p->fd);
        pair_drop_chains(p, true, true);
        if (p->fd >= 0)
            close(p->fd);
        for (unsigned q = 0; q < 2; q++) {
            if (p->call[q].watched)
                (void)vmm_event_loop_remove(n->loop, p->call[q].fd);
            if (p->call[q].fd >= 0)
                close(p->call[q].fd);
        }
        if (p->vhost_fd >= 0)
            close(p->vhost_fd);
    }
    if (n->timer_watched)
        (void)vmm_event_loop_remove(n->loop, n->timer_fd);
    if (n->timer_fd >= 0)
        close(n->timer_fd);
    if (n->ctl_fd >= 0)
        close(n->ctl_fd);
    free(n);
}

static void net_destroy(void *opaque)
{
    net_free(opaque);
}

static const struct vmm_virtio_device_ops net_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = net_attach,
    .config_read = net_config_read,
    .activate = net_activate,
    .reset = net_reset,
    .queue_notify = net_queue_notify,
    .queue_reset = net_queue_reset,
    .destroy = net_destroy,
};

/* Open tap queue i of n->tap. Returns 0 or -errno, logged as a warning: the
 * caller reports the failure (a launcher in one line of its own). */
static int tap_open(struct net *n, unsigned i)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = -errno;
        vmm_log_warn("virtio-net: opening /dev/net/tun: %s", vmm_strerror(e));
        return e;
    }
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    if (n->max_pairs > 1)
        ifr.ifr_flags |= IFF_MULTI_QUEUE;
    memcpy(ifr.ifr_name, n->tap, sizeof(ifr.ifr_name));
    int hdr = HDR;
    const char *what = "attaching to";
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 ||
        (what = "setting the header size of", ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)) {
        int e = -errno;
        vmm_log_warn("virtio-net: %s tap %s%s: %s%s", what, n->tap,
                     n->max_pairs > 1 ? " (multiqueue)" : "", vmm_strerror(e),
                     e == -EPERM ? " (it needs CAP_NET_ADMIN, or a tap owned by this user)"
                     : e == -EINVAL && n->max_pairs > 1
                         ? " (an existing tap made without IFF_MULTI_QUEUE?)"
                     : e == -EINVAL ? " (an existing tap made with IFF_MULTI_QUEUE?)"
                                    : "");
        close(fd);
        return e;
    }
    n->pair[i].fd = fd;
    return 0;
}

/* The guest receive offloads the tap takes (TUNSETOFFLOAD probes). */
static uint64_t tap_probe_offloads(struct net *n)
{
    static const struct {
        unsigned tun;
        uint64_t feature;
    } map[] = {
        {TUN_F_TSO4, VMM_VIRTIO_NET_F_GUEST_TSO4},
        {TUN_F_TSO6, VMM_VIRTIO_NET_F_GUEST_TSO6},
        {TUN_F_UFO, VMM_VIRTIO_NET_F_GUEST_UFO},
    };
    int fd = n->pair[0].fd;
    uint64_t f = 0;
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) == 0) {
        f |= VMM_VIRTIO_NET_F_GUEST_CSUM;
        for (size_t i = 0; i < VMM_ARRAY_SIZE(map); i++)
            if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | map[i].tun)) == 0)
                f |= map[i].feature;
        if ((f & (VMM_VIRTIO_NET_F_GUEST_TSO4 | VMM_VIRTIO_NET_F_GUEST_TSO6)) &&
            ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN)) == 0)
            f |= VMM_VIRTIO_NET_F_GUEST_ECN;
    }
    if (ioctl(fd, TUNSETOFFLOAD, 0ul) < 0)
        n->tap_off_set = ~0u; /* unknown: the next reset or activation sets it */
    return f;
}

int vmm_virtio_net_create(const struct vmm_virtio_net_config *cfg, struct vmm_virtio_device *dev)
{
    struct vmm_virtio_net_config c = {0};
    if (!dev || !cfg || !VMM_ABI_OUT_OK(dev) || VMM_ABI_COPY_IN(&c, cfg) < 0)
        return -EINVAL;
    unsigned qsize = c.queue_size ? c.queue_size : 256;
    unsigned pairs = c.queue_pairs ? c.queue_pairs : 1;
    if (!c.tap || !c.tap[0] || strlen(c.tap) >= IFNAMSIZ || !vmm_is_pow2(qsize) ||
        qsize > VMM_VIRTQ_MAX_SIZE || pairs > VMM_VIRTIO_NET_MAX_PAIRS || (c.mtu && c.mtu < 68) ||
        (c.mac[0] & 1))
        return -EINVAL;
    if (c.vhost && (c.tx_bytes_per_sec || c.tx_packets_per_sec || c.rx_bytes_per_sec ||
                    c.rx_packets_per_sec)) {
        vmm_log_warn("virtio-net: vhost-net takes no rate limit");
        return -EINVAL;
    }
    struct net *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    strcpy(n->tap, c.tap);
    n->max_pairs = pairs;
    n->active_pairs = 1;
    n->mtu = c.mtu;
    n->link_up = true;
    n->timer_fd = -1;
    /* Activation reads the tap's MTU when the guest turns offloads off; the
     * socket for that is made now, not from a vCPU thread at run time. */
    n->ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    n->stats.size = sizeof(n->stats);
    for (unsigned i = 0; i < VMM_VIRTIO_NET_MAX_PAIRS; i++) {
        n->pair[i] = (struct net_pair){.n = n, .index = i, .fd = -1, .vhost_fd = -1};
        for (unsigned q = 0; q < 2; q++)
            n->pair[i].call[q] = (struct net_call){.n = n, .q = 2 * i + q, .fd = -1};
    }
    static const uint8_t zero[6];
    if (memcmp(c.mac, zero, 6) != 0) {
        memcpy(n->mac, c.mac, 6);
    } else {
        if (getrandom(n->mac, 6, 0) != 6)
            memcpy(n->mac, "\x52\x54\x00\x12\x34\x56", 6);
        n->mac[0] = (uint8_t)((n->mac[0] & ~1u) | 2u); /* unicast, locally administered */
    }
    bucket_init(&n->tx_bytes, c.tx_bytes_per_sec);
    bucket_init(&n->tx_pkts, c.tx_packets_per_sec);
    bucket_init(&n->rx_bytes, c.rx_bytes_per_sec);
    bucket_init(&n->rx_pkts, c.rx_packets_per_sec);
    for (unsigned i = 0; i < pairs; i++) {
        int r = tap_open(n, i);
        if (r < 0) {
            net_free(n);
            return r;
        }
    }
    /* One pair is in use until the driver asks for more: the kernel must
     * steer no frame to the others' queues meanwhile (as after a reset). */
    for (unsigned i = 1; i < pairs; i++)
        pair_attach(&n->pair[i], false);
    n->tap_offloads = tap_probe_offloads(n);
    uint64_t features = NET_BASE_FEATURES | NET_HOST_OFFLOADS | n->tap_offloads;
    n->vhost = c.vhost;
    for (unsigned i = 0; c.vhost && i < pairs; i++) {
        int r = vhost_open(&n->pair[i]);
        if (r < 0) {
            net_free(n);
            return r;
        }
    }
    if (c.vhost) {
        if (!(n->vhost_features & VMM_VIRTIO_NET_F_MRG_RXBUF))
            features &= ~VMM_VIRTIO_NET_F_MRG_RXBUF;
    }
    if (c.mtu)
        features |= VMM_VIRTIO_NET_F_MTU;
    if (pairs > 1)
        features |= VMM_VIRTIO_NET_F_CTRL_VQ | VMM_VIRTIO_NET_F_MQ;
    n->stats.queue_pairs_active = 1;
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_NET,
        .features = features,
        .num_queues = 2 * pairs + (pairs > 1),
        .queue_max_size = qsize,
        .config_size = NET_CONFIG_SIZE,
        .ops = &net_ops,
        .opaque = n,
        .name = "virtio-net",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_net(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                          const struct vmm_virtio_net_config *cfg, struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_net_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}

int vmm_virtio_net_set_link(struct vmm_virtio_transport *t, bool up)
{
    if (!t || t->caller_ops != &net_ops)
        return -EINVAL;
    struct net *n = t->dev.opaque;
    vmm_virtio_lock(t);
    if (n->link_up != up) {
        n->link_up = up;
        for (unsigned i = 0; i < n->max_pairs; i++)
            vhost_pair_sync(&n->pair[i]);
        for (unsigned i = 0; i < n->max_pairs; i++)
            pair_update_watch(&n->pair[i]);
        vmm_virtio_config_changed(t);
    }
    vmm_virtio_unlock(t);
    return 0;
}

int vmm_virtio_net_get_stats(struct vmm_virtio_transport *t, struct vmm_virtio_net_stats *stats)
{
    if (!t || !stats || t->caller_ops != &net_ops || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct net *n = t->dev.opaque;
    vmm_virtio_lock(t);
    struct vmm_virtio_net_stats s = n->stats;
    vmm_virtio_unlock(t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
