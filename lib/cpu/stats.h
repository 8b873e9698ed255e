/* SPDX-License-Identifier: Apache-2.0 */
/* The exit profile's per-vCPU counters (include/vmm/stats.h): written by
 * the vCPU's thread only, merged into a struct vmm_stats when read. Pure
 * bookkeeping over times the caller measures, so that it can be tested
 * without KVM. */
#ifndef VMM_CPU_STATS_H
#define VMM_CPU_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/stats.h>

struct vmm_stats_slot {
    uint64_t addr;
    uint64_t count;
    uint64_t ns;
    uint32_t reason;
    uint8_t write;
    bool used;
};

struct vmm_vcpu_stats {
    uint64_t first_run_ns;
    uint64_t exits;
    uint64_t guest_ns;
    uint64_t exit_ns;
    uint64_t other_count;
    uint64_t other_ns;
    struct vmm_stats_count reasons[VMM_STATS_REASONS];
    struct vmm_stats_slot slots[VMM_STATS_VCPU_SITES];
    /* The exit being handled: its reason's and its site's ns, charged at
     * the next entry; NULL when none. */
    uint64_t *pending_reason_ns;
    uint64_t *pending_site_ns;
    uint64_t exit_at;
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t vmm_stats_now(void);

/* Before entering the guest at now: charge the exit being handled. */
void vmm_stats_enter(struct vmm_vcpu_stats *s, uint64_t now);

/* Charge the exit being handled up to now, if any (the run ends). */
void vmm_stats_settle(struct vmm_vcpu_stats *s, uint64_t now);

/* KVM_RUN entered at entered returned at now: with an exit (exited) of
 * reason, at a site when has_site (addr, write), or interrupted (a kick:
 * time in the guest, no exit). */
void vmm_stats_exit(struct vmm_vcpu_stats *s, uint64_t entered, uint64_t now, bool exited,
                    uint32_t reason, bool has_site, uint64_t addr, bool write);

/* Merge n vCPUs' counters (NULL ones skipped) into *out (the whole struct;
 * size set). Returns 0 or -ENOMEM. */
int vmm_stats_merge(struct vmm_vcpu_stats *const *v, unsigned n, uint64_t created_ns,
                    struct vmm_stats *out);

#endif /* VMM_CPU_STATS_H */
