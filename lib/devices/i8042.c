/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal i8042 keyboard controller: just enough for the reset line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "vmm_internal.h"

/*
 * Deliberately minimal: no keyboard, no aux port, no command byte. The status
 * register always reads 0: output buffer empty (so Linux's i8042_flush finds
 * nothing to drain) and input buffer empty (so kb_wait before the reboot=k
 * pulse, and i8042_wait_write, never spin). Commands that expect a reply
 * (e.g. 0x20, read CTR) then time out in the guest, which concludes there is
 * no usable controller and moves on. Only 0xfe, pulse the reset line, acts.
 */

struct vmm_i8042 {
    vmm_device_exit_fn request_exit;
    void *opaque;
};

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
    struct vmm_i8042 *i8042 = opaque;
    if (len == 0)
        return;
    if (data[0] == VMM_I8042_RESET) {
        if (i8042->request_exit)
            i8042->request_exit(i8042->opaque, VMM_EXIT_RESET, 0, "i8042 reset");
        return;
    }
    vmm_log_debug("i8042: command 0x%02x ignored", data[0]);
}

static const struct vmm_bus_ops i8042_data_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = i8042_read,
    .write = i8042_data_write,
};

static const struct vmm_bus_ops i8042_command_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = i8042_read,
    .write = i8042_command_write,
};

const struct vmm_bus_ops *vmm_i8042_data_bus_ops(void)
{
    return &i8042_data_ops;
}

const struct vmm_bus_ops *vmm_i8042_command_bus_ops(void)
{
    return &i8042_command_ops;
}

int vmm_i8042_create(vmm_device_exit_fn request_exit, void *opaque, struct vmm_i8042 **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_i8042 *i8042 = calloc(1, sizeof(*i8042));
    if (!i8042)
        return -ENOMEM;
    *i8042 = (struct vmm_i8042){.request_exit = request_exit, .opaque = opaque};
    *out = i8042;
    return 0;
}

void vmm_i8042_destroy(struct vmm_i8042 *i8042)
{
    free(i8042);
}

static void i8042_free(void *i8042)
{
    vmm_i8042_destroy(i8042);
}

int vmm_vm_add_i8042(struct vmm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    struct vmm_i8042 *i8042;
    int r = vmm_i8042_create(devices_vm_request_exit, vm, &i8042);
    if (r < 0)
        return r;
    /* Two registrations: 0x61-0x63 in between belong to other devices. */
    const struct devices_pio_range ranges[] = {
        {VMM_I8042_PORT, 1, &i8042_data_ops},
        {VMM_I8042_COMMAND_PORT, 1, &i8042_command_ops},
    };
    return devices_vm_attach_pio(vm, "i8042", i8042, i8042_free, ranges, 2);
}
