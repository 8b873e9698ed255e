/* SPDX-License-Identifier: Apache-2.0 */
/*
 * QEMU's edu device passed through with vmm-run --vfio (tests/vfio), from
 * the driver's side: find it by enumerating configuration space through
 * 0xCF8, turn on decoding and bus mastering, read its ID register through
 * BAR 0 (mapped into the guest), program the emulated MSI capability and
 * have the device compute a factorial that ends with an MSI, then DMA a
 * pattern from guest memory into the device and back to another place
 * (another MSI). Then the hostile part: an MSI capability pointed away from
 * the local APIC (no interrupt may arrive: it waits as pending until the
 * address is good again), more vectors than the device
 * has, BAR 0 moved outside the window and onto guest RAM, decoding off,
 * writes past the capabilities; after each the device must answer again
 * as before. Prints one line per step; exit status 0 or the FAIL_* step.
 */
#include "virtio_drv.h"

#define EDU_VENDOR  0x1234
#define EDU_DEVICE  0x11e8
#define EDU_ID      0x010000edu
#define MSI_VECTOR  0x54
#define INTX_VECTOR 0x55

/* edu's registers (QEMU docs/specs/edu.rst). */
#define EDU_REG_ID     0x00
#define EDU_REG_LIVE   0x04
#define EDU_REG_FACT   0x08
#define EDU_REG_STATUS 0x20 /* bit 0: computing; bit 7: MSI when done */
#define EDU_REG_ISR    0x24
#define EDU_REG_ACK    0x64
#define EDU_REG_SRC    0x80
#define EDU_REG_DST    0x88
#define EDU_REG_COUNT  0x90
#define EDU_REG_CMD    0x98 /* bit 0 start, bit 1 device to RAM, bit 2 MSI when done */
#define EDU_BUFFER     0x40000
#define DMA_LEN        256

enum {
    FAIL_FIND = 1,
    FAIL_ID = 2,
    FAIL_LIVE = 3,
    FAIL_CAP = 4,
    FAIL_FACT = 5,
    FAIL_IRQ = 6,
    FAIL_DMA = 7,
    FAIL_DMA_DATA = 8,
    FAIL_HOSTILE_IRQ = 9,
    FAIL_HOSTILE_BAR = 10,
    FAIL_HOSTILE_DECODE = 11,
    FAIL_AFTER = 12,
    FAIL_INTX = 13,
};

static volatile unsigned irqs, intx_irqs;
static uint64_t edu_bar;
static uint8_t dma_src[DMA_LEN] __attribute__((aligned(64)));
static uint8_t dma_dst[DMA_LEN] __attribute__((aligned(64)));

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

__attribute__((interrupt)) static void msi_isr(struct interrupt_frame *f)
{
    (void)f;
    irqs++;
    lapic_eoi();
}

/* A level-triggered line: edu keeps it up until acknowledged, so the
 * handler acknowledges before the EOI (which has VFIO unmask it). */
__attribute__((interrupt)) static void intx_isr(struct interrupt_frame *f)
{
    (void)f;
    intx_irqs++;
    uint32_t isr = mmio_read32(edu_bar + EDU_REG_ISR);
    mmio_write32(edu_bar + EDU_REG_ACK, isr);
    lapic_eoi();
}

/* Wait until intx_irqs reaches want, as wait_irqs. */
static int wait_intx(unsigned want)
{
    unsigned start = vdrv_ticks();
    while (intx_irqs < want && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    return intx_irqs >= want ? 0 : -1;
}

/* Wait until irqs reaches want, or ticks timer ticks (about 160 ms each). */
static int wait_irqs(unsigned want, unsigned ticks)
{
    unsigned start = vdrv_ticks();
    while (irqs < want && vdrv_ticks() - start < ticks)
        cpu_sti_hlt_cli();
    return irqs >= want ? 0 : -1;
}

/* Wait until (read32(addr) & mask) == 0. */
static int wait_clear(uint64_t addr, uint32_t mask)
{
    unsigned start = vdrv_ticks();
    while ((mmio_read32(addr) & mask) && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    return (mmio_read32(addr) & mask) ? -1 : 0;
}

/* The factorial of n with an MSI at the end; acknowledges it. Returns the
 * result, or 0 (not finished). */
static uint32_t factorial(uint64_t bar, uint32_t n)
{
    mmio_write32(bar + EDU_REG_STATUS, 0x80);
    mmio_write32(bar + EDU_REG_FACT, n);
    if (wait_clear(bar + EDU_REG_STATUS, 1) < 0)
        return 0;
    uint32_t r = mmio_read32(bar + EDU_REG_FACT);
    return r;
}

static void ack(uint64_t bar)
{
    uint32_t isr = mmio_read32(bar + EDU_REG_ISR);
    if (isr)
        mmio_write32(bar + EDU_REG_ACK, isr);
}

static void msi_program(unsigned slot, unsigned cap, uint32_t addr, uint32_t ctl_bits)
{
    cfg_write32(slot, cap + 4, addr);
    cfg_write32(slot, cap + 8, 0);
    cfg_write32(slot, cap + 12, MSI_VECTOR);
    cfg_write32(slot, cap, (cfg_read32(slot, cap) & 0xff8fffffu) | ctl_bits << 16);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    vdrv_start_timer();
    idt_set_handler(MSI_VECTOR, msi_isr);

    unsigned slot = 0;
    for (unsigned s = 0; s < 32 && !slot; s++)
        if (cfg_read32(s, 0) == (EDU_DEVICE << 16 | EDU_VENDOR))
            slot = s;
    if (!slot)
        return FAIL_FIND;
    uint32_t bar0 = cfg_read32(slot, 0x10);
    uint64_t bar = bar0 & ~0xfu;
    edu_bar = bar;
    cfg_write32(slot, 0x04, 0x6); /* memory decoding, bus mastering */
    uint32_t id = mmio_read32(bar + EDU_REG_ID);
    printf("vfio-edu: slot %u BAR0 0x%x id 0x%x\n", slot, (unsigned)bar, id);
    if (id != EDU_ID)
        return FAIL_ID;
    for (unsigned i = 0; i < 1000; i++) /* through the KVM slot: no exits */
        if (mmio_read32(bar + EDU_REG_ID) != EDU_ID)
            return FAIL_ID;
    mmio_write32(bar + EDU_REG_LIVE, 0x12345678u);
    if (mmio_read32(bar + EDU_REG_LIVE) != ~0x12345678u)
        return FAIL_LIVE;

    unsigned cap = cfg_read32(slot, 0x34) & 0xfc;
    for (unsigned hops = 0; cap && hops < 48 && (cfg_read32(slot, cap) & 0xff) != 0x05; hops++)
        cap = (cfg_read32(slot, cap) >> 8) & 0xfc;
    if (!cap || (cfg_read32(slot, cap) & 0xff) != 0x05)
        return FAIL_CAP;
    msi_program(slot, cap, 0xfee00000u, 1); /* MSI Enable, one vector */

    uint32_t f = factorial(bar, 10);
    printf("vfio-edu: 10! = %u\n", f);
    if (f != 3628800u)
        return FAIL_FACT;
    if (wait_irqs(1, 64) < 0)
        return FAIL_IRQ;
    ack(bar);
    printf("vfio-edu: msi %u\n", irqs);

    for (unsigned i = 0; i < DMA_LEN; i++)
        dma_src[i] = (uint8_t)(i * 7 + 3);
    memset(dma_dst, 0, sizeof(dma_dst));
    mmio_write64(bar + EDU_REG_SRC, (uint64_t)(uintptr_t)dma_src);
    mmio_write64(bar + EDU_REG_DST, EDU_BUFFER);
    mmio_write64(bar + EDU_REG_COUNT, DMA_LEN);
    mmio_write64(bar + EDU_REG_CMD, 1);
    if (wait_clear(bar + EDU_REG_CMD, 1) < 0)
        return FAIL_DMA;
    mmio_write64(bar + EDU_REG_SRC, EDU_BUFFER);
    mmio_write64(bar + EDU_REG_DST, (uint64_t)(uintptr_t)dma_dst);
    mmio_write64(bar + EDU_REG_COUNT, DMA_LEN);
    mmio_write64(bar + EDU_REG_CMD, 1 | 2 | 4);
    if (wait_clear(bar + EDU_REG_CMD, 1) < 0 || wait_irqs(2, 64) < 0)
        return FAIL_DMA;
    ack(bar);
    if (memcmp(dma_src, dma_dst, DMA_LEN) != 0)
        return FAIL_DMA_DATA;
    printf("vfio-edu: dma ok (%u bytes there and back, msi %u)\n", DMA_LEN, irqs);

    /* INTx, where vmm-run gives the function one (--irqchip kernel): MSI
     * off, the line routed level-triggered through the IOAPIC; twice, so
     * the line must have been unmasked after the first EOI. */
    uint32_t line = cfg_read32(slot, 0x3c);
    if ((line >> 8) & 0xff) {
        unsigned gsi = line & 0xff;
        idt_set_handler(INTX_VECTOR, intx_isr);
        cfg_write32(slot, cap, cfg_read32(slot, cap) & ~(1u << 16));
        ioapic_set_redir(gsi, INTX_VECTOR | IOAPIC_REDIR_LEVEL, (uint8_t)lapic_id());
        if (factorial(bar, 6) != 720u || wait_intx(1) < 0 || factorial(bar, 7) != 5040u ||
            wait_intx(2) < 0)
            return FAIL_INTX;
        ioapic_set_redir(gsi, IOAPIC_REDIR_MASKED, 0);
        printf("vfio-edu: intx %u on GSI %u\n", intx_irqs, gsi);
    }

    /* Hostile: an MSI address that is no local APIC's, and more vectors
     * than the device has (Multiple Message Enable 32). Nothing may
     * arrive; the device still computes, and its interrupt waits in the
     * capability's Pending Bits until the address is fixed. */
    msi_program(slot, cap, 0x1000u, 1 | 5 << 4);
    if (factorial(bar, 5) != 120u)
        return FAIL_HOSTILE_IRQ;
    unsigned start = vdrv_ticks();
    while (!(cfg_read32(slot, cap + 20) & 1) && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    if (irqs != 2 || !(cfg_read32(slot, cap + 20) & 1))
        return FAIL_HOSTILE_IRQ;
    ack(bar);
    printf("vfio-edu: msi held pending while its address was bad\n");
    /* Past the header and capabilities, the Interrupt Pin, Vendor/Device ID. */
    cfg_write32(slot, 0xfc, 0xffffffffu);
    cfg_write32(slot, 0x3c, 0xffffffffu);
    cfg_write32(slot, 0x00, 0);
    if (cfg_read32(slot, 0) != (EDU_DEVICE << 16 | EDU_VENDOR))
        return FAIL_HOSTILE_BAR;
    /* BAR 0 onto guest RAM (outside the window: not decoded, RAM intact),
     * then elsewhere in the window (the mapping follows), then back. */
    uint32_t probe = *(volatile uint32_t *)(uintptr_t)dma_src;
    cfg_write32(slot, 0x10, (uint32_t)(uintptr_t)dma_src & ~0xfffffu);
    if (*(volatile uint32_t *)(uintptr_t)dma_src != probe || mmio_read32(bar) != 0xffffffffu)
        return FAIL_HOSTILE_BAR;
    uint64_t moved = bar + 0x4000000u;
    cfg_write32(slot, 0x10, (uint32_t)moved);
    if (mmio_read32(moved + EDU_REG_ID) != EDU_ID || mmio_read32(bar) != 0xffffffffu)
        return FAIL_HOSTILE_BAR;
    cfg_write32(slot, 0x10, bar0);
    /* Decoding off: BAR 0 reads all ones; on again: the device answers. */
    cfg_write32(slot, 0x04, 0x4);
    if (mmio_read32(bar + EDU_REG_ID) != 0xffffffffu)
        return FAIL_HOSTILE_DECODE;
    cfg_write32(slot, 0x04, 0x6);
    printf("vfio-edu: hostile writes refused\n");

    /* All is as before: the held MSI arrives with a good address, the ID
     * reads, and a factorial comes with its MSI. */
    msi_program(slot, cap, 0xfee00000u, 1);
    if (wait_irqs(3, 64) < 0 || (cfg_read32(slot, cap + 20) & 1))
        return FAIL_AFTER;
    if (mmio_read32(bar + EDU_REG_ID) != EDU_ID || factorial(bar, 12) != 479001600u ||
        wait_irqs(4, 64) < 0)
        return FAIL_AFTER;
    ack(bar);
    printf("vfio-edu ok: id, factorial, dma, %u msi, hostile writes refused\n", irqs);
    return 0;
}
