/* SPDX-License-Identifier: Apache-2.0 */
/* Accesses where no device sits (port 0x530, MMIO 0xd1000000): reads must
 * return all ones and writes must be dropped without stopping the guest. */
#include "guest.h"

#define PIO_PORT  0x530
#define MMIO_ADDR 0xd1000000ull

static unsigned failures;
static int first_failure;

static void expect(int id, uint64_t got, uint64_t want)
{
    if (got == want)
        return;
    printf("unclaimed: check %d: read %lx, want %lx\n", id, got, want);
    if (!failures++)
        first_failure = id;
}

static void read_all(int base_id)
{
    expect(base_id + 0, inb(PIO_PORT), 0xff);
    expect(base_id + 1, inw(PIO_PORT), 0xffff);
    expect(base_id + 2, inl(PIO_PORT), 0xffffffff);
    expect(base_id + 3, mmio_read8(MMIO_ADDR), 0xff);
    expect(base_id + 4, mmio_read16(MMIO_ADDR), 0xffff);
    expect(base_id + 5, mmio_read32(MMIO_ADDR), 0xffffffff);
    expect(base_id + 6, mmio_read64(MMIO_ADDR), ~0ull);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();

    read_all(1);
    outb(PIO_PORT, 0x12);
    outw(PIO_PORT, 0x1234);
    outl(PIO_PORT, 0x12345678);
    mmio_write8(MMIO_ADDR, 0x12);
    mmio_write16(MMIO_ADDR, 0x1234);
    mmio_write32(MMIO_ADDR, 0x12345678);
    mmio_write64(MMIO_ADDR, 0x123456789abcdef0ull);
    /* the writes went nowhere */
    read_all(11);

    if (failures)
        return first_failure;
    puts("unclaimed ok\n");
    return 0;
}
