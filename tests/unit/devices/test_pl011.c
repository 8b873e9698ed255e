/* SPDX-License-Identifier: Apache-2.0 */
/* The PL011 on a plain MMIO bus: what the amba bus and the amba-pl011
 * driver read (ID registers, flags), output, the interrupt with its mask,
 * raw and clear registers, the receive FIFO, and hostile accesses. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <vmm/arm64.h>
#include <vmm/bus.h>

#include "check_compat.h"

#define BASE 0x09000000ull

static struct vmm_bus *bus;
static struct vmm_pl011 *uart;
static int pipefd[2];
static int irq_level, irq_changes;

static void set_irq(void *opaque, bool level)
{
    irq_level = level;
    irq_changes++;
}

static void setup(void)
{
    ck_assert_int_eq(pipe2(pipefd, O_NONBLOCK), 0);
    struct vmm_pl011_config cfg =
        VMM_INIT(struct vmm_pl011_config, .out_fd = pipefd[1], .in_fd = -1, .set_irq = set_irq);
    ck_assert_int_eq(vmm_pl011_create(&cfg, &uart), 0);
    ck_assert_int_eq(vmm_bus_create("mmio", &bus), 0);
    ck_assert_int_eq(vmm_bus_register(bus, BASE, VMM_ARM64_UART_SIZE, vmm_pl011_bus_ops(), uart),
                     0);
    irq_level = irq_changes = 0;
}

static void teardown(void)
{
    vmm_bus_destroy(bus);
    vmm_pl011_destroy(uart);
    close(pipefd[0]);
    close(pipefd[1]);
}

static uint32_t rd(uint64_t off)
{
    uint8_t b[4];
    ck_assert_int_eq(vmm_bus_read(bus, BASE + off, b, 4), 0);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr(uint64_t off, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    ck_assert_int_eq(vmm_bus_write(bus, BASE + off, b, 4), 0);
}

START_TEST(ids_and_flags_are_what_the_driver_expects)
{
    static const uint8_t id[8] = {0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1};
    for (unsigned i = 0; i < 8; i++)
        ck_assert_uint_eq(rd(0xfe0 + 4 * i), id[i]);
    uint32_t fr = rd(0x18);
    ck_assert_uint_eq(fr & 0x80, 0x80); /* TXFE */
    ck_assert_uint_eq(fr & 0x10, 0x10); /* RXFE */
    ck_assert_uint_eq(fr & 0x28, 0);    /* not TXFF, not BUSY */
}
END_TEST

START_TEST(output_and_the_tx_interrupt)
{
    wr(0x38, 0x20); /* IMSC: TX */
    ck_assert_int_eq(irq_level, 0);
    for (const char *s = "hi"; *s; s++)
        wr(0x00, (uint8_t)*s);
    char buf[8] = "";
    ck_assert_int_eq(read(pipefd[0], buf, sizeof(buf)), 2);
    ck_assert_mem_eq(buf, "hi", 2);
    ck_assert_uint_eq(rd(0x3c) & 0x20, 0x20); /* RIS */
    ck_assert_uint_eq(rd(0x40), 0x20);        /* MIS */
    ck_assert_int_eq(irq_level, 1);
    wr(0x44, 0x20); /* ICR */
    ck_assert_int_eq(irq_level, 0);
    ck_assert_uint_eq(rd(0x40), 0);
    /* Masked: raw status only. */
    wr(0x38, 0);
    wr(0x00, 'x');
    ck_assert_int_eq(irq_level, 0);
    ck_assert_uint_eq(rd(0x3c) & 0x20, 0x20);
}
END_TEST

START_TEST(receive_fifo)
{
    wr(0x38, 0x50); /* RX, RT */
    ck_assert_uint_eq(vmm_pl011_receive(uart, "ab", 2), 2);
    ck_assert_int_eq(irq_level, 1);
    ck_assert_uint_eq(rd(0x18) & 0x10, 0);
    ck_assert_uint_eq(rd(0x00), 'a');
    ck_assert_uint_eq(rd(0x00), 'b');
    ck_assert_uint_eq(rd(0x18) & 0x10, 0x10);
    ck_assert_int_eq(irq_level, 0);
    /* 16 bytes fit, no more; the FIFO reports full. */
    char many[20];
    memset(many, 'z', sizeof(many));
    ck_assert_uint_eq(vmm_pl011_receive(uart, many, sizeof(many)), 16);
    ck_assert_uint_eq(rd(0x18) & 0x40, 0x40);
    /* An empty FIFO reads 0. */
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(rd(0x00), 'z');
    ck_assert_uint_eq(rd(0x00), 0);
}
END_TEST

/* A standalone UART reads its in_fd as the guest finds the FIFO empty:
 * no more than fits, the rest on a later poll, and nothing after the end. */
START_TEST(input_fd_is_read_as_the_guest_polls)
{
    int in[2];
    ck_assert_int_eq(pipe2(in, O_NONBLOCK), 0);
    struct vmm_pl011_config cfg = VMM_INIT(struct vmm_pl011_config, .out_fd = -1, .in_fd = in[0]);
    struct vmm_pl011 *u;
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), 0);
    ck_assert_int_eq(
        vmm_bus_register(bus, BASE + 0x1000, VMM_ARM64_UART_SIZE, vmm_pl011_bus_ops(), u), 0);
    ck_assert_uint_eq(rd(0x1018) & 0x10, 0x10); /* nothing written yet: empty */
    char line[21] = "0123456789abcdefghij";
    ck_assert_int_eq(write(in[1], line, 20), 20);
    ck_assert_uint_eq(rd(0x1018) & 0x50, 0x40); /* 16 of the 20 taken: full */
    for (int i = 0; i < 20; i++)
        ck_assert_uint_eq(rd(0x1000), (uint8_t)line[i]);
    close(in[1]);
    ck_assert_uint_eq(rd(0x1018) & 0x10, 0x10); /* the end of input: empty for good */
    ck_assert_uint_eq(rd(0x1000), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, BASE + 0x1000), 0);
    vmm_pl011_destroy(u);
    close(in[0]);
}
END_TEST

START_TEST(hostile_accesses_are_harmless)
{
    uint8_t b[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    /* Unaligned and wide accesses, reserved registers, read-only ones. */
    ck_assert_int_eq(vmm_bus_write(bus, BASE + 0x39, b, 1), 0);
    ck_assert_uint_eq(rd(0x38), 0);
    ck_assert_int_eq(vmm_bus_write(bus, BASE + 0x18, b, 4), 0); /* FR is read-only */
    ck_assert_uint_eq(rd(0x18) & 0x90, 0x90);
    ck_assert_int_eq(vmm_bus_write(bus, BASE + 0x800, b, 8), 0);
    ck_assert_int_eq(vmm_bus_read(bus, BASE + 0xffc, b, 8), -EINVAL); /* runs off the end */
    ck_assert_int_eq(vmm_bus_read(bus, BASE + 0x3d, b, 2), 0);
    ck_assert_uint_eq(b[0], 0);
    wr(0x38, 0xffffffff); /* only the defined mask bits stick */
    ck_assert_uint_eq(rd(0x38), 0x7ff);
    ck_assert_int_eq(irq_changes, 0); /* nothing raw to unmask */
}
END_TEST

START_TEST(bad_configs_are_refused)
{
    struct vmm_pl011 *u;
    struct vmm_pl011_config cfg = VMM_INIT(struct vmm_pl011_config, .out_fd = -2);
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), -EINVAL);
    cfg.out_fd = 1000; /* not open */
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), -EINVAL);
    cfg.out_fd = -1;
    cfg.in_fd = -7;
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), -EINVAL);
    cfg.in_fd = 1000; /* not open */
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), -EINVAL);
    cfg.in_fd = -1;
    cfg.size = 0;
    ck_assert_int_eq(vmm_pl011_create(&cfg, &u), -EINVAL);
    ck_assert_int_eq(vmm_pl011_create(NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_pl011_create(NULL, &u), 0);
    vmm_pl011_destroy(u);
    vmm_pl011_destroy(NULL);
}
END_TEST

static Suite *pl011_suite(void)
{
    Suite *s = suite_create("pl011");
    TCase *tc = tcase_create("pl011");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, ids_and_flags_are_what_the_driver_expects);
    tcase_add_test(tc, output_and_the_tx_interrupt);
    tcase_add_test(tc, receive_fifo);
    tcase_add_test(tc, input_fd_is_read_as_the_guest_polls);
    tcase_add_test(tc, hostile_accesses_are_harmless);
    tcase_add_test(tc, bad_configs_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(pl011_suite());
}
