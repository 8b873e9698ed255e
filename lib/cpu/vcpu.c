/* SPDX-License-Identifier: Apache-2.0 */
/* vCPUs: creation, register access, and the run loop that dispatches exits
 * to the buses and turns fatal exits into a clear end of the run. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu_internal.h"

/* The vCPU whose run loop this thread is in; lets a device that ends the run
 * from a bus callback say which vCPU did it. */
static __thread struct vmm_vcpu *current_vcpu;

#define MAX_CPUID_ENTRIES 256

int vmm_vcpu_create(struct vmm_vm *vm, unsigned index, struct vmm_vcpu **out)
{
    if (index != vm->nr_vcpus)
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    bool busy = vm->running || vm->managed_run;
    pthread_mutex_unlock(&vm->lock);
    if (busy)
        return -EBUSY;
    int r = vmm_vm_fetch_supported_cpuid(vm);
    if (r < 0) {
        vmm_log_error("KVM_GET_SUPPORTED_CPUID: %s", vmm_strerror(r));
        return r;
    }
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
    vcpu->cpuid = calloc(MAX_CPUID_ENTRIES, sizeof(*vcpu->cpuid));
    if (!vcpu->cpuid) {
        r = -ENOMEM;
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

/* ---- register state ---- */

int vmm_vcpu_get_regs(struct vmm_vcpu *vcpu, struct kvm_regs *regs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_REGS, regs);
}

int vmm_vcpu_set_regs(struct vmm_vcpu *vcpu, const struct kvm_regs *regs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_REGS, (void *)regs);
}

int vmm_vcpu_get_sregs(struct vmm_vcpu *vcpu, struct kvm_sregs *sregs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_SREGS, sregs);
}

int vmm_vcpu_set_sregs(struct vmm_vcpu *vcpu, const struct kvm_sregs *sregs)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_SREGS, (void *)sregs);
}

int vmm_vcpu_get_fpu(struct vmm_vcpu *vcpu, struct kvm_fpu *fpu)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_FPU, fpu);
}

int vmm_vcpu_set_fpu(struct vmm_vcpu *vcpu, const struct kvm_fpu *fpu)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_FPU, (void *)fpu);
}

int vmm_vcpu_get_lapic(struct vmm_vcpu *vcpu, struct kvm_lapic_state *lapic)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_GET_LAPIC, lapic);
}

int vmm_vcpu_set_lapic(struct vmm_vcpu *vcpu, const struct kvm_lapic_state *lapic)
{
    return vmm_kvm_ioctl(vcpu->fd, KVM_SET_LAPIC, (void *)lapic);
}

/* KVM_GET/SET_MSRS take a header followed by the entries. */
static int msrs_ioctl(struct vmm_vcpu *vcpu, unsigned long req, struct kvm_msr_entry *entries,
                      unsigned n)
{
    if (n == 0)
        return 0;
    if (n > 1024)
        return -E2BIG;
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
    if (!m)
        return -ENOMEM;
    m->nmsrs = n;
    memcpy(m->entries, entries, n * sizeof(m->entries[0]));
    int r = vmm_kvm_ioctl(vcpu->fd, req, m);
    if (r > 0 && req == KVM_GET_MSRS)
        memcpy(entries, m->entries, (size_t)r * sizeof(m->entries[0]));
    free(m);
    return r;
}

int vmm_vcpu_get_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *entries, unsigned n)
{
    return msrs_ioctl(vcpu, KVM_GET_MSRS, entries, n);
}

int vmm_vcpu_set_msrs(struct vmm_vcpu *vcpu, const struct kvm_msr_entry *entries, unsigned n)
{
    return msrs_ioctl(vcpu, KVM_SET_MSRS, (struct kvm_msr_entry *)entries, n);
}

/* ---- CPUID ---- */

static int cpuid_push(struct vmm_vcpu *vcpu)
{
    struct kvm_cpuid2 *c =
        calloc(1, sizeof(*c) + vcpu->cpuid_count * sizeof(struct kvm_cpuid_entry2));
    if (!c)
        return -ENOMEM;
    c->nent = vcpu->cpuid_count;
    memcpy(c->entries, vcpu->cpuid, vcpu->cpuid_count * sizeof(struct kvm_cpuid_entry2));
    int r = vmm_kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, c);
    free(c);
    if (r < 0)
        vmm_log_error("vCPU %u: KVM_SET_CPUID2: %s", vcpu->index, vmm_strerror(r));
    return r;
}

/* Build (for the current vCPU count) and apply the CPUID table, unless the
 * application set its own or it is already applied for this count. KVM lets
 * the table change until the vCPU first runs. */
int vmm_vcpu_apply_cpuid(struct vmm_vcpu *vcpu)
{
    struct vmm_vm *vm = vcpu->vm;
    if (vcpu->cpuid_user_set || vcpu->has_run || vcpu->cpuid_applied_for == vm->nr_vcpus)
        return 0;
    int n = vmm_x86_cpuid_build(vm->supported_cpuid->entries, vm->supported_cpuid->nent,
                                vcpu->index, vm->nr_vcpus, vcpu->cpuid, MAX_CPUID_ENTRIES);
    if (n < 0)
        return n;
    vcpu->cpuid_count = (unsigned)n;
    int r = cpuid_push(vcpu);
    if (r == 0)
        vcpu->cpuid_applied_for = vm->nr_vcpus;
    return r;
}

int vmm_vcpu_get_cpuid(struct vmm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries, unsigned max)
{
    if (!vcpu->cpuid_user_set && vcpu->cpuid_applied_for != vcpu->vm->nr_vcpus) {
        int n =
            vmm_x86_cpuid_build(vcpu->vm->supported_cpuid->entries, vcpu->vm->supported_cpuid->nent,
                                vcpu->index, vcpu->vm->nr_vcpus, vcpu->cpuid, MAX_CPUID_ENTRIES);
        if (n < 0)
            return n;
        vcpu->cpuid_count = (unsigned)n;
    }
    unsigned copy = vcpu->cpuid_count < max ? vcpu->cpuid_count : max;
    if (entries && copy)
        memcpy(entries, vcpu->cpuid, copy * sizeof(*entries));
    return (int)vcpu->cpuid_count;
}

int vmm_vcpu_set_cpuid(struct vmm_vcpu *vcpu, const struct kvm_cpuid_entry2 *entries, unsigned n)
{
    if (n > MAX_CPUID_ENTRIES)
        return -E2BIG;
    if (n && !entries)
        return -EINVAL;
    unsigned old_count = vcpu->cpuid_count;
    struct kvm_cpuid_entry2 *old = malloc(old_count * sizeof(*old) + 1);
    if (!old)
        return -ENOMEM;
    memcpy(old, vcpu->cpuid, old_count * sizeof(*old));
    memcpy(vcpu->cpuid, entries, n * sizeof(*entries));
    vcpu->cpuid_count = n;
    int r = cpuid_push(vcpu);
    if (r < 0) {
        memcpy(vcpu->cpuid, old, old_count * sizeof(*old));
        vcpu->cpuid_count = old_count;
    } else {
        vcpu->cpuid_user_set = true;
    }
    free(old);
    return r;
}

/* ---- boot state ---- */

int vmm_vcpu_set_boot_state(struct vmm_vcpu *vcpu, const struct vmm_x86_boot_state *boot)
{
    if (!boot)
        return -EINVAL;
    struct kvm_regs regs;
    vmm_x86_boot_regs(&regs, boot);
    return vmm_x86_enter_boot_state(vcpu, vmm_x86_boot_sregs, &regs, "long mode");
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
    struct kvm_regs regs;
    uint64_t rip = vmm_vcpu_get_regs(vcpu, &regs) == 0 ? regs.rip : 0;
    char detail[sizeof(vm->exit.detail)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&vm->lock);
    if (!vm->exit_requested) {
        vm->exit = (struct vmm_exit){.reason = reason,
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

static void handle_io(struct vmm_vcpu *vcpu)
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
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EINVAL, "malformed port I/O exit (size %u count %u)",
                     size, run->io.count);
        return;
    }
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            (void)vmm_bus_write(vcpu->vm->pio, run->io.port, data, size);
        else
            (void)vmm_bus_read(vcpu->vm->pio, run->io.port, data, size);
    }
}

static void handle_mmio(struct vmm_vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    uint32_t len = run->mmio.len;
    if (len == 0 || len > sizeof(run->mmio.data)) {
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EINVAL, "malformed MMIO exit (len %u)", len);
        return;
    }
    if (run->mmio.is_write)
        (void)vmm_bus_write(vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    else
        (void)vmm_bus_read(vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static void handle_system_event(struct vmm_vcpu *vcpu)
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

static void handle_exit(struct vmm_vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(vcpu);
        break;
    case KVM_EXIT_MMIO:
        handle_mmio(vcpu);
        break;
    case KVM_EXIT_IOAPIC_EOI:
        if (vcpu->vm->ioapic)
            vmm_ioapic_eoi(vcpu->vm->ioapic, run->eoi.vector);
        break;
    case KVM_EXIT_INTR:
        break;
    case KVM_EXIT_HLT:
        vcpu_end_run(vcpu, VMM_EXIT_HLT, 0, "vCPU %u halted", vcpu->index);
        break;
    case KVM_EXIT_SHUTDOWN:
        vcpu_end_run(vcpu, VMM_EXIT_SHUTDOWN, 0, "triple fault on vCPU %u", vcpu->index);
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        handle_system_event(vcpu);
        break;
    case KVM_EXIT_INTERNAL_ERROR: {
        char bytes[64] = "";
        size_t off = 0;
        uint32_t n = run->internal.ndata < 4 ? run->internal.ndata : 4;
        for (uint32_t i = 0; i < n && off < sizeof(bytes); i++)
            off += (size_t)snprintf(bytes + off, sizeof(bytes) - off, " %llx",
                                    (unsigned long long)run->internal.data[i]);
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EIO, "KVM internal error, suberror %u, data:%s",
                     run->internal.suberror, bytes);
        break;
    }
    case KVM_EXIT_FAIL_ENTRY:
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -EIO, "KVM entry failed, hardware reason 0x%llx",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    default:
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, -ENOTSUP, "unhandled KVM exit %u (%s)", run->exit_reason,
                     vmm_kvm_exit_name(run->exit_reason));
        break;
    }
}

/* Park while the VM is paused. Returns with vm->lock released. */
static void vcpu_park(struct vmm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->parked++;
    pthread_cond_broadcast(&vm->cond);
    while (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST) && !vm->exit_requested)
        pthread_cond_wait(&vm->cond, &vm->lock);
    vm->parked--;
    pthread_mutex_unlock(&vm->lock);
}

static int vcpu_run_loop(struct vmm_vcpu *vcpu, struct vmm_exit *exit, bool managed)
{
    struct vmm_vm *vm = vcpu->vm;
    pthread_mutex_lock(&vcpu->kick_lock);
    if (vcpu->in_run) {
        pthread_mutex_unlock(&vcpu->kick_lock);
        return -EBUSY;
    }
    vcpu->in_run = true;
    vcpu->thread = pthread_self();
    pthread_mutex_unlock(&vcpu->kick_lock);

    pthread_mutex_lock(&vm->lock);
    vm->running++;
    pthread_mutex_unlock(&vm->lock);

    /* The kick signal must be deliverable while this thread is in KVM_RUN. */
    sigset_t kick, saved;
    sigemptyset(&kick);
    sigaddset(&kick, vm->cfg.kick_signal);
    pthread_sigmask(SIG_UNBLOCK, &kick, &saved);
    current_vcpu = vcpu;

    int r = vmm_vcpu_apply_cpuid(vcpu);
    if (r < 0)
        vcpu_end_run(vcpu, VMM_EXIT_ERROR, r, "applying CPUID: %s", vmm_strerror(r));
    vcpu->has_run = true;

    for (;;) {
        if (__atomic_load_n(&vm->exit_requested, __ATOMIC_SEQ_CST))
            break;
        if (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST)) {
            vcpu_park(vm);
            continue;
        }
        r = ioctl(vcpu->fd, KVM_RUN, 0);
        int err = errno;
        __atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (r < 0) {
            if (err == EINTR || err == EAGAIN)
                continue;
            vcpu_end_run(vcpu, VMM_EXIT_ERROR, -err, "KVM_RUN failed: %s", strerror(err));
            break;
        }
        __atomic_store_n(&vcpu->exits, vcpu->exits + 1, __ATOMIC_RELAXED);
        handle_exit(vcpu);
    }

    current_vcpu = NULL;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    pthread_mutex_lock(&vcpu->kick_lock);
    vcpu->in_run = false;
    pthread_mutex_unlock(&vcpu->kick_lock);

    pthread_mutex_lock(&vm->lock);
    vm->running--;
    if (exit)
        *exit = vm->exit;
    /* Outside vmm_vm_run, the last vCPU to leave closes the run, so the
     * next vmm_vcpu_run starts afresh. */
    if (!managed && !vm->managed_run && vm->running == 0) {
        vm->exit = (struct vmm_exit){0};
        __atomic_store_n(&vm->exit_requested, 0, __ATOMIC_SEQ_CST);
    }
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
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

/* Used by vmm_vm_request_exit to say which vCPU a device ended the run on. */
struct vmm_vcpu *vmm_vcpu_current(void)
{
    return current_vcpu;
}
