/* SPDX-License-Identifier: Apache-2.0 */
/* Private pieces shared by the loaders: an image read from a buffer or a file,
 * the ELF loader split into check and copy, and guest address ranges. */
#ifndef VMM_LOADER_INTERNAL_H
#define VMM_LOADER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/loader.h>
#include <vmm/machine.h>
#include <vmm/memory.h>

#include "vmm_internal.h"

/* An image to load: the caller's buffer, or a regular file read with pread
 * (so large kernels go straight into guest memory, not through a copy). */
struct vmm_image {
    const unsigned char *buf; /* NULL: read from fd */
    int fd;
    uint64_t size;
    const char *path; /* for messages; NULL for a buffer */
};

/* Format a reason into err[n] (vsnprintf), log it at debug level with tag,
 * and return code. */
int vmm_loader_fail(char *err, size_t n, const char *tag, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Open path as an image: a regular, non-empty file (O_NONBLOCK, so a FIFO
 * cannot hang the open). max_size (0: none) bounds its size (-EFBIG).
 * Returns 0 or -errno with the reason in err.
 */
int vmm_image_open(struct vmm_image *im, const char *path, uint64_t max_size, char *err, size_t n);
void vmm_image_close(struct vmm_image *im);

/* Copy [off, off + len) of the image to dst. 0, -EINVAL (outside the image,
 * or the file shrank), or the -errno of pread. */
int vmm_image_read(const struct vmm_image *im, uint64_t off, void *dst, size_t len);

/* Copy [off, off + len) of the image to guest memory at gpa. 0, -EINVAL,
 * -EFAULT/-EROFS from guest memory, or the -errno of pread. */
int vmm_image_to_guest(struct vmm_memory *mem, vmm_gpa_t gpa, const struct vmm_image *im,
                       uint64_t off, uint64_t len);

/* Zero [gpa, gpa + len) of guest memory. 0 or -EFAULT/-EROFS. */
int vmm_guest_zero(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len);

/* ---- ELF ---- */

struct vmm_elf_segment {
    unsigned phdr_index;
    uint64_t offset;
    uint64_t filesz;
    uint64_t memsz;
    vmm_gpa_t paddr;
    uint64_t vaddr;
    uint32_t flags;
};

/* An ELF image that passed every check, ready to be copied. */
struct vmm_elf_plan {
    uint64_t phoff;
    unsigned phnum;
    uint64_t entry; /* physical */
    vmm_gpa_t low;  /* lowest byte of every PT_LOAD */
    vmm_gpa_t high; /* one past the highest */
    unsigned nsegs;
    struct vmm_elf_segment segs[VMM_ELF_MAX_PHDRS];
};

/* Check the image as vmm_elf_load does, writing nothing. res->error gets the
 * reason. */
int vmm_elf_plan(struct vmm_memory *mem, const struct vmm_image *im, vmm_gpa_t min_addr,
                 struct vmm_elf_plan *plan, struct vmm_load_result *res);

/* Copy a checked image's segments into guest memory and fill res. */
int vmm_elf_place(struct vmm_memory *mem, const struct vmm_image *im,
                  const struct vmm_elf_plan *plan, struct vmm_load_result *res);

/*
 * Look through the PT_NOTE segments of a planned image for the note
 * (name, type). Returns 1 and copies up to desc_max bytes of its descriptor
 * into desc (*desc_len = its real size), 0 when absent, or -EINVAL for a
 * malformed note segment (reason in err).
 */
int vmm_elf_find_note(const struct vmm_image *im, const struct vmm_elf_plan *plan, const char *name,
                      uint32_t type, void *desc, size_t desc_max, uint32_t *desc_len, char *err,
                      size_t n);

/* ---- guest address ranges ---- */

struct vmm_range {
    uint64_t base;
    uint64_t end; /* exclusive */
};

/* Sorted, merged runs of writable RAM in mem (adjacent regions joined,
 * read-only regions left out). Returns the count (>= 0) with *out malloc'ed
 * (free it), or -ENOMEM. */
int vmm_loader_ram_runs(const struct vmm_memory *mem, struct vmm_range **out);

/* machine's reserved ranges (size 0 skipped) into out[VMM_MACHINE_MAX_RESERVED].
 * Returns the count or -EINVAL for a range that wraps or a count past the
 * array. machine may be NULL (0 ranges). */
int vmm_loader_machine_reserved(const struct vmm_machine *machine, struct vmm_range *out);

/* The growth convention (abi.h) for a machine passed in: *use becomes NULL
 * for NULL, else copy, a zero-filled full copy of the caller's first .size
 * bytes. -EINVAL for a size the library does not know. */
static inline int vmm_machine_in(const struct vmm_machine *caller, struct vmm_machine *copy,
                                 const struct vmm_machine **use)
{
    *use = NULL;
    if (!caller)
        return 0;
    if (VMM_ABI_COPY_IN(copy, caller) < 0)
        return -EINVAL;
    copy->size = sizeof(*copy);
    *use = copy;
    return 0;
}

/* The index of the first read-only region of mem overlapping [base, end), or
 * -1 when there is none. */
int vmm_loader_readonly_overlap(const struct vmm_memory *mem, uint64_t base, uint64_t end);

static inline bool vmm_range_overlaps(uint64_t base, uint64_t end, const struct vmm_range *r)
{
    return base < r->end && r->base < end;
}

#endif /* VMM_LOADER_INTERNAL_H */
