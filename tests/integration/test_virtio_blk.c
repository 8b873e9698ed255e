/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk through KVM: the virtio_blk and virtio_blk_hostile test guests
 * (freestanding driver, tests/guests/virtio_drv.c) run by vmm-run with
 * --disk, and through the library API; afterwards the test reads the image
 * files to check what the guest wrote, discarded and zeroed, and that
 * nothing else changed.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

#define DISK_A_SIZE (128u * 512u) /* seed 1, read-write */
#define DISK_B_SIZE (32u * 512u)  /* seed 99, read-only */

/* The pattern the guests check (tests/guests/virtio_blk_req.h). */
static uint8_t pattern(uint64_t off, unsigned seed)
{
    return (uint8_t)(off * 7 + (off >> 9) * 3 + seed);
}

/* What the virtio_blk guest writes at sector 16. */
static uint8_t written(uint32_t i)
{
    return (uint8_t)(0xa5 ^ i ^ (i >> 8));
}

static char disk_a[PATH_MAX], disk_b[PATH_MAX];

static void make_image(char *path, size_t n, uint32_t size, unsigned seed)
{
    int fd = mkstemp(vmm_test_tmpname(path, n, "vmm-blk-test-"));
    ck_assert_int_ge(fd, 0);
    static uint8_t buf[DISK_A_SIZE];
    for (uint32_t i = 0; i < size; i++)
        buf[i] = pattern(i, seed);
    ck_assert_int_eq(write(fd, buf, size), (ssize_t)size);
    close(fd);
}

static void setup(void)
{
    vmm_test_require_kvm();
    make_image(disk_a, sizeof(disk_a), DISK_A_SIZE, 1);
    make_image(disk_b, sizeof(disk_b), DISK_B_SIZE, 99);
}

static void teardown(void)
{
    unlink(disk_a);
    unlink(disk_b);
}

/* The image file's bytes; what each byte should be is expect(offset). */
static void check_image(const char *path, uint32_t size, uint8_t (*expect)(uint64_t off))
{
    static uint8_t buf[DISK_A_SIZE];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(read(fd, buf, sizeof(buf)), (ssize_t)size); /* and not grown */
    close(fd);
    for (uint32_t i = 0; i < size; i++)
        if (buf[i] != expect(i))
            ck_abort_msg("%s: byte %u (sector %u) is 0x%02x, expected 0x%02x", path, i, i / 512,
                         buf[i], expect(i));
}

/* Disk A after the virtio_blk guest: sector 16-23 written, 32-41 zero. */
static uint8_t expect_a_after(uint64_t off)
{
    uint64_t sector = off / 512;
    if (sector >= 16 && sector < 24)
        return written((uint32_t)(off - 16 * 512));
    if (sector >= 32 && sector < 42)
        return 0;
    return pattern(off, 1);
}

static uint8_t expect_a_untouched(uint64_t off)
{
    return pattern(off, 1);
}

static uint8_t expect_b_untouched(uint64_t off)
{
    return pattern(off, 99);
}

struct result {
    int status;
    char out[8192];
    char err[4096];
    long maxrss_kb; /* vmm-run's peak resident set */
};

/* Polls of up to POLL_MS each in a row without output before vmm-run counts
 * as hung. */
#define IDLE_POLLS_MAX 120
#define POLL_MS        1000

/* Run argv with stdin on /dev/null, capturing stdout and stderr. Bounded by
 * polls, not the clock: after IDLE_POLLS_MAX polls in a row with nothing to
 * read vmm-run is killed and the test fails; Check's timeout covers the
 * rest, and vmm-run dies with the test process (PR_SET_PDEATHSIG). */
static void run(struct result *res, char *const argv[])
{
    int out[2], err[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Die with the test process (a Check timeout kills it). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        dup2(null, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    memset(res, 0, sizeof(*res));
    size_t len[2] = {0, 0};
    char *dst[2] = {res->out, res->err};
    size_t cap[2] = {sizeof(res->out), sizeof(res->err)};
    struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
    unsigned idle = 0;
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        if (idle >= IDLE_POLLS_MAX) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            ck_abort_msg("vmm-run silent for %u polls, killed: %s", idle, res->out);
        }
        if (poll(p, 2, POLL_MS) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            ssize_t n = read(p[i].fd, dst[i] + len[i], cap[i] - 1 - len[i]);
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
            } else {
                len[i] += (size_t)n;
            }
        }
    }
    int st;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    res->maxrss_kb = ru.ru_maxrss;
}

START_TEST(launcher_disks)
{
    char ro[PATH_MAX + 16];
    snprintf(ro, sizeof(ro), "%s,ro", disk_b);
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_blk"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--disk",   disk_a,
                    "--disk",      ro,         NULL};
    run(&r, argv);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_blk ok"));
    ck_assert_str_eq(r.err, "");
    check_image(disk_a, DISK_A_SIZE, expect_a_after);
    check_image(disk_b, DISK_B_SIZE, expect_b_untouched);
}
END_TEST

START_TEST(launcher_disks_direct)
{
    /* The same guest with both disks opened O_DIRECT; options in either
     * order after the path. */
    char a[PATH_MAX + 16], b[PATH_MAX + 16];
    snprintf(a, sizeof(a), "%s,direct", disk_a);
    snprintf(b, sizeof(b), "%s,direct,ro", disk_b);
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_blk"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--disk",   a,
                    "--disk",      b,          NULL};
    run(&r, argv);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_blk ok"));
    check_image(disk_a, DISK_A_SIZE, expect_a_after);
    check_image(disk_b, DISK_B_SIZE, expect_b_untouched);
}
END_TEST

START_TEST(launcher_second_disk_must_be_read_only)
{
    /* Disk B writable: the guest sees no VIRTIO_BLK_F_RO and fails (code
     * 3), and its write to B was never attempted: B is unchanged. */
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_blk"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--disk",   disk_a,
                    "--disk",      disk_b,     NULL};
    run(&r, argv);
    ck_assert_msg(r.status == 3, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    check_image(disk_b, DISK_B_SIZE, expect_b_untouched);
}
END_TEST

START_TEST(launcher_hostile_guest)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_blk_hostile"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--disk",   disk_a,
                    NULL};
    run(&r, argv);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_blk_hostile ok"));
    /* Every write it tried was refused. */
    check_image(disk_a, DISK_A_SIZE, expect_a_untouched);
    /* Its requests (every head a flush through one shared indirect table of
     * 32768 descriptors among them) grew no host heap: vmm-run's peak RSS
     * stays within an idle guest's with the same disk plus the guest's whole
     * memory. */
    struct result idle;
    char *idle_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("hello"),
                         "--transport", "mmio",     "--mem",
                         "16M",         "--disk",   disk_a,
                         NULL};
    run(&idle, idle_argv);
    ck_assert_msg(idle.status == 0, "idle guest: status %d: %s", idle.status, idle.err);
    ck_assert_msg(r.maxrss_kb <= idle.maxrss_kb + (16 << 10),
                  "vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle", r.maxrss_kb,
                  idle.maxrss_kb);
}
END_TEST

START_TEST(launcher_bad_disk)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,
                    "--kernel",
                    (char *)harness_guest_path("virtio_blk"),
                    "--disk",
                    "/nonexistent/disk.img,ro",
                    NULL};
    run(&r, argv);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "cannot add disk '/nonexistent/disk.img'"));
    char *argv2[] = {VMM_RUN_PATH, "--kernel", (char *)harness_guest_path("virtio_blk"),
                     "--disk",     ",ro",      NULL};
    run(&r, argv2);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "--disk needs"));
}
END_TEST

/* The library API on both interrupt controllers: the same guest, then the
 * disks' counters. */
static void library_disks(enum vmm_irqchip irqchip)
{
    struct harness h;
    harness_init(&h, irqchip, 16);
    struct vmm_virtio_mmio *a, *b;
    struct vmm_virtio_blk_config ca =
        VMM_INIT(struct vmm_virtio_blk_config, .path = disk_a, .serial = "libvmm-disk0");
    struct vmm_virtio_blk_config cb =
        VMM_INIT(struct vmm_virtio_blk_config, .path = disk_b, .readonly = true);
    ck_assert_int_eq(vmm_vm_add_virtio_blk(h.vm, 0xd0000000, 5, &ca, &a), 0);
    ck_assert_int_eq(vmm_vm_add_virtio_blk(h.vm, 0xd0001000, 6, &cb, &b), 0);
    /* The window is taken now; a missing image fails before anything. */
    ck_assert_int_eq(vmm_vm_add_virtio_blk(h.vm, 0xd0001000, 7, &ca, NULL), -EEXIST);
    struct vmm_virtio_blk_config missing =
        VMM_INIT(struct vmm_virtio_blk_config, .path = "/nonexistent/disk.img");
    ck_assert_int_eq(vmm_vm_add_virtio_blk(h.vm, 0xd0002000, 7, &missing, NULL), -ENOENT);
    harness_load_guest(&h, "virtio_blk", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h.exit.reason), h.exit.status,
                  h.output);
    struct vmm_virtio_blk_stats sa = VMM_INIT(struct vmm_virtio_blk_stats),
                                sb = VMM_INIT(struct vmm_virtio_blk_stats);
    ck_assert_int_eq(vmm_virtio_blk_get_stats(vmm_virtio_mmio_transport(a), &sa), 0);
    ck_assert_int_eq(vmm_virtio_blk_get_stats(vmm_virtio_mmio_transport(b), &sb), 0);
    ck_assert_uint_eq(sa.capacity, DISK_A_SIZE / 512);
    ck_assert_uint_eq(sa.writes, 1);
    ck_assert_uint_eq(sa.bytes_written, 4096);
    ck_assert_uint_ge(sa.reads, 6);
    ck_assert_uint_eq(sa.flushes, 1);
    ck_assert_uint_eq(sa.discards, 1);
    ck_assert_uint_eq(sa.write_zeroes, 1);
    ck_assert_uint_eq(sa.get_ids, 1);
    ck_assert_uint_eq(sa.io_errors, 1); /* the read past the end */
    ck_assert_uint_eq(sb.io_errors, 1); /* the write to the read-only disk */
    ck_assert_uint_eq(sb.reads, 1);
    ck_assert_uint_eq(sb.writes, 0);
    harness_fini(&h);
    check_image(disk_a, DISK_A_SIZE, expect_a_after);
    check_image(disk_b, DISK_B_SIZE, expect_b_untouched);
}

START_TEST(library_split_irqchip)
{
    library_disks(VMM_IRQCHIP_SPLIT);
}
END_TEST

START_TEST(library_kernel_irqchip)
{
    library_disks(VMM_IRQCHIP_KERNEL);
}
END_TEST

static Suite *blk_suite(void)
{
    Suite *s = suite_create("virtio-blk-kvm");
    TCase *tc = tcase_create("launcher");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, launcher_disks);
    tcase_add_test(tc, launcher_disks_direct);
    tcase_add_test(tc, launcher_second_disk_must_be_read_only);
    tcase_add_test(tc, launcher_hostile_guest);
    tcase_add_test(tc, launcher_bad_disk);
    suite_add_tcase(s, tc);
    tc = tcase_create("library");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, library_split_irqchip);
    tcase_add_test(tc, library_kernel_irqchip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vmm_test_require_kvm();
    return vmm_test_run_suite(blk_suite());
}
