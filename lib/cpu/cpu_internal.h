/* SPDX-License-Identifier: Apache-2.0 */
/* Private state of VMs and vCPUs, shared by the files of lib/cpu. */
#ifndef VMM_CPU_INTERNAL_H
#define VMM_CPU_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/event.h>
#include <vmm/memory.h>
#include <vmm/seccomp.h>
#include <vmm/vcpu.h>
#include <vmm/vm.h>

#include "vmm_internal.h"
#include "stats.h"
#if defined(__aarch64__)
#include "aarch64/arch.h"
#else
#include "x86_64/arch.h"
#endif

struct vmm_vcpu {
    struct vmm_vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    uint64_t exits;
    struct vmm_vcpu_stats *stats; /* the exit profile; NULL: off */

    /* Kicking: the thread inside vmm_vcpu_run, valid while in_run is set.
     * kick_lock keeps a kicker from signalling a thread that already left. */
    pthread_mutex_t kick_lock;
    pthread_t thread;
    bool in_run;

    /* CPUID presented to the guest, built at creation, applied lazily. */
    struct kvm_cpuid_entry2 *cpuid;
    unsigned cpuid_count;
    unsigned cpuid_applied_for; /* vCPU count the applied table was built for; 0: none */
    bool cpuid_user_set;        /* the application replaced the table: keep it as is */
    bool has_run;
};

/* One MSI route of the VM's GSI routing table. */
struct vmm_msi_route {
    bool used;  /* allocated to a device vector */
    bool valid; /* installed in KVM (unmasked, enabled) */
    uint64_t address;
    uint32_t data;
};

/* Most MSI routes a VM hands out (KVM allows 4096 routes in all). */
#define VMM_MAX_MSI_ROUTES 2048

struct vmm_cleanup {
    void (*fn)(void *opaque);
    void *opaque;
};

struct vmm_vm {
    struct vmm_vm_config cfg;
    int kvm_fd;
    int vm_fd;
    size_t run_size;

    struct vmm_memory *mem;
    uint64_t created_ns;  /* CLOCK_MONOTONIC at vmm_vm_create */
    bool stats_on;        /* the exit profile: every vCPU has its counters */
    bool *slot_dirty_log; /* per region/slot: KVM dirty logging on */
    unsigned slot_cap;

    struct vmm_bus *pio;
    struct vmm_bus *mmio;
    struct vmm_event_loop *loop;
    struct vmm_ioapic *ioapic;         /* split irqchip only */
    struct vmm_x86_resample *resample; /* its resampling irqfds (x86_64/vm.c), or NULL */

    /* Coalesced writes (coalesced.c): the ring's page in the vCPU mapping,
     * 0 while none is registered (atomic); drains are serialised. */
    unsigned coalesced_page;
    uint32_t coalesced_max;
    pthread_mutex_t coalesced_lock;

    struct vmm_vcpu **vcpus;
    unsigned nr_vcpus;
    unsigned vcpu_cap;

    struct kvm_cpuid2 *supported_cpuid; /* KVM_GET_SUPPORTED_CPUID, fetched once */
    bool boot_tables_written;

    /* KVM's GSI routing table (routes.c), guarded by routes_lock. */
    pthread_mutex_t routes_lock;
    struct kvm_irq_routing_entry *chip_routes; /* the irqchip's, GSIs < VMM_IOAPIC_PINS */
    unsigned nr_chip_routes;
    struct vmm_msi_route *msi; /* msi[i] is GSI VMM_IOAPIC_PINS + i */
    unsigned msi_cap;

    /* Device memory slots (vmm_vm_device_slot_*), guarded by lock: bit i
     * is KVM slot nr_memslots - 1 - i. */
    uint64_t device_slots;
    unsigned nr_memslots; /* KVM_CAP_NR_MEMSLOTS, or 0: no device slots */
    /* vmm_vm_add_memory_listener's, called by vmm_vm_add_memory. */
    struct vmm_memory_listener {
        int (*fn)(void *opaque, unsigned region);
        void *opaque;
    } listeners[VMM_VM_MAX_LISTENERS];
    unsigned nr_listeners;

    struct vmm_cleanup *cleanups;
    unsigned nr_cleanups;
    unsigned cleanup_cap;

    /* Run state, guarded by lock; exit_requested is also read without it on
     * the vCPU fast path. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int exit_requested;  /* atomic */
    int pause_requested; /* atomic */
    struct vmm_exit exit;
    unsigned running; /* vCPUs inside their run loop */
    unsigned parked;  /* of those, parked by a pause */
    bool managed_run; /* vmm_vm_run owns the run state */

    /* vmm_vm_set_seccomp: filters for the threads vmm_vm_run starts, built
     * by it (the threads only load them). */
    bool seccomp_on;
    struct vmm_seccomp_prog seccomp_vcpu;
    struct vmm_seccomp_prog seccomp_io;
    /* cfg without its extras (the application's lists need not outlive the
     * call), for the helper thread below. */
    struct vmm_seccomp_config seccomp;
    /* A library thread outside the run that filters itself on request (the
     * VMM_RESTORE_UFFD fault thread): vmm_vm_set_seccomp calls it with the
     * new config and returns its error. NULL: none. */
    int (*helper_seccomp)(void *opaque, const struct vmm_seccomp_config *cfg);
    void *helper_opaque;
    /* Parts that take part in snapshots (lib/snapshot). */
    struct vmm_snap_part *snap_parts;
    unsigned nr_snap_parts;
    unsigned snap_part_cap;
    /* The last snapshot the dirty log counts from (a diff snapshot's base):
     * valid while every region stays logged and only snapshots read the log. */
    uint8_t snap_base_id[16];
    bool snap_base_valid;
#if defined(__aarch64__)
    struct vmm_arm64_vm arm64; /* the vGIC and the vCPU target */
#endif
};

/* lib/cpu/kvm.c */
int vmm_kvm_open(const char *path, int *kvm_fd);
int vmm_kvm_check_caps(int kvm_fd, int vm_fd, enum vmm_irqchip irqchip);
int vmm_kvm_ioctl(int fd, unsigned long req, void *arg);
const char *vmm_kvm_exit_name(uint32_t reason);

/* Most CPUID entries a vCPU holds. */
#define MAX_CPUID_ENTRIES 256

/* lib/cpu/vcpu.c */
void vmm_vcpu_free(struct vmm_vcpu *vcpu);
/* Zero the vCPU's profile counters, allocating them when it has none:
 * 0 or -ENOMEM. Only while the vCPU does not run. */
int vmm_vcpu_stats_reset(struct vmm_vcpu *vcpu);
void vmm_vcpu_kick(struct vmm_vcpu *vcpu);
int vmm_vcpu_run_managed(struct vmm_vcpu *vcpu, struct vmm_exit *exit);
struct vmm_vcpu *vmm_vcpu_current(void);
/* Have KVM finish the exit it still owes the guest (the data of a port or
 * MMIO read reaches the guest's registers only at the next KVM_RUN), with
 * immediate_exit set so that the guest is not entered (KVM API,
 * "immediate_exit"). Only from the thread that runs the vCPU, or while no
 * thread does. Returns 0, -EAGAIN or a -errno from KVM_RUN (vcpu.c). */
int vmm_vcpu_settle(struct vmm_vcpu *vcpu);

/* lib/cpu/coalesced.c */
/* Hand the writes KVM queued in ring (max entries) to the buses in order;
 * returns how many. */
unsigned vmm_coalesced_drain(struct kvm_coalesced_mmio_ring *ring, uint32_t max,
                             struct vmm_bus *pio, struct vmm_bus *mmio);
/* The same for the VM's ring, seen through vcpu's mapping (coalesced_page
 * set), under coalesced_lock. */
void vmm_vcpu_coalesced_drain(struct vmm_vcpu *vcpu);

/* lib/cpu/vm.c */
void vmm_vm_kick_all(struct vmm_vm *vm);
/* lib/cpu/x86_64/vm.c: KVM_GET_SUPPORTED_CPUID into vm->supported_cpuid. */
int vmm_vm_fetch_supported_cpuid(struct vmm_vm *vm);
/* vmm_vm_dirty_log_fetch without forgetting the snapshot base (snapshots'
 * own reads of the log). */
int vmm_vm_dirty_fetch(struct vmm_vm *vm, unsigned region, uint64_t *bitmap, size_t nwords);

/* lib/cpu/routes.c: the GSI routing table shared by the irqchip and MSI
 * routes. All thread-safe; each change rewrites KVM's table. */
/* Replace the irqchip's routes (GSIs below VMM_IOAPIC_PINS) and commit. */
int vmm_vm_routes_set_chip(struct vmm_vm *vm, const struct kvm_irq_routing_entry *e, unsigned n);
void vmm_vm_routes_fini(struct vmm_vm *vm);

#endif /* VMM_CPU_INTERNAL_H */
