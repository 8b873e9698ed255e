/* SPDX-License-Identifier: Apache-2.0 */
/* arm64 Linux on any host: the Image header parser (what boots, and each
 * refusal with its reason) and the loader's placement of kernel, initrd and
 * device tree in guest memory. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/arm64.h>

#include "check_compat.h"

#define RAM_SIZE (64u << 20)

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A synthetic Image of len bytes: header, then a pattern. */
static uint8_t *make_image(size_t len, uint64_t text_offset, uint64_t image_size, uint64_t flags)
{
    uint8_t *k = calloc(1, len);
    ck_assert_ptr_nonnull(k);
    for (size_t i = 64; i < len; i++)
        k[i] = (uint8_t)(i * 7);
    put64(k + 8, text_offset);
    put64(k + 16, image_size);
    put64(k + 24, flags);
    memcpy(k + 56, "ARM\x64", 4);
    return k;
}

START_TEST(parses_a_good_header)
{
    uint8_t *k = make_image(4096, 0x80000, 0x200000, 0xa);
    struct vmm_arm64_image img = VMM_INIT(struct vmm_arm64_image);
    char why[128] = "";
    ck_assert_int_eq(vmm_arm64_image_parse(k, 4096, &img, why, sizeof(why)), 0);
    ck_assert_uint_eq(img.text_offset, 0x80000);
    ck_assert_uint_eq(img.image_size, 0x200000);
    ck_assert_uint_eq(img.flags, 0xa);
    ck_assert_str_eq(why, "");
    free(k);
}
END_TEST

/* Each refusal, with the reason it names. */
START_TEST(refuses_what_cannot_boot)
{
    static const struct {
        size_t len;
        uint64_t text_offset, image_size, flags;
        int corrupt; /* 1: magic, 2: gzip */
        const char *why;
    } cases[] = {
        {63, 0, 0x1000, 0, 0, "shorter than its 64-byte header"},
        {4096, 0, 0x1000, 0, 1, "no \"ARM\\x64\" magic"},
        {4096, 0, 0x1000, 0, 2, "gzip-compressed"},
        {4096, 0, 0x1000, 1, 0, "big-endian"},
        {4096, 0, 0, 0, 0, "image_size 0"},
        {8192, 0, 0x1000, 0, 0, "smaller than the file"},
        {4096, 0x80010, 0x1000, 0, 0, "not 4 KiB aligned"},
        {4096, 0x200000, 0x1000, 0, 0, "not 4 KiB aligned below 2 MiB"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *k = make_image(cases[i].len < 64 ? 64 : cases[i].len, cases[i].text_offset,
                                cases[i].image_size, cases[i].flags);
        if (cases[i].corrupt == 1)
            k[57] = 'X';
        if (cases[i].corrupt == 2) {
            k[0] = 0x1f;
            k[1] = 0x8b;
        }
        struct vmm_arm64_image img = VMM_INIT(struct vmm_arm64_image);
        char why[160] = "";
        ck_assert_int_eq(vmm_arm64_image_parse(k, cases[i].len, &img, why, sizeof(why)), -ENOEXEC);
        ck_assert_msg(strstr(why, cases[i].why), "case %zu: \"%s\" lacks \"%s\"", i, why,
                      cases[i].why);
        ck_assert_ptr_null(strchr(why, '\n'));
        free(k);
    }
}
END_TEST

START_TEST(refuses_bad_arguments)
{
    uint8_t *k = make_image(4096, 0, 0x1000, 0);
    struct vmm_arm64_image img = VMM_INIT(struct vmm_arm64_image);
    ck_assert_int_eq(vmm_arm64_image_parse(NULL, 4096, &img, NULL, 0), -EINVAL);
    ck_assert_int_eq(vmm_arm64_image_parse(k, 4096, NULL, NULL, 0), -EINVAL);
    img.size = 0;
    ck_assert_int_eq(vmm_arm64_image_parse(k, 4096, &img, NULL, 0), -EINVAL);
    /* No room for a reason is fine. */
    img.size = sizeof(img);
    ck_assert_int_eq(vmm_arm64_image_parse(k, 10, &img, NULL, 0), -ENOEXEC);
    free(k);
}
END_TEST

struct ram {
    struct vmm_memory *mem;
    uint8_t *buf;
};

static struct ram ram_at(uint64_t base, size_t size)
{
    struct ram r = {.buf = calloc(1, size)};
    ck_assert_ptr_nonnull(r.buf);
    ck_assert_int_eq(vmm_memory_create(&r.mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(r.mem, base, size, r.buf), 0);
    return r;
}

static void ram_free(struct ram *r)
{
    vmm_memory_destroy(r->mem);
    free(r->buf);
}

START_TEST(loads_kernel_initrd_and_tree)
{
    struct ram r = ram_at(VMM_ARM64_RAM_BASE, RAM_SIZE);
    uint8_t *k = make_image(8192, 0x10000, 0x100000, 0xa);
    uint8_t initrd[5000];
    memset(initrd, 0x5a, sizeof(initrd));
    struct vmm_arm64_machine m =
        VMM_INIT(struct vmm_arm64_machine, .nr_vcpus = 2, .mem = r.mem, .uart = true);
    struct vmm_arm64_linux out = VMM_INIT(struct vmm_arm64_linux);
    char why[160] = "";
    ck_assert_int_eq(vmm_arm64_linux_load(r.mem, &m, k, 8192, initrd, sizeof(initrd), "quiet", &out,
                                          why, sizeof(why)),
                     0);
    ck_assert_uint_eq(out.kernel, VMM_ARM64_RAM_BASE + 0x10000);
    ck_assert_uint_eq(out.kernel_end, out.kernel + 0x100000);
    ck_assert_uint_eq(out.dtb, VMM_ARM64_RAM_BASE + RAM_SIZE - (2u << 20));
    ck_assert_uint_eq(out.initrd, out.dtb - 8192); /* 5000 bytes, page-aligned below */
    ck_assert_uint_eq(out.initrd_size, sizeof(initrd));
    ck_assert_mem_eq(r.buf + 0x10000, k, 8192);
    ck_assert_mem_eq(r.buf + (out.initrd - VMM_ARM64_RAM_BASE), initrd, sizeof(initrd));
    /* The tree's magic, big-endian. */
    const uint8_t *dtb = r.buf + (out.dtb - VMM_ARM64_RAM_BASE);
    ck_assert_uint_eq(dtb[0], 0xd0);
    ck_assert_uint_eq(dtb[1], 0x0d);
    ck_assert_uint_eq(dtb[2], 0xfe);
    ck_assert_uint_eq(dtb[3], 0xed);
    free(k);
    ram_free(&r);
}
END_TEST

START_TEST(refuses_what_does_not_fit)
{
    struct ram r = ram_at(VMM_ARM64_RAM_BASE, 8u << 20);
    struct vmm_arm64_machine m = VMM_INIT(struct vmm_arm64_machine, .nr_vcpus = 1, .mem = r.mem);
    struct vmm_arm64_linux out = VMM_INIT(struct vmm_arm64_linux);
    char why[160] = "";
    /* A kernel of 7 MiB leaves no 2 MiB for the tree in 8 MiB. */
    uint8_t *k = make_image(4096, 0, 7u << 20, 0);
    ck_assert_int_eq(
        vmm_arm64_linux_load(r.mem, &m, k, 4096, NULL, 0, NULL, &out, why, sizeof(why)), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(why, "do not fit"));
    free(k);
    /* An initrd bigger than the room between kernel and tree. */
    k = make_image(4096, 0, 1u << 20, 0);
    size_t ilen = 6u << 20;
    uint8_t *initrd = calloc(1, ilen);
    ck_assert_ptr_nonnull(initrd);
    ck_assert_int_eq(
        vmm_arm64_linux_load(r.mem, &m, k, 4096, initrd, ilen, NULL, &out, why, sizeof(why)),
        -ENOSPC);
    ck_assert_ptr_nonnull(strstr(why, "initrd does not fit"));
    /* The machine must describe the memory loaded into. */
    struct ram other = ram_at(VMM_ARM64_RAM_BASE, 8u << 20);
    ck_assert_int_eq(
        vmm_arm64_linux_load(other.mem, &m, k, 4096, NULL, 0, NULL, &out, why, sizeof(why)),
        -EINVAL);
    /* A vCPU count the layout cannot hold. */
    m.nr_vcpus = VMM_ARM64_MAX_VCPUS + 1;
    ck_assert_int_eq(
        vmm_arm64_linux_load(r.mem, &m, k, 4096, NULL, 0, NULL, &out, why, sizeof(why)), -EINVAL);
    free(initrd);
    free(k);
    ram_free(&other);
    ram_free(&r);
}
END_TEST

static Suite *arm64_suite(void)
{
    Suite *s = suite_create("arm64");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, parses_a_good_header);
    tcase_add_test(tc, refuses_what_cannot_boot);
    tcase_add_test(tc, refuses_bad_arguments);
    tcase_add_test(tc, loads_kernel_initrd_and_tree);
    tcase_add_test(tc, refuses_what_does_not_fit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(arm64_suite());
}
