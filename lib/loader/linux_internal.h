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

/* Load an ELF vmlinux (by its physical addresses, PVH entry unless
 * opts->no_pvh), filling boot; opts is a full copy (linux_kopts_in). */
int linux_load_vmlinux(struct vmm_memory *mem, const struct vmm_image *im,
                       const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot);

/* ---- a bzImage's compressed payload (bzpayload.c) ---- */

/* An XZ payload read from the image and checked (malloc'ed xz: free it). */
struct linux_payload {
    unsigned char *xz;
    size_t xz_len;    /* the stream, without the 4-byte size trailer */
    uint32_t out_len; /* what the trailer says it decompresses to */
};

/* Read the payload of a checked bzImage whose protected-mode kernel starts at
 * kernel_off: -ENOTSUP for none or another compression than XZ (reason in
 * boot->error), -EFBIG for a stated size of 0 or past init_size or max,
 * -ENOMEM, or the read's error. */
int linux_payload_read(const struct vmm_image *im, uint64_t kernel_off,
                       const struct vmm_linux_setup_header *hdr, uint64_t max,
                       struct linux_payload *pl, struct vmm_linux_boot *boot);

/* Decompress it into a malloc'ed buffer of exactly pl->out_len bytes.
 * -EINVAL for a corrupt or truncated stream or one that ends short of the
 * stated size, -EFBIG for one that goes past it, -E2BIG when the decoder
 * would need more than its memory limit, -ENOMEM. */
int linux_payload_extract(const struct linux_payload *pl, unsigned char **out,
                          struct vmm_linux_boot *boot);

/* Boot the bzImage's payload as an ELF kernel (opts->extract_payload), through
 * opts->payload_cache_dir when set. -ENOTSUP where the payload is not an XZ
 * ELF (the caller falls back to the bzImage), else as the steps above and
 * linux_load_vmlinux. */
int linux_load_payload(struct vmm_memory *mem, const struct vmm_image *im, uint64_t kernel_off,
                       const struct vmm_linux_setup_header *hdr,
                       const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot);

#endif /* VMM_LOADER_LINUX_INTERNAL_H */
