/* SPDX-License-Identifier: Apache-2.0 */
/* The small runtime of the arm64 test guests: MMIO, the PL011, the exit
 * device and PSCI calls, at the addresses of vmm/arm64.h. */
#ifndef ARM64_GUEST_H
#define ARM64_GUEST_H

#include <stdint.h>

#define UART_BASE 0x09000000ul
#define EXIT_BASE 0x09010000ul

#define PSCI_VERSION    0x84000000u
#define PSCI_CPU_ON     0xc4000003u
#define PSCI_SYSTEM_OFF 0x84000008u

static inline uint32_t mmio_read32(uintptr_t a)
{
    uint32_t v;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a) : "memory");
    return v;
}

static inline void mmio_write32(uintptr_t a, uint32_t v)
{
    __asm__ volatile("str %w0, [%1]" : : "r"(v), "r"(a) : "memory");
}

static inline void puts_uart(const char *s)
{
    for (; *s; s++)
        mmio_write32(UART_BASE, (uint8_t)*s);
}

__attribute__((noreturn)) static inline void guest_exit_code(uint32_t status)
{
    mmio_write32(EXIT_BASE, status);
    for (;;)
        __asm__ volatile("wfi");
}

long psci_call(uint64_t fn, uint64_t a1, uint64_t a2, uint64_t a3);
void secondary_entry(void);
__attribute__((noreturn)) void guest_exit(uint64_t status);
int main(uint64_t dtb);
void secondary_main(void);

#endif
