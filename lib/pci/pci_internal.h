/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What lib/pci shares with the library's own device models and with
 * snapshots (lib/snapshot): the root complex's state as a snapshot section,
 * and which functions a snapshot may save.
 */
#ifndef VMM_PCI_INTERNAL_H
#define VMM_PCI_INTERNAL_H

#include <stdint.h>
#include <vmm/pci.h>

#include "pci_regs.h"

struct vmm_snap_writer;
struct vmm_snap_reader;

/*
 * A function's part in snapshots. The bus saves every function's
 * configuration space and interrupt state; what lies behind the BARs is the
 * device model's. A library model that saves its own state (virtio-pci)
 * says so with NULL; every other function keeps a refusal, the one-line
 * reason a snapshot or migration of its VM is refused with (default: an
 * application's device model, whose state the library cannot know). why
 * must outlive the function. Before the guest runs.
 */
void vmm_pci_dev_set_snap_refusal(struct vmm_pci_dev *dev, const char *why);

/* The root complex in a snapshot: format version of its section. */
#define PCI_SNAP_VERSION 1u

/* The section's head, then per function (slots bit set) a struct
 * pci_snap_fn, its MSI-X table (msix_vectors entries of 16 bytes) and
 * PBA ((msix_vectors + 63) / 64 u64 words). */
struct pci_snap_bus {
    uint32_t version;
    uint32_t config_address; /* the 0xCF8 latch */
    uint32_t slots;          /* bit s: a function in slot s */
    uint32_t pad;
};

struct pci_snap_fn {
    uint32_t slot, vendor_device; /* identity: vendor | device << 16 */
    uint32_t msix_vectors, msi_vectors;
    uint32_t intx_level, msi_pending;
    uint64_t bar_addr[VMM_PCI_MAX_BARS]; /* where each BAR answered (VMM_PCI_BAR_NONE) */
    uint8_t cfg[PCI_CFG_SIZE];
};

/* Save the bus (every function's configuration space, MSI and MSI-X
 * state, INTx levels, the address latch): 0 or -errno. */
int vmm_pci_bus_snap_save(struct vmm_pci_bus *bus, struct vmm_snap_writer *w);
/*
 * Restore a bus made like the saved one (same functions in the same slots),
 * before any vCPU runs: configuration space, BAR decoding (devices told of
 * the moves), MSI-X tables and pending bits, MSI, the KVM MSI routes of
 * every deliverable vector. Every field is checked: -EBADMSG (malformed or
 * inconsistent), -EINVAL (another machine), -EPROTO (another section
 * version), with a log line. On failure the bus may be half restored: the
 * VM is not to run.
 */
int vmm_pci_bus_snap_restore(struct vmm_pci_bus *bus, struct vmm_snap_reader *r);
/* A snapshot of the bus's VM may be taken: 0, or -ENOTSUP (a function
 * with a refusal, logged). */
int vmm_pci_bus_snap_check(struct vmm_pci_bus *bus);

#endif /* VMM_PCI_INTERNAL_H */
