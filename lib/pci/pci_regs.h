/* SPDX-License-Identifier: Apache-2.0 */
/* The type-0 configuration header and the MSI-X capability (PCI Local Bus
 * 3.0 chapter 6, PCI Express Base 4.0 section 7.7.2): what a driver sees.
 * Private to lib/pci and the tests that play the driver. */
#ifndef VMM_PCI_REGS_H
#define VMM_PCI_REGS_H

#define PCI_CFG_SIZE 256 /* the conventional space; ECAM's extended part reads 0 */

#define PCI_VENDOR_ID           0x00
#define PCI_DEVICE_ID           0x02
#define PCI_COMMAND             0x04
#define PCI_STATUS              0x06
#define PCI_REVISION            0x08
#define PCI_PROG_IF             0x09
#define PCI_CLASS_DEVICE        0x0a /* subclass, then base class */
#define PCI_CACHE_LINE          0x0c
#define PCI_LATENCY             0x0d
#define PCI_HEADER_TYPE         0x0e
#define PCI_BAR0                0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID        0x2e
#define PCI_ROM_ADDRESS         0x30
#define PCI_CAP_PTR             0x34
#define PCI_INTERRUPT_LINE      0x3c
#define PCI_INTERRUPT_PIN       0x3d
#define PCI_CAP_START           0x40

#define PCI_COMMAND_IO           0x0001
#define PCI_COMMAND_MEMORY       0x0002
#define PCI_COMMAND_MASTER       0x0004
#define PCI_COMMAND_PARITY       0x0040
#define PCI_COMMAND_SERR         0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST  0x10

#define PCI_BAR_MEM64    0x4
#define PCI_BAR_PREFETCH 0x8

#define PCI_CAP_ID_MSIX   0x11
#define PCI_CAP_ID_VENDOR 0x09

/* MSI-X capability: id, next, Message Control, Table and PBA offset/BIR. */
#define PCI_MSIX_CAP_SIZE     12
#define PCI_MSIX_ENABLE       0x8000
#define PCI_MSIX_FMASK        0x4000
#define PCI_MSIX_ENTRY_SIZE   16
#define PCI_MSIX_ENTRY_MASKED 0x1

/* MSI capability, the 64-bit form with per-vector masking. */
#define PCI_CAP_ID_MSI   0x05
#define PCI_MSI_CAP_SIZE 24
#define PCI_MSI_ENABLE   0x0001
#define PCI_MSI_MME_MASK 0x0070 /* Multiple Message Enable: log2 of vectors enabled */
#define PCI_MSI_64BIT    0x0080
#define PCI_MSI_PVM      0x0100
#define PCI_MSI_ADDR_LO  4
#define PCI_MSI_ADDR_HI  8
#define PCI_MSI_DATA     12
#define PCI_MSI_MASK     16
#define PCI_MSI_PENDING  20

/* 0xCF8 CONFIG_ADDRESS */
#define PCI_CONFIG_ENABLE 0x80000000u

/* Slot 0: a host bridge (Red Hat's generic PCIe host bridge ID). */
#define PCI_HOST_VENDOR       0x1b36
#define PCI_HOST_DEVICE       0x0008
#define PCI_CLASS_BRIDGE_HOST 0x0600

#define PCI_DEFAULT_MMIO64_SIZE (64ull << 30)

#endif /* VMM_PCI_REGS_H */
