/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio-balloon driver (tests/integration/test_virtio_balloon.c
 * runs it under vmm-run --balloon=stats and bounds vmm-run's memory). One
 * after the other, each of which must come back used:
 *   - inflate: page numbers past guest memory (up to 0xffffffff), an array
 *     of 96K of them (more than the device looks at in one buffer), an
 *     array whose buffer lies outside guest memory, one of 7 bytes, one in a
 *     device-writable buffer; deflate: the 96K array;
 *   - statistics buffers of 3 bytes, 1001 bytes (not whole entries) and
 *     64 KiB of unknown tags (each comes back when the next arrives);
 * then a good request: a page of the guest's own, filled with 0xaa and
 * inflated, must read back as zeros (the host dropped it), and after the
 * deflate it takes a write again.
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_USED = 5,
    FAIL_GOOD = 6,
};

#define VIRTIO_ID_BALLOON 5
#define F_STATS_VQ        (1ull << 1)
#define HUGE_PFNS         (96u << 10)
#define FAR_PFN           0x100000u     /* 4 GiB: far past the 16 MiB guest */
#define OUTSIDE           0x40000000ull /* 1 GiB: no guest memory there */

static struct vdev dev;
static struct vq infq, defq, statq;
static uint32_t pfns[HUGE_PFNS] __attribute__((aligned(64)));
static uint8_t stats[64 << 10] __attribute__((aligned(64)));
static uint8_t victim[4096] __attribute__((aligned(4096)));

/* Submit one buffer on q as head 0 and wait until it is used. */
static bool used_back(struct vq *q, uint64_t addr, uint32_t len, uint16_t flags, const char *what)
{
    vq_desc(q, 0, addr, len, flags, 0);
    vq_submit(q, 0);
    uint32_t id, used;
    if (vq_wait(q, &id, &used) < 0 || id != 0) {
        printf("virtio_balloon_hostile: %s: not used\n", what);
        return false;
    }
    return true;
}

/* A statistics buffer (head slot): the device holds it and gives the
 * previous one (head 1 - slot) back. */
static bool stats_swap(unsigned slot, uint64_t addr, uint32_t len, bool first, const char *what)
{
    vq_desc(&statq, slot, addr, len, 0, 0);
    vq_submit(&statq, (uint16_t)slot);
    if (first)
        return true;
    uint32_t id, used;
    if (vq_wait(&statq, &id, &used) < 0 || id != 1 - slot) {
        printf("virtio_balloon_hostile: %s: the previous statistics buffer not back\n", what);
        return false;
    }
    return true;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_BALLOON, 0) < 0) {
        puts("virtio_balloon_hostile: no balloon\n");
        return FAIL_FIND;
    }
    if (vdev_init(&dev, F_STATS_VQ) < 0 || !(dev.features & F_STATS_VQ))
        return FAIL_INIT;
    if (vq_setup(&dev, &infq, 0) < 0 || vq_setup(&dev, &defq, 1) < 0 ||
        vq_setup(&dev, &statq, 2) < 0)
        return FAIL_QUEUE;
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;

    for (unsigned i = 0; i < 256; i++)
        pfns[i] = i == 255 ? 0xffffffffu : FAR_PFN + i * 77;
    if (!used_back(&infq, (uint64_t)pfns, 256 * 4, 0, "far page numbers"))
        return FAIL_USED;
    for (unsigned i = 0; i < HUGE_PFNS; i++)
        pfns[i] = FAR_PFN + i;
    if (!used_back(&infq, (uint64_t)pfns, sizeof(pfns), 0, "96K page numbers") ||
        !used_back(&infq, OUTSIDE, 4096, 0, "an array outside guest memory") ||
        !used_back(&infq, (uint64_t)pfns, 7, 0, "a 7-byte array") ||
        !used_back(&infq, (uint64_t)pfns, 64, VIRTQ_DESC_F_WRITE, "a device-writable array") ||
        !used_back(&defq, (uint64_t)pfns, sizeof(pfns), 0, "deflating 96K page numbers"))
        return FAIL_USED;

    memset(stats, 0xff, sizeof(stats)); /* tag 0xffff: unknown */
    if (!stats_swap(0, (uint64_t)stats, 3, true, "3 bytes") ||
        !stats_swap(1, (uint64_t)stats, 1001, false, "1001 bytes") ||
        !stats_swap(0, (uint64_t)stats, sizeof(stats), false, "64 KiB of unknown tags"))
        return FAIL_USED;

    /* The good request. */
    memset(victim, 0xaa, sizeof(victim));
    pfns[0] = (uint32_t)((uint64_t)victim >> 12);
    if (!used_back(&infq, (uint64_t)pfns, 4, 0, "inflating a page of the guest's"))
        return FAIL_GOOD;
    for (unsigned i = 0; i < sizeof(victim); i++)
        if (victim[i] != 0) {
            printf("virtio_balloon_hostile: the inflated page still holds 0x%x at %u\n", victim[i],
                   i);
            return FAIL_GOOD;
        }
    if (!used_back(&defq, (uint64_t)pfns, 4, 0, "deflating it"))
        return FAIL_GOOD;
    victim[7] = 0x55;
    if (victim[7] != 0x55)
        return FAIL_GOOD;
    printf("virtio_balloon_hostile ok: an inflated page of the guest's read back as zeros\n");
    return 0;
}
