/* SPDX-License-Identifier: Apache-2.0 */
/* The guest memory map: creating regions (anon, memfd, file, external), lookup and checked access.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memory_internal.h"
#include "vmm_internal.h"

/* Host mappings of at least this size are placed so that host and guest
 * addresses agree modulo 2 MiB: only then can KVM map guest memory with huge
 * pages in the second-level page tables. */
#define MEMORY_MAP_ALIGN (UINT64_C(2) << 20)

#define MEMORY_KNOWN_FLAGS                                                                         \
    (VMM_MEMORY_F_HUGETLB | VMM_MEMORY_F_THP | VMM_MEMORY_F_MERGEABLE | VMM_MEMORY_F_DUMP |        \
     VMM_MEMORY_F_READONLY)

int vmm_memory_create(struct vmm_memory **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_memory *mem = calloc(1, sizeof(*mem));
    if (!mem)
        return -ENOMEM;
    *out = mem;
    return 0;
}

void vmm_memory_destroy(struct vmm_memory *mem)
{
    if (!mem)
        return;
    for (unsigned i = 0; i < mem->count; i++) {
        struct memory_region *r = mem->regions[i];
        if (r->owns_mapping)
            munmap(r->host, r->size);
        if (r->fd >= 0)
            close(r->fd);
        free(r->dirty);
        free(r);
    }
    free(mem->regions);
    free(mem->spans);
    free(mem);
}

/* ---- lookup (hot path: no allocation, no locks) ---- */

unsigned memory_span_lower_bound(const struct vmm_memory *mem, vmm_gpa_t gpa)
{
    unsigned lo = 0, hi = mem->count;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (mem->spans[mid].end <= gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Check that [gpa, gpa + len) is covered by gpa-contiguous regions; *first is
 * the span holding gpa. With for_write, a read-only region anywhere in the
 * range gives -EROFS (after the whole range is known to exist).
 */
static int memory_check_walk(const struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len,
                             bool for_write, const struct memory_span **first)
{
    vmm_gpa_t end;
    if (__builtin_add_overflow(gpa, len, &end))
        return -EFAULT;
    const struct memory_span *s = memory_lookup(mem, gpa);
    if (!s)
        return -EFAULT;
    *first = s;

    const struct memory_span *limit = mem->spans + mem->count;
    int rc = 0;
    for (;;) {
        if (for_write && (s->region->flags & VMM_MEMORY_F_READONLY))
            rc = -EROFS;
        if (end <= s->end)
            return rc;
        if (s + 1 == limit || s[1].gpa != s->end)
            return -EFAULT;
        s++;
    }
}

int vmm_memory_check_range(const struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len)
{
    const struct memory_span *s;
    return memory_check_walk(mem, gpa, len, false, &s);
}

int vmm_memory_read(const struct vmm_memory *mem, vmm_gpa_t gpa, void *dst, size_t len)
{
    const struct memory_span *s;
    int rc = memory_check_walk(mem, gpa, len, false, &s);
    if (rc)
        return rc;
    uint8_t *out = dst;
    while (len) {
        uint64_t avail = s->end - gpa;
        size_t n = len < avail ? len : (size_t)avail;
        memcpy(out, s->region->host + (gpa - s->gpa), n);
        out += n;
        gpa += n;
        len -= n;
        s++;
    }
    return 0;
}

int vmm_memory_write(struct vmm_memory *mem, vmm_gpa_t gpa, const void *src, size_t len)
{
    const struct memory_span *s;
    int rc = memory_check_walk(mem, gpa, len, true, &s);
    if (rc)
        return rc;
    const uint8_t *in = src;
    while (len) {
        uint64_t avail = s->end - gpa;
        size_t n = len < avail ? len : (size_t)avail;
        uint64_t off = gpa - s->gpa;
        memcpy(s->region->host + off, in, n);
        memory_region_mark_dirty(s->region, off, n);
        in += n;
        gpa += n;
        len -= n;
        s++;
    }
    return 0;
}

int vmm_memory_get_ptr(struct vmm_memory *mem, vmm_gpa_t gpa, size_t len, unsigned access,
                       void **ptr)
{
    if (!ptr || access == 0 || (access & ~(VMM_ACCESS_READ | VMM_ACCESS_WRITE)))
        return -EINVAL;
    vmm_gpa_t end;
    if (__builtin_add_overflow(gpa, len, &end))
        return -EFAULT;
    const struct memory_span *s = memory_lookup(mem, gpa);
    if (!s || end > s->end)
        return -EFAULT;
    struct memory_region *r = s->region;
    uint64_t off = gpa - s->gpa;
    if (access & VMM_ACCESS_WRITE) {
        if (r->flags & VMM_MEMORY_F_READONLY)
            return -EROFS;
        memory_region_mark_dirty(r, off, len);
    }
    *ptr = r->host + off;
    return 0;
}

/* The host address of a naturally aligned size-byte object at gpa in one
 * region. External memory need not be aligned on the host, so the host
 * address is checked too: a misaligned atomic would not be atomic. */
static int memory_atomic_ptr(const struct vmm_memory *mem, vmm_gpa_t gpa, unsigned size,
                             bool for_write, struct memory_region **rp, uint64_t *offp)
{
    if (gpa & (size - 1))
        return -EINVAL;
    vmm_gpa_t end;
    if (__builtin_add_overflow(gpa, size, &end))
        return -EFAULT;
    const struct memory_span *s = memory_lookup(mem, gpa);
    if (!s || end > s->end)
        return -EFAULT;
    struct memory_region *r = s->region;
    uint64_t off = gpa - s->gpa;
    if ((uintptr_t)(r->host + off) & (size - 1))
        return -EINVAL;
    if (for_write && (r->flags & VMM_MEMORY_F_READONLY))
        return -EROFS;
    *rp = r;
    *offp = off;
    return 0;
}

int vmm_memory_load_u16(const struct vmm_memory *mem, vmm_gpa_t gpa, uint16_t *val)
{
    struct memory_region *r;
    uint64_t off;
    int rc = memory_atomic_ptr(mem, gpa, sizeof(*val), false, &r, &off);
    if (rc)
        return rc;
    *val = __atomic_load_n((uint16_t *)(void *)(r->host + off), __ATOMIC_ACQUIRE);
    return 0;
}

int vmm_memory_load_u32(const struct vmm_memory *mem, vmm_gpa_t gpa, uint32_t *val)
{
    struct memory_region *r;
    uint64_t off;
    int rc = memory_atomic_ptr(mem, gpa, sizeof(*val), false, &r, &off);
    if (rc)
        return rc;
    *val = __atomic_load_n((uint32_t *)(void *)(r->host + off), __ATOMIC_ACQUIRE);
    return 0;
}

int vmm_memory_store_u16(struct vmm_memory *mem, vmm_gpa_t gpa, uint16_t val)
{
    struct memory_region *r;
    uint64_t off;
    int rc = memory_atomic_ptr(mem, gpa, sizeof(val), true, &r, &off);
    if (rc)
        return rc;
    __atomic_store_n((uint16_t *)(void *)(r->host + off), val, __ATOMIC_RELEASE);
    memory_region_mark_dirty(r, off, sizeof(val));
    return 0;
}

int vmm_memory_store_u32(struct vmm_memory *mem, vmm_gpa_t gpa, uint32_t val)
{
    struct memory_region *r;
    uint64_t off;
    int rc = memory_atomic_ptr(mem, gpa, sizeof(val), true, &r, &off);
    if (rc)
        return rc;
    __atomic_store_n((uint32_t *)(void *)(r->host + off), val, __ATOMIC_RELEASE);
    memory_region_mark_dirty(r, off, sizeof(val));
    return 0;
}

/* ---- queries ---- */

unsigned vmm_memory_region_count(const struct vmm_memory *mem)
{
    return mem ? mem->count : 0;
}

uint64_t vmm_memory_total_size(const struct vmm_memory *mem)
{
    return mem ? mem->total_size : 0;
}

/* Fill the caller's first info->size bytes (checked before: VMM_ABI_OUT_OK). */
static void memory_fill_info(const struct memory_region *r, struct vmm_region_info *info)
{
    struct vmm_region_info full = {
        .size = sizeof(full),
        .index = r->index,
        .gpa = r->gpa,
        .len = r->size,
        .host = r->host,
        .fd = r->fd,
        .fd_offset = r->fd_offset,
        .flags = r->flags,
    };
    VMM_ABI_COPY_OUT(info, &full);
}

int vmm_memory_region_info(const struct vmm_memory *mem, unsigned index,
                           struct vmm_region_info *info)
{
    if (info && !VMM_ABI_OUT_OK(info))
        return -EINVAL;
    if (!mem || index >= mem->count)
        return -ENOENT;
    if (info)
        memory_fill_info(mem->regions[index], info);
    return 0;
}

int vmm_memory_find_region(const struct vmm_memory *mem, vmm_gpa_t gpa,
                           struct vmm_region_info *info)
{
    if (info && !VMM_ABI_OUT_OK(info))
        return -EINVAL;
    const struct memory_span *s = mem ? memory_lookup(mem, gpa) : NULL;
    if (!s)
        return -EFAULT;
    if (info)
        memory_fill_info(s->region, info);
    return (int)s->region->index;
}

/* ---- adding regions ---- */

/* Refuse an overlap and make room for one more region, before anything is
 * mapped, so that inserting afterwards cannot fail. */
static int memory_prepare_insert(struct vmm_memory *mem, vmm_gpa_t gpa, vmm_gpa_t end)
{
    unsigned i = memory_span_lower_bound(mem, gpa);
    if (i < mem->count && mem->spans[i].gpa < end)
        return -EEXIST;
    if (mem->count == MEMORY_MAX_REGIONS)
        return -ENOSPC;
    if (mem->count < mem->capacity)
        return 0;

    unsigned cap = mem->capacity ? mem->capacity * 2 : 8;
    if (cap > MEMORY_MAX_REGIONS)
        cap = MEMORY_MAX_REGIONS;
    struct memory_region **regions = realloc(mem->regions, cap * sizeof(*regions));
    if (!regions)
        return -ENOMEM;
    mem->regions = regions;
    struct memory_span *spans = realloc(mem->spans, cap * sizeof(*spans));
    if (!spans)
        return -ENOMEM;
    mem->spans = spans;
    mem->capacity = cap;
    return 0;
}

/* Regions are only ever inserted (and unmapped in vmm_memory_destroy): the
 * span array may move, each struct memory_region and its mapping never do,
 * which host views (memory_view.h) and cached host pointers rely on. */
static int memory_insert(struct vmm_memory *mem, struct memory_region *r)
{
    unsigned i = memory_span_lower_bound(mem, r->gpa);
    memmove(&mem->spans[i + 1], &mem->spans[i], (mem->count - i) * sizeof(mem->spans[0]));
    mem->spans[i] = (struct memory_span){.gpa = r->gpa, .end = r->gpa + r->size, .region = r};
    r->index = mem->count;
    mem->regions[mem->count++] = r;
    mem->total_size += r->size;
    return (int)r->index;
}

/* The default huge page size (what MAP_HUGETLB and MFD_HUGETLB use). */
static uint64_t memory_hugepage_size(void)
{
    static uint64_t cached;
    uint64_t size = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (size)
        return size;

    size = MEMORY_MAP_ALIGN;
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        unsigned long long kb;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "Hugepagesize: %llu kB", &kb) == 1 && kb) {
                size = (uint64_t)kb * 1024;
                break;
            }
        }
        fclose(f);
    }
    __atomic_store_n(&cached, size, __ATOMIC_RELAXED);
    return size;
}

/*
 * mmap size bytes, placed (unless huge) so that the host address is congruent
 * to gpa modulo 2 MiB: reserve a larger PROT_NONE range, map over the right
 * part of it with MAP_FIXED, and return the rest. Returns 0 or -errno.
 */
static int memory_mmap(vmm_gpa_t gpa, uint64_t size, int prot, int flags, int fd, uint64_t offset,
                       bool huge, uint8_t **out)
{
    void *p;
    if (huge || size < MEMORY_MAP_ALIGN) {
        p = mmap(NULL, size, prot, flags, fd, (off_t)offset);
        if (p == MAP_FAILED)
            return -errno;
        *out = p;
        return 0;
    }

    uint64_t span = size + MEMORY_MAP_ALIGN;
    uint8_t *resv = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (resv == MAP_FAILED)
        return -errno;
    uintptr_t base = (uintptr_t)resv;
    uintptr_t addr = base - base % MEMORY_MAP_ALIGN + gpa % MEMORY_MAP_ALIGN;
    if (addr < base)
        addr += MEMORY_MAP_ALIGN;

    p = mmap((void *)addr, size, prot, flags | MAP_FIXED, fd, (off_t)offset);
    if (p == MAP_FAILED) {
        int err = -errno;
        munmap(resv, span);
        return err;
    }
    if (addr > base)
        munmap(resv, addr - base);
    if (base + span > addr + size)
        munmap((void *)(addr + size), base + span - (addr + size));
    *out = p;
    return 0;
}

static int memory_map_anon(const struct vmm_region_config *cfg, struct memory_region *r)
{
    bool huge = cfg->flags & VMM_MEMORY_F_HUGETLB;
    /*
     * NORESERVE: a large guest must not need its whole size committed up
     * front. Not for huge pages, though: there it would skip the reservation
     * of the pool's pages, and a guest touching a page the pool cannot supply
     * would kill the process with SIGBUS instead of failing here.
     */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : MAP_NORESERVE);
    return memory_mmap(cfg->gpa, cfg->len, PROT_READ | PROT_WRITE, flags, -1, 0, huge, &r->host);
}

static int memory_map_memfd(const struct vmm_region_config *cfg, struct memory_region *r)
{
    bool huge = cfg->flags & VMM_MEMORY_F_HUGETLB;
    int fd =
        memfd_create("vmm-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)cfg->len) < 0) {
        rc = -errno;
        goto err_close;
    }
    /* The size is fixed for the map's life: a shrink would turn guest
     * accesses into SIGBUS for whoever else holds the fd. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
        rc = -errno;
        goto err_close;
    }
    rc = memory_mmap(cfg->gpa, cfg->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, huge, &r->host);
    if (rc)
        goto err_close;
    r->fd = fd;
    r->memfd = true;
    return 0;

err_close:
    close(fd);
    return rc;
}

/*
 * The caller's file, mapped shared so writes reach the file. A read-only
 * region whose fd was opened O_RDONLY is mapped PROT_READ (the host cannot
 * write it either); every other file needs an fd open for writing.
 */
static int memory_map_file(const struct vmm_region_config *cfg, struct memory_region *r)
{
    if (cfg->fd < 0)
        return -EBADF;
    uint64_t file_end;
    if (__builtin_add_overflow(cfg->fd_offset, cfg->len, &file_end) || file_end > INT64_MAX)
        return -EINVAL;

    struct stat st;
    if (fstat(cfg->fd, &st) < 0)
        return -errno;
    /* A mapping past the end of a regular file would SIGBUS on access. */
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < file_end) {
        vmm_log_error("memory: file is %lld bytes, region needs %llu", (long long)st.st_size,
                      (unsigned long long)file_end);
        return -EINVAL;
    }
    int fl = fcntl(cfg->fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int prot = PROT_READ | PROT_WRITE;
    if ((fl & O_ACCMODE) == O_RDONLY && (cfg->flags & VMM_MEMORY_F_READONLY))
        prot = PROT_READ;

    int fd = fcntl(cfg->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A hugetlbfs file (st_blksize is its page size) must be mapped at a
     * huge-page-aligned address: let the kernel place it. */
    bool huge = (uint64_t)st.st_blksize > MEMORY_PAGE_SIZE;
    int rc = memory_mmap(cfg->gpa, cfg->len, prot, MAP_SHARED, fd, cfg->fd_offset, huge, &r->host);
    if (rc) {
        close(fd);
        return rc;
    }
    r->fd = fd;
    r->fd_offset = cfg->fd_offset;
    return 0;
}

/*
 * Hints the host may not support (no THP, no KSM) only cost a warning; the
 * flag is then dropped from what region_info reports as applied.
 *
 * Without VMM_MEMORY_F_THP, anonymous and memfd memory is MADV_NOHUGEPAGE:
 * a host whose THP setting is "always" (Debian's default) would otherwise
 * back each 2 MiB stretch the guest or the VMM first writes with a whole
 * huge page, so that an empty guest costs 2 MiB for its first byte. A
 * caller's file keeps what its file system does.
 */
static void memory_advise(struct memory_region *r, enum vmm_memory_backing backing)
{
    if ((r->flags & VMM_MEMORY_F_THP) && madvise(r->host, r->size, MADV_HUGEPAGE) < 0) {
        vmm_log_warn("memory: MADV_HUGEPAGE at gpa 0x%llx: %s", (unsigned long long)r->gpa,
                     strerror(errno));
        r->flags &= ~VMM_MEMORY_F_THP;
    }
    /* A kernel without THP refuses the advice (-EINVAL): nothing to avoid. */
    if (!(r->flags & (VMM_MEMORY_F_THP | VMM_MEMORY_F_HUGETLB)) && backing != VMM_MEMORY_FILE &&
        madvise(r->host, r->size, MADV_NOHUGEPAGE) < 0)
        vmm_log_debug("memory: MADV_NOHUGEPAGE at gpa 0x%llx: %s", (unsigned long long)r->gpa,
                      strerror(errno));
    if ((r->flags & VMM_MEMORY_F_MERGEABLE) && madvise(r->host, r->size, MADV_MERGEABLE) < 0) {
        vmm_log_warn("memory: MADV_MERGEABLE at gpa 0x%llx: %s", (unsigned long long)r->gpa,
                     strerror(errno));
        r->flags &= ~VMM_MEMORY_F_MERGEABLE;
    }
    if (!(r->flags & VMM_MEMORY_F_DUMP) && madvise(r->host, r->size, MADV_DONTDUMP) < 0) {
        vmm_log_warn("memory: MADV_DONTDUMP at gpa 0x%llx: %s", (unsigned long long)r->gpa,
                     strerror(errno));
        r->flags |= VMM_MEMORY_F_DUMP;
    }
}

static int memory_check_config(const struct vmm_region_config *cfg)
{
    if (cfg->flags & ~MEMORY_KNOWN_FLAGS)
        return -EINVAL;
    if (cfg->backing != VMM_MEMORY_ANON && cfg->backing != VMM_MEMORY_MEMFD &&
        cfg->backing != VMM_MEMORY_FILE)
        return -EINVAL;
    /* Only FILE maps at an offset; a stray offset elsewhere is a caller bug. */
    if (cfg->backing != VMM_MEMORY_FILE && cfg->fd_offset)
        return -EINVAL;

    uint64_t align = MEMORY_PAGE_SIZE;
    if (cfg->flags & VMM_MEMORY_F_HUGETLB) {
        /* A FILE's page size is its filesystem's (pass a hugetlbfs fd), and
         * THP is meaningless on hugetlb pages. */
        if (cfg->backing == VMM_MEMORY_FILE || (cfg->flags & VMM_MEMORY_F_THP))
            return -EINVAL;
        align = memory_hugepage_size();
    }
    vmm_gpa_t end;
    if (cfg->len == 0 || cfg->len % align || cfg->gpa % align || cfg->fd_offset % MEMORY_PAGE_SIZE)
        return -EINVAL;
    if (__builtin_add_overflow(cfg->gpa, cfg->len, &end) || cfg->len > INT64_MAX)
        return -EINVAL;
    return 0;
}

/*
 * Read-only regions are still mapped writable on the host (except a file
 * opened read-only): the VMM has to put the ROM's contents there through the
 * host pointer from region_info. Guest writes are refused by KVM
 * (KVM_MEM_READONLY), and the VMM's own write paths (write, get_ptr for
 * write, stores) refuse with -EROFS.
 */
int vmm_memory_add_region(struct vmm_memory *mem, const struct vmm_region_config *caller)
{
    struct vmm_region_config copy; /* an older, shorter config: the rest is zero */
    const struct vmm_region_config *cfg = &copy;
    if (!mem || !caller || VMM_ABI_COPY_IN(&copy, caller) < 0)
        return -EINVAL;
    int rc = memory_check_config(cfg);
    if (rc) {
        vmm_log_debug("memory: bad region config gpa 0x%llx size 0x%llx flags 0x%x",
                      (unsigned long long)cfg->gpa, (unsigned long long)cfg->len, cfg->flags);
        return rc;
    }
    rc = memory_prepare_insert(mem, cfg->gpa, cfg->gpa + cfg->len);
    if (rc)
        return rc;

    struct memory_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->gpa = cfg->gpa;
    r->size = cfg->len;
    r->flags = cfg->flags;
    r->fd = -1;
    r->owns_mapping = true;

    switch (cfg->backing) {
    case VMM_MEMORY_ANON:
        rc = memory_map_anon(cfg, r);
        break;
    case VMM_MEMORY_MEMFD:
        rc = memory_map_memfd(cfg, r);
        break;
    case VMM_MEMORY_FILE:
        rc = memory_map_file(cfg, r);
        break;
    }
    if (rc) {
        vmm_log_error("memory: cannot map region gpa 0x%llx size 0x%llx: %s",
                      (unsigned long long)cfg->gpa, (unsigned long long)cfg->len, strerror(-rc));
        free(r);
        return rc;
    }
    memory_advise(r, cfg->backing);
    return memory_insert(mem, r);
}

bool memory_region_anonymous(const struct vmm_memory *mem, unsigned index)
{
    if (index >= mem->count)
        return false;
    const struct memory_region *r = mem->regions[index];
    return r->owns_mapping && r->fd < 0 &&
           !(r->flags & (VMM_MEMORY_F_HUGETLB | VMM_MEMORY_F_READONLY));
}

int memory_region_map_private(struct vmm_memory *mem, unsigned index, int fd, uint64_t offset)
{
    if (index >= mem->count)
        return -ENOENT;
    struct memory_region *r = mem->regions[index];
    if (!memory_region_anonymous(mem, index))
        return -ENOTSUP;
    void *p =
        mmap(r->host, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, (off_t)offset);
    if (p != MAP_FAILED) {
        /* What memory_advise did for the old mapping (THP does not apply
         * to a file's pages). */
        r->flags &= ~VMM_MEMORY_F_THP;
        if ((r->flags & VMM_MEMORY_F_MERGEABLE) && madvise(r->host, r->size, MADV_MERGEABLE) < 0)
            r->flags &= ~VMM_MEMORY_F_MERGEABLE;
        if (!(r->flags & VMM_MEMORY_F_DUMP) && madvise(r->host, r->size, MADV_DONTDUMP) < 0)
            r->flags |= VMM_MEMORY_F_DUMP;
        return 0;
    }
    int err = -errno;
    /* A failed MAP_FIXED may have unmapped the range: keep the address
     * mapped (zeroed) so that nothing that holds it faults. */
    (void)mmap(r->host, r->size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return err;
}

bool memory_region_memfd(const struct vmm_memory *mem, unsigned index)
{
    if (index >= mem->count)
        return false;
    const struct memory_region *r = mem->regions[index];
    return r->owns_mapping && r->memfd && r->fd >= 0 &&
           !(r->flags & (VMM_MEMORY_F_HUGETLB | VMM_MEMORY_F_READONLY));
}

/* Make fd the region's fd: onto its old number when it has one (what
 * region_info handed out stays valid), else a new one. */
static void memory_region_take_fd(struct memory_region *r, int fd)
{
    if (r->fd >= 0 && dup3(fd, r->fd, O_CLOEXEC) >= 0) {
        close(fd);
        return;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
}

int memory_region_adopt_memfd(struct vmm_memory *mem, unsigned index, int fd)
{
    if (index >= mem->count)
        return -ENOENT;
    struct memory_region *r = mem->regions[index];
    if (!memory_region_anonymous(mem, index) && !memory_region_memfd(mem, index))
        return -ENOTSUP;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return -errno;
    if (mmap(r->host, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, own, 0) ==
        MAP_FAILED) {
        int err = -errno;
        close(own);
        /* A failed MAP_FIXED may have unmapped the range. */
        memory_region_blank(mem, index);
        return err;
    }
    memory_region_take_fd(r, own);
    r->memfd = true;
    r->fd_offset = 0;
    memory_advise(r, VMM_MEMORY_MEMFD);
    return 0;
}

void memory_region_blank(struct vmm_memory *mem, unsigned index)
{
    if (index >= mem->count || !mem->regions[index]->owns_mapping)
        return;
    struct memory_region *r = mem->regions[index];
    int prot = PROT_READ | PROT_WRITE;
    int fd = memfd_create("vmm-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd >= 0 && (ftruncate(fd, (off_t)r->size) < 0 ||
                    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0 ||
                    mmap(r->host, r->size, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)) {
        close(fd);
        fd = -1;
    }
    if (fd >= 0) {
        memory_region_take_fd(r, fd);
        r->memfd = true;
    } else {
        if (mmap(r->host, r->size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                 -1, 0) == MAP_FAILED)
            vmm_log_error("memory: cannot blank region %u: %s", index, strerror(errno));
        if (r->fd >= 0)
            close(r->fd);
        r->fd = -1;
        r->memfd = false;
    }
    r->fd_offset = 0;
    r->flags &= ~VMM_MEMORY_F_HUGETLB;
    memory_advise(r, fd >= 0 ? VMM_MEMORY_MEMFD : VMM_MEMORY_ANON);
}

int vmm_memory_add_external(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t size, void *host)
{
    if (!mem || !host || size == 0)
        return -EINVAL;
    vmm_gpa_t end;
    if (__builtin_add_overflow(gpa, size, &end) || size > SIZE_MAX)
        return -EINVAL;
    int rc = memory_prepare_insert(mem, gpa, end);
    if (rc)
        return rc;
    struct memory_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->gpa = gpa;
    r->size = size;
    r->host = host;
    r->fd = -1;
    return memory_insert(mem, r);
}
