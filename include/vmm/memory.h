/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory: a map of guest-physical regions backed by host memory, with
 * checked access. This component knows nothing of KVM; a VM registers the
 * regions as KVM memory slots (see vm.h).
 *
 * Rules every access follows:
 * - Every access takes a length; gpa + len is checked for overflow and must
 *   lie wholly inside guest memory, else the call fails with -EFAULT and
 *   touches nothing.
 * - vmm_memory_read/write may cross from one region into the next when the
 *   two are adjacent in guest-physical space (gpa contiguous); a gap anywhere
 *   in the range is -EFAULT. vmm_memory_get_ptr and the atomic accessors need
 *   the whole range inside a single region (else -EFAULT), since they hand
 *   out one host pointer.
 * - Host mappings of guest memory are never executable.
 *
 * Thread-safety: regions are added before vCPUs run; after that the map is
 * read-only and every access function may be called from any thread.
 * Adding a region while other threads access the map is not supported.
 *
 * Stability: a region is never removed, moved, resized or remapped while the
 * map lives (there is no call that could); its host mapping goes only with
 * vmm_memory_destroy. So a host address obtained for guest memory stays
 * valid, and keeps mapping the same guest address, until then. The
 * virtqueues rely on it to reach their rings without a lookup per access.
 */
#ifndef VMM_MEMORY_H
#define VMM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A guest-physical address. */
typedef uint64_t vmm_gpa_t;

struct vmm_memory;

/* How a region's host memory is provided. */
enum vmm_memory_backing {
    VMM_MEMORY_ANON = 0, /* private anonymous mapping */
    VMM_MEMORY_MEMFD, /* a sealed-size memfd mapped shared; the fd can be shared or snapshotted */
    VMM_MEMORY_FILE,  /* the caller's fd mapped shared at fd_offset (the fd is dup'ed) */
};

/* Region flags. Without VMM_MEMORY_F_THP (or HUGETLB), anonymous and memfd
 * memory is advised MADV_NOHUGEPAGE, so that a host whose THP setting is
 * "always" does not spend a 2 MiB page on each first write; FILE memory is
 * left to its file system. */
#define VMM_MEMORY_F_HUGETLB   (1u << 0) /* hugetlbfs pages (MAP_HUGETLB / MFD_HUGETLB) */
#define VMM_MEMORY_F_THP       (1u << 1) /* transparent huge pages (MADV_HUGEPAGE) */
#define VMM_MEMORY_F_MERGEABLE (1u << 2) /* let KSM merge identical pages (MADV_MERGEABLE) */
#define VMM_MEMORY_F_DUMP      (1u << 3) /* include in core dumps (excluded by default) */
#define VMM_MEMORY_F_READONLY  (1u << 4) /* the guest cannot write (a ROM; KVM_MEM_READONLY) */

/* Configuration of one region. Zero means default; fields are only appended. */
struct vmm_region_config {
    uint32_t size; /* sizeof(struct vmm_region_config); growth convention (abi.h) */
    vmm_gpa_t gpa; /* guest-physical start, page aligned */
    uint64_t len;  /* bytes, page aligned (huge-page aligned with VMM_MEMORY_F_HUGETLB) */
    enum vmm_memory_backing backing;
    int fd;             /* VMM_MEMORY_FILE only: the file to map */
    uint64_t fd_offset; /* VMM_MEMORY_FILE only: page-aligned offset in fd */
    unsigned flags;     /* VMM_MEMORY_F_* */
};

/* What the map says about one region. host and fd stay valid until the map is
 * destroyed. */
struct vmm_region_info {
    uint32_t size; /* in: sizeof(struct vmm_region_info) (abi.h): filled that far */
    unsigned index;
    vmm_gpa_t gpa;
    uint64_t len;       /* bytes */
    void *host;         /* host address of the region's first byte */
    int fd;             /* backing fd (memfd or file), -1 for anonymous/external */
    uint64_t fd_offset; /* offset of the region in fd */
    unsigned flags;     /* VMM_MEMORY_F_* as applied */
};

/* Access kinds for vmm_memory_get_ptr. */
#define VMM_ACCESS_READ  (1u << 0)
#define VMM_ACCESS_WRITE (1u << 1) /* marks the range dirty when dirty tracking is on */

/* Create an empty map. Returns 0 or -ENOMEM. Free with vmm_memory_destroy. */
VMM_API VMM_MUST_USE int vmm_memory_create(struct vmm_memory **out);

/* Unmap every region the map created and free the map. Accepts NULL. */
VMM_API void vmm_memory_destroy(struct vmm_memory *mem);

/*
 * Add a region backed as cfg says (its first cfg->size bytes, abi.h; fields
 * past them take their zero defaults). Returns the new region's index
 * (>= 0), or -EINVAL (a cfg->size the library does not know, unaligned or
 * zero len, bad backing or flags, a file shorter
 * than fd_offset + len, HUGETLB with FILE or with THP, gpa + len
 * overflows), -EEXIST (overlaps an existing region), -ENOSPC (more than 512
 * regions), -EBADF (bad fd), -EACCES (file not writable), -ENOMEM or another
 * -errno from mmap/memfd_create (for example -ENOMEM when no huge pages are
 * reserved for VMM_MEMORY_F_HUGETLB). Region indices are assigned in the
 * order regions are added and never change; the VM uses them as KVM slots.
 * info.flags reports what took effect: a THP or KSM hint the host refused is
 * dropped (with a warning logged).
 */
VMM_API VMM_MUST_USE int vmm_memory_add_region(struct vmm_memory *mem,
                                               const struct vmm_region_config *cfg);

/*
 * Add a region backed by host memory the caller owns (host must stay valid,
 * and be size bytes long, until the map is destroyed). Used by unit tests on
 * malloc'ed memory and by embedders that map memory themselves. No alignment
 * is required. Returns the region index or -EINVAL/-EEXIST/-ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_memory_add_external(struct vmm_memory *mem, vmm_gpa_t gpa,
                                                 uint64_t size, void *host);

/* Number of regions in the map. */
VMM_API unsigned vmm_memory_region_count(const struct vmm_memory *mem);

/* Describe region index into info (its first info->size bytes, abi.h).
 * Returns 0, -EINVAL (a size the library does not know) or -ENOENT. */
VMM_API int vmm_memory_region_info(const struct vmm_memory *mem, unsigned index,
                                   struct vmm_region_info *info);

/* Find the region holding gpa. Returns its index (>= 0), -EINVAL (an
 * info->size the library does not know) or -EFAULT. info may be NULL. */
VMM_API int vmm_memory_find_region(const struct vmm_memory *mem, vmm_gpa_t gpa,
                                   struct vmm_region_info *info);

/* Sum of all region sizes in bytes. */
VMM_API uint64_t vmm_memory_total_size(const struct vmm_memory *mem);

/* 0 if [gpa, gpa + len) lies wholly in guest memory (adjacent regions allowed),
 * -EFAULT otherwise (including overflow). len == 0 checks gpa alone. */
VMM_API int vmm_memory_check_range(const struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len);

/* Copy len bytes out of guest memory at gpa into dst. 0 or -EFAULT. */
VMM_API VMM_MUST_USE int vmm_memory_read(const struct vmm_memory *mem, vmm_gpa_t gpa, void *dst,
                                         size_t len);

/* Copy len bytes from src into guest memory at gpa, marking the pages dirty
 * when tracking is on. 0, -EFAULT, or -EROFS for a read-only region. */
VMM_API VMM_MUST_USE int vmm_memory_write(struct vmm_memory *mem, vmm_gpa_t gpa, const void *src,
                                          size_t len);

/* Copy a whole object: vmm_memory_read_obj(mem, gpa, &desc). */
#define vmm_memory_read_obj(mem, gpa, objp)  vmm_memory_read((mem), (gpa), (objp), sizeof(*(objp)))
#define vmm_memory_write_obj(mem, gpa, objp) vmm_memory_write((mem), (gpa), (objp), sizeof(*(objp)))

/*
 * A host pointer to [gpa, gpa + len), which must lie in one region. access is
 * VMM_ACCESS_READ and/or VMM_ACCESS_WRITE; asking for write access marks the
 * range dirty (when tracking is on) and fails with -EROFS on a read-only
 * region. The pointer stays valid until the map is destroyed; the guest can
 * change the bytes under it at any time (copy before validating). The pages
 * are marked dirty when the pointer is handed out; a writer that races with
 * a dirty-log fetch calls vmm_memory_mark_dirty again after writing.
 * Returns 0 or -EFAULT/-EROFS/-EINVAL.
 */
VMM_API VMM_MUST_USE int vmm_memory_get_ptr(struct vmm_memory *mem, vmm_gpa_t gpa, size_t len,
                                            unsigned access, void **ptr);

/*
 * Atomic accessors for ring indices and flags shared with the guest. gpa must
 * be naturally aligned (else -EINVAL) and in one region (else -EFAULT). Loads
 * have acquire and stores release ordering. Stores mark the page dirty.
 */
VMM_API VMM_MUST_USE int vmm_memory_load_u16(const struct vmm_memory *mem, vmm_gpa_t gpa,
                                             uint16_t *val);
VMM_API VMM_MUST_USE int vmm_memory_load_u32(const struct vmm_memory *mem, vmm_gpa_t gpa,
                                             uint32_t *val);
VMM_API VMM_MUST_USE int vmm_memory_store_u16(struct vmm_memory *mem, vmm_gpa_t gpa, uint16_t val);
VMM_API VMM_MUST_USE int vmm_memory_store_u32(struct vmm_memory *mem, vmm_gpa_t gpa, uint32_t val);

/*
 * Dirty tracking of writes the VMM makes on the guest's behalf (through
 * vmm_memory_write, get_ptr with write access and the atomic stores). One bit
 * per 4 KiB page of a region. The VM combines this with KVM's own dirty log
 * (vmm_vm_dirty_log_*), so a user normally calls those instead.
 *
 * vmm_memory_dirty_track turns tracking of region index on or off (turning it
 * on starts with a clean bitmap). Returns 0, -ENOENT or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_memory_dirty_track(struct vmm_memory *mem, unsigned index, bool on);

/* Mark [gpa, gpa + len) dirty (for writes made through a pointer obtained for
 * read). Ranges outside tracked regions are ignored. */
VMM_API void vmm_memory_mark_dirty(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len);

/*
 * OR region index's dirty bits into bitmap (bit n = page n of the region,
 * 64 pages per word, nwords >= ceil(pages / 64)) and clear them. Returns 0,
 * -ENOENT (no such region), -EINVAL (tracking off) or -ENOSPC (bitmap too small).
 * Thread-safe against concurrent writers: no write is lost between fetches.
 */
VMM_API VMM_MUST_USE int vmm_memory_dirty_fetch(struct vmm_memory *mem, unsigned index,
                                                uint64_t *bitmap, size_t nwords);

#ifdef __cplusplus
}
#endif

#endif /* VMM_MEMORY_H */
