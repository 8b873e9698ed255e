/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the function-VM message encoding: round trips of every value
 * type, the exact wire layout, and every malformed message a guest could hand
 * over being refused; the host-function reply builder. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <vmm/function.h>

#include "check_compat.h"
#include "function/function_internal.h"

static uint8_t buf[4096];

START_TEST(round_trip_every_type)
{
    static const char text[] = "hello, function";
    uint8_t bin[13];
    for (unsigned i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(0xf0 + i);
    struct vmm_fn_val in[] = {
        VMM_FN_INT_VAL(0),
        VMM_FN_INT_VAL(-1),
        VMM_FN_INT_VAL(INT64_MIN),
        VMM_FN_INT_VAL(INT64_MAX),
        VMM_FN_BYTES_VAL(text, sizeof(text) - 1),
        VMM_FN_BYTES_VAL(NULL, 0),
        VMM_FN_BYTES_VAL(bin, sizeof(bin)),
    };
    unsigned n = sizeof(in) / sizeof(in[0]);
    int size = vmm_fn_encode(buf, sizeof(buf), in, n);
    ck_assert_int_gt(size, 0);
    ck_assert_int_eq(size % 8, 0);
    struct vmm_fn_val out[16];
    ck_assert_int_eq(vmm_fn_decode(buf, (size_t)size, out, 16), (int)n);
    for (unsigned i = 0; i < n; i++) {
        ck_assert_uint_eq(out[i].type, in[i].type);
        ck_assert_uint_eq(out[i].len, in[i].type == VMM_FN_INT ? 8 : in[i].len);
        if (in[i].type == VMM_FN_INT)
            ck_assert_int_eq(out[i].i, in[i].i);
        else if (in[i].len)
            ck_assert_mem_eq(out[i].data, in[i].data, in[i].len);
    }
    /* An empty message is a valid one. */
    ck_assert_int_eq(vmm_fn_encode(buf, sizeof(buf), NULL, 0), 8);
    ck_assert_int_eq(vmm_fn_decode(buf, 8, out, 16), 0);
}
END_TEST

START_TEST(wire_layout_is_the_documented_one)
{
    struct vmm_fn_val in[] = {VMM_FN_INT_VAL(0x0102030405060708ll), VMM_FN_BYTES_VAL("abc", 3)};
    int size = vmm_fn_encode(buf, sizeof(buf), in, 2);
    /* header 8 + (8 + 8) + (8 + 3 padded to 8) */
    ck_assert_int_eq(size, 40);
    static const uint8_t want[40] = {
        40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 8,   0,   0,   0, 8, 7, 6, 5,
        4,  3, 2, 1, 2, 0, 0, 0, 3, 0, 0, 0, 'a', 'b', 'c', 0, 0, 0, 0, 0,
    };
    ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(encode_refuses_what_does_not_fit_or_is_bad)
{
    struct vmm_fn_val big = VMM_FN_BYTES_VAL(buf, 100);
    static uint8_t small[64];
    ck_assert_int_eq(vmm_fn_encode(small, sizeof(small), &big, 1), -E2BIG);
    /* Exactly full fits. */
    big.len = 64 - 16;
    ck_assert_int_eq(vmm_fn_encode(small, sizeof(small), &big, 1), 64);
    struct vmm_fn_val bad = {.type = 7};
    ck_assert_int_eq(vmm_fn_encode(buf, sizeof(buf), &bad, 1), -EINVAL);
    struct vmm_fn_val nodata = {.type = VMM_FN_BYTES, .len = 4};
    ck_assert_int_eq(vmm_fn_encode(buf, sizeof(buf), &nodata, 1), -EINVAL);
    static struct vmm_fn_val many[VMM_FN_VALUES_MAX + 1];
    for (unsigned i = 0; i <= VMM_FN_VALUES_MAX; i++)
        many[i] = VMM_FN_INT_VAL(i);
    ck_assert_int_eq(vmm_fn_encode(buf, sizeof(buf), many, VMM_FN_VALUES_MAX + 1), -EINVAL);
    ck_assert_int_gt(vmm_fn_encode(buf, sizeof(buf), many, VMM_FN_VALUES_MAX), 0);
}
END_TEST

/* Write a raw message: header then values given as (type, len, payload
 * bytes actually present). */
static size_t put_hdr(uint8_t *p, uint32_t size, uint32_t count)
{
    struct vmm_fn_msg h = {size, count};
    memcpy(p, &h, sizeof(h));
    return sizeof(h);
}

static size_t put_val(uint8_t *p, uint32_t type, uint32_t len)
{
    struct vmm_fn_wire_val w = {type, len};
    memcpy(p, &w, sizeof(w));
    return sizeof(w);
}

START_TEST(decode_refuses_every_malformed_message)
{
    struct vmm_fn_val v[VMM_FN_VALUES_MAX];
    memset(buf, 0, sizeof(buf));
    /* Shorter than a header; a size below the header; a size past the buffer. */
    ck_assert_int_eq(vmm_fn_decode(buf, 7, v, 4), -EPROTO);
    put_hdr(buf, 4, 0);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_hdr(buf, 0xfffffff8u, 0);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_hdr(buf, 16, 0);
    ck_assert_int_eq(vmm_fn_decode(buf, 8, v, 4), -EPROTO);
    /* More values than the ABI allows, than the caller's room. */
    put_hdr(buf, 8, VMM_FN_VALUES_MAX + 1);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, VMM_FN_VALUES_MAX), -EPROTO);
    put_hdr(buf, 8 + 3 * 16, 3);
    for (unsigned i = 0; i < 3; i++)
        put_val(buf + 8 + 16 * i, VMM_FN_INT, 8);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 2), -ENOSPC);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 3), 3);
    /* A count with no room for the value headers. */
    put_hdr(buf, 8 + 16, 2);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    /* An unknown type; an integer that is not 8 bytes. */
    put_hdr(buf, 24, 1);
    put_val(buf + 8, 3, 8);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_val(buf + 8, VMM_FN_INT, 4);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    /* A byte string running past the message, by a little and by a lot
     * (lengths whose padding would overflow 32 bits). */
    put_val(buf + 8, VMM_FN_BYTES, 9);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_val(buf + 8, VMM_FN_BYTES, 0xffffffffu);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_val(buf + 8, VMM_FN_BYTES, 0xfffffff9u);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    /* Padding counts: 7 bytes take 8. */
    put_hdr(buf, 8 + 8 + 7, 1);
    put_val(buf + 8, VMM_FN_BYTES, 7);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    put_hdr(buf, 8 + 8 + 8, 1);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), 1);
    /* Trailing bytes the values do not account for. */
    put_hdr(buf, 8 + 8 + 8 + 8, 1);
    ck_assert_int_eq(vmm_fn_decode(buf, sizeof(buf), v, 4), -EPROTO);
    ck_assert_int_eq(vmm_fn_decode(NULL, 64, v, 4), -EPROTO);
}
END_TEST

/* Every byte string length near the buffer's end decodes or is refused,
 * never read past it (ASan watches the heap copy). */
START_TEST(decode_never_reads_past_the_message)
{
    enum { CAP = 64 };
    uint8_t *m = malloc(CAP);
    ck_assert_ptr_nonnull(m);
    struct vmm_fn_val v[4];
    for (uint32_t len = 0; len < 80; len++) {
        for (uint32_t size = 8; size <= CAP; size += 4) {
            memset(m, 0, CAP);
            put_hdr(m, size, 1);
            put_val(m + 8, VMM_FN_BYTES, len);
            int r = vmm_fn_decode(m, CAP, v, 4);
            uint32_t need = 16 + ((len + 7) & ~7u);
            if (need == size) {
                ck_assert_int_eq(r, 1);
                ck_assert_uint_eq(v[0].len, len);
                ck_assert_ptr_eq(v[0].data, m + 16);
            } else {
                ck_assert_int_eq(r, -EPROTO);
            }
        }
    }
    free(m);
}
END_TEST

START_TEST(reply_builder)
{
    struct vmm_fn_reply r;
    fn_reply_init(&r, buf, 64);
    ck_assert_int_eq(vmm_fn_reply_int(&r, 5), 0);
    ck_assert_int_eq(vmm_fn_reply_bytes(&r, "xy", 2), 0);
    /* 8 + 16 (status) + 16 + 16 = 56: a third result does not fit 64. */
    ck_assert_int_eq(vmm_fn_reply_int(&r, 6), -ENOSPC);
    ck_assert_int_eq(vmm_fn_reply_bytes(&r, NULL, 1), -EINVAL);
    size_t len = fn_reply_finish(&r, 0);
    ck_assert_uint_eq(len, 56);
    struct vmm_fn_val v[4];
    ck_assert_int_eq(vmm_fn_decode(buf, 64, v, 4), 3);
    ck_assert_int_eq(v[0].i, 0);
    ck_assert_int_eq(v[1].i, 5);
    ck_assert_mem_eq(v[2].data, "xy", 2);

    /* A failed host function: only its status reaches the guest. */
    fn_reply_init(&r, buf, 64);
    ck_assert_int_eq(vmm_fn_reply_int(&r, 5), 0);
    len = fn_reply_finish(&r, -ENOENT);
    ck_assert_int_eq(vmm_fn_decode(buf, len, v, 4), 1);
    ck_assert_int_eq(v[0].i, -ENOENT);

    /* The value count limit holds too. */
    static uint8_t large[VMM_FN_HRET_SIZE];
    fn_reply_init(&r, large, sizeof(large));
    for (unsigned i = 1; i < VMM_FN_VALUES_MAX; i++)
        ck_assert_int_eq(vmm_fn_reply_int(&r, i), 0);
    ck_assert_int_eq(vmm_fn_reply_int(&r, 0), -ENOSPC);
    len = fn_reply_finish(&r, 0);
    ck_assert_int_eq(vmm_fn_decode(large, len, NULL, 0), -ENOSPC);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("function_encode");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, round_trip_every_type);
    tcase_add_test(tc, wire_layout_is_the_documented_one);
    tcase_add_test(tc, encode_refuses_what_does_not_fit_or_is_bad);
    tcase_add_test(tc, decode_refuses_every_malformed_message);
    tcase_add_test(tc, decode_never_reads_past_the_message);
    tcase_add_test(tc, reply_builder);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
