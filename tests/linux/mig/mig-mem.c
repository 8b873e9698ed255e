/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Level-2 program of the migration case (hooks/80-mig.sh), run by mig/l2-mig.sh: keeps writing
 * memory while level 1 migrates the VM. Each tick checks that an 8 MiB buffer still holds the
 * previous tick's pattern (a function of the count and of the word's index), writes the next
 * one over all of it, and prints the count; a page the migration lost or brought back stale
 * shows as a mismatch on the target. Markers:
 *   L2-MIG-COUNT <i>                    i = 0 .. N-1, a tick every 0.2 s
 *   L2-MIG-MEM ok <MiB> MiB x <N>       every check passed
 *   L2-MIG-FAIL <why>
 * usage: mig-mem N
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUF_MIB 8u
#define WORDS   ((size_t)BUF_MIB << 17)

static uint64_t pattern(uint64_t count, uint64_t word)
{
    uint64_t x = (count + 1) * 0x9e3779b97f4a7c15ull ^ word * 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 31);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 0;
    uint64_t *buf = malloc(WORDS * sizeof(uint64_t));
    if (n == 0 || !buf) {
        printf("L2-MIG-FAIL usage: mig-mem N (or no memory)\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned i = 0; i < n; i++) {
        for (size_t w = 0; i && w < WORDS; w++) {
            if (buf[w] != pattern(i - 1, w)) {
                printf("L2-MIG-FAIL at count %u, word %zu: %#llx, expected %#llx\n", i, w,
                       (unsigned long long)buf[w], (unsigned long long)pattern(i - 1, w));
                return 1;
            }
        }
        for (size_t w = 0; w < WORDS; w++)
            buf[w] = pattern(i, w);
        printf("L2-MIG-COUNT %u\n", i);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t w = 0; w < WORDS; w++) {
        if (buf[w] != pattern(n - 1, w)) {
            printf("L2-MIG-FAIL at the end, word %zu\n", w);
            return 1;
        }
    }
    printf("L2-MIG-MEM ok %u MiB x %u\n", BUF_MIB, n);
    return 0;
}
