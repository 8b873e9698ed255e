/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the exit profile's bookkeeping (lib/cpu/stats.c): exits
 * counted by reason and site with the time from each exit to the next
 * entry, the bounded site table a hostile guest cannot grow, and the merge
 * of several vCPUs into the public struct, busiest first. Times are made up
 * here, never measured. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_compat.h"
#include "cpu/stats.h"

/* One exit: entered at t, exits at t + guest_ns, re-entered handle_ns later;
 * returns the time of the re-entry. */
static uint64_t one_exit(struct vmm_vcpu_stats *s, uint64_t t, uint64_t guest_ns,
                         uint64_t handle_ns, uint32_t reason, bool site, uint64_t addr, bool write)
{
    vmm_stats_enter(s, t);
    vmm_stats_exit(s, t, t + guest_ns, true, reason, site, addr, write);
    return t + guest_ns + handle_ns;
}

START_TEST(test_reasons_and_sites)
{
    struct vmm_vcpu_stats *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    uint64_t t = 1000;
    /* 10 UART writes of 7 us each, 3 reads of the LSR of 2 us, 2 MMIO writes
     * of 50 us, one HLT of 1 us; 100 ns in the guest before each. */
    for (int i = 0; i < 10; i++)
        t = one_exit(s, t, 100, 7000, KVM_EXIT_IO, true, 0x3f8, true);
    for (int i = 0; i < 3; i++)
        t = one_exit(s, t, 100, 2000, KVM_EXIT_IO, true, 0x3fd, false);
    for (int i = 0; i < 2; i++)
        t = one_exit(s, t, 100, 50000, KVM_EXIT_MMIO, true, 0xd0000000, true);
    t = one_exit(s, t, 100, 1000, KVM_EXIT_HLT, false, 0, false);
    /* A kick: time in the guest, no exit, nothing pending. */
    vmm_stats_enter(s, t);
    vmm_stats_exit(s, t, t + 500, false, KVM_EXIT_INTR, false, 0, false);
    vmm_stats_settle(s, t + 500 + 12345); /* charges nothing */

    struct vmm_stats st;
    struct vmm_vcpu_stats *v[1] = {s};
    ck_assert_int_eq(vmm_stats_merge(v, 1, 42, &st), 0);
    ck_assert_uint_eq(st.size, sizeof(st));
    ck_assert_uint_eq(st.created_ns, 42);
    ck_assert_uint_eq(st.first_run_ns, 1000);
    ck_assert_uint_eq(st.exits, 16);
    ck_assert_uint_eq(st.guest_ns, 16 * 100 + 500);
    ck_assert_uint_eq(st.exit_ns, 10 * 7000 + 3 * 2000 + 2 * 50000 + 1000);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_IO].count, 13);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_IO].ns, 10 * 7000 + 3 * 2000);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_MMIO].count, 2);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_MMIO].ns, 100000);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_HLT].count, 1);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_HLT].ns, 1000);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_INTR].count, 0);
    ck_assert_uint_eq(st.other_count, 0);
    /* Busiest first: the MMIO site, the UART data port, the LSR. */
    ck_assert_uint_eq(st.nr_sites, 3);
    ck_assert_uint_eq(st.sites[0].kvm_reason, KVM_EXIT_MMIO);
    ck_assert_uint_eq(st.sites[0].addr, 0xd0000000);
    ck_assert_uint_eq(st.sites[0].write, 1);
    ck_assert_uint_eq(st.sites[0].count, 2);
    ck_assert_uint_eq(st.sites[0].ns, 100000);
    ck_assert_uint_eq(st.sites[1].addr, 0x3f8);
    ck_assert_uint_eq(st.sites[1].count, 10);
    ck_assert_uint_eq(st.sites[1].ns, 70000);
    ck_assert_uint_eq(st.sites[2].addr, 0x3fd);
    ck_assert_uint_eq(st.sites[2].write, 0);
    ck_assert_uint_eq(st.sites[2].count, 3);
    free(s);
}
END_TEST

START_TEST(test_read_and_write_apart)
{
    struct vmm_vcpu_stats *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    uint64_t t = 1;
    t = one_exit(s, t, 1, 10, KVM_EXIT_IO, true, 0x70, true);
    t = one_exit(s, t, 1, 20, KVM_EXIT_IO, true, 0x70, false);
    t = one_exit(s, t, 1, 30, KVM_EXIT_X86_RDMSR, true, 0x70, false);
    vmm_stats_settle(s, t);
    struct vmm_stats st;
    struct vmm_vcpu_stats *v[1] = {s};
    ck_assert_int_eq(vmm_stats_merge(v, 1, 0, &st), 0);
    ck_assert_uint_eq(st.nr_sites, 3);
    ck_assert_uint_eq(st.sites[0].kvm_reason, KVM_EXIT_X86_RDMSR);
    ck_assert_uint_eq(st.sites[1].kvm_reason, KVM_EXIT_IO);
    ck_assert_uint_eq(st.sites[1].write, 0);
    ck_assert_uint_eq(st.sites[2].write, 1);
    /* A reason past the table lands in the last slot. */
    vmm_stats_enter(s, t);
    vmm_stats_exit(s, t, t + 1, true, 1000, false, 0, false);
    vmm_stats_settle(s, t + 5);
    ck_assert_int_eq(vmm_stats_merge(v, 1, 0, &st), 0);
    ck_assert_uint_eq(st.reasons[VMM_STATS_REASONS - 1].count, 1);
    ck_assert_uint_eq(st.reasons[VMM_STATS_REASONS - 1].ns, 4);
    free(s);
}
END_TEST

/* A guest that touches a new address on every exit: the table stays
 * bounded, and every exit is still counted, in its reason and in "other". */
START_TEST(test_hostile_many_sites)
{
    struct vmm_vcpu_stats *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    uint64_t t = 1;
    const unsigned n = 100000;
    for (unsigned i = 0; i < n; i++)
        t = one_exit(s, t, 1, 3, KVM_EXIT_MMIO, true, 0x100000000ull + 4096ull * i, false);
    vmm_stats_settle(s, t);
    unsigned used = 0;
    uint64_t in_table = 0;
    for (unsigned i = 0; i < VMM_STATS_VCPU_SITES; i++) {
        used += s->slots[i].used;
        in_table += s->slots[i].count;
    }
    ck_assert_uint_le(used, VMM_STATS_VCPU_SITES);
    ck_assert_uint_eq(in_table + s->other_count, n);

    struct vmm_stats st;
    struct vmm_vcpu_stats *v[1] = {s};
    ck_assert_int_eq(vmm_stats_merge(v, 1, 0, &st), 0);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_MMIO].count, n);
    ck_assert_uint_eq(st.reasons[KVM_EXIT_MMIO].ns, 3ull * n);
    ck_assert_uint_eq(st.nr_sites, VMM_STATS_SITES);
    uint64_t count = st.other_count, ns = st.other_ns;
    for (unsigned i = 0; i < st.nr_sites; i++) {
        count += st.sites[i].count;
        ns += st.sites[i].ns;
    }
    ck_assert_uint_eq(count, n);
    ck_assert_uint_eq(ns, 3ull * n);
    free(s);
}
END_TEST

/* Two vCPUs at the same site, one at its own, one without a profile. */
START_TEST(test_merge_vcpus)
{
    struct vmm_vcpu_stats *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    uint64_t t = 500;
    t = one_exit(a, t, 10, 100, KVM_EXIT_IO, true, 0x3f8, true);
    t = one_exit(a, t, 10, 100, KVM_EXIT_IO, true, 0x3f8, true);
    vmm_stats_settle(a, t);
    t = one_exit(b, 200, 10, 300, KVM_EXIT_IO, true, 0x3f8, true);
    t = one_exit(b, t, 10, 50, KVM_EXIT_IO, true, 0x61, false);
    vmm_stats_settle(b, t);
    struct vmm_stats st;
    struct vmm_vcpu_stats *v[3] = {a, NULL, b};
    ck_assert_int_eq(vmm_stats_merge(v, 3, 0, &st), 0);
    ck_assert_uint_eq(st.first_run_ns, 200);
    ck_assert_uint_eq(st.exits, 4);
    ck_assert_uint_eq(st.nr_sites, 2);
    ck_assert_uint_eq(st.sites[0].addr, 0x3f8);
    ck_assert_uint_eq(st.sites[0].count, 3);
    ck_assert_uint_eq(st.sites[0].ns, 500);
    ck_assert_uint_eq(st.sites[1].addr, 0x61);
    ck_assert_uint_eq(st.sites[1].ns, 50);
    /* Nothing at all. */
    ck_assert_int_eq(vmm_stats_merge(v + 1, 1, 7, &st), 0);
    ck_assert_uint_eq(st.exits, 0);
    ck_assert_uint_eq(st.nr_sites, 0);
    ck_assert_uint_eq(st.first_run_ns, 0);
    free(a);
    free(b);
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20); /* 100000 exits bookkept */
    tcase_add_test(tc, test_reasons_and_sites);
    tcase_add_test(tc, test_read_and_write_apart);
    tcase_add_test(tc, test_hostile_many_sites);
    tcase_add_test(tc, test_merge_vcpus);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(stats_suite());
}
