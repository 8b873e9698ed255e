/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio-vsock driver (tests/integration/test_virtio_vsock.c's
 * hostile_guest_is_contained plays the host: it listens at "<path>_1234",
 * never reads its first connection there and answers its second). On the
 * transmit queue, one after the other:
 *   - a chain shorter than the header, a packet from another CID (both
 *     dropped), a header claiming more bytes than its chain holds, one
 *     claiming 4 GiB, an unknown op (each answered with an RST);
 *   - FLOOD REQUESTs to ports nobody listens on, while the guest takes none
 *     of the RSTs: the device may hold only so many, and drops the rest;
 *   - a connection to port 1234 on which it sends stream bytes without
 *     regard to the credit the device gave, until the device resets it;
 * and then a good connection: "hello" to port 1234 must bring the host's
 * "welcome TOKEN" back, which the guest prints.
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_TX = 5,
    FAIL_RX = 6,
    FAIL_BAD = 7,
    FAIL_FLOOD = 8,
    FAIL_CREDIT = 9,
    FAIL_GOOD = 10,
};

#define VIRTIO_ID_VSOCK 19
#define HDR             44
#define NRX             4
#define RX_BUF          4096
#define CHUNK           4096
#define HOST_CID        2
#define H_PORT          1234 /* the host listens there */
#define FLOOD           500
#define FLOOD_PORT      50000 /* FLOOD ports from here: nobody listens */
#define ABUSE_PORT      2000  /* the guest's port of the credit abuse */
#define GOOD_PORT       3000  /* and of the good connection */
#define MAX_SENDS       2000  /* 8 MiB: far past any credit */
#define TOKEN_MAX       32

enum {
    OP_REQUEST = 1,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST
};

struct hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

static struct vdev dev;
static struct vq rxq, txq, evq;
static uint8_t rxbuf[NRX][RX_BUF] __attribute__((aligned(64)));
static uint8_t evbuf[8] __attribute__((aligned(8)));
static uint8_t txbuf[HDR + CHUNK] __attribute__((aligned(64)));
static uint8_t data[RX_BUF];
static uint64_t cid;

/* Send a packet whose chain is chain bytes long (the header's len says
 * len) and wait until the device used it. */
static int send_raw(uint64_t src_cid, uint32_t src_port, uint32_t dst_port, uint16_t op,
                    uint32_t len, uint32_t chain)
{
    struct hdr h = {.src_cid = src_cid,
                    .dst_cid = HOST_CID,
                    .src_port = src_port,
                    .dst_port = dst_port,
                    .len = len,
                    .type = 1,
                    .op = op,
                    .buf_alloc = 1u << 20};
    memcpy(txbuf, &h, HDR);
    vq_desc(&txq, 0, (uint64_t)txbuf, chain, 0, 0);
    vq_submit(&txq, 0);
    uint32_t id, used;
    if (vq_wait(&txq, &id, &used) < 0 || id != 0) {
        puts("virtio_vsock_hostile: transmit not completed\n");
        return -1;
    }
    return 0;
}

static int send_pkt(uint32_t src_port, uint32_t dst_port, uint16_t op, const char *text,
                    uint32_t len)
{
    if (text)
        memcpy(txbuf + HDR, text, len);
    return send_raw(cid, src_port, dst_port, op, len, HDR + len);
}

/* Take a received packet: its header in h, its payload in data; the
 * buffer goes back. wait: sleep for one (bounded), else only look.
 * 1, or 0 when none, or -1 on a malformed one. */
static int recv_pkt(struct hdr *h, bool wait)
{
    uint32_t id, len;
    int got = wait ? vq_wait(&rxq, &id, &len) == 0 : vq_poll(&rxq, &id, &len);
    if (!got)
        return 0;
    if (id >= NRX || len < HDR || len > RX_BUF)
        return -1;
    memcpy(h, rxbuf[id], HDR);
    if (h->len != len - HDR || h->src_cid != HOST_CID || h->dst_cid != cid)
        return -1;
    memcpy(data, rxbuf[id] + HDR, h->len);
    vq_submit(&rxq, (uint16_t)id);
    return 1;
}

/* Take packets until about half a second passes without one; RSTs counted. */
static int drain(unsigned *rsts)
{
    struct hdr h;
    unsigned quiet = vdrv_ticks();
    while (vdrv_ticks() - quiet < 3) {
        int r = recv_pkt(&h, false);
        if (r < 0)
            return -1;
        if (r == 0) {
            cpu_sti_hlt_cli();
            continue;
        }
        if (h.op == OP_RST)
            (*rsts)++;
        quiet = vdrv_ticks();
    }
    return 0;
}

/* Wait for a packet of op from the host's port to the guest's (others
 * taken and dropped, at most 64 of them). */
static int expect(uint16_t op, uint32_t host_port, uint32_t guest_port)
{
    struct hdr h;
    for (unsigned n = 0; n < 64; n++) {
        if (recv_pkt(&h, true) <= 0)
            return -1;
        if (h.op == op && h.src_port == host_port && h.dst_port == guest_port)
            return 0;
    }
    return -1;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_VSOCK, 0) < 0) {
        puts("virtio_vsock_hostile: no vsock device\n");
        return FAIL_FIND;
    }
    if (vdev_init(&dev, 0) < 0)
        return FAIL_INIT;
    cid = mmio_read32(dev.base + VMMIO_CONFIG) | (uint64_t)mmio_read32(dev.base + VMMIO_CONFIG + 4)
                                                     << 32;
    if (vq_setup(&dev, &rxq, 0) < 0 || vq_setup(&dev, &txq, 1) < 0 || vq_setup(&dev, &evq, 2) < 0)
        return FAIL_QUEUE;
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;
    vq_desc(&evq, 0, (uint64_t)evbuf, sizeof(evbuf), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&evq, 0);
    for (uint16_t i = 0; i < NRX; i++) {
        vq_desc(&rxq, i, (uint64_t)rxbuf[i], RX_BUF, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&rxq, i);
    }
    vq_kick(&rxq);

    /* Malformed packets: two dropped, three answered with RST. */
    if (send_raw(cid, 10, 20, OP_REQUEST, 0, 20) < 0 ||
        send_raw(cid + 1, 10, 20, OP_REQUEST, 0, HDR) < 0 ||
        send_raw(cid, 11, 21, OP_RW, 1000, HDR + 10) < 0 ||
        send_raw(cid, 12, 22, OP_RW, 0xffffffffu, HDR) < 0 || send_raw(cid, 13, 23, 99, 0, HDR) < 0)
        return FAIL_TX;
    for (uint32_t p = 11; p <= 13; p++)
        if (expect(OP_RST, p + 10, p) < 0) {
            printf("virtio_vsock_hostile: no RST for the malformed packet from port %u\n", p);
            return FAIL_BAD;
        }

    /* REQUESTs nobody takes, the RSTs left in the device. */
    for (uint32_t i = 0; i < FLOOD; i++)
        if (send_pkt(FLOOD_PORT + i, FLOOD_PORT + i, OP_REQUEST, NULL, 0) < 0)
            return FAIL_TX;
    unsigned rsts = 0;
    if (drain(&rsts) < 0 || rsts == 0 || rsts > FLOOD) {
        printf("virtio_vsock_hostile: %u RSTs for %u REQUESTs\n", rsts, FLOOD);
        return FAIL_FLOOD;
    }

    /* Past the credit on a connection the host does not read. */
    if (send_pkt(ABUSE_PORT, H_PORT, OP_REQUEST, NULL, 0) < 0)
        return FAIL_TX;
    if (expect(OP_RESPONSE, H_PORT, ABUSE_PORT) < 0) {
        puts("virtio_vsock_hostile: no RESPONSE from port 1234\n");
        return FAIL_CREDIT;
    }
    memset(txbuf + HDR, 'x', CHUNK);
    bool reset = false;
    unsigned sends = 0;
    for (; sends < MAX_SENDS && !reset; sends++) {
        if (send_raw(cid, ABUSE_PORT, H_PORT, OP_RW, CHUNK, HDR + CHUNK) < 0)
            return FAIL_TX;
        struct hdr h;
        for (int r; (r = recv_pkt(&h, false)) != 0;) {
            if (r < 0)
                return FAIL_RX;
            reset |= h.op == OP_RST && h.dst_port == ABUSE_PORT;
        }
    }
    if (!reset) {
        printf("virtio_vsock_hostile: %u KiB past the credit and no RST\n", sends * CHUNK >> 10);
        return FAIL_CREDIT;
    }

    /* A good connection still works. */
    if (send_pkt(GOOD_PORT, H_PORT, OP_REQUEST, NULL, 0) < 0)
        return FAIL_TX;
    if (expect(OP_RESPONSE, H_PORT, GOOD_PORT) < 0 ||
        send_pkt(GOOD_PORT, H_PORT, OP_RW, "hello", 5) < 0) {
        puts("virtio_vsock_hostile: the good connection did not open\n");
        return FAIL_GOOD;
    }
    char token[TOKEN_MAX + 1];
    for (unsigned n = 0; n < 64; n++) {
        struct hdr h;
        if (recv_pkt(&h, true) <= 0)
            break;
        if (h.op != OP_RW || h.dst_port != GOOD_PORT || h.len < 9 || h.len > 8 + TOKEN_MAX ||
            memcmp(data, "welcome ", 8) != 0)
            continue;
        memcpy(token, data + 8, h.len - 8);
        token[h.len - 8] = '\0';
        printf("virtio_vsock_hostile ok: %s (%u RSTs for %u REQUESTs, reset after %u KiB)\n", token,
               rsts, FLOOD, sends * CHUNK >> 10);
        return 0;
    }
    puts("virtio_vsock_hostile: no welcome\n");
    return FAIL_GOOD;
}
