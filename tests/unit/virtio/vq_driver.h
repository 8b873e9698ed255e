/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal split-ring "driver" for the unit tests: it lays rings out in
 * malloc-backed guest memory and plays the guest's side of a virtqueue
 * (including the hostile moves a real driver never makes). */
#ifndef VQ_DRIVER_H
#define VQ_DRIVER_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <vmm/memory.h>

#define TD_F_NEXT     1
#define TD_F_WRITE    2
#define TD_F_INDIRECT 4

#define TD_MEM_BASE 0x10000ull
#define TD_MEM_SIZE 0x40000ull
#define TD_DESC     0x10000ull /* descriptor table (up to 256 entries) */
#define TD_AVAIL    0x11000ull
#define TD_USED     0x12000ull
#define TD_INDIRECT 0x14000ull /* indirect tables */
#define TD_BUF      0x20000ull /* buffers */

struct td {
    struct vmm_memory *mem;
    uint8_t *host; /* host view of [TD_MEM_BASE, TD_MEM_BASE + TD_MEM_SIZE) */
    unsigned size;
    uint64_t desc, avail, used; /* this ring's areas */
    uint16_t avail_idx;         /* the driver's next avail index */
    uint16_t used_seen;         /* the driver's last consumed used index */
};

static inline void *td_ptr(struct td *d, uint64_t gpa)
{
    ck_assert_uint_ge(gpa, TD_MEM_BASE);
    ck_assert_uint_lt(gpa, TD_MEM_BASE + TD_MEM_SIZE);
    return d->host + (gpa - TD_MEM_BASE);
}

static inline void td_init(struct td *d, unsigned size)
{
    memset(d, 0, sizeof(*d));
    d->size = size;
    d->desc = TD_DESC;
    d->avail = TD_AVAIL;
    d->used = TD_USED;
    d->host = calloc(1, TD_MEM_SIZE);
    ck_assert_ptr_nonnull(d->host);
    ck_assert_int_eq(vmm_memory_create(&d->mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(d->mem, TD_MEM_BASE, TD_MEM_SIZE, d->host), 0);
}

/* A second ring in the same memory (for a device's other queue). */
static inline void td_other_ring(struct td *r, const struct td *d, unsigned size, uint64_t desc,
                                 uint64_t avail, uint64_t used)
{
    *r = *d;
    r->size = size;
    r->desc = desc;
    r->avail = avail;
    r->used = used;
    r->avail_idx = r->used_seen = 0;
}

static inline void td_fini(struct td *d)
{
    vmm_memory_destroy(d->mem);
    free(d->host);
}

/* Write a descriptor at host address p (a table outside the driver's
 * memory, in a region a test added). */
static inline void td_desc_host(void *p, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *b = p;
    memcpy(b, &addr, 8);
    memcpy(b + 8, &len, 4);
    memcpy(b + 12, &flags, 2);
    memcpy(b + 14, &next, 2);
}

/* Write descriptor i of the table at table (TD_DESC or an indirect table). */
static inline void td_desc_at(struct td *d, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                              uint16_t flags, uint16_t next)
{
    td_desc_host(td_ptr(d, table + 16ull * i), addr, len, flags, next);
}

static inline void td_desc(struct td *d, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                           uint16_t next)
{
    td_desc_at(d, d->desc, i, addr, len, flags, next);
}

static inline void td_set_u16(struct td *d, uint64_t gpa, uint16_t v)
{
    memcpy(td_ptr(d, gpa), &v, 2);
}

static inline uint16_t td_get_u16(struct td *d, uint64_t gpa)
{
    uint16_t v;
    memcpy(&v, td_ptr(d, gpa), 2);
    return v;
}

static inline uint32_t td_get_u32(struct td *d, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, td_ptr(d, gpa), 4);
    return v;
}

/* Make head available and publish the new index. */
static inline void td_avail(struct td *d, uint16_t head)
{
    td_set_u16(d, d->avail + 4 + 2ull * (d->avail_idx & (d->size - 1)), head);
    d->avail_idx++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    td_set_u16(d, d->avail + 2, d->avail_idx);
}

/* Issue 14's hostile driver, at the longest chains a queue of d->size
 * allows: one indirect table at TD_INDIRECT of d->size one-byte writable
 * descriptors, and every head of the ring made available pointing at it. */
static inline void td_post_longest_chains(struct td *d)
{
    for (unsigned i = 0; i < d->size; i++)
        td_desc_at(d, TD_INDIRECT, i, TD_BUF + i, 1,
                   (uint16_t)(TD_F_WRITE | (i + 1 < d->size ? TD_F_NEXT : 0)), (uint16_t)(i + 1));
    for (unsigned h = 0; h < d->size; h++) {
        td_desc_at(d, d->desc, h, TD_INDIRECT, 16 * d->size, TD_F_INDIRECT, 0);
        td_avail(d, (uint16_t)h);
    }
}

/* The process's peak resident set so far, in KiB: what a hostile ring made
 * the host pin shows up here even when it is freed again. */
static inline long td_peak_rss_kib(void)
{
    struct rusage ru;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* Start both rings at index start (as if start chains had gone by). */
static inline void td_start_at(struct td *d, uint16_t start)
{
    d->avail_idx = start;
    d->used_seen = start;
    td_set_u16(d, d->avail + 2, start);
    td_set_u16(d, d->used + 2, start);
}

static inline uint16_t td_used_idx(struct td *d)
{
    return td_get_u16(d, d->used + 2);
}

/* Used element slot. */
static inline void td_used_elem(struct td *d, unsigned slot, uint32_t *id, uint32_t *len)
{
    uint64_t at = d->used + 4 + 8ull * (slot & (d->size - 1));
    *id = td_get_u32(d, at);
    *len = td_get_u32(d, at + 4);
}

static inline void td_set_used_event(struct td *d, uint16_t v)
{
    td_set_u16(d, d->avail + 4 + 2ull * d->size, v);
}

static inline uint16_t td_avail_event(struct td *d)
{
    return td_get_u16(d, d->used + 4 + 8ull * d->size);
}

#endif
