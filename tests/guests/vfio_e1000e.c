/* SPDX-License-Identifier: Apache-2.0 */
/*
 * QEMU's e1000e passed through with vmm-run --vfio (tests/vfio), for MSI-X:
 * find it through 0xCF8, program vector 0 of its MSI-X table (emulated by
 * libvmm's PCI bus, the table's page never mapped) and enable MSI-X, route
 * the NIC's OTHER cause to vector 0 (IVAR) and raise a link-status change
 * through its Interrupt Cause Set register (BAR 0, mapped): the MSI-X
 * message must arrive; with the vector masked it must wait in the PBA and
 * come when unmasked. Then hostile accesses: a table entry pointed away
 * from the local APIC (nothing may arrive), misaligned table accesses, a
 * write to the PBA, and writes past the table in its page; after them the
 * vector must still work. Prints one line per step; exit status 0 or the
 * FAIL_* step.
 */
#include "virtio_drv.h"

#define E1000E_VENDOR 0x8086
#define E1000E_DEVICE 0x10d3
#define MSIX_VECTOR   0x56

/* 82574 registers (BAR 0). */
#define REG_ICR            0x00c0
#define REG_ICS            0x00c8
#define REG_IMS            0x00d0
#define REG_IMC            0x00d8
#define REG_IVAR           0x00e4
#define ICR_LSC            (1u << 2)
#define ICR_OTHER          (1u << 24)
#define IVAR_OTHER_VECTOR0 (0x8u << 16) /* valid, vector 0 */

enum {
    FAIL_FIND = 1,
    FAIL_CAP = 2,
    FAIL_TABLE = 3,
    FAIL_IRQ = 4,
    FAIL_HOSTILE = 5,
    FAIL_AFTER = 6,
    FAIL_MASK = 7,
};

static volatile unsigned irqs;

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

__attribute__((interrupt)) static void msix_isr(struct interrupt_frame *f)
{
    (void)f;
    irqs++;
    lapic_eoi();
}

static int wait_irqs(unsigned want, unsigned ticks)
{
    unsigned start = vdrv_ticks();
    while (irqs < want && vdrv_ticks() - start < ticks)
        cpu_sti_hlt_cli();
    return irqs >= want ? 0 : -1;
}

/* A memory BAR's address (32- or 64-bit). */
static uint64_t bar_address(unsigned slot, unsigned bar)
{
    uint32_t lo = cfg_read32(slot, 0x10 + 4 * bar);
    uint64_t a = lo & ~0xfu;
    if ((lo & 6) == 4)
        a |= (uint64_t)cfg_read32(slot, 0x14 + 4 * bar) << 32;
    return a;
}

/* Clear the NIC's causes, then raise a link-status change. */
static void raise_lsc(uint64_t regs)
{
    (void)mmio_read32(regs + REG_ICR);
    mmio_write32(regs + REG_ICR, 0xffffffffu);
    mmio_write32(regs + REG_ICS, ICR_LSC);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    vdrv_start_timer();
    idt_set_handler(MSIX_VECTOR, msix_isr);

    unsigned slot = 0;
    for (unsigned s = 0; s < 32 && !slot; s++)
        if (cfg_read32(s, 0) == (E1000E_DEVICE << 16 | E1000E_VENDOR))
            slot = s;
    if (!slot)
        return FAIL_FIND;
    cfg_write32(slot, 0x04, 0x6); /* memory decoding, bus mastering */
    uint64_t regs = bar_address(slot, 0);

    unsigned cap = cfg_read32(slot, 0x34) & 0xfc;
    for (unsigned hops = 0; cap && hops < 48 && (cfg_read32(slot, cap) & 0xff) != 0x11; hops++)
        cap = (cfg_read32(slot, cap) >> 8) & 0xfc;
    if (!cap || (cfg_read32(slot, cap) & 0xff) != 0x11)
        return FAIL_CAP;
    unsigned vectors = ((cfg_read32(slot, cap) >> 16) & 0x7ff) + 1;
    uint32_t t = cfg_read32(slot, cap + 4), p = cfg_read32(slot, cap + 8);
    uint64_t table = bar_address(slot, t & 7) + (t & ~7u);
    uint64_t pba = bar_address(slot, p & 7) + (p & ~7u);
    printf("vfio-e1000e: slot %u, %u MSI-X vectors, table BAR %u+0x%x, PBA BAR %u+0x%x\n", slot,
           vectors, t & 7, t & ~7u, p & 7, p & ~7u);

    /* Entries start masked; program vector 0 and enable MSI-X. */
    if (mmio_read32(table + 12) != 1)
        return FAIL_TABLE;
    mmio_write32(table + 0, 0xfee00000u);
    mmio_write32(table + 4, 0);
    mmio_write32(table + 8, MSIX_VECTOR);
    mmio_write32(table + 12, 0);
    if (mmio_read32(table + 8) != MSIX_VECTOR || mmio_read32(table + 12) != 0)
        return FAIL_TABLE;
    cfg_write32(slot, cap, cfg_read32(slot, cap) | 1u << 31);

    mmio_write32(regs + REG_IVAR, IVAR_OTHER_VECTOR0);
    mmio_write32(regs + REG_IMS, ICR_OTHER | ICR_LSC);
    raise_lsc(regs);
    if (wait_irqs(1, 64) < 0)
        return FAIL_IRQ;
    printf("vfio-e1000e: msi-x %u\n", irqs);

    /* Vector 0 masked: the NIC's interrupt waits in the PBA, and arrives
     * when the vector is unmasked. */
    mmio_write32(table + 12, 1);
    raise_lsc(regs);
    unsigned start = vdrv_ticks();
    while (!(mmio_read32(pba) & 1) && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    if (irqs != 1 || !(mmio_read32(pba) & 1))
        return FAIL_MASK;
    mmio_write32(table + 12, 0);
    if (wait_irqs(2, 64) < 0 || (mmio_read32(pba) & 1))
        return FAIL_MASK;
    printf("vfio-e1000e: masked vector pending, then sent (msi-x %u)\n", irqs);

    /* Hostile: vector 0 aimed away from the local APIC; nothing arrives. */
    mmio_write32(table + 0, 0x2000u);
    raise_lsc(regs);
    (void)wait_irqs(3, 4); /* one here would be wrong: give it time to come */
    if (irqs != 2)
        return FAIL_HOSTILE;
    /* Misaligned and narrow table accesses, the PBA, past the table. */
    mmio_write16(table + 2, 0xffff);
    mmio_write8(table + 8, 0xff);
    mmio_write64(table + 4, ~0ull);
    mmio_write32(pba, 0xffffffffu);
    mmio_write32(table + vectors * 16u, 0xffffffffu);
    mmio_write32(table + 0xff0, 0xffffffffu);
    if (mmio_read32(table + 0) != 0x2000u || mmio_read32(table + 8) != MSIX_VECTOR)
        return FAIL_HOSTILE;
    printf("vfio-e1000e: hostile table writes refused\n");

    /* A good address again: the held interrupt arrives, then a new one. */
    mmio_write32(table + 0, 0xfee00000u);
    if (wait_irqs(3, 64) < 0)
        return FAIL_AFTER;
    raise_lsc(regs);
    if (wait_irqs(4, 64) < 0)
        return FAIL_AFTER;
    mmio_write32(regs + REG_IMC, 0xffffffffu);
    printf("vfio-e1000e ok: %u msi-x, hostile table writes refused\n", irqs);
    return 0;
}
