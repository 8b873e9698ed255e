/* SPDX-License-Identifier: Apache-2.0 */
/* The exit device: a guest writes its status byte to one port to end the run. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

#include "vmm_internal.h"

static void exit_dev_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
}

static void exit_dev_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_vm *vm = opaque;
    /* Wider writes (outw/outl) count by their low byte, as a status byte
     * is all the device defines. */
    if (len == 0 || offset != 0)
        return; /* ports 1-3 exist only so a 2- or 4-byte write at 0 lands */
    uint8_t status = data[0];
    char detail[64];
    snprintf(detail, sizeof(detail), "guest wrote %u to the exit port", status);
    vmm_vm_request_exit(vm, VMM_EXIT_GUEST_EXIT, status, detail);
}

static const struct vmm_bus_ops exit_dev_ops = {
    .read = exit_dev_read,
    .write = exit_dev_write,
};

int vmm_vm_add_exit_device(struct vmm_vm *vm, uint16_t port)
{
    if (!vm)
        return -EINVAL;
    /* No state of its own: the bus registration dies with the VM's bus.
     * Four ports, so outw/outl to the port (as kvm-unit-tests-style guests
     * do) reach the device instead of running off its end. */
    int r = vmm_bus_register(vmm_vm_pio_bus(vm), port, 4, &exit_dev_ops, vm);
    if (r < 0)
        vmm_log_error("exit device: cannot claim port 0x%x: %s", port, vmm_strerror(r));
    return r;
}
