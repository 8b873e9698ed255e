/* SPDX-License-Identifier: Apache-2.0 */
/* Exit status: writes 42 to the exit device; vmm-run must exit with 42. The
 * device tree's magic in x0 proves the entry state too (else status 3). */
#include "guest.h"

void guest_exit(uint64_t status)
{
    guest_exit_code((uint32_t)status);
}

void secondary_main(void)
{
}

int main(uint64_t dtb)
{
    /* FDT magic 0xd00dfeed, big-endian in memory. */
    if (dtb & 7 || mmio_read32(dtb) != 0xedfe0dd0u)
        return 3;
    puts_uart("exit guest: writing 42\n");
    return 42;
}
