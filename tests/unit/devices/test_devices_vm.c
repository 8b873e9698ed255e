/* SPDX-License-Identifier: Apache-2.0 */
/* Platform devices on a real VM's bus and event loop (needs /dev/kvm). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
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
    struct vmm_uart_config cfg = {.out_fd = out[1], .in_fd = in[0]};
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
    struct vmm_uart_config cfg = {.out_fd = -1, .in_fd = null_fd};
    ck_assert_int_eq(vmm_vm_add_uart(vm, COM1, VMM_COM1_IRQ, &cfg, NULL), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    ck_assert_uint_eq(rd(COM1 + 5), 0x60);

    /* A regular file is read as the guest drains the FIFO. */
    FILE *f = tmpfile();
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

static Suite *devices_vm_suite(void)
{
    Suite *s = suite_create("devices_vm");
    TCase *tc = tcase_create("vm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_uart_on_vm);
    tcase_add_test(tc, test_uart_unpollable_input);
    tcase_add_test(tc, test_exit_device);
    tcase_add_test(tc, test_i8042);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vmm_test_require_kvm();
    return vmm_test_run_suite(devices_vm_suite());
}
