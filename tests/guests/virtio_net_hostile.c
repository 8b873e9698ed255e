/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio-net driver (tests/integration/test_virtio_net.c plays
 * the network and checks what reaches the tap): on the transmit queue, one
 * after the other, a chain shorter than the virtio-net header, a frame with
 * a device-writable buffer, a frame longer than the largest one allowed
 * (64 KiB + header), an indirect table twice the queue size, and a loop of
 * two descriptors; each must come back used (and none of their frames, all
 * marked "bad", may reach the network); then a good frame ("good") must
 * still go out, and the receive queue, given buffers throughout, must still
 * take the host's answer ("answer").
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_BAD_USED = 4,
    FAIL_GOOD = 5,
    FAIL_RX = 6,
};

#define F_MAC     (1ull << 5)
#define F_MRG     (1ull << 15)
#define F_STATUS  (1ull << 16)
#define HDR       12
#define ETHERTYPE 0x88b5
#define RX_BUF    2048
#define NRX       4
#define OVERSIZE  (70u << 10)

static struct vdev dev;
static struct vq rxq, txq;
static uint8_t rxbuf[NRX][RX_BUF] __attribute__((aligned(64)));
static uint8_t frame[HDR + 64] __attribute__((aligned(64)));
static uint8_t big[HDR + OVERSIZE] __attribute__((aligned(64)));
static uint8_t spare[64];
static struct virtq_desc long_table[2 * VQ_SIZE] __attribute__((aligned(16)));
static uint8_t mac[6];

/* A 60-byte broadcast frame with payload text after the header at p. */
static void make_frame(uint8_t *p, const char *text)
{
    memset(p, 0, HDR + 60);
    memset(p + HDR, 0xff, 6);
    memcpy(p + HDR + 6, mac, 6);
    p[HDR + 12] = ETHERTYPE >> 8;
    p[HDR + 13] = ETHERTYPE & 0xff;
    memcpy(p + HDR + 14, text, strlen(text));
}

/* Submit head, wait until it is used. */
static bool used_back(uint16_t head, const char *what)
{
    vq_submit(&txq, head);
    uint32_t id, len;
    if (vq_wait(&txq, &id, &len) < 0 || id != head) {
        printf("virtio_net_hostile: %s: not completed\n", what);
        return false;
    }
    return true;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_NET, 0) < 0)
        return FAIL_FIND;
    if (vdev_init(&dev, VIRTIO_F_INDIRECT_DESC | F_MAC | F_STATUS | F_MRG) < 0 ||
        !(dev.features & VIRTIO_F_INDIRECT_DESC))
        return FAIL_INIT;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = mmio_read8(dev.base + VMMIO_CONFIG + i);
    if (vq_setup(&dev, &rxq, 0) < 0 || vq_setup(&dev, &txq, 1) < 0 || vdev_driver_ok(&dev) < 0)
        return FAIL_QUEUE;
    for (uint16_t i = 0; i < NRX; i++) {
        vq_desc(&rxq, i, (uint64_t)rxbuf[i], RX_BUF, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&rxq, i);
    }
    vq_kick(&rxq);

    /* Shorter than the header. */
    make_frame(frame, "bad short");
    vq_desc(&txq, 0, (uint64_t)frame, HDR / 2, 0, 0);
    if (!used_back(0, "short header"))
        return FAIL_BAD_USED;
    /* A whole frame, then a device-writable buffer. */
    make_frame(frame, "bad writable");
    vq_desc(&txq, 1, (uint64_t)frame, HDR + 60, VIRTQ_DESC_F_NEXT, 2);
    vq_desc(&txq, 2, (uint64_t)spare, sizeof(spare), VIRTQ_DESC_F_WRITE, 0);
    if (!used_back(1, "writable buffer"))
        return FAIL_BAD_USED;
    /* 70 KiB of frame. */
    make_frame(big, "bad oversize");
    vq_desc(&txq, 3, (uint64_t)big, sizeof(big), 0, 0);
    if (!used_back(3, "oversize frame"))
        return FAIL_BAD_USED;
    /* An indirect table of 2 * VQ_SIZE pieces of one frame. */
    make_frame(frame, "bad long table");
    for (unsigned i = 0; i < 2 * VQ_SIZE; i++)
        long_table[i] = (struct virtq_desc){
            (uint64_t)frame + (i ? HDR + 2 * i : 0), i ? 2 : HDR + 2,
            (uint16_t)(i + 1 < 2 * VQ_SIZE ? VIRTQ_DESC_F_NEXT : 0), (uint16_t)(i + 1)};
    vq_desc(&txq, 4, (uint64_t)long_table, sizeof(long_table), VIRTQ_DESC_F_INDIRECT, 0);
    if (!used_back(4, "indirect table too long"))
        return FAIL_BAD_USED;
    /* 5 -> 6 -> 5 ... */
    make_frame(frame, "bad loop");
    vq_desc(&txq, 5, (uint64_t)frame, HDR + 30, VIRTQ_DESC_F_NEXT, 6);
    vq_desc(&txq, 6, (uint64_t)frame + HDR + 30, 30, VIRTQ_DESC_F_NEXT, 5);
    if (!used_back(5, "descriptor loop"))
        return FAIL_BAD_USED;

    make_frame(frame, "good");
    vq_desc(&txq, 7, (uint64_t)frame, HDR + 60, 0, 0);
    if (!used_back(7, "good frame"))
        return FAIL_GOOD;
    /* The host answers the good frame. */
    for (unsigned n = 0; n < 16; n++) {
        uint32_t id, len;
        if (vq_wait(&rxq, &id, &len) < 0 || id >= NRX)
            return FAIL_RX;
        const uint8_t *f = rxbuf[id] + HDR;
        if (len >= HDR + 20 && memcmp(f, mac, 6) == 0 && memcmp(f + 14, "answer", 6) == 0) {
            puts("virtio_net_hostile ok\n");
            return 0;
        }
        vq_submit(&rxq, (uint16_t)id);
    }
    return FAIL_RX;
}
