/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registers a hardware-reduced ACPI FADT points at instead of PM1 blocks:
 * SLEEP_CONTROL_REG and SLEEP_STATUS_REG (one byte at VMM_ACPI_SLEEP_PORT) and
 * RESET_REG (one byte at VMM_ACPI_RESET_PORT).
 *
 * Sleep control (ACPI 6.x, 4.8.3.7): bit 5 SLP_EN, bits 4:2 SLP_TYPx. Entering
 * S5 (SLP_TYP = VMM_ACPI_S5_TYPE with SLP_EN) asks for the run to end with
 * VMM_EXIT_POWEROFF. Other sleep states are not offered in the DSDT; a
 * request for one is logged and ignored. Sleep status reads WAK_STS (bit 7)
 * set, so a guest polling for wake-up does not spin. Writing RESET_VALUE to
 * the reset register asks for VMM_EXIT_RESET.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "vmm_internal.h"

#define SLP_EN     (1u << 5)
#define SLP_TYP(v) (((v) >> 2) & 0x7u)
#define WAK_STS    (1u << 7)

struct vmm_acpi_pm {
    vmm_device_exit_fn request_exit;
    void *opaque;
};

static void sleep_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
    if (len)
        data[0] = WAK_STS;
}

static void sleep_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_acpi_pm *pm = opaque;
    if (len == 0 || !(data[0] & SLP_EN))
        return;
    unsigned type = SLP_TYP(data[0]);
    if (type == VMM_ACPI_S5_TYPE) {
        if (pm->request_exit)
            pm->request_exit(pm->opaque, VMM_EXIT_POWEROFF, 0, "ACPI S5 (power off)");
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
    struct vmm_acpi_pm *pm = opaque;
    if (len && data[0] == VMM_ACPI_RESET_VALUE && pm->request_exit)
        pm->request_exit(pm->opaque, VMM_EXIT_RESET, 0, "ACPI reset register");
}

static const struct vmm_bus_ops sleep_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = sleep_read, .write = sleep_write};
static const struct vmm_bus_ops reset_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = reset_read, .write = reset_write};

const struct vmm_bus_ops *vmm_acpi_pm_sleep_bus_ops(void)
{
    return &sleep_ops;
}

const struct vmm_bus_ops *vmm_acpi_pm_reset_bus_ops(void)
{
    return &reset_ops;
}

int vmm_acpi_pm_create(vmm_device_exit_fn request_exit, void *opaque, struct vmm_acpi_pm **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_acpi_pm *pm = calloc(1, sizeof(*pm));
    if (!pm)
        return -ENOMEM;
    *pm = (struct vmm_acpi_pm){.request_exit = request_exit, .opaque = opaque};
    *out = pm;
    return 0;
}

void vmm_acpi_pm_destroy(struct vmm_acpi_pm *pm)
{
    free(pm);
}

static void acpi_pm_free(void *pm)
{
    vmm_acpi_pm_destroy(pm);
}

int vmm_vm_add_acpi_pm(struct vmm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    struct vmm_acpi_pm *pm;
    int r = vmm_acpi_pm_create(devices_vm_request_exit, vm, &pm);
    if (r < 0)
        return r;
    const struct devices_pio_range ranges[] = {
        {VMM_ACPI_SLEEP_PORT, 1, &sleep_ops},
        {VMM_ACPI_RESET_PORT, 1, &reset_ops},
    };
    return devices_vm_attach_pio(vm, "acpi", pm, acpi_pm_free, ranges, 2);
}
