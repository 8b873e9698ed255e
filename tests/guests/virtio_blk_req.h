/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-blk requests for the test guests (on top of virtio_drv.h), and the
 * byte pattern the host-side tests fill disk images with. */
#ifndef VIRTIO_BLK_REQ_H
#define VIRTIO_BLK_REQ_H

#include "virtio_drv.h"

#define VIRTIO_BLK_F_SEG_MAX      (1ull << 2)
#define VIRTIO_BLK_F_RO           (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE     (1ull << 6)
#define VIRTIO_BLK_F_FLUSH        (1ull << 9)
#define VIRTIO_BLK_F_DISCARD      (1ull << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ull << 14)

#define VIRTIO_BLK_T_IN           0u
#define VIRTIO_BLK_T_OUT          1u
#define VIRTIO_BLK_T_FLUSH        4u
#define VIRTIO_BLK_T_GET_ID       8u
#define VIRTIO_BLK_T_DISCARD      11u
#define VIRTIO_BLK_T_WRITE_ZEROES 13u

#define VIRTIO_BLK_S_OK     0u
#define VIRTIO_BLK_S_IOERR  1u
#define VIRTIO_BLK_S_UNSUPP 2u

#define VIRTIO_BLK_FLAG_UNMAP 1u
#define SECTOR                512u

/* Byte `off` of a disk image the host prepared with `seed` (the host test
 * uses the same formula). */
static inline uint8_t blk_pattern(uint64_t off, unsigned seed)
{
    return (uint8_t)(off * 7 + (off >> 9) * 3 + seed);
}

struct blk_hdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct blk_dwz {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

/* The capacity in sectors, from the configuration space. */
static inline uint64_t blk_capacity(const struct vdev *d)
{
    return vdev_read(d, VMMIO_CONFIG) | (uint64_t)vdev_read(d, VMMIO_CONFIG + 4) << 32;
}

/* Run the chain whose head is descriptor 0 and wait for it: the used length,
 * or -1 when it timed out or came back with another id. */
static inline int blk_run(struct vq *q)
{
    vq_submit(q, 0);
    uint32_t id, len;
    if (vq_wait(q, &id, &len) < 0 || id != 0)
        return -1;
    return (int)len;
}

/* header, one data buffer (device-writable for IN and GET_ID), status. */
static inline int blk_request(struct vq *q, struct blk_hdr *hdr, uint32_t type, uint64_t sector,
                              void *buf, uint32_t len, volatile uint8_t *status)
{
    *hdr = (struct blk_hdr){type, 0, sector};
    *status = 0xff;
    bool in = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    vq_desc(q, 0, (uint64_t)hdr, sizeof(*hdr), VIRTQ_DESC_F_NEXT, 1);
    vq_desc(q, 1, (uint64_t)buf, len, VIRTQ_DESC_F_NEXT | (in ? VIRTQ_DESC_F_WRITE : 0), 2);
    vq_desc(q, 2, (uint64_t)status, 1, VIRTQ_DESC_F_WRITE, 0);
    return blk_run(q);
}

/* header and status only (FLUSH, or a type the test makes up). */
static inline int blk_simple(struct vq *q, struct blk_hdr *hdr, uint32_t type,
                             volatile uint8_t *status)
{
    *hdr = (struct blk_hdr){type, 0, 0};
    *status = 0xff;
    vq_desc(q, 0, (uint64_t)hdr, sizeof(*hdr), VIRTQ_DESC_F_NEXT, 1);
    vq_desc(q, 1, (uint64_t)status, 1, VIRTQ_DESC_F_WRITE, 0);
    return blk_run(q);
}

/* DISCARD or WRITE_ZEROES of one range. */
static inline int blk_dwz(struct vq *q, struct blk_hdr *hdr, struct blk_dwz *seg, uint32_t type,
                          uint64_t sector, uint32_t count, uint32_t flags, volatile uint8_t *status)
{
    *seg = (struct blk_dwz){sector, count, flags};
    return blk_request(q, hdr, type, 0, seg, sizeof(*seg), status) < 0 ? -1 : 1;
}

/* 1 when buf (len bytes read from sector) holds the image's pattern. */
static inline bool blk_check_pattern(const uint8_t *buf, uint64_t sector, uint32_t len,
                                     unsigned seed)
{
    for (uint32_t i = 0; i < len; i++)
        if (buf[i] != blk_pattern(sector * SECTOR + i, seed))
            return false;
    return true;
}

#endif
