/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the coalesced-write ring drain (lib/cpu/coalesced.c): the
 * writes KVM queued reach the port and MMIO buses in order, the ring wraps,
 * and a ring with bad indices or lengths is not trusted. The ring is a page
 * of our own, filled as KVM fills it. */
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_compat.h"
#include "cpu/cpu_internal.h"

struct rec {
    uint64_t offset[16];
    uint32_t len[16];
    uint8_t data[16];
    unsigned n;
};

static void record(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct rec *r = opaque;
    if (r->n < 16) {
        r->offset[r->n] = offset;
        r->len[r->n] = len;
        r->data[r->n] = data[0];
    }
    r->n++;
}

static const struct vmm_bus_ops ops = {.size = sizeof(ops), .write = record};

static void push(struct kvm_coalesced_mmio_ring *ring, uint32_t max, uint64_t addr, uint32_t len,
                 bool pio, uint8_t v)
{
    struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[ring->last];
    memset(e, 0, sizeof(*e));
    e->phys_addr = addr;
    e->len = len;
    e->pio = pio;
    e->data[0] = v;
    ring->last = (ring->last + 1) % max;
}

START_TEST(test_drain_in_order_and_wrap)
{
    long psize = sysconf(_SC_PAGESIZE);
    struct kvm_coalesced_mmio_ring *ring = calloc(1, (size_t)psize);
    ck_assert_ptr_nonnull(ring);
    uint32_t max = (uint32_t)(((size_t)psize - sizeof(*ring)) / sizeof(struct kvm_coalesced_mmio));
    struct vmm_bus *pio, *mmio;
    ck_assert_int_eq(vmm_bus_create("pio", &pio), 0);
    ck_assert_int_eq(vmm_bus_create("mmio", &mmio), 0);
    struct rec rp = {0}, rm = {0};
    ck_assert_int_eq(vmm_bus_register(pio, 0xcf8, 4, &ops, &rp), 0);
    ck_assert_int_eq(vmm_bus_register(mmio, 0xd0000000, 0x1000, &ops, &rm), 0);

    /* Nothing queued. */
    ck_assert_uint_eq(vmm_coalesced_drain(ring, max, pio, mmio), 0);
    /* Start near the end so that the ring wraps. */
    ring->first = ring->last = max - 2;
    push(ring, max, 0xcf8, 4, true, 1);
    push(ring, max, 0xd0000010, 8, false, 2);
    push(ring, max, 0xcfb, 1, true, 3);
    push(ring, max, 0x80, 1, true, 4); /* nobody there: dropped */
    ck_assert_uint_eq(vmm_coalesced_drain(ring, max, pio, mmio), 4);
    ck_assert_uint_eq(ring->first, ring->last);
    ck_assert_uint_eq(ring->first, 2);
    ck_assert_uint_eq(rp.n, 2);
    ck_assert_uint_eq(rp.offset[0], 0);
    ck_assert_uint_eq(rp.len[0], 4);
    ck_assert_uint_eq(rp.data[0], 1);
    ck_assert_uint_eq(rp.offset[1], 3);
    ck_assert_uint_eq(rp.data[1], 3);
    ck_assert_uint_eq(rm.n, 1);
    ck_assert_uint_eq(rm.offset[0], 0x10);
    ck_assert_uint_eq(rm.len[0], 8);

    /* Hostile entries: a length of 0 or past the data is skipped, not used. */
    push(ring, max, 0xcf8, 0, true, 5);
    push(ring, max, 0xcf8, 9, true, 6);
    push(ring, max, 0xcf8, 2, true, 7);
    ck_assert_uint_eq(vmm_coalesced_drain(ring, max, pio, mmio), 3);
    ck_assert_uint_eq(rp.n, 3);
    ck_assert_uint_eq(rp.data[2], 7);
    /* Indices past the ring: left alone. */
    ring->first = 0;
    ring->last = max + 5;
    ck_assert_uint_eq(vmm_coalesced_drain(ring, max, pio, mmio), 0);
    ring->first = max;
    ring->last = 0;
    ck_assert_uint_eq(vmm_coalesced_drain(ring, max, pio, mmio), 0);
    ck_assert_uint_eq(rp.n, 3);

    vmm_bus_destroy(pio);
    vmm_bus_destroy(mmio);
    free(ring);
}
END_TEST

static Suite *coalesced_suite(void)
{
    Suite *s = suite_create("coalesced");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_drain_in_order_and_wrap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(coalesced_suite());
}
