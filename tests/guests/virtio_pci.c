/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCI and virtio-pci from a driver's side, end to end: enumerate bus 0
 * through 0xCF8/0xCFC, check ECAM agrees, size BAR 0, move it to another
 * place in the window (the library must follow with its ioeventfds), walk
 * the capabilities, program MSI-X, bring the entropy device up through the
 * common configuration structure, read two buffers (notification by a 16-bit
 * write to the queue's notify address, completion by the queue's MSI-X
 * vector), try the hostile writes the device must refuse, then turn MSI-X
 * off and read a third buffer, completed through INTx (level-triggered on
 * the IOAPIC line the interrupt line register names, lowered by reading the
 * ISR). Exit status 0 on success, else the FAIL_* step.
 */
#include "virtio_drv.h"

#define ECAM_BASE     0xe0000000ull
#define WINDOW_BASE   0xc0000000u
#define MOVED_BAR     (WINDOW_BASE + 0x100000u)
#define MSIX_VECTOR   0x51
#define CONFIG_VECTOR 0x52
#define INTX_VECTOR   0x54

enum {
    FAIL_BRIDGE = 1,
    FAIL_FIND = 2,
    FAIL_ECAM = 3,
    FAIL_BAR = 4,
    FAIL_CAPS = 5,
    FAIL_INIT = 6,
    FAIL_QUEUE = 7,
    FAIL_TIMEOUT = 8,
    FAIL_DATA = 9,
    FAIL_HOSTILE = 10,
    FAIL_MSIX = 11,
    FAIL_INTX = 12,
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

static void cfg_write16(unsigned slot, unsigned reg, uint16_t v)
{
    outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
    outw((uint16_t)(0xcfc + (reg & 2)), v);
}

static uint8_t cfg_read8(unsigned slot, unsigned reg)
{
    return (uint8_t)(cfg_read32(slot, reg) >> (8 * (reg & 3)));
}

static volatile unsigned msix_irqs, config_irqs, intx_irqs;
static uint64_t isr;

__attribute__((interrupt)) static void msix_isr(struct interrupt_frame *f)
{
    (void)f;
    msix_irqs++;
    lapic_eoi();
}

__attribute__((interrupt)) static void config_isr(struct interrupt_frame *f)
{
    (void)f;
    config_irqs++;
    lapic_eoi();
}

/* INTx: reading the ISR acknowledges the interrupt and lowers the line
 * before the EOI, so a level-triggered line does not fire again. */
__attribute__((interrupt)) static void intx_isr(struct interrupt_frame *f)
{
    (void)f;
    if (mmio_read8(isr) & 1)
        intx_irqs++;
    lapic_eoi();
}

/* Where the structures are, from the vendor capabilities. */
static uint64_t common, notify, bar;
static uint32_t notify_mult;
static unsigned msix_cap;

static struct vq_rings rings __attribute__((aligned(4096)));
static uint8_t buf[2][32];
static uint16_t avail_idx, last_used;

static uint8_t c8(unsigned off)
{
    return mmio_read8(common + off);
}
static uint16_t c16(unsigned off)
{
    return mmio_read16(common + off);
}
static void w8(unsigned off, uint8_t v)
{
    mmio_write8(common + off, v);
}
static void w16(unsigned off, uint16_t v)
{
    mmio_write16(common + off, v);
}
static void w32(unsigned off, uint32_t v)
{
    mmio_write32(common + off, v);
}

static int find_caps(unsigned slot)
{
    unsigned found = 0;
    for (unsigned c = cfg_read8(slot, 0x34), n = 0; c && n < 16; c = cfg_read8(slot, c + 1), n++) {
        uint8_t id = cfg_read8(slot, c);
        if (id == 0x11) {
            msix_cap = c;
            continue;
        }
        if (id != 0x09)
            continue;
        uint8_t type = cfg_read8(slot, c + 3), b = cfg_read8(slot, c + 4);
        uint32_t off = cfg_read32(slot, c + 8);
        if (b != 0)
            return -1;
        if (type == 1)
            common = bar + off, found |= 1;
        else if (type == 2)
            notify = bar + off, notify_mult = cfg_read32(slot, c + 16), found |= 2;
        else if (type == 3)
            isr = bar + off, found |= 4;
    }
    return found == 7 && msix_cap ? 0 : -1;
}

/* MSI-X entry v of the table in BAR 0: to the BSP's LAPIC at vector. */
static void msix_entry(unsigned slot, unsigned v, uint8_t vector)
{
    uint32_t table = cfg_read32(slot, msix_cap + 4);
    uint64_t e = bar + (table & ~7u) + 16 * v;
    mmio_write32(e, 0xfee00000u);
    mmio_write32(e + 4, 0);
    mmio_write32(e + 8, vector);
    mmio_write32(e + 12, 0);
}

static int wait_used(void)
{
    unsigned start = vdrv_ticks();
    while (*(volatile uint16_t *)&rings.used.idx == last_used) {
        if (vdrv_ticks() - start > 64)
            return -1;
        cpu_sti_hlt_cli();
    }
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    vdrv_start_timer();
    idt_set_handler(MSIX_VECTOR, msix_isr);
    idt_set_handler(CONFIG_VECTOR, config_isr);
    idt_set_handler(INTX_VECTOR, intx_isr);

    /* Slot 0: the host bridge. */
    if ((cfg_read32(0, 0x08) >> 16) != 0x0600) {
        puts("virtio_pci: no PCI host bridge\n");
        return FAIL_BRIDGE;
    }
    unsigned slot = 0, devices = 0;
    for (unsigned s = 1; s < 32; s++) {
        uint32_t id = cfg_read32(s, 0);
        if (id == 0xffffffffu)
            continue;
        devices++;
        if (id == (0x1044u << 16 | 0x1af4))
            slot = s;
    }
    if (!slot) {
        puts("virtio_pci: no virtio-pci entropy device\n");
        return FAIL_FIND;
    }
    /* ECAM sees the same header. */
    for (unsigned reg = 0; reg < 0x40; reg += 4)
        if (mmio_read32(ECAM_BASE + (slot << 15) + reg) != cfg_read32(slot, reg))
            return FAIL_ECAM;

    /* BAR 0: a 64-bit memory BAR of 32 KiB, placed in the 32-bit window. */
    uint32_t lo = cfg_read32(slot, 0x10), hi = cfg_read32(slot, 0x14);
    cfg_write32(slot, 0x10, 0xffffffffu);
    cfg_write32(slot, 0x14, 0xffffffffu);
    uint32_t size_lo = cfg_read32(slot, 0x10), size_hi = cfg_read32(slot, 0x14);
    cfg_write32(slot, 0x10, lo);
    cfg_write32(slot, 0x14, hi);
    uint32_t size = ~(size_lo & ~0xfu) + 1;
    if ((lo & 0x6) != 0x4 || size_hi != 0xffffffffu || size != 0x8000 || lo < WINDOW_BASE) {
        printf("virtio_pci: BAR 0 0x%x:%x, sized 0x%x:%x\n", hi, lo, size_hi, size_lo);
        return FAIL_BAR;
    }
    /* Move it, as an OS may, then turn on memory decoding and bus mastering. */
    cfg_write32(slot, 0x10, MOVED_BAR);
    cfg_write16(slot, 0x04, 0x6);
    bar = MOVED_BAR;
    if (find_caps(slot) < 0)
        return FAIL_CAPS;

    /* MSI-X: entry 0 for configuration changes, entry 1 for queue 0. */
    msix_entry(slot, 0, CONFIG_VECTOR);
    msix_entry(slot, 1, MSIX_VECTOR);
    cfg_write16(slot, msix_cap + 2, 0x8000);

    /* virtio 1.2 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. */
    w8(0x14, 0);
    while (c8(0x14) != 0)
        cpu_pause();
    w8(0x14, 1);
    w8(0x14, 3);
    w32(0x00, 1);
    if (!(mmio_read32(common + 0x04) & 1)) /* VIRTIO_F_VERSION_1 is bit 32 */
        return FAIL_INIT;
    w32(0x08, 0);
    w32(0x0c, 0);
    w32(0x08, 1);
    w32(0x0c, 1);
    w8(0x14, 0xb);
    if (c8(0x14) != 0xb)
        return FAIL_INIT;
    w16(0x10, 0);
    if (c16(0x10) != 0 || c16(0x12) != 1)
        return FAIL_INIT;

    /* Queue 0: 16 entries, vector 1. */
    w16(0x16, 0);
    if (c16(0x18) < VQ_SIZE)
        return FAIL_QUEUE;
    w16(0x18, VQ_SIZE);
    w16(0x1a, 1);
    if (c16(0x1a) != 1)
        return FAIL_QUEUE;
    uint64_t desc = (uint64_t)rings.desc, avail = (uint64_t)&rings.avail,
             used = (uint64_t)&rings.used;
    w32(0x20, (uint32_t)desc);
    w32(0x24, (uint32_t)(desc >> 32));
    w32(0x28, (uint32_t)avail);
    w32(0x2c, (uint32_t)(avail >> 32));
    w32(0x30, (uint32_t)used);
    w32(0x34, (uint32_t)(used >> 32));
    w16(0x1c, 1);
    if (c16(0x1c) != 1)
        return FAIL_QUEUE;
    uint16_t qoff = c16(0x1e);
    w8(0x14, 0xf);
    if (c8(0x14) != 0xf)
        return FAIL_INIT;

    for (unsigned k = 0; k < 2; k++) {
        rings.desc[k] =
            (struct virtq_desc){(uint64_t)buf[k], sizeof(buf[k]), VIRTQ_DESC_F_WRITE, 0};
        rings.avail.ring[avail_idx % VQ_SIZE] = (uint16_t)k;
        avail_idx++;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        *(volatile uint16_t *)&rings.avail.idx = avail_idx;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        mmio_write16(notify + (uint64_t)qoff * notify_mult, 0);
        if (wait_used() < 0) {
            printf("virtio_pci: request %u timed out\n", k);
            return FAIL_TIMEOUT;
        }
        struct virtq_used_elem e = rings.used.ring[last_used % VQ_SIZE];
        last_used++;
        if (e.id != k || e.len != sizeof(buf[k]))
            return FAIL_DATA;
    }
    if (memcmp(buf[0], buf[1], sizeof(buf[0])) == 0)
        return FAIL_DATA;
    /* Completions arrive as MSI-X vector 1, never through the ISR. */
    unsigned start = vdrv_ticks();
    while (msix_irqs == 0 && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    if (msix_irqs == 0 || mmio_read8(isr) != 0)
        return FAIL_MSIX;

    /* Hostile: a vector the function lacks reads back NO_VECTOR; queue_enable
     * 0, set-up of a live queue and a nonexistent queue change nothing; a
     * BAR over the IOAPIC is not decoded (the IOAPIC still answers). */
    w16(0x10, 500);
    if (c16(0x10) != 0xffff)
        return FAIL_HOSTILE;
    w16(0x1c, 0);
    w16(0x18, 4);
    w16(0x16, 7);
    w16(0x18, 8);
    w16(0x16, 0);
    if (c16(0x1c) != 1 || c16(0x18) != VQ_SIZE || c8(0x14) != 0xf)
        return FAIL_HOSTILE;
    uint32_t ioapic_ver = ioapic_read(1);
    cfg_write32(slot, 0x10, 0xfec00000u);
    if (ioapic_read(1) != ioapic_ver)
        return FAIL_HOSTILE;
    cfg_write32(slot, 0x10, MOVED_BAR);
    if (c8(0x14) != 0xf)
        return FAIL_HOSTILE;

    /* MSI-X off: the third buffer completes through INTx. Interrupts only
     * get in while the guest sleeps, and an MSI-X one of the first phase may
     * still be on its way (or two may have been merged in the irqfd): sleep
     * two timer ticks so they are all in before counting. */
    start = vdrv_ticks();
    while (vdrv_ticks() - start < 2)
        cpu_sti_hlt_cli();
    unsigned line = cfg_read8(slot, 0x3c), msix_before = msix_irqs;
    if (cfg_read8(slot, 0x3d) != 1 || line >= 24)
        return FAIL_INTX;
    ioapic_set_redir(line, INTX_VECTOR | IOAPIC_REDIR_LEVEL, 0);
    cfg_write16(slot, msix_cap + 2, 0);
    rings.desc[2] = (struct virtq_desc){(uint64_t)buf[0], sizeof(buf[0]), VIRTQ_DESC_F_WRITE, 0};
    rings.avail.ring[avail_idx % VQ_SIZE] = 2;
    avail_idx++;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *(volatile uint16_t *)&rings.avail.idx = avail_idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    mmio_write16(notify + (uint64_t)qoff * notify_mult, 0);
    if (wait_used() < 0)
        return FAIL_TIMEOUT;
    last_used++;
    start = vdrv_ticks();
    while (intx_irqs == 0 && vdrv_ticks() - start < 64)
        cpu_sti_hlt_cli();
    if (intx_irqs != 1 || msix_irqs != msix_before) {
        printf("virtio_pci: INTx on line %u: %u interrupts, MSI-X %u then %u\n", line, intx_irqs,
               msix_before, msix_irqs);
        return FAIL_INTX;
    }

    printf("virtio_pci ok: slot %u of %u devices, BAR 0x%x, %u MSI-X interrupts, %u INTx on "
           "line %u\n",
           slot, devices, (unsigned)bar, msix_irqs, intx_irqs, line);
    return 0;
}
