/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seccomp filters for the threads of a VMM (built with libseccomp).
 *
 * A VMM's threads do three kinds of work once the VM is built, and each
 * gets an allowlist of what that work needs, ioctls allowed by request
 * number:
 *   VMM_SECCOMP_VCPU  a thread running a vCPU (KVM_RUN, the exits' device
 *                     emulation, interrupt injection, kicks);
 *   VMM_SECCOMP_IO    a thread running an event loop (epoll, eventfds,
 *                     io_uring completions, interrupt injection, the Unix
 *                     socket calls of virtio-vsock);
 *   VMM_SECCOMP_MAIN  the thread that runs vmm_vm_run and then destroys the
 *                     VM: everything the two above need (threads it starts
 *                     inherit its filter, and a syscall must pass every
 *                     filter of a thread), plus starting and joining threads,
 *                     the terminal, dirty logging;
 *   VMM_SECCOMP_BUILD MAIN plus building further VMs (opening files and
 *                     /dev/kvm, creating VMs, vCPUs, memory and devices): for
 *                     a launcher that restarts its VM on a guest reboot.
 *   VMM_SECCOMP_UFFD  the thread that serves a VMM_RESTORE_UFFD restore's
 *                     page faults (<vmm/snapshot.h>): reading the memory
 *                     file and userfaultfd, UFFDIO_COPY/ZEROPAGE/WAKE/
 *                     UNREGISTER, poll; a list of its own, not nested in the
 *                     others. The library installs it on that thread itself
 *                     (vmm_vm_set_seccomp).
 * No list allows execve, ptrace or opening files, except BUILD's open
 * calls; socket only for AF_UNIX streams (IO, MAIN and BUILD: virtio-vsock;
 * BUILD also a datagram one: virtio-net); mmap and mprotect never with
 * PROT_EXEC; madvise, mremap, fallocate and fcntl only with the arguments
 * the library uses; newfstatat only with AT_EMPTY_PATH
 * (glibc's fstat) except on BUILD (a filter cannot read the path string, so
 * this narrows path lookups rather than forbidding them); clone only with
 * the flags of a thread (MAIN and BUILD), clone3 fails with ENOSYS.
 * docs/seccomp.md has the lists' sizes and why each call is there.
 * Filters only ever narrow: one installed on a thread stays for the
 * thread's life and is inherited by the threads it starts.
 *
 * A build with AddressSanitizer widens every list by what its run-time needs
 * (alternate signal stacks, and the leak check's thread at exit).
 */
#ifndef VMM_SECCOMP_H
#define VMM_SECCOMP_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vm;

/* The kinds of thread, each with its allowlist. */
enum vmm_seccomp_thread {
    VMM_SECCOMP_VCPU = 0,
    VMM_SECCOMP_IO,
    VMM_SECCOMP_MAIN,
    VMM_SECCOMP_BUILD,
    VMM_SECCOMP_UFFD,
};

/* What a system call outside the list does. */
enum vmm_seccomp_action {
    VMM_SECCOMP_KILL = 0, /* the kernel kills the whole process (SIGSYS) */
    VMM_SECCOMP_TRAP,     /* SIGSYS to the thread (si_syscall names the call): an
                           * application's handler can report it and exit */
    VMM_SECCOMP_LOG,      /* the call is allowed and the kernel logs it (audit):
                           * to find what a new device needs */
};

/* Growth convention (abi.h). */
struct vmm_seccomp_config {
    uint32_t size; /* sizeof(struct vmm_seccomp_config) */
    enum vmm_seccomp_action action;
    /* More system calls (numbers, e.g. SYS_getcwd) and ioctl request numbers
     * to allow, for the application's own devices; may be NULL with 0. */
    const int *extra_syscalls;
    unsigned nr_extra_syscalls;
    const unsigned long *extra_ioctls;
    unsigned nr_extra_ioctls;
    /* Also allow what vmm_vm_snapshot does (<vmm/snapshot.h>), on whichever
     * thread calls it: reading every piece of VM and vCPU state from KVM and
     * writing the snapshot's files (create, write, rename, remove); and what
     * vmm_vm_migrate_send does after it handed memfds over (new memfds
     * under the regions). */
    bool allow_snapshots;
    /* Also allow starting threads (pthread_create) on VMM_SECCOMP_VCPU and
     * VMM_SECCOMP_IO, as MAIN and BUILD do: clone with a thread's flags
     * only, clone3 failing with ENOSYS (glibc then uses clone), and what a
     * new thread's start takes. For an application whose handlers on the
     * event loop start threads (vmm-run's control socket starts each
     * migration's). */
    bool allow_threads;
    /* Also allow TCP and UDP sockets (socket() of AF_INET or AF_INET6,
     * SOCK_STREAM or SOCK_DGRAM) and the NETLINK_ROUTE socket with which
     * getaddrinfo orders a name's addresses; AF_UNIX stream sockets are on
     * the IO, MAIN and BUILD lists already. The other socket calls the
     * application needs are its extra_syscalls. */
    bool allow_inet_sockets;
};

/*
 * Install the filter for kind on the calling thread (and so on the threads
 * it starts afterwards). cfg may be NULL: VMM_SECCOMP_KILL, nothing extra.
 * Returns 0, -EINVAL (bad kind, action or config), -ENOMEM, or the -errno
 * with which the kernel refused the filter. Sets no_new_privs on the thread.
 */
VMM_API VMM_MUST_USE int vmm_seccomp_install(enum vmm_seccomp_thread kind,
                                             const struct vmm_seccomp_config *cfg);

/*
 * The size of kind's allowlist: system calls (ioctl counted once) and ioctl
 * request numbers, without a config's extras. Either pointer may be NULL.
 * Returns 0 or -EINVAL.
 */
VMM_API VMM_MUST_USE int vmm_seccomp_allowlist_size(enum vmm_seccomp_thread kind,
                                                    unsigned *nr_syscalls, unsigned *nr_ioctls);

/*
 * Have vmm_vm_run install filters on the threads it starts: VMM_SECCOMP_VCPU
 * on each vCPU thread and VMM_SECCOMP_IO on the event-loop thread, each
 * before it runs anything of the guest's. The two filters are built here
 * (the threads only load them), so cfg and its extra lists need not outlive
 * the call, and a calling thread that has a filter already must allow
 * memfd_create and pread64 (VMM_SECCOMP_BUILD does). NULL turns it off
 * again. A thread whose filter the kernel refuses ends the run with
 * VMM_EXIT_ERROR. The calling thread is left alone: install
 * VMM_SECCOMP_MAIN on it yourself.
 * The fault thread of a VMM_RESTORE_UFFD restore gets VMM_SECCOMP_UFFD
 * (with cfg's action; it runs no application code, so no extras) before
 * this returns, or when it starts if cfg was set before the restore; a
 * filter cannot be taken off, so NULL leaves it on. Returns 0, -EINVAL,
 * -ENOMEM or another -errno from building the filters; -EBUSY during a run;
 * the kernel's -errno when it refuses the fault thread's filter.
 */
VMM_API VMM_MUST_USE int vmm_vm_set_seccomp(struct vmm_vm *vm,
                                            const struct vmm_seccomp_config *cfg);

#ifdef __cplusplus
}
#endif

#endif /* VMM_SECCOMP_H */
