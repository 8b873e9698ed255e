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

/* The growth convention (abi.h) for the steps' record: a public step works
 * on a full, zero-filled copy of the caller's first .size bytes (-EINVAL for
 * NULL or a size the library does not know, nothing written) and copies it
 * back that far whatever the step returned, which linux_boot_out passes on. */
static inline int linux_boot_in(struct vmm_linux_boot *full, const struct vmm_linux_boot *caller)
{
    if (!caller || VMM_ABI_COPY_IN(full, caller) < 0)
        return -EINVAL;
    full->size = sizeof(*full);
    return 0;
}

static inline int linux_boot_out(struct vmm_linux_boot *caller, const struct vmm_linux_boot *full,
                                 int r)
{
    VMM_ABI_COPY_OUT(caller, full);
    return r;
}

/* The kernel options passed in, as linux_boot_in: *full zero-filled (all
 * defaults for NULL), its machine pointing at mcopy when it names one. */
static inline int linux_kopts_in(const struct vmm_kernel_options *caller,
                                 struct vmm_kernel_options *full, struct vmm_machine *mcopy)
{
    *full = (struct vmm_kernel_options){.size = sizeof(*full)};
    if (caller && VMM_ABI_COPY_IN(full, caller) < 0)
        return -EINVAL;
    full->size = sizeof(*full);
    return vmm_machine_in(full->machine, mcopy, &full->machine);
}

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
