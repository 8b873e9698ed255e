/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x86 firmware tables built from a struct vmm_machine (machine.h): the ACPI
 * tables (RSDP, XSDT, a hardware-reduced FADT, MADT and a DSDT) and the Intel
 * MultiProcessor Specification 1.4 table. They describe the machine to the
 * guest's boot code; neither needs the vCPUs or devices to exist yet, since
 * they read only the struct vmm_machine.
 *
 * What the guest is told (the whole contract; tests decompile the tables with
 * iasl and parse the MP table back):
 *
 * ACPI, at addr (default VMM_X86_ACPI_TABLES) in this order, each 16-byte
 * aligned: RSDP (revision 2, both checksums) -> XSDT -> FADT, MADT; the FADT
 * points at the DSDT (X_DSDT only).
 * - FADT: revision 6.5, flags HW_REDUCED_ACPI (| RESET_REG_SUP with
 *   acpi_pm), hypervisor vendor "LIBVMM". With machine->acpi_pm:
 *   SLEEP_CONTROL_REG and SLEEP_STATUS_REG are one 8-bit SystemIO register
 *   at VMM_ACPI_SLEEP_PORT, RESET_REG an 8-bit SystemIO register at
 *   VMM_ACPI_RESET_PORT taking VMM_ACPI_RESET_VALUE. IAPC_BOOT_ARCH: 8042
 *   only with machine->i8042; VGA not present; MSI not supported; CMOS RTC
 *   not present unless machine->rtc. No FACS, no SCI (hardware-reduced).
 * - MADT: the local APIC address, flags 0 (no 8259 PICs), one enabled
 *   Processor Local APIC per vCPU (processor UID = APIC id = index), the
 *   IOAPIC (id, address, GSI base 0), an Interrupt Source Override for ISA
 *   IRQ 0 -> GSI 2 (edge, active high) and a Local APIC NMI on LINT1 for all
 *   processors. ISA IRQs 1-15 map to GSIs 1-15, edge, active high (the ISA
 *   default, so they need no override).
 * - DSDT: Scope \_SB_ with, per serial port serial[n-1], Device COMn (_HID
 *   PNP0501, _UID n, _CRS IO(port, 8) + IRQNoFlags {gsi}, or an Extended
 *   Interrupt for a gsi >= 16); with machine->rtc Device RTC_ (PNP0B00, IO
 *   0x70, length 2, no IRQ: the RTC model raises none); with machine->i8042
 *   Device PS2K (PNP0303, IO 0x60 and 0x64, IRQ 1); per virtio-mmio device
 *   virtio[n], Device VRnn (decimal; _HID "LNRO0005", _UID n, _CRS
 *   Memory32Fixed(ReadWrite, base, size) + Interrupt(ResourceConsumer, Edge,
 *   ActiveHigh, Exclusive) {gsi}), which Linux's virtio_mmio driver matches.
 *   With machine->vmgenid_addr, Device VGEN (_HID "LVMM0001", _CID
 *   "VM_GEN_COUNTER", _DDN "VM_Gen_Counter", ADDR = Package {the address's
 *   low 32 bits, its high 32 bits}), which Linux's vmgenid driver matches,
 *   and Device GED0 (_HID ACPI0013, a Generic Event Device; _CRS
 *   Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {vmgenid_gsi};
 *   Method _EVT(1, Serialized): Notify(VGEN, 0x80) when Arg0 is that GSI).
 *   With machine->acpi_pm also \_S5_ = Package {VMM_ACPI_S5_TYPE, 0, 0, 0}.
 *
 * MP table, at addr (default VMM_X86_MPTABLE): the floating pointer (16
 * bytes, at addr) then the configuration table: one processor entry per vCPU
 * (the BSP flag on vCPU 0), bus 0 "ISA", the IOAPIC, I/O interrupt entries
 * for ISA IRQs 0-15 except the cascade IRQ 2 (IRQ 0 to pin 2, the others to
 * their own pin, conforming polarity and trigger) and for every device GSI
 * >= 16 (edge, active high, source bus irq = GSI), and local interrupt
 * entries ExtINT on LINT0 and NMI on LINT1 of every local APIC. Feature byte
 * 2 says virtual-wire mode (no IMCR).
 *
 * machine->nr_vcpus 0 means 1; machine->mem is not used (the writers take
 * the memory to write into). Checks, shared by both builders (nothing is
 * written when one fails): -EINVAL: machine or mem NULL, nr_vcpus above the
 * table's limit, nr_serial, nr_virtio or nr_reserved above the array sizes,
 * a reserved range that wraps, an explicit ioapic_id (0 means the default,
 * nr_vcpus) below nr_vcpus, which would be a local APIC's id, ioapic_pins
 * outside 16..256, a device GSI at
 * or past ioapic_pins or equal to 0 or 2 (the timer's), a serial port of 0
 * or one whose 8 ports pass 0xffff, a virtio window of size 0 or that wraps,
 * or (ACPI only: Memory32Fixed) ends past 4 GiB, a LAPIC/IOAPIC page
 * reaching 4 GiB, a table address not 16-byte aligned, at or past end, or
 * whose tables would reach past 4 GiB, a vmgenid_addr not 8-byte aligned
 * or whose vmgenid_gsi is unusable (as a device GSI), or (ACPI) tables that
 * would cover the VMGenID's 16 bytes. -ENOSPC: the tables do not fit in
 * [addr, end). -EFAULT: the range written lies outside guest memory.
 * -EROFS: it lies on a read-only region. -ENOMEM.
 *
 * Thread-safety: the builders only read the machine and write their buffer
 * or guest memory; call them before the vCPUs run.
 */
#ifndef VMM_ACPI_H
#define VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/machine.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most vCPUs the MADT and the MP table describe: xAPIC ids 0..254 (255 is
 * the broadcast id). */
#define VMM_ACPI_MAX_VCPUS    255
#define VMM_MPTABLE_MAX_VCPUS 255

/* End of the default MP table area: the last KiB of base memory, where Linux
 * looks for the floating pointer (it scans 0x9fc00..0xa0000). */
#define VMM_X86_MPTABLE_END 0xa0000ull

/* The CMOS register holding the century (lib/devices/rtc.c), named in the
 * FADT's CENTURY field when the machine has an RTC. */
#define VMM_ACPI_RTC_CENTURY 0x32

/* OEM id in every ACPI table header and the MP table. */
#define VMM_ACPI_OEM_ID "LIBVMM"

/* Where the ACPI tables go. Zero means default; fields are only appended. */
struct vmm_acpi_options {
    uint32_t size;  /* sizeof(struct vmm_acpi_options); growth convention (abi.h) */
    vmm_gpa_t addr; /* the RSDP, 16-byte aligned (0: VMM_X86_ACPI_TABLES). A
                     * guest that scans for it looks in 0xe0000..0xfffff; one
                     * booted through boot_params/PVH can take the address. */
    vmm_gpa_t end;  /* every table ends at or below this (0: VMM_X86_ACPI_TABLES_END) */
};

/* Where each ACPI table went (guest-physical addresses). */
struct vmm_acpi_result {
    uint32_t size;  /* in: sizeof(struct vmm_acpi_result) (abi.h): filled that far */
    vmm_gpa_t rsdp; /* == addr */
    vmm_gpa_t xsdt;
    vmm_gpa_t fadt;
    vmm_gpa_t madt;
    vmm_gpa_t dsdt;
    uint64_t len;   /* bytes used: every table lies in [rsdp, rsdp + len) */
    vmm_gpa_t mcfg; /* the MCFG, when machine->pci.present; else 0 */
};

/*
 * Build the ACPI tables for machine into buf[0..size), as they will lie at
 * guest-physical address addr (buf[0] is addr; addr 16-byte aligned; every
 * pointer between the tables is addr-relative). The rest of buf is left
 * alone. res may be NULL (else the caller sets res->size, abi.h). Returns
 * the number of bytes used (> 0), or -EINVAL (see the checks above; also buf
 * NULL, or a res->size the library does not know) or -ENOSPC (size too
 * small).
 * Nothing is written to buf on failure.
 */
VMM_API VMM_MUST_USE int vmm_acpi_build(const struct vmm_machine *machine, vmm_gpa_t addr,
                                        void *buf, size_t size, struct vmm_acpi_result *res);

/*
 * Build the ACPI tables and copy them into guest memory at opts->addr; they
 * must fit below opts->end. opts and res may be NULL; the caller sets their
 * .size (abi.h; a size the library does not know: -EINVAL, nothing
 * written). Returns the number of bytes written (also in res->len; reserve
 * [addr, addr + len) in the guest's memory map), or -EINVAL/-ENOSPC/-EFAULT/-EROFS (see above);
 * nothing is written on failure.
 */
VMM_API VMM_MUST_USE int vmm_acpi_write(struct vmm_memory *mem, const struct vmm_machine *machine,
                                        const struct vmm_acpi_options *opts,
                                        struct vmm_acpi_result *res);

/* Where the MP table goes. Zero means default; fields are only appended. */
struct vmm_mptable_options {
    uint32_t size;  /* sizeof(struct vmm_mptable_options); growth convention (abi.h) */
    vmm_gpa_t addr; /* the floating pointer, 16-byte aligned (0: VMM_X86_MPTABLE) */
    vmm_gpa_t end;  /* the table ends at or below this (0: VMM_X86_MPTABLE_END). The
                     * default KiB holds 40 vCPUs when every device GSI is below
                     * 16 (each distinct GSI >= 16 costs 8 bytes, a vCPU 20); the
                     * configuration table may lie anywhere, so a larger end (the
                     * memory up to 0xe0000 is reserved in the memory map too)
                     * holds all VMM_MPTABLE_MAX_VCPUS. */
};

/* Where the MP table went. */
struct vmm_mptable_result {
    uint32_t size;      /* in: sizeof(struct vmm_mptable_result) (abi.h): filled that far */
    vmm_gpa_t floating; /* the 16-byte floating pointer, == addr */
    vmm_gpa_t table;    /* the configuration table ("PCMP") */
    uint64_t len;       /* bytes used from addr */
    unsigned entries;   /* entries in the configuration table */
};

/*
 * Build the MP floating pointer and configuration table for machine into
 * buf[0..size), as they will lie at guest-physical address addr (16-byte
 * aligned; buf[0] is addr). res may be NULL (else the caller sets res->size,
 * abi.h). Returns the number of bytes used (> 0), or -EINVAL (also a
 * res->size the library does not know)/-ENOSPC; nothing is written to buf on failure.
 */
VMM_API VMM_MUST_USE int vmm_mptable_build(const struct vmm_machine *machine, vmm_gpa_t addr,
                                           void *buf, size_t size, struct vmm_mptable_result *res);

/*
 * Build the MP table and copy it into guest memory at opts->addr (it must
 * end at or below opts->end). opts and res may be NULL; the caller sets their
 * .size (abi.h; a size the library does not know: -EINVAL). Returns the
 * number of bytes written, or -EINVAL/-ENOSPC/-EFAULT/-EROFS; nothing is written on
 * failure.
 */
VMM_API VMM_MUST_USE int vmm_mptable_write(struct vmm_memory *mem,
                                           const struct vmm_machine *machine,
                                           const struct vmm_mptable_options *opts,
                                           struct vmm_mptable_result *res);

#ifdef __cplusplus
}
#endif

#endif /* VMM_ACPI_H */
