/* SPDX-License-Identifier: Apache-2.0 */
/* The seccomp allowlists as lists: no entry twice within a list, none of
 * the calls no VMM thread needs on any kind (and none of the file, process
 * and socket calls on the vCPU, I/O and fault threads), the sizes printed
 * (docs/seccomp.md has them); and the argument checks at work in a child:
 * no PROT_EXEC mapping, fstat but no stat of a path, threads but no
 * process. */
#include <check.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/seccomp.h>

#include "check_compat.h"
#include "vmm_internal.h"

static const char *const kind_names[] = {"vcpu", "io", "main", "build", "uffd"};

/* Calls no kind of thread may make. */
static const char *const never[] = {
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "clone3",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "setuid",
    "setgid",
    "setresuid",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "process_vm_readv",
    "process_vm_writev",
    "open_by_handle_at",
    "personality",
    "pkey_mprotect",
    "userfaultfd",
    "kill",
    "unshare",
    "setns",
};

/* Calls only the building and main threads make. */
static const char *const not_on_workers[] = {
    "open",   "openat", "openat2", "creat",  "clone",        "unlink",  "unlinkat",
    "rename", "mkdir",  "bind",    "listen", "memfd_create", "seccomp", "prctl",
};

static void lists_of(enum vmm_seccomp_thread kind, int *calls, unsigned *nc, unsigned long *reqs,
                     unsigned *ni)
{
    ck_assert_int_eq(vmm_seccomp_allowlist(kind, calls, nc, 256, reqs, ni, 128), 0);
}

static bool has(const int *calls, unsigned nc, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    for (unsigned i = 0; nr >= 0 && i < nc; i++)
        if (calls[i] == nr)
            return true;
    return false;
}

START_TEST(lists_hold_no_repeat_and_nothing_forbidden)
{
    ck_assert_uint_eq(vmm_seccomp_list_repeats(), 0);
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_UFFD; k++) {
        int calls[256];
        unsigned long reqs[128];
        unsigned nc, ni;
        lists_of(k, calls, &nc, reqs, &ni);
        for (unsigned i = 0; i < nc; i++)
            for (unsigned j = i + 1; j < nc; j++)
                ck_assert_int_ne(calls[i], calls[j]);
        for (size_t i = 0; i < VMM_ARRAY_SIZE(never); i++)
            ck_assert_msg(!has(calls, nc, never[i]), "%s allows %s", kind_names[k], never[i]);
        bool worker = k == VMM_SECCOMP_VCPU || k == VMM_SECCOMP_IO || k == VMM_SECCOMP_UFFD;
        for (size_t i = 0; worker && i < VMM_ARRAY_SIZE(not_on_workers); i++)
            ck_assert_msg(!has(calls, nc, not_on_workers[i]), "%s allows %s", kind_names[k],
                          not_on_workers[i]);
        /* The vCPU and fault threads make no socket calls at all. */
        if (k == VMM_SECCOMP_VCPU || k == VMM_SECCOMP_UFFD)
            ck_assert(!has(calls, nc, "socket") && !has(calls, nc, "connect") &&
                      !has(calls, nc, "accept4"));
        unsigned sc, io;
        ck_assert_int_eq(vmm_seccomp_allowlist_size(k, &sc, &io), 0);
        ck_assert_uint_eq(sc, nc);
        ck_assert_uint_eq(io, ni);
        printf("seccomp allowlist %-5s: %3u system calls, %3u ioctl requests\n", kind_names[k], nc,
               ni);
    }
    int calls[4];
    unsigned long reqs[4];
    unsigned nc, ni;
    ck_assert_int_eq(vmm_seccomp_allowlist(VMM_SECCOMP_BUILD, calls, &nc, 4, reqs, &ni, 4), -E2BIG);
    ck_assert_int_eq(vmm_seccomp_allowlist((enum vmm_seccomp_thread)9, calls, &nc, 4, reqs, &ni, 4),
                     -EINVAL);
}
END_TEST

static bool sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

/* Run fn in a child under kind's filter with cfg (NULL: the defaults); its
 * wait status. */
static int in_child_cfg(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *cfg,
                        int (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (vmm_seccomp_install(kind, cfg) != 0)
            _exit(99);
        _exit(fn());
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static int in_child(enum vmm_seccomp_thread kind, int (*fn)(void))
{
    return in_child_cfg(kind, NULL, fn);
}

static int map_rw_then_exec(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p, 4096, PROT_READ) != 0)
        return 1;
    (void)mprotect(p, 4096, PROT_READ | PROT_EXEC);
    return 2;
}

static int fstat_then_stat(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 1;
    (void)stat("/", &st);
    return 2;
}

static void *thread_fn(void *arg)
{
    return arg;
}

static int thread_then_fork(void)
{
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, thread_fn, &ret) != 0 || pthread_join(t, &ret) != 0 || !ret)
        return 1;
    (void)fork();
    return 2;
}

static bool killed(int st)
{
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
}

/* A thread through pthread_create (glibc tries clone3 first: the filter
 * answers ENOSYS and glibc falls back to clone), clone3 itself failing
 * with ENOSYS, then a fork-like clone (a new process, SIGCHLD at its end). */
static int threads_then_fork_clone(void)
{
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, thread_fn, &ret) != 0 || pthread_join(t, &ret) != 0 || !ret)
        return 1;
    char args[88] = {0}; /* struct clone_args, all zero: would be a fork */
    errno = 0;
    if (syscall(SYS_clone3, args, sizeof(args)) != -1 || errno != ENOSYS)
        return 3;
    (void)syscall(SYS_clone, (unsigned long)SIGCHLD, 0, 0, 0, 0);
    return 2;
}

/* A thread-like clone with a flag a thread does not need (CLONE_PTRACE is
 * harmless without a tracer, so a wrong allow would show as a child). */
static int clone_with_ptrace_flag(void)
{
    (void)syscall(SYS_clone,
                  (unsigned long)(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                                  CLONE_SYSVSEM | CLONE_PTRACE),
                  0, 0, 0, 0);
    return 2;
}

static int unix_stream_then_dgram(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 1;
    close(fd);
    (void)socket(AF_UNIX, SOCK_DGRAM, 0);
    return 2;
}

static int inet_then_packet(void)
{
    int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int b = socket(AF_INET6, SOCK_DGRAM, 0);
    int c = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (a < 0 || c < 0 || (b < 0 && errno != EAFNOSUPPORT))
        return 1;
    (void)socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT);
    return 2;
}

static int madvise_dontneed_then_dontfork(void)
{
    void *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || madvise(p, 8192, MADV_DONTNEED) != 0)
        return 1;
    void *q = mremap(p, 8192, 1 << 20, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        return 1;
    (void)madvise(q, 8192, MADV_DONTFORK);
    return 2;
}

START_TEST(arguments_are_checked)
{
    if (sanitized())
        return; /* a sanitizer build allows these calls whole */
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_UFFD; k++) {
        int st = in_child(k, map_rw_then_exec);
        ck_assert_msg(killed(st), "%s: mprotect(PROT_EXEC): status 0x%x", kind_names[k], st);
    }
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_MAIN; k++) {
        int st = in_child(k, fstat_then_stat);
        ck_assert_msg(killed(st), "%s: stat(path): status 0x%x", kind_names[k], st);
    }
    int st = in_child(VMM_SECCOMP_BUILD, fstat_then_stat);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "build: stat: status 0x%x", st);
    for (unsigned k = VMM_SECCOMP_MAIN; k <= VMM_SECCOMP_BUILD; k++) {
        st = in_child(k, thread_then_fork);
        ck_assert_msg(killed(st), "%s: fork: status 0x%x", kind_names[k], st);
        st = in_child(k, threads_then_fork_clone);
        ck_assert_msg(killed(st), "%s: clone(SIGCHLD): status 0x%x", kind_names[k], st);
        st = in_child(k, clone_with_ptrace_flag);
        ck_assert_msg(killed(st), "%s: clone(CLONE_PTRACE): status 0x%x", kind_names[k], st);
    }
    /* allow_threads gives the vCPU and I/O lists the same. */
    struct vmm_seccomp_config threads = VMM_INIT(struct vmm_seccomp_config, .allow_threads = true);
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_IO; k++) {
        st = in_child(k, thread_then_fork);
        ck_assert_msg(killed(st), "%s: thread: status 0x%x", kind_names[k], st);
        st = in_child_cfg(k, &threads, threads_then_fork_clone);
        ck_assert_msg(killed(st), "%s+threads: clone(SIGCHLD): status 0x%x", kind_names[k], st);
    }
    /* Unix stream sockets on IO and up, datagram ones on BUILD only. */
    for (unsigned k = VMM_SECCOMP_IO; k <= VMM_SECCOMP_MAIN; k++) {
        st = in_child(k, unix_stream_then_dgram);
        ck_assert_msg(killed(st), "%s: AF_UNIX SOCK_DGRAM: status 0x%x", kind_names[k], st);
    }
    st = in_child(VMM_SECCOMP_BUILD, unix_stream_then_dgram);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "build: AF_UNIX: status 0x%x", st);
    /* allow_inet_sockets: TCP, UDP and routing netlink, no other netlink. */
    struct vmm_seccomp_config inet =
        VMM_INIT(struct vmm_seccomp_config, .allow_inet_sockets = true);
    st = in_child_cfg(VMM_SECCOMP_IO, &inet, inet_then_packet);
    ck_assert_msg(killed(st), "io+inet: NETLINK_AUDIT: status 0x%x", st);
    st = in_child(VMM_SECCOMP_IO, inet_then_packet);
    ck_assert_msg(killed(st), "io: AF_INET: status 0x%x", st);
    /* madvise: MADV_DONTNEED; mremap: MREMAP_MAYMOVE. */
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_BUILD; k++) {
        st = in_child(k, madvise_dontneed_then_dontfork);
        ck_assert_msg(killed(st), "%s: MADV_DONTFORK: status 0x%x", kind_names[k], st);
    }
}
END_TEST

/* What a thread loads (the build's generated program where no extra rule
 * is asked for) is what libseccomp builds at run time for the same kind
 * and config, instruction for instruction, for every kind, deny action and
 * allow_snapshots; with an extra rule (one that differs from the plain
 * program), allow_threads or allow_inet_sockets, libseccomp's program. */
START_TEST(loaded_programs_are_libseccomps)
{
    static const enum vmm_seccomp_action actions[] = {VMM_SECCOMP_KILL, VMM_SECCOMP_TRAP,
                                                      VMM_SECCOMP_LOG};
    for (unsigned k = VMM_SECCOMP_VCPU; k <= VMM_SECCOMP_UFFD; k++) {
        for (unsigned a = 0; a < sizeof(actions) / sizeof(actions[0]); a++) {
            for (unsigned snap = 0; snap < 2; snap++) {
                struct vmm_seccomp_config cfg = VMM_INIT(struct vmm_seccomp_config);
                cfg.action = actions[a];
                cfg.allow_snapshots = snap;
                struct vmm_seccomp_prog got, want;
                ck_assert_int_eq(vmm_seccomp_prog_build(k, &cfg, &got), 0);
                ck_assert_int_eq(vmm_seccomp_prog_build_libseccomp(k, &cfg, &want), 0);
                ck_assert_msg(got.len == want.len && !memcmp(got.insns, want.insns,
                                                             got.len * sizeof(struct sock_filter)),
                              "%s, action %u, snapshots %u: %u instructions, libseccomp %u",
                              kind_names[k], a, snap, got.len, want.len);
                vmm_seccomp_prog_free(&got);
                vmm_seccomp_prog_free(&want);
            }
        }
        struct vmm_seccomp_config plain = VMM_INIT(struct vmm_seccomp_config);
        struct vmm_seccomp_config extra = plain;
        static const int getcwd_nr[] = {SCMP_SYS(getcwd)};
        extra.extra_syscalls = getcwd_nr;
        extra.nr_extra_syscalls = 1;
        struct vmm_seccomp_prog p, e, want;
        ck_assert_int_eq(vmm_seccomp_prog_build(k, &plain, &p), 0);
        ck_assert_int_eq(vmm_seccomp_prog_build(k, &extra, &e), 0);
        ck_assert_int_eq(vmm_seccomp_prog_build_libseccomp(k, &extra, &want), 0);
        ck_assert(e.len == want.len &&
                  !memcmp(e.insns, want.insns, e.len * sizeof(struct sock_filter)));
        ck_assert(e.len != p.len || memcmp(e.insns, p.insns, e.len * sizeof(struct sock_filter)));
        vmm_seccomp_prog_free(&p);
        vmm_seccomp_prog_free(&e);
        vmm_seccomp_prog_free(&want);
        /* The generated programs hold neither allow_threads nor
         * allow_inet_sockets: those configs get libseccomp's. */
        for (unsigned f = 0; f < 2; f++) {
            struct vmm_seccomp_config flag = plain;
            if (f == 0)
                flag.allow_threads = true;
            else
                flag.allow_inet_sockets = true;
            ck_assert_int_eq(vmm_seccomp_prog_build(k, &flag, &e), 0);
            ck_assert_int_eq(vmm_seccomp_prog_build_libseccomp(k, &flag, &want), 0);
            ck_assert_msg(e.len == want.len &&
                              !memcmp(e.insns, want.insns, e.len * sizeof(struct sock_filter)),
                          "%s, %s: %u instructions, libseccomp %u", kind_names[k],
                          f ? "allow_inet_sockets" : "allow_threads", e.len, want.len);
            vmm_seccomp_prog_free(&e);
            vmm_seccomp_prog_free(&want);
        }
    }
    /* A bad config fails the same way on both roads. */
    struct vmm_seccomp_config bad = VMM_INIT(struct vmm_seccomp_config);
    bad.action = (enum vmm_seccomp_action)7;
    struct vmm_seccomp_prog p;
    ck_assert_int_eq(vmm_seccomp_prog_build(VMM_SECCOMP_VCPU, &bad, &p), -EINVAL);
    ck_assert_int_eq(vmm_seccomp_prog_build(VMM_SECCOMP_UFFD + 1, NULL, &p), -EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seccomp_lists");
    TCase *tc = tcase_create("lists");
    tcase_add_test(tc, lists_hold_no_repeat_and_nothing_forbidden);
    tcase_add_test(tc, arguments_are_checked);
    tcase_add_test(tc, loaded_programs_are_libseccomps);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
