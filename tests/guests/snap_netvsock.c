/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A guest with a virtio-net and a virtio-vsock device across a snapshot
 * (tests/integration/test_snapshot_net.c). Before: it posts receive buffers
 * on both, broadcasts a "ping" frame and prints "phase 1", then waits for a
 * "go TOKEN" frame, with a receive buffer the device holds meanwhile; the
 * test snapshots the VM there and restores it on another tap and vsock
 * path. After: the "go TOKEN" frame comes in the buffers the device handed
 * back, the guest answers "back TOKEN", finds the TRANSPORT_RESET event on
 * the event queue, reads the CID again (as a driver does on that event),
 * connects to host port 1234 and sends "hello TOKEN". It prints the CID and
 * the token, which only the host knew.
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_TX = 5,
    FAIL_NO_GO = 6,
    FAIL_NO_EVENT = 7,
    FAIL_VSOCK = 8,
};

#define VIRTIO_ID_VSOCK 19
#define F_MAC           (1ull << 5)
#define F_MRG           (1ull << 15)
#define F_STATUS        (1ull << 16)
#define NET_HDR         12
#define ETHERTYPE       0x88b5
#define VS_HDR          44
#define NRX             4
#define RX_BUF          2048
#define TOKEN_MAX       32
#define HOST_CID        2
#define G_PORT          1024
#define H_PORT          1234
#define OP_REQUEST      1
#define OP_RESPONSE     2
#define OP_RST          3
#define OP_RW           5
/* vq_wait's bound is some ten seconds of guest time; the snapshot and the
 * restore take longer on a slow host, so the wait for "go" goes on. */
#define GO_WAITS 30

struct vs_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

static struct vdev net, vs;
static struct vq nrx, ntx, vrx, vtx, vev;
static uint8_t nrxbuf[NRX][RX_BUF] __attribute__((aligned(64)));
static uint8_t vrxbuf[NRX][RX_BUF] __attribute__((aligned(64)));
static uint8_t ntxbuf[NET_HDR + 128] __attribute__((aligned(64)));
static uint8_t vtxbuf[VS_HDR + 64] __attribute__((aligned(64)));
static uint8_t evbuf[8] __attribute__((aligned(8)));
static uint8_t mac[6];
static uint64_t cid;

static int net_send(const char *p, size_t len)
{
    memset(ntxbuf, 0, sizeof(ntxbuf));
    memset(ntxbuf + NET_HDR, 0xff, 6);
    memcpy(ntxbuf + NET_HDR + 6, mac, 6);
    ntxbuf[NET_HDR + 12] = ETHERTYPE >> 8;
    ntxbuf[NET_HDR + 13] = ETHERTYPE & 0xff;
    memcpy(ntxbuf + NET_HDR + 14, p, len);
    size_t frame = 14 + len < 60 ? 60 : 14 + len;
    vq_desc(&ntx, 0, (uint64_t)ntxbuf, (uint32_t)(NET_HDR + frame), 0, 0);
    vq_submit(&ntx, 0);
    uint32_t id, used;
    return vq_wait(&ntx, &id, &used) < 0 || id != 0 ? -1 : 0;
}

static int vs_send(uint16_t op, const char *data, uint32_t len)
{
    struct vs_hdr h = {.src_cid = cid,
                       .dst_cid = HOST_CID,
                       .src_port = G_PORT,
                       .dst_port = H_PORT,
                       .len = len,
                       .type = 1,
                       .op = op,
                       .buf_alloc = 65536};
    memcpy(vtxbuf, &h, VS_HDR);
    memcpy(vtxbuf + VS_HDR, data, len);
    vq_desc(&vtx, 0, (uint64_t)vtxbuf, VS_HDR + len, 0, 0);
    vq_submit(&vtx, 0);
    uint32_t id, used;
    return vq_wait(&vtx, &id, &used) < 0 || id != 0 ? -1 : 0;
}

static uint64_t read_cid(void)
{
    return mmio_read32(vs.base + VMMIO_CONFIG) | (uint64_t)mmio_read32(vs.base + VMMIO_CONFIG + 4)
                                                     << 32;
}

/* The token of the next "go TOKEN" frame, or -1. */
static int wait_go(char *token)
{
    for (unsigned waits = 0; waits < GO_WAITS;) {
        uint32_t id, len;
        if (vq_wait(&nrx, &id, &len) < 0) {
            waits++;
            continue;
        }
        if (id >= NRX)
            return -1;
        const uint8_t *f = nrxbuf[id] + NET_HDR;
        size_t plen = len > NET_HDR + 14 ? len - NET_HDR - 14 : 0;
        if (plen > 3 && f[12] == (ETHERTYPE >> 8) && f[13] == (ETHERTYPE & 0xff) &&
            memcmp(f + 14, "go ", 3) == 0) {
            size_t t = 0;
            while (t < TOKEN_MAX && 3 + t < plen && f[17 + t] > ' ' && f[17 + t] < 0x7f) {
                token[t] = (char)f[17 + t];
                t++;
            }
            token[t] = '\0';
            return t ? 0 : -1;
        }
        vq_submit(&nrx, (uint16_t)id);
    }
    return -1;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&net, VIRTIO_ID_NET, 0) < 0 || vdev_find(&vs, VIRTIO_ID_VSOCK, 0) < 0)
        return FAIL_FIND;
    if (vdev_init(&net, F_MAC | F_STATUS | F_MRG) < 0 || vdev_init(&vs, 0) < 0)
        return FAIL_INIT;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = mmio_read8(net.base + VMMIO_CONFIG + i);
    cid = read_cid();
    if (vq_setup(&net, &nrx, 0) < 0 || vq_setup(&net, &ntx, 1) < 0 || vq_setup(&vs, &vrx, 0) < 0 ||
        vq_setup(&vs, &vtx, 1) < 0 || vq_setup(&vs, &vev, 2) < 0)
        return FAIL_QUEUE;
    if (vdev_driver_ok(&net) < 0 || vdev_driver_ok(&vs) < 0)
        return FAIL_DRIVER_OK;
    for (uint16_t i = 0; i < NRX; i++) {
        vq_desc(&nrx, i, (uint64_t)nrxbuf[i], RX_BUF, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&nrx, i);
        vq_desc(&vrx, i, (uint64_t)vrxbuf[i], RX_BUF, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&vrx, i);
    }
    vq_kick(&nrx);
    vq_kick(&vrx);
    vq_desc(&vev, 0, (uint64_t)evbuf, sizeof(evbuf), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&vev, 0);

    if (net_send("ping", 4) < 0)
        return FAIL_TX;
    uint32_t id, len;
    if (vq_poll(&vev, &id, &len)) {
        puts("snap_netvsock: an event before any snapshot\n");
        return FAIL_NO_EVENT;
    }
    puts("phase 1\n");

    char token[TOKEN_MAX + 1], msg[8 + TOKEN_MAX];
    if (wait_go(token) < 0) {
        puts("snap_netvsock: no go frame\n");
        return FAIL_NO_GO;
    }
    size_t tl = strlen(token);
    memcpy(msg, "back ", 5);
    memcpy(msg + 5, token, tl);
    if (net_send(msg, 5 + tl) < 0)
        return FAIL_TX;

    uint32_t ev = 0xffffffff;
    if (vq_wait(&vev, &id, &len) < 0 || id != 0 || len != 4) {
        puts("snap_netvsock: no vsock event\n");
        return FAIL_NO_EVENT;
    }
    memcpy(&ev, evbuf, 4);
    if (ev != 0) { /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
        printf("snap_netvsock: vsock event %u\n", ev);
        return FAIL_NO_EVENT;
    }
    cid = read_cid();
    if (vs_send(OP_REQUEST, NULL, 0) < 0)
        return FAIL_TX;
    for (unsigned n = 0; n < 16; n++) {
        if (vq_wait(&vrx, &id, &len) < 0 || id >= NRX || len < VS_HDR)
            return FAIL_VSOCK;
        struct vs_hdr h;
        memcpy(&h, vrxbuf[id], VS_HDR);
        vq_submit(&vrx, (uint16_t)id);
        if (h.dst_cid != cid || h.dst_port != G_PORT || h.src_port != H_PORT)
            continue;
        if (h.op == OP_RST)
            break;
        if (h.op != OP_RESPONSE)
            continue;
        memcpy(msg, "hello ", 6);
        memcpy(msg + 6, token, tl);
        if (vs_send(OP_RW, msg, (uint32_t)(6 + tl)) < 0)
            return FAIL_TX;
        printf("snap_netvsock ok: cid %u, token %s\n", (unsigned)cid, token);
        return 0;
    }
    puts("snap_netvsock: no vsock connection\n");
    return FAIL_VSOCK;
}
