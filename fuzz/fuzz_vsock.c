/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock over virtio-mmio with an event loop, both sides hostile:
 * the guest (fuzz_mmio.h's language and the target's own operations) sends
 * transmit packets of every op (REQUEST, RESPONSE, RST, SHUTDOWN, RW,
 * CREDIT_UPDATE and CREDIT_REQUEST, unknown ones), with any type, length,
 * CIDs, ports, flags, credit and fragmentation, posts receive and event
 * buffers, answers the device's REQUESTs (or refuses them) and resets the
 * device mid-connection; the host side makes real Unix socket connections
 * to the device's path with well-formed and malformed "CONNECT <port>\n"
 * handshakes, accepts the device's connections on listeners at
 * "<path>_<port>", and writes, reads, half-closes and closes them, all
 * non-blocking, the event loop turned by the input.
 *
 * Each of the 8 device configurations (CID, queue size) has a path, its
 * listeners (made once) and a device made at its first input and kept
 * (fuzz_mmio.h's fm_begin/fm_end): the input's end resets the device
 * through its transport and closes every host socket (the listeners'
 * backlogs drained), and the device's loop turns until it has dropped every
 * connection, so every input starts from the same state; a device still
 * holding a connection then (a host connection waiting for a guest that
 * never answered) is destroyed, as is any device after KEEP_RUNS inputs
 * (destroy's checks run: its socket removed, nothing left on its loop). The
 * process's fd count is the same after every input as before it (checked).
 *
 * Checked: no memory error, UB or leak (the sanitizers); destroy leaves no
 * fd on the loop and touches no guest memory afterwards; the fd count stays
 * flat; connections open stay within VMM_VIRTIO_VSOCK_MAX_CONNS; and while
 * the guest has left its receive buffers alone, every packet the device
 * hands it is from the host's CID to the guest's, of stream type and a
 * known op, used for exactly its header and payload, with no more payload
 * than MAX_PAYLOAD and the largest credit the guest ever gave, and the
 * fwd_cnt it reports never counts more bytes than the guest sent; with one
 * connection, the device never holds more of the guest's bytes than
 * VMM_VIRTIO_VSOCK_BUF_ALLOC.
 */
#include <poll.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmm/virtio_vsock.h>

#include "fuzz_mmio.h"

enum op {
    OP_PKT = FM_OP_COUNT,
    OP_RXBUF,
    OP_EVBUF,
    OP_GUEST_RECV,
    OP_HOST_CONNECT,
    OP_HOST_WRITE,
    OP_HOST_READ,
    OP_HOST_CLOSE,
    OP_ACCEPT,
    OP_PUMP,
    OP_STATS,
    OP_COUNT
};

/* virtio 1.2 5.10.6 */
#define HDR          44
#define TYPE_STREAM  1
#define V_REQUEST    1
#define V_RESPONSE   2
#define V_RST        3
#define V_RW         5
#define V_CREDIT_UPD 6
#define V_OP_MAX     7
#define MAX_PAYLOAD  (64u << 10)
#define HOST_PORT0   (1u << 30) /* the device's first host port */

#define RX_AREA  FM_DATA /* 32 receive buffers of 4 KiB */
#define RX_SLOTS 32u
#define RX_LEN   0x1000u
#define TX_AREA  (RX_AREA + RX_SLOTS * RX_LEN) /* transmit packets, to the end */
#define TX_SIZE  (FM_MEM_BASE + FM_MEM_SIZE - TX_AREA)
#define EV_AREA  (RX_AREA + 0x400) /* event buffers: never written by this device */

#define NCFG      8    /* device configurations: CID (input's first byte & 3), queue size (& 4) */
#define KEEP_RUNS 4096 /* inputs a device serves before it is destroyed and made again */
#define NLISTEN   3    /* listeners at <path>_<LPORT0 + i>; LPORT0 + NLISTEN has none */
#define LPORT0    5000u
#define NHOST     24 /* host sockets one input may hold */
#define NPAIRS    8

struct vpkt {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

static char dir[64];
static bool inited;

/* Configuration c: the device's path, the listeners for its guest's
 * connections, and the device while it lives. */
static struct {
    char path[96];
    int listeners[NLISTEN];
    bool live;
    struct fm f;
    struct vmm_event_loop *loop;
    int fds; /* what the device holds idle: its loop, listening socket, eventfd */
    unsigned runs;
} cfgs[NCFG];

/* One input's state. */
static struct {
    struct fm *f;
    unsigned c;
    struct vmm_virtio_vsock_stats st0; /* the device's counters when the input began */
    uint64_t cid;
    int host[NHOST];
    uint16_t rx_slot, tx_slot, ev_slot, rx_used_seen, tx_base;
    uint64_t tx_off;
    unsigned rx_out;    /* receive buffers posted and not seen used */
    bool tainted;       /* the guest changed rings or memory behind this driver */
    uint32_t max_alloc; /* the largest buf_alloc the guest sent */
    uint64_t rw_sent;   /* stream bytes the guest sent in RW packets */
    uint32_t guest_fwd; /* stream bytes the guest received */
    struct {
        uint32_t host, guest;
    } pairs[NPAIRS]; /* connections the guest has heard of */
    unsigned npairs, next_pair;
    /* For the bound on what the device holds: stream bytes host sockets
     * read, sockets accepted, a REQUEST to a listener, a socket closed
     * (or shut for reading) with bytes maybe unread. */
    uint64_t host_read;
    unsigned accepted;
    bool listener_request, host_lost;
} s;

/* The fds open: a new fd takes the lowest free number, and at most about
 * 100 (the listeners and idle devices) + NHOST host sockets + 2 *
 * VMM_VIRTIO_VSOCK_MAX_CONNS (a device's connections and their peers) are
 * ever open at once, so every fd is below MAX_FDS (poll says POLLNVAL for
 * the numbers not open; quicker than reading /proc/self/fd). */
#define MAX_FDS 512
static int count_fds(void)
{
    static struct pollfd p[MAX_FDS];
    for (int i = 0; i < MAX_FDS; i++)
        p[i] = (struct pollfd){.fd = i};
    FZ_CHECK(poll(p, MAX_FDS, 0) >= 0);
    int n = 0;
    for (int i = 0; i < MAX_FDS; i++)
        n += !(p[i].revents & POLLNVAL);
    FZ_CHECK(n < 128);
    return n;
}

static void sun_at(struct sockaddr_un *sa, const char *at)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", at);
}

static void close_device(unsigned c)
{
    fm_close(&cfgs[c].f);
    vmm_event_loop_destroy(cfgs[c].loop);
    cfgs[c].live = false;
    FZ_CHECK(access(cfgs[c].path, F_OK) != 0); /* the device removed its socket */
}

static void finish(void)
{
    char at[128];
    for (unsigned c = 0; c < NCFG; c++) {
        if (cfgs[c].live)
            close_device(c);
        for (unsigned i = 0; i < NLISTEN; i++) {
            snprintf(at, sizeof(at), "%s_%u", cfgs[c].path, LPORT0 + i);
            unlink(at);
        }
    }
    rmdir(dir);
}

static void init_once(void)
{
    fz_quiet_logs();
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/fzvsock.XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    FZ_CHECK(mkdtemp(dir));
    for (unsigned c = 0; c < NCFG; c++) {
        snprintf(cfgs[c].path, sizeof(cfgs[c].path), "%s/v%u", dir, c);
        for (unsigned i = 0; i < NLISTEN; i++) {
            char at[128];
            snprintf(at, sizeof(at), "%s_%u", cfgs[c].path, LPORT0 + i);
            struct sockaddr_un sa;
            sun_at(&sa, at);
            int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            FZ_CHECK(l >= 0);
            FZ_CHECK(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0);
            FZ_CHECK(listen(l, 256) == 0);
            cfgs[c].listeners[i] = l;
        }
    }
    atexit(finish);
    inited = true;
}

static void put_hdr(uint8_t *b, const struct vpkt *p)
{
    memcpy(b + 0, &p->src_cid, 8);
    memcpy(b + 8, &p->dst_cid, 8);
    memcpy(b + 16, &p->src_port, 4);
    memcpy(b + 20, &p->dst_port, 4);
    memcpy(b + 24, &p->len, 4);
    memcpy(b + 28, &p->type, 2);
    memcpy(b + 30, &p->op, 2);
    memcpy(b + 32, &p->flags, 4);
    memcpy(b + 36, &p->buf_alloc, 4);
    memcpy(b + 40, &p->fwd_cnt, 4);
}

static void get_hdr(const uint8_t *b, struct vpkt *p)
{
    memcpy(&p->src_cid, b + 0, 8);
    memcpy(&p->dst_cid, b + 8, 8);
    memcpy(&p->src_port, b + 16, 4);
    memcpy(&p->dst_port, b + 20, 4);
    memcpy(&p->len, b + 24, 4);
    memcpy(&p->type, b + 28, 2);
    memcpy(&p->op, b + 30, 2);
    memcpy(&p->flags, b + 32, 4);
    memcpy(&p->buf_alloc, b + 36, 4);
    memcpy(&p->fwd_cnt, b + 40, 4);
}

static uint8_t *gmem(vmm_gpa_t gpa)
{
    return s.f->host + (gpa - FM_MEM_BASE);
}

static unsigned qsize(unsigned q)
{
    return s.f->dq[q].size ? s.f->dq[q].size : 1;
}

/* A transmit packet: header p, then payload bytes data[0, dlen) and total
 * - HDR - dlen bytes of whatever the buffer held, over nseg descriptors. */
static void tx_send(const struct vpkt *p, const uint8_t *data, size_t dlen, uint32_t total,
                    unsigned nseg)
{
    if (total > TX_SIZE)
        total = (uint32_t)TX_SIZE;
    if (nseg > total)
        nseg = total ? total : 1;
    unsigned size = qsize(1);
    /* Over a packet (or descriptors) the device has not taken yet: it may
     * see one packet twice, and the counts below no longer bound it. */
    uint16_t used;
    memcpy(&used, gmem(fm_q_desc(1) + 0x2000 + 2), 2);
    bool idle = used == s.f->dq[1].avail_idx;
    if (idle)
        s.tx_base = s.tx_slot;
    if ((uint16_t)(s.tx_slot + nseg - s.tx_base) > size)
        s.tainted = true;
    if (s.tx_off + total > TX_SIZE) {
        s.tx_off = 0;
        s.tainted |= !idle;
    }
    vmm_gpa_t at = TX_AREA + s.tx_off;
    s.tx_off = (s.tx_off + total + 63) & ~63ull;
    uint8_t h[HDR];
    put_hdr(h, p);
    fm_put(s.f, at, h, total < HDR ? total : HDR);
    if (total > HDR)
        fm_put(s.f, at + HDR, data, dlen < total - HDR ? dlen : total - HDR);
    uint16_t first = s.tx_slot;
    uint32_t off = 0;
    for (unsigned i = 0; i < nseg; i++) {
        uint32_t len = i + 1 < nseg ? (total - off) / (nseg - i) : total - off;
        uint16_t flags = i + 1 < nseg ? FM_F_NEXT : 0;
        fm_put_desc(s.f, fm_q_desc(1) + 16ull * (s.tx_slot % size), at + off, len, flags,
                    (uint16_t)((s.tx_slot + 1) % size));
        s.tx_slot++;
        off += len;
    }
    fm_avail(s.f, 1, (uint16_t)(first % size));
    fm_wr(s.f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1, 4);
    if (p->op == V_RW && p->src_cid == s.cid && total >= HDR + (uint64_t)p->len)
        s.rw_sent += p->len;
    if (p->op == V_REQUEST && p->dst_port >= LPORT0 && p->dst_port < LPORT0 + NLISTEN)
        s.listener_request = true;
    if (p->buf_alloc > s.max_alloc)
        s.max_alloc = p->buf_alloc;
}

/* A reply from the guest on a pair the device named. */
static void tx_reply(uint32_t host, uint32_t guest, uint16_t op, uint32_t buf_alloc)
{
    struct vpkt p = {.src_cid = s.cid,
                     .dst_cid = VMM_VIRTIO_VSOCK_HOST_CID,
                     .src_port = guest,
                     .dst_port = host,
                     .type = TYPE_STREAM,
                     .op = op,
                     .buf_alloc = buf_alloc,
                     .fwd_cnt = s.guest_fwd};
    tx_send(&p, NULL, 0, HDR, 1);
}

static void pair_add(uint32_t host, uint32_t guest)
{
    for (unsigned i = 0; i < s.npairs; i++)
        if (s.pairs[i].host == host && s.pairs[i].guest == guest)
            return;
    unsigned i = s.npairs < NPAIRS ? s.npairs++ : s.next_pair++ % NPAIRS;
    s.pairs[i].host = host;
    s.pairs[i].guest = guest;
}

static void op_pkt(struct fz *in)
{
    uint8_t m = fz_u8(in);
    struct vpkt p = {.src_cid = s.cid,
                     .dst_cid = VMM_VIRTIO_VSOCK_HOST_CID,
                     .type = TYPE_STREAM,
                     .buf_alloc = 256u << 10,
                     .fwd_cnt = s.guest_fwd};
    if ((m & 3) == 3)
        p.src_cid = fz_u64(in);
    if (m & 4)
        p.dst_cid = fz_u8(in) & 1 ? fz_u64(in) : s.cid;
    p.op = m & 0x80 ? fz_u16(in) : fz_u8(in) % (V_OP_MAX + 1);
    uint8_t pm = fz_u8(in);
    switch (pm % 4) {
    case 0:
        if (s.npairs) {
            p.src_port = s.pairs[(pm >> 2) % s.npairs].guest;
            p.dst_port = s.pairs[(pm >> 2) % s.npairs].host;
            break;
        }
        /* fall through */
    case 1:
        p.src_port = fz_u16(in);
        p.dst_port = LPORT0 + (pm >> 2) % (NLISTEN + 1);
        break;
    case 2:
        p.src_port = fz_u16(in);
        p.dst_port = HOST_PORT0 + (pm >> 2) % 8;
        break;
    default:
        p.src_port = fz_u32(in);
        p.dst_port = fz_u32(in);
        break;
    }
    if (m & 8)
        p.type = fz_u16(in);
    p.flags = fz_u8(in);
    if (m & 0x20)
        p.buf_alloc = fz_u32(in);
    if (m & 0x40)
        p.fwd_cnt = fz_u32(in);
    uint32_t plen = fz_u16(in);
    uint8_t lm = fz_u8(in);
    size_t dlen;
    const uint8_t *data = fz_take(in, fz_u8(in), &dlen);
    switch (lm % 4) {
    case 0:
        p.len = plen;
        break;
    case 1:
        p.len = fz_u32(in);
        break;
    case 2:
        p.len = plen + fz_u8(in); /* past the buffer */
        break;
    default:
        p.len = plen ? plen - 1 : 0;
        break;
    }
    uint32_t total = m & 0x10 ? fz_u8(in) % (HDR + 1) : HDR + plen; /* cut short */
    tx_send(&p, data, dlen, total, 1 + (lm >> 2) % 4);
}

static void post_rx(uint32_t len, unsigned split)
{
    unsigned size = qsize(0);
    uint16_t slot = s.rx_slot++;
    vmm_gpa_t at = RX_AREA + (slot % size % RX_SLOTS) * (uint64_t)RX_LEN;
    if (split && split < len && size > 1) {
        fm_put_desc(s.f, fm_q_desc(0) + 16ull * (slot % size), at, split, FM_F_WRITE | FM_F_NEXT,
                    (uint16_t)((slot + 1) % size));
        fm_put_desc(s.f, fm_q_desc(0) + 16ull * ((slot + 1) % size), at + split, len - split,
                    FM_F_WRITE, 0);
        s.rx_slot++;
    } else {
        fm_put_desc(s.f, fm_q_desc(0) + 16ull * (slot % size), at, len, FM_F_WRITE, 0);
    }
    fm_avail(s.f, 0, (uint16_t)(slot % size));
    if (++s.rx_out > (size < RX_SLOTS ? size : RX_SLOTS) || (uint16_t)(s.rx_slot - slot) > 1)
        s.tainted = true; /* buffers share memory, or used ids name the head only */
}

static void op_rxbuf(struct fz *in)
{
    uint8_t m = fz_u8(in);
    unsigned n = 1 + m % 16;
    uint32_t len = m & 0x10 ? fz_u16(in) % (RX_LEN + 1) : RX_LEN;
    unsigned split = m & 0x20 ? fz_u8(in) : 0;
    if (m & 0x40) {
        len = fz_u16(in); /* over its neighbours, or the transmit area */
        s.tainted = true;
    }
    for (unsigned i = 0; i < n; i++)
        post_rx(len, split);
    fm_wr(s.f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0, 4);
}

static void op_evbuf(struct fz *in)
{
    unsigned n = 1 + fz_u8(in) % 8, size = qsize(2);
    for (unsigned i = 0; i < n; i++) {
        uint16_t slot = s.ev_slot++;
        fm_put_desc(s.f, fm_q_desc(2) + 16ull * (slot % size), EV_AREA + 8ull * (slot % 32), 8,
                    FM_F_WRITE, 0);
        fm_avail(s.f, 2, (uint16_t)(slot % size));
    }
    fm_wr(s.f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2, 4);
}

/* Look at what the device gave the guest; answer REQUESTs (accept or
 * refuse), acknowledge data, and post the buffers again when asked. */
static void op_guest_recv(struct fz *in)
{
    uint8_t m = fz_u8(in);
    uint32_t alloc = m & 4 ? fz_u32(in) : 256u << 10;
    vmm_gpa_t used = fm_q_desc(0) + 0x2000;
    uint16_t idx;
    memcpy(&idx, gmem(used + 2), 2);
    /* A receive queue this driver left off (or reset) has no used ring:
     * what lies there is an earlier set-up's, not the device's answer. */
    if (!s.f->dq[0].size)
        idx = s.rx_used_seen;
    unsigned size = qsize(0), n = 0;
    while (s.rx_used_seen != idx && n++ < 256) {
        uint32_t id, len;
        memcpy(&id, gmem(used + 4 + 8ull * (s.rx_used_seen % size)), 4);
        memcpy(&len, gmem(used + 8 + 8ull * (s.rx_used_seen % size)), 4);
        s.rx_used_seen++;
        if (s.rx_out)
            s.rx_out--;
        if (s.tainted || len == 0)
            continue;
        FZ_CHECK(id < size);
        FZ_CHECK(len >= HDR);
        struct vpkt p;
        get_hdr(gmem(RX_AREA + (id % RX_SLOTS) * (uint64_t)RX_LEN), &p);
        FZ_CHECK(p.src_cid == VMM_VIRTIO_VSOCK_HOST_CID && p.dst_cid == s.cid);
        FZ_CHECK(p.type == TYPE_STREAM && p.op >= V_REQUEST && p.op <= V_OP_MAX);
        FZ_CHECK(p.buf_alloc == VMM_VIRTIO_VSOCK_BUF_ALLOC);
        FZ_CHECK(len == HDR + (uint64_t)p.len);
        FZ_CHECK(p.op == V_RW ? p.len <= MAX_PAYLOAD && p.len <= s.max_alloc : p.len == 0);
        FZ_CHECK(p.fwd_cnt <= s.rw_sent);
        if (p.op == V_RW)
            s.guest_fwd += p.len;
        if (p.op == V_REQUEST) {
            pair_add(p.src_port, p.dst_port);
            tx_reply(p.src_port, p.dst_port, m & 1 ? V_RST : V_RESPONSE, alloc);
        } else if (p.op == V_RESPONSE) {
            pair_add(p.src_port, p.dst_port);
        } else if (p.op == V_RW && (m & 2)) {
            tx_reply(p.src_port, p.dst_port, V_CREDIT_UPD, alloc);
        }
    }
    if (m & 8) {
        for (unsigned i = 0; i < n && i < RX_SLOTS; i++)
            post_rx(RX_LEN, 0);
        fm_wr(s.f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0, 4);
    }
}

static int host_free_slot(void)
{
    for (int i = 0; i < NHOST; i++)
        if (s.host[i] < 0)
            return i;
    return -1;
}

static void op_host_connect(struct fz *in)
{
    uint8_t m = fz_u8(in);
    int i = host_free_slot();
    if (i < 0)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FZ_CHECK(fd >= 0);
    struct sockaddr_un sa;
    sun_at(&sa, cfgs[s.c].path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd); /* the backlog is full */
        return;
    }
    s.host[i] = fd;
    char line[64];
    int n;
    uint32_t port = m & 0x10 ? fz_u32(in) : 1000 + fz_u8(in) % 4;
    switch (m % 8) {
    case 0:
    case 1:
        n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
        break;
    case 2:
        n = snprintf(line, sizeof(line), "CONNECT %u\r\n", port);
        break;
    case 3:
        n = snprintf(line, sizeof(line), "CONNECT %u\nearly bytes", port);
        break;
    case 4:
        n = snprintf(line, sizeof(line), "CONNECT %u", port); /* the rest later, or never */
        break;
    case 5:
        n = snprintf(line, sizeof(line), "CONNECT %llu\n", (unsigned long long)fz_u64(in));
        break;
    case 6:
        n = 0; /* nothing at all: closed or written later */
        break;
    default: {
        size_t len;
        const uint8_t *raw = fz_take(in, fz_u8(in) % sizeof(line), &len);
        memcpy(line, raw, len);
        n = (int)len;
        break;
    }
    }
    if (n > 0 && send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        FZ_CHECK(errno == EAGAIN);
}

static int host_pick(struct fz *in)
{
    unsigned k = fz_u8(in);
    for (unsigned j = 0; j < NHOST; j++) {
        unsigned i = (k + j) % NHOST;
        if (s.host[i] >= 0)
            return (int)i;
    }
    return -1;
}

static void op_host_write(struct fz *in)
{
    int i = host_pick(in);
    uint16_t len = fz_u16(in);
    size_t dlen;
    const uint8_t *data = fz_take(in, fz_u8(in), &dlen);
    if (i < 0)
        return;
    static uint8_t buf[1u << 16];
    memset(buf, 'h', len);
    memcpy(buf, data, dlen < len ? dlen : len);
    ssize_t w = send(s.host[i], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    FZ_CHECK(w >= 0 || errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
}

static void op_host_read(struct fz *in)
{
    int i = host_pick(in);
    uint32_t want = fz_u8(in) * 1024u + 1;
    if (i < 0)
        return;
    static uint8_t buf[1u << 18];
    ssize_t r = recv(s.host[i], buf, want, MSG_DONTWAIT);
    FZ_CHECK(r >= 0 || errno == EAGAIN || errno == ECONNRESET);
    if (r > 0)
        s.host_read += (uint64_t)r;
}

static void op_host_close(struct fz *in)
{
    int i = host_pick(in);
    uint8_t how = fz_u8(in);
    if (i < 0)
        return;
    s.host_lost |= how % 3 != 1;
    if (how % 3 == 0) {
        close(s.host[i]);
        s.host[i] = -1;
    } else {
        (void)shutdown(s.host[i], how % 3 == 1 ? SHUT_WR : SHUT_RD);
    }
}

static void op_accept(struct fz *in)
{
    int l = cfgs[s.c].listeners[fz_u8(in) % NLISTEN];
    int i = host_free_slot();
    if (i < 0)
        return;
    int fd = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        s.host[i] = fd;
        s.accepted++;
    }
}

static void op_stats(void)
{
    struct vmm_virtio_vsock_stats st = VMM_INIT(struct vmm_virtio_vsock_stats);
    FZ_CHECK(vmm_virtio_vsock_get_stats(vmm_virtio_mmio_transport(s.f->m), &st) == 0);
    FZ_CHECK(st.conns_open <= VMM_VIRTIO_VSOCK_MAX_CONNS);
    /* This input's share of the counters. */
    st.tx_bytes -= s.st0.tx_bytes;
    st.conns_total -= s.st0.conns_total;
    FZ_CHECK(s.tainted || st.tx_bytes <= s.rw_sent);
    /* With one connection ever, whoever sent its bytes: what the device
     * took from the guest and the host socket has not (read, or queued on
     * it) is what the device holds, or held when it dropped the connection:
     * never more than VMM_VIRTIO_VSOCK_BUF_ALLOC (the host-side socket may
     * also have read the device's "OK <port>\n"). Unknowable while the
     * connection may sit unaccepted in a listener's backlog. */
    if (st.conns_total != 1 || s.host_lost || (s.listener_request && !s.accepted))
        return;
    uint64_t delivered = s.host_read;
    for (int i = 0; i < NHOST; i++) {
        int queued = 0;
        if (s.host[i] >= 0 && ioctl(s.host[i], SIOCINQ, &queued) == 0)
            delivered += (uint64_t)queued;
    }
    FZ_CHECK(st.tx_bytes <= delivered + VMM_VIRTIO_VSOCK_BUF_ALLOC);
}

/* A driver's set-up or reset here: this driver's ring state starts over. */
static void rings_restart(void)
{
    s.rx_slot = s.tx_slot = s.ev_slot = s.rx_used_seen = s.tx_base = 0;
    s.rx_out = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vmm_virtio_vsock_stats get_stats(void)
{
    struct vmm_virtio_vsock_stats st = VMM_INIT(struct vmm_virtio_vsock_stats);
    FZ_CHECK(vmm_virtio_vsock_get_stats(vmm_virtio_mmio_transport(s.f->m), &st) == 0);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!inited)
        init_once();
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    static const uint64_t cids[4] = {3, 42, 0xfffffffeull, 0x12345};
    unsigned c = cfg % NCFG;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < NHOST; i++)
        s.host[i] = -1;
    s.c = c;
    s.cid = cids[cfg % 4];
    s.f = &cfgs[c].f;
    if (!cfgs[c].live) {
        int fds_none = count_fds();
        struct vmm_virtio_vsock_config vc =
            VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = s.cid, .path = cfgs[c].path,
                     .queue_size = cfg & 4 ? 16 : 256);
        struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
        FZ_CHECK(vmm_virtio_vsock_create(&vc, &dev) == 0);
        FZ_CHECK(vmm_event_loop_create(&cfgs[c].loop) == 0);
        fm_open(s.f, &dev, dev.num_queues, cfgs[c].loop);
        cfgs[c].live = true;
        cfgs[c].runs = 0;
        cfgs[c].fds = count_fds() - fds_none;
    }
    struct vmm_event_loop *loop = cfgs[c].loop;
    int fds_before = count_fds();
    fm_begin(s.f);
    s.st0 = get_stats();
    FZ_CHECK(s.st0.conns_open == 0);
    for (unsigned steps = 0; fz_more(&in) && steps < 1024; steps++) {
        unsigned op = fz_u8(&in) % OP_COUNT;
        switch (op) {
        case OP_PKT:
            op_pkt(&in);
            break;
        case OP_RXBUF:
            op_rxbuf(&in);
            break;
        case OP_EVBUF:
            op_evbuf(&in);
            break;
        case OP_GUEST_RECV:
            op_guest_recv(&in);
            break;
        case OP_HOST_CONNECT:
            op_host_connect(&in);
            break;
        case OP_HOST_WRITE:
            op_host_write(&in);
            break;
        case OP_HOST_READ:
            op_host_read(&in);
            break;
        case OP_HOST_CLOSE:
            op_host_close(&in);
            break;
        case OP_ACCEPT:
            op_accept(&in);
            break;
        case OP_PUMP:
            for (unsigned n = 1 + fz_u8(&in) % 8; n; n--)
                (void)vmm_event_loop_run_once(loop, 0);
            break;
        case OP_STATS:
            op_stats();
            break;
        case FM_SETUP:
        case FM_RESET:
            fm_step(s.f, &in, op);
            rings_restart();
            break;
        case FM_LOOP:
        case FM_KICK:
        case FM_REG_READ:
            fm_step(s.f, &in, op);
            break;
        default: /* memory, descriptors, rings, registers behind this driver's back */
            s.tainted = true;
            fm_step(s.f, &in, op);
            break;
        }
    }
    op_stats();
    fm_end(s.f);
    for (int i = 0; i < NHOST; i++)
        if (s.host[i] >= 0)
            close(s.host[i]);
    for (unsigned i = 0; i < NLISTEN; i++) {
        int fd;
        while ((fd = accept4(cfgs[c].listeners[i], NULL, NULL, SOCK_CLOEXEC)) >= 0)
            close(fd);
    }
    fm_pump(s.f, 64); /* the device hears the host side go */
    if (get_stats().conns_open || ++cfgs[c].runs == KEEP_RUNS) {
        close_device(c);
        fds_before -= cfgs[c].fds;
    }
    FZ_CHECK(count_fds() == fds_before);
    return 0;
}
