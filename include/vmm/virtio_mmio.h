/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-mmio transport (version 2, virtio 1.2 section 4.2.2). It puts a
 * device model (struct vmm_virtio_device, virtio.h) behind a 4 KiB register
 * window, either on a VM (vmm_vm_add_virtio_mmio: MMIO bus, ioeventfds,
 * irqfd, event loop) or standalone on a bus of the caller's. The register
 * layout is the specification's and stays private to the library.
 */
#ifndef VMM_VIRTIO_MMIO_H
#define VMM_VIRTIO_MMIO_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/error.h>
#include <vmm/event.h>
#include <vmm/machine.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_virtio_mmio;

/* Size of a virtio-mmio register window. */
#define VMM_VIRTIO_MMIO_SIZE 0x1000

/*
 * A standalone transport (not on a VM): the caller registers
 * vmm_virtio_mmio_bus_ops() at base on some bus, and provides the interrupt.
 * Used by the unit tests and by embedders with their own machine model.
 * Zero means default; growth convention (abi.h).
 */
struct vmm_virtio_mmio_config {
    uint32_t size;               /* sizeof(struct vmm_virtio_mmio_config) */
    uint64_t base;               /* guest-physical base (for vmm_virtio_mmio_info) */
    unsigned gsi;                /* interrupt line (for vmm_virtio_mmio_info) */
    struct vmm_memory *mem;      /* guest memory (borrowed), required */
    struct vmm_event_loop *loop; /* borrowed; NULL: QueueNotify calls the
                                    device's queue_notify on the vCPU thread */
    /* Raise the device's interrupt (an edge); NULL: none. Called with the
     * device lock held. */
    void (*interrupt)(void *opaque);
    void *irq_opaque;
};

/*
 * Create a transport for dev (copied). Calls dev->ops->attach. On success
 * the transport owns the device (destroy calls its reset and destroy); on
 * failure dev->ops->destroy has been called too, unless dev->size or
 * dev->ops->size is one the library does not know (abi.h: nothing is
 * called then). Returns 0, -EINVAL (bad device description, a size the
 * library does not know in cfg, dev or its ops) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_virtio_mmio_create(const struct vmm_virtio_mmio_config *cfg,
                                                const struct vmm_virtio_device *dev,
                                                struct vmm_virtio_mmio **out);

/* Reset and free a standalone transport and its device (unregister it from
 * its bus first). Accepts NULL. */
VMM_API void vmm_virtio_mmio_destroy(struct vmm_virtio_mmio *mmio);

/* The bus callbacks (opaque = the transport), covering VMM_VIRTIO_MMIO_SIZE
 * bytes. Registers are 32-bit: other widths read as 0 and are ignored on
 * write (logged), except in the configuration space, which takes 1, 2, 4
 * and 8-byte accesses. */
VMM_API const struct vmm_bus_ops *vmm_virtio_mmio_bus_ops(void);

/* The transport's generic handle (what the device got in attach). */
VMM_API struct vmm_virtio_transport *vmm_virtio_mmio_transport(struct vmm_virtio_mmio *mmio);

/*
 * Put dev on a virtio-mmio transport on vm: registers the window at base on
 * the VM's MMIO bus, connects an irqfd to gsi, watches one eventfd per queue
 * on the VM's event loop and binds each to QueueNotify through an ioeventfd
 * (datamatch = the queue index) while the queue is ready. The VM owns the
 * result (torn down in vmm_vm_destroy). Call before vmm_vm_run (the run
 * starts the event loop thread only if the loop has fds then), after the
 * VM's memory is set up. On failure the device has been destroyed. Returns 0, -EINVAL, -EEXIST
 * (window taken), -ENOMEM or a -errno from KVM. out may be NULL.
 */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_mmio(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                                const struct vmm_virtio_device *dev,
                                                struct vmm_virtio_mmio **out);

/* Describe the transport's window for struct vmm_machine (base, size, gsi). */
VMM_API void vmm_virtio_mmio_info(const struct vmm_virtio_mmio *mmio,
                                  struct vmm_machine_virtio *info);

/* Append the transport to machine->virtio[] so firmware tables describe it.
 * Returns 0, -EINVAL (a machine->size the library does not know, abi.h) or
 * -ENOSPC (VMM_MACHINE_MAX_VIRTIO reached). */
VMM_API VMM_MUST_USE int vmm_virtio_mmio_add_to_machine(const struct vmm_virtio_mmio *mmio,
                                                        struct vmm_machine *machine);

/*
 * Write the Linux kernel command-line fragment for every virtio-mmio device
 * of machine: "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=..."
 * (sizes in K/M when they divide evenly, separated by single spaces, no
 * trailing space; empty when there are none). Returns the length written
 * (without the NUL), -EINVAL (a machine->size the library does not know,
 * abi.h: buf untouched), or -ENOSPC when it does not fit in size bytes (buf
 * then holds an empty string when size > 0).
 */
VMM_API VMM_MUST_USE int vmm_virtio_mmio_cmdline(const struct vmm_machine *machine, char *buf,
                                                 size_t size);

/* Counters of a transport. */
struct vmm_virtio_mmio_stats {
    uint32_t size;           /* sizeof(struct vmm_virtio_mmio_stats); growth convention (abi.h) */
    uint64_t notifies;       /* queue notifications handled */
    uint64_t interrupts;     /* interrupts raised (either cause) */
    uint64_t refused_writes; /* register writes refused by the state machine */
    uint32_t status;         /* the device status register */
    uint64_t notify_exits;   /* QueueNotify writes that reached the bus (not
                                caught by an ioeventfd) */
};

/* Copy the transport's counters into *stats, whose .size the caller has set
 * (abi.h). Returns 0, or -EINVAL (NULL, or a size the library does not know:
 * nothing is written). Takes the device lock: any thread, but not from
 * inside the device's callbacks. */
VMM_API int vmm_virtio_mmio_get_stats(struct vmm_virtio_mmio *mmio,
                                      struct vmm_virtio_mmio_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_MMIO_H */
