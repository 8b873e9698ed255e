/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock (virtio 1.2 section 5.10) with Unix sockets on the host side
 * (see include/vmm/virtio_vsock.h for what the host sees).
 *
 * Queues: rx 0 (packets to the guest), tx 1 (packets from the guest),
 * event 2 (one event: TRANSPORT_RESET after a snapshot is restored). Every
 * packet is a 44-byte header, then for OP_RW the stream bytes.
 *
 * Guest to host: a transmit chain is handled and completed at once. Its
 * stream bytes go straight from guest memory to the host socket; what the
 * socket does not take is copied into the connection's buffer (at most
 * VMM_VIRTIO_VSOCK_BUF_ALLOC bytes, the credit the guest was given), which
 * is written out when the socket becomes writable. fwd_cnt counts the bytes
 * the socket took; the guest hears of it in every packet's header and in a
 * CREDIT_UPDATE each quarter buffer.
 *
 * Host to guest: control packets (REQUEST, RESPONSE, RST, SHUTDOWN,
 * CREDIT_*) are flags on their connection (or, for an RST to a connection
 * that does not exist, entries in a small queue) sent as the guest posts
 * receive buffers. Stream bytes are read from a socket straight into
 * receive buffers, one readv filling up to RX_BATCH of them, never more
 * than the guest's credit; a socket is watched for input only while the
 * guest has credit and (as far as the device knows) receive buffers, so a
 * guest that posts none costs no CPU.
 *
 * Closing a connection can happen on a vCPU thread (a device reset), where
 * its fd must not be removed from the event loop with the device lock held
 * (see virtio.h): it is paused there and put on a list that the loop thread
 * empties (removing and closing the fds) when an eventfd says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_vsock.h>

#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define RX_Q    0
#define TX_Q    1
#define EVENT_Q 2

#define HOST_CID VMM_VIRTIO_VSOCK_HOST_CID
#define BUF      VMM_VIRTIO_VSOCK_BUF_ALLOC
#define BUF_CAP  (BUF + 32) /* the credit, and room for "OK <port>\n" */

/* struct virtio_vsock_hdr (little-endian, packed). */
#define HDR_SIZE 44
struct pkt {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

#define TYPE_STREAM 1

enum {
    OP_INVALID,
    OP_REQUEST,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST,
};

#define SHUT_F_RCV  1u /* the sender will receive no more */
#define SHUT_F_SEND 2u /* the sender will send no more */

/* The largest stream payload of one packet either way (Linux's
 * VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
#define MAX_PAYLOAD (64u << 10)
/* "CONNECT 4294967295\n" with room to spare. */
#define HS_MAX 32
/* RSTs to connections the device does not have, waiting for buffers;
 * more are dropped (the guest made them, and posts no receive buffers). */
#define RSTQ_MAX 64
/* Host connections accepted per wake-up of the listening socket. */
#define ACCEPT_BATCH 16
/* iovecs for one transfer. */
#define VSOCK_IOV 64
/* Receive buffers one readv of a socket fills (Linux's driver posts 4 KiB
 * buffers: 32 of them take the stream in 128 KiB reads), and the iovecs
 * that readv may have. */
#define RX_BATCH   32
#define RX_IOV_MAX 256
/* The first port the device gives a host-initiated connection. */
#define FIRST_HOST_PORT (1u << 30)

/* Control packets a connection owes the guest (conn.ctl). */
#define CTL_REQUEST        (1u << 0)
#define CTL_RESPONSE       (1u << 1)
#define CTL_SHUTDOWN       (1u << 2)
#define CTL_CREDIT_UPDATE  (1u << 3)
#define CTL_CREDIT_REQUEST (1u << 4)

enum conn_state {
    CONN_HANDSHAKE, /* host side: reading "CONNECT <port>\n" */
    CONN_REQUEST,   /* host side: REQUEST sent or owed, waiting for the guest */
    CONN_OPEN,
};

struct vsock;

struct conn {
    struct vsock *v;
    int fd;
    bool watched;
    uint32_t events; /* what the loop watches fd for now */
    enum conn_state state;
    bool guest_knows;               /* the guest has seen the connection (REQUEST sent or made) */
    bool closed;                    /* taken out of the device; the loop thread frees it */
    uint32_t local_port, peer_port; /* host's and guest's */
    uint32_t ctl;                   /* CTL_* owed */
    char hs[HS_MAX];
    unsigned hs_len;
    /* Guest to host: buf[head, head + len) (mod BUF_CAP) waits for the
     * socket; its first skip bytes are the device's "OK <port>\n", not
     * stream bytes (they do not count in fwd_cnt or against the credit). */
    uint8_t *buf;
    uint32_t head, len, skip;
    uint32_t fwd_cnt, fwd_sent; /* bytes the socket took; the last fwd_cnt sent */
    bool guest_done_send;       /* SHUTDOWN SEND: shut the socket's writing down when drained */
    bool write_shut;
    bool closing; /* the guest shut both ways: RST once drained */
    /* Host to guest. */
    uint32_t rx_cnt; /* stream bytes sent to the guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    bool host_eof;        /* the socket said end of stream (SHUTDOWN owed or sent) */
    bool guest_done_recv; /* SHUTDOWN RCV: read no more */
    bool credit_asked;    /* a CREDIT_REQUEST went out for the current stall */
    bool host_rdhup;      /* CONN_REQUEST: the host shut its writing down while waiting */
    struct conn *reap_next;
};

struct rst {
    uint32_t local_port, peer_port;
};

struct vsock {
    struct vmm_virtio_transport *t;
    struct vmm_event_loop *loop;
    uint64_t cid;
    char path[108];
    int listen_fd;
    bool listen_watched;
    uint32_t listen_events;
    int reap_fd;
    bool reap_watched;
    struct conn *reap; /* closed connections whose fds the loop thread closes */

    struct conn *conn[VMM_VIRTIO_VSOCK_MAX_CONNS];
    unsigned nconn;
    unsigned ctl_rr; /* where the next control sweep starts */
    uint32_t next_port;
    struct rst rstq[RSTQ_MAX];
    unsigned rst_head, rst_len;

    /* vhost-vsock: the kernel runs rx and tx (its rings 0 and 1) and the
     * host side is AF_VSOCK; the event queue stays here. */
    bool vhost;
    int vhost_fd;
    uint64_t features, vhost_features;
    bool vhost_running;
    bool vhost_paused; /* stopped for a snapshot: thaw starts it again */
    bool kick_taken[2];
    int call_fd[2];
    bool call_watched[2];

    bool rx_wait;       /* the last pop of rx found no buffer: wait for a notify */
    bool reset_pending; /* TRANSPORT_RESET owed (restored): sent on an event buffer */
    /* Receive chains popped and not used yet, the next first. */
    struct vmm_virtq_chain *rx_spare[RX_BATCH];
    unsigned nspare;
    struct vmm_log_limit bad_log, hs_log;
    struct vmm_virtio_vsock_stats stats;
};

/* ---- headers ---- */

static void hdr_encode(const struct pkt *p, uint8_t *b)
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

static void hdr_decode(const uint8_t *b, struct pkt *p)
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

/* A packet from the host to the guest on (local_port, peer_port). */
static struct pkt host_pkt(const struct vsock *v, uint32_t local, uint32_t peer, uint16_t op)
{
    return (struct pkt){.src_cid = HOST_CID,
                        .dst_cid = v->cid,
                        .src_port = local,
                        .dst_port = peer,
                        .type = TYPE_STREAM,
                        .op = op,
                        .buf_alloc = BUF};
}

/* ---- connections ---- */

static struct conn *conn_find(struct vsock *v, uint32_t local, uint32_t peer)
{
    for (unsigned i = 0; i < v->nconn; i++) {
        struct conn *c = v->conn[i];
        if (c->local_port == local && c->peer_port == peer && c->state != CONN_HANDSHAKE)
            return c;
    }
    return NULL;
}

/* What the guest lets the device send now. A driver that acknowledges more
 * than was sent gets nothing rather than a wrapped count. */
static uint32_t peer_credit(const struct conn *c)
{
    uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void conn_update_watch(struct conn *c)
{
    if (!c->watched)
        return;
    uint32_t want = 0;
    if (c->state == CONN_HANDSHAKE) {
        want = EPOLLIN;
    } else if (c->state == CONN_REQUEST) {
        /* Nothing is read before the guest answers, but a host that hangs
         * up meanwhile is noticed: EPOLLRDHUP, and EPOLLHUP when it closed
         * (epoll reports that whenever the fd is in the set). A half close
         * stays a connection (its bytes are read once open): unwatched. */
        if (!c->host_rdhup)
            want = EPOLLRDHUP;
    } else if (c->state == CONN_OPEN) {
        if (!c->host_eof && !c->guest_done_recv && !c->v->rx_wait && peer_credit(c) > 0)
            want |= EPOLLIN;
        if (c->len > 0)
            want |= EPOLLOUT;
    }
    if (want != c->events && vmm_event_loop_modify(c->v->loop, c->fd, want) == 0)
        c->events = want;
}

static void update_all_watches(struct vsock *v)
{
    for (unsigned i = 0; i < v->nconn; i++)
        conn_update_watch(v->conn[i]);
}

static void listen_update_watch(struct vsock *v)
{
    uint32_t want = v->nconn < VMM_VIRTIO_VSOCK_MAX_CONNS ? EPOLLIN : 0;
    if (v->listen_watched && want != v->listen_events &&
        vmm_event_loop_modify(v->loop, v->listen_fd, want) == 0)
        v->listen_events = want;
}

static void rst_queue(struct vsock *v, uint32_t local, uint32_t peer)
{
    if (v->rst_len == RSTQ_MAX) {
        vmm_log_debug("virtio-vsock: RST queue full, dropping the RST for %u:%u", local, peer);
        return;
    }
    v->rstq[(v->rst_head + v->rst_len++) % RSTQ_MAX] = (struct rst){local, peer};
}

/* Take c out of the device (lock held, any thread): the guest gets an RST
 * when rst, and the loop thread closes the fd. */
static void conn_close(struct vsock *v, struct conn *c, bool rst)
{
    if (rst && c->guest_knows)
        rst_queue(v, c->local_port, c->peer_port);
    for (unsigned i = 0; i < v->nconn; i++) {
        if (v->conn[i] == c) {
            v->conn[i] = v->conn[--v->nconn];
            break;
        }
    }
    v->stats.conns_open = v->nconn;
    c->closed = true;
    if (c->watched && c->events && vmm_event_loop_modify(v->loop, c->fd, 0) == 0)
        c->events = 0;
    free(c->buf);
    c->buf = NULL;
    c->reap_next = v->reap;
    v->reap = c;
    uint64_t one = 1;
    if (write(v->reap_fd, &one, sizeof(one)) < 0)
        vmm_log_debug("virtio-vsock: reap eventfd: %s", vmm_strerror(-errno));
    listen_update_watch(v);
}

static void conn_free(struct vsock *v, struct conn *c)
{
    if (c->watched)
        (void)vmm_event_loop_remove(v->loop, c->fd);
    close(c->fd);
    free(c->buf);
    free(c);
}

static void reap_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct vsock *v = opaque;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        return;
    vmm_virtio_lock(v->t);
    struct conn *list = v->reap;
    v->reap = NULL;
    vmm_virtio_unlock(v->t);
    /* On the loop thread: removing never waits for a callback. */
    while (list) {
        struct conn *next = list->reap_next;
        conn_free(v, list);
        list = next;
    }
}

static void conn_event(void *opaque, int fd, uint32_t events);

static struct conn *conn_new(struct vsock *v, int fd, enum conn_state state)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->v = v;
    c->fd = fd;
    c->state = state;
    uint32_t ev = state == CONN_HANDSHAKE ? EPOLLIN : 0;
    if (vmm_event_loop_add(v->loop, fd, ev, conn_event, c) < 0) {
        free(c);
        return NULL;
    }
    c->watched = true;
    c->events = ev;
    v->conn[v->nconn++] = c;
    v->stats.conns_open = v->nconn;
    listen_update_watch(v);
    return c;
}

/* A host port no connection uses, for a host-initiated connection. */
static uint32_t alloc_host_port(struct vsock *v)
{
    for (;;) {
        uint32_t p = v->next_port++;
        if (v->next_port == 0 || v->next_port == UINT32_MAX)
            v->next_port = FIRST_HOST_PORT;
        bool used = false;
        for (unsigned i = 0; i < v->nconn && !used; i++)
            used = v->conn[i]->local_port == p && v->conn[i]->state != CONN_HANDSHAKE;
        if (!used)
            return p; /* at most MAX_CONNS tries */
    }
}

/* ---- host to guest ---- */

/* A receive chain with room for a header: one kept from before, or a new
 * one; NULL when the guest has posted none. */
static struct vmm_virtq_chain *rx_next(struct vsock *v)
{
    struct vmm_virtq *q = vmm_virtio_queue(v->t, RX_Q);
    for (;;) {
        struct vmm_virtq_chain *ch = NULL;
        if (v->nspare) {
            ch = v->rx_spare[0];
            v->nspare--;
            memmove(v->rx_spare, v->rx_spare + 1, v->nspare * sizeof(ch));
        } else if (vmm_virtq_pop(q, &ch) <= 0) {
            return NULL;
        }
        if (ch->writable_len >= HDR_SIZE)
            return ch;
        /* No room for a header: the driver's mistake, given back empty. */
        v->stats.bad_packets++;
        vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-vsock: a %" PRIu64 "-byte receive buffer (the header is %u)",
                        ch->writable_len, HDR_SIZE);
        (void)vmm_virtq_push(q, ch, 0);
    }
}

/* rx_next, and when there is none, rx_wait is set: the next notify clears it. */
static struct vmm_virtq_chain *rx_take(struct vsock *v)
{
    struct vmm_virtq_chain *ch = rx_next(v);
    if (!ch)
        v->rx_wait = true;
    return ch;
}

/* Keep chains ch[0..n) (popped in that order, none used) to be taken
 * first, before the ones kept already. They came from the kept ones and
 * the ring, so they fit. */
static void rx_keep(struct vsock *v, struct vmm_virtq_chain **ch, unsigned n)
{
    memmove(v->rx_spare + n, v->rx_spare, v->nspare * sizeof(*ch));
    memcpy(v->rx_spare, ch, n * sizeof(*ch));
    v->nspare += n;
}

static void rx_spare_free(struct vsock *v)
{
    for (unsigned i = 0; i < v->nspare; i++)
        vmm_virtq_chain_free(v->rx_spare[i]);
    v->nspare = 0;
}

/* Complete ch with header p (and p->len payload bytes already written). */
static void rx_send(struct vsock *v, struct vmm_virtq_chain *ch, struct pkt *p, struct conn *c)
{
    if (c) {
        p->fwd_cnt = c->fwd_cnt;
        c->fwd_sent = c->fwd_cnt;
    }
    uint8_t b[HDR_SIZE];
    hdr_encode(p, b);
    uint32_t written =
        vmm_virtq_chain_write(ch, 0, b, HDR_SIZE) == HDR_SIZE ? HDR_SIZE + p->len : 0;
    (void)vmm_virtq_push(vmm_virtio_queue(v->t, RX_Q), ch, written);
    v->stats.rx_packets++;
    if (p->op == OP_RST)
        v->stats.resets++;
}

/* The next control packet owed, round robin over the connections; false
 * when none. *cp: its connection (NULL for a queued RST). */
static bool ctl_next(struct vsock *v, struct pkt *p, struct conn **cp)
{
    *cp = NULL;
    if (v->rst_len) {
        struct rst r = v->rstq[v->rst_head];
        v->rst_head = (v->rst_head + 1) % RSTQ_MAX;
        v->rst_len--;
        *p = host_pkt(v, r.local_port, r.peer_port, OP_RST);
        return true;
    }
    for (unsigned k = 0; k < v->nconn; k++) {
        struct conn *c = v->conn[(v->ctl_rr + k) % v->nconn];
        if (!c->ctl)
            continue;
        v->ctl_rr = (v->ctl_rr + k + 1) % v->nconn;
        uint32_t bit = c->ctl & -c->ctl; /* lowest first: REQUEST before the rest */
        c->ctl &= ~bit;
        uint16_t op = bit == CTL_REQUEST         ? OP_REQUEST
                      : bit == CTL_RESPONSE      ? OP_RESPONSE
                      : bit == CTL_SHUTDOWN      ? OP_SHUTDOWN
                      : bit == CTL_CREDIT_UPDATE ? OP_CREDIT_UPDATE
                                                 : OP_CREDIT_REQUEST;
        *p = host_pkt(v, c->local_port, c->peer_port, op);
        if (op == OP_SHUTDOWN)
            p->flags = SHUT_F_RCV | SHUT_F_SEND;
        if (op == OP_REQUEST)
            c->guest_knows = true;
        *cp = c;
        return true;
    }
    return false;
}

static bool ctl_pending(const struct vsock *v)
{
    for (unsigned i = 0; i < v->nconn; i++)
        if (v->conn[i]->ctl)
            return true;
    return v->rst_len > 0;
}

/* Send the control packets owed, as far as receive buffers and one
 * wake-up's budget go (lock held). */
static void rx_control(struct vsock *v)
{
    if (!vmm_virtio_driver_ok(v->t))
        return;
    struct vmm_virtq *q = vmm_virtio_queue(v->t, RX_Q);
    for (unsigned n = 0;; n++) {
        if (n == VMM_VIRTIO_WAKE_CHAINS) {
            vmm_virtio_requeue(v->t, RX_Q);
            break;
        }
        struct pkt p;
        struct conn *c;
        if (!ctl_pending(v))
            break;
        struct vmm_virtq_chain *ch = rx_take(v);
        if (!ch)
            break;
        if (!ctl_next(v, &p, &c)) {
            rx_keep(v, &ch, 1);
            break;
        }
        rx_send(v, ch, &p, c);
    }
    vmm_virtq_notify(q);
}

/* Read stream bytes from c's socket into receive buffers, within the
 * guest's credit and one wake-up's budget (lock held, loop thread). One
 * readv fills the payload room of as many buffers as the credit, the
 * budget and RX_BATCH allow; the bytes it returned are then split into
 * packets in the order the buffers were popped, and the buffers it did
 * not reach are kept for the next read. */
static void conn_rx(struct vsock *v, struct conn *c)
{
    if (!vmm_virtio_driver_ok(v->t))
        return;
    /* Stream bytes never overtake the RESPONSE that opens the connection. */
    if (c->ctl & CTL_RESPONSE)
        return;
    struct vmm_virtq *q = vmm_virtio_queue(v->t, RX_Q);
    uint64_t moved = 0;
    unsigned chains = 0;
    while (c->state == CONN_OPEN && !c->host_eof && !c->guest_done_recv) {
        if (chains >= VMM_VIRTIO_WAKE_CHAINS || moved >= VMM_VIRTIO_WAKE_BYTES)
            break; /* level-triggered: the loop comes back */
        uint32_t credit = peer_credit(c);
        if (credit == 0) {
            if (!c->credit_asked) {
                c->credit_asked = true;
                c->ctl |= CTL_CREDIT_REQUEST;
            }
            break;
        }
        /* Gather: what is left of the credit and the byte budget, over
         * buffers within the chain budget. */
        uint64_t left = credit;
        if (left > VMM_VIRTIO_WAKE_BYTES - moved)
            left = VMM_VIRTIO_WAKE_BYTES - moved;
        unsigned max_chains = VMM_VIRTIO_WAKE_CHAINS - chains;
        if (max_chains > RX_BATCH)
            max_chains = RX_BATCH;
        struct vmm_virtq_chain *ch[RX_BATCH];
        uint32_t cap[RX_BATCH];
        struct iovec iov[RX_IOV_MAX];
        unsigned nch = 0, niov = 0;
        while (nch < max_chains && left > 0 && niov < RX_IOV_MAX) {
            struct vmm_virtq_chain *x = nch ? rx_next(v) : rx_take(v);
            if (!x)
                break;
            uint64_t room = x->writable_len - HDR_SIZE;
            uint32_t want = left < MAX_PAYLOAD ? (uint32_t)left : MAX_PAYLOAD;
            if (room < want)
                want = (uint32_t)room;
            unsigned max_iov = RX_IOV_MAX - niov;
            if (max_iov > VSOCK_IOV)
                max_iov = VSOCK_IOV;
            int n = want ? vmm_virtq_chain_iov(x, true, HDR_SIZE, want, iov + niov, max_iov) : 0;
            if (n == -ENOSPC) {
                want = 4096 < want ? 4096 : want;
                n = vmm_virtq_chain_iov(x, true, HDR_SIZE, want, iov + niov, max_iov);
            }
            if (n <= 0 && nch) {
                /* Dealt with first in the next round. */
                rx_keep(v, &x, 1);
                break;
            }
            ch[nch] = x;
            cap[nch++] = n > 0 ? want : 0;
            if (n <= 0)
                break;
            niov += (unsigned)n;
            left -= want;
        }
        if (nch == 0)
            break;
        chains += nch;
        if (cap[0] == 0) {
            /* A buffer with no room past the header, or unusable memory:
             * send the guest a credit update in it instead. */
            struct pkt p = host_pkt(v, c->local_port, c->peer_port, OP_CREDIT_UPDATE);
            rx_send(v, ch[0], &p, c);
            continue;
        }
        ssize_t r = readv(c->fd, iov, (int)niov);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            rx_keep(v, ch, nch);
            break;
        }
        if (r <= 0) {
            if (r < 0) {
                rx_keep(v, ch, nch);
                conn_close(v, c, true);
                break;
            }
            /* End of stream: the host will send nothing more. The guest
             * answers with RST (or shuts down too). */
            c->host_eof = true;
            struct pkt p = host_pkt(v, c->local_port, c->peer_port, OP_SHUTDOWN);
            p.flags = SHUT_F_RCV | SHUT_F_SEND;
            rx_send(v, ch[0], &p, c);
            rx_keep(v, ch + 1, nch - 1);
            break;
        }
        uint32_t got = (uint32_t)r; /* at most the credit */
        unsigned used = 0;
        while (used < nch && got > 0) {
            struct pkt p = host_pkt(v, c->local_port, c->peer_port, OP_RW);
            p.len = got < cap[used] ? got : cap[used];
            got -= p.len;
            c->rx_cnt += p.len;
            rx_send(v, ch[used++], &p, c);
        }
        rx_keep(v, ch + used, nch - used);
        c->credit_asked = false;
        v->stats.rx_bytes += (uint64_t)r;
        moved += (uint64_t)r;
        if (used < nch)
            break; /* the socket is drained for now */
    }
    vmm_virtq_notify(q);
}

/* ---- guest to host ---- */

/* Write what c's buffer holds to the socket. Returns 0, or -EPIPE when the
 * socket is gone (the caller resets the connection). */
static int conn_flush(struct conn *c)
{
    while (c->len) {
        struct iovec iov[2];
        uint32_t first = BUF_CAP - c->head < c->len ? BUF_CAP - c->head : c->len;
        iov[0] = (struct iovec){c->buf + c->head, first};
        iov[1] = (struct iovec){c->buf, c->len - first};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = c->len > first ? 2 : 1};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        if (w <= 0)
            return -EPIPE;
        uint32_t done = (uint32_t)w, answer = done < c->skip ? done : c->skip;
        c->head = (c->head + done) % BUF_CAP;
        c->len -= done;
        c->skip -= answer;
        c->fwd_cnt += done - answer;
    }
    c->head = 0;
    return 0;
}

/* After bytes went to the socket: owe the guest a credit update each
 * quarter buffer, and finish a shutdown the guest asked for once drained.
 * Returns false when c was closed. */
static bool conn_after_write(struct vsock *v, struct conn *c)
{
    if (c->fwd_cnt - c->fwd_sent >= BUF / 4)
        c->ctl |= CTL_CREDIT_UPDATE;
    if (c->len == 0 && c->closing) {
        conn_close(v, c, true);
        return false;
    }
    if (c->len == 0 && c->guest_done_send && !c->write_shut) {
        c->write_shut = true;
        (void)shutdown(c->fd, SHUT_WR);
    }
    return true;
}

/* OP_RW: the payload of ch (len bytes after the header) to c's socket,
 * directly while nothing waits in the buffer, the rest into the buffer.
 * Returns false when c was reset (a guest past its credit). */
static bool tx_rw(struct vsock *v, struct conn *c, const struct vmm_virtq_chain *ch, uint32_t len)
{
    uint64_t off = 0;
    while (c->len == 0 && off < len) {
        struct iovec iov[VSOCK_IOV];
        int n = vmm_virtq_chain_iov(ch, false, HDR_SIZE + off, len - off, iov, VSOCK_IOV);
        if (n == -ENOSPC)
            n = vmm_virtq_chain_iov(ch, false, HDR_SIZE + off, 4096, iov, VSOCK_IOV);
        if (n <= 0)
            break; /* copied below, where a failure resets */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        if (w <= 0) {
            conn_close(v, c, true);
            return false;
        }
        off += (uint64_t)w;
        c->fwd_cnt += (uint32_t)w;
    }
    uint32_t rest = len - (uint32_t)off;
    if (rest > BUF - (c->len - c->skip)) {
        vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-vsock: the guest sent past its credit on %u:%u; resetting",
                        c->local_port, c->peer_port);
        conn_close(v, c, true);
        return false;
    }
    if (rest && !c->buf && !(c->buf = malloc(BUF_CAP))) {
        conn_close(v, c, true);
        return false;
    }
    while (rest) {
        uint32_t tail = (c->head + c->len) % BUF_CAP;
        uint32_t chunk = BUF_CAP - tail < rest ? BUF_CAP - tail : rest;
        if (vmm_virtq_chain_read(ch, HDR_SIZE + off, c->buf + tail, chunk) != (int)chunk) {
            conn_close(v, c, true);
            return false;
        }
        c->len += chunk;
        off += chunk;
        rest -= chunk;
    }
    return true;
}

/* The guest asks for host port p: connect to "<path>_<p>". */
static void guest_connect(struct vsock *v, const struct pkt *p)
{
    if (v->nconn == VMM_VIRTIO_VSOCK_MAX_CONNS) {
        rst_queue(v, p->dst_port, p->src_port);
        return;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    /* create kept the path short enough for any port. */
    int len = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%" PRIu32, v->path, p->dst_port);
    int fd = len > 0 && (size_t)len < sizeof(sa.sun_path)
                 ? socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
                 : -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        vmm_log_debug("virtio-vsock: guest connection to %s: %s", sa.sun_path,
                      vmm_strerror(-errno));
        if (fd >= 0)
            close(fd);
        rst_queue(v, p->dst_port, p->src_port);
        return;
    }
    struct conn *c = conn_new(v, fd, CONN_OPEN);
    if (!c) {
        close(fd);
        rst_queue(v, p->dst_port, p->src_port);
        return;
    }
    c->local_port = p->dst_port;
    c->peer_port = p->src_port;
    c->guest_knows = true;
    c->peer_buf_alloc = p->buf_alloc;
    c->peer_fwd_cnt = p->fwd_cnt;
    c->ctl |= CTL_RESPONSE;
    v->stats.conns_total++;
    conn_update_watch(c);
}

/* One packet from the guest (its header p, its chain ch). */
static void tx_packet(struct vsock *v, const struct pkt *p, const struct vmm_virtq_chain *ch)
{
    if (p->src_cid != v->cid || p->dst_cid != HOST_CID) {
        v->stats.bad_packets++;
        vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-vsock: a packet from CID %" PRIu64 " to CID %" PRIu64
                        " (the guest is %" PRIu64 "); dropped",
                        p->src_cid, p->dst_cid, v->cid);
        return;
    }
    struct conn *c = conn_find(v, p->dst_port, p->src_port);
    if (p->type != TYPE_STREAM || p->len > ch->readable_len - HDR_SIZE ||
        (p->op == OP_RW && p->len > MAX_PAYLOAD)) {
        /* Not a packet this device can take: the connection (if any) ends. */
        if (p->op != OP_RST) {
            if (c)
                conn_close(v, c, true);
            else
                rst_queue(v, p->dst_port, p->src_port);
        }
        return;
    }
    if (p->op == OP_REQUEST) {
        if (c)
            conn_close(v, c, true); /* a second REQUEST on a live connection */
        else
            guest_connect(v, p);
        return;
    }
    if (!c) {
        if (p->op != OP_RST)
            rst_queue(v, p->dst_port, p->src_port);
        return;
    }
    c->peer_buf_alloc = p->buf_alloc;
    c->peer_fwd_cnt = p->fwd_cnt;
    switch (p->op) {
    case OP_RESPONSE:
        if (c->state != CONN_REQUEST) {
            conn_close(v, c, true);
            return;
        }
        c->state = CONN_OPEN;
        v->stats.conns_total++;
        /* "OK <host_port>\n" goes out ahead of any stream bytes. */
        char ok[24];
        int n = snprintf(ok, sizeof(ok), "OK %" PRIu32 "\n", c->local_port);
        if (!(c->buf = malloc(BUF_CAP))) {
            conn_close(v, c, true);
            return;
        }
        memcpy(c->buf, ok, (size_t)n);
        c->head = 0;
        c->len = c->skip = (uint32_t)n;
        if (conn_flush(c) < 0) {
            conn_close(v, c, true);
            return;
        }
        break;
    case OP_RST:
        conn_close(v, c, false);
        return;
    case OP_SHUTDOWN:
        if (p->flags & SHUT_F_RCV)
            c->guest_done_recv = true;
        if (p->flags & SHUT_F_SEND)
            c->guest_done_send = true;
        if (c->guest_done_recv && c->guest_done_send)
            c->closing = true;
        if (!conn_after_write(v, c))
            return;
        break;
    case OP_RW:
        if (c->state != CONN_OPEN || c->guest_done_send) {
            conn_close(v, c, true);
            return;
        }
        if (!tx_rw(v, c, ch, p->len) || !conn_after_write(v, c))
            return;
        v->stats.tx_bytes += p->len;
        break;
    case OP_CREDIT_UPDATE:
        break;
    case OP_CREDIT_REQUEST:
        c->ctl |= CTL_CREDIT_UPDATE;
        break;
    default:
        conn_close(v, c, true);
        return;
    }
    conn_update_watch(c);
}

/* Handle transmit chains, one wake-up's worth (lock held, loop thread). */
static void tx_process(struct vsock *v)
{
    if (!vmm_virtio_driver_ok(v->t))
        return;
    struct vmm_virtq *q = vmm_virtio_queue(v->t, TX_Q);
    uint64_t bytes_before = v->stats.tx_bytes;
    for (unsigned n = 0;; n++) {
        if (n == VMM_VIRTIO_WAKE_CHAINS ||
            v->stats.tx_bytes - bytes_before >= VMM_VIRTIO_WAKE_BYTES) {
            vmm_virtio_requeue(v->t, TX_Q);
            break;
        }
        struct vmm_virtq_chain *ch;
        if (vmm_virtq_pop(q, &ch) <= 0)
            break;
        uint8_t b[HDR_SIZE];
        struct pkt p;
        if (vmm_virtq_chain_read(ch, 0, b, HDR_SIZE) != HDR_SIZE) {
            v->stats.bad_packets++;
            vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-vsock: a %" PRIu64 "-byte transmit buffer (the header is %u)",
                            ch->readable_len, HDR_SIZE);
        } else {
            hdr_decode(b, &p);
            v->stats.tx_packets++;
            tx_packet(v, &p, ch);
        }
        (void)vmm_virtq_push(q, ch, 0);
    }
    vmm_virtq_notify(q);
    rx_control(v);
}

/* ---- host sockets ---- */

/* Read the host's "CONNECT <port>\n", never past the newline (what follows
 * is stream data). A malformed line closes this connection only. */
static void conn_handshake(struct vsock *v, struct conn *c)
{
    char peek[HS_MAX];
    ssize_t n = recv(c->fd, peek, HS_MAX - c->hs_len, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(v, c, false);
        return;
    }
    char *nl = memchr(peek, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - peek) + 1 : (size_t)n;
    ssize_t r = recv(c->fd, c->hs + c->hs_len, take, MSG_DONTWAIT);
    if (r != (ssize_t)take) {
        conn_close(v, c, false);
        return;
    }
    c->hs_len += (unsigned)take;
    if (!nl) {
        if (c->hs_len == HS_MAX)
            goto bad;
        return;
    }
    static const char prefix[] = "CONNECT ";
    size_t plen = sizeof(prefix) - 1;
    size_t end = c->hs_len - 1; /* the newline */
    if (end > plen && c->hs[end - 1] == '\r')
        end--;
    if (c->hs_len < plen + 2 || memcmp(c->hs, prefix, plen) != 0 || end - plen > 10)
        goto bad;
    uint64_t port = 0;
    for (size_t i = plen; i < end; i++) {
        if (c->hs[i] < '0' || c->hs[i] > '9')
            goto bad;
        port = port * 10 + (uint64_t)(c->hs[i] - '0');
    }
    if (end == plen || port > UINT32_MAX)
        goto bad;
    c->peer_port = (uint32_t)port;
    c->local_port = alloc_host_port(v);
    c->state = CONN_REQUEST;
    c->ctl |= CTL_REQUEST;
    conn_update_watch(c);
    rx_control(v); /* waits for receive buffers if the guest has none yet */
    return;
bad:
    vmm_log_limited(&v->hs_log, VMM_VIRTIO_LOG_BUDGET,
                    "virtio-vsock: %s: a malformed handshake (not \"CONNECT <port>\\n\"); "
                    "closing that connection",
                    v->path);
    conn_close(v, c, false);
}

static void conn_event(void *opaque, int fd, uint32_t events)
{
    (void)fd;
    struct conn *c = opaque;
    struct vsock *v = c->v;
    vmm_virtio_lock(v->t);
    if (c->closed) { /* its fd waits for the reaper */
        vmm_virtio_unlock(v->t);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        conn_handshake(v, c);
    } else if (c->state == CONN_REQUEST) {
        /* The host closed (or failed) while the guest had not answered yet:
         * the connection goes, and a guest that saw its REQUEST gets an RST
         * (conn_close sends none to a guest that did not). */
        if (events & (EPOLLHUP | EPOLLERR)) {
            conn_close(v, c, true);
            rx_control(v);
            goto out;
        }
        if (events & EPOLLRDHUP)
            c->host_rdhup = true;
        conn_update_watch(c);
    } else {
        if ((events & EPOLLOUT) && c->len) {
            if (conn_flush(c) < 0) {
                conn_close(v, c, true);
                goto out;
            }
            if (!conn_after_write(v, c))
                goto out;
        }
        /* Control packets first; without receive buffers the watch stops
         * until a notify. */
        rx_control(v);
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !v->rx_wait)
            conn_rx(v, c);
        rx_control(v); /* what reading owed (a CREDIT_REQUEST) */
        if (!c->closed)
            conn_update_watch(c);
    }
out:
    vmm_virtio_unlock(v->t);
}

static void listen_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct vsock *v = opaque;
    vmm_virtio_lock(v->t);
    for (unsigned i = 0; i < ACCEPT_BATCH && v->nconn < VMM_VIRTIO_VSOCK_MAX_CONNS; i++) {
        int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                vmm_log_limited(&v->hs_log, VMM_VIRTIO_LOG_BUDGET, "virtio-vsock: %s: accept: %s",
                                v->path, vmm_strerror(-errno));
            break;
        }
        if (!conn_new(v, s, CONN_HANDSHAKE))
            close(s);
    }
    listen_update_watch(v);
    vmm_virtio_unlock(v->t);
}

/* ---- vhost-vsock ---- */

static int vhost_ioctl(int fd, unsigned long req, void *arg, const char *what)
{
    if (ioctl(fd, req, arg) == 0)
        return 0;
    int e = -errno;
    vmm_log_warn("virtio-vsock: vhost-vsock: %s: %s", what, vmm_strerror(e));
    return e;
}

/* vhost signals call_fd[q] when the guest wants an interrupt for queue q;
 * the loop passes it to the transport (virtio-mmio must set
 * InterruptStatus, so it cannot go to an irqfd). */
static void call_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct vsock *v = opaque;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0)
        return;
    vmm_virtio_lock(v->t);
    for (unsigned q = 0; q < 2 && v->vhost_running; q++)
        if (v->call_fd[q] == fd)
            vmm_virtq_interrupt(vmm_virtio_queue(v->t, q));
    vmm_virtio_unlock(v->t);
}

/* Stop the kernel's rings and take the notifications back (lock held). */
static void vhost_stop(struct vsock *v)
{
    if (!v->vhost_running)
        return;
    v->vhost_running = false;
    int off = 0;
    (void)ioctl(v->vhost_fd, VHOST_VSOCK_SET_RUNNING, &off);
    for (unsigned q = 0; q < 2; q++) {
        struct vhost_vring_state st = {.index = q};
        (void)ioctl(v->vhost_fd, VHOST_GET_VRING_BASE, &st); /* stops the ring */
        if (v->kick_taken[q]) {
            (void)v->t->notify_fd(v->t, q, false);
            v->kick_taken[q] = false;
        }
    }
}

/* The host address of [gpa, gpa + len), which must lie in one region. */
static int ring_ptr(struct vsock *v, vmm_gpa_t gpa, uint64_t len, bool write, __u64 *hva)
{
    void *ptr;
    unsigned access = VMM_ACCESS_READ | (write ? VMM_ACCESS_WRITE : 0);
    int r = vmm_memory_get_ptr(vmm_virtio_memory(v->t), gpa, len, access, &ptr);
    if (r == 0)
        *hva = (uintptr_t)ptr;
    return r;
}

/* The guest memory map for vhost (the caller frees it), or NULL. */
static struct vhost_memory *vhost_table(struct vmm_memory *mem)
{
    unsigned nr = vmm_memory_region_count(mem);
    struct vhost_memory *table = calloc(1, sizeof(*table) + nr * sizeof(table->regions[0]));
    if (!table)
        return NULL;
    table->nregions = nr;
    for (unsigned i = 0; i < nr; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) < 0) {
            free(table);
            return NULL;
        }
        table->regions[i] = (struct vhost_memory_region){
            .guest_phys_addr = info.gpa,
            .memory_size = info.len,
            .userspace_addr = (uintptr_t)info.host,
        };
    }
    return table;
}

/* Hand rx and tx to vhost-vsock at DRIVER_OK: features, the guest memory
 * map, each ring's layout, call and kick eventfds (the kick is the
 * transport's notification eventfd, an ioeventfd on a VM), then run.
 * Lock held. */
static int vhost_start(struct vsock *v)
{
    struct vmm_virtio_transport *t = v->t;
    if (!t->notify_fd)
        return -ENOTSUP;
    unsigned size[2];
    vmm_gpa_t desc[2], drv[2], dev[2];
    for (unsigned q = 0; q < 2; q++) {
        if (vmm_virtq_layout(vmm_virtio_queue(t, q), &size[q], &desc[q], &drv[q], &dev[q]) < 0) {
            vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-vsock: queue %u is not ready at DRIVER_OK", q);
            return -EINVAL;
        }
    }
    struct vhost_memory *table = vhost_table(vmm_virtio_memory(t));
    if (!table)
        return -ENOMEM;
    /* 0 after the driver's set-up, or a position a snapshot saved (or
     * quiesce took back from the kernel). */
    struct virtq_snap pos[2];
    for (unsigned q = 0; q < 2; q++)
        if (vmm_virtq_snap_save(vmm_virtio_queue(t, q), &pos[q]) < 0) {
            free(table);
            return -EBUSY;
        }
    __u64 f = v->features & v->vhost_features;
    int r;
    if ((r = vhost_ioctl(v->vhost_fd, VHOST_SET_FEATURES, &f, "features")) < 0 ||
        (r = vhost_ioctl(v->vhost_fd, VHOST_SET_MEM_TABLE, table, "memory table")) < 0) {
        free(table);
        return r;
    }
    free(table);
    v->vhost_running = true; /* from here vhost_stop undoes what was done */
    for (unsigned q = 0; q < 2 && r == 0; q++) {
        struct vhost_vring_state num = {.index = q, .num = size[q]};
        struct vhost_vring_state base = {.index = q, .num = pos[q].last_avail};
        struct vhost_vring_addr addr = {.index = q};
        struct vhost_vring_file call = {.index = q, .fd = v->call_fd[q]};
        if ((r = ring_ptr(v, desc[q], 16ull * size[q], false, &addr.desc_user_addr)) < 0 ||
            (r = ring_ptr(v, drv[q], 6 + 2ull * size[q], false, &addr.avail_user_addr)) < 0 ||
            (r = ring_ptr(v, dev[q], 6 + 8ull * size[q], true, &addr.used_user_addr)) < 0 ||
            (r = vhost_ioctl(v->vhost_fd, VHOST_SET_VRING_NUM, &num, "ring size")) < 0 ||
            (r = vhost_ioctl(v->vhost_fd, VHOST_SET_VRING_BASE, &base, "ring base")) < 0 ||
            (r = vhost_ioctl(v->vhost_fd, VHOST_SET_VRING_ADDR, &addr, "ring addresses")) < 0 ||
            (r = vhost_ioctl(v->vhost_fd, VHOST_SET_VRING_CALL, &call, "call eventfd")) < 0)
            break;
        int kick = t->notify_fd(t, q, true);
        if (kick < 0) {
            r = kick;
            break;
        }
        v->kick_taken[q] = true;
        struct vhost_vring_file kf = {.index = q, .fd = kick};
        r = vhost_ioctl(v->vhost_fd, VHOST_SET_VRING_KICK, &kf, "kick eventfd");
        /* Have the kernel look at the ring once: what the driver made
         * available while it was stopped came with notifications it did
         * not see. */
        uint64_t one = 1;
        if (r == 0 && write(kick, &one, sizeof(one)) < 0)
            vmm_log_debug("virtio-vsock: kicking vhost ring %u: %s", q, vmm_strerror(-errno));
    }
    int on = 1;
    if (r == 0)
        r = vhost_ioctl(v->vhost_fd, VHOST_VSOCK_SET_RUNNING, &on, "running");
    if (r < 0)
        vhost_stop(v);
    return r;
}

/* Open /dev/vhost-vsock for the guest's CID. Returns 0 or -errno (logged). */
static int vhost_open(struct vsock *v)
{
    v->vhost_fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
    if (v->vhost_fd < 0) {
        int e = -errno;
        vmm_log_warn("virtio-vsock: opening /dev/vhost-vsock: %s%s", vmm_strerror(e),
                     e == -ENOENT ? " (modprobe vhost_vsock)" : "");
        return e;
    }
    __u64 f = 0, cid = v->cid;
    int r = vhost_ioctl(v->vhost_fd, VHOST_SET_OWNER, NULL, "owner");
    if (r == 0)
        r = vhost_ioctl(v->vhost_fd, VHOST_GET_FEATURES, &f, "features");
    if (r == 0)
        r = vhost_ioctl(v->vhost_fd, VHOST_VSOCK_SET_GUEST_CID, &cid, "guest CID");
    v->vhost_features = f & ~(1ull << VHOST_F_LOG_ALL); /* no dirty log */
    return r;
}

/* ---- snapshots ---- */

/* struct virtio_vsock_event's id (virtio 1.2 section 5.10.6.7). */
#define EVENT_TRANSPORT_RESET 0

/* Send the TRANSPORT_RESET owed on the guest's first event buffer (lock
 * held); without one it stays owed until the driver posts one. */
static void send_reset_event(struct vsock *v)
{
    struct vmm_virtq *q = vmm_virtio_queue(v->t, EVENT_Q);
    while (v->reset_pending && vmm_virtio_driver_ok(v->t)) {
        struct vmm_virtq_chain *ch;
        if (vmm_virtq_pop(q, &ch) <= 0)
            break;
        uint32_t id = EVENT_TRANSPORT_RESET;
        if (ch->writable_len < sizeof(id)) {
            vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                            "virtio-vsock: a %" PRIu64 "-byte event buffer (an event is 4)",
                            ch->writable_len);
            (void)vmm_virtq_push(q, ch, 0);
            continue;
        }
        uint32_t n = vmm_virtq_chain_write(ch, 0, &id, sizeof(id)) == sizeof(id) ? sizeof(id) : 0;
        (void)vmm_virtq_push(q, ch, n);
        v->reset_pending = n == 0;
    }
    vmm_virtq_notify(q);
}

/*
 * A snapshot keeps the device, not its connections (as Firecracker does):
 * the guest CID, the features, whether vhost-vsock ran the rings, and the
 * counters; ring positions are the transport's. The restored device owes
 * the guest a TRANSPORT_RESET event, on which the driver drops every
 * connection and reads the CID again; the host side is whatever the
 * restoring application built (a socket path, or vhost-vsock).
 */
#define VSOCK_SNAP_VERSION 1
struct vsock_image {
    uint32_t version, vhost;
    uint64_t cid, features;
    uint32_t stats_size, pad;
};

static void vsock_thaw(void *opaque)
{
    struct vsock *v = opaque;
    if (!v->vhost_paused)
        return;
    v->vhost_paused = false;
    int r = vhost_start(v);
    if (r < 0) {
        vmm_log_error("virtio-vsock: vhost-vsock did not start again after a snapshot: %s",
                      vmm_strerror(r));
        vmm_virtio_set_needs_reset(v->t);
    }
}

/* Stop vhost-vsock and take its ring positions (see vhost_quiesce in
 * net.c): VHOST_GET_VRING_BASE and the used index in guest memory must
 * agree, or buffers are in flight and the snapshot is refused. */
static int vsock_vhost_quiesce(struct vsock *v)
{
    struct vmm_virtio_transport *t = v->t;
    int r = 0, off = 0;
    bool lost = false; /* a ring position could not be read */
    if (vhost_ioctl(v->vhost_fd, VHOST_VSOCK_SET_RUNNING, &off, "stopping") < 0)
        return -EIO; /* still running, untouched: no snapshot */
    v->vhost_running = false;
    v->vhost_paused = true;
    for (unsigned q = 0; q < 2; q++) {
        struct vmm_virtq *vq = vmm_virtio_queue(t, q);
        struct vhost_vring_state st = {.index = q};
        unsigned size;
        vmm_gpa_t desc, drv, dev;
        uint16_t used;
        if (vhost_ioctl(v->vhost_fd, VHOST_GET_VRING_BASE, &st, "ring base") < 0 ||
            vmm_virtq_layout(vq, &size, &desc, &drv, &dev) < 0 ||
            vmm_memory_read_obj(vmm_virtio_memory(t), dev + 2, &used) < 0) {
            lost = true;
        } else {
            if ((uint16_t)st.num != used) {
                vmm_log_error("virtio-vsock: vhost-vsock queue %u has %u buffers in flight: no "
                              "snapshot",
                              q, (uint16_t)(st.num - used));
                r = -EBUSY;
            }
            struct virtq_snap pos = {
                .last_avail = (uint16_t)st.num, .used_idx = used, .signalled_used = used};
            vmm_virtq_snap_restore(vq, &pos);
        }
        uint64_t n;
        if (v->call_fd[q] >= 0 && read(v->call_fd[q], &n, sizeof(n)) == sizeof(n))
            vmm_virtq_interrupt(vq);
        if (v->kick_taken[q]) {
            (void)t->notify_fd(t, q, false);
            v->kick_taken[q] = false;
        }
    }
    if (lost) {
        /* Starting vhost again from positions it did not give would hand
         * the guest's buffers out twice: the driver resets the device. */
        vmm_log_error("virtio-vsock: vhost-vsock ring positions unknown: the device needs a "
                      "reset");
        v->vhost_paused = false;
        vmm_virtio_set_needs_reset(t);
        return -EIO;
    }
    if (r < 0) {
        vsock_thaw(v);
        return r;
    }
    vmm_virtio_mark_all_dirty(t, "virtio-vsock: vhost-vsock");
    return 0;
}

static int vsock_quiesce(void *opaque)
{
    struct vsock *v = opaque;
    if (v->vhost_running)
        return vsock_vhost_quiesce(v);
    if (v->nspare == 0)
        return 0;
    /* Receive buffers taken and not filled go back to the ring untouched;
     * where they cannot (the driver had a malformed buffer completed after
     * them), they are completed empty, which a driver drops, so that no
     * guest can keep its VM from being saved. No interrupt: the guest finds
     * them with the next packet's. */
    struct vmm_virtq *q = vmm_virtio_queue(v->t, RX_Q);
    if (vmm_virtq_unpop(q, v->rx_spare, v->nspare) < 0) {
        vmm_log_info("virtio-vsock: %u receive buffers completed empty for a snapshot", v->nspare);
        for (unsigned i = 0; i < v->nspare; i++)
            if (vmm_virtq_push(q, v->rx_spare[i], 0) < 0)
                vmm_log_debug("virtio-vsock: receive push failed");
    }
    v->nspare = 0;
    v->rx_wait = false;
    vmm_virtio_requeue(v->t, RX_Q);
    return 0;
}

static int vsock_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vsock *v = opaque;
    struct vsock_image im = {.version = VSOCK_SNAP_VERSION,
                             .vhost = v->vhost,
                             .cid = v->cid,
                             .features = v->features,
                             .stats_size = sizeof(v->stats)};
    snap_put(w, &im, sizeof(im));
    snap_put(w, &v->stats, sizeof(v->stats));
    return 0;
}

static int vsock_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vsock *v = opaque;
    struct vsock_image im;
    struct vmm_virtio_vsock_stats st;
    const char *bad = NULL;
    if (snap_get(r, &im, sizeof(im)) < 0 || im.stats_size != sizeof(st) ||
        snap_get(r, &st, sizeof(st)) < 0 || st.size != sizeof(st))
        bad = "truncated";
    else if (im.version != VSOCK_SNAP_VERSION)
        bad = "version";
    else if (im.cid < VMM_VIRTIO_VSOCK_MIN_GUEST_CID || im.cid > 0xfffffffeull)
        bad = "guest CID";
    else if (im.features != v->features)
        bad = "features";
    else if (im.vhost > 1 || im.pad)
        bad = "back end";
    if (bad) {
        vmm_log_error("restore: malformed virtio-vsock state (%s)", bad);
        return -EBADMSG;
    }
    if (im.vhost != v->vhost) {
        vmm_log_error("restore: the virtio-vsock device was saved %s vhost-vsock",
                      im.vhost ? "with" : "without");
        return -EINVAL;
    }
    if (im.cid != v->cid)
        vmm_log_info("restore: virtio-vsock guest CID %" PRIu64 " becomes %" PRIu64
                     " (the guest reads it again on the transport reset)",
                     im.cid, v->cid);
    st.conns_open = v->stats.conns_open; /* connections are not saved */
    v->stats = st;
    /* Owed, not sent: an interrupt raised now would reach vCPUs and an
     * interrupt controller that are restored after the devices, and be
     * lost. The transport looks at every queue once it is restored, through
     * the event loop, which runs with the VM; the event queue's look sends
     * it. */
    v->reset_pending = vmm_virtio_driver_ok(v->t);
    return 0;
}

static const struct virtio_snap_ops vsock_snap = {.quiesce = vsock_quiesce,
                                                  .save = vsock_snap_save,
                                                  .restore = vsock_snap_restore,
                                                  .thaw = vsock_thaw};

/* ---- device callbacks ---- */

static int vsock_attach(void *opaque, struct vmm_virtio_transport *t)
{
    struct vsock *v = opaque;
    v->t = t;
    t->snap = &vsock_snap;
    v->loop = vmm_virtio_event_loop(t);
    if (!v->loop) {
        vmm_log_error("virtio-vsock: the transport has no event loop");
        return -EINVAL;
    }
    if (v->vhost) {
        for (unsigned q = 0; q < 2; q++) {
            v->call_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (v->call_fd[q] < 0)
                return -errno;
            int r = vmm_event_loop_add(v->loop, v->call_fd[q], EPOLLIN, call_event, v);
            if (r < 0)
                return r;
            v->call_watched[q] = true;
        }
        return 0;
    }
    v->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->reap_fd < 0)
        return -errno;
    int r = vmm_event_loop_add(v->loop, v->reap_fd, EPOLLIN, reap_event, v);
    if (r < 0)
        return r;
    v->reap_watched = true;
    r = vmm_event_loop_add(v->loop, v->listen_fd, EPOLLIN, listen_event, v);
    if (r < 0)
        return r;
    v->listen_watched = true;
    v->listen_events = EPOLLIN;
    return 0;
}

static void vsock_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct vsock *v = opaque;
    uint8_t cfg[8];
    memcpy(cfg, &v->cid, 8);
    memcpy(data, cfg + offset, len); /* the transport checked the range */
}

static int vsock_activate(void *opaque, uint64_t features)
{
    struct vsock *v = opaque;
    v->features = features;
    if (v->vhost)
        return vhost_start(v);
    v->rx_wait = false;
    /* Handshakes that came before the driver: their REQUESTs go out as
     * soon as there are receive buffers (on the loop). */
    vmm_virtio_requeue(v->t, RX_Q);
    return 0;
}

/* Drop every connection the guest knew about; host connections it has not
 * seen yet go on waiting for it (lock held). */
static void drop_guest_state(struct vsock *v)
{
    for (unsigned i = v->nconn; i-- > 0;) {
        struct conn *c = v->conn[i];
        if (c->guest_knows) {
            conn_close(v, c, false);
        } else if (c->state == CONN_REQUEST) {
            c->ctl = CTL_REQUEST;
        }
    }
    v->rst_len = 0;
    rx_spare_free(v);
    v->rx_wait = false;
}

/* The device starts over: what the guest knew goes, host ports are given
 * from the first again (alloc_host_port skips those of host connections
 * still waiting for the guest), as by a device just made. */
static void vsock_reset(void *opaque)
{
    struct vsock *v = opaque;
    vhost_stop(v);
    v->vhost_paused = false;
    v->reset_pending = false;
    drop_guest_state(v);
    v->next_port = FIRST_HOST_PORT;
    v->ctl_rr = 0;
}

static void vsock_queue_notify(void *opaque, unsigned index)
{
    struct vsock *v = opaque;
    if (index == EVENT_Q) {
        send_reset_event(v);
        return;
    }
    if (v->vhost)
        return; /* rx and tx are the kernel's */
    if (index == RX_Q) {
        bool was_waiting = v->rx_wait;
        v->rx_wait = false;
        rx_control(v);
        if (was_waiting)
            update_all_watches(v);
    } else if (index == TX_Q) {
        tx_process(v);
    }
}

static void vsock_queue_reset(void *opaque, unsigned index)
{
    struct vsock *v = opaque;
    if (index == EVENT_Q)
        return;
    if (v->vhost_running) {
        /* vhost-vsock cannot reset one ring: the device starts over. */
        vmm_log_limited(&v->bad_log, VMM_VIRTIO_LOG_BUDGET,
                        "virtio-vsock: queue %u reset with vhost-vsock: the device needs a reset",
                        index);
        vhost_stop(v);
        vmm_virtio_set_needs_reset(v->t);
        return;
    }
    /* A connection is carried by both rings: losing either loses them. */
    drop_guest_state(v);
}

static void vsock_destroy(void *opaque)
{
    struct vsock *v = opaque;
    for (unsigned i = 0; i < v->nconn; i++)
        conn_free(v, v->conn[i]);
    while (v->reap) {
        struct conn *next = v->reap->reap_next;
        conn_free(v, v->reap);
        v->reap = next;
    }
    for (unsigned q = 0; q < 2; q++) {
        if (v->call_watched[q])
            (void)vmm_event_loop_remove(v->loop, v->call_fd[q]);
        if (v->call_fd[q] >= 0)
            close(v->call_fd[q]);
    }
    if (v->vhost_fd >= 0)
        close(v->vhost_fd);
    if (v->listen_watched)
        (void)vmm_event_loop_remove(v->loop, v->listen_fd);
    if (v->reap_watched)
        (void)vmm_event_loop_remove(v->loop, v->reap_fd);
    if (v->reap_fd >= 0)
        close(v->reap_fd);
    if (v->listen_fd >= 0) {
        close(v->listen_fd);
        (void)unlink(v->path);
    }
    rx_spare_free(v);
    free(v);
}

static const struct vmm_virtio_device_ops vsock_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = vsock_attach,
    .config_read = vsock_config_read,
    .activate = vsock_activate,
    .reset = vsock_reset,
    .queue_notify = vsock_queue_notify,
    .queue_reset = vsock_queue_reset,
    .destroy = vsock_destroy,
};

/* The listening socket at path; nothing may be there. */
static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (listen(fd, 64) < 0) {
        /* The path bind made would keep the next device from binding. */
        int e = -errno;
        close(fd);
        (void)unlink(path);
        return e;
    }
    return fd;
}

int vmm_virtio_vsock_create(const struct vmm_virtio_vsock_config *cfg,
                            struct vmm_virtio_device *dev)
{
    struct vmm_virtio_vsock_config cfg_copy;
    if (!dev || !cfg || !VMM_ABI_OUT_OK(dev) || VMM_ABI_COPY_IN(&cfg_copy, cfg) < 0)
        return -EINVAL;
    cfg = &cfg_copy;
    unsigned qsize = cfg->queue_size ? cfg->queue_size : 256;
    /* A path with room for "_<port>" after it in a sockaddr_un, or with
     * vhost none (the host side is AF_VSOCK). */
    bool path_ok = cfg->vhost ? !cfg->path : cfg->path && cfg->path[0] && strlen(cfg->path) <= 96;
    if (!vmm_is_pow2(qsize) || qsize > VMM_VIRTQ_MAX_SIZE ||
        cfg->guest_cid < VMM_VIRTIO_VSOCK_MIN_GUEST_CID || cfg->guest_cid > 0xfffffffeull ||
        !path_ok)
        return -EINVAL;
    struct vsock *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->cid = cfg->guest_cid;
    v->reap_fd = v->vhost_fd = v->listen_fd = v->call_fd[0] = v->call_fd[1] = -1;
    v->next_port = FIRST_HOST_PORT;
    v->stats = VMM_INIT(struct vmm_virtio_vsock_stats);
    if (cfg->vhost) {
        v->vhost = true;
        int r = vhost_open(v);
        if (r < 0) {
            if (v->vhost_fd >= 0)
                close(v->vhost_fd);
            free(v);
            return r;
        }
    } else {
        snprintf(v->path, sizeof(v->path), "%s", cfg->path);
        v->listen_fd = listen_at(cfg->path);
    }
    if (!v->vhost && v->listen_fd < 0) {
        int r = v->listen_fd;
        vmm_log_warn("virtio-vsock: listening on %s: %s", cfg->path, vmm_strerror(r));
        free(v);
        return r;
    }
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_VSOCK,
        .num_queues = 3,
        .queue_max_size = qsize,
        .config_size = 8,
        .ops = &vsock_ops,
        .opaque = v,
        .name = "virtio-vsock",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_vsock(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                            const struct vmm_virtio_vsock_config *cfg, struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_vsock_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}

int vmm_virtio_vsock_get_stats(struct vmm_virtio_transport *t, struct vmm_virtio_vsock_stats *stats)
{
    if (!t || !stats || t->caller_ops != &vsock_ops || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct vsock *v = t->dev.opaque;
    vmm_virtio_lock(t);
    struct vmm_virtio_vsock_stats s = v->stats;
    vmm_virtio_unlock(t);
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
