/* SPDX-License-Identifier: Apache-2.0 */
/* Seccomp filters per kind of thread: each kind's list lets its own work
 * through and stops a call outside it (killing the process, or trapping to
 * a handler), and vmm_vm_set_seccomp puts the vCPU and I/O filters on the
 * threads vmm_vm_run starts, before the guest runs. vmm-run's whole boots
 * under its default filters are in test_launcher and test_virtio_blk. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

static const enum vmm_seccomp_thread kinds[] = {VMM_SECCOMP_VCPU, VMM_SECCOMP_IO, VMM_SECCOMP_MAIN,
                                                VMM_SECCOMP_BUILD};

/* Run fn in a child with kind's filter (action) and return its wait status. */
static int in_child(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *cfg,
                    void (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (vmm_seccomp_install(kind, cfg) != 0)
            _exit(99);
        fn();
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static void make_socket(void)
{
    /* Allowed work first: none of it may trip the filter. */
    char buf[8];
    (void)getpid();
    (void)write(STDERR_FILENO, "", 0);
    (void)read(-1, buf, sizeof(buf));
    (void)poll(NULL, 0, 1);    /* a wait (no thread of the library sleeps: no nanosleep) */
    void *p = malloc(1 << 20); /* mmap */
    free(p);
    if (syscall(SYS_socket, AF_INET, SOCK_STREAM, 0) >= 0)
        _exit(3); /* allowed: not what the lists say */
    _exit(4);
}

static void run_kvm_ioctl_then_bad_ioctl(void)
{
    /* KVM_RUN is on every runtime list: on a bad fd it fails with EBADF. */
    if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF)
        _exit(5);
    int pgrp;
    (void)ioctl(STDIN_FILENO, TIOCGPGRP, &pgrp); /* on no list */
    _exit(6);
}

/* The fault thread's work (VMM_SECCOMP_UFFD): poll and read its eventfds,
 * pread64 the memory file, the uffd ioctls (EBADF here), the allocator, a
 * log line; then a socket, which its SIGSYS handler reports. */
static int uffd_file = -1, uffd_ev = -1;

static void on_sigsys_exit(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    _exit(si->si_syscall == SYS_socket ? 42 : 43);
}

static void uffd_work_then_socket(void)
{
    char buf[16];
    uint64_t v;
    struct pollfd p = {.fd = uffd_ev, .events = POLLIN};
    if (poll(&p, 1, 0) != 0 || read(uffd_ev, &v, sizeof(v)) != -1 || errno != EAGAIN)
        _exit(7);
    if (pread(uffd_file, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
        _exit(8);
    struct uffdio_copy c = {0};
    struct uffdio_zeropage z = {0};
    struct uffdio_range r = {0};
    if (ioctl(-1, UFFDIO_COPY, &c) != -1 || ioctl(-1, UFFDIO_ZEROPAGE, &z) != -1 ||
        ioctl(-1, UFFDIO_WAKE, &r) != -1 || ioctl(-1, UFFDIO_UNREGISTER, &r) != -1)
        _exit(9);
    void *m = malloc(1 << 20);
    free(m);
    (void)write(STDERR_FILENO, "", 0);
    (void)syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    _exit(3);
}

static void uffd_kvm_run(void)
{
    (void)ioctl(-1, KVM_RUN, 0); /* on the vCPU lists, not on the fault thread's */
    _exit(5);
}

START_TEST(uffd_thread_list)
{
    uffd_file = open(harness_guest_path("hello"), O_RDONLY | O_CLOEXEC);
    uffd_ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(uffd_file, 0);
    ck_assert_int_ge(uffd_ev, 0);
    struct vmm_seccomp_config trap =
        VMM_INIT(struct vmm_seccomp_config, .action = VMM_SECCOMP_TRAP);
    for (unsigned i = 0; i < 2; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            struct sigaction sa = {.sa_sigaction = on_sigsys_exit, .sa_flags = SA_SIGINFO};
            sigemptyset(&sa.sa_mask);
            if (sigaction(SIGSYS, &sa, NULL) < 0 || vmm_seccomp_install(VMM_SECCOMP_UFFD, &trap))
                _exit(99);
            if (i == 0)
                uffd_work_then_socket();
            uffd_kvm_run();
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        /* The work passes and the socket traps; KVM_RUN traps (not 42: not a socket). */
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == (i == 0 ? 42 : 43), "%u: status 0x%x", i,
                      st);
    }
    close(uffd_file);
    close(uffd_ev);

    /* A list of its own, narrower than a vCPU's. */
    unsigned sc, io, vsc, vio;
    ck_assert_int_eq(vmm_seccomp_allowlist_size(VMM_SECCOMP_UFFD, &sc, &io), 0);
    ck_assert_int_eq(vmm_seccomp_allowlist_size(VMM_SECCOMP_VCPU, &vsc, &vio), 0);
    ck_assert_uint_eq(io, 4);
    ck_assert_uint_gt(sc, 10);
    ck_assert_uint_lt(sc, vsc);
}
END_TEST

/* virtio-vsock's sockets: AF_UNIX from the I/O thread up, nothing else. */
static void make_unix_socket(void)
{
    _exit(syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) >= 0 ? 8 : 7);
}

static void make_inet6_socket(void)
{
    (void)syscall(SYS_socket, AF_INET6, SOCK_STREAM, 0);
    _exit(9);
}

START_TEST(unix_sockets_only)
{
    enum vmm_seccomp_thread kind = kinds[_i];
    int st = in_child(kind, NULL, make_unix_socket);
    if (kind == VMM_SECCOMP_VCPU)
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "vcpu: status 0x%x", st);
    else
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 8, "kind %d: status 0x%x", kind, st);
    st = in_child(kind, NULL, make_inet6_socket);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "kind %d: status 0x%x", kind, st);
}
END_TEST

START_TEST(kill_outside_the_list)
{
    enum vmm_seccomp_thread kind = kinds[_i];
    int st = in_child(kind, NULL, make_socket);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "kind %d: status 0x%x", kind, st);
}
END_TEST

START_TEST(ioctl_by_request_number)
{
    enum vmm_seccomp_thread kind = kinds[_i];
    int st = in_child(kind, NULL, run_kvm_ioctl_then_bad_ioctl);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "kind %d: status 0x%x", kind, st);
}
END_TEST

START_TEST(log_allows_and_extras_add)
{
    struct vmm_seccomp_config log = VMM_INIT(struct vmm_seccomp_config, .action = VMM_SECCOMP_LOG);
    int st = in_child(VMM_SECCOMP_VCPU, &log, make_socket);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "log: status 0x%x", st);

    static const int extra[] = {SYS_socket};
    struct vmm_seccomp_config more =
        VMM_INIT(struct vmm_seccomp_config, .extra_syscalls = extra, .nr_extra_syscalls = 1);
    st = in_child(VMM_SECCOMP_IO, &more, make_socket);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "extra: status 0x%x", st);

    static const unsigned long extra_ioctl[] = {TIOCGPGRP};
    struct vmm_seccomp_config more_ioctl =
        VMM_INIT(struct vmm_seccomp_config, .extra_ioctls = extra_ioctl, .nr_extra_ioctls = 1);
    st = in_child(VMM_SECCOMP_VCPU, &more_ioctl, run_kvm_ioctl_then_bad_ioctl);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 6, "extra ioctl: status 0x%x", st);
}
END_TEST

START_TEST(sizes_and_bad_arguments)
{
    unsigned sc[4], io[4];
    for (unsigned i = 0; i < 4; i++)
        ck_assert_int_eq(vmm_seccomp_allowlist_size(kinds[i], &sc[i], &io[i]), 0);
    /* The lists nest: vCPU and I/O within main, main within build. */
    ck_assert_uint_lt(sc[0], sc[2]);
    ck_assert_uint_lt(sc[1], sc[2]);
    ck_assert_uint_lt(sc[2], sc[3]);
    ck_assert_uint_le(io[0], io[2]);
    ck_assert_uint_lt(io[1], io[2]);
    ck_assert_uint_lt(io[2], io[3]);
    ck_assert_uint_gt(io[0], 0);
    ck_assert_int_eq(vmm_seccomp_allowlist_size((enum vmm_seccomp_thread)9, NULL, NULL), -EINVAL);

    /* Refused before anything is installed (this process stays unfiltered). */
    ck_assert_int_eq(vmm_seccomp_install((enum vmm_seccomp_thread)9, NULL), -EINVAL);
    struct vmm_seccomp_config bad =
        VMM_INIT(struct vmm_seccomp_config, .action = (enum vmm_seccomp_action)7);
    ck_assert_int_eq(vmm_seccomp_install(VMM_SECCOMP_VCPU, &bad), -EINVAL);
    bad = VMM_INIT(struct vmm_seccomp_config, .nr_extra_syscalls = 2);
    ck_assert_int_eq(vmm_seccomp_install(VMM_SECCOMP_VCPU, &bad), -EINVAL);
    bad = VMM_INIT(struct vmm_seccomp_config, .nr_extra_ioctls = 1);
    ck_assert_int_eq(vmm_seccomp_install(VMM_SECCOMP_VCPU, &bad), -EINVAL);
    bad.size = 2;
    ck_assert_int_eq(vmm_seccomp_install(VMM_SECCOMP_VCPU, &bad), -EINVAL);
    ck_assert_int_eq(syscall(SYS_getpid), getpid()); /* still unfiltered */
}
END_TEST

/* ---- the threads of vmm_vm_run ---- */

/* What the SIGSYS handler saw, per thread: the vCPU's device write and the
 * I/O thread's callback each make a call outside their lists. */
static _Atomic long trapped_vcpu = -1, trapped_io = -1;
static _Atomic pid_t vcpu_tid, io_tid;
static int kick_fd = -1;

static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (tid == atomic_load(&vcpu_tid))
        atomic_store(&trapped_vcpu, si->si_syscall);
    else if (tid == atomic_load(&io_tid))
        atomic_store(&trapped_io, si->si_syscall);
}

static void io_callback(void *opaque, int fd, uint32_t events)
{
    (void)opaque;
    (void)events;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    atomic_store(&io_tid, (pid_t)syscall(SYS_gettid));
    (void)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}

static void device_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    (void)data;
    (void)len;
    atomic_store(&vcpu_tid, (pid_t)syscall(SYS_gettid));
    (void)syscall(SYS_getcwd, NULL, 0);
    /* Wake the I/O thread and wait (bounded) for its callback's trap before
     * the guest ends the run. */
    uint64_t one = 1;
    if (write(kick_fd, &one, sizeof(one)) != sizeof(one))
        return;
    for (int i = 0; i < 5000 && atomic_load(&trapped_io) < 0; i++)
        (void)poll(NULL, 0, 1); /* the vCPU list has poll, not nanosleep */
}

START_TEST(vm_threads_get_their_filters)
{
    /* mov dx, 0x600; out dx, al; mov al, 42; out 0xf4, al; jmp $ */
    static const uint8_t code[] = {0x66, 0xba, 0x00, 0x06, 0xee, 0xb0,
                                   0x2a, 0xe6, 0xf4, 0xeb, 0xfe};
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGSYS, &sa, NULL), 0);

    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(kick_fd, 0);
    ck_assert_int_eq(
        vmm_event_loop_add(vmm_vm_event_loop(h.vm), kick_fd, EPOLLIN, io_callback, NULL), 0);
    struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = device_write};
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x600, 1, &ops, NULL), 0);
    harness_load_raw(&h, code, sizeof(code), 1);

    struct vmm_seccomp_config bad =
        VMM_INIT(struct vmm_seccomp_config, .action = (enum vmm_seccomp_action)5);
    ck_assert_int_eq(vmm_vm_set_seccomp(h.vm, &bad), -EINVAL);
    struct vmm_seccomp_config trap =
        VMM_INIT(struct vmm_seccomp_config, .action = VMM_SECCOMP_TRAP);
    ck_assert_int_eq(vmm_vm_set_seccomp(h.vm, &trap), 0);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 42);
    ck_assert_int_eq(atomic_load(&trapped_vcpu), SYS_getcwd);
    ck_assert_int_eq(atomic_load(&trapped_io), SYS_socket);
    /* This (the calling) thread got no filter. */
    ck_assert_int_ge(syscall(SYS_getcwd, (char[256]){0}, 256), 0);

    /* Off again: the next run's threads are unfiltered. */
    atomic_store(&trapped_vcpu, -1);
    atomic_store(&trapped_io, -1);
    ck_assert_int_eq(vmm_vm_set_seccomp(h.vm, NULL), 0);
    harness_fini(&h);
    close(kick_fd);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("seccomp");
    TCase *tc = tcase_create("filters");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, kill_outside_the_list, 0, 4);
    tcase_add_loop_test(tc, ioctl_by_request_number, 0, 4);
    tcase_add_loop_test(tc, unix_sockets_only, 0, 4);
    tcase_add_test(tc, log_allows_and_extras_add);
    tcase_add_test(tc, sizes_and_bad_arguments);
    tcase_add_test(tc, uffd_thread_list);
    tcase_add_test(tc, vm_threads_get_their_filters);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
