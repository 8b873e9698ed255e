/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon (virtio 1.2 section 5.5, device type 5): the guest gives
 * memory back. Pages it inflates (and, with free page reporting, the free
 * blocks it reports) go back to the host by the call that works for their
 * backing: MADV_DONTNEED for anonymous memory, FALLOC_FL_PUNCH_HOLE for
 * memfd and file backing (shared mappings, and hugetlbfs, ignore
 * MADV_DONTNEED); hugetlb memory only in whole huge pages. Deflated pages
 * fault back in when the guest touches them. The statistics queue is kept
 * and its latest values readable.
 */
#ifndef VMM_VIRTIO_BALLOON_H
#define VMM_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature bits (virtio 1.2 section 5.5.3). */
#define VMM_VIRTIO_BALLOON_F_STATS_VQ       (1ull << 1)
#define VMM_VIRTIO_BALLOON_F_DEFLATE_ON_OOM (1ull << 2)
#define VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT (1ull << 3)
#define VMM_VIRTIO_BALLOON_F_PAGE_POISON    (1ull << 4)
#define VMM_VIRTIO_BALLOON_F_REPORTING      (1ull << 5)

/* The guest statistics (section 5.5.6.3), by tag. */
#define VMM_VIRTIO_BALLOON_S_SWAP_IN      0 /* pages swapped in */
#define VMM_VIRTIO_BALLOON_S_SWAP_OUT     1 /* pages swapped out */
#define VMM_VIRTIO_BALLOON_S_MAJFLT       2 /* major faults */
#define VMM_VIRTIO_BALLOON_S_MINFLT       3 /* minor faults */
#define VMM_VIRTIO_BALLOON_S_MEMFREE      4 /* free memory, bytes */
#define VMM_VIRTIO_BALLOON_S_MEMTOT       5 /* total memory, bytes */
#define VMM_VIRTIO_BALLOON_S_AVAIL        6 /* available memory, bytes */
#define VMM_VIRTIO_BALLOON_S_CACHES       7 /* disk caches, bytes */
#define VMM_VIRTIO_BALLOON_S_HTLB_PGALLOC 8 /* hugetlb page allocations */
#define VMM_VIRTIO_BALLOON_S_HTLB_PGFAIL  9 /* hugetlb allocation failures */
#define VMM_VIRTIO_BALLOON_S_NR           10

/* Configuration of a balloon. Zero means default; growth convention
 * (abi.h). */
struct vmm_virtio_balloon_config {
    uint32_t size;         /* sizeof(struct vmm_virtio_balloon_config) */
    uint64_t target_bytes; /* what the guest should give back at start (4 KiB pages) */
    bool stats;            /* offer the statistics queue */
    bool reporting;        /* offer free page reporting */
    bool deflate_on_oom;   /* let the guest deflate when it runs out of memory */
    unsigned queue_size;   /* default 256 */
    /* Offer free page hinting (vmm_virtio_balloon_hint). With reporting or
     * hinting the device also offers VIRTIO_BALLOON_F_PAGE_POISON: free pages
     * of a driver that poisons them are then kept, not given back. */
    bool hinting;
};

/*
 * Describe a balloon for a transport: fills *dev, whose .size the caller
 * has set (abi.h; its opaque is a new device that the transport frees
 * through ops->destroy; if *dev is never handed to a transport, free it with
 * vmm_virtio_device_free). cfg may be NULL. Returns 0, -EINVAL (a size the
 * library does not know, bad queue size, a target of 2^32 pages or more) or
 * -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_virtio_balloon_create(const struct vmm_virtio_balloon_config *cfg,
                                                   struct vmm_virtio_device *dev);

/* Create a balloon and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). cfg may be NULL. out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_balloon(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                                   const struct vmm_virtio_balloon_config *cfg,
                                                   struct vmm_virtio_mmio **out);

/* Ask the guest to hold target_bytes (rounded down to 4 KiB pages) in its
 * balloon: a configuration-change interrupt. Returns 0, or -EINVAL (not a
 * balloon, or 2^32 pages or more). Any thread but the device's callbacks. */
VMM_API int vmm_virtio_balloon_set_target(struct vmm_virtio_transport *t, uint64_t target_bytes);

/* Free page hinting: start == true hands the guest a new command ID (a
 * configuration-change interrupt); the free pages it hints for that command
 * go back to the host as they come (unless the guest poisons free pages).
 * start == false says DONE: the guest may use the hinted pages again.
 * Returns the command ID now in config space (2 or more when started, 1 for
 * DONE), -ENOTSUP (the balloon was not created with hinting) or -EINVAL
 * (not a balloon). Any thread but the device's callbacks. */
VMM_API int vmm_virtio_balloon_hint(struct vmm_virtio_transport *t, bool start);

/* Have the guest send fresh statistics: the statistics buffer it left with
 * the device goes back to it. Returns 0, -EAGAIN (the device holds no
 * buffer: none came yet, or a request is under way) or -EINVAL (not a
 * balloon). Any thread but the device's callbacks. */
VMM_API int vmm_virtio_balloon_request_stats(struct vmm_virtio_transport *t);

/* Counters of a balloon, and the guest's latest statistics. */
struct vmm_virtio_balloon_stats {
    uint32_t size;           /* sizeof(struct vmm_virtio_balloon_stats); growth convention */
    uint32_t target_pages;   /* what the device asks for */
    uint32_t actual_pages;   /* what the driver says it holds */
    uint64_t inflated_pages; /* page numbers received on inflateq */
    uint64_t deflated_pages; /* page numbers received on deflateq */
    uint64_t returned_bytes; /* bytes given back to the host (inflated and reported) */
    uint64_t reported_bytes; /* bytes of free page reports */
    uint64_t bad_pages;      /* page numbers or ranges outside guest memory, skipped */
    uint64_t stats_updates;  /* statistics buffers received */
    uint32_t guest_valid;    /* bit n: guest[n] was reported */
    uint64_t guest[VMM_VIRTIO_BALLOON_S_NR]; /* by VMM_VIRTIO_BALLOON_S_* */
    uint64_t hinted_bytes;                   /* bytes hinted free for an active command */
    uint64_t bad_hints;   /* hint buffers of a stale or malformed command, ignored */
    uint64_t kept_bytes;  /* reported or hinted bytes kept for the guest's page poison */
    uint32_t hint_cmd_id; /* free_page_hint_cmd_id now */
    uint32_t poison_val;  /* what the driver wrote */
};

/* Copy the balloon's counters into *stats, whose .size the caller has set
 * (abi.h). Returns 0, or -EINVAL (NULL, not a balloon, or a size the
 * library does not know). Takes the device lock. */
VMM_API int vmm_virtio_balloon_get_stats(struct vmm_virtio_transport *t,
                                         struct vmm_virtio_balloon_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_BALLOON_H */
