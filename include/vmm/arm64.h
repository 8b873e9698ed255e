/* SPDX-License-Identifier: Apache-2.0 */
/*
 * arm64 (aarch64) guests: the machine layout, the Linux Image boot protocol
 * (Documentation/arch/arm64/booting.rst), the device tree an arm64 kernel
 * needs, the vCPU entry state and a PL011 UART.
 *
 * On an arm64 host a VM (vm.h) needs VMM_IRQCHIP_KERNEL: an in-kernel
 * vGICv3 with its distributor and redistributors where the layout below
 * says. It is created and initialised once every vCPU exists: at the first
 * run, or at the first irqfd (vmm_vm_irqfd, which every virtio device binds),
 * since KVM takes irqfds only from then on. So create all vCPUs before such
 * devices; vmm_vm_irqfd on a VM without vCPUs fails with -EAGAIN, and
 * vmm_vcpu_create after the vGIC's initialisation fails as KVM refuses it. Interrupt
 * line n (vmm_vm_set_irq, vmm_vm_irqfd, n < VMM_IOAPIC_PINS) is SPI n
 * (interrupt ID 32 + n). vCPU 0 starts at its entry state; the others start
 * powered off and are brought up by the guest through PSCI 0.2 (CPU_ON, over
 * HVC), which KVM implements; a PSCI SYSTEM_OFF ends the run with
 * VMM_EXIT_POWEROFF, SYSTEM_RESET with VMM_EXIT_RESET.
 *
 * The Image parser and the device-tree builder are plain data code and work
 * on any host; the vCPU calls return -ENOTSUP on a host that is not arm64.
 * On arm64 the x86-only calls return -ENOTSUP: x86 registers, CPUID, MSRs,
 * the LAPIC, the x86 entry states, function VMs, snapshots, and
 * the port I/O devices on a VM (vmm_vm_add_uart, _exit_device, _i8042,
 * _rtc, _acpi_pm; their standalone forms work on any bus).
 *
 * Guest-physical layout (vmm-run on arm64; as QEMU's -M virt where it can):
 *
 *   0x0800_0000 .. 0x0801_0000   GICv3 distributor
 *   0x080a_0000 ..               GICv3 redistributors, 128 KiB per vCPU
 *   0x0900_0000 .. 0x0900_1000   PL011 UART, SPI 1
 *   0x0901_0000 .. 0x0901_1000   exit device (test guests), no interrupt
 *   0x0a00_0000 ..               virtio-mmio devices, 4 KiB apart, SPI 16 + n
 *   0x4000_0000 ..               RAM
 */
#ifndef VMM_ARM64_H
#define VMM_ARM64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/devices.h>
#include <vmm/error.h>
#include <vmm/fdt.h>
#include <vmm/machine.h>
#include <vmm/memory.h>
#include <vmm/vcpu.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMM_ARM64_GIC_DIST_BASE        0x08000000ull
#define VMM_ARM64_GIC_DIST_SIZE        0x10000ull
#define VMM_ARM64_GIC_REDIST_BASE      0x080a0000ull
#define VMM_ARM64_GIC_REDIST_SIZE      0x20000ull /* per vCPU */
#define VMM_ARM64_MAX_VCPUS            64u        /* redistributors end below the UART */
#define VMM_ARM64_UART_BASE            0x09000000ull
#define VMM_ARM64_UART_SIZE            0x1000ull
#define VMM_ARM64_UART_SPI             1u
#define VMM_ARM64_EXIT_BASE            0x09010000ull
#define VMM_ARM64_EXIT_SIZE            0x1000ull
#define VMM_ARM64_VIRTIO_MMIO_BASE     0x0a000000ull
#define VMM_ARM64_VIRTIO_MMIO_SIZE     0x1000ull
#define VMM_ARM64_VIRTIO_SPI_BASE      16u
#define VMM_ARM64_RAM_BASE             0x40000000ull
#define VMM_ARM64_GIC_PHANDLE          1u
#define VMM_ARM64_CLOCK_PHANDLE        2u
#define VMM_ARM64_IMAGE_MAGIC          0x644d5241u /* "ARM\x64" at offset 56 */
#define VMM_ARM64_IMAGE_HEADER_SIZE    64u
#define VMM_ARM64_IMAGE_FLAG_BE        0x1ull /* bit 0: big-endian kernel */
#define VMM_ARM64_IMAGE_FLAG_PAGE_MASK 0x6ull /* bits 1-2: page size (0 unspecified, 1 4K...) */
#define VMM_ARM64_IMAGE_FLAG_ANYWHERE  0x8ull /* bit 3: 2 MiB-aligned base anywhere in RAM */

/* What an Image header says (booting.rst, "Call the kernel image"). */
struct vmm_arm64_image {
    uint32_t size;        /* sizeof(struct vmm_arm64_image) (abi.h): filled that far */
    uint64_t text_offset; /* load offset from a 2 MiB-aligned base */
    uint64_t image_size;  /* bytes the kernel occupies from there, BSS included */
    uint64_t flags;       /* VMM_ARM64_IMAGE_FLAG_* */
};

/*
 * Parse the 64-byte header of an arm64 Linux Image in buf[0..len). Refuses,
 * with a one-line reason in why (why_len bytes, may be 0): a buffer shorter
 * than the header, a wrong magic, a big-endian kernel, an image_size of 0
 * (kernels older than 3.17, whose size the header does not give), an
 * image_size smaller than the file, a text_offset that is not 4 KiB aligned
 * or past 2 MiB. Returns 0, -EINVAL (NULL, an out->size the library does not
 * know) or -ENOEXEC (not a bootable Image).
 */
VMM_API VMM_MUST_USE int vmm_arm64_image_parse(const void *buf, size_t len,
                                               struct vmm_arm64_image *out, char *why,
                                               size_t why_len);

/* The machine an arm64 device tree describes. Zero means default/none. */
struct vmm_arm64_machine {
    uint32_t size;                /* sizeof(struct vmm_arm64_machine) (abi.h) */
    unsigned nr_vcpus;            /* 1 .. VMM_ARM64_MAX_VCPUS; MPIDR affinity 0 = index */
    const struct vmm_memory *mem; /* every writable region is RAM */
    bool uart;                    /* the PL011 at VMM_ARM64_UART_BASE, SPI VMM_ARM64_UART_SPI */
    unsigned nr_virtio;
    struct vmm_machine_virtio virtio[VMM_MACHINE_MAX_VIRTIO]; /* .gsi = its SPI number */
};

/*
 * Build the device tree of an arm64 machine into a malloc'ed blob (free it
 * with free()): / with compatible "linux,dummy-virt", memory nodes, cpus
 * (each "arm,armv8" with enable-method "psci"), psci ("arm,psci-0.2", method
 * "hvc"), the architected timer ("arm,armv8-timer": PPIs 13, 14, 11, 10),
 * the GICv3 ("arm,gic-v3": distributor and redistributor regions), a fixed
 * 24 MHz apb-pclk clock, the PL011 ("arm,pl011", "arm,primecell", with that
 * clock as uartclk and apb_pclk), one "virtio,mmio" node per device (SPIs,
 * edge-triggered, as irqfd delivers them), and /chosen with bootargs,
 * linux,initrd-start/end and stdout-path (the PL011). params may be NULL.
 * Returns 0, -EINVAL (NULL arguments, an unknown .size, no memory, a vCPU
 * count of 0 or past VMM_ARM64_MAX_VCPUS, an SPI past the vGIC's, a virtio
 * window of size 0 or wrapping, a command line past VMM_FDT_MAX_CMDLINE),
 * -EFAULT (an initrd outside guest memory), -ENOMEM or -ENOSPC.
 */
VMM_API VMM_MUST_USE int vmm_arm64_fdt_create(const struct vmm_arm64_machine *machine,
                                              const struct vmm_fdt_params *params, void **blob,
                                              size_t *size);

/* Where vmm_arm64_linux_load put things, and where to enter. */
struct vmm_arm64_linux {
    uint32_t size;       /* sizeof(struct vmm_arm64_linux) (abi.h): filled that far */
    uint64_t kernel;     /* guest-physical address of the Image (the entry point) */
    uint64_t kernel_end; /* kernel + image_size */
    uint64_t initrd;     /* 0: none */
    uint64_t initrd_size;
    uint64_t dtb; /* x0 at entry */
};

/*
 * Load an arm64 Linux Image (and an initrd, which may be NULL) into mem,
 * which must be machine->mem, in its first RAM region: the kernel at the region's 2 MiB-aligned
 * start + text_offset, the device tree (vmm_arm64_fdt_create with cmdline and
 * the initrd) in the last 2 MiB-aligned 2 MiB of the region, the initrd just
 * below it. Refuses, with a one-line reason in why, what cannot boot
 * (-ENOEXEC: see vmm_arm64_image_parse; -ENOSPC: the kernel, initrd and tree
 * do not fit). Returns 0, -EINVAL, -EFAULT, -ENOMEM, -ENOEXEC or -ENOSPC.
 */
VMM_API VMM_MUST_USE int
vmm_arm64_linux_load(struct vmm_memory *mem, const struct vmm_arm64_machine *machine,
                     const void *kernel, size_t kernel_len, const void *initrd, size_t initrd_len,
                     const char *cmdline, struct vmm_arm64_linux *out, char *why, size_t why_len);

/*
 * The Linux entry state on vCPU 0 (booting.rst): PC = pc, X0 = x0 (the
 * device tree), X1-X3 = 0, PSTATE = EL1h with D, A, I and F masked, the MMU
 * and caches off (KVM's reset state). Also how a test guest is entered.
 * Returns 0, -EINVAL (NULL), -ENOTSUP (not an arm64 host) or a -errno of
 * KVM_SET_ONE_REG. Before the vCPU runs.
 */
VMM_API VMM_MUST_USE int vmm_vcpu_set_arm64_entry(struct vmm_vcpu *vcpu, uint64_t pc, uint64_t x0);

/* One register by its KVM_{GET,SET}_ONE_REG id (64-bit registers only; KVM
 * API, "KVM_SET_ONE_REG"). Return 0, -EINVAL (NULL, a register that is not
 * 64 bits) or a -errno from KVM (-ENOENT: no such register). */
VMM_API VMM_MUST_USE int vmm_vcpu_get_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t *val);
VMM_API VMM_MUST_USE int vmm_vcpu_set_one_reg(struct vmm_vcpu *vcpu, uint64_t id, uint64_t val);

/* ---- PL011 UART ---- */

struct vmm_pl011;

struct vmm_pl011_config {
    uint32_t size; /* sizeof(struct vmm_pl011_config) (abi.h) */
    int out_fd;    /* transmitted bytes are written here; -1: discarded */
    /* Received bytes are read from here; -1: none (vmm_pl011_receive only).
     * On a VM a pollable fd (tty, pipe, socket) is read by the VM's event
     * loop as data arrives, pausing while the receive FIFO is full; a regular
     * file, and any fd of a standalone UART, is read when the guest finds
     * the FIFO empty (flag or data register). The fd stays the caller's. */
    int in_fd;
    /* Interrupt line, called with the new level whenever it changes (with
     * the UART's lock held: it must not call back into the UART). NULL: no
     * interrupt. vmm_vm_add_pl011 ignores it and drives the VM's line. */
    void (*set_irq)(void *opaque, bool level);
    void *irq_opaque;
};

/*
 * Create a standalone PL011 (ARM PrimeCell UART r1p5, as the amba-pl011
 * driver knows it): data, flag, baud-rate, line and control registers, a
 * 16-byte receive FIFO fed by vmm_pl011_receive, the TX, RX and
 * receive-timeout interrupts with their mask, raw, masked and clear
 * registers, and the peripheral and PrimeCell ID registers at 0xfe0. Output
 * is written out at once (the transmit FIFO is never full). cfg may be
 * NULL. Returns 0, -EINVAL or -ENOMEM. The fd stays the caller's.
 */
VMM_API VMM_MUST_USE int vmm_pl011_create(const struct vmm_pl011_config *cfg,
                                          struct vmm_pl011 **out);

/* Free a standalone PL011 (unregister it first). Accepts NULL. */
VMM_API void vmm_pl011_destroy(struct vmm_pl011 *uart);

/* The bus callbacks of a PL011 (opaque = the uart), covering 4 KiB. */
VMM_API const struct vmm_bus_ops *vmm_pl011_bus_ops(void);

/* Put up to len received bytes in the receive FIFO; returns how many fit.
 * Thread-safe. */
VMM_API size_t vmm_pl011_receive(struct vmm_pl011 *uart, const void *buf, size_t len);

/* A PL011 on the VM's MMIO bus at base (VMM_ARM64_UART_SIZE), interrupting on
 * line gsi. The VM owns it. Returns 0 or -errno (-EEXIST: the range is
 * taken). out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_pl011(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                          const struct vmm_pl011_config *cfg,
                                          struct vmm_pl011 **out);

/* The exit device (devices.h) on the VM's MMIO bus at base (4 bytes: a
 * write of v at base ends the run with VMM_EXIT_GUEST_EXIT, status v & 0xff).
 * The VM owns it. Returns 0 or -errno (-EEXIST: the range is taken). */
VMM_API VMM_MUST_USE int vmm_vm_add_exit_device_mmio(struct vmm_vm *vm, uint64_t base);

#ifdef __cplusplus
}
#endif

#endif /* VMM_ARM64_H */
