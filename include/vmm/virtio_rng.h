/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-rng (virtio 1.2 section 5.4, device type 4): an entropy device that
 * fills the guest's buffers from getrandom(2), optionally rate limited. */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Configuration of an entropy device. Growth convention (abi.h). */
struct vmm_virtio_rng_config {
    uint32_t size; /* sizeof(struct vmm_virtio_rng_config) */
    /* Bytes per second the guest may draw (token bucket with one second of
     * burst); 0: unlimited. */
    uint64_t rate_limit;
    unsigned queue_size; /* default 256 */
};

/*
 * Describe an entropy device for a transport: fills *dev, whose .size the
 * caller has set (abi.h; its opaque is a new device that the transport frees
 * through ops->destroy; if *dev is never handed to a transport, free it with
 * vmm_virtio_device_free). cfg may be NULL. Returns 0, -EINVAL (also a
 * cfg->size or dev->size the library does not know) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_virtio_rng_create(const struct vmm_virtio_rng_config *cfg,
                                               struct vmm_virtio_device *dev);

/* Create an entropy device and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). cfg may be NULL. out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_rng(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                               const struct vmm_virtio_rng_config *cfg,
                                               struct vmm_virtio_mmio **out);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_RNG_H */
