/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots: a whole VM's state saved to a directory and restored into a
 * new VM, in this process or another, once or many times (clones).
 *
 * A snapshot directory holds two files:
 *
 * - "state": every vCPU's registers (general, segment and control, FPU and
 *   XSAVE, XCRs, debug registers, the MSRs KVM lists for saving, local
 *   APIC, MP state, pending events, CPUID, TSC frequency), the VM's clock,
 *   the interrupt controller (the library's IOAPIC, or KVM's irqchip and
 *   PIT), each library device (UART, RTC, virtio-mmio and virtio-pci
 *   transports with their queues, the PCI root complex with every
 *   function's configuration space, BARs, MSI and MSI-X state, virtio-blk,
 *   console, entropy, balloon, net and vsock), the guest memory layout
 *   and a blob of the application's (how to rebuild the VM). It is
 *   versioned and checksummed (magic, format version, CRC-32);
 * - "memory": guest memory, a header page then each region at a
 *   page-aligned offset, so it can be mapped copy-on-write.
 *
 * Restoring does not create anything: the application builds a VM like
 * the saved one (the same memory regions, vCPUs and devices at the same
 * addresses, typically from the blob), then vmm_vm_restore loads the state
 * into it before it runs. Backends are the application's: a disk may be
 * another file of the same size, a console another fd, a network device
 * another tap (the MAC, MTU, link status, offloads and queue pairs are the
 * saved device's), a vsock device another socket path or CID. vsock
 * connections are not saved: the restored device sends the guest a
 * TRANSPORT_RESET event, and the guest connects again.
 *
 * A VM with a PCI function whose state the library cannot hold (a VFIO
 * passthrough device, an application's own PCI device model) cannot be
 * snapshotted or migrated: vmm_vm_snapshot and vmm_vm_migrate_send return
 * -ENOTSUP with a one-line reason logged.
 */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest application blob a snapshot carries. */
#define VMM_SNAPSHOT_APP_MAX (1u << 20)

/*
 * vmm_snapshot_options.flags: VMM_SNAPSHOT_DIFF writes only the pages
 * dirtied since the VM's last snapshot, into that snapshot's directory: its
 * memory file is updated in place (the state file goes first, so an
 * interrupted diff leaves no snapshot that looks whole), and the directory
 * then holds a snapshot equal to a full one taken now. It needs dirty
 * logging on for every memory region (vmm_vm_dirty_log_start) since that
 * last snapshot was taken into dir, and no vmm_vm_dirty_log_fetch since
 * (the pages it returns would be missing); without those it is refused.
 * Never diff into a directory VMs restored with VMM_RESTORE_LAZY map.
 * With vmm_snapshot_options.base the diff goes into a directory of its own
 * instead, leaving the base as it was.
 */
#define VMM_SNAPSHOT_DIFF (1u << 0)

/* Snapshot options. Zero means default; growth convention (abi.h). */
struct vmm_snapshot_options {
    uint32_t size;        /* sizeof(struct vmm_snapshot_options) */
    const void *app_data; /* stored as is, read back by vmm_snapshot_app_data */
    uint32_t app_len;     /* bytes of app_data, at most VMM_SNAPSHOT_APP_MAX */
    uint32_t flags;       /* VMM_SNAPSHOT_* */
    /* With VMM_SNAPSHOT_DIFF: the directory of the VM's last snapshot, the
     * diff's base, when dir is another one. dir then gets a snapshot of its
     * own holding only the dirtied pages (its memory file sparse) and the
     * base's full path; restoring it restores the base (a full snapshot, or
     * a diff of this kind in turn, at most 16 deep) then lays the pages over,
     * and gives the same VM as a full snapshot taken now. The base must not
     * change or move while such diffs of it are kept. NULL: the diff goes
     * into dir itself, which must hold the last snapshot. */
    const char *base;
};

/*
 * Save vm to directory dir (created if missing; its "state" and "memory"
 * files are replaced, state last, so a complete state file means a
 * complete snapshot; both files and the directory are synced to disk
 * (fsync) before it returns 0). Pauses the VM first (vmm_vm_pause) and leaves it
 * paused: vmm_vm_resume lets it go on, vmm_vm_stop ends it. After a
 * failure the VM is left running or paused, as it was. Every device
 * finishes its requests in flight before its state is read. Call from any
 * thread but a vCPU's, while vmm_vm_run runs or before or after it.
 * opts may be NULL.
 *
 * With every region dirty-logged, a snapshot also starts the count of
 * dirtied pages for the next VMM_SNAPSHOT_DIFF one.
 *
 * Returns 0, -EINVAL (vm or dir NULL, an opts->size the library does not
 * know, app_len too large, unknown flags, a diff without its base; logged),
 * -EDEADLK (from a vCPU thread), -ENOTSUP (a
 * device that cannot be saved: an application's own virtio device, or a
 * KVM without a call it needs; logged), -EBUSY (a device could not come to
 * rest, e.g. a console whose output is blocked; logged) or another -errno
 * (file system, KVM).
 */
VMM_API VMM_MUST_USE int vmm_vm_snapshot(struct vmm_vm *vm, const char *dir,
                                         const struct vmm_snapshot_options *opts);

/* How vmm_vm_restore brings guest memory back. */
enum vmm_restore_memory {
    /* Read the memory file into guest memory now. */
    VMM_RESTORE_EAGER = 0,
    /* Map the memory file copy-on-write (MAP_PRIVATE) over each region the
     * library mapped anonymously (the default backing): pages are read as
     * the guest touches them, and many VMs may share one file. The file
     * must not change while such a VM lives. Other regions are read. */
    VMM_RESTORE_LAZY,
    /* Bring pages in as they are touched, through userfaultfd: a thread of
     * the VM's answers each missing-page fault (the guest's, through KVM,
     * or the VMM's) from the memory file and copies the rest in ahead of
     * the guest, then ends. Memory is the VM's own (no file stays mapped).
     * For the regions the library mapped anonymously; others are read.
     * Needs userfaultfd with kernel faults (CAP_SYS_PTRACE, or
     * vm.unprivileged_userfaultfd = 1). */
    VMM_RESTORE_UFFD,
};

/* Restore options. Zero means default; growth convention (abi.h). */
struct vmm_restore_options {
    uint32_t size;   /* sizeof(struct vmm_restore_options) */
    uint32_t memory; /* enum vmm_restore_memory */
};

/*
 * Load the snapshot in dir into vm, which the application has built like
 * the saved VM and which has not run: memory, the interrupt controller,
 * the devices, the clock and every vCPU, in the order KVM needs. After it
 * returns 0, vmm_vm_run goes on where the saved VM stopped. opts may be
 * NULL.
 *
 * Returns 0 or, with a one-line reason logged: -EBADMSG (not a state file,
 * a corrupt or truncated one, a memory file that does not belong to it),
 * -EPROTO (another format version), -ENOTSUP (this host cannot give the
 * guest what it saw: a CPUID feature, the XSAVE size, the TSC frequency),
 * -EINVAL (vm or dir NULL, a size the library does not know, a VM built
 * unlike the saved one: vCPUs, memory regions, devices), -EBUSY (the VM
 * has run or is running) or another -errno. After a failure the VM is in
 * no defined state: destroy it.
 */
VMM_API VMM_MUST_USE int vmm_vm_restore(struct vmm_vm *vm, const char *dir,
                                        const struct vmm_restore_options *opts);

/*
 * Check the state file in dir and copy its application blob: up to max
 * bytes into buf (may be NULL with max 0), the blob's length into *len.
 * Returns 0, -ENOSPC (the blob is larger than max: *len says how large),
 * -ENOENT (no blob), or the file errors of vmm_vm_restore (-EBADMSG,
 * -EPROTO, -errno), with the reason logged.
 */
VMM_API VMM_MUST_USE int vmm_snapshot_app_data(const char *dir, void *buf, size_t max, size_t *len);

/*
 * ---- Live migration ----
 *
 * A running VM moves over a connected stream (a Unix or TCP socket): its
 * memory in pre-copy rounds from the dirty log while it runs, until what
 * is left to send fits the downtime (or the rounds run out); then it is
 * paused, and its last pages and its state go across. The target is a VM
 * the receiving application built like the source (from the blob
 * vmm_migrate_recv_hello hands it), which has not run. The protocol is
 * versioned, its messages length-prefixed.
 *
 * Local migration by memfd: when fd is a Unix socket and every memory
 * region of the source is a memfd of the library's (VMM_MEMORY_MEMFD,
 * without huge pages, writable), the source offers to hand the memfds over
 * (SCM_RIGHTS) instead of copying the pages. A target whose every region
 * was mapped by the library (VMM_MEMORY_ANON or VMM_MEMORY_MEMFD, without
 * huge pages, writable) over a Unix socket takes them: each region is then
 * the source's memfd, mapped shared at the same host address (its fd in
 * vmm_region_info is that memfd). There are no pre-copy rounds: the source
 * stops, hands the memfds and its state over and, once the target has
 * answered, puts blank memory of its own under its regions, so that
 * nothing it does after (a device, the balloon) reaches the guest the
 * target runs; if the target fails, the target drops the memfds and the
 * source goes on with its memory as it was. Otherwise, or with
 * VMM_MIGRATE_COPY, the memory is copied, in a stream that a library
 * speaking only that (protocol version 1) takes too; a target of such a
 * library refuses an offer of memfds (the source then goes on here: send
 * again with VMM_MIGRATE_COPY). Which way was taken is logged, and
 * reported in vmm_migrate_result.flags.
 */

/* vmm_migrate_options.flags: copy the memory even where memfds could be
 * passed. */
#define VMM_MIGRATE_COPY (1u << 0)
/* vmm_migrate_result.flags: the memory went over as memfds. */
#define VMM_MIGRATE_MEMFD (1u << 0)

/* What a migration took, filled out by vmm_vm_migrate_send when it
 * returns 0 (vmm_migrate_options.result). Growth convention (abi.h): the
 * caller sets .size. */
struct vmm_migrate_result {
    uint32_t size;        /* sizeof(struct vmm_migrate_result) */
    uint32_t rounds;      /* rounds after the first pass over memory, before the pause */
    uint64_t pages;       /* 4 KiB pages sent, every round together */
    uint64_t total_us;    /* from the greeting to the target's answer */
    uint64_t downtime_us; /* the VM stopped: from its pause to the target's answer */
    uint32_t flags;       /* VMM_MIGRATE_MEMFD, or 0: the pages were copied */
};

/* Migration options. Zero means default; growth convention (abi.h). */
struct vmm_migrate_options {
    uint32_t size;        /* sizeof(struct vmm_migrate_options) */
    const void *app_data; /* for the target's vmm_migrate_recv_hello */
    uint32_t app_len;     /* at most VMM_SNAPSHOT_APP_MAX */
    uint32_t downtime_ms; /* the pause the last round may take; default 300 */
    uint32_t max_rounds;  /* pre-copy rounds at most; default 30 */
    /* NULL, or filled out on success (its .size set by the caller). */
    struct vmm_migrate_result *result;
    uint32_t flags; /* VMM_MIGRATE_COPY */
};

/*
 * Send vm over fd (connected, blocking) while it runs, from any thread but
 * a vCPU's; when copying, dirty logging is turned on for the regions that
 * lack it (and off again after). Returns 0 once the target said it has the
 * VM: this one is then paused (stop it; after a hand-over of memfds its
 * memory is blank). On any failure, the target's refusal included
 * (its reason logged), the VM goes on here as it was and a -errno comes
 * back: -EINVAL (bad arguments, unknown flags, a result->size the library
 * does not know), -EPROTO (the target's answer makes no sense), a socket error, or
 * the target's error. opts->result then tells how long the VM was stopped.
 */
VMM_API VMM_MUST_USE int vmm_vm_migrate_send(struct vmm_vm *vm, int fd,
                                             const struct vmm_migrate_options *opts);

/*
 * Target, first step: read the source's greeting from fd and copy its
 * application blob (up to max bytes into buf, its length into *len), to
 * build the VM by. Returns 0, -EPROTO (not a migration, another protocol
 * version: logged), -ENOSPC (the blob is larger than max: the stream is
 * then unusable), or a socket error.
 */
VMM_API VMM_MUST_USE int vmm_migrate_recv_hello(int fd, void *buf, size_t max, size_t *len);

/*
 * Target, second step: receive the VM into vm (built like the source, not
 * run), check and restore its state as vmm_vm_restore does, and answer the
 * source. After 0, vmm_vm_run goes on where the source stopped. Returns 0 or
 * a -errno (also sent to the source with a one-line reason, and logged):
 * -EPROTO (a malformed message), -EINVAL (a VM unlike the source's),
 * -ENOTSUP (this host cannot give the guest what it had), -EBUSY (the VM
 * has run), a socket error. After a failure no memfd of the source's stays
 * mapped. Takes the source's memfds where it offers them and this VM can
 * (see above).
 */
VMM_API VMM_MUST_USE int vmm_vm_migrate_recv(struct vmm_vm *vm, int fd);

#ifdef __cplusplus
}
#endif

#endif /* VMM_SNAPSHOT_H */
