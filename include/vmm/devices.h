/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform devices: the 16550A UART, the exit device, the i8042 reset line,
 * the CMOS RTC, the ACPI sleep and reset registers and the VM generation ID.
 *
 * Each has a VM-level constructor (vmm_vm_add_*) that registers it on the
 * VM's bus, wires its interrupt and ties its life to the VM. Each but the
 * VM generation ID (which lives in guest memory) also has a standalone form
 * (create, destroy, bus callbacks) so its register logic can be driven from
 * a plain bus without a VM (unit tests, other machine models): register the callbacks with the
 * device as opaque, unregister them before destroying it. Where a guest can end the run through a
 * device, the standalone form reports that through a vmm_device_exit_fn.
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

#define VMM_COM1_PORT          0x3f8
#define VMM_COM1_IRQ           4
#define VMM_EXIT_PORT          0xf4 /* a one-byte write of v ends the run with status v */
#define VMM_EXIT_DEVICE_PORTS  4    /* ports the exit device covers from its base */
#define VMM_I8042_PORT         0x60 /* data port */
#define VMM_I8042_COMMAND_PORT 0x64 /* command/status port */
#define VMM_I8042_RESET        0xfe /* command written to 0x64 that pulses the reset line */
#define VMM_RTC_PORT           0x70 /* CMOS index port; 0x71 is the data port */
#define VMM_RTC_PORTS          2    /* index and data */

/*
 * How the exit device, the i8042 and the ACPI sleep and reset registers pass
 * on a guest's request to end the run: reason VMM_EXIT_GUEST_EXIT (status: the
 * byte written), VMM_EXIT_RESET or VMM_EXIT_POWEROFF (status 0), and detail, a
 * line saying what the guest did, valid during the call only: what
 * vmm_vm_request_exit takes, which is where the vmm_vm_add_* forms send it.
 * Called on the thread that dispatched the access, inside the device's bus
 * callback, so it must not register or unregister on that bus.
 */
typedef void (*vmm_device_exit_fn)(void *opaque, enum vmm_exit_reason reason, int status,
                                   const char *detail);

/* ---- 16550A UART ---- */

struct vmm_uart;

/* UART configuration. Growth convention (abi.h); the fds of a caller whose
 * struct ends before them are -1. */
struct vmm_uart_config {
    uint32_t size; /* sizeof(struct vmm_uart_config) */
    int out_fd;    /* transmitted bytes are written here; -1: discarded */
    int in_fd;     /* received bytes are read from here; -1: none. Pollable fds
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
 * the register set for Linux's 8250 driver. cfg may be NULL (no fds, no
 * interrupt). Returns 0, -EINVAL (also a cfg->size the library does not
 * know) or -ENOMEM. The fds stay the caller's.
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

/* ---- exit device ---- */

struct vmm_exit_device;

/*
 * Create a standalone exit device: a write of v at offset 0 (1, 2 or 4
 * bytes; the low byte counts) calls request_exit(opaque, VMM_EXIT_GUEST_EXIT,
 * v, ...); reads return 0. request_exit may be NULL (the write is dropped).
 * Thread-safe. Returns 0, -EINVAL (out NULL) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_exit_device_create(vmm_device_exit_fn request_exit, void *opaque,
                                                struct vmm_exit_device **out);

/* Free a standalone exit device (unregister it first). Accepts NULL. */
VMM_API void vmm_exit_device_destroy(struct vmm_exit_device *dev);

/* The bus callbacks of an exit device (opaque = the device), covering
 * VMM_EXIT_DEVICE_PORTS ports, so that outw/outl at the base land too. */
VMM_API const struct vmm_bus_ops *vmm_exit_device_bus_ops(void);

/* The exit device on the VM's PIO bus at port (VMM_EXIT_DEVICE_PORTS
 * ports), ending the VM's run (vmm_vm_request_exit). The VM owns it.
 * Returns 0 or -errno (-EEXIST when the ports are taken). */
VMM_API VMM_MUST_USE int vmm_vm_add_exit_device(struct vmm_vm *vm, uint16_t port);

/* ---- i8042 ---- */

struct vmm_i8042;

/*
 * Create a standalone minimal i8042: the status register reads "nothing to
 * read, ready to accept", data reads 0, and command VMM_I8042_RESET (pulse
 * the reset line) calls request_exit(opaque, VMM_EXIT_RESET, 0, ...); other
 * commands and data are ignored. request_exit may be NULL. Thread-safe.
 * Returns 0, -EINVAL (out NULL) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_i8042_create(vmm_device_exit_fn request_exit, void *opaque,
                                          struct vmm_i8042 **out);

/* Free a standalone i8042 (unregister it first). Accepts NULL. */
VMM_API void vmm_i8042_destroy(struct vmm_i8042 *i8042);

/* The bus callbacks of an i8042 (opaque = the i8042), one port each: the data
 * port (VMM_I8042_PORT) and the command/status port (VMM_I8042_COMMAND_PORT).
 * The ports between them belong to other devices. */
VMM_API const struct vmm_bus_ops *vmm_i8042_data_bus_ops(void);
VMM_API const struct vmm_bus_ops *vmm_i8042_command_bus_ops(void);

/* An i8042 on the VM's PIO bus at 0x60/0x64 whose reset command ends the
 * VM's run with VMM_EXIT_RESET. The VM owns it. Returns 0 or -errno
 * (-EEXIST when the ports are taken). */
VMM_API VMM_MUST_USE int vmm_vm_add_i8042(struct vmm_vm *vm);

/* ---- CMOS real-time clock ---- */

struct vmm_rtc;

/*
 * Create a standalone CMOS real-time clock (MC146818 register set, behind
 * an index and a data port): the time of day from the host's clock (UTC,
 * BCD and 24-hour by default, as a PC firmware leaves it), status registers
 * saying the time is valid and never mid-update, and 128 bytes of CMOS RAM.
 * A guest that sets the clock moves only its own view (an offset from the
 * host clock). No interrupts. Thread-safe. Returns 0, -EINVAL (out NULL),
 * -ENOMEM or another -errno.
 */
VMM_API VMM_MUST_USE int vmm_rtc_create(struct vmm_rtc **out);

/* Free a standalone RTC (unregister it first). Accepts NULL. */
VMM_API void vmm_rtc_destroy(struct vmm_rtc *rtc);

/* The bus callbacks of an RTC (opaque = the rtc), covering VMM_RTC_PORTS
 * ports: the index port, then the data port. */
VMM_API const struct vmm_bus_ops *vmm_rtc_bus_ops(void);

/* An RTC on the VM's PIO bus at VMM_RTC_PORT (0x70/0x71). The VM owns it.
 * Returns 0 or -errno (-EEXIST when the ports are taken). */
VMM_API VMM_MUST_USE int vmm_vm_add_rtc(struct vmm_vm *vm);

/* ---- ACPI sleep and reset registers ---- */

struct vmm_acpi_pm;

/*
 * Create the standalone hardware-reduced ACPI sleep and reset registers:
 * writing SLP_EN with SLP_TYP = VMM_ACPI_S5_TYPE (machine.h) to the sleep
 * register calls request_exit(opaque, VMM_EXIT_POWEROFF, 0, ...), writing
 * VMM_ACPI_RESET_VALUE to the reset register calls request_exit(opaque,
 * VMM_EXIT_RESET, 0, ...); other sleep states are logged and ignored, and
 * sleep status reads WAK_STS. request_exit may be NULL. Thread-safe.
 * Returns 0, -EINVAL (out NULL) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_acpi_pm_create(vmm_device_exit_fn request_exit, void *opaque,
                                            struct vmm_acpi_pm **out);

/* Free standalone ACPI PM registers (unregister them first). Accepts NULL. */
VMM_API void vmm_acpi_pm_destroy(struct vmm_acpi_pm *pm);

/* The bus callbacks of the ACPI PM registers (opaque = the pm), one port
 * each: the sleep control/status register and the reset register. */
VMM_API const struct vmm_bus_ops *vmm_acpi_pm_sleep_bus_ops(void);
VMM_API const struct vmm_bus_ops *vmm_acpi_pm_reset_bus_ops(void);

/*
 * The ACPI PM registers on the VM's PIO bus at VMM_ACPI_SLEEP_PORT and
 * VMM_ACPI_RESET_PORT (machine.h), ending the VM's run with
 * VMM_EXIT_POWEROFF or VMM_EXIT_RESET. The ACPI tables (acpi.h) describe
 * them when vmm_machine.acpi_pm is set. The VM owns them. Returns 0 or
 * -errno (-EEXIST when the ports are taken).
 */
VMM_API VMM_MUST_USE int vmm_vm_add_acpi_pm(struct vmm_vm *vm);

/* ---- VM generation ID ---- */

#define VMM_VMGENID_SIZE 16 /* bytes of the ID */

/*
 * A VM generation ID (Microsoft's "Virtual Machine Generation ID", which
 * Linux's vmgenid driver reads): 16 random bytes at guest-physical gpa,
 * written now. Every vmm_vm_restore into this VM (snapshot.h) writes new
 * ones, so each restore of a snapshot and each clone is a generation of its
 * own (a live migration keeps the ID), then raises an edge on gsi: the
 * ACPI Generic Event Device that the tables describe with the device
 * (machine.h: vmgenid_addr = gpa, vmgenid_gsi = gsi; acpi.h) has the
 * guest's driver read the new ID, and Linux reseeds its random number
 * generator. The guest's memory map must reserve [gpa, gpa + 16): use
 * VMM_X86_VMGENID (machine.h). The VM owns the device, which takes part in
 * snapshots. Returns 0, -EINVAL (vm NULL, gpa not 8-byte aligned or its 16
 * bytes not writable guest memory, gsi at or past VMM_IOAPIC_PINS), -EEXIST
 * (the VM has one), -ENOMEM or another -errno.
 */
VMM_API VMM_MUST_USE int vmm_vm_add_vmgenid(struct vmm_vm *vm, uint64_t gpa, unsigned gsi);

/* Copy the VM's current generation ID (not what the guest may have written
 * over it) into id. Returns 0, -EINVAL (vm or id NULL) or -ENOENT (the VM
 * has no VMGenID). */
VMM_API VMM_MUST_USE int vmm_vm_vmgenid(struct vmm_vm *vm, uint8_t id[VMM_VMGENID_SIZE]);

#ifdef __cplusplus
}
#endif

#endif /* VMM_DEVICES_H */
