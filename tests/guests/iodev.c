/* SPDX-License-Identifier: Apache-2.0 */
/* Round trips with the host's test devices (PIO at 0x520, 8 ports; MMIO at
 * 0xd0000000, 256 bytes): each stores what is written and reads back the
 * stored bytes inverted. Exits with the number of the first failing check. */
#include "guest.h"

#define PIO_BASE  0x520
#define MMIO_BASE 0xd0000000ull

static void check(unsigned id, uint64_t got, uint64_t want)
{
    if (got == want)
        return;
    printf("iodev: check %u failed: read %lx, want %lx\n", id, got, want);
    guest_exit((int)id);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();

    /* port I/O, every width, at both ends of the range */
    outb(PIO_BASE + 0, 0x5a);
    check(1, inb(PIO_BASE + 0), 0xa5);
    outb(PIO_BASE + 7, 0x3c);
    check(2, inb(PIO_BASE + 7), 0xc3);
    outw(PIO_BASE + 2, 0x1234);
    check(3, inw(PIO_BASE + 2), 0xedcb);
    outw(PIO_BASE + 6, 0xbeef);
    check(4, inw(PIO_BASE + 6), 0x4110);
    outl(PIO_BASE + 4, 0xdeadbeef);
    check(5, inl(PIO_BASE + 4), 0x21524110);
    outl(PIO_BASE + 0, 0x01234567);
    check(6, inl(PIO_BASE + 0), 0xfedcba98);
    /* little-endian byte order: byte 1 of the last dword written at +0 */
    check(7, inb(PIO_BASE + 1), (uint8_t)~0x45);

    /* MMIO, every width, including the last 8 bytes of the region */
    mmio_write8(MMIO_BASE + 0x00, 0x5a);
    check(20, mmio_read8(MMIO_BASE + 0x00), 0xa5);
    mmio_write8(MMIO_BASE + 0xff, 0x81);
    check(21, mmio_read8(MMIO_BASE + 0xff), 0x7e);
    mmio_write16(MMIO_BASE + 0x10, 0xabcd);
    check(22, mmio_read16(MMIO_BASE + 0x10), 0x5432);
    mmio_write32(MMIO_BASE + 0x20, 0x89abcdef);
    check(23, mmio_read32(MMIO_BASE + 0x20), 0x76543210);
    mmio_write64(MMIO_BASE + 0x40, 0x0123456789abcdefull);
    check(24, mmio_read64(MMIO_BASE + 0x40), 0xfedcba9876543210ull);
    mmio_write64(MMIO_BASE + 0xf8, 0xfedcba9876543210ull);
    check(25, mmio_read64(MMIO_BASE + 0xf8), 0x0123456789abcdefull);
    check(26, mmio_read8(MMIO_BASE + 0x21), (uint8_t)~0xcd);
    check(27, mmio_read16(MMIO_BASE + 0x44), (uint16_t)~0x4567);

    puts("iodev ok\n");
    return 0;
}
