/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-pci transport, modern only (virtio 1.2 section 4.1): a device
 * model (struct vmm_virtio_device, virtio.h) as a PCI function (pci.h) with
 * vendor 0x1af4 and device 0x1040 + type, one 32 KiB memory BAR holding the
 * common configuration, ISR, device configuration and notification
 * structures (each described by a vendor capability) and the MSI-X table.
 * Queue notifications arrive through ioeventfds (one per queue, bound while
 * the queue is enabled and the BAR decoded) and run on the event loop; each
 * queue and the configuration change have their own MSI-X vector, sent
 * through an irqfd; without MSI-X the device falls back to INTx and the ISR.
 * The same device models run on virtio-mmio (virtio_mmio.h).
 */
#ifndef VMM_VIRTIO_PCI_H
#define VMM_VIRTIO_PCI_H

#include <stdint.h>
#include <vmm/error.h>
#include <vmm/event.h>
#include <vmm/memory.h>
#include <vmm/pci.h>
#include <vmm/virtio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_virtio_pci;

/* Where the transport finds guest memory and its event loop. Zero means
 * default; growth convention (abi.h). */
struct vmm_virtio_pci_config {
    uint32_t size;               /* sizeof(struct vmm_virtio_pci_config) */
    struct vmm_memory *mem;      /* default: the bus's VM's memory; required standalone */
    struct vmm_event_loop *loop; /* default: the bus's VM's loop; standalone NULL: a
                                    notification runs queue_notify on the vCPU thread */
};

/*
 * Put dev (copied) on bus as a virtio-pci function in the next free slot;
 * calls dev->ops->attach. The bus owns the result (destroyed with the bus or
 * its VM). cfg may be NULL. On failure the device has been destroyed
 * (unless a size is unknown, abi.h). Before the guest runs, after the VM's
 * memory is set. Returns 0, -EINVAL, -ENOSPC (no slot or BAR room), -ENOMEM
 * or a -errno from KVM. out may be NULL.
 */
VMM_API VMM_MUST_USE int vmm_virtio_pci_add(struct vmm_pci_bus *bus,
                                            const struct vmm_virtio_pci_config *cfg,
                                            const struct vmm_virtio_device *dev,
                                            struct vmm_virtio_pci **out);

/* The transport's generic handle (what the device got in attach), and its
 * PCI function. */
VMM_API struct vmm_virtio_transport *vmm_virtio_pci_transport(struct vmm_virtio_pci *vp);
VMM_API struct vmm_pci_dev *vmm_virtio_pci_dev(struct vmm_virtio_pci *vp);

/* Counters of a transport. */
struct vmm_virtio_pci_stats {
    uint32_t size;            /* sizeof(struct vmm_virtio_pci_stats); growth convention (abi.h) */
    uint64_t notifies;        /* queue notifications handed to the device */
    uint64_t notify_exits;    /* notification writes that reached the BAR (no ioeventfd) */
    uint64_t msix_interrupts; /* interrupts sent as MSI-X vectors */
    uint64_t intx_interrupts; /* interrupts sent through INTx and the ISR */
    uint64_t refused_writes;  /* register writes refused */
    uint32_t status;          /* the device status */
};

/* Copy the transport's counters (stats->size set by the caller). Returns 0
 * or -EINVAL. Takes the device lock: not from inside its callbacks. */
VMM_API int vmm_virtio_pci_get_stats(struct vmm_virtio_pci *vp, struct vmm_virtio_pci_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_PCI_H */
