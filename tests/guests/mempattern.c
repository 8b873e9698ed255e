/* SPDX-License-Identifier: Apache-2.0 */
/* Writes u32 words addr ^ 0x5a5a5a5a over [2 MiB, 2 MiB + 256 KiB), reads them
 * back, and exits 0 when all matched; the host checks the same pattern. */
#include "guest.h"

#define AREA_START 0x200000ul
#define AREA_SIZE  (256u << 10)
#define PATTERN    0x5a5a5a5au

/* Two words per 64-bit access halve the emulated instructions. An 8-byte
 * aligned addr has bit 2 clear, so the next word's value is this one's ^ 4. */
static inline uint64_t pair_at(uint64_t addr)
{
    uint32_t lo = (uint32_t)addr ^ PATTERN;
    return (uint64_t)lo | (uint64_t)(lo ^ 4) << 32;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();

    for (uint64_t a = AREA_START; a < AREA_START + AREA_SIZE; a += 8)
        *(volatile uint64_t *)a = pair_at(a);

    uint64_t diff = 0;
    for (uint64_t a = AREA_START; a < AREA_START + AREA_SIZE; a += 8)
        diff |= *(volatile uint64_t *)a ^ pair_at(a);

    if (diff) {
        printf("mempattern: mismatch (xor of differences %lx)\n", diff);
        return 1;
    }
    printf("mempattern ok: %u bytes at %lx\n", AREA_SIZE, AREA_START);
    return 0;
}
