/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform devices: the 16550A UART, the exit device and the i8042 reset line.
 *
 * Each has a VM-level constructor (vmm_vm_add_*) that registers it on the
 * VM's bus, wires its interrupt and ties its life to the VM. The UART also
 * has a standalone form so its register logic can be driven from a plain bus
 * (unit tests, other machine models).
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/bus.h>
#include <vmm/error.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMM_COM1_PORT   0x3f8
#define VMM_COM1_IRQ    4
#define VMM_EXIT_PORT   0xf4 /* a one-byte write of v ends the run with status v */
#define VMM_I8042_PORT  0x60 /* data port; 0x64 is the command/status port */
#define VMM_I8042_RESET 0xfe /* command written to 0x64 that pulses the reset line */
#define VMM_RTC_PORT    0x70 /* CMOS index port; 0x71 is the data port */

struct vmm_uart;

/* UART configuration. Zero means default; fields are only appended. */
struct vmm_uart_config {
    int out_fd; /* transmitted bytes are written here; -1: discarded */
    int in_fd;  /* received bytes are read from here; -1: none. Pollable fds
                   (tty, pipe, socket) are read by the event loop as data
                   arrives; a regular file is read as the guest drains the FIFO. */
    /* Interrupt line: called with the new level whenever it changes, with the
     * UART's lock held (so level changes stay in order): it must not call
     * back into the UART. NULL: no interrupt. Called on vCPU or event-loop
     * threads. vmm_vm_add_uart ignores it and drives the VM's line. */
    void (*set_irq)(void *opaque, bool level);
    void *irq_opaque;
};

/*
 * Create a standalone 16550A: a 64-byte receive FIFO (output is written out
 * at once), THRE/RDA/RLS/MSR interrupts gated by MCR.OUT2 as on a PC,
 * scratch, line control, modem control with loopback, divisor latch. Enough of
 * the register set for Linux's 8250 driver. Returns 0, -EINVAL or -ENOMEM.
 * The fds stay the caller's.
 */
VMM_API VMM_MUST_USE int vmm_uart_create(const struct vmm_uart_config *cfg, struct vmm_uart **out);

/* Free a standalone UART (unregister it from any bus first). Accepts NULL. */
VMM_API void vmm_uart_destroy(struct vmm_uart *uart);

/* The bus callbacks of a UART (opaque = the uart), covering 8 ports. */
VMM_API const struct vmm_bus_ops *vmm_uart_bus_ops(void);

/* Put up to len received bytes in the receive FIFO (as if they came down the
 * line); returns how many fit. Thread-safe. */
VMM_API size_t vmm_uart_receive(struct vmm_uart *uart, const void *buf, size_t len);

/* Read what in_fd has ready into the receive FIFO. Returns bytes taken,
 * 0 at end of input or when the FIFO is full, or -errno. Thread-safe. */
VMM_API int vmm_uart_poll_input(struct vmm_uart *uart);

/*
 * A UART on the VM's PIO bus at port (8 ports), interrupting on gsi, with
 * in_fd watched by the VM's event loop. The VM owns it. Returns 0 or -errno
 * (-EEXIST when the ports are taken). out may be NULL.
 */
VMM_API VMM_MUST_USE int vmm_vm_add_uart(struct vmm_vm *vm, uint16_t port, unsigned gsi,
                                         const struct vmm_uart_config *cfg, struct vmm_uart **out);

/* The exit device at port (4 ports): a write of v at port (1, 2 or 4 bytes;
 * the low byte counts) ends the run with VMM_EXIT_GUEST_EXIT, status v; reads
 * return 0. Returns 0 or -errno. */
VMM_API VMM_MUST_USE int vmm_vm_add_exit_device(struct vmm_vm *vm, uint16_t port);

/* A minimal i8042 at 0x60/0x64: status reads say "nothing to read, ready to
 * accept", and command 0xfe (pulse reset) ends the run with VMM_EXIT_RESET.
 * Returns 0 or -errno. */
VMM_API VMM_MUST_USE int vmm_vm_add_i8042(struct vmm_vm *vm);

/*
 * A CMOS real-time clock at 0x70/0x71 (MC146818 register set): the time of
 * day from the host's clock (UTC, BCD and 24-hour by default, as a PC
 * firmware leaves it), status registers saying the time is valid and never
 * mid-update, and 128 bytes of CMOS RAM. A guest that sets the clock moves
 * only its own view (an offset from the host clock). No interrupts.
 * Returns 0 or -errno (-EEXIST when the ports are taken).
 */
VMM_API VMM_MUST_USE int vmm_vm_add_rtc(struct vmm_vm *vm);

/*
 * The hardware-reduced ACPI sleep and reset registers (see machine.h:
 * VMM_ACPI_SLEEP_PORT, VMM_ACPI_RESET_PORT): writing SLP_EN with SLP_TYP =
 * VMM_ACPI_S5_TYPE ends the run with VMM_EXIT_POWEROFF, writing
 * VMM_ACPI_RESET_VALUE to the reset port ends it with VMM_EXIT_RESET. The
 * ACPI tables (acpi.h) describe them when vmm_machine.acpi_pm is set.
 * Returns 0 or -errno.
 */
VMM_API VMM_MUST_USE int vmm_vm_add_acpi_pm(struct vmm_vm *vm);

#ifdef __cplusplus
}
#endif

#endif /* VMM_DEVICES_H */
