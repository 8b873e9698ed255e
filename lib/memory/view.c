/* SPDX-License-Identifier: Apache-2.0 */
/* Host views of whole regions for other components' hot paths (see memory_view.h). */
#include <errno.h>

#include "memory_internal.h"
#include "memory_view.h"

int memory_view_find(const struct vmm_memory *mem, vmm_gpa_t gpa, struct memory_view *v)
{
    const struct memory_span *s = memory_lookup(mem, gpa);
    if (!s)
        return -EFAULT;
    struct memory_region *r = s->region;
    *v = (struct memory_view){
        .gpa = r->gpa,
        .end = r->gpa + r->size,
        .host = r->host,
        .region = r,
        .tracking = &r->tracking,
        .readonly = (r->flags & VMM_MEMORY_F_READONLY) != 0,
    };
    return 0;
}

bool memory_dirty_tracking_any(const struct vmm_memory *mem)
{
    return __atomic_load_n(&mem->tracking_regions, __ATOMIC_ACQUIRE) != 0;
}

void memory_region_dirty_gpa(struct memory_region *r, vmm_gpa_t gpa, uint64_t len)
{
    memory_region_mark_dirty(r, gpa - r->gpa, len);
}
