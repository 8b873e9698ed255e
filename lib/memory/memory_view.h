/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host views of guest memory regions, for hot paths in other components (the
 * virtqueues) that check an address once and then reach it many times without
 * a lookup. Hidden; not part of the public API.
 *
 * Why a view may be kept: a region, once added, is never removed, moved,
 * resized or remapped. lib/memory only ever adds regions (add_region,
 * add_external) and unmaps them in vmm_memory_destroy alone; struct
 * memory_region is allocated once per region and never reallocated (only the
 * span array is). So [gpa, end) maps to host for as long as the map lives,
 * and a view taken at any time stays exact until vmm_memory_destroy. A new
 * region may appear next to a view's region, which only makes multi-region
 * ranges valid that a view alone does not cover: users fall back to the
 * checked accessors of memory.h for those.
 *
 * A view is a pointer into guest memory: the guest can change the bytes under
 * it at any time. Copy what you validate (one read of each field into a local)
 * and use atomic loads and stores for anything shared with the guest.
 */
#ifndef VMM_MEMORY_VIEW_H
#define VMM_MEMORY_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/memory.h>

struct memory_region;

struct memory_view {
    vmm_gpa_t gpa;                /* the region's first byte */
    vmm_gpa_t end;                /* exclusive; never wraps */
    uint8_t *host;                /* host address of gpa */
    struct memory_region *region; /* opaque outside lib/memory */
    const bool *tracking;         /* the region's dirty-tracking flag */
    bool readonly;                /* VMM_MEMORY_F_READONLY */
};

/* The view of the region holding gpa. Returns 0 or -EFAULT. */
int memory_view_find(const struct vmm_memory *mem, vmm_gpa_t gpa, struct memory_view *v);

/* Whether [gpa, gpa + len) lies wholly in v, without overflow. gpa itself
 * must be inside v even when len is 0 (as vmm_memory_check_range wants). */
static inline bool memory_view_covers(const struct memory_view *v, vmm_gpa_t gpa, uint64_t len)
{
    return gpa >= v->gpa && gpa < v->end && len <= v->end - gpa;
}

/* Host address of gpa (covered by v). */
static inline uint8_t *memory_view_ptr(const struct memory_view *v, vmm_gpa_t gpa)
{
    return v->host + (gpa - v->gpa);
}

/* Whether any region of mem has dirty tracking on: when not, a writer may
 * skip marking (what memory_region_mark_dirty would find region by region). */
bool memory_dirty_tracking_any(const struct vmm_memory *mem);

/* Mark [gpa, gpa + len) of region r dirty (when its tracking is on). The
 * range must lie in r. */
void memory_region_dirty_gpa(struct memory_region *r, vmm_gpa_t gpa, uint64_t len);

/* After a write through v into [gpa, gpa + len) (covered by v): one load when
 * tracking is off. */
static inline void memory_view_mark_dirty(const struct memory_view *v, vmm_gpa_t gpa, uint64_t len)
{
    if (__atomic_load_n(v->tracking, __ATOMIC_ACQUIRE))
        memory_region_dirty_gpa(v->region, gpa, len);
}

#endif /* VMM_MEMORY_VIEW_H */
