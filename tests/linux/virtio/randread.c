/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Level-2 helper of the virtio cases (hooks/50-virtio.sh, virtio/l2-virtio.sh): N random 4 KiB
 * reads of a block device with O_DIRECT, one request at a time, so each is one virtio-blk request
 * the device serves (no page cache in between). Prints
 *   L2-RANDREAD <n> reads of 4 KiB in <ms> ms
 * and exits 0, or prints "L2-VIRTIO-FAIL randread: <why>" and exits 1.
 * usage: randread DEVICE N
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what)
{
    printf("L2-VIRTIO-FAIL randread: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return fprintf(stderr, "usage: randread DEVICE N\n"), 2;
    long n = strtol(argv[2], NULL, 10);
    int fd = open(argv[1], O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return die(argv[1]);
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 4096 || n < 1)
        return errno = EINVAL, die("device size or count");
    uint64_t blocks = (uint64_t)size / 4096, x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    void *buf;
    if ((errno = posix_memalign(&buf, 4096, 4096)) != 0)
        return die("posix_memalign");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        if (pread(fd, buf, 4096, (off_t)(x % blocks) * 4096) != 4096)
            return die("pread");
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("L2-RANDREAD %ld reads of 4 KiB in %.0f ms\n", n,
           (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    return 0;
}
