/* SPDX-License-Identifier: Apache-2.0 */
/* What the platform devices share: putting a standalone device on a VM. */
#ifndef VMM_DEVICES_INTERNAL_H
#define VMM_DEVICES_INTERNAL_H

#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

/* The most ranges one device claims through devices_vm_attach_pio. */
#define DEVICES_MAX_RANGES 2

/* A vmm_device_exit_fn whose opaque is a struct vmm_vm: vmm_vm_request_exit. */
void devices_vm_request_exit(void *vm, enum vmm_exit_reason reason, int status, const char *detail);

/* One range of ports a device claims. */
struct devices_pio_range {
    uint16_t port;
    uint16_t len;
    const struct vmm_bus_ops *ops;
};

/*
 * Claim n ranges (at most DEVICES_MAX_RANGES) of vm's PIO bus for dev (the
 * callbacks' opaque) and tie dev's life to the VM: when the VM is destroyed
 * the ranges are released, then destroy(dev) runs. name prefixes log lines.
 * Returns 0 or -errno (-EEXIST: a port is taken, logged); on failure nothing
 * stays claimed and destroy(dev) has run.
 */
int devices_vm_attach_pio(struct vmm_vm *vm, const char *name, void *dev,
                          void (*destroy)(void *dev), const struct devices_pio_range *ranges,
                          unsigned n);

#endif /* VMM_DEVICES_INTERNAL_H */
