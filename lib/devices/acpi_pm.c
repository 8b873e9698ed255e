/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registers a hardware-reduced ACPI FADT points at instead of PM1 blocks:
 * SLEEP_CONTROL_REG and SLEEP_STATUS_REG (one byte at VMM_ACPI_SLEEP_PORT) and
 * RESET_REG (one byte at VMM_ACPI_RESET_PORT).
 *
 * Sleep control (ACPI 6.x, 4.8.3.7): bit 5 SLP_EN, bits 4:2 SLP_TYPx. Entering
 * S5 (SLP_TYP = VMM_ACPI_S5_TYPE with SLP_EN) ends the run with
 * VMM_EXIT_POWEROFF. Other sleep states are not offered in the DSDT; a
 * request for one is logged and ignored. Sleep status reads WAK_STS (bit 7)
 * set, so a guest polling for wake-up does not spin. Writing RESET_VALUE to
 * the reset register ends the run with VMM_EXIT_RESET.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/vm.h>

#include "vmm_internal.h"

#define SLP_EN     (1u << 5)
#define SLP_TYP(v) (((v) >> 2) & 0x7u)
#define WAK_STS    (1u << 7)

static void sleep_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
    if (len)
        data[0] = WAK_STS;
}

static void sleep_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_vm *vm = opaque;
    if (len == 0 || !(data[0] & SLP_EN))
        return;
    unsigned type = SLP_TYP(data[0]);
    if (type == VMM_ACPI_S5_TYPE) {
        vmm_vm_request_exit(vm, VMM_EXIT_POWEROFF, 0, "ACPI S5 (power off)");
        return;
    }
    vmm_log_warn("acpi: sleep type %u requested; only S5 is supported", type);
}

static void reset_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
}

static void reset_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_vm *vm = opaque;
    if (len && data[0] == VMM_ACPI_RESET_VALUE)
        vmm_vm_request_exit(vm, VMM_EXIT_RESET, 0, "ACPI reset register");
}

static const struct vmm_bus_ops sleep_ops = {.read = sleep_read, .write = sleep_write};
static const struct vmm_bus_ops reset_ops = {.read = reset_read, .write = reset_write};

int vmm_vm_add_acpi_pm(struct vmm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    struct vmm_bus *pio = vmm_vm_pio_bus(vm);
    int r = vmm_bus_register(pio, VMM_ACPI_SLEEP_PORT, 1, &sleep_ops, vm);
    if (r < 0)
        goto err;
    r = vmm_bus_register(pio, VMM_ACPI_RESET_PORT, 1, &reset_ops, vm);
    if (r < 0) {
        vmm_bus_unregister(pio, VMM_ACPI_SLEEP_PORT);
        goto err;
    }
    return 0;
err:
    vmm_log_error("acpi: cannot claim ports 0x%x/0x%x: %s", VMM_ACPI_SLEEP_PORT,
                  VMM_ACPI_RESET_PORT, vmm_strerror(r));
    return r;
}
