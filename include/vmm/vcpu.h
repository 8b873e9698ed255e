/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Virtual CPUs: creation, register state, the x86_64 boot state, the run
 * loop of one vCPU and the single step it is made of.
 *
 * Threads: every vCPU belongs to the VM that created it. vmm_vcpu_run and
 * vmm_vcpu_run_once must be called from one thread at a time (the vCPU's
 * thread); register get/set only while the vCPU is not running (before a
 * run, after it returned, between steps, or while the VM is paused).
 * Everything else is documented per function.
 */
#ifndef VMM_VCPU_H
#define VMM_VCPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vcpu;
/* x86 state types; on other hosts linux/kvm.h lacks them and the calls that
 * take them return -ENOTSUP. */
struct kvm_lapic_state;
struct kvm_msr_entry;
struct kvm_cpuid_entry2;

/*
 * Create vCPU index (0-based; its APIC id is the index) on vm, with CPUID
 * built from what KVM supports: a consistent topology for the vCPUs the VM
 * will have (the count is taken at the first vmm_vcpu_run or vmm_vm_run, so
 * create them all first), the hypervisor bit and the KVM paravirtual leaves.
 * Indices must be created in order 0, 1, 2... The VM owns the vCPU.
 * Returns 0, -EINVAL (index out of order), -EBUSY (the VM is running) or a
 * -errno from KVM (-ENOSPC past the host's vCPU limit).
 */
VMM_API VMM_MUST_USE int vmm_vcpu_create(struct vmm_vm *vm, unsigned index, struct vmm_vcpu **out);

/* The vCPU's index and its VM. */
VMM_API unsigned vmm_vcpu_index(const struct vmm_vcpu *vcpu);
VMM_API struct vmm_vm *vmm_vcpu_vm(struct vmm_vcpu *vcpu);

/* Register state, straight from/to KVM. Return 0 or a -errno from KVM. */
VMM_API VMM_MUST_USE int vmm_vcpu_get_regs(struct vmm_vcpu *vcpu, struct kvm_regs *regs);
VMM_API VMM_MUST_USE int vmm_vcpu_set_regs(struct vmm_vcpu *vcpu, const struct kvm_regs *regs);
VMM_API VMM_MUST_USE int vmm_vcpu_get_sregs(struct vmm_vcpu *vcpu, struct kvm_sregs *sregs);
VMM_API VMM_MUST_USE int vmm_vcpu_set_sregs(struct vmm_vcpu *vcpu, const struct kvm_sregs *sregs);
VMM_API VMM_MUST_USE int vmm_vcpu_get_fpu(struct vmm_vcpu *vcpu, struct kvm_fpu *fpu);
VMM_API VMM_MUST_USE int vmm_vcpu_set_fpu(struct vmm_vcpu *vcpu, const struct kvm_fpu *fpu);
VMM_API VMM_MUST_USE int vmm_vcpu_get_lapic(struct vmm_vcpu *vcpu, struct kvm_lapic_state *lapic);
VMM_API VMM_MUST_USE int vmm_vcpu_set_lapic(struct vmm_vcpu *vcpu,
                                            const struct kvm_lapic_state *lapic);

/*
 * Read or write n MSRs: entries[i].index names each; get fills .data.
 * Returns the number of MSRs processed (n on full success; fewer means the
 * MSR at that position is not supported) or a -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_get_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *entries,
                                           unsigned n);
VMM_API VMM_MUST_USE int vmm_vcpu_set_msrs(struct vmm_vcpu *vcpu,
                                           const struct kvm_msr_entry *entries, unsigned n);

/*
 * The CPUID table the vCPU will present. get copies up to max entries and
 * returns how many there are (which may exceed max). set replaces the table
 * (the CPUID filter: take the table from get, edit or drop leaves, set it
 * back) and applies it. Set before the vCPU first runs. Return a count/0 or
 * -errno (-E2BIG for more than 256 entries).
 */
VMM_API int vmm_vcpu_get_cpuid(struct vmm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries,
                               unsigned max);
VMM_API VMM_MUST_USE int vmm_vcpu_set_cpuid(struct vmm_vcpu *vcpu,
                                            const struct kvm_cpuid_entry2 *entries, unsigned n);

/*
 * Named features for editing a CPUID table between vmm_vcpu_get_cpuid and
 * vmm_vcpu_set_cpuid. The default table offers what KVM supports, including
 * the KVM paravirtual features of leaf 0x40000001 (kvmclock, async-pf,
 * steal-time, pv-eoi, pv-unhalt, ...); this is how an application takes any
 * of them away, or hides CPU features a nested hypervisor cannot virtualise
 * (e.g. "xsave", which also hides AVX and its successors).
 *
 * vmm_cpuid_set_feature: on = false clears every bit the name stands for that
 * is present in the table; on = true sets the feature's main bit again (only
 * meaningful for a bit KVM supports, i.e. one the table had). Returns the
 * number of bits changed, -ENOENT for an unknown name, -ENOTSUP when turning
 * on a feature whose leaf is not in the table, -EINVAL for NULL arguments.
 *
 * vmm_cpuid_feature_name: the i-th known name (and a one-line description
 * through what, if not NULL), NULL past the end.
 */
VMM_API int vmm_cpuid_set_feature(struct kvm_cpuid_entry2 *entries, unsigned n, const char *name,
                                  bool on);
VMM_API const char *vmm_cpuid_feature_name(unsigned i, const char **what);

/*
 * x86_64 entry state for a guest program (used by the ELF loader path):
 *
 * - 64-bit long mode, paging on (CR0.PE|PG, CR4.PAE, EFER.LME|LMA, EFER.NX),
 *   SSE enabled (CR4.OSFXSR|OSXMMEXCPT, CR0.MP), the FPU initialised;
 * - the first 4 GiB of guest-physical space identity-mapped with 2 MiB pages
 *   (read/write, executable; accesses to addresses without RAM behind them
 *   reach the MMIO bus);
 * - flat 64-bit code segment (selector 0x8) and data segments (0x10); a GDT
 *   with those at VMM_X86_BOOT_GDT; no IDT (IDTR limit 0) and no TSS beyond
 *   KVM's default: the guest sets up its own before enabling interrupts;
 * - RFLAGS = 0x2 (interrupts off), RIP = entry, RSP = stack,
 *   RDI = arg0 and RSI = arg1, all other general registers 0.
 *
 * The page tables and GDT live in guest memory in
 * [VMM_X86_BOOT_AREA_START, VMM_X86_BOOT_AREA_END); guest images must not be
 * loaded there (the ELF loader refuses to by default).
 */
#define VMM_X86_BOOT_AREA_START 0x1000ull
#define VMM_X86_BOOT_AREA_END   0x10000ull
#define VMM_X86_BOOT_GDT        0x1000ull
#define VMM_X86_BOOT_PML4       0x2000ull

/* A second long-mode GDT, written with the first, with the Linux 64-bit boot
 * protocol's selectors: flat 64-bit code at __BOOT_CS (0x10) and data at
 * __BOOT_DS (0x18). vmm_vcpu_set_linux_entry (below) switches to it. */
#define VMM_X86_BOOT_GDT_LINUX       0x1400ull
#define VMM_X86_BOOT_GDT_LINUX_LIMIT 31u
#define VMM_X86_BOOT_LINUX_CS        0x10u
#define VMM_X86_BOOT_LINUX_DS        0x18u

struct vmm_x86_boot_state {
    uint32_t size;  /* sizeof(struct vmm_x86_boot_state) (vmm/abi.h) */
    uint64_t entry; /* RIP */
    uint64_t stack; /* RSP (0: the guest sets its own stack first thing) */
    uint64_t arg0;  /* RDI */
    uint64_t arg1;  /* RSI */
};

/*
 * Put the vCPU in the long-mode entry state above, writing the page tables
 * and GDT into guest memory (they must fit in RAM: -EFAULT otherwise).
 * Returns 0, -EINVAL (a boot->size the library does not know: nothing
 * changed) or -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_boot_state(struct vmm_vcpu *vcpu,
                                                 const struct vmm_x86_boot_state *boot);

/*
 * x86 32-bit protected-mode entry state (the PVH boot ABI, used by the Linux
 * loader's PVH path, linux.h):
 *
 * - CR0 = PE (and the fixed ET bit): paging off; CR4 = 0, EFER = 0, CR3 = 0;
 * - flat 4 GiB 32-bit code segment (selector 0x8, execute/read) and data
 *   segments DS/ES/FS/GS/SS (0x10, read/write), from a GDT at
 *   VMM_X86_BOOT_GDT32 in the boot area (beside the long-mode GDT, so vCPUs
 *   in either state can share the area); TR a 32-bit busy TSS at 0 with limit
 *   0x67; no IDT;
 * - EFLAGS = 0x2 (interrupts off), EIP = entry, ESP = stack, EBX = ebx,
 *   ESI = esi, all other general registers 0; the FPU initialised.
 *
 * The guest sets up its own GDT, IDT, stack and paging.
 */
#define VMM_X86_BOOT_GDT32 0x1800ull

struct vmm_x86_pm32_boot_state {
    uint32_t size;  /* sizeof(struct vmm_x86_pm32_boot_state) (vmm/abi.h) */
    uint32_t entry; /* EIP */
    uint32_t stack; /* ESP (0: the guest sets its own) */
    uint32_t ebx;   /* EBX (PVH: the hvm_start_info address) */
    uint32_t esi;   /* ESI */
};

/*
 * Put the vCPU in the 32-bit protected-mode entry state above, writing the
 * boot area (GDTs and long-mode page tables) into guest memory if no vCPU of
 * the VM did yet (-EFAULT without RAM there). Returns 0, -EINVAL (a
 * boot->size the library does not know: nothing changed) or -errno.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_boot_state_pm32(struct vmm_vcpu *vcpu,
                                                      const struct vmm_x86_pm32_boot_state *boot);

/*
 * The entry state of a Linux kernel (Documentation/arch/x86/boot.rst, "64-bit
 * Boot Protocol"; the PVH boot ABI), as the Linux loader describes it
 * (vmm_linux_get_entry, linux.h):
 *
 * - VMM_X86_LINUX_ENTRY_64: the long-mode state of vmm_vcpu_set_boot_state
 *   (paging on, the first 4 GiB identity-mapped, interrupts off) with
 *   RIP = entry, RSI = params (the zero page), RSP = stack, and the
 *   protocol's selectors: CS = __BOOT_CS (0x10, flat 64-bit execute/read),
 *   DS/ES/FS/GS/SS = __BOOT_DS (0x18, flat read/write), from the GDT at
 *   VMM_X86_BOOT_GDT_LINUX;
 * - VMM_X86_LINUX_ENTRY_PVH: the 32-bit protected-mode state of
 *   vmm_vcpu_set_boot_state_pm32 (paging off, CS 0x8, DS/ES/FS/GS/SS 0x10,
 *   a 32-bit TSS, interrupts off) with EIP = entry, EBX = params (the
 *   hvm_start_info), ESP = stack;
 * - either way, MTRRdefType (MSR 0x2ff) = VMM_X86_MTRR_DEF_TYPE_WB: MTRRs
 *   enabled, default type write-back, as firmware leaves it. A kernel that
 *   finds the MTRRs off takes all of RAM for uncached in its bookkeeping.
 *
 * Growth convention (abi.h): .size first.
 */
enum vmm_x86_linux_mode {
    VMM_X86_LINUX_ENTRY_NONE = 0, /* nothing to enter (refused) */
    VMM_X86_LINUX_ENTRY_64,       /* the 64-bit boot protocol */
    VMM_X86_LINUX_ENTRY_PVH,      /* PVH: 32-bit protected mode */
};

struct vmm_x86_linux_entry {
    uint32_t size;   /* sizeof(struct vmm_x86_linux_entry) (VMM_INIT) */
    uint32_t mode;   /* enum vmm_x86_linux_mode */
    uint64_t entry;  /* RIP, or EIP (PVH: below 4 GiB) */
    uint64_t params; /* RSI = zero page, or EBX = hvm_start_info (below 4 GiB) */
    uint64_t stack;  /* RSP or ESP (0: none; Linux sets up its own) */
};

#define VMM_X86_MSR_MTRR_DEF_TYPE 0x2ffu
#define VMM_X86_MTRR_DEF_TYPE_WB  0xc06u /* E (bit 11) | default type 6, write-back */

/*
 * Put the boot vCPU in the Linux entry state above, writing the boot area
 * into guest memory if no vCPU of the VM did yet. Only the boot vCPU: Linux
 * starts the others with INIT/SIPI (give those vmm_vcpu_set_linux_ap_state).
 * Returns 0, -EINVAL (vcpu or entry NULL, a size the library does not know,
 * an unknown mode, a PVH address above 4 GiB), -EFAULT (no RAM for the boot
 * area), -ENOTSUP (KVM refused the MSR) or another -errno of the vCPU calls.
 * Call from the thread that owns the vCPU, before it runs.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_linux_entry(struct vmm_vcpu *vcpu,
                                                  const struct vmm_x86_linux_entry *entry);

/*
 * Give a vCPU that a Linux kernel will start with INIT/SIPI (every vCPU but
 * the boot one) what firmware leaves on each CPU and INIT keeps:
 * MTRRdefType = VMM_X86_MTRR_DEF_TYPE_WB. Its registers stay as KVM made
 * them (waiting for SIPI). Returns 0, -EINVAL (vcpu NULL), -ENOTSUP (KVM
 * refused the MSR) or another -errno. Same threading as above.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_linux_ap_state(struct vmm_vcpu *vcpu);

/*
 * Run the vCPU on the calling thread until something ends the run for the
 * whole VM (guest exit, power-off, reset, fatal exit, vmm_vm_stop, a device's
 * vmm_vm_request_exit), dispatching PIO/MMIO exits to the buses meanwhile.
 * The reason is stored in *exit (the VM's first reason when several vCPUs
 * end it). Returns 0 (see exit->reason), -EBUSY when already running on
 * another thread (or vmm_vm_run owns the VM), -EDEADLK from inside a bus
 * callback of a running vCPU. Single-vCPU embedders can call this directly;
 * vmm_vm_run calls it on one thread per vCPU.
 *
 * It is a loop over the steps of vmm_vcpu_run_once (below) with a fixed
 * policy for the exits the library leaves to its caller: port I/O and MMIO
 * nobody claims read as all ones and writes are dropped (counted in
 * vmm_bus_get_stats); HLT, triple fault, system events, KVM errors and
 * every other exit end the run (VMM_EXIT_HLT, _SHUTDOWN, _POWEROFF, _RESET,
 * _ERROR with the KVM exit named in detail). exit may be NULL; otherwise
 * the caller sets exit->size (VMM_INIT), and a size the library does not
 * know is refused with -EINVAL before anything runs.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_run(struct vmm_vcpu *vcpu, struct vmm_exit *exit);

/*
 * ---- Stepping a vCPU: the exits the embedder handles ----
 *
 * vmm_vcpu_run_once is the library's KVM_RUN, in the spirit of kvm-ioctls'
 * VcpuFd::run(): one guest entry on the calling thread, after which the
 * library does its own share of the exit (devices registered on the VM's
 * PIO and MMIO buses, IOAPIC EOIs, runs interrupted by a kick or a signal)
 * and hands back everything else as a struct vmm_vcpu_exit, including exits
 * it has never heard of. That is how an application adds a device of its own
 * without registering it (answer the port or MMIO record), handles the MSRs
 * and hypercalls it asked KVM to pass on (vmm_vm_enable_cap), or decides
 * itself what a HLT or a triple fault means.
 *
 *     struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
 *     for (;;) {
 *         int r = vmm_vcpu_run_once(vcpu, &ex);
 *         if (r < 0)
 *             return r;
 *         if (ex.kind == VMM_VCPU_EXIT_END)
 *             break;                      // ex.end says why
 *         if (ex.kind == VMM_VCPU_EXIT_IO && ex.io.port == MY_PORT && !ex.io.write)
 *             memcpy(ex.io.data, &my_value, ex.io.size);
 *         // VMM_VCPU_EXIT_HANDLED: nothing to do; other kinds: as you see fit
 *     }
 *
 * Growth convention (vmm/abi.h, as for every struct the API passes): the
 * caller sets .size to sizeof(struct vmm_vcpu_exit) as its headers declare it
 * (VMM_INIT); the library fills only the first .size bytes, and refuses a
 * size it does not know with -EINVAL before anything runs. Unlike the
 * structs passed in, a record is known only at the sizes versions declared
 * (0.1: the whole struct), never cut inside the payloads, which the record
 * covers. The union never grows: new
 * kinds fit in its reserved room, and kinds may be added, so treat a kind you
 * do not know like VMM_VCPU_EXIT_UNKNOWN (kvm_reason and run say what it is).
 *
 * Borrowed pointers (run, and data/error/ret in the payloads) point into the
 * vCPU's kvm_run page: valid until the next vmm_vcpu_run_once or
 * vmm_vcpu_run on this vCPU, which is also when KVM takes what was written
 * through them (the data of a port or MMIO read, an MSR value, a hypercall's
 * return value). Nothing needs to be handed back: just call again.
 */

/* What a step returned. */
enum vmm_vcpu_exit_kind {
    /* The library handled the exit (a device on a bus, an IOAPIC EOI, an
     * interrupted run): call again. */
    VMM_VCPU_EXIT_HANDLED = 0,
    /* The VM's run has ended: vmm_vm_stop, vmm_vm_request_exit (the exit
     * device, the i8042 reset line, the ACPI sleep register, a device of the
     * application's). .end has the reason, as vmm_vcpu_run would return it;
     * the guest did not enter when the run had ended before the call. */
    VMM_VCPU_EXIT_END,
    /* Port I/O no device on the VM's PIO bus claims: .io. */
    VMM_VCPU_EXIT_IO,
    /* MMIO no device on the VM's MMIO bus claims (and no RAM backs): .mmio. */
    VMM_VCPU_EXIT_MMIO,
    /* RDMSR / WRMSR passed to user space (KVM_EXIT_X86_RDMSR/WRMSR: only
     * after the application enabled KVM_CAP_X86_USER_SPACE_MSR through
     * vmm_vm_enable_cap): .msr. */
    VMM_VCPU_EXIT_RDMSR,
    VMM_VCPU_EXIT_WRMSR,
    /* A hypercall passed to user space (KVM_EXIT_HYPERCALL: only after the
     * application enabled KVM_CAP_EXIT_HYPERCALL for it): .hypercall. */
    VMM_VCPU_EXIT_HYPERCALL,
    /* The vCPU halted and KVM did not wait for an interrupt itself. */
    VMM_VCPU_EXIT_HLT,
    /* Triple fault (KVM_EXIT_SHUTDOWN): the vCPU's state is undefined; do not
     * run it again without setting new state. */
    VMM_VCPU_EXIT_SHUTDOWN,
    /* KVM_EXIT_SYSTEM_EVENT (power-off, reset, crash...): .system_event. */
    VMM_VCPU_EXIT_SYSTEM_EVENT,
    /* KVM_EXIT_INTERNAL_ERROR (e.g. an instruction KVM could not emulate):
     * .internal. */
    VMM_VCPU_EXIT_INTERNAL_ERROR,
    /* KVM_EXIT_FAIL_ENTRY (the hardware refused the vCPU state): .fail_entry. */
    VMM_VCPU_EXIT_FAIL_ENTRY,
    /* Any other KVM exit: kvm_reason has its KVM_EXIT_* code and run the
     * kvm_run page with its data. */
    VMM_VCPU_EXIT_UNKNOWN,
};

struct vmm_vcpu_exit_io {
    uint16_t port;
    uint8_t size;   /* bytes per access: 1, 2 or 4 */
    bool write;     /* OUT/OUTS: data holds what the guest wrote */
    uint32_t count; /* accesses, > 1 for a REP INS/OUTS: data has count * size bytes */
    /* Borrowed. For IN/INS, what the guest reads: all ones unless the
     * application writes it before the next run call. */
    uint8_t *data;
};

struct vmm_vcpu_exit_mmio {
    uint64_t addr;
    uint32_t len; /* 1..8 */
    bool write;
    /* Borrowed: len bytes, little-endian guest order. For a read, what the
     * guest gets: all ones unless the application writes it. */
    uint8_t *data;
};

struct vmm_vcpu_exit_msr {
    uint32_t index;  /* the MSR (ECX) */
    uint32_t reason; /* why KVM passed it on: KVM_MSR_EXIT_REASON_* */
    uint64_t value;  /* WRMSR: the value written (EDX:EAX) */
    uint64_t *data;  /* borrowed; RDMSR: store the value the guest reads */
    uint8_t *error;  /* borrowed; store 1 to give the guest a #GP instead */
};

struct vmm_vcpu_exit_hypercall {
    uint64_t nr;      /* RAX */
    uint64_t args[6]; /* as KVM passes them: RBX, RCX, RDX, RSI, 0, 0 */
    uint64_t flags;   /* bit 0: the guest was in 64-bit mode */
    uint64_t *ret;    /* borrowed: store the value the guest gets in RAX */
};

struct vmm_vcpu_exit_system_event {
    uint32_t type;        /* KVM_SYSTEM_EVENT_* */
    uint32_t ndata;       /* entries of data (at most 16) */
    const uint64_t *data; /* borrowed */
};

struct vmm_vcpu_exit_internal {
    uint32_t suberror;    /* KVM_INTERNAL_ERROR_* */
    uint32_t ndata;       /* entries of data (at most 16) */
    const uint64_t *data; /* borrowed */
};

struct vmm_vcpu_exit_fail_entry {
    uint64_t hardware_reason; /* hardware_entry_failure_reason */
    uint32_t cpu;             /* the host CPU it failed on */
};

/* One step's outcome (see the growth convention above). */
struct vmm_vcpu_exit {
    uint32_t size;       /* in: sizeof(struct vmm_vcpu_exit) */
    uint32_t kind;       /* enum vmm_vcpu_exit_kind */
    uint32_t kvm_reason; /* KVM_EXIT_* of this step's exit (KVM_EXIT_INTR for a
                            run cut short by a kick or a signal); 0 when the
                            guest did not enter (VMM_VCPU_EXIT_END first) */
    uint32_t vcpu;       /* the vCPU's index */
    struct kvm_run *run; /* borrowed: the vCPU's kvm_run page, the raw view of
                            any exit (and its request fields) */
    union {
        struct vmm_vcpu_exit_io io;
        struct vmm_vcpu_exit_mmio mmio;
        struct vmm_vcpu_exit_msr msr;             /* RDMSR, WRMSR */
        struct vmm_vcpu_exit_hypercall hypercall; /* HYPERCALL */
        struct vmm_vcpu_exit_system_event system_event;
        struct vmm_vcpu_exit_internal internal; /* INTERNAL_ERROR */
        struct vmm_vcpu_exit_fail_entry fail_entry;
        struct vmm_exit end; /* END */
        uint64_t reserved[32];
    };
};

/*
 * Run the vCPU once on the calling thread (one KVM_RUN, see above) and
 * describe the exit in *exit, whose .size the caller has set. Before
 * entering the guest it honours the VM's run state as vmm_vcpu_run does:
 * while the VM is paused it waits (counted as parked) until resume or the
 * end of the run; when the run has ended (vmm_vm_stop, a device's
 * vmm_vm_request_exit, now or before the call) it returns
 * VMM_VCPU_EXIT_END without entering, and so does a step whose exit ended
 * it. The call that reports the end closes the run, like a vmm_vcpu_run
 * returning: once no other vCPU is inside a run call, the next call runs
 * the guest again. vmm_vm_stop, vmm_vm_pause and vmm_vm_request_exit work
 * from any thread while a step runs (the kick interrupts KVM_RUN); between
 * calls the vCPU counts as not running.
 *
 * Returns 0 with *exit filled, -EINVAL (exit NULL or a size the library
 * does not know; nothing ran and *exit is untouched), -EBUSY (the vCPU is in
 * a run on another thread, or vmm_vm_run owns the VM), -EDEADLK (called from
 * inside a bus callback of a running vCPU), or a -errno from KVM_RUN or from
 * applying the CPUID table (logged). One thread at a time per vCPU; each
 * vCPU may be stepped on a thread of its own.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_run_once(struct vmm_vcpu *vcpu, struct vmm_vcpu_exit *exit);

/* Name of a step's kind ("io", "mmio", "end", ...); "?" for one this
 * library does not know. */
VMM_API const char *vmm_vcpu_exit_kind_name(uint32_t kind);

/* Count of KVM exits this vCPU handled in userspace since creation. */
VMM_API uint64_t vmm_vcpu_exit_count(const struct vmm_vcpu *vcpu);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VCPU_H */
