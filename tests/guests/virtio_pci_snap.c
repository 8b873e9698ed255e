/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-pci snapshot guest: finds the entropy device on the PCI bus,
 * moves its BAR 0, programs MSI-X (the queue's vector to MSIX_VECTOR) and
 * brings the device up, then reads entropy in three rounds of four
 * requests, each notified through the queue's notify address and
 * completed by exactly one MSI-X interrupt. Before the second and third
 * rounds it says "waiting" and polls the UART until the host sends a byte
 * (the host snapshots it there and restores it in a new VM, which must
 * have the BAR, the MSI-X routing and the queue where the guest left them).
 * Exit 0, or FAIL_* on the console and as the status.
 */
#include "virtio_drv.h"

#define WINDOW_BASE 0xc0000000u
#define MOVED_BAR   (WINDOW_BASE + 0x200000u)
#define MSIX_VECTOR 0x51
#define ROUNDS      3
#define REQUESTS    4

enum { FAIL_FIND = 1, FAIL_CAPS = 2, FAIL_INIT = 3, FAIL_TIMEOUT = 4, FAIL_DATA = 5, FAIL_IRQ = 6 };

static volatile unsigned msix_irqs;

__attribute__((interrupt)) static void msix_isr(struct interrupt_frame *f)
{
    (void)f;
    msix_irqs++;
    lapic_eoi();
}

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

static uint64_t common, notify, bar = MOVED_BAR;
static uint32_t notify_mult;
static unsigned msix_cap;
static struct vq_rings rings __attribute__((aligned(4096)));
static uint8_t buf[REQUESTS][32];
static uint16_t avail_idx, last_used;

static int find_caps(unsigned slot)
{
    unsigned found = 0;
    for (unsigned c = cfg_read8(slot, 0x34), n = 0; c && n < 16; c = cfg_read8(slot, c + 1), n++) {
        uint8_t id = cfg_read8(slot, c);
        if (id == 0x11) {
            msix_cap = c;
            continue;
        }
        if (id != 0x09 || cfg_read8(slot, c + 4) != 0)
            continue;
        uint8_t type = cfg_read8(slot, c + 3);
        uint32_t off = cfg_read32(slot, c + 8);
        if (type == 1)
            common = bar + off, found |= 1;
        else if (type == 2)
            notify = bar + off, notify_mult = cfg_read32(slot, c + 16), found |= 2;
    }
    return found == 3 && msix_cap ? 0 : -1;
}

static int request(unsigned k, uint16_t qoff)
{
    uint16_t head = (uint16_t)(k % REQUESTS);
    rings.desc[head] =
        (struct virtq_desc){(uint64_t)buf[head], sizeof(buf[head]), VIRTQ_DESC_F_WRITE, 0};
    rings.avail.ring[avail_idx % VQ_SIZE] = head;
    avail_idx++;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *(volatile uint16_t *)&rings.avail.idx = avail_idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    mmio_write16(notify + (uint64_t)qoff * notify_mult, 0);
    unsigned start = vdrv_ticks();
    while (*(volatile uint16_t *)&rings.used.idx == last_used || msix_irqs != k + 1) {
        if (vdrv_ticks() - start > 64) {
            printf("virtio_pci_snap: request %u: used %u, %u MSI-X interrupts\n", k,
                   *(volatile uint16_t *)&rings.used.idx, msix_irqs);
            return FAIL_TIMEOUT;
        }
        cpu_sti_hlt_cli();
    }
    struct virtq_used_elem e = rings.used.ring[last_used % VQ_SIZE];
    last_used++;
    if (e.id != head || e.len != sizeof(buf[head]))
        return FAIL_DATA;
    printf("request %u: %u MSI-X interrupts\n", k, msix_irqs);
    return 0;
}

static char wait_for_host(void)
{
    __asm__ volatile("sti" ::: "memory");
    puts("waiting\n");
    while (!(inb(COM1_LSR) & UART_LSR_DR))
        cpu_pause();
    __asm__ volatile("cli" ::: "memory");
    return (char)inb(COM1_RBR);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    vdrv_start_timer();
    idt_set_handler(MSIX_VECTOR, msix_isr);

    unsigned slot = 0;
    for (unsigned s = 1; s < 32 && !slot; s++)
        if (cfg_read32(s, 0) == (0x1044u << 16 | 0x1af4))
            slot = s;
    if (!slot) {
        puts("virtio_pci_snap: no virtio-pci entropy device\n");
        return FAIL_FIND;
    }
    cfg_write32(slot, 0x10, MOVED_BAR);
    cfg_write32(slot, 0x14, 0);
    cfg_write16(slot, 0x04, 0x6);
    if (find_caps(slot) < 0)
        return FAIL_CAPS;
    /* MSI-X entry 1 (the queue's) to the BSP at MSIX_VECTOR; entry 0 stays
     * masked. */
    uint64_t e = bar + (cfg_read32(slot, msix_cap + 4) & ~7u) + 16;
    mmio_write32(e, 0xfee00000u);
    mmio_write32(e + 4, 0);
    mmio_write32(e + 8, MSIX_VECTOR);
    mmio_write32(e + 12, 0);
    cfg_write16(slot, msix_cap + 2, 0x8000);

    mmio_write8(common + 0x14, 0);
    mmio_write8(common + 0x14, 1);
    mmio_write8(common + 0x14, 3);
    mmio_write32(common + 0x08, 1);
    mmio_write32(common + 0x0c, 1); /* VIRTIO_F_VERSION_1 */
    mmio_write8(common + 0x14, 0xb);
    if (mmio_read8(common + 0x14) != 0xb)
        return FAIL_INIT;
    mmio_write16(common + 0x16, 0);
    mmio_write16(common + 0x18, VQ_SIZE);
    mmio_write16(common + 0x1a, 1);
    mmio_write64(common + 0x20, (uint64_t)rings.desc);
    mmio_write64(common + 0x28, (uint64_t)&rings.avail);
    mmio_write64(common + 0x30, (uint64_t)&rings.used);
    mmio_write16(common + 0x1c, 1);
    uint16_t qoff = mmio_read16(common + 0x1e);
    mmio_write8(common + 0x14, 0xf);
    if (mmio_read16(common + 0x1a) != 1 || mmio_read16(common + 0x1c) != 1 ||
        mmio_read8(common + 0x14) != 0xf)
        return FAIL_INIT;

    for (unsigned round = 0; round < ROUNDS; round++) {
        if (round)
            printf("got %c\n", wait_for_host());
        for (unsigned k = round * REQUESTS; k < (round + 1) * REQUESTS; k++) {
            int r = request(k, qoff);
            if (r)
                return r;
        }
    }
    if (msix_irqs != ROUNDS * REQUESTS)
        return FAIL_IRQ;
    printf("virtio_pci_snap ok: %u requests, %u MSI-X interrupts\n", ROUNDS * REQUESTS, msix_irqs);
    return 0;
}
