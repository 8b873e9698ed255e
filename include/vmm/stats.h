/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exit profile of a VM: where a guest's time goes between KVM and the VMM.
 *
 * With the profile on, every vCPU counts its exits to user space by KVM
 * exit reason and, for port I/O, MMIO, MSR and hypercall exits, by site
 * (port, guest-physical address, MSR index or hypercall number, reads and
 * writes apart), with the time from each exit to the vCPU's next entry into
 * the guest (the VMM's handling: the bus, the device, the caller's part of a
 * step) and the time spent inside KVM_RUN (guest and in-kernel exits). The
 * counters are the vCPU's own, written only by its thread with no lock; they
 * are merged when read. Off (the default), a run costs one test per exit;
 * on, two clock_gettime calls (vDSO) per exit.
 *
 * Memory is bounded whatever the guest does: each vCPU keeps at most
 * VMM_STATS_VCPU_SITES sites; exits at further sites are counted in their
 * reason and in other_count/other_ns.
 */
#ifndef VMM_STATS_H
#define VMM_STATS_H

#include <stdint.h>
#include <vmm/error.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sites a vCPU tracks, exit reasons counted apart, sites a read returns. */
#define VMM_STATS_VCPU_SITES 256
#define VMM_STATS_REASONS    64
#define VMM_STATS_SITES      64

/* Exits of one KVM exit reason: how many, and nanoseconds from those exits
 * to the next guest entry. */
struct vmm_stats_count {
    uint64_t count;
    uint64_t ns;
};

/* Exits at one site. */
struct vmm_stats_site {
    uint32_t kvm_reason; /* KVM_EXIT_IO, _MMIO, _X86_RDMSR, _X86_WRMSR or _HYPERCALL */
    uint32_t write;      /* 1: a port or MMIO write */
    uint64_t addr;       /* port, guest-physical address, MSR index or hypercall number */
    uint64_t count;
    uint64_t ns;
};

/* A VM's profile, every vCPU's merged. Times are CLOCK_MONOTONIC
 * nanoseconds; durations are summed over the vCPUs. */
struct vmm_stats {
    uint32_t size;
    uint32_t nr_sites;     /* sites[] filled: the most time first (then the most exits) */
    uint64_t created_ns;   /* when the VM was created */
    uint64_t first_run_ns; /* when a vCPU first entered the guest with the profile on; 0: none */
    uint64_t exits;        /* exits counted (a kick's interrupted KVM_RUN is none) */
    uint64_t guest_ns;     /* inside KVM_RUN */
    uint64_t exit_ns;      /* from exits to the next entry */
    uint64_t other_count;  /* exits at sites past sites[] (or past a vCPU's table) */
    uint64_t other_ns;
    /* By KVM exit reason (KVM_EXIT_*); reasons from VMM_STATS_REASONS - 1 up
     * are counted in the last. */
    struct vmm_stats_count reasons[VMM_STATS_REASONS];
    struct vmm_stats_site sites[VMM_STATS_SITES];
};

/*
 * Turn the exit profile of vm on (from the next guest entry of each vCPU,
 * existing and created later) with every counter zeroed; turning it on again
 * starts it afresh. Not while a vCPU runs. Returns 0, -EBUSY (a vCPU is
 * running) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_vm_stats_enable(struct vmm_vm *vm);

/*
 * Fill *out (its first out->size bytes) with vm's profile, merged over its
 * vCPUs. Read it while no vCPU runs (after vmm_vm_run or a vCPU's run
 * returned). Returns 0, -EINVAL (out NULL or a size the library does not
 * know), -ENODATA (the profile was never turned on), -EBUSY (a vCPU is
 * running) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_vm_stats_read(struct vmm_vm *vm, struct vmm_stats *out);

/* KVM's name of an exit reason ("IO", "MMIO", "HLT", ...); "?" when this
 * library does not know it. */
VMM_API const char *vmm_kvm_exit_reason_name(uint32_t reason);

#ifdef __cplusplus
}
#endif

#endif /* VMM_STATS_H */
