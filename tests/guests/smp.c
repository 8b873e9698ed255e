/* SPDX-License-Identifier: Apache-2.0 */
/* Every vCPU reports its LAPIC id on port 0x510 and checks in; vCPU 0 waits
 * for all of them and prints the count. */
#include "guest.h"

#define REPORT_PORT 0x510
/* About several seconds of emulated pause loop before giving up. */
#define WAIT_LIMIT 5000000u

static unsigned checked_in;

int guest_main(unsigned cpu, unsigned ncpus)
{
    outl(REPORT_PORT, lapic_id());
    __atomic_add_fetch(&checked_in, 1, __ATOMIC_SEQ_CST);
    if (cpu != 0)
        guest_park();

    /* vCPUs past GUEST_MAX_CPUS halt in start.S and never check in */
    unsigned expected = ncpus < GUEST_MAX_CPUS ? ncpus : GUEST_MAX_CPUS;
    unsigned n;
    for (unsigned spins = 0; (n = __atomic_load_n(&checked_in, __ATOMIC_ACQUIRE)) != expected;
         spins++) {
        if (spins == WAIT_LIMIT) {
            printf("smp: only %u of %u vCPUs checked in\n", n, expected);
            return 1;
        }
        cpu_pause();
    }
    printf("smp: %u vCPUs reported\n", n);
    return 0;
}
