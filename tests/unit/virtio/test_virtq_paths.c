/* SPDX-License-Identifier: Apache-2.0 */
/* Split virtqueues, the paths test_virtq does not choose: ring areas and
 * buffers that straddle memory regions or sit misaligned on the host (the
 * checked accessors instead of cached host pointers), a read-only used ring,
 * the chain pool (no chain handed out twice, long chains, double release,
 * chains outliving their queue) and dirty tracking through the fast paths. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <vmm/virtio.h>

#include "check_compat.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE 16
/* A chain longer than a pooled one holds (8 segments), and no longer than
 * the queue. */
#define LONG_CHAIN 12

static struct td d;
static struct vmm_virtq *q;
static unsigned interrupts, breaks;
static uint8_t *raw_host; /* what td.host was carved from (misaligned tests) */

static void on_interrupt(void *opaque, struct vmm_virtq *vq)
{
    (void)opaque;
    (void)vq;
    interrupts++;
}

static void on_broken(void *opaque, struct vmm_virtq *vq)
{
    (void)opaque;
    (void)vq;
    breaks++;
}

static void make_queue(uint64_t features)
{
    struct vmm_virtq_callbacks cb =
        VMM_INIT(struct vmm_virtq_callbacks, .interrupt = on_interrupt, .broken = on_broken);
    ck_assert_int_eq(vmm_virtq_create(d.mem, 0, 64, &cb, &q), 0);
    vmm_virtq_set_features(q, features);
}

/* Guest memory at [TD_MEM_BASE, +TD_MEM_SIZE) made of several external
 * regions over one host buffer, cut at the given guest addresses (sorted):
 * what the driver sees is the same, but no area crossing a cut lies in one
 * region. */
static void init_cut(const uint64_t *cuts, unsigned ncuts)
{
    memset(&d, 0, sizeof(d));
    d.size = QSIZE;
    d.desc = TD_DESC;
    d.avail = TD_AVAIL;
    d.used = TD_USED;
    d.host = calloc(1, TD_MEM_SIZE);
    ck_assert_ptr_nonnull(d.host);
    ck_assert_int_eq(vmm_memory_create(&d.mem), 0);
    uint64_t start = TD_MEM_BASE;
    for (unsigned i = 0; i <= ncuts; i++) {
        uint64_t end = i < ncuts ? cuts[i] : TD_MEM_BASE + TD_MEM_SIZE;
        ck_assert_int_ge(
            vmm_memory_add_external(d.mem, start, end - start, d.host + (start - TD_MEM_BASE)), 0);
        start = end;
    }
    interrupts = breaks = 0;
}

static void fini(void)
{
    vmm_virtq_destroy(q);
    q = NULL;
    vmm_memory_destroy(d.mem);
    free(raw_host ? raw_host : d.host);
    raw_host = NULL;
    memset(&d, 0, sizeof(d));
}

static void setup_plain(void)
{
    td_init(&d, QSIZE);
    interrupts = breaks = 0;
    make_queue(VMM_VIRTIO_F_INDIRECT_DESC);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
}

/* A request: header (readable), then a writable buffer. */
static void post_request(unsigned slot, uint64_t hdr, uint64_t buf, uint32_t buf_len)
{
    td_desc(&d, slot, hdr, 16, TD_F_NEXT, (uint16_t)(slot + 1));
    td_desc(&d, slot + 1, buf, buf_len, TD_F_WRITE, 0);
    td_avail(&d, (uint16_t)slot);
}

/* Pop it, check what the device sees, answer and push; then what the driver
 * sees. */
static void serve_request(unsigned slot, uint64_t hdr, uint64_t buf, uint32_t buf_len)
{
    memcpy(td_ptr(&d, hdr), "header-of-16byte", 16);
    post_request(slot, hdr, buf, buf_len);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, 1);
    ck_assert_uint_eq(c->nr_writable, 1);
    ck_assert_uint_eq(c->seg[0].gpa, hdr);
    ck_assert_uint_eq(c->seg[1].gpa, buf);
    char h[16];
    ck_assert_int_eq(vmm_virtq_chain_read(c, 0, h, 16), 16);
    ck_assert_mem_eq(h, "header-of-16byte", 16);
    char reply[64];
    memset(reply, 'a' + (int)(slot % 26), sizeof(reply));
    uint32_t n = buf_len < sizeof(reply) ? buf_len : (uint32_t)sizeof(reply);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, reply, n), (int)n);
    struct iovec iov[4];
    int niov = vmm_virtq_chain_iov(c, true, 0, buf_len, iov, 4);
    ck_assert_int_ge(niov, 1);
    ck_assert_ptr_eq(iov[0].iov_base, td_ptr(&d, buf));
    uint16_t used_before = td_used_idx(&d);
    ck_assert_int_eq(vmm_virtq_push(q, c, n), 0);
    ck_assert_uint_eq(td_used_idx(&d), (uint16_t)(used_before + 1));
    uint32_t id, len;
    td_used_elem(&d, used_before, &id, &len);
    ck_assert_uint_eq(id, slot);
    ck_assert_uint_eq(len, n);
    ck_assert_mem_eq(td_ptr(&d, buf), reply, n);
}

/* ---- areas across region boundaries: the checked accessors ---- */

START_TEST(test_rings_straddle_regions)
{
    /* Cut through descriptor 8, through the available ring's entries (and
     * away from used_event), through used element 7, and through a buffer. */
    const uint64_t cuts[] = {TD_DESC + 8 * 16 + 8, TD_AVAIL + 4 + 2 * 6, TD_USED + 4 + 8 * 7 + 4,
                             TD_BUF + 0x1000 + 8};
    init_cut(cuts, 4);
    make_queue(VMM_VIRTIO_F_INDIRECT_DESC | VMM_VIRTIO_F_EVENT_IDX);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    td_set_used_event(&d, 0xffff);

    /* Round the ring twice: every available entry, used element and
     * descriptor pair, including the ones that straddle, gets used. */
    for (unsigned round = 0; round < 2 * QSIZE; round++) {
        unsigned slot = (round * 2) % QSIZE;
        serve_request(slot, TD_BUF + 16 * slot, TD_BUF + 0x800 + 64 * slot, 64);
    }
    /* A buffer across the cut: one segment, two iovecs, copies that cross. */
    serve_request(8, TD_BUF, TD_BUF + 0x1000, 16);
    td_desc(&d, 4, TD_BUF + 0x1000, 16, TD_F_WRITE, 0);
    td_avail(&d, 4);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    struct iovec iov[4];
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 16, iov, 4), 2);
    ck_assert_uint_eq(iov[0].iov_len, 8);
    ck_assert_ptr_eq(iov[1].iov_base, td_ptr(&d, TD_BUF + 0x1008));
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "0123456789abcdef", 16), 16);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x1000), "0123456789abcdef", 16);
    char back[16];
    ck_assert_int_eq(vmm_virtq_chain_read(c, 0, back, 16), 0); /* nothing readable */
    ck_assert_int_eq(vmm_virtq_push(q, c, 16), 0);

    /* An indirect table across the first cut. */
    td_desc_at(&d, TD_DESC + 7 * 16, 0, TD_BUF, 4, TD_F_NEXT, 1);
    td_desc_at(&d, TD_DESC + 7 * 16, 1, TD_BUF + 0x100, 8, TD_F_WRITE, 0);
    /* (the table lies over descriptors 7 and 8 of the main table, which
     * is fine as long as the driver does not use them meanwhile) */
    td_desc(&d, 2, TD_DESC + 7 * 16, 32, TD_F_INDIRECT, 0);
    td_avail(&d, 2);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_readable, 1);
    ck_assert_uint_eq(c->nr_writable, 1);
    ck_assert_uint_eq(c->seg[1].gpa, TD_BUF + 0x100);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);

    /* Popping empty publishes avail_event through the checked store. */
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(td_avail_event(&d), d.avail_idx);
    ck_assert_uint_eq(breaks, 0);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.bad_chains, 0);
    fini();
}
END_TEST

START_TEST(test_hostile_chains_on_straddling_table)
{
    /* The checks hold on the slow path too: a loop through the descriptor
     * that straddles, an address past memory, an index past the size. */
    const uint64_t cuts[] = {TD_DESC + 8 * 16 + 8};
    init_cut(cuts, 1);
    make_queue(0);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    td_desc(&d, 7, TD_BUF, 8, TD_F_NEXT, 8);
    td_desc(&d, 8, TD_BUF, 8, TD_F_NEXT, 7);
    td_avail(&d, 7);
    td_desc(&d, 9, TD_MEM_BASE + TD_MEM_SIZE - 4, 8, TD_F_WRITE, 0);
    td_avail(&d, 9);
    td_desc(&d, 10, TD_BUF, 8, TD_F_NEXT, QSIZE);
    td_avail(&d, 10);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.bad_chains, 3);
    ck_assert_uint_eq(td_used_idx(&d), 3);
    fini();
}
END_TEST

/* ---- host alignment ---- */

/* Guest memory over a host buffer offset by `skew` bytes from alignment. */
static void init_skewed(unsigned skew)
{
    memset(&d, 0, sizeof(d));
    d.size = QSIZE;
    d.desc = TD_DESC;
    d.avail = TD_AVAIL;
    d.used = TD_USED;
    raw_host = aligned_alloc(64, TD_MEM_SIZE + 64);
    ck_assert_ptr_nonnull(raw_host);
    memset(raw_host, 0, TD_MEM_SIZE + 64);
    d.host = raw_host + skew;
    ck_assert_int_eq(vmm_memory_create(&d.mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(d.mem, TD_MEM_BASE, TD_MEM_SIZE, d.host), 0);
    interrupts = breaks = 0;
}

START_TEST(test_descriptor_table_misaligned_on_host)
{
    /* 4 bytes off: the descriptor table cannot be read 8 bytes at a time
     * (checked reads instead), the rings still can. */
    init_skewed(4);
    make_queue(VMM_VIRTIO_F_INDIRECT_DESC);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    for (unsigned round = 0; round < QSIZE + 2; round++)
        serve_request(2 * (round % 4), TD_BUF + 16 * round, TD_BUF + 0x800 + 64 * round, 64);
    /* An indirect table misaligned on the host is read the checked way. */
    td_desc_at(&d, TD_INDIRECT, 0, TD_BUF, 4, TD_F_NEXT, 1);
    td_desc_at(&d, TD_INDIRECT, 1, TD_BUF + 0x100, 8, TD_F_WRITE, 0);
    td_desc(&d, 12, TD_INDIRECT, 32, TD_F_INDIRECT, 0);
    td_avail(&d, 12);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(c->nr_writable, 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
    ck_assert_uint_eq(breaks, 0);
    fini();
}
END_TEST

START_TEST(test_rings_misaligned_on_host_break)
{
    /* An odd host address: the ring indices cannot be accessed atomically at
     * all, so the queue breaks (as it always did), rather than tearing. */
    init_skewed(1);
    make_queue(0);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), -EIO);
    ck_assert_uint_eq(breaks, 1);
    fini();
}
END_TEST

/* ---- a read-only region ---- */

START_TEST(test_readonly_region)
{
    /* Rings in RAM, plus a ROM region with the used ring of a second
     * enable, and buffers. */
    td_init(&d, QSIZE);
    interrupts = breaks = 0;
    const uint64_t rom = TD_MEM_BASE + TD_MEM_SIZE;
    struct vmm_region_config rc = {.size = sizeof(struct vmm_region_config),
                                   .gpa = rom,
                                   .len = 0x2000,
                                   .flags = VMM_MEMORY_F_READONLY};
    int idx = vmm_memory_add_region(d.mem, &rc);
    ck_assert_int_ge(idx, 0);
    struct vmm_region_info ri = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(d.mem, (unsigned)idx, &ri), 0);
    uint8_t *rom_host = ri.host;
    memcpy(rom_host, "read-only bytes!", 16);

    make_queue(0);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    /* A readable buffer in ROM reads; a writable one refuses writes. */
    td_desc(&d, 0, rom, 16, TD_F_NEXT, 1);
    td_desc(&d, 1, rom + 0x100, 16, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    char buf[16];
    ck_assert_int_eq(vmm_virtq_chain_read(c, 0, buf, 16), 16);
    ck_assert_mem_eq(buf, "read-only bytes!", 16);
    struct iovec iov[2];
    ck_assert_int_eq(vmm_virtq_chain_iov(c, false, 0, 16, iov, 2), 1);
    ck_assert_ptr_eq(iov[0].iov_base, rom_host);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "x", 1), -EROFS);
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 16, iov, 2), -EROFS);
    ck_assert_int_eq(vmm_virtq_push(q, c, 0), 0);

    /* A used ring in ROM: enable accepts it (it is guest memory), the first
     * push cannot write it and breaks the queue. */
    vmm_virtq_reset(q);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, rom), 0);
    d.avail_idx = 0;
    td_set_u16(&d, TD_AVAIL + 2, 0);
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), -EIO);
    ck_assert_uint_eq(breaks, 1);
    fini();
}
END_TEST

/* ---- the chain pool ---- */

START_TEST(test_pool_never_hands_out_a_held_chain)
{
    struct vmm_virtq_chain *held[QSIZE];
    for (unsigned i = 0; i < QSIZE; i++) {
        td_desc(&d, i, TD_BUF + 64 * i, 64, TD_F_WRITE, 0);
        td_avail(&d, (uint16_t)i);
    }
    for (unsigned i = 0; i < QSIZE; i++) {
        ck_assert_int_eq(vmm_virtq_pop(q, &held[i]), 1);
        ck_assert_uint_eq(vmm_virtq_chain_head(held[i]), i);
        for (unsigned j = 0; j < i; j++) {
            ck_assert_ptr_ne(held[i], held[j]);
            ck_assert_ptr_ne(held[i]->seg, held[j]->seg);
        }
    }
    /* Give back the even ones; the next pops may reuse those, never an odd
     * one still held, and what they carry is their own chain's. */
    for (unsigned i = 0; i < QSIZE; i += 2)
        ck_assert_int_eq(vmm_virtq_push(q, held[i], 0), 0);
    bool reused = false;
    for (unsigned k = 0; k < QSIZE / 2; k++) {
        unsigned slot = 2 * k;
        td_desc(&d, slot, TD_BUF + 0x1000 + 8 * slot, 8, TD_F_WRITE, 0);
        td_avail(&d, (uint16_t)slot);
        struct vmm_virtq_chain *c;
        ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
        ck_assert_uint_eq(vmm_virtq_chain_head(c), slot);
        ck_assert_uint_eq(c->seg[0].gpa, TD_BUF + 0x1000 + 8 * slot);
        ck_assert_uint_eq(c->seg[0].len, 8);
        for (unsigned j = 1; j < QSIZE; j += 2) {
            ck_assert_ptr_ne(c, held[j]);
            /* The held chains are untouched. */
            ck_assert_uint_eq(vmm_virtq_chain_head(held[j]), j);
            ck_assert_uint_eq(held[j]->seg[0].gpa, TD_BUF + 64 * j);
        }
        for (unsigned j = 0; j < QSIZE; j += 2)
            reused |= c == held[j];
        held[slot] = c;
    }
    ck_assert(reused);
    for (unsigned i = 0; i < QSIZE; i++)
        ck_assert_int_eq(vmm_virtq_push(q, held[i], 0), 0);
    ck_assert_uint_eq(td_used_idx(&d), QSIZE / 2 + QSIZE);
}
END_TEST

START_TEST(test_pool_long_and_short_chains)
{
    /* Longer than a pooled chain holds (a table of LONG_CHAIN), then short
     * ones: the segments of each are its own. */
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < LONG_CHAIN; i++)
            td_desc_at(&d, TD_INDIRECT, i, TD_BUF + 2 * i + round, 1,
                       i < LONG_CHAIN - 1 ? TD_F_NEXT : 0, (uint16_t)(i + 1));
        td_desc(&d, 0, TD_INDIRECT, LONG_CHAIN * 16, TD_F_INDIRECT, 0);
        td_avail(&d, 0);
        td_desc(&d, 1, TD_BUF + 0x700, 4, TD_F_NEXT, 2);
        td_desc(&d, 2, TD_BUF + 0x800, 4, TD_F_WRITE, 0);
        td_avail(&d, 1);
        struct vmm_virtq_chain *big, *small;
        ck_assert_int_eq(vmm_virtq_pop(q, &big), 1);
        ck_assert_int_eq(vmm_virtq_pop(q, &small), 1);
        ck_assert_uint_eq(big->nr_readable, LONG_CHAIN);
        for (unsigned i = 0; i < LONG_CHAIN; i++)
            ck_assert_uint_eq(big->seg[i].gpa, TD_BUF + 2 * i + round);
        ck_assert_uint_eq(small->nr_readable, 1);
        ck_assert_uint_eq(small->nr_writable, 1);
        ck_assert_uint_eq(small->seg[0].gpa, TD_BUF + 0x700);
        ck_assert_uint_eq(small->seg[1].gpa, TD_BUF + 0x800);
        /* Reading the long chain goes through all of its segments. */
        uint8_t all[LONG_CHAIN];
        memset(td_ptr(&d, TD_BUF), 0x5a, 0x100);
        ck_assert_int_eq(vmm_virtq_chain_read(big, 0, all, sizeof(all)), LONG_CHAIN);
        if (round == 1) {
            /* Held across a reset: stale, only freed. */
            vmm_virtq_reset(q);
            vmm_virtq_set_features(q, VMM_VIRTIO_F_INDIRECT_DESC);
            ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
            td_start_at(&d, 0);
        }
        ck_assert_int_eq(vmm_virtq_push(q, small, 4), 0);
        ck_assert_int_eq(vmm_virtq_push(q, big, 0), 0);
    }
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(q, &st);
    ck_assert_uint_eq(st.stale_pushes, 2);
}
END_TEST

START_TEST(test_double_release_refused)
{
    td_desc(&d, 0, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), 0);
    ck_assert_uint_eq(td_used_idx(&d), 1);
    /* A device bug: pushing or freeing it again completes nothing and does
     * not put it on the free list twice. */
    ck_assert_int_eq(vmm_virtq_push(q, c, 8), -EINVAL);
    vmm_virtq_chain_free(c);
    ck_assert_uint_eq(td_used_idx(&d), 1);
    td_desc(&d, 1, TD_BUF + 8, 8, TD_F_WRITE, 0);
    td_desc(&d, 2, TD_BUF + 16, 8, TD_F_WRITE, 0);
    td_avail(&d, 1);
    td_avail(&d, 2);
    struct vmm_virtq_chain *a, *b;
    ck_assert_int_eq(vmm_virtq_pop(q, &a), 1);
    ck_assert_int_eq(vmm_virtq_pop(q, &b), 1);
    ck_assert_ptr_ne(a, b);
    ck_assert_uint_eq(a->seg[0].gpa, TD_BUF + 8);
    ck_assert_uint_eq(b->seg[0].gpa, TD_BUF + 16);
    vmm_virtq_chain_free(a);
    vmm_virtq_chain_free(b);
    vmm_virtq_chain_free(NULL);
}
END_TEST

START_TEST(test_chains_outlive_queue)
{
    /* Pooled and long chains held when the queue goes: freeing them
     * afterwards is fine (the pool goes with the last one; ASan checks). */
    for (unsigned i = 0; i < LONG_CHAIN; i++)
        td_desc_at(&d, TD_INDIRECT, i, TD_BUF + i, 1, i < LONG_CHAIN - 1 ? TD_F_NEXT : 0,
                   (uint16_t)(i + 1));
    td_desc(&d, 0, TD_INDIRECT, LONG_CHAIN * 16, TD_F_INDIRECT, 0);
    td_desc(&d, 1, TD_BUF, 8, TD_F_WRITE, 0);
    td_desc(&d, 2, TD_BUF, 8, TD_F_WRITE, 0);
    td_avail(&d, 0);
    td_avail(&d, 1);
    td_avail(&d, 2);
    struct vmm_virtq_chain *c[3];
    for (unsigned i = 0; i < 3; i++)
        ck_assert_int_eq(vmm_virtq_pop(q, &c[i]), 1);
    vmm_virtq_chain_free(c[2]); /* one on the free list too */
    vmm_virtq_destroy(q);
    q = NULL;
    ck_assert_uint_eq(c[1]->seg[0].gpa, TD_BUF);
    vmm_virtq_chain_free(c[1]);
    vmm_virtq_chain_free(c[0]);
}
END_TEST

START_TEST(test_device_changes_segments)
{
    /* The chain is the device's: one that trims or moves a segment gets what
     * the segment now says, through the checked accessors, never the host
     * address found for the original. */
    memcpy(td_ptr(&d, TD_BUF), "0123456789abcdef", 16);
    td_desc(&d, 0, TD_BUF, 16, TD_F_NEXT, 1);
    td_desc(&d, 1, TD_BUF + 0x100, 16, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    char buf[16];
    c->seg[0].gpa += 4;
    c->seg[0].len -= 4;
    c->readable_len -= 4;
    ck_assert_int_eq(vmm_virtq_chain_read(c, 0, buf, 16), 12);
    ck_assert_mem_eq(buf, "456789abcdef", 12);
    struct iovec iov[2];
    ck_assert_int_eq(vmm_virtq_chain_iov(c, false, 0, 12, iov, 2), 1);
    ck_assert_ptr_eq(iov[0].iov_base, td_ptr(&d, TD_BUF + 4));
    /* Grown past the end of guest memory: refused, not read. */
    c->seg[1].gpa = TD_MEM_BASE + TD_MEM_SIZE - 8;
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "0123456789abcdef", 16), -EFAULT);
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 16, iov, 2), -EFAULT);
    c->seg[1].gpa = TD_BUF + 0x200;
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "0123456789abcdef", 16), 16);
    ck_assert_mem_eq(td_ptr(&d, TD_BUF + 0x200), "0123456789abcdef", 16);
    ck_assert_int_eq(vmm_virtq_push(q, c, 16), 0);
}
END_TEST

/* ---- dirty tracking through the fast paths ---- */

static uint64_t fetch_dirty(void)
{
    uint64_t bm[8] = {0};
    ck_assert_int_eq(vmm_memory_dirty_fetch(d.mem, 0, bm, 8), 0);
    return bm[0]; /* pages 0..63 of the region: all of TD_MEM_SIZE */
}

static uint64_t page_bit(uint64_t gpa)
{
    return 1ull << ((gpa - TD_MEM_BASE) >> 12);
}

START_TEST(test_dirty_tracking)
{
    const uint64_t buf = TD_BUF + 0x3000;
    td_desc(&d, 0, TD_BUF, 16, TD_F_NEXT, 1);
    td_desc(&d, 1, buf, 0x2000, TD_F_WRITE, 0);
    td_avail(&d, 0);
    struct vmm_virtq_chain *c;
    /* Tracking off: nothing to fetch, and the fast paths skip marking. */
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    struct iovec iov[2];
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0, 0x2000, iov, 2), 1);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "x", 1), 1);
    vmm_virtq_chain_mark_dirty(c, 0x2000);
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);

    ck_assert_int_eq(vmm_memory_dirty_track(d.mem, 0, true), 0);
    ck_assert_uint_eq(fetch_dirty(), 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_uint_eq(fetch_dirty(), 0); /* popping writes nothing */
    /* Writable iovecs mark their pages when handed out. */
    ck_assert_int_eq(vmm_virtq_chain_iov(c, true, 0x1000, 0x1000, iov, 2), 1);
    ck_assert_uint_eq(fetch_dirty(), page_bit(buf + 0x1000));
    ck_assert_int_eq(vmm_virtq_chain_iov(c, false, 0, 16, iov, 2), 1);
    ck_assert_uint_eq(fetch_dirty(), 0); /* readable ones do not */
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "y", 1), 1);
    ck_assert_uint_eq(fetch_dirty(), page_bit(buf));
    vmm_virtq_chain_mark_dirty(c, 0x1001);
    ck_assert_uint_eq(fetch_dirty(), page_bit(buf) | page_bit(buf + 0x1000));
    /* The used element and index. */
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);
    ck_assert_uint_eq(fetch_dirty(), page_bit(TD_USED));

    /* Off again: writes are not marked (and fetch refuses). */
    ck_assert_int_eq(vmm_memory_dirty_track(d.mem, 0, false), 0);
    td_avail(&d, 0);
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 1);
    ck_assert_int_eq(vmm_virtq_chain_write(c, 0, "z", 1), 1);
    ck_assert_int_eq(vmm_virtq_push(q, c, 1), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(d.mem, 0, true), 0);
    ck_assert_uint_eq(fetch_dirty(), 0);
    ck_assert_mem_eq(td_ptr(&d, buf), "z", 1);
}
END_TEST

START_TEST(test_dirty_tracking_event_idx)
{
    /* avail_event is published through the cached used ring: marked too. */
    vmm_virtq_destroy(q);
    make_queue(VMM_VIRTIO_F_EVENT_IDX);
    ck_assert_int_eq(vmm_virtq_enable(q, QSIZE, TD_DESC, TD_AVAIL, TD_USED), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(d.mem, 0, true), 0);
    struct vmm_virtq_chain *c;
    ck_assert_int_eq(vmm_virtq_pop(q, &c), 0);
    ck_assert_uint_eq(fetch_dirty(), page_bit(TD_USED));
}
END_TEST

static void teardown_plain(void)
{
    vmm_virtq_destroy(q);
    q = NULL;
    td_fini(&d);
}

static Suite *suite(void)
{
    Suite *s = suite_create("virtq-paths");
    TCase *slow = tcase_create("slow paths");
    tcase_add_test(slow, test_rings_straddle_regions);
    tcase_add_test(slow, test_hostile_chains_on_straddling_table);
    tcase_add_test(slow, test_descriptor_table_misaligned_on_host);
    tcase_add_test(slow, test_rings_misaligned_on_host_break);
    tcase_add_test(slow, test_readonly_region);
    suite_add_tcase(s, slow);

    TCase *pool = tcase_create("pool and dirty");
    tcase_add_checked_fixture(pool, setup_plain, teardown_plain);
    tcase_add_test(pool, test_pool_never_hands_out_a_held_chain);
    tcase_add_test(pool, test_pool_long_and_short_chains);
    tcase_add_test(pool, test_double_release_refused);
    tcase_add_test(pool, test_chains_outlive_queue);
    tcase_add_test(pool, test_device_changes_segments);
    tcase_add_test(pool, test_dirty_tracking);
    tcase_add_test(pool, test_dirty_tracking_event_idx);
    suite_add_tcase(s, pool);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(suite());
}
