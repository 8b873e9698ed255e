/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-run: boot a guest program in a microVM from the command line, built only
 * from libvmm's public API. Exits with the guest's status (the byte written to
 * the exit port), 0 after a guest power-off or reset, and 1 with a one-line
 * message on stderr for anything that went wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <pthread.h>
#include <unistd.h>
#include <vmm/vmm.h>

#define DEFAULT_MEM   (128ull << 20)
#define MIN_MEM       (1ull << 20)
#define MAX_MEM       (1ull << 40)
#define MAX_VCPUS     255 /* xAPIC ids are 8 bits and the guest runtime uses xAPIC */
#define MMIO_HOLE     0xc0000000ull
#define HIGH_RAM_BASE 0x100000000ull

static const char usage[] =
    "Usage: vmm-run --kernel FILE [options]\n"
    "Boot a static ELF64 guest program in a microVM.\n"
    "\n"
    "  -k, --kernel FILE     guest image (static ELF64 x86-64 executable)\n"
    "  -m, --mem SIZE        guest memory, with an optional K, M or G suffix (default 128M)\n"
    "  -c, --vcpus N         number of vCPUs, 1-255 (default 1)\n"
    "      --console WHERE   stdio (default: output to stdout, input from stdin) or a file\n"
    "                        path the guest's serial output is written to\n"
    "      --irqchip MODEL   split (default) or kernel\n"
    "  -v, --verbose         log library messages (repeat for debug)\n"
    "  -h, --help            show this help and exit\n"
    "  -V, --version         show the version and exit\n"
    "\n"
    "Exit status: the guest's status byte (written to port 0xf4), 0 when the guest\n"
    "powers off or resets, 1 when vmm-run itself fails.\n";

static const char *prog = "vmm-run";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "%s: %s: %s\n", prog, vmm_log_level_name(level), msg);
}

/* "128M" -> bytes; 0 on malformed input. */
static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return 0;
    }
    if (shift && end[1] != '\0' && !((end[1] == 'B' || end[1] == 'b') && end[2] == '\0'))
        return 0;
    if (v > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)v << shift;
}

static struct termios saved_tty;
static bool tty_raw;

static void restore_tty(void)
{
    if (tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
}

/* Let keystrokes reach the guest one by one, but keep Ctrl-C for us. */
static void make_stdin_raw(void)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
        return;
    struct termios t = saved_tty;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(restore_tty);
    }
}

static void on_signal(void *opaque, int fd, uint32_t events)
{
    struct signalfd_siginfo si;
    (void)events;
    if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        vmm_vm_stop(opaque);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"mem", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'c'},
        {"console", required_argument, NULL, 'C'},
        {"irqchip", required_argument, NULL, 'I'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *kernel = NULL, *console = "stdio";
    uint64_t mem_size = DEFAULT_MEM;
    unsigned long vcpus = 1;
    int verbose = 0;
    struct vmm_vm_config cfg = {0};

    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:m:c:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            kernel = optarg;
            break;
        case 'm':
            mem_size = parse_size(optarg);
            if (mem_size == 0)
                fail("invalid memory size '%s' (use e.g. 128M or 1G)", optarg);
            break;
        case 'c': {
            char *end;
            errno = 0;
            vcpus = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-' || vcpus < 1 ||
                vcpus > MAX_VCPUS)
                fail("invalid vCPU count '%s' (1-%d)", optarg, MAX_VCPUS);
            break;
        }
        case 'C':
            console = optarg;
            break;
        case 'I':
            if (strcmp(optarg, "split") == 0)
                cfg.irqchip = VMM_IRQCHIP_SPLIT;
            else if (strcmp(optarg, "kernel") == 0)
                cfg.irqchip = VMM_IRQCHIP_KERNEL;
            else
                fail("invalid interrupt controller '%s' (split or kernel)", optarg);
            break;
        case 'v':
            verbose++;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("vmm-run (libvmm) %s\n", vmm_version_string());
            return 0;
        case ':':
            fail("option '%s' needs a value (see --help)", argv[optind - 1]);
        default:
            fail("unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        fail("unexpected argument '%s' (see --help)", argv[optind]);
    if (!kernel)
        fail("no guest image given: use --kernel FILE (see --help)");
    if (mem_size < MIN_MEM || mem_size > MAX_MEM || mem_size % 4096)
        fail("invalid memory size: %llu bytes (a multiple of 4K from 1M to 1T)",
             (unsigned long long)mem_size);

    if (verbose)
        vmm_log_set_handler(log_to_stderr, NULL, verbose > 1 ? VMM_LOG_DEBUG : VMM_LOG_INFO);
    else
        vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_ERROR);

    int out_fd = STDOUT_FILENO, in_fd = -1;
    if (strcmp(console, "stdio") == 0) {
        in_fd = STDIN_FILENO;
    } else {
        out_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0)
            fail("cannot open console file '%s': %s", console, strerror(errno));
    }

    struct vmm_vm *vm;
    int r = vmm_vm_create(&cfg, &vm);
    if (r < 0)
        fail("cannot create the VM: %s", vmm_strerror(r));

    /* RAM below the 32-bit MMIO hole, the rest above 4 GiB. */
    uint64_t low = mem_size < MMIO_HOLE ? mem_size : MMIO_HOLE;
    struct vmm_region_config ram = {.gpa = 0, .size = low};
    r = vmm_vm_add_memory(vm, &ram);
    if (r >= 0 && mem_size > low) {
        ram = (struct vmm_region_config){.gpa = HIGH_RAM_BASE, .size = mem_size - low};
        r = vmm_vm_add_memory(vm, &ram);
    }
    if (r < 0)
        fail("cannot set up %llu MiB of guest memory: %s", (unsigned long long)(mem_size >> 20),
             vmm_strerror(r));

    struct vmm_load_result img;
    r = vmm_elf_load_file(vmm_vm_memory(vm), kernel, NULL, &img);
    if (r < 0)
        fail("cannot load '%s': %s", kernel, img.error[0] ? img.error : vmm_strerror(r));

    struct vmm_uart_config uart = {.out_fd = out_fd, .in_fd = in_fd};
    if ((r = vmm_vm_add_uart(vm, VMM_COM1_PORT, VMM_COM1_IRQ, &uart, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) < 0 || (r = vmm_vm_add_i8042(vm)) < 0)
        fail("cannot add the platform devices: %s", vmm_strerror(r));

    for (unsigned i = 0; i < vcpus; i++) {
        struct vmm_vcpu *vcpu;
        r = vmm_vcpu_create(vm, i, &vcpu);
        if (r < 0)
            fail("cannot create vCPU %u: %s", i, vmm_strerror(r));
    }
    for (unsigned i = 0; i < vcpus; i++) {
        struct vmm_x86_boot_state boot = {.entry = img.entry, .arg0 = i, .arg1 = vcpus};
        r = vmm_vcpu_set_boot_state(vmm_vm_vcpu(vm, i), &boot);
        if (r < 0)
            fail("cannot set up vCPU %u: %s", i, vmm_strerror(r));
    }

    /* SIGINT/SIGTERM stop the VM through the event loop (vCPU threads inherit
     * the blocked mask, so the signals only arrive here). */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    int sfd = signalfd(-1, &stop_set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0 || vmm_event_loop_add(vmm_vm_event_loop(vm), sfd, EPOLLIN, on_signal, vm) < 0)
        fail("cannot watch for SIGINT/SIGTERM");
    /* A reader that goes away must not kill us through SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    if (in_fd >= 0)
        make_stdin_raw();
    struct vmm_exit ex;
    r = vmm_vm_run(vm, &ex);
    restore_tty();
    if (r < 0)
        fail("cannot run the VM: %s", vmm_strerror(r));

    int status;
    switch (ex.reason) {
    case VMM_EXIT_GUEST_EXIT:
        status = ex.status & 0xff;
        break;
    case VMM_EXIT_POWEROFF:
    case VMM_EXIT_RESET:
        status = 0;
        break;
    case VMM_EXIT_STOPPED:
        fprintf(stderr, "%s: stopped by a signal\n", prog);
        status = 1;
        break;
    default:
        fprintf(stderr, "%s: guest failed: %s: %s (vCPU %u, rip 0x%llx)\n", prog,
                vmm_exit_reason_name(ex.reason), ex.detail, ex.vcpu, (unsigned long long)ex.rip);
        status = 1;
        break;
    }
    vmm_vm_destroy(vm);
    close(sfd);
    if (out_fd != STDOUT_FILENO)
        close(out_fd);
    return status;
}
