/* SPDX-License-Identifier: Apache-2.0 */
/* The exit profile's bookkeeping: per-vCPU counters by exit reason and by
 * site (an open-addressed table of bounded size and probe length), and the
 * merge of all vCPUs' counters into the public struct vmm_stats. */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Probes before an exit's site counts as "other". */
#define MAX_PROBES 16

uint64_t vmm_stats_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vmm_stats_settle(struct vmm_vcpu_stats *s, uint64_t now)
{
    if (!s->pending_reason_ns)
        return;
    uint64_t d = now > s->exit_at ? now - s->exit_at : 0;
    s->exit_ns += d;
    *s->pending_reason_ns += d;
    if (s->pending_site_ns)
        *s->pending_site_ns += d;
    s->pending_reason_ns = NULL;
    s->pending_site_ns = NULL;
}

void vmm_stats_enter(struct vmm_vcpu_stats *s, uint64_t now)
{
    if (!s->first_run_ns)
        s->first_run_ns = now;
    vmm_stats_settle(s, now);
}

static struct vmm_stats_slot *site_slot(struct vmm_vcpu_stats *s, uint32_t reason, uint64_t addr,
                                        bool write)
{
    uint64_t key = addr ^ ((uint64_t)reason << 40) ^ ((uint64_t)write << 39);
    unsigned h = (unsigned)((key * 0x9e3779b97f4a7c15ull) >> 56); /* 8 bits: 256 slots */
    _Static_assert(VMM_STATS_VCPU_SITES == 256, "the hash gives 8 bits");
    for (unsigned i = 0; i < MAX_PROBES; i++) {
        struct vmm_stats_slot *e = &s->slots[(h + i) % VMM_STATS_VCPU_SITES];
        if (!e->used) {
            *e = (struct vmm_stats_slot){
                .addr = addr, .reason = reason, .write = write, .used = true};
            return e;
        }
        if (e->addr == addr && e->reason == reason && e->write == write)
            return e;
    }
    return NULL;
}

void vmm_stats_exit(struct vmm_vcpu_stats *s, uint64_t entered, uint64_t now, bool exited,
                    uint32_t reason, bool has_site, uint64_t addr, bool write)
{
    s->guest_ns += now > entered ? now - entered : 0;
    if (!exited)
        return;
    s->exits++;
    struct vmm_stats_count *r =
        &s->reasons[reason < VMM_STATS_REASONS ? reason : VMM_STATS_REASONS - 1];
    r->count++;
    s->pending_reason_ns = &r->ns;
    s->exit_at = now;
    s->pending_site_ns = NULL;
    if (!has_site)
        return;
    struct vmm_stats_slot *e = site_slot(s, reason, addr, write);
    if (e) {
        e->count++;
        s->pending_site_ns = &e->ns;
    } else { /* no room: counted apart */
        s->other_count++;
        s->pending_site_ns = &s->other_ns;
    }
}

static int site_key_cmp(const void *a, const void *b)
{
    const struct vmm_stats_site *x = a, *y = b;
    if (x->kvm_reason != y->kvm_reason)
        return x->kvm_reason < y->kvm_reason ? -1 : 1;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    return (int)x->write - (int)y->write;
}

/* The most time first, then the most exits, then the key (a stable order). */
static int site_busy_cmp(const void *a, const void *b)
{
    const struct vmm_stats_site *x = a, *y = b;
    if (x->ns != y->ns)
        return x->ns > y->ns ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return site_key_cmp(a, b);
}

/* In-place heapsort: glibc's qsort may call sysinfo(2) to size a buffer,
 * which the seccomp filters (lib/seccomp) do not allow. */
static void sift_down(struct vmm_stats_site *a, size_t root, size_t n,
                      int (*cmp)(const void *, const void *))
{
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && cmp(&a[child], &a[child + 1]) < 0)
            child++;
        if (cmp(&a[root], &a[child]) >= 0)
            return;
        struct vmm_stats_site t = a[root];
        a[root] = a[child];
        a[child] = t;
    }
}

static void sort_sites(struct vmm_stats_site *a, size_t n, int (*cmp)(const void *, const void *))
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n, cmp);
    for (size_t end = n; end > 1; end--) {
        struct vmm_stats_site t = a[0];
        a[0] = a[end - 1];
        a[end - 1] = t;
        sift_down(a, 0, end - 1, cmp);
    }
}

int vmm_stats_merge(struct vmm_vcpu_stats *const *v, unsigned n, uint64_t created_ns,
                    struct vmm_stats *out)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; v[i] && j < VMM_STATS_VCPU_SITES; j++)
            total += v[i]->slots[j].used;
    struct vmm_stats_site *all = total ? calloc(total, sizeof(*all)) : NULL;
    if (total && !all)
        return -ENOMEM;

    *out = (struct vmm_stats){.size = sizeof(*out), .created_ns = created_ns};
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct vmm_vcpu_stats *s = v[i];
        if (!s)
            continue;
        if (s->first_run_ns && (!out->first_run_ns || s->first_run_ns < out->first_run_ns))
            out->first_run_ns = s->first_run_ns;
        out->exits += s->exits;
        out->guest_ns += s->guest_ns;
        out->exit_ns += s->exit_ns;
        out->other_count += s->other_count;
        out->other_ns += s->other_ns;
        for (unsigned r = 0; r < VMM_STATS_REASONS; r++) {
            out->reasons[r].count += s->reasons[r].count;
            out->reasons[r].ns += s->reasons[r].ns;
        }
        for (unsigned j = 0; j < VMM_STATS_VCPU_SITES; j++) {
            const struct vmm_stats_slot *e = &s->slots[j];
            if (e->used)
                all[k++] = (struct vmm_stats_site){.kvm_reason = e->reason,
                                                   .write = e->write,
                                                   .addr = e->addr,
                                                   .count = e->count,
                                                   .ns = e->ns};
        }
    }
    /* The same site on several vCPUs: one entry. */
    size_t m = 0;
    if (total) {
        sort_sites(all, total, site_key_cmp);
        for (size_t i = 0; i < total; i++) {
            if (m && site_key_cmp(&all[m - 1], &all[i]) == 0) {
                all[m - 1].count += all[i].count;
                all[m - 1].ns += all[i].ns;
            } else {
                all[m++] = all[i];
            }
        }
        sort_sites(all, m, site_busy_cmp);
    }
    for (size_t i = 0; i < m; i++) {
        if (i < VMM_STATS_SITES) {
            out->sites[i] = all[i];
        } else {
            out->other_count += all[i].count;
            out->other_ns += all[i].ns;
        }
    }
    out->nr_sites = m < VMM_STATS_SITES ? (uint32_t)m : VMM_STATS_SITES;
    free(all);
    return 0;
}
