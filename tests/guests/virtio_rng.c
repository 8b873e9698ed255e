/* SPDX-License-Identifier: Apache-2.0 */
/* The entropy device end to end: find it, bring it up, read two 32-byte
 * buffers (notification through QueueNotify's ioeventfd, completion through
 * the irqfd), and check they are not all zeros and differ. */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_TIMEOUT = 5,
    FAIL_LENGTH = 6,
    FAIL_ZEROS = 7,
    FAIL_SAME = 8,
    FAIL_NO_IRQ = 9,
};

static struct vdev dev;
static struct vq q;
static uint8_t buf[2][32];

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_RNG, 0) < 0) {
        puts("virtio_rng: no entropy device\n");
        return FAIL_FIND;
    }
    if (vdev_init(&dev, VIRTIO_F_EVENT_IDX) < 0)
        return FAIL_INIT;
    if (vq_setup(&dev, &q, 0) < 0)
        return FAIL_QUEUE;
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;
    for (unsigned k = 0; k < 2; k++) {
        vq_desc(&q, k, (uint64_t)buf[k], sizeof(buf[k]), VIRTQ_DESC_F_WRITE, 0);
        vq_submit(&q, (uint16_t)k);
        uint32_t id, len;
        if (vq_wait(&q, &id, &len) < 0) {
            printf("virtio_rng: request %u timed out\n", k);
            return FAIL_TIMEOUT;
        }
        if (id != k || len != sizeof(buf[k])) {
            printf("virtio_rng: request %u came back as id %u, %u bytes\n", k, id, len);
            return FAIL_LENGTH;
        }
    }
    if (all_zero(buf[0], 32) || all_zero(buf[1], 32))
        return FAIL_ZEROS;
    if (memcmp(buf[0], buf[1], 32) == 0)
        return FAIL_SAME;
    /* The completions came through the irqfd. */
    if (vdev_wait_isr(&dev, 1) < 0)
        return FAIL_NO_IRQ;
    printf("virtio_rng ok: %x %x %x %x, %u interrupts\n", buf[0][0], buf[0][1], buf[1][0],
           buf[1][1], dev.irqs);
    return 0;
}
