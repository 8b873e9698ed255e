/* SPDX-License-Identifier: Apache-2.0 */
/* Function micro-VMs (function.h): a one-vCPU VM whose guest functions are
 * called by name through port exits, reset after every call to the snapshot
 * taken when the guest said it was ready. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vmm/function.h>
#include <vmm/loader.h>
#include <vmm/vcpu.h>
#include <vmm/vm.h>

#include "cpu/cpu_internal.h"
#include "function_internal.h"
#include "vmm_internal.h"

#define PAGE_SIZE       4096u
#define PAGE_SHIFT      12
#define NO_SLOT         UINT32_MAX
#define MEM_MAX         (3ull << 30) /* below the LAPIC and IOAPIC windows */
#define INIT_TIMEOUT_NS 1000000000ull

/* MSRs a guest could keep data in across calls, where KVM cannot deny them
 * to it: saved with the snapshot and written back by every reset. (FS/GS
 * base and EFER travel in the sregs.) */
static const uint32_t fn_msr_list[] = {
    0x174,      /* SYSENTER_CS */
    0x175,      /* SYSENTER_ESP */
    0x176,      /* SYSENTER_EIP */
    0xc0000081, /* STAR */
    0xc0000082, /* LSTAR */
    0xc0000083, /* CSTAR */
    0xc0000084, /* SFMASK */
    0xc0000102, /* KERNEL_GS_BASE */
    0xc0000103, /* TSC_AUX */
};
#define FN_NMSRS VMM_ARRAY_SIZE(fn_msr_list)

/* The vCPU state of the snapshot. Optional parts the host's KVM lacks are
 * left out (have_*), and the rest is still restored. */
struct fn_cpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_xsave *xsave; /* NULL: KVM_GET_XSAVE not offered, fpu instead */
    struct kvm_debugregs dregs;
    struct kvm_vcpu_events events;
    struct kvm_lapic_state lapic;
    struct kvm_msrs *msrs; /* room for FN_NMSRS entries; NULL while locked */
    bool have_dregs, have_events;
    /* The guest cannot touch MSRs (a deny-all KVM MSR filter) and its LAPIC
     * is off: neither can change, so resets after a returned call skip them. */
    bool locked;
    /* KVM_CAP_SYNC_REGS: registers travel in the kvm_run page, so a reset
     * writes them there and the next KVM_RUN loads them (no ioctl). */
    bool sync_regs;
    /* KVM drops the completion of a plain `out %al, %dx` exit (the skip past
     * the instruction) when the registers it resumes with have another RIP,
     * as Linux's KVM does (complete_fast_pio_out): probed at READY. Then a call that ended that way
     * needs no settling KVM_RUN. */
    bool plain_out_rip_change;
};

struct fn_host {
    char name[VMM_FN_NAME_MAX + 1];
    size_t len;
    vmm_fn_host_fn cb;
    void *opaque;
};

struct vmm_fn {
    struct vmm_vm *vm;
    struct vmm_vcpu *vcpu;
    struct vmm_memory *mem;
    uint8_t *ram; /* host view of guest RAM [0, ram_size) */
    uint64_t ram_size;
    uint64_t npages;

    /* The snapshot: copies of the pages written before READY (all others
     * were zero then), page -> slot in snap, and the vCPU state. */
    uint8_t *snap;
    uint32_t *slot;
    uint64_t snap_pages;
    uint64_t *dirty, *dirty_more; /* dirty-page bitmaps, dirty_words each */
    size_t dirty_words;
    struct fn_cpu_state cpu;

    struct fn_host *hosts;
    unsigned nhosts, host_cap;

    /* Host copies of what the guest handed over, and the values decoded
     * from them (results point into out_copy until the next call). */
    uint8_t *out_copy;
    uint8_t *hcall_copy;
    struct vmm_fn_val results[VMM_FN_VALUES_MAX];
    struct vmm_fn_val hargs[VMM_FN_VALUES_MAX];

    /* Cancel and deadline, under lock. The watchdog thread, started with the
     * first call that has a deadline, ends calls whose deadline passed; it
     * sleeps until wd_wake (0: until signalled). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t wd;
    bool wd_started, wd_quit;
    bool in_call, stop_requested;
    int stop_reason;   /* -ECANCELED, -ETIMEDOUT */
    uint64_t deadline; /* CLOCK_MONOTONIC ns of the call running; 0: none */
    uint64_t wd_wake;

    bool broken;
    struct vmm_fn_stats stats;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- cancel and deadline ---- */

/* With fn->lock held: end the running call with reason. */
static void stop_locked(struct vmm_fn *fn, int reason)
{
    if (!fn->in_call || fn->stop_requested)
        return;
    fn->stop_requested = true;
    fn->stop_reason = reason;
    vmm_vm_stop(fn->vm);
}

void vmm_fn_cancel(struct vmm_fn *fn)
{
    if (!fn)
        return;
    pthread_mutex_lock(&fn->lock);
    stop_locked(fn, -ECANCELED);
    pthread_mutex_unlock(&fn->lock);
}

static void *watchdog(void *arg)
{
    struct vmm_fn *fn = arg;
    pthread_mutex_lock(&fn->lock);
    while (!fn->wd_quit) {
        uint64_t dl = fn->in_call && !fn->stop_requested ? fn->deadline : 0;
        if (dl && now_ns() >= dl) {
            stop_locked(fn, -ETIMEDOUT);
            dl = 0;
        }
        fn->wd_wake = dl;
        if (dl) {
            struct timespec ts = {.tv_sec = (time_t)(dl / 1000000000ull),
                                  .tv_nsec = (long)(dl % 1000000000ull)};
            pthread_cond_timedwait(&fn->cond, &fn->lock, &ts);
        } else {
            pthread_cond_wait(&fn->cond, &fn->lock);
        }
    }
    pthread_mutex_unlock(&fn->lock);
    return NULL;
}

/* Mark a call as running, with its deadline (0: none). */
static int call_begin(struct vmm_fn *fn, uint64_t timeout_ns)
{
    uint64_t dl = 0;
    if (timeout_ns && timeout_ns != UINT64_MAX) {
        dl = now_ns() + timeout_ns;
        if (dl < timeout_ns)
            dl = 0; /* past the end of time: no bound */
    }
    pthread_mutex_lock(&fn->lock);
    if (dl && !fn->wd_started) {
        int r = -pthread_create(&fn->wd, NULL, watchdog, fn);
        if (r < 0) {
            pthread_mutex_unlock(&fn->lock);
            return r;
        }
        fn->wd_started = true;
    }
    fn->in_call = true;
    fn->stop_requested = false;
    fn->deadline = dl;
    /* A watchdog already due to wake before dl will find it then. */
    if (dl && (fn->wd_wake == 0 || dl < fn->wd_wake))
        pthread_cond_signal(&fn->cond);
    pthread_mutex_unlock(&fn->lock);
    return 0;
}

/* The call is over; if a stop was requested that the call did not see end
 * its run (seen_end), take the VM's end now so the next call runs. */
static void call_end(struct vmm_fn *fn, bool seen_end)
{
    pthread_mutex_lock(&fn->lock);
    fn->in_call = false;
    fn->deadline = 0;
    bool drain = fn->stop_requested && !seen_end;
    pthread_mutex_unlock(&fn->lock);
    if (drain) {
        struct vmm_vcpu_exit ex = VMM_INIT(struct vmm_vcpu_exit);
        /* The run has ended: this returns VMM_VCPU_EXIT_END without entering. */
        if (vmm_vcpu_run_once(fn->vcpu, &ex) < 0 || ex.kind != VMM_VCPU_EXIT_END)
            vmm_log_debug("function VM: a stop request was left pending");
    }
}

/* ---- vCPU state ---- */

#define MSR_APIC_BASE     0x1bu
#define APIC_BASE_DEFAULT 0xfee00000ull
#define APIC_BASE_BSP     (1ull << 8)
#define SYNC_WANTED       (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)

/*
 * Before the guest first runs: deny it every MSR (KVM_X86_SET_MSR_FILTER,
 * default deny: RDMSR/WRMSR fault in the guest; the host's own accesses are
 * not filtered) and then turn its LAPIC off (it could not turn it back on),
 * so no call can leave state in either; and ask KVM to mirror the registers
 * in the kvm_run page. Where KVM lacks a capability the reset does the same
 * work with ioctls instead.
 */
/* KVM_CHECK_EXTENSION of the default /dev/kvm, asked once per process
 * (the answer + 1; 0: not asked yet). */
static int cached_cap[2];

static int check_cap(struct vmm_fn *fn, unsigned slot, long cap, bool cacheable)
{
    int v = cacheable ? __atomic_load_n(&cached_cap[slot], __ATOMIC_RELAXED) : 0;
    if (v)
        return v - 1;
    int r = vmm_kvm_ioctl(fn->vm->kvm_fd, KVM_CHECK_EXTENSION, (void *)cap);
    r = r < 0 ? 0 : r;
    if (cacheable)
        __atomic_store_n(&cached_cap[slot], r + 1, __ATOMIC_RELAXED);
    return r;
}

static void cpu_prepare(struct vmm_fn *fn, bool default_kvm)
{
    struct vmm_vcpu *v = fn->vcpu;
    struct fn_cpu_state *c = &fn->cpu;
    /* KVM refuses a default-deny filter without ranges: one range that
     * denies MSR 0 as well. */
    static uint8_t deny_bitmap[8];
    struct kvm_msr_filter filter = {
        .flags = KVM_MSR_FILTER_DEFAULT_DENY,
        .ranges[0] = {.flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
                      .nmsrs = 1,
                      .base = 0,
                      .bitmap = deny_bitmap},
    };
    if (check_cap(fn, 0, KVM_CAP_X86_MSR_FILTER, default_kvm) > 0 &&
        vmm_kvm_ioctl(fn->vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) == 0) {
        /* vCPU 0 is the bootstrap processor, its LAPIC at the usual base:
         * keep both, clear the enable bit. */
        struct kvm_msr_entry base = {.index = MSR_APIC_BASE,
                                     .data = APIC_BASE_DEFAULT | APIC_BASE_BSP};
        c->locked = vmm_vcpu_set_msrs(v, &base, 1) == 1;
        if (!c->locked) {
            /* Without the LAPIC off the guest's accesses must stay possible
             * to reset: take the filter away again. */
            filter = (struct kvm_msr_filter){.flags = KVM_MSR_FILTER_DEFAULT_ALLOW};
            (void)vmm_kvm_ioctl(fn->vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter);
        }
    }
    int caps = check_cap(fn, 1, KVM_CAP_SYNC_REGS, default_kvm);
    if ((caps & SYNC_WANTED) == SYNC_WANTED) {
        v->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
        c->sync_regs = true;
    }
    vmm_log_debug("function VM: MSRs and LAPIC %s, registers %s", c->locked ? "locked" : "reset",
                  c->sync_regs ? "through kvm_run" : "by ioctl");
}

/* Keep the snapshot's vCPU state; c->regs and c->sregs are taken already
 * (ready_settle). What is locked (cpu_prepare) needs no copy. */
static int cpu_save(struct vmm_fn *fn)
{
    struct vmm_vcpu *v = fn->vcpu;
    struct fn_cpu_state *c = &fn->cpu;
    int r;
    c->xsave = calloc(1, sizeof(*c->xsave));
    if (!c->xsave)
        return -ENOMEM;
    if (vmm_kvm_ioctl(v->fd, KVM_GET_XSAVE, c->xsave) < 0) {
        free(c->xsave);
        c->xsave = NULL;
        if ((r = vmm_vcpu_get_fpu(v, &c->fpu)) < 0)
            return r;
    }
    c->have_dregs = vmm_kvm_ioctl(v->fd, KVM_GET_DEBUGREGS, &c->dregs) == 0;
    c->have_events = vmm_kvm_ioctl(v->fd, KVM_GET_VCPU_EVENTS, &c->events) == 0;
    if (c->locked)
        return 0;
    if ((r = vmm_vcpu_get_lapic(v, &c->lapic)) < 0)
        return r;
    c->msrs = calloc(1, sizeof(*c->msrs) + FN_NMSRS * sizeof(c->msrs->entries[0]));
    if (!c->msrs)
        return -ENOMEM;
    c->msrs->nmsrs = FN_NMSRS;
    for (unsigned i = 0; i < FN_NMSRS; i++)
        c->msrs->entries[i] = (struct kvm_msr_entry){.index = fn_msr_list[i]};
    /* KVM stops at the first MSR it does not know: keep those before it. */
    r = vmm_kvm_ioctl(v->fd, KVM_GET_MSRS, c->msrs);
    c->msrs->nmsrs = r > 0 ? (uint32_t)r : 0;
    return 0;
}

/* Put the vCPU back in the snapshot's state. After a call that failed the
 * whole state is written (the vCPU may be halted, mid-exception, or reset by
 * a triple fault); after one that returned, only what it can have changed,
 * and the special registers only when they differ. With sync_regs the
 * registers go into the kvm_run page for the next KVM_RUN to load; the
 * vCPU has settled (vmm_vcpu_settle), so nothing of the last exit is left
 * for that KVM_RUN to complete on top of them. */
static int cpu_restore(struct vmm_fn *fn, bool full)
{
    struct vmm_vcpu *v = fn->vcpu;
    struct fn_cpu_state *c = &fn->cpu;
    struct kvm_run *run = v->run;
    int r;
    if (c->sync_regs) {
        uint64_t dirty = KVM_SYNC_X86_REGS;
        run->s.regs.regs = c->regs;
        /* run->s.regs.sregs is what the settling KVM_RUN left there. */
        if (full || memcmp(&run->s.regs.sregs, &c->sregs, sizeof(c->sregs)) != 0) {
            run->s.regs.sregs = c->sregs;
            dirty |= KVM_SYNC_X86_SREGS;
        }
        if (full && c->have_events) {
            run->s.regs.events = c->events;
            dirty |= KVM_SYNC_X86_EVENTS;
        }
        run->kvm_dirty_regs = dirty;
    } else {
        struct kvm_sregs s;
        if ((r = vmm_vcpu_set_regs(v, &c->regs)) < 0)
            return r;
        if (full || (r = vmm_vcpu_get_sregs(v, &s)) < 0 || memcmp(&s, &c->sregs, sizeof(s)) != 0)
            if ((r = vmm_vcpu_set_sregs(v, &c->sregs)) < 0)
                return r;
        if (full && c->have_events &&
            (r = vmm_kvm_ioctl(v->fd, KVM_SET_VCPU_EVENTS, &c->events)) < 0)
            return r;
    }
    r = c->xsave ? vmm_kvm_ioctl(v->fd, KVM_SET_XSAVE, c->xsave) : vmm_vcpu_set_fpu(v, &c->fpu);
    if (r < 0)
        return r;
    if (c->have_dregs && (r = vmm_kvm_ioctl(v->fd, KVM_SET_DEBUGREGS, &c->dregs)) < 0)
        return r;
    /* Locked: the guest can neither change nor see them. */
    if (!c->locked && c->msrs && c->msrs->nmsrs &&
        (r = vmm_kvm_ioctl(v->fd, KVM_SET_MSRS, c->msrs)) < 0)
        return r;
    if (!c->locked) {
        struct kvm_lapic_state l;
        if (full || (r = vmm_vcpu_get_lapic(v, &l)) < 0 || memcmp(&l, &c->lapic, sizeof(l)) != 0)
            if ((r = vmm_vcpu_set_lapic(v, &c->lapic)) < 0)
                return r;
    }
    if (full) {
        struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
        if ((r = vmm_kvm_ioctl(v->fd, KVM_SET_MP_STATE, &mp)) < 0)
            return r;
    }
    return 0;
}

/* ---- memory ---- */

static int dirty_fetch(struct vmm_fn *fn)
{
    return vmm_vm_dirty_log_fetch(fn->vm, 0, fn->dirty, fn->dirty_words);
}

/* Another fetch, ORed into what the last one found. */
static int dirty_fetch_more(struct vmm_fn *fn)
{
    int r = vmm_vm_dirty_log_fetch(fn->vm, 0, fn->dirty_more, fn->dirty_words);
    for (size_t w = 0; r == 0 && w < fn->dirty_words; w++)
        fn->dirty[w] |= fn->dirty_more[w];
    return r;
}

/* Whether the last fetch found a page of the boot area (the page tables
 * and GDT) written with other contents than the snapshot's. (A CPU may
 * write an accessed bit that is already set; that changes nothing.) */
static bool boot_area_changed(const struct vmm_fn *fn)
{
    for (uint64_t p = VMM_X86_BOOT_AREA_START >> PAGE_SHIFT;
         p < VMM_X86_BOOT_AREA_END >> PAGE_SHIFT; p++) {
        if (!(fn->dirty[p / 64] & (UINT64_C(1) << (p % 64))))
            continue;
        if (fn->slot[p] == NO_SLOT ||
            memcmp(fn->ram + (p << PAGE_SHIFT), fn->snap + (uint64_t)fn->slot[p] * PAGE_SIZE,
                   PAGE_SIZE) != 0)
            return true;
    }
    return false;
}

/*
 * Set the accessed bit in every present entry of the boot page tables and
 * the dirty bit in every large-page entry, before the guest runs: the CPU
 * then has nothing to write there, so a call that does not change the page
 * tables leaves their pages clean (and each reset has three pages fewer to
 * copy back). The tables are the library's (vmm_vcpu_set_boot_state):
 * every address is checked against RAM all the same.
 */
#define PTE_P       (1ull << 0)
#define PTE_A       (1ull << 5)
#define PTE_D       (1ull << 6)
#define PTE_PS      (1ull << 7)
#define PTE_ADDR(e) ((e)&0x000ffffffffff000ull)

static void preset_accessed(struct vmm_fn *fn, uint64_t table, unsigned level)
{
    if (table > fn->ram_size - PAGE_SIZE || table % PAGE_SIZE)
        return;
    uint64_t *e = (uint64_t *)(void *)(fn->ram + table);
    for (unsigned i = 0; i < 512; i++) {
        if (!(e[i] & PTE_P))
            continue;
        e[i] |= PTE_A;
        if (level == 1 || (level <= 3 && (e[i] & PTE_PS)))
            e[i] |= PTE_D; /* a leaf: a page, or a large page */
        else if (level > 1)
            preset_accessed(fn, PTE_ADDR(e[i]), level - 1);
    }
    vmm_memory_mark_dirty(fn->mem, table, PAGE_SIZE);
}

/* Keep a copy of every page written since VM creation: the snapshot. */
static int snapshot_take(struct vmm_fn *fn)
{
    int r = dirty_fetch(fn);
    if (r < 0)
        return r;
    uint64_t n = 0;
    for (size_t w = 0; w < fn->dirty_words; w++)
        n += (uint64_t)__builtin_popcountll(fn->dirty[w]);
    fn->slot = malloc(fn->npages * sizeof(*fn->slot));
    fn->snap = n ? malloc(n * PAGE_SIZE) : NULL;
    if (!fn->slot || (n && !fn->snap))
        return -ENOMEM;
    uint64_t k = 0;
    for (uint64_t p = 0; p < fn->npages; p++) {
        if (fn->dirty[p / 64] & (UINT64_C(1) << (p % 64))) {
            memcpy(fn->snap + k * PAGE_SIZE, fn->ram + (p << PAGE_SHIFT), PAGE_SIZE);
            fn->slot[p] = (uint32_t)k++;
        } else {
            fn->slot[p] = NO_SLOT;
        }
    }
    fn->snap_pages = n;
    fn->stats.snapshot_pages = n;
    return 0;
}

/* Put every page dirtied since the last fetch back as the snapshot has it. */
static int memory_restore(struct vmm_fn *fn)
{
    uint64_t n = 0;
    for (size_t w = 0; w < fn->dirty_words; w++) {
        uint64_t bits = fn->dirty[w];
        while (bits) {
            uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (p >= fn->npages)
                break;
            uint8_t *dst = fn->ram + (p << PAGE_SHIFT);
            if (fn->slot[p] == NO_SLOT)
                memset(dst, 0, PAGE_SIZE);
            else
                memcpy(dst, fn->snap + (uint64_t)fn->slot[p] * PAGE_SIZE, PAGE_SIZE);
            n++;
        }
    }
    fn->stats.pages_restored += n;
    fn->stats.last_pages_restored = n;
    return 0;
}

/* The one-byte `out %al, %dx` (no prefix) the fnrt signals are made of. */
#define OUT_AL_DX 0xee

/* Whether the vCPU stopped on a plain `out %al, %dx`: its RIP (the kvm_run
 * page's copy, stored at every exit with sync_regs) on that opcode. */
static bool stopped_on_plain_out(const struct vmm_fn *fn)
{
    uint64_t rip = fn->vcpu->run->s.regs.regs.rip;
    return fn->cpu.sync_regs && rip < fn->ram_size && fn->ram[rip] == OUT_AL_DX;
}

/*
 * At the READY exit: let KVM complete it and take the registers of the
 * state after it (the snapshot's). With sync_regs this also finds out
 * whether KVM completes a plain OUT exit on top of registers userspace
 * changed (skipping an instruction at the new RIP, or writing back the
 * registers of its emulator) or leaves them alone: the settling KVM_RUN
 * resumes at RIP + 1 with RCX changed, through the kvm_run page as a reset
 * does, and the registers it stores say which. Either way the vCPU ends in
 * the state the guest expects after its OUT. Returns 0 or a -errno.
 */
static int ready_settle(struct vmm_fn *fn)
{
    struct vmm_vcpu *v = fn->vcpu;
    struct fn_cpu_state *c = &fn->cpu;
    struct kvm_run *run = v->run;
    int r;
    if (!c->sync_regs) {
        if ((r = vmm_vcpu_settle(v)) < 0 || (r = vmm_vcpu_get_regs(v, &c->regs)) < 0)
            return r;
        return vmm_vcpu_get_sregs(v, &c->sregs);
    }
    if (!stopped_on_plain_out(fn)) {
        if ((r = vmm_vcpu_settle(v)) < 0)
            return r;
        c->regs = run->s.regs.regs;
        c->sregs = run->s.regs.sregs;
        return 0;
    }
    struct kvm_regs after = run->s.regs.regs;
    after.rip += 1;
    struct kvm_regs probe = after;
    probe.rcx ^= 0x5a5a5a5a5a5a5a5aull;
    run->s.regs.regs = probe;
    run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
    if ((r = vmm_vcpu_settle(v)) < 0)
        return r;
    c->plain_out_rip_change =
        run->s.regs.regs.rip == probe.rip && run->s.regs.regs.rcx == probe.rcx;
    vmm_log_debug("function VM: a plain OUT exit %s the registers userspace changed",
                  c->plain_out_rip_change ? "keeps" : "does not keep");
    c->regs = after;
    c->sregs = run->s.regs.sregs;
    /* The first call starts from here: the next KVM_RUN loads it. */
    run->s.regs.regs = after;
    run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
    return 0;
}

/*
 * Back to the snapshot after a call; returned: it ended on RETURN. Any
 * failure leaves the VM unusable.
 *
 * The settling KVM_RUN may be skipped only when KVM will drop the pending
 * completion (probed at READY) and the instruction it would complete is
 * the plain OUT found at RIP: in guest memory through the identity map, so
 * only while the paging is the snapshot's (the same special registers, the
 * page tables as they were). Otherwise the OUT seen might not be the
 * instruction executed, and a KVM that completed another (a REP OUTS) only
 * now would carry this call's registers into the next. (Linux completes an
 * OUTS before it exits; a guest that remaps, runs and maps back through a
 * stale TLB entry relies on a KVM that does not.)
 */
static int fn_reset(struct vmm_fn *fn, bool full, bool returned)
{
    struct fn_cpu_state *c = &fn->cpu;
    bool may_skip = returned && c->plain_out_rip_change && stopped_on_plain_out(fn) &&
                    memcmp(&fn->vcpu->run->s.regs.sregs, &c->sregs, sizeof(c->sregs)) == 0;
    int r;
    if (may_skip) {
        r = dirty_fetch(fn);
        if (r == 0 && boot_area_changed(fn) && (r = vmm_vcpu_settle(fn->vcpu)) == 0)
            r = dirty_fetch_more(fn); /* what completing it wrote */
    } else {
        r = vmm_vcpu_settle(fn->vcpu);
        if (r == 0)
            r = dirty_fetch(fn);
    }
    if (r == 0)
        r = memory_restore(fn);
    if (r == 0)
        r = cpu_restore(fn, full);
    if (r < 0) {
        fn->broken = true;
        vmm_log_error("function VM: reset failed (%s); the VM is unusable", vmm_strerror(r));
    }
    return r;
}

/* ---- running the guest ---- */

/* Why a run ended, for the caller of fn_run. */
struct run_out {
    uint64_t deadline; /* CLOCK_MONOTONIC ns checked on every interrupted
                          KVM_RUN (the run to READY, init_timer); 0: none */
    int err;
    int abort_code;
    bool seen_end;
    unsigned nresults;
    uint64_t exits;
    char *error;
    size_t error_len;
};

static int fail(struct run_out *o, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct run_out *o, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->error, o->error_len, fmt, ap);
    va_end(ap);
    o->err = err;
    vmm_log_debug("function VM: %s", o->error);
    return err;
}

static const struct fn_host *host_find(const struct vmm_fn *fn, const void *name, size_t len)
{
    for (unsigned i = 0; i < fn->nhosts; i++)
        if (fn->hosts[i].len == len && memcmp(fn->hosts[i].name, name, len) == 0)
            return &fn->hosts[i];
    return NULL;
}

/* Copy the message at src (a guest buffer of cap bytes) into dst: as many
 * bytes as its header claims, at most cap; decoding checks the rest. The
 * vCPU is stopped, so the guest cannot change the header in between. */
static size_t copy_message(uint8_t *dst, const uint8_t *src, size_t cap)
{
    struct vmm_fn_msg h;
    memcpy(&h, src, sizeof(h));
    size_t len = h.size < sizeof(h) ? sizeof(h) : h.size > cap ? cap : h.size;
    memcpy(dst, src, len);
    return len;
}

/* Answer a host call: decode HCALL, run the host function, write HRET. */
static int host_call(struct vmm_fn *fn, struct run_out *o)
{
    size_t len = copy_message(fn->hcall_copy, fn->ram + VMM_FN_HCALL_ADDR, VMM_FN_HCALL_SIZE);
    int n = vmm_fn_decode(fn->hcall_copy, len, fn->hargs, VMM_FN_VALUES_MAX);
    if (n < 1 || fn->hargs[0].type != VMM_FN_BYTES || fn->hargs[0].len == 0 ||
        fn->hargs[0].len > VMM_FN_NAME_MAX)
        return fail(o, -EPROTO, "malformed host call request");
    const struct fn_host *h = host_find(fn, fn->hargs[0].data, fn->hargs[0].len);
    struct vmm_fn_reply reply;
    uint8_t *hret = fn->ram + VMM_FN_HRET_ADDR;
    fn_reply_init(&reply, hret, VMM_FN_HRET_SIZE);
    int status;
    if (!h) {
        vmm_log_debug("function VM: host call to unregistered '%.*s'", (int)fn->hargs[0].len,
                      (const char *)fn->hargs[0].data);
        status = -ENOSYS;
    } else {
        status = h->cb(h->opaque, fn, fn->hargs + 1, (unsigned)n - 1, &reply);
        if (status > 0)
            status = 0;
    }
    len = fn_reply_finish(&reply, status);
    vmm_memory_mark_dirty(fn->mem, VMM_FN_HRET_ADDR, len);
    return 0;
}

/* The guest returned: its result, copied out of OUT and checked. */
static int take_result(struct vmm_fn *fn, struct run_out *o)
{
    size_t len = copy_message(fn->out_copy, fn->ram + VMM_FN_OUT_ADDR, VMM_FN_OUT_SIZE);
    int n = vmm_fn_decode(fn->out_copy, len, fn->results, VMM_FN_VALUES_MAX);
    if (n < 0)
        return fail(o, -EPROTO, "malformed result message in OUT");
    o->nresults = (unsigned)n;
    return 0;
}

static int take_abort(struct vmm_fn *fn, struct run_out *o)
{
    size_t len = copy_message(fn->out_copy, fn->ram + VMM_FN_OUT_ADDR, VMM_FN_OUT_SIZE);
    int n = vmm_fn_decode(fn->out_copy, len, fn->results, VMM_FN_VALUES_MAX);
    if (n < 1 || fn->results[0].type != VMM_FN_INT)
        return fail(o, -EPROTO, "malformed abort message in OUT");
    int64_t code = fn->results[0].i;
    o->abort_code = code < INT32_MIN || code > INT32_MAX ? -1 : (int)code;
    int mlen = 0;
    const char *msg = "";
    if (n >= 2 && fn->results[1].type == VMM_FN_BYTES) {
        msg = fn->results[1].data;
        mlen = fn->results[1].len > 100 ? 100 : (int)fn->results[1].len;
    }
    if (code == VMM_FN_ABORT_NOFUNC)
        return fail(o, -ENOENT, "no such function in the guest: %.*s", mlen, msg);
    if (code == VMM_FN_ABORT_BADARGS)
        return fail(o, -EINVAL, "the guest refused the arguments: %.*s", mlen, msg);
    return fail(o, -ECONNABORTED, "guest aborted (code %lld): %.*s", (long long)code, mlen, msg);
}

/* Run until the guest signals want (READY at init, RETURN for a call),
 * answering host calls on the way during a call. */
static int fn_run(struct vmm_fn *fn, enum vmm_fn_op want, struct run_out *o)
{
    struct vmm_vcpu_exit ex = VMM_INIT(struct vmm_vcpu_exit);
    uint64_t first = vmm_vcpu_exit_count(fn->vcpu);
    int r;
    for (;;) {
        r = vmm_vcpu_run_once(fn->vcpu, &ex);
        if (r < 0) {
            fail(o, r, "KVM_RUN failed: %s", vmm_strerror(r));
            break;
        }
        if (ex.kind == VMM_VCPU_EXIT_HANDLED) {
            if (o->deadline && ex.kvm_reason == KVM_EXIT_INTR && now_ns() >= o->deadline) {
                r = fail(o, -ETIMEDOUT, "deadline passed");
                break;
            }
            continue;
        }
        if (ex.kind == VMM_VCPU_EXIT_END) {
            o->seen_end = true;
            pthread_mutex_lock(&fn->lock);
            int why = fn->stop_requested ? fn->stop_reason : -EINTR;
            pthread_mutex_unlock(&fn->lock);
            r = fail(o, why, "%s",
                     why == -ETIMEDOUT   ? "deadline passed"
                     : why == -ECANCELED ? "cancelled"
                                         : "the run ended");
            break;
        }
        if (ex.kind == VMM_VCPU_EXIT_IO && ex.io.port == VMM_FN_PORT) {
            if (!ex.io.write || ex.io.size != 1 || ex.io.count != 1) {
                r = fail(o, -EPROTO, "bad access to the signal port (%s, %u bytes x %u)",
                         ex.io.write ? "write" : "read", ex.io.size, ex.io.count);
                break;
            }
            uint8_t op = ex.io.data[0];
            if (op == want && want == VMM_FN_OP_READY) {
                r = 0;
                break;
            }
            if (op == VMM_FN_OP_RETURN && want == VMM_FN_OP_RETURN) {
                r = take_result(fn, o);
                break;
            }
            if (op == VMM_FN_OP_ABORT) {
                r = take_abort(fn, o);
                if (want == VMM_FN_OP_READY)
                    r = fail(o, -EPROTO, "aborted during initialisation: %s", o->error);
                break;
            }
            if (op == VMM_FN_OP_HOSTCALL && want == VMM_FN_OP_RETURN) {
                if ((r = host_call(fn, o)) < 0)
                    break;
                continue;
            }
            r = fail(o, -EPROTO, "unexpected signal %u", op);
            break;
        }
        switch (ex.kind) {
        case VMM_VCPU_EXIT_IO:
            r = fail(o, -EFAULT, "port %s of 0x%x", ex.io.write ? "write" : "read", ex.io.port);
            break;
        case VMM_VCPU_EXIT_MMIO:
            r = fail(o, -EFAULT, "%s of 0x%llx, outside guest memory",
                     ex.mmio.write ? "write" : "read", (unsigned long long)ex.mmio.addr);
            break;
        case VMM_VCPU_EXIT_SHUTDOWN:
            r = fail(o, -EFAULT, "the guest faulted (triple fault)");
            break;
        default:
            r = fail(o, -EFAULT, "unexpected exit: %s (KVM exit %u)",
                     vmm_vcpu_exit_kind_name(ex.kind), ex.kvm_reason);
            break;
        }
        break;
    }
    o->exits = vmm_vcpu_exit_count(fn->vcpu) - first;
    if (want == VMM_FN_OP_READY && r < 0 && r != -ETIMEDOUT && r != -ENOMEM)
        r = -EPROTO;
    return r;
}

/* ---- creation and teardown ---- */

#define INIT_TIMER_REPEAT_NS 10000000ull /* 10 ms */

/*
 * Bound the run to READY without a thread of its own (the deadline thread
 * is started only by calls that want one): a POSIX timer sends the VM's
 * kick signal to this thread at the deadline and every 10 ms after, each
 * one cutting a KVM_RUN short, and fn_run checks the clock on every such
 * interruption. A signal that lands between two KVM_RUNs is followed by
 * the next. Returns 0 with the timer armed and *deadline set, or -errno.
 */
static int init_timer(struct vmm_fn *fn, uint64_t timeout_ns, timer_t *timer, uint64_t *deadline)
{
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = fn->vm->cfg.kick_signal};
    ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id, which older glibc headers lack */
    if (timer_create(CLOCK_MONOTONIC, &ev, timer) < 0)
        return -errno;
    uint64_t now = now_ns();
    *deadline = now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(timeout_ns / 1000000000ull),
                     .tv_nsec = (long)(timeout_ns % 1000000000ull)},
        .it_interval = {.tv_sec = 0, .tv_nsec = (long)INIT_TIMER_REPEAT_NS},
    };
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;
    if (timer_settime(*timer, 0, &its, NULL) < 0) {
        int err = -errno;
        timer_delete(*timer);
        return err;
    }
    return 0;
}

static int load_image(struct vmm_fn *fn, const struct vmm_fn_config *c)
{
    struct vmm_load_options lo = VMM_INIT(struct vmm_load_options, .min_addr = VMM_FN_IMAGE_MIN);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    int r = c->image ? vmm_elf_load(fn->mem, c->image, c->image_size, &lo, &res)
                     : vmm_elf_load_file(fn->mem, c->image_path, &lo, &res);
    if (r < 0) {
        vmm_log_error("function VM: image refused: %s", res.error);
        return r == -EFAULT || r == -EROFS ? -EINVAL : r;
    }
    struct vmm_x86_boot_state b = VMM_INIT(struct vmm_x86_boot_state, .entry = res.entry);
    return vmm_vcpu_set_boot_state(fn->vcpu, &b);
}

int vmm_fn_create(const struct vmm_fn_config *cfg, struct vmm_fn **out)
{
    struct vmm_fn_config c = {0};
    if (!cfg || !out || VMM_ABI_COPY_IN(&c, cfg) < 0)
        return -EINVAL;
    if (!c.mem_size)
        c.mem_size = VMM_FN_MEM_DEFAULT;
    if (!c.init_timeout_ns)
        c.init_timeout_ns = INIT_TIMEOUT_NS;
    if ((!c.image && !c.image_path) || (c.image && !c.image_size) || c.mem_size < VMM_FN_MEM_MIN ||
        c.mem_size > MEM_MAX || c.mem_size % (2u << 20))
        return -EINVAL;

    struct vmm_fn *fn = calloc(1, sizeof(*fn));
    if (!fn)
        return -ENOMEM;
    pthread_mutex_init(&fn->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fn->cond, &ca);
    pthread_condattr_destroy(&ca);
    fn->ram_size = c.mem_size;
    fn->npages = c.mem_size >> PAGE_SHIFT;
    fn->dirty_words = (size_t)((fn->npages + 63) / 64);
    fn->stats.size = sizeof(fn->stats);
    fn->dirty = calloc(fn->dirty_words, sizeof(*fn->dirty));
    fn->dirty_more = calloc(fn->dirty_words, sizeof(*fn->dirty_more));
    fn->out_copy = malloc(VMM_FN_OUT_SIZE);
    fn->hcall_copy = malloc(VMM_FN_HCALL_SIZE);
    int r = -ENOMEM;
    if (!fn->dirty || !fn->dirty_more || !fn->out_copy || !fn->hcall_copy)
        goto fail;

    r = vmm_vm_create(&VMM_INIT(struct vmm_vm_config, .kvm_path = c.kvm_path), &fn->vm);
    if (r < 0)
        goto fail;
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = c.mem_size);
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    if ((r = vmm_vm_add_memory(fn->vm, &rc)) < 0)
        goto fail;
    fn->mem = vmm_vm_memory(fn->vm);
    if ((r = vmm_memory_region_info(fn->mem, 0, &info)) < 0)
        goto fail;
    fn->ram = info.host;
    /* Logging from the start: what the loader and the boot state write and
     * what the guest writes before READY is the snapshot. */
    if ((r = vmm_vm_dirty_log_start(fn->vm, 0)) < 0 ||
        (r = vmm_vcpu_create(fn->vm, 0, &fn->vcpu)) < 0 || (r = load_image(fn, &c)) < 0)
        goto fail;
    cpu_prepare(fn, c.kvm_path == NULL);
    preset_accessed(fn, VMM_X86_BOOT_PML4, 4);

    char why[128];
    struct run_out o = {.error = why, .error_len = sizeof(why)};
    timer_t timer;
    bool timed = c.init_timeout_ns != UINT64_MAX;
    if (timed && (r = init_timer(fn, c.init_timeout_ns, &timer, &o.deadline)) < 0)
        goto fail;
    r = fn_run(fn, VMM_FN_OP_READY, &o);
    if (timed)
        timer_delete(timer);
    if (r < 0) {
        vmm_log_error("function VM: initialisation failed: %s", why);
        goto fail;
    }
    if ((r = ready_settle(fn)) < 0 || (r = cpu_save(fn)) < 0 || (r = snapshot_take(fn)) < 0)
        goto fail;
    *out = fn;
    return 0;
fail:
    vmm_fn_destroy(fn);
    return r;
}

void vmm_fn_destroy(struct vmm_fn *fn)
{
    if (!fn)
        return;
    if (fn->wd_started) {
        pthread_mutex_lock(&fn->lock);
        fn->wd_quit = true;
        pthread_cond_signal(&fn->cond);
        pthread_mutex_unlock(&fn->lock);
        pthread_join(fn->wd, NULL);
    }
    vmm_vm_destroy(fn->vm);
    pthread_cond_destroy(&fn->cond);
    pthread_mutex_destroy(&fn->lock);
    free(fn->cpu.xsave);
    free(fn->cpu.msrs);
    free(fn->snap);
    free(fn->slot);
    free(fn->dirty);
    free(fn->dirty_more);
    free(fn->out_copy);
    free(fn->hcall_copy);
    free(fn->hosts);
    free(fn);
}

int vmm_fn_register(struct vmm_fn *fn, const char *name, vmm_fn_host_fn fn_cb, void *opaque)
{
    if (!fn || !name || !fn_cb)
        return -EINVAL;
    size_t len = strlen(name);
    if (len == 0 || len > VMM_FN_NAME_MAX)
        return -EINVAL;
    struct fn_host *h = (struct fn_host *)host_find(fn, name, len);
    if (!h) {
        if (fn->nhosts == fn->host_cap) {
            unsigned cap = fn->host_cap ? fn->host_cap * 2 : 8;
            struct fn_host *n = realloc(fn->hosts, cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            fn->hosts = n;
            fn->host_cap = cap;
        }
        h = &fn->hosts[fn->nhosts++];
        memcpy(h->name, name, len + 1);
        h->len = len;
    }
    h->cb = fn_cb;
    h->opaque = opaque;
    return 0;
}

/* ---- calls ---- */

int vmm_fn_call(struct vmm_fn *fn, const char *name, const struct vmm_fn_val *args, unsigned nargs,
                uint64_t timeout_ns, struct vmm_fn_result *res)
{
    if (!fn || !name || !res || !VMM_ABI_OUT_OK(res) || (!args && nargs) ||
        nargs > VMM_FN_VALUES_MAX - 1)
        return -EINVAL;
    struct vmm_fn_result out = VMM_INIT(struct vmm_fn_result);
    size_t nlen = strlen(name);
    int r;
    if (nlen == 0 || nlen > VMM_FN_NAME_MAX) {
        r = -EINVAL;
        snprintf(out.error, sizeof(out.error), "bad function name length %zu", nlen);
        goto done;
    }
    pthread_mutex_lock(&fn->lock);
    bool busy = fn->in_call;
    pthread_mutex_unlock(&fn->lock);
    if (busy) {
        /* From a host function of this very call (or another thread). */
        r = -EBUSY;
        snprintf(out.error, sizeof(out.error), "a call is running on this function VM");
        goto done;
    }
    if (fn->broken) {
        r = -EIO;
        snprintf(out.error, sizeof(out.error), "the function VM is unusable after a failed reset");
        goto done;
    }
    /* The call message goes straight into IN: the name, then the arguments. */
    struct vmm_fn_val vals[VMM_FN_VALUES_MAX];
    vals[0] = VMM_FN_BYTES_VAL(name, (uint32_t)nlen);
    if (nargs)
        memcpy(vals + 1, args, nargs * sizeof(*args));
    r = vmm_fn_encode(fn->ram + VMM_FN_IN_ADDR, VMM_FN_IN_SIZE, vals, nargs + 1);
    if (r < 0) {
        snprintf(out.error, sizeof(out.error), "%s",
                 r == -E2BIG ? "the call does not fit the IN buffer" : "bad argument value");
        goto done;
    }
    vmm_memory_mark_dirty(fn->mem, VMM_FN_IN_ADDR, (uint64_t)r);

    struct run_out o = {.error = out.error, .error_len = sizeof(out.error)};
    r = call_begin(fn, timeout_ns);
    if (r < 0) {
        snprintf(out.error, sizeof(out.error), "cannot start the deadline thread");
        /* IN was written: put it back. */
        (void)fn_reset(fn, false, false);
        goto done;
    }
    r = fn_run(fn, VMM_FN_OP_RETURN, &o);
    call_end(fn, o.seen_end);
    fn->stats.calls++;
    if (r < 0)
        fn->stats.failed++;
    out.abort_code = o.abort_code;
    out.exits = o.exits;
    int rr = fn_reset(fn, r < 0, r == 0);
    if (r == 0 && rr < 0) {
        r = rr;
        snprintf(out.error, sizeof(out.error), "reset after the call failed: %s", vmm_strerror(rr));
    }
    if (r == 0) {
        out.values = fn->results;
        out.count = o.nresults;
    }
done:
    VMM_ABI_COPY_OUT(res, &out);
    return r;
}

int vmm_fn_get_stats(const struct vmm_fn *fn, struct vmm_fn_stats *st)
{
    if (!fn || !st || !VMM_ABI_OUT_OK(st))
        return -EINVAL;
    VMM_ABI_COPY_OUT(st, &fn->stats);
    return 0;
}
