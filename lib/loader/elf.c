/* SPDX-License-Identifier: Apache-2.0 */
/* Loader for static ELF64 x86-64 executables: validates every header, then
 * copies the PT_LOAD segments into guest memory. The image comes from a buffer
 * or straight from a file (struct vmm_image); the Linux loader reuses the
 * check and copy halves and the note lookup. */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/loader.h>

#include "loader_internal.h"

/* Fill res->error, log it, and hand back err so callers can `return refuse(...)`. */
#define refuse(res, err, ...)                                                                      \
    vmm_loader_fail((res)->error, sizeof((res)->error), "elf", (err), __VA_ARGS__)

static int check_ehdr(const Elf64_Ehdr *eh, uint64_t size, struct vmm_load_result *res)
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
                      "program headers [0x%" PRIx64 ", +0x%" PRIx64 ") outside the %" PRIu64
                      "-byte image",
                      (uint64_t)eh->e_phoff, table_size, size);
    return 0;
}

/* Check one PT_LOAD header against the image and guest memory; fills seg. */
static int check_segment(struct vmm_memory *mem, const Elf64_Phdr *ph, unsigned i, uint64_t size,
                         vmm_gpa_t min_addr, struct vmm_elf_segment *seg,
                         struct vmm_load_result *res)
{
    uint64_t file_end, mem_end;

    if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &file_end) || file_end > size)
        return refuse(res, -EINVAL,
                      "segment %u data [0x%" PRIx64 ", +0x%" PRIx64 ") lies outside the %" PRIu64
                      "-byte image",
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
static int check_writable(struct vmm_memory *mem, const struct vmm_elf_segment *seg,
                          struct vmm_load_result *res)
{
    vmm_gpa_t end = seg->paddr + seg->memsz; /* checked by check_segment */
    int r = vmm_loader_readonly_overlap(mem, seg->paddr, end);
    if (r >= 0)
        return refuse(res, -EROFS,
                      "segment %u [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps read-only region %d",
                      seg->phdr_index, seg->paddr, end, r);
    return 0;
}

/* Translate e_entry to a guest-physical address inside an executable segment.
 * The entry is a virtual address; images linked with p_vaddr != p_paddr
 * (vmlinux) are also accepted with a physical entry. */
static int find_entry(const struct vmm_elf_segment *segs, unsigned nsegs, uint64_t entry,
                      uint64_t *phys)
{
    for (unsigned k = 0; k < nsegs; k++) {
        const struct vmm_elf_segment *s = &segs[k];
        if ((s->flags & PF_X) && entry >= s->vaddr && entry - s->vaddr < s->memsz) {
            *phys = s->paddr + (entry - s->vaddr);
            return 0;
        }
    }
    for (unsigned k = 0; k < nsegs; k++) {
        const struct vmm_elf_segment *s = &segs[k];
        if ((s->flags & PF_X) && entry >= s->paddr && entry - s->paddr < s->memsz) {
            *phys = entry;
            return 0;
        }
    }
    return -1;
}

int vmm_elf_plan(struct vmm_memory *mem, const struct vmm_image *im, vmm_gpa_t min_addr,
                 struct vmm_elf_plan *plan, struct vmm_load_result *res)
{
    uint64_t size = im->size;

    if (size < sizeof(Elf64_Ehdr))
        return refuse(res, -EINVAL, "image of %" PRIu64 " bytes is shorter than an ELF header",
                      size);
    /* Copy headers out before use: the caller's buffer need not be aligned. */
    Elf64_Ehdr eh;
    int ret = vmm_image_read(im, 0, &eh, sizeof(eh));
    if (ret < 0)
        return refuse(res, ret, "cannot read the ELF header: %s", vmm_strerror(ret));
    ret = check_ehdr(&eh, size, res);
    if (ret < 0)
        return ret;

    Elf64_Phdr phdrs[VMM_ELF_MAX_PHDRS];
    ret = vmm_image_read(im, eh.e_phoff, phdrs, (size_t)eh.e_phnum * sizeof(Elf64_Phdr));
    if (ret < 0)
        return refuse(res, ret, "cannot read the program headers: %s", vmm_strerror(ret));

    struct vmm_elf_segment *segs = plan->segs;
    unsigned nsegs = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *ph = &phdrs[i];
        if (ph->p_type != PT_LOAD)
            continue;
        ret = check_segment(mem, ph, i, size, min_addr, &segs[nsegs], res);
        if (ret < 0)
            return ret;
        /* An empty PT_LOAD places nothing; it cannot hold the entry point either. */
        if (ph->p_memsz == 0)
            continue;
        for (unsigned k = 0; k < nsegs; k++) {
            const struct vmm_elf_segment *o = &segs[k];
            if (ph->p_paddr < o->paddr + o->memsz && o->paddr < ph->p_paddr + ph->p_memsz)
                return refuse(res, -EINVAL,
                              "segment %u [0x%" PRIx64 ", 0x%" PRIx64
                              ") overlaps segment %u [0x%" PRIx64 ", 0x%" PRIx64 ")",
                              i, (uint64_t)ph->p_paddr, (uint64_t)(ph->p_paddr + ph->p_memsz),
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

    vmm_gpa_t low = UINT64_MAX, high = 0;
    for (unsigned k = 0; k < nsegs; k++) {
        if (segs[k].paddr < low)
            low = segs[k].paddr;
        if (segs[k].paddr + segs[k].memsz > high)
            high = segs[k].paddr + segs[k].memsz;
    }
    plan->phoff = eh.e_phoff;
    plan->phnum = eh.e_phnum;
    plan->entry = entry;
    plan->low = low;
    plan->high = high;
    plan->nsegs = nsegs;
    return 0;
}

int vmm_elf_place(struct vmm_memory *mem, const struct vmm_image *im,
                  const struct vmm_elf_plan *plan, struct vmm_load_result *res)
{
    for (unsigned k = 0; k < plan->nsegs; k++) {
        const struct vmm_elf_segment *s = &plan->segs[k];
        int ret = vmm_image_to_guest(mem, s->paddr, im, s->offset, s->filesz);
        if (ret == 0)
            ret = vmm_guest_zero(mem, s->paddr + s->filesz, s->memsz - s->filesz);
        if (ret < 0 && !im->buf && ret == -EINVAL)
            return refuse(res, ret, "%s: file shrank while being read", im->path);
        if (ret < 0)
            return refuse(res, ret, "segment %u [0x%" PRIx64 ", 0x%" PRIx64 "): write failed: %s",
                          s->phdr_index, s->paddr, s->paddr + s->memsz, vmm_strerror(ret));
    }
    res->entry = plan->entry;
    res->low = plan->low;
    res->high = plan->high;
    res->segments = plan->nsegs;
    vmm_log_debug("elf: loaded %u segment(s) at [0x%" PRIx64 ", 0x%" PRIx64 "), entry 0x%" PRIx64,
                  plan->nsegs, plan->low, plan->high, plan->entry);
    return 0;
}

int vmm_elf_find_note(const struct vmm_image *im, const struct vmm_elf_plan *plan, const char *name,
                      uint32_t type, void *desc, size_t desc_max, uint32_t *desc_len, char *err,
                      size_t n)
{
    /* Notes are small; a PT_NOTE past this is not something to walk. */
    const uint64_t max_note_segment = 1u << 16;
    size_t name_len = strlen(name) + 1;
    Elf64_Phdr phdrs[VMM_ELF_MAX_PHDRS];
    int ret = vmm_image_read(im, plan->phoff, phdrs, (size_t)plan->phnum * sizeof(Elf64_Phdr));
    if (ret < 0)
        return vmm_loader_fail(err, n, "elf", -EINVAL, "cannot read the program headers");

    for (unsigned i = 0; i < plan->phnum; i++) {
        const Elf64_Phdr *ph = &phdrs[i];
        if (ph->p_type != PT_NOTE || ph->p_filesz == 0)
            continue;
        if (ph->p_filesz > max_note_segment)
            return vmm_loader_fail(err, n, "elf", -EINVAL,
                                   "PT_NOTE %u of %" PRIu64 " bytes is larger than %" PRIu64, i,
                                   (uint64_t)ph->p_filesz, max_note_segment);
        unsigned char *notes = malloc(ph->p_filesz);
        if (!notes)
            return vmm_loader_fail(err, n, "elf", -ENOMEM, "out of memory reading notes");
        if (vmm_image_read(im, ph->p_offset, notes, ph->p_filesz) != 0) {
            free(notes);
            return vmm_loader_fail(err, n, "elf", -EINVAL,
                                   "PT_NOTE %u [0x%" PRIx64 ", +0x%" PRIx64
                                   ") lies outside the image",
                                   i, (uint64_t)ph->p_offset, (uint64_t)ph->p_filesz);
        }
        /* Name and descriptor are padded to the segment's alignment (4, or 8
         * for some 64-bit note segments). */
        uint64_t align = ph->p_align == 8 ? 8 : 4;
        uint64_t off = 0, len = ph->p_filesz;
        int found = 0;
        while (len - off >= 12) {
            uint32_t hdr[3];
            memcpy(hdr, notes + off, sizeof(hdr));
            uint64_t namesz = hdr[0], descsz = hdr[1];
            uint64_t name_pad = (namesz + align - 1) & ~(align - 1);
            uint64_t desc_pad = (descsz + align - 1) & ~(align - 1);
            /* At most 2^33 + 12 each: no overflow in 64 bits. */
            if (12 + name_pad + desc_pad > len - off) {
                free(notes);
                return vmm_loader_fail(err, n, "elf", -EINVAL,
                                       "note at offset 0x%" PRIx64
                                       " of PT_NOTE %u runs past its end (name %" PRIu64
                                       ", descriptor %" PRIu64 " bytes)",
                                       off, i, namesz, descsz);
            }
            const unsigned char *nm = notes + off + 12;
            if (hdr[2] == type && namesz == name_len && memcmp(nm, name, name_len) == 0) {
                size_t copy = descsz < desc_max ? (size_t)descsz : desc_max;
                memcpy(desc, nm + name_pad, copy);
                *desc_len = (uint32_t)descsz;
                found = 1;
                break;
            }
            off += 12 + name_pad + desc_pad;
        }
        free(notes);
        if (found)
            return 1;
    }
    return 0;
}

/* vmm_elf_load into a full result, with full options. */
static int elf_load(struct vmm_memory *mem, const void *image, size_t size,
                    const struct vmm_load_options *opts, struct vmm_load_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!mem || (!image && size != 0))
        return refuse(res, -EINVAL, "no guest memory or image given");

    struct vmm_image im = {.buf = image, .fd = -1, .size = size};
    vmm_gpa_t min_addr = opts && opts->min_addr ? opts->min_addr : VMM_LOAD_DEFAULT_MIN_ADDR;
    struct vmm_elf_plan plan;
    int ret = vmm_elf_plan(mem, &im, min_addr, &plan, res);
    if (ret < 0)
        return ret;
    /* Everything checked: only now touch guest memory. */
    return vmm_elf_place(mem, &im, &plan, res);
}

static int elf_load_file(struct vmm_memory *mem, const char *path,
                         const struct vmm_load_options *opts, struct vmm_load_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!mem || !path)
        return refuse(res, -EINVAL, "no guest memory or path given");

    /* An image cannot usefully be much bigger than the memory it lands in;
     * the slack covers headers, symbols and debug sections of small guests. */
    uint64_t limit = vmm_memory_total_size(mem);
    if (__builtin_add_overflow(limit, 1ull << 20, &limit))
        limit = UINT64_MAX;
    struct vmm_image im;
    int ret = vmm_image_open(&im, path, limit, res->error, sizeof(res->error));
    if (ret < 0)
        return ret;

    vmm_gpa_t min_addr = opts && opts->min_addr ? opts->min_addr : VMM_LOAD_DEFAULT_MIN_ADDR;
    struct vmm_elf_plan *plan = malloc(sizeof(*plan));
    if (!plan) {
        ret = refuse(res, -ENOMEM, "%s: out of memory", path);
        goto out;
    }
    ret = vmm_elf_plan(mem, &im, min_addr, plan, res);
    if (ret == 0)
        ret = vmm_elf_place(mem, &im, plan, res);
    free(plan);
out:
    vmm_image_close(&im);
    return ret;
}

/* The growth convention (vmm/abi.h) around both: the options read as a
 * zero-filled copy, the result filled through a full one (on failure too,
 * for its error), both sizes checked before anything is done. */
static int elf_load_public(struct vmm_memory *mem, bool from_file, const char *path,
                           const void *image, size_t size, const struct vmm_load_options *opts,
                           struct vmm_load_result *res)
{
    struct vmm_load_options o = VMM_INIT(struct vmm_load_options);
    struct vmm_load_result full;
    if (!res || !VMM_ABI_OUT_OK(res) || (opts && VMM_ABI_COPY_IN(&o, opts) < 0))
        return -EINVAL;
    int r = from_file ? elf_load_file(mem, path, &o, &full) : elf_load(mem, image, size, &o, &full);
    VMM_ABI_COPY_OUT(res, &full);
    return r;
}

int vmm_elf_load(struct vmm_memory *mem, const void *image, size_t size,
                 const struct vmm_load_options *opts, struct vmm_load_result *res)
{
    return elf_load_public(mem, false, NULL, image, size, opts, res);
}

int vmm_elf_load_file(struct vmm_memory *mem, const char *path, const struct vmm_load_options *opts,
                      struct vmm_load_result *res)
{
    return elf_load_public(mem, true, path, NULL, 0, opts, res);
}
