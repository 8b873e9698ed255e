/* SPDX-License-Identifier: Apache-2.0 */
/* Synthetic Linux kernels for the loader tests: a bzImage with a real-looking
 * setup header, and an ELF "vmlinux" linked high with an optional PVH note. */
#ifndef VMM_TESTS_LINUX_IMAGES_H
#define VMM_TESTS_LINUX_IMAGES_H

#include <elf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/linux.h>

#define BZ_SETUP_SECTS 1
#define BZ_SETUP_SIZE  ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_KSIZE       0x3000u   /* protected-mode kernel bytes */
#define BZ_INIT_SIZE   0x200000u /* 2 MiB */
#define BZ_PREF        0x1000000ull
#define BZ_ALIGN       0x200000u

struct test_image {
    unsigned char *buf;
    size_t size;
};

/* Byte j of the protected-mode kernel / of an initrd. */
static inline unsigned char bz_byte(uint64_t j)
{
    return (unsigned char)(j * 13 + 5);
}

static inline unsigned char initrd_byte(uint64_t j)
{
    return (unsigned char)(j * 31 + 7);
}

static inline struct vmm_linux_setup_header *bz_hdr(struct test_image *im)
{
    return (struct vmm_linux_setup_header *)(im->buf + VMM_LINUX_HDR_OFFSET);
}

/* A relocatable protocol-2.15 bzImage with a 64-bit entry. */
static inline struct test_image build_bzimage(void)
{
    struct test_image im = {.size = BZ_SETUP_SIZE + BZ_KSIZE};
    im.buf = calloc(1, im.size);
    if (!im.buf)
        abort();
    struct vmm_linux_setup_header *h = bz_hdr(&im);
    h->setup_sects = BZ_SETUP_SECTS;
    h->syssize = (BZ_KSIZE + 15) / 16;
    h->boot_flag = VMM_LINUX_BOOT_FLAG;
    h->jump = 0x6aeb; /* jmp short to 0x26c */
    h->header = VMM_LINUX_HDR_MAGIC;
    h->version = 0x020f;
    h->loadflags = VMM_LINUX_LOADED_HIGH;
    h->code32_start = 0x100000;
    h->initrd_addr_max = 0x7fffffff;
    h->kernel_alignment = BZ_ALIGN;
    h->relocatable_kernel = 1;
    h->min_alignment = 21;
    h->xloadflags = VMM_LINUX_XLF_KERNEL_64 | VMM_LINUX_XLF_CAN_BE_LOADED_ABOVE_4G;
    h->cmdline_size = 0x7ff;
    h->payload_offset = 0x400;
    h->payload_length = 0x1000;
    h->pref_address = BZ_PREF;
    h->init_size = BZ_INIT_SIZE;
    for (uint64_t j = 0; j < BZ_KSIZE; j++)
        im.buf[BZ_SETUP_SIZE + j] = bz_byte(j);
    return im;
}

/* vmlinux-like ELF: text at VL_PHYS (vaddr VL_VIRT), data after it, and an
 * optional PVH note (desc_len 4 or 8; 0: none) naming VL_PVH_ENTRY. */
#define VL_PHYS      0x1000000ull
#define VL_VIRT      0xffffffff81000000ull
#define VL_TEXT      0x2000u
#define VL_DATA_PHYS 0x1200000ull
#define VL_DATA_FILE 0x800u
#define VL_DATA_MEM  0x4000u
#define VL_PVH_ENTRY (VL_PHYS + 0x850)

struct vl_note {
    uint32_t namesz, descsz, type;
    char name[4];
    uint32_t desc[2];
};

static inline unsigned char vl_byte(unsigned seg, uint64_t j)
{
    return (unsigned char)(j * 7 + 0x11 * (seg + 1));
}

static inline struct test_image build_vmlinux(unsigned pvh_desc_len, uint64_t entry)
{
    const unsigned nph = 3;
    size_t off = sizeof(Elf64_Ehdr) + nph * sizeof(Elf64_Phdr);
    size_t note_off = off;
    size_t note_len = pvh_desc_len ? 12 + 4 + (pvh_desc_len == 8 ? 8 : 4) : 0;
    size_t text_off = (note_off + note_len + 15) & ~(size_t)15;
    size_t data_off = text_off + VL_TEXT;
    struct test_image im = {.size = data_off + VL_DATA_FILE};
    im.buf = calloc(1, im.size);
    if (!im.buf)
        abort();
    Elf64_Ehdr *eh = (Elf64_Ehdr *)im.buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = entry;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = (Elf64_Half)nph;
    Elf64_Phdr *ph = (Elf64_Phdr *)(im.buf + sizeof(Elf64_Ehdr));
    ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
                         .p_flags = PF_R | PF_X,
                         .p_offset = text_off,
                         .p_vaddr = VL_VIRT,
                         .p_paddr = VL_PHYS,
                         .p_filesz = VL_TEXT,
                         .p_memsz = VL_TEXT,
                         .p_align = 0x1000};
    ph[1] = (Elf64_Phdr){.p_type = PT_LOAD,
                         .p_flags = PF_R | PF_W,
                         .p_offset = data_off,
                         .p_vaddr = VL_VIRT + (VL_DATA_PHYS - VL_PHYS),
                         .p_paddr = VL_DATA_PHYS,
                         .p_filesz = VL_DATA_FILE,
                         .p_memsz = VL_DATA_MEM,
                         .p_align = 0x1000};
    ph[2] = (Elf64_Phdr){.p_type = pvh_desc_len ? PT_NOTE : PT_NULL,
                         .p_flags = PF_R,
                         .p_offset = note_off,
                         .p_filesz = note_len,
                         .p_memsz = note_len,
                         .p_align = 4};
    if (pvh_desc_len) {
        struct vl_note n = {.namesz = 4,
                            .descsz = pvh_desc_len,
                            .type = VMM_XEN_ELFNOTE_PHYS32_ENTRY,
                            .name = "Xen",
                            .desc = {(uint32_t)VL_PVH_ENTRY, 0}};
        memcpy(im.buf + note_off, &n, note_len);
    }
    for (uint64_t j = 0; j < VL_TEXT; j++)
        im.buf[text_off + j] = vl_byte(0, j);
    for (uint64_t j = 0; j < VL_DATA_FILE; j++)
        im.buf[data_off + j] = vl_byte(1, j);
    return im;
}

static inline Elf64_Phdr *vl_phdr(struct test_image *im, unsigned i)
{
    return (Elf64_Phdr *)(im->buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

/* The PVH note's header of a build_vmlinux image with a note. */
static inline struct vl_note *vl_note(struct test_image *im)
{
    return (struct vl_note *)(im->buf + vl_phdr(im, 2)->p_offset);
}

#endif /* VMM_TESTS_LINUX_IMAGES_H */
