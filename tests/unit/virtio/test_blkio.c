/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring block back end on temporary files (and a loop device where
 * one can be made): data round trips, several requests in flight, flush,
 * discard, write-zeroes and their fall-backs, short reads, refusals. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/event.h>

#include "check_compat.h"
#include "event/event_internal.h"
#include "virtio/blkio.h"

#define FILE_SIZE (1u << 20)
#define MAX_DONE  256

/* What the callbacks saw. */
static struct {
    unsigned n;
    void *cookie[MAX_DONE];
    int64_t res[MAX_DONE];
} seen;

static char path[PATH_MAX];
static int file_fd = -1;

/* Check has no per-test skip: a test that cannot run here says so on stderr
 * (shown by ctest -V or --output-on-failure) and returns. */
#define SKIP_TEST(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "SKIPPED: %s: ", __func__);                                                \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        return;                                                                                    \
    } while (0)

static void on_done(void *opaque, void *cookie, int64_t res)
{
    ck_assert_uint_lt(seen.n, MAX_DONE);
    seen.cookie[seen.n] = cookie;
    seen.res[seen.n] = res;
    seen.n++;
}

/* A FILE_SIZE temp file in dir whose byte i is pattern(i). */
static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + (i >> 9));
}

static void make_file(const char *dir, uint64_t size)
{
    file_fd = mkstemp(vmm_test_path(path, sizeof(path), dir, "blkio-test-XXXXXX"));
    ck_assert_int_ge(file_fd, 0);
    uint8_t *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    for (uint64_t i = 0; i < size; i++)
        buf[i] = pattern(i);
    ck_assert_int_eq(pwrite(file_fd, buf, size, 0), (ssize_t)size);
    free(buf);
}

static void setup(void)
{
    memset(&seen, 0, sizeof(seen));
    make_file(vmm_test_tmpdir(), FILE_SIZE);
}

static void teardown(void)
{
    if (file_fd >= 0) {
        close(file_fd);
        unlink(path);
    }
    file_fd = -1;
}

static struct vmm_blkio *open_path(const char *p, bool ro, unsigned depth)
{
    struct vmm_blkio_config cfg = {.path = p, .readonly = ro, .depth = depth};
    struct vmm_blkio *b = NULL;
    ck_assert_int_eq(vmm_blkio_open(&cfg, on_done, NULL, &b), 0);
    ck_assert_ptr_nonnull(b);
    return b;
}

/* Submit, then wait on the eventfd and process until `want` callbacks have
 * run in all (bounded: 10 s without progress fails). */
static void wait_done(struct vmm_blkio *b, unsigned want)
{
    ck_assert_int_ge(vmm_blkio_submit(b), 0);
    int idle = 0;
    while (seen.n < want) {
        struct pollfd p = {.fd = vmm_blkio_fd(b), .events = POLLIN};
        int r = poll(&p, 1, 100);
        ck_assert_int_ge(r, 0);
        if (vmm_blkio_process(b) == 0 && r == 0)
            ck_assert_msg(++idle < 100, "no completion in 10 s (%u of %u)", seen.n, want);
    }
    ck_assert_uint_eq(seen.n, want);
}

static void check_file(uint64_t off, uint64_t len, int (*expect)(uint64_t i))
{
    uint8_t *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(file_fd, buf, len, off), (ssize_t)len);
    /* One assertion per range: Check records every assertion it passes. */
    uint64_t bad = len;
    for (uint64_t i = 0; i < len && bad == len; i++)
        if (buf[i] != expect(off + i))
            bad = i;
    ck_assert_msg(bad == len, "byte %llu is %u, expected %d", (unsigned long long)(off + bad),
                  bad < len ? buf[bad] : 0, bad < len ? expect(off + bad) : 0);
    free(buf);
}

static int expect_pattern(uint64_t i)
{
    return pattern(i);
}

static int expect_zero(uint64_t i)
{
    return 0;
}

START_TEST(test_open_errors)
{
    struct vmm_blkio *b = (void *)1;
    struct vmm_blkio_config cfg = {.path = "/nonexistent/disk.img"};
    ck_assert_int_eq(vmm_blkio_open(&cfg, on_done, NULL, &b), -ENOENT);
    cfg.path = vmm_test_tmpdir();
    ck_assert_int_lt(vmm_blkio_open(&cfg, on_done, NULL, &b), 0); /* a directory */
    cfg.path = "/dev/null";
    ck_assert_int_eq(vmm_blkio_open(&cfg, on_done, NULL, &b), -EINVAL); /* a character device */
    cfg.path = path;
    cfg.depth = VMM_BLKIO_MAX_DEPTH + 1;
    ck_assert_int_eq(vmm_blkio_open(&cfg, on_done, NULL, &b), -EINVAL);
    cfg.depth = 0;
    ck_assert_int_eq(vmm_blkio_open(&cfg, NULL, NULL, &b), -EINVAL);
    ck_assert_int_eq(vmm_blkio_open(NULL, on_done, NULL, &b), -EINVAL);
    ck_assert_ptr_eq(b, (void *)1); /* untouched on failure */
    vmm_blkio_close(NULL);
}
END_TEST

START_TEST(test_geometry)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    ck_assert_uint_eq(vmm_blkio_size(b), FILE_SIZE);
    ck_assert_uint_eq(vmm_blkio_block_size(b), 512);
    ck_assert_uint_eq(vmm_blkio_mem_align(b), 1);
    ck_assert(!vmm_blkio_readonly(b));
    ck_assert(!vmm_blkio_is_blockdev(b));
    ck_assert_int_ge(vmm_blkio_fd(b), 0);
    ck_assert_uint_eq(vmm_blkio_space(b), VMM_BLKIO_DEFAULT_DEPTH);
    ck_assert_uint_eq(vmm_blkio_inflight(b), 0);
    /* Nothing queued: submit and process do nothing. */
    ck_assert_int_eq(vmm_blkio_submit(b), 0);
    ck_assert_int_eq(vmm_blkio_process(b), 0);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_write_read_roundtrip)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    /* Three buffers of odd sizes, written at an odd offset. */
    static uint8_t a[1000], c[3000], d[96];
    memset(a, 0xa1, sizeof(a));
    memset(c, 0xc3, sizeof(c));
    memset(d, 0xd4, sizeof(d));
    struct iovec w[3] = {{a, sizeof(a)}, {c, sizeof(c)}, {d, sizeof(d)}};
    ck_assert_int_eq(vmm_blkio_writev(b, 12345, w, 3, &w), 0);
    ck_assert_int_eq(vmm_blkio_submit(b), 1);
    wait_done(b, 1);
    ck_assert_ptr_eq(seen.cookie[0], &w);
    ck_assert_int_eq(seen.res[0], 4096);
    ck_assert_int_eq(vmm_blkio_flush(b, &seen), 0);
    wait_done(b, 2);
    ck_assert_ptr_eq(seen.cookie[1], &seen);
    ck_assert_int_eq(seen.res[1], 0);
    /* The file holds it, with its neighbours untouched. */
    uint8_t fb[4096 + 2];
    ck_assert_int_eq(pread(file_fd, fb, sizeof(fb), 12344), (ssize_t)sizeof(fb));
    ck_assert_uint_eq(fb[0], pattern(12344));
    ck_assert_uint_eq(fb[1], 0xa1);
    ck_assert_uint_eq(fb[1000], 0xa1);
    ck_assert_uint_eq(fb[1001], 0xc3);
    ck_assert_uint_eq(fb[4000], 0xc3);
    ck_assert_uint_eq(fb[4001], 0xd4);
    ck_assert_uint_eq(fb[4096], 0xd4);
    ck_assert_uint_eq(fb[4097], pattern(12345 + 4096));
    /* Read it back through two buffers split differently. */
    static uint8_t r1[2048], r2[2048];
    struct iovec r[2] = {{r1, sizeof(r1)}, {r2, sizeof(r2)}};
    ck_assert_int_eq(vmm_blkio_readv(b, 12345, r, 2, r1), 0);
    wait_done(b, 3);
    ck_assert_int_eq(seen.res[2], 4096);
    ck_assert_ptr_eq(seen.cookie[2], r1);
    ck_assert_int_eq(memcmp(r1, fb + 1, 2048), 0);
    ck_assert_int_eq(memcmp(r2, fb + 1 + 2048, 2048), 0);
    ck_assert_uint_eq(vmm_blkio_inflight(b), 0);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_many_in_flight)
{
    enum { N = 64, LEN = 4096 };
    struct vmm_blkio *b = open_path(path, false, N);
    static uint8_t buf[N][LEN];
    struct iovec iov[N];
    for (unsigned i = 0; i < N; i++) {
        iov[i] = (struct iovec){buf[i], LEN};
        /* Scattered offsets, some unaligned. */
        uint64_t off = ((uint64_t)i * 37 % N) * (FILE_SIZE / N) + i * 3;
        ck_assert_int_eq(vmm_blkio_readv(b, off, &iov[i], 1, (void *)(uintptr_t)(off + 1)), 0);
    }
    ck_assert_uint_eq(vmm_blkio_space(b), 0);
    ck_assert_uint_eq(vmm_blkio_inflight(b), N);
    /* A full back end refuses more, and nothing runs for the refusal. */
    ck_assert_int_eq(vmm_blkio_flush(b, NULL), -EBUSY);
    /* All N go to the kernel in one submit call. */
    ck_assert_int_eq(vmm_blkio_submit(b), N);
    wait_done(b, N);
    bool hit[N] = {false};
    for (unsigned k = 0; k < N; k++) {
        uint64_t off = (uint64_t)(uintptr_t)seen.cookie[k] - 1;
        ck_assert_int_eq(seen.res[k], LEN);
        unsigned i = (unsigned)(off % (FILE_SIZE / N)) / 3;
        ck_assert_uint_lt(i, N);
        ck_assert(!hit[i]);
        hit[i] = true;
        for (unsigned j = 0; j < LEN; j += 511)
            ck_assert_uint_eq(buf[i][j], pattern(off + j));
    }
    ck_assert_uint_eq(vmm_blkio_space(b), N);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_short_read_at_eof)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    static uint8_t buf[8192];
    struct iovec iov = {buf, sizeof(buf)};
    static uint8_t buf2[8192];
    struct iovec iov2 = {buf2, sizeof(buf2)};
    /* 512 bytes left before the end: the read comes back short. */
    ck_assert_int_eq(vmm_blkio_readv(b, FILE_SIZE - 512, &iov, 1, (void *)1), 0);
    /* At the end: 0 bytes; at an offset no file can have: the kernel's -EINVAL. */
    ck_assert_int_eq(vmm_blkio_readv(b, FILE_SIZE, &iov2, 1, (void *)2), 0);
    ck_assert_int_eq(vmm_blkio_readv(b, UINT64_MAX - sizeof(buf2), &iov2, 1, (void *)3), 0);
    wait_done(b, 3);
    int64_t got[4] = {0};
    for (int i = 0; i < 3; i++)
        got[(uintptr_t)seen.cookie[i]] = seen.res[i];
    ck_assert_int_eq(got[1], 512);
    ck_assert_int_eq(got[2], 0);
    ck_assert_int_eq(got[3], -EINVAL);
    for (unsigned j = 0; j < 512; j++)
        ck_assert_uint_eq(buf[j], pattern(FILE_SIZE - 512 + j));
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_errors_from_kernel)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    /* A buffer the process does not own: the kernel answers -EFAULT, and
     * the back end returns exactly that. */
    struct iovec bad = {(void *)4096, 4096};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &bad, 1, &bad), 0);
    wait_done(b, 1);
    ck_assert_ptr_eq(seen.cookie[0], &bad);
    ck_assert_int_eq(seen.res[0], -EFAULT);
    /* The back end goes on working. */
    static uint8_t buf[512];
    struct iovec ok = {buf, sizeof(buf)};
    ck_assert_int_eq(vmm_blkio_readv(b, 512, &ok, 1, &ok), 0);
    wait_done(b, 2);
    ck_assert_int_eq(seen.res[1], 512);
    ck_assert_uint_eq(buf[7], pattern(519));
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_refusals)
{
    struct vmm_blkio *b = open_path(path, false, 4);
    static uint8_t buf[4096];
    struct iovec iov = {buf, sizeof(buf)};
    struct iovec zero = {buf, 0};
    static struct iovec many[VMM_BLKIO_MAX_IOV + 1];
    for (unsigned i = 0; i <= VMM_BLKIO_MAX_IOV; i++)
        many[i] = (struct iovec){buf, 1};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &iov, 0, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_readv(b, 0, NULL, 1, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &zero, 1, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_readv(b, 0, many, VMM_BLKIO_MAX_IOV + 1, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_readv(b, UINT64_MAX - 100, &iov, 1, NULL), -EINVAL);
    struct iovec huge = {buf, (size_t)VMM_BLKIO_MAX_RW + 1};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &huge, 1, NULL), -EINVAL);
    /* Two iovecs whose sum passes the cap, each under it. */
    struct iovec two_big[2] = {{buf, VMM_BLKIO_MAX_RW}, {buf, VMM_BLKIO_MAX_RW}};
    ck_assert_int_eq(vmm_blkio_writev(b, 0, two_big, 2, NULL), -EINVAL);
    /* Writes stay inside the file. */
    ck_assert_int_eq(vmm_blkio_writev(b, FILE_SIZE - 4095, &iov, 1, NULL), -ENOSPC);
    ck_assert_int_eq(vmm_blkio_writev(b, UINT64_MAX - 10, &iov, 1, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_discard(b, FILE_SIZE - 512, 1024, NULL), -ENOSPC);
    ck_assert_int_eq(vmm_blkio_discard(b, UINT64_MAX - 511, 1024, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_discard(b, 0, 0, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, FILE_SIZE, 512, false, NULL), -ENOSPC);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 0, 0, true, NULL), -EINVAL);
    /* Nothing was queued, nothing runs. */
    ck_assert_uint_eq(vmm_blkio_inflight(b), 0);
    ck_assert_int_eq(vmm_blkio_submit(b), 0);
    ck_assert_int_eq(vmm_blkio_process(b), 0);
    ck_assert_uint_eq(seen.n, 0);
    check_file(0, FILE_SIZE, expect_pattern);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_readonly)
{
    struct vmm_blkio *b = open_path(path, true, 0);
    ck_assert(vmm_blkio_readonly(b));
    static uint8_t buf[4096];
    struct iovec iov = {buf, sizeof(buf)};
    ck_assert_int_eq(vmm_blkio_writev(b, 0, &iov, 1, NULL), -EROFS);
    ck_assert_int_eq(vmm_blkio_discard(b, 0, 4096, NULL), -EROFS);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 0, 4096, false, NULL), -EROFS);
    ck_assert_uint_eq(vmm_blkio_inflight(b), 0);
    /* Reads and flushes work. */
    ck_assert_int_eq(vmm_blkio_readv(b, 4096, &iov, 1, NULL), 0);
    ck_assert_int_eq(vmm_blkio_flush(b, NULL), 0);
    wait_done(b, 2);
    ck_assert_int_eq(seen.res[0] + seen.res[1], 4096);
    ck_assert_uint_eq(buf[100], pattern(4196));
    vmm_blkio_close(b);
    check_file(0, FILE_SIZE, expect_pattern);
}
END_TEST

/* Discard and write-zeroes on a file: the ranges read back as zeroes and
 * nothing around them changes. */
static void zero_ops_on(struct vmm_blkio *b, uint64_t zlen)
{
    ck_assert_int_eq(vmm_blkio_discard(b, 8192, 16384, NULL), 0);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 65536 + 512, 1536, false, NULL), 0);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 131072, zlen, true, NULL), 0);
    wait_done(b, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(seen.res[i], 0);
    check_file(0, 8192, expect_pattern);
    check_file(8192, 16384, expect_zero);
    check_file(8192 + 16384, 65536 + 512 - 8192 - 16384, expect_pattern);
    check_file(65536 + 512, 1536, expect_zero);
    check_file(65536 + 2048, 131072 - 65536 - 2048, expect_pattern);
    check_file(131072, zlen, expect_zero);
    check_file(131072 + zlen, FILE_SIZE - 131072 - zlen, expect_pattern);
}

START_TEST(test_discard_and_zeroes)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    zero_ops_on(b, 12288);
    vmm_blkio_close(b);
}
END_TEST

/* tmpfs punches holes but has no ZERO_RANGE: write-zeroes without unmap
 * falls back to writing zeroes, in 1 MiB steps for a long range. */
START_TEST(test_zeroes_fallback_tmpfs)
{
    teardown();
    if (access("/dev/shm", W_OK) != 0)
        SKIP_TEST("/dev/shm (tmpfs) is not writable here: %s", strerror(errno));
    const uint64_t size = 4u << 20;
    make_file("/dev/shm", size);
    struct vmm_blkio *b = open_path(path, false, 0);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 512, (3u << 20) + 1024, false, b), 0);
    wait_done(b, 1);
    ck_assert_ptr_eq(seen.cookie[0], b);
    ck_assert_int_eq(seen.res[0], 0);
    check_file(0, 512, expect_pattern);
    check_file(512, (3u << 20) + 1024, expect_zero);
    check_file((3u << 20) + 1536, size - (3u << 20) - 1536, expect_pattern);
    /* Once learnt, the next one writes straight away. */
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, size - 4096, 4096, false, NULL), 0);
    wait_done(b, 2);
    ck_assert_int_eq(seen.res[1], 0);
    check_file(size - 4096, 4096, expect_zero);
    vmm_blkio_close(b);
}
END_TEST

static void process_cb(void *opaque, int fd, uint32_t events)
{
    (void)vmm_blkio_process(opaque);
}

START_TEST(test_event_loop_drives_completions)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    struct vmm_event_loop *loop;
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, vmm_blkio_fd(b), EPOLLIN, process_cb, b), 0);
    /* Reads served from the page cache finish inside submit; a flush of
     * dirty pages runs on the kernel's workers and comes back through the
     * eventfd (usually: a very fast flush can finish inside submit too). */
    static uint8_t buf[4][512];
    struct iovec iov[4];
    for (int i = 0; i < 4; i++) {
        iov[i] = (struct iovec){buf[i], 512};
        ck_assert_int_eq(vmm_blkio_readv(b, (uint64_t)i * 1000, &iov[i], 1, buf[i]), 0);
    }
    ck_assert_int_eq(vmm_blkio_submit(b), 4);
    ck_assert_uint_eq(seen.n, 4); /* all four came back inside submit */
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(buf[i][0], pattern((uint64_t)i * 1000));
    ck_assert_int_eq(pwrite(file_fd, buf[0], 512, 4096), 512);
    ck_assert_int_eq(vmm_blkio_flush(b, &seen), 0);
    ck_assert_int_eq(vmm_blkio_submit(b), 1);
    for (int spins = 0; seen.n < 5 && spins < 100; spins++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 100), 0);
    ck_assert_uint_eq(seen.n, 5);
    ck_assert_ptr_eq(seen.cookie[4], &seen);
    ck_assert_int_eq(seen.res[4], 0);
    /* Drained: the eventfd goes quiet again (after at most one spurious
     * wake-up). */
    (void)vmm_event_loop_run_once(loop, 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(vmm_event_loop_remove(loop, vmm_blkio_fd(b)), 0);
    vmm_event_loop_destroy(loop);
    vmm_blkio_close(b);
}
END_TEST

static unsigned reap_calls;

static void reap_cb(void *opaque, int fd, uint32_t events)
{
    reap_calls++;
    (void)vmm_blkio_reap(opaque);
}

/* Edge-triggered, as virtio-blk watches it: completions that come back
 * through the eventfd are reaped without reading it, and a signal is one
 * callback, not a loop spinning on a counter nobody clears. */
START_TEST(test_edge_loop_reaps_without_read)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    struct vmm_event_loop *loop;
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, vmm_blkio_fd(b), EPOLLIN, reap_cb, b), 0);
    static uint8_t buf[512];
    memset(buf, 0x5a, sizeof(buf));
    ck_assert_int_eq(pwrite(file_fd, buf, sizeof(buf), 8192), 512);
    ck_assert_int_eq(vmm_blkio_flush(b, &seen), 0);
    ck_assert_int_eq(vmm_blkio_submit(b), 1);
    for (int spins = 0; seen.n < 1 && spins < 100; spins++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 100), 0);
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_ptr_eq(seen.cookie[0], &seen);
    ck_assert_int_eq(seen.res[0], 0);
    /* A kick is one callback; the eventfd stays readable (never read) and
     * wakes nobody again. */
    (void)vmm_event_loop_run_once(loop, 0);
    reap_calls = 0;
    vmm_blkio_kick(b);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 100), 1);
    ck_assert_uint_eq(reap_calls, 1);
    struct pollfd p = {.fd = vmm_blkio_fd(b), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 0), 0);
    ck_assert_uint_eq(reap_calls, 1);
    /* Reads served inside submit need no wake-up at all. */
    struct iovec iov = {buf, sizeof(buf)};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &iov, 1, buf), 0);
    ck_assert_int_eq(vmm_blkio_submit(b), 1);
    ck_assert_uint_eq(seen.n, 2);
    ck_assert_int_eq(seen.res[1], 512);
    ck_assert_int_eq(vmm_event_loop_remove(loop, vmm_blkio_fd(b)), 0);
    vmm_event_loop_destroy(loop);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_close_with_requests_in_flight)
{
    struct vmm_blkio *b = open_path(path, false, 0);
    static uint8_t buf[16][4096];
    struct iovec iov[16];
    for (int i = 0; i < 16; i++) {
        iov[i] = (struct iovec){buf[i], 4096};
        ck_assert_int_eq(vmm_blkio_readv(b, (uint64_t)i * 4096, &iov[i], 1, NULL), 0);
    }
    ck_assert_int_eq(pwrite(file_fd, buf[0], 512, 8192), 512);
    ck_assert_int_eq(vmm_blkio_flush(b, NULL), 0);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 0, 4096, false, NULL), 0);
    ck_assert_uint_eq(vmm_blkio_inflight(b), 18);
    /* Close hands the queued requests to the kernel, waits for all of
     * them, and calls nothing. */
    vmm_blkio_close(b);
    ck_assert_uint_eq(seen.n, 0);
    check_file(0, 4096, expect_zero);
    ck_assert_uint_eq(buf[15][0], pattern(15 * 4096));
}
END_TEST

START_TEST(test_cancel_all)
{
    /* Writes of dirtied pages and flushes (both go to the kernel's workers)
     * behind reads, all in flight, then cancel: every callback runs once
     * before cancel returns, each with its own result or -ECANCELED (what
     * a worker had not started; which ones is the kernel's timing), and the
     * back end takes new requests afterwards. */
    struct vmm_blkio *b = open_path(path, false, 64);
    static uint8_t buf[24][16384];
    struct iovec iov[24];
    uintptr_t tag = 1;
    for (int i = 0; i < 24; i++) {
        iov[i] = (struct iovec){buf[i], sizeof(buf[i])};
        if (i % 3 == 0) {
            ck_assert_int_eq(vmm_blkio_flush(b, (void *)tag++), 0);
            continue;
        }
        memset(buf[i], i, sizeof(buf[i]));
        int r = i % 3 == 1 ? vmm_blkio_writev(b, (uint64_t)i * 16384, &iov[i], 1, (void *)tag++)
                           : vmm_blkio_readv(b, (uint64_t)i * 16384, &iov[i], 1, (void *)tag++);
        ck_assert_int_eq(r, 0);
    }
    ck_assert_int_ge(vmm_blkio_submit(b), 0);
    unsigned before = seen.n;
    ck_assert_int_eq(vmm_blkio_cancel_all(b), 0);
    ck_assert_uint_eq(vmm_blkio_inflight(b), 0);
    ck_assert_uint_eq(seen.n, 24);
    unsigned cancelled = 0;
    bool once[25] = {false};
    for (unsigned k = 0; k < seen.n; k++) {
        uintptr_t t = (uintptr_t)seen.cookie[k];
        ck_assert(t >= 1 && t <= 24 && !once[t]);
        once[t] = true;
        bool flush = (t - 1) % 3 == 0;
        if (seen.res[k] == -ECANCELED || seen.res[k] == -EINTR)
            cancelled++;
        else
            ck_assert_int_eq(seen.res[k], flush ? 0 : 16384);
    }
    /* Informational: how many the kernel had not started. */
    printf("cancel_all: %u of %u requests cancelled (%u done before)\n", cancelled, 24, before);
    /* Still usable: a read after the cancel completes normally. */
    uint8_t one[512];
    struct iovec v = {one, sizeof(one)};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &v, 1, (void *)99), 0);
    wait_done(b, 25);
    ck_assert_int_eq(seen.res[24], 512);
    ck_assert_uint_eq(one[1], pattern(1));
    /* Nothing in flight: cancel is a no-op. */
    ck_assert_int_eq(vmm_blkio_cancel_all(b), 0);
    vmm_blkio_close(b);
}
END_TEST

START_TEST(test_direct_io)
{
    struct vmm_blkio_config cfg = {.path = path, .direct = true};
    struct vmm_blkio *b = NULL;
    int r = vmm_blkio_open(&cfg, on_done, NULL, &b);
    if (r == -EINVAL)
        SKIP_TEST("O_DIRECT is not supported for %s here", path);
    ck_assert_int_eq(r, 0);
    uint32_t align = vmm_blkio_mem_align(b);
    uint32_t bs = vmm_blkio_block_size(b);
    ck_assert_uint_ge(align, 1);
    ck_assert_uint_ge(bs, 512);
    uint8_t *buf = aligned_alloc(4096, 8192);
    ck_assert_ptr_nonnull(buf);
    struct iovec iov = {buf, 4096};
    ck_assert_int_eq(vmm_blkio_readv(b, 4096, &iov, 1, NULL), 0);
    wait_done(b, 1);
    ck_assert_int_eq(seen.res[0], 4096);
    ck_assert_uint_eq(buf[5], pattern(4101));
    /* Misaligned offset, length or buffer: refused before the kernel. */
    ck_assert_int_eq(vmm_blkio_readv(b, 4096 + bs / 2, &iov, 1, NULL), -EINVAL);
    struct iovec odd_len = {buf, bs + 1};
    ck_assert_int_eq(vmm_blkio_readv(b, 0, &odd_len, 1, NULL), -EINVAL);
    if (align > 1) {
        struct iovec odd_buf = {buf + 1, 4096};
        ck_assert_int_eq(vmm_blkio_writev(b, 0, &odd_buf, 1, NULL), -EINVAL);
    }
    /* Write-zeroes by writing goes through O_DIRECT too. */
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 8192, 4096, false, NULL), 0);
    wait_done(b, 2);
    ck_assert_int_eq(seen.res[1], 0);
    check_file(8192, 4096, expect_zero);
    free(buf);
    vmm_blkio_close(b);
}
END_TEST

/* A loop device over the temp file, freed when its last fd closes. Returns
 * an open fd (the path in dev) or -1 where loop devices cannot be made. */
static int make_loop_device(char *dev, size_t n)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -1;
    int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
    close(ctl);
    if (nr < 0)
        return -1;
    snprintf(dev, n, "/dev/loop%d", nr);
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct loop_config lc = {.fd = (unsigned)file_fd};
    lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    if (ioctl(fd, LOOP_CONFIGURE, &lc) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

START_TEST(test_block_device)
{
    char dev[32];
    int lfd = make_loop_device(dev, sizeof(dev));
    if (lfd < 0)
        SKIP_TEST("cannot make a loop device here: %s", strerror(errno));
    struct vmm_blkio *b = open_path(dev, false, 0);
    ck_assert(vmm_blkio_is_blockdev(b));
    ck_assert_uint_eq(vmm_blkio_size(b), FILE_SIZE); /* BLKGETSIZE64 */
    ck_assert_uint_eq(vmm_blkio_block_size(b), 512); /* BLKSSZGET */
    /* Block devices take whole logical blocks for discard and zeroing. */
    ck_assert_int_eq(vmm_blkio_discard(b, 100, 512, NULL), -EINVAL);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 512, 100, false, NULL), -EINVAL);
    static uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    struct iovec iov = {buf, sizeof(buf)};
    ck_assert_int_eq(vmm_blkio_writev(b, 4096 * 40, &iov, 1, NULL), 0);
    ck_assert_int_eq(vmm_blkio_flush(b, NULL), 0);
    wait_done(b, 2);
    ck_assert_int_eq(seen.res[0] + seen.res[1], 4096);
    /* Discard through the io_uring command or BLKDISCARD (a loop device
     * punches a hole in its file), then write-zeroes with and without unmap. */
    ck_assert_int_eq(vmm_blkio_discard(b, 8192, 16384, NULL), 0);
    wait_done(b, 3);
    ck_assert_int_eq(seen.res[2], 0);
    ck_assert_int_eq(vmm_blkio_discard(b, 32768, 4096, NULL), 0); /* the learnt path */
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 65536 + 512, 1536, false, NULL), 0);
    ck_assert_int_eq(vmm_blkio_write_zeroes(b, 131072, 4096, true, NULL), 0);
    ck_assert_int_eq(vmm_blkio_flush(b, NULL), 0);
    wait_done(b, 7);
    for (int i = 3; i < 7; i++)
        ck_assert_int_eq(seen.res[i], 0);
    vmm_blkio_close(b);
    /* Through the device's cache to the file. */
    ck_assert_int_eq(fsync(lfd), 0);
    ck_assert_int_eq(ioctl(lfd, BLKFLSBUF, 0), 0);
    close(lfd);
    check_file(8192, 16384, expect_zero);
    check_file(32768, 4096, expect_zero);
    check_file(65536 + 512, 1536, expect_zero);
    check_file(131072, 4096, expect_zero);
    check_file(0, 8192, expect_pattern);
    uint8_t got[4096];
    ck_assert_int_eq(pread(file_fd, got, sizeof(got), 4096 * 40), 4096);
    ck_assert_int_eq(memcmp(got, buf, sizeof(got)), 0);
}
END_TEST

static Suite *blkio_suite(void)
{
    Suite *s = suite_create("blkio");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_geometry);
    tcase_add_test(tc, test_write_read_roundtrip);
    tcase_add_test(tc, test_many_in_flight);
    tcase_add_test(tc, test_short_read_at_eof);
    tcase_add_test(tc, test_errors_from_kernel);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_readonly);
    tcase_add_test(tc, test_discard_and_zeroes);
    tcase_add_test(tc, test_zeroes_fallback_tmpfs);
    tcase_add_test(tc, test_event_loop_drives_completions);
    tcase_add_test(tc, test_edge_loop_reaps_without_read);
    tcase_add_test(tc, test_close_with_requests_in_flight);
    tcase_add_test(tc, test_cancel_all);
    tcase_add_test(tc, test_direct_io);
    tcase_add_test(tc, test_block_device);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(blkio_suite());
}
