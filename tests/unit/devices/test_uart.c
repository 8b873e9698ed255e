/* SPDX-License-Identifier: Apache-2.0 */
/* 16550A UART on a plain bus: registers, interrupts, FIFO, host fds. */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmm/bus.h>
#include <vmm/devices.h>

#include "check_compat.h"

#define BASE 0x3f8

#define RBR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

static struct vmm_bus *bus;
static struct vmm_uart *uart;
static int out_pipe[2] = {-1, -1};
static int in_pipe[2] = {-1, -1};

/* The fake interrupt line: every level the UART reported, in order. */
static bool irq_levels[256];
static int irq_calls;
static bool irq_line;

static void fake_set_irq(void *opaque, bool level)
{
    ck_assert_ptr_eq(opaque, &irq_calls);
    /* Only changes are reported. */
    ck_assert(level != irq_line);
    irq_line = level;
    if (irq_calls < (int)(sizeof(irq_levels) / sizeof(irq_levels[0])))
        irq_levels[irq_calls] = level;
    irq_calls++;
}

static void make_uart(int out_fd, int in_fd)
{
    struct vmm_uart_config cfg = VMM_INIT(struct vmm_uart_config, .out_fd = out_fd, .in_fd = in_fd,
                                          .set_irq = fake_set_irq, .irq_opaque = &irq_calls);
    ck_assert_int_eq(vmm_uart_create(&cfg, &uart), 0);
    ck_assert_int_eq(vmm_bus_register(bus, BASE, 8, vmm_uart_bus_ops(), uart), 0);
}

static void setup(void)
{
    irq_calls = 0;
    irq_line = false;
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
    ck_assert_int_eq(pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(in_pipe, O_CLOEXEC), 0);
    make_uart(out_pipe[1], in_pipe[0]);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void teardown(void)
{
    if (uart)
        ck_assert_int_eq(vmm_bus_unregister(bus, BASE), 0);
    vmm_uart_destroy(uart);
    uart = NULL;
    vmm_bus_destroy(bus);
    bus = NULL;
    for (int i = 0; i < 2; i++) {
        close_fd(&out_pipe[i]);
        close_fd(&in_pipe[i]);
    }
}

static uint8_t rd(unsigned off)
{
    uint8_t v = 0x5a;
    ck_assert_int_eq(vmm_bus_read(bus, BASE + off, &v, 1), 0);
    return v;
}

static void wr(unsigned off, uint8_t v)
{
    ck_assert_int_eq(vmm_bus_write(bus, BASE + off, &v, 1), 0);
}

/* Bytes the UART wrote to out_fd so far (out_pipe is non-blocking). */
static int read_output(char *buf, int cap)
{
    ssize_t n = read(out_pipe[0], buf, (size_t)cap);
    return n < 0 ? 0 : (int)n;
}

START_TEST(test_thr_output)
{
    wr(RBR, 'h');
    wr(RBR, 'i');
    char buf[16];
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 2);
    ck_assert(memcmp(buf, "hi", 2) == 0);
    /* With out_fd -1 output is discarded. */
    ck_assert_int_eq(vmm_bus_unregister(bus, BASE), 0);
    vmm_uart_destroy(uart);
    make_uart(-1, -1);
    wr(RBR, 'x');
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 0);
    ck_assert_uint_eq(rd(LSR), 0x60);
}
END_TEST

START_TEST(test_reset_state_and_scratch)
{
    ck_assert_uint_eq(rd(IER), 0);
    ck_assert_uint_eq(rd(IIR), 0x01);
    ck_assert_uint_eq(rd(LCR), 0);
    ck_assert_uint_eq(rd(MCR), 0);
    ck_assert_uint_eq(rd(LSR), 0x60); /* THRE | TEMT */
    ck_assert_uint_eq(rd(MSR), 0xb0); /* DCD | DSR | CTS */
    wr(SCR, 0xa5);
    ck_assert_uint_eq(rd(SCR), 0xa5);
    wr(SCR, 0x00);
    ck_assert_uint_eq(rd(SCR), 0x00);
    /* IER keeps bits 0-3 only; MCR bits 0-4. */
    wr(IER, 0xff);
    ck_assert_uint_eq(rd(IER), 0x0f);
    wr(IER, 0);
    wr(MCR, 0xff);
    ck_assert_uint_eq(rd(MCR), 0x1f);
    /* LSR and MSR ignore writes. */
    wr(MCR, 0);
    wr(LSR, 0x00);
    wr(MSR, 0x00);
    ck_assert_uint_eq(rd(LSR), 0x60);
    ck_assert_uint_eq(rd(MSR) & 0xf0, 0xb0);
    ck_assert_int_eq(irq_calls, 0);
}
END_TEST

START_TEST(test_divisor_latch)
{
    wr(IER, 0x05);
    wr(LCR, 0x83); /* DLAB, 8N1 */
    wr(RBR, 0x01); /* DLL */
    wr(IER, 0x02); /* DLM */
    ck_assert_uint_eq(rd(RBR), 0x01);
    ck_assert_uint_eq(rd(IER), 0x02);
    ck_assert_uint_eq(rd(LCR), 0x83);
    /* Nothing was transmitted and IER is untouched. */
    char buf[4];
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 0);
    wr(LCR, 0x03);
    ck_assert_uint_eq(rd(IER), 0x05);
    wr(LCR, 0x80);
    ck_assert_uint_eq(rd(RBR), 0x01);
    ck_assert_uint_eq(rd(IER), 0x02);
}
END_TEST

START_TEST(test_lsr_and_receive)
{
    ck_assert_uint_eq(rd(LSR) & 0x01, 0);
    ck_assert_uint_eq(vmm_uart_receive(uart, "ab", 2), 2);
    ck_assert_uint_eq(rd(LSR), 0x61);
    ck_assert_uint_eq(rd(RBR), 'a');
    ck_assert_uint_eq(rd(LSR), 0x61);
    ck_assert_uint_eq(rd(RBR), 'b');
    ck_assert_uint_eq(rd(LSR), 0x60);
    /* Empty FIFO reads 0, DR stays clear. */
    ck_assert_uint_eq(rd(RBR), 0);
    ck_assert_uint_eq(rd(LSR), 0x60);
    ck_assert_uint_eq(vmm_uart_receive(uart, "", 0), 0);
    ck_assert_uint_eq(vmm_uart_receive(NULL, "a", 1), 0);
    ck_assert_uint_eq(vmm_uart_receive(uart, NULL, 1), 0);
}
END_TEST

START_TEST(test_thre_interrupt)
{
    /* Without OUT2 the pending interrupt does not reach the line. */
    wr(IER, 0x02);
    ck_assert_int_eq(irq_calls, 0);
    wr(MCR, MCR_OUT2);
    ck_assert_int_eq(irq_calls, 1);
    ck_assert(irq_line);
    /* Reading IIR while it names THRE acknowledges it. */
    ck_assert_uint_eq(rd(IIR), 0x02);
    ck_assert(!irq_line);
    ck_assert_uint_eq(rd(IIR), 0x01);
    /* The next THR write raises it again. */
    wr(RBR, 'x');
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(IIR), 0x02);
    ck_assert(!irq_line);
    /* Re-enabling THRI raises it again (Linux's THRE start-up test). */
    wr(IER, 0x00);
    ck_assert(!irq_line);
    wr(IER, 0x02);
    ck_assert(irq_line);
    /* Disabling it lowers the line; dropping OUT2 too. */
    wr(IER, 0x00);
    ck_assert(!irq_line);
    wr(IER, 0x02);
    ck_assert(irq_line);
    wr(MCR, 0);
    ck_assert(!irq_line);
    ck_assert_uint_eq(rd(IIR), 0x02); /* still pending inside the chip */
    ck_assert_int_eq(irq_calls, 8);
    ck_assert(irq_levels[0] && !irq_levels[1] && irq_levels[2] && !irq_levels[3]);
    char buf[4];
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 1);
}
END_TEST

START_TEST(test_rda_interrupt)
{
    wr(MCR, MCR_OUT2);
    wr(IER, 0x01);
    ck_assert(!irq_line);
    ck_assert_uint_eq(vmm_uart_receive(uart, "xy", 2), 2);
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(IIR), 0x04);
    ck_assert(irq_line); /* IIR does not acknowledge data */
    ck_assert_uint_eq(rd(RBR), 'x');
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(RBR), 'y');
    ck_assert(!irq_line);
    ck_assert_uint_eq(rd(IIR), 0x01);
    ck_assert_int_eq(irq_calls, 2);
}
END_TEST

START_TEST(test_fifo_control)
{
    wr(FCR, 0x01);
    ck_assert_uint_eq(rd(IIR), 0xc1);
    /* Trigger level 14: below it data is reported as a character time-out. */
    wr(FCR, 0xc1);
    wr(MCR, MCR_OUT2);
    wr(IER, 0x01);
    ck_assert_uint_eq(vmm_uart_receive(uart, "abc", 3), 3);
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(IIR), 0xcc);
    ck_assert_uint_eq(vmm_uart_receive(uart, "defghijklmn", 11), 11);
    ck_assert_uint_eq(rd(IIR), 0xc4);
    /* Clearing the receive FIFO drops the data and the interrupt. */
    wr(FCR, 0xc3);
    ck_assert(!irq_line);
    ck_assert_uint_eq(rd(LSR), 0x60);
    ck_assert_uint_eq(rd(IIR), 0xc1);
    /* Disabling the FIFOs clears them too and drops bits 7:6 of IIR. */
    ck_assert_uint_eq(vmm_uart_receive(uart, "z", 1), 1);
    wr(FCR, 0x00);
    ck_assert_uint_eq(rd(IIR), 0x01);
    ck_assert_uint_eq(rd(LSR), 0x60);
}
END_TEST

START_TEST(test_priorities)
{
    wr(MCR, MCR_OUT2);
    /* Overrun, data, THRE and a modem-status change all at once. */
    char big[80];
    memset(big, 'q', sizeof(big));
    ck_assert_uint_lt(vmm_uart_receive(uart, big, sizeof(big)), sizeof(big));
    wr(MCR, MCR_OUT2 | MCR_LOOP); /* CTS/DSR/DCD change: delta bits */
    wr(MCR, MCR_OUT2);
    wr(IER, 0x0f);
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(IIR), 0x06); /* RLS */
    uint8_t lsr = rd(LSR);
    ck_assert_uint_eq(lsr & 0x03, 0x03); /* OE | DR */
    ck_assert_uint_eq(rd(LSR) & 0x02, 0);
    ck_assert_uint_eq(rd(IIR), 0x04); /* RDA */
    while (rd(LSR) & 0x01)
        rd(RBR);
    ck_assert_uint_eq(rd(IIR), 0x02); /* THRE, acknowledged by this read */
    ck_assert_uint_eq(rd(IIR), 0x00); /* MSR */
    ck_assert(irq_line);
    ck_assert_uint_eq(rd(MSR) & 0x0f, 0x03); /* DCTS | DDSR */
    ck_assert_uint_eq(rd(IIR), 0x01);
    ck_assert(!irq_line);
}
END_TEST

START_TEST(test_loopback)
{
    wr(MCR, MCR_LOOP | MCR_OUT2 | 0x02); /* RTS */
    /* Linux's autoconfig check: DCD and CTS follow OUT2 and RTS. */
    ck_assert_uint_eq(rd(MSR) & 0xf0, 0x90);
    wr(MCR, MCR_LOOP | 0x01 | 0x04);         /* DTR, OUT1 */
    ck_assert_uint_eq(rd(MSR), 0x60 | 0x0b); /* DSR|RI, and CTS/DSR/DCD changed */
    wr(MCR, MCR_LOOP);
    ck_assert_uint_eq(rd(MSR), 0x06); /* DSR changed, RI trailing edge */
    ck_assert_uint_eq(rd(MSR), 0x00);
    /* Transmitted bytes come back instead of leaving. */
    wr(RBR, 'Z');
    wr(RBR, 'Y');
    char buf[4];
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 0);
    ck_assert_uint_eq(rd(LSR), 0x61);
    ck_assert_uint_eq(rd(RBR), 'Z');
    ck_assert_uint_eq(rd(RBR), 'Y');
    ck_assert_uint_eq(rd(LSR), 0x60);
    /* Overrunning the FIFO through loopback sets OE too. */
    for (int i = 0; i < 100; i++)
        wr(RBR, (uint8_t)i);
    ck_assert_uint_eq(rd(LSR), 0x63);
    wr(MCR, 0);
    ck_assert_uint_eq(rd(MSR) & 0xf0, 0xb0);
    wr(RBR, 'o');
    ck_assert_int_eq(read_output(buf, sizeof(buf)), 1);
    ck_assert_int_eq(buf[0], 'o');
}
END_TEST

/* The probe sequence of Linux's 8250 autoconfig must identify a 16550A. */
START_TEST(test_linux_probe)
{
    /* Existence test. */
    wr(IER, 0);
    ck_assert_uint_eq(rd(IER) & 0x0f, 0);
    wr(IER, 0x0f);
    ck_assert_uint_eq(rd(IER) & 0x0f, 0x0f);
    wr(IER, 0);
    /* Loopback test. */
    uint8_t save_mcr = rd(MCR);
    wr(MCR, MCR_LOOP | 0x0a);
    ck_assert_uint_eq(rd(MSR) & 0xf0, 0x90);
    wr(MCR, save_mcr);
    /* FIFO: IIR bits 7:6 == 3 means 16550A. */
    wr(FCR, 0x01);
    ck_assert_uint_eq(rd(IIR) >> 6, 3);
    /* No EFR behind LCR 0x80 / 0xbf (that would be a 16650). */
    wr(LCR, 0x80);
    ck_assert_uint_ne(rd(IIR), 0);
    wr(LCR, 0xbf);
    ck_assert_uint_ne(rd(IIR), 0);
    /* No 64-byte FIFO mode (that would be a 16750). */
    wr(LCR, 0x80);
    wr(FCR, 0x21);
    ck_assert_uint_eq(rd(IIR) >> 5, 6);
    wr(LCR, 0);
    wr(FCR, 0x21);
    ck_assert_uint_eq(rd(IIR) >> 5, 6);
    wr(FCR, 0);
}
END_TEST

START_TEST(test_overrun)
{
    uint8_t data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (uint8_t)i;
    size_t n = vmm_uart_receive(uart, data, sizeof(data));
    ck_assert_uint_ge(n, 16);
    ck_assert_uint_lt(n, sizeof(data));
    ck_assert_uint_eq(vmm_uart_receive(uart, data, 1), 0);
    ck_assert_uint_eq(rd(LSR), 0x63);
    ck_assert_uint_eq(rd(LSR), 0x61); /* OE is cleared by reading LSR */
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(rd(RBR), i);
    ck_assert_uint_eq(rd(LSR), 0x60);
    ck_assert_uint_eq(rd(RBR), 0);
    /* Room again after draining. */
    ck_assert_uint_eq(vmm_uart_receive(uart, data, 2), 2);
}
END_TEST

START_TEST(test_odd_widths_and_offsets)
{
    const struct vmm_bus_ops *ops = vmm_uart_bus_ops();
    uint8_t buf[8];
    /* Every offset and width through the bus: in range or rejected. */
    for (unsigned off = 0; off < 8; off++) {
        for (unsigned len = 1; len <= 8; len *= 2) {
            memset(buf, 0x5a, sizeof(buf));
            int r = vmm_bus_read(bus, BASE + off, buf, len);
            ck_assert_int_eq(r, off + len <= 8 ? 0 : -EINVAL);
        }
    }
    /* The callbacks directly, with offsets and widths the bus would refuse. */
    for (uint64_t off = 0; off < 12; off++) {
        for (uint32_t len = 1; len <= 8; len++) {
            memset(buf, 0x5a, sizeof(buf));
            ops->read(uart, off, buf, len);
            for (uint32_t i = 0; i < len; i++)
                if (off + i >= 8)
                    ck_assert_uint_eq(buf[i], 0xff);
        }
    }
    memset(buf, 0x5a, sizeof(buf));
    ops->read(uart, UINT64_MAX, buf, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_uint_eq(buf[i], 0xff);
    const uint8_t junk[8] = {0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48};
    ops->write(uart, UINT64_MAX, junk, 8);
    ops->write(uart, 8, junk, 8);
    ops->write(uart, 7, junk, 8); /* SCR only */
    ck_assert_uint_eq(rd(SCR), 0x41);
    char out[16];
    ck_assert_int_eq(read_output(out, sizeof(out)), 0);

    /* A 16-bit write at 0 is THR then IER, like an ISA bus splitting it. */
    const uint8_t hi[2] = {'h', 0xf2};
    ck_assert_int_eq(vmm_bus_write(bus, BASE, hi, 2), 0);
    ck_assert_int_eq(read_output(out, sizeof(out)), 1);
    ck_assert_int_eq(out[0], 'h');
    ck_assert_uint_eq(rd(IER), 0x02);
    /* A 16-bit read at 4 is MCR and LSR. */
    ck_assert_int_eq(vmm_bus_read(bus, BASE + 4, buf, 2), 0);
    ck_assert_uint_eq(buf[0], 0);
    ck_assert_uint_eq(buf[1], 0x60);
    /* Still sane afterwards. */
    wr(IER, 0);
    ck_assert_uint_eq(rd(IIR), 0x01);
}
END_TEST

static bool sigpipe_pending(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigpending(&set);
    return sigismember(&set, SIGPIPE) == 1;
}

START_TEST(test_output_reader_gone)
{
    /* SIGPIPE keeps its default (terminate) disposition: the UART must not
     * let a write to a reader-less pipe raise it. */
    signal(SIGPIPE, SIG_DFL);
    close_fd(&out_pipe[0]);
    for (int i = 0; i < 50; i++)
        wr(RBR, 'x');
    ck_assert(!sigpipe_pending());
    /* The device keeps working. */
    wr(SCR, 0x33);
    ck_assert_uint_eq(rd(SCR), 0x33);
    ck_assert_uint_eq(rd(LSR), 0x60);

    /* Same over a socket whose peer is gone. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    ck_assert_int_eq(vmm_bus_unregister(bus, BASE), 0);
    vmm_uart_destroy(uart);
    make_uart(sv[0], -1);
    for (int i = 0; i < 50; i++)
        wr(RBR, 'y');
    ck_assert(!sigpipe_pending());
    ck_assert_uint_eq(rd(LSR), 0x60);
    close(sv[0]);
}
END_TEST

/* A SIGPIPE that was already pending (blocked) before stays pending: the
 * UART consumes only the one it caused. */
START_TEST(test_output_keeps_foreign_sigpipe)
{
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    raise(SIGPIPE);
    ck_assert(sigpipe_pending());
    close_fd(&out_pipe[0]);
    wr(RBR, 'x');
    ck_assert(sigpipe_pending());
    int sig = 0;
    ck_assert_int_eq(sigwait(&set, &sig), 0);
    ck_assert_int_eq(sig, SIGPIPE);
    ck_assert(!sigpipe_pending());
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
END_TEST

START_TEST(test_output_full_pipe)
{
    /* A blocking pipe nobody drains: the vCPU must not hang. */
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    int fl = fcntl(p[1], F_GETFL);
    ck_assert_int_eq(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
    char chunk[4096];
    memset(chunk, 'f', sizeof(chunk));
    while (write(p[1], chunk, sizeof(chunk)) > 0)
        ;
    while (write(p[1], chunk, 1) > 0)
        ;
    ck_assert_int_eq(fcntl(p[1], F_SETFL, fl), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, BASE), 0);
    vmm_uart_destroy(uart);
    make_uart(p[1], -1);
    for (int i = 0; i < 20; i++)
        wr(RBR, 'z');
    ck_assert_uint_eq(rd(LSR), 0x60);
    /* Once drained, output flows again. */
    ck_assert_int_eq(fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK), 0);
    while (read(p[0], chunk, sizeof(chunk)) > 0)
        ;
    wr(RBR, '!');
    char c = 0;
    ssize_t n;
    do {
        n = read(p[0], &c, 1);
    } while (n == 1 && c != '!');
    ck_assert_int_eq(c, '!');
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_poll_input_pipe)
{
    /* Nothing ready: 0, without blocking on the blocking pipe. */
    ck_assert_int_eq(vmm_uart_poll_input(uart), 0);
    wr(MCR, MCR_OUT2);
    wr(IER, 0x01);
    ck_assert_int_eq(write(in_pipe[1], "hello", 5), 5);
    ck_assert_int_eq(vmm_uart_poll_input(uart), 5);
    ck_assert(irq_line);
    char got[6] = {0};
    for (int i = 0; i < 5; i++)
        got[i] = (char)rd(RBR);
    ck_assert_str_eq(got, "hello");
    ck_assert(!irq_line);

    /* More than fits: the FIFO fills, the rest waits in the pipe. */
    char big[100];
    memset(big, 'b', sizeof(big));
    ck_assert_int_eq(write(in_pipe[1], big, sizeof(big)), (ssize_t)sizeof(big));
    int first = vmm_uart_poll_input(uart);
    ck_assert_int_ge(first, 16);
    ck_assert_int_lt(first, 100);
    ck_assert_int_eq(vmm_uart_poll_input(uart), 0); /* full */
    ck_assert_uint_eq(rd(LSR) & 0x02, 0);           /* no overrun from fds */
    for (int i = 0; i < first; i++)
        ck_assert_uint_eq(rd(RBR), 'b');
    ck_assert_int_eq(vmm_uart_poll_input(uart), 100 - first);
    while (rd(LSR) & 0x01)
        rd(RBR);

    /* End of input. */
    close_fd(&in_pipe[1]);
    ck_assert_int_eq(vmm_uart_poll_input(uart), 0);
    ck_assert_int_eq(vmm_uart_poll_input(uart), 0);
    ck_assert_uint_eq(rd(LSR), 0x60);

    ck_assert_int_eq(vmm_uart_poll_input(NULL), -EINVAL);
}
END_TEST

START_TEST(test_input_regular_file)
{
    FILE *f = vmm_test_tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs("abc", f), 0);
    fflush(f);
    rewind(f);
    ck_assert_int_eq(vmm_bus_unregister(bus, BASE), 0);
    vmm_uart_destroy(uart);
    make_uart(-1, fileno(f));
    /* Read as the guest drains, on the guest's thread. */
    ck_assert_uint_eq(rd(LSR), 0x61);
    ck_assert_uint_eq(rd(RBR), 'a');
    ck_assert_uint_eq(rd(RBR), 'b');
    ck_assert_uint_eq(rd(RBR), 'c');
    ck_assert_uint_eq(rd(LSR), 0x60);
    ck_assert_uint_eq(rd(RBR), 0);
    ck_assert_int_eq(vmm_uart_poll_input(uart), 0);
    fclose(f);
}
END_TEST

START_TEST(test_create_errors)
{
    struct vmm_uart *u = NULL;
    ck_assert_int_eq(vmm_uart_create(NULL, NULL), -EINVAL);
    struct vmm_uart_config bad = VMM_INIT(struct vmm_uart_config, .out_fd = 9999, .in_fd = -1);
    ck_assert_int_eq(vmm_uart_create(&bad, &u), -EINVAL);
    bad = VMM_INIT(struct vmm_uart_config, .out_fd = -1, .in_fd = -7);
    ck_assert_int_eq(vmm_uart_create(&bad, &u), -EINVAL);
    ck_assert_int_eq(vmm_uart_create(NULL, &u), 0);
    ck_assert_int_eq(vmm_uart_poll_input(u), 0);
    vmm_uart_destroy(u);
    vmm_uart_destroy(NULL);

    /* The growth convention (abi.h): 0 or a size past the library's is
     * refused, nothing made; a struct that ends before in_fd gets -1 there
     * (not 0, stdin), as its default says. */
    u = NULL;
    bad = VMM_INIT(struct vmm_uart_config, .out_fd = -1, .in_fd = -1);
    bad.size = 0;
    ck_assert_int_eq(vmm_uart_create(&bad, &u), -EINVAL);
    bad.size = sizeof(bad) + 8;
    ck_assert_int_eq(vmm_uart_create(&bad, &u), -EINVAL);
    ck_assert_ptr_null(u);
    struct vmm_uart_config old = VMM_INIT(struct vmm_uart_config, .out_fd = -1, .in_fd = 0);
    old.size = offsetof(struct vmm_uart_config, in_fd);
    ck_assert_int_eq(vmm_uart_create(&old, &u), 0);
    ck_assert_int_eq(vmm_uart_poll_input(u), 0);
    vmm_uart_destroy(u);
}
END_TEST

/* The event-loop side (poll_input) and a vCPU (bus reads) at once: every
 * byte arrives once, in order, and flow control means no overrun. */
enum { STRESS_BYTES = 20000 };
static int stress_done;

static void *stress_producer(void *arg)
{
    uint8_t buf[97];
    unsigned next = 0;
    while (next < STRESS_BYTES) {
        unsigned n = 0;
        while (n < sizeof(buf) && next + n < STRESS_BYTES) {
            buf[n] = (uint8_t)((next + n) * 7);
            n++;
        }
        ck_assert_int_eq(write(in_pipe[1], buf, n), (ssize_t)n);
        next += n;
        int r;
        while ((r = vmm_uart_poll_input(uart)) > 0)
            ;
        ck_assert_int_ge(r, 0);
    }
    /* Push the tail into the FIFO as the reader makes room. */
    while (!__atomic_load_n(&stress_done, __ATOMIC_SEQ_CST)) {
        ck_assert_int_ge(vmm_uart_poll_input(uart), 0);
        sched_yield();
    }
    return NULL;
}

START_TEST(test_concurrent_input)
{
    wr(FCR, 0x07);
    wr(MCR, MCR_OUT2);
    wr(IER, 0x0f);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stress_producer, NULL), 0);
    unsigned got = 0;
    while (got < STRESS_BYTES) {
        uint8_t lsr = rd(LSR);
        ck_assert_uint_eq(lsr & 0x02, 0);
        if (lsr & 0x01) {
            ck_assert_uint_eq(rd(RBR), (uint8_t)(got * 7));
            got++;
            if ((got & 255) == 0)
                wr(RBR, 'x'); /* output and THRE in between */
        } else {
            sched_yield();
        }
    }
    __atomic_store_n(&stress_done, 1, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_eq(rd(LSR) & 0x03, 0);
}
END_TEST

static Suite *uart_suite(void)
{
    Suite *s = suite_create("uart");
    TCase *tc = tcase_create("registers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_thr_output);
    tcase_add_test(tc, test_reset_state_and_scratch);
    tcase_add_test(tc, test_divisor_latch);
    tcase_add_test(tc, test_lsr_and_receive);
    tcase_add_test(tc, test_thre_interrupt);
    tcase_add_test(tc, test_rda_interrupt);
    tcase_add_test(tc, test_fifo_control);
    tcase_add_test(tc, test_priorities);
    tcase_add_test(tc, test_loopback);
    tcase_add_test(tc, test_linux_probe);
    tcase_add_test(tc, test_overrun);
    tcase_add_test(tc, test_odd_widths_and_offsets);
    tcase_add_test(tc, test_output_reader_gone);
    tcase_add_test(tc, test_output_keeps_foreign_sigpipe);
    tcase_add_test(tc, test_output_full_pipe);
    tcase_add_test(tc, test_poll_input_pipe);
    tcase_add_test(tc, test_input_regular_file);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_concurrent_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(uart_suite());
}
