/* SPDX-License-Identifier: Apache-2.0 */
/* vCPUs: creation, register access, the step (one KVM_RUN, the buses' share
 * of the exit, the rest described for the caller) and the run loops over it
 * that turn fatal exits into a clear end of the run. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch.h"
#include "cpu_internal.h"

/* The vCPU whose run loop this thread is in; lets a device that ends the run
 * from a bus callback say which vCPU did it. */
static __thread struct vmm_vcpu *current_vcpu;

int vmm_vcpu_create(struct vmm_vm *vm, unsigned index, struct vmm_vcpu **out)
{
    if (index != vm->nr_vcpus)
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    bool busy = vm->running || vm->managed_run;
    pthread_mutex_unlock(&vm->lock);
    if (busy)
        return -EBUSY;
    int r;
    if (vm->nr_vcpus == vm->vcpu_cap) {
        unsigned cap = vm->vcpu_cap ? vm->vcpu_cap * 2 : 4;
        struct vmm_vcpu **v = realloc(vm->vcpus, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        vm->vcpus = v;
        vm->vcpu_cap = cap;
    }
    struct vmm_vcpu *vcpu = calloc(1, sizeof(*vcpu));
    if (!vcpu)
        return -ENOMEM;
    vcpu->vm = vm;
    vcpu->index = index;
    vcpu->fd = -1;
    vcpu->run = MAP_FAILED;
    pthread_mutex_init(&vcpu->kick_lock, NULL);

    r = vmm_kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)index);
    if (r < 0) {
        vmm_log_error("KVM_CREATE_VCPU %u: %s", index, vmm_strerror(r));
        goto fail;
    }
    vcpu->fd = r;
    vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        r = -errno;
        goto fail;
    }
    r = vmm_arch_vcpu_init(vcpu);
    if (r < 0)
        goto fail;
    if (vm->stats_on) {
        r = vmm_vcpu_stats_reset(vcpu);
        if (r < 0)
            goto fail;
    }
    vm->vcpus[vm->nr_vcpus++] = vcpu;
    *out = vcpu;
    return 0;
fail:
    vmm_vcpu_free(vcpu);
    return r;
}

void vmm_vcpu_free(struct vmm_vcpu *vcpu)
{
    if (!vcpu)
        return;
    if (vcpu->run != MAP_FAILED)
        munmap(vcpu->run, vcpu->vm->run_size);
    if (vcpu->fd >= 0)
        close(vcpu->fd);
    free(vcpu->cpuid);
    free(vcpu->stats);
    pthread_mutex_destroy(&vcpu->kick_lock);
    free(vcpu);
}

unsigned vmm_vcpu_index(const struct vmm_vcpu *vcpu)
{
    return vcpu->index;
}

struct vmm_vm *vmm_vcpu_vm(struct vmm_vcpu *vcpu)
{
    return vcpu->vm;
}

uint64_t vmm_vcpu_exit_count(const struct vmm_vcpu *vcpu)
{
    return __atomic_load_n(&vcpu->exits, __ATOMIC_RELAXED);
}

int vmm_vcpu_stats_reset(struct vmm_vcpu *vcpu)
{
    if (!vcpu->stats) {
        vcpu->stats = calloc(1, sizeof(*vcpu->stats));
        return vcpu->stats ? 0 : -ENOMEM;
    }
    memset(vcpu->stats, 0, sizeof(*vcpu->stats));
    return 0;
}

/* ---- the run loop ---- */

void vmm_vcpu_kick(struct vmm_vcpu *vcpu)
{
    /* immediate_exit catches a vCPU about to enter KVM_RUN; the signal one
     * already inside it. Requests are published before this is called, and
     * the vCPU re-reads them after every KVM_RUN. */
    __atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&vcpu->kick_lock);
    if (vcpu->in_run)
        pthread_kill(vcpu->thread, vcpu->vm->cfg.kick_signal);
    pthread_mutex_unlock(&vcpu->kick_lock);
}

/* Record the end of the run with where it happened. The first reason wins. */
static void vcpu_end_run(struct vmm_vcpu *vcpu, enum vmm_exit_reason reason, int error,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void vcpu_end_run(struct vmm_vcpu *vcpu, enum vmm_exit_reason reason, int error,
                         const char *fmt, ...)
{
    struct vmm_vm *vm = vcpu->vm;
    uint64_t rip = vmm_arch_vcpu_pc(vcpu);
    char detail[sizeof(vm->exit.detail)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&vm->lock);
    if (!vm->exit_requested) {
        vm->exit = (struct vmm_exit){.size = sizeof(struct vmm_exit),
                                     .reason = reason,
                                     .error = error,
                                     .vcpu = vcpu->index,
                                     .kvm_reason = vcpu->run->exit_reason,
                                     .rip = rip};
        snprintf(vm->exit.detail, sizeof(vm->exit.detail), "%s", detail);
        __atomic_store_n(&vm->exit_requested, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&vm->cond);
    }
    pthread_mutex_unlock(&vm->lock);
    if (reason == VMM_EXIT_ERROR)
        vmm_log_error("vCPU %u: %s (rip 0x%llx)", vcpu->index, detail, (unsigned long long)rip);
    vmm_vm_kick_all(vm);
}

/* ---- one step: KVM_RUN and the library's share of its exit ----
 *
 * A step fills only what its kind uses (kind, kvm_reason, the payload), so
 * the common case, a device on a bus, costs two stores over the dispatch.
 * On a negative return, why says what went wrong. */

#define WHY_SIZE 128

/* Port I/O: a device on the PIO bus takes it, else the caller gets it. Every
 * access of a REP goes through the bus, so an unclaimed one is counted and
 * its reads come back all ones, as before steps existed. */
static int step_io(struct vmm_vcpu *vcpu, struct vmm_vcpu_exit *rec, char *why)
{
    struct kvm_run *run = vcpu->run;
    uint32_t size = run->io.size;
    uint64_t total;
    /* KVM fills these, but a bad offset would make us touch memory past the
     * mapping, so check them like anything else we did not compute. */
    if ((size != 1 && size != 2 && size != 4) ||
        __builtin_mul_overflow((uint64_t)size, (uint64_t)run->io.count, &total) ||
        run->io.data_offset > vcpu->vm->run_size ||
        total > vcpu->vm->run_size - run->io.data_offset) {
        snprintf(why, WHY_SIZE, "malformed port I/O exit (size %u count %u)", size, run->io.count);
        return -EINVAL;
    }
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool write = run->io.direction == KVM_EXIT_IO_OUT;
    int first = 0;
    for (uint32_t i = 0; i < run->io.count; i++) {
        int r = write ? vmm_bus_write(vcpu->vm->pio, run->io.port, data + i * size, size)
                      : vmm_bus_read(vcpu->vm->pio, run->io.port, data + i * size, size);
        if (i == 0)
            first = r;
    }
    if (first != -ENOENT)
        return 0;
    rec->kind = VMM_VCPU_EXIT_IO;
    rec->io = (struct vmm_vcpu_exit_io){.port = run->io.port,
                                        .size = (uint8_t)size,
                                        .write = write,
                                        .count = run->io.count,
                                        .data = data};
    return 0;
}

static int step_mmio(struct vmm_vcpu *vcpu, struct vmm_vcpu_exit *rec, char *why)
{
    struct kvm_run *run = vcpu->run;
    uint32_t len = run->mmio.len;
    if (len == 0 || len > sizeof(run->mmio.data)) {
        snprintf(why, WHY_SIZE, "malformed MMIO exit (len %u)", len);
        return -EINVAL;
    }
    int r = run->mmio.is_write
                ? vmm_bus_write(vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len)
                : vmm_bus_read(vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    if (r != -ENOENT)
        return 0;
    rec->kind = VMM_VCPU_EXIT_MMIO;
    rec->mmio = (struct vmm_vcpu_exit_mmio){.addr = run->mmio.phys_addr,
                                            .len = len,
                                            .write = run->mmio.is_write != 0,
                                            .data = run->mmio.data};
    return 0;
}

/* Describe the exits the library leaves to its caller. kvm_run's __u64 is
 * unsigned long long, the API's uint64_t unsigned long: same size and
 * representation, so the borrowed pointers are converted. */
static void step_describe(struct kvm_run *run, struct vmm_vcpu_exit *rec)
{
    switch (run->exit_reason) {
    case KVM_EXIT_HLT:
        rec->kind = VMM_VCPU_EXIT_HLT;
        break;
    case KVM_EXIT_SHUTDOWN:
        rec->kind = VMM_VCPU_EXIT_SHUTDOWN;
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        rec->kind = VMM_VCPU_EXIT_SYSTEM_EVENT;
        rec->system_event = (struct vmm_vcpu_exit_system_event){
            .type = run->system_event.type,
            .ndata = run->system_event.ndata < 16 ? run->system_event.ndata : 16,
            .data = (const uint64_t *)(void *)run->system_event.data};
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        rec->kind = VMM_VCPU_EXIT_INTERNAL_ERROR;
        rec->internal = (struct vmm_vcpu_exit_internal){
            .suberror = run->internal.suberror,
            .ndata = run->internal.ndata < 16 ? run->internal.ndata : 16,
            .data = (const uint64_t *)(void *)run->internal.data};
        break;
    case KVM_EXIT_FAIL_ENTRY:
        rec->kind = VMM_VCPU_EXIT_FAIL_ENTRY;
        rec->fail_entry = (struct vmm_vcpu_exit_fail_entry){
            .hardware_reason = run->fail_entry.hardware_entry_failure_reason,
            .cpu = run->fail_entry.cpu};
        break;
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
        rec->kind =
            run->exit_reason == KVM_EXIT_X86_RDMSR ? VMM_VCPU_EXIT_RDMSR : VMM_VCPU_EXIT_WRMSR;
        rec->msr = (struct vmm_vcpu_exit_msr){.index = run->msr.index,
                                              .reason = run->msr.reason,
                                              .value = run->msr.data,
                                              .data = (uint64_t *)(void *)&run->msr.data,
                                              .error = &run->msr.error};
        break;
    case KVM_EXIT_HYPERCALL: {
        rec->kind = VMM_VCPU_EXIT_HYPERCALL;
        rec->hypercall.nr = run->hypercall.nr;
        memcpy(rec->hypercall.args, run->hypercall.args, sizeof(rec->hypercall.args));
        /* Older headers call the 64-bit flags word "longmode" (+ pad). */
        memcpy(&rec->hypercall.flags, &run->hypercall.longmode, sizeof(rec->hypercall.flags));
        rec->hypercall.ret = (uint64_t *)(void *)&run->hypercall.ret;
        break;
    }
    default:
        rec->kind = VMM_VCPU_EXIT_UNKNOWN;
        break;
    }
}

/* The exit profile's share of a KVM_RUN that returned r (kept out of line:
 * only a profiled run calls it). */
static void __attribute__((noinline)) step_stats(struct vmm_vcpu *vcpu, uint64_t entered, int r)
{
    struct kvm_run *run = vcpu->run;
    uint64_t now = vmm_stats_now();
    uint32_t reason = run->exit_reason;
    uint64_t addr = 0;
    bool site = true, write = false;
    switch (r < 0 ? KVM_EXIT_INTR : reason) {
    case KVM_EXIT_IO:
        addr = run->io.port;
        write = run->io.direction == KVM_EXIT_IO_OUT;
        break;
    case KVM_EXIT_MMIO:
        addr = run->mmio.phys_addr;
        write = run->mmio.is_write != 0;
        break;
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
        addr = run->msr.index;
        break;
    case KVM_EXIT_HYPERCALL:
        addr = run->hypercall.nr;
        break;
    default:
        site = false;
        break;
    }
    vmm_stats_exit(vcpu->stats, entered, now, r >= 0, reason, site, addr, write);
}

/* Enter the guest once and do the library's part of the exit (inlined in
 * both callers: the managed loop's hot path makes no call of its own besides
 * KVM_RUN and the bus). Returns 0
 * with rec->kind and kvm_reason set (and the payload of any kind but
 * HANDLED), or a -errno with why filled: KVM_RUN failed, or KVM's exit data
 * cannot be trusted. The caller is inside a run (run_enter). */
static inline __attribute__((always_inline)) int vcpu_step(struct vmm_vcpu *vcpu,
                                                           struct vmm_vcpu_exit *rec, char *why)
{
    struct kvm_run *run = vcpu->run;
    uint64_t entered = 0;
    if (__builtin_expect(vcpu->stats != NULL, 0)) {
        entered = vmm_stats_now();
        vmm_stats_enter(vcpu->stats, entered);
    }
    int r = ioctl(vcpu->fd, KVM_RUN, 0);
    int err = errno;
    if (__builtin_expect(vcpu->stats != NULL, 0))
        step_stats(vcpu, entered, r);
    /* Writes KVM queued without an exit come before this exit. */
    if (__atomic_load_n(&vcpu->vm->coalesced_page, __ATOMIC_ACQUIRE))
        vmm_vcpu_coalesced_drain(vcpu);
    __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    rec->kind = VMM_VCPU_EXIT_HANDLED;
    if (r < 0) {
        rec->kvm_reason = KVM_EXIT_INTR;
        if (err == EINTR || err == EAGAIN)
            return 0; /* a kick or a signal: the caller re-reads the requests */
        snprintf(why, WHY_SIZE, "KVM_RUN failed: %s", vmm_strerror(-err));
        return -err;
    }
    __atomic_store_n(&vcpu->exits, vcpu->exits + 1, __ATOMIC_RELAXED);
    rec->kvm_reason = run->exit_reason;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        return step_io(vcpu, rec, why);
    case KVM_EXIT_MMIO:
        return step_mmio(vcpu, rec, why);
#ifdef __x86_64__
    case KVM_EXIT_IOAPIC_EOI:
        if (vcpu->vm->ioapic)
            vmm_x86_ioapic_eoi(vcpu->vm, run->eoi.vector);
        return 0;
#endif
    case KVM_EXIT_INTR:
        return 0;
    default:
        step_describe(run, rec);
        return 0;
    }
}

/* ---- the managed loops' policy for what a step leaves to its caller ---- */

static void end_on_system_event(struct vmm_vcpu *vcpu)
{
    switch (vcpu->run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        vcpu_end_run(vcpu, VMM_EXIT_POWEROFF, 0, "guest powered off");
        break;
    case KVM_SYSTEM_EVENT_RESET:
        vcpu_end_run(vcpu, VMM_EXIT_RESET, 0, "guest reset");
        break;
    default:
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EIO, "guest system event %u (crash?)",
                     vcpu->run->system_event.type);
        break;
    }
}

static void end_on_internal_error(struct vmm_vcpu *vcpu, const struct vmm_vcpu_exit *rec)
{
    char bytes[64] = "";
    size_t off = 0;
    uint32_t n = rec->internal.ndata < 4 ? rec->internal.ndata : 4;
    for (uint32_t i = 0; i < n && off < sizeof(bytes); i++)
        off += (size_t)snprintf(bytes + off, sizeof(bytes) - off, " %llx",
                                (unsigned long long)rec->internal.data[i]);
    vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EIO, "KVM internal error, suberror %u, data:%s",
                 rec->internal.suberror, bytes);
}

/* What vmm_vcpu_run and vmm_vm_run do with an exit the step left to them:
 * unclaimed port I/O and MMIO keep the bus's answer (reads all ones, writes
 * dropped); everything else ends the run, as it always has. */
static void vcpu_default_exit(struct vmm_vcpu *vcpu, const struct vmm_vcpu_exit *rec)
{
    switch (rec->kind) {
    case VMM_VCPU_EXIT_HANDLED:
    case VMM_VCPU_EXIT_IO:
    case VMM_VCPU_EXIT_MMIO:
        break;
    case VMM_VCPU_EXIT_HLT:
        vcpu_end_run(vcpu, VMM_EXIT_HLT, 0, "vCPU %u halted", vcpu->index);
        break;
    case VMM_VCPU_EXIT_SHUTDOWN:
        vcpu_end_run(vcpu, VMM_EXIT_SHUTDOWN, 0, "triple fault on vCPU %u", vcpu->index);
        break;
    case VMM_VCPU_EXIT_SYSTEM_EVENT:
        end_on_system_event(vcpu);
        break;
    case VMM_VCPU_EXIT_INTERNAL_ERROR:
        end_on_internal_error(vcpu, rec);
        break;
    case VMM_VCPU_EXIT_FAIL_ENTRY:
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EIO, "KVM entry failed, hardware reason 0x%llx",
                     (unsigned long long)rec->fail_entry.hardware_reason);
        break;
    default:
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -ENOTSUP, "unhandled KVM exit %u (%s)", rec->kvm_reason,
                     vmm_kvm_exit_name(rec->kvm_reason));
        break;
    }
}

/* ---- entering and leaving a run ---- */

/* Park while the VM is paused, the last exit completed first, so that the
 * vCPU's state is whole while it waits (a snapshot reads it). Returns with
 * vm->lock released. */
static void vcpu_park(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    (void)vmm_vcpu_settle(vcpu); /* a vCPU that cannot settle is saved as it is */
    pthread_mutex_lock(&vm->lock);
    vm->parked++;
    pthread_cond_broadcast(&vm->cond);
    while (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST) && !vm->exit_requested)
        pthread_cond_wait(&vm->cond, &vm->lock);
    vm->parked--;
    pthread_mutex_unlock(&vm->lock);
}

/* Before each guest entry: wait out a pause; true when the run has ended. */
static inline __attribute__((always_inline)) bool run_ended(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    for (;;) {
        if (__atomic_load_n(&vm->exit_requested, __ATOMIC_SEQ_CST))
            return true;
        if (!__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST))
            return false;
        vcpu_park(vcpu);
    }
}

/* What run_enter changed on this thread, for run_leave to undo. */
struct run_frame {
    sigset_t kick;
    bool kick_was_blocked;
};

/* Make this thread the vCPU's runner: kickable, counted in vm->running. */
static int run_enter(struct vmm_vcpu *vcpu, bool managed, struct run_frame *f)
{
    struct vmm_vm *vm = vcpu->vm;
    /* From a bus callback of a running vCPU: that vCPU is mid-exit on this
     * thread, and its run state is this thread's. */
    if (current_vcpu)
        return -EDEADLK;
    pthread_mutex_lock(&vcpu->kick_lock);
    if (vcpu->in_run) {
        pthread_mutex_unlock(&vcpu->kick_lock);
        return -EBUSY;
    }
    pthread_mutex_lock(&vm->lock);
    bool taken = !managed && vm->managed_run;
    if (!taken)
        vm->running++;
    pthread_mutex_unlock(&vm->lock);
    if (taken) {
        pthread_mutex_unlock(&vcpu->kick_lock);
        return -EBUSY;
    }
    vcpu->in_run = true;
    vcpu->thread = pthread_self();
    pthread_mutex_unlock(&vcpu->kick_lock);

    /* The kick signal must be deliverable while this thread is in KVM_RUN;
     * only what was blocked is blocked again on the way out. */
    sigset_t saved;
    sigemptyset(&f->kick);
    sigaddset(&f->kick, vm->cfg.kick_signal);
    pthread_sigmask(SIG_UNBLOCK, &f->kick, &saved);
    f->kick_was_blocked = sigismember(&saved, vm->cfg.kick_signal) == 1;
    current_vcpu = vcpu;
    return 0;
}

/* Undo run_enter. With ended, this run call reports the VM's end (copied to
 * *end when not NULL); outside vmm_vm_run the last vCPU to leave such a call
 * then closes the run, so the next run starts afresh. A call that does not
 * report the end must not close it: the end would be lost. */
static void run_leave(struct vmm_vcpu *vcpu, bool managed, bool ended, struct vmm_exit *end,
                      struct run_frame *f)
{
    struct vmm_vm *vm = vcpu->vm;
    current_vcpu = NULL;
    if (f->kick_was_blocked)
        pthread_sigmask(SIG_BLOCK, &f->kick, NULL);
    pthread_mutex_lock(&vcpu->kick_lock);
    vcpu->in_run = false;
    pthread_mutex_unlock(&vcpu->kick_lock);

    pthread_mutex_lock(&vm->lock);
    vm->running--;
    if (ended && end) {
        *end = vm->exit;
        end->size = sizeof(*end);
    }
    if (ended && !managed && !vm->managed_run && vm->running == 0) {
        vm->exit = VMM_INIT(struct vmm_exit);
        __atomic_store_n(&vm->exit_requested, 0, __ATOMIC_SEQ_CST);
    }
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

/* ---- the loops and the step API ---- */

static int vcpu_run_loop(struct vmm_vcpu *vcpu, struct vmm_exit *exit, bool managed)
{
    if (exit && !VMM_ABI_OUT_OK(exit))
        return -EINVAL;
    struct run_frame f;
    int r = run_enter(vcpu, managed, &f);
    if (r < 0)
        return r;
    r = vmm_arch_vcpu_apply_cpuid(vcpu);
    if (r < 0)
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, r, "applying CPUID: %s", vmm_strerror(r));
    vcpu->has_run = true;

    struct vmm_vcpu_exit rec;
    char why[WHY_SIZE];
    while (!run_ended(vcpu)) {
        r = vcpu_step(vcpu, &rec, why);
        if (r < 0) {
            vcpu_end_run(vcpu, VMM_EXIT_ERROR, r, "%s", why);
            break;
        }
        if (rec.kind != VMM_VCPU_EXIT_HANDLED)
            vcpu_default_exit(vcpu, &rec);
    }
    if (vcpu->stats) /* the last exit's handling ends here */
        vmm_stats_settle(vcpu->stats, vmm_stats_now());
    struct vmm_exit end;
    run_leave(vcpu, managed, true, &end, &f);
    if (exit)
        VMM_ABI_COPY_OUT(exit, &end);
    return 0;
}

int vmm_vcpu_run(struct vmm_vcpu *vcpu, struct vmm_exit *exit)
{
    return vcpu_run_loop(vcpu, exit, false);
}

int vmm_vcpu_run_managed(struct vmm_vcpu *vcpu, struct vmm_exit *exit)
{
    return vcpu_run_loop(vcpu, exit, true);
}

/* The sizes of struct vmm_vcpu_exit that programs may have been built with,
 * oldest first: append a version's size when fields are appended. */
static const uint32_t vcpu_exit_sizes[] = {
    sizeof(struct vmm_vcpu_exit), /* 0.1 */
};
_Static_assert(sizeof(struct vmm_vcpu_exit) == 24 + 8 * 32,
               "struct vmm_vcpu_exit changed size: list the new size in vcpu_exit_sizes and "
               "check that the payload union did not grow");

static bool vcpu_exit_size_known(uint32_t size)
{
    for (size_t i = 0; i < sizeof(vcpu_exit_sizes) / sizeof(vcpu_exit_sizes[0]); i++)
        if (size == vcpu_exit_sizes[i])
            return true;
    return false;
}

int vmm_vcpu_run_once(struct vmm_vcpu *vcpu, struct vmm_vcpu_exit *exit)
{
    if (!vcpu || !exit || !vcpu_exit_size_known(exit->size))
        return -EINVAL;
    struct vmm_vm *vm = vcpu->vm;
    struct vmm_vcpu_exit rec = {.size = exit->size, .vcpu = vcpu->index, .run = vcpu->run};
    struct run_frame f;
    int r = run_enter(vcpu, false, &f);
    if (r < 0)
        return r;
    r = vmm_arch_vcpu_apply_cpuid(vcpu);
    if (r == 0) {
        vcpu->has_run = true;
        /* A kick that came while no step ran has done its job (the request
         * it announced is read below): do not let it cut the next run short. */
        __atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (run_ended(vcpu)) {
            rec.kind = VMM_VCPU_EXIT_END;
        } else {
            char why[WHY_SIZE];
            r = vcpu_step(vcpu, &rec, why);
            if (r < 0)
                vmm_log_error("vCPU %u: %s", vcpu->index, why);
            else if (rec.kind == VMM_VCPU_EXIT_HANDLED &&
                     __atomic_load_n(&vm->exit_requested, __ATOMIC_SEQ_CST))
                rec.kind = VMM_VCPU_EXIT_END; /* this exit (or a kick) ended the run */
        }
    }
    bool ended = r == 0 && rec.kind == VMM_VCPU_EXIT_END;
    run_leave(vcpu, false, ended, ended ? &rec.end : NULL, &f);
    if (r == 0)
        memcpy(exit, &rec, rec.size);
    return r;
}

/* Let KVM finish the instruction of the last exit without entering the guest
 * (immediate_exit set: KVM completes the port or MMIO access, then returns
 * -EINTR), so the vCPU state is whole before it is saved or replaced; an
 * access KVM splits (a REP string, a page-crossing MMIO) may take several
 * rounds. Only from the thread that runs the vCPU (between two entries, as
 * a parking vCPU does), or while no thread does. Returns 0, -EAGAIN (still
 * not done after the rounds allowed) or a -errno from KVM_RUN. */
int vmm_vcpu_settle(struct vmm_vcpu *vcpu)
{
    for (unsigned round = 0; round < 64; round++) {
        __atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        int r = ioctl(vcpu->fd, KVM_RUN, 0);
        int err = errno;
        __atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (r < 0) {
            /* A snapshot must see the writes KVM still holds. */
            if (err == EINTR && __atomic_load_n(&vcpu->vm->coalesced_page, __ATOMIC_ACQUIRE))
                vmm_vcpu_coalesced_drain(vcpu);
            return err == EINTR ? 0 : -err;
        }
    }
    return -EAGAIN;
}

const char *vmm_vcpu_exit_kind_name(uint32_t kind)
{
    static const char *const names[] = {
        [VMM_VCPU_EXIT_HANDLED] = "handled",
        [VMM_VCPU_EXIT_END] = "end",
        [VMM_VCPU_EXIT_IO] = "io",
        [VMM_VCPU_EXIT_MMIO] = "mmio",
        [VMM_VCPU_EXIT_RDMSR] = "rdmsr",
        [VMM_VCPU_EXIT_WRMSR] = "wrmsr",
        [VMM_VCPU_EXIT_HYPERCALL] = "hypercall",
        [VMM_VCPU_EXIT_HLT] = "hlt",
        [VMM_VCPU_EXIT_SHUTDOWN] = "shutdown",
        [VMM_VCPU_EXIT_SYSTEM_EVENT] = "system-event",
        [VMM_VCPU_EXIT_INTERNAL_ERROR] = "internal-error",
        [VMM_VCPU_EXIT_FAIL_ENTRY] = "fail-entry",
        [VMM_VCPU_EXIT_UNKNOWN] = "unknown",
    };
    return kind < sizeof(names) / sizeof(names[0]) && names[kind] ? names[kind] : "?";
}

/* Used by vmm_vm_request_exit to say which vCPU a device ended the run on. */
struct vmm_vcpu *vmm_vcpu_current(void)
{
    return current_vcpu;
}
