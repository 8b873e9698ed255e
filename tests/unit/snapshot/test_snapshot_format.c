/* SPDX-License-Identifier: Apache-2.0 */
/* The state file format: sections round-trip; a corrupt byte anywhere, a
 * truncated file, another magic or version, and malformed sections are
 * refused; readers never read past a section; the CRC is CRC-32/IEEE; the
 * CPUID host check names what a host lacks. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check_compat.h"
#include "cpu/x86_64/arch.h"
#include "snapshot/snapshot_internal.h"

#define TAG_A SNAP_TAG('T', 'S', 'T', 'A')
#define TAG_B SNAP_TAG('T', 'S', 'T', 'B')

/* A file with two sections: A/1 holds a u32, a u64 and 3 bytes; B/7 is empty. */
static uint8_t *build(size_t *size)
{
    struct vmm_snap_writer w;
    snap_writer_init(&w);
    snap_section_begin(&w, TAG_A, 1);
    snap_put_u32(&w, 0xdeadbeef);
    snap_put_u64(&w, 0x0123456789abcdefull);
    snap_put(&w, "xyz", 3);
    snap_section_begin(&w, TAG_B, 7); /* closes A */
    uint8_t *f = snap_file_build(&w, size);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(w.err, 0);
    snap_writer_fini(&w);
    return f;
}

static int parse_copy(const uint8_t *data, size_t size, struct vmm_snap_file *f, char *why)
{
    uint8_t *copy = malloc(size + 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, size);
    return snap_file_parse(copy, size, f, why, 128);
}

START_TEST(sections_round_trip)
{
    size_t size;
    uint8_t *data = build(&size);
    ck_assert_uint_eq(size % 8, 0);
    struct vmm_snap_file f;
    char why[128];
    ck_assert_int_eq(parse_copy(data, size, &f, why), 0);
    ck_assert_uint_eq(f.count, 2);

    struct vmm_snap_reader r;
    uint32_t u32;
    uint64_t u64;
    char three[3];
    ck_assert_int_eq(snap_file_find(&f, TAG_A, 1, &r), 0);
    ck_assert_int_eq(snap_get_u32(&r, &u32), 0);
    ck_assert_uint_eq(u32, 0xdeadbeef);
    ck_assert_int_eq(snap_done(&r), -EBADMSG); /* not read to its end yet */
    ck_assert_int_eq(snap_get_u64(&r, &u64), 0);
    ck_assert_uint_eq(u64, 0x0123456789abcdefull);
    /* Asking for more than the section has reads nothing. */
    char four[4];
    ck_assert_int_eq(snap_get(&r, four, sizeof(four)), -EBADMSG);
    ck_assert_int_eq(snap_get(&r, three, sizeof(three)), 0);
    ck_assert_int_eq(memcmp(three, "xyz", 3), 0);
    ck_assert_int_eq(snap_done(&r), 0);
    ck_assert_int_eq(snap_get_u32(&r, &u32), -EBADMSG);

    ck_assert_int_eq(snap_file_find(&f, TAG_B, 7, &r), 0);
    ck_assert_uint_eq(r.left, 0);
    ck_assert_int_eq(snap_file_find(&f, TAG_B, 8, &r), -ENOENT);
    ck_assert_int_eq(snap_file_find(&f, TAG_A, 7, &r), -ENOENT);
    snap_file_free(&f);
    free(data);
}
END_TEST

/* Every single flipped bit of the file is caught. */
START_TEST(any_corrupt_byte_is_refused)
{
    size_t size;
    uint8_t *data = build(&size);
    for (size_t i = 0; i < size; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            data[i] ^= (uint8_t)(1u << bit);
            struct vmm_snap_file f;
            char why[128];
            int r = parse_copy(data, size, &f, why);
            /* A flip in the version field reads as another version. */
            ck_assert_msg(r == -EBADMSG || (r == -EPROTO && i >= 8 && i < 12),
                          "byte %zu bit %u: %d", i, bit, r);
            data[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(data);
}
END_TEST

START_TEST(truncated_or_extended_files_are_refused)
{
    size_t size;
    uint8_t *data = build(&size);
    struct vmm_snap_file f;
    char why[128];
    for (size_t len = 0; len < size; len++)
        ck_assert_int_eq(parse_copy(data, len, &f, why), -EBADMSG);
    uint8_t *longer = calloc(1, size + 8);
    memcpy(longer, data, size);
    ck_assert_int_eq(parse_copy(longer, size + 8, &f, why), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(why, "trailing"));
    free(longer);
    free(data);
}
END_TEST

/* Rewrite the header's version and its CRC, as a newer writer would. */
static void set_version(uint8_t *data, uint32_t version)
{
    memcpy(data + 8, &version, 4);
    uint32_t hcrc = snap_crc32(0, data, 28);
    memcpy(data + 28, &hcrc, 4);
}

START_TEST(other_versions_and_magics_are_refused)
{
    size_t size;
    uint8_t *data = build(&size);
    struct vmm_snap_file f;
    char why[128];
    set_version(data, SNAP_VERSION + 1);
    ck_assert_int_eq(parse_copy(data, size, &f, why), -EPROTO);
    ck_assert_ptr_nonnull(strstr(why, "version 2"));
    set_version(data, 0);
    ck_assert_int_eq(parse_copy(data, size, &f, why), -EPROTO);
    set_version(data, SNAP_VERSION);
    ck_assert_int_eq(parse_copy(data, size, &f, why), 0);
    snap_file_free(&f);
    data[0] = 'l';
    ck_assert_int_eq(parse_copy(data, size, &f, why), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(why, "magic"));
    free(data);
}
END_TEST

/* Frame a hand-made body as a file with valid CRCs. */
static uint8_t *frame(const void *body, size_t len, size_t *size)
{
    *size = SNAP_HEADER_SIZE + len;
    uint8_t *out = malloc(*size);
    uint32_t version = SNAP_VERSION, hsize = SNAP_HEADER_SIZE;
    uint64_t blen = len;
    uint32_t crc = snap_crc32(0, body, len);
    memcpy(out, SNAP_MAGIC, 8);
    memcpy(out + 8, &version, 4);
    memcpy(out + 12, &hsize, 4);
    memcpy(out + 16, &blen, 8);
    memcpy(out + 24, &crc, 4);
    uint32_t hcrc = snap_crc32(0, out, 28);
    memcpy(out + 28, &hcrc, 4);
    memcpy(out + SNAP_HEADER_SIZE, body, len);
    return out;
}

/* Bodies with valid checksums whose sections lie: a length past the end,
 * one that would wrap, a duplicate, a header cut short. */
START_TEST(malformed_sections_are_refused)
{
    struct {
        uint32_t tag, instance;
        uint64_t len;
        uint8_t payload[8];
        uint32_t tag2, instance2;
        uint64_t len2;
    } body = {TAG_A, 0, 8, {0}, TAG_A, 0, 0};
    size_t size;
    struct vmm_snap_file f;
    char why[128];
    uint8_t *file = frame(&body, sizeof(body), &size);
    ck_assert_int_eq(snap_file_parse(file, size, &f, why, sizeof(why)), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(why, "twice"));

    body.instance2 = 1;
    file = frame(&body, sizeof(body), &size);
    ck_assert_int_eq(snap_file_parse(file, size, &f, why, sizeof(why)), 0);
    snap_file_free(&f);

    body.len = 9; /* runs into the next header, whose padding then runs out */
    file = frame(&body, sizeof(body), &size);
    ck_assert_int_eq(snap_file_parse(file, size, &f, why, sizeof(why)), -EBADMSG);
    body.len = UINT64_MAX - 4;
    file = frame(&body, sizeof(body), &size);
    ck_assert_int_eq(snap_file_parse(file, size, &f, why, sizeof(why)), -EBADMSG);
    body.len = 8;
    file = frame(&body, sizeof(body) - 4, &size); /* the second header cut short */
    ck_assert_int_eq(snap_file_parse(file, size, &f, why, sizeof(why)), -EBADMSG);
}
END_TEST

START_TEST(crc32_is_ieee)
{
    ck_assert_uint_eq(snap_crc32(0, "123456789", 9), 0xcbf43926u);
    ck_assert_uint_eq(snap_crc32(snap_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
    ck_assert_uint_eq(snap_crc32(0, "", 0), 0);
}
END_TEST

START_TEST(cpuid_host_check_names_what_is_missing)
{
    struct kvm_cpuid2 *host = calloc(1, sizeof(*host) + 2 * sizeof(struct kvm_cpuid_entry2));
    host->nent = 2;
    host->entries[0] = (struct kvm_cpuid_entry2){.function = 1, .ecx = 0x00000201, .edx = 0xff};
    host->entries[1] = (struct kvm_cpuid_entry2){
        .function = 7, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 0x10};
    struct kvm_cpuid_entry2 guest[2] = {
        /* hypervisor, OSXSAVE and HTT are not host features */
        {.function = 1, .ecx = 0x00000201 | (1u << 31) | (1u << 27), .edx = 0xff | (1u << 28)},
        {.function = 7, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 0x10},
    };
    char why[160];
    ck_assert_int_eq(vmm_x86_cpuid_host_check(guest, 2, host, why, sizeof(why)), 0);
    guest[1].ebx |= 0x20; /* AVX2-ish: the host lacks it */
    ck_assert_int_eq(vmm_x86_cpuid_host_check(guest, 2, host, why, sizeof(why)), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(why, "leaf 0x7.0 ebx bits 0x00000020"));
    guest[1].ebx = 0x10;
    guest[0].ecx |= 1u << 5; /* a leaf-1 feature */
    ck_assert_int_eq(vmm_x86_cpuid_host_check(guest, 2, host, why, sizeof(why)), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(why, "leaf 0x1.0 ecx"));
    free(host);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("snapshot_format");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, sections_round_trip);
    tcase_add_test(tc, any_corrupt_byte_is_refused);
    tcase_add_test(tc, truncated_or_extended_files_are_refused);
    tcase_add_test(tc, other_versions_and_magics_are_refused);
    tcase_add_test(tc, malformed_sections_are_refused);
    tcase_add_test(tc, crc32_is_ieee);
    tcase_add_test(tc, cpuid_host_check_names_what_is_missing);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
