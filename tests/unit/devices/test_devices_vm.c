/* SPDX-License-Identifier: Apache-2.0 */
/* Platform devices on a real VM's bus and event loop (needs /dev/kvm). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vmm/arm64.h>
#include <vmm/bus.h>
#include <time.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/event.h>
#include <vmm/vm.h>

#include "check_compat.h"
#include "cpu/cpu_internal.h"

#define COM1 VMM_COM1_PORT

static struct vmm_vm *vm;
static struct vmm_bus *pio;
static struct vmm_event_loop *loop;

static void setup(void)
{
    ck_assert_int_eq(vmm_vm_create(NULL, &vm), 0);
    pio = vmm_vm_pio_bus(vm);
    loop = vmm_vm_event_loop(vm);
}

static void teardown(void)
{
    vmm_vm_destroy(vm);
    vm = NULL;
}

static uint8_t rd(uint16_t port)
{
    uint8_t v = 0x5a;
    ck_assert_int_eq(vmm_bus_read(pio, port, &v, 1), 0);
    return v;
}

static void wr(uint16_t port, uint8_t v)
{
    ck_assert_int_eq(vmm_bus_write(pio, port, &v, 1), 0);
}

START_TEST(test_uart_on_vm)
{
    int out[2], in[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    struct vmm_uart_config cfg = VMM_INIT(struct vmm_uart_config, .out_fd = out[1], .in_fd = in[0]);
    struct vmm_uart *u = NULL;
    ck_assert_int_eq(vmm_vm_add_uart(vm, COM1, VMM_COM1_IRQ, &cfg, &u), 0);
    ck_assert_ptr_nonnull(u);
    /* The ports are taken now; a bad GSI is refused. */
    ck_assert_int_eq(vmm_vm_add_uart(vm, COM1 + 4, VMM_COM1_IRQ, &cfg, NULL), -EEXIST);
    ck_assert_int_eq(vmm_vm_add_uart(vm, 0x2f8, VMM_IOAPIC_PINS, &cfg, NULL), -EINVAL);
    ck_assert_int_eq(vmm_vm_add_uart(vm, 0xfffc, 3, &cfg, NULL), -EINVAL);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);

    wr(COM1, 'k');
    char c = 0;
    ck_assert_int_eq(read(out[0], &c, 1), 1);
    ck_assert_int_eq(c, 'k');

    /* Interrupts go to the VM's line (no visible effect without vCPUs, but
     * the path must work). */
    wr(COM1 + 4, 0x08);
    wr(COM1 + 1, 0x03);

    /* Input: the loop fills the FIFO, pauses the fd when it is full (so a
     * still-readable fd does not spin the loop), resumes as the guest reads. */
    char big[150];
    for (int i = 0; i < (int)sizeof(big); i++)
        big[i] = (char)i;
    ck_assert_int_eq(write(in[1], big, sizeof(big)), (ssize_t)sizeof(big));
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 20), 0);
    int got = 0;
    for (int round = 0; round < 10 && got < (int)sizeof(big); round++) {
        while (rd(COM1 + 5) & 0x01) {
            ck_assert_uint_eq(rd(COM1), (uint8_t)got);
            got++;
        }
        ck_assert_uint_eq(rd(COM1 + 5) & 0x02, 0);
        (void)vmm_event_loop_run_once(loop, 100);
    }
    ck_assert_int_eq(got, (int)sizeof(big));

    /* End of input takes the fd out of the loop. */
    close(in[1]);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);

    /* The VM tears the UART down (leak-checked under ASan). */
    vmm_vm_destroy(vm);
    vm = NULL;
    close(in[0]);
    close(out[0]);
    close(out[1]);
}
END_TEST

START_TEST(test_uart_unpollable_input)
{
    /* /dev/null: epoll refuses it; read lazily, at once at end of input. */
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(null_fd, 0);
    struct vmm_uart_config cfg = VMM_INIT(struct vmm_uart_config, .out_fd = -1, .in_fd = null_fd);
    ck_assert_int_eq(vmm_vm_add_uart(vm, COM1, VMM_COM1_IRQ, &cfg, NULL), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    ck_assert_uint_eq(rd(COM1 + 5), 0x60);

    /* A regular file is read as the guest drains the FIFO. */
    FILE *f = vmm_test_tmpfile();
    ck_assert_ptr_nonnull(f);
    char text[200];
    for (int i = 0; i < (int)sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    ck_assert_uint_eq(fwrite(text, 1, sizeof(text), f), sizeof(text));
    fflush(f);
    rewind(f);
    cfg.in_fd = fileno(f);
    ck_assert_int_eq(vmm_vm_add_uart(vm, 0x2f8, 3, &cfg, NULL), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    for (int i = 0; i < (int)sizeof(text); i++) {
        ck_assert_uint_eq(rd(0x2f8 + 5) & 0x01, 0x01);
        ck_assert_uint_eq(rd(0x2f8), (uint8_t)text[i]);
    }
    ck_assert_uint_eq(rd(0x2f8 + 5), 0x60);
    vmm_vm_destroy(vm);
    vm = NULL;
    fclose(f);
    close(null_fd);
}
END_TEST

static uint32_t pl011_rd(uint64_t off)
{
    uint8_t b[4] = {0};
    ck_assert_int_eq(vmm_bus_read(vmm_vm_mmio_bus(vm), VMM_ARM64_UART_BASE + off, b, 4), 0);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

#define PL011_FR_RXFE 0x10
#define PL011_FR_RXFF 0x40

/* The PL011's in_fd on a VM: the loop fills the 16-byte FIFO, pauses the fd
 * while it is full, resumes as the guest reads, and drops the fd at its
 * end; an fd epoll refuses is read as the guest polls. */
START_TEST(test_pl011_input_on_vm)
{
    int in[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    struct vmm_pl011_config cfg = VMM_INIT(struct vmm_pl011_config, .out_fd = -1, .in_fd = in[0]);
    ck_assert_int_eq(vmm_vm_add_pl011(vm, VMM_ARM64_UART_BASE, 4, &cfg, NULL), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);
    char big[100];
    for (int i = 0; i < (int)sizeof(big); i++)
        big[i] = (char)i;
    ck_assert_int_eq(write(in[1], big, sizeof(big)), (ssize_t)sizeof(big));
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_uint_eq(pl011_rd(0x18) & PL011_FR_RXFF, PL011_FR_RXFF);
    /* Full: the still-readable fd is paused, not spinning the loop. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 20), 0);
    int got = 0;
    for (int round = 0; round < 20 && got < (int)sizeof(big); round++) {
        while (!(pl011_rd(0x18) & PL011_FR_RXFE)) {
            ck_assert_uint_eq(pl011_rd(0x00), (uint8_t)got);
            got++;
        }
        (void)vmm_event_loop_run_once(loop, 100);
    }
    ck_assert_int_eq(got, (int)sizeof(big));
    close(in[1]);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);

    /* /dev/null: epoll refuses it; the guest's poll finds the end at once. */
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(null_fd, 0);
    cfg.in_fd = null_fd;
    ck_assert_int_eq(vmm_vm_add_pl011(vm, VMM_ARM64_UART_BASE + 0x10000, 5, &cfg, NULL), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    uint8_t b[4];
    ck_assert_int_eq(vmm_bus_read(vmm_vm_mmio_bus(vm), VMM_ARM64_UART_BASE + 0x10018, b, 4), 0);
    ck_assert_uint_eq(b[0] & PL011_FR_RXFE, PL011_FR_RXFE);
    /* A bad input fd is refused. */
    cfg.in_fd = 1000;
    ck_assert_int_eq(vmm_vm_add_pl011(vm, VMM_ARM64_UART_BASE + 0x20000, 6, &cfg, NULL), -EINVAL);
    /* The VM tears the UARTs down (leak-checked under ASan). */
    vmm_vm_destroy(vm);
    vm = NULL;
    close(null_fd);
    close(in[0]);
}
END_TEST

START_TEST(test_exit_device)
{
    ck_assert_int_eq(vmm_vm_add_exit_device(vm, VMM_EXIT_PORT), 0);
    ck_assert_int_eq(vmm_vm_add_exit_device(vm, VMM_EXIT_PORT), -EEXIST);
    ck_assert_uint_eq(rd(VMM_EXIT_PORT), 0);
    wr(VMM_EXIT_PORT, 42);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(vm->exit.status, 42);
    ck_assert_str_eq(vm->exit.detail, "guest wrote 42 to the exit port");
    /* The first request wins. */
    wr(VMM_EXIT_PORT, 7);
    ck_assert_int_eq(vm->exit.status, 42);
}
END_TEST

START_TEST(test_i8042)
{
    ck_assert_int_eq(vmm_vm_add_i8042(vm), 0);
    ck_assert_int_eq(vmm_vm_add_i8042(vm), -EEXIST);
    /* Idle: nothing to read, ready for input (kb_wait, i8042_flush). */
    ck_assert_uint_eq(rd(0x64), 0x00);
    ck_assert_uint_eq(rd(0x60), 0x00);
    /* 0x61-0x63 stay free for other devices. */
    uint8_t v;
    ck_assert_int_eq(vmm_bus_read(pio, 0x61, &v, 1), -ENOENT);
    /* Other commands and data are ignored. */
    wr(0x64, 0x20);
    wr(0x64, 0xad);
    wr(0x60, 0xf4);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_NONE);
    ck_assert_uint_eq(rd(0x64), 0x00);
    wr(0x64, VMM_I8042_RESET);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_RESET);
    ck_assert_str_eq(vm->exit.detail, "i8042 reset");
}
END_TEST

/* A device whose second range is taken claims nothing (and leaks nothing). */
START_TEST(test_i8042_partly_taken)
{
    static const struct vmm_bus_ops none = {.size = sizeof(struct vmm_bus_ops)};
    ck_assert_int_eq(vmm_bus_register(pio, VMM_I8042_COMMAND_PORT, 1, &none, NULL), 0);
    ck_assert_int_eq(vmm_vm_add_i8042(vm), -EEXIST);
    uint8_t v;
    ck_assert_int_eq(vmm_bus_read(pio, VMM_I8042_PORT, &v, 1), -ENOENT);
    ck_assert_int_eq(vmm_bus_unregister(pio, VMM_I8042_COMMAND_PORT), 0);
    ck_assert_int_eq(vmm_vm_add_i8042(vm), 0);
    wr(VMM_I8042_COMMAND_PORT, VMM_I8042_RESET);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_RESET);
}
END_TEST

static uint8_t cmos(uint8_t reg)
{
    wr(0x70, reg);
    return rd(0x71);
}

static void cmos_set(uint8_t reg, uint8_t v)
{
    wr(0x70, reg);
    wr(0x71, v);
}

static unsigned bcd(uint8_t v)
{
    return (v >> 4) * 10u + (v & 0xfu);
}

START_TEST(test_rtc)
{
    ck_assert_int_eq(vmm_vm_add_rtc(vm), 0);
    ck_assert_int_eq(vmm_vm_add_rtc(vm), -EEXIST);
    /* What a kernel checks first: valid time, not mid-update, BCD 24-hour. */
    ck_assert_uint_eq(cmos(0x0d), 0x80);
    ck_assert_uint_eq(cmos(0x0a) & 0x80, 0);
    ck_assert_uint_eq(cmos(0x0a), 0x26);
    ck_assert_uint_eq(cmos(0x0b), 0x02);
    /* The date is the host's (UTC), in BCD. Retry across a minute tick. */
    for (int tries = 0;; tries++) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        unsigned year = bcd(cmos(0x32)) * 100 + bcd(cmos(0x09));
        unsigned mon = bcd(cmos(0x08)), day = bcd(cmos(0x07));
        unsigned hour = bcd(cmos(0x04)), min = bcd(cmos(0x02)), sec = bcd(cmos(0x00));
        ck_assert_uint_lt(sec, 60);
        if (min != (unsigned)tm.tm_min && tries < 3)
            continue;
        ck_assert_uint_eq(year, (unsigned)tm.tm_year + 1900);
        ck_assert_uint_eq(mon, (unsigned)tm.tm_mon + 1);
        ck_assert_uint_eq(day, (unsigned)tm.tm_mday);
        ck_assert_uint_eq(hour, (unsigned)tm.tm_hour);
        ck_assert_uint_eq(min, (unsigned)tm.tm_min);
        break;
    }
    /* Bit 7 of the index is the NMI mask, not part of the index. */
    wr(0x70, 0x80 | 0x0d);
    ck_assert_uint_eq(rd(0x71), 0x80);
    /* CMOS RAM keeps what is written; the status registers C/D are read-only. */
    cmos_set(0x40, 0xa5);
    ck_assert_uint_eq(cmos(0x40), 0xa5);
    cmos_set(0x0d, 0x00);
    ck_assert_uint_eq(cmos(0x0d), 0x80);
    ck_assert_uint_eq(cmos(0x0c), 0x00);

    /* Binary mode, then set the clock to 2001-02-03 04:05:06 through SET. */
    cmos_set(0x0b, 0x80 | 0x04 | 0x02);
    cmos_set(0x32, 20);
    cmos_set(0x09, 1);
    cmos_set(0x08, 2);
    cmos_set(0x07, 3);
    cmos_set(0x04, 4);
    cmos_set(0x02, 5);
    cmos_set(0x00, 6);
    ck_assert_uint_eq(cmos(0x09), 1); /* staged time while SET is held */
    cmos_set(0x0b, 0x04 | 0x02);
    ck_assert_uint_eq(cmos(0x32), 20);
    ck_assert_uint_eq(cmos(0x09), 1);
    ck_assert_uint_eq(cmos(0x08), 2);
    ck_assert_uint_eq(cmos(0x07), 3);
    ck_assert_uint_eq(cmos(0x04), 4);
    ck_assert_uint_eq(cmos(0x06), 7); /* a Saturday */
    /* 12-hour mode: 04:xx is 4 AM. */
    cmos_set(0x0b, 0x04);
    ck_assert_uint_eq(cmos(0x04), 4);
    /* 12-hour mode, binary: 14:xx reads as 2 with the PM bit. */
    cmos_set(0x0b, 0x80 | 0x04);
    cmos_set(0x04, 0x80 | 2);
    cmos_set(0x0b, 0x04);
    ck_assert_uint_eq(cmos(0x04), 0x80 | 2);
    cmos_set(0x0b, 0x04 | 0x02);
    ck_assert_uint_eq(cmos(0x04), 14);

    /* Linux's default: BCD, 24-hour, set through SET. */
    cmos_set(0x0b, 0x80 | 0x02);
    cmos_set(0x32, 0x20);
    cmos_set(0x09, 0x31);
    cmos_set(0x08, 0x12);
    cmos_set(0x07, 0x25);
    cmos_set(0x04, 0x23);
    cmos_set(0x02, 0x59);
    cmos_set(0x0b, 0x02);
    ck_assert_uint_eq(cmos(0x32), 0x20);
    ck_assert_uint_eq(cmos(0x09), 0x31);
    ck_assert_uint_eq(cmos(0x08), 0x12);
    ck_assert_uint_eq(cmos(0x07), 0x25);
    ck_assert_uint_eq(cmos(0x04), 0x23);

    /* A write without SET takes effect at once. */
    cmos_set(0x09, 0x42);
    ck_assert_uint_eq(cmos(0x09), 0x42);
    ck_assert_uint_eq(cmos(0x08), 0x12); /* the rest of the date stays */
    cmos_set(0x0b, 0x04 | 0x02);

    /* Nonsense written to the date does not break the clock. */
    cmos_set(0x0b, 0x80 | 0x04 | 0x02);
    cmos_set(0x08, 0xff);
    cmos_set(0x07, 0x00);
    cmos_set(0x04, 0xff);
    cmos_set(0x0b, 0x04 | 0x02);
    ck_assert_uint_le(cmos(0x08), 12);
    ck_assert_uint_ge(cmos(0x07), 1);
    ck_assert_uint_lt(cmos(0x04), 24);
}
END_TEST

START_TEST(test_acpi_pm_poweroff)
{
    ck_assert_int_eq(vmm_vm_add_acpi_pm(vm), 0);
    ck_assert_int_eq(vmm_vm_add_acpi_pm(vm), -EEXIST);
    ck_assert_uint_eq(rd(VMM_ACPI_SLEEP_PORT) & 0x80, 0x80); /* WAK_STS */
    /* SLP_TYP without SLP_EN, another sleep type, a wrong reset value: nothing. */
    wr(VMM_ACPI_SLEEP_PORT, VMM_ACPI_S5_TYPE << 2);
    wr(VMM_ACPI_SLEEP_PORT, (3 << 2) | 0x20);
    wr(VMM_ACPI_RESET_PORT, VMM_ACPI_RESET_VALUE + 1);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_NONE);
    /* Linux's hardware-reduced S5: (SLP_TYP << 2) | SLP_EN. */
    wr(VMM_ACPI_SLEEP_PORT, (VMM_ACPI_S5_TYPE << 2) | 0x20);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_POWEROFF);
}
END_TEST

START_TEST(test_acpi_pm_reset)
{
    ck_assert_int_eq(vmm_vm_add_acpi_pm(vm), 0);
    wr(VMM_ACPI_RESET_PORT, VMM_ACPI_RESET_VALUE);
    ck_assert_int_eq(vm->exit.reason, VMM_EXIT_RESET);
}
END_TEST

static Suite *devices_vm_suite(void)
{
    Suite *s = suite_create("devices_vm");
    TCase *tc = tcase_create("vm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_uart_on_vm);
    tcase_add_test(tc, test_uart_unpollable_input);
    tcase_add_test(tc, test_pl011_input_on_vm);
    tcase_add_test(tc, test_exit_device);
    tcase_add_test(tc, test_i8042);
    tcase_add_test(tc, test_i8042_partly_taken);
    tcase_add_test(tc, test_rtc);
    tcase_add_test(tc, test_acpi_pm_poweroff);
    tcase_add_test(tc, test_acpi_pm_reset);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vmm_test_require_kvm();
    return vmm_test_run_suite(devices_vm_suite());
}
