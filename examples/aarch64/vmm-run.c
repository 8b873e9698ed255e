/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-run on arm64: boots an arm64 Linux Image (or a freestanding test guest
 * with an Image header) on a GICv3 machine with a PL011, an MMIO exit
 * device and virtio-mmio devices (vmm/arm64.h), through the public API
 * only. The options are x86 vmm-run's where they mean something on arm64.
 * Exit status: the guest's exit-device status, 0 after a PSCI power-off or
 * reset, 1 when the guest failed, 2 for bad options.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <vmm/arm64.h>
#include <vmm/seccomp.h>
#include <vmm/vmm.h>

#define DEFAULT_MEM (256ull << 20)
#define MAX_DISKS   8

static const char *prog = "vmm-run";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static const char usage_text[] =
    "usage: vmm-run --kernel IMAGE [options]   (arm64)\n"
    "  -k, --kernel IMAGE    an arm64 Linux Image (not the gzip'ed vmlinuz) or a test guest\n"
    "      --initrd FILE     initial ramdisk\n"
    "      --cmdline STRING  kernel command line\n"
    "  -m, --mem SIZE        guest memory (default 256M; K, M, G suffixes)\n"
    "  -c, --vcpus N         vCPUs (1-64, default 1)\n"
    "      --console WHERE   stdio (default: the PL011 on stdout, input from stdin), virtio\n"
    "                        (a virtio console on stdin/stdout) or a file for the PL011's output\n"
    "      --rng             add a virtio entropy device\n"
    "      --disk PATH[,ro]  add a virtio-blk disk (up to 8)\n"
    "                        (virtio devices are virtio-mmio nodes of the FDT: it has no PCI\n"
    "                        host bridge, so there is no --transport, unlike on x86_64)\n"
    "      --seccomp MODE    kill (default): a system call outside the allowlist of its\n"
    "                        thread (vCPU, I/O or main) ends vmm-run, naming the call;\n"
    "                        log: allow it and let the kernel log it; off: no filters\n"
    "  -v, --verbose         log the library's messages and say why the run ended\n"
    "  -h, --help            this help\n";

#define SECCOMP_OFF 0

struct options {
    const char *kernel, *initrd, *cmdline, *console;
    uint64_t mem;
    unsigned vcpus;
    bool rng, verbose;
    int seccomp; /* SECCOMP_OFF, or 1 + enum vmm_seccomp_action */
    unsigned nr_disks;
    struct vmm_virtio_blk_config disks[MAX_DISKS];
};

static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 20; /* plain numbers are MiB, as on x86 */
    if (errno || end == s)
        return 0;
    if (*end == 'k' || *end == 'K')
        shift = 10;
    else if (*end == 'g' || *end == 'G')
        shift = 30;
    else if (*end == 'm' || *end == 'M' || *end == '\0')
        shift = 20;
    else
        return 0;
    if (*end && end[1])
        return 0;
    if (v > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)v << shift;
}

static void parse(int argc, char **argv, struct options *o)
{
    enum { OPT_INITRD = 256, OPT_CMDLINE, OPT_CONSOLE, OPT_RNG, OPT_DISK, OPT_SECCOMP };
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"mem", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'c'},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"rng", no_argument, NULL, OPT_RNG},
        {"disk", required_argument, NULL, OPT_DISK},
        {"seccomp", required_argument, NULL, OPT_SECCOMP},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){
        .console = "stdio", .mem = DEFAULT_MEM, .vcpus = 1, .seccomp = 1 + VMM_SECCOMP_TRAP};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:m:c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->kernel = optarg;
            break;
        case OPT_INITRD:
            o->initrd = optarg;
            break;
        case OPT_CMDLINE:
            o->cmdline = optarg;
            break;
        case 'm':
            o->mem = parse_size(optarg);
            if (o->mem < (16ull << 20) || o->mem % (2ull << 20))
                fail("invalid memory size '%s' (a multiple of 2 MiB, at least 16M)", optarg);
            break;
        case 'c': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || n < 1 || n > VMM_ARM64_MAX_VCPUS)
                fail("invalid vCPU count '%s' (1-%u)", optarg, VMM_ARM64_MAX_VCPUS);
            o->vcpus = (unsigned)n;
            break;
        }
        case OPT_CONSOLE:
            if (!*optarg)
                fail("--console needs stdio, virtio or a file name");
            o->console = optarg;
            break;
        case OPT_RNG:
            o->rng = true;
            break;
        case OPT_DISK: {
            if (o->nr_disks == MAX_DISKS)
                fail("at most %d disks", MAX_DISKS);
            struct vmm_virtio_blk_config *d = &o->disks[o->nr_disks++];
            *d = VMM_INIT(struct vmm_virtio_blk_config);
            char *comma = strchr(optarg, ',');
            if (comma) {
                if (strcmp(comma, ",ro") != 0 && strcmp(comma, ",rw") != 0)
                    fail("--disk: unknown option '%s' (ro or rw)", comma + 1);
                d->readonly = comma[1] == 'r' && comma[2] == 'o';
                *comma = '\0';
            }
            if (!*optarg)
                fail("--disk needs a file or block device (PATH[,ro])");
            d->path = optarg;
            break;
        }
        case OPT_SECCOMP:
            if (strcmp(optarg, "kill") == 0)
                o->seccomp = 1 + VMM_SECCOMP_TRAP; /* reported by on_sigsys, then exit */
            else if (strcmp(optarg, "log") == 0)
                o->seccomp = 1 + VMM_SECCOMP_LOG;
            else if (strcmp(optarg, "off") == 0)
                o->seccomp = SECCOMP_OFF;
            else
                fail("invalid --seccomp mode '%s' (kill, log or off)", optarg);
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case ':':
            fail("%s needs an argument", argv[optind - 1]);
        default:
            fail("unknown option '%s' (--help lists them)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        fail("unexpected argument '%s'", argv[optind]);
    if (!o->kernel)
        fail("no --kernel given (--help lists the options)");
}

/* Map a whole file read-only; fails the run with one line. */
static void *map_file(const char *what, const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        fail("cannot open %s '%s': %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        fail("%s '%s' is not a non-empty regular file", what, path);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        fail("cannot map %s '%s': %s", what, path, strerror(errno));
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

static struct termios saved_tty;
static bool tty_raw;

static void restore_tty(void)
{
    if (tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
}

/* Ctrl-C and the like end the run: give the terminal back first. */
static void on_stop_signal(int sig)
{
    restore_tty();
    signal(sig, SIG_DFL);
    raise(sig);
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
    t.c_cc[VSUSP] = _POSIX_VDISABLE; /* Ctrl-Z would stop us with the terminal raw */
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(restore_tty);
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
}

/* --seccomp kill: a call outside the list traps here. Only async-signal-safe
 * calls, and only what every thread's list allows (write, exit_group). */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    char msg[160], num[12];
    int n = 0, nr = si->si_syscall;
    do {
        num[n++] = (char)('0' + nr % 10);
        nr /= 10;
    } while (nr > 0 && n < (int)sizeof(num));
    size_t len = 0;
    const char *a = "vmm-run: seccomp: system call ";
    const char *b =
        " is not allowed in this thread: stopping (--seccomp off runs without filters)\n";
    for (const char *p = a; *p; p++)
        msg[len++] = *p;
    while (n > 0)
        msg[len++] = num[--n];
    for (const char *p = b; *p && len < sizeof(msg); p++)
        msg[len++] = *p;
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;
    _exit(128 + SIGSYS);
}

/* Filters for the run's vCPU and I/O threads, and MAIN's for this thread,
 * which then only runs the VM and tears it down. */
static void install_seccomp(struct vmm_vm *vm, const struct options *o)
{
    if (o->seccomp == SECCOMP_OFF)
        return;
    struct vmm_seccomp_config cfg =
        VMM_INIT(struct vmm_seccomp_config, .action = (enum vmm_seccomp_action)(o->seccomp - 1));
    int r = vmm_vm_set_seccomp(vm, &cfg);
    if (r < 0)
        fail("cannot set up seccomp filters: %s", vmm_strerror(r));
    if (cfg.action == VMM_SECCOMP_TRAP) {
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) < 0)
            fail("cannot catch SIGSYS: %s", strerror(errno));
    }
    if ((r = vmm_seccomp_install(VMM_SECCOMP_MAIN, &cfg)) < 0)
        fail("cannot install the seccomp filter: %s", vmm_strerror(r));
}

static void log_handler(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "%s: libvmm: %s: %s\n", prog, vmm_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    struct options o;
    parse(argc, argv, &o);
    vmm_log_set_handler(log_handler, NULL, o.verbose ? VMM_LOG_DEBUG : VMM_LOG_WARN);

    struct vmm_vm *vm;
    int r = vmm_vm_create(&VMM_INIT(struct vmm_vm_config, .irqchip = VMM_IRQCHIP_KERNEL), &vm);
    if (r < 0)
        fail("cannot create the VM: %s", vmm_strerror(r));
    struct vmm_region_config ram =
        VMM_INIT(struct vmm_region_config, .gpa = VMM_ARM64_RAM_BASE, .len = o.mem);
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0)
        fail("cannot set up %llu MiB of guest memory: %s", (unsigned long long)(o.mem >> 20),
             vmm_strerror(r));

    for (unsigned i = 0; i < o.vcpus; i++) {
        struct vmm_vcpu *vcpu;
        if ((r = vmm_vcpu_create(vm, i, &vcpu)) < 0)
            fail("cannot create vCPU %u: %s", i, vmm_strerror(r));
    }

    struct vmm_arm64_machine m = VMM_INIT(struct vmm_arm64_machine, .nr_vcpus = o.vcpus,
                                          .mem = vmm_vm_memory(vm), .uart = true);
    int out_fd = STDOUT_FILENO, in_fd = -1;
    bool virtio_console = strcmp(o.console, "virtio") == 0;
    if (!virtio_console && strcmp(o.console, "stdio") != 0) {
        out_fd = open(o.console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0)
            fail("cannot open console file '%s': %s", o.console, strerror(errno));
    } else if (!virtio_console) {
        in_fd = STDIN_FILENO; /* stdio: stdin goes to the PL011 */
    }
    struct vmm_pl011_config uart =
        VMM_INIT(struct vmm_pl011_config, .out_fd = out_fd, .in_fd = in_fd);
    if ((r = vmm_vm_add_pl011(vm, VMM_ARM64_UART_BASE, VMM_ARM64_UART_SPI, &uart, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device_mmio(vm, VMM_ARM64_EXIT_BASE)) < 0)
        fail("cannot add the platform devices: %s", vmm_strerror(r));

    /* virtio-mmio devices, described through an x86-style machine and
     * copied into the arm64 one (same windows, SPIs as lines). */
    struct vmm_machine vm_desc = VMM_INIT(struct vmm_machine, .mem = vmm_vm_memory(vm));
    struct vmm_virtio_mmio *dev;
#define NEXT_BASE (VMM_ARM64_VIRTIO_MMIO_BASE + vm_desc.nr_virtio * VMM_ARM64_VIRTIO_MMIO_SIZE)
#define NEXT_SPI  (VMM_ARM64_VIRTIO_SPI_BASE + vm_desc.nr_virtio)
    if (virtio_console) {
        struct vmm_virtio_console_config con = VMM_INIT(
            struct vmm_virtio_console_config, .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO);
        if ((r = vmm_vm_add_virtio_console(vm, NEXT_BASE, NEXT_SPI, &con, &dev)) < 0 ||
            (r = vmm_virtio_mmio_add_to_machine(dev, &vm_desc)) < 0)
            fail("cannot add the virtio console: %s", vmm_strerror(r));
    }
    if (o.rng) {
        if ((r = vmm_vm_add_virtio_rng(vm, NEXT_BASE, NEXT_SPI, NULL, &dev)) < 0 ||
            (r = vmm_virtio_mmio_add_to_machine(dev, &vm_desc)) < 0)
            fail("cannot add the virtio entropy device: %s", vmm_strerror(r));
    }
    for (unsigned i = 0; i < o.nr_disks; i++) {
        if (NEXT_SPI >= VMM_IOAPIC_PINS)
            fail("too many virtio devices (SPIs %u-%u)", VMM_ARM64_VIRTIO_SPI_BASE,
                 VMM_IOAPIC_PINS - 1);
        if ((r = vmm_vm_add_virtio_blk(vm, NEXT_BASE, NEXT_SPI, &o.disks[i], &dev)) < 0 ||
            (r = vmm_virtio_mmio_add_to_machine(dev, &vm_desc)) < 0)
            fail("cannot add disk '%s': %s", o.disks[i].path, vmm_strerror(r));
    }
    m.nr_virtio = vm_desc.nr_virtio;
    memcpy(m.virtio, vm_desc.virtio, sizeof(m.virtio));

    size_t klen, ilen = 0;
    void *kernel = map_file("kernel", o.kernel, &klen);
    void *initrd = o.initrd ? map_file("initrd", o.initrd, &ilen) : NULL;
    struct vmm_arm64_linux boot = VMM_INIT(struct vmm_arm64_linux);
    char why[256] = "";
    r = vmm_arm64_linux_load(vmm_vm_memory(vm), &m, kernel, klen, initrd, ilen, o.cmdline, &boot,
                             why, sizeof(why));
    if (r < 0)
        fail("cannot boot '%s': %s", o.kernel, why[0] ? why : vmm_strerror(r));
    munmap(kernel, klen);
    if (initrd)
        munmap(initrd, ilen);
    if ((r = vmm_vcpu_set_arm64_entry(vmm_vm_vcpu(vm, 0), boot.kernel, boot.dtb)) < 0)
        fail("cannot set the entry state: %s", vmm_strerror(r));

    if (in_fd >= 0 || virtio_console)
        make_stdin_raw();
    install_seccomp(vm, &o);
    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    if ((r = vmm_vm_run(vm, &ex)) < 0)
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
    default:
        fprintf(stderr, "%s: guest failed: %s: %s (vCPU %u, pc 0x%llx)\n", prog,
                vmm_exit_reason_name(ex.reason), ex.detail, ex.vcpu, (unsigned long long)ex.rip);
        status = 1;
        break;
    }
    if (o.verbose)
        fprintf(stderr, "%s: %s (%s)\n", prog, vmm_exit_reason_name(ex.reason), ex.detail);
    vmm_vm_destroy(vm);
    if (out_fd != STDOUT_FILENO)
        close(out_fd);
    return status;
}
