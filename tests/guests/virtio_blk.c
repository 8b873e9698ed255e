/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk end to end (vmm-run --disk A --disk B,ro): on disk A (64 KiB,
 * pattern seed 1) read and check sectors, write 4 KiB at sector 16 and read
 * it back, flush, discard sectors 32-39, write zeroes to 40-41, get the id,
 * and see a read past the end refused; on disk B (16 KiB, seed 99, read-only)
 * see VIRTIO_BLK_F_RO, a write refused and a read work. The host test then
 * checks disk A's file.
 */
#include "virtio_blk_req.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_FEATURES = 3,
    FAIL_CAPACITY = 4,
    FAIL_READ = 5,
    FAIL_WRITE = 6,
    FAIL_FLUSH = 7,
    FAIL_DISCARD = 8,
    FAIL_ZEROES = 9,
    FAIL_ID = 10,
    FAIL_PAST_END = 11,
    FAIL_RO = 12,
    FAIL_NO_IRQ = 13,
};

#define DISK_A_SECTORS 128
#define DISK_B_SECTORS 32

static struct vdev disk_a, disk_b;
static struct vq qa, qb;
static struct blk_hdr hdr __attribute__((aligned(16)));
static struct blk_dwz seg __attribute__((aligned(16)));
static volatile uint8_t status;
static uint8_t buf[4096] __attribute__((aligned(4096)));

static uint8_t written(uint32_t i)
{
    return (uint8_t)(0xa5 ^ i ^ (i >> 8));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int setup(struct vdev *d, struct vq *q, unsigned skip, bool ro)
{
    const uint64_t want = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
                          VIRTIO_BLK_F_RO | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
    if (vdev_find(d, VIRTIO_ID_BLOCK, skip) < 0) {
        printf("virtio_blk: no disk %u\n", skip);
        return FAIL_FIND;
    }
    if (vdev_init(d, want) < 0 || vq_setup(d, q, 0) < 0 || vdev_driver_ok(d) < 0)
        return FAIL_INIT;
    bool is_ro = d->features & VIRTIO_BLK_F_RO;
    bool has_all = (d->features & VIRTIO_BLK_F_FLUSH) && (d->features & VIRTIO_BLK_F_BLK_SIZE);
    bool has_dwz =
        (d->features & VIRTIO_BLK_F_DISCARD) && (d->features & VIRTIO_BLK_F_WRITE_ZEROES);
    if (is_ro != ro || !has_all || has_dwz == ro) {
        printf("virtio_blk: disk %u features 0x%x\n", skip, (unsigned)d->features);
        return FAIL_FEATURES;
    }
    /* blk_size sits at offset 20 of the configuration space. */
    if (vdev_read(d, VMMIO_CONFIG + 20) != SECTOR)
        return FAIL_FEATURES;
    return 0;
}

/* Read `count` sectors at sector into buf; 0 or a failure code. */
static int read_ok(struct vq *q, uint64_t sector, uint32_t count)
{
    int len = blk_request(q, &hdr, VIRTIO_BLK_T_IN, sector, buf, count * SECTOR, &status);
    if (len != (int)(count * SECTOR + 1) || status != VIRTIO_BLK_S_OK) {
        printf("virtio_blk: read of sector %u: len %d status %u\n", (unsigned)sector, len, status);
        return FAIL_READ;
    }
    return 0;
}

static int disk_a_tests(void)
{
    int r;
    if (blk_capacity(&disk_a) != DISK_A_SECTORS)
        return FAIL_CAPACITY;
    /* Reads: the first 8 sectors, and the last one. */
    if ((r = read_ok(&qa, 0, 8)) || !blk_check_pattern(buf, 0, 4096, 1))
        return r ? r : FAIL_READ;
    if ((r = read_ok(&qa, DISK_A_SECTORS - 1, 1)) ||
        !blk_check_pattern(buf, DISK_A_SECTORS - 1, SECTOR, 1))
        return r ? r : FAIL_READ;
    /* Write 4 KiB at sector 16, read it back. */
    for (uint32_t i = 0; i < sizeof(buf); i++)
        buf[i] = written(i);
    if (blk_request(&qa, &hdr, VIRTIO_BLK_T_OUT, 16, buf, sizeof(buf), &status) != 1 ||
        status != VIRTIO_BLK_S_OK)
        return FAIL_WRITE;
    memset(buf, 0, sizeof(buf));
    if ((r = read_ok(&qa, 16, 8)))
        return r;
    for (uint32_t i = 0; i < sizeof(buf); i++)
        if (buf[i] != written(i))
            return FAIL_WRITE;
    if (blk_simple(&qa, &hdr, VIRTIO_BLK_T_FLUSH, &status) != 1 || status != VIRTIO_BLK_S_OK)
        return FAIL_FLUSH;
    /* Discard 32-39 (a file reads zeroes there afterwards), zero 40-41. */
    if (blk_dwz(&qa, &hdr, &seg, VIRTIO_BLK_T_DISCARD, 32, 8, 0, &status) < 0 ||
        status != VIRTIO_BLK_S_OK)
        return FAIL_DISCARD;
    if ((r = read_ok(&qa, 32, 8)) || !all_zero(buf, 4096))
        return r ? r : FAIL_DISCARD;
    if (blk_dwz(&qa, &hdr, &seg, VIRTIO_BLK_T_WRITE_ZEROES, 40, 2, 0, &status) < 0 ||
        status != VIRTIO_BLK_S_OK)
        return FAIL_ZEROES;
    if ((r = read_ok(&qa, 40, 2)) || !all_zero(buf, 1024))
        return r ? r : FAIL_ZEROES;
    if ((r = read_ok(&qa, 42, 1)) || !blk_check_pattern(buf, 42, SECTOR, 1))
        return r ? r : FAIL_ZEROES;
    /* The id: 20 bytes, "libvmm-disk0" (vmm-run names disk n "libvmm-disk<n>") padded with zeros.
     */
    memset(buf, 0xee, 32);
    if (blk_request(&qa, &hdr, VIRTIO_BLK_T_GET_ID, 0, buf, 20, &status) != 21 ||
        status != VIRTIO_BLK_S_OK || memcmp(buf, "libvmm-disk0\0\0\0\0\0\0\0\0", 20) != 0 ||
        buf[20] != 0xee)
        return FAIL_ID;
    /* Past the end: refused, nothing read. */
    if (blk_request(&qa, &hdr, VIRTIO_BLK_T_IN, DISK_A_SECTORS, buf, SECTOR, &status) != 1 ||
        status != VIRTIO_BLK_S_IOERR)
        return FAIL_PAST_END;
    return 0;
}

static int disk_b_tests(void)
{
    int r;
    if (blk_capacity(&disk_b) != DISK_B_SECTORS)
        return FAIL_CAPACITY;
    memset(buf, 0x33, SECTOR);
    if (blk_request(&qb, &hdr, VIRTIO_BLK_T_OUT, 0, buf, SECTOR, &status) != 1 ||
        status != VIRTIO_BLK_S_IOERR)
        return FAIL_RO;
    if ((r = read_ok(&qb, 0, 8)) || !blk_check_pattern(buf, 0, 4096, 99))
        return r ? r : FAIL_RO;
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    int r;
    if ((r = setup(&disk_a, &qa, 0, false)) || (r = setup(&disk_b, &qb, 1, true)))
        return r;
    if ((r = disk_a_tests()) || (r = disk_b_tests()))
        return r;
    /* The completions came through the irqfd. */
    if (vdev_wait_isr(&disk_a, 1) < 0 || vdev_wait_isr(&disk_b, 1) < 0)
        return FAIL_NO_IRQ;
    printf("virtio_blk ok: %u + %u interrupts\n", disk_a.irqs, disk_b.irqs);
    return 0;
}
