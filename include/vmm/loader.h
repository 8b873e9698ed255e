/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loaders write boot images into guest memory and say where they went and how
 * to enter them; they never touch a vCPU.
 *
 * Every image is hostile input: headers are checked against the image size
 * with overflow checks, every segment must fit the image and guest memory,
 * and a refused image leaves a one-line reason in the result. Nothing is
 * written outside guest memory; a refused image may have written part of
 * itself into guest memory before the check that failed.
 */
#ifndef VMM_LOADER_H
#define VMM_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default lowest guest address a loader writes to: below it the library
 * keeps x86 boot structures (see VMM_X86_BOOT_AREA_END in vcpu.h). */
#define VMM_LOAD_DEFAULT_MIN_ADDR 0x10000ull

/* Limit on the number of program headers an ELF image may have. */
#define VMM_ELF_MAX_PHDRS 128

/* Loader options. Zero means default; fields are only appended. */
struct vmm_load_options {
    uint32_t size;      /* sizeof(struct vmm_load_options); growth convention (abi.h) */
    vmm_gpa_t min_addr; /* refuse segments below this (0: VMM_LOAD_DEFAULT_MIN_ADDR) */
};

/* Where an image went. */
struct vmm_load_result {
    uint32_t size;     /* in: sizeof(struct vmm_load_result) (abi.h): filled that far */
    uint64_t entry;    /* entry point (guest-physical = virtual under the identity map) */
    vmm_gpa_t low;     /* lowest byte written */
    vmm_gpa_t high;    /* one past the highest byte written (including .bss) */
    unsigned segments; /* PT_LOAD segments placed */
    char error[160];   /* why the image was refused ("" on success) */
};

/*
 * Load a static ELF64 x86-64 executable (ET_EXEC) from image[0..size): every
 * PT_LOAD segment is copied to its physical address (p_paddr), the rest of
 * p_memsz zeroed. Refused with -EINVAL: a bad or truncated header, wrong
 * class/machine/type, program headers or segment data outside the image,
 * p_filesz > p_memsz, overlapping segments, no PT_LOAD, an entry point
 * outside every executable segment. -EFAULT: a segment outside guest memory
 * or below min_addr; -EROFS: a segment on a read-only region. res must not
 * be NULL; the caller sets res->size and opts->size (abi.h): a size the
 * library does not know is -EINVAL before anything is read or written.
 */
VMM_API VMM_MUST_USE int vmm_elf_load(struct vmm_memory *mem, const void *image, size_t size,
                                      const struct vmm_load_options *opts,
                                      struct vmm_load_result *res);

/* vmm_elf_load on the contents of the file at path. Also -ENOENT/-EACCES/
 * -EISDIR/-EFBIG (larger than guest memory) with the reason in res->error. */
VMM_API VMM_MUST_USE int vmm_elf_load_file(struct vmm_memory *mem, const char *path,
                                           const struct vmm_load_options *opts,
                                           struct vmm_load_result *res);

#ifdef __cplusplus
}
#endif

#endif /* VMM_LOADER_H */
