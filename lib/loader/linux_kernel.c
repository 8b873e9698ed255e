/* SPDX-License-Identifier: Apache-2.0 */
/* Linux kernels: telling bzImage from ELF, and loading either (the bzImage
 * protected-mode kernel at a checked load address; an ELF vmlinux by its
 * physical addresses, with the PVH entry note). */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "linux_internal.h"

/* Where the 64-bit entry sits in the protected-mode kernel. */
#define BZ_ENTRY64_OFFSET 0x200u
/* The fields this loader reads end with init_size (protocol 2.10). */
#define BZ_HDR_NEEDED_END 0x264u
/* The header area of the zero page ends here (0x290: edd_mbr_sig_buffer). */
#define BZ_HDR_AREA_END 0x290u
/* Bytes read from a bzImage before its setup sectors are known. */
#define BZ_PROBE_SIZE 0x290u

enum vmm_kernel_format vmm_kernel_detect(const void *image, size_t size)
{
    const unsigned char *p = image;
    if (!p)
        return VMM_KERNEL_UNKNOWN;
    if (size >= 4 && memcmp(p, ELFMAG, SELFMAG) == 0)
        return VMM_KERNEL_ELF;
    if (size >= 0x206) {
        uint32_t magic;
        memcpy(&magic, p + 0x202, 4);
        if (magic == VMM_LINUX_HDR_MAGIC)
            return VMM_KERNEL_BZIMAGE;
    }
    return VMM_KERNEL_UNKNOWN;
}

bool vmm_kernel_is_linux(const void *image, size_t size)
{
    enum vmm_kernel_format fmt = vmm_kernel_detect(image, size);
    if (fmt == VMM_KERNEL_BZIMAGE)
        return true;
    if (fmt != VMM_KERNEL_ELF || size < sizeof(Elf64_Ehdr))
        return false;
    const unsigned char *p = image;
    Elf64_Ehdr eh;
    memcpy(&eh, p, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr))
        return false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        uint64_t off = eh.e_phoff + (uint64_t)i * sizeof(Elf64_Phdr);
        if (off < eh.e_phoff || off > size || size - off < sizeof(Elf64_Phdr))
            break; /* headers past what the caller read */
        Elf64_Phdr ph;
        memcpy(&ph, p + off, sizeof(ph));
        if (ph.p_type == PT_LOAD && ph.p_vaddr != ph.p_paddr)
            return true;
    }
    return false;
}

static uint64_t align_up(uint64_t v, uint64_t align, bool *overflow)
{
    uint64_t r;
    if (__builtin_add_overflow(v, align - 1, &r)) {
        *overflow = true;
        return 0;
    }
    return r & ~(align - 1);
}

/* Check an explicit kernel range [base, base + span). */
static int check_kernel_range(struct vmm_memory *mem, uint64_t base, uint64_t span,
                              uint64_t min_addr, const struct vmm_range *res, unsigned nres,
                              const char *what, struct vmm_linux_boot *boot)
{
    uint64_t end;
    if (__builtin_add_overflow(base, span, &end))
        return linux_fail(boot, -EINVAL, "%s 0x%" PRIx64 " + 0x%" PRIx64 " wraps the address space",
                          what, base, span);
    if (base < min_addr)
        return linux_fail(boot, -EFAULT,
                          "kernel at %s 0x%" PRIx64
                          " lies below the lowest load address 0x%" PRIx64,
                          what, base, min_addr);
    if (end > LINUX_IDENTITY_MAP_END)
        return linux_fail(boot, -EFAULT,
                          "kernel [0x%" PRIx64 ", 0x%" PRIx64 ") reaches past 4 GiB, beyond the "
                          "boot identity map",
                          base, end);
    if (vmm_memory_check_range(mem, base, span) != 0)
        return linux_fail(boot, -EFAULT,
                          "kernel [0x%" PRIx64 ", 0x%" PRIx64 ") at %s lies outside guest memory",
                          base, end, what);
    int k = linux_find_overlap(base, end, res, nres);
    if (k >= 0)
        return linux_fail(boot, -EINVAL,
                          "kernel [0x%" PRIx64 ", 0x%" PRIx64
                          ") overlaps reserved range [0x%" PRIx64 ", 0x%" PRIx64 ")",
                          base, end, res[k].base, res[k].end);
    return 0;
}

/* Where a read-only region lies in [base, end): the copy would fail half-way. */
static int check_kernel_writable(const struct vmm_memory *mem, uint64_t base, uint64_t end,
                                 struct vmm_linux_boot *boot)
{
    int r = vmm_loader_readonly_overlap(mem, base, end);
    if (r >= 0)
        return linux_fail(boot, -EROFS,
                          "kernel [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps read-only region %d",
                          base, end, r);
    return 0;
}

/* ---- bzImage ---- */

/* What the bzImage header says, once read and checked. */
struct bz_info {
    struct vmm_linux_setup_header hdr;
    uint32_t hdr_len;
    uint16_t version;
    uint64_t setup_size;  /* real-mode setup: skipped */
    uint64_t kernel_size; /* protected-mode kernel: copied */
    uint64_t span;        /* bytes the kernel owns from its load address */
    uint64_t align;
    bool relocatable;
};

/* Read the setup header: magic, boot flag, protocol version and where the
 * header ends (its leading short jump says). */
static int bz_read_header(const struct vmm_image *im, struct bz_info *bz,
                          struct vmm_linux_boot *boot)
{
    uint64_t size = im->size;
    unsigned char head[BZ_PROBE_SIZE] = {0};
    size_t head_len = size < sizeof(head) ? (size_t)size : sizeof(head);
    if (vmm_image_read(im, 0, head, head_len) != 0)
        return linux_fail(boot, -EINVAL, "cannot read the bzImage header");
    if (head_len < 0x206 || memcmp(head + 0x202, "HdrS", 4) != 0)
        return linux_fail(boot, -EINVAL, "not a bzImage: no \"HdrS\" magic at 0x202");

    uint16_t boot_flag, version;
    memcpy(&boot_flag, head + 0x1fe, 2);
    memcpy(&version, head + 0x206, 2);
    if (boot_flag != VMM_LINUX_BOOT_FLAG)
        return linux_fail(boot, -EINVAL, "bzImage boot_flag is 0x%04x, not 0xaa55", boot_flag);
    if (version < 0x0206)
        return linux_fail(boot, -EINVAL,
                          "boot protocol %u.%02u is too old (2.06 or later is needed)",
                          version >> 8, version & 0xff);

    /* The header ends where its leading jump (a short forward jmp) lands. */
    if (head[0x200] != 0xeb || head[0x201] >= 0x80)
        return linux_fail(boot, -EINVAL,
                          "no short forward jump at 0x200 (0x%02x 0x%02x): the header end is "
                          "unknown",
                          head[0x200], head[0x201]);
    uint32_t hdr_end = 0x202u + head[0x201];
    if (hdr_end > size)
        return linux_fail(boot, -EINVAL,
                          "setup header ends at 0x%x, past the %" PRIu64 "-byte image", hdr_end,
                          size);
    if (hdr_end < BZ_HDR_NEEDED_END)
        return linux_fail(boot, -EINVAL,
                          "setup header ends at 0x%x, before the protocol %u.%02u fields (to 0x%x)",
                          hdr_end, version >> 8, version & 0xff, BZ_HDR_NEEDED_END);
    if (hdr_end > BZ_HDR_AREA_END)
        hdr_end = BZ_HDR_AREA_END;

    memset(&bz->hdr, 0, sizeof(bz->hdr));
    bz->hdr_len = hdr_end - VMM_LINUX_HDR_OFFSET;
    memcpy(&bz->hdr, head + VMM_LINUX_HDR_OFFSET,
           bz->hdr_len < sizeof(bz->hdr) ? bz->hdr_len : sizeof(bz->hdr));
    bz->version = version;
    return 0;
}

/* Check what the header says about the image against the image: setup and
 * kernel sizes, the 64-bit entry, payload, command-line limit, alignment. */
static int bz_check_layout(const struct vmm_image *im, struct bz_info *bz,
                           struct vmm_linux_boot *boot)
{
    const struct vmm_linux_setup_header *hdr = &bz->hdr;
    uint64_t size = im->size;
    unsigned setup_sects = hdr->setup_sects ? hdr->setup_sects : 4;
    uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
    if (setup_size >= size)
        return linux_fail(boot, -EINVAL,
                          "setup_sects %u puts the kernel at 0x%" PRIx64
                          ", past the end of the %" PRIu64 "-byte image",
                          hdr->setup_sects, setup_size, size);
    uint64_t kernel_size = size - setup_size;

    if (!(hdr->loadflags & VMM_LINUX_LOADED_HIGH))
        return linux_fail(boot, -EINVAL, "kernel is not loaded high (a zImage): not supported");
    if (bz->version < 0x020c || !(hdr->xloadflags & VMM_LINUX_XLF_KERNEL_64))
        return linux_fail(boot, -EINVAL,
                          "kernel has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)");
    if (kernel_size <= BZ_ENTRY64_OFFSET)
        return linux_fail(boot, -EINVAL,
                          "protected-mode kernel of %" PRIu64
                          " bytes is too short for the 64-bit entry at 0x200",
                          kernel_size);

    uint64_t sys_bytes = (uint64_t)hdr->syssize * 16;
    if (hdr->syssize == 0 || sys_bytes > kernel_size)
        return linux_fail(boot, -EINVAL,
                          "syssize says 0x%" PRIx64 " bytes of kernel, the image has 0x%" PRIx64
                          " after the setup",
                          sys_bytes, kernel_size);
    uint64_t payload_end = (uint64_t)hdr->payload_offset + hdr->payload_length;
    if (payload_end > kernel_size)
        return linux_fail(boot, -EINVAL,
                          "payload [0x%x, +0x%x) lies outside the 0x%" PRIx64
                          "-byte protected-mode kernel",
                          hdr->payload_offset, hdr->payload_length, kernel_size);

    /* 2.06+ states its command-line limit; 0 would take nothing at all. */
    if (hdr->cmdline_size == 0)
        return linux_fail(boot, -EINVAL, "cmdline_size is 0 (protocol 2.06+ must state it)");

    bz->relocatable = hdr->relocatable_kernel != 0;
    uint64_t align = hdr->kernel_alignment;
    if (bz->relocatable && (align == 0 || (align & (align - 1)) != 0))
        return linux_fail(boot, -EINVAL, "kernel_alignment 0x%" PRIx64 " is not a power of two",
                          align);
    bz->align = align < 0x1000 ? 0x1000 : align;

    /* The kernel decompresses in place: it owns init_size bytes from its load
     * address (and at least the image itself). */
    uint64_t span = hdr->init_size > kernel_size ? hdr->init_size : kernel_size;
    bool ovf = false;
    bz->span = align_up(span, 0x1000, &ovf);
    if (ovf)
        return linux_fail(boot, -EINVAL, "kernel size 0x%" PRIx64 " is too large", span);
    bz->setup_size = setup_size;
    bz->kernel_size = kernel_size;
    return 0;
}

/* Check the load address the caller asked for; below pref_address a
 * relocatable kernel moves itself up to it and decompresses there, so it owns
 * [load, pref_address + init_size). */
static int bz_place_at(struct vmm_memory *mem, struct bz_info *bz, uint64_t load,
                       vmm_gpa_t min_addr, const struct vmm_range *res, unsigned nres,
                       struct vmm_linux_boot *boot)
{
    uint64_t pref = bz->hdr.pref_address;
    if (!bz->relocatable && load != pref)
        return linux_fail(boot, -EINVAL,
                          "kernel is not relocatable: it must go at 0x%" PRIx64 ", not 0x%" PRIx64,
                          pref, load);
    if (bz->relocatable && (load & (bz->align - 1)) != 0)
        return linux_fail(boot, -EINVAL,
                          "load address 0x%" PRIx64
                          " is not aligned to kernel_alignment 0x%" PRIx64,
                          load, bz->align);
    if (bz->relocatable && load < pref && __builtin_add_overflow(bz->span, pref - load, &bz->span))
        return linux_fail(boot, -EINVAL,
                          "pref_address 0x%" PRIx64 " + init_size wraps the address space", pref);
    return check_kernel_range(mem, load, bz->span, min_addr, res, nres, "load address", boot);
}

/* Find room for a relocatable kernel: below pref_address it would move itself
 * up to it before decompressing, so search from there up. */
static int bz_place_search(struct vmm_memory *mem, const struct bz_info *bz, vmm_gpa_t min_addr,
                           const struct vmm_range *res, unsigned nres, uint64_t *load,
                           struct vmm_linux_boot *boot)
{
    bool ovf = false;
    uint64_t lo = bz->hdr.pref_address > min_addr ? bz->hdr.pref_address : min_addr;
    lo = align_up(lo, bz->align, &ovf);
    struct linux_place req = {.size = bz->span,
                              .align = bz->align,
                              .lo = lo,
                              .hi = LINUX_IDENTITY_MAP_END,
                              .avoid = res,
                              .navoid = nres};
    int r = ovf ? -ENOSPC : linux_place(mem, &req, load);
    if (r == -ENOMEM)
        return linux_fail(boot, r, "out of memory");
    if (r < 0)
        return linux_fail(boot, -ENOSPC,
                          "no room for the kernel: 0x%" PRIx64
                          " bytes (init_size) of RAM aligned to 0x%" PRIx64 " from 0x%" PRIx64
                          " below 4 GiB",
                          bz->span, bz->align, lo);
    return 0;
}

/* Choose the load address: the caller's, pref_address for a fixed kernel, or
 * the first free aligned range. */
static int bz_place(struct vmm_memory *mem, const struct vmm_kernel_options *opts,
                    struct bz_info *bz, uint64_t *load, struct vmm_linux_boot *boot)
{
    vmm_gpa_t min_addr = opts && opts->min_addr ? opts->min_addr : VMM_LINUX_MIN_ADDR;
    struct vmm_range res[VMM_MACHINE_MAX_RESERVED];
    int nres = vmm_loader_machine_reserved(opts ? opts->machine : NULL, res);
    if (nres < 0)
        return linux_fail(boot, -EINVAL, "machine has a malformed reserved range");

    if (opts && opts->load_addr) {
        *load = opts->load_addr;
        return bz_place_at(mem, bz, *load, min_addr, res, (unsigned)nres, boot);
    }
    if (!bz->relocatable) {
        *load = bz->hdr.pref_address;
        return check_kernel_range(mem, *load, bz->span, min_addr, res, (unsigned)nres,
                                  "pref_address", boot);
    }
    return bz_place_search(mem, bz, min_addr, res, (unsigned)nres, load, boot);
}

/* Record where the kernel went and what its header allows. */
static void bz_fill_boot(const struct bz_info *bz, uint64_t load, struct vmm_linux_boot *boot)
{
    boot->format = VMM_KERNEL_BZIMAGE;
    boot->protocol = VMM_LINUX_BOOT_64;
    boot->entry = load + BZ_ENTRY64_OFFSET;
    boot->kernel_low = load;
    boot->kernel_high = load + bz->span;
    boot->boot_version = bz->version;
    boot->hdr = bz->hdr;
    boot->hdr_len = bz->hdr_len;
    /* 0 would leave no room at all; the protocol's old default is the sane
     * reading. */
    boot->initrd_addr_max = bz->hdr.initrd_addr_max ? bz->hdr.initrd_addr_max : 0x37ffffffu;
    boot->cmdline_max = bz->hdr.cmdline_size < VMM_X86_CMDLINE_MAX - 1 ? bz->hdr.cmdline_size
                                                                       : VMM_X86_CMDLINE_MAX - 1;
}

static int load_bzimage(struct vmm_memory *mem, const struct vmm_image *im,
                        const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    struct bz_info bz;
    uint64_t load;
    int r = bz_read_header(im, &bz, boot);
    if (r == 0)
        r = bz_check_layout(im, &bz, boot);
    if (r == 0 && opts && opts->extract_payload) {
        r = linux_load_payload(mem, im, bz.setup_size, &bz.hdr, opts, boot);
        if (r != -ENOTSUP)
            return r;
        vmm_log_info("linux: %s: booting the bzImage as it is", boot->error);
        boot->error[0] = '\0';
        r = 0;
    }
    if (r == 0)
        r = bz_place(mem, opts, &bz, &load, boot);
    if (r == 0)
        r = check_kernel_writable(mem, load, load + bz.span, boot);
    if (r < 0)
        return r;

    r = vmm_image_to_guest(mem, load, im, bz.setup_size, bz.kernel_size);
    if (r < 0)
        return linux_fail(boot, r, "copying the kernel to 0x%" PRIx64 " failed: %s", load,
                          r == -EINVAL && !im->buf ? "the file shrank" : vmm_strerror(r));

    bz_fill_boot(&bz, load, boot);
    vmm_log_debug("linux: bzImage protocol %u.%02u at [0x%" PRIx64 ", 0x%" PRIx64
                  "), entry 0x%" PRIx64,
                  bz.version >> 8, bz.version & 0xff, load, load + bz.span, boot->entry);
    return 0;
}

/* ---- ELF vmlinux ---- */

int linux_load_vmlinux(struct vmm_memory *mem, const struct vmm_image *im,
                       const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    vmm_gpa_t min_addr = opts && opts->min_addr ? opts->min_addr : VMM_LINUX_MIN_ADDR;
    struct vmm_elf_plan *plan = malloc(sizeof(*plan));
    struct vmm_load_result *res = malloc(sizeof(*res));
    int r;
    if (!plan || !res) {
        r = linux_fail(boot, -ENOMEM, "out of memory");
        goto out;
    }
    memset(res, 0, sizeof(*res));
    r = vmm_elf_plan(mem, im, min_addr, plan, res);
    if (r < 0) {
        r = linux_fail(boot, r, "%s", res->error);
        goto out;
    }

    struct vmm_range rsv[VMM_MACHINE_MAX_RESERVED];
    int nres = vmm_loader_machine_reserved(opts ? opts->machine : NULL, rsv);
    if (nres < 0) {
        r = linux_fail(boot, -EINVAL, "machine has a malformed reserved range");
        goto out;
    }
    for (unsigned k = 0; k < plan->nsegs; k++) {
        const struct vmm_elf_segment *s = &plan->segs[k];
        uint64_t end = s->paddr + s->memsz; /* checked by the plan */
        if (end > LINUX_IDENTITY_MAP_END) {
            r = linux_fail(boot, -EFAULT,
                           "segment %u [0x%" PRIx64 ", 0x%" PRIx64
                           ") reaches past 4 GiB, beyond the boot identity map",
                           s->phdr_index, s->paddr, end);
            goto out;
        }
        int o = linux_find_overlap(s->paddr, end, rsv, (unsigned)nres);
        if (o >= 0) {
            r = linux_fail(boot, -EINVAL,
                           "segment %u [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps reserved range "
                           "[0x%" PRIx64 ", 0x%" PRIx64 ")",
                           s->phdr_index, s->paddr, end, rsv[o].base, rsv[o].end);
            goto out;
        }
    }

    uint32_t pvh_entry = 0;
    if (!(opts && opts->no_pvh)) {
        unsigned char desc[8] = {0};
        uint32_t desc_len = 0;
        int found = vmm_elf_find_note(im, plan, "Xen", VMM_XEN_ELFNOTE_PHYS32_ENTRY, desc,
                                      sizeof(desc), &desc_len, boot->error, sizeof(boot->error));
        if (found < 0) {
            r = found;
            goto out;
        }
        if (found) {
            uint64_t addr;
            if (desc_len == 4) {
                uint32_t a32;
                memcpy(&a32, desc, 4);
                addr = a32;
            } else if (desc_len == 8) {
                memcpy(&addr, desc, 8);
            } else {
                r = linux_fail(boot, -EINVAL, "PVH entry note has a %u-byte address (want 4 or 8)",
                               desc_len);
                goto out;
            }
            bool inside = false;
            for (unsigned k = 0; k < plan->nsegs && !inside; k++) {
                const struct vmm_elf_segment *s = &plan->segs[k];
                inside = (s->flags & PF_X) && addr >= s->paddr && addr - s->paddr < s->memsz;
            }
            if (addr == 0 || addr >= LINUX_IDENTITY_MAP_END || !inside) {
                r = linux_fail(boot, -EINVAL,
                               "PVH entry 0x%" PRIx64 " is outside every executable segment", addr);
                goto out;
            }
            pvh_entry = (uint32_t)addr;
        }
    }

    r = vmm_elf_place(mem, im, plan, res);
    if (r < 0) {
        r = linux_fail(boot, r, "%s", res->error);
        goto out;
    }
    boot->format = VMM_KERNEL_ELF;
    boot->protocol = pvh_entry ? VMM_LINUX_BOOT_PVH : VMM_LINUX_BOOT_64;
    boot->entry = plan->entry;
    boot->pvh_entry = pvh_entry;
    boot->kernel_low = plan->low;
    boot->kernel_high = plan->high;
    boot->initrd_addr_max = 0xffffffffu;
    boot->cmdline_max = VMM_LINUX_ELF_CMDLINE_MAX;
    vmm_log_debug("linux: ELF kernel at [0x%" PRIx64 ", 0x%" PRIx64 "), entry 0x%" PRIx64
                  ", PVH entry 0x%x (%s)",
                  plan->low, plan->high, plan->entry, pvh_entry,
                  pvh_entry ? "used" : "none or not used");
out:
    free(plan);
    free(res);
    return r;
}

static int load_image(struct vmm_memory *mem, const struct vmm_image *im,
                      const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    unsigned char head[0x206];
    size_t n = im->size < sizeof(head) ? (size_t)im->size : sizeof(head);
    if (vmm_image_read(im, 0, head, n) != 0)
        return linux_fail(boot, -EINVAL, "cannot read the kernel header");
    switch (vmm_kernel_detect(head, n)) {
    case VMM_KERNEL_ELF:
        return linux_load_vmlinux(mem, im, opts, boot);
    case VMM_KERNEL_BZIMAGE:
        return load_bzimage(mem, im, opts, boot);
    default:
        return linux_fail(boot, -EINVAL,
                          "not a kernel: neither an ELF nor a bzImage (%" PRIu64 " bytes)",
                          im->size);
    }
}

static int load_kernel(struct vmm_memory *mem, const void *image, size_t size,
                       const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    memset(boot, 0, sizeof(*boot));
    if (!mem || !image || size == 0)
        return linux_fail(boot, -EINVAL, "no guest memory or kernel image given");
    struct vmm_image im = {.buf = image, .fd = -1, .size = size};
    return load_image(mem, &im, opts, boot);
}

static int load_kernel_file(struct vmm_memory *mem, const char *path,
                            const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    memset(boot, 0, sizeof(*boot));
    if (!mem || !path)
        return linux_fail(boot, -EINVAL, "no guest memory or kernel path given");
    struct vmm_image im;
    int r = vmm_image_open(&im, path, 0, boot->error, sizeof(boot->error));
    if (r < 0)
        return r;
    /* A vmlinux may carry far more (symbols, debug info) than it loads; a
     * bzImage is all loaded, so it cannot exceed guest memory. */
    unsigned char head[0x206];
    size_t n = im.size < sizeof(head) ? (size_t)im.size : sizeof(head);
    if (vmm_image_read(&im, 0, head, n) == 0 && vmm_kernel_detect(head, n) == VMM_KERNEL_BZIMAGE &&
        im.size > vmm_memory_total_size(mem)) {
        r = linux_fail(boot, -EFBIG, "%s: %" PRIu64 " bytes is larger than guest memory", path,
                       im.size);
    } else {
        r = load_image(mem, &im, opts, boot);
    }
    vmm_image_close(&im);
    return r;
}

int vmm_linux_load_kernel(struct vmm_memory *mem, const void *image, size_t size,
                          const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_kernel_options o;
    struct vmm_machine m;
    if (linux_boot_in(&b, boot) < 0 || linux_kopts_in(opts, &o, &m) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, load_kernel(mem, image, size, &o, &b));
}

int vmm_linux_load_kernel_file(struct vmm_memory *mem, const char *path,
                               const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_kernel_options o;
    struct vmm_machine m;
    if (linux_boot_in(&b, boot) < 0 || linux_kopts_in(opts, &o, &m) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, load_kernel_file(mem, path, &o, &b));
}
