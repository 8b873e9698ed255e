/* SPDX-License-Identifier: Apache-2.0 */
/* The devices through which a guest ends the run (exit device, i8042 reset
 * line, ACPI sleep and reset registers), standalone on a plain bus: no VM,
 * no /dev/kvm. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/vm.h>

#include "check_compat.h"

/* Every request a device made, the last one in full. */
struct requests {
    unsigned count;
    enum vmm_exit_reason reason;
    int status;
    char detail[128];
};

static void record_exit(void *opaque, enum vmm_exit_reason reason, int status, const char *detail)
{
    struct requests *req = opaque;
    req->count++;
    req->reason = reason;
    req->status = status;
    snprintf(req->detail, sizeof(req->detail), "%s", detail ? detail : "");
}

static struct vmm_bus *bus;
static struct requests req;

static void setup(void)
{
    memset(&req, 0, sizeof(req));
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
}

static void teardown(void)
{
    vmm_bus_destroy(bus);
    bus = NULL;
}

static uint64_t rd(uint16_t port, uint32_t len)
{
    uint64_t v = 0x5a5a5a5a5a5a5a5a;
    ck_assert_int_eq(vmm_bus_read(bus, port, (uint8_t *)&v, len), 0);
    return len == 8 ? v : v & ((UINT64_C(1) << (8 * len)) - 1);
}

static void wr(uint16_t port, uint64_t v, uint32_t len)
{
    ck_assert_int_eq(vmm_bus_write(bus, port, (const uint8_t *)&v, len), 0);
}

/* Warnings the library logged, to see a refused request leave a trace. */
static unsigned warnings;

static void count_warnings(void *opaque, enum vmm_log_level level, const char *msg)
{
    if (level == VMM_LOG_WARN)
        warnings++;
}

/* ---- exit device ---- */

START_TEST(test_exit_device)
{
    struct vmm_exit_device *dev = NULL;
    ck_assert_int_eq(vmm_exit_device_create(record_exit, &req, NULL), -EINVAL);
    ck_assert_int_eq(vmm_exit_device_create(record_exit, &req, &dev), 0);
    ck_assert_int_eq(
        vmm_bus_register(bus, VMM_EXIT_PORT, VMM_EXIT_DEVICE_PORTS, vmm_exit_device_bus_ops(), dev),
        0);

    /* Reads say nothing, at any width. */
    ck_assert_uint_eq(rd(VMM_EXIT_PORT, 1), 0);
    ck_assert_uint_eq(rd(VMM_EXIT_PORT, 4), 0);
    ck_assert_uint_eq(rd(VMM_EXIT_PORT + 3, 1), 0);
    ck_assert_uint_eq(req.count, 0);

    wr(VMM_EXIT_PORT, 42, 1);
    ck_assert_uint_eq(req.count, 1);
    ck_assert_int_eq(req.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(req.status, 42);
    ck_assert_str_eq(req.detail, "guest wrote 42 to the exit port");

    /* outw/outl count by their low byte; each write is a request of its own
     * (which one wins is the machine's business, not the device's). */
    wr(VMM_EXIT_PORT, 0x1234, 2);
    ck_assert_uint_eq(req.count, 2);
    ck_assert_int_eq(req.status, 0x34);
    wr(VMM_EXIT_PORT, 0xdeadbe01, 4);
    ck_assert_uint_eq(req.count, 3);
    ck_assert_int_eq(req.status, 1);

    /* The other ports only catch the tail of a wide write. */
    wr(VMM_EXIT_PORT + 1, 7, 1);
    wr(VMM_EXIT_PORT + 2, 7, 2);
    ck_assert_uint_eq(req.count, 3);
    /* An 8-byte write runs off the device: the bus refuses it. */
    uint64_t v = 9;
    ck_assert_int_eq(vmm_bus_write(bus, VMM_EXIT_PORT, (uint8_t *)&v, 8), -EINVAL);
    ck_assert_uint_eq(req.count, 3);

    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_EXIT_PORT), 0);
    vmm_exit_device_destroy(dev);
    vmm_exit_device_destroy(NULL);
}
END_TEST

START_TEST(test_exit_device_without_handler)
{
    struct vmm_exit_device *dev = NULL;
    ck_assert_int_eq(vmm_exit_device_create(NULL, NULL, &dev), 0);
    ck_assert_int_eq(
        vmm_bus_register(bus, 0x500, VMM_EXIT_DEVICE_PORTS, vmm_exit_device_bus_ops(), dev), 0);
    wr(0x500, 3, 1); /* dropped */
    ck_assert_uint_eq(rd(0x500, 1), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x500), 0);
    vmm_exit_device_destroy(dev);
}
END_TEST

/* Two exit devices, two machines: each reports to its own handler. */
START_TEST(test_exit_devices_apart)
{
    struct requests other = {0};
    struct vmm_exit_device *a = NULL, *b = NULL;
    ck_assert_int_eq(vmm_exit_device_create(record_exit, &req, &a), 0);
    ck_assert_int_eq(vmm_exit_device_create(record_exit, &other, &b), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0xf4, 4, vmm_exit_device_bus_ops(), a), 0);
    ck_assert_int_eq(vmm_bus_register(bus, 0x504, 4, vmm_exit_device_bus_ops(), b), 0);
    wr(0x504, 5, 1);
    ck_assert_uint_eq(req.count, 0);
    ck_assert_uint_eq(other.count, 1);
    ck_assert_int_eq(other.status, 5);
    wr(0xf4, 6, 1);
    ck_assert_uint_eq(req.count, 1);
    ck_assert_int_eq(req.status, 6);
    ck_assert_uint_eq(other.count, 1);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x504), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0xf4), 0);
    vmm_exit_device_destroy(b);
    vmm_exit_device_destroy(a);
}
END_TEST

/* ---- i8042 ---- */

static struct vmm_i8042 *add_i8042(vmm_device_exit_fn fn)
{
    struct vmm_i8042 *i8042 = NULL;
    ck_assert_int_eq(vmm_i8042_create(fn, &req, &i8042), 0);
    ck_assert_int_eq(vmm_bus_register(bus, VMM_I8042_PORT, 1, vmm_i8042_data_bus_ops(), i8042), 0);
    ck_assert_int_eq(
        vmm_bus_register(bus, VMM_I8042_COMMAND_PORT, 1, vmm_i8042_command_bus_ops(), i8042), 0);
    return i8042;
}

static void remove_i8042(struct vmm_i8042 *i8042)
{
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_I8042_COMMAND_PORT), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_I8042_PORT), 0);
    vmm_i8042_destroy(i8042);
}

START_TEST(test_i8042)
{
    struct vmm_i8042 *i8042 = NULL;
    ck_assert_int_eq(vmm_i8042_create(record_exit, &req, NULL), -EINVAL);
    i8042 = add_i8042(record_exit);

    /* Idle: nothing to read, ready for input (kb_wait, i8042_flush). */
    ck_assert_uint_eq(rd(VMM_I8042_COMMAND_PORT, 1), 0);
    ck_assert_uint_eq(rd(VMM_I8042_PORT, 1), 0);
    /* The ports between stay free for other devices. */
    uint8_t v;
    ck_assert_int_eq(vmm_bus_read(bus, VMM_I8042_PORT + 1, &v, 1), -ENOENT);
    ck_assert_int_eq(vmm_bus_read(bus, VMM_I8042_COMMAND_PORT - 1, &v, 1), -ENOENT);

    /* Other commands, and data (the reset command included), are ignored. */
    wr(VMM_I8042_COMMAND_PORT, 0x20, 1);
    wr(VMM_I8042_COMMAND_PORT, 0xad, 1);
    wr(VMM_I8042_PORT, 0xf4, 1);
    wr(VMM_I8042_PORT, VMM_I8042_RESET, 1);
    ck_assert_uint_eq(req.count, 0);
    ck_assert_uint_eq(rd(VMM_I8042_COMMAND_PORT, 1), 0);

    wr(VMM_I8042_COMMAND_PORT, VMM_I8042_RESET, 1);
    ck_assert_uint_eq(req.count, 1);
    ck_assert_int_eq(req.reason, VMM_EXIT_RESET);
    ck_assert_int_eq(req.status, 0);
    ck_assert_str_eq(req.detail, "i8042 reset");
    remove_i8042(i8042);
    vmm_i8042_destroy(NULL);
}
END_TEST

START_TEST(test_i8042_without_handler)
{
    struct vmm_i8042 *i8042 = add_i8042(NULL);
    wr(VMM_I8042_COMMAND_PORT, VMM_I8042_RESET, 1); /* dropped */
    ck_assert_uint_eq(rd(VMM_I8042_COMMAND_PORT, 1), 0);
    ck_assert_uint_eq(req.count, 0);
    remove_i8042(i8042);
}
END_TEST

/* ---- ACPI sleep and reset registers ---- */

#define SLP_EN  0x20
#define WAK_STS 0x80

static struct vmm_acpi_pm *add_acpi_pm(vmm_device_exit_fn fn)
{
    struct vmm_acpi_pm *pm = NULL;
    ck_assert_int_eq(vmm_acpi_pm_create(fn, &req, &pm), 0);
    ck_assert_int_eq(vmm_bus_register(bus, VMM_ACPI_SLEEP_PORT, 1, vmm_acpi_pm_sleep_bus_ops(), pm),
                     0);
    ck_assert_int_eq(vmm_bus_register(bus, VMM_ACPI_RESET_PORT, 1, vmm_acpi_pm_reset_bus_ops(), pm),
                     0);
    return pm;
}

static void remove_acpi_pm(struct vmm_acpi_pm *pm)
{
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_ACPI_RESET_PORT), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_ACPI_SLEEP_PORT), 0);
    vmm_acpi_pm_destroy(pm);
}

START_TEST(test_acpi_pm_poweroff)
{
    struct vmm_acpi_pm *pm = NULL;
    ck_assert_int_eq(vmm_acpi_pm_create(record_exit, &req, NULL), -EINVAL);
    pm = add_acpi_pm(record_exit);
    warnings = 0;
    vmm_log_set_handler(count_warnings, NULL, VMM_LOG_WARN);

    /* Sleep status: awake, so a guest polling WAK_STS does not spin. */
    ck_assert_uint_eq(rd(VMM_ACPI_SLEEP_PORT, 1), WAK_STS);
    ck_assert_uint_eq(rd(VMM_ACPI_RESET_PORT, 1), 0);
    /* SLP_TYP without SLP_EN, another sleep type (logged), a wrong reset
     * value: nothing. */
    wr(VMM_ACPI_SLEEP_PORT, VMM_ACPI_S5_TYPE << 2, 1);
    ck_assert_uint_eq(warnings, 0);
    wr(VMM_ACPI_SLEEP_PORT, (3 << 2) | SLP_EN, 1);
    ck_assert_uint_eq(warnings, 1);
    wr(VMM_ACPI_RESET_PORT, VMM_ACPI_RESET_VALUE + 1, 1);
    ck_assert_uint_eq(req.count, 0);

    /* Linux's hardware-reduced S5: (SLP_TYP << 2) | SLP_EN. */
    wr(VMM_ACPI_SLEEP_PORT, (VMM_ACPI_S5_TYPE << 2) | SLP_EN, 1);
    ck_assert_uint_eq(req.count, 1);
    ck_assert_int_eq(req.reason, VMM_EXIT_POWEROFF);
    ck_assert_int_eq(req.status, 0);
    ck_assert_str_eq(req.detail, "ACPI S5 (power off)");
    vmm_log_set_handler(NULL, NULL, VMM_LOG_WARN);
    remove_acpi_pm(pm);
    vmm_acpi_pm_destroy(NULL);
}
END_TEST

START_TEST(test_acpi_pm_reset)
{
    struct vmm_acpi_pm *pm = add_acpi_pm(record_exit);
    wr(VMM_ACPI_RESET_PORT, VMM_ACPI_RESET_VALUE, 1);
    ck_assert_uint_eq(req.count, 1);
    ck_assert_int_eq(req.reason, VMM_EXIT_RESET);
    ck_assert_str_eq(req.detail, "ACPI reset register");
    remove_acpi_pm(pm);
}
END_TEST

START_TEST(test_acpi_pm_without_handler)
{
    struct vmm_acpi_pm *pm = add_acpi_pm(NULL);
    wr(VMM_ACPI_SLEEP_PORT, (VMM_ACPI_S5_TYPE << 2) | SLP_EN, 1);
    wr(VMM_ACPI_RESET_PORT, VMM_ACPI_RESET_VALUE, 1);
    ck_assert_uint_eq(req.count, 0);
    ck_assert_uint_eq(rd(VMM_ACPI_SLEEP_PORT, 1), WAK_STS);
    remove_acpi_pm(pm);
}
END_TEST

static Suite *exit_requests_suite(void)
{
    Suite *s = suite_create("exit_requests");
    TCase *tc = tcase_create("standalone");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_exit_device);
    tcase_add_test(tc, test_exit_device_without_handler);
    tcase_add_test(tc, test_exit_devices_apart);
    tcase_add_test(tc, test_i8042);
    tcase_add_test(tc, test_i8042_without_handler);
    tcase_add_test(tc, test_acpi_pm_poweroff);
    tcase_add_test(tc, test_acpi_pm_reset);
    tcase_add_test(tc, test_acpi_pm_without_handler);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(exit_requests_suite());
}
