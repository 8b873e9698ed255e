/* SPDX-License-Identifier: Apache-2.0 */
/* The exit device: a guest writes its status byte to one port to end the run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "vmm_internal.h"

struct vmm_exit_device {
    vmm_device_exit_fn request_exit;
    void *opaque;
};

static void exit_dev_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
}

static void exit_dev_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_exit_device *dev = opaque;
    /* Wider writes (outw/outl) count by their low byte, as a status byte
     * is all the device defines. */
    if (len == 0 || offset != 0 || !dev->request_exit)
        return; /* ports 1-3 exist only so a 2- or 4-byte write at 0 lands */
    uint8_t status = data[0];
    char detail[64];
    snprintf(detail, sizeof(detail), "guest wrote %u to the exit port", status);
    dev->request_exit(dev->opaque, VMM_EXIT_GUEST_EXIT, status, detail);
}

static const struct vmm_bus_ops exit_dev_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = exit_dev_read,
    .write = exit_dev_write,
};

const struct vmm_bus_ops *vmm_exit_device_bus_ops(void)
{
    return &exit_dev_ops;
}

int vmm_exit_device_create(vmm_device_exit_fn request_exit, void *opaque,
                           struct vmm_exit_device **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_exit_device *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    *dev = (struct vmm_exit_device){.request_exit = request_exit, .opaque = opaque};
    *out = dev;
    return 0;
}

void vmm_exit_device_destroy(struct vmm_exit_device *dev)
{
    free(dev);
}

static void exit_dev_free(void *dev)
{
    vmm_exit_device_destroy(dev);
}

int vmm_vm_add_exit_device(struct vmm_vm *vm, uint16_t port)
{
    if (!vm)
        return -EINVAL;
    struct vmm_exit_device *dev;
    int r = vmm_exit_device_create(devices_vm_request_exit, vm, &dev);
    if (r < 0)
        return r;
    /* Four ports, so outw/outl to the port (as kvm-unit-tests-style guests
     * do) reach the device instead of running off its end. */
    const struct devices_pio_range range = {port, VMM_EXIT_DEVICE_PORTS, &exit_dev_ops};
    return devices_vm_attach_pio(vm, "exit device", dev, exit_dev_free, &range, 1);
}
