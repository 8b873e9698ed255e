/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock driven from both sides: the test plays the guest's driver
 * through the virtio-mmio registers and rings (vq_driver.h) and the host's
 * programs through real Unix sockets at the device's path (the
 * "CONNECT <port>\n" handshake) and at "<path>_<port>" (guest connections).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_vsock.h>

#include "check_compat.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/mmio_regs.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE 16
#define CID   42
#define HDR   44
#define RXBUF 0x20000ull /* QSIZE receive buffers of RXLEN bytes */
#define RXLEN 0x1000u
#define TXBUF 0x30000ull /* one transmit buffer */
#define TXMAX 0x10000u

#define ACK     VMM_VIRTIO_STATUS_ACKNOWLEDGE
#define DRV     VMM_VIRTIO_STATUS_DRIVER
#define FEAT_OK VMM_VIRTIO_STATUS_FEATURES_OK
#define DRV_OK  VMM_VIRTIO_STATUS_DRIVER_OK

enum {
    OP_REQUEST = 1,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST
};

struct pkt {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

static struct td rx, tx, ev;
static struct vmm_virtio_mmio *m;
static const struct vmm_bus_ops *ops;
static struct vmm_event_loop *loop;
static char dir[PATH_MAX], path[PATH_MAX];
static uint32_t guest_fwd; /* the guest's fwd_cnt in the packets it sends */
static unsigned rx_empty;  /* receive buffers the device gave back unused */

static void on_irq(void *opaque)
{
    (void)opaque;
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

static void pump(int rounds)
{
    for (int i = 0; i < rounds; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 2), 0);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "vmm-vsock-")));
    vmm_test_path(path, sizeof(path), dir, "v.sock");
    td_init(&rx, QSIZE);
    td_other_ring(&tx, &rx, QSIZE, 0x15000, 0x15100, 0x15200);
    td_other_ring(&ev, &rx, QSIZE, 0x16000, 0x16100, 0x16200);
    ops = vmm_virtio_mmio_bus_ops();
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    guest_fwd = 0;
    rx_empty = 0;
    struct vmm_virtio_vsock_config cfg =
        VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = CID, .path = path);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_vsock_create(&cfg, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000, .gsi = 5, .mem = rx.mem,
                 .loop = loop, .interrupt = on_irq);
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m), 0);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_DEVICE_ID), VMM_VIRTIO_ID_VSOCK);
}

static void teardown(void)
{
    vmm_virtio_mmio_destroy(m);
    m = NULL;
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    vmm_event_loop_destroy(loop);
    td_fini(&rx);
    ck_assert_int_eq(access(path, F_OK), -1); /* the device removed its socket */
    ck_assert_int_eq(rmdir(dir), 0);
}

static void start(void)
{
    wr(VMM_VIRTIO_MMIO_STATUS, ACK);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, 0);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_STATUS), ACK | DRV | FEAT_OK);
    rx.avail_idx = rx.used_seen = tx.avail_idx = tx.used_seen = 0;
    memset(td_ptr(&rx, TD_AVAIL), 0, 0x3000);
    memset(td_ptr(&rx, 0x15000), 0, 0x2000);
    setup_queue(0, &rx);
    setup_queue(1, &tx);
    setup_queue(2, &ev);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK | DRV_OK);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_STATUS), ACK | DRV | FEAT_OK | DRV_OK);
}

/* Post n receive buffers of len bytes (len <= RXLEN). */
static void post_rx_len(unsigned n, uint32_t len)
{
    for (unsigned i = 0; i < n; i++) {
        uint16_t slot = rx.avail_idx % QSIZE;
        td_desc(&rx, slot, RXBUF + slot * RXLEN, len, TD_F_WRITE, 0);
        td_avail(&rx, slot);
    }
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static void post_rx(unsigned n)
{
    post_rx_len(n, RXLEN);
}

static void put_hdr(uint8_t *b, const struct pkt *p)
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

static void get_hdr(const uint8_t *b, struct pkt *p)
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

/* The next packet the device gave the guest (payload copied to data, which
 * may be NULL); false when none came. Its buffer goes back to the ring (at
 * full size). */
static bool guest_recv(struct pkt *p, void *data)
{
    for (;;) {
        for (int i = 0; i < 200 && td_used_idx(&rx) == rx.used_seen; i++)
            pump(1);
        if (td_used_idx(&rx) == rx.used_seen)
            return false;
        uint32_t id, len;
        td_used_elem(&rx, rx.used_seen++, &id, &len);
        ck_assert_uint_lt(id, QSIZE);
        const uint8_t *b = td_ptr(&rx, RXBUF + id * RXLEN);
        if (len == 0) {
            rx_empty++;
        } else {
            ck_assert_uint_ge(len, HDR);
            get_hdr(b, p);
            ck_assert_uint_eq(len, HDR + p->len);
            if (data)
                memcpy(data, b + HDR, p->len);
        }
        td_desc(&rx, id, RXBUF + id * RXLEN, RXLEN, TD_F_WRITE, 0);
        td_avail(&rx, (uint16_t)id);
        wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        if (len)
            return true;
    }
}

/* The guest sends a raw chain of bytes [0, total) at TXBUF (the header
 * already there) and waits for it to be used. */
static void guest_send_raw(uint32_t total)
{
    uint16_t slot = tx.avail_idx % QSIZE;
    td_desc(&tx, slot, TXBUF, total, 0, 0);
    td_avail(&tx, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    for (int i = 0; i < 200 && td_used_idx(&tx) != tx.avail_idx; i++)
        pump(1);
    ck_assert_uint_eq(td_used_idx(&tx), tx.avail_idx);
    tx.used_seen = tx.avail_idx;
}

static void guest_send(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags,
                       const void *data, uint32_t len)
{
    ck_assert_uint_le(len, TXMAX - HDR);
    struct pkt p = {.src_cid = CID,
                    .dst_cid = 2,
                    .src_port = src_port,
                    .dst_port = dst_port,
                    .len = len,
                    .type = 1,
                    .op = op,
                    .flags = flags,
                    .buf_alloc = 1u << 20,
                    .fwd_cnt = guest_fwd};
    put_hdr(td_ptr(&tx, TXBUF), &p);
    if (len)
        memcpy(td_ptr(&tx, TXBUF + HDR), data, len);
    guest_send_raw(HDR + len);
}

static void sun_set(struct sockaddr_un *sa, const char *at)
{
    size_t n = strlen(at);
    ck_assert_uint_lt(n, sizeof(sa->sun_path));
    memcpy(sa->sun_path, at, n + 1);
}

static int host_connect(const char *at)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    sun_set(&sa, at);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int host_listen(uint32_t port)
{
    char at[PATH_MAX + 16];
    snprintf(at, sizeof(at), "%s_%u", path, port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    sun_set(&sa, at);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    return fd;
}

static void host_unlisten(int fd, uint32_t port)
{
    char at[PATH_MAX + 16];
    snprintf(at, sizeof(at), "%s_%u", path, port);
    close(fd);
    unlink(at);
}

/* Read up to len bytes the device wrote to fd, pumping the loop; returns
 * the count, 0 at end of stream. */
static ssize_t host_read(int fd, void *buf, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 200 && poll(&p, 1, 0) == 0; i++)
        pump(1);
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    return recv(fd, buf, len, MSG_DONTWAIT);
}

static void host_read_exact(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = host_read(fd, (uint8_t *)buf + got, len - got);
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
}

static struct vmm_virtio_vsock_stats stats(void)
{
    struct vmm_virtio_vsock_stats s = VMM_INIT(struct vmm_virtio_vsock_stats);
    ck_assert_int_eq(vmm_virtio_vsock_get_stats(vmm_virtio_mmio_transport(m), &s), 0);
    return s;
}

/* The host connects to guest port gport; the guest accepts. Returns the
 * host's socket; *hport gets the port the device chose. */
static int host_initiated(uint32_t gport, uint32_t *hport)
{
    int fd = host_connect(path);
    char line[32];
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", gport);
    ck_assert_int_eq(write(fd, line, (size_t)n), n);
    struct pkt p;
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    ck_assert_uint_eq(p.src_cid, 2);
    ck_assert_uint_eq(p.dst_cid, CID);
    ck_assert_uint_eq(p.dst_port, gport);
    ck_assert_uint_eq(p.buf_alloc, VMM_VIRTIO_VSOCK_BUF_ALLOC);
    *hport = p.src_port;
    guest_send(gport, *hport, OP_RESPONSE, 0, NULL, 0);
    char ok[32] = {0};
    n = snprintf(line, sizeof(line), "OK %u\n", *hport);
    host_read_exact(fd, ok, (size_t)n);
    ck_assert_str_eq(ok, line);
    return fd;
}

START_TEST(test_vsock_create_errors)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_vsock_config c = VMM_INIT(struct vmm_virtio_vsock_config);
    ck_assert_int_eq(vmm_virtio_vsock_create(NULL, &dev), -EINVAL);
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL); /* no CID, no path */
    c.guest_cid = 2;                                              /* the host's */
    c.path = path;
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL);
    c.guest_cid = 0xffffffffull;
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL);
    c.guest_cid = 3;
    c.queue_size = 3;
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL);
    c.queue_size = 0;
    c.path = "/tmp/a-path-too-long-for-a-unix-socket-with-a-port-after-it-0123456789-"
             "0123456789-0123456789-0123456789";
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL);
    c.path = path; /* the fixture's device is there */
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EADDRINUSE);
    /* vhost-vsock's host side is AF_VSOCK: no path. Without
     * /dev/vhost-vsock (this host; the nested level 1 has it) it cannot be. */
    c.vhost = true;
    ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -EINVAL);
    c.path = NULL;
    if (access("/dev/vhost-vsock", F_OK) != 0)
        ck_assert_int_eq(vmm_virtio_vsock_create(&c, &dev), -ENOENT);
    /* The configuration space holds the CID. */
    uint32_t lo = rd(VMM_VIRTIO_MMIO_CONFIG), hi = rd(VMM_VIRTIO_MMIO_CONFIG + 4);
    ck_assert_uint_eq(lo, CID);
    ck_assert_uint_eq(hi, 0);
}
END_TEST

START_TEST(test_vsock_host_initiated)
{
    start();
    post_rx(QSIZE);
    uint32_t hport;
    int fd = host_initiated(1234, &hport);
    ck_assert_uint_ge(hport, 1u << 30);
    /* Host to guest. */
    ck_assert_int_eq(write(fd, "ping from the host", 18), 18);
    struct pkt p;
    char data[RXLEN];
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.op, OP_RW);
    ck_assert_uint_eq(p.len, 18);
    ck_assert_int_eq(memcmp(data, "ping from the host", 18), 0);
    /* Guest to host. */
    guest_send(1234, hport, OP_RW, 0, "pong", 4);
    char got[8];
    host_read_exact(fd, got, 4);
    ck_assert_int_eq(memcmp(got, "pong", 4), 0);
    struct vmm_virtio_vsock_stats s = stats();
    ck_assert_uint_eq(s.conns_open, 1);
    ck_assert_uint_eq(s.conns_total, 1);
    ck_assert_uint_eq(s.tx_bytes, 4);
    ck_assert_uint_eq(s.rx_bytes, 18);
    /* The host closes: the guest hears SHUTDOWN, answers RST, and the
     * connection is gone. */
    close(fd);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_SHUTDOWN);
    ck_assert_uint_eq(p.flags, 3);
    guest_send(1234, hport, OP_RST, 0, NULL, 0);
    pump(5);
    ck_assert_uint_eq(stats().conns_open, 0);
}
END_TEST

/* A handshake made before the driver runs, and before it posts receive
 * buffers, waits; a malformed one closes only its own connection. */
START_TEST(test_vsock_handshake_waits_and_malformed)
{
    int early = host_connect(path);
    ck_assert_int_eq(write(early, "CONNECT 7\n", 10), 10);
    int bad = host_connect(path);
    ck_assert_int_eq(write(bad, "HELLO 7\n", 8), 8);
    int nonl = host_connect(path);
    ck_assert_int_eq(write(nonl, "CONNECT 77777777777777777777777777", 34), 34); /* no newline */
    int big = host_connect(path);
    ck_assert_int_eq(write(big, "CONNECT 4294967296\n", 19), 19);
    pump(10);
    char c;
    ck_assert_int_eq(host_read(bad, &c, 1), 0);
    ck_assert_int_le(host_read(nonl, &c, 1), 0); /* ECONNRESET: bytes were left unread */
    ck_assert_int_eq(host_read(big, &c, 1), 0);
    close(bad);
    close(nonl);
    close(big);
    start();
    pump(10);
    struct pkt p;
    ck_assert(!guest_recv(&p, NULL)); /* no receive buffers yet */
    post_rx(QSIZE);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    ck_assert_uint_eq(p.dst_port, 7);
    uint32_t hport = p.src_port;
    /* Data the host sent right after its line is stream data. */
    ck_assert_int_eq(write(early, "after", 5), 5);
    guest_send(7, hport, OP_RESPONSE, 0, NULL, 0);
    char ok[32] = {0};
    char want[32];
    int n = snprintf(want, sizeof(want), "OK %u\n", hport);
    host_read_exact(early, ok, (size_t)n);
    ck_assert_str_eq(ok, want);
    char data[RXLEN];
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.op, OP_RW);
    ck_assert_uint_eq(p.len, 5);
    ck_assert_int_eq(memcmp(data, "after", 5), 0);
    close(early);
}
END_TEST

/* Open fds of this process. */
static unsigned open_fds(void)
{
    unsigned n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* A host connection waiting for the guest notices its host closing: before
 * the guest has buffers for its REQUEST it just goes, after the REQUEST the
 * guest gets an RST; the fds go either way. One whose host only shut its
 * writing down waits on and opens with the bytes it sent. */
START_TEST(test_vsock_host_close_while_waiting)
{
    unsigned fds = open_fds();
    int early = host_connect(path);
    ck_assert_int_eq(write(early, "CONNECT 7\n", 10), 10);
    pump(10);
    ck_assert_uint_eq(stats().conns_open, 1);
    close(early);
    pump(10);
    ck_assert_uint_eq(stats().conns_open, 0);
    ck_assert_uint_eq(open_fds(), fds);
    start();
    post_rx(QSIZE);
    struct pkt p;
    ck_assert(!guest_recv(&p, NULL)); /* no REQUEST for it */

    int fd = host_connect(path);
    ck_assert_int_eq(write(fd, "CONNECT 8\n", 10), 10);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    ck_assert_uint_eq(p.dst_port, 8);
    uint32_t hport = p.src_port;
    close(fd);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RST);
    ck_assert_uint_eq(p.src_port, hport);
    ck_assert_uint_eq(p.dst_port, 8);
    ck_assert_uint_eq(stats().conns_open, 0);
    pump(5);
    ck_assert_uint_eq(open_fds(), fds);
    /* The guest's answer, too late, meets an RST. */
    guest_send(8, hport, OP_RESPONSE, 0, NULL, 0);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RST);
    ck_assert(!guest_recv(&p, NULL));

    fd = host_connect(path);
    ck_assert_int_eq(write(fd, "CONNECT 9\nbye", 13), 13);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    hport = p.src_port;
    pump(10);
    ck_assert_uint_eq(stats().conns_open, 1);
    guest_send(9, hport, OP_RESPONSE, 0, NULL, 0);
    char ok[32] = {0}, want[32];
    int n = snprintf(want, sizeof(want), "OK %u\n", hport);
    host_read_exact(fd, ok, (size_t)n);
    ck_assert_str_eq(ok, want);
    char data[RXLEN];
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.op, OP_RW);
    ck_assert_uint_eq(p.len, 3);
    ck_assert_int_eq(memcmp(data, "bye", 3), 0);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_SHUTDOWN);
    guest_send(9, hport, OP_RST, 0, NULL, 0);
    close(fd);
    pump(5);
    ck_assert_uint_eq(stats().conns_open, 0);
    ck_assert_uint_eq(open_fds(), fds);
}
END_TEST

START_TEST(test_vsock_guest_initiated)
{
    start();
    post_rx(QSIZE);
    int lfd = host_listen(5000);
    guest_send(1025, 5000, OP_REQUEST, 0, NULL, 0);
    struct pkt p;
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RESPONSE);
    ck_assert_uint_eq(p.src_port, 5000);
    ck_assert_uint_eq(p.dst_port, 1025);
    int fd = accept(lfd, NULL, NULL);
    ck_assert_int_ge(fd, 0);
    guest_send(1025, 5000, OP_RW, 0, "hello host", 10);
    char got[16];
    host_read_exact(fd, got, 10);
    ck_assert_int_eq(memcmp(got, "hello host", 10), 0);
    ck_assert_int_eq(write(fd, "hi", 2), 2);
    char data[RXLEN];
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.op, OP_RW);
    ck_assert_uint_eq(p.len, 2);
    /* The guest shuts down both ways: RST back, the host sees the end. */
    guest_send(1025, 5000, OP_SHUTDOWN, 3, NULL, 0);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RST);
    ck_assert_int_eq(host_read(fd, got, 1), 0);
    close(fd);
    /* Nothing listens at port 5001: refused. */
    guest_send(1026, 5001, OP_REQUEST, 0, NULL, 0);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RST);
    ck_assert_uint_eq(p.src_port, 5001);
    ck_assert_uint_eq(p.dst_port, 1026);
    host_unlisten(lfd, 5000);
}
END_TEST

/* The device sends no more than the guest's buf_alloc allows, and goes on
 * when the guest's fwd_cnt moves. */
START_TEST(test_vsock_credit_to_guest)
{
    start();
    post_rx(QSIZE);
    int lfd = host_listen(6000);
    struct pkt p;
    uint8_t req[HDR];
    struct pkt r = {.src_cid = CID,
                    .dst_cid = 2,
                    .src_port = 1,
                    .dst_port = 6000,
                    .type = 1,
                    .op = OP_REQUEST,
                    .buf_alloc = 100};
    put_hdr(req, &r);
    memcpy(td_ptr(&tx, TXBUF), req, HDR);
    guest_send_raw(HDR);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RESPONSE);
    int fd = accept(lfd, NULL, NULL);
    uint8_t blob[300];
    for (unsigned i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)i;
    ck_assert_int_eq(write(fd, blob, sizeof(blob)), (ssize_t)sizeof(blob));
    uint8_t data[RXLEN];
    uint32_t got = 0;
    while (guest_recv(&p, data)) {
        if (p.op == OP_CREDIT_REQUEST)
            continue;
        ck_assert_uint_eq(p.op, OP_RW);
        ck_assert_int_eq(memcmp(data, blob + got, p.len), 0);
        got += p.len;
    }
    ck_assert_uint_eq(got, 100);
    /* The guest read 100 bytes: a credit update opens the window again. */
    r.op = OP_CREDIT_UPDATE;
    r.fwd_cnt = 100;
    put_hdr(td_ptr(&tx, TXBUF), &r);
    guest_send_raw(HDR);
    while (got < 200 && guest_recv(&p, data)) {
        if (p.op != OP_RW)
            continue;
        ck_assert_int_eq(memcmp(data, blob + got, p.len), 0);
        got += p.len;
    }
    ck_assert_uint_eq(got, 200);
    /* A driver that acknowledges more than it got gets nothing. */
    r.fwd_cnt = 5000;
    put_hdr(td_ptr(&tx, TXBUF), &r);
    guest_send_raw(HDR);
    while (guest_recv(&p, data))
        ck_assert_uint_ne(p.op, OP_RW);
    close(fd);
    host_unlisten(lfd, 6000);
}
END_TEST

/* A guest that sends past the credit the device gave it while the host
 * socket does not read has its connection reset: the device never holds
 * more than buf_alloc for it. The credit updates it gets are honest. */
START_TEST(test_vsock_credit_from_guest)
{
    start();
    post_rx(QSIZE);
    int lfd = host_listen(6001);
    guest_send(2, 6001, OP_REQUEST, 0, NULL, 0);
    struct pkt p;
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RESPONSE);
    int fd = accept(lfd, NULL, NULL); /* never read (until the end) */
    static uint8_t chunk[32 << 10];
    memset(chunk, 0x5a, sizeof(chunk));
    uint64_t sent = 0;
    bool reset = false;
    for (int i = 0; i < 512 && !reset; i++) {
        guest_send(2, 6001, OP_RW, 0, chunk, sizeof(chunk));
        sent += sizeof(chunk);
        while (guest_recv(&p, NULL)) {
            ck_assert(p.op == OP_RST || p.op == OP_CREDIT_UPDATE);
            /* Never more acknowledged than the host socket took. */
            reset |= p.op == OP_RST;
        }
    }
    ck_assert_msg(reset, "sent %llu bytes without a reset", (unsigned long long)sent);
    /* What the host socket took plus at most buf_alloc waited in the device. */
    uint64_t host_got = 0;
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n <= 0)
            break;
        host_got += (uint64_t)n;
    }
    ck_assert_uint_ge(host_got + VMM_VIRTIO_VSOCK_BUF_ALLOC, sent - sizeof(chunk));
    ck_assert_uint_eq(stats().conns_open, 0);
    close(fd);
    host_unlisten(lfd, 6001);
}
END_TEST

/* One read of the socket fills several receive buffers of mixed sizes
 * (one with no room past the header among them): the stream arrives in
 * order, split at each buffer's room, never past the guest's credit, and
 * the end of the stream comes after the last byte. */
START_TEST(test_vsock_rx_batch)
{
    start();
    static const uint32_t room[] = {1, 100, 0, 3000, 7, 4000, 50, 1, 500, 2, 999, 33, 4, 12, 800};
    for (unsigned i = 0; i < sizeof(room) / sizeof(room[0]); i++)
        post_rx_len(1, HDR + room[i]);
    int lfd = host_listen(6002);
    struct pkt r = {.src_cid = CID,
                    .dst_cid = 2,
                    .src_port = 1,
                    .dst_port = 6002,
                    .type = 1,
                    .op = OP_REQUEST,
                    .buf_alloc = 5000};
    put_hdr(td_ptr(&tx, TXBUF), &r);
    guest_send_raw(HDR);
    struct pkt p;
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_RESPONSE);
    int fd = accept(lfd, NULL, NULL);
    static uint8_t blob[12000];
    for (unsigned i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 7 + i / 251);
    ck_assert_int_eq(write(fd, blob, sizeof(blob)), (ssize_t)sizeof(blob));
    uint8_t data[RXLEN];
    uint32_t got = 0;
    unsigned rw = 0;
    while (guest_recv(&p, data)) {
        if (p.op != OP_RW)
            continue;
        ck_assert_int_eq(memcmp(data, blob + got, p.len), 0);
        got += p.len;
        rw++;
    }
    ck_assert_uint_eq(got, 5000); /* exactly the credit */
    ck_assert_uint_gt(rw, 1);
    /* The guest read it all: the rest comes, then the end of the stream. */
    r.op = OP_CREDIT_UPDATE;
    r.fwd_cnt = 5000;
    r.buf_alloc = 1u << 20;
    put_hdr(td_ptr(&tx, TXBUF), &r);
    guest_send_raw(HDR);
    close(fd);
    bool shut = false;
    while (!shut && guest_recv(&p, data)) {
        if (p.op == OP_SHUTDOWN) {
            shut = true;
        } else if (p.op == OP_RW) {
            ck_assert_int_eq(memcmp(data, blob + got, p.len), 0);
            got += p.len;
        }
    }
    ck_assert(shut);
    ck_assert_uint_eq(got, sizeof(blob));
    ck_assert_uint_eq(stats().rx_bytes, sizeof(blob));
    host_unlisten(lfd, 6002);
}
END_TEST

/* Reset closes the connections the guest knew about. */
/* Receive buffers too small for a header are given back empty. */
START_TEST(test_vsock_small_rx_buffers)
{
    start();
    post_rx_len(2, 10);
    post_rx(1);
    int fd = host_connect(path);
    ck_assert_int_eq(write(fd, "CONNECT 5\n", 10), 10);
    struct pkt p;
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    ck_assert_uint_eq(rx_empty, 2);
    ck_assert_uint_eq(stats().bad_packets, 2);
    close(fd);
}
END_TEST

START_TEST(test_vsock_reset_closes)
{
    start();
    post_rx(QSIZE);
    uint32_t hport;
    int fd = host_initiated(99, &hport);
    ck_assert_uint_eq(stats().conns_open, 1);
    wr(VMM_VIRTIO_MMIO_STATUS, 0);
    char c;
    ck_assert_int_eq(host_read(fd, &c, 1), 0);
    ck_assert_uint_eq(stats().conns_open, 0);
    close(fd);
    /* And it works again afterwards, numbering host ports as a new device
     * does. */
    start();
    post_rx(QSIZE);
    uint32_t again;
    fd = host_initiated(100, &again);
    ck_assert_uint_eq(again, hport);
    close(fd);
}
END_TEST

START_TEST(test_vsock_hostile_packets)
{
    start();
    post_rx(QSIZE);
    struct pkt p;
    uint64_t bad = stats().bad_packets;
    /* A header cut short. */
    memset(td_ptr(&tx, TXBUF), 0, HDR);
    guest_send_raw(20);
    ck_assert_uint_eq(stats().bad_packets, bad + 1);
    /* From a CID that is not the guest's, or to one that is not the host's:
     * dropped without an answer. */
    struct pkt h = {.src_cid = CID + 1,
                    .dst_cid = 2,
                    .src_port = 1,
                    .dst_port = 2,
                    .type = 1,
                    .op = OP_REQUEST};
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR);
    h.src_cid = CID;
    h.dst_cid = 7;
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR);
    ck_assert_uint_eq(stats().bad_packets, bad + 3);
    ck_assert(!guest_recv(&p, NULL));
    /* An unknown op, data on no connection, a length past the buffer, a
     * huge length, a type that is not stream: each answered with RST. */
    guest_send(10, 20, 99, 0, NULL, 0);
    guest_send(10, 20, OP_RW, 0, "x", 1);
    h = (struct pkt){.src_cid = CID,
                     .dst_cid = 2,
                     .src_port = 10,
                     .dst_port = 20,
                     .type = 1,
                     .op = OP_RW,
                     .len = 1000};
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR + 10);
    h.len = 0xffffffffu;
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR);
    h.len = 0;
    h.type = 2;
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR);
    for (int i = 0; i < 5; i++) {
        ck_assert(guest_recv(&p, NULL));
        ck_assert_uint_eq(p.op, OP_RST);
        ck_assert_uint_eq(p.src_port, 20);
        ck_assert_uint_eq(p.dst_port, 10);
    }
    ck_assert(!guest_recv(&p, NULL));
    /* An RST to nothing gets no answer. */
    guest_send(10, 20, OP_RST, 0, NULL, 0);
    ck_assert(!guest_recv(&p, NULL));
    int fd = host_connect(path);
    ck_assert_int_eq(write(fd, "CONNECT 5\n", 10), 10);
    ck_assert(guest_recv(&p, NULL));
    ck_assert_uint_eq(p.op, OP_REQUEST);
    /* On a live connection, data past the connection's buffer length is a
     * protocol error that resets it, and the host socket closes. */
    guest_send(5, p.src_port, OP_RESPONSE, 0, NULL, 0);
    char ok[32];
    ck_assert_int_gt(host_read(fd, ok, sizeof(ok)), 0);
    h = (struct pkt){.src_cid = CID,
                     .dst_cid = 2,
                     .src_port = 5,
                     .dst_port = p.src_port,
                     .type = 1,
                     .op = OP_RW,
                     .len = 70000};
    put_hdr(td_ptr(&tx, TXBUF), &h);
    guest_send_raw(HDR + 100);
    bool rst = false;
    while (guest_recv(&p, NULL))
        rst |= p.op == OP_RST;
    ck_assert(rst);
    ck_assert_int_eq(host_read(fd, ok, 1), 0);
    close(fd);
    ck_assert_uint_eq(stats().conns_open, 0);
}
END_TEST

/* What a guest (or a host) can make the device hold is bounded: RSTs owed
 * to a guest that posts no receive buffers, and connections. */
START_TEST(test_vsock_bounds)
{
    start();
    for (unsigned i = 0; i < 100; i++)
        guest_send(10, 3000 + i, OP_RW, 0, "x", 1); /* no such connection: RST owed */
    post_rx(QSIZE);
    struct pkt p;
    unsigned rsts = 0;
    while (guest_recv(&p, NULL)) {
        ck_assert_uint_eq(p.op, OP_RST);
        ck_assert_uint_eq(p.src_port, 3000 + rsts); /* the first ones, in order */
        rsts++;
    }
    ck_assert_uint_eq(rsts, 64); /* the rest were dropped, not queued */
    /* Connections: past VMM_VIRTIO_VSOCK_MAX_CONNS the device stops
     * accepting until one goes. */
    enum { N = VMM_VIRTIO_VSOCK_MAX_CONNS + 2 };
    int fd[N];
    for (unsigned i = 0; i < N; i++) {
        fd[i] = host_connect(path); /* the listen backlog takes the last ones */
        pump(1);
    }
    pump(50);
    ck_assert_uint_eq(stats().conns_open, VMM_VIRTIO_VSOCK_MAX_CONNS);
    close(fd[0]);
    for (int i = 0; i < 200 && stats().conns_open == VMM_VIRTIO_VSOCK_MAX_CONNS - 1; i++)
        pump(1);
    pump(10);
    ck_assert_uint_eq(stats().conns_open, VMM_VIRTIO_VSOCK_MAX_CONNS);
    for (unsigned i = 1; i < N; i++)
        close(fd[i]);
}
END_TEST

#define EVBUF 0x3f000ull /* event buffers */

/* Post an event buffer of len bytes. */
static void post_event(uint32_t len)
{
    uint16_t slot = ev.avail_idx % QSIZE;
    memset(td_ptr(&ev, EVBUF + 16ull * slot), 0xee, 16);
    td_desc(&ev, slot, EVBUF + 16ull * slot, len, TD_F_WRITE, 0);
    td_avail(&ev, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
}

/* What a restored device did: events it used (and the first one's id and
 * length), and its counters. */
struct restored {
    uint16_t events;
    uint32_t event_id, event_len;
    struct vmm_virtio_vsock_stats stats;
};

/* Restore buf[0..len) into a fresh device (guest CID 43, at another path)
 * the driver brought up as it did m, with an event buffer posted before
 * (pre) or after the restore. Returns what restore said. */
static int restore_into(const uint8_t *buf, size_t len, bool pre, struct restored *out)
{
    char other[PATH_MAX];
    vmm_test_path(other, sizeof(other), dir, "w.sock");
    struct vmm_virtio_vsock_config cfg =
        VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = 43, .path = other);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_vsock_create(&cfg, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0001000, .gsi = 6, .mem = rx.mem,
                 .loop = loop, .interrupt = on_irq);
    struct vmm_virtio_mmio *saved = m;
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m), 0);
    start();
    ev.avail_idx = ev.used_seen = 0;
    if (pre)
        post_event(8);
    pump(3);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    struct vmm_snap_reader r = {.p = buf, .left = len};
    vmm_virtio_lock(t);
    int rc = t->snap->restore(t->dev.opaque, &r);
    if (rc == 0)
        rc = snap_done(&r);
    vmm_virtio_unlock(t);
    /* Owed, never sent from inside the restore (the vCPUs and interrupt
     * controller are restored after the devices): sent when the transport
     * looks at the event queue through the loop, as its restore has it do,
     * or when the guest posts a buffer. */
    ck_assert_uint_eq(td_used_idx(&ev), 0);
    if (pre) {
        vmm_virtio_lock(t);
        vmm_virtio_notify_queue(t, 2);
        vmm_virtio_unlock(t);
    } else {
        pump(3);
        ck_assert_uint_eq(td_used_idx(&ev), 0); /* owed until there is a buffer */
        post_event(8);
    }
    pump(3);
    out->events = td_used_idx(&ev);
    out->event_id = 0xffffffff;
    if (out->events) {
        uint32_t id;
        td_used_elem(&ev, 0, &id, &out->event_len);
        memcpy(&out->event_id, td_ptr(&ev, EVBUF + 16ull * id), 4);
    }
    out->stats = stats();
    vmm_virtio_mmio_destroy(m);
    m = saved;
    return rc;
}

/* A device with an open connection and receive buffers held is saved: the
 * buffers go back to the ring untouched; a fresh device (another CID and
 * path) takes the counters over and sends the guest one TRANSPORT_RESET
 * event once the loop looks at the event queue, at once (the transport's
 * restore asks for that look) or on the first event buffer posted. Every
 * corrupt field
 * is refused. */
START_TEST(test_vsock_snapshot_round_trip)
{
    start();
    post_rx(QSIZE);
    uint32_t hport;
    int fd = host_initiated(1234, &hport);
    ck_assert_int_eq(write(fd, "ping", 4), 4);
    struct pkt p;
    char data[RXLEN];
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.op, OP_RW);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    struct virtq_snap pos;
    ck_assert_int_eq(vmm_virtq_snap_save(vmm_virtio_queue(t, 0), &pos), -EBUSY);
    uint16_t used = td_used_idx(&rx);

    struct vmm_snap_writer w;
    snap_writer_init(&w);
    vmm_virtio_lock(t);
    ck_assert_int_eq(t->snap->quiesce(t->dev.opaque), 0);
    ck_assert_int_eq(t->snap->save(t->dev.opaque, &w), 0);
    t->snap->thaw(t->dev.opaque);
    vmm_virtio_unlock(t);
    ck_assert_int_eq(w.err, 0);
    ck_assert_int_eq(vmm_virtq_snap_save(vmm_virtio_queue(t, 0), &pos), 0);
    ck_assert_uint_eq(pos.last_avail, used);
    ck_assert_uint_eq(td_used_idx(&rx), used);
    /* The source goes on with its connection. */
    guest_send(1234, hport, OP_RW, 0, "pong", 4);
    char got[4];
    host_read_exact(fd, got, 4);
    ck_assert_int_eq(memcmp(got, "pong", 4), 0);
    ck_assert_int_eq(write(fd, "again", 5), 5);
    ck_assert(guest_recv(&p, data));
    ck_assert_uint_eq(p.len, 5);
    close(fd);

    struct restored r;
    for (int pre = 0; pre < 2; pre++) {
        ck_assert_int_eq(restore_into(w.buf, w.len, pre, &r), 0);
        ck_assert_uint_eq(r.events, 1);
        ck_assert_uint_eq(r.event_id, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
        ck_assert_uint_eq(r.event_len, 4);
        ck_assert_uint_eq(r.stats.conns_total, 1);
        ck_assert_uint_eq(r.stats.rx_bytes, 4);
        ck_assert_uint_eq(r.stats.conns_open, 0);
    }

    /* Truncated; then version, vhost flag, padding, a host CID, features,
     * the counters' size: -EBADMSG. Saved with vhost-vsock: -EINVAL. */
    ck_assert_int_eq(restore_into(w.buf, w.len - 1, true, &r), -EBADMSG);
    static const struct {
        unsigned off;
        uint32_t v;
        int want;
    } bad[] = {{0, 2, -EBADMSG},  {4, 2, -EBADMSG},  {28, 1, -EBADMSG}, {8, 2, -EBADMSG},
               {20, 0, -EBADMSG}, {24, 8, -EBADMSG}, {4, 1, -EINVAL}};
    uint8_t *b = malloc(w.len);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(b, w.buf, w.len);
        memcpy(b + bad[i].off, &bad[i].v, 4);
        ck_assert_msg(restore_into(b, w.len, true, &r) == bad[i].want, "corrupt field at %u",
                      bad[i].off);
        ck_assert_uint_eq(r.events, 0);
    }
    free(b);
    snap_writer_fini(&w);
}
END_TEST

static Suite *vsock_suite(void)
{
    Suite *s = suite_create("virtio-vsock");
    TCase *tc = tcase_create("unix");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_vsock_create_errors);
    tcase_add_test(tc, test_vsock_host_initiated);
    tcase_add_test(tc, test_vsock_handshake_waits_and_malformed);
    tcase_add_test(tc, test_vsock_host_close_while_waiting);
    tcase_add_test(tc, test_vsock_guest_initiated);
    tcase_add_test(tc, test_vsock_credit_to_guest);
    tcase_add_test(tc, test_vsock_credit_from_guest);
    tcase_add_test(tc, test_vsock_small_rx_buffers);
    tcase_add_test(tc, test_vsock_rx_batch);
    tcase_add_test(tc, test_vsock_reset_closes);
    tcase_add_test(tc, test_vsock_hostile_packets);
    tcase_add_test(tc, test_vsock_bounds);
    tcase_add_test(tc, test_vsock_snapshot_round_trip);
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
    return vmm_test_run_suite(vsock_suite());
}
