/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seccomp allowlists of <vmm/seccomp.h>, one per kind of thread, built
 * with libseccomp (it knows each architecture's system call numbers and
 * writes the BPF; the lists below are what we decide).
 *
 * Each list is the system calls that kind of thread makes once the VM is
 * built, found by tracing vmm-run and the test suites (strace -f) and by
 * reading the library's run-time paths; ioctl is allowed only for the
 * request numbers listed. The lists nest: VCPU and IO are within MAIN,
 * MAIN within BUILD, since a thread inherits its creator's filter.
 *
 * libseccomp runs at build time too: lib/seccomp/gen.c (a build tool over
 * this file) writes the program of every kind, with and without
 * allow_snapshots, into a generated header, and a thread whose filter adds
 * no extra rules loads that one, its deny action set, without building
 * anything (issue 15: libseccomp's filter building cost each launch ~1.4 ms
 * and ~100 KiB of heap). libseccomp builds the rest: extra rules, and cross
 * builds, which have no generated header.
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/if_tun.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <linux/vhost.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vmm/seccomp.h>

#include "vmm_internal.h"

#if defined(VMM_SECCOMP_PRECOMPILED) && !defined(VMM_SECCOMP_GENERATOR)
/* precompiled[kind][allow_snapshots], built with SECCOMP_RET_KILL_PROCESS
 * as the deny action. */
#include "seccomp_progs.h"
#endif

/* The calls glibc (2.36) makes for the same function differ by
 * architecture: x86-64 keeps the old calls (poll, epoll_wait, unlink,
 * mkdir, rename, access, readlink), arm64 has only the newer forms. */
#if defined(__x86_64__)
#define SYS_ARCH(x86_64, arm64) SCMP_SYS(x86_64)
#else
#define SYS_ARCH(x86_64, arm64) SCMP_SYS(arm64)
#endif

/* Every kind but UFFD; who makes each call (docs/seccomp.md has the same
 * table). mmap and mprotect (never PROT_EXEC), newfstatat (glibc's fstat:
 * AT_EMPTY_PATH), madvise (MADV_DONTNEED), mremap (MREMAP_MAYMOVE) and
 * fallocate (punching holes) are allowed with their arguments checked:
 * allow_restricted. */
static const int common_syscalls[] = {
    SCMP_SYS(read),            /* eventfds, the tap, the console's input */
    SCMP_SYS(readv),           /* virtio-net and virtio-vsock receive */
    SCMP_SYS(write),           /* eventfds, the tap, console and UART output, logs */
    SCMP_SYS(writev),          /* virtio-net transmit, virtio-console output */
    SCMP_SYS(close),           /* fds a device lets go of (vsock connections) */
    SCMP_SYS(futex),           /* every lock and condition */
    SCMP_SYS(exit),            /* a thread's end */
    SCMP_SYS(exit_group),      /* the process's end, from any thread */
    SCMP_SYS(rt_sigreturn),    /* back from the vCPU kick's handler */
    SCMP_SYS(rt_sigprocmask),  /* the kick unblocked around KVM_RUN, lib/io.c */
    SCMP_SYS(rt_sigpending),   /* lib/io.c: a SIGPIPE its write raised */
    SCMP_SYS(rt_sigtimedwait), /* lib/io.c: taking that SIGPIPE */
    SCMP_SYS(restart_syscall), /* a wait the kick interrupted, restarted */
    SCMP_SYS(munmap),          /* malloc, thread stacks */
    SCMP_SYS(brk),             /* malloc */
    SCMP_SYS(getpid),          /* pthread_kill: the vCPU kick */
    SCMP_SYS(gettid),          /* raise/abort: SIGABRT rather than a seccomp kill */
    SCMP_SYS(tgkill),          /* pthread_kill */
    SCMP_SYS(clock_gettime),   /* the vDSO's fall-back: rate limits, stats, timed waits */
    SCMP_SYS(sched_yield),     /* lib/bus: waiting for a device's callbacks to end */
    SCMP_SYS(getrandom),       /* virtio-rng */
    SYS_ARCH(poll, ppoll),     /* UART and console: output draining, input ready */
    SCMP_SYS(epoll_ctl),       /* devices change their watches from any thread */
    SCMP_SYS(io_uring_enter),  /* virtio-blk submits and reaps */
    SCMP_SYS(timerfd_settime), /* virtio-net's and virtio-rng's rate limiters */
};

/* Sanitizer builds: alternate signal stacks per thread, and the leak
 * check's tracer thread at exit (it stops and reads the others). */
static const int sanitizer_syscalls[] = {
    SCMP_SYS(sigaltstack),
    SCMP_SYS(clone),
    SCMP_SYS(clone3),
    SCMP_SYS(ptrace),
    SCMP_SYS(wait4),
    SCMP_SYS(prctl),
    SCMP_SYS(getppid),
    SCMP_SYS(openat),
    SCMP_SYS(getdents64),
    SCMP_SYS(getdents),
    SCMP_SYS(open),
    SCMP_SYS(readlink),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(set_tid_address),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(kill),
    SCMP_SYS(pipe2),
    /* The runtime's own calls, which glibc-based code here no longer makes:
     * LeakSanitizer's check at exit seeks in /proc files, sleeps, stats. */
    SCMP_SYS(lseek),
    SCMP_SYS(fstat),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
};

/* What devices do when the guest (re)configures them, from the vCPU that
 * wrote the register or the event loop: virtio-net's tap offloads and queue
 * attachment, and its vhost-net rings. */
#define DEVICE_IOCTLS                                                                              \
    TUNSETOFFLOAD, TUNSETQUEUE, VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE, VHOST_SET_VRING_NUM,      \
        VHOST_SET_VRING_BASE, VHOST_GET_VRING_BASE, VHOST_SET_VRING_ADDR, VHOST_SET_VRING_KICK,    \
        VHOST_SET_VRING_CALL, VHOST_NET_SET_BACKEND, SIOCGIFMTU, VHOST_VSOCK_SET_RUNNING

/* The architecture's own ioctls in the lists below: vCPU state (x86's
 * register sets, MSRs and local APIC; arm64's registers one by one), what
 * building a VM takes (x86's TSS, irqchip, PIT and CPUID; arm64's vCPU
 * init), and on arm64 the vGIC's creation and CTRL_INIT, which
 * vmm_vm_run does on its first call when no irqfd did it while the VM was
 * built. */
#if defined(__x86_64__)
#define VCPU_ARCH_IOCTLS                                                                           \
    KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU, KVM_SET_FPU,            \
        KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_SET_MP_STATE
#define MAIN_ARCH_IOCTLS
#define BUILD_ARCH_IOCTLS                                                                          \
    KVM_SET_TSS_ADDR, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2,
#define SNAPSHOT_ARCH_IOCTLS                                                                       \
    KVM_GET_CLOCK, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_TSC_KHZ, KVM_GET_MSR_INDEX_LIST,         \
        KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_FPU, KVM_GET_MSRS, KVM_GET_LAPIC, KVM_GET_MP_STATE,   \
        KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_XCRS, KVM_GET_XSAVE, KVM_GET_XSAVE2,
#elif defined(__aarch64__)
#define VCPU_ARCH_IOCTLS     KVM_GET_ONE_REG, KVM_SET_ONE_REG
#define MAIN_ARCH_IOCTLS     KVM_CREATE_DEVICE, KVM_SET_DEVICE_ATTR,
#define BUILD_ARCH_IOCTLS    KVM_ARM_PREFERRED_TARGET, KVM_ARM_VCPU_INIT,
#define SNAPSHOT_ARCH_IOCTLS /* snapshots are x86's only */
#else
#error "no seccomp allowlists for this architecture"
#endif

/* vCPU threads: KVM_RUN, vCPU state (a device or the run loop reads it),
 * interrupts and the eventfds a device (re)wires when the guest resets it,
 * the block device's discard fall-back. */
static const unsigned long vcpu_ioctls[] = {
    DEVICE_IOCTLS,       KVM_RUN,   VCPU_ARCH_IOCTLS, KVM_IRQ_LINE, KVM_SIGNAL_MSI,
    KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD,    BLKDISCARD,
};
/* vCPU threads with a passed-through device (lib/vfio): its BAR pages
 * follow the guest's BAR moves as KVM memory slots, its interrupts the
 * guest's choice of INTx, MSI or MSI-X, and its trapped BAR and
 * configuration accesses go to its VFIO fd. */
static const unsigned long vcpu_vfio_ioctls[] = {
    KVM_SET_USER_MEMORY_REGION,
    VFIO_DEVICE_SET_IRQS,
};
static const int vcpu_syscalls[] = {
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
};

/* The event loop: epoll, and interrupts and eventfds as device back ends
 * complete requests or rewire. */
static const int io_syscalls[] = {
    SYS_ARCH(epoll_wait, epoll_pwait), /* vmm_event_loop_run */
    /* virtio-vsock's Unix sockets (socket itself: AF_UNIX streams only,
     * allow_unix_socket) */
    SCMP_SYS(connect),  /* to a host listener, for a guest's REQUEST */
    SCMP_SYS(accept4),  /* a host program's connection */
    SCMP_SYS(sendmsg),  /* guest to host bytes */
    SCMP_SYS(recvfrom), /* recv: the host's "CONNECT <port>" line */
    SCMP_SYS(shutdown), /* the guest's SHUTDOWN SEND passed on */
};
static const unsigned long io_ioctls[] = {
    DEVICE_IOCTLS, KVM_IRQ_LINE,  KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING,
    KVM_IRQFD,     KVM_IOEVENTFD, BLKDISCARD,
};

/* The thread that runs vmm_vm_run and destroys the VM afterwards: starts and
 * joins threads (clone, threads only: allow_restricted; glibc's first
 * pthread_create also sets up its own signal handlers), lets the threads it
 * starts add their own filters, dirty logging, the terminal it restores. */
static const int main_syscalls[] = {
    SCMP_SYS(rt_sigaction),    /* glibc's handlers, set at a process's first pthread_create */
    SCMP_SYS(rseq),            /* glibc's start of a thread, under this filter until */
    SCMP_SYS(set_robust_list), /* the thread loads its own */
    SCMP_SYS(seccomp),         /* that load (vmm_seccomp_prog_load) */
    /* virtio-vsock removes its listening socket's path when destroyed */
    SYS_ARCH(unlink, unlinkat),
};
static const unsigned long main_ioctls[] = {
    MAIN_ARCH_IOCTLS KVM_GET_DIRTY_LOG,
    KVM_SET_USER_MEMORY_REGION,
    KVM_CHECK_EXTENSION,
    TCGETS,
    TCSETS, /* tcsetattr(TCSANOW) */
    /* Tearing a passed-through device down (lib/vfio). */
    VFIO_DEVICE_RESET,
    VFIO_IOMMU_UNMAP_DMA,
};

/* Building a VM: files, /dev/kvm, the VM's fds and memory, its devices.
 * newfstatat of a path and fcntl (some commands) are in allow_restricted;
 * pread64 is the vCPU's list's, which BUILD holds. */
static const int build_syscalls[] = {
    SCMP_SYS(openat),               /* open: /dev/kvm, images, disks, taps, vhost, VFIO */
    SCMP_SYS(eventfd2),             /* irqfds, ioeventfds, the loop's and devices' wake-ups */
    SCMP_SYS(epoll_create1),        /* the event loop */
    SCMP_SYS(timerfd_create),       /* virtio-net's and virtio-rng's rate limiters */
    SCMP_SYS(io_uring_setup),       /* virtio-blk's rings */
    SCMP_SYS(io_uring_register),    /* and their eventfd and files */
    SCMP_SYS(memfd_create),         /* guest memory; vmm_vm_set_seccomp's filters */
    SCMP_SYS(ftruncate),            /* guest memory's size */
    SCMP_SYS(lseek),                /* vmm_vm_set_seccomp: a filter's size */
    SCMP_SYS(statx),                /* virtio-blk: the file's direct I/O alignment */
    SYS_ARCH(access, faccessat),    /* lib/vfio: a device's IOMMU group */
    SYS_ARCH(readlink, readlinkat), /* lib/vfio: which group */
    SCMP_SYS(getdents64),           /* lib/vfio: the devices of an IOMMU group */
    SCMP_SYS(bind),                 /* virtio-vsock's listening socket */
    SCMP_SYS(listen),
    /* lib/loader's kernel cache (payload_cache_dir): whose the entries are,
     * and a new one flushed and renamed into place, or removed. */
    SCMP_SYS(geteuid),
    SCMP_SYS(fsync),
    SYS_ARCH(renameat, renameat2),
    SCMP_SYS(unlinkat),
};
static const unsigned long build_ioctls[] = {
    KVM_GET_API_VERSION,
    KVM_CREATE_VM,
    KVM_GET_VCPU_MMAP_SIZE,
    KVM_CREATE_VCPU,
    BUILD_ARCH_IOCTLS KVM_ENABLE_CAP,
    BLKGETSIZE64,
    BLKSSZGET,
    VHOST_SET_OWNER, /* vhost-net and vhost-vsock instances */
    VHOST_GET_FEATURES,
    VHOST_VSOCK_SET_GUEST_CID,
    KVM_REGISTER_COALESCED_MMIO, /* vmm_vm_coalesce_writes */
    /* lib/vfio: a container, its groups and devices, DMA, KVM's VFIO device. */
    VFIO_GET_API_VERSION,
    VFIO_CHECK_EXTENSION,
    VFIO_SET_IOMMU,
    VFIO_GROUP_GET_STATUS,
    VFIO_GROUP_SET_CONTAINER,
    VFIO_GROUP_UNSET_CONTAINER,
    VFIO_GROUP_GET_DEVICE_FD,
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_IOMMU_MAP_DMA,
    KVM_CREATE_DEVICE,
    KVM_SET_DEVICE_ATTR,
};

/* vmm_seccomp_config.allow_snapshots: saving a VM (lib/snapshot) and
 * sending one (lib/snapshot/migrate.c); what each call is for is beside
 * it. stat of a path and the fcntl commands are in allow_restricted. */
static const int snapshot_syscalls[] = {
    SCMP_SYS(openat),               /* the snapshot's files */
    SYS_ARCH(mkdir, mkdirat),       /* its directory */
    SCMP_SYS(ftruncate),            /* a memory file's size */
    SCMP_SYS(pwrite64),             /* memory pages at their offsets */
    SYS_ARCH(rename, renameat2),    /* a finished file into place */
    SYS_ARCH(unlink, unlinkat),     /* a failed one removed */
    SCMP_SYS(fsync),                /* on disk before it is named whole */
    SCMP_SYS(pread64),              /* a diff: the last snapshot's header */
    SCMP_SYS(lseek),                /* SEEK_DATA/SEEK_HOLE: holes stay holes */
    SYS_ARCH(readlink, readlinkat), /* realpath of a diff's base */
    SCMP_SYS(memfd_create),         /* a migration's new memfds */
    SCMP_SYS(dup3),                 /* in place of the handed-over ones */
    SCMP_SYS(getsockopt),           /* a migration socket's family */
    SCMP_SYS(sendto),               /* send: a migration's pages and state */
    SCMP_SYS(recvmsg),              /* the target's replies */
};
static const unsigned long snapshot_ioctls[] = {
    KVM_CHECK_EXTENSION,
    SNAPSHOT_ARCH_IOCTLS KVM_GET_DIRTY_LOG,
    KVM_SET_USER_MEMORY_REGION,
};

/* The fault thread of a VMM_RESTORE_UFFD restore (lib/snapshot/uffd.c):
 * poll on userfaultfd and its stop and request eventfds, read their
 * messages, pread64 of the memory file, the uffd ioctls, and what logging a
 * failure and leaving take (write, the allocator, futex). */
static const int uffd_syscalls[] = {
    SCMP_SYS(read),
    SCMP_SYS(pread64),
    SCMP_SYS(write),
    SYS_ARCH(poll, ppoll),
    SCMP_SYS(futex),
    SCMP_SYS(munmap),
    SCMP_SYS(brk),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(tgkill),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
};
static const unsigned long uffd_ioctls[] = {
    UFFDIO_COPY,
    UFFDIO_ZEROPAGE,
    UFFDIO_WAKE,
    UFFDIO_UNREGISTER,
};

struct list {
    const int *syscalls;
    size_t nr_syscalls;
    const unsigned long *ioctls;
    size_t nr_ioctls;
};

#define LIST(s, i)                                                                                 \
    {                                                                                              \
        s, VMM_ARRAY_SIZE(s), i, VMM_ARRAY_SIZE(i)                                                 \
    }
#define SYSCALLS(s)                                                                                \
    {                                                                                              \
        s, VMM_ARRAY_SIZE(s), NULL, 0                                                              \
    }
#define IOCTLS(i)                                                                                  \
    {                                                                                              \
        NULL, 0, i, VMM_ARRAY_SIZE(i)                                                              \
    }

/* Which lists make up each kind (they nest, see above). */
static const struct list kind_lists[][6] = {
    [VMM_SECCOMP_VCPU] = {SYSCALLS(common_syscalls), IOCTLS(vcpu_ioctls),
                          LIST(vcpu_syscalls, vcpu_vfio_ioctls)},
    [VMM_SECCOMP_IO] = {SYSCALLS(common_syscalls), LIST(io_syscalls, io_ioctls)},
    [VMM_SECCOMP_MAIN] = {SYSCALLS(common_syscalls), IOCTLS(vcpu_ioctls),
                          LIST(vcpu_syscalls, vcpu_vfio_ioctls), LIST(io_syscalls, io_ioctls),
                          LIST(main_syscalls, main_ioctls)},
    [VMM_SECCOMP_BUILD] = {SYSCALLS(common_syscalls), IOCTLS(vcpu_ioctls),
                           LIST(vcpu_syscalls, vcpu_vfio_ioctls), LIST(io_syscalls, io_ioctls),
                           LIST(main_syscalls, main_ioctls), LIST(build_syscalls, build_ioctls)},
    [VMM_SECCOMP_UFFD] = {LIST(uffd_syscalls, uffd_ioctls)},
};

#if defined(VMM_SECCOMP_PRECOMPILED) && !defined(VMM_SECCOMP_GENERATOR)
_Static_assert(VMM_ARRAY_SIZE(precompiled) == VMM_ARRAY_SIZE(kind_lists),
               "a generated program for every kind");
#endif

/* MAIN and BUILD set no_new_privs on the threads they start filters on. */
static bool sets_nnp(enum vmm_seccomp_thread kind)
{
    return kind == VMM_SECCOMP_MAIN || kind == VMM_SECCOMP_BUILD;
}

/* virtio-vsock's sockets: from the I/O thread up, not the fault thread. */
static bool allows_unix_socket(enum vmm_seccomp_thread kind)
{
    return kind == VMM_SECCOMP_IO || kind == VMM_SECCOMP_MAIN || kind == VMM_SECCOMP_BUILD;
}

static bool valid_kind(enum vmm_seccomp_thread kind)
{
    return (unsigned)kind < VMM_ARRAY_SIZE(kind_lists);
}

/* Add an allow rule; a call the architecture lacks (libseccomp's negative
 * pseudo numbers) is fine to skip. Allowing the same thing twice is not an
 * error either (lists nest and overlap). */
static int allow_syscall(scmp_filter_ctx ctx, int nr)
{
    if (nr < 0)
        return 0;
    int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    return r == -EEXIST ? 0 : r;
}

static int allow_ioctl(scmp_filter_ctx ctx, unsigned long req)
{
    /* The kernel takes the request as an unsigned int: compare 32 bits. */
    int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, (uint32_t)req));
    return r == -EEXIST ? 0 : r;
}

/* MAIN's threads set no_new_privs before adding their filter; no other
 * prctl. */
static int allow_nnp(scmp_filter_ctx ctx)
{
    const struct scmp_arg_cmp nnp = {
        .arg = 0, .op = SCMP_CMP_EQ, .datum_a = PR_SET_NO_NEW_PRIVS, .datum_b = 0};
    int r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, &nnp);
    return r == -EEXIST ? 0 : r;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
                    const struct scmp_arg_cmp *cmp)
{
    if (nr < 0)
        return 0;
    int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    return r == -EEXIST ? 0 : r;
}

/* Argument arg, an int as the kernel reads it (its low 32 bits), is v. */
static struct scmp_arg_cmp arg_is(unsigned arg, uint32_t v)
{
    return (struct scmp_arg_cmp){
        .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = 0xffffffffu, .datum_b = v};
}

/* socket(family, type with SOCK_NONBLOCK/SOCK_CLOEXEC or not, ...). */
static int allow_socket(scmp_filter_ctx ctx, int family, int type)
{
    const struct scmp_arg_cmp cmp[] = {
        arg_is(0, (uint32_t)family),
        {.arg = 1,
         .op = SCMP_CMP_MASKED_EQ,
         .datum_a = 0xffffffffu & ~(uint32_t)(SOCK_NONBLOCK | SOCK_CLOEXEC),
         .datum_b = (uint32_t)type},
    };
    return add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, cmp);
}

/* IO and up: Unix stream sockets (virtio-vsock's connections to the
 * host's listeners, and its own listening socket); BUILD also a datagram
 * one (virtio-net's socket for the tap's MTU, made with the device). */
static int allow_unix_socket(scmp_filter_ctx ctx, enum vmm_seccomp_thread kind)
{
    int r = allow_socket(ctx, AF_UNIX, SOCK_STREAM);
    if (r == 0 && kind == VMM_SECCOMP_BUILD)
        r = allow_socket(ctx, AF_UNIX, SOCK_DGRAM);
    return r;
}

/* vmm_seccomp_config.allow_inet_sockets: TCP and UDP sockets, and the
 * routing netlink socket through which getaddrinfo learns the host's
 * addresses to order a name's (the UDP sockets are its probes). */
static int allow_inet_sockets(scmp_filter_ctx ctx)
{
    static const int families[] = {AF_INET, AF_INET6}, types[] = {SOCK_STREAM, SOCK_DGRAM};
    int r = 0;
    for (size_t f = 0; f < VMM_ARRAY_SIZE(families) && r == 0; f++)
        for (size_t t = 0; t < VMM_ARRAY_SIZE(types) && r == 0; t++)
            r = allow_socket(ctx, families[f], types[t]);
    if (r == 0) {
        const struct scmp_arg_cmp cmp[] = {
            arg_is(0, AF_NETLINK),
            {.arg = 1,
             .op = SCMP_CMP_MASKED_EQ,
             .datum_a = 0xffffffffu & ~(uint32_t)(SOCK_NONBLOCK | SOCK_CLOEXEC),
             .datum_b = SOCK_RAW},
            arg_is(2, NETLINK_ROUTE),
        };
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, cmp);
    }
    return r;
}

/* The flags glibc's pthread_create gives clone (glibc 2.36 and earlier
 * alike): a thread sharing everything, with optional TID and TLS set-up,
 * no exit signal. Any other bit (a new process, vfork, namespaces,
 * CLONE_PARENT, CLONE_PTRACE, a pidfd) fails the rule. */
#define THREAD_CLONE_FLAGS                                                                         \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)
#define THREAD_CLONE_OPTIONAL                                                                      \
    (CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID)

static bool sanitized(void);

/* Starting threads (MAIN, BUILD, and any kind with allow_threads):
 * clone for a thread only; clone3, whose flags are in memory a filter
 * cannot read, fails with ENOSYS, and glibc (2.34 and later) then uses
 * clone; glibc's first pthread_create in a process installs its handlers
 * (rt_sigaction), and the new thread registers rseq and its robust futex
 * list before it loads a filter of its own. */
static int allow_threads(scmp_filter_ctx ctx)
{
    bool whole = sanitized();
    const struct scmp_arg_cmp thread = {.arg = 0,
                                        .op = SCMP_CMP_MASKED_EQ,
                                        .datum_a = ~(uint64_t)THREAD_CLONE_OPTIONAL,
                                        .datum_b = THREAD_CLONE_FLAGS};
    int r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), !whole, &thread);
    if (r == 0)
        r = add_rule(ctx, whole ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0,
                     NULL);
    static const int calls[] = {SCMP_SYS(rt_sigaction), SCMP_SYS(rseq), SCMP_SYS(set_robust_list)};
    for (size_t i = 0; i < VMM_ARRAY_SIZE(calls) && r == 0; i++)
        r = add_rule(ctx, SCMP_ACT_ALLOW, calls[i], 0, NULL);
    return r;
}

/* fcntl commands: BUILD's (checking fds it is given, taking its own
 * copies, sealing guest memory's size) and a snapshot's (a migration's
 * memfds: their seals and mode, sealing new ones). */
static const int build_fcntls[] = {F_GETFD, F_GETFL, F_DUPFD_CLOEXEC, F_ADD_SEALS};
static const int snapshot_fcntls[] = {F_GETFL, F_GET_SEALS, F_ADD_SEALS, F_DUPFD_CLOEXEC};

static int allow_fcntls(scmp_filter_ctx ctx, const int *cmds, size_t n, bool whole)
{
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        const struct scmp_arg_cmp cmd = arg_is(1, (uint32_t)cmds[i]);
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), !whole, &cmd);
    }
    return r;
}

/* The calls allowed with their arguments checked (a sanitizer build, whose
 * run-time needs more, allows them whole):
 * - mmap and mprotect never with PROT_EXEC, on every kind: no thread of a
 *   VMM makes code at run time (pkey_mprotect is on no list);
 * - madvise(MADV_DONTNEED) on every kind (malloc giving memory back, a
 *   thread's stack at its end, virtio-balloon, a uffd restore), and on
 *   BUILD what guest memory is given (MADV_HUGEPAGE or NOHUGEPAGE,
 *   MADV_MERGEABLE, MADV_DONTDUMP);
 * - mremap only with MREMAP_MAYMOVE (glibc's realloc of a chunk it
 *   mmapped), fallocate only punching holes (virtio-balloon), not on UFFD;
 * - newfstatat only on an fd (AT_EMPTY_PATH: glibc's fstat) but on BUILD
 *   (and with allow_snapshots), which stat paths; not on UFFD's list;
 * - fcntl with BUILD's and a snapshot's commands only;
 * - clone and clone3 as allow_threads says, on MAIN and BUILD. */
static int allow_restricted(scmp_filter_ctx ctx, enum vmm_seccomp_thread kind,
                            const struct vmm_seccomp_config *cfg)
{
    bool whole = sanitized();
    const struct scmp_arg_cmp noexec = {
        .arg = 2, .op = SCMP_CMP_MASKED_EQ, .datum_a = PROT_EXEC, .datum_b = 0};
    int r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), !whole, &noexec);
    if (r == 0)
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), !whole, &noexec);
    /* MADV_DONTNEED on every kind; BUILD, and allow_snapshots (a migration
     * target maps the source's memfds over guest memory and advises them as
     * guest memory is: memory_region_adopt_memfd), all of these. */
    static const int advice[] = {MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE,
                                 MADV_DONTDUMP};
    bool all_advice =
        kind == VMM_SECCOMP_BUILD || (kind != VMM_SECCOMP_UFFD && cfg->allow_snapshots);
    size_t nadvice = all_advice ? VMM_ARRAY_SIZE(advice) : 1;
    for (size_t i = 0; i < nadvice && r == 0; i++) {
        const struct scmp_arg_cmp cmp = arg_is(2, (uint32_t)advice[i]);
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), !whole, &cmp);
    }
    if (r == 0 && kind != VMM_SECCOMP_UFFD) {
        const struct scmp_arg_cmp maymove = arg_is(3, MREMAP_MAYMOVE);
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mremap), !whole, &maymove);
    }
    if (r == 0 && kind != VMM_SECCOMP_UFFD) {
        const struct scmp_arg_cmp hole = arg_is(1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fallocate), !whole, &hole);
    }
    if (r == 0 && kind != VMM_SECCOMP_UFFD) {
        bool paths = whole || kind == VMM_SECCOMP_BUILD || cfg->allow_snapshots;
        const struct scmp_arg_cmp fd_only = {
            .arg = 3, .op = SCMP_CMP_MASKED_EQ, .datum_a = AT_EMPTY_PATH, .datum_b = AT_EMPTY_PATH};
        r = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), !paths, &fd_only);
    }
    if (r == 0 && kind == VMM_SECCOMP_BUILD)
        r = allow_fcntls(ctx, build_fcntls, VMM_ARRAY_SIZE(build_fcntls), whole);
    if (r == 0 && kind != VMM_SECCOMP_UFFD && cfg->allow_snapshots)
        r = allow_fcntls(ctx, snapshot_fcntls, VMM_ARRAY_SIZE(snapshot_fcntls), whole);
    if (r == 0 && (sets_nnp(kind) || (kind != VMM_SECCOMP_UFFD && cfg->allow_threads)))
        r = allow_threads(ctx);
    if (r == 0 && kind != VMM_SECCOMP_UFFD && cfg->allow_inet_sockets)
        r = allow_inet_sockets(ctx);
    return r;
}

static int add_list(scmp_filter_ctx ctx, const int *calls, size_t nr_calls,
                    const unsigned long *ioctls, size_t nr_ioctls)
{
    int r = 0;
    for (size_t i = 0; i < nr_calls && r == 0; i++)
        r = allow_syscall(ctx, calls[i]);
    for (size_t i = 0; i < nr_ioctls && r == 0; i++)
        r = allow_ioctl(ctx, ioctls[i]);
    return r;
}

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

/* The caller's config in *cfg, checked, and its deny action's seccomp
 * return value in *deny. */
static int check_config(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *user,
                        struct vmm_seccomp_config *cfg, uint32_t *deny)
{
    *cfg = VMM_INIT(struct vmm_seccomp_config);
    if (user && VMM_ABI_COPY_IN(cfg, user) < 0)
        return -EINVAL;
    if (!valid_kind(kind) || (cfg->nr_extra_syscalls && !cfg->extra_syscalls) ||
        (cfg->nr_extra_ioctls && !cfg->extra_ioctls))
        return -EINVAL;
    switch (cfg->action) {
    case VMM_SECCOMP_KILL:
        *deny = SCMP_ACT_KILL_PROCESS;
        return 0;
    case VMM_SECCOMP_TRAP:
        *deny = SCMP_ACT_TRAP;
        return 0;
    case VMM_SECCOMP_LOG:
        *deny = SCMP_ACT_LOG;
        return 0;
    default:
        return -EINVAL;
    }
}

/* The filter for kind and user's config, in a libseccomp context. */
static int build_ctx(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *user,
                     scmp_filter_ctx *out)
{
    struct vmm_seccomp_config cfg;
    uint32_t deny;
    int r = check_config(kind, user, &cfg, &deny);
    if (r < 0)
        return r;
    scmp_filter_ctx ctx = seccomp_init(deny);
    if (!ctx)
        return -ENOMEM;
    const struct list *l = kind_lists[kind];
    for (size_t i = 0; i < VMM_ARRAY_SIZE(kind_lists[0]) && r == 0; i++)
        r = add_list(ctx, l[i].syscalls, l[i].nr_syscalls, l[i].ioctls, l[i].nr_ioctls);
    if (r == 0)
        r = allow_restricted(ctx, kind, &cfg);
    if (r == 0 && sets_nnp(kind))
        r = allow_nnp(ctx);
    if (r == 0 && allows_unix_socket(kind))
        r = allow_unix_socket(ctx, kind);
    if (r == 0 && cfg.allow_snapshots)
        r = add_list(ctx, snapshot_syscalls, VMM_ARRAY_SIZE(snapshot_syscalls), snapshot_ioctls,
                     VMM_ARRAY_SIZE(snapshot_ioctls));
    if (r == 0 && sanitized())
        r = add_list(ctx, sanitizer_syscalls, VMM_ARRAY_SIZE(sanitizer_syscalls), NULL, 0);
    if (r == 0)
        r = add_list(ctx, cfg.extra_syscalls, cfg.nr_extra_syscalls, cfg.extra_ioctls,
                     cfg.nr_extra_ioctls);
    if (r < 0) {
        vmm_log_error("seccomp: building the filter: %s", vmm_strerror(r));
        seccomp_release(ctx);
        return r;
    }
    *out = ctx;
    return 0;
}

/* The generated program for kind and user's config in *out (allocated),
 * its deny action set; -ENOENT where none fits (extra rules, allow_threads
 * or allow_inet_sockets, or a build without generated programs):
 * libseccomp then builds it. */
static int precompiled_prog(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *user,
                            struct vmm_seccomp_prog *out)
{
    struct vmm_seccomp_config cfg;
    uint32_t deny;
    int r = check_config(kind, user, &cfg, &deny);
    if (r < 0)
        return r;
#if defined(VMM_SECCOMP_PRECOMPILED) && !defined(VMM_SECCOMP_GENERATOR)
    /* Generated: each kind with and without allow_snapshots, nothing
     * added. */
    if (cfg.nr_extra_syscalls || cfg.nr_extra_ioctls || cfg.allow_threads || cfg.allow_inet_sockets)
        return -ENOENT;
    const struct precompiled *p = &precompiled[kind][cfg.allow_snapshots];
    struct sock_filter *insns = malloc(p->len * sizeof(*insns));
    if (!insns)
        return -ENOMEM;
    /* The deny action is the only SECCOMP_RET_KILL_PROCESS the program
     * returns (bad architectures get SECCOMP_RET_KILL_THREAD). */
    for (unsigned i = 0; i < p->len; i++) {
        insns[i] = p->insns[i];
        if (insns[i].code == (BPF_RET | BPF_K) && insns[i].k == SECCOMP_RET_KILL_PROCESS)
            insns[i].k = deny;
    }
    *out = (struct vmm_seccomp_prog){.insns = insns, .len = p->len};
    return 0;
#else
    (void)out;
    return -ENOENT;
#endif
}

int vmm_seccomp_install(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *user)
{
    struct vmm_seccomp_prog prog;
    int r = precompiled_prog(kind, user, &prog);
    if (r != -ENOENT) {
        if (r == 0) {
            r = vmm_seccomp_prog_load(&prog);
            vmm_seccomp_prog_free(&prog);
        }
        return r;
    }
    scmp_filter_ctx ctx;
    r = build_ctx(kind, user, &ctx);
    if (r < 0)
        return r;
    r = seccomp_load(ctx);
    if (r < 0)
        vmm_log_error("seccomp: the kernel refused the filter: %s", vmm_strerror(r));
    seccomp_release(ctx);
    return r < 0 ? r : 0;
}

int vmm_seccomp_prog_build(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *cfg,
                           struct vmm_seccomp_prog *out)
{
    *out = (struct vmm_seccomp_prog){0};
    int r = precompiled_prog(kind, cfg, out);
    return r == -ENOENT ? vmm_seccomp_prog_build_libseccomp(kind, cfg, out) : r;
}

int vmm_seccomp_prog_build_libseccomp(enum vmm_seccomp_thread kind,
                                      const struct vmm_seccomp_config *cfg,
                                      struct vmm_seccomp_prog *out)
{
    *out = (struct vmm_seccomp_prog){0};
    scmp_filter_ctx ctx;
    int r = build_ctx(kind, cfg, &ctx);
    if (r < 0)
        return r;
    /* libseccomp 2.5 writes the program only to an fd. */
    int fd = memfd_create("vmm-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = seccomp_export_bpf(ctx, fd);
    if (r < 0) {
        vmm_log_error("seccomp: writing the filter out: %s", vmm_strerror(r));
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0) {
        r = -errno;
        goto out;
    }
    if (size == 0 || size % (off_t)sizeof(struct sock_filter) ||
        size > (off_t)(BPF_MAXINSNS * sizeof(struct sock_filter))) {
        vmm_log_error("seccomp: a filter of %lld bytes", (long long)size);
        r = -E2BIG;
        goto out;
    }
    void *insns = malloc((size_t)size);
    if (!insns) {
        r = -ENOMEM;
        goto out;
    }
    if (pread(fd, insns, (size_t)size, 0) != size) {
        r = errno ? -errno : -EIO;
        free(insns);
        goto out;
    }
    *out = (struct vmm_seccomp_prog){
        .insns = insns, .len = (unsigned short)(size / (off_t)sizeof(struct sock_filter))};
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return r;
}

int vmm_seccomp_prog_load(const struct vmm_seccomp_prog *p)
{
    /* What seccomp_load does with libseccomp's default attributes. */
    struct sock_fprog prog = {.len = p->len, .filter = p->insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
        int r = -errno;
        vmm_log_error("seccomp: the kernel refused the filter: %s", vmm_strerror(r));
        return r;
    }
    return 0;
}

void vmm_seccomp_prog_free(struct vmm_seccomp_prog *p)
{
    free(p->insns);
    *p = (struct vmm_seccomp_prog){0};
}

static void add_distinct_call(int *calls, unsigned *nc, unsigned max, int nr)
{
    bool seen = nr < 0;
    for (unsigned k = 0; k < *nc && !seen; k++)
        seen = calls[k] == nr;
    if (!seen && *nc < max)
        calls[(*nc)++] = nr;
}

int vmm_seccomp_allowlist(enum vmm_seccomp_thread kind, int *calls, unsigned *nr_calls,
                          unsigned max_calls, unsigned long *reqs, unsigned *nr_reqs,
                          unsigned max_reqs)
{
    if (!valid_kind(kind))
        return -EINVAL;
    unsigned nc = 0, ni = 0;
    const struct list *l = kind_lists[kind];
    for (size_t i = 0; i < VMM_ARRAY_SIZE(kind_lists[0]); i++) {
        for (size_t j = 0; j < l[i].nr_syscalls; j++)
            add_distinct_call(calls, &nc, max_calls, l[i].syscalls[j]);
        for (size_t j = 0; j < l[i].nr_ioctls; j++) {
            bool seen = false;
            for (unsigned k = 0; k < ni && !seen; k++)
                seen = reqs[k] == l[i].ioctls[j];
            if (!seen && ni < max_reqs)
                reqs[ni++] = l[i].ioctls[j];
        }
    }
    /* What allow_restricted, allow_nnp and allow_unix_socket add (in a
     * build without sanitizers: clone3 answered ENOSYS is not allowed). */
    add_distinct_call(calls, &nc, max_calls, SCMP_SYS(mmap));
    add_distinct_call(calls, &nc, max_calls, SCMP_SYS(mprotect));
    add_distinct_call(calls, &nc, max_calls, SCMP_SYS(madvise));
    if (kind != VMM_SECCOMP_UFFD) {
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(mremap));
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(fallocate));
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(newfstatat));
    }
    if (kind == VMM_SECCOMP_BUILD) {
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(fcntl));
    }
    if (sets_nnp(kind)) {
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(clone));
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(prctl));
    }
    if (allows_unix_socket(kind))
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(socket));
    if (ni > 0)
        add_distinct_call(calls, &nc, max_calls, SCMP_SYS(ioctl));
    *nr_calls = nc;
    *nr_reqs = ni;
    return nc < max_calls && ni < max_reqs ? 0 : -E2BIG;
}

/* Within one list, an entry twice is a mistake (across lists it is not:
 * they nest and overlap). */
static unsigned list_repeats(const int *calls, size_t nc, const unsigned long *reqs, size_t ni)
{
    unsigned n = 0;
    for (size_t i = 0; i < nc; i++)
        for (size_t j = i + 1; j < nc; j++)
            n += calls[i] == calls[j] && calls[i] >= 0;
    for (size_t i = 0; i < ni; i++)
        for (size_t j = i + 1; j < ni; j++)
            n += reqs[i] == reqs[j];
    return n;
}

unsigned vmm_seccomp_list_repeats(void)
{
#define REPEATS(c, i) list_repeats(c, VMM_ARRAY_SIZE(c), i, VMM_ARRAY_SIZE(i))
    return REPEATS(common_syscalls, vcpu_ioctls) + REPEATS(vcpu_syscalls, vcpu_vfio_ioctls) +
           REPEATS(io_syscalls, io_ioctls) + REPEATS(main_syscalls, main_ioctls) +
           REPEATS(build_syscalls, build_ioctls) + REPEATS(snapshot_syscalls, snapshot_ioctls) +
           REPEATS(uffd_syscalls, uffd_ioctls) +
           list_repeats(sanitizer_syscalls, VMM_ARRAY_SIZE(sanitizer_syscalls), NULL, 0);
#undef REPEATS
}

int vmm_seccomp_allowlist_size(enum vmm_seccomp_thread kind, unsigned *nr_syscalls,
                               unsigned *nr_ioctls)
{
    int calls[256];
    unsigned long reqs[128];
    unsigned nc, ni;
    int r = vmm_seccomp_allowlist(kind, calls, &nc, VMM_ARRAY_SIZE(calls), reqs, &ni,
                                  VMM_ARRAY_SIZE(reqs));
    if (r < 0)
        return r;
    if (nr_syscalls)
        *nr_syscalls = nc;
    if (nr_ioctls)
        *nr_ioctls = ni;
    return 0;
}
