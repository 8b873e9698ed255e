/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk (virtio 1.2 section 5.2): a disk backed by a file or a host
 * block device, served asynchronously through io_uring on the VM's event
 * loop. Guest buffers go to the kernel as iovecs (no copy).
 *
 * Requests: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES. Every request is
 * checked before any I/O: a 16-byte device-readable header, a status byte
 * that is the last byte of the device-writable part, data lengths that are
 * multiples of 512 bytes, sector ranges inside the capacity (with overflow
 * checks), and no more than each type carries (section 5.2.6): FLUSH is the
 * header and the status byte alone, GET_ID has at most 20 bytes of room,
 * DISCARD and WRITE_ZEROES at most VMM_VIRTIO_BLK_MAX_DISC_SEG ranges, and
 * OUT, FLUSH, DISCARD and WRITE_ZEROES nothing writable but the status
 * byte. A request that fails a check is answered VIRTIO_BLK_S_IOERR (or
 * VIRTIO_BLK_S_UNSUPP for unknown types and flags); a chain with no
 * device-writable byte to hold the status is completed with 0 bytes.
 *
 * Without an event loop (a standalone transport created with loop NULL),
 * requests complete synchronously inside the queue notification.
 */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature bits (section 5.2.3). */
#define VMM_VIRTIO_BLK_F_SIZE_MAX     (1ull << 1)
#define VMM_VIRTIO_BLK_F_SEG_MAX      (1ull << 2)
#define VMM_VIRTIO_BLK_F_GEOMETRY     (1ull << 4)
#define VMM_VIRTIO_BLK_F_RO           (1ull << 5)
#define VMM_VIRTIO_BLK_F_BLK_SIZE     (1ull << 6)
#define VMM_VIRTIO_BLK_F_FLUSH        (1ull << 9)
#define VMM_VIRTIO_BLK_F_TOPOLOGY     (1ull << 10)
#define VMM_VIRTIO_BLK_F_CONFIG_WCE   (1ull << 11)
#define VMM_VIRTIO_BLK_F_MQ           (1ull << 12)
#define VMM_VIRTIO_BLK_F_DISCARD      (1ull << 13)
#define VMM_VIRTIO_BLK_F_WRITE_ZEROES (1ull << 14)

/* Request types (section 5.2.6). */
#define VMM_VIRTIO_BLK_T_IN           0u
#define VMM_VIRTIO_BLK_T_OUT          1u
#define VMM_VIRTIO_BLK_T_FLUSH        4u
#define VMM_VIRTIO_BLK_T_GET_ID       8u
#define VMM_VIRTIO_BLK_T_DISCARD      11u
#define VMM_VIRTIO_BLK_T_WRITE_ZEROES 13u

/* Request status values. */
#define VMM_VIRTIO_BLK_S_OK     0u
#define VMM_VIRTIO_BLK_S_IOERR  1u
#define VMM_VIRTIO_BLK_S_UNSUPP 2u

/* The discard / write-zeroes segment flag. */
#define VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

/* Length of the GET_ID answer (not NUL-terminated when it fills all 20). */
#define VMM_VIRTIO_BLK_ID_BYTES 20

/* Offsets in the configuration space (little-endian fields). */
#define VMM_VIRTIO_BLK_CFG_CAPACITY                 0  /* le64, 512-byte sectors */
#define VMM_VIRTIO_BLK_CFG_SIZE_MAX                 8  /* le32 */
#define VMM_VIRTIO_BLK_CFG_SEG_MAX                  12 /* le32 */
#define VMM_VIRTIO_BLK_CFG_BLK_SIZE                 20 /* le32 */
#define VMM_VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS      36 /* le32 */
#define VMM_VIRTIO_BLK_CFG_MAX_DISCARD_SEG          40 /* le32 */
#define VMM_VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT 44 /* le32 */
#define VMM_VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS 48 /* le32 */
#define VMM_VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG     52 /* le32 */
#define VMM_VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP   56 /* u8 */
#define VMM_VIRTIO_BLK_CFG_SIZE                     60 /* bytes of configuration space */

/* What the device offers for these (seen in its configuration space).
 * seg_max is SEG_MAX, or queue_size - 2 for a smaller queue: a request's
 * chain (header, data, status) may be no longer than its queue. */
#define VMM_VIRTIO_BLK_SEG_MAX      126u
#define VMM_VIRTIO_BLK_MAX_DISCARD  (1u << 22) /* sectors per discard / write-zeroes (2 GiB) */
#define VMM_VIRTIO_BLK_MAX_DISC_SEG 1u

/* Configuration of a disk. Zero means default; growth convention (abi.h). */
struct vmm_virtio_blk_config {
    uint32_t size;        /* sizeof(struct vmm_virtio_blk_config) */
    const char *path;     /* image file or block device, required */
    bool readonly;        /* open read-only and offer VIRTIO_BLK_F_RO; writes fail with IOERR */
    bool direct;          /* O_DIRECT (guest buffers must then be aligned, else IOERR) */
    bool no_discard;      /* do not offer DISCARD */
    bool no_write_zeroes; /* do not offer WRITE_ZEROES */
    /* GET_ID answer, at most 20 bytes (longer is -EINVAL); NULL: "libvmm-blk". */
    const char *serial;
    unsigned queue_size; /* power of two up to 32768; default 256 (also the requests in flight) */
};

/*
 * Describe a disk for a transport: opens cfg->path (so a missing or
 * unreadable image fails here) and fills *dev, whose .size the caller has
 * set (abi.h); the device is freed by the transport (ops->destroy), or with
 * vmm_virtio_device_free if *dev is never handed to one. The capacity is the
 * image size rounded down to 512 bytes. Returns 0, -EINVAL (bad config, a
 * cfg->size or dev->size the library does not know, not a file or block device, an image
 * smaller than 512 bytes), -ENOMEM, or the -errno of open/io_uring set-up.
 */
VMM_API VMM_MUST_USE int vmm_virtio_blk_create(const struct vmm_virtio_blk_config *cfg,
                                               struct vmm_virtio_device *dev);

/* Create a disk and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_blk(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                               const struct vmm_virtio_blk_config *cfg,
                                               struct vmm_virtio_mmio **out);

/* Counters of one disk. */
struct vmm_virtio_blk_stats {
    uint32_t size; /* sizeof(struct vmm_virtio_blk_stats); growth convention (abi.h) */
    uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
    uint64_t bytes_read, bytes_written;
    uint64_t io_errors;    /* requests answered IOERR, bad ones included */
    uint64_t unsupported;  /* requests answered UNSUPP */
    uint64_t bad_requests; /* malformed requests (IOERR or completed with 0 bytes) */
    uint64_t capacity;     /* in 512-byte sectors */
};

/* Counters of the disk on transport t (vmm_virtio_mmio_transport(mmio)) into
 * *stats, whose .size the caller has set (abi.h). Returns 0, or -EINVAL when
 * t's device is not a virtio-blk disk or stats->size is one the library does
 * not know (nothing is written). Any thread
 * but from inside the device's callbacks (it takes the device lock). */
VMM_API int vmm_virtio_blk_get_stats(struct vmm_virtio_transport *t,
                                     struct vmm_virtio_blk_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_BLK_H */
