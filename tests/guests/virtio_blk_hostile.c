/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile virtio-blk driver (vmm-run --disk A, 64 KiB, pattern seed 1):
 * malformed requests (a short header, a header in a device-writable
 * buffer, no status byte, sectors past the end or overflowing, odd lengths,
 * unknown types and flags, buffers outside guest memory), each answered
 * without harm and followed by a good read that works; then issue 14's
 * recipe at this queue's size: every head a flush through one shared
 * indirect table of a header and 32767 one-byte writable buffers (the host
 * test bounds vmm-run's RSS). Nothing it sends may change the disk: the
 * host test checks the whole file afterwards.
 */
#include "virtio_blk_req.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_GOOD = 3,
    FAIL_SHORT_HDR = 4,
    FAIL_WRITABLE_HDR = 5,
    FAIL_NO_STATUS = 6,
    FAIL_RANGE = 7,
    FAIL_ODD = 8,
    FAIL_TYPE = 9,
    FAIL_OUTSIDE = 10,
    FAIL_DWZ = 11,
    FAIL_SHARED_TABLE = 12,
};

/* The shared table: 512 KiB, past the image (which must end below 2 MiB),
 * in guest memory the identity map covers. */
#define TABLE_LEN 32768
#define table     ((struct virtq_desc *)0x400000)

#define DISK_SECTORS 128
#define FAR_AWAY     0xfff0000000000000ull

static struct vdev disk;
static struct vq q;
static struct blk_hdr hdr __attribute__((aligned(16)));
static struct blk_dwz seg __attribute__((aligned(16)));
static volatile uint8_t status;
static uint8_t buf[1024] __attribute__((aligned(4096)));
static uint8_t junk[1024] __attribute__((aligned(4096)));

/* The device still works: sector 5 reads back as the image says. */
static bool good_read(void)
{
    memset(buf, 0, SECTOR);
    return blk_request(&q, &hdr, VIRTIO_BLK_T_IN, 5, buf, SECTOR, &status) == SECTOR + 1 &&
           status == VIRTIO_BLK_S_OK && blk_check_pattern(buf, 5, SECTOR, 1);
}

/* A read of len bytes at sector: answered with status IOERR, length 1. */
static bool read_refused(uint64_t sector, uint32_t len)
{
    return blk_request(&q, &hdr, VIRTIO_BLK_T_IN, sector, buf, len, &status) == 1 &&
           status == VIRTIO_BLK_S_IOERR;
}

static bool write_refused(uint64_t sector, uint32_t len)
{
    return blk_request(&q, &hdr, VIRTIO_BLK_T_OUT, sector, junk, len, &status) == 1 &&
           status == VIRTIO_BLK_S_IOERR;
}

static int hostile(void)
{
    /* A header of 8 bytes. */
    hdr = (struct blk_hdr){VIRTIO_BLK_T_IN, 0, 0};
    status = 0xff;
    vq_desc(&q, 0, (uint64_t)&hdr, 8, VIRTQ_DESC_F_NEXT, 1);
    vq_desc(&q, 1, (uint64_t)buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    vq_desc(&q, 2, (uint64_t)&status, 1, VIRTQ_DESC_F_WRITE, 0);
    if (blk_run(&q) != 1 || status != VIRTIO_BLK_S_IOERR)
        return FAIL_SHORT_HDR;
    if (!good_read())
        return FAIL_GOOD;

    /* The header in a device-writable buffer: nothing device-readable. */
    hdr = (struct blk_hdr){VIRTIO_BLK_T_OUT, 0, 0};
    status = 0xff;
    vq_desc(&q, 0, (uint64_t)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    vq_desc(&q, 1, (uint64_t)&status, 1, VIRTQ_DESC_F_WRITE, 0);
    if (blk_run(&q) != 1 || status != VIRTIO_BLK_S_IOERR)
        return FAIL_WRITABLE_HDR;
    if (!good_read())
        return FAIL_GOOD;

    /* A write with no device-writable byte for the status: used with
     * length 0, nothing written. */
    memset(junk, 0x6b, sizeof(junk));
    hdr = (struct blk_hdr){VIRTIO_BLK_T_OUT, 0, 0};
    vq_desc(&q, 0, (uint64_t)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    vq_desc(&q, 1, (uint64_t)junk, SECTOR, 0, 0);
    if (blk_run(&q) != 0)
        return FAIL_NO_STATUS;
    if (!good_read())
        return FAIL_GOOD;

    /* Sectors past the end, straddling it, and overflowing. */
    if (!read_refused(DISK_SECTORS, SECTOR) || !read_refused(DISK_SECTORS - 1, 2 * SECTOR) ||
        !read_refused(~0ull, SECTOR) || !read_refused(~0ull / SECTOR + 1, SECTOR) ||
        !write_refused(DISK_SECTORS, SECTOR) || !write_refused(~0ull - 1, 2 * SECTOR))
        return FAIL_RANGE;
    if (!good_read())
        return FAIL_GOOD;

    /* Lengths that are not whole sectors. */
    if (!read_refused(0, 1000) || !write_refused(0, 100))
        return FAIL_ODD;
    if (!good_read())
        return FAIL_GOOD;

    /* Unknown request types. */
    if (blk_simple(&q, &hdr, 99, &status) != 1 || status != VIRTIO_BLK_S_UNSUPP ||
        blk_simple(&q, &hdr, VIRTIO_BLK_T_OUT | 0x80000000u, &status) != 1 ||
        status != VIRTIO_BLK_S_UNSUPP)
        return FAIL_TYPE;
    if (!good_read())
        return FAIL_GOOD;

    /* A data buffer outside guest memory: the queue completes the chain with
     * length 0 and the device never sees it. */
    hdr = (struct blk_hdr){VIRTIO_BLK_T_IN, 0, 0};
    status = 0xff;
    vq_desc(&q, 0, (uint64_t)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    vq_desc(&q, 1, FAR_AWAY, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    vq_desc(&q, 2, (uint64_t)&status, 1, VIRTQ_DESC_F_WRITE, 0);
    if (blk_run(&q) != 0 || status != 0xff)
        return FAIL_OUTSIDE;
    if (!good_read())
        return FAIL_GOOD;

    /* Discard with the unmap flag, unknown flags, past the end. */
    if (blk_dwz(&q, &hdr, &seg, VIRTIO_BLK_T_DISCARD, 0, 8, VIRTIO_BLK_FLAG_UNMAP, &status) < 0 ||
        status != VIRTIO_BLK_S_UNSUPP ||
        blk_dwz(&q, &hdr, &seg, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0x10, &status) < 0 ||
        status != VIRTIO_BLK_S_UNSUPP ||
        blk_dwz(&q, &hdr, &seg, VIRTIO_BLK_T_WRITE_ZEROES, DISK_SECTORS - 1, 2, 0, &status) < 0 ||
        status != VIRTIO_BLK_S_IOERR ||
        blk_dwz(&q, &hdr, &seg, VIRTIO_BLK_T_DISCARD, ~0ull - 3, 8, 0, &status) < 0 ||
        status != VIRTIO_BLK_S_IOERR)
        return FAIL_DWZ;
    if (!good_read())
        return FAIL_GOOD;

    /* Every head: a flush through the shared table, all in flight at once;
     * each comes back (refused: longer than any chain may be). */
    hdr = (struct blk_hdr){VIRTIO_BLK_T_FLUSH, 0, 0};
    table[0] = (struct virtq_desc){(uint64_t)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1};
    for (unsigned i = 1; i < TABLE_LEN; i++)
        table[i] = (struct virtq_desc){
            (uint64_t)junk + i % sizeof(junk), 1,
            (uint16_t)(VIRTQ_DESC_F_WRITE | (i + 1 < TABLE_LEN ? VIRTQ_DESC_F_NEXT : 0)),
            (uint16_t)(i + 1)};
    for (uint16_t h = 0; h < VQ_SIZE; h++) {
        vq_desc(&q, h, (uint64_t)table, TABLE_LEN * sizeof(*table), VIRTQ_DESC_F_INDIRECT, 0);
        vq_add(&q, h);
    }
    vq_kick(&q);
    for (unsigned i = 0; i < VQ_SIZE; i++) {
        uint32_t id, len;
        if (vq_wait(&q, &id, &len) < 0 || id >= VQ_SIZE)
            return FAIL_SHARED_TABLE;
    }
    if (!good_read())
        return FAIL_GOOD;
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&disk, VIRTIO_ID_BLOCK, 0) < 0)
        return FAIL_FIND;
    if (vdev_init(&disk, VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES | VIRTIO_BLK_F_FLUSH |
                             VIRTIO_F_INDIRECT_DESC) < 0 ||
        !(disk.features & VIRTIO_F_INDIRECT_DESC) || vq_setup(&disk, &q, 0) < 0 ||
        vdev_driver_ok(&disk) < 0)
        return FAIL_INIT;
    if (!good_read())
        return FAIL_GOOD;
    int r = hostile();
    if (r) {
        printf("virtio_blk_hostile: step %d failed (status %u)\n", r, status);
        return r;
    }
    puts("virtio_blk_hostile ok\n");
    return 0;
}
