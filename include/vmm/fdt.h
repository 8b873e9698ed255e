/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A flattened device tree (DTB, version 17) describing a struct vmm_machine
 * (machine.h), built with libfdt's sequential-write API. x86 Linux reads one
 * handed over as setup_data SETUP_DTB; the same tree shape suits other
 * architectures' boot protocols.
 *
 * The tree (addresses and sizes are 2 cells each at the root):
 *
 *   / { compatible = "linux,dummy-virt"; model = "libvmm";
 *       #address-cells = <2>; #size-cells = <2>;
 *       interrupt-parent = <VMM_FDT_IOAPIC_PHANDLE>;
 *     memory@<base> { device_type = "memory"; reg = <base size>; }
 *                     one per writable region of machine->mem (ROM is not RAM)
 *     cpus { #address-cells = <1>; #size-cells = <0>;
 *       cpu@N { device_type = "cpu"; reg = <N>; }       N = APIC id }
 *     chosen { bootargs; linux,initrd-start; linux,initrd-end (64-bit);
 *              stdout-path = the first serial port }
 *     interrupt-controller@fee00000 { compatible = "intel,ce4100-lapic";
 *       reg; intel,virtual-wire-mode; }
 *     interrupt-controller@fec00000 { compatible = "intel,ce4100-ioapic";
 *       reg; interrupt-controller; #interrupt-cells = <2>;
 *       #address-cells = <0>; phandle; }
 *     isa@i0 { compatible = "isa"; #address-cells = <2>; #size-cells = <1>;
 *           ranges = <1 0  0 0  0x10000>;
 *       serial@i3f8 { compatible = "ns16550a"; reg = <1 0x3f8 8>;
 *         clock-frequency = <1843200>; interrupts = <gsi 3>; } }
 *     virtio_mmio@<base> { compatible = "virtio,mmio"; reg = <base size>;
 *       interrupts = <gsi 3>; dma-coherent; }
 *   }
 *   plus a memory reservation entry per machine->reserved range.
 *
 * The compatibles of the two APIC nodes are the ones arch/x86/kernel/
 * devicetree.c knows. An interrupt specifier is <pin type> with x86 Linux's
 * IOAPIC types (VMM_FDT_IRQ_*); every device here is edge-triggered, active
 * high. Serial ports live in I/O space, which a DT can only say through a
 * bus with an I/O address space: they sit under an ISA bus node (the IEEE
 * 1275 ISA binding: first address cell 1 = I/O, unit address "i<port>")
 * whose ranges map port p to address p of the root, which is how Linux turns
 * an ISA I/O address into a port number on x86 (no PCI I/O window). The bus
 * is named isa@i0 (its I/O space from port 0), since its root address 0 is
 * also memory@0's.
 *
 * Checks (nothing is returned but the error): -EINVAL: machine, its mem or
 * buf NULL; buf not 8-byte aligned; no memory regions; nr_vcpus above VMM_FDT_MAX_VCPUS; nr_serial
 * or nr_virtio above the arrays; a device GSI at or past ioapic_pins (16..256) or equal to 0 or 2;
 * a serial port 0 or past 0xfff8; a virtio window of size 0 or wrapping; a command line longer than
 * VMM_FDT_MAX_CMDLINE bytes; an initrd range that wraps. -EFAULT: an initrd range outside guest
 * memory. -ENOSPC: the buffer is too small.
 *
 * Thread-safety: the builders only read the machine (and its memory map) and
 * write their buffer; call them before the vCPUs run.
 */
#ifndef VMM_FDT_H
#define VMM_FDT_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/machine.h>
#include <vmm/memory.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The IOAPIC node's phandle, the root's interrupt-parent. */
#define VMM_FDT_IOAPIC_PHANDLE 1

/* Second cell of an IOAPIC interrupt specifier (arch/x86/kernel/devicetree.c). */
#define VMM_FDT_IRQ_EDGE_FALLING 0
#define VMM_FDT_IRQ_LEVEL_HIGH   1
#define VMM_FDT_IRQ_LEVEL_LOW    2
#define VMM_FDT_IRQ_EDGE_RISING  3

/* Limits. */
#define VMM_FDT_MAX_VCPUS   1024
#define VMM_FDT_MAX_CMDLINE 65536      /* bytes of bootargs, excluding the NUL */
#define VMM_FDT_MAX_SIZE    (2u << 20) /* largest blob vmm_fdt_create makes */

/* What /chosen says. Zero means default (nothing). params, when not NULL,
 * has its .size set (growth convention, abi.h): a size the library does not
 * know is refused with -EINVAL before anything is built. */
struct vmm_fdt_params {
    uint32_t size;         /* sizeof(struct vmm_fdt_params); growth convention (abi.h) */
    const char *cmdline;   /* bootargs; NULL or "": no bootargs property */
    uint64_t initrd_start; /* guest-physical start of the initrd */
    uint64_t initrd_size;  /* 0: no linux,initrd-* properties */
};

/*
 * Build the device tree for machine into buf[0..size) (8-byte aligned, as
 * libfdt wants; the whole buffer serves as scratch space while building).
 * params may be NULL. Returns the blob's size (its totalsize header field,
 * <= size) or -EINVAL/-EFAULT/-ENOSPC (see above). On failure buf holds no
 * valid tree. Nothing is written past buf + size.
 */
VMM_API VMM_MUST_USE int vmm_fdt_build(const struct vmm_machine *machine,
                                       const struct vmm_fdt_params *params, void *buf, size_t size);

/*
 * Build the device tree into a malloc'ed buffer of exactly its size: *blob
 * (free it with free()) and *size. params may be NULL. Returns 0, or
 * -EINVAL/-EFAULT/-ENOMEM, or -ENOSPC past VMM_FDT_MAX_SIZE; on failure
 * *blob is NULL and *size 0.
 */
VMM_API VMM_MUST_USE int vmm_fdt_create(const struct vmm_machine *machine,
                                        const struct vmm_fdt_params *params, void **blob,
                                        size_t *size);

/*
 * Copy a device tree blob (any valid one: its header is checked and its
 * totalsize must be at most size) into guest memory at gpa. Returns the
 * number of bytes written (the totalsize), -EINVAL (fdt NULL, a bad header,
 * totalsize above size or INT_MAX), -EFAULT (outside guest memory) or -EROFS;
 * nothing is written on failure.
 */
VMM_API VMM_MUST_USE int vmm_fdt_write(struct vmm_memory *mem, vmm_gpa_t gpa, const void *fdt,
                                       size_t size);

#ifdef __cplusplus
}
#endif

#endif /* VMM_FDT_H */
