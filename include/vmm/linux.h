/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Linux boot protocols for x86-64 guests, as separate steps an application
 * can use one without the others:
 *
 *   1. vmm_linux_load_kernel[_file]    a bzImage, or an ELF vmlinux (64-bit
 *                                      entry, or the PVH 32-bit entry when the
 *                                      ELF carries XEN_ELFNOTE_PHYS32_ENTRY)
 *   2. vmm_linux_load_initrd[_file]    the initrd, page aligned, as high as the
 *                                      kernel allows
 *   3. vmm_linux_set_cmdline           the command line at VMM_X86_CMDLINE
 *   4. vmm_linux_add_setup_data        setup_data blobs (a device tree, ...)
 *   5. vmm_linux_write_params          the zero page (struct boot_params, with
 *                                      the e820 map) or the PVH hvm_start_info
 *   6. vmm_linux_get_entry             the entry description: mode, entry
 *                                      address, zero page or hvm_start_info
 *
 * vmm_linux_boot_setup does 1-5 in one call. Each step reads what the earlier
 * ones recorded in a struct vmm_linux_boot and adds its own part; an
 * application that does a step itself fills those fields instead.
 *
 * The steps write guest memory only; no vCPU is touched. The application
 * puts its boot vCPU at the entry with vmm_vcpu_set_linux_entry (vcpu.h) and
 * gives every other vCPU vmm_vcpu_set_linux_ap_state:
 *
 *     struct vmm_x86_linux_entry entry = VMM_INIT(struct vmm_x86_linux_entry);
 *     if ((r = vmm_linux_boot_setup(mem, &cfg, &boot)) < 0 ||
 *         (r = vmm_linux_get_entry(&boot, &entry)) < 0 ||
 *         (r = vmm_vcpu_set_linux_entry(vcpu0, &entry)) < 0)
 *         ...
 *
 * Where things go (machine.h): zero page or hvm_start_info at 0x10000, the
 * PVH memory map at 0x11000 and module list at VMM_LINUX_PVH_MODLIST, the
 * command line at 0x20000, setup_data in [0x30000, 0x9fc00), the kernel and
 * initrd from 1 MiB up. The memory map the guest gets is built from the
 * vmm_memory regions and struct vmm_machine (vmm_e820_build).
 *
 * Every image is hostile input, as in loader.h: headers are checked against
 * the image with overflow checks before anything is written, nothing is
 * written outside guest memory, and a refusal leaves a one-line reason in
 * boot->error. Errors: -EINVAL malformed image or argument, -EFAULT an
 * address outside guest memory (or below the lowest address allowed),
 * -ENOSPC no room (RAM, command line, setup_data area, memory map),
 * -EROFS a read-only region in the way, -EFBIG a file larger than guest
 * memory, -ENOMEM, or the -errno of open/read for files.
 *
 * Thread-safety: none of these lock anything; call them while building the
 * VM, before its vCPUs run.
 */
#ifndef VMM_LINUX_H
#define VMM_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/machine.h>
#include <vmm/memory.h>
#include <vmm/vcpu.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the kernel's structures (Documentation/arch/x86/boot.rst, zero-page.rst;
 * xen/include/public/arch-x86/hvm/start_info.h), little-endian, packed ---- */

/* e820 / PVH memory map entry types. */
#define VMM_E820_RAM      1
#define VMM_E820_RESERVED 2
#define VMM_E820_ACPI     3
#define VMM_E820_NVS      4
#define VMM_E820_UNUSABLE 5

/* Entries the zero page holds (E820_MAX_ENTRIES_ZEROPAGE). */
#define VMM_E820_MAX 128

struct vmm_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* VMM_E820_* */
} __attribute__((packed));

/* The setup header at offset 0x1f1 of a bzImage and of the zero page. */
struct vmm_linux_setup_header {
    uint8_t setup_sects;            /* 0x1f1: 512-byte setup sectors (0 means 4) */
    uint16_t root_flags;            /* 0x1f2 */
    uint32_t syssize;               /* 0x1f4: protected-mode code size in 16-byte units */
    uint16_t ram_size;              /* 0x1f8 */
    uint16_t vid_mode;              /* 0x1fa */
    uint16_t root_dev;              /* 0x1fc */
    uint16_t boot_flag;             /* 0x1fe: 0xaa55 */
    uint16_t jump;                  /* 0x200: jmp short; its offset byte ends the header */
    uint32_t header;                /* 0x202: "HdrS" */
    uint16_t version;               /* 0x206: boot protocol, 0x020f = 2.15 */
    uint32_t realmode_swtch;        /* 0x208 */
    uint16_t start_sys_seg;         /* 0x20c */
    uint16_t kernel_version;        /* 0x20e */
    uint8_t type_of_loader;         /* 0x210 */
    uint8_t loadflags;              /* 0x211: VMM_LINUX_LOADED_HIGH, ... */
    uint16_t setup_move_size;       /* 0x212 */
    uint32_t code32_start;          /* 0x214 */
    uint32_t ramdisk_image;         /* 0x218 */
    uint32_t ramdisk_size;          /* 0x21c */
    uint32_t bootsect_kludge;       /* 0x220 */
    uint16_t heap_end_ptr;          /* 0x224 */
    uint8_t ext_loader_ver;         /* 0x226 */
    uint8_t ext_loader_type;        /* 0x227 */
    uint32_t cmd_line_ptr;          /* 0x228 */
    uint32_t initrd_addr_max;       /* 0x22c: highest address an initrd byte may have */
    uint32_t kernel_alignment;      /* 0x230 */
    uint8_t relocatable_kernel;     /* 0x234 */
    uint8_t min_alignment;          /* 0x235: log2 */
    uint16_t xloadflags;            /* 0x236: VMM_LINUX_XLF_* */
    uint32_t cmdline_size;          /* 0x238: longest command line, without the NUL */
    uint32_t hardware_subarch;      /* 0x23c */
    uint64_t hardware_subarch_data; /* 0x240 */
    uint32_t payload_offset;        /* 0x248: compressed kernel, from the protected-mode code */
    uint32_t payload_length;        /* 0x24c */
    uint64_t setup_data;            /* 0x250: first struct vmm_setup_data */
    uint64_t pref_address;          /* 0x258 */
    uint32_t init_size;             /* 0x260: memory the kernel needs from its load address */
    uint32_t handover_offset;       /* 0x264 */
    uint32_t kernel_info_offset;    /* 0x268 */
} __attribute__((packed));

#define VMM_LINUX_HDR_OFFSET 0x1f1u
#define VMM_LINUX_HDR_MAGIC  0x53726448u /* "HdrS" */
#define VMM_LINUX_BOOT_FLAG  0xaa55u

/* loadflags */
#define VMM_LINUX_LOADED_HIGH   0x01u
#define VMM_LINUX_KASLR_FLAG    0x02u
#define VMM_LINUX_QUIET_FLAG    0x20u
#define VMM_LINUX_KEEP_SEGMENTS 0x40u
#define VMM_LINUX_CAN_USE_HEAP  0x80u

/* xloadflags */
#define VMM_LINUX_XLF_KERNEL_64              0x01u
#define VMM_LINUX_XLF_CAN_BE_LOADED_ABOVE_4G 0x02u

/* The zero page: struct boot_params, 4 KiB. */
struct vmm_linux_boot_params {
    uint8_t screen_info[0x40];                      /* 0x000 */
    uint8_t apm_bios_info[0x14];                    /* 0x040 */
    uint8_t _pad2[4];                               /* 0x054 */
    uint64_t tboot_addr;                            /* 0x058 */
    uint8_t ist_info[0x10];                         /* 0x060 */
    uint64_t acpi_rsdp_addr;                        /* 0x070: protocol 2.14+ */
    uint8_t _pad3[8];                               /* 0x078 */
    uint8_t hd0_info[16];                           /* 0x080 */
    uint8_t hd1_info[16];                           /* 0x090 */
    uint8_t sys_desc_table[0x10];                   /* 0x0a0 */
    uint8_t olpc_ofw_header[0x10];                  /* 0x0b0 */
    uint32_t ext_ramdisk_image;                     /* 0x0c0: high 32 bits */
    uint32_t ext_ramdisk_size;                      /* 0x0c4 */
    uint32_t ext_cmd_line_ptr;                      /* 0x0c8 */
    uint8_t _pad4[112];                             /* 0x0cc */
    uint32_t cc_blob_address;                       /* 0x13c */
    uint8_t edid_info[0x80];                        /* 0x140 */
    uint8_t efi_info[0x20];                         /* 0x1c0 */
    uint32_t alt_mem_k;                             /* 0x1e0 */
    uint32_t scratch;                               /* 0x1e4 */
    uint8_t e820_entries;                           /* 0x1e8 */
    uint8_t eddbuf_entries;                         /* 0x1e9 */
    uint8_t edd_mbr_sig_buf_entries;                /* 0x1ea */
    uint8_t kbd_status;                             /* 0x1eb */
    uint8_t secure_boot;                            /* 0x1ec */
    uint8_t _pad5[2];                               /* 0x1ed */
    uint8_t sentinel;                               /* 0x1ef: must stay 0 */
    uint8_t _pad6[1];                               /* 0x1f0 */
    struct vmm_linux_setup_header hdr;              /* 0x1f1 */
    uint8_t _pad7[0x290 - 0x26c];                   /* 0x26c */
    uint32_t edd_mbr_sig_buffer[16];                /* 0x290 */
    struct vmm_e820_entry e820_table[VMM_E820_MAX]; /* 0x2d0 */
    uint8_t _pad8[48];                              /* 0xcd0 */
    uint8_t eddbuf[0x1ec];                          /* 0xd00 */
    uint8_t _pad9[276];                             /* 0xeec */
} __attribute__((packed));

/* setup_data: a singly linked list of blobs, linked from hdr.setup_data. */
struct vmm_setup_data {
    uint64_t next; /* guest-physical address of the next one, 0 at the end */
    uint32_t type; /* VMM_SETUP_* */
    uint32_t len;  /* bytes of data that follow this header */
} __attribute__((packed));

#define VMM_SETUP_E820_EXT 1
#define VMM_SETUP_DTB      2
#define VMM_SETUP_PCI      3
#define VMM_SETUP_RNG_SEED 9

/* PVH: hvm_start_info version 1, handed over in EBX. */
#define VMM_HVM_START_MAGIC 0x336ec578u

struct vmm_hvm_start_info {
    uint32_t magic;          /* 0x00: VMM_HVM_START_MAGIC */
    uint32_t version;        /* 0x04: 1 */
    uint32_t flags;          /* 0x08 */
    uint32_t nr_modules;     /* 0x0c */
    uint64_t modlist_paddr;  /* 0x10: struct vmm_hvm_modlist_entry[nr_modules] */
    uint64_t cmdline_paddr;  /* 0x18 */
    uint64_t rsdp_paddr;     /* 0x20 */
    uint64_t memmap_paddr;   /* 0x28: struct vmm_hvm_memmap_entry[memmap_entries] */
    uint32_t memmap_entries; /* 0x30 */
    uint32_t reserved;       /* 0x34 */
} __attribute__((packed));

struct vmm_hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
} __attribute__((packed));

struct vmm_hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* VMM_E820_* */
    uint32_t reserved;
} __attribute__((packed));

/* ELF note that names the PVH 32-bit entry: type 18 in a PT_NOTE, name "Xen". */
#define VMM_XEN_ELFNOTE_PHYS32_ENTRY 18

/* The PVH module list goes after the largest memory map. */
#define VMM_LINUX_PVH_MODLIST                                                                      \
    (VMM_X86_PVH_MEMMAP + VMM_E820_MAX * sizeof(struct vmm_hvm_memmap_entry))

/* The lowest address a kernel or initrd is put at by default. */
#define VMM_LINUX_MIN_ADDR VMM_X86_HIGH_MEMORY

/* The longest command line given to an ELF kernel, which has no header to
 * state its limit: x86 COMMAND_LINE_SIZE is 2048 bytes with the NUL. */
#define VMM_LINUX_ELF_CMDLINE_MAX 2047u

/* ---- the steps ---- */

enum vmm_kernel_format {
    VMM_KERNEL_UNKNOWN = 0,
    VMM_KERNEL_ELF,     /* an ELF64 x86-64 executable (vmlinux, or a PVH image) */
    VMM_KERNEL_BZIMAGE, /* a bzImage ("HdrS" at 0x202) */
};

enum vmm_linux_protocol {
    VMM_LINUX_BOOT_NONE = 0, /* no kernel loaded yet */
    VMM_LINUX_BOOT_64,       /* 64-bit boot protocol: RSI = zero page */
    VMM_LINUX_BOOT_PVH,      /* PVH: 32-bit protected mode, EBX = hvm_start_info */
};

/* Kernel loading options. Zero means default; growth convention (abi.h). */
struct vmm_kernel_options {
    uint32_t size; /* sizeof(struct vmm_kernel_options) */
    bool no_pvh;   /* ELF: use the 64-bit entry even when a PVH note is present */
    /* bzImage: where to put the protected-mode kernel (0: pref_address when
     * that fits, else the lowest suitably aligned address above it that does;
     * a kernel that is not relocatable goes only at pref_address; below
     * pref_address a relocatable kernel moves itself up to it before
     * decompressing, so it owns [load_addr, pref_address + init_size)). */
    vmm_gpa_t load_addr;
    vmm_gpa_t min_addr; /* lowest address the kernel may use (0: VMM_LINUX_MIN_ADDR) */
    /* Optional: the machine whose reserved ranges the kernel must keep clear of. */
    const struct vmm_machine *machine;
    /*
     * bzImage: boot the vmlinux ELF inside it instead, decompressed here
     * (XZ only; the payload's stated size capped by init_size, the decoder's
     * memory bounded), through its PVH entry (the 64-bit entry with no_pvh),
     * so the guest skips its own decompressor. Loaded at its link-time
     * addresses: the guest loses KASLR (as a vmlinux booted by Firecracker
     * does). A payload that is not an XZ-compressed ELF boots as the bzImage
     * it came in. Errors as for an ELF kernel, and -EINVAL for a corrupt or
     * truncated stream, -EFBIG for one larger than it states, -E2BIG for one
     * that needs more decoder memory than the limit.
     */
    bool extract_payload;
    /*
     * With extract_payload: a directory (which must exist, be this user's and
     * be writable by no one else: -EPERM) keeping extracted payloads, named by
     * the compressed payload's CRC-64 and sizes. An entry holds the
     * compressed payload it was made from, then the vmlinux, and is used only
     * when that payload is byte for byte this image's (a CRC can be forged),
     * when it is a regular file of this user with one link, writable by no one
     * else, of the expected size; it is then checked like any ELF kernel (one
     * that fails is replaced by a fresh extraction). Entries are written to a
     * temporary file and renamed (readers see all or nothing); failing to
     * store one is logged, not an error. NULL: decompress on every load.
     */
    const char *payload_cache_dir;
};

/*
 * What the steps recorded: each step fills its part and reads what earlier
 * steps filled. vmm_linux_load_kernel starts it afresh; an application that
 * does a step itself fills that step's fields (zero means "not done").
 * Growth convention (abi.h): the caller sets .size (VMM_INIT) before the
 * first step; every step reads and fills only its first .size bytes (a field
 * past them reads as zero), and refuses a size it does not know with -EINVAL
 * before doing anything, not even writing error.
 */
struct vmm_linux_boot {
    uint32_t size; /* sizeof(struct vmm_linux_boot); kept by every step */
    /* vmm_linux_load_kernel */
    enum vmm_kernel_format format;
    enum vmm_linux_protocol protocol; /* chosen protocol */
    uint64_t entry;                   /* 64-bit entry, guest-physical */
    uint32_t pvh_entry;               /* PVH 32-bit entry; 0 when the ELF has no note */
    vmm_gpa_t kernel_low;             /* [kernel_low, kernel_high): memory the kernel */
    vmm_gpa_t kernel_high;            /*   owns (bzImage: its whole init_size) */
    uint16_t boot_version;            /* bzImage boot protocol (0x020f = 2.15); 0 for ELF */
    /* bzImage: the image's setup header up to kernel_info_offset (protocol
     * 2.15; later fields are not kept); zero for ELF. */
    struct vmm_linux_setup_header hdr;
    uint32_t hdr_len;         /* bytes of hdr the image had (0x202 + jump offset - 0x1f1) */
    uint64_t initrd_addr_max; /* highest address an initrd byte may have */
    uint32_t cmdline_max;     /* longest command line, without the NUL (bzImage:
                                 cmdline_size; ELF: VMM_LINUX_ELF_CMDLINE_MAX) */

    /* vmm_linux_load_initrd */
    vmm_gpa_t initrd_addr;
    uint64_t initrd_size;

    /* vmm_linux_set_cmdline */
    vmm_gpa_t cmdline_addr; /* 0: none */
    uint32_t cmdline_len;   /* without the NUL */

    /* vmm_linux_add_setup_data */
    vmm_gpa_t setup_data;      /* first blob (0: none) */
    vmm_gpa_t setup_data_last; /* last blob, whose next field the following one links */
    vmm_gpa_t setup_data_end;  /* first free byte of the setup_data area (0: its start) */

    /* Set by the application (e.g. from the ACPI builder): the RSDP. */
    vmm_gpa_t rsdp_addr;

    /* vmm_linux_write_params */
    vmm_gpa_t params_addr; /* zero page or hvm_start_info written there */

    char error[160]; /* why the last step failed ("" after a success) */
};

/*
 * What kind of kernel image[0..size) is, by its magic: VMM_KERNEL_ELF,
 * VMM_KERNEL_BZIMAGE or VMM_KERNEL_UNKNOWN (also for NULL or short input).
 * Checks nothing else. Thread-safe.
 */
VMM_API enum vmm_kernel_format vmm_kernel_detect(const void *image, size_t size);

/*
 * Whether image[0..size) (the start of a file is enough) is a Linux kernel
 * rather than a guest program: a bzImage, or an ELF64 with a loadable segment
 * linked at a virtual address other than its physical load address, as every
 * x86-64 vmlinux is. Program headers past size are not looked at. Pure.
 */
VMM_API bool vmm_kernel_is_linux(const void *image, size_t size);

/*
 * Load a kernel from image[0..size) into mem and start *boot afresh with what
 * later steps need.
 *
 * bzImage: needs "HdrS", boot_flag 0xaa55, boot protocol 2.06 or later (older
 * is refused with the reason), LOADED_HIGH and XLF_KERNEL_64. The
 * protected-mode kernel (from (setup_sects + 1) * 512) is copied to the load
 * address (opts->load_addr, pref_address, or the lowest address above it
 * aligned to kernel_alignment where [load, load + init_size) is RAM below
 * 4 GiB, not below min_addr and clear of machine->reserved); entry = load +
 * 0x200; the setup header is kept in boot->hdr for the zero page. Lying
 * headers (setup_sects or syssize past the end, a payload outside the kernel,
 * a header that ends before the fields its version has, no short forward
 * jump at 0x200, cmdline_size 0) are -EINVAL; no room
 * for init_size is -ENOSPC; an explicit load_addr outside RAM is -EFAULT.
 *
 * ELF (vmlinux): checked as by vmm_elf_load (loader.h), every PT_LOAD copied
 * to its physical address p_paddr (not below min_addr, -EFAULT), entry =
 * e_entry translated to physical. When a PT_NOTE holds a well-formed
 * XEN_ELFNOTE_PHYS32_ENTRY (4- or 8-byte address below 4 GiB, inside an
 * executable segment) and opts->no_pvh is false, the protocol is PVH. A
 * malformed PVH note is -EINVAL.
 *
 * bzImage with opts->extract_payload: its XZ payload is decompressed (or
 * read from opts->payload_cache_dir) and loaded as the ELF kernel above,
 * boot->format VMM_KERNEL_ELF; see struct vmm_kernel_options for its checks
 * and errors. A payload that is not an XZ ELF loads the bzImage as above.
 *
 * boot must not be NULL; opts may be. Returns 0 or a -errno (see the top).
 */
VMM_API VMM_MUST_USE int vmm_linux_load_kernel(struct vmm_memory *mem, const void *image,
                                               size_t size, const struct vmm_kernel_options *opts,
                                               struct vmm_linux_boot *boot);

/* vmm_linux_load_kernel on the file at path, read straight into guest memory
 * (the file is not held in host memory). Also -ENOENT/-EACCES/-EISDIR, and
 * -EFBIG for a bzImage larger than guest memory. */
VMM_API VMM_MUST_USE int vmm_linux_load_kernel_file(struct vmm_memory *mem, const char *path,
                                                    const struct vmm_kernel_options *opts,
                                                    struct vmm_linux_boot *boot);

/*
 * Copy an initrd of size bytes into guest RAM: page aligned, as high as
 * possible with its last byte at or below min(boot->initrd_addr_max (0: 4 GiB
 * - 1), the top of the RAM it lands in), above 1 MiB, clear of the kernel
 * [kernel_low, kernel_high) and of machine->reserved (machine may be NULL).
 * Records boot->initrd_addr/initrd_size. -EINVAL for an empty initrd,
 * -ENOSPC when no place fits.
 */
VMM_API VMM_MUST_USE int vmm_linux_load_initrd(struct vmm_memory *mem, const void *data,
                                               size_t size, const struct vmm_machine *machine,
                                               struct vmm_linux_boot *boot);

/* vmm_linux_load_initrd on the file at path (read straight into guest
 * memory). Also -ENOENT/-EACCES/-EISDIR/-EFBIG. */
VMM_API VMM_MUST_USE int vmm_linux_load_initrd_file(struct vmm_memory *mem, const char *path,
                                                    const struct vmm_machine *machine,
                                                    struct vmm_linux_boot *boot);

/*
 * Write cmdline, NUL-terminated, at VMM_X86_CMDLINE and record it. -ENOSPC
 * when it is longer than the kernel takes (boot->cmdline_max, from a
 * bzImage's cmdline_size, VMM_LINUX_ELF_CMDLINE_MAX for an ELF kernel; 0 means
 * VMM_X86_CMDLINE_MAX - 1) or than the
 * command-line area; -EFAULT without RAM there.
 */
VMM_API VMM_MUST_USE int vmm_linux_set_cmdline(struct vmm_memory *mem, const char *cmdline,
                                               struct vmm_linux_boot *boot);

/*
 * Append a setup_data blob of type (VMM_SETUP_DTB for a device tree, ...)
 * with len bytes of data to the list in [VMM_X86_SETUP_DATA,
 * VMM_X86_SETUP_DATA_END): 8-byte aligned, linked from the previous blob (or
 * from the zero page, by vmm_linux_write_params). -ENOSPC when the area is
 * full; -EINVAL for a PVH boot (PVH has no setup_data: load with no_pvh).
 */
VMM_API VMM_MUST_USE int vmm_linux_add_setup_data(struct vmm_memory *mem, uint32_t type,
                                                  const void *data, size_t len,
                                                  struct vmm_linux_boot *boot);

/*
 * Build the guest's memory map from machine->mem's regions and machine's
 * reserved ranges: RAM [0, 0x9fc00), reserved [0x9fc00, 0x100000), RAM for
 * the rest of every region (adjacent regions merged; read-only regions are
 * reserved), machine->reserved cut out of RAM and listed as reserved. Sorted
 * by address, no overlaps; addresses with no region (the 32-bit MMIO hole)
 * are simply absent. Writes at most max entries to out and returns the count,
 * or -EINVAL (no machine or memory, a reserved range that wraps), -ENOSPC
 * (more than max entries) or -ENOMEM. Thread-safe.
 */
VMM_API VMM_MUST_USE int vmm_e820_build(const struct vmm_machine *machine,
                                        struct vmm_e820_entry *out, unsigned max);

/*
 * Write the zero page at VMM_X86_ZERO_PAGE for the 64-bit boot protocol: the
 * bzImage setup header (for an ELF kernel a minimal one), type_of_loader
 * 0xff, CAN_USE_HEAP with heap_end_ptr, cmd_line_ptr, the initrd
 * (ramdisk_image/size and their ext_ high halves), the setup_data list, the
 * RSDP (acpi_rsdp_addr; bzImage protocol 2.14+ only) and the e820 map
 * (vmm_e820_build of machine, or of mem alone when machine is NULL or has no
 * memory; -EINVAL when machine->mem is another memory than mem). Records
 * boot->params_addr.
 */
VMM_API VMM_MUST_USE int vmm_linux_write_boot_params(struct vmm_memory *mem,
                                                     const struct vmm_machine *machine,
                                                     struct vmm_linux_boot *boot);

/*
 * Write the PVH hvm_start_info (version 1) at VMM_X86_PVH_INFO: the command
 * line, the initrd as module 0 (list at VMM_LINUX_PVH_MODLIST), the memory map
 * at VMM_X86_PVH_MEMMAP (as vmm_e820_build) and the RSDP. Records
 * boot->params_addr.
 */
VMM_API VMM_MUST_USE int vmm_linux_write_pvh_start_info(struct vmm_memory *mem,
                                                        const struct vmm_machine *machine,
                                                        struct vmm_linux_boot *boot);

/* The writer boot->protocol wants: vmm_linux_write_boot_params or
 * vmm_linux_write_pvh_start_info. -EINVAL before a kernel is loaded. */
VMM_API VMM_MUST_USE int vmm_linux_write_params(struct vmm_memory *mem,
                                                const struct vmm_machine *machine,
                                                struct vmm_linux_boot *boot);

/*
 * Describe how to enter the kernel the steps loaded, for
 * vmm_vcpu_set_linux_entry (vcpu.h): for the 64-bit protocol mode
 * VMM_X86_LINUX_ENTRY_64, entry = boot->entry, params = boot->params_addr
 * (the zero page, for RSI); for PVH mode VMM_X86_LINUX_ENTRY_PVH, entry =
 * boot->pvh_entry, params = boot->params_addr (the hvm_start_info, for EBX);
 * stack 0 either way (the kernel sets up its own). Call after
 * vmm_linux_write_params. entry is filled out under the growth convention
 * (abi.h): its first entry->size bytes, nothing on failure. Returns 0 or
 * -EINVAL (boot or entry NULL, a size the library does not know, no kernel
 * loaded, no parameters written, a PVH kernel without its entry or with
 * parameters above 4 GiB). Writes no guest memory; thread-safe.
 */
VMM_API VMM_MUST_USE int vmm_linux_get_entry(const struct vmm_linux_boot *boot,
                                             struct vmm_x86_linux_entry *entry);

/* All of the steps in one call. Zero means default; growth convention
 * (abi.h). The kernel options are a pointer, not a member, so that each
 * struct grows on its own. */
struct vmm_linux_config {
    uint32_t size;           /* sizeof(struct vmm_linux_config) */
    const char *kernel_path; /* the kernel file, or: */
    const void *kernel;      /*   the kernel image in memory */
    size_t kernel_size;
    const char *initrd_path; /* optional: the initrd file, or: */
    const void *initrd;      /*   the initrd in memory (NULL: none) */
    size_t initrd_size;
    const char *cmdline; /* optional (NULL: none) */
    /* optional: reserved ranges for placement and e820 (kernel_opts->machine,
     * when set, is used instead, for every step) */
    const struct vmm_machine *machine;
    vmm_gpa_t rsdp_addr; /* optional: the ACPI RSDP (0: the kernel scans for it) */
    const void *dtb;     /* optional: a device tree passed as SETUP_DTB */
    size_t dtb_size;     /*   (the 64-bit protocol only: set no_pvh) */
    /* optional (NULL: defaults): under its own .size */
    const struct vmm_kernel_options *kernel_opts;
};

/*
 * Load the kernel, the initrd, the command line and the device tree, and
 * write the boot parameters for the chosen protocol, as the steps 1-5 above.
 * Touches no vCPU: boot then holds what vmm_linux_get_entry turns into the
 * entry description for vmm_vcpu_set_linux_entry (see the top). boot must not
 * be NULL; on failure boot->error says which step refused what. Returns 0 or
 * a -errno (-EINVAL with nothing done for a cfg, kernel_opts, machine or boot
 * .size the library does not know).
 */
VMM_API VMM_MUST_USE int vmm_linux_boot_setup(struct vmm_memory *mem,
                                              const struct vmm_linux_config *cfg,
                                              struct vmm_linux_boot *boot);

#ifdef __cplusplus
}
#endif

#endif /* VMM_LINUX_H */
