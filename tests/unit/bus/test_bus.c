/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the PIO/MMIO bus: range claims, dispatch, unclaimed accesses,
 * re-entrancy and unregistering while another thread dispatches. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vmm/bus.h>

#include "check_compat.h"

/* A device that answers reads with (id << 32 | offset) and remembers the
 * last access, so a test can tell which device a dispatch reached and with
 * what offset. */
struct rec_dev {
    uint32_t id;
    unsigned reads;
    unsigned writes;
    uint64_t last_offset;
    uint32_t last_len;
    uint8_t last_data[8];
};

static uint64_t dev_value(uint32_t id, uint64_t offset)
{
    return ((uint64_t)id << 32) | (offset & 0xffffffffu);
}

/* The device the last rec_read/rec_write reached (single-threaded tests). */
static struct rec_dev *last_hit;

static void rec_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct rec_dev *d = opaque;
    last_hit = d;
    ck_assert_uint_ge(len, 1);
    ck_assert_uint_le(len, 8);
    d->reads++;
    d->last_offset = offset;
    d->last_len = len;
    uint64_t v = dev_value(d->id, offset);
    memcpy(data, &v, len);
}

static void rec_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct rec_dev *d = opaque;
    last_hit = d;
    ck_assert_uint_ge(len, 1);
    ck_assert_uint_le(len, 8);
    d->writes++;
    d->last_offset = offset;
    d->last_len = len;
    memset(d->last_data, 0, sizeof(d->last_data));
    memcpy(d->last_data, data, len);
}

static const struct vmm_bus_ops rec_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = rec_read, .write = rec_write};

static struct vmm_bus *new_bus(void)
{
    struct vmm_bus *bus = NULL;
    ck_assert_int_eq(vmm_bus_create("test", &bus), 0);
    ck_assert_ptr_nonnull(bus);
    return bus;
}

static uint64_t read_u64(struct vmm_bus *bus, uint64_t addr, uint32_t len, int *ret)
{
    uint64_t v = 0;
    *ret = vmm_bus_read(bus, addr, (uint8_t *)&v, len);
    return v;
}

/* The id of the rec_dev that a 1-byte read at addr reaches, or -1 when the
 * access is unclaimed (the read then gives all ones). */
static int64_t owner_of(struct vmm_bus *bus, uint64_t addr)
{
    uint8_t v = 0;
    last_hit = NULL;
    int r = vmm_bus_read(bus, addr, &v, 1);
    if (r == -ENOENT) {
        ck_assert_ptr_null(last_hit);
        ck_assert_uint_eq(v, 0xff);
        return -1;
    }
    ck_assert_int_eq(r, 0);
    ck_assert_ptr_nonnull(last_hit);
    ck_assert_uint_eq(v, dev_value(last_hit->id, last_hit->last_offset) & 0xff);
    return last_hit->id;
}

static uint64_t ones(uint32_t len)
{
    return len == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * len)) - 1;
}

START_TEST(test_create_destroy)
{
    struct vmm_bus *bus = NULL;
    ck_assert_int_eq(vmm_bus_create(NULL, &bus), 0);
    vmm_bus_destroy(bus);
    /* A name longer than the internal buffer is truncated, not overrun. */
    ck_assert_int_eq(vmm_bus_create("a-very-long-bus-name-that-does-not-fit-anywhere", &bus), 0);
    vmm_bus_destroy(bus);
    vmm_bus_destroy(NULL);
}
END_TEST

START_TEST(test_dispatch_offsets_and_sizes)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev d = {.id = 7};
    ck_assert_int_eq(vmm_bus_register(bus, 0x1000, 0x100, &rec_ops, &d), 0);

    static const uint32_t sizes[] = {1, 2, 4, 8};
    for (unsigned s = 0; s < 4; s++) {
        uint32_t len = sizes[s];
        int r;
        uint64_t v = read_u64(bus, 0x1010 + len, len, &r);
        ck_assert_int_eq(r, 0);
        ck_assert_uint_eq(d.last_offset, 0x10 + len);
        ck_assert_uint_eq(d.last_len, len);
        ck_assert_uint_eq(v, dev_value(7, 0x10 + len) & ones(len));

        uint64_t w = 0x1122334455667788ull;
        ck_assert_int_eq(vmm_bus_write(bus, 0x10f8, (const uint8_t *)&w, len), 0);
        ck_assert_uint_eq(d.last_offset, 0xf8);
        ck_assert_uint_eq(d.last_len, len);
        uint64_t got = 0;
        memcpy(&got, d.last_data, 8);
        ck_assert_uint_eq(got, w & ones(len));
    }
    ck_assert_uint_eq(d.reads, 4);
    ck_assert_uint_eq(d.writes, 4);

    /* First and last byte of the range; the bytes either side are unclaimed. */
    ck_assert_int_eq(owner_of(bus, 0x1000), 7);
    ck_assert_uint_eq(d.last_offset, 0);
    int r;
    read_u64(bus, 0x10ff, 1, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(d.last_offset, 0xff);
    ck_assert_int_eq(owner_of(bus, 0xfff), -1);
    ck_assert_int_eq(owner_of(bus, 0x1100), -1);

    struct vmm_bus_stats st = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 2);
    ck_assert_uint_eq(st.unclaimed_writes, 0);
    vmm_bus_destroy(bus);
}
END_TEST

/* The growth convention (abi.h) on a stats struct: a size of 0 or past the
 * library's struct is refused with nothing written; an older, shorter one
 * gets its first .size bytes only. */
START_TEST(test_stats_size_checked)
{
    struct vmm_bus *bus;
    ck_assert_int_eq(vmm_bus_create("test", &bus), 0);
    uint8_t b;
    ck_assert_int_eq(vmm_bus_read(bus, 0x10, &b, 1), -ENOENT); /* unclaimed */
    static const uint32_t bad[] = {0, 3, sizeof(struct vmm_bus_stats) + 8, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmm_bus_stats st;
        memset(&st, 0x5a, sizeof(st));
        st.size = bad[i];
        ck_assert_int_eq(vmm_bus_get_stats(bus, &st), -EINVAL);
        ck_assert_uint_eq(st.size, bad[i]);
        ck_assert_uint_eq(st.unclaimed_reads, 0x5a5a5a5a5a5a5a5aull);
    }
    ck_assert_int_eq(vmm_bus_get_stats(bus, NULL), -EINVAL);
    struct vmm_bus_stats st;
    memset(&st, 0x5a, sizeof(st));
    st.size = offsetof(struct vmm_bus_stats, last_unclaimed_addr);
    ck_assert_int_eq(vmm_bus_get_stats(bus, &st), 0);
    ck_assert_uint_eq(st.size, offsetof(struct vmm_bus_stats, last_unclaimed_addr));
    ck_assert_uint_eq(st.unclaimed_reads, 1);
    ck_assert_uint_eq(st.unclaimed_writes, 0);
    ck_assert_uint_eq(st.last_unclaimed_addr, 0x5a5a5a5a5a5a5a5aull); /* past .size */
    vmm_bus_destroy(bus);
}
END_TEST

/* Deterministic generator so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define MANY 1000

START_TEST(test_many_ranges_random_order)
{
    struct vmm_bus *bus = new_bus();
    static struct rec_dev devs[MANY];
    uint64_t base[MANY], len[MANY];
    unsigned order[MANY];
    uint64_t seed = 0x9e3779b97f4a7c15ull;

    /* Ranges of 1..64 bytes separated by gaps of 0..15 bytes: some adjacent. */
    uint64_t at = 0x10000;
    for (unsigned i = 0; i < MANY; i++) {
        at += rng_next(&seed) % 16;
        base[i] = at;
        len[i] = 1 + rng_next(&seed) % 64;
        at += len[i];
        devs[i] = (struct rec_dev){.id = i};
        order[i] = i;
    }
    for (unsigned i = MANY - 1; i > 0; i--) {
        unsigned j = (unsigned)(rng_next(&seed) % (i + 1));
        unsigned t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (unsigned k = 0; k < MANY; k++) {
        unsigned i = order[k];
        ck_assert_int_eq(vmm_bus_register(bus, base[i], len[i], &rec_ops, &devs[i]), 0);
    }

    for (unsigned i = 0; i < MANY; i++) {
        uint64_t probes[3] = {base[i], base[i] + len[i] / 2, base[i] + len[i] - 1};
        for (unsigned p = 0; p < 3; p++) {
            int r;
            uint64_t v = read_u64(bus, probes[p], 1, &r);
            ck_assert_int_eq(r, 0);
            ck_assert_uint_eq(v, dev_value(i, probes[p] - base[i]) & 0xff);
            ck_assert_uint_eq(devs[i].last_offset, probes[p] - base[i]);
            uint8_t w = (uint8_t)i;
            ck_assert_int_eq(vmm_bus_write(bus, probes[p], &w, 1), 0);
            ck_assert_uint_eq(devs[i].last_data[0], (uint8_t)i);
        }
        ck_assert_uint_eq(devs[i].reads, 3);
        ck_assert_uint_eq(devs[i].writes, 3);
        /* A gap byte after this range (if any) is nobody's. */
        if (i + 1 < MANY && base[i] + len[i] < base[i + 1])
            ck_assert_int_eq(owner_of(bus, base[i] + len[i]), -1);
    }
    ck_assert_int_eq(owner_of(bus, base[0] - 1), -1);
    ck_assert_int_eq(owner_of(bus, at), -1);

    /* Drop every other range in random order; the rest still dispatch right. */
    for (unsigned k = 0; k < MANY; k++) {
        unsigned i = order[k];
        if (i % 2)
            ck_assert_int_eq(vmm_bus_unregister(bus, base[i]), 0);
    }
    for (unsigned i = 0; i < MANY; i++) {
        uint64_t mid = base[i] + len[i] / 2;
        if (i % 2) {
            ck_assert_int_eq(owner_of(bus, mid), -1);
        } else {
            ck_assert_int_eq(owner_of(bus, mid), (int64_t)i);
        }
    }
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_adjacent_ranges)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    ck_assert_int_eq(vmm_bus_register(bus, 0x20, 0x10, &rec_ops, &b), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &rec_ops, &a), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x30, 0x10, &rec_ops, &c), 0);
    ck_assert_int_eq(owner_of(bus, 0x1c), 1);
    ck_assert_int_eq(owner_of(bus, 0x20), 2);
    ck_assert_int_eq(owner_of(bus, 0x2c), 2);
    ck_assert_int_eq(owner_of(bus, 0x30), 3);
    ck_assert_int_eq(owner_of(bus, 0x0c), -1);
    ck_assert_int_eq(owner_of(bus, 0x40), -1);

    /* An access straddling two adjacent devices belongs to neither. */
    unsigned before = a.reads + b.reads;
    int r;
    uint64_t v = read_u64(bus, 0x1e, 4, &r);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_uint_eq(v, 0xffffffffu);
    ck_assert_uint_eq(a.reads + b.reads, before);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_overlap_refused)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev a = {.id = 1}, b = {.id = 2}, x = {.id = 9};
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 0x100, &rec_ops, &a), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x400, 0x100, &rec_ops, &b), 0);

    static const struct {
        uint64_t base, len;
    } bad[] = {
        {0x100, 0x100},              /* identical */
        {0x140, 0x10},               /* inside */
        {0x100, 1},                  /* first byte */
        {0x1ff, 1},                  /* last byte */
        {0xf0, 0x11},                /* straddles the start */
        {0x1ff, 0x10},               /* straddles the end */
        {0x0, 0x1000},               /* encloses both */
        {0x80, 0x200},               /* encloses one */
        {0x1f0, 0x220},              /* from inside one into the next */
        {0x200, 0x201},              /* from the gap into the next */
        {0x0, UINT64_MAX},           /* everything but the last byte */
        {0x100, 0x80},               /* same base, shorter */
        {0x100, 0x200},              /* same base, longer */
        {0x3ff, 2},                  /* one byte before, one inside */
        {0x4ff, UINT64_MAX - 0x4ff}, /* last byte to the top of the space */
    };
    for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        ck_assert_msg(vmm_bus_register(bus, bad[k].base, bad[k].len, &rec_ops, &x) == -EEXIST,
                      "overlap %u [0x%llx, +0x%llx) accepted", k, (unsigned long long)bad[k].base,
                      (unsigned long long)bad[k].len);

    /* Refusals left the table as it was. */
    ck_assert_int_eq(owner_of(bus, 0x100), 1);
    ck_assert_int_eq(owner_of(bus, 0x1fc), 1);
    ck_assert_int_eq(owner_of(bus, 0x400), 2);
    ck_assert_int_eq(owner_of(bus, 0x300), -1);
    ck_assert_uint_eq(x.reads, 0);

    /* Touching ranges and the gap between are fine. */
    ck_assert_int_eq(vmm_bus_register(bus, 0xf0, 0x10, &rec_ops, &x), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0xf0), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x200, 0x200, &rec_ops, &x), 0);
    ck_assert_int_eq(owner_of(bus, 0x3fc), 9);
    ck_assert_int_eq(owner_of(bus, 0x1fc), 1);
    ck_assert_int_eq(owner_of(bus, 0x400), 2);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_register_invalid)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev d = {.id = 1};
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 0, &rec_ops, &d), -EINVAL);
    ck_assert_int_eq(vmm_bus_register(bus, UINT64_MAX, 2, &rec_ops, &d), -EINVAL);
    ck_assert_int_eq(vmm_bus_register(bus, UINT64_MAX - 0xf, 0x11, &rec_ops, &d), -EINVAL);
    ck_assert_int_eq(vmm_bus_register(bus, 2, UINT64_MAX, &rec_ops, &d), -EINVAL);
    /* Whereas [1, UINT64_MAX] ends exactly at the top and is fine. */
    ck_assert_int_eq(vmm_bus_register(bus, 1, UINT64_MAX, &rec_ops, &d), 0);
    ck_assert_int_eq(owner_of(bus, UINT64_MAX), 1);
    ck_assert_int_eq(owner_of(bus, 0), -1);
    ck_assert_int_eq(vmm_bus_unregister(bus, 1), 0);
    ck_assert_int_eq(vmm_bus_register(bus, UINT64_MAX, UINT64_MAX, &rec_ops, &d), -EINVAL);
    /* Nothing was claimed by the refused calls. */
    ck_assert_int_eq(owner_of(bus, 0x100), -1);
    ck_assert_int_eq(owner_of(bus, UINT64_MAX - 3), -1);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x100), -ENOENT);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_range_at_top_of_space)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev top = {.id = 5}, all = {.id = 6};
    /* [UINT64_MAX - 0xff, UINT64_MAX]: base + len is 2^64, which is fine. */
    ck_assert_int_eq(vmm_bus_register(bus, UINT64_MAX - 0xff, 0x100, &rec_ops, &top), 0);
    int r;
    read_u64(bus, UINT64_MAX, 1, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(top.last_offset, 0xff);
    uint64_t v = read_u64(bus, UINT64_MAX - 7, 8, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(v, dev_value(5, 0xf8));
    /* A 2-byte access at the last byte would wrap around the address space. */
    v = read_u64(bus, UINT64_MAX, 2, &r);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_uint_eq(v, 0xffff);
    uint8_t w[8] = {0};
    ck_assert_int_eq(vmm_bus_write(bus, UINT64_MAX - 3, w, 8), -EINVAL);
    ck_assert_uint_eq(top.writes, 0);

    /* The rest of the space in one range, adjacent below. */
    ck_assert_int_eq(vmm_bus_register(bus, 0, UINT64_MAX - 0xff, &rec_ops, &all), 0);
    ck_assert_int_eq(owner_of(bus, 0), 6);
    ck_assert_int_eq(owner_of(bus, UINT64_MAX - 0x103), 6);
    ck_assert_int_eq(owner_of(bus, UINT64_MAX - 0xff), 5);
    ck_assert_int_eq(vmm_bus_register(bus, 0x1234, 1, &rec_ops, &all), -EEXIST);
    ck_assert_int_eq(vmm_bus_unregister(bus, UINT64_MAX - 0xff), 0);
    ck_assert_int_eq(owner_of(bus, UINT64_MAX - 3), -1);
    ck_assert_int_eq(vmm_bus_register(bus, UINT64_MAX, 1, &rec_ops, &top), 0);
    read_u64(bus, UINT64_MAX, 1, &r);
    ck_assert_int_eq(r, 0);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_unclaimed_counted)
{
    struct vmm_bus *bus = new_bus();
    struct vmm_bus_stats st = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 0);
    ck_assert_uint_eq(st.unclaimed_writes, 0);

    static const uint32_t sizes[] = {1, 2, 4, 8};
    for (unsigned s = 0; s < 4; s++) {
        uint8_t buf[8];
        memset(buf, 0x5a, sizeof(buf));
        ck_assert_int_eq(vmm_bus_read(bus, 0x80 + s, buf, sizes[s]), -ENOENT);
        for (unsigned k = 0; k < 8; k++)
            ck_assert_uint_eq(buf[k], k < sizes[s] ? 0xff : 0x5a);
    }
    uint8_t w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (unsigned k = 0; k < 20; k++)
        ck_assert_int_eq(vmm_bus_write(bus, 0x1000 + k, w, 2), -ENOENT);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 4);
    ck_assert_uint_eq(st.unclaimed_writes, 20);
    ck_assert_uint_eq(st.last_unclaimed_addr, 0x1000 + 19);

    int r;
    read_u64(bus, UINT64_MAX, 1, &r);
    ck_assert_int_eq(r, -ENOENT);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 5);
    ck_assert_uint_eq(st.last_unclaimed_addr, UINT64_MAX);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_access_runs_off_device)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev d = {.id = 3};
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 4, &rec_ops, &d), 0);

    int r;
    uint64_t v = read_u64(bus, 0x102, 4, &r);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_uint_eq(v, 0xffffffffu);
    v = read_u64(bus, 0x100, 8, &r);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_uint_eq(v, UINT64_MAX);
    uint8_t w[8] = {0};
    ck_assert_int_eq(vmm_bus_write(bus, 0x103, w, 2), -EINVAL);
    ck_assert_uint_eq(d.reads, 0);
    ck_assert_uint_eq(d.writes, 0);

    struct vmm_bus_stats st = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 2);
    ck_assert_uint_eq(st.unclaimed_writes, 1);
    ck_assert_uint_eq(st.last_unclaimed_addr, 0x103);

    /* The in-bounds accesses still work. */
    v = read_u64(bus, 0x100, 4, &r);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(v, dev_value(3, 0) & 0xffffffffu);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_bad_access_length)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev d = {.id = 3};
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 0x100, &rec_ops, &d), 0);
    uint8_t buf[16];
    memset(buf, 0x5a, sizeof(buf));
    static const uint32_t bad[] = {0, 9, 16, UINT32_MAX};
    for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        ck_assert_int_eq(vmm_bus_read(bus, 0x110, buf, bad[k]), -EINVAL);
        ck_assert_int_eq(vmm_bus_write(bus, 0x110, buf, bad[k]), -EINVAL);
    }
    /* Rejected before anything was touched: no device call, buffer intact. */
    ck_assert_uint_eq(d.reads, 0);
    ck_assert_uint_eq(d.writes, 0);
    for (unsigned k = 0; k < sizeof(buf); k++)
        ck_assert_uint_eq(buf[k], 0x5a);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_null_callbacks)
{
    struct vmm_bus *bus = new_bus();
    static const struct vmm_bus_ops none = {.size = sizeof(struct vmm_bus_ops)};
    static const struct vmm_bus_ops read_only = {.size = sizeof(struct vmm_bus_ops),
                                                 .read = rec_read};
    static const struct vmm_bus_ops write_only = {.size = sizeof(struct vmm_bus_ops),
                                                  .write = rec_write};
    struct rec_dev ro = {.id = 1}, wo = {.id = 2};
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &none, NULL), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x20, 0x10, &read_only, &ro), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x30, 0x10, &write_only, &wo), 0);

    int r;
    uint8_t w[4] = {1, 2, 3, 4};
    /* Claimed, so not errors and not counted as unclaimed. */
    ck_assert_uint_eq(read_u64(bus, 0x14, 4, &r), 0xffffffffu);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(vmm_bus_write(bus, 0x14, w, 4), 0);
    ck_assert_uint_eq(read_u64(bus, 0x24, 2, &r), dev_value(1, 4) & 0xffff);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(vmm_bus_write(bus, 0x24, w, 4), 0);
    ck_assert_uint_eq(read_u64(bus, 0x34, 8, &r), UINT64_MAX);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(vmm_bus_write(bus, 0x34, w, 4), 0);
    ck_assert_uint_eq(wo.writes, 1);
    ck_assert_uint_eq(wo.last_offset, 4);
    ck_assert_uint_eq(ro.reads, 1);

    struct vmm_bus_stats st = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(bus, &st);
    ck_assert_uint_eq(st.unclaimed_reads, 0);
    ck_assert_uint_eq(st.unclaimed_writes, 0);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_ops_size_checked)
{
    /* Growth convention (vmm/abi.h): an ops table whose .size is 0 or larger
     * than the library's struct is refused with -EINVAL and nothing is
     * registered; an older, shorter table is copied that far, the callbacks
     * it lacks reading as NULL (a write then is dropped, not a wild call). */
    struct vmm_bus *bus = new_bus();
    struct rec_dev a = {.id = 1};
    struct vmm_bus_ops ops = rec_ops;
    int r;
    ops.size = 0;
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &ops, &a), -EINVAL);
    ops.size = sizeof(ops) + 8;
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &ops, &a), -EINVAL);
    read_u64(bus, 0x14, 4, &r);
    ck_assert_int_eq(r, -ENOENT); /* nothing claimed the range */
    ck_assert_uint_eq(a.reads, 0);

    ops.size = offsetof(struct vmm_bus_ops, write);
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &ops, &a), 0);
    memset(&ops, 0xff, sizeof(ops)); /* the bus keeps its own copy */
    ck_assert_uint_eq(read_u64(bus, 0x14, 4, &r), dev_value(1, 4) & 0xffffffffu);
    ck_assert_int_eq(r, 0);
    uint8_t w[4] = {1, 2, 3, 4};
    ck_assert_int_eq(vmm_bus_write(bus, 0x14, w, 4), 0); /* claimed, dropped */
    ck_assert_uint_eq(a.reads, 1);
    ck_assert_uint_eq(a.writes, 0);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_unregister)
{
    struct vmm_bus *bus = new_bus();
    struct rec_dev a = {.id = 1}, b = {.id = 2};
    ck_assert_int_eq(vmm_bus_unregister(bus, 0), -ENOENT);
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 0x100, &rec_ops, &a), 0);
    /* Only the registered base names a range. */
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x101), -ENOENT);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x1ff), -ENOENT);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0xff), -ENOENT);
    ck_assert_int_eq(vmm_bus_unregister(bus, UINT64_MAX), -ENOENT);
    ck_assert_int_eq(owner_of(bus, 0x180), 1);

    ck_assert_int_eq(vmm_bus_unregister(bus, 0x100), 0);
    ck_assert_int_eq(owner_of(bus, 0x180), -1);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x100), -ENOENT);

    /* The range can be claimed again, by another device and another shape. */
    ck_assert_int_eq(vmm_bus_register(bus, 0x180, 0x100, &rec_ops, &b), 0);
    ck_assert_int_eq(owner_of(bus, 0x180), 2);
    ck_assert_int_eq(owner_of(bus, 0x17c), -1);
    ck_assert_uint_eq(a.reads, 1);
    vmm_bus_destroy(bus);
}
END_TEST

/* ---- re-entrancy ---- */

struct reenter {
    struct vmm_bus *bus;   /* the bus whose callback this is */
    struct vmm_bus *other; /* a different bus */
    int reg_same, unreg_same, reg_other, unreg_other;
    unsigned calls;
};

static void reenter_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)offset;
    (void)data;
    (void)len;
    struct reenter *re = opaque;
    re->calls++;
    re->reg_same = vmm_bus_register(re->bus, 0x9000, 0x10, &rec_ops, NULL);
    re->unreg_same = vmm_bus_unregister(re->bus, 0x10);
    if (re->other) {
        re->reg_other = vmm_bus_register(re->other, 0x9000, 0x10, &rec_ops, NULL);
        re->unreg_other = vmm_bus_unregister(re->other, 0x9000);
    }
}

static void reenter_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    reenter_write(opaque, offset, data, len);
    memset(data, 0, len);
}

START_TEST(test_register_from_callback_refused)
{
    struct vmm_bus *bus = new_bus();
    struct vmm_bus *other = new_bus();
    static const struct vmm_bus_ops ops = {
        .size = sizeof(struct vmm_bus_ops), .read = reenter_read, .write = reenter_write};
    struct reenter re = {.bus = bus, .other = other};
    ck_assert_int_eq(vmm_bus_register(bus, 0x10, 0x10, &ops, &re), 0);

    uint8_t v[4] = {0};
    ck_assert_int_eq(vmm_bus_write(bus, 0x10, v, 4), 0);
    ck_assert_uint_eq(re.calls, 1);
    ck_assert_int_eq(re.reg_same, -EDEADLK);
    ck_assert_int_eq(re.unreg_same, -EDEADLK);
    /* Another bus is fair game from inside the callback. */
    ck_assert_int_eq(re.reg_other, 0);
    ck_assert_int_eq(re.unreg_other, 0);

    re = (struct reenter){.bus = bus, .other = other};
    ck_assert_int_eq(vmm_bus_read(bus, 0x14, v, 4), 0);
    ck_assert_uint_eq(re.calls, 1);
    ck_assert_int_eq(re.reg_same, -EDEADLK);
    ck_assert_int_eq(re.unreg_same, -EDEADLK);

    /* Out of the callback again, registration works and the device is still there. */
    ck_assert_int_eq(owner_of(bus, 0x9000), -1);
    ck_assert_int_eq(vmm_bus_register(bus, 0x9000, 0x10, &rec_ops, &(struct rec_dev){.id = 4}), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x9000), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x10), 0);
    vmm_bus_destroy(other);
    vmm_bus_destroy(bus);
}
END_TEST

/* Bus A's callback dispatches on bus B, whose callback registers on A: A is
 * still being dispatched by this thread, so this must be refused too rather
 * than wait for a lock the thread itself holds. */
struct nested {
    struct vmm_bus *a, *b;
    int reg_a, unreg_a;
};

static void nested_b_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)offset;
    (void)data;
    (void)len;
    struct nested *n = opaque;
    n->reg_a = vmm_bus_register(n->a, 0x9000, 0x10, &rec_ops, NULL);
    n->unreg_a = vmm_bus_unregister(n->a, 0x10);
}

static void nested_a_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)offset;
    struct nested *n = opaque;
    ck_assert_int_eq(vmm_bus_write(n->b, 0x10, data, len), 0);
}

START_TEST(test_register_from_nested_callback_refused)
{
    struct nested n = {.a = new_bus(), .b = new_bus(), .reg_a = 1, .unreg_a = 1};
    static const struct vmm_bus_ops a_ops = {.size = sizeof(struct vmm_bus_ops),
                                             .write = nested_a_write};
    static const struct vmm_bus_ops b_ops = {.size = sizeof(struct vmm_bus_ops),
                                             .write = nested_b_write};
    ck_assert_int_eq(vmm_bus_register(n.a, 0x10, 0x10, &a_ops, &n), 0);
    ck_assert_int_eq(vmm_bus_register(n.b, 0x10, 0x10, &b_ops, &n), 0);
    uint8_t v[4] = {0};
    /* lib/bus/bus.c keeps a thread-local stack of the buses this thread is
     * dispatching on, not only the innermost, so A is refused here; were it
     * not, the unregister would wait for its own caller (Check's timeout). */
    ck_assert_int_eq(vmm_bus_write(n.a, 0x10, v, 4), 0);
    ck_assert_int_eq(n.reg_a, -EDEADLK);
    ck_assert_int_eq(n.unreg_a, -EDEADLK);
    vmm_bus_destroy(n.b);
    vmm_bus_destroy(n.a);
}
END_TEST

/* ---- unregister while another thread dispatches ---- */

struct hammer {
    struct vmm_bus *bus;
    uint64_t addr;
    atomic_int in_callback;   /* threads inside the device's read callback now */
    atomic_bool unregistered; /* set once vmm_bus_unregister has returned */
    atomic_bool stop;
    atomic_uint violations; /* callback entered after unregister returned */
    atomic_ulong calls;
    atomic_ulong after_claimed; /* dispatches that returned 0 after the flag was set */
};

static void hammer_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)offset;
    struct hammer *h = opaque;
    atomic_fetch_add(&h->in_callback, 1);
    if (atomic_load(&h->unregistered))
        atomic_fetch_add(&h->violations, 1);
    atomic_fetch_add(&h->calls, 1);
    /* Stay a moment so that unregister has calls in progress to wait for. */
    for (volatile int spin = 0; spin < 1000; spin++)
        ;
    if (atomic_load(&h->unregistered))
        atomic_fetch_add(&h->violations, 1);
    memset(data, 0xab, len);
    atomic_fetch_sub(&h->in_callback, 1);
}

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        bool after = atomic_load(&h->unregistered);
        uint8_t v[4];
        int r = vmm_bus_read(h->bus, h->addr, v, 4);
        if (r == 0 && after)
            atomic_fetch_add(&h->after_claimed, 1);
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void run_unregister_race(unsigned nthreads, unsigned rounds)
{
    for (unsigned round = 0; round < rounds; round++) {
        struct vmm_bus *bus = new_bus();
        /* Heap-allocated and freed right after unregister, so that a late
         * callback is also a use-after-free under ASan. */
        struct hammer *h = calloc(1, sizeof(*h));
        ck_assert_ptr_nonnull(h);
        h->bus = bus;
        h->addr = 0x3f8;
        static const struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops),
                                               .read = hammer_read};
        /* A neighbour that stays, so the table is not simply empty afterwards. */
        ck_assert_int_eq(vmm_bus_register(bus, 0x3f0, 8, &rec_ops, &(struct rec_dev){0}), 0);
        ck_assert_int_eq(vmm_bus_register(bus, 0x3f8, 8, &ops, h), 0);

        pthread_t t[4];
        ck_assert_uint_le(nthreads, 4);
        for (unsigned k = 0; k < nthreads; k++)
            ck_assert_int_eq(pthread_create(&t[k], NULL, hammer_thread, h), 0);
        while (atomic_load(&h->calls) < 1000)
            sched_yield();
        sleep_ms(10);

        ck_assert_int_eq(vmm_bus_unregister(bus, 0x3f8), 0);
        int inside = atomic_load(&h->in_callback);
        atomic_store(&h->unregistered, true);
        ck_assert_int_eq(inside, 0);

        sleep_ms(10);
        atomic_store(&h->stop, true);
        for (unsigned k = 0; k < nthreads; k++)
            pthread_join(t[k], NULL);
        ck_assert_uint_eq(atomic_load(&h->violations), 0);
        ck_assert_uint_eq(atomic_load(&h->after_claimed), 0);
        ck_assert_uint_eq(atomic_load(&h->in_callback), 0);
        free(h);

        int r;
        read_u64(bus, 0x3f8, 4, &r);
        ck_assert_int_eq(r, -ENOENT);
        vmm_bus_destroy(bus);
    }
}

START_TEST(test_unregister_while_dispatching)
{
    run_unregister_race(1, 5);
}
END_TEST

/* More dispatching threads than cores: unregister must still get its turn
 * (with a reader-preferring lock it waits a while; see the report). */
START_TEST(test_unregister_while_many_dispatch)
{
    run_unregister_race(3, 2);
}
END_TEST

static Suite *bus_suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_create_destroy);
    tcase_add_test(tc, test_ops_size_checked);
    tcase_add_test(tc, test_dispatch_offsets_and_sizes);
    tcase_add_test(tc, test_many_ranges_random_order);
    tcase_add_test(tc, test_adjacent_ranges);
    tcase_add_test(tc, test_overlap_refused);
    tcase_add_test(tc, test_register_invalid);
    tcase_add_test(tc, test_range_at_top_of_space);
    tcase_add_test(tc, test_unclaimed_counted);
    tcase_add_test(tc, test_stats_size_checked);
    tcase_add_test(tc, test_access_runs_off_device);
    tcase_add_test(tc, test_bad_access_length);
    tcase_add_test(tc, test_null_callbacks);
    tcase_add_test(tc, test_unregister);
    tcase_add_test(tc, test_register_from_callback_refused);
    suite_add_tcase(s, tc);

    /* Its own case: the failure mode is a deadlock, caught in 10 s rather
     * than a longer timeout, but not so short that a loaded machine trips it. */
    TCase *tn = tcase_create("nested");
    tcase_set_timeout(tn, 10);
    tcase_add_test(tn, test_register_from_nested_callback_refused);
    suite_add_tcase(s, tn);

    TCase *tt = tcase_create("threads");
    tcase_set_timeout(tt, 20);
    tcase_add_test(tt, test_unregister_while_dispatching);
    tcase_add_test(tt, test_unregister_while_many_dispatch);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(bus_suite());
}
