/* SPDX-License-Identifier: Apache-2.0 */
/* Private pieces of the Linux boot protocols (linux.h): refusal reasons and
 * the search for a free place in guest RAM. */
#ifndef VMM_LOADER_LINUX_INTERNAL_H
#define VMM_LOADER_LINUX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/linux.h>

#include "loader_internal.h"

/* Fill boot->error, log it, return code. */
#define linux_fail(boot, code, ...)                                                                \
    vmm_loader_fail((boot)->error, sizeof((boot)->error), "linux", (code), __VA_ARGS__)

/* The identity map of the 64-bit entry state covers the first 4 GiB. */
#define LINUX_IDENTITY_MAP_END 0x100000000ull

/* A request for size bytes at an address aligned to align (a power of two),
 * within [lo, hi), inside one run of writable RAM, clear of avoid[]. */
struct linux_place {
    uint64_t size;
    uint64_t align;
    uint64_t lo;
    uint64_t hi;
    bool highest; /* the highest such address (else the lowest) */
    const struct vmm_range *avoid;
    unsigned navoid;
};

/* Find the address. 0 with *addr set, -ENOSPC when nothing fits, -ENOMEM. */
int linux_place(const struct vmm_memory *mem, const struct linux_place *req, uint64_t *addr);

/* Whether [base, end) overlaps one of r[0..n); returns its index or -1. */
int linux_find_overlap(uint64_t base, uint64_t end, const struct vmm_range *r, unsigned n);

#endif /* VMM_LOADER_LINUX_INTERNAL_H */
