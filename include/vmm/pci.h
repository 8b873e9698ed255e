/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A PCI root complex (bus 0, one function per slot): configuration space
 * through the 0xCF8/0xCFC ports and ECAM (MMCONFIG), BARs placed by the
 * library in a 32-bit and a 64-bit MMIO window and an I/O window, MSI and
 * MSI-X (emulated in a device's BAR) delivered through KVM MSI routes fed
 * by irqfds, and INTx (pin A) on IOAPIC inputs. Firmware tables describe it
 * (struct vmm_machine.pci: an MCFG table, a host bridge with _CRS and _PRT
 * in the DSDT). Slot 0 holds the host bridge.
 *
 * A device model, the library's (virtio-pci, virtio_pci.h) or an
 * application's, is a struct vmm_pci_device: its identity, BAR sizes,
 * capabilities and a table of callbacks for accesses to its BARs.
 *
 * The guest is hostile: every configuration write is masked to the bits the
 * register has, a BAR answers only while decoding is on and it lies wholly
 * inside its window, and an MSI or MSI-X message whose address is not a
 * local APIC address (0xfee00000..0xfeefffff) is treated as masked.
 *
 * Locks: the bus has one lock for configuration space and BAR placement,
 * each device one for its MSI and MSI-X state, and one for INTx lines. A
 * device's callbacks run without the bus lock, except bar_moved. The
 * notify functions and vmm_pci_intx_set take only the small locks, so a device may call them
 * with its own lock held, from any thread.
 */
#ifndef VMM_PCI_H
#define VMM_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/error.h>
#include <vmm/machine.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_pci_bus;
struct vmm_pci_dev;

/* Default layout on x86 (below the IOAPIC, above vmm-run's low RAM). */
#define VMM_PCI_ECAM_BASE   0xe0000000ull /* bus 0 only: 1 MiB */
#define VMM_PCI_ECAM_SIZE   0x100000ull
#define VMM_PCI_MMIO32_BASE 0xc0000000ull
#define VMM_PCI_MMIO32_SIZE 0x10000000ull
#define VMM_PCI_IO_BASE     0xc000u
#define VMM_PCI_IO_SIZE     0x4000u
#define VMM_PCI_CONFIG_PORT 0xcf8u /* CONFIG_ADDRESS, CONFIG_DATA at 0xcfc: 8 ports */

#define VMM_PCI_SLOTS     32
#define VMM_PCI_MAX_BARS  6
#define VMM_PCI_MAX_CAPS  8
#define VMM_PCI_MSIX_MAX  256        /* vectors a device may have */
#define VMM_PCI_BAR_NONE  UINT64_MAX /* vmm_pci_bar_address: not decoded */
#define VMM_PCI_NO_VECTOR 0xffffu

/* struct vmm_pci_bar.flags */
#define VMM_PCI_BAR_IO       (1u << 0) /* an I/O BAR (else memory) */
#define VMM_PCI_BAR_MEM64    (1u << 1) /* a 64-bit memory BAR (takes two slots) */
#define VMM_PCI_BAR_PREFETCH (1u << 2) /* prefetchable: a 64-bit one goes in the 64-bit window */

struct vmm_pci_bar {
    uint64_t size;  /* 0: no BAR; else a power of two, memory >= 16, I/O 4..256 */
    uint32_t flags; /* VMM_PCI_BAR_* */
};

/* A capability the device adds to its configuration space after the
 * library's: id, then len bytes of body (what follows the id and next
 * bytes). Read-only to the guest. */
struct vmm_pci_cap {
    uint8_t id;
    uint8_t len; /* 2 .. 64 */
    const void *data;
};

/*
 * Callbacks of a device model; opaque is struct vmm_pci_device.opaque.
 * Growth convention (abi.h). Each may be NULL.
 */
struct vmm_pci_device_ops {
    uint32_t size; /* sizeof(struct vmm_pci_device_ops) */
    /* A guest access to BAR bar at offset (len 1, 2, 4 or 8, offset + len
     * within the BAR), outside the MSI-X table and PBA, which the library
     * handles. vCPU thread, without the bus lock. read fills data. */
    void (*bar_read)(void *opaque, unsigned bar, uint64_t offset, void *data, uint32_t len);
    void (*bar_write)(void *opaque, unsigned bar, uint64_t offset, const void *data, uint32_t len);
    /* BAR bar now answers at addr, or no longer answers (VMM_PCI_BAR_NONE):
     * the guest moved it or switched decoding. For ioeventfds. Called with
     * the bus lock held: do not call vmm_pci_* functions but the two above. */
    void (*bar_moved)(void *opaque, unsigned bar, uint64_t addr);
    /* The device is being destroyed (the bus or its VM goes away). */
    void (*destroy)(void *opaque);
    /* The guest wrote len bytes at configuration register reg: data is
     * what it wrote, before the library's masks (which it applied to its
     * own copy already). For a passthrough device to mirror registers such
     * as the command register. Called with the bus lock held, as
     * bar_moved. */
    void (*config_write)(void *opaque, unsigned reg, const void *data, uint32_t len);
    /* The guest changed the interrupt mode: VMM_PCI_IRQ_MSIX, VMM_PCI_IRQ_MSI
     * with vectors enabled, or VMM_PCI_IRQ_INTX (neither on). For a device
     * whose interrupts come from elsewhere (vmm_pci_vector_eventfd). Called
     * with the bus lock held, as bar_moved. */
    void (*irq_mode)(void *opaque, unsigned mode, unsigned vectors);
    /* MSI-X vector (msix) or MSI vector (!msix) became deliverable (its KVM
     * route installed: enabled, unmasked, a local APIC address) or stopped
     * being so. For a device whose interrupts come through
     * vmm_pci_vector_eventfd, to take them itself while the vector is
     * masked and pass them to vmm_pci_msix_notify/vmm_pci_msi_notify,
     * which keep them pending. May repeat the last state. Called with the
     * device's MSI lock held: call no vmm_pci_* function from it. */
    void (*vector_deliverable)(void *opaque, bool msix, unsigned vector, bool deliverable);
};

/* irq_mode's mode */
#define VMM_PCI_IRQ_INTX 0
#define VMM_PCI_IRQ_MSI  1
#define VMM_PCI_IRQ_MSIX 2

/* A device model's description (copied). Zero means default; growth
 * convention (abi.h). */
struct vmm_pci_device {
    uint32_t size; /* sizeof(struct vmm_pci_device) */
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint8_t revision;
    uint8_t prog_if;
    uint16_t class_code; /* base class << 8 | subclass */
    struct vmm_pci_bar bars[VMM_PCI_MAX_BARS];
    /* MSI-X: vectors (0: none, else up to VMM_PCI_MSIX_MAX) with the table
     * at msix_table_offset and the pending bits at msix_pba_offset of BAR
     * msix_bar (8-byte aligned, inside the BAR, not overlapping). */
    unsigned msix_vectors;
    unsigned msix_bar;
    uint64_t msix_table_offset, msix_pba_offset;
    bool intx; /* the device has interrupt pin INTA */
    unsigned nr_caps;
    const struct vmm_pci_cap *caps; /* nr_caps (<= VMM_PCI_MAX_CAPS), copied */
    const struct vmm_pci_device_ops *ops;
    void *opaque;
    const char *name; /* for log lines; copied; default "pci" */
    /* MSI: vectors (0: none; 1, 2, 4, 8, 16 or 32), a 64-bit capable
     * capability with per-vector masking. MSI-X wins when the guest
     * enables both. */
    unsigned msi_vectors;
};

/* The root complex. Zero means default; growth convention (abi.h). */
struct vmm_pci_config {
    uint32_t size;        /* sizeof(struct vmm_pci_config) */
    uint64_t ecam_base;   /* default VMM_PCI_ECAM_BASE (1 MiB, bus 0) */
    uint64_t mmio32_base; /* default VMM_PCI_MMIO32_BASE */
    uint64_t mmio32_size; /* default VMM_PCI_MMIO32_SIZE */
    /* The 64-bit window. Size 0: none on a standalone bus; on a VM
     * (vmm_vm_add_pci) 64 GiB from the first 1 GiB boundary above RAM and
     * 4 GiB. */
    uint64_t mmio64_base;
    uint64_t mmio64_size;
    uint32_t io_base;     /* default VMM_PCI_IO_BASE */
    uint32_t io_size;     /* default VMM_PCI_IO_SIZE */
    unsigned intx_gsi[4]; /* IOAPIC input of INTA of slot s: intx_gsi[s % 4] (four
                             distinct ones); default 16, 17, 18, 19 */
    /* Standalone bus (no VM): deliver an MSI (NULL: dropped) and drive an
     * INTx line (NULL: ignored). Ignored on a VM. */
    void (*msi)(void *opaque, uint64_t address, uint32_t data);
    void (*intx)(void *opaque, unsigned gsi, bool level);
    void *irq_opaque;
};

/*
 * A standalone bus, for unit tests and embedders with their own machine:
 * vmm_pci_bus_attach puts it on their buses. Returns 0, -EINVAL (a bad or
 * overlapping window, a size the library does not know) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_pci_bus_create(const struct vmm_pci_config *cfg,
                                            struct vmm_pci_bus **out);

/* Destroy a standalone bus and its devices (calls their destroy). Detach
 * it first (vmm_pci_bus_detach). Accepts NULL. */
VMM_API void vmm_pci_bus_destroy(struct vmm_pci_bus *bus);

/* Register the configuration ports (VMM_PCI_CONFIG_PORT, 8 ports) and the
 * I/O window on pio, ECAM and the MMIO windows on mmio. Returns 0 or the
 * bus's -errno (-EEXIST: a range is taken); nothing stays registered on
 * failure. vmm_pci_bus_detach undoes it. */
VMM_API VMM_MUST_USE int vmm_pci_bus_attach(struct vmm_pci_bus *bus, struct vmm_bus *pio,
                                            struct vmm_bus *mmio);
VMM_API void vmm_pci_bus_detach(struct vmm_pci_bus *bus);

/* A root complex on vm's buses, owned by the VM (torn down with it); MSIs
 * go through KVM MSI routes and irqfds, INTx through vmm_vm_set_irq. cfg
 * may be NULL. Call after the VM's memory is set (the 64-bit window's
 * default follows it). Returns as vmm_pci_bus_create and attach. */
VMM_API VMM_MUST_USE int vmm_vm_add_pci(struct vmm_vm *vm, const struct vmm_pci_config *cfg,
                                        struct vmm_pci_bus **out);

/*
 * Put a device in the next free slot: places its BARs (each aligned to its
 * size, in the window its flags ask for) and, on a VM, gives each MSI-X
 * vector a GSI and an irqfd. The bus owns the device from then on: on
 * failure its ops->destroy has been called (unless a size is unknown).
 * Returns 0, -EINVAL (bad description), -ENOSPC (no free slot or no room in
 * a window) or -ENOMEM/-errno. out may be NULL. Before the guest runs.
 */
VMM_API VMM_MUST_USE int vmm_pci_add_device(struct vmm_pci_bus *bus,
                                            const struct vmm_pci_device *dev,
                                            struct vmm_pci_dev **out);

/* Bus/device/function (bus << 8 | slot << 3 | function). */
VMM_API unsigned vmm_pci_dev_bdf(const struct vmm_pci_dev *dev);

/* Where BAR bar answers now, or VMM_PCI_BAR_NONE (not decoded). */
VMM_API uint64_t vmm_pci_bar_address(struct vmm_pci_dev *dev, unsigned bar);

/* Configuration-space offset of the device's capability index (nr_caps
 * order). */
VMM_API unsigned vmm_pci_cap_offset(const struct vmm_pci_dev *dev, unsigned index);

/*
 * Signal MSI-X vector: delivered through its irqfd when MSI-X is enabled
 * and the vector unmasked, else its pending bit is set (and the vector
 * fires when unmasked). Returns 0, -EINVAL (no such vector) or -EAGAIN
 * (MSI-X off: the device should use INTx). Any thread, any lock held.
 */
VMM_API int vmm_pci_msix_notify(struct vmm_pci_dev *dev, unsigned vector);

/* Whether the guest enabled MSI-X. */
VMM_API bool vmm_pci_msix_enabled(struct vmm_pci_dev *dev);

/*
 * Signal MSI vector (below the count the guest enabled): sent through its
 * irqfd unless masked (then pending until unmasked). Returns 0, -EINVAL
 * (no such vector) or -EAGAIN (MSI off, MSI-X on instead, or a vector past
 * those enabled). Any thread, any lock held.
 */
VMM_API int vmm_pci_msi_notify(struct vmm_pci_dev *dev, unsigned vector);

/*
 * The eventfd that signals MSI-X vector (msix) or MSI vector (!msix) of a
 * device on a VM: a write to it is what vmm_pci_msix_notify or
 * vmm_pci_msi_notify does when the vector is deliverable, in the kernel
 * (an irqfd on the vector's KVM MSI route), for an interrupt source outside
 * the VMM (VFIO). While the vector is masked or off its route is gone and
 * such a write is dropped rather than left pending. Returns the fd (owned
 * by the bus), -EINVAL (no such vector) or -ENOENT (a standalone bus).
 */
VMM_API int vmm_pci_vector_eventfd(struct vmm_pci_dev *dev, bool msix, unsigned vector);

/* The GSI (IOAPIC input) the device's INTA drives. */
VMM_API unsigned vmm_pci_intx_gsi(const struct vmm_pci_dev *dev);

/* Drive the device's INTA line (level-triggered, shared by slots on the
 * same GSI). Masked while the guest sets INTx Disable. Any thread. */
VMM_API void vmm_pci_intx_set(struct vmm_pci_dev *dev, bool level);

/* Describe the root complex in machine->pci (MCFG, DSDT host bridge) and
 * reserve its ECAM range in machine->reserved. Returns 0, -EINVAL (a
 * machine->size the library does not know) or -ENOSPC (reserved[] full). */
VMM_API VMM_MUST_USE int vmm_pci_add_to_machine(const struct vmm_pci_bus *bus,
                                                struct vmm_machine *machine);

/* The bus a device is on. */
VMM_API struct vmm_pci_bus *vmm_pci_dev_bus(struct vmm_pci_dev *dev);

/* The VM the bus is on (NULL standalone). */
VMM_API struct vmm_vm *vmm_pci_bus_vm(struct vmm_pci_bus *bus);

/* Counters of a bus. */
struct vmm_pci_stats {
    uint32_t size;         /* sizeof(struct vmm_pci_stats); growth convention (abi.h) */
    uint64_t config_reads; /* configuration-space accesses, either mechanism */
    uint64_t config_writes;
    uint64_t refused_writes; /* guest writes refused or masked to nothing */
    uint64_t bar_accesses;   /* BAR accesses that reached the library */
    uint64_t msix_delivered; /* vectors signalled */
    uint64_t msix_pending;   /* vectors left pending (masked) */
};

/* Copy the bus's counters (stats->size set by the caller). Returns 0 or
 * -EINVAL. Any thread. */
VMM_API int vmm_pci_get_stats(struct vmm_pci_bus *bus, struct vmm_pci_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_PCI_H */
