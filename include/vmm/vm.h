/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A virtual machine: the /dev/kvm VM, its guest memory, interrupt controller,
 * I/O buses, devices and vCPUs, and the run state shared by its vCPUs.
 *
 * Ownership: the VM owns its memory map (after vmm_vm_set_memory), buses,
 * vCPUs and every device created on it, and tears them down in reverse order
 * of creation in vmm_vm_destroy.
 *
 * Threads: create, configure and destroy from one thread. vmm_vm_run starts
 * one thread per vCPU. vmm_vm_stop, vmm_vm_pause, vmm_vm_resume and
 * vmm_vm_set_irq may be called from any thread; stopping is the one
 * documented way to interrupt running vCPUs (it uses KVM's immediate_exit and
 * a signal sent to each vCPU thread, see vmm_vm_config.kick_signal).
 */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vm;
struct vmm_vcpu;
struct vmm_bus;
struct vmm_event_loop;

/* Interrupt controller models. */
enum vmm_irqchip {
    /* Default. Local APICs in KVM, the IOAPIC emulated by the library at
     * 0xfec00000: its redirection entries become MSI routes (irqfd stays the
     * fast path) and level-triggered EOIs return through KVM_EXIT_IOAPIC_EOI.
     * No PIC and no PIT. Costs nearly nothing at VM creation. */
    VMM_IRQCHIP_SPLIT = 0,
    /* The whole in-kernel irqchip (PIC, IOAPIC, LAPIC) plus the in-kernel PIT.
     * Adds tens of milliseconds to creation on some hosts. */
    VMM_IRQCHIP_KERNEL,
};

/* Number of interrupt lines (GSIs) the IOAPIC has. */
#define VMM_IOAPIC_PINS 24

/* VM configuration. Zero means default; growth convention (abi.h). */
struct vmm_vm_config {
    uint32_t size; /* sizeof(struct vmm_vm_config) */
    enum vmm_irqchip irqchip;
    const char *kvm_path; /* default "/dev/kvm" */
    int kick_signal;      /* signal used to kick vCPU threads; default SIGRTMIN + 1 */
};

/* Why a run ended. */
enum vmm_exit_reason {
    VMM_EXIT_NONE = 0,
    VMM_EXIT_GUEST_EXIT, /* the guest wrote its status to the exit device */
    VMM_EXIT_POWEROFF,   /* guest power-off (system event, ACPI) */
    VMM_EXIT_RESET,      /* guest reset (i8042 reset line, system event) */
    VMM_EXIT_SHUTDOWN,   /* triple fault (KVM_EXIT_SHUTDOWN) */
    VMM_EXIT_HLT,        /* a vCPU halted with interrupts off and no in-kernel wake-up */
    VMM_EXIT_STOPPED,    /* vmm_vm_stop was called */
    VMM_EXIT_ERROR,      /* something the library cannot handle; see detail */
};

/* The outcome of a run. */
struct vmm_exit {
    uint32_t size; /* in: sizeof(struct vmm_exit) (vmm/abi.h): filled that far */
    enum vmm_exit_reason reason;
    int status;          /* VMM_EXIT_GUEST_EXIT: the guest's status byte */
    int error;           /* VMM_EXIT_ERROR: negative errno */
    unsigned vcpu;       /* index of the vCPU that ended the run */
    uint32_t kvm_reason; /* the KVM_EXIT_* code that ended it, where one did */
    uint64_t rip;        /* the guest rip at that exit, where known */
    char detail[128];    /* a one-line human-readable description */
};

/*
 * Open /dev/kvm, check the API version (12) and the capabilities the library
 * needs, and create a VM with the configured interrupt controller. cfg may be
 * NULL for defaults. Returns 0, -EINVAL (a bad irqchip, or a cfg->size the
 * library does not know), -ENOENT/-EACCES (no usable /dev/kvm),
 * -ENOTSUP (wrong API version or a missing capability; the log names which),
 * or another -errno from KVM.
 */
VMM_API VMM_MUST_USE int vmm_vm_create(const struct vmm_vm_config *cfg, struct vmm_vm **out);

/* Stop any running vCPUs, destroy devices, vCPUs, buses and memory in reverse
 * order, close the VM. Accepts NULL. Not while vmm_vm_run runs on another
 * thread. */
VMM_API void vmm_vm_destroy(struct vmm_vm *vm);

/*
 * Give the VM its guest memory map and register each region as a KVM memory
 * slot. On success the VM owns mem (freed by vmm_vm_destroy); on failure the
 * caller keeps it. Call once, before creating vCPUs. Returns 0, -EBUSY
 * (already set), or a -errno from KVM_SET_USER_MEMORY_REGION.
 */
VMM_API VMM_MUST_USE int vmm_vm_set_memory(struct vmm_vm *vm, struct vmm_memory *mem);

/* Add one more region to the VM's map and register it with KVM. Returns the
 * region index or a -errno (see vmm_memory_add_region). Not while vCPUs run. */
VMM_API VMM_MUST_USE int vmm_vm_add_memory(struct vmm_vm *vm, const struct vmm_region_config *cfg);

/* The VM's memory map (NULL before vmm_vm_set_memory/add_memory). Borrowed. */
VMM_API struct vmm_memory *vmm_vm_memory(struct vmm_vm *vm);

/* The VM's port I/O and MMIO buses. Borrowed; valid for the VM's life. */
VMM_API struct vmm_bus *vmm_vm_pio_bus(struct vmm_vm *vm);
VMM_API struct vmm_bus *vmm_vm_mmio_bus(struct vmm_vm *vm);

/* The event loop the VM's device back ends use; vmm_vm_run runs it on an I/O
 * thread while vCPUs run. Created on first call; NULL only when that fails
 * (out of memory or file descriptors). Borrowed. Not thread-safe on the
 * first call. */
VMM_API struct vmm_event_loop *vmm_vm_event_loop(struct vmm_vm *vm);

/* The configured interrupt controller model. */
VMM_API enum vmm_irqchip vmm_vm_irqchip(const struct vmm_vm *vm);

/* Number of vCPUs created so far, and vCPU index (NULL if none). */
VMM_API unsigned vmm_vm_vcpu_count(const struct vmm_vm *vm);
VMM_API struct vmm_vcpu *vmm_vm_vcpu(struct vmm_vm *vm, unsigned index);

/*
 * Drive interrupt line gsi (0 .. VMM_IOAPIC_PINS-1) to level. For an edge
 * interrupt raise then lower it. Thread-safe. Returns 0, -EINVAL (bad gsi) or
 * a -errno from KVM.
 */
VMM_API int vmm_vm_set_irq(struct vmm_vm *vm, unsigned gsi, bool level);

/*
 * Connect an eventfd to interrupt line gsi (an IOAPIC pin, or the GSI of a
 * PCI device's MSI route): each write to fd raises an edge on the line
 * without a trip through userspace. resample_fd >= 0 makes it a
 * level-triggered line that is lowered at EOI and signalled through
 * resample_fd: by KVM with the in-kernel irqchip; with the split irqchip
 * (x86) by the library, gsi an IOAPIC pin: the VM's event loop raises the
 * pin on fd and the guest's EOI of it writes resample_fd (-ENOTSUP for
 * other GSIs and where neither applies).
 * Returns 0 or a -errno. vmm_vm_irqfd_remove disconnects it.
 */
VMM_API VMM_MUST_USE int vmm_vm_irqfd(struct vmm_vm *vm, int fd, unsigned gsi, int resample_fd);
VMM_API int vmm_vm_irqfd_remove(struct vmm_vm *vm, int fd, unsigned gsi);

/* vmm_vm_ioeventfd flags. */
#define VMM_IOEVENTFD_PIO       (1u << 0) /* a port I/O address (default: MMIO) */
#define VMM_IOEVENTFD_DATAMATCH (1u << 1) /* only writes of exactly datamatch */

/*
 * Connect an eventfd to guest writes of len bytes (1, 2, 4 or 8; 0 = any
 * length, MMIO without DATAMATCH only) at addr: KVM signals fd and resumes
 * the guest without a trip through userspace. With VMM_IOEVENTFD_DATAMATCH
 * only writes of the value datamatch are caught; every other access still
 * reaches the VM's bus as usual. Reads are never caught. Thread-safe (KVM
 * serialises it), also from a vCPU thread inside a bus callback.
 * Returns 0, -EINVAL (bad len, flags or fd), -EEXIST (the same address,
 * length and datamatch is already bound), -ENOSPC (KVM's limit of bindings)
 * or another -errno from KVM_IOEVENTFD. vmm_vm_ioeventfd_remove takes the
 * same arguments and undoes it (-ENOENT when no such binding exists).
 */
VMM_API VMM_MUST_USE int vmm_vm_ioeventfd(struct vmm_vm *vm, int fd, uint64_t addr, uint32_t len,
                                          uint64_t datamatch, unsigned flags);
VMM_API int vmm_vm_ioeventfd_remove(struct vmm_vm *vm, int fd, uint64_t addr, uint32_t len,
                                    uint64_t datamatch, unsigned flags);

/*
 * Coalesce guest writes to [addr, addr + len) (ports with pio, else MMIO):
 * KVM queues them in a ring instead of exiting, and they reach the VM's bus,
 * in order, when a vCPU next exits for any reason, before that exit is
 * handled; reads still exit. For registers whose writes only matter to a
 * later access, like the PCI configuration address latch (port 0xCF8): it
 * saves an exit per write (KVM API, KVM_REGISTER_COALESCED_MMIO). A write
 * the ring has no room for exits as usual. Thread-safe.
 * Returns 0, -EINVAL (len 0, a wrapping range, a port range past 0xFFFF),
 * -ENOTSUP (KVM lacks KVM_CAP_COALESCED_MMIO, or KVM_CAP_COALESCED_PIO for
 * ports) or a -errno from KVM (-ENOBUFS past its limit of ranges).
 */
VMM_API VMM_MUST_USE int vmm_vm_coalesce_writes(struct vmm_vm *vm, uint64_t addr, uint32_t len,
                                                bool pio);

struct kvm_enable_cap;

/*
 * Enable a KVM capability on the VM (KVM_ENABLE_CAP on the VM fd), for exits
 * the application handles itself through vmm_vcpu_run_once (vcpu.h): e.g.
 * KVM_CAP_X86_USER_SPACE_MSR (args[0] = KVM_MSR_EXIT_REASON_*) to see the
 * guest's accesses to MSRs KVM does not know, or KVM_CAP_EXIT_HYPERCALL
 * (args[0] = the hypercall numbers as bits) to see those hypercalls. The
 * library does not know what a capability changes: one that alters what it
 * set up itself (the interrupt controller, the vCPUs' CPUID) can break it,
 * and exits a capability adds end a vmm_vcpu_run/vmm_vm_run as an unhandled
 * exit. Thread-safe (KVM serialises it). Returns 0, -EINVAL (cap NULL, or
 * KVM does not support it) or another -errno from KVM.
 */
VMM_API VMM_MUST_USE int vmm_vm_enable_cap(struct vmm_vm *vm, const struct kvm_enable_cap *cap);

/* The stack size of the threads vmm_vm_run starts. */
#define VMM_VM_THREAD_STACK (1u << 20)

/*
 * Run every vCPU on a thread of its own (and the event loop on an I/O thread)
 * until one of them ends the run: the guest exits, powers off, resets, faults
 * fatally, or vmm_vm_stop is called. All vCPUs are then stopped and joined,
 * and the first reason is stored in *exit. vCPUs must have been created and
 * given their boot state. exit may be NULL; otherwise the caller sets
 * exit->size (VMM_INIT). Returns 0 (see exit->reason), -EINVAL (an
 * exit->size the library does not know: checked before anything runs), or a
 * -errno if threads could not be started. The VM may not be run again after a reset
 * without the application restoring vCPU state. The threads it starts have
 * 1 MiB stacks (VMM_VM_THREAD_STACK), on which the devices' callbacks run: a
 * stack under 2 MiB never takes a transparent huge page.
 */
VMM_API VMM_MUST_USE int vmm_vm_run(struct vmm_vm *vm, struct vmm_exit *exit);

/*
 * End the run from any thread: every vCPU leaves KVM_RUN and vmm_vm_run /
 * vmm_vcpu_run return with VMM_EXIT_STOPPED (unless another reason came
 * first). Also how a device ends the run: vmm_vm_request_exit.
 */
VMM_API void vmm_vm_stop(struct vmm_vm *vm);

/* End the run with a given reason and status (used by the exit device and by
 * embedders' own devices). The first request wins. Thread-safe. */
VMM_API void vmm_vm_request_exit(struct vmm_vm *vm, enum vmm_exit_reason reason, int status,
                                 const char *detail);

/*
 * Pause: every vCPU leaves KVM_RUN and waits; returns once all running vCPUs
 * are parked (vCPUs not in a run loop count as parked). Resume lets them go
 * on. Both thread-safe, not from a vCPU thread (-EDEADLK). Return 0 or -errno.
 */
VMM_API int vmm_vm_pause(struct vmm_vm *vm);
VMM_API int vmm_vm_resume(struct vmm_vm *vm);

/*
 * Dirty page logging for region index (see memory.h for the bitmap layout):
 * start turns on KVM_MEM_LOG_DIRTY_PAGES for the slot and the VMM's own
 * tracking; fetch ORs the pages dirtied since the last fetch (by the guest
 * and by the VMM) into bitmap and clears them; stop turns both off.
 * Return 0, -ENOENT, -EINVAL (not started), -ENOSPC (bitmap too small) or a
 * -errno from KVM.
 */
VMM_API VMM_MUST_USE int vmm_vm_dirty_log_start(struct vmm_vm *vm, unsigned region);
VMM_API VMM_MUST_USE int vmm_vm_dirty_log_fetch(struct vmm_vm *vm, unsigned region,
                                                uint64_t *bitmap, size_t nwords);
VMM_API int vmm_vm_dirty_log_stop(struct vmm_vm *vm, unsigned region);

/*
 * Register fn(opaque) to run when the VM is destroyed, after the vCPUs have
 * stopped and before the buses and memory go, in reverse order of
 * registration. Devices use this to tie their life to the VM. Returns 0 or
 * -ENOMEM (then fn is not called).
 */
VMM_API VMM_MUST_USE int vmm_vm_add_cleanup(struct vmm_vm *vm, void (*fn)(void *opaque),
                                            void *opaque);

/* Human-readable name of an exit reason ("guest-exit", "poweroff", ...). */
VMM_API const char *vmm_exit_reason_name(enum vmm_exit_reason reason);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VM_H */
