/* SPDX-License-Identifier: Apache-2.0 */
/* Dirty tracking of the writes the VMM makes into guest memory: a bitmap of 4 KiB pages per region.
 */
#include <errno.h>
#include <stdlib.h>

#include "memory_internal.h"
#include "vmm_internal.h"

/*
 * Ordering: writers copy the data first and then set the bit with release;
 * the fetcher swaps each word out with acquire. So a fetch that sees a bit
 * also sees the data behind it, and a bit set after the swap is kept for the
 * next fetch: no write is lost between fetches.
 *
 * A caller writing through a pointer from vmm_memory_get_ptr(WRITE) had its
 * bits set before the write; if it keeps writing after a fetch, it should call
 * vmm_memory_mark_dirty once done.
 */
void memory_dirty_set(struct memory_region *r, uint64_t offset, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = offset >> MEMORY_PAGE_SHIFT;
    uint64_t last = (offset + len - 1) >> MEMORY_PAGE_SHIFT;
    uint64_t *bitmap = r->dirty;

    for (uint64_t w = first / 64; w <= last / 64; w++) {
        unsigned lo = w == first / 64 ? (unsigned)(first % 64) : 0;
        unsigned hi = w == last / 64 ? (unsigned)(last % 64) : 63;
        uint64_t mask = (~UINT64_C(0) >> (63 - hi)) & (~UINT64_C(0) << lo);
        /* Always the locked OR: skipping it when the bits look set would let
         * a concurrent fetch clear them before this write's data is visible. */
        __atomic_fetch_or(&bitmap[w], mask, __ATOMIC_RELEASE);
    }
}

void vmm_memory_mark_dirty(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len)
{
    if (!mem || len == 0)
        return;
    vmm_gpa_t end;
    if (__builtin_add_overflow(gpa, len, &end))
        end = UINT64_MAX; /* no region reaches past it */

    for (unsigned i = memory_span_lower_bound(mem, gpa); i < mem->count; i++) {
        const struct memory_span *s = &mem->spans[i];
        if (s->gpa >= end)
            break;
        vmm_gpa_t lo = gpa > s->gpa ? gpa : s->gpa;
        vmm_gpa_t hi = end < s->end ? end : s->end;
        memory_region_mark_dirty(s->region, lo - s->gpa, hi - lo);
    }
}

/* Not thread-safe against itself for one region (the VM serialises
 * start/stop); safe against concurrent writers and fetches. */
int vmm_memory_dirty_track(struct vmm_memory *mem, unsigned index, bool on)
{
    if (!mem || index >= mem->count)
        return -ENOENT;
    struct memory_region *r = mem->regions[index];
    bool was_on = __atomic_load_n(&r->tracking, __ATOMIC_RELAXED);

    if (!on) {
        __atomic_store_n(&r->tracking, false, __ATOMIC_RELEASE);
        if (was_on)
            __atomic_fetch_sub(&mem->tracking_regions, 1, __ATOMIC_RELEASE);
        return 0;
    }
    if (!r->dirty) {
        uint64_t pages = r->size / MEMORY_PAGE_SIZE + (r->size % MEMORY_PAGE_SIZE != 0);
        size_t words = (size_t)((pages + 63) / 64);
        r->dirty = calloc(words, sizeof(*r->dirty));
        if (!r->dirty)
            return -ENOMEM;
        r->dirty_words = words;
    } else {
        for (size_t w = 0; w < r->dirty_words; w++)
            __atomic_store_n(&r->dirty[w], 0, __ATOMIC_RELAXED);
    }
    /* Counted first: a writer that sees the region's flag on also sees
     * the count non-zero. */
    if (!was_on)
        __atomic_fetch_add(&mem->tracking_regions, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->tracking, true, __ATOMIC_RELEASE);
    return 0;
}

int vmm_memory_dirty_fetch(struct vmm_memory *mem, unsigned index, uint64_t *bitmap, size_t nwords)
{
    if (!mem || index >= mem->count)
        return -ENOENT;
    struct memory_region *r = mem->regions[index];
    if (!__atomic_load_n(&r->tracking, __ATOMIC_ACQUIRE))
        return -EINVAL;
    if (nwords < r->dirty_words || !bitmap)
        return -ENOSPC;

    for (size_t w = 0; w < r->dirty_words; w++) {
        /* Most words of a large region are clean; reading first avoids
         * pulling every line exclusive. A bit set after this read is kept. */
        if (__atomic_load_n(&r->dirty[w], __ATOMIC_RELAXED) == 0)
            continue;
        bitmap[w] |= __atomic_exchange_n(&r->dirty[w], 0, __ATOMIC_ACQUIRE);
    }
    return 0;
}
