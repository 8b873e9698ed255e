/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-mmio devices through KVM: test guests with the freestanding driver
 * (tests/guests/virtio_drv.c) run by vmm-run with --rng and --console virtio
 * (notifications through ioeventfds, interrupts through irqfds), and the
 * same devices built through the library API on both interrupt controllers.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

struct result {
    int status; /* exit status, or 128 + signal */
    char out[8192];
    size_t out_len;
    char err[4096];
    long maxrss_kb; /* vmm-run's peak resident set */
};

/* Run argv with stdin from a pipe fed `input` (after the guest has said
 * `after` on stdout, when after is set) or from /dev/null (input NULL),
 * capturing stdout and stderr through pipes. Bounded by polls, not the
 * clock: after IDLE_POLLS_MAX polls in a row with nothing to read vmm-run is
 * killed and the test fails; Check's timeout covers the rest, and vmm-run
 * dies with the test process (PR_SET_PDEATHSIG). */
/* Polls of up to POLL_MS each in a row without output before vmm-run counts
 * as hung. */
#define IDLE_POLLS_MAX 120
#define POLL_MS        1000

static void run_with_input(struct result *res, char *const argv[], const char *input,
                           const char *after)
{
    int in[2], out[2], err[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Die with the test process (a Check timeout kills it). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        /* No input: stdin is /dev/null, which epoll cannot watch. */
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        dup2(input ? in[0] : null, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    signal(SIGPIPE, SIG_IGN);
    memset(res, 0, sizeof(*res));
    size_t err_len = 0;
    bool sent = false, out_open = true, err_open = true;
    unsigned idle = 0;
    if (input && !after) {
        ck_assert_int_eq(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
        sent = true;
    }
    while (out_open || err_open) {
        if (idle >= IDLE_POLLS_MAX) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            ck_abort_msg("vmm-run silent for %u polls, killed: %s", idle, res->out);
        }
        struct pollfd p[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                              {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        if (poll(p, 2, POLL_MS) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if (p[0].revents) {
            ssize_t n = read(out[0], res->out + res->out_len, sizeof(res->out) - 1 - res->out_len);
            if (n <= 0)
                out_open = false;
            else
                res->out_len += (size_t)n;
            res->out[res->out_len] = '\0';
        }
        if (p[1].revents) {
            ssize_t n = read(err[0], res->err + err_len, sizeof(res->err) - 1 - err_len);
            if (n <= 0)
                err_open = false;
            else
                err_len += (size_t)n;
            res->err[err_len] = '\0';
        }
        if (input && !sent && strstr(res->out, after)) {
            ck_assert_int_eq(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
            sent = true;
        }
    }
    close(in[1]);
    close(out[0]);
    close(err[0]);
    int st;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    res->maxrss_kb = ru.ru_maxrss;
}

START_TEST(launcher_rng)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_rng"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--rng",    NULL};
    run_with_input(&r, argv, NULL, NULL);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_rng ok"));
    ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(launcher_rng_kernel_irqchip)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_rng"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--rng",    "--irqchip",
                    "kernel",      NULL};
    run_with_input(&r, argv, NULL, NULL);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_rng ok"));
}
END_TEST

START_TEST(launcher_no_rng_device)
{
    /* Without --rng the guest finds no device and says so. */
    struct result r;
    char *argv[] = {VMM_RUN_PATH, "--kernel", (char *)harness_guest_path("virtio_rng"),
                    "--mem",      "16M",      NULL};
    run_with_input(&r, argv, NULL, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.out, "no entropy device"));
}
END_TEST

START_TEST(launcher_console_round_trip)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel",  (char *)harness_guest_path("virtio_console"),
                    "--transport", "mmio",      "--mem",
                    "16M",         "--console", "virtio",
                    "--rng",       NULL};
    /* The input is sent once the guest has spoken, so it cannot go to the
     * UART or be read before the guest posts buffers (either would also
     * work, but this is the interactive case). */
    run_with_input(&r, argv, "ping from the host\n", "hello from the guest");
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "virtio-console: hello from the guest\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "echo: ping from the host\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_console ok")); /* the serial port's line */
}
END_TEST

START_TEST(launcher_console_input_first)
{
    /* Input already waiting at start-up is kept until the guest posts
     * receive buffers. */
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_console"),
                    "--transport", "mmio",     "--console",
                    "virtio",      NULL};
    run_with_input(&r, argv, "early\n", NULL);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "echo: early\n"));
}
END_TEST

START_TEST(launcher_hostile_guest)
{
    struct result r;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("virtio_hostile"),
                    "--transport", "mmio",     "--mem",
                    "16M",         "--rng",    "--console",
                    "virtio",      NULL};
    run_with_input(&r, argv, NULL, NULL);
    ck_assert_msg(r.status == 0, "status %d, out: %s, err: %s", r.status, r.out, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "hostile: console still works\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "hostile: rng still works\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "hostile: console after a storm\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "hostile: console after a reset\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "virtio_hostile ok"));
    /* Its requests grew no host heap: vmm-run's peak RSS stays within an
     * idle guest's with the same devices plus the guest's whole memory. */
    struct result idle;
    char *idle_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("hello"),
                         "--transport", "mmio",     "--mem",
                         "16M",         "--rng",    "--console",
                         "virtio",      NULL};
    run_with_input(&idle, idle_argv, NULL, NULL);
    ck_assert_msg(idle.status == 0, "idle guest: status %d: %s", idle.status, idle.err);
    ck_assert_msg(r.maxrss_kb <= idle.maxrss_kb + (16 << 10),
                  "vmm-run's peak RSS: %ld KiB with the hostile guest, %ld KiB idle", r.maxrss_kb,
                  idle.maxrss_kb);
}
END_TEST

/* The library API on a VM: a console whose output goes to a pipe the test
 * reads, and an rng; the machine description and command-line fragment. */
static void library_round_trip(enum vmm_irqchip irqchip)
{
    struct harness h;
    harness_init(&h, irqchip, 16);
    int cin[2], cout[2];
    ck_assert_int_eq(pipe2(cin, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(cout, O_CLOEXEC | O_NONBLOCK), 0);
    struct vmm_machine m = VMM_INIT(struct vmm_machine);
    struct vmm_virtio_mmio *dev;
    struct vmm_virtio_console_config con =
        VMM_INIT(struct vmm_virtio_console_config, .in_fd = cin[0], .out_fd = cout[1]);
    struct vmm_virtio_mmio *console;
    ck_assert_int_eq(vmm_vm_add_virtio_console(h.vm, 0xd0000000, 5, &con, &console), 0);
    ck_assert_int_eq(vmm_virtio_mmio_add_to_machine(console, &m), 0);
    ck_assert_int_eq(vmm_vm_add_virtio_rng(h.vm, 0xd0001000, 6, NULL, &dev), 0);
    ck_assert_int_eq(vmm_virtio_mmio_add_to_machine(dev, &m), 0);
    /* The window is taken now. */
    ck_assert_int_eq(vmm_vm_add_virtio_rng(h.vm, 0xd0001000, 7, NULL, NULL), -EEXIST);
    ck_assert_int_eq(vmm_vm_add_virtio_rng(h.vm, 0xd0001800, 7, NULL, NULL), -EINVAL);
    char cmdline[128];
    ck_assert_int_gt(vmm_virtio_mmio_cmdline(&m, cmdline, sizeof(cmdline)), 0);
    ck_assert_str_eq(cmdline,
                     "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
    ck_assert_int_eq(write(cin[1], "lib\n", 4), 4);
    harness_load_guest(&h, "virtio_console", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h.exit.reason), h.exit.status,
                  h.output);
    char out[256] = {0};
    ssize_t n = read(cout[0], out, sizeof(out) - 1);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(out, "hello from the guest\n"));
    ck_assert_ptr_nonnull(strstr(out, "echo: lib\n"));
    /* Every notification came through the ioeventfd, none as an exit to
     * the bus; the guest took interrupts through the irqfd. */
    struct vmm_virtio_mmio_stats st = VMM_INIT(struct vmm_virtio_mmio_stats);
    vmm_virtio_mmio_get_stats(console, &st);
    ck_assert_uint_eq(st.notify_exits, 0);
    ck_assert_uint_ge(st.notifies, 3);
    ck_assert_uint_ge(st.interrupts, 2);
    ck_assert_uint_eq(st.status, 0xf); /* ACK | DRIVER | FEATURES_OK | DRIVER_OK */
    harness_fini(&h);
    close(cin[0]);
    close(cin[1]);
    close(cout[0]);
    close(cout[1]);
}

START_TEST(library_split_irqchip)
{
    library_round_trip(VMM_IRQCHIP_SPLIT);
}
END_TEST

START_TEST(library_kernel_irqchip)
{
    library_round_trip(VMM_IRQCHIP_KERNEL);
}
END_TEST

/* Bus devices that record the writes reaching userspace. */
struct recorder {
    unsigned writes;
    uint64_t last_offset, last_value;
};

static void rec_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct recorder *r = opaque;
    uint64_t v = 0;
    memcpy(&v, data, len);
    r->writes++;
    r->last_offset = offset;
    r->last_value = v;
}

static const struct vmm_bus_ops rec_ops = {.size = sizeof(struct vmm_bus_ops), .write = rec_write};

static uint64_t eventfd_count(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return 0;
    return v;
}

START_TEST(ioeventfd_api)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    int mfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), pfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert(mfd >= 0 && pfd >= 0);
    const uint64_t maddr = 0xd0000050;
    const uint16_t port = 0x510;

    /* Arguments are checked before KVM sees them. */
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, maddr, 3, 0, 0), -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, -1, maddr, 4, 0, 0), -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, maddr, 4, 0, 1u << 7), -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, maddr, 1, 0x100, VMM_IOEVENTFD_DATAMATCH),
                     -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, pfd, 0xffff, 2, 0, VMM_IOEVENTFD_PIO), -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, pfd, port, 0, 0, VMM_IOEVENTFD_PIO), -EINVAL);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, UINT64_MAX - 2, 4, 0, 0), -EINVAL);

    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, maddr, 4, 7, VMM_IOEVENTFD_DATAMATCH), 0);
    ck_assert_int_eq(vmm_vm_ioeventfd(h.vm, mfd, maddr, 4, 7, VMM_IOEVENTFD_DATAMATCH), -EEXIST);
    ck_assert_int_eq(
        vmm_vm_ioeventfd(h.vm, pfd, port, 1, 0x42, VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH), 0);
    struct recorder mrec = {0}, prec = {0};
    ck_assert_int_eq(vmm_bus_register(vmm_vm_mmio_bus(h.vm), 0xd0000000, 0x1000, &rec_ops, &mrec),
                     0);
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), port, 1, &rec_ops, &prec), 0);

    static const uint8_t code[] = {
        0xb8, 0x07, 0x00, 0x00, 0x00,                         /* mov eax, 7 */
        0xa3, 0x50, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, /* mov [0xd0000050], eax */
        0xb8, 0x08, 0x00, 0x00, 0x00,                         /* mov eax, 8 */
        0xa3, 0x50, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, /* mov [0xd0000050], eax */
        0x66, 0xba, 0x10, 0x05,                               /* mov dx, 0x510 */
        0xb0, 0x42, 0xee,                                     /* out dx, 0x42 */
        0xb0, 0x43, 0xee,                                     /* out dx, 0x43 */
        0xb0, 0x00, 0xe6, 0xf4, 0xf4,                         /* exit 0 */
    };
    harness_load_raw(&h, code, sizeof(code), 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 0);
    /* The matching writes went to the eventfds, the others to the buses. */
    ck_assert_uint_eq(eventfd_count(mfd), 1);
    ck_assert_uint_eq(eventfd_count(pfd), 1);
    ck_assert_uint_eq(mrec.writes, 1);
    ck_assert_uint_eq(mrec.last_offset, 0x50);
    ck_assert_uint_eq(mrec.last_value, 8);
    ck_assert_uint_eq(prec.writes, 1);
    ck_assert_uint_eq(prec.last_value, 0x43);

    ck_assert_int_eq(vmm_vm_ioeventfd_remove(h.vm, mfd, maddr, 4, 7, VMM_IOEVENTFD_DATAMATCH), 0);
    ck_assert_int_lt(vmm_vm_ioeventfd_remove(h.vm, mfd, maddr, 4, 7, VMM_IOEVENTFD_DATAMATCH), 0);
    ck_assert_int_eq(vmm_vm_ioeventfd_remove(h.vm, pfd, port, 1, 0x42,
                                             VMM_IOEVENTFD_PIO | VMM_IOEVENTFD_DATAMATCH),
                     0);
    ck_assert_int_eq(vmm_bus_unregister(vmm_vm_mmio_bus(h.vm), 0xd0000000), 0);
    ck_assert_int_eq(vmm_bus_unregister(vmm_vm_pio_bus(h.vm), port), 0);
    harness_fini(&h);
    close(mfd);
    close(pfd);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("virtio");
    TCase *tc = tcase_create("kvm");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, launcher_rng);
    tcase_add_test(tc, launcher_rng_kernel_irqchip);
    tcase_add_test(tc, launcher_no_rng_device);
    tcase_add_test(tc, launcher_console_round_trip);
    tcase_add_test(tc, launcher_console_input_first);
    tcase_add_test(tc, launcher_hostile_guest);
    tcase_add_test(tc, library_split_irqchip);
    tcase_add_test(tc, library_kernel_irqchip);
    tcase_add_test(tc, ioeventfd_api);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
