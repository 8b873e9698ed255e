/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A PCI device of the test's own (tests/integration/test_virtio_pci.c puts
 * it on the bus through the device model API) from the driver's side: find
 * it through 0xCF8, turn on decoding, read its memory BAR, use its I/O BAR,
 * program its MSI capability and ring its doorbell: the device answers with
 * an MSI, which must arrive as the programmed vector. Exit status 0, or the
 * FAIL_* step.
 */
#include "virtio_drv.h"

#define TEST_VENDOR 0x1234
#define TEST_DEVICE 0x5053
#define MSI_VECTOR  0x53
#define MAGIC       0x600dcafeu

enum {
    FAIL_FIND = 1,
    FAIL_BARS = 2,
    FAIL_MAGIC = 3,
    FAIL_IO = 4,
    FAIL_CAP = 5,
    FAIL_IRQ = 6,
    FAIL_COUNT = 7,
};

static uint32_t cfg_read32(unsigned slot, unsigned reg)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
    return inl(0xcfc);
}

static void cfg_write32(unsigned slot, unsigned reg, uint32_t v)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
    outl(0xcfc, v);
}

static volatile unsigned irqs;

__attribute__((interrupt)) static void msi_isr(struct interrupt_frame *f)
{
    (void)f;
    irqs++;
    lapic_eoi();
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    vdrv_start_timer();
    idt_set_handler(MSI_VECTOR, msi_isr);
    unsigned slot = 0;
    for (unsigned s = 1; s < 32 && !slot; s++)
        if (cfg_read32(s, 0) == (TEST_DEVICE << 16 | TEST_VENDOR))
            slot = s;
    if (!slot)
        return FAIL_FIND;
    uint32_t bar0 = cfg_read32(slot, 0x10), bar1 = cfg_read32(slot, 0x14);
    if ((bar0 & 1) || !(bar1 & 1))
        return FAIL_BARS;
    uint64_t mem = bar0 & ~0xfu;
    uint16_t io = (uint16_t)(bar1 & ~3u);
    cfg_write32(slot, 0x04, 0x3); /* I/O and memory decoding */
    if (mmio_read32(mem) != MAGIC)
        return FAIL_MAGIC;
    outb((uint16_t)(io + 3), 0x5a);
    if (inb((uint16_t)(io + 3)) != 0xab)
        return FAIL_IO;

    unsigned c = cfg_read32(slot, 0x34) & 0xff;
    while (c && (cfg_read32(slot, c) & 0xff) != 0x05)
        c = (cfg_read32(slot, c) >> 8) & 0xff;
    if (!c)
        return FAIL_CAP;
    cfg_write32(slot, c + 4, 0xfee00000u); /* to the BSP's LAPIC */
    cfg_write32(slot, c + 8, 0);
    cfg_write32(slot, c + 12, MSI_VECTOR);
    cfg_write32(slot, c, cfg_read32(slot, c) | 1u << 16); /* MSI Enable */

    mmio_write32(mem + 4, 0x77); /* the doorbell */
    unsigned start = vdrv_ticks();
    while (irqs == 0 && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    if (irqs != 1)
        return FAIL_IRQ;
    if (mmio_read32(mem + 8) != 1)
        return FAIL_COUNT;
    printf("pci_msi ok: slot %u, BAR 0x%x, ports 0x%x, %u MSI\n", slot, (unsigned)mem, io, irqs);
    return 0;
}
