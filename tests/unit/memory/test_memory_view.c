/* SPDX-License-Identifier: Apache-2.0 */
/* Host views of regions (lib/memory/memory_view.h): lookup, the covers check
 * at the edges and against overflow, stability while regions are added, and
 * dirty marking through a view, with the map-wide tracking count. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/memory.h>

#include "check_compat.h"
#include "memory/memory_view.h"

static struct vmm_memory *mem;
static uint8_t *host_a, *host_b, *host_c;

#define A_GPA  0x10000ull
#define A_SIZE 0x4000ull
#define B_GPA  (A_GPA + A_SIZE) /* right after a */
#define B_SIZE 0x2000ull

static void setup(void)
{
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    host_a = calloc(1, A_SIZE);
    host_b = calloc(1, B_SIZE);
    host_c = calloc(20, 0x1000);
    ck_assert_int_eq(vmm_memory_add_external(mem, A_GPA, A_SIZE, host_a), 0);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(host_a);
    free(host_b);
    free(host_c);
}

START_TEST(test_find_and_covers)
{
    struct memory_view v;
    ck_assert_int_eq(memory_view_find(mem, A_GPA - 1, &v), -EFAULT);
    ck_assert_int_eq(memory_view_find(mem, A_GPA + A_SIZE, &v), -EFAULT);
    ck_assert_int_eq(memory_view_find(mem, UINT64_MAX, &v), -EFAULT);
    ck_assert_int_eq(memory_view_find(mem, A_GPA + A_SIZE - 1, &v), 0);
    ck_assert_uint_eq(v.gpa, A_GPA);
    ck_assert_uint_eq(v.end, A_GPA + A_SIZE);
    ck_assert_ptr_eq(v.host, host_a);
    ck_assert(!v.readonly);
    ck_assert_ptr_eq(memory_view_ptr(&v, A_GPA + 0x123), host_a + 0x123);

    ck_assert(memory_view_covers(&v, A_GPA, A_SIZE));
    ck_assert(memory_view_covers(&v, A_GPA + A_SIZE - 1, 1));
    ck_assert(memory_view_covers(&v, A_GPA + 5, 0));
    ck_assert(!memory_view_covers(&v, A_GPA + A_SIZE - 1, 2));
    ck_assert(!memory_view_covers(&v, A_GPA - 1, 1));
    /* The end itself is not in the view, even for an empty range (as
     * vmm_memory_check_range wants gpa inside memory). */
    ck_assert(!memory_view_covers(&v, A_GPA + A_SIZE, 0));
    /* No wrap-around: huge lengths and addresses. */
    ck_assert(!memory_view_covers(&v, A_GPA + 8, UINT64_MAX));
    ck_assert(!memory_view_covers(&v, A_GPA + 8, UINT64_MAX - A_GPA));
    ck_assert(!memory_view_covers(&v, UINT64_MAX, 1));

    /* A zeroed view covers nothing. */
    struct memory_view none = {0};
    ck_assert(!memory_view_covers(&none, 0, 0));
    ck_assert(!memory_view_covers(&none, 0, 1));
}
END_TEST

START_TEST(test_view_survives_added_regions)
{
    struct memory_view v;
    ck_assert_int_eq(memory_view_find(mem, A_GPA, &v), 0);
    /* Regions added afterwards (the span array grows and moves) leave the
     * view exact; the new neighbour does not extend it. */
    ck_assert_int_eq(vmm_memory_add_external(mem, B_GPA, B_SIZE, host_b), 1);
    for (unsigned i = 0; i < 20; i++)
        ck_assert_int_ge(
            vmm_memory_add_external(mem, 0x100000ull + 0x2000ull * i, 0x1000, host_c + 0x1000 * i),
            0);
    struct memory_view again;
    ck_assert_int_eq(memory_view_find(mem, A_GPA + 1, &again), 0);
    ck_assert_uint_eq(again.gpa, v.gpa);
    ck_assert_uint_eq(again.end, v.end);
    ck_assert_ptr_eq(again.host, v.host);
    ck_assert_ptr_eq(again.region, v.region);
    ck_assert(!memory_view_covers(&v, B_GPA - 4, 8)); /* across: not one view */
    ck_assert_int_eq(vmm_memory_check_range(mem, B_GPA - 4, 8), 0);
    struct memory_view vb;
    ck_assert_int_eq(memory_view_find(mem, B_GPA, &vb), 0);
    ck_assert_ptr_eq(vb.host, host_b);
    ck_assert_ptr_ne(vb.region, v.region);
}
END_TEST

START_TEST(test_readonly_view)
{
    struct vmm_region_config rc = {.size = sizeof(struct vmm_region_config),
                                   .gpa = 0x200000,
                                   .len = 0x1000,
                                   .flags = VMM_MEMORY_F_READONLY};
    ck_assert_int_ge(vmm_memory_add_region(mem, &rc), 0);
    struct memory_view v;
    ck_assert_int_eq(memory_view_find(mem, 0x200800, &v), 0);
    ck_assert(v.readonly);
    ck_assert_uint_eq(v.end - v.gpa, 0x1000);
}
END_TEST

START_TEST(test_dirty_through_view)
{
    ck_assert_int_eq(vmm_memory_add_external(mem, B_GPA, B_SIZE, host_b), 1);
    struct memory_view va, vb;
    ck_assert_int_eq(memory_view_find(mem, A_GPA, &va), 0);
    ck_assert_int_eq(memory_view_find(mem, B_GPA, &vb), 0);
    ck_assert(!memory_dirty_tracking_any(mem));
    /* Off: marking is a no-op. */
    memory_view_mark_dirty(&va, A_GPA + 0x1000, 1);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 1, true), 0);
    ck_assert(memory_dirty_tracking_any(mem));
    /* Turning it on again (a restart) does not count twice. */
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 1, true), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, true), 0);
    uint64_t bm[4] = {0};
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 4), 0);
    ck_assert_uint_eq(bm[0], 0);
    memory_view_mark_dirty(&va, A_GPA + 0x1ff0, 0x20); /* pages 1 and 2 */
    memory_region_dirty_gpa(vb.region, B_GPA + 0x1000, 1);
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 4), 0);
    ck_assert_uint_eq(bm[0], 0x6);
    bm[0] = 0;
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 1, bm, 4), 0);
    ck_assert_uint_eq(bm[0], 0x2);

    /* The count follows the regions: off twice counts once. */
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, false), 0);
    ck_assert(memory_dirty_tracking_any(mem));
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, false), 0);
    ck_assert(memory_dirty_tracking_any(mem));
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 1, false), 0);
    ck_assert(!memory_dirty_tracking_any(mem));
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 2, false), -ENOENT);
    ck_assert(!memory_dirty_tracking_any(mem));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("memory-view");
    TCase *tc = tcase_create("view");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_find_and_covers);
    tcase_add_test(tc, test_view_survives_added_regions);
    tcase_add_test(tc, test_readonly_view);
    tcase_add_test(tc, test_dirty_through_view);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(suite());
}
