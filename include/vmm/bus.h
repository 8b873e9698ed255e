/* SPDX-License-Identifier: Apache-2.0 */
/*
 * I/O buses: port I/O and MMIO address spaces where devices claim ranges.
 *
 * A VM has one PIO bus and one MMIO bus (vmm_vm_pio_bus / vmm_vm_mmio_bus);
 * its vCPUs dispatch exits to them. A bus can also be created on its own,
 * which the unit tests do.
 *
 * Accesses to addresses no device claims never fail the VM: writes are
 * dropped, reads return all ones, and both are counted (vmm_bus_get_stats);
 * the first few are logged at debug level.
 *
 * Thread-safety: dispatch runs concurrently from many vCPU threads.
 * Registering and unregistering may happen from any thread at any time;
 * when vmm_bus_unregister returns, no call into that device's callbacks is in
 * progress or will start. The bus holds no lock while a callback runs: a
 * callback that blocks delays neither calls to other devices nor registering
 * and unregistering them; only unregistering its own device waits for it.
 * A callback must not register or unregister on the bus that called it (that
 * returns -EDEADLK).
 */
#ifndef VMM_BUS_H
#define VMM_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_bus;

/*
 * Device callbacks. offset is relative to the registered base; len is 1, 2, 4
 * or 8 (whatever the guest's instruction used). data is little-endian guest
 * order. read must fill all len bytes. Both run on a vCPU thread; they should
 * be quick and must be thread-safe when more than one vCPU can reach them.
 * Either may be NULL (reads then give all ones, writes are dropped).
 */
struct vmm_bus_ops {
    uint32_t size; /* sizeof(struct vmm_bus_ops); growth convention (abi.h) */
    void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
    void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

/* Counters of accesses nobody claimed. */
struct vmm_bus_stats {
    uint32_t size; /* sizeof(struct vmm_bus_stats); growth convention (abi.h) */
    uint64_t unclaimed_reads;
    uint64_t unclaimed_writes;
    uint64_t last_unclaimed_addr; /* the most recent unclaimed address */
};

/* Create an empty bus; name ("pio", "mmio") is used in log lines and copied.
 * Returns 0 or -ENOMEM. */
VMM_API VMM_MUST_USE int vmm_bus_create(const char *name, struct vmm_bus **out);

/* Free a bus and its registrations (never calls a callback). Accepts NULL. */
VMM_API void vmm_bus_destroy(struct vmm_bus *bus);

/*
 * Claim [base, base + len) for a device. ops is copied (its first ops->size
 * bytes; a callback an older table lacks is NULL), so it may be temporary.
 * Returns 0, -EINVAL (ops NULL, an ops->size the library does not know, len
 * 0 or base + len overflows: nothing registered), -EEXIST (overlaps a registered range),
 * -ENOMEM, or -EDEADLK (called from a callback of this bus).
 */
VMM_API VMM_MUST_USE int vmm_bus_register(struct vmm_bus *bus, uint64_t base, uint64_t len,
                                          const struct vmm_bus_ops *ops, void *opaque);

/* Release the range registered at base: new accesses stop reaching the
 * device at once, then this waits for the calls into it already in progress
 * (and only those) to finish. Returns 0, -ENOENT or -EDEADLK. */
VMM_API int vmm_bus_unregister(struct vmm_bus *bus, uint64_t base);

/*
 * Dispatch an access. Returns 0 when a device claimed it, -ENOENT when none
 * did (the read then returns all ones and the counter moves), -EINVAL for
 * len outside 1..8 or an access that runs off the end of the device's range.
 */
VMM_API int vmm_bus_read(struct vmm_bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
VMM_API int vmm_bus_write(struct vmm_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

/* Copy the unclaimed-access counters into *stats, whose .size the caller has
 * set (abi.h). Returns 0, or -EINVAL (NULL, or a size the library does not
 * know: nothing is written). */
VMM_API int vmm_bus_get_stats(struct vmm_bus *bus, struct vmm_bus_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_BUS_H */
