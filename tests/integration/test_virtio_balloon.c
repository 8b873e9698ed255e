/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon through KVM: vmm-run --balloon=stats (under its default
 * seccomp filter, kill) runs the hostile tests/guests/virtio_balloon_hostile.c
 * guest: page numbers past guest memory, arrays larger than the device looks
 * at, arrays outside guest memory or device-writable, statistics buffers of
 * odd sizes; every buffer must come back, vmm-run must end well with its
 * peak RSS within what the same launcher and device reach with a guest that
 * does nothing plus the guest's whole memory (16 MiB), and the guest's good
 * inflate afterwards must drop its page (it reads back as zeros).
 */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_compat.h"
#include "harness.h"

/* Polls of a second in a row without output before vmm-run counts as hung
 * (Check's timeout covers the rest). */
#define IDLE_POLLS_MAX 120

/* Run vmm-run with argv to its end: its output in text, its exit status
 * (128 + signal if killed) and peak resident set in KiB. */
static int run(char *const argv[], char *text, size_t size, long *maxrss_kb)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    text[0] = '\0';
    bool eof = false;
    for (unsigned idle = 0; idle < IDLE_POLLS_MAX && !eof;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 1000) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        ssize_t n = read(p[0], text + len, size - 1 - len);
        if (n <= 0)
            eof = true;
        else
            text[len += (size_t)n] = '\0';
    }
    close(p[0]);
    if (!eof)
        kill(pid, SIGKILL); /* silent too long: hung */
    int st;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
    *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(hostile_guest_is_contained)
{
    char text[8192];
    long base_kb, hostile_kb;
    char *idle_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("hello"),
                         "--transport", "mmio", /* the guest drives virtio-mmio */
                         "--mem",       "16M",      "--balloon=stats",
                         NULL};
    ck_assert_msg(run(idle_argv, text, sizeof(text), &base_kb) == 0, "idle guest: %s", text);
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_balloon_hostile"),
                    "--transport", "mmio", /* the guest drives virtio-mmio */
                    "--mem",       "16M",      "--balloon=stats",
                    NULL};
    int status = run(argv, text, sizeof(text), &hostile_kb);
    ck_assert_msg(status == 0, "vmm-run: status %d: %s", status, text);
    ck_assert_msg(strstr(text, "virtio_balloon_hostile ok"), "%s", text);
    printf("vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle\n", hostile_kb,
           base_kb);
    ck_assert_msg(hostile_kb <= base_kb + (16 << 10),
                  "vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle", hostile_kb,
                  base_kb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("virtio-balloon");
    TCase *tc = tcase_create("kvm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, hostile_guest_is_contained);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
