/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal i8042 keyboard controller: just enough for the reset line. */
#include <errno.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

#include "vmm_internal.h"

/*
 * Deliberately minimal: no keyboard, no aux port, no command byte. The status
 * register always reads 0: output buffer empty (so Linux's i8042_flush finds
 * nothing to drain) and input buffer empty (so kb_wait before the reboot=k
 * pulse, and i8042_wait_write, never spin). Commands that expect a reply
 * (e.g. 0x20, read CTR) then time out in the guest, which concludes there is
 * no usable controller and moves on. Only 0xfe, pulse the reset line, acts.
 */

#define I8042_DATA_PORT    VMM_I8042_PORT
#define I8042_COMMAND_PORT 0x64

static void i8042_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
}

static void i8042_data_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    if (len)
        vmm_log_debug("i8042: data 0x%02x ignored", data[0]);
}

static void i8042_command_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_vm *vm = opaque;
    if (len == 0)
        return;
    if (data[0] == VMM_I8042_RESET) {
        vmm_vm_request_exit(vm, VMM_EXIT_RESET, 0, "i8042 reset");
        return;
    }
    vmm_log_debug("i8042: command 0x%02x ignored", data[0]);
}

static const struct vmm_bus_ops i8042_data_ops = {
    .read = i8042_read,
    .write = i8042_data_write,
};

static const struct vmm_bus_ops i8042_command_ops = {
    .read = i8042_read,
    .write = i8042_command_write,
};

int vmm_vm_add_i8042(struct vmm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    struct vmm_bus *pio = vmm_vm_pio_bus(vm);
    /* Two registrations: 0x61-0x63 in between belong to other devices. */
    int r = vmm_bus_register(pio, I8042_DATA_PORT, 1, &i8042_data_ops, vm);
    if (r < 0)
        goto err;
    r = vmm_bus_register(pio, I8042_COMMAND_PORT, 1, &i8042_command_ops, vm);
    if (r < 0) {
        vmm_bus_unregister(pio, I8042_DATA_PORT);
        goto err;
    }
    return 0;
err:
    vmm_log_error("i8042: cannot claim ports 0x60/0x64: %s", vmm_strerror(r));
    return r;
}
