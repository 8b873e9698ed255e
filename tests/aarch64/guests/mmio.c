/* SPDX-License-Identifier: Apache-2.0 */
/* MMIO dispatch both ways: the PL011's ID and flag registers read what the
 * amba-pl011 driver expects, its data register prints, a write to its mask
 * register reads back, an address no device claims reads all ones. Exit
 * status 0 when all hold, else the number of the first check that failed. */
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
    static const uint8_t id[8] = {0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1};
    for (int i = 0; i < 8; i++) {
        if (mmio_read32(UART_BASE + 0xfe0 + 4 * i) != id[i])
            return 10 + i;
    }
    uint32_t fr = mmio_read32(UART_BASE + 0x18);
    if (!(fr & 0x80) || !(fr & 0x10) || (fr & 0x20)) /* TXFE, RXFE, not TXFF */
        return 20;
    mmio_write32(UART_BASE + 0x38, 0x50);
    if (mmio_read32(UART_BASE + 0x38) != 0x50)
        return 21;
    mmio_write32(UART_BASE + 0x38, 0);
    if (mmio_read32(0x0c000000ul) != 0xffffffffu)
        return 22;
    puts_uart("mmio guest: ok\n");
    return 0;
}
