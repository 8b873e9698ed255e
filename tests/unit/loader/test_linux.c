/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the Linux boot protocols (linux.h): synthetic bzImage and
 * ELF kernels, initrd placement, command line, setup_data, the e820 map, the
 * zero page and the PVH start info, and lying images next to each good one.
 * Malloc-backed guest memory, no /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/linux.h>
#include <vmm/memory.h>

#include "check_compat.h"
#include "linux_images.h"

#define RAM_SIZE (32u << 20)
#define CANARY   0xa5

static struct vmm_memory *mem;
static unsigned char *ram;

static void setup(void)
{
    ram = malloc(RAM_SIZE);
    ck_assert_ptr_nonnull(ram);
    memset(ram, CANARY, RAM_SIZE);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, RAM_SIZE, ram), 0);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(ram);
    mem = NULL;
    ram = NULL;
}

static bool ram_untouched(void)
{
    static unsigned char canary[1 << 16];
    if (canary[0] != CANARY)
        memset(canary, CANARY, sizeof(canary));
    for (size_t i = 0; i < RAM_SIZE; i += sizeof(canary))
        if (memcmp(ram + i, canary, sizeof(canary)) != 0)
            return false;
    return true;
}

static void fill_initrd(unsigned char *p, size_t n)
{
    for (size_t j = 0; j < n; j++)
        p[j] = initrd_byte(j);
}

static void check_reason(const struct vmm_linux_boot *b)
{
    ck_assert_msg(b->error[0] != '\0', "no reason given");
    ck_assert_uint_lt(strlen(b->error), sizeof(b->error));
    ck_assert_ptr_null(strchr(b->error, '\n'));
}

/* ---- detection ---- */

START_TEST(test_detect)
{
    struct test_image bz = build_bzimage();
    struct test_image vl = build_vmlinux(4, VL_PHYS);
    ck_assert_int_eq(vmm_kernel_detect(bz.buf, bz.size), VMM_KERNEL_BZIMAGE);
    ck_assert_int_eq(vmm_kernel_detect(vl.buf, vl.size), VMM_KERNEL_ELF);
    ck_assert_int_eq(vmm_kernel_detect(bz.buf, 0x205), VMM_KERNEL_UNKNOWN);
    ck_assert_int_eq(vmm_kernel_detect(vl.buf, 3), VMM_KERNEL_UNKNOWN);
    ck_assert_int_eq(vmm_kernel_detect(NULL, 100), VMM_KERNEL_UNKNOWN);
    bz.buf[0x203] = 'x';
    ck_assert_int_eq(vmm_kernel_detect(bz.buf, bz.size), VMM_KERNEL_UNKNOWN);
    free(bz.buf);
    free(vl.buf);
}
END_TEST

/* ---- bzImage: good ---- */

START_TEST(test_bzimage_good)
{
    struct test_image im = build_bzimage();
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    memset(&b, 0x5a, sizeof(b));
    b.size = sizeof(b);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_str_eq(b.error, "");
    ck_assert_int_eq(b.format, VMM_KERNEL_BZIMAGE);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    ck_assert_uint_eq(b.entry, BZ_PREF + 0x200);
    ck_assert_uint_eq(b.pvh_entry, 0);
    ck_assert_uint_eq(b.kernel_low, BZ_PREF);
    ck_assert_uint_eq(b.kernel_high, BZ_PREF + BZ_INIT_SIZE);
    ck_assert_uint_eq(b.boot_version, 0x020f);
    ck_assert_uint_eq(b.hdr_len, 0x26c - 0x1f1);
    ck_assert_uint_eq(b.hdr.header, VMM_LINUX_HDR_MAGIC);
    ck_assert_uint_eq(b.hdr.init_size, BZ_INIT_SIZE);
    ck_assert_uint_eq(b.initrd_addr_max, 0x7fffffff);
    ck_assert_uint_eq(b.cmdline_max, 0x7ff);
    for (uint64_t j = 0; j < BZ_KSIZE; j++)
        ck_assert_uint_eq(ram[BZ_PREF + j], bz_byte(j));
    ck_assert_uint_eq(ram[BZ_PREF - 1], CANARY);
    ck_assert_uint_eq(ram[BZ_PREF + BZ_KSIZE], CANARY); /* init_size is not zeroed */
    free(im.buf);
}
END_TEST

/* setup_sects == 0 means 4. */
START_TEST(test_bzimage_setup_sects_zero)
{
    struct test_image im = build_bzimage();
    size_t size = 5 * 512 + BZ_KSIZE;
    unsigned char *buf = calloc(1, size);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, im.buf, BZ_SETUP_SIZE);
    memcpy(buf + 5 * 512, im.buf + BZ_SETUP_SIZE, BZ_KSIZE);
    buf[0x1f1] = 0;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, buf, size, NULL, &b), 0);
    ck_assert_uint_eq(ram[BZ_PREF], bz_byte(0));
    ck_assert_uint_eq(ram[BZ_PREF + BZ_KSIZE - 1], bz_byte(BZ_KSIZE - 1));
    free(buf);
    free(im.buf);
}
END_TEST

/* pref_address taken by a reserved range: the next aligned address. */
START_TEST(test_bzimage_relocated_past_reserved)
{
    struct test_image im = build_bzimage();
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    m.reserved[0] = (struct vmm_machine_range){BZ_PREF + 0x1000, 0x1000};
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .machine = &m};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_uint_eq(b.kernel_low, BZ_PREF + BZ_ALIGN);
    ck_assert_uint_eq(b.entry, BZ_PREF + BZ_ALIGN + 0x200);
    ck_assert_uint_eq(ram[BZ_PREF + BZ_ALIGN], bz_byte(0));
    free(im.buf);
}
END_TEST

/* pref_address past the first RAM run: the next run that fits. */
START_TEST(test_bzimage_relocated_next_region)
{
    vmm_memory_destroy(mem);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    /* [0, 17 MiB) and [20 MiB, 32 MiB): 16 MiB + 2 MiB of init_size does not
     * fit in the first. */
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, 17u << 20, ram), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 20u << 20, 12u << 20, ram + (20u << 20)), 0);
    struct test_image im = build_bzimage();
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_uint_eq(b.kernel_low, 20u << 20);
    ck_assert_uint_eq(b.entry, (20u << 20) + 0x200);
    free(im.buf);
}
END_TEST

START_TEST(test_bzimage_load_addr_option)
{
    struct test_image im = build_bzimage();
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options),
                                   .load_addr = 0x1200000};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_uint_eq(b.entry, 0x1200200);
    ck_assert_uint_eq(b.kernel_low, 0x1200000);
    ck_assert_uint_eq(b.kernel_high, 0x1200000 + BZ_INIT_SIZE);
    ck_assert_uint_eq(ram[0x1200000], bz_byte(0));

    /* Below pref_address the kernel moves itself up to it to decompress:
     * it owns [load_addr, pref_address + init_size). */
    o.load_addr = 0x800000;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_uint_eq(b.entry, 0x800200);
    ck_assert_uint_eq(b.kernel_low, 0x800000);
    ck_assert_uint_eq(b.kernel_high, BZ_PREF + BZ_INIT_SIZE);
    ck_assert_uint_eq(ram[0x800000], bz_byte(0));

    o.load_addr = 0x801000; /* not aligned to kernel_alignment */
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
    check_reason(&b);
    o.load_addr = RAM_SIZE; /* past RAM */
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EFAULT);
    check_reason(&b);
    o.load_addr = 0x80000; /* below 1 MiB, over the boot structures */
    bz_hdr(&im)->kernel_alignment = 0x1000;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EFAULT);
    check_reason(&b);
    free(im.buf);
}
END_TEST

/* A load address below pref_address: where the kernel decompresses,
 * [pref_address, + init_size), is checked too, and the initrd avoids it. */
START_TEST(test_bzimage_load_below_pref)
{
    struct test_image im = build_bzimage();
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    m.reserved[0] = (struct vmm_machine_range){BZ_PREF + 0x1000, 0x1000};
    struct vmm_kernel_options o = {
        .size = sizeof(struct vmm_kernel_options), .load_addr = 0x800000, .machine = &m};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
    check_reason(&b);
    ck_assert(ram_untouched());

    /* pref_address + init_size past RAM. */
    bz_hdr(&im)->pref_address = RAM_SIZE - 0x100000;
    o.machine = NULL;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EFAULT);
    check_reason(&b);
    ck_assert(ram_untouched());

    /* pref_address + init_size wraps. */
    bz_hdr(&im)->pref_address = 0xffffffffffff0000ull;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
    check_reason(&b);
    ck_assert(ram_untouched());

    /* Fits: an initrd as high as it may go stays out of the kernel's range. */
    bz_hdr(&im)->pref_address = 0x1c00000;
    bz_hdr(&im)->initrd_addr_max = 0x1dfffff;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_uint_eq(b.kernel_low, 0x800000);
    ck_assert_uint_eq(b.kernel_high, 0x1c00000 + BZ_INIT_SIZE);
    static unsigned char rd[0x10000];
    fill_initrd(rd, sizeof(rd));
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, sizeof(rd), NULL, &b), 0);
    ck_assert(b.initrd_addr + b.initrd_size <= b.kernel_low);
    free(im.buf);
}
END_TEST

START_TEST(test_bzimage_not_relocatable)
{
    struct test_image im = build_bzimage();
    bz_hdr(&im)->relocatable_kernel = 0;
    bz_hdr(&im)->pref_address = 0x100000;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_uint_eq(b.entry, 0x100200);
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options),
                                   .load_addr = 0x200000};
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
    check_reason(&b);
    free(im.buf);
}
END_TEST

/* ---- bzImage: lying headers ---- */

struct bz_case {
    const char *name;
    void (*mutate)(struct test_image *im);
    int err;
};

static void bz_truncated(struct test_image *im)
{
    im->size = 0x204;
}
static void bz_short_header(struct test_image *im)
{
    im->size = 0x240;
}
static void bz_no_magic(struct test_image *im)
{
    bz_hdr(im)->header = 0x53726449;
}
static void bz_boot_flag(struct test_image *im)
{
    bz_hdr(im)->boot_flag = 0x55aa;
}
static void bz_old_protocol(struct test_image *im)
{
    bz_hdr(im)->version = 0x0205;
}
static void bz_no_xloadflags(struct test_image *im)
{
    bz_hdr(im)->version = 0x020b;
}
static void bz_header_ends_early(struct test_image *im)
{
    im->buf[0x201] = 0x30; /* header ends at 0x232 */
}
static void bz_header_past_image(struct test_image *im)
{
    im->buf[0x201] = 0x7f; /* header ends at 0x281 */
    im->size = 0x280;
}
static void bz_no_jump(struct test_image *im)
{
    im->buf[0x200] = 0xe9; /* a near jmp: the header end is not a short jump */
}
static void bz_backward_jump(struct test_image *im)
{
    im->buf[0x201] = 0xfe; /* jmp $: 0x202 + 0xfe would read as past the header */
}
static void bz_cmdline_size_zero(struct test_image *im)
{
    bz_hdr(im)->cmdline_size = 0;
}
static void bz_setup_sects_past_end(struct test_image *im)
{
    bz_hdr(im)->setup_sects = 200;
}
static void bz_no_loaded_high(struct test_image *im)
{
    bz_hdr(im)->loadflags = 0;
}
static void bz_not_64bit(struct test_image *im)
{
    bz_hdr(im)->xloadflags = VMM_LINUX_XLF_CAN_BE_LOADED_ABOVE_4G;
}
static void bz_no_entry64(struct test_image *im)
{
    im->size = BZ_SETUP_SIZE + 0x200;
    bz_hdr(im)->syssize = 0x20;
    bz_hdr(im)->payload_length = 0;
    bz_hdr(im)->payload_offset = 0;
}
static void bz_syssize_zero(struct test_image *im)
{
    bz_hdr(im)->syssize = 0;
}
static void bz_syssize_past_end(struct test_image *im)
{
    bz_hdr(im)->syssize = BZ_KSIZE / 16 + 1;
}
static void bz_syssize_huge(struct test_image *im)
{
    bz_hdr(im)->syssize = 0xffffffff;
}
static void bz_payload_past_end(struct test_image *im)
{
    bz_hdr(im)->payload_length = BZ_KSIZE;
}
static void bz_payload_overflow(struct test_image *im)
{
    bz_hdr(im)->payload_offset = 0xffffffff;
    bz_hdr(im)->payload_length = 0xffffffff;
}
static void bz_alignment_not_pow2(struct test_image *im)
{
    bz_hdr(im)->kernel_alignment = 0x300000;
}
static void bz_alignment_zero(struct test_image *im)
{
    bz_hdr(im)->kernel_alignment = 0;
}
static void bz_init_size_huge(struct test_image *im)
{
    bz_hdr(im)->init_size = 0xffffffff;
}
static void bz_pref_wraps(struct test_image *im)
{
    bz_hdr(im)->pref_address = 0xfffffffffff00000ull;
}
static void bz_pref_above_4g(struct test_image *im)
{
    bz_hdr(im)->pref_address = 0x100000000ull;
}
static void bz_fixed_outside_ram(struct test_image *im)
{
    bz_hdr(im)->relocatable_kernel = 0;
    bz_hdr(im)->pref_address = RAM_SIZE;
}
static void bz_fixed_low(struct test_image *im)
{
    bz_hdr(im)->relocatable_kernel = 0;
    bz_hdr(im)->pref_address = 0x10000;
}
static void bz_fixed_wraps(struct test_image *im)
{
    bz_hdr(im)->relocatable_kernel = 0;
    bz_hdr(im)->pref_address = 0xffffffffffff0000ull;
}
static void bz_oversized(struct test_image *im)
{
    /* a protected-mode kernel larger than guest RAM */
    size_t size = BZ_SETUP_SIZE + RAM_SIZE + 0x1000;
    unsigned char *buf = calloc(1, size);
    memcpy(buf, im->buf, BZ_SETUP_SIZE);
    free(im->buf);
    im->buf = buf;
    im->size = size;
    bz_hdr(im)->syssize = (uint32_t)((size - BZ_SETUP_SIZE) / 16);
}

static const struct bz_case bz_cases[] = {
    {"truncated", bz_truncated, -EINVAL},
    {"short header", bz_short_header, -EINVAL},
    {"no HdrS", bz_no_magic, -EINVAL},
    {"boot_flag", bz_boot_flag, -EINVAL},
    {"protocol 2.05", bz_old_protocol, -EINVAL},
    {"protocol 2.11", bz_no_xloadflags, -EINVAL},
    {"header ends early", bz_header_ends_early, -EINVAL},
    {"header past image", bz_header_past_image, -EINVAL},
    {"no short jump", bz_no_jump, -EINVAL},
    {"backward jump", bz_backward_jump, -EINVAL},
    {"cmdline_size 0", bz_cmdline_size_zero, -EINVAL},
    {"setup_sects past end", bz_setup_sects_past_end, -EINVAL},
    {"no LOADED_HIGH", bz_no_loaded_high, -EINVAL},
    {"no XLF_KERNEL_64", bz_not_64bit, -EINVAL},
    {"no room for entry", bz_no_entry64, -EINVAL},
    {"syssize 0", bz_syssize_zero, -EINVAL},
    {"syssize past end", bz_syssize_past_end, -EINVAL},
    {"syssize huge", bz_syssize_huge, -EINVAL},
    {"payload past end", bz_payload_past_end, -EINVAL},
    {"payload overflow", bz_payload_overflow, -EINVAL},
    {"alignment not pow2", bz_alignment_not_pow2, -EINVAL},
    {"alignment zero", bz_alignment_zero, -EINVAL},
    {"init_size huge", bz_init_size_huge, -ENOSPC},
    {"pref wraps", bz_pref_wraps, -ENOSPC},
    {"pref above 4G", bz_pref_above_4g, -ENOSPC},
    {"fixed outside RAM", bz_fixed_outside_ram, -EFAULT},
    {"fixed below 1 MiB", bz_fixed_low, -EFAULT},
    {"fixed wraps", bz_fixed_wraps, -EINVAL},
    {"oversized", bz_oversized, -ENOSPC},
};

START_TEST(test_bzimage_hostile)
{
    const struct bz_case *c = &bz_cases[_i];
    struct test_image im = build_bzimage();
    c->mutate(&im);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    memset(&b, 0x5a, sizeof(b));
    b.size = sizeof(b);
    int r = vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b);
    ck_assert_msg(r == c->err, "%s: got %d, want %d (%s)", c->name, r, c->err, b.error);
    check_reason(&b);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_NONE);
    ck_assert_msg(ram_untouched(), "%s: guest memory written", c->name);
    free(im.buf);
}
END_TEST

START_TEST(test_bzimage_old_protocol_reason)
{
    struct test_image im = build_bzimage();
    bz_hdr(&im)->version = 0x0204;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), -EINVAL);
    ck_assert_str_eq(b.error, "boot protocol 2.04 is too old (2.06 or later is needed)");
    free(im.buf);
}
END_TEST

START_TEST(test_not_a_kernel)
{
    unsigned char junk[4096];
    memset(junk, 0x90, sizeof(junk));
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, junk, sizeof(junk), NULL, &b), -EINVAL);
    check_reason(&b);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, NULL, 10, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_load_kernel(NULL, junk, 10, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, junk, 10, NULL, NULL), -EINVAL);
    ck_assert(ram_untouched());
}
END_TEST

/* ---- ELF vmlinux and PVH ---- */

START_TEST(test_vmlinux_64bit)
{
    /* e_entry virtual: translated through the text segment */
    struct test_image im = build_vmlinux(0, VL_VIRT + 0x40);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_int_eq(b.format, VMM_KERNEL_ELF);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    ck_assert_uint_eq(b.entry, VL_PHYS + 0x40);
    ck_assert_uint_eq(b.pvh_entry, 0);
    ck_assert_uint_eq(b.kernel_low, VL_PHYS);
    ck_assert_uint_eq(b.kernel_high, VL_DATA_PHYS + VL_DATA_MEM);
    ck_assert_uint_eq(b.initrd_addr_max, 0xffffffffu);
    /* No header to say otherwise: x86 COMMAND_LINE_SIZE, 2048 with the NUL. */
    ck_assert_uint_eq(b.cmdline_max, 2047);
    ck_assert_uint_eq(b.cmdline_max, VMM_LINUX_ELF_CMDLINE_MAX);
    for (uint64_t j = 0; j < VL_TEXT; j++)
        ck_assert_uint_eq(ram[VL_PHYS + j], vl_byte(0, j));
    for (uint64_t j = 0; j < VL_DATA_MEM; j++)
        ck_assert_uint_eq(ram[VL_DATA_PHYS + j], j < VL_DATA_FILE ? vl_byte(1, j) : 0);
    free(im.buf);

    /* e_entry physical, as a real vmlinux has */
    im = build_vmlinux(0, VL_PHYS);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_uint_eq(b.entry, VL_PHYS);
    free(im.buf);
}
END_TEST

START_TEST(test_vmlinux_pvh)
{
    for (unsigned len = 4; len <= 8; len += 4) {
        struct test_image im = build_vmlinux(len, VL_PHYS);
        struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
        ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
        ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_PVH);
        ck_assert_uint_eq(b.pvh_entry, VL_PVH_ENTRY);
        ck_assert_uint_eq(b.entry, VL_PHYS);

        struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .no_pvh = true};
        ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
        ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
        ck_assert_uint_eq(b.pvh_entry, 0);
        free(im.buf);
    }
}
END_TEST

struct vl_case {
    const char *name;
    void (*mutate)(struct test_image *im);
    int err;
};

static void vl_desc_len(struct test_image *im)
{
    vl_note(im)->descsz = 2;
}
static void vl_note_runs_past(struct test_image *im)
{
    vl_note(im)->namesz = 0x1000;
}
static void vl_note_huge_desc(struct test_image *im)
{
    vl_note(im)->descsz = 0xffffffff;
}
static void vl_pvh_outside(struct test_image *im)
{
    vl_note(im)->desc[0] = (uint32_t)VL_DATA_PHYS; /* data is not executable */
}
static void vl_pvh_zero(struct test_image *im)
{
    vl_note(im)->desc[0] = 0;
}
static void vl_pvh_above_4g(struct test_image *im)
{
    vl_note(im)->desc[1] = 1;
}
static void vl_note_outside_image(struct test_image *im)
{
    vl_phdr(im, 2)->p_offset = im->size - 4;
}
static void vl_note_offset_wraps(struct test_image *im)
{
    vl_phdr(im, 2)->p_offset = UINT64_MAX - 4;
}
static void vl_note_segment_huge(struct test_image *im)
{
    vl_phdr(im, 2)->p_filesz = 1ull << 40;
}
static void vl_below_1mib(struct test_image *im)
{
    vl_phdr(im, 1)->p_paddr = 0x80000;
}
static void vl_above_ram(struct test_image *im)
{
    vl_phdr(im, 1)->p_paddr = 0x100000000ull;
}
static void vl_vaddr_lies(struct test_image *im)
{
    vl_phdr(im, 0)->p_vaddr = UINT64_MAX - 0x10;
}
static void vl_entry_nowhere(struct test_image *im)
{
    ((Elf64_Ehdr *)im->buf)->e_entry = 0xffffffff90000000ull;
}
static void vl_truncated(struct test_image *im)
{
    im->size = 100;
}

static const struct vl_case vl_cases[] = {
    {"PVH note descsz 2", vl_desc_len, -EINVAL},
    {"note runs past segment", vl_note_runs_past, -EINVAL},
    {"note descsz huge", vl_note_huge_desc, -EINVAL},
    {"PVH entry in data", vl_pvh_outside, -EINVAL},
    {"PVH entry 0", vl_pvh_zero, -EINVAL},
    {"PVH entry above 4G", vl_pvh_above_4g, -EINVAL},
    {"PT_NOTE outside image", vl_note_outside_image, -EINVAL},
    {"PT_NOTE offset wraps", vl_note_offset_wraps, -EINVAL},
    {"PT_NOTE huge", vl_note_segment_huge, -EINVAL},
    {"segment below 1 MiB", vl_below_1mib, -EFAULT},
    {"segment above RAM", vl_above_ram, -EFAULT},
    {"vaddr wraps", vl_vaddr_lies, -EINVAL},
    {"entry nowhere", vl_entry_nowhere, -EINVAL},
    {"truncated", vl_truncated, -EINVAL},
};

START_TEST(test_vmlinux_hostile)
{
    const struct vl_case *c = &vl_cases[_i];
    struct test_image im = build_vmlinux(8, VL_PHYS);
    c->mutate(&im);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    memset(&b, 0x5a, sizeof(b));
    b.size = sizeof(b);
    int r = vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b);
    ck_assert_msg(r == c->err, "%s: got %d, want %d (%s)", c->name, r, c->err, b.error);
    check_reason(&b);
    ck_assert_msg(ram_untouched(), "%s: guest memory written", c->name);
    free(im.buf);
}
END_TEST

/* A malformed PVH note does not matter when PVH is not wanted. */
START_TEST(test_vmlinux_no_pvh_ignores_note)
{
    struct test_image im = build_vmlinux(8, VL_PHYS);
    vl_desc_len(&im);
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .no_pvh = true};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    free(im.buf);
}
END_TEST

START_TEST(test_vmlinux_reserved_overlap)
{
    struct test_image im = build_vmlinux(0, VL_PHYS);
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    m.reserved[0] = (struct vmm_machine_range){VL_DATA_PHYS + 0x1000, 0x1000};
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .machine = &m};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
    ck_assert_ptr_nonnull(strstr(b.error, "reserved"));
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

/* ---- initrd ---- */

START_TEST(test_initrd_highest)
{
    struct test_image im = build_bzimage();
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    size_t n = 0x100000 + 123; /* not a page multiple */
    unsigned char *rd = malloc(n);
    fill_initrd(rd, n);
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, n, NULL, &b), 0);
    ck_assert_str_eq(b.error, "");
    ck_assert_uint_eq(b.initrd_size, n);
    ck_assert_uint_eq(b.initrd_addr % 4096, 0);
    ck_assert_uint_eq(b.initrd_addr, (RAM_SIZE - n) & ~0xfffull);
    /* Every byte, but one assertion: Check records each assertion that
     * passes, and a million of them took seconds (longer than Check's
     * timeout on a loaded machine). */
    size_t bad = n;
    for (size_t j = 0; j < n && bad == n; j++)
        if (ram[b.initrd_addr + j] != initrd_byte(j))
            bad = j;
    ck_assert_msg(bad == n, "initrd byte %zu is 0x%02x, expected 0x%02x", bad,
                  bad < n ? ram[b.initrd_addr + bad] : 0, bad < n ? initrd_byte(bad) : 0);
    free(rd);
    free(im.buf);
}
END_TEST

/* initrd_addr_max from the header caps the placement; the kernel's init_size
 * range is avoided. */
START_TEST(test_initrd_addr_max_and_kernel)
{
    struct test_image im = build_bzimage();
    bz_hdr(&im)->initrd_addr_max = (20u << 20) - 1;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_uint_eq(b.initrd_addr_max, (20u << 20) - 1);
    unsigned char *rd = malloc(1u << 20);
    fill_initrd(rd, 1u << 20);
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, 1u << 20, NULL, &b), 0);
    ck_assert_uint_eq(b.initrd_addr, 19u << 20);

    /* a cap inside the kernel [16, 18) MiB: the initrd goes below it */
    b.initrd_addr_max = (17u << 20) - 1;
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, 1u << 20, NULL, &b), 0);
    ck_assert_uint_eq(b.initrd_addr, 15u << 20);

    /* and a reserved range in the way */
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    m.reserved[0] = (struct vmm_machine_range){(15u << 20) + 0x5000, 0x1000};
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, 1u << 20, &m, &b), 0);
    ck_assert_uint_eq(b.initrd_addr, (14u << 20) + 0x5000);
    free(rd);
    free(im.buf);
}
END_TEST

START_TEST(test_initrd_refused)
{
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    unsigned char small[16] = {0};
    ck_assert_int_eq(vmm_linux_load_initrd(mem, small, 0, NULL, &b), -EINVAL);
    check_reason(&b);
    ck_assert_int_eq(vmm_linux_load_initrd(mem, NULL, 10, NULL, &b), -EINVAL);
    /* bigger than everything above 1 MiB */
    size_t n = RAM_SIZE;
    unsigned char *rd = calloc(1, n);
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, n, NULL, &b), -ENOSPC);
    check_reason(&b);
    /* a cap below 1 MiB leaves no room */
    b.initrd_addr_max = 0xfffff;
    ck_assert_int_eq(vmm_linux_load_initrd(mem, small, sizeof(small), NULL, &b), -ENOSPC);
    /* a kernel covering all RAM above 1 MiB */
    b.initrd_addr_max = 0;
    b.kernel_low = 0x100000;
    b.kernel_high = RAM_SIZE;
    ck_assert_int_eq(vmm_linux_load_initrd(mem, small, sizeof(small), NULL, &b), -ENOSPC);
    ck_assert(ram_untouched());
    free(rd);
}
END_TEST

/* ---- command line ---- */

START_TEST(test_cmdline)
{
    struct test_image im = build_bzimage();
    bz_hdr(&im)->cmdline_size = 16;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "0123456789abcdef", &b), 0);
    ck_assert_uint_eq(b.cmdline_addr, VMM_X86_CMDLINE);
    ck_assert_uint_eq(b.cmdline_len, 16);
    ck_assert_mem_eq(ram + VMM_X86_CMDLINE, "0123456789abcdef", 17);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "0123456789abcdefX", &b), -ENOSPC);
    check_reason(&b);
    free(im.buf);

    /* an ELF kernel: x86 COMMAND_LINE_SIZE (2048 with the NUL) is the limit */
    im = build_vmlinux(0, VL_PHYS);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    char *big = malloc(VMM_X86_CMDLINE_MAX + 1);
    memset(big, 'x', VMM_X86_CMDLINE_MAX);
    big[2048] = '\0';
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, big, &b), -ENOSPC);
    check_reason(&b);
    big[2047] = '\0';
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, big, &b), 0);
    ck_assert_uint_eq(ram[VMM_X86_CMDLINE + 2047], 0);
    ck_assert_uint_eq(ram[VMM_X86_CMDLINE + 2048], CANARY);
    /* with no kernel limit recorded, the command-line area is the limit */
    b.cmdline_max = 0;
    memset(big, 'x', VMM_X86_CMDLINE_MAX);
    big[VMM_X86_CMDLINE_MAX] = '\0';
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, big, &b), -ENOSPC);
    big[VMM_X86_CMDLINE_MAX - 1] = '\0';
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, big, &b), 0);
    ck_assert_uint_eq(ram[VMM_X86_CMDLINE + VMM_X86_CMDLINE_MAX - 1], 0);
    ck_assert_uint_eq(ram[VMM_X86_CMDLINE + VMM_X86_CMDLINE_MAX], CANARY);
    /* an empty line is fine */
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "", &b), 0);
    ck_assert_uint_eq(b.cmdline_len, 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, NULL, &b), -EINVAL);
    free(big);
    free(im.buf);
}
END_TEST

/* ---- setup_data ---- */

START_TEST(test_setup_data)
{
    struct vmm_linux_boot b = {.size = sizeof(struct vmm_linux_boot),
                               .protocol = VMM_LINUX_BOOT_64};
    const char dtb[] = "\xd0\x0d\xfe\xed fake dtb";
    const char seed[] = "0123456789";
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, dtb, sizeof(dtb), &b), 0);
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_RNG_SEED, seed, 10, &b), 0);
    ck_assert_uint_eq(b.setup_data, VMM_X86_SETUP_DATA);

    struct vmm_setup_data sd;
    memcpy(&sd, ram + VMM_X86_SETUP_DATA, sizeof(sd));
    ck_assert_uint_eq(sd.type, VMM_SETUP_DTB);
    ck_assert_uint_eq(sd.len, sizeof(dtb));
    ck_assert_mem_eq(ram + VMM_X86_SETUP_DATA + sizeof(sd), dtb, sizeof(dtb));
    ck_assert_uint_eq(sd.next % 8, 0);
    ck_assert_uint_ge(sd.next, VMM_X86_SETUP_DATA + sizeof(sd) + sizeof(dtb));
    ck_assert_uint_eq(sd.next, b.setup_data_last);
    uint64_t second = sd.next;
    memcpy(&sd, ram + second, sizeof(sd));
    ck_assert_uint_eq(sd.type, VMM_SETUP_RNG_SEED);
    ck_assert_uint_eq(sd.len, 10);
    ck_assert_uint_eq(sd.next, 0);
    ck_assert_mem_eq(ram + second + sizeof(sd), seed, 10);

    /* the area fills up */
    size_t big = VMM_X86_SETUP_DATA_END - VMM_X86_SETUP_DATA;
    unsigned char *blob = calloc(1, big);
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, blob, big, &b), -ENOSPC);
    check_reason(&b);
    size_t left = VMM_X86_SETUP_DATA_END - ((b.setup_data_end + 7) & ~7ull) - 16;
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, blob, left + 1, &b), -ENOSPC);
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, blob, left, &b), 0);
    ck_assert_uint_eq(b.setup_data_end, VMM_X86_SETUP_DATA_END);
    ck_assert_uint_eq(ram[VMM_X86_SETUP_DATA_END], CANARY);
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, blob, 0, &b), -ENOSPC);
    free(blob);

    /* a lying cursor, and PVH */
    b.setup_data_end = 0x1000;
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, dtb, 4, &b), -EINVAL);
    struct vmm_linux_boot p = {.size = sizeof(struct vmm_linux_boot),
                               .protocol = VMM_LINUX_BOOT_PVH};
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, dtb, 4, &p), -EINVAL);
    check_reason(&p);
}
END_TEST

/* Growth convention (vmm/abi.h) of the Linux loader's structs: a boot
 * record, kernel options, machine or config whose .size is 0 or past the
 * library's struct is refused with -EINVAL before anything is done (not
 * even the record's error written); an older, shorter one is read (or
 * filled) that far, the fields past it taking their defaults. */
START_TEST(test_structs_check_their_size)
{
    struct test_image im = build_bzimage();
    struct vmm_linux_boot b;
    memset(&b, 0x5a, sizeof(b));
    for (int bad = 0; bad < 2; bad++) {
        b.size = bad ? sizeof(b) + 8 : 0;
        ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), -EINVAL);
        ck_assert_int_eq(vmm_linux_set_cmdline(mem, "x", &b), -EINVAL);
        ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), -EINVAL);
        struct vmm_x86_linux_entry e = VMM_INIT(struct vmm_x86_linux_entry);
        ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
        ck_assert_uint_eq((unsigned char)b.error[0], 0x5a);
        ck_assert_uint_eq(b.format, 0x5a5a5a5au);
    }
    ck_assert_uint_eq(ram[BZ_PREF], CANARY); /* nothing loaded */

    struct vmm_kernel_options o = VMM_INIT(struct vmm_kernel_options);
    struct vmm_machine m = VMM_INIT(struct vmm_machine, .mem = mem);
    struct vmm_linux_config cfg =
        VMM_INIT(struct vmm_linux_config, .kernel = im.buf, .kernel_size = im.size,
                 .kernel_opts = &o, .machine = &m);
    b = VMM_INIT(struct vmm_linux_boot);
    for (int bad = 0; bad < 2; bad++) {
        o.size = bad ? sizeof(o) + 8 : 0;
        ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), -EINVAL);
        ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
        o.size = sizeof(o);
        m.size = bad ? sizeof(m) + 8 : 0;
        ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
        ck_assert_int_eq(vmm_linux_load_initrd(mem, "rd", 2, &m, &b), -EINVAL);
        struct vmm_e820_entry e820[VMM_E820_MAX];
        ck_assert_int_eq(vmm_e820_build(&m, e820, VMM_E820_MAX), -EINVAL);
        m.size = sizeof(m);
        cfg.size = bad ? sizeof(cfg) + 8 : 0;
        ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
        cfg.size = sizeof(cfg);
        ck_assert_str_eq(b.error, "");
    }
    ck_assert_uint_eq(ram[BZ_PREF], CANARY);

    /* Older structs: options without the machine, a config without the
     * options (pointers past them never read), a machine without its
     * reserved ranges, a record without error (filled up to it). */
    o = VMM_INIT(struct vmm_kernel_options, .machine = (const struct vmm_machine *)8);
    o.size = offsetof(struct vmm_kernel_options, machine);
    cfg.kernel_opts = (const struct vmm_kernel_options *)8;
    cfg.size = offsetof(struct vmm_linux_config, kernel_opts);
    memset(&b, 0x5a, sizeof(b));
    b.size = offsetof(struct vmm_linux_boot, error);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_uint_eq(b.entry, BZ_PREF + 0x200);
    ck_assert_uint_eq((unsigned char)b.error[0], 0x5a);
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    ck_assert_uint_eq(b.params_addr, VMM_X86_ZERO_PAGE);
    ck_assert_uint_eq((unsigned char)b.error[0], 0x5a);

    struct vmm_e820_entry full[VMM_E820_MAX], older[VMM_E820_MAX];
    m = VMM_INIT(struct vmm_machine, .mem = mem, .nr_reserved = 1,
                 .reserved = {{.base = 0x200000, .size = 0x1000}});
    int nfull = vmm_e820_build(&m, full, VMM_E820_MAX);
    m.size = offsetof(struct vmm_machine, nr_reserved);
    int nolder = vmm_e820_build(&m, older, VMM_E820_MAX);
    ck_assert_int_eq(nolder, 3); /* as with no reserved range */
    ck_assert_int_gt(nfull, nolder);
    free(im.buf);
}
END_TEST

/* ---- e820 ---- */

static void expect_e820(const struct vmm_e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
    ck_assert_msg(e->addr == addr && e->size == size && e->type == type,
                  "e820 entry [0x%llx, +0x%llx) type %u, want [0x%llx, +0x%llx) type %u",
                  (unsigned long long)e->addr, (unsigned long long)e->size, e->type,
                  (unsigned long long)addr, (unsigned long long)size, type);
}

START_TEST(test_e820_simple)
{
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem};
    struct vmm_e820_entry e[VMM_E820_MAX];
    ck_assert_int_eq(vmm_e820_build(&m, e, VMM_E820_MAX), 3);
    expect_e820(&e[0], 0, 0x9fc00, VMM_E820_RAM);
    expect_e820(&e[1], 0x9fc00, 0x100000 - 0x9fc00, VMM_E820_RESERVED);
    expect_e820(&e[2], 0x100000, RAM_SIZE - 0x100000, VMM_E820_RAM);
    ck_assert_int_eq(vmm_e820_build(&m, e, 2), -ENOSPC);
    ck_assert_int_eq(vmm_e820_build(NULL, e, 2), -EINVAL);
    struct vmm_machine none = VMM_INIT(struct vmm_machine);
    ck_assert_int_eq(vmm_e820_build(&none, e, 2), -EINVAL);
}
END_TEST

/* Regions added out of order, adjacent ones merged, a hole below 4 GiB, RAM
 * above it, a ROM, and reserved ranges cut out. */
START_TEST(test_e820_machine)
{
    struct vmm_memory *m2;
    ck_assert_int_eq(vmm_memory_create(&m2), 0);
    static unsigned char dummy[1];
    /* the map never touches the host memory, so one byte stands for all */
    ck_assert_int_ge(vmm_memory_add_external(m2, 0x100000000ull, 0x40000000ull, dummy), 0);
    ck_assert_int_ge(vmm_memory_add_external(m2, 0x4000000, 0x4000000, dummy), 0);
    ck_assert_int_ge(vmm_memory_add_external(m2, 0, 0x4000000, dummy), 0);
    struct vmm_region_config rom = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0xfffc0000,
                                    .len = 0x40000,
                                    .flags = VMM_MEMORY_F_READONLY};
    ck_assert_int_ge(vmm_memory_add_region(m2, &rom), 0);
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = m2, .nr_reserved = 3};
    m.reserved[0] = (struct vmm_machine_range){0x2000000, 0x1000};      /* inside RAM */
    m.reserved[1] = (struct vmm_machine_range){0xe0000000, 0x10000000}; /* in the hole (ECAM) */
    m.reserved[2] = (struct vmm_machine_range){0x7fff000, 0x2000};      /* the top of low RAM */
    struct vmm_e820_entry e[VMM_E820_MAX];
    int n = vmm_e820_build(&m, e, VMM_E820_MAX);
    ck_assert_int_eq(n, 9);
    expect_e820(&e[0], 0, 0x9fc00, VMM_E820_RAM);
    expect_e820(&e[1], 0x9fc00, 0x60400, VMM_E820_RESERVED);
    expect_e820(&e[2], 0x100000, 0x2000000 - 0x100000, VMM_E820_RAM);
    expect_e820(&e[3], 0x2000000, 0x1000, VMM_E820_RESERVED);
    expect_e820(&e[4], 0x2001000, 0x7fff000 - 0x2001000, VMM_E820_RAM);
    expect_e820(&e[5], 0x7fff000, 0x2000, VMM_E820_RESERVED);
    expect_e820(&e[6], 0xe0000000, 0x10000000, VMM_E820_RESERVED);
    expect_e820(&e[7], 0xfffc0000, 0x40000, VMM_E820_RESERVED);
    expect_e820(&e[8], 0x100000000ull, 0x40000000ull, VMM_E820_RAM);
    for (int i = 1; i < n; i++)
        ck_assert_uint_ge(e[i].addr, e[i - 1].addr + e[i - 1].size);

    /* a reserved range that wraps */
    m.reserved[0] = (struct vmm_machine_range){UINT64_MAX - 10, 100};
    ck_assert_int_eq(vmm_e820_build(&m, e, VMM_E820_MAX), -EINVAL);
    m.nr_reserved = VMM_MACHINE_MAX_RESERVED + 1;
    ck_assert_int_eq(vmm_e820_build(&m, e, VMM_E820_MAX), -EINVAL);
    vmm_memory_destroy(m2);
}
END_TEST

/* More regions than the zero page holds: refused, not truncated. */
START_TEST(test_e820_too_many)
{
    struct vmm_memory *m2;
    ck_assert_int_eq(vmm_memory_create(&m2), 0);
    static unsigned char dummy[1];
    ck_assert_int_ge(vmm_memory_add_external(m2, 0, 0x200000, dummy), 0);
    for (unsigned i = 0; i < 130; i++)
        ck_assert_int_ge(
            vmm_memory_add_external(m2, 0x10000000ull + i * 0x200000ull, 0x100000, dummy), 0);
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = m2};
    struct vmm_e820_entry e[VMM_E820_MAX];
    ck_assert_int_eq(vmm_e820_build(&m, e, VMM_E820_MAX), -ENOSPC);
    /* A machine over other memory than the one written: refused. */
    struct vmm_linux_boot b = {.size = sizeof(struct vmm_linux_boot),
                               .format = VMM_KERNEL_ELF,
                               .protocol = VMM_LINUX_BOOT_64};
    ck_assert_int_eq(vmm_linux_write_boot_params(mem, &m, &b), -EINVAL);
    check_reason(&b);
    ck_assert_int_eq(vmm_linux_write_pvh_start_info(mem, &m, &b), -EINVAL);
    check_reason(&b);
    vmm_memory_destroy(m2);
    /* The same regions in the memory written to. */
    for (unsigned i = 0; i < 130; i++)
        ck_assert_int_ge(
            vmm_memory_add_external(mem, 0x10000000ull + i * 0x200000ull, 0x100000, dummy), 0);
    m.mem = mem;
    ck_assert_int_eq(vmm_linux_write_boot_params(mem, &m, &b), -ENOSPC);
    check_reason(&b);
    ck_assert_int_eq(vmm_linux_write_pvh_start_info(mem, &m, &b), -ENOSPC);
    ck_assert_int_eq(vmm_linux_write_boot_params(mem, NULL, &b), -ENOSPC);
    ck_assert(ram_untouched());
}
END_TEST

/* ---- the zero page ---- */

static struct vmm_linux_boot_params read_zero_page(void)
{
    struct vmm_linux_boot_params zp;
    memcpy(&zp, ram + VMM_X86_ZERO_PAGE, sizeof(zp));
    return zp;
}

START_TEST(test_zero_page_bzimage)
{
    struct test_image im = build_bzimage();
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    unsigned char rd[8192];
    fill_initrd(rd, sizeof(rd));
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, sizeof(rd), NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "console=ttyS0 quiet", &b), 0);
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, "dtb!", 4, &b), 0);
    b.rsdp_addr = VMM_X86_ACPI_TABLES;
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    m.reserved[0] = (struct vmm_machine_range){0x1800000, 0x10000};
    ck_assert_int_eq(vmm_linux_write_params(mem, &m, &b), 0);
    ck_assert_uint_eq(b.params_addr, VMM_X86_ZERO_PAGE);

    struct vmm_linux_boot_params zp = read_zero_page();
    ck_assert_uint_eq(zp.hdr.header, VMM_LINUX_HDR_MAGIC);
    ck_assert_uint_eq(zp.hdr.boot_flag, VMM_LINUX_BOOT_FLAG);
    ck_assert_uint_eq(zp.hdr.version, 0x020f);
    ck_assert_uint_eq(zp.hdr.type_of_loader, 0xff);
    ck_assert_uint_eq(zp.hdr.loadflags, VMM_LINUX_LOADED_HIGH | VMM_LINUX_CAN_USE_HEAP);
    ck_assert_uint_eq(zp.hdr.heap_end_ptr, 0xfe00 - 0x200);
    ck_assert_uint_eq(zp.hdr.cmd_line_ptr, VMM_X86_CMDLINE);
    ck_assert_uint_eq(zp.ext_cmd_line_ptr, 0);
    ck_assert_str_eq((char *)ram + zp.hdr.cmd_line_ptr, "console=ttyS0 quiet");
    ck_assert_uint_eq(zp.hdr.ramdisk_image, b.initrd_addr);
    ck_assert_uint_eq(zp.hdr.ramdisk_size, sizeof(rd));
    ck_assert_uint_eq(zp.ext_ramdisk_image, 0);
    ck_assert_uint_eq(zp.ext_ramdisk_size, 0);
    ck_assert_mem_eq(ram + zp.hdr.ramdisk_image, rd, sizeof(rd));
    ck_assert_uint_eq(zp.hdr.setup_data, VMM_X86_SETUP_DATA);
    ck_assert_uint_eq(zp.acpi_rsdp_addr, VMM_X86_ACPI_TABLES);
    /* the image's own fields come through */
    ck_assert_uint_eq(zp.hdr.pref_address, BZ_PREF);
    ck_assert_uint_eq(zp.hdr.init_size, BZ_INIT_SIZE);
    ck_assert_uint_eq(zp.hdr.cmdline_size, 0x7ff);
    ck_assert_uint_eq(zp.sentinel, 0);
    ck_assert_uint_eq(zp.e820_entries, 5);
    expect_e820(&zp.e820_table[0], 0, 0x9fc00, VMM_E820_RAM);
    expect_e820(&zp.e820_table[1], 0x9fc00, 0x60400, VMM_E820_RESERVED);
    expect_e820(&zp.e820_table[2], 0x100000, 0x1700000, VMM_E820_RAM);
    expect_e820(&zp.e820_table[3], 0x1800000, 0x10000, VMM_E820_RESERVED);
    expect_e820(&zp.e820_table[4], 0x1810000, RAM_SIZE - 0x1810000, VMM_E820_RAM);
    /* nothing past the zero page */
    ck_assert_uint_eq(ram[VMM_X86_ZERO_PAGE + 4096], CANARY);
    free(im.buf);
}
END_TEST

/* Protocol 2.13 has no acpi_rsdp_addr. */
START_TEST(test_zero_page_no_rsdp_before_2_14)
{
    struct test_image im = build_bzimage();
    bz_hdr(&im)->version = 0x020d;
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    b.rsdp_addr = VMM_X86_ACPI_TABLES;
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    struct vmm_linux_boot_params zp = read_zero_page();
    ck_assert_uint_eq(zp.acpi_rsdp_addr, 0);
    ck_assert_uint_eq(zp.hdr.cmd_line_ptr, 0);
    ck_assert_uint_eq(zp.hdr.ramdisk_image, 0);
    ck_assert_uint_eq(zp.hdr.setup_data, 0);
    ck_assert_uint_eq(zp.e820_entries, 3);
    free(im.buf);
}
END_TEST

START_TEST(test_zero_page_vmlinux)
{
    struct test_image im = build_vmlinux(8, VL_PHYS);
    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .no_pvh = true};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "root=/dev/vda", &b), 0);
    b.rsdp_addr = 0xe0000;
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    struct vmm_linux_boot_params zp = read_zero_page();
    ck_assert_uint_eq(zp.hdr.header, VMM_LINUX_HDR_MAGIC);
    ck_assert_uint_eq(zp.hdr.boot_flag, VMM_LINUX_BOOT_FLAG);
    ck_assert_uint_eq(zp.hdr.type_of_loader, 0xff);
    ck_assert_uint_eq(zp.hdr.loadflags, VMM_LINUX_LOADED_HIGH);
    ck_assert_uint_eq(zp.hdr.cmd_line_ptr, VMM_X86_CMDLINE);
    ck_assert_uint_eq(zp.acpi_rsdp_addr, 0xe0000);
    ck_assert_uint_eq(zp.e820_entries, 3);
    free(im.buf);
}
END_TEST

/* ---- PVH start info ---- */

START_TEST(test_pvh_start_info)
{
    struct test_image im = build_vmlinux(4, VL_PHYS);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    unsigned char rd[4096 * 3];
    fill_initrd(rd, sizeof(rd));
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, sizeof(rd), NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "console=hvc0", &b), 0);
    b.rsdp_addr = VMM_X86_ACPI_TABLES;
    ck_assert_int_eq(vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, "x", 1, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    ck_assert_uint_eq(b.params_addr, VMM_X86_PVH_INFO);

    struct vmm_hvm_start_info si;
    memcpy(&si, ram + VMM_X86_PVH_INFO, sizeof(si));
    ck_assert_uint_eq(si.magic, VMM_HVM_START_MAGIC);
    ck_assert_uint_eq(si.version, 1);
    ck_assert_uint_eq(si.flags, 0);
    ck_assert_uint_eq(si.cmdline_paddr, VMM_X86_CMDLINE);
    ck_assert_str_eq((char *)ram + si.cmdline_paddr, "console=hvc0");
    ck_assert_uint_eq(si.rsdp_paddr, VMM_X86_ACPI_TABLES);
    ck_assert_uint_eq(si.nr_modules, 1);
    ck_assert_uint_eq(si.modlist_paddr, VMM_LINUX_PVH_MODLIST);
    struct vmm_hvm_modlist_entry mod;
    memcpy(&mod, ram + si.modlist_paddr, sizeof(mod));
    ck_assert_uint_eq(mod.paddr, b.initrd_addr);
    ck_assert_uint_eq(mod.size, sizeof(rd));
    ck_assert_uint_eq(mod.cmdline_paddr, 0);
    ck_assert_mem_eq(ram + mod.paddr, rd, sizeof(rd));
    ck_assert_uint_eq(si.memmap_paddr, VMM_X86_PVH_MEMMAP);
    ck_assert_uint_eq(si.memmap_entries, 3);
    struct vmm_hvm_memmap_entry mm[3];
    memcpy(mm, ram + si.memmap_paddr, sizeof(mm));
    ck_assert(mm[0].addr == 0 && mm[0].size == 0x9fc00 && mm[0].type == VMM_E820_RAM);
    ck_assert(mm[1].addr == 0x9fc00 && mm[1].size == 0x60400 && mm[1].type == VMM_E820_RESERVED);
    ck_assert(mm[2].addr == 0x100000 && mm[2].size == RAM_SIZE - 0x100000 &&
              mm[2].type == VMM_E820_RAM);
    ck_assert_uint_eq(mm[2].reserved, 0);
    free(im.buf);
}
END_TEST

START_TEST(test_pvh_no_initrd_no_cmdline)
{
    struct test_image im = build_vmlinux(4, VL_PHYS);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    struct vmm_hvm_start_info si;
    memcpy(&si, ram + VMM_X86_PVH_INFO, sizeof(si));
    ck_assert_uint_eq(si.nr_modules, 0);
    ck_assert_uint_eq(si.modlist_paddr, 0);
    ck_assert_uint_eq(si.cmdline_paddr, 0);
    ck_assert_uint_eq(si.rsdp_paddr, 0);
    free(im.buf);
}
END_TEST

START_TEST(test_params_need_kernel)
{
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), -EINVAL);
    check_reason(&b);
    struct vmm_x86_linux_entry e = VMM_INIT(struct vmm_x86_linux_entry);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
    ck_assert(ram_untouched());
}
END_TEST

/* ---- the entry description ---- */

/* Every protocol's entry, described without a vCPU: the 64-bit protocol
 * enters at the kernel's 64-bit entry with the zero page, PVH at the note's
 * 32-bit entry with the start info; no stack either way. */
START_TEST(test_entry_description)
{
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    struct vmm_x86_linux_entry e;

    struct test_image im = build_bzimage();
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    e = VMM_INIT(struct vmm_x86_linux_entry);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL); /* no parameters yet */
    ck_assert_uint_eq(e.mode, VMM_X86_LINUX_ENTRY_NONE);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), 0);
    ck_assert_uint_eq(e.size, sizeof(e));
    ck_assert_uint_eq(e.mode, VMM_X86_LINUX_ENTRY_64);
    ck_assert_uint_eq(e.entry, b.entry);
    ck_assert_uint_eq(e.entry, b.kernel_low + 0x200);
    ck_assert_uint_eq(e.params, VMM_X86_ZERO_PAGE);
    ck_assert_uint_eq(e.stack, 0);
    free(im.buf);

    im = build_vmlinux(4, VL_PHYS);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), 0);
    ck_assert_uint_eq(e.mode, VMM_X86_LINUX_ENTRY_PVH);
    ck_assert_uint_eq(e.entry, VL_PVH_ENTRY);
    ck_assert_uint_eq(e.params, VMM_X86_PVH_INFO);
    ck_assert_uint_eq(e.stack, 0);

    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .no_pvh = true};
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), 0);
    ck_assert_uint_eq(e.mode, VMM_X86_LINUX_ENTRY_64);
    ck_assert_uint_eq(e.entry, VL_PHYS);
    ck_assert_uint_eq(e.params, VMM_X86_ZERO_PAGE);
    free(im.buf);
}
END_TEST

/* Descriptions the loader cannot give, and the growth convention: a size the
 * library does not know is refused with nothing written, an older (smaller)
 * struct gets its first .size bytes only. */
START_TEST(test_entry_description_refused)
{
    struct vmm_linux_boot b = {.size = sizeof(struct vmm_linux_boot),
                               .protocol = VMM_LINUX_BOOT_PVH,
                               .entry = VL_PHYS,
                               .pvh_entry = (uint32_t)VL_PVH_ENTRY,
                               .params_addr = VMM_X86_PVH_INFO};
    struct vmm_x86_linux_entry e = VMM_INIT(struct vmm_x86_linux_entry);
    ck_assert_int_eq(vmm_linux_get_entry(NULL, &e), -EINVAL);
    ck_assert_int_eq(vmm_linux_get_entry(&b, NULL), -EINVAL);

    struct vmm_x86_linux_entry fill;
    memset(&fill, 0xa5, sizeof(fill));
    fill.size = sizeof(fill) + 8;
    ck_assert_int_eq(vmm_linux_get_entry(&b, &fill), -EINVAL);
    ck_assert_uint_eq(fill.mode, 0xa5a5a5a5u);
    fill.size = 0;
    ck_assert_int_eq(vmm_linux_get_entry(&b, &fill), -EINVAL);
    ck_assert_uint_eq(fill.mode, 0xa5a5a5a5u);
    fill.size = offsetof(struct vmm_x86_linux_entry, params);
    ck_assert_int_eq(vmm_linux_get_entry(&b, &fill), 0);
    ck_assert_uint_eq(fill.size, offsetof(struct vmm_x86_linux_entry, params));
    ck_assert_uint_eq(fill.mode, VMM_X86_LINUX_ENTRY_PVH);
    ck_assert_uint_eq(fill.entry, VL_PVH_ENTRY);
    ck_assert_uint_eq(fill.params, 0xa5a5a5a5a5a5a5a5ull); /* past .size: untouched */

    b.pvh_entry = 0; /* PVH without its entry */
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
    b.pvh_entry = (uint32_t)VL_PVH_ENTRY;
    b.params_addr = 0x100000000ull; /* EBX cannot hold it */
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
    b.params_addr = 0; /* no parameters written */
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
    b.protocol = VMM_LINUX_BOOT_NONE;
    b.params_addr = VMM_X86_ZERO_PAGE;
    ck_assert_int_eq(vmm_linux_get_entry(&b, &e), -EINVAL);
    ck_assert_uint_eq(e.mode, VMM_X86_LINUX_ENTRY_NONE);
    ck_assert(ram_untouched());
}
END_TEST

/* Memory with no RAM at the zero page: -EFAULT, nothing written. */
START_TEST(test_params_no_low_ram)
{
    struct vmm_memory *m2;
    ck_assert_int_eq(vmm_memory_create(&m2), 0);
    ck_assert_int_ge(vmm_memory_add_external(m2, 0x100000, RAM_SIZE - 0x100000, ram + 0x100000), 0);
    struct vmm_linux_boot b = {.size = sizeof(struct vmm_linux_boot),
                               .format = VMM_KERNEL_ELF,
                               .protocol = VMM_LINUX_BOOT_64};
    ck_assert_int_eq(vmm_linux_write_params(m2, NULL, &b), -EFAULT);
    check_reason(&b);
    b.protocol = VMM_LINUX_BOOT_PVH;
    ck_assert_int_eq(vmm_linux_write_params(m2, NULL, &b), -EFAULT);
    ck_assert_int_eq(vmm_linux_set_cmdline(m2, "x", &b), -EFAULT);
    ck_assert_int_eq(vmm_linux_add_setup_data(m2, 2, "x", 1, &VMM_INIT(struct vmm_linux_boot)),
                     -EFAULT);
    vmm_memory_destroy(m2);
    ck_assert(ram_untouched());
}
END_TEST

/* ---- the one-call helper ---- */

START_TEST(test_boot_setup)
{
    struct test_image im = build_bzimage();
    unsigned char rd[4096];
    fill_initrd(rd, sizeof(rd));
    const char dtb[] = "fake device tree";
    struct vmm_linux_config cfg = {.size = sizeof(struct vmm_linux_config),
                                   .kernel = im.buf,
                                   .kernel_size = im.size,
                                   .initrd = rd,
                                   .initrd_size = sizeof(rd),
                                   .cmdline = "console=ttyS0",
                                   .rsdp_addr = 0xe0000,
                                   .dtb = dtb,
                                   .dtb_size = sizeof(dtb)};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    ck_assert_str_eq(b.error, "");
    struct vmm_linux_boot_params zp = read_zero_page();
    ck_assert_uint_eq(zp.hdr.ramdisk_image, b.initrd_addr);
    ck_assert_uint_eq(zp.hdr.cmd_line_ptr, VMM_X86_CMDLINE);
    ck_assert_uint_eq(zp.hdr.setup_data, VMM_X86_SETUP_DATA);
    ck_assert_uint_eq(zp.acpi_rsdp_addr, 0xe0000);
    struct vmm_setup_data sd;
    memcpy(&sd, ram + VMM_X86_SETUP_DATA, sizeof(sd));
    ck_assert_uint_eq(sd.type, VMM_SETUP_DTB);
    ck_assert_uint_eq(sd.len, sizeof(dtb));
    free(im.buf);

    /* PVH kernel with a device tree: refused with a hint */
    im = build_vmlinux(4, VL_PHYS);
    cfg.kernel = im.buf;
    cfg.kernel_size = im.size;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
    ck_assert_ptr_nonnull(strstr(b.error, "no_pvh"));
    struct vmm_kernel_options no_pvh = VMM_INIT(struct vmm_kernel_options, .no_pvh = true);
    cfg.kernel_opts = &no_pvh;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    cfg.kernel_opts = NULL;
    cfg.dtb = NULL;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_PVH);
    ck_assert_uint_eq(b.params_addr, VMM_X86_PVH_INFO);

    /* argument mistakes */
    cfg.kernel_path = "/nonexistent";
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
    cfg.kernel_path = NULL;
    cfg.initrd_path = "/nonexistent";
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
    cfg.initrd = NULL;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -ENOENT);
    ck_assert_ptr_nonnull(strstr(b.error, "/nonexistent"));
    ck_assert_int_eq(vmm_linux_boot_setup(mem, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, NULL), -EINVAL);
    free(im.buf);
}
END_TEST

/* The machine given only in kernel_opts is used by every step: the initrd
 * keeps clear of its reserved range and the e820 map lists it. */
START_TEST(test_boot_setup_kernel_opts_machine)
{
    struct test_image im = build_bzimage();
    unsigned char rd[4096];
    fill_initrd(rd, sizeof(rd));
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = mem, .nr_reserved = 1};
    const uint64_t rsv = RAM_SIZE - 0x100000;
    m.reserved[0] = (struct vmm_machine_range){rsv, 0x100000};
    struct vmm_linux_config cfg = {.size = sizeof(struct vmm_linux_config),
                                   .kernel = im.buf,
                                   .kernel_size = im.size,
                                   .initrd = rd,
                                   .initrd_size = sizeof(rd),
                                   .kernel_opts = &(struct vmm_kernel_options){
                                       .size = sizeof(struct vmm_kernel_options), .machine = &m}};
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    ck_assert_uint_le(b.initrd_addr + b.initrd_size, rsv);
    ck_assert_uint_eq(ram[rsv], CANARY);
    struct vmm_linux_boot_params zp = read_zero_page();
    bool listed = false;
    for (unsigned i = 0; i < zp.e820_entries; i++) {
        const struct vmm_e820_entry *e = &zp.e820_table[i];
        if (e->addr == rsv && e->size == 0x100000 && e->type == VMM_E820_RESERVED)
            listed = true;
        if (e->type == VMM_E820_RAM)
            ck_assert(e->addr + e->size <= rsv || e->addr >= RAM_SIZE);
    }
    ck_assert(listed);

    /* A machine over other memory than the one given: refused. */
    struct vmm_memory *m2;
    ck_assert_int_eq(vmm_memory_create(&m2), 0);
    m.mem = m2;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), -EINVAL);
    check_reason(&b);
    vmm_memory_destroy(m2);
    free(im.buf);
}
END_TEST

/* ---- files ---- */

static char tmpdir[PATH_MAX];

static void file_setup(void)
{
    setup();
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(tmpdir, sizeof(tmpdir), "vmm-linux-test-")));
}

static void file_teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    teardown();
}

static void write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, size), (ssize_t)size);
    close(fd);
}

START_TEST(test_file_kernels)
{
    char path[PATH_MAX];
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    struct test_image im = build_bzimage();
    vmm_test_path(path, sizeof(path), tmpdir, "bzImage");
    write_file(path, im.buf, im.size);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), 0);
    ck_assert_uint_eq(b.entry, BZ_PREF + 0x200);
    for (uint64_t j = 0; j < BZ_KSIZE; j++)
        ck_assert_uint_eq(ram[BZ_PREF + j], bz_byte(j));
    free(im.buf);

    im = build_vmlinux(8, VL_VIRT);
    vmm_test_path(path, sizeof(path), tmpdir, "vmlinux");
    write_file(path, im.buf, im.size);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), 0);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_PVH);
    ck_assert_uint_eq(b.entry, VL_PHYS);
    ck_assert_uint_eq(b.pvh_entry, VL_PVH_ENTRY);
    for (uint64_t j = 0; j < VL_DATA_MEM; j++)
        ck_assert_uint_eq(ram[VL_DATA_PHYS + j], j < VL_DATA_FILE ? vl_byte(1, j) : 0);
    free(im.buf);
}
END_TEST

START_TEST(test_file_hostile)
{
    char path[PATH_MAX];
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    struct test_image im = build_bzimage();
    bz_syssize_past_end(&im);
    vmm_test_path(path, sizeof(path), tmpdir, "bad");
    write_file(path, im.buf, im.size);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -EINVAL);
    ck_assert_ptr_nonnull(strstr(b.error, "syssize"));
    free(im.buf);

    im = build_vmlinux(8, VL_PHYS);
    vl_note_runs_past(&im);
    write_file(path, im.buf, im.size);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -EINVAL);
    check_reason(&b);
    free(im.buf);

    vmm_test_path(path, sizeof(path), tmpdir, "missing");
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -ENOENT);
    ck_assert_ptr_nonnull(strstr(b.error, "missing"));
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, tmpdir, NULL, &b), -EISDIR);
    vmm_test_path(path, sizeof(path), tmpdir, "empty");
    write_file(path, "", 0);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_load_initrd_file(mem, path, NULL, &b), -EINVAL);
    vmm_test_path(path, sizeof(path), tmpdir, "fifo");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_linux_load_initrd_file(mem, path, NULL, &b), -EINVAL);

    /* a bzImage bigger than guest memory (sparse file) */
    im = build_bzimage();
    vmm_test_path(path, sizeof(path), tmpdir, "huge");
    write_file(path, im.buf, im.size);
    ck_assert_int_eq(truncate(path, RAM_SIZE + 1), 0);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), -EFBIG);
    ck_assert_int_eq(vmm_linux_load_initrd_file(mem, path, NULL, &b), -EFBIG);
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

START_TEST(test_file_initrd)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "initrd");
    size_t n = 3 * 4096 + 17;
    unsigned char *rd = malloc(n);
    fill_initrd(rd, n);
    write_file(path, rd, n);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_initrd_file(mem, path, NULL, &b), 0);
    ck_assert_uint_eq(b.initrd_size, n);
    ck_assert_uint_eq(b.initrd_addr, (RAM_SIZE - n) & ~0xfffull);
    ck_assert_mem_eq(ram + b.initrd_addr, rd, n);
    free(rd);
}
END_TEST

/* A file image straddling two adjacent regions is read into both. */
START_TEST(test_file_across_regions)
{
    vmm_memory_destroy(mem);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, VL_PHYS + 0x1000, ram), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, VL_PHYS + 0x1000, RAM_SIZE - VL_PHYS - 0x1000,
                                             ram + VL_PHYS + 0x1000),
                     0);
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "vmlinux");
    struct test_image im = build_vmlinux(0, VL_PHYS);
    write_file(path, im.buf, im.size);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, NULL, &b), 0);
    for (uint64_t j = 0; j < VL_TEXT; j++)
        ck_assert_uint_eq(ram[VL_PHYS + j], vl_byte(0, j));
    free(im.buf);
}
END_TEST

static Suite *linux_suite(void)
{
    Suite *s = suite_create("linux");
    /* Every test fills and scans 32 MiB of guest RAM (ASan makes that slow
     * on a loaded machine); the file tests also write files and run rm. */
    TCase *tc = tcase_create("kernel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_detect);
    tcase_add_test(tc, test_bzimage_good);
    tcase_add_test(tc, test_structs_check_their_size);
    tcase_add_test(tc, test_bzimage_setup_sects_zero);
    tcase_add_test(tc, test_bzimage_relocated_past_reserved);
    tcase_add_test(tc, test_bzimage_relocated_next_region);
    tcase_add_test(tc, test_bzimage_load_addr_option);
    tcase_add_test(tc, test_bzimage_load_below_pref);
    tcase_add_test(tc, test_bzimage_not_relocatable);
    tcase_add_loop_test(tc, test_bzimage_hostile, 0, (int)(sizeof(bz_cases) / sizeof(bz_cases[0])));
    tcase_add_test(tc, test_bzimage_old_protocol_reason);
    tcase_add_test(tc, test_not_a_kernel);
    tcase_add_test(tc, test_vmlinux_64bit);
    tcase_add_test(tc, test_vmlinux_pvh);
    tcase_add_loop_test(tc, test_vmlinux_hostile, 0, (int)(sizeof(vl_cases) / sizeof(vl_cases[0])));
    tcase_add_test(tc, test_vmlinux_no_pvh_ignores_note);
    tcase_add_test(tc, test_vmlinux_reserved_overlap);
    suite_add_tcase(s, tc);

    tc = tcase_create("boot");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_initrd_highest);
    tcase_add_test(tc, test_initrd_addr_max_and_kernel);
    tcase_add_test(tc, test_initrd_refused);
    tcase_add_test(tc, test_cmdline);
    tcase_add_test(tc, test_setup_data);
    tcase_add_test(tc, test_e820_simple);
    tcase_add_test(tc, test_e820_machine);
    tcase_add_test(tc, test_e820_too_many);
    tcase_add_test(tc, test_zero_page_bzimage);
    tcase_add_test(tc, test_zero_page_no_rsdp_before_2_14);
    tcase_add_test(tc, test_zero_page_vmlinux);
    tcase_add_test(tc, test_pvh_start_info);
    tcase_add_test(tc, test_pvh_no_initrd_no_cmdline);
    tcase_add_test(tc, test_params_need_kernel);
    tcase_add_test(tc, test_params_no_low_ram);
    tcase_add_test(tc, test_entry_description);
    tcase_add_test(tc, test_entry_description_refused);
    tcase_add_test(tc, test_boot_setup);
    tcase_add_test(tc, test_boot_setup_kernel_opts_machine);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, file_setup, file_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_file_kernels);
    tcase_add_test(tc, test_file_hostile);
    tcase_add_test(tc, test_file_initrd);
    tcase_add_test(tc, test_file_across_regions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(linux_suite());
}
