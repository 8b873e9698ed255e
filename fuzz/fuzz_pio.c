/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The platform devices' register interfaces as a guest reaches them: the
 * 16550A UART (with host input arriving between accesses and its interrupt
 * line followed), the split irqchip's IOAPIC (with lines raised and EOIs
 * from the local APIC), the CMOS RTC, the i8042 and the ACPI sleep and reset
 * registers. The input is a program of accesses of any width (1, 2, 4, 8)
 * at any offset of each device's window, plus host-side events.
 *
 * Checked: no memory error or UB; the UART's interrupt line only changes
 * level when it reports a change, and the IOAPIC only routes its 24 pins.
 */
#include <errno.h>
#include <vmm/bus.h>
#include <vmm/devices.h>

#include "cpu/x86_64/arch.h"
#include "fuzz_common.h"

enum op {
    OP_UART_READ,
    OP_UART_WRITE,
    OP_UART_RECEIVE,
    OP_IOAPIC_READ,
    OP_IOAPIC_WRITE,
    OP_IOAPIC_LINE,
    OP_IOAPIC_EOI,
    OP_RTC_READ,
    OP_RTC_WRITE,
    OP_I8042_READ,
    OP_I8042_WRITE,
    OP_PM_WRITE,
    OP_PM_READ,
    OP_COUNT
};

struct fuzz_pio {
    bool irq_level;
    unsigned irq_changes;
    unsigned msis, route_sets, exits;
};

static void uart_irq(void *opaque, bool level)
{
    struct fuzz_pio *f = opaque;
    /* The line is driven only on a change of level. */
    FZ_CHECK(level != f->irq_level);
    f->irq_level = level;
    f->irq_changes++;
}

static int signal_msi(void *opaque, uint64_t address, uint32_t data)
{
    (void)address;
    (void)data;
    ((struct fuzz_pio *)opaque)->msis++;
    return 0;
}

static int set_routes(void *opaque, const uint64_t *address, const uint32_t *data,
                      const bool *valid, unsigned n)
{
    (void)address;
    (void)data;
    (void)valid;
    FZ_CHECK(n <= VMM_IOAPIC_PINS);
    ((struct fuzz_pio *)opaque)->route_sets++;
    return 0;
}

static void on_exit_request(void *opaque, enum vmm_exit_reason reason, int status,
                            const char *detail)
{
    (void)reason;
    (void)status;
    FZ_CHECK(detail != NULL);
    ((struct fuzz_pio *)opaque)->exits++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t widths[4] = {1, 2, 4, 8};
    static bool logs_set;
    if (!logs_set) {
        fz_quiet_logs();
        logs_set = true;
    }
    struct fuzz_pio f = {0};
    struct vmm_uart *uart;
    struct vmm_uart_config uc = VMM_INIT(struct vmm_uart_config, .out_fd = -1, .in_fd = -1,
                                         .set_irq = uart_irq, .irq_opaque = &f);
    FZ_CHECK(vmm_uart_create(&uc, &uart) == 0);
    struct vmm_ioapic *ioapic;
    struct vmm_ioapic_backend be = {
        .signal_msi = signal_msi, .set_routes = set_routes, .opaque = &f};
    FZ_CHECK(vmm_ioapic_create(&be, &ioapic) == 0);
    struct vmm_rtc *rtc;
    FZ_CHECK(vmm_rtc_create(&rtc) == 0);
    struct vmm_i8042 *i8042;
    FZ_CHECK(vmm_i8042_create(on_exit_request, &f, &i8042) == 0);
    struct vmm_acpi_pm *pm;
    FZ_CHECK(vmm_acpi_pm_create(on_exit_request, &f, &pm) == 0);

    struct fz in = {data, size};
    uint8_t buf[8];
    for (unsigned steps = 0; fz_more(&in) && steps < 4096; steps++) {
        uint8_t op = fz_u8(&in) % OP_COUNT;
        uint8_t off = fz_u8(&in);
        uint32_t len = widths[fz_u8(&in) % 4];
        uint64_t v = fz_u64(&in);
        memcpy(buf, &v, sizeof(buf));
        switch (op) {
        case OP_UART_READ:
            vmm_uart_bus_ops()->read(uart, off % 8, buf, len);
            break;
        case OP_UART_WRITE:
            vmm_uart_bus_ops()->write(uart, off % 8, buf, len);
            break;
        case OP_UART_RECEIVE:
            (void)vmm_uart_receive(uart, buf, len);
            break;
        case OP_IOAPIC_READ:
            vmm_ioapic_bus_ops()->read(ioapic, off % 0x20, buf, len);
            break;
        case OP_IOAPIC_WRITE:
            vmm_ioapic_bus_ops()->write(ioapic, off % 0x20, buf, len);
            break;
        case OP_IOAPIC_LINE: {
            int r = vmm_ioapic_set_irq(ioapic, off % 32, v & 1);
            FZ_CHECK(r == 0 || (r == -EINVAL && off % 32 >= VMM_IOAPIC_PINS));
            break;
        }
        case OP_IOAPIC_EOI:
            vmm_ioapic_eoi(ioapic, (uint8_t)v);
            break;
        case OP_RTC_READ:
            vmm_rtc_bus_ops()->read(rtc, off % VMM_RTC_PORTS, buf, len);
            break;
        case OP_RTC_WRITE:
            vmm_rtc_bus_ops()->write(rtc, off % VMM_RTC_PORTS, buf, len);
            break;
        case OP_I8042_READ:
            if (off & 1)
                vmm_i8042_command_bus_ops()->read(i8042, 0, buf, len);
            else
                vmm_i8042_data_bus_ops()->read(i8042, 0, buf, len);
            break;
        case OP_I8042_WRITE:
            if (off & 1)
                vmm_i8042_command_bus_ops()->write(i8042, 0, buf, len);
            else
                vmm_i8042_data_bus_ops()->write(i8042, 0, buf, len);
            break;
        case OP_PM_WRITE:
            if (off & 1)
                vmm_acpi_pm_reset_bus_ops()->write(pm, 0, buf, len);
            else
                vmm_acpi_pm_sleep_bus_ops()->write(pm, 0, buf, len);
            break;
        case OP_PM_READ:
            if (off & 1)
                vmm_acpi_pm_reset_bus_ops()->read(pm, 0, buf, len);
            else
                vmm_acpi_pm_sleep_bus_ops()->read(pm, 0, buf, len);
            break;
        }
    }

    vmm_acpi_pm_destroy(pm);
    vmm_i8042_destroy(i8042);
    vmm_rtc_destroy(rtc);
    vmm_ioapic_destroy(ioapic);
    vmm_uart_destroy(uart);
    return 0;
}
