/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net end to end through a tap (tests/integration/test_virtio_net.c
 * plays the network): the guest posts receive buffers, broadcasts a "ping"
 * frame from its MAC (ethertype 0x88b5), waits for the host's "pong TOKEN"
 * addressed to it, and answers "ack TOKEN"; it prints the token, which only
 * the host knew. Frames of other types (none are expected) are skipped.
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_FEATURES = 5,
    FAIL_LINK = 6,
    FAIL_TX = 7,
    FAIL_RX = 8,
    FAIL_NO_PONG = 9,
};

#define F_MAC     (1ull << 5)
#define F_MRG     (1ull << 15)
#define F_STATUS  (1ull << 16)
#define HDR       12
#define ETHERTYPE 0x88b5
#define NRX       4
#define RX_BUF    2048
#define TOKEN_MAX 32
#define PING      "ping"
#define PONG      "pong "
#define ACK       "ack "

static struct vdev dev;
static struct vq rxq, txq;
static uint8_t rxbuf[NRX][RX_BUF] __attribute__((aligned(64)));
static uint8_t txbuf[HDR + 128] __attribute__((aligned(64)));
static uint8_t mac[6];

/* Send one frame to dst with payload p (len bytes); wait for its completion. */
static int send(const uint8_t *dst, const char *p, size_t len)
{
    memset(txbuf, 0, sizeof(txbuf));
    memcpy(txbuf + HDR, dst, 6);
    memcpy(txbuf + HDR + 6, mac, 6);
    txbuf[HDR + 12] = ETHERTYPE >> 8;
    txbuf[HDR + 13] = ETHERTYPE & 0xff;
    memcpy(txbuf + HDR + 14, p, len);
    size_t frame = 14 + len < 60 ? 60 : 14 + len; /* Ethernet minimum */
    vq_desc(&txq, 0, (uint64_t)txbuf, (uint32_t)(HDR + frame), 0, 0);
    vq_submit(&txq, 0);
    uint32_t id, used;
    if (vq_wait(&txq, &id, &used) < 0 || id != 0) {
        puts("virtio_net: transmit not completed\n");
        return -1;
    }
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_NET, 0) < 0) {
        puts("virtio_net: no network device\n");
        return FAIL_FIND;
    }
    /* Mergeable buffers: each frame here fits one, so num_buffers is 1.
     * (Without them vhost-net leaves num_buffers as it was, which Linux's
     * driver ignores but the specification does not allow.) */
    if (vdev_init(&dev, VIRTIO_F_EVENT_IDX | F_MAC | F_STATUS | F_MRG) < 0)
        return FAIL_INIT;
    if ((dev.features & (F_MAC | F_STATUS | F_MRG)) != (F_MAC | F_STATUS | F_MRG))
        return FAIL_FEATURES;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = mmio_read8(dev.base + VMMIO_CONFIG + i);
    uint16_t status = (uint16_t)(mmio_read8(dev.base + VMMIO_CONFIG + 6) |
                                 mmio_read8(dev.base + VMMIO_CONFIG + 7) << 8);
    if (!(status & 1)) {
        puts("virtio_net: link down\n");
        return FAIL_LINK;
    }
    if (vq_setup(&dev, &rxq, 0) < 0 || vq_setup(&dev, &txq, 1) < 0)
        return FAIL_QUEUE;
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;
    for (uint16_t i = 0; i < NRX; i++) {
        vq_desc(&rxq, i, (uint64_t)rxbuf[i], RX_BUF, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&rxq, i);
    }
    vq_kick(&rxq);

    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (send(bcast, PING, sizeof(PING) - 1) < 0)
        return FAIL_TX;
    for (unsigned n = 0; n < 16; n++) {
        uint32_t id, len;
        if (vq_wait(&rxq, &id, &len) < 0 || id >= NRX) {
            puts("virtio_net: nothing received\n");
            return FAIL_RX;
        }
        const uint8_t *f = rxbuf[id] + HDR;
        uint16_t nbuf = (uint16_t)(rxbuf[id][10] | rxbuf[id][11] << 8);
        size_t plen = len > HDR + 14 ? len - HDR - 14 : 0;
        bool pong = plen > sizeof(PONG) - 1 && nbuf == 1 && memcmp(f, mac, 6) == 0 &&
                    f[12] == (ETHERTYPE >> 8) && f[13] == (ETHERTYPE & 0xff) &&
                    memcmp(f + 14, PONG, sizeof(PONG) - 1) == 0;
        if (pong) {
            char token[TOKEN_MAX + 1], ack[sizeof(ACK) + TOKEN_MAX];
            size_t tlen = 0;
            const uint8_t *t = f + 14 + sizeof(PONG) - 1;
            while (tlen < TOKEN_MAX && tlen < plen - (sizeof(PONG) - 1) && t[tlen] > ' ' &&
                   t[tlen] < 0x7f) {
                token[tlen] = (char)t[tlen];
                tlen++;
            }
            token[tlen] = '\0';
            memcpy(ack, ACK, sizeof(ACK) - 1);
            memcpy(ack + sizeof(ACK) - 1, token, tlen);
            if (send(f + 6, ack, sizeof(ACK) - 1 + tlen) < 0)
                return FAIL_TX;
            printf("virtio_net ok: mac %x:%x:%x:%x:%x:%x, pong %s\n", mac[0], mac[1], mac[2],
                   mac[3], mac[4], mac[5], token);
            return 0;
        }
        /* Not ours: give the buffer back. */
        vq_submit(&rxq, (uint16_t)id);
    }
    return FAIL_NO_PONG;
}
