/* SPDX-License-Identifier: Apache-2.0 */
/* The smallest guest: greets on COM1 and exits 0. The README's demo. */
#include "guest.h"

int guest_main(unsigned cpu, unsigned ncpus)
{
    if (cpu != 0)
        guest_park();
    puts("Hello from a libvmm guest!\n");
    printf("hello: vCPU %u of %u, LAPIC id %u, running in 64-bit long mode\n", cpu, ncpus,
           lapic_id());
    return 0;
}
