/* SPDX-License-Identifier: Apache-2.0 */
/* Private layout of the guest memory map, shared by memory.c (regions and access) and dirty.c. */
#ifndef VMM_MEMORY_INTERNAL_H
#define VMM_MEMORY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/memory.h>

/* Dirty bitmaps always count 4 KiB pages, whatever backs the region. */
#define MEMORY_PAGE_SHIFT 12
#define MEMORY_PAGE_SIZE  (UINT64_C(1) << MEMORY_PAGE_SHIFT)

/* KVM hosts commonly offer about 500 user memory slots; more regions than that
 * could never be registered, and a bound keeps every array small. */
#define MEMORY_MAX_REGIONS 512u

struct memory_region {
    vmm_gpa_t gpa;
    uint64_t size;
    uint8_t *host;
    unsigned index;
    unsigned flags; /* VMM_MEMORY_F_* as applied */
    int fd;         /* owned (memfd or dup of the caller's); -1 for none */
    uint64_t fd_offset;
    bool owns_mapping; /* false for external memory, which is never unmapped */
    bool memfd;        /* fd is a memfd the map created or adopted (not a caller's file) */

    /*
     * VMM-side dirty tracking. The bitmap is allocated the first time tracking
     * is turned on and only freed with the map, so a writer that saw tracking
     * on just before it was turned off still writes into live memory.
     * tracking is read and written atomically; the release store that turns
     * it on publishes dirty and dirty_words.
     */
    bool tracking;
    uint64_t *dirty;
    size_t dirty_words;
};

/* One entry of the gpa-sorted lookup array; gpa and end are copied out of the
 * region so a binary search stays within one dense array. */
struct memory_span {
    vmm_gpa_t gpa;
    vmm_gpa_t end; /* exclusive; never wraps, add_region refuses that */
    struct memory_region *region;
};

struct vmm_memory {
    struct memory_region **regions; /* by index: order of addition, stable for KVM slots */
    struct memory_span *spans;      /* sorted by gpa, non-overlapping */
    unsigned count;
    unsigned capacity;
    uint64_t total_size;
    /* Regions with dirty tracking on (atomic): lets writers that mark many
     * ranges skip the work at once when nothing is tracked. */
    unsigned tracking_regions;
};

/* Index in mem->spans of the first span ending above gpa (mem->count if none). */
unsigned memory_span_lower_bound(const struct vmm_memory *mem, vmm_gpa_t gpa);

/* The span holding gpa, or NULL. */
static inline const struct memory_span *memory_lookup(const struct vmm_memory *mem, vmm_gpa_t gpa)
{
    unsigned i = memory_span_lower_bound(mem, gpa);
    if (i < mem->count && mem->spans[i].gpa <= gpa)
        return &mem->spans[i];
    return NULL;
}

/* Whether region index is one the map mapped anonymously itself, without
 * huge pages, writable: what snapshot restores may remap or fault in. */
bool memory_region_anonymous(const struct vmm_memory *mem, unsigned index);

/*
 * Replace region index's anonymous mapping, at the same host address, by a
 * private (copy-on-write) mapping of fd at offset (page-aligned, the
 * region's size readable there): snapshot restore. Only for a region the
 * map mapped anonymously itself, without huge pages, not read-only:
 * -ENOTSUP otherwise. Not while anything accesses the region. Returns 0,
 * -ENOENT or a -errno from mmap (the region then reads as zeros).
 */
int memory_region_map_private(struct vmm_memory *mem, unsigned index, int fd, uint64_t offset);

/* Whether region index is a memfd of the map's (created, or adopted by
 * memory_region_adopt_memfd), without huge pages, writable: what a local
 * migration may hand to another process. */
bool memory_region_memfd(const struct vmm_memory *mem, unsigned index);

/*
 * Map fd shared over region index, at the same host address, and keep a
 * dup of it as the region's fd (the same fd number when the region had
 * one): the target of a local migration takes the source's memory. fd
 * must be a memfd of exactly the region's size, sealed against shrinking
 * (the caller checks). Only for a region memory_region_anonymous or
 * memory_region_memfd: -ENOTSUP otherwise. Not while anything accesses the
 * region. Returns 0, -ENOENT, -ENOTSUP or a -errno (dup, mmap: the region
 * then has memory of its own again, zeroed).
 */
int memory_region_adopt_memfd(struct vmm_memory *mem, unsigned index, int fd);

/*
 * Give region index blank memory of its own (a new memfd of its size, at
 * the same host address and fd number; anonymous memory if no memfd can be
 * made), dropping what it mapped: a migration's source after handing its
 * memfds over, so that nothing it does reaches the target's guest, or a
 * target that adopted them and then failed. Only for regions the map
 * mapped itself (others are left). Not while anything accesses the region.
 */
void memory_region_blank(struct vmm_memory *mem, unsigned index);

/* Set the dirty bits of [offset, offset + len) in r (offset + len <= r->size). */
void memory_dirty_set(struct memory_region *r, uint64_t offset, uint64_t len);

/* Called after every VMM write into r: untracked regions cost one load. */
static inline void memory_region_mark_dirty(struct memory_region *r, uint64_t offset, uint64_t len)
{
    if (__atomic_load_n(&r->tracking, __ATOMIC_ACQUIRE))
        memory_dirty_set(r, offset, len);
}

#endif /* VMM_MEMORY_INTERNAL_H */
