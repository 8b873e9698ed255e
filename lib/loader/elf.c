/* SPDX-License-Identifier: Apache-2.0 */
/* Loader for static ELF64 x86-64 executables: validates every header, then
 * copies the PT_LOAD segments into guest memory. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/loader.h>

#include "vmm_internal.h"

/* One PT_LOAD segment that passed validation. */
struct elf_segment {
    unsigned phdr_index;
    uint64_t offset;
    uint64_t filesz;
    uint64_t memsz;
    vmm_gpa_t paddr;
    uint64_t vaddr;
    uint32_t flags;
};

/* Fill res->error, log it, and hand back err so callers can `return refuse(...)`. */
static int refuse(struct vmm_load_result *res, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct vmm_load_result *res, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
    vmm_log_debug("elf: %s", res->error);
    return err;
}

static int check_ehdr(const Elf64_Ehdr *eh, size_t size, struct vmm_load_result *res)
{
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return refuse(res, -EINVAL, "bad ELF magic");
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return refuse(res, -EINVAL, "not a 64-bit ELF (class %u)", eh->e_ident[EI_CLASS]);
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return refuse(res, -EINVAL, "not a little-endian ELF (data %u)", eh->e_ident[EI_DATA]);
    if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
        return refuse(res, -EINVAL, "unsupported ELF version %u", eh->e_version);
    if (eh->e_machine != EM_X86_64)
        return refuse(res, -EINVAL, "not an x86-64 ELF (machine %u)", eh->e_machine);
    if (eh->e_type != ET_EXEC)
        return refuse(res, -EINVAL, "not a static executable (ELF type %u, want ET_EXEC)",
                      eh->e_type);
    if (eh->e_phnum == 0)
        return refuse(res, -EINVAL, "no program headers");
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return refuse(res, -EINVAL, "program header size %u, want %zu", eh->e_phentsize,
                      sizeof(Elf64_Phdr));
    if (eh->e_phnum > VMM_ELF_MAX_PHDRS)
        return refuse(res, -EINVAL, "%u program headers (at most %u)", eh->e_phnum,
                      VMM_ELF_MAX_PHDRS);

    uint64_t table_size = (uint64_t)eh->e_phnum * eh->e_phentsize;
    uint64_t table_end;
    if (__builtin_add_overflow(eh->e_phoff, table_size, &table_end) || table_end > size)
        return refuse(res, -EINVAL,
                      "program headers [0x%" PRIx64 ", +0x%" PRIx64 ") outside the %zu-byte image",
                      (uint64_t)eh->e_phoff, table_size, size);
    return 0;
}

/* Check one PT_LOAD header against the image and guest memory; fills seg. */
static int check_segment(struct vmm_memory *mem, const Elf64_Phdr *ph, unsigned i, size_t size,
                         vmm_gpa_t min_addr, struct elf_segment *seg, struct vmm_load_result *res)
{
    uint64_t file_end, mem_end;

    if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &file_end) || file_end > size)
        return refuse(res, -EINVAL,
                      "segment %u data [0x%" PRIx64 ", +0x%" PRIx64
                      ") lies outside the %zu-byte image",
                      i, (uint64_t)ph->p_offset, (uint64_t)ph->p_filesz, size);
    if (ph->p_filesz > ph->p_memsz)
        return refuse(res, -EINVAL, "segment %u has p_filesz 0x%" PRIx64 " > p_memsz 0x%" PRIx64, i,
                      (uint64_t)ph->p_filesz, (uint64_t)ph->p_memsz);
    if (__builtin_add_overflow(ph->p_paddr, ph->p_memsz, &mem_end))
        return refuse(res, -EINVAL,
                      "segment %u at 0x%" PRIx64 " + 0x%" PRIx64 " wraps the address space", i,
                      (uint64_t)ph->p_paddr, (uint64_t)ph->p_memsz);
    /* vaddr only matters for finding the entry point, but must not wrap either. */
    uint64_t vend;
    if (__builtin_add_overflow(ph->p_vaddr, ph->p_memsz, &vend))
        return refuse(res, -EINVAL,
                      "segment %u vaddr 0x%" PRIx64 " + 0x%" PRIx64 " wraps the address space", i,
                      (uint64_t)ph->p_vaddr, (uint64_t)ph->p_memsz);
    if (ph->p_memsz != 0) {
        if (ph->p_paddr < min_addr)
            return refuse(res, -EFAULT,
                          "segment %u [0x%" PRIx64 ", 0x%" PRIx64
                          ") lies below the lowest load address 0x%" PRIx64,
                          i, (uint64_t)ph->p_paddr, mem_end, min_addr);
        if (vmm_memory_check_range(mem, ph->p_paddr, ph->p_memsz) != 0)
            return refuse(res, -EFAULT,
                          "segment %u [0x%" PRIx64 ", 0x%" PRIx64 ") lies outside guest memory", i,
                          (uint64_t)ph->p_paddr, mem_end);
    }

    seg->phdr_index = i;
    seg->offset = ph->p_offset;
    seg->filesz = ph->p_filesz;
    seg->memsz = ph->p_memsz;
    seg->paddr = ph->p_paddr;
    seg->vaddr = ph->p_vaddr;
    seg->flags = ph->p_flags;
    return 0;
}

/* A segment landing on a read-only region would fail half-way through the
 * copy; find that before anything is written. */
static int check_writable(struct vmm_memory *mem, const struct elf_segment *seg,
                          struct vmm_load_result *res)
{
    unsigned n = vmm_memory_region_count(mem);
    vmm_gpa_t end = seg->paddr + seg->memsz; /* checked by check_segment */

    for (unsigned r = 0; r < n; r++) {
        struct vmm_region_info info;
        if (vmm_memory_region_info(mem, r, &info) != 0)
            continue;
        if (!(info.flags & VMM_MEMORY_F_READONLY))
            continue;
        /* region end cannot wrap: the map refuses such regions */
        if (info.gpa < end && seg->paddr < info.gpa + info.size)
            return refuse(res, -EROFS,
                          "segment %u [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps read-only region %u",
                          seg->phdr_index, seg->paddr, end, r);
    }
    return 0;
}

/* Translate e_entry to a guest-physical address inside an executable segment.
 * The entry is a virtual address; images linked with p_vaddr != p_paddr
 * (vmlinux) are also accepted with a physical entry. */
static int find_entry(const struct elf_segment *segs, unsigned nsegs, uint64_t entry,
                      uint64_t *phys)
{
    for (unsigned k = 0; k < nsegs; k++) {
        const struct elf_segment *s = &segs[k];
        if ((s->flags & PF_X) && entry >= s->vaddr && entry - s->vaddr < s->memsz) {
            *phys = s->paddr + (entry - s->vaddr);
            return 0;
        }
    }
    for (unsigned k = 0; k < nsegs; k++) {
        const struct elf_segment *s = &segs[k];
        if ((s->flags & PF_X) && entry >= s->paddr && entry - s->paddr < s->memsz) {
            *phys = entry;
            return 0;
        }
    }
    return -1;
}

static int zero_guest(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len)
{
    void *p;

    if (len == 0)
        return 0;
    if (len <= SIZE_MAX && vmm_memory_get_ptr(mem, gpa, (size_t)len, VMM_ACCESS_WRITE, &p) == 0) {
        memset(p, 0, (size_t)len);
        return 0;
    }
    /* The range spans adjacent regions: write through the checked path. */
    static const unsigned char zeros[4096];
    while (len > 0) {
        size_t chunk = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        int ret = vmm_memory_write(mem, gpa, zeros, chunk);
        if (ret < 0)
            return ret;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

int vmm_elf_load(struct vmm_memory *mem, const void *image, size_t size,
                 const struct vmm_load_options *opts, struct vmm_load_result *res)
{
    if (!res)
        return -EINVAL;
    memset(res, 0, sizeof(*res));
    if (!mem || (!image && size != 0))
        return refuse(res, -EINVAL, "no guest memory or image given");

    const unsigned char *img = image;
    vmm_gpa_t min_addr = opts && opts->min_addr ? opts->min_addr : VMM_LOAD_DEFAULT_MIN_ADDR;

    if (size < sizeof(Elf64_Ehdr))
        return refuse(res, -EINVAL, "image of %zu bytes is shorter than an ELF header", size);
    /* The caller's buffer need not be aligned: copy headers out before use. */
    Elf64_Ehdr eh;
    memcpy(&eh, img, sizeof(eh));
    int ret = check_ehdr(&eh, size, res);
    if (ret < 0)
        return ret;

    struct elf_segment segs[VMM_ELF_MAX_PHDRS];
    unsigned nsegs = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD)
            continue;
        ret = check_segment(mem, &ph, i, size, min_addr, &segs[nsegs], res);
        if (ret < 0)
            return ret;
        /* An empty PT_LOAD places nothing; it cannot hold the entry point either. */
        if (ph.p_memsz == 0)
            continue;
        for (unsigned k = 0; k < nsegs; k++) {
            const struct elf_segment *o = &segs[k];
            if (ph.p_paddr < o->paddr + o->memsz && o->paddr < ph.p_paddr + ph.p_memsz)
                return refuse(res, -EINVAL,
                              "segment %u [0x%" PRIx64 ", 0x%" PRIx64
                              ") overlaps segment %u [0x%" PRIx64 ", 0x%" PRIx64 ")",
                              i, (uint64_t)ph.p_paddr, (uint64_t)(ph.p_paddr + ph.p_memsz),
                              o->phdr_index, o->paddr, o->paddr + o->memsz);
        }
        ret = check_writable(mem, &segs[nsegs], res);
        if (ret < 0)
            return ret;
        nsegs++;
    }
    if (nsegs == 0)
        return refuse(res, -EINVAL, "no loadable (PT_LOAD) segment");

    uint64_t entry;
    if (find_entry(segs, nsegs, eh.e_entry, &entry) != 0)
        return refuse(res, -EINVAL, "entry point 0x%" PRIx64 " is outside every executable segment",
                      (uint64_t)eh.e_entry);

    /* Everything checked: only now touch guest memory. */
    vmm_gpa_t low = UINT64_MAX, high = 0;
    for (unsigned k = 0; k < nsegs; k++) {
        const struct elf_segment *s = &segs[k];
        ret = vmm_memory_write(mem, s->paddr, img + s->offset, s->filesz);
        if (ret == 0)
            ret = zero_guest(mem, s->paddr + s->filesz, s->memsz - s->filesz);
        if (ret < 0) {
            return refuse(res, ret, "segment %u [0x%" PRIx64 ", 0x%" PRIx64 "): write failed: %s",
                          s->phdr_index, s->paddr, s->paddr + s->memsz, vmm_strerror(ret));
        }
        if (s->paddr < low)
            low = s->paddr;
        if (s->paddr + s->memsz > high)
            high = s->paddr + s->memsz;
    }

    res->entry = entry;
    res->low = low;
    res->high = high;
    res->segments = nsegs;
    vmm_log_debug("elf: loaded %u segment(s) at [0x%" PRIx64 ", 0x%" PRIx64 "), entry 0x%" PRIx64,
                  nsegs, low, high, entry);
    return 0;
}

/* Read all of fd (size bytes by fstat) into a fresh buffer. */
static int read_all(int fd, unsigned char *buf, size_t size, struct vmm_load_result *res,
                    const char *path)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = -errno;
            return refuse(res, err, "%s: read failed: %s", path, vmm_strerror(err));
        }
        if (n == 0)
            return refuse(res, -EINVAL, "%s: file shrank while being read", path);
        done += (size_t)n;
    }
    return 0;
}

int vmm_elf_load_file(struct vmm_memory *mem, const char *path, const struct vmm_load_options *opts,
                      struct vmm_load_result *res)
{
    if (!res)
        return -EINVAL;
    memset(res, 0, sizeof(*res));
    if (!mem || !path)
        return refuse(res, -EINVAL, "no guest memory or path given");

    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = -errno;
        return refuse(res, err, "cannot open %s: %s", path, vmm_strerror(err));
    }

    int ret;
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        refuse(res, ret, "cannot stat %s: %s", path, vmm_strerror(ret));
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        ret = refuse(res, -EISDIR, "%s is a directory", path);
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = refuse(res, -EINVAL, "%s is not a regular file", path);
        goto out_close;
    }
    if (st.st_size == 0) {
        ret = refuse(res, -EINVAL, "%s: empty file", path);
        goto out_close;
    }
    /* An image cannot usefully be much bigger than the memory it lands in;
     * the slack covers headers, symbols and debug sections of small guests. */
    uint64_t limit = vmm_memory_total_size(mem);
    if (__builtin_add_overflow(limit, 1ull << 20, &limit))
        limit = UINT64_MAX;
    if ((uint64_t)st.st_size > limit || (uint64_t)st.st_size > SIZE_MAX) {
        ret = refuse(res, -EFBIG, "%s: %lld bytes is larger than guest memory", path,
                     (long long)st.st_size);
        goto out_close;
    }

    size_t size = (size_t)st.st_size;
    buf = malloc(size);
    if (!buf) {
        ret = refuse(res, -ENOMEM, "%s: cannot allocate %zu bytes", path, size);
        goto out_close;
    }
    ret = read_all(fd, buf, size, res, path);
    if (ret == 0)
        ret = vmm_elf_load(mem, buf, size, opts, res);

    free(buf);
out_close:
    close(fd);
    return ret;
}
