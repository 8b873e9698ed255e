/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock end to end (tests/integration/test_virtio_vsock.c plays the
 * host through the device's Unix sockets). Two connections at once:
 *   - guest-initiated: port 1024 to host port 1234 (the host listens at
 *     "<path>_1234", or on AF_VSOCK port 1234 with vhost); the host sends
 *     "one TOKEN1", the guest answers "echo TOKEN1" and shuts down, and
 *     expects the connection's end;
 *   - host-initiated: the host wrote "CONNECT 5000" before the guest ran;
 *     the guest accepts the REQUEST on port 5000, the host sends
 *     "two TOKEN2", the guest answers "echo TOKEN2".
 * It prints both tokens, which only the host knew.
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_CID = 5,
    FAIL_TX = 6,
    FAIL_RX = 7,
    FAIL_PROTOCOL = 8,
};

#define VIRTIO_ID_VSOCK 19
#define HDR             44
#define NRX             4
#define RX_BUF          4096
#define BUF_ALLOC       65536
#define HOST_CID        2
#define G_PORT          1024 /* the guest's port of its own connection */
#define H_PORT          1234 /* the host port it connects to */
#define LISTEN_PORT     5000 /* where the guest accepts the host's connection */
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
static uint8_t txbuf[HDR + 128] __attribute__((aligned(64)));
static uint64_t cid;
static uint32_t fwd[2]; /* stream bytes received: [0] our connection, [1] the host's */

static int send(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags, const char *data,
                uint32_t len, uint32_t fwd_cnt)
{
    struct hdr h = {.src_cid = cid,
                    .dst_cid = HOST_CID,
                    .src_port = src_port,
                    .dst_port = dst_port,
                    .len = len,
                    .type = 1,
                    .op = op,
                    .flags = flags,
                    .buf_alloc = BUF_ALLOC,
                    .fwd_cnt = fwd_cnt};
    memcpy(txbuf, &h, HDR);
    memcpy(txbuf + HDR, data, len);
    vq_desc(&txq, 0, (uint64_t)txbuf, HDR + len, 0, 0);
    vq_submit(&txq, 0);
    uint32_t id, used;
    if (vq_wait(&txq, &id, &used) < 0 || id != 0) {
        puts("virtio_vsock: transmit not completed\n");
        return -1;
    }
    return 0;
}

/* "PREFIX TOKEN" in data: copy TOKEN (printable, bounded) to token. */
static bool token_of(const uint8_t *data, uint32_t len, const char *prefix, char *token)
{
    size_t plen = strlen(prefix);
    if (len <= plen || len - plen > TOKEN_MAX || memcmp(data, prefix, plen) != 0)
        return false;
    for (uint32_t i = 0; i < len - plen; i++) {
        char c = (char)data[plen + i];
        if (c <= ' ' || c >= 0x7f)
            return false;
        token[i] = c;
    }
    token[len - plen] = '\0';
    return true;
}

static int echo(uint32_t src_port, uint32_t dst_port, const char *token, uint32_t fwd_cnt)
{
    char reply[8 + TOKEN_MAX];
    size_t tl = strlen(token);
    memcpy(reply, "echo ", 5);
    memcpy(reply + 5, token, tl);
    return send(src_port, dst_port, OP_RW, 0, reply, (uint32_t)(5 + tl), fwd_cnt);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_VSOCK, 0) < 0) {
        puts("virtio_vsock: no vsock device\n");
        return FAIL_FIND;
    }
    if (vdev_init(&dev, 0) < 0)
        return FAIL_INIT;
    cid = mmio_read32(dev.base + VMMIO_CONFIG) | (uint64_t)mmio_read32(dev.base + VMMIO_CONFIG + 4)
                                                     << 32;
    if (cid < 3)
        return FAIL_CID;
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

    if (send(G_PORT, H_PORT, OP_REQUEST, 0, NULL, 0, 0) < 0)
        return FAIL_TX;
    char token1[TOKEN_MAX + 1] = {0}, token2[TOKEN_MAX + 1] = {0};
    uint32_t host_port = 0;
    bool ours_open = false, ours_reset = false, theirs_open = false, echoed2 = false;
    for (unsigned n = 0; n < 64 && !(ours_reset && echoed2); n++) {
        uint32_t id, len;
        if (vq_wait(&rxq, &id, &len) < 0 || id >= NRX || len < HDR) {
            puts("virtio_vsock: nothing received\n");
            return FAIL_RX;
        }
        struct hdr h;
        memcpy(&h, rxbuf[id], HDR);
        const uint8_t *data = rxbuf[id] + HDR;
        if (h.src_cid != HOST_CID || h.dst_cid != cid || h.len != len - HDR) {
            printf("virtio_vsock: bad header (cid %u to %u, len %u of %u)\n", (unsigned)h.src_cid,
                   (unsigned)h.dst_cid, h.len, len);
            return FAIL_PROTOCOL;
        }
        bool ours = h.dst_port == G_PORT && h.src_port == H_PORT;
        int r = 0;
        if (h.op == OP_REQUEST && h.dst_port == LISTEN_PORT) {
            /* (A host that gave up on an earlier try connects again.) */
            host_port = h.src_port;
            theirs_open = true;
            r = send(LISTEN_PORT, host_port, OP_RESPONSE, 0, NULL, 0, 0);
        } else if (h.op == OP_RESPONSE && ours) {
            ours_open = true;
        } else if (h.op == OP_RW && ours && ours_open && token_of(data, h.len, "one ", token1)) {
            fwd[0] += h.len;
            r = echo(G_PORT, H_PORT, token1, fwd[0]);
            if (r == 0)
                r = send(G_PORT, H_PORT, OP_SHUTDOWN, 3, NULL, 0, fwd[0]);
        } else if ((h.op == OP_RST || h.op == OP_SHUTDOWN) && ours && token1[0]) {
            /* The end: the device's RST (Unix sockets), or the kernel's
             * SHUTDOWN once the host program closed (vhost). */
            if (h.op == OP_SHUTDOWN)
                r = send(G_PORT, H_PORT, OP_RST, 0, NULL, 0, fwd[0]);
            ours_reset = true;
        } else if (h.op == OP_RST && h.dst_port == LISTEN_PORT && h.src_port == host_port) {
            theirs_open = false; /* that try is over */
        } else if (h.op == OP_RW && theirs_open && h.dst_port == LISTEN_PORT &&
                   h.src_port == host_port && token_of(data, h.len, "two ", token2)) {
            fwd[1] += h.len;
            r = echo(LISTEN_PORT, host_port, token2, fwd[1]);
            echoed2 = r == 0;
        } else if (h.op == OP_CREDIT_REQUEST) {
            bool mine = h.dst_port == G_PORT;
            r = send(h.dst_port, h.src_port, OP_CREDIT_UPDATE, 0, NULL, 0, fwd[mine ? 0 : 1]);
        } else if (h.op != OP_CREDIT_UPDATE) {
            printf("virtio_vsock: unexpected op %u on %u -> %u\n", h.op, h.src_port, h.dst_port);
            return FAIL_PROTOCOL;
        }
        if (r < 0)
            return FAIL_TX;
        vq_submit(&rxq, (uint16_t)id); /* the buffer goes back */
    }
    if (!(ours_reset && echoed2))
        return FAIL_PROTOCOL;
    printf("virtio_vsock ok: cid %u, one %s, two %s\n", (unsigned)cid, token1, token2);
    return 0;
}
