/* SPDX-License-Identifier: Apache-2.0 */
/* The PCI root complex on buses of the test's own, played from the driver's
 * side: both configuration mechanisms, BAR sizing, placement and decoding,
 * the MSI-X table and pending bits, INTx, and hostile writes. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/pci.h>

#include "check_compat.h"
#include "pci/pci_regs.h"

static struct vmm_bus *pio, *mmio;
static struct vmm_pci_bus *pci;

/* What the device and the interrupt callbacks saw. */
static struct {
    unsigned msis;
    uint64_t msi_addr;
    uint32_t msi_data;
    unsigned intx_changes;
    bool intx_level;
    unsigned gsi;
    unsigned bar_reads, bar_writes;
    uint64_t last_off;
    uint32_t last_val;
    unsigned moves;
    unsigned moved_bar;
    uint64_t moved_addr;
    unsigned destroyed;
} seen;

static void on_msi(void *opaque, uint64_t address, uint32_t data)
{
    (void)opaque;
    seen.msis++;
    seen.msi_addr = address;
    seen.msi_data = data;
}

static void on_intx(void *opaque, unsigned gsi, bool level)
{
    (void)opaque;
    seen.intx_changes++;
    seen.gsi = gsi;
    seen.intx_level = level;
}

static void dev_bar_read(void *opaque, unsigned bar, uint64_t off, void *data, uint32_t len)
{
    (void)opaque;
    (void)bar;
    seen.bar_reads++;
    seen.last_off = off;
    memset(data, 0x5a, len);
}

static void dev_bar_write(void *opaque, unsigned bar, uint64_t off, const void *data, uint32_t len)
{
    (void)opaque;
    (void)bar;
    seen.bar_writes++;
    seen.last_off = off;
    seen.last_val = 0;
    memcpy(&seen.last_val, data, len < 4 ? len : 4);
}

static void dev_bar_moved(void *opaque, unsigned bar, uint64_t addr)
{
    (void)opaque;
    seen.moves++;
    seen.moved_bar = bar;
    seen.moved_addr = addr;
}

static void dev_destroy(void *opaque)
{
    (void)opaque;
    seen.destroyed++;
}

static const struct vmm_pci_device_ops dev_ops = {
    .size = sizeof(struct vmm_pci_device_ops),
    .bar_read = dev_bar_read,
    .bar_write = dev_bar_write,
    .bar_moved = dev_bar_moved,
    .destroy = dev_destroy,
};

static const uint8_t vendor_cap[6] = {8, 1, 2, 3, 4, 5};

/* BAR 0: 16 KiB 64-bit memory with the MSI-X table at 0x2000 and PBA at
 * 0x3000; BAR 2: 64 KiB 64-bit prefetchable; BAR 4: 32 I/O ports. */
static struct vmm_pci_device test_device(void)
{
    static const struct vmm_pci_cap caps[1] = {
        {.id = PCI_CAP_ID_VENDOR, .len = 6, .data = vendor_cap}};
    return (struct vmm_pci_device){
        .size = sizeof(struct vmm_pci_device),
        .vendor_id = 0x1af4,
        .device_id = 0x1044,
        .subsystem_vendor_id = 0x1af4,
        .subsystem_id = 4,
        .revision = 1,
        .class_code = 0x00ff,
        .bars = {[0] = {.size = 0x4000, .flags = VMM_PCI_BAR_MEM64},
                 [2] = {.size = 0x10000, .flags = VMM_PCI_BAR_MEM64 | VMM_PCI_BAR_PREFETCH},
                 [4] = {.size = 32, .flags = VMM_PCI_BAR_IO}},
        .msix_vectors = 3,
        .msix_bar = 0,
        .msix_table_offset = 0x2000,
        .msix_pba_offset = 0x3000,
        .intx = true,
        .nr_caps = 1,
        .caps = caps,
        .ops = &dev_ops,
        .name = "test-dev",
    };
}

static void setup(void)
{
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(vmm_bus_create("pio", &pio), 0);
    ck_assert_int_eq(vmm_bus_create("mmio", &mmio), 0);
    struct vmm_pci_config cfg = VMM_INIT(struct vmm_pci_config, .mmio64_base = 0x100000000ull,
                                         .mmio64_size = 1ull << 32, .msi = on_msi, .intx = on_intx);
    ck_assert_int_eq(vmm_pci_bus_create(&cfg, &pci), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(pci, pio, mmio), 0);
}

static void teardown(void)
{
    vmm_pci_bus_detach(pci);
    vmm_pci_bus_destroy(pci);
    vmm_bus_destroy(mmio);
    vmm_bus_destroy(pio);
}

/* ---- the driver's side ---- */

static uint32_t cf8_read(unsigned slot, unsigned reg, uint32_t len)
{
    uint32_t addr = PCI_CONFIG_ENABLE | slot << 11 | (reg & 0xfc), v = 0;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcfc + (reg & 3), (uint8_t *)&v, len), 0);
    return v;
}

static void cf8_write(unsigned slot, unsigned reg, uint32_t v, uint32_t len)
{
    uint32_t addr = PCI_CONFIG_ENABLE | slot << 11 | (reg & 0xfc);
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_write(pio, 0xcfc + (reg & 3), (uint8_t *)&v, len), 0);
}

static uint32_t ecam_read(unsigned slot, unsigned reg, uint32_t len)
{
    uint32_t v = 0;
    ck_assert_int_eq(vmm_bus_read(mmio, VMM_PCI_ECAM_BASE + (slot << 15) + reg, (uint8_t *)&v, len),
                     0);
    return v;
}

static void ecam_write(unsigned slot, unsigned reg, uint32_t v, uint32_t len)
{
    ck_assert_int_eq(
        vmm_bus_write(mmio, VMM_PCI_ECAM_BASE + (slot << 15) + reg, (uint8_t *)&v, len), 0);
}

static uint32_t mem_read32(uint64_t addr)
{
    uint32_t v = 0;
    ck_assert_int_eq(vmm_bus_read(mmio, addr, (uint8_t *)&v, 4), 0);
    return v;
}

static void mem_write32(uint64_t addr, uint32_t v)
{
    ck_assert_int_eq(vmm_bus_write(mmio, addr, (uint8_t *)&v, 4), 0);
}

static struct vmm_pci_dev *add_test_device(void)
{
    struct vmm_pci_device d = test_device();
    struct vmm_pci_dev *dev;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, &dev), 0);
    ck_assert_uint_eq(vmm_pci_dev_bdf(dev), 1 << 3);
    return dev;
}

static uint64_t bar0(void)
{
    return (cf8_read(1, PCI_BAR0, 4) & ~0xfu) | (uint64_t)cf8_read(1, PCI_BAR0 + 4, 4) << 32;
}

/* ---- tests ---- */

START_TEST(host_bridge_and_empty_slots)
{
    ck_assert_uint_eq(cf8_read(0, PCI_VENDOR_ID, 4), PCI_HOST_DEVICE << 16 | PCI_HOST_VENDOR);
    ck_assert_uint_eq(cf8_read(0, PCI_CLASS_DEVICE, 2), PCI_CLASS_BRIDGE_HOST);
    ck_assert_uint_eq(ecam_read(0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR);
    /* Nothing in slot 5, and no function 1 anywhere: all ones. */
    ck_assert_uint_eq(cf8_read(5, PCI_VENDOR_ID, 4), 0xffffffffu);
    ck_assert_uint_eq(ecam_read(5, PCI_VENDOR_ID, 4), 0xffffffffu);
    uint32_t v;
    ck_assert_int_eq(vmm_bus_read(mmio, VMM_PCI_ECAM_BASE + (1 << 12), (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, 0xffffffffu);
    /* CONFIG_ADDRESS reads back; without the enable bit data reads all ones. */
    uint32_t addr = 0x00001234 & ~3u;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcf8, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, addr);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcfc, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, 0xffffffffu);
}
END_TEST

START_TEST(header_identity_and_capabilities)
{
    add_test_device();
    ck_assert_uint_eq(cf8_read(1, PCI_VENDOR_ID, 2), 0x1af4);
    ck_assert_uint_eq(cf8_read(1, PCI_DEVICE_ID, 2), 0x1044);
    ck_assert_uint_eq(ecam_read(1, PCI_SUBSYSTEM_ID, 2), 4);
    ck_assert_uint_eq(ecam_read(1, PCI_REVISION, 1), 1);
    ck_assert_uint_eq(cf8_read(1, PCI_INTERRUPT_PIN, 1), 1);
    ck_assert_uint_eq(cf8_read(1, PCI_INTERRUPT_LINE, 1), 17); /* slot 1: intx_gsi[1] */
    ck_assert(cf8_read(1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    /* The chain: MSI-X (3 vectors, table 0x2000 BIR 0, PBA 0x3000), then the vendor cap. */
    unsigned c = cf8_read(1, PCI_CAP_PTR, 1);
    ck_assert_uint_eq(c, PCI_CAP_START);
    ck_assert_uint_eq(cf8_read(1, c, 1), PCI_CAP_ID_MSIX);
    ck_assert_uint_eq(cf8_read(1, c + 2, 2), 2);
    ck_assert_uint_eq(cf8_read(1, c + 4, 4), 0x2000);
    ck_assert_uint_eq(cf8_read(1, c + 8, 4), 0x3000);
    unsigned v = cf8_read(1, c + 1, 1);
    ck_assert_uint_eq(cf8_read(1, v, 1), PCI_CAP_ID_VENDOR);
    ck_assert_uint_eq(cf8_read(1, v + 1, 1), 0);
    for (unsigned i = 0; i < sizeof(vendor_cap); i++)
        ck_assert_uint_eq(cf8_read(1, v + 2 + i, 1), vendor_cap[i]);
    /* Extended configuration space (ECAM only) is empty. */
    ck_assert_uint_eq(ecam_read(1, 0x100, 4), 0);
}
END_TEST

START_TEST(bar_sizing_and_placement)
{
    add_test_device();
    /* Placed aligned in their windows: BAR 0 (64-bit, not prefetchable) in
     * the 32-bit one, BAR 2 in the 64-bit one, BAR 4 in the I/O window. */
    uint32_t lo = cf8_read(1, PCI_BAR0, 4);
    ck_assert_uint_eq(lo & 0xf, PCI_BAR_MEM64);
    ck_assert_uint_eq(bar0(), VMM_PCI_MMIO32_BASE);
    uint32_t b2 = cf8_read(1, PCI_BAR0 + 8, 4), b2h = cf8_read(1, PCI_BAR0 + 12, 4);
    ck_assert_uint_eq(b2 & 0xf, PCI_BAR_MEM64 | PCI_BAR_PREFETCH);
    ck_assert_uint_eq((b2 & ~0xfu) | (uint64_t)b2h << 32, 0x100000000ull);
    uint32_t io = cf8_read(1, PCI_BAR0 + 16, 4);
    ck_assert_uint_eq(io, VMM_PCI_IO_BASE | 1);

    /* Sizing: all ones in, size mask and flags out; the old value back. */
    cf8_write(1, PCI_BAR0, 0xffffffffu, 4);
    cf8_write(1, PCI_BAR0 + 4, 0xffffffffu, 4);
    ck_assert_uint_eq(cf8_read(1, PCI_BAR0, 4), (uint32_t) ~(0x4000u - 1) | PCI_BAR_MEM64);
    ck_assert_uint_eq(cf8_read(1, PCI_BAR0 + 4, 4), 0xffffffffu);
    cf8_write(1, PCI_BAR0 + 16, 0xffffffffu, 4);
    ck_assert_uint_eq(cf8_read(1, PCI_BAR0 + 16, 4), (0xffffu & ~31u) | 1);
    /* Unused BARs and the expansion ROM stay 0. */
    ecam_write(1, PCI_BAR0 + 20, 0xffffffffu, 4);
    ck_assert_uint_eq(ecam_read(1, PCI_BAR0 + 20, 4), 0);
    ecam_write(1, PCI_ROM_ADDRESS, 0xffffffffu, 4);
    ck_assert_uint_eq(ecam_read(1, PCI_ROM_ADDRESS, 4), 0);
    /* Sizing with decoding off moved nothing. */
    ck_assert_uint_eq(seen.moves, 0);
}
END_TEST

START_TEST(bars_decode_only_inside_their_windows)
{
    struct vmm_pci_dev *dev = add_test_device();
    uint64_t base = bar0();
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), VMM_PCI_BAR_NONE);
    /* Decoding off: nobody answers. */
    ck_assert_uint_eq(mem_read32(base + 0x10), 0xffffffffu);
    ck_assert_uint_eq(seen.bar_reads, 0);

    ecam_write(1, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), base);
    ck_assert_uint_ge(seen.moves, 2); /* BAR 0, BAR 2, BAR 4 */
    ck_assert_uint_eq(mem_read32(base + 0x10), 0x5a5a5a5au);
    ck_assert_uint_eq(seen.last_off, 0x10);
    mem_write32(base + 0x1ffc, 77);
    ck_assert_uint_eq(seen.bar_writes, 1);
    ck_assert_uint_eq(seen.last_off, 0x1ffc);
    ck_assert_uint_eq(seen.last_val, 77);
    uint16_t w = 0x1234;
    ck_assert_int_eq(vmm_bus_write(pio, VMM_PCI_IO_BASE + 2, (uint8_t *)&w, 2), 0);
    ck_assert_uint_eq(seen.bar_writes, 2);
    ck_assert_uint_eq(seen.last_off, 2);

    /* Moved within the window: it answers at the new place only. */
    seen.moves = 0;
    cf8_write(1, PCI_BAR0, (uint32_t)VMM_PCI_MMIO32_BASE + 0x100000, 4);
    ck_assert_uint_eq(seen.moves, 1);
    ck_assert_uint_eq(seen.moved_bar, 0);
    ck_assert_uint_eq(seen.moved_addr, VMM_PCI_MMIO32_BASE + 0x100000);
    unsigned reads = seen.bar_reads;
    ck_assert_uint_eq(mem_read32(base + 0x10), 0xffffffffu);
    ck_assert_uint_eq(mem_read32(VMM_PCI_MMIO32_BASE + 0x100010), 0x5a5a5a5au);
    ck_assert_uint_eq(seen.bar_reads, reads + 1);

    /* Hostile: onto the IOAPIC, just below the window, and at 0. */
    cf8_write(1, PCI_BAR0, 0xfec00000u, 4);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), VMM_PCI_BAR_NONE);
    ck_assert_uint_eq(seen.moved_addr, VMM_PCI_BAR_NONE);
    cf8_write(1, PCI_BAR0, (uint32_t)(VMM_PCI_MMIO32_BASE - 0x4000), 4);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), VMM_PCI_BAR_NONE);
    cf8_write(1, PCI_BAR0, 0, 4);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), VMM_PCI_BAR_NONE);
    /* Upper half set: a 64-bit BAR may live in the 64-bit window. */
    cf8_write(1, PCI_BAR0, 0x40000000u, 4);
    cf8_write(1, PCI_BAR0 + 4, 1, 4);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), 0x140000000ull);
    /* Decoding off again: gone. */
    ecam_write(1, PCI_COMMAND, 0, 2);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 0), VMM_PCI_BAR_NONE);
    ck_assert_uint_eq(vmm_pci_bar_address(dev, 4), VMM_PCI_BAR_NONE);
}
END_TEST

/* Program MSI-X entry v through BAR 0. */
static void msix_entry(uint64_t base, unsigned v, uint32_t addr, uint32_t data, bool masked)
{
    uint64_t e = base + 0x2000 + 16 * v;
    mem_write32(e, addr);
    mem_write32(e + 4, 0);
    mem_write32(e + 8, data);
    mem_write32(e + 12, masked);
}

START_TEST(msix_table_pending_and_masks)
{
    struct vmm_pci_dev *dev = add_test_device();
    uint64_t base = bar0();
    unsigned c = PCI_CAP_START;
    ecam_write(1, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    /* Entries start masked; vector control reads back only the mask bit. */
    ck_assert_uint_eq(mem_read32(base + 0x2000 + 12), 1);
    ck_assert_int_eq(vmm_pci_msix_notify(dev, 0), -EAGAIN); /* MSI-X off */
    ck_assert_int_eq(vmm_pci_msix_notify(dev, 3), -EINVAL);
    ck_assert(!vmm_pci_msix_enabled(dev));

    msix_entry(base, 0, 0xfee00000, 0x41, false);
    mem_write32(base + 0x2000 + 16 + 12, 0xfffffffe); /* reserved bits only: still masked */
    ck_assert_uint_eq(mem_read32(base + 0x2000 + 16 + 12), 0);
    mem_write32(base + 0x2000 + 16 + 12, 1);
    ck_assert_uint_eq(mem_read32(base + 0x2000 + 8), 0x41);
    cf8_write(1, c + 2, PCI_MSIX_ENABLE | 0x7ff, 2); /* table size is read-only */
    ck_assert_uint_eq(cf8_read(1, c + 2, 2), PCI_MSIX_ENABLE | 2);
    ck_assert(vmm_pci_msix_enabled(dev));

    ck_assert_int_eq(vmm_pci_msix_notify(dev, 0), 0);
    ck_assert_uint_eq(seen.msis, 1);
    ck_assert_uint_eq(seen.msi_addr, 0xfee00000);
    ck_assert_uint_eq(seen.msi_data, 0x41);

    /* Vector 1 masked: pending, delivered on unmask, pending cleared. */
    ck_assert_int_eq(vmm_pci_msix_notify(dev, 1), 0);
    ck_assert_uint_eq(seen.msis, 1);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 2);
    msix_entry(base, 1, 0xfee01000, 0x42, false);
    ck_assert_uint_eq(seen.msis, 2);
    ck_assert_uint_eq(seen.msi_data, 0x42);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 0);

    /* Function mask holds every vector. */
    cf8_write(1, c + 2, PCI_MSIX_ENABLE | PCI_MSIX_FMASK, 2);
    ck_assert_int_eq(vmm_pci_msix_notify(dev, 0), 0);
    ck_assert_uint_eq(seen.msis, 2);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 1);
    cf8_write(1, c + 2, PCI_MSIX_ENABLE, 2);
    ck_assert_uint_eq(seen.msis, 3);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 0);

    /* Hostile: an address that is no local APIC is never used. */
    msix_entry(base, 2, 0xd0000000, 0x43, false);
    ck_assert_int_eq(vmm_pci_msix_notify(dev, 2), 0);
    ck_assert_uint_eq(seen.msis, 3);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 4);
    /* Odd widths and PBA writes are refused; the entry is unchanged. */
    uint16_t half = 0xbeef;
    ck_assert_int_eq(vmm_bus_write(mmio, base + 0x2000 + 8, (uint8_t *)&half, 2), 0);
    ck_assert_int_eq(vmm_bus_write(mmio, base + 0x2000 + 9, (uint8_t *)&half, 1), 0);
    ck_assert_uint_eq(mem_read32(base + 0x2000 + 8), 0x41);
    mem_write32(base + 0x3000, 0);
    ck_assert_uint_eq(mem_read32(base + 0x3000), 4);
    /* An 8-byte access covers address low and high. */
    uint64_t q = 0;
    ck_assert_int_eq(vmm_bus_read(mmio, base + 0x2000, (uint8_t *)&q, 8), 0);
    ck_assert_uint_eq(q, 0xfee00000ull);
    struct vmm_pci_stats st = VMM_INIT(struct vmm_pci_stats);
    ck_assert_int_eq(vmm_pci_get_stats(pci, &st), 0);
    ck_assert_uint_eq(st.msix_delivered, 3);
    ck_assert_uint_ge(st.refused_writes, 3);
}
END_TEST

/* The offset of capability id in slot 1's chain (0: none). */
static unsigned find_cap(unsigned id)
{
    for (unsigned c = cf8_read(1, PCI_CAP_PTR, 1), n = 0; c && n < 16;
         c = cf8_read(1, c + 1, 1), n++)
        if (cf8_read(1, c, 1) == id)
            return c;
    return 0;
}

START_TEST(msi_vectors_masks_and_pending)
{
    struct vmm_pci_device d = test_device();
    d.msi_vectors = 4;
    struct vmm_pci_dev *dev;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, &dev), 0);
    unsigned c = find_cap(PCI_CAP_ID_MSI);
    ck_assert_uint_ne(c, 0);
    /* 64-bit, per-vector masking, 4 vectors capable, off. */
    ck_assert_uint_eq(cf8_read(1, c + 2, 2), PCI_MSI_64BIT | PCI_MSI_PVM | 2 << 1);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 0), -EAGAIN);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 4), -EINVAL);

    cf8_write(1, c + PCI_MSI_ADDR_LO, 0xfee00003u, 4); /* the low two bits do not exist */
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_ADDR_LO, 4), 0xfee00000u);
    cf8_write(1, c + PCI_MSI_DATA, 0x4041, 2);
    cf8_write(1, c + 2, PCI_MSI_ENABLE | 2 << 4 | 0xff80, 2); /* RO bits stay */
    ck_assert_uint_eq(cf8_read(1, c + 2, 2), PCI_MSI_64BIT | PCI_MSI_PVM | 2 << 1 | 2 << 4 | 1);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 3), 0);
    ck_assert_uint_eq(seen.msis, 1);
    ck_assert_uint_eq(seen.msi_addr, 0xfee00000u);
    ck_assert_uint_eq(seen.msi_data, 0x4043); /* the vector in the low bits */

    /* Vector 1 masked: pending, then sent when unmasked. */
    cf8_write(1, c + PCI_MSI_MASK, 0xfffffff2u, 4); /* only 4 mask bits exist */
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_MASK, 4), 2);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 1), 0);
    ck_assert_uint_eq(seen.msis, 1);
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_PENDING, 4), 2);
    cf8_write(1, c + PCI_MSI_PENDING, 0, 4); /* read-only */
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_PENDING, 4), 2);
    cf8_write(1, c + PCI_MSI_MASK, 0, 4);
    ck_assert_uint_eq(seen.msis, 2);
    ck_assert_uint_eq(seen.msi_data, 0x4041);
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_PENDING, 4), 0);

    /* Hostile: more vectors enabled than the device has means its 4; an
     * address that is no local APIC's leaves the vector pending. */
    cf8_write(1, c + 2, PCI_MSI_ENABLE | 7 << 4, 2);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 3), 0);
    ck_assert_uint_eq(seen.msis, 3);
    cf8_write(1, c + PCI_MSI_ADDR_LO, 0xd0000000u, 4);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 2), 0);
    ck_assert_uint_eq(seen.msis, 3);
    ck_assert_uint_eq(cf8_read(1, c + PCI_MSI_PENDING, 4), 4);
    cf8_write(1, c + PCI_MSI_ADDR_LO, 0xfee00000u, 4);
    ck_assert_uint_eq(seen.msis, 4);

    /* With one vector enabled, the others are not there. */
    cf8_write(1, c + 2, PCI_MSI_ENABLE, 2);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 1), -EAGAIN);
    /* MSI-X enabled too: it wins, MSI is off. */
    ecam_write(1, PCI_CAP_START + 2, PCI_MSIX_ENABLE, 2);
    ck_assert_int_eq(vmm_pci_msi_notify(dev, 0), -EAGAIN);
}
END_TEST

/* A passthrough device's hooks: every configuration write as the guest
 * made it, and each change of interrupt mode. */
static struct {
    unsigned writes;
    unsigned reg;
    uint32_t len, val;
    unsigned modes;
    unsigned mode, vectors;
    unsigned deliverable_calls;
    uint64_t deliverable; /* bit per vector: MSI-X's 0..2, MSI's from 8 */
} hook;

static void dev_config_write(void *opaque, unsigned reg, const void *data, uint32_t len)
{
    (void)opaque;
    hook.writes++;
    hook.reg = reg;
    hook.len = len;
    hook.val = 0;
    memcpy(&hook.val, data, len);
}

static void dev_vector_deliverable(void *opaque, bool msix, unsigned vector, bool deliverable)
{
    (void)opaque;
    unsigned bit = msix ? vector : 8 + vector;
    hook.deliverable_calls++;
    if (deliverable)
        hook.deliverable |= 1ull << bit;
    else
        hook.deliverable &= ~(1ull << bit);
}

static void dev_irq_mode(void *opaque, unsigned mode, unsigned vectors)
{
    (void)opaque;
    hook.modes++;
    hook.mode = mode;
    hook.vectors = vectors;
}

START_TEST(passthrough_hooks)
{
    memset(&hook, 0, sizeof(hook));
    static const struct vmm_pci_device_ops ops = {
        .size = sizeof(struct vmm_pci_device_ops),
        .config_write = dev_config_write,
        .irq_mode = dev_irq_mode,
        .vector_deliverable = dev_vector_deliverable,
    };
    struct vmm_pci_device d = test_device();
    d.msi_vectors = 4;
    d.ops = &ops;
    struct vmm_pci_dev *dev;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, &dev), 0);
    unsigned c = find_cap(PCI_CAP_ID_MSI);

    /* The raw value, bits the library masks included. */
    cf8_write(1, PCI_COMMAND, 0xffff, 2);
    ck_assert_uint_eq(hook.writes, 1);
    ck_assert_uint_eq(hook.reg, PCI_COMMAND);
    ck_assert_uint_eq(hook.len, 2);
    ck_assert_uint_eq(hook.val, 0xffff);
    ecam_write(1, 0x100, 0x12345678u, 4); /* refused: extended space, no hook */
    ck_assert_uint_eq(hook.writes, 1);
    ecam_write(1, 0xfc, 0x12345678u, 4); /* read-only here, still seen */
    ck_assert_uint_eq(hook.writes, 2);
    ck_assert_uint_eq(hook.reg, 0xfc);

    /* MSI with 2 vectors, MSI-X on top (it wins), MSI-X off, MSI off. */
    cf8_write(1, c + PCI_MSI_ADDR_LO, 0xfee00000u, 4);
    ck_assert_uint_eq(hook.modes, 0);
    cf8_write(1, c + 2, PCI_MSI_ENABLE | 1 << 4, 2);
    ck_assert_uint_eq(hook.modes, 1);
    ck_assert_uint_eq(hook.mode, VMM_PCI_IRQ_MSI);
    ck_assert_uint_eq(hook.vectors, 2);
    ck_assert_uint_eq(hook.deliverable, 3ull << 8); /* MSI vectors 0 and 1 */
    cf8_write(1, c + PCI_MSI_MASK, 2, 4);           /* vector 1 masked */
    ck_assert_uint_eq(hook.deliverable, 1ull << 8);
    cf8_write(1, c + PCI_MSI_MASK, 0, 4);
    ck_assert_uint_eq(hook.deliverable, 3ull << 8);
    cf8_write(1, c + 2, PCI_MSI_ENABLE | 1 << 4, 2); /* unchanged: not reported again */
    ck_assert_uint_eq(hook.modes, 1);
    ecam_write(1, PCI_CAP_START + 2, PCI_MSIX_ENABLE, 2);
    ck_assert_uint_eq(hook.mode, VMM_PCI_IRQ_MSIX);
    ck_assert_uint_eq(hook.vectors, 3);
    /* MSI-X entries start masked; vector 1 unmasked with a good address,
     * then aimed away from the local APIC; MSI is off under MSI-X. */
    ck_assert_uint_eq(hook.deliverable, 0);
    uint64_t table = vmm_pci_bar_address(dev, 0); /* decoding is on (0xffff above) */
    ck_assert_uint_ne(table, VMM_PCI_BAR_NONE);
    table += 0x2000;
    uint32_t v = 0xfee00000u;
    ck_assert_int_eq(vmm_bus_write(mmio, table + 16, (uint8_t *)&v, 4), 0);
    v = 0;
    ck_assert_int_eq(vmm_bus_write(mmio, table + 16 + 12, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(hook.deliverable, 1ull << 1);
    v = 0x1000;
    ck_assert_int_eq(vmm_bus_write(mmio, table + 16, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(hook.deliverable, 0);
    v = 0xfee00000u;
    ck_assert_int_eq(vmm_bus_write(mmio, table + 16, (uint8_t *)&v, 4), 0);
    ecam_write(1, PCI_CAP_START + 2, 0, 2);
    ck_assert_uint_eq(hook.mode, VMM_PCI_IRQ_MSI);
    ck_assert_uint_eq(hook.vectors, 2);
    ck_assert_uint_eq(hook.deliverable, 3ull << 8);
    ck_assert_uint_gt(hook.deliverable_calls, 0);
    /* Hostile: 32 vectors asked for, the device's 4 given. */
    cf8_write(1, c + 2, PCI_MSI_ENABLE | 5 << 4, 2);
    ck_assert_uint_eq(hook.vectors, 4);
    cf8_write(1, c + 2, 0, 2);
    ck_assert_uint_eq(hook.mode, VMM_PCI_IRQ_INTX);
    ck_assert_uint_eq(hook.modes, 5);

    /* No irqfds on a standalone bus; slot 1's INTA is the second line. */
    ck_assert_int_eq(vmm_pci_vector_eventfd(dev, true, 0), -ENOENT);
    ck_assert_int_eq(vmm_pci_vector_eventfd(dev, true, 3), -EINVAL);
    ck_assert_int_eq(vmm_pci_vector_eventfd(dev, false, 4), -EINVAL);
    ck_assert_uint_eq(vmm_pci_intx_gsi(dev), 17);
}
END_TEST

START_TEST(intx_is_shared_and_maskable)
{
    struct vmm_pci_dev *dev = add_test_device();
    vmm_pci_intx_set(dev, true);
    ck_assert_uint_eq(seen.intx_changes, 1);
    ck_assert_uint_eq(seen.gsi, 17);
    ck_assert(seen.intx_level);
    ck_assert(cf8_read(1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* INTx Disable lowers the line; clearing it raises it again. */
    cf8_write(1, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
    ck_assert(!seen.intx_level);
    cf8_write(1, PCI_COMMAND, 0, 2);
    ck_assert(seen.intx_level);
    vmm_pci_intx_set(dev, true); /* no change, no callback */
    ck_assert_uint_eq(seen.intx_changes, 3);
    vmm_pci_intx_set(dev, false);
    ck_assert(!seen.intx_level);
    ck_assert(!(cf8_read(1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
}
END_TEST

START_TEST(hostile_configuration_writes)
{
    add_test_device();
    /* Read-only identity, class, header type, capability pointer, pin. */
    cf8_write(1, PCI_VENDOR_ID, 0xdeadbeef, 4);
    cf8_write(1, PCI_REVISION, 0xffffffff, 4);
    cf8_write(1, PCI_CACHE_LINE, 0xffffffff, 4);
    cf8_write(1, PCI_CAP_PTR, 0xff, 1);
    cf8_write(1, PCI_INTERRUPT_LINE, 0xffff, 2);
    ck_assert_uint_eq(cf8_read(1, PCI_VENDOR_ID, 4), 0x10441af4);
    ck_assert_uint_eq(cf8_read(1, PCI_REVISION, 4), 0x00ff0001);
    ck_assert_uint_eq(cf8_read(1, PCI_HEADER_TYPE, 1), 0);
    ck_assert_uint_eq(cf8_read(1, PCI_CAP_PTR, 1), PCI_CAP_START);
    ck_assert_uint_eq(cf8_read(1, PCI_INTERRUPT_PIN, 1), 1);
    ck_assert_uint_eq(cf8_read(1, PCI_INTERRUPT_LINE, 1), 0xff);
    /* Capabilities are read-only, the MSI-X table location too. */
    for (unsigned r = PCI_CAP_START; r < 0x100; r += 4)
        cf8_write(1, r, 0xffffffff, 4);
    ck_assert_uint_eq(cf8_read(1, PCI_CAP_START, 2), PCI_CAP_ID_MSIX | (PCI_CAP_START + 12) << 8);
    ck_assert_uint_eq(cf8_read(1, PCI_CAP_START + 4, 4), 0x2000);
    ck_assert_uint_eq(cf8_read(1, PCI_CAP_START + 2, 2), PCI_MSIX_ENABLE | PCI_MSIX_FMASK | 2);
    /* Command: only the bits it has. */
    cf8_write(1, PCI_COMMAND, 0xffff, 2);
    ck_assert_uint_eq(cf8_read(1, PCI_COMMAND, 2), 0x0547);
    cf8_write(1, PCI_COMMAND, 0, 2);
    /* Misaligned and oversized accesses: refused, nothing changes. */
    ecam_write(1, PCI_COMMAND + 1, 0xffff, 2);
    ecam_write(1, 0x100, 0xffffffff, 4);
    ecam_write(1, 0xffc, 0xffffffff, 4);
    ck_assert_uint_eq(ecam_read(1, PCI_COMMAND, 2), 0);
    uint64_t q = 0;
    ck_assert_int_eq(
        vmm_bus_write(mmio, VMM_PCI_ECAM_BASE + (1 << 15) + PCI_BAR0, (uint8_t *)&q, 8), 0);
    ck_assert_uint_eq(cf8_read(1, PCI_BAR0, 4), (uint32_t)VMM_PCI_MMIO32_BASE | PCI_BAR_MEM64);
    /* Another bus, a reserved CONFIG_ADDRESS bit, an unaligned data port. */
    uint32_t addr = PCI_CONFIG_ENABLE | 1u << 16 | 1 << 11, v;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcfc, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, 0xffffffffu);
    addr = PCI_CONFIG_ENABLE | 0x01000000u | 1 << 11;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcfc, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, 0xffffffffu);
    addr = PCI_CONFIG_ENABLE | 1 << 11;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&addr, 4), 0);
    ck_assert_int_eq(vmm_bus_read(pio, 0xcfd, (uint8_t *)&v, 2), 0);
    ck_assert_uint_eq(v & 0xffff, 0xffff);
    /* Writes to an empty slot go nowhere. */
    cf8_write(9, PCI_COMMAND, 0xffff, 2);
    ck_assert_uint_eq(cf8_read(9, PCI_VENDOR_ID, 4), 0xffffffffu);
    struct vmm_pci_stats st = VMM_INIT(struct vmm_pci_stats);
    ck_assert_int_eq(vmm_pci_get_stats(pci, &st), 0);
    ck_assert_uint_ge(st.refused_writes, 5);
}
END_TEST

START_TEST(bad_descriptions_are_refused)
{
    struct vmm_pci_device d;
#define REFUSED(stmt)                                                                              \
    do {                                                                                           \
        d = test_device();                                                                         \
        stmt;                                                                                      \
        unsigned before = seen.destroyed;                                                          \
        ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), -EINVAL);                              \
        ck_assert_uint_eq(seen.destroyed, before + 1);                                             \
    } while (0)
    REFUSED(d.bars[0].size = 0x3000);
    REFUSED(d.bars[4].size = 512);
    REFUSED(d.bars[1].size = 0x1000); /* the upper half of BAR 0 */
    REFUSED(d.bars[5].size = 0x1000; d.bars[5].flags = VMM_PCI_BAR_MEM64);
    REFUSED(d.bars[0].flags |= 1u << 7);
    REFUSED(d.msix_vectors = VMM_PCI_MSIX_MAX + 1);
    REFUSED(d.msix_bar = 4);               /* an I/O BAR */
    REFUSED(d.msix_table_offset = 0x3ff8); /* runs past the BAR */
    REFUSED(d.msix_pba_offset = 0x2010);   /* inside the table */
    REFUSED(d.msix_table_offset = 0x2004); /* misaligned */
    REFUSED(d.nr_caps = VMM_PCI_MAX_CAPS + 1);
    REFUSED(d.msi_vectors = 3);
    REFUSED(d.msi_vectors = 64);
#undef REFUSED
    struct vmm_pci_device_ops big = {.size = sizeof(big) + 8};
    d = test_device();
    d.ops = &big;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), -EINVAL);
    d = test_device();
    d.size = sizeof(d) + 4;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), -EINVAL);
}
END_TEST

START_TEST(slots_and_windows_run_out)
{
    struct vmm_pci_device d = {.size = sizeof(d), .vendor_id = 1, .bars = {{.size = 0x1000}}};
    for (unsigned s = 1; s < VMM_PCI_SLOTS; s++)
        ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), 0);
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), -ENOSPC);
    /* A fresh bus: one BAR larger than the 32-bit window. */
    teardown();
    setup();
    d.bars[0].size = 1u << 31;
    ck_assert_int_eq(vmm_pci_add_device(pci, &d, NULL), -ENOSPC);
}
END_TEST

START_TEST(bad_bus_configs_are_refused)
{
    struct vmm_pci_bus *b;
    struct vmm_pci_config c = VMM_INIT(struct vmm_pci_config, .ecam_base = 0xe0001000);
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c = VMM_INIT(struct vmm_pci_config, .mmio32_base = 0xf0000000, .mmio32_size = 0x20000000);
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c = VMM_INIT(struct vmm_pci_config, .ecam_base = VMM_PCI_MMIO32_BASE);
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c = VMM_INIT(struct vmm_pci_config, .io_base = 0xc00, .io_size = 0x1000);
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c = VMM_INIT(struct vmm_pci_config, .intx_gsi = {16, 17, 18, 24});
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c = VMM_INIT(struct vmm_pci_config, .intx_gsi = {16, 17, 16, 19});
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    c.size = sizeof(c) + 8;
    ck_assert_int_eq(vmm_pci_bus_create(&c, &b), -EINVAL);
    /* Attaching where the ranges are taken fails and leaves nothing behind. */
    struct vmm_pci_bus *other;
    ck_assert_int_eq(vmm_pci_bus_create(NULL, &other), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(other, pio, mmio), -EEXIST);
    vmm_pci_bus_destroy(other);
    ck_assert_uint_eq(cf8_read(0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR);
}
END_TEST

START_TEST(machine_description)
{
    struct vmm_machine m = {.size = sizeof(m)};
    ck_assert_int_eq(vmm_pci_add_to_machine(pci, &m), 0);
    ck_assert(m.pci.present);
    ck_assert_uint_eq(m.pci.ecam_base, VMM_PCI_ECAM_BASE);
    ck_assert_uint_eq(m.pci.mmio64_base, 0x100000000ull);
    ck_assert_uint_eq(m.pci.intx_gsi[3], 19);
    ck_assert_uint_eq(m.nr_reserved, 1);
    ck_assert_uint_eq(m.reserved[0].base, VMM_PCI_ECAM_BASE);
    ck_assert_uint_eq(m.reserved[0].size, VMM_PCI_ECAM_SIZE);
    m.size = 8;
    ck_assert_int_eq(vmm_pci_add_to_machine(pci, &m), -EINVAL);
}
END_TEST

static Suite *pci_suite(void)
{
    Suite *s = suite_create("pci");
    TCase *tc = tcase_create("root");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, host_bridge_and_empty_slots);
    tcase_add_test(tc, header_identity_and_capabilities);
    tcase_add_test(tc, bar_sizing_and_placement);
    tcase_add_test(tc, bars_decode_only_inside_their_windows);
    tcase_add_test(tc, msix_table_pending_and_masks);
    tcase_add_test(tc, msi_vectors_masks_and_pending);
    tcase_add_test(tc, passthrough_hooks);
    tcase_add_test(tc, intx_is_shared_and_maskable);
    tcase_add_test(tc, hostile_configuration_writes);
    tcase_add_test(tc, bad_descriptions_are_refused);
    tcase_add_test(tc, slots_and_windows_run_out);
    tcase_add_test(tc, bad_bus_configs_are_refused);
    tcase_add_test(tc, machine_description);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(pci_suite());
}
