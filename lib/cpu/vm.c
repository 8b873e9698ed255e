/* SPDX-License-Identifier: Apache-2.0 */
/* The VM: creation and teardown, memory slots, interrupts, dirty logging, and
 * the run state (stop/pause/resume) shared by its vCPU threads. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch.h"
#include "cpu_internal.h"
#include "snapshot/snapshot_internal.h"

#define KVM_DEFAULT_PATH "/dev/kvm"

/* The kick signal only has to interrupt KVM_RUN; its handler does nothing. */
static void kick_handler(int sig)
{
    (void)sig;
}

/* Install the kick handler unless the application already handles the
 * signal (any handler will do to interrupt KVM_RUN). */
static int install_kick_handler(int sig)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) < 0)
        return -errno;
    if (!(old.sa_flags & SA_SIGINFO) && (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN)) {
        struct sigaction sa = {.sa_handler = kick_handler};
        sigemptyset(&sa.sa_mask);
        if (sigaction(sig, &sa, NULL) < 0)
            return -errno;
    }
    return 0;
}

int vmm_vm_create(const struct vmm_vm_config *cfg, struct vmm_vm **out)
{
    struct vmm_vm_config c = {0};
    if (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0)
        return -EINVAL;
    struct vmm_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->cfg = c;
    vm->created_ns = vmm_stats_now();
    if (!vm->cfg.kvm_path)
        vm->cfg.kvm_path = KVM_DEFAULT_PATH;
    if (!vm->cfg.kick_signal)
        vm->cfg.kick_signal = SIGRTMIN + 1;
    vm->kvm_fd = -1;
    vm->vm_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    pthread_mutex_init(&vm->routes_lock, NULL);
    pthread_mutex_init(&vm->coalesced_lock, NULL);

    int r;
    if (vm->cfg.irqchip != VMM_IRQCHIP_SPLIT && vm->cfg.irqchip != VMM_IRQCHIP_KERNEL) {
        r = -EINVAL;
        goto fail;
    }
    r = install_kick_handler(vm->cfg.kick_signal);
    if (r < 0)
        goto fail;
    r = vmm_kvm_open(vm->cfg.kvm_path, &vm->kvm_fd);
    if (r < 0)
        goto fail;
    r = vmm_kvm_check_caps(vm->kvm_fd, -1, vm->cfg.irqchip);
    if (r < 0)
        goto fail;
    unsigned long vm_type;
    r = vmm_arch_vm_type(vm->kvm_fd, &vm_type);
    if (r < 0)
        goto fail;
    r = vmm_kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, (void *)vm_type);
    if (r < 0) {
        vmm_log_error("KVM_CREATE_VM: %s", vmm_strerror(r));
        goto fail;
    }
    vm->vm_fd = r;
    /* Device memory slots count down from the top (0: none, KVM is small). */
    r = vmm_kvm_ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_NR_MEMSLOTS);
    vm->nr_memslots = r > 2 * VMM_VM_DEVICE_SLOTS ? (unsigned)r : 0;
    r = vmm_kvm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
    if (r < (int)sizeof(struct kvm_run)) {
        r = r < 0 ? r : -EINVAL;
        goto fail;
    }
    vm->run_size = (size_t)r;

    r = vmm_arch_vm_init(vm);
    if (r < 0)
        goto fail;
    r = vmm_bus_create("pio", &vm->pio);
    if (r < 0)
        goto fail;
    r = vmm_bus_create("mmio", &vm->mmio);
    if (r < 0)
        goto fail;
    r = vmm_arch_irqchip_create(vm);
    if (r < 0)
        goto fail;
    *out = vm;
    return 0;
fail:
    vmm_vm_destroy(vm);
    return r;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
    if (!vm)
        return;
    while (vm->nr_cleanups > 0) {
        struct vmm_cleanup *c = &vm->cleanups[--vm->nr_cleanups];
        c->fn(c->opaque);
    }
    free(vm->cleanups);
    vmm_snap_parts_free(vm);
    for (unsigned i = vm->nr_vcpus; i-- > 0;)
        vmm_vcpu_free(vm->vcpus[i]);
    free(vm->vcpus);
    free(vm->supported_cpuid);
    vmm_seccomp_prog_free(&vm->seccomp_vcpu);
    vmm_seccomp_prog_free(&vm->seccomp_io);
    vmm_arch_irqchip_destroy(vm);
    vmm_event_loop_destroy(vm->loop);
    vmm_bus_destroy(vm->mmio);
    vmm_bus_destroy(vm->pio);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    /* KVM slots die with the VM fd; only then may the memory be unmapped. */
    vmm_memory_destroy(vm->mem);
    free(vm->slot_dirty_log);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vmm_vm_routes_fini(vm);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
    pthread_mutex_destroy(&vm->coalesced_lock);
    free(vm);
}

/* Register (or re-register with new flags) region index as KVM slot index. */
static int set_slot(struct vmm_vm *vm, unsigned index, bool dirty_log)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    int r = vmm_memory_region_info(vm->mem, index, &info);
    if (r < 0)
        return r;
    struct kvm_userspace_memory_region region = {
        .slot = index,
        .guest_phys_addr = info.gpa,
        .memory_size = info.len,
        .userspace_addr = (uintptr_t)info.host,
    };
    if (info.flags & VMM_MEMORY_F_READONLY)
        region.flags |= KVM_MEM_READONLY;
    if (dirty_log)
        region.flags |= KVM_MEM_LOG_DIRTY_PAGES;
    r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
    if (r < 0)
        vmm_log_error("registering guest memory [0x%llx, 0x%llx) with KVM: %s",
                      (unsigned long long)info.gpa, (unsigned long long)(info.gpa + info.len),
                      vmm_strerror(r));
    return r;
}

static int grow_slot_flags(struct vmm_vm *vm, unsigned count)
{
    if (count <= vm->slot_cap)
        return 0;
    unsigned cap = count < 8 ? 8 : count * 2;
    bool *f = realloc(vm->slot_dirty_log, cap * sizeof(*f));
    if (!f)
        return -ENOMEM;
    memset(f + vm->slot_cap, 0, (cap - vm->slot_cap) * sizeof(*f));
    vm->slot_dirty_log = f;
    vm->slot_cap = cap;
    return 0;
}

static bool vm_running(struct vmm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool running = vm->running > 0 || vm->managed_run;
    pthread_mutex_unlock(&vm->lock);
    return running;
}

int vmm_vm_set_memory(struct vmm_vm *vm, struct vmm_memory *mem)
{
    if (vm->mem)
        return -EBUSY;
    if (!mem)
        return -EINVAL;
    unsigned n = vmm_memory_region_count(mem);
    vm->mem = mem;
    int r = grow_slot_flags(vm, n);
    for (unsigned i = 0; r == 0 && i < n; i++)
        r = set_slot(vm, i, false);
    if (r < 0) {
        /* Hand the map back: drop the slots we made so KVM holds no pointer. */
        for (unsigned i = 0; i < n; i++) {
            struct kvm_userspace_memory_region gone = {.slot = i};
            (void)vmm_kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &gone);
        }
        vm->mem = NULL;
    }
    return r;
}

int vmm_vm_add_memory(struct vmm_vm *vm, const struct vmm_region_config *cfg)
{
    /* Checked again by vmm_memory_add_region; here so that a refused config
     * does not leave an empty map behind. */
    if (!cfg || !vmm_abi_size_ok(cfg->size, sizeof(*cfg)))
        return -EINVAL;
    if (vm_running(vm))
        return -EBUSY;
    if (!vm->mem) {
        int r = vmm_memory_create(&vm->mem);
        if (r < 0)
            return r;
    }
    int index = vmm_memory_add_region(vm->mem, cfg);
    if (index < 0)
        return index;
    int r = grow_slot_flags(vm, (unsigned)index + 1);
    if (r == 0)
        r = set_slot(vm, (unsigned)index, false);
    for (unsigned i = 0; r == 0 && i < vm->nr_listeners; i++)
        r = vm->listeners[i].fn(vm->listeners[i].opaque, (unsigned)index);
    /* The region stays in the map on failure (maps cannot shrink); it is
     * simply not visible to the guest. */
    return r < 0 ? r : index;
}

int vmm_vm_add_memory_listener(struct vmm_vm *vm, int (*fn)(void *opaque, unsigned region),
                               void *opaque)
{
    if (vm->nr_listeners == VMM_VM_MAX_LISTENERS)
        return -ENOSPC;
    vm->listeners[vm->nr_listeners++] = (struct vmm_memory_listener){fn, opaque};
    return 0;
}

void vmm_vm_remove_memory_listener(struct vmm_vm *vm, int (*fn)(void *opaque, unsigned region),
                                   void *opaque)
{
    for (unsigned i = 0; i < vm->nr_listeners; i++) {
        if (vm->listeners[i].fn == fn && vm->listeners[i].opaque == opaque) {
            vm->listeners[i] = vm->listeners[--vm->nr_listeners];
            return;
        }
    }
}

int vmm_vm_device_slot_set(struct vmm_vm *vm, uint64_t gpa, uint64_t len, void *host,
                           unsigned *slot)
{
    pthread_mutex_lock(&vm->lock);
    unsigned i = 0;
    while (i < VMM_VM_DEVICE_SLOTS && (vm->device_slots & (1ull << i)))
        i++;
    if (!vm->nr_memslots || i == VMM_VM_DEVICE_SLOTS) {
        pthread_mutex_unlock(&vm->lock);
        return -ENOSPC;
    }
    struct kvm_userspace_memory_region region = {
        .slot = vm->nr_memslots - 1 - i,
        .guest_phys_addr = gpa,
        .memory_size = len,
        .userspace_addr = (uintptr_t)host,
    };
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
    if (r == 0) {
        vm->device_slots |= 1ull << i;
        *slot = region.slot;
    }
    pthread_mutex_unlock(&vm->lock);
    return r < 0 ? r : 0;
}

void vmm_vm_device_slot_clear(struct vmm_vm *vm, unsigned slot)
{
    pthread_mutex_lock(&vm->lock);
    unsigned i = vm->nr_memslots - 1 - slot;
    if (vm->nr_memslots && slot < vm->nr_memslots && i < VMM_VM_DEVICE_SLOTS &&
        (vm->device_slots & (1ull << i))) {
        struct kvm_userspace_memory_region gone = {.slot = slot};
        int r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &gone);
        if (r < 0)
            vmm_log_warn("dropping device memory slot %u: %s", slot, vmm_strerror(r));
        vm->device_slots &= ~(1ull << i);
    }
    pthread_mutex_unlock(&vm->lock);
}

struct vmm_memory *vmm_vm_memory(struct vmm_vm *vm)
{
    return vm->mem;
}

struct vmm_bus *vmm_vm_pio_bus(struct vmm_vm *vm)
{
    return vm->pio;
}

struct vmm_bus *vmm_vm_mmio_bus(struct vmm_vm *vm)
{
    return vm->mmio;
}

struct vmm_event_loop *vmm_vm_event_loop(struct vmm_vm *vm)
{
    /* Made on first use: a VM without device back ends never pays for the
     * epoll and eventfd. */
    if (!vm->loop && vmm_event_loop_create(&vm->loop) < 0)
        vm->loop = NULL;
    return vm->loop;
}

enum vmm_irqchip vmm_vm_irqchip(const struct vmm_vm *vm)
{
    return vm->cfg.irqchip;
}

unsigned vmm_vm_vcpu_count(const struct vmm_vm *vm)
{
    return vm->nr_vcpus;
}

struct vmm_vcpu *vmm_vm_vcpu(struct vmm_vm *vm, unsigned index)
{
    return index < vm->nr_vcpus ? vm->vcpus[index] : NULL;
}

int vmm_vm_set_irq(struct vmm_vm *vm, unsigned gsi, bool level)
{
    if (gsi >= VMM_IOAPIC_PINS)
        return -EINVAL;
    return vmm_arch_irq_line(vm, gsi, level);
}

int vmm_vm_kvm_fd(const struct vmm_vm *vm)
{
    return vm->vm_fd;
}

int vmm_vm_irqfd(struct vmm_vm *vm, int fd, unsigned gsi, int resample_fd)
{
    if (!vmm_vm_gsi_routable(vm, gsi) || fd < 0)
        return -EINVAL;
    int r = vmm_arch_irqfd_prepare(vm);
    if (r < 0)
        return r;
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};
    if (resample_fd >= 0) {
        /* Resampling needs KVM's own IOAPIC to see the EOI; under the
         * split irqchip the library's IOAPIC does that part. */
        if (vm->cfg.irqchip == VMM_IRQCHIP_SPLIT)
            return vmm_arch_irqfd_resample(vm, fd, gsi, resample_fd);
        if (vm->cfg.irqchip != VMM_IRQCHIP_KERNEL)
            return -ENOTSUP;
        irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = (uint32_t)resample_fd;
    }
    return vmm_kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
}

int vmm_vm_irqfd_remove(struct vmm_vm *vm, int fd, unsigned gsi)
{
    if (!vmm_vm_gsi_routable(vm, gsi) || fd < 0)
        return -EINVAL;
    if (vmm_arch_irqfd_resample_remove(vm, fd, gsi) == 0)
        return 0;
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN};
    return vmm_kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
}

static int ioeventfd_args(int fd, uint64_t addr, uint32_t len, uint64_t datamatch, unsigned flags,
                          struct kvm_ioeventfd *io)
{
    if (fd < 0 || (flags & ~(VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH)))
        return -EINVAL;
    if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8)
        return -EINVAL;
    /* KVM accepts length 0 only as a wildcard MMIO match without data. */
    if (len == 0 && (flags & (VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH)))
        return -EINVAL;
    uint64_t end;
    if (__builtin_add_overflow(addr, len ? len - 1 : 0, &end))
        return -EINVAL;
    if ((flags & VMM_IOEVENTFD_PIO) && end > 0xffff)
        return -EINVAL;
    /* A datamatch wider than the access could never match. */
    if ((flags & VMM_IOEVENTFD_DATAMATCH) && len < 8 && (datamatch >> (len * 8)) != 0)
        return -EINVAL;
    *io = (struct kvm_ioeventfd){.addr = addr, .len = len, .fd = fd};
    if (flags & VMM_IOEVENTFD_PIO)
        io->flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (flags & VMM_IOEVENTFD_DATAMATCH) {
        io->flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
        io->datamatch = datamatch;
    }
    return 0;
}

int vmm_vm_ioeventfd(struct vmm_vm *vm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch,
                     unsigned flags)
{
    struct kvm_ioeventfd io;
    int r = ioeventfd_args(fd, addr, len, datamatch, flags, &io);
    if (r < 0)
        return r;
    r = vmm_kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);
    if (r < 0 && r != -EEXIST)
        vmm_log_warn("KVM_IOEVENTFD at %s 0x%llx len %u: %s",
                     (flags & VMM_IOEVENTFD_PIO) ? "port" : "mmio", (unsigned long long)addr, len,
                     vmm_strerror(r));
    return r;
}

int vmm_vm_ioeventfd_remove(struct vmm_vm *vm, int fd, uint64_t addr, uint32_t len,
                            uint64_t datamatch, unsigned flags)
{
    struct kvm_ioeventfd io;
    int r = ioeventfd_args(fd, addr, len, datamatch, flags, &io);
    if (r < 0)
        return r;
    io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    r = vmm_kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);
    /* KVM says -ENOENT for a binding it does not have. */
    return r;
}

int vmm_vm_enable_cap(struct vmm_vm *vm, const struct kvm_enable_cap *cap)
{
    if (!cap)
        return -EINVAL;
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, (void *)cap);
    if (r < 0)
        vmm_log_warn("KVM_ENABLE_CAP %u: %s", cap->cap, vmm_strerror(r));
    return r;
}

int vmm_vm_add_cleanup(struct vmm_vm *vm, void (*fn)(void *opaque), void *opaque)
{
    if (!fn)
        return -EINVAL;
    if (vm->nr_cleanups == vm->cleanup_cap) {
        unsigned cap = vm->cleanup_cap ? vm->cleanup_cap * 2 : 8;
        struct vmm_cleanup *c = realloc(vm->cleanups, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        vm->cleanups = c;
        vm->cleanup_cap = cap;
    }
    vm->cleanups[vm->nr_cleanups++] = (struct vmm_cleanup){fn, opaque};
    return 0;
}

void vmm_vm_remove_cleanup(struct vmm_vm *vm, void (*fn)(void *opaque), void *opaque)
{
    for (unsigned i = vm->nr_cleanups; i-- > 0;) {
        if (vm->cleanups[i].fn == fn && vm->cleanups[i].opaque == opaque) {
            memmove(&vm->cleanups[i], &vm->cleanups[i + 1],
                    (vm->nr_cleanups - i - 1) * sizeof(vm->cleanups[0]));
            vm->nr_cleanups--;
            return;
        }
    }
}

/* ---- run state ---- */

void vmm_vm_kick_all(struct vmm_vm *vm)
{
    /* The calling vCPU (if any) is not in KVM_RUN: it sees the request when
     * its exit handler returns, so it needs no signal. */
    struct vmm_vcpu *self = vmm_vcpu_current();
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        if (vm->vcpus[i] != self)
            vmm_vcpu_kick(vm->vcpus[i]);
}

void vmm_vm_request_exit(struct vmm_vm *vm, enum vmm_exit_reason reason, int status,
                         const char *detail)
{
    pthread_mutex_lock(&vm->lock);
    if (!vm->exit_requested) {
        vm->exit = VMM_INIT(struct vmm_exit, .reason = reason, .status = status);
        /* From a device callback: say which vCPU's access ended the run. */
        struct vmm_vcpu *cur = vmm_vcpu_current();
        if (cur && cur->vm == vm) {
            vm->exit.vcpu = cur->index;
            vm->exit.kvm_reason = cur->run->exit_reason;
        }
        if (detail)
            snprintf(vm->exit.detail, sizeof(vm->exit.detail), "%s", detail);
        __atomic_store_n(&vm->exit_requested, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&vm->cond);
    }
    pthread_mutex_unlock(&vm->lock);
    vmm_vm_kick_all(vm);
}

void vmm_vm_stop(struct vmm_vm *vm)
{
    vmm_vm_request_exit(vm, VMM_EXIT_STOPPED, 0, "stopped by the application");
}

static bool on_vcpu_thread(struct vmm_vm *vm)
{
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        struct vmm_vcpu *v = vm->vcpus[i];
        pthread_mutex_lock(&v->kick_lock);
        bool mine = v->in_run && pthread_equal(v->thread, pthread_self());
        pthread_mutex_unlock(&v->kick_lock);
        if (mine)
            return true;
    }
    return false;
}

int vmm_vm_pause(struct vmm_vm *vm)
{
    if (on_vcpu_thread(vm))
        return -EDEADLK;
    __atomic_store_n(&vm->pause_requested, 1, __ATOMIC_SEQ_CST);
    vmm_vm_kick_all(vm);
    pthread_mutex_lock(&vm->lock);
    while (vm->parked < vm->running && !vm->exit_requested)
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int vmm_vm_resume(struct vmm_vm *vm)
{
    if (on_vcpu_thread(vm))
        return -EDEADLK;
    pthread_mutex_lock(&vm->lock);
    __atomic_store_n(&vm->pause_requested, 0, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

struct vcpu_thread {
    struct vmm_vcpu *vcpu;
    pthread_t thread;
    bool started;
    int ret;
};

/* vmm_vm_set_seccomp's filter for a thread of this run, before it runs
 * anything of the guest's; a refused filter ends the run. */
static int thread_seccomp(struct vmm_vm *vm, const struct vmm_seccomp_prog *prog,
                          const char *detail)
{
    if (!vm->seccomp_on)
        return 0;
    int r = vmm_seccomp_prog_load(prog);
    if (r < 0)
        vmm_vm_request_exit(vm, VMM_EXIT_ERROR, 0, detail);
    return r;
}

static void *vcpu_thread_main(void *arg)
{
    struct vcpu_thread *t = arg;
    struct vmm_exit ignored = VMM_INIT(struct vmm_exit);
    t->ret = thread_seccomp(t->vcpu->vm, &t->vcpu->vm->seccomp_vcpu,
                            "cannot install a vCPU thread's seccomp filter");
    if (t->ret == 0)
        t->ret = vmm_vcpu_run_managed(t->vcpu, &ignored);
    return NULL;
}

static void *loop_thread_main(void *arg)
{
    struct vmm_vm *vm = arg;
    if (thread_seccomp(vm, &vm->seccomp_io, "cannot install the I/O thread's seccomp filter") == 0)
        (void)vmm_event_loop_run(vm->loop);
    return NULL;
}

int vmm_vm_set_seccomp(struct vmm_vm *vm, const struct vmm_seccomp_config *cfg)
{
    struct vmm_seccomp_config c = VMM_INIT(struct vmm_seccomp_config);
    if (cfg &&
        (VMM_ABI_COPY_IN(&c, cfg) < 0 || (unsigned)c.action > VMM_SECCOMP_LOG ||
         (c.nr_extra_syscalls && !c.extra_syscalls) || (c.nr_extra_ioctls && !c.extra_ioctls)))
        return -EINVAL;
    struct vmm_seccomp_prog vcpu = {0}, io = {0};
    int r = 0;
    if (cfg && ((r = vmm_seccomp_prog_build(VMM_SECCOMP_VCPU, &c, &vcpu)) < 0 ||
                (r = vmm_seccomp_prog_build(VMM_SECCOMP_IO, &c, &io)) < 0)) {
        vmm_seccomp_prog_free(&vcpu);
        return r;
    }
    pthread_mutex_lock(&vm->lock);
    r = vm->managed_run ? -EBUSY : 0;
    if (r == 0) {
        /* Swap: the old programs are freed below. */
        struct vmm_seccomp_prog t = vm->seccomp_vcpu;
        vm->seccomp_vcpu = vcpu;
        vcpu = t;
        t = vm->seccomp_io;
        vm->seccomp_io = io;
        io = t;
        vm->seccomp_on = cfg != NULL;
        /* The helper thread runs no application code: no extras, whose
         * lists need not outlive this call. */
        c.nr_extra_syscalls = c.nr_extra_ioctls = 0;
        c.extra_syscalls = NULL;
        c.extra_ioctls = NULL;
        vm->seccomp = c;
    }
    pthread_mutex_unlock(&vm->lock);
    vmm_seccomp_prog_free(&vcpu);
    vmm_seccomp_prog_free(&io);
    /* Outside the lock: the helper thread answers before this returns. */
    if (r == 0 && cfg && vm->helper_seccomp)
        r = vm->helper_seccomp(vm->helper_opaque, &c);
    return r;
}

int vmm_vm_run(struct vmm_vm *vm, struct vmm_exit *exit)
{
    if (vm->nr_vcpus == 0 || (exit && !VMM_ABI_OUT_OK(exit)))
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    if (vm->managed_run || vm->running) {
        pthread_mutex_unlock(&vm->lock);
        return -EBUSY;
    }
    vm->managed_run = true;
    pthread_mutex_unlock(&vm->lock);

    int r = 0;
    struct vcpu_thread *threads = calloc(vm->nr_vcpus, sizeof(*threads));
    pthread_t loop_thread;
    pthread_attr_t attr;
    bool loop_started = false, attr_ok = false;
    if (!threads) {
        r = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < vm->nr_vcpus && r == 0; i++) {
        r = vmm_arch_vcpu_apply_cpuid(vm->vcpus[i]);
    }
    if (r < 0)
        goto out;
    /* The default stack is RLIMIT_STACK (8 MiB): 2 MiB-aligned stretches of
     * it take a whole transparent huge page on a THP "always" host. */
    r = -pthread_attr_init(&attr);
    if (r < 0)
        goto out;
    attr_ok = true;
    r = -pthread_attr_setstacksize(&attr, VMM_VM_THREAD_STACK);
    if (r < 0)
        goto out;
    if (vm->loop && vmm_event_loop_count(vm->loop) > 0) {
        r = -pthread_create(&loop_thread, &attr, loop_thread_main, vm);
        if (r < 0)
            goto out;
        loop_started = true;
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        threads[i].vcpu = vm->vcpus[i];
        r = -pthread_create(&threads[i].thread, &attr, vcpu_thread_main, &threads[i]);
        if (r < 0) {
            vmm_log_error("starting vCPU %u thread: %s", i, vmm_strerror(r));
            vmm_vm_request_exit(vm, VMM_EXIT_ERROR, 0, "could not start vCPU threads");
            break;
        }
        threads[i].started = true;
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        if (threads[i].started)
            pthread_join(threads[i].thread, NULL);
out:
    if (loop_started) {
        vmm_event_loop_stop(vm->loop);
        pthread_join(loop_thread, NULL);
    }
    if (attr_ok)
        pthread_attr_destroy(&attr);
    free(threads);
    pthread_mutex_lock(&vm->lock);
    if (r == 0 && exit) {
        vm->exit.size = sizeof(vm->exit);
        VMM_ABI_COPY_OUT(exit, &vm->exit);
    }
    /* The run is over: the next one starts from a clean state. */
    vm->exit = VMM_INIT(struct vmm_exit);
    __atomic_store_n(&vm->exit_requested, 0, __ATOMIC_SEQ_CST);
    vm->managed_run = false;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/* ---- dirty logging ---- */

int vmm_vm_dirty_log_start(struct vmm_vm *vm, unsigned region)
{
    if (!vm->mem || region >= vmm_memory_region_count(vm->mem))
        return -ENOENT;
    int r = grow_slot_flags(vm, region + 1);
    if (r < 0)
        return r;
    r = vmm_memory_dirty_track(vm->mem, region, true);
    if (r < 0)
        return r;
    r = set_slot(vm, region, true);
    if (r < 0) {
        /* Turning tracking off cannot fail for a region that exists. */
        if (vmm_memory_dirty_track(vm->mem, region, false) < 0)
            vmm_log_debug("dirty tracking of region %u left on", region);
        return r;
    }
    vm->slot_dirty_log[region] = true;
    vm->snap_base_valid = false;
    return 0;
}

int vmm_vm_dirty_log_fetch(struct vmm_vm *vm, unsigned region, uint64_t *bitmap, size_t nwords)
{
    /* Pages this read takes are gone from the next diff snapshot. */
    vm->snap_base_valid = false;
    return vmm_vm_dirty_fetch(vm, region, bitmap, nwords);
}

int vmm_vm_dirty_fetch(struct vmm_vm *vm, unsigned region, uint64_t *bitmap, size_t nwords)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    if (!vm->mem || vmm_memory_region_info(vm->mem, region, &info) < 0)
        return -ENOENT;
    /* A region added to the map behind the VM's back has no slot state. */
    if (region >= vm->slot_cap || !vm->slot_dirty_log[region])
        return -EINVAL;
    uint64_t pages = (info.len + 4095) / 4096;
    size_t need = (size_t)((pages + 63) / 64);
    if (nwords < need)
        return -ENOSPC;
    /* KVM writes a bitmap as long as the slot needs; hand it the caller's
     * buffer after clearing, then OR in the VMM's own writes. */
    memset(bitmap, 0, need * sizeof(uint64_t));
    struct kvm_dirty_log log = {.slot = region, .dirty_bitmap = bitmap};
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log);
    if (r < 0)
        return r;
    return vmm_memory_dirty_fetch(vm->mem, region, bitmap, nwords);
}

int vmm_vm_dirty_log_stop(struct vmm_vm *vm, unsigned region)
{
    if (!vm->mem || region >= vmm_memory_region_count(vm->mem))
        return -ENOENT;
    if (region >= vm->slot_cap || !vm->slot_dirty_log[region])
        return -EINVAL;
    int r = set_slot(vm, region, false);
    if (r < 0)
        return r;
    vm->slot_dirty_log[region] = false;
    vm->snap_base_valid = false;
    return vmm_memory_dirty_track(vm->mem, region, false);
}

const char *vmm_exit_reason_name(enum vmm_exit_reason reason)
{
    switch (reason) {
    case VMM_EXIT_NONE:
        return "none";
    case VMM_EXIT_GUEST_EXIT:
        return "guest-exit";
    case VMM_EXIT_POWEROFF:
        return "poweroff";
    case VMM_EXIT_RESET:
        return "reset";
    case VMM_EXIT_SHUTDOWN:
        return "shutdown";
    case VMM_EXIT_HLT:
        return "hlt";
    case VMM_EXIT_STOPPED:
        return "stopped";
    case VMM_EXIT_ERROR:
        return "error";
    }
    return "?";
}

/* ---- the exit profile (include/vmm/stats.h) ---- */

int vmm_vm_stats_enable(struct vmm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int r = vm->running ? -EBUSY : 0;
    for (unsigned i = 0; r == 0 && i < vm->nr_vcpus; i++)
        r = vmm_vcpu_stats_reset(vm->vcpus[i]);
    if (r == 0)
        vm->stats_on = true;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

int vmm_vm_stats_read(struct vmm_vm *vm, struct vmm_stats *out)
{
    if (!out || !VMM_ABI_OUT_OK(out))
        return -EINVAL;
    pthread_mutex_lock(&vm->lock);
    int r = !vm->stats_on ? -ENODATA : vm->running ? -EBUSY : 0;
    struct vmm_vcpu_stats **v = NULL;
    if (r == 0 && vm->nr_vcpus) {
        v = calloc(vm->nr_vcpus, sizeof(*v));
        if (!v)
            r = -ENOMEM;
    }
    for (unsigned i = 0; r == 0 && i < vm->nr_vcpus; i++)
        v[i] = vm->vcpus[i]->stats;
    struct vmm_stats *st = r == 0 ? malloc(sizeof(*st)) : NULL;
    if (r == 0 && !st)
        r = -ENOMEM;
    if (r == 0)
        r = vmm_stats_merge(v, vm->nr_vcpus, vm->created_ns, st);
    pthread_mutex_unlock(&vm->lock);
    if (r == 0)
        VMM_ABI_COPY_OUT(out, st);
    free(st);
    free(v);
    return r;
}

const char *vmm_kvm_exit_reason_name(uint32_t reason)
{
    return vmm_kvm_exit_name(reason);
}
