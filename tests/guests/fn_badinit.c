/* SPDX-License-Identifier: Apache-2.0 */
/* A function-VM guest that never gets ready: its fnrt_init loops. */
#include "fnrt/fnrt.h"

void fnrt_init(void)
{
    for (;;)
        __asm__ volatile("" ::: "memory");
}

static int nop(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    return 0;
}
FNRT_EXPORT(nop);
