/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The machine a guest sees, described once and handed to everything that
 * tells the guest about it: the e820/PVH memory map writers, the ACPI and MP
 * table builders and the device-tree builder. An application fills one
 * struct vmm_machine with what it created (memory, vCPUs, serial ports,
 * virtio-mmio devices) and each describer reads it; none of them creates a
 * device.
 *
 * x86 guest-physical layout used by the library's describers (an application
 * may place things elsewhere through the builders' address arguments):
 *
 *   0x0000_0000 .. 0x0000_1000   real-mode IVT/BDA (RAM, left alone)
 *   0x0000_1000 .. 0x0001_0000   long-mode boot GDT and page tables (vcpu.h)
 *   0x0001_0000 .. 0x0001_1000   zero page (struct boot_params) or hvm_start_info
 *   0x0001_1000 .. 0x0002_0000   PVH memory map and module list
 *   0x0002_0000 .. 0x0003_0000   kernel command line
 *   0x0003_0000 .. 0x0009_fc00   setup_data chain (device tree, ...)
 *   0x0009_fc00 .. 0x000a_0000   Intel MP table (reserved in e820)
 *   0x000a_0000 .. 0x000e_0000   legacy VGA/ROM hole (reserved in e820)
 *   0x000e_0000 .. 0x0010_0000   ACPI tables, RSDP first (reserved in e820);
 *                                the VMGenID's 16 bytes at 0xf_f000 (devices.h)
 *   0x0010_0000 ..               kernel, then initrd as high as allowed
 *   0xc000_0000 .. 0xd000_0000   PCI 32-bit MMIO window (pci.h)
 *   0xd000_0000 ..               virtio-mmio devices, 4 KiB apart (vmm-run)
 *   0xe000_0000 .. 0xe010_0000   PCI ECAM, bus 0 (pci.h)
 *   0xfec0_0000                  IOAPIC
 *   0xfee0_0000                  local APICs
 */
#ifndef VMM_MACHINE_H
#define VMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMM_X86_ZERO_PAGE        0x10000ull
#define VMM_X86_PVH_INFO         0x10000ull /* hvm_start_info, when booting PVH */
#define VMM_X86_PVH_MEMMAP       0x11000ull
#define VMM_X86_CMDLINE          0x20000ull
#define VMM_X86_CMDLINE_MAX      0x10000ull /* bytes, including the NUL */
#define VMM_X86_SETUP_DATA       0x30000ull
#define VMM_X86_SETUP_DATA_END   0x9fc00ull
#define VMM_X86_MPTABLE          0x9fc00ull
#define VMM_X86_EBDA_START       0x9fc00ull /* start of the reserved low range */
#define VMM_X86_ACPI_TABLES      0xe0000ull
#define VMM_X86_ACPI_TABLES_END  0x100000ull
#define VMM_X86_VMGENID          0xff000ull /* past the largest ACPI tables, still reserved */
#define VMM_X86_HIGH_MEMORY      0x100000ull
#define VMM_X86_IOAPIC_ADDR      0xfec00000ull
#define VMM_X86_LAPIC_ADDR       0xfee00000ull
#define VMM_X86_VIRTIO_MMIO_BASE 0xd0000000ull
#define VMM_X86_VIRTIO_MMIO_SIZE 0x1000ull

/* ACPI fixed-hardware replacement registers of the hardware-reduced FADT
 * (see devices.h, vmm_vm_add_acpi_pm). */
#define VMM_ACPI_SLEEP_PORT  0x3c0 /* SLEEP_CONTROL_REG and SLEEP_STATUS_REG, 8 bits */
#define VMM_ACPI_RESET_PORT  0x3c1 /* RESET_REG, 8 bits */
#define VMM_ACPI_RESET_VALUE 0x01  /* RESET_VALUE */
#define VMM_ACPI_S5_TYPE     5     /* SLP_TYP of \_S5 in the DSDT */

#define VMM_MACHINE_MAX_SERIAL   4
#define VMM_MACHINE_MAX_VIRTIO   32
#define VMM_MACHINE_MAX_RESERVED 8

struct vmm_machine_serial {
    uint16_t port; /* I/O port base of a 16550 (8 ports) */
    uint32_t gsi;  /* its IOAPIC input, edge-triggered, active high */
};

struct vmm_machine_virtio {
    uint64_t base; /* guest-physical base of the virtio-mmio register window */
    uint64_t size; /* window size (VMM_X86_VIRTIO_MMIO_SIZE) */
    uint32_t gsi;  /* IOAPIC input, edge-triggered, active high */
};

struct vmm_machine_range {
    uint64_t base;
    uint64_t size;
};

/* A PCI root complex (bus 0), filled by vmm_pci_add_to_machine (pci.h). */
struct vmm_machine_pci {
    bool present;
    uint64_t ecam_base; /* 1 MiB: bus 0 (MCFG) */
    uint64_t mmio32_base, mmio32_size;
    uint64_t mmio64_base, mmio64_size; /* size 0: none */
    uint32_t io_base, io_size;
    uint32_t intx_gsi[4]; /* INTA of slot s arrives at intx_gsi[s % 4] (_PRT) */
};

/* What the guest's firmware tables describe. Zero means default. Under the
 * growth convention (abi.h): every function that takes a machine (and the
 * kernel options and Linux config that point at one) reads a zero-filled
 * copy of its first .size bytes, and refuses a size it does not know with
 * -EINVAL before doing anything. */
struct vmm_machine {
    uint32_t size;                /* sizeof(struct vmm_machine) */
    unsigned nr_vcpus;            /* local APIC ids 0 .. nr_vcpus-1 */
    const struct vmm_memory *mem; /* every region is RAM */
    uint64_t lapic_addr;          /* default VMM_X86_LAPIC_ADDR */
    uint64_t ioapic_addr;         /* default VMM_X86_IOAPIC_ADDR */
    uint8_t ioapic_id;            /* default nr_vcpus (after the local APIC ids) */
    unsigned ioapic_pins;         /* default 24 */
    unsigned nr_serial;
    struct vmm_machine_serial serial[VMM_MACHINE_MAX_SERIAL];
    unsigned nr_virtio;
    struct vmm_machine_virtio virtio[VMM_MACHINE_MAX_VIRTIO];
    /* Guest-physical ranges to mark reserved in the memory map, besides the
     * library's own (the low firmware range 0x9fc00..0x100000). */
    unsigned nr_reserved;
    struct vmm_machine_range reserved[VMM_MACHINE_MAX_RESERVED];
    bool acpi_pm;               /* the ACPI sleep/reset ports exist (VMM_ACPI_*_PORT) */
    bool rtc;                   /* a CMOS RTC at 0x70/0x71 */
    bool i8042;                 /* an i8042 at 0x60/0x64 */
    struct vmm_machine_pci pci; /* a PCI root complex, when pci.present */
    /* A VM generation ID (devices.h, vmm_vm_add_vmgenid) when vmgenid_addr
     * is not 0: the guest-physical address of its 16 bytes (8-byte aligned,
     * in memory the memory map reserves: VMM_X86_VMGENID, or a range listed
     * in reserved[]), and the GSI (edge, active high) of the ACPI Generic
     * Event Device that tells the guest it changed. */
    uint64_t vmgenid_addr;
    uint32_t vmgenid_gsi;
};

#ifdef __cplusplus
}
#endif

#endif /* VMM_MACHINE_H */
