/* SPDX-License-Identifier: Apache-2.0 */
/* SMP through PSCI: vCPU 0 checks the PSCI version (0.2 or later), starts
 * vCPU 1 with CPU_ON, waits for it to write its MPIDR into memory, then
 * powers the machine off with SYSTEM_OFF (vmm-run exits 0). A failure
 * exits through the exit device with the number of the check. */
#include "guest.h"

static volatile uint64_t seen_mpidr = ~0ull;
static uint8_t stack1[4096] __attribute__((aligned(16)));

void guest_exit(uint64_t status)
{
    guest_exit_code((uint32_t)status);
}

void secondary_main(void)
{
    uint64_t mpidr;
    __asm__ volatile("mrs %0, mpidr_el1" : "=r"(mpidr));
    seen_mpidr = mpidr & 0xffffff;
    __asm__ volatile("dsb sy" ::: "memory");
}

int main(uint64_t dtb)
{
    long v = psci_call(PSCI_VERSION, 0, 0, 0);
    if (v < 2) /* major in bits 31:16, minor in 15:0 */
        return 30;
    long r = psci_call(PSCI_CPU_ON, 1, (uint64_t)(uintptr_t)secondary_entry,
                       (uint64_t)(uintptr_t)(stack1 + sizeof(stack1)));
    if (r != 0)
        return 31;
    for (unsigned long i = 0; seen_mpidr == ~0ull; i++) {
        if (i > 100000000ul)
            return 32;
        __asm__ volatile("dsb sy" ::: "memory");
    }
    if (seen_mpidr != 1)
        return 33;
    puts_uart("smp guest: vCPU 1 up, powering off\n");
    psci_call(PSCI_SYSTEM_OFF, 0, 0, 0);
    return 34; /* SYSTEM_OFF returned */
}
