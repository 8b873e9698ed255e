/* SPDX-License-Identifier: Apache-2.0 */
/* Split virtqueues on malloc-backed guest memory: well-formed chains, indirect
 * tables, notification suppression with wrap-around, the chain helpers, and
 * hostile rings (loops, bad indices, addresses and lengths past memory,
 * nested or malformed indirect tables, an available index that jumps). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <vmm/virtio.h>

#include "check_compat.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE 16

static struct td d;
static struct vmm_virtq *q;
static unsigned interrupts, breaks, resumes;
static uint8_t *extra; /* a second region some tests add; freed after the map */

static void on_interrupt(void *opaque, struct vmm_virtq *vq)
{
    (void)opaque;
    ck_assert_ptr_eq(vq, q);
    interrupts++;
}

static void on_broken(void *opaque, struct vmm_virtq *vq)
{
    (void)opaque;
    (void)vq;
    breaks++;
}

static void on_resume(void *opaque, struct vmm_virtq *vq)
{
    (void)opaque;
    ck_assert_ptr_eq(vq, q);
    resumes++;
}

/* A queue of size entries (up to 256: the driver's areas hold no more). */
static void make_queue_of(uint64_t features, unsigned size)
{
    struct vmm_virtq_callbacks cb = VMM_INIT(struct vmm_virtq_callbacks, .interrupt = on_interrupt,
                                             .broken = on_broken, .resume = on_resume);
    ck_assert_int_eq(vmm_virtq_create(d.mem, 3, size < 64 ? 64 : size, &cb, &q), 0);
    vmm_virtq_set_features(q, features);
    ck_assert_int_eq(vmm_virtq_enable(q, size, TD_DESC, TD_AVAIL, TD_USED), 0);
    d.size = size;
}

static void make_queue(uint64_t features)
{
    make_queue_of(features, QSIZE);
}

static void setup(void)
{
    td_init(&d, QSIZE);
    interrupts = breaks = resumes = 0;
    make_queue(VMM_VIRTIO_F_INDIRECT_DESC);
}

static void teardown(void)
{
    vmm_virtq_destroy(q);
    q = NULL;
    td_fini(&d);
    free(extra);
    extra = NULL;
}

/* The growth convention (abi.h) on the callback table: a size of 0 or past
 * the library's is refused, with no queue made. */
START_TEST(test_callbacks_size_checked)
{
    struct vmm_virtq *x = NULL;
    struct vmm_virtq_callbacks cb = VMM_INIT(struct vmm_virtq_callbacks, .interrupt = on_interrupt);
    cb.size = 0;
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 64, &cb, &x), -EINVAL);
    cb.size = sizeof(cb) + 8;
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 64, &cb, &x), -EINVAL);
    ck_assert_ptr_null(x);
    cb.size = offsetof(struct vmm_virtq_callbacks, resume);
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 64, &cb, &x), 0);
    vmm_virtq_destroy(x);
}
END_TEST

/* Expect the next pop to skip a malformed chain at head: completed with 0
 * bytes, counted, and nothing handed to the device. */
static void expect_bad_chain(uint16_t head)
{
    struct vmm_virtq_stats before = VMM_INIT(struct vmm_virtq_stats),
                           after = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &before);
    uint16_t used_before = td_used_idx(&d);
    struct vmm_virtq_chain *c = (void *)1;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_ptr_null(c);
    vmm_virtq_get_stats(q, &after);
    ck_assert_uint_eq(after.bad_chains, before.bad_chains + 1);
    ck_assert_uint_eq(td_used_idx(&d), (uint16_t)(used_before + 1));
    uint32_t id, len;
    td_used_elem(&d, used_before, &id, &len);
    ck_assert_uint_eq(id, head);
    ck_assert_uint_eq(len, 0);
    ck_assert(!after.broken);
}

/* A well-formed request after a bad one still works. */
static void expect_good_after(unsigned slot)
{
    td_desc(&d, slot, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, (uint16_t)slot);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_writable, 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
}

START_TEST(test_simple_chain)
{
    memcpy(td_ptr(&d, TD_BUF), "request!", 8);
    td_desc(&d, 0, TD_BUF, 8, TD_F_NEXT, 5);
    td_desc(&d, 5, TD_BUF + 0x100, 4, TD_F_NEXT | TD_F_WRITE, 2);
    td_desc(&d, 2, TD_BUF + 0x200, 12, TD_F_WRITE, 0);
    td_avail(&d, 0);

    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_ptr_eq(c->queue, q);
    ck_assert_uint_eq(c->nr_readable, 1);
    ck_assert_uint_eq(c->nr_writable, 2);
    ck_assert_uint_eq(c->readable_len, 8);
    ck_assert_uint_eq(c->writable_len, 16);
    ck_assert_uint_eq(c->seg[0].gpa, TD_BUF);
    ck_assert_uint_eq(c->seg[1].gpa, TD_BUF + 0x100);
    ck_assert_uint_eq(c->seg[2].len, 12);

    char buf[16] = {0};
    ck_assert_int_eq(vmm_virtq_chain_read(c, 0, buf, sizeof(buf)), 8);
    ck_assert_mem_eq(buf, "request!", 8);
    ck_assert_int_eq(vmm_virtq_chain_read(c, 3, buf, 2), 2);
    ck_assert_mem_eq(buf, "ue", 2);
    /* The write spans both writable segments and stops at their end. */
    ck_assert_int_eq(vmm_virtq_chain_write(c, 2, "abcdefghijklmnopq", 17), 14);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x102), "ab", 2);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x200), "cdefghijklmn", 12);

    /* Nothing more to pop. */
    struct vmm_virtq_chain *none;
    ck_assert_int_eq(vmm_virtq_pop(q, &none), 0);

    ck_assert_int_eq(vmm_virtq_push(q, c, 16), 0);
    ck_assert_uint_eq(td_used_idx(&d), 1);
    uint32_t id, len;
    td_used_elem(&d, 0, &id, &len);
    ck_assert_uint_eq(id, 0);
    ck_assert_uint_eq(len, 16);
    ck_assert(vmm_virtq_notify(q));
    ck_assert_uint_eq(interrupts, 1);
    /* Nothing new since: no second interrupt. */
    ck_assert(!vmm_virtq_notify(q));
    ck_assert_uint_eq(interrupts, 1);
}
END_TEST

START_TEST(test_chain_is_a_copy)
{
    td_desc(&d, 1, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 1);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    /* The guest rewrites the descriptor after the pop: the device keeps
     * what it checked. */
    td_desc(&d, 1, 0xffffffff00000000ull, 0xffffffff, TD_F_WRITE, 0);
    ck_assert_uint_eq(c->seg[0].gpa, TD_BUF);
    ck_assert_uint_eq(c->seg[0].len, 8);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "12345678", 8), 8);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
}
END_TEST

START_TEST(test_not_ready_and_empty)
{
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(vmm_virtq_size(q), QSIZE);
    ck_assert_uint_eq(vmm_virtq_index(q), 3);
    vmm_virtq_reset(q);
    ck_assert(!vmm_virtq_ready(q));
    ck_assert_uint_eq(vmm_virtq_size(q), 0);
    td_desc(&d, 0, TD_BUF, 8, 0, 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
}
END_TEST

START_TEST(test_enable_checks)
{
    vmm_virtq_reset(q);
    ck_assert_int_eq(vmm_virtq_enable(q, 0, TD_DESC, TD_AVAIL, TD_USED), -EINVAL);
    ck_assert_int_eq(vmm_virtq_enable(q, 12, TD_DESC, TD_AVAIL, TD_USED), -EINVAL);
    ck_assert_int_eq(vmm_virtq_enable(q, 128, TD_DESC, TD_AVAIL, TD_USED), -EINVAL); /* > max */
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC + 8, TD_AVAIL, TD_USED), -EINVAL);
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC, TD_AVAIL + 1, TD_USED), -EINVAL);
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC, TD_AVAIL, TD_USED + 2), -EINVAL);
    /* Rings running off the end of memory, or nowhere near it. */
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_MEM_BASE + TD_MEM_SIZE - 128, TD_AVAIL, TD_USED),
                     -EFAULT);
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC, TD_AVAIL, TD_MEM_BASE + TD_MEM_SIZE - 100),
                     -EFAULT);
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC, 0xfffffffffffffff0ull, TD_USED), -EFAULT);
    ck_assert(!vmm_virtq_ready(q));
    ck_assert_int_eq(vmm_virtq_enable(q, 16, TD_DESC, TD_AVAIL, TD_USED), 0);
    ck_assert(vmm_virtq_ready(q));

    struct vmm_virtq *bad;
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 100, NULL, &bad), -EINVAL);
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 65536, NULL, &bad), -EINVAL);
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 32768, NULL, &bad), 0);
    vmm_virtq_destroy(bad);
    vmm_virtq_destroy(NULL);
}
END_TEST

START_TEST(test_indirect)
{
    /* One direct readable descriptor, then a table of three. */
    td_desc_at(&d, TD_INDIRECT, 0, TD_BUF, 4, TD_F_NEXT, 2);
    td_desc_at(&d, TD_INDIRECT, 2, TD_BUF + 0x10, 6, TD_F_NEXT | TD_F_WRITE, 1);
    td_desc_at(&d, TD_INDIRECT, 1, TD_BUF + 0x20, 10, TD_F_WRITE, 0);
    td_desc(&d, 7, TD_BUF + 0x40, 3, TD_F_NEXT, 9);
    td_desc(&d, 9, TD_INDIRECT, 3 * 16, TD_F_INDIRECT, 0);
    td_avail(&d, 7);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, 2);
    ck_assert_uint_eq(c->nr_writable, 2);
    ck_assert_uint_eq(c->readable_len, 7);
    ck_assert_uint_eq(c->writable_len, 16);
    ck_assert_uint_eq(c->seg[0].gpa, TD_BUF + 0x40);
    ck_assert_uint_eq(c->seg[1].gpa, TD_BUF);
    ck_assert_uint_eq(c->seg[2].gpa, TD_BUF + 0x10);
    ck_assert_uint_eq(c->seg[3].gpa, TD_BUF + 0x20);
    ck_assert_int_eq(vmm_virtq_push(q, c, 16), 0);
    uint32_t id, len;
    td_used_elem(&d, 0, &id, &len);
    ck_assert_uint_eq(id, 7);
    ck_assert_uint_eq(len, 16);
}
END_TEST

START_TEST(test_chain_no_longer_than_queue)
{
    /* A chain may be as long as the queue, indirect descriptors included
     * (virtio 1.2 section 2.7.5.3.1), and no longer. */
    struct vmm_virtq_chain *c;
    for (unsigned i = 0; i < QSIZE; i++)
        td_desc_at(&d, TD_INDIRECT, i, TD_BUF + i, 1, i < QSIZE - 1 ? TD_F_NEXT : 0,
                   (uint16_t)(i + 1));
    td_desc(&d, 0, TD_INDIRECT, QSIZE * 16, TD_F_INDIRECT, 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, QSIZE);
    ck_assert_uint_eq(c->readable_len, QSIZE);
    vmm_virtq_chain_free(c);
    /* A table longer than the queue: refused unread, whatever it holds. */
    td_desc(&d, 1, TD_INDIRECT, (QSIZE + 1) * 16, TD_F_INDIRECT, 0);
    td_avail(&d, 1);
    expect_bad_chain(1);
    /* One direct descriptor, then a table of QSIZE - 1: QSIZE in all. */
    td_desc_at(&d, TD_INDIRECT, QSIZE - 2, TD_BUF, 1, 0, 0);
    td_desc(&d, 2, TD_BUF + 0x100, 1, TD_F_NEXT, 3);
    td_desc(&d, 3, TD_INDIRECT, (QSIZE - 1) * 16, TD_F_INDIRECT, 0);
    td_avail(&d, 2);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, QSIZE);
    vmm_virtq_chain_free(c);
    /* Two direct ones and the same table: one descriptor too many. */
    td_desc(&d, 4, TD_BUF + 0x100, 1, TD_F_NEXT, 5);
    td_desc(&d, 5, TD_BUF + 0x101, 1, TD_F_NEXT, 3);
    td_avail(&d, 4);
    expect_bad_chain(4);
    expect_good_after(6);
}
END_TEST

START_TEST(test_issue_recipe_refused_cheaply)
{
    /* Issue 14: queue size 256, every head pointing at one shared 512 KiB
     * indirect table (a 16-byte header and 32767 one-byte writable
     * descriptors). Accepted, the chains pinned ~386 MiB of host heap and
     * one notify walked 8.4M descriptors; now each is refused unread. */
    vmm_virtq_destroy(q);
    make_queue_of(VMM_VIRTIO_F_INDIRECT_DESC, 256);
    const unsigned n = VMM_VIRTQ_MAX_SIZE;
    const uint64_t table = TD_MEM_BASE + TD_MEM_SIZE;
    extra = calloc(n, 16);
    ck_assert_ptr_nonnull(extra);
    ck_assert_int_ge(vmm_memory_add_external(d.mem, table, 16ull * n, extra), 0);
    td_desc_host(extra, TD_BUF, 16, TD_F_NEXT, 1);
    for (unsigned i = 1; i < n; i++)
        td_desc_host(extra + 16ull * i, TD_BUF + 0x100 + i % 256, 1,
                     TD_F_WRITE | (i < n - 1 ? TD_F_NEXT : 0), (uint16_t)(i + 1));
    for (unsigned h = 0; h < 256; h++) {
        td_desc(&d, h, table, 16 * n, TD_F_INDIRECT, 0);
        td_avail(&d, (uint16_t)h);
    }
    long rss = td_peak_rss_kib();
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.bad_chains, 256);
    ck_assert_uint_eq(st.popped, 0);
    ck_assert_uint_eq(st.held_bytes, 0);
    ck_assert(!st.broken);
    ck_assert_uint_eq(td_used_idx(&d), 256);
    for (unsigned k = 0; k < 256; k++) {
        uint32_t id, len;
        td_used_elem(&d, k, &id, &len);
        ck_assert_uint_eq(id, k);
        ck_assert_uint_eq(len, 0);
    }
    ck_assert_int_lt(td_peak_rss_kib() - rss, 8 << 10);
    /* The same guest's next good request is answered. */
    expect_good_after(7);
}
END_TEST

/* Issue 14 again, with chains exactly as long as a 256 queue allows: 256
 * heads on one table of 256 one-byte writable descriptors. */
static void post_longest_chains(void)
{
    vmm_virtq_destroy(q);
    make_queue_of(VMM_VIRTIO_F_INDIRECT_DESC, 256);
    td_post_longest_chains(&d);
}

START_TEST(test_held_memory_budget)
{
    /* Holding all 256 would pin ~3 MiB: pop stops at the budget, with the
     * rest left in the ring (nothing completed, nothing dropped). */
    post_longest_chains();
    static struct vmm_virtq_chain *held[256];
    unsigned n = 0;
    while (n < 256 && vmm_virtq_pop(q, &held[n]) == 1) {
        ck_assert_uint_eq(held[n]->nr_writable, 256);
        ck_assert_uint_eq(vmm_virtq_chain_head(held[n]), n);
        n++;
    }
    ck_assert_uint_gt(n, 64);
    ck_assert_uint_lt(n, 256);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.throttled, 1);
    ck_assert_uint_le(st.held_bytes, VMM_VIRTQ_MAX_HELD_BYTES);
    ck_assert_uint_eq(st.bad_chains, 0);
    ck_assert_uint_eq(td_used_idx(&d), 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(resumes, 0);
    /* Giving one back makes room: the queue asks to be looked at, once. */
    ck_assert_int_eq(vmm_virtq_push(q, held[0], 1), 0);
    ck_assert_uint_eq(resumes, 1);
    /* Take what comes, answer the oldest, until every chain is answered. */
    unsigned next = n;
    for (unsigned id = 1;; id++) {
        while (next < 256 && vmm_virtq_pop(q, &c) == 1) {
            ck_assert_uint_eq(vmm_virtq_chain_head(c), next);
            held[next++] = c;
        }
        if (id == 256)
            break;
        ck_assert_uint_lt(id, next);
        ck_assert_int_eq(vmm_virtq_push(q, held[id], 1), 0);
    }
    ck_assert_uint_eq(td_used_idx(&d), 256);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.held_bytes, 0);
    ck_assert_uint_eq(st.popped, 256);
    ck_assert_uint_ge(resumes, 1);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
}
END_TEST

START_TEST(test_held_budget_after_reset)
{
    /* Chains held across a reset still count until the device frees them;
     * freeing them after the reset calls no resume (the driver's set-up
     * looks at the queue again). */
    post_longest_chains();
    static struct vmm_virtq_chain *held[256];
    unsigned n = 0;
    while (n < 256 && vmm_virtq_pop(q, &held[n]) == 1)
        n++;
    vmm_virtq_reset(q);
    for (unsigned i = 0; i < n; i++)
        vmm_virtq_chain_free(held[i]);
    ck_assert_uint_eq(resumes, 0);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.held_bytes, 0);
}
END_TEST

START_TEST(test_full_length_chain)
{
    /* Exactly queue-size descriptors is fine. */
    for (unsigned i = 0; i < QSIZE; i++)
        td_desc(&d, i, TD_BUF + 16 * i, 16, (i < QSIZE - 1 ? TD_F_NEXT : 0) | TD_F_WRITE,
                (uint16_t)(i + 1));
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_writable, QSIZE);
    ck_assert_uint_eq(c->writable_len, 16 * QSIZE);
    ck_assert_int_eq(vmm_virtq_push(q, c, 0), 0);
}
END_TEST

START_TEST(test_zero_length_descriptors_skipped)
{
    td_desc(&d, 0, TD_BUF, 0, TD_F_NEXT, 1);
    td_desc(&d, 1, TD_BUF, 5, TD_F_NEXT, 2);
    td_desc(&d, 2, TD_BUF, 0, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, 1);
    ck_assert_uint_eq(c->nr_writable, 0);
    ck_assert_uint_eq(c->writable_len, 0);
    /* A device claiming to have written into no room is clamped to 0. */
    ck_assert_int_eq(vmm_virtq_push(q, c, 100), 0);
    uint32_t id, len;
    td_used_elem(&d, 0, &id, &len);
    ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(test_descriptor_loop)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_NEXT, 1);
    td_desc(&d, 1, TD_BUF, 8, TD_F_NEXT, 2);
    td_desc(&d, 2, TD_BUF, 8, TD_F_NEXT, 0);
    td_avail(&d, 0);
    expect_bad_chain(0);
    /* A descriptor pointing at itself. */
    td_desc(&d, 4, TD_BUF, 8, TD_F_NEXT | TD_F_WRITE, 4);
    td_avail(&d, 4);
    expect_bad_chain(4);
    expect_good_after(9);
}
END_TEST

START_TEST(test_index_past_queue_size)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_NEXT, QSIZE);
    td_avail(&d, 0);
    expect_bad_chain(0);
    td_desc(&d, 1, TD_BUF, 8, TD_F_NEXT, 0xffff);
    td_avail(&d, 1);
    expect_bad_chain(1);
    expect_good_after(2);
}
END_TEST

START_TEST(test_address_past_memory)
{
    /* Right past the end, straddling the end, below the start, and an
     * address + length that overflows 64 bits. */
    td_desc(&d, 0, TD_MEM_BASE + TD_MEM_SIZE, 1, 0, 0);
    td_desc(&d, 1, TD_MEM_BASE + TD_MEM_SIZE - 4, 8, TD_F_WRITE, 0);
    td_desc(&d, 2, 0x1000, 8, 0, 0);
    td_desc(&d, 3, 0xfffffffffffffff0ull, 0x100, TD_F_WRITE, 0);
    td_desc(&d, 4, TD_BUF, 0xffffffffu, 0, 0);
    for (uint16_t h = 0; h < 5; h++) {
        td_avail(&d, h);
        expect_bad_chain(h);
    }
    /* The last byte of memory is fine. */
    td_desc(&d, 5, TD_MEM_BASE + TD_MEM_SIZE - 1, 1, TD_F_WRITE, 0);
    td_avail(&d, 5);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "z", 1), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);
}
END_TEST

START_TEST(test_readable_after_writable)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_NEXT | TD_F_WRITE, 1);
    td_desc(&d, 1, TD_BUF, 8, 0, 0);
    td_avail(&d, 0);
    expect_bad_chain(0);
    /* Also after an empty writable one. */
    td_desc(&d, 4, TD_BUF, 0, TD_F_NEXT | TD_F_WRITE, 5);
    td_desc(&d, 5, TD_BUF, 8, 0, 0);
    td_avail(&d, 4);
    expect_bad_chain(4);
    expect_good_after(3);
}
END_TEST

START_TEST(test_bad_indirect_tables)
{
    uint16_t h = 0;
    /* Indirect inside indirect. */
    td_desc_at(&d, TD_INDIRECT, 0, TD_INDIRECT + 0x100, 32, TD_F_INDIRECT, 0);
    td_desc(&d, h, TD_INDIRECT, 16, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* Zero-length and non-multiple-of-16 tables. */
    td_desc(&d, h, TD_INDIRECT, 0, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    td_desc(&d, h, TD_INDIRECT, 24, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* NEXT inside the table pointing out of it. */
    td_desc_at(&d, TD_INDIRECT + 0x200, 0, TD_BUF, 4, TD_F_NEXT, 1);
    td_desc_at(&d, TD_INDIRECT + 0x200, 1, TD_BUF, 4, TD_F_NEXT, 2);
    td_desc(&d, h, TD_INDIRECT + 0x200, 32, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* A loop inside the table. */
    td_desc_at(&d, TD_INDIRECT + 0x300, 0, TD_BUF, 4, TD_F_NEXT, 1);
    td_desc_at(&d, TD_INDIRECT + 0x300, 1, TD_BUF, 4, TD_F_NEXT, 0);
    td_desc(&d, h, TD_INDIRECT + 0x300, 32, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* INDIRECT together with NEXT. */
    td_desc(&d, h, TD_INDIRECT + 0x200, 16, TD_F_INDIRECT | TD_F_NEXT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* A table outside guest memory, and one whose end overflows. */
    td_desc(&d, h, TD_MEM_BASE + TD_MEM_SIZE - 16, 32, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    td_desc(&d, h, 0xfffffffffffffff0ull, 32, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    /* A table with more entries than any queue can have. */
    td_desc(&d, h, TD_INDIRECT, (VMM_VIRTQ_MAX_SIZE + 1) * 16, TD_F_INDIRECT, 0);
    td_avail(&d, h);
    expect_bad_chain(h++);
    expect_good_after(h);
}
END_TEST

START_TEST(test_indirect_needs_feature)
{
    vmm_virtq_destroy(q);
    make_queue(0);
    td_desc_at(&d, TD_INDIRECT, 0, TD_BUF, 4, 0, 0);
    td_desc(&d, 0, TD_INDIRECT, 16, TD_F_INDIRECT, 0);
    td_avail(&d, 0);
    expect_bad_chain(0);
}
END_TEST

START_TEST(test_head_past_queue_size_breaks)
{
    td_avail(&d, QSIZE);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), -EIO);
    ck_assert_uint_eq(breaks, 1);
    ck_assert(!vmm_virtq_ready(q));
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert(st.broken);
    /* Stays broken (and reported once) until reset. */
    ck_assert_int_eq(vmm_virtq_pop(q, &c), -EIO);
    ck_assert_uint_eq(breaks, 1);
    vmm_virtq_reset(q);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    d.avail_idx = 0;
    td_set_u16(&d, TD_AVAIL + 2, 0);
    expect_good_after(0);
}
END_TEST

START_TEST(test_avail_idx_jump_breaks)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    /* The ring moves under the device: avail idx jumps by more than the
     * queue size. */
    td_set_u16(&d, TD_AVAIL + 2, (uint16_t)(d.avail_idx + QSIZE + 1));
    struct vmm_virtq_chain *c2;
    ck_assert_int_eq(vmm_virtq_pop(q, &c2), -EIO);
    ck_assert_uint_eq(breaks, 1);
    /* Pushing to a broken queue fails but frees the chain. */
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), -EIO);
}
END_TEST

START_TEST(test_avail_idx_read_once_per_pass)
{
    for (uint16_t i = 0; i < 3; i++) {
        td_desc(&d, i, TD_BUF, 8, TD_F_WRITE, 0);
        td_avail(&d, i);
    }
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_chain_free(c);
    /* A bogus index written now is not read until the three entries seen
     * have been consumed. */
    td_set_u16(&d, TD_AVAIL + 2, (uint16_t)(d.avail_idx + 100));
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_chain_free(c);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_chain_free(c);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), -EIO);
}
END_TEST

START_TEST(test_bad_chain_budget_per_pop)
{
    /* A ring full of loops: one pop completes them all (bounded) and
     * returns 0, and the used ring says so. */
    for (uint16_t i = 0; i < QSIZE; i++) {
        td_desc(&d, i, TD_BUF, 8, TD_F_NEXT, i);
        td_avail(&d, i);
    }
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(td_used_idx(&d), QSIZE);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.bad_chains, QSIZE);
    /* Bad chains get their used-buffer notification too. */
    ck_assert(vmm_virtq_notify(q));
}
END_TEST

START_TEST(test_no_interrupt_flag)
{
    td_set_u16(&d, TD_AVAIL, 1); /* VIRTQ_AVAIL_F_NO_INTERRUPT */
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);
    ck_assert(!vmm_virtq_notify(q));
    ck_assert_uint_eq(interrupts, 0);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.suppressed, 1);
    td_set_u16(&d, TD_AVAIL, 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);
    ck_assert(vmm_virtq_notify(q));
}
END_TEST

/* One request through the ring; returns whether it interrupted. */
static bool one_round(void)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
    return vmm_virtq_notify(q);
}

START_TEST(test_event_idx_wraparound)
{
    vmm_virtq_destroy(q);
    make_queue(VMM_VIRTIO_F_EVENT_IDX);
    /* The driver asks for an interrupt only when used idx passes
     * used_event: with used_event = 0 the first push interrupts. */
    td_set_used_event(&d, 0);
    ck_assert(one_round());
    /* used_event behind: suppressed until the index comes round again. */
    ck_assert(!one_round());

    /* Run the indices up to just below the 16-bit wrap. */
    td_set_used_event(&d, 0x7fff);
    while (td_used_idx(&d) != 0xfffd) {
        bool irq = one_round();
        ck_assert(irq == (td_used_idx(&d) == 0x8000));
    }
    /* Ask to be told when the entry at 0xffff is used, i.e. when used idx
     * goes from 0xffff to 0x0000. */
    td_set_used_event(&d, 0xffff);
    ck_assert(!one_round()); /* -> 0xfffe */
    ck_assert(!one_round()); /* -> 0xffff */
    ck_assert(one_round());  /* -> 0x0000: crosses used_event */
    ck_assert_uint_eq(td_used_idx(&d), 0);
    ck_assert(!one_round()); /* -> 0x0001 */

    /* Several pushes per notify: interrupt when used_event lies anywhere in
     * the batch, across the wrap of the batch too. */
    td_set_used_event(&d, 3);
    for (int i = 0; i < 4; i++) {
        td_desc(&d, (unsigned)i, TD_BUF, 8, TD_F_WRITE, 0);
        td_avail(&d, (uint16_t)i);
    }
    struct vmm_virtq_chain *c;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
        ck_assert_int_eq(vmm_virtq_push(q, c, 0), 0);
    }
    ck_assert(vmm_virtq_notify(q)); /* 1 -> 5 covers used_event 3 */

    /* avail_event: popping the queue empty publishes where we are, also
     * across the wrap of the available index. */
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(td_avail_event(&d), d.avail_idx);
    ck_assert_uint_eq(d.avail_idx, 5);
}
END_TEST

START_TEST(test_event_idx_avail_event_rechecks)
{
    vmm_virtq_destroy(q);
    make_queue(VMM_VIRTIO_F_EVENT_IDX);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(td_avail_event(&d), 0);
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_chain_free(c);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_chain_free(c);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(td_avail_event(&d), 2);
}
END_TEST

START_TEST(test_reset_makes_chains_stale)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    vmm_virtq_reset(q);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    td_set_u16(&d, TD_USED + 2, 0);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
    ck_assert_uint_eq(td_used_idx(&d), 0); /* not written */
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.stale_pushes, 1);
    ck_assert_int_eq(vmm_virtq_push(q, NULL, 0), 0);
}
END_TEST

/* Post heads 0..n-1 (one writable buffer each) and pop them all. */
static void pop_n(struct vmm_virtq_chain **c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        td_desc(&d, i, TD_BUF + 64 * i, 64, TD_F_WRITE, 0);
        td_avail(&d, (uint16_t)i);
    }
    for (unsigned i = 0; i < n; i++) {
        ck_assert_int_eq(vmm_virtq_pop(q, &c[i]), 1);
        ck_assert_uint_eq(vmm_virtq_chain_head(c[i]), i);
    }
}

/* Chains handed back untouched come out of the next pops again, in the
 * same order, and the driver saw nothing: no used entry, no interrupt. */
START_TEST(test_unpop_hands_back)
{
    struct vmm_virtq_chain *c[4];
    pop_n(c, 4);
    ck_assert_int_eq(vmm_virtq_push(q, c[0], 64), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, c + 2, 2), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, c + 1, 1), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, c, 0), 0);
    ck_assert_uint_eq(td_used_idx(&d), 1);
    struct virtq_snap pos;
    ck_assert_int_eq(vmm_virtq_snap_save(q, &pos), 0); /* nothing held */
    ck_assert_uint_eq(pos.last_avail, 1);
    for (unsigned i = 1; i < 4; i++) {
        ck_assert_int_eq(vmm_virtq_pop(q, &c[i]), 1);
        ck_assert_uint_eq(vmm_virtq_chain_head(c[i]), i);
        ck_assert_int_eq(vmm_virtq_push(q, c[i], 8), 0);
    }
    ck_assert_uint_eq(td_used_idx(&d), 4);
    struct vmm_virtq_chain *none;
    ck_assert_int_eq(vmm_virtq_pop(q, &none), 0);
}
END_TEST

/* Misuse is refused with nothing changed: more than is held, chains out
 * of order or not the last taken, one taken after them used, one pushed
 * or freed already, one of another queue, one from before a reset. */
START_TEST(test_unpop_refuses_misuse)
{
    struct vmm_virtq_chain *c[4];
    pop_n(c, 3);
    ck_assert_int_eq(vmm_virtq_unpop(q, c, 4), -EINVAL);
    ck_assert_int_eq(vmm_virtq_unpop(q, c, 2), -EINVAL); /* not the last two */
    struct vmm_virtq_chain *swapped[2] = {c[2], c[1]};
    ck_assert_int_eq(vmm_virtq_unpop(q, swapped, 2), -EINVAL);
    struct vmm_virtq_chain *dup[2] = {c[2], c[2]};
    ck_assert_int_eq(vmm_virtq_unpop(q, dup, 2), -EINVAL);
    struct vmm_virtq_chain *null[1] = {NULL};
    ck_assert_int_eq(vmm_virtq_unpop(q, null, 1), -EINVAL);
    /* c[2] was taken after c[1] and is used: c[1] cannot go back (its
     * entry would be taken again behind a used one). */
    ck_assert_int_eq(vmm_virtq_push(q, c[2], 8), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, c + 1, 1), -EINVAL);
    ck_assert_int_eq(vmm_virtq_unpop(q, c + 2, 1), -EINVAL); /* pushed already */
    vmm_virtq_chain_free(c[1]);
    ck_assert_int_eq(vmm_virtq_unpop(q, c + 1, 1), -EINVAL); /* freed already */

    /* A malformed chain completed after c[0] leaves a gap too. */
    td_desc(&d, 5, TD_BUF, 8, TD_F_NEXT | TD_F_WRITE, 99);
    td_avail(&d, 5);
    struct vmm_virtq_chain *none;
    ck_assert_int_eq(vmm_virtq_pop(q, &none), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, c, 1), -EINVAL);

    /* Another queue's chain. */
    struct vmm_virtq *other;
    ck_assert_int_eq(vmm_virtq_create(d.mem, 4, 64, NULL, &other), 0);
    ck_assert_int_eq(vmm_virtq_enable(other, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    ck_assert_int_eq(vmm_virtq_unpop(other, c, 1), -EINVAL);
    vmm_virtq_destroy(other);

    /* A chain from before a reset is the driver's no more. */
    td_desc(&d, 6, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 6);
    struct vmm_virtq_chain *late;
    ck_assert_int_eq(vmm_virtq_pop(q, &late), 1);
    vmm_virtq_reset(q);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    ck_assert_int_eq(vmm_virtq_unpop(q, &late, 1), -EINVAL);
    vmm_virtq_chain_free(late);
    vmm_virtq_chain_free(c[0]);
}
END_TEST

START_TEST(test_iov_splits_at_region_boundary)
{
    /* A second region right after the first: a buffer spanning both is
     * valid and comes out as two iovecs. */
    uint8_t *more = extra = calloc(1, 0x1000);
    ck_assert_int_ge(vmm_memory_add_external(d.mem, TD_MEM_BASE + TD_MEM_SIZE, 0x1000, more), 0);
    td_desc(&d, 0, TD_MEM_BASE + TD_MEM_SIZE - 8, 16, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    struct iovec iov[4];
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 16, iov, 4), 2);
    ck_assert_ptr_eq(iov[0].iov_base, d.host + TD_MEM_SIZE - 8);
    ck_assert_uint_eq(iov[0].iov_len, 8);
    ck_assert_ptr_eq(iov[1].iov_base, more);
    ck_assert_uint_eq(iov[1].iov_len, 8);
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 16, iov, 1), -ENOSPC);
    /* Offsets and clamping. */
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 10, 100, iov, 4), 1);
    ck_assert_ptr_eq(iov[0].iov_base, more + 2);
    ck_assert_uint_eq(iov[0].iov_len, 6);
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 16, 100, iov, 4), 0);
    ck_assert_int_eq(vmm_virtq_chain_iov(c, false, 0, 100, iov, 4), 0);
    /* chain_write crosses the boundary too. */
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "0123456789abcdef", 16), 16);
    ck_assert_mem_eq(more, "89abcdef", 8);
    vmm_virtq_chain_free(c);
}
END_TEST

static Suite *virtq_suite(void)
{
    Suite *s = suite_create("virtq");
    TCase *tc = tcase_create("split");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_simple_chain);
    tcase_add_test(tc, test_callbacks_size_checked);
    tcase_add_test(tc, test_chain_is_a_copy);
    tcase_add_test(tc, test_not_ready_and_empty);
    tcase_add_test(tc, test_enable_checks);
    tcase_add_test(tc, test_indirect);
    tcase_add_test(tc, test_chain_no_longer_than_queue);
    tcase_add_test(tc, test_issue_recipe_refused_cheaply);
    tcase_add_test(tc, test_held_memory_budget);
    tcase_add_test(tc, test_held_budget_after_reset);
    tcase_add_test(tc, test_full_length_chain);
    tcase_add_test(tc, test_zero_length_descriptors_skipped);
    tcase_add_test(tc, test_descriptor_loop);
    tcase_add_test(tc, test_index_past_queue_size);
    tcase_add_test(tc, test_address_past_memory);
    tcase_add_test(tc, test_readable_after_writable);
    tcase_add_test(tc, test_bad_indirect_tables);
    tcase_add_test(tc, test_indirect_needs_feature);
    tcase_add_test(tc, test_head_past_queue_size_breaks);
    tcase_add_test(tc, test_avail_idx_jump_breaks);
    tcase_add_test(tc, test_avail_idx_read_once_per_pass);
    tcase_add_test(tc, test_bad_chain_budget_per_pop);
    tcase_add_test(tc, test_no_interrupt_flag);
    tcase_add_test(tc, test_event_idx_wraparound);
    tcase_add_test(tc, test_event_idx_avail_event_rechecks);
    tcase_add_test(tc, test_reset_makes_chains_stale);
    tcase_add_test(tc, test_iov_splits_at_region_boundary);
    tcase_add_test(tc, test_unpop_hands_back);
    tcase_add_test(tc, test_unpop_refuses_misuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(virtq_suite());
}
