/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-run: boot a guest program in a microVM from the command line, built only
 * from libvmm's public API. Exits with the guest's status (the byte written to
 * the exit port), 0 after a guest power-off or reset, and 1 with a one-line
 * message on stderr for anything that went wrong.
 */
#define _GNU_SOURCE /* asprintf, strsignal */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>
#include <vmm/vmm.h>
#include <json-c/json.h>

#define DEFAULT_MEM   (128ull << 20)
#define MIN_MEM       (1ull << 20)
#define MAX_MEM       (1ull << 40)
#define MAX_VCPUS     255 /* xAPIC ids are 8 bits and the guest runtime uses xAPIC */
#define MMIO_HOLE     0xc0000000ull
#define HIGH_RAM_BASE 0x100000000ull
#define MAX_DISKS     8 /* --disk */
#define MAX_NETS      4 /* --net */
#define MAX_VFIO      4 /* --vfio */
#define VMGENID_GSI   3 /* the VM generation ID's GED line */

#define VMM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char usage[] =
    "Usage: vmm-run --kernel FILE [options]\n"
    "       vmm-run --restore DIR [--disk ...] [--net tap=NAME ...] [--vsock ...] [options]\n"
    "Boot a Linux kernel or a static ELF64 guest program in a microVM.\n"
    "\n"
    "  -k, --kernel FILE     guest image: a Linux bzImage, an ELF vmlinux (booted through\n"
    "                        PVH when it has the PVH note), or a static ELF64 program\n"
    "      --initrd FILE     initial ramdisk for a Linux kernel\n"
    "      --cmdline STRING  kernel command line for a Linux kernel\n"
    "      --boot PROTOCOL   auto (default), linux (64-bit boot protocol), pvh, or\n"
    "                        program (an ELF program entered in long mode)\n"
    "  -m, --mem SIZE        guest memory, with an optional K, M or G suffix (default 128M)\n"
    "      --thp             back guest memory with transparent huge pages (MADV_HUGEPAGE;\n"
    "                        default: MADV_NOHUGEPAGE, each page only as the guest touches it)\n"
    "      --mem-backing KIND  anon (default: private anonymous memory) or memfd (a shared\n"
    "                        memfd; pages the balloon takes back are punched out of it)\n"
    "      --mem-merge       let KSM merge identical guest pages (MADV_MERGEABLE)\n"
    "  -c, --vcpus N         number of vCPUs, 1-255 (default 1)\n"
    "      --console WHERE   stdio (default: output to stdout, input from stdin) or a file\n"
    "                        path the guest's serial output is written to, or virtio:\n"
    "                        a virtio console on stdin/stdout (the serial port keeps\n"
    "                        its output on stdout)\n"
    "      --rng             add a virtio entropy device (fed from getrandom)\n"
    "      --disk PATH[,ro|,rw][,direct]  add a virtio-blk disk backed by a file or block\n"
    "                        device; ,ro: read-only; ,direct: O_DIRECT (repeatable, up to 8)\n"
    "      --transport KIND  how virtio devices appear: pci (default: virtio-pci with\n"
    "                        MSI-X on a PCI root complex described by ACPI) or mmio\n"
    "                        (virtio-mmio, each device on an interrupt line)\n"
    "      --net tap=NAME[,mac=MAC][,mtu=N][,queues=N][,vhost=on]  add a virtio-net device\n"
    "                        on tap NAME (an existing one, or a new one with CAP_NET_ADMIN);\n"
    "                        queues=N gives N queue pairs (a multiqueue tap), vhost=on the\n"
    "                        kernel's vhost-net data plane (/dev/vhost-net); repeatable\n"
    "      --balloon[=OPTS]  add a virtio balloon; OPTS, comma-separated: target=SIZE\n"
    "                        (what the guest gives back at start, K, M or G), stats\n"
    "                        (statistics queue), reporting (free page reporting),\n"
    "                        deflate-on-oom, hinting (offer free page hinting: the\n"
    "                        device takes hints for commands the library API starts)\n"
    "      --vsock cid=N,path=PATH  add a virtio-vsock device for guest CID N (3 or more);\n"
    "                        the host connects to the Unix socket PATH and writes\n"
    "                        'CONNECT <port>\\n'; guest connections to port P go to PATH_P\n"
    "      --vsock cid=N,vhost=on  the same with the kernel's vhost-vsock (/dev/vhost-vsock):\n"
    "                        the host side is AF_VSOCK sockets\n"
    "      --vfio BDF        pass the host PCI device BDF (DDDD:BB:DD.F, bound to vfio-pci)\n"
    "                        through to the guest on the PCI root complex (repeatable, up\n"
    "                        to 4; INTx needs --irqchip kernel)\n"
    "      --irqchip MODEL   split (default) or kernel\n"
    "      --cpu-disable LIST  hide CPUID features, comma-separated (e.g. xsave,avx,kvmclock;\n"
    "                        --cpu-disable help lists them)\n"
    "      --on-reboot WHAT  exit (default) or restart the VM when the guest reboots\n"
    "      --seccomp MODE    kill (default): a system call outside the allowlist of its\n"
    "                        thread (vCPU, I/O or main) ends vmm-run, naming the call;\n"
    "                        log: allow it and let the kernel log it; off: no filters\n"
    "      --save DIR        on SIGUSR1 (or --snapshot-on's signal), save the VM to the\n"
    "                        snapshot directory DIR and exit with status 0\n"
    "      --snapshot-on SIG the signal that saves the VM: USR1 (default) or USR2\n"
    "      --api-sock PATH   a control socket (Unix, stream) taking one JSON object a\n"
    "                        line: {\"cmd\":\"pause\"}, {\"cmd\":\"resume\"}, {\"cmd\":\"stop\"},\n"
    "                        {\"cmd\":\"snapshot\",\"path\":DIR,\"diff\":false} (the VM stays\n"
    "                        paused), {\"cmd\":\"migrate\",\"to\":\"unix:PATH|tcp:HOST:PORT\"}\n"
    "                        (to a vmm-run --migrate-listen; then exit),\n"
    "                        {\"cmd\":\"balloon\",\"target_mib\":N} (--balloon), "
    "{\"cmd\":\"stats\"};\n"
    "                        each answered by one, {\"ok\":true,...} or\n"
    "                        {\"ok\":false,\"error\":\"why\"}\n"
    "      --migrate-listen unix:PATH|tcp:HOST:PORT  wait there for a VM that another\n"
    "                        vmm-run sends (its control socket's migrate request), and\n"
    "                        run it; --disk, --console, --net and --vsock as with\n"
    "                        --restore\n"
    "      --restore DIR     run the VM saved in DIR (no --kernel): it goes on where it\n"
    "                        was saved; --disk and --console replace its disks (in order)\n"
    "                        and console output, --net tap=NAME the taps of its network\n"
    "                        devices (in order), --vsock its vsock host side (the guest\n"
    "                        is told to reconnect); --restore-memory eager|lazy|uffd\n"
    "                        (default: lazy, the memory file mapped copy-on-write; uffd:\n"
    "                        faulted in through userfaultfd)\n"
    "      --stats[=FILE]    at exit, print a boot profile to stderr (or FILE): exits by\n"
    "                        KVM reason and by port/address with the time spent in\n"
    "                        each, time to the first guest entry and total run time,\n"
    "                        and each --net device's frames, interrupts per queue\n"
    "      --kernel-cache DIR  boot a bzImage's XZ-compressed vmlinux directly (PVH),\n"
    "                        skipping the guest's decompressor: extracted once into DIR\n"
    "                        (made if missing; only you may write it); the\n"
    "                        guest loses KASLR (its kernel runs at link-time addresses)\n"
    "  -v, --verbose         log library messages (repeat for debug)\n"
    "  -h, --help            show this help and exit\n"
    "  -V, --version         show the version and exit\n"
    "\n"
    "Exit status: the guest's status byte (written to port 0xf4), 0 when the guest\n"
    "powers off or reboots, 128 + N when signal N (SIGINT, SIGTERM, SIGHUP, SIGQUIT)\n"
    "stopped it, 1 when vmm-run itself fails.\n";

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

/* The option parser's failure: *e becomes the message (a heap string, or
 * NULL when even that cannot be allocated). Returns PARSE_ERROR (-1). */
static int opt_error(char **e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int opt_error(char **e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(e, fmt, ap) < 0)
        *e = NULL;
    va_end(ap);
    return -1;
}

/* While set, the library's error lines are kept here (the last one wins)
 * instead of printed, so that a failure can say why in one line. */
static char *held_error;
static size_t held_error_size;

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    (void)opaque;
    if (held_error && level == VMM_LOG_ERROR) {
        snprintf(held_error, held_error_size, "%s", msg);
        return;
    }
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
    t.c_cc[VSUSP] = _POSIX_VDISABLE; /* Ctrl-Z would stop us with the terminal raw */
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tty_raw = true;
        atexit(restore_tty);
    }
}

/* Set once SIGINT/SIGTERM arrived: a reboot that wins the race against the
 * stop must not restart the VM and lose the signal. */
static atomic_int stop_signal; /* the signal that asked us to stop, 0: none */

/* --snapshot-on's signal (0: none), and saving the VM when it comes. */
static int snapshot_signal;
static void save_snapshot(struct vmm_vm *vm);

static void on_signal(void *opaque, int fd, uint32_t events)
{
    struct signalfd_siginfo si;
    (void)events;
    if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (snapshot_signal && (int)si.ssi_signo == snapshot_signal) {
            save_snapshot(opaque);
            return;
        }
        atomic_store(&stop_signal, (int)si.ssi_signo);
        vmm_vm_stop(opaque);
    }
}

enum boot_kind { BOOT_AUTO, BOOT_PROGRAM, BOOT_LINUX, BOOT_PVH };

/* Everything the command line asked for. */
struct options {
    const char *kernel, *initrd, *cmdline, *console, *cpu_disable;
    char *cpu_disable_joined; /* cpu_disable when --cpu-disable is repeated */
    enum boot_kind boot;
    uint64_t mem_size;
    bool thp;                            /* --thp */
    enum vmm_memory_backing mem_backing; /* --mem-backing */
    bool mem_backing_given;
    bool mem_merge; /* --mem-merge */
    unsigned vcpus;
    bool restart_on_reboot;
    int seccomp; /* SECCOMP_OFF, or 1 + enum vmm_seccomp_action */
    int verbose;
    struct vmm_vm_config cfg;
    int out_fd, in_fd;                             /* the serial console */
    bool virtio_console;                           /* --console virtio */
    bool rng;                                      /* --rng */
    struct vmm_virtio_blk_config disks[MAX_DISKS]; /* --disk, in order */
    unsigned nr_disks;
    bool pci;                                    /* --transport pci (the default) */
    struct vmm_virtio_net_config nets[MAX_NETS]; /* --net, in order */
    unsigned nr_nets;
    bool balloon; /* --balloon */
    struct vmm_virtio_balloon_config balloon_cfg;
    bool vsock; /* --vsock */
    struct vmm_virtio_vsock_config vsock_cfg;
    const char *save_dir;    /* --save */
    int snapshot_signal;     /* --snapshot-on */
    const char *restore_dir; /* --restore */
    bool console_given;      /* --console on the command line */
    const char *machine_opt; /* an option that shapes the machine (not with --restore) */
    uint32_t restore_memory; /* enum vmm_restore_memory */
    bool restore_memory_given;
    const char *api_sock;       /* --api-sock */
    const char *migrate_listen; /* --migrate-listen: unix:PATH or tcp:HOST:PORT */
    int migrate_fd;             /* the connection a migrated VM comes over; -1: none */
    const char *stats;          /* --stats: "" for stderr, or a file */
    FILE *stats_out;
    const char *vfio[MAX_VFIO]; /* --vfio, in order */
    unsigned nr_vfio;
    const char *kernel_cache; /* --kernel-cache */
};

#define SECCOMP_OFF 0

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

/* Filters for the run's threads, and once for this (main) thread. */
static void install_seccomp(struct vmm_vm *vm, const struct options *o)
{
    static bool main_done;
    if (o->seccomp == SECCOMP_OFF)
        return;
    /* --save and --api-sock save from the event loop's thread; the control
     * socket takes connections and lines there too, and its migrate command
     * starts a thread (allow_threads) that resolves the target, connects
     * (allow_inet_sockets for tcp:) and sends. */
    static const int api_calls[] = {
        SYS_accept4,     SYS_recvfrom, SYS_sendto,     SYS_recvmsg,    SYS_sendmsg,
        SYS_connect,     SYS_bind,     SYS_setsockopt, SYS_getsockopt, SYS_getsockname,
        SYS_getpeername, SYS_dup,      SYS_fcntl,      SYS_shutdown};
    struct vmm_seccomp_config cfg =
        VMM_INIT(struct vmm_seccomp_config, .action = (enum vmm_seccomp_action)(o->seccomp - 1),
                 .allow_snapshots = o->save_dir || o->api_sock);
    if (o->api_sock) {
        cfg.extra_syscalls = api_calls;
        cfg.nr_extra_syscalls = VMM_ARRAY_LEN(api_calls);
        cfg.allow_threads = true;
        cfg.allow_inet_sockets = true;
    }
    int r = vmm_vm_set_seccomp(vm, &cfg);
    if (r < 0)
        fail("cannot set up seccomp filters: %s", vmm_strerror(r));
    if (main_done)
        return;
    if (cfg.action == VMM_SECCOMP_TRAP) {
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) < 0)
            fail("cannot catch SIGSYS: %s", strerror(errno));
    }
    /* Restarting on reboot builds new VMs from this thread. */
    r = vmm_seccomp_install(o->restart_on_reboot ? VMM_SECCOMP_BUILD : VMM_SECCOMP_MAIN, &cfg);
    if (r < 0)
        fail("cannot install the seccomp filter: %s", vmm_strerror(r));
    main_done = true;
}

/* --net tap=NAME[,mac=MAC][,mtu=N][,queues=N][,vhost=on|off]: every key
 * once, tap required. */
static int parse_net(char *arg, struct vmm_virtio_net_config *net, char **e)
{
    *net = VMM_INIT(struct vmm_virtio_net_config);
    bool mac_set = false, vhost_set = false;
    for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *val = strchr(tok, '=');
        if (!val || val == tok)
            return opt_error(
                e, "invalid --net option '%s' (tap=NAME[,mac=MAC][,mtu=N][,queues=N][,vhost=on])",
                tok);
        *val++ = '\0';
        char *end;
        unsigned long v;
        if (strcmp(tok, "tap") == 0) {
            if (net->tap)
                return opt_error(e, "--net: tap= given twice");
            if (!*val || strlen(val) >= 16 || strchr(val, '/'))
                return opt_error(e, "--net: invalid tap name '%s' (1 to 15 characters, no '/')",
                                 val);
            net->tap = val;
        } else if (strcmp(tok, "mac") == 0) {
            unsigned b[6];
            char extra;
            if (mac_set)
                return opt_error(e, "--net: mac= given twice");
            if (sscanf(val, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                       &extra) != 6 ||
                strlen(val) != 17)
                return opt_error(e, "--net: invalid MAC address '%s' (like 52:54:00:12:34:56)",
                                 val);
            if (b[0] & 1)
                return opt_error(e, "--net: '%s' is a multicast address, not a device's", val);
            for (int i = 0; i < 6; i++)
                net->mac[i] = (uint8_t)b[i];
            mac_set = true;
        } else if (strcmp(tok, "mtu") == 0 || strcmp(tok, "queues") == 0) {
            bool mtu = tok[0] == 'm';
            unsigned long lo = mtu ? 68 : 1, hi = mtu ? 65535 : VMM_VIRTIO_NET_MAX_PAIRS;
            errno = 0;
            v = strtoul(val, &end, 10);
            if (errno || *end || end == val || val[0] == '-' || v < lo || v > hi)
                return opt_error(e, "--net: invalid %s '%s' (%lu-%lu)", tok, val, lo, hi);
            if (mtu ? net->mtu != 0 : net->queue_pairs != 0)
                return opt_error(e, "--net: %s= given twice", tok);
            if (mtu)
                net->mtu = (uint16_t)v;
            else
                net->queue_pairs = (unsigned)v;
        } else if (strcmp(tok, "vhost") == 0) {
            if (vhost_set)
                return opt_error(e, "--net: vhost= given twice");
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
                return opt_error(e, "--net: invalid vhost '%s' (on or off)", val);
            net->vhost = val[1] == 'n';
            vhost_set = true;
        } else {
            return opt_error(e, "unknown --net option '%s' (tap, mac, mtu, queues or vhost)", tok);
        }
    }
    if (!net->tap)
        return opt_error(e, "--net needs tap=NAME");
    return 0;
}

/* --vsock cid=N,path=PATH or cid=N,vhost=on: every key once. */
static int parse_vsock(char *arg, struct vmm_virtio_vsock_config *vs, char **e)
{
    *vs = VMM_INIT(struct vmm_virtio_vsock_config);
    bool vhost_set = false;
    for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *val = strchr(tok, '=');
        if (!val || val == tok)
            return opt_error(e, "invalid --vsock option '%s' (cid=N,path=PATH or cid=N,vhost=on)",
                             tok);
        *val++ = '\0';
        if (strcmp(tok, "cid") == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (errno || *end || end == val || val[0] == '-' ||
                v < VMM_VIRTIO_VSOCK_MIN_GUEST_CID || v > 0xfffffffeull)
                return opt_error(e, "--vsock: invalid cid '%s' (%d-4294967294)", val,
                                 VMM_VIRTIO_VSOCK_MIN_GUEST_CID);
            if (vs->guest_cid)
                return opt_error(e, "--vsock: cid= given twice");
            vs->guest_cid = v;
        } else if (strcmp(tok, "path") == 0) {
            if (vs->path)
                return opt_error(e, "--vsock: path= given twice");
            if (!*val || strlen(val) > 96)
                return opt_error(e, "--vsock: invalid path '%s' (1 to 96 characters)", val);
            vs->path = val;
        } else if (strcmp(tok, "vhost") == 0) {
            if (vhost_set)
                return opt_error(e, "--vsock: vhost= given twice");
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
                return opt_error(e, "--vsock: invalid vhost '%s' (on or off)", val);
            vs->vhost = val[1] == 'n';
            vhost_set = true;
        } else {
            return opt_error(e, "unknown --vsock option '%s' (cid, path or vhost)", tok);
        }
    }
    if (!vs->guest_cid || (!vs->path && !vs->vhost))
        return opt_error(e, "--vsock needs cid=N and path=PATH (or vhost=on)");
    if (vs->path && vs->vhost)
        return opt_error(e, "--vsock: vhost=on takes no path (the host side is AF_VSOCK sockets)");
    return 0;
}

/* One line for a network device that could not be made. */
static __attribute__((noreturn)) void fail_net(const struct vmm_virtio_net_config *net, int r)
{
    fail("cannot add a network device on tap '%s': %s%s", net->tap, vmm_strerror(r),
         r == -ENOENT && access("/dev/net/tun", F_OK) != 0 ? " (no /dev/net/tun: modprobe tun)"
         : r == -ENOENT && net->vhost ? " (vhost=on needs /dev/vhost-net: modprobe vhost_net)"
         : r == -EPERM                ? " (it needs CAP_NET_ADMIN, or a tap owned by this user)"
         : r == -EBUSY                ? " (another process has it open)"
         : r == -EINVAL && net->queue_pairs > 1 ? " (is it a multiqueue tap?)"
         : r == -EINVAL                         ? " (a multiqueue tap needs queues=N)"
                                                : "");
}

/* One line for a vsock device that could not be made. */
static __attribute__((noreturn)) void fail_vsock(const struct vmm_virtio_vsock_config *vs, int r)
{
    if (vs->vhost)
        fail("cannot add the vhost-vsock device for CID %llu: %s%s",
             (unsigned long long)vs->guest_cid, vmm_strerror(r),
             r == -ENOENT       ? " (vhost=on needs /dev/vhost-vsock: modprobe vhost_vsock)"
             : r == -EADDRINUSE ? " (another VM has that CID)"
                                : "");
    fail("cannot add the vsock device on '%s': %s%s", vs->path, vmm_strerror(r),
         r == -EADDRINUSE ? " (something is there: remove it first)" : "");
}

/* --balloon=[target=SIZE][,stats][,reporting][,deflate-on-oom][,hinting]. */
static int parse_balloon(char *arg, struct vmm_virtio_balloon_config *b, char **e)
{
    *b = VMM_INIT(struct vmm_virtio_balloon_config);
    for (char *save = NULL, *tok = strtok_r(arg, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (strncmp(tok, "target=", 7) == 0) {
            b->target_bytes = parse_size(tok + 7);
            if (b->target_bytes == 0 || (b->target_bytes >> 12) > UINT32_MAX)
                return opt_error(e, "--balloon: invalid target '%s' (use e.g. 64M)", tok + 7);
        } else if (strcmp(tok, "stats") == 0) {
            b->stats = true;
        } else if (strcmp(tok, "reporting") == 0) {
            b->reporting = true;
        } else if (strcmp(tok, "deflate-on-oom") == 0) {
            b->deflate_on_oom = true;
        } else if (strcmp(tok, "hinting") == 0) {
            b->hinting = true;
        } else {
            return opt_error(e,
                             "unknown --balloon option '%s' (target=SIZE, stats, reporting, "
                             "deflate-on-oom or hinting)",
                             tok);
        }
    }
    return 0;
}

static void list_cpu_features(void)
{
    const char *name, *what;
    printf("CPUID features --cpu-disable knows:\n");
    for (unsigned i = 0; (name = vmm_cpuid_feature_name(i, &what)); i++)
        printf("  %-16s %s\n", name, what);
}

/* Check every name in the comma-separated list before anything starts. */
static int check_cpu_features(const char *list, char **e)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return opt_error(e, "out of memory");
    struct kvm_cpuid_entry2 dummy = {0};
    int r = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
        if (vmm_cpuid_set_feature(&dummy, 1, tok, false) == -ENOENT)
            r = opt_error(e,
                          "unknown CPU feature '%s' for --cpu-disable (--cpu-disable help lists "
                          "them)",
                          tok);
    }
    free(copy);
    return r;
}

static void apply_cpu_features(struct vmm_vcpu *vcpu, const char *list)
{
    static struct kvm_cpuid_entry2 table[256];
    int n = vmm_vcpu_get_cpuid(vcpu, table, VMM_ARRAY_LEN(table));
    if (n < 0 || n > (int)VMM_ARRAY_LEN(table))
        fail("cannot read the CPUID table: %s", vmm_strerror(n < 0 ? n : -E2BIG));
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        fail("out of memory");
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        (void)vmm_cpuid_set_feature(table, (unsigned)n, tok, false);
    free(copy);
    int r = vmm_vcpu_set_cpuid(vcpu, table, (unsigned)n);
    if (r < 0)
        fail("cannot set the CPUID table: %s", vmm_strerror(r));
}

static void add_memory(struct vmm_vm *vm, const struct options *o)
{
    /* RAM below the 32-bit MMIO hole, the rest above 4 GiB. */
    uint64_t mem_size = o->mem_size;
    /* Checked here, where a restored or received machine's saved choices
     * have joined the command line's. */
    if (o->mem_merge && o->mem_backing == VMM_MEMORY_MEMFD)
        fail("--mem-merge needs --mem-backing anon (KSM merges private anonymous pages only)");
    uint64_t low = mem_size < MMIO_HOLE ? mem_size : MMIO_HOLE;
    unsigned flags = (o->thp ? VMM_MEMORY_F_THP : 0) | (o->mem_merge ? VMM_MEMORY_F_MERGEABLE : 0);
    struct vmm_region_config ram = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0,
                                    .len = low,
                                    .backing = o->mem_backing,
                                    .flags = flags};
    int r = vmm_vm_add_memory(vm, &ram);
    if (r >= 0 && mem_size > low) {
        ram = (struct vmm_region_config){.size = sizeof(struct vmm_region_config),
                                         .gpa = HIGH_RAM_BASE,
                                         .len = mem_size - low,
                                         .backing = o->mem_backing,
                                         .flags = flags};
        r = vmm_vm_add_memory(vm, &ram);
    }
    if (r < 0)
        fail("cannot set up %llu MiB of guest memory: %s", (unsigned long long)(mem_size >> 20),
             vmm_strerror(r));
}

/* The platform devices every guest gets, described in *m for the firmware
 * tables as they are added. */
static void add_platform_devices(struct vmm_vm *vm, const struct options *o, struct vmm_machine *m)
{
    struct vmm_uart_config uart =
        VMM_INIT(struct vmm_uart_config, .out_fd = o->out_fd, .in_fd = o->in_fd);
    int r;
    if ((r = vmm_vm_add_uart(vm, VMM_COM1_PORT, VMM_COM1_IRQ, &uart, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) < 0 || (r = vmm_vm_add_i8042(vm)) < 0 ||
        (r = vmm_vm_add_rtc(vm)) < 0 || (r = vmm_vm_add_acpi_pm(vm)) < 0)
        fail("cannot add the platform devices: %s", vmm_strerror(r));
    m->serial[m->nr_serial++] = (struct vmm_machine_serial){VMM_COM1_PORT, VMM_COM1_IRQ};
    /* The i8042 is there for its reset line only (no keyboard), so the
     * firmware tables do not offer it: a kernel then skips probing a
     * controller that would only time out. */
    m->i8042 = false;
    m->rtc = true;
    m->acpi_pm = true;
    /* A VM generation ID, new with each --restore, on COM2's ISA line (there
     * is no COM2). */
    if ((r = vmm_vm_add_vmgenid(vm, VMM_X86_VMGENID, VMGENID_GSI)) < 0)
        fail("cannot add the VM generation ID: %s", vmm_strerror(r));
    m->vmgenid_addr = VMM_X86_VMGENID;
    m->vmgenid_gsi = VMGENID_GSI;
}

/* Paravirtual devices asked for on the command line: virtio-mmio slot n at
 * VMM_X86_VIRTIO_MMIO_BASE + n * 4 KiB on GSI 5 + n, in this order, each
 * listed in m->virtio[] (firmware tables, Linux's virtio_mmio.device=). */
/* The interrupt line of virtio-mmio slot n: the ISA lines no platform
 * device uses (not 0-4 or 8, the RTC's), then 16 and up. */
static unsigned virtio_gsi(unsigned n)
{
    static const unsigned gsis[] = {5,  6,  7,  9,  10, 11, 12, 13, 14,
                                    15, 16, 17, 18, 19, 20, 21, 22, 23};
    if (n >= VMM_ARRAY_LEN(gsis))
        fail("too many virtio devices (at most %zu)", VMM_ARRAY_LEN(gsis));
    return gsis[n];
}

/* The VM's PCI root complex, made on first use (--transport pci, --vfio);
 * run_vm forgets it with each VM. */
static struct vmm_pci_bus *the_pci_bus;

/* The balloon's transport (--balloon), for the control socket's balloon
 * and stats requests; NULL without one. */
static struct vmm_virtio_transport *the_balloon;

/* The network devices' transports (--net, in order), for --stats. */
static struct vmm_virtio_transport *the_nets[MAX_NETS];

static struct vmm_pci_bus *pci_bus(struct vmm_vm *vm, struct vmm_machine *m)
{
    if (the_pci_bus)
        return the_pci_bus;
    int r = vmm_vm_add_pci(vm, NULL, &the_pci_bus);
    if (r < 0 || (r = vmm_pci_add_to_machine(the_pci_bus, m)) < 0)
        fail("cannot add the PCI root complex: %s", vmm_strerror(r));
    return the_pci_bus;
}

/* --transport pci: a root complex, and each device as a virtio-pci function
 * in the order of the mmio slots. A machine without virtio devices gets no
 * root complex for them (--restore makes the same choice from the same
 * description). */
static void add_virtio_pci_devices(struct vmm_vm *vm, const struct options *o,
                                   struct vmm_machine *m)
{
    if (!o->virtio_console && !o->rng && !o->nr_disks && !o->balloon && !o->nr_nets && !o->vsock)
        return;
    struct vmm_pci_bus *bus = pci_bus(vm, m);
    int r;
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    if (o->virtio_console) {
        struct vmm_virtio_console_config con = VMM_INIT(
            struct vmm_virtio_console_config, .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO);
        if ((r = vmm_virtio_console_create(&con, &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, NULL)) < 0)
            fail("cannot add the virtio console: %s", vmm_strerror(r));
    }
    if (o->rng) {
        if ((r = vmm_virtio_rng_create(NULL, &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, NULL)) < 0)
            fail("cannot add the virtio entropy device: %s", vmm_strerror(r));
    }
    for (unsigned i = 0; i < o->nr_disks; i++) {
        char serial[24]; /* i < MAX_DISKS: at most 12 bytes */
        snprintf(serial, sizeof(serial), "libvmm-disk%u", i);
        struct vmm_virtio_blk_config disk = o->disks[i];
        if (!disk.serial)
            disk.serial = serial;
        if ((r = vmm_virtio_blk_create(&disk, &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, NULL)) < 0)
            fail("cannot add disk '%s': %s", o->disks[i].path, vmm_strerror(r));
    }
    if (o->balloon) {
        struct vmm_virtio_pci *vp;
        if ((r = vmm_virtio_balloon_create(&o->balloon_cfg, &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, &vp)) < 0)
            fail("cannot add the virtio balloon: %s", vmm_strerror(r));
        the_balloon = vmm_virtio_pci_transport(vp);
    }
    for (unsigned i = 0; i < o->nr_nets; i++) {
        struct vmm_virtio_pci *vp;
        if ((r = vmm_virtio_net_create(&o->nets[i], &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, &vp)) < 0)
            fail_net(&o->nets[i], r);
        the_nets[i] = vmm_virtio_pci_transport(vp);
    }
    if (o->vsock) {
        if ((r = vmm_virtio_vsock_create(&o->vsock_cfg, &dev)) < 0 ||
            (r = vmm_virtio_pci_add(bus, NULL, &dev, NULL)) < 0)
            fail_vsock(&o->vsock_cfg, r);
    }
}

/* --vfio: one container for all the devices, guest memory DMA-mapped in
 * it, each device a function on the root complex. The container outlives
 * the VM (its devices close with it): the caller closes it after. */
static struct vmm_vfio_container *add_vfio_devices(struct vmm_vm *vm, const struct options *o,
                                                   struct vmm_machine *m)
{
    if (!o->nr_vfio)
        return NULL;
    struct vmm_pci_bus *bus = pci_bus(vm, m);
    struct vmm_vfio_container *c;
    struct vmm_vfio_device *d[MAX_VFIO];
    char why[256] = "";
    held_error = why; /* the library's reason, in the one line fail prints */
    held_error_size = sizeof(why);
    int r = vmm_vfio_container_open(NULL, &c);
    if (r < 0)
        fail("--vfio: cannot open VFIO: %s", why[0] ? why : vmm_strerror(r));
    for (unsigned i = 0; i < o->nr_vfio; i++)
        if ((r = vmm_vfio_device_open(c, o->vfio[i], &d[i])) < 0)
            fail("--vfio %s: cannot open the device: %s", o->vfio[i],
                 why[0] ? why : vmm_strerror(r));
    if ((r = vmm_vfio_container_attach_vm(c, vm)) < 0 ||
        (r = vmm_vfio_container_map_memory(c, vmm_vm_memory(vm))) < 0)
        fail("--vfio: cannot give the devices guest memory: %s", why[0] ? why : vmm_strerror(r));
    for (unsigned i = 0; i < o->nr_vfio; i++)
        if ((r = vmm_vfio_pci_add(d[i], bus, NULL)) < 0)
            fail("--vfio %s: cannot put the device on the PCI bus: %s", o->vfio[i],
                 why[0] ? why : vmm_strerror(r));
    held_error = NULL;
    return c;
}

static void add_virtio_devices(struct vmm_vm *vm, const struct options *o, struct vmm_machine *m)
{
    if (o->pci) {
        add_virtio_pci_devices(vm, o, m);
        return;
    }
    struct vmm_virtio_mmio *dev;
    int r;
    if (o->virtio_console) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        struct vmm_virtio_console_config con = VMM_INIT(
            struct vmm_virtio_console_config, .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO);
        r = vmm_vm_add_virtio_console(vm, base, virtio_gsi(n), &con, &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail("cannot add the virtio console: %s", vmm_strerror(r));
    }
    if (o->rng) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        r = vmm_vm_add_virtio_rng(vm, base, virtio_gsi(n), NULL, &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail("cannot add the virtio entropy device: %s", vmm_strerror(r));
    }
    for (unsigned i = 0; i < o->nr_disks; i++) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        /* Each disk its own serial, so /dev/disk/by-id tells them apart. */
        char serial[24]; /* i < MAX_DISKS: at most 12 bytes */
        snprintf(serial, sizeof(serial), "libvmm-disk%u", i);
        struct vmm_virtio_blk_config disk = o->disks[i];
        if (!disk.serial)
            disk.serial = serial;
        r = vmm_vm_add_virtio_blk(vm, base, virtio_gsi(n), &disk, &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail("cannot add disk '%s': %s", o->disks[i].path, vmm_strerror(r));
    }
    if (o->balloon) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        r = vmm_vm_add_virtio_balloon(vm, base, virtio_gsi(n), &o->balloon_cfg, &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail("cannot add the virtio balloon: %s", vmm_strerror(r));
        the_balloon = vmm_virtio_mmio_transport(dev);
    }
    for (unsigned i = 0; i < o->nr_nets; i++) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        r = vmm_vm_add_virtio_net(vm, base, virtio_gsi(n), &o->nets[i], &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail_net(&o->nets[i], r);
        the_nets[i] = vmm_virtio_mmio_transport(dev);
    }
    if (o->vsock) {
        unsigned n = m->nr_virtio;
        uint64_t base = VMM_X86_VIRTIO_MMIO_BASE + n * VMM_X86_VIRTIO_MMIO_SIZE;
        r = vmm_vm_add_virtio_vsock(vm, base, virtio_gsi(n), &o->vsock_cfg, &dev);
        if (r < 0 || (r = vmm_virtio_mmio_add_to_machine(dev, m)) < 0)
            fail_vsock(&o->vsock_cfg, r);
    }
}

/* A static ELF program: loaded by physical address, entered in long mode with
 * RDI = vCPU index and RSI = vCPU count. */
static void boot_program(struct vmm_vm *vm, const struct options *o)
{
    if (o->initrd || o->cmdline)
        fail("--initrd and --cmdline need a Linux kernel, and '%s' is booted as an ELF "
             "program (use --boot linux to boot it as a vmlinux)",
             o->kernel);
    struct vmm_load_result img = VMM_INIT(struct vmm_load_result);
    int r = vmm_elf_load_file(vmm_vm_memory(vm), o->kernel, NULL, &img);
    if (r < 0)
        fail("cannot load '%s': %s", o->kernel, img.error[0] ? img.error : vmm_strerror(r));
    for (unsigned i = 0; i < o->vcpus; i++) {
        struct vmm_x86_boot_state boot =
            VMM_INIT(struct vmm_x86_boot_state, .entry = img.entry, .arg0 = i, .arg1 = o->vcpus);
        r = vmm_vcpu_set_boot_state(vmm_vm_vcpu(vm, i), &boot);
        if (r < 0)
            fail("cannot set up vCPU %u: %s", i, vmm_strerror(r));
    }
}

/*
 * What --boot auto makes of an image: a bzImage is a Linux kernel; an ELF is a
 * Linux kernel (vmlinux, with or without the PVH note) when it is linked at
 * virtual addresses other than its load addresses, as every x86-64 kernel
 * is, and a guest program otherwise.
 */
static enum boot_kind classify_image(const char *path)
{
    static unsigned char buf[64 << 10];
    /* Non-blocking, and only a regular file: a FIFO or a terminal would
     * otherwise block here with SIGINT/SIGTERM already held for the VM. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        fail("cannot load '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        fail("cannot load '%s': not a regular file", path);
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0)
        fail("cannot load '%s': %s", path, strerror(errno));
    return vmm_kernel_is_linux(buf, (size_t)n) ? BOOT_LINUX : BOOT_PROGRAM;
}

/* Whether path starts as a bzImage (true where it cannot be read: the loader
 * then says why). */
static bool starts_as_bzimage(const char *path)
{
    unsigned char head[0x206];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    return n < 0 || vmm_kernel_detect(head, (size_t)n) == VMM_KERNEL_BZIMAGE;
}

/* A Linux kernel: firmware tables describing the machine, then the loader's
 * steps; vCPU 0 enters the kernel, the others wait for its INIT/SIPI. */
static void boot_linux(struct vmm_vm *vm, const struct options *o, enum boot_kind kind,
                       const struct vmm_machine *m)
{
    struct vmm_memory *mem = vmm_vm_memory(vm);
    struct vmm_acpi_result acpi = VMM_INIT(struct vmm_acpi_result);
    int r = vmm_acpi_write(mem, m, NULL, &acpi);
    if (r < 0)
        fail("cannot write the ACPI tables: %s", vmm_strerror(r));
    /* The floating pointer goes in the last KiB of base memory, where a
     * kernel looks; the table may run on into the reserved range below the
     * ACPI tables, which holds all 255 vCPUs. */
    struct vmm_mptable_result mp = VMM_INIT(struct vmm_mptable_result);
    struct vmm_mptable_options mp_opts = {.size = sizeof(struct vmm_mptable_options),
                                          .end = VMM_X86_ACPI_TABLES};
    r = vmm_mptable_write(mem, m, &mp_opts, &mp);
    if (r < 0)
        fail("cannot write the MP table: %s", vmm_strerror(r));

    struct vmm_linux_config cfg = {
        .size = sizeof(struct vmm_linux_config),
        .kernel_path = o->kernel,
        .initrd_path = o->initrd,
        .cmdline = o->cmdline ? o->cmdline : "",
        .machine = m,
        .rsdp_addr = acpi.rsdp,
        .kernel_opts = &(struct vmm_kernel_options){.size = sizeof(struct vmm_kernel_options),
                                                    .no_pvh = o->boot == BOOT_LINUX,
                                                    .machine = m,
                                                    .extract_payload = o->kernel_cache != NULL,
                                                    .payload_cache_dir = o->kernel_cache},
    };
    struct vmm_linux_boot boot = VMM_INIT(struct vmm_linux_boot);
    if (o->kernel_cache && !starts_as_bzimage(o->kernel))
        fail("--kernel-cache is for a Linux bzImage, not '%s'", o->kernel);
    /* Made once, on the first boot: a restart runs under the BUILD filter,
     * which has no mkdir. */
    static bool cache_made;
    if (o->kernel_cache && !cache_made && mkdir(o->kernel_cache, 0700) < 0 && errno != EEXIST)
        fail("--kernel-cache: cannot create '%s': %s", o->kernel_cache, strerror(errno));
    cache_made = true;
    r = vmm_linux_boot_setup(mem, &cfg, &boot);
    if (r < 0)
        fail("cannot load '%s': %s", o->kernel, boot.error[0] ? boot.error : vmm_strerror(r));
    if (kind == BOOT_PVH && boot.protocol != VMM_LINUX_BOOT_PVH)
        fail("cannot boot '%s' through PVH: it has no PVH entry note", o->kernel);
    if (o->kernel_cache && boot.format == VMM_KERNEL_BZIMAGE)
        fprintf(stderr,
                "vmm-run: --kernel-cache: '%s' has no XZ-compressed vmlinux inside: booted as "
                "a bzImage (-v says why)\n",
                o->kernel);
    struct vmm_x86_linux_entry entry = VMM_INIT(struct vmm_x86_linux_entry);
    r = vmm_linux_get_entry(&boot, &entry);
    if (r == 0)
        r = vmm_vcpu_set_linux_entry(vmm_vm_vcpu(vm, 0), &entry);
    if (r < 0)
        fail("cannot set up vCPU 0: %s", vmm_strerror(r));
    for (unsigned i = 1; i < o->vcpus; i++) {
        r = vmm_vcpu_set_linux_ap_state(vmm_vm_vcpu(vm, i));
        if (r < 0)
            fail("cannot set up vCPU %u: %s", i, vmm_strerror(r));
    }
}

/* -v: where each vCPU was when a signal stopped the VM (a guest that hangs). */
static void report_vcpus(struct vmm_vm *vm, unsigned vcpus)
{
    for (unsigned i = 0; i < vcpus; i++) {
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        if (vmm_vcpu_get_regs(vmm_vm_vcpu(vm, i), &regs) < 0 ||
            vmm_vcpu_get_sregs(vmm_vm_vcpu(vm, i), &sregs) < 0)
            continue;
        fprintf(stderr, "%s: vCPU %u stopped at rip 0x%llx rflags 0x%llx cr0 0x%llx\n", prog, i,
                (unsigned long long)regs.rip, (unsigned long long)regs.rflags,
                (unsigned long long)sregs.cr0);
    }
}

/* ---- snapshots: --save, --snapshot-on, --restore ---- */

/* What --restore needs to build the VM again, kept in the snapshot as the
 * application's blob: text lines "key=value" after a first line naming the
 * format. Read back as untrusted input. */
#define SNAPSHOT_DESC_MAGIC "vmm-run snapshot 1"

static char *describe_vm(const struct options *o, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    fprintf(f, "%s\nmem=%llu\nvcpus=%u\nirqchip=%s\nvirtio-console=%d\nrng=%d\n",
            SNAPSHOT_DESC_MAGIC, (unsigned long long)o->mem_size, o->vcpus,
            o->cfg.irqchip == VMM_IRQCHIP_KERNEL ? "kernel" : "split", o->virtio_console, o->rng);
    for (unsigned i = 0; i < o->nr_disks; i++)
        fprintf(f, "disk=%d,%d,%s\n", o->disks[i].readonly, o->disks[i].direct, o->disks[i].path);
    fprintf(f, "transport=%s\n", o->pci ? "pci" : "mmio");
    if (o->mem_backing == VMM_MEMORY_MEMFD)
        fprintf(f, "mem-backing=memfd\n");
    if (o->mem_merge)
        fprintf(f, "mem-merge=1\n");
    if (o->balloon) /* target bytes, then stats, reporting, deflate-on-oom, hinting */
        fprintf(f, "balloon=%llu,%d,%d,%d,%d\n", (unsigned long long)o->balloon_cfg.target_bytes,
                o->balloon_cfg.stats, o->balloon_cfg.reporting, o->balloon_cfg.deflate_on_oom,
                o->balloon_cfg.hinting);
    /* Network devices: vhost, MTU, queue pairs, MAC (zero: the device's
     * own, which the snapshot keeps), then the tap; vsock: vhost, CID, path. */
    for (unsigned i = 0; i < o->nr_nets; i++) {
        const struct vmm_virtio_net_config *n = &o->nets[i];
        fprintf(f, "net=%d,%u,%u,%02x:%02x:%02x:%02x:%02x:%02x,%s\n", n->vhost, n->mtu,
                n->queue_pairs, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
                n->tap);
    }
    if (o->vsock)
        fprintf(f, "vsock=%d,%llu,%s\n", o->vsock_cfg.vhost,
                (unsigned long long)o->vsock_cfg.guest_cid,
                o->vsock_cfg.path ? o->vsock_cfg.path : "");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

/* One "0" or "1". */
static bool parse_flag(const char *v, bool *out)
{
    if ((v[0] != '0' && v[0] != '1') || v[1])
        return false;
    *out = v[0] == '1';
    return true;
}

static void parse_vm_description(char *buf, size_t len, const char *what, struct options *o);

/* Take the shape of the machine saved in dir into o. */
static void read_vm_description(const char *dir, struct options *o)
{
    size_t len = 0;
    char why[256] = "";
    held_error = why;
    held_error_size = sizeof(why);
    int r = vmm_snapshot_app_data(dir, NULL, 0, &len);
    char *buf = NULL;
    if (r == -ENOSPC) {
        buf = calloc(1, len + 1);
        if (!buf)
            fail("out of memory");
        r = vmm_snapshot_app_data(dir, buf, len, &len);
    }
    held_error = NULL;
    if (r == -ENOENT && why[0] == '\0')
        fail("cannot restore '%s': it was not saved by vmm-run", dir);
    if (r < 0)
        fail("cannot restore '%s': %s", dir, why[0] ? why : vmm_strerror(r));
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "cannot restore '%s'", dir);
    parse_vm_description(buf, len, what, o);
}

/* Take a saved machine's shape (the blob of a snapshot or a migration)
 * into o; --disk and --console given on the command line replace the saved
 * ones. buf is taken over. what starts every error line. */
static void parse_vm_description(char *buf, size_t len, const char *what, struct options *o)
{
    if (memchr(buf, '\0', len))
        fail("%s: its description is not text", what);

    struct vmm_virtio_blk_config saved[MAX_DISKS];
    unsigned nr_saved = 0;
    struct vmm_virtio_net_config saved_nets[MAX_NETS];
    unsigned nr_saved_nets = 0;
    bool saved_vsock = false;
    struct vmm_virtio_vsock_config saved_vsock_cfg;
    bool virtio_console = false;
    /* Descriptions without a transport line (before virtio-pci became the
     * default) are of virtio-mmio machines. */
    o->pci = false;
    char *save = NULL;
    char *line = strtok_r(buf, "\n", &save);
    if (!line || strcmp(line, SNAPSHOT_DESC_MAGIC) != 0)
        fail("%s: it was not saved by this vmm-run", what);
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *v = strchr(line, '=');
        if (!v)
            fail("%s: malformed line in its description", what);
        *v++ = '\0';
        bool ok = true, flag = false;
        if (strcmp(line, "mem") == 0) {
            o->mem_size = parse_size(v);
            ok = o->mem_size >= MIN_MEM && o->mem_size <= MAX_MEM && !(o->mem_size % 4096);
        } else if (strcmp(line, "vcpus") == 0) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            ok = *v && !*end && n >= 1 && n <= MAX_VCPUS;
            o->vcpus = (unsigned)n;
        } else if (strcmp(line, "irqchip") == 0) {
            ok = !strcmp(v, "split") || !strcmp(v, "kernel");
            o->cfg.irqchip = strcmp(v, "kernel") ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
        } else if (strcmp(line, "virtio-console") == 0) {
            ok = parse_flag(v, &virtio_console);
        } else if (strcmp(line, "rng") == 0) {
            ok = parse_flag(v, &flag);
            o->rng = flag;
        } else if (strcmp(line, "disk") == 0 && nr_saved < MAX_DISKS) {
            bool ro, direct;
            ok = strlen(v) > 4 && v[1] == ',' && v[3] == ',' && v[0] >= '0' && v[0] <= '1' &&
                 v[2] >= '0' && v[2] <= '1';
            if (ok) {
                ro = v[0] == '1';
                direct = v[2] == '1';
                /* Static: the paths live as long as the process. */
                static char paths[MAX_DISKS][PATH_MAX];
                ok = strlen(v + 4) < PATH_MAX;
                if (ok) {
                    snprintf(paths[nr_saved], PATH_MAX, "%s", v + 4);
                    saved[nr_saved] =
                        VMM_INIT(struct vmm_virtio_blk_config, .path = paths[nr_saved],
                                 .readonly = ro, .direct = direct);
                    nr_saved++;
                }
            }
        } else if (strcmp(line, "transport") == 0) {
            ok = !strcmp(v, "pci") || !strcmp(v, "mmio");
            o->pci = !strcmp(v, "pci");
        } else if (strcmp(line, "mem-backing") == 0) {
            /* --mem-backing on the command line wins over the saved one. */
            ok = !strcmp(v, "memfd");
            if (!o->mem_backing_given)
                o->mem_backing = VMM_MEMORY_MEMFD;
        } else if (strcmp(line, "mem-merge") == 0) {
            ok = parse_flag(v, &flag);
            o->mem_merge |= flag;
        } else if (strcmp(line, "balloon") == 0 && !o->balloon) {
            unsigned long long target = 0;
            int st = 0, rep = 0, oom = 0, hint = 0, end = 0;
            ok = sscanf(v, "%llu,%d,%d,%d,%d%n", &target, &st, &rep, &oom, &hint, &end) == 5 &&
                 !v[end] && (target >> 12) <= UINT32_MAX && !((st | rep | oom | hint) & ~1);
            o->balloon = true;
            o->balloon_cfg =
                VMM_INIT(struct vmm_virtio_balloon_config, .target_bytes = target, .stats = st,
                         .reporting = rep, .deflate_on_oom = oom, .hinting = hint);
        } else if (strcmp(line, "net") == 0 && nr_saved_nets < MAX_NETS) {
            /* Static: the names live as long as the process. */
            static char taps[MAX_NETS][IFNAMSIZ];
            struct vmm_virtio_net_config *n = &saved_nets[nr_saved_nets];
            *n = VMM_INIT(struct vmm_virtio_net_config);
            int vhost = 0, end = 0;
            unsigned mtu = 0, pairs = 0, mac[6];
            ok = sscanf(v, "%d,%u,%u,%2x:%2x:%2x:%2x:%2x:%2x,%n", &vhost, &mtu, &pairs, &mac[0],
                        &mac[1], &mac[2], &mac[3], &mac[4], &mac[5], &end) == 9 &&
                 end > 0 && !(vhost & ~1) && mtu <= 65535 && pairs <= VMM_VIRTIO_NET_MAX_PAIRS &&
                 v[end] && strlen(v + end) < IFNAMSIZ && !strchr(v + end, '/');
            if (ok) {
                snprintf(taps[nr_saved_nets], IFNAMSIZ, "%s", v + end);
                n->tap = taps[nr_saved_nets];
                n->vhost = vhost;
                n->mtu = (uint16_t)mtu;
                n->queue_pairs = pairs;
                for (int i = 0; i < 6; i++)
                    n->mac[i] = (uint8_t)mac[i];
                nr_saved_nets++;
            }
        } else if (strcmp(line, "vsock") == 0 && !saved_vsock) {
            static char vsock_path[PATH_MAX];
            int vhost = 0, end = 0;
            unsigned long long cid = 0;
            ok = sscanf(v, "%d,%llu,%n", &vhost, &cid, &end) == 2 && end > 0 && !(vhost & ~1) &&
                 cid >= VMM_VIRTIO_VSOCK_MIN_GUEST_CID && cid <= 0xfffffffeull &&
                 strlen(v + end) <= 96 && (v[end] == '\0') == (vhost == 1);
            snprintf(vsock_path, sizeof(vsock_path), "%s", v + end);
            saved_vsock = true;
            saved_vsock_cfg = VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = cid,
                                       .path = vhost ? NULL : vsock_path, .vhost = vhost);
        } else {
            ok = false;
        }
        if (!ok)
            fail("%s: bad '%s' in its description", what, line);
    }
    /* --net given again: the same devices, in order, on the taps named. */
    if (o->nr_nets && o->nr_nets != nr_saved_nets)
        fail("%s: it has %u network devices and --net gives %u", what, nr_saved_nets, o->nr_nets);
    for (unsigned i = 0; i < o->nr_nets; i++) {
        const struct vmm_virtio_net_config *n = &o->nets[i];
        static const uint8_t zero[6];
        if (n->mtu || n->queue_pairs || n->vhost || memcmp(n->mac, zero, 6) != 0)
            fail("%s: --net takes only tap=NAME there (the device is the saved one)", what);
        const char *tap = n->tap;
        o->nets[i] = saved_nets[i];
        o->nets[i].tap = tap;
    }
    if (!o->nr_nets) {
        memcpy(o->nets, saved_nets, nr_saved_nets * sizeof(saved_nets[0]));
        o->nr_nets = nr_saved_nets;
    }
    /* --vsock given again: the host side it names (the CID may change: the
     * guest reads it again on the transport reset the device sends). */
    if (o->vsock && !saved_vsock)
        fail("%s: it has no vsock device (drop --vsock)", what);
    if (o->vsock && o->vsock_cfg.vhost != saved_vsock_cfg.vhost)
        fail("%s: its vsock device was saved %s vhost-vsock", what,
             saved_vsock_cfg.vhost ? "with" : "without");
    if (!o->vsock && saved_vsock) {
        o->vsock = true;
        o->vsock_cfg = saved_vsock_cfg;
    }
    if (o->nr_disks && o->nr_disks != nr_saved)
        fail("%s: it has %u disks and --disk gives %u", what, nr_saved, o->nr_disks);
    if (!o->nr_disks) {
        memcpy(o->disks, saved, nr_saved * sizeof(saved[0]));
        o->nr_disks = nr_saved;
    }
    if (o->console_given && virtio_console != !strcmp(o->console, "virtio"))
        fail("%s: its console is %s, so --console %s", what,
             virtio_console ? "a virtio console" : "the serial port",
             virtio_console ? "must be virtio" : "cannot be virtio");
    if (virtio_console)
        o->console = "virtio";
    free(buf);
}

/* The options of the run that snapshot_signal saves. */
static const struct options *snapshot_opts;
static atomic_bool snapshot_saved;

/* The signal: save the VM (which stays paused) and end the run; a failure
 * is reported and the VM goes on. Runs on the event loop's thread. */
static void save_snapshot(struct vmm_vm *vm)
{
    const struct options *o = snapshot_opts;
    size_t len = 0;
    char *desc = describe_vm(o, &len);
    if (!desc)
        fail("out of memory");
    struct vmm_snapshot_options so =
        VMM_INIT(struct vmm_snapshot_options, .app_data = desc, .app_len = (uint32_t)len);
    int r = vmm_vm_snapshot(vm, o->save_dir, &so);
    free(desc);
    if (r < 0) {
        fprintf(stderr, "%s: cannot save the VM to '%s': %s (it goes on)\n", prog, o->save_dir,
                vmm_strerror(r));
        (void)vmm_vm_resume(vm);
        return;
    }
    atomic_store(&snapshot_saved, true);
    vmm_vm_stop(vm);
}

/* ---- the control socket (--api-sock) ---- */

/*
 * One JSON object a line in each direction (json-c parses and prints them):
 *   {"cmd":"pause"}  {"cmd":"resume"}  {"cmd":"stop"}  {"cmd":"stats"}
 *   {"cmd":"snapshot","path":DIR[,"diff":BOOL]}   the VM stays paused
 *   {"cmd":"migrate","to":"unix:PATH"|"tcp:HOST:PORT"}   answered when done
 *   {"cmd":"balloon","target_mib":N}   with --balloon
 * each answered by {"ok":true[,...]} or {"ok":false,"error":"why"}. A line
 * that is not such a request (not JSON, not an object, an unknown command,
 * a field missing, unknown or of another type) is answered with an error
 * and changes nothing; a line longer than API_LINE is answered with an
 * error and its connection closed.
 */

#define API_CLIENTS 8
#define API_LINE    8192
#define API_DEPTH   4 /* json-c's nesting limit: requests are flat */

/* One connection: the bytes of a request line not complete yet. */
struct api_client {
    int fd; /* -1: free */
    struct vmm_vm *vm;
    size_t len;
    char buf[API_LINE];
};

static int api_listen_fd = -1;
static struct api_client api_clients[API_CLIENTS];
static bool api_paused; /* by pause or a snapshot, until resume */

static void api_close(struct vmm_event_loop *loop, struct api_client *c)
{
    if (c->fd < 0)
        return;
    if (loop)
        (void)vmm_event_loop_remove(loop, c->fd);
    close(c->fd);
    c->fd = -1;
}

/* Send reply (and put it) as one line on fd; NULL (out of memory) sends an
 * error of its own. A client that does not read its replies loses them,
 * not us a thread. */
static void api_send(int fd, struct json_object *reply)
{
    static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";
    static char nl[] = "\n";
    size_t n = 0;
    const char *s = reply ? json_object_to_json_string_length(
                                reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n)
                          : NULL;
    if (s) {
        struct iovec iov[2] = {{.iov_base = (void *)s, .iov_len = n},
                               {.iov_base = nl, .iov_len = 1}};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
        (void)sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
        (void)send(fd, oom, sizeof(oom) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    json_object_put(reply);
}

/* {"ok":true}, to add fields to; NULL when out of memory. */
static struct json_object *api_ok(void)
{
    struct json_object *o = json_object_new_object();
    if (o && json_object_object_add(o, "ok", json_object_new_boolean(1)) < 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* {"ok":false,"error":"why"}, why on one line; NULL when out of memory. */
static struct json_object *api_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct json_object *api_error(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(why, sizeof(why), "error");
    for (char *p = why; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    struct json_object *o = json_object_new_object();
    if (o && (json_object_object_add(o, "ok", json_object_new_boolean(0)) < 0 ||
              json_object_object_add(o, "error", json_object_new_string(why)) < 0)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Add key: a number to o (a reply being built; out of memory shows as a
 * missing field). */
static void api_add_u64(struct json_object *o, const char *key, uint64_t v)
{
    if (o)
        (void)json_object_object_add(o, key, json_object_new_uint64(v));
}

/* A migration the control socket started, on a thread of its own (the
 * event loop keeps serving the devices meanwhile). */
static atomic_bool migrating, migrated;
static struct vmm_migrate_result migrate_result; /* set before migrated */
static pthread_t migrate_thread;
static bool migrate_thread_started;
static char migrate_target[256]; /* unix:PATH or tcp:HOST:PORT */
/* Why the last migration failed ("" when none did); set before migrating
 * goes false. */
static char migrate_error[512];

/*
 * A stream socket for a migration endpoint, "unix:PATH" or "tcp:HOST:PORT":
 * connected to it, or (listening) bound to it and listening. Returns the fd,
 * or -1 with why filled.
 */
static int mig_socket(const char *spec, bool listening, char *why, size_t why_len)
{
    int fd = -1;
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (!spec[5] || strlen(spec + 5) >= sizeof(a.sun_path)) {
            snprintf(why, why_len, "a socket path of 1 to %zu bytes", sizeof(a.sun_path) - 1);
            return -1;
        }
        memcpy(a.sun_path, spec + 5, strlen(spec + 5) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 &&
            (listening ? bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0
                       : connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)) {
            snprintf(why, why_len, "%s", strerror(errno));
            close(fd);
            return -1;
        }
        return fd;
    }
    const char *colon = strncmp(spec, "tcp:", 4) == 0 ? strrchr(spec + 4, ':') : NULL;
    if (!colon || colon == spec + 4 || !colon[1] || colon - (spec + 4) >= 200) {
        snprintf(why, why_len, "not unix:PATH or tcp:HOST:PORT");
        return -1;
    }
    char host[200];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - (spec + 4)), spec + 4);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = listening ? AI_PASSIVE : 0};
    struct addrinfo *res = NULL;
    int e = getaddrinfo(host, colon + 1, &hints, &res);
    if (e) {
        snprintf(why, why_len, "%s", gai_strerror(e));
        return -1;
    }
    snprintf(why, why_len, "no address");
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        if (listening && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0)
            break;
        if (!listening && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        snprintf(why, why_len, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

struct migrate_job {
    struct vmm_vm *vm;
    int reply_fd; /* a dup of the client's connection */
};

static void *migrate_main(void *arg)
{
    struct migrate_job *job = arg;
    char why[512] = "";
    int r;
    char reason[200];
    int fd = mig_socket(migrate_target, false, reason, sizeof(reason));
    if (fd < 0) {
        r = -ECONNREFUSED;
        snprintf(why, sizeof(why), "cannot connect to '%s': %s", migrate_target, reason);
    } else {
        size_t len = 0;
        char *desc = describe_vm(snapshot_opts, &len);
        migrate_result = VMM_INIT(struct vmm_migrate_result);
        struct vmm_migrate_options mo =
            VMM_INIT(struct vmm_migrate_options, .app_data = desc, .app_len = (uint32_t)len,
                     .result = &migrate_result);
        r = desc ? vmm_vm_migrate_send(job->vm, fd, &mo) : -ENOMEM;
        if (r < 0)
            snprintf(why, sizeof(why), "%s (the VM goes on here)", vmm_strerror(r));
        free(desc);
    }
    if (fd >= 0)
        close(fd);
    struct json_object *reply;
    if (r < 0) {
        reply = api_error("%s", why);
    } else {
        reply = api_ok();
        api_add_u64(reply, "rounds", migrate_result.rounds);
        api_add_u64(reply, "pages", migrate_result.pages);
        api_add_u64(reply, "total_us", migrate_result.total_us);
        api_add_u64(reply, "downtime_us", migrate_result.downtime_us);
        /* How the memory went: its memfds handed over, or its pages copied. */
        (void)json_object_object_add(
            reply, "memory",
            json_object_new_string(migrate_result.flags & VMM_MIGRATE_MEMFD ? "memfd" : "copied"));
    }
    /* The outcome is what stats shows from the moment the reply is out, so
     * a client that asks right after it reads the reply sees this one. */
    snprintf(migrate_error, sizeof(migrate_error), "%s", r < 0 ? why : "");
    if (r == 0)
        atomic_store(&migrated, true);
    atomic_store(&migrating, false);
    api_send(job->reply_fd, reply);
    close(job->reply_fd);
    if (r == 0)
        vmm_vm_stop(job->vm);
    free(job);
    return NULL;
}

/* Start a migration to target; its thread answers c when it is done.
 * Returns NULL then, or the error reply. */
static struct json_object *api_migrate(struct api_client *c, const char *target)
{
    if ((strncmp(target, "unix:", 5) != 0 && strncmp(target, "tcp:", 4) != 0) ||
        strlen(target) >= sizeof(migrate_target))
        return api_error("\"to\" must be unix:PATH or tcp:HOST:PORT, of at most %zu bytes",
                         sizeof(migrate_target) - 1);
    if (atomic_exchange(&migrating, true))
        return api_error("a migration is under way");
    if (migrate_thread_started) {
        pthread_join(migrate_thread, NULL); /* an earlier one that failed */
        migrate_thread_started = false;
    }
    snprintf(migrate_target, sizeof(migrate_target), "%s", target);
    struct migrate_job *job = malloc(sizeof(*job));
    int dfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (!job || dfd < 0) {
        free(job);
        if (dfd >= 0)
            close(dfd);
        atomic_store(&migrating, false);
        return api_error("out of memory or file descriptors");
    }
    *job = (struct migrate_job){.vm = c->vm, .reply_fd = dfd};
    if (pthread_create(&migrate_thread, NULL, migrate_main, job) != 0) {
        close(dfd);
        free(job);
        atomic_store(&migrating, false);
        return api_error("cannot start the migration");
    }
    migrate_thread_started = true;
    return NULL;
}

/* {"cmd":"stats"}: what the VM is doing and holds. */
static struct json_object *api_stats(void)
{
    struct json_object *reply = api_ok();
    if (!reply)
        return NULL;
    bool busy = atomic_load(&migrating);
    const char *state = busy ? "migrating" : api_paused ? "paused" : "running";
    (void)json_object_object_add(reply, "state", json_object_new_string(state));
    api_add_u64(reply, "vcpus", snapshot_opts->vcpus);
    api_add_u64(reply, "memory_mib", snapshot_opts->mem_size >> 20);
    if (the_balloon) {
        struct vmm_virtio_balloon_stats bs = VMM_INIT(struct vmm_virtio_balloon_stats);
        struct json_object *b = json_object_new_object();
        if (b && vmm_virtio_balloon_get_stats(the_balloon, &bs) == 0) {
            static const char *const guest[VMM_VIRTIO_BALLOON_S_NR] = {
                "swap_in",         "swap_out",    "major_faults",
                "minor_faults",    "free_bytes",  "total_bytes",
                "available_bytes", "cache_bytes", "hugetlb_allocations",
                "hugetlb_failures"};
            api_add_u64(b, "target_mib", (uint64_t)bs.target_pages >> 8);
            api_add_u64(b, "actual_mib", (uint64_t)bs.actual_pages >> 8);
            api_add_u64(b, "inflated_pages", bs.inflated_pages);
            api_add_u64(b, "deflated_pages", bs.deflated_pages);
            api_add_u64(b, "returned_bytes", bs.returned_bytes);
            api_add_u64(b, "reported_bytes", bs.reported_bytes);
            api_add_u64(b, "stats_updates", bs.stats_updates);
            for (unsigned i = 0; i < VMM_VIRTIO_BALLOON_S_NR; i++)
                if (bs.guest_valid & (1u << i))
                    api_add_u64(b, guest[i], bs.guest[i]);
        }
        (void)json_object_object_add(reply, "balloon", b);
    }
    if (!busy && (migrate_error[0] || atomic_load(&migrated))) {
        struct json_object *m = json_object_new_object();
        if (m && migrate_error[0]) {
            (void)json_object_object_add(m, "ok", json_object_new_boolean(0));
            (void)json_object_object_add(m, "error", json_object_new_string(migrate_error));
        } else if (m) {
            (void)json_object_object_add(m, "ok", json_object_new_boolean(1));
            api_add_u64(m, "total_us", migrate_result.total_us);
            api_add_u64(m, "downtime_us", migrate_result.downtime_us);
        }
        (void)json_object_object_add(reply, "migration", m);
    }
    return reply;
}

/* The requests: each command's fields besides "cmd", the required first. */
static const struct api_cmd {
    const char *name;
    const char *fields[2];
    unsigned required;
} api_cmds[] = {
    {"pause", {NULL}, 0},
    {"resume", {NULL}, 0},
    {"stop", {NULL}, 0},
    {"stats", {NULL}, 0},
    {"snapshot", {"path", "diff"}, 1},
    {"migrate", {"to"}, 1},
    {"balloon", {"target_mib"}, 1},
};

/* Field key of req: its value, NULL when absent; *bad set (an error reply)
 * when it is not of type t, or, for a string, empty or holding a NUL. */
static struct json_object *api_field(struct json_object *req, const char *key, enum json_type t,
                                     struct json_object **bad)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(req, key, &v))
        return NULL;
    if (!json_object_is_type(v, t)) {
        *bad = api_error("\"%s\" must be %s", key,
                         t == json_type_string ? "a string"
                         : t == json_type_int  ? "an integer"
                                               : "true or false");
        return NULL;
    }
    if (t == json_type_string &&
        (json_object_get_string_len(v) == 0 ||
         strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))) {
        *bad = api_error("\"%s\" must be a non-empty string without NUL bytes", key);
        return NULL;
    }
    return v;
}

/* Parse the request in line (len bytes, no newline) into an object, or
 * fill *bad with the error reply. */
static struct json_object *api_parse(const char *line, size_t len, struct json_object **bad)
{
    if (memchr(line, '\0', len)) {
        *bad = api_error("a NUL byte in the request");
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(API_DEPTH);
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *req = json_tokener_parse_ex(tok, line, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (req && end < len && (line[end] == ' ' || line[end] == '\t'))
        end++;
    if (!req && e == json_tokener_continue)
        *bad = api_error("not a request: incomplete JSON");
    else if (e != json_tokener_success)
        *bad = api_error("not a request: bad JSON (%s)", json_tokener_error_desc(e));
    else if (end < len)
        *bad = api_error("not a request: more than one JSON value on the line");
    else if (!json_object_is_type(req, json_type_object))
        *bad = api_error("not a request: a request is a JSON object with a \"cmd\"");
    else
        return req;
    json_object_put(req);
    return NULL;
}

/* Check req against its command: the command, or NULL with *bad set. */
static const struct api_cmd *api_check(struct json_object *req, struct json_object **bad)
{
    struct json_object *v = api_field(req, "cmd", json_type_string, bad);
    if (!v) {
        if (!*bad)
            *bad = api_error("no \"cmd\" in the request");
        return NULL;
    }
    const char *name = json_object_get_string(v);
    const struct api_cmd *cmd = NULL;
    for (size_t i = 0; i < VMM_ARRAY_LEN(api_cmds) && !cmd; i++)
        if (strcmp(name, api_cmds[i].name) == 0)
            cmd = &api_cmds[i];
    if (!cmd) {
        *bad = api_error("unknown cmd '%.64s' (pause, resume, snapshot, migrate, balloon, "
                         "stats, stop)",
                         name);
        return NULL;
    }
    json_object_object_foreach(req, key, val)
    {
        (void)val;
        bool known = strcmp(key, "cmd") == 0;
        for (unsigned i = 0; i < 2 && cmd->fields[i] && !known; i++)
            known = strcmp(key, cmd->fields[i]) == 0;
        if (!known) {
            *bad = api_error("unknown field '%.64s' for %s", key, cmd->name);
            return NULL;
        }
    }
    for (unsigned i = 0; i < cmd->required; i++)
        if (!json_object_object_get_ex(req, cmd->fields[i], NULL)) {
            *bad = api_error("%s needs \"%s\"", cmd->name, cmd->fields[i]);
            return NULL;
        }
    return cmd;
}

/* Run one request (on the event loop's thread): the reply, NULL when out
 * of memory or when a thread answers later (*later set). */
static struct json_object *api_request(struct api_client *c, struct json_object *req, bool *later)
{
    struct vmm_vm *vm = c->vm;
    struct json_object *bad = NULL;
    const struct api_cmd *cmd = api_check(req, &bad);
    if (!cmd)
        return bad;
    const char *name = cmd->name;
    if (strcmp(name, "stats") == 0)
        return api_stats();
    if (strcmp(name, "stop") == 0) {
        vmm_vm_stop(vm);
        return api_ok();
    }
    if (strcmp(name, "balloon") == 0) {
        struct json_object *v = api_field(req, "target_mib", json_type_int, &bad);
        if (!v)
            return bad;
        int64_t mib = json_object_get_int64(v);
        uint64_t mem_mib = snapshot_opts->mem_size >> 20;
        if (!the_balloon)
            return api_error("no balloon (start vmm-run with --balloon)");
        if (mib < 0 || (uint64_t)mib > mem_mib)
            return api_error("\"target_mib\" must be 0 to %llu (the VM's memory)",
                             (unsigned long long)mem_mib);
        int r = vmm_virtio_balloon_set_target(the_balloon, (uint64_t)mib << 20);
        if (r < 0)
            return api_error("cannot set the balloon's target: %s", vmm_strerror(r));
        struct json_object *reply = api_ok();
        api_add_u64(reply, "target_mib", (uint64_t)mib);
        return reply;
    }
    if (atomic_load(&migrating))
        return api_error("a migration is under way");
    if (strcmp(name, "migrate") == 0) {
        struct json_object *v = api_field(req, "to", json_type_string, &bad);
        if (!v)
            return bad;
        struct json_object *e = api_migrate(c, json_object_get_string(v));
        *later = !e;
        return e;
    }
    int r;
    char why[256] = "";
    if (strcmp(name, "pause") == 0) {
        r = vmm_vm_pause(vm);
        api_paused = api_paused || r == 0;
    } else if (strcmp(name, "resume") == 0) {
        r = vmm_vm_resume(vm);
        api_paused = api_paused && r < 0;
    } else { /* snapshot */
        struct json_object *path = api_field(req, "path", json_type_string, &bad);
        struct json_object *diff = bad ? NULL : api_field(req, "diff", json_type_boolean, &bad);
        if (bad)
            return bad;
        size_t len = 0;
        char *desc = describe_vm(snapshot_opts, &len);
        if (!desc)
            return NULL;
        struct vmm_snapshot_options so =
            VMM_INIT(struct vmm_snapshot_options, .app_data = desc, .app_len = (uint32_t)len,
                     .flags = diff && json_object_get_boolean(diff) ? VMM_SNAPSHOT_DIFF : 0);
        held_error = why;
        held_error_size = sizeof(why);
        r = vmm_vm_snapshot(vm, json_object_get_string(path), &so);
        held_error = NULL;
        free(desc);
        api_paused = api_paused || r == 0;
    }
    if (r < 0)
        return api_error("%s", why[0] ? why : vmm_strerror(r));
    return api_ok();
}

/* One line from c: parse it, run it, answer it. */
static void api_line(struct api_client *c, const char *line, size_t len)
{
    struct json_object *bad = NULL;
    struct json_object *req = api_parse(line, len, &bad);
    bool later = false;
    struct json_object *reply = req ? api_request(c, req, &later) : bad;
    json_object_put(req);
    if (!later)
        api_send(c->fd, reply);
}

static void api_readable(void *opaque, int fd, uint32_t events)
{
    struct api_client *c = opaque;
    struct vmm_event_loop *loop = vmm_vm_event_loop(c->vm);
    (void)events;
    ssize_t n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        api_close(loop, c);
        return;
    }
    c->len += (size_t)n;
    char *nl;
    while (c->fd >= 0 && (nl = memchr(c->buf, '\n', c->len))) {
        size_t used = (size_t)(nl - c->buf) + 1, len = used - 1;
        if (len && c->buf[len - 1] == '\r')
            len--;
        api_line(c, c->buf, len);
        memmove(c->buf, nl + 1, c->len - used);
        c->len -= used;
    }
    if (c->len == sizeof(c->buf)) {
        api_send(c->fd, api_error("request longer than %d bytes: closing", API_LINE - 1));
        api_close(loop, c);
    }
}

static void api_accept(void *opaque, int fd, uint32_t events)
{
    struct vmm_vm *vm = opaque;
    (void)events;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0)
        return;
    for (unsigned i = 0; i < API_CLIENTS; i++) {
        struct api_client *c = &api_clients[i];
        if (c->fd >= 0)
            continue;
        *c = (struct api_client){.fd = cfd, .vm = vm};
        if (vmm_event_loop_add(vmm_vm_event_loop(vm), cfd, EPOLLIN, api_readable, c) == 0)
            return;
        c->fd = -1;
        break;
    }
    api_send(cfd, api_error("too many connections"));
    close(cfd);
}

/* --migrate-listen: take one connection, read the VM's description from the
 * source and shape o after it; run_vm then receives the VM itself. */
static void wait_for_migration(struct options *o)
{
    char why_sock[200];
    int fd = mig_socket(o->migrate_listen, true, why_sock, sizeof(why_sock));
    if (fd < 0)
        fail("cannot listen on '%s': %s", o->migrate_listen, why_sock);
    int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        fail("cannot accept a migration on '%s': %s", o->migrate_listen, strerror(errno));
    close(fd);
    if (strncmp(o->migrate_listen, "unix:", 5) == 0)
        unlink(o->migrate_listen + 5);
    static char blob[64 << 10];
    size_t len = 0;
    char why[256] = "";
    held_error = why;
    held_error_size = sizeof(why);
    int r = vmm_migrate_recv_hello(conn, blob, sizeof(blob) - 1, &len);
    held_error = NULL;
    if (r < 0)
        fail("cannot receive the VM: %s", why[0] ? why : vmm_strerror(r));
    char *buf = malloc(len + 1);
    if (!buf)
        fail("out of memory");
    memcpy(buf, blob, len);
    buf[len] = '\0';
    parse_vm_description(buf, len, "cannot receive the VM", o);
    o->migrate_fd = conn;
}

/* Bind the socket before the first VM, so that a bad path fails at once. */
static void api_open(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0)
        fail("cannot listen on '%s': %s", path, strerror(errno));
    api_listen_fd = fd;
    /* json-c seeds its string hash at its first object key (getrandom, or
     * reading /dev/urandom): have that happen here, before the filters. */
    json_object_put(json_tokener_parse("{\"cmd\":\"stats\"}"));
    for (unsigned i = 0; i < API_CLIENTS; i++)
        api_clients[i].fd = -1;
}

/* Build one VM, run it to the end, tear it down; returns how the run ended. */
/* CLOCK_MONOTONIC when vmm-run started, in nanoseconds (--stats). */
static uint64_t start_ns;

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_since_start(uint64_t t)
{
    return t ? (double)(int64_t)(t - start_ns) / 1e6 : 0.0;
}

/* --stats: each network device's frames, and for each of its queues the
 * chains it used and the interrupts it sent or the driver suppressed. */
static void print_net_stats(FILE *f)
{
    for (unsigned i = 0; i < MAX_NETS && the_nets[i]; i++) {
        struct vmm_virtio_transport *t = the_nets[i];
        struct vmm_virtio_net_stats ns = VMM_INIT(struct vmm_virtio_net_stats);
        if (vmm_virtio_net_get_stats(t, &ns) < 0)
            continue;
        fprintf(f,
                "%s: stats: net%u: tx %llu frames %llu bytes (%llu dropped), rx %llu frames "
                "%llu bytes in %llu buffers (%llu dropped), %u pair(s) active\n",
                prog, i, (unsigned long long)ns.tx_packets, (unsigned long long)ns.tx_bytes,
                (unsigned long long)ns.tx_dropped, (unsigned long long)ns.rx_packets,
                (unsigned long long)ns.rx_bytes, (unsigned long long)ns.rx_buffers,
                (unsigned long long)ns.rx_dropped, ns.queue_pairs_active);
        vmm_virtio_lock(t);
        for (unsigned q = 0;; q++) {
            struct vmm_virtq *vq = vmm_virtio_queue(t, q);
            struct vmm_virtq_stats qs = VMM_INIT(struct vmm_virtq_stats);
            if (!vq || vmm_virtq_get_stats(vq, &qs) < 0)
                break;
            fprintf(f, "  net%u queue %u: %llu chains, %llu interrupts, %llu suppressed\n", i, q,
                    (unsigned long long)qs.pushed, (unsigned long long)qs.interrupts,
                    (unsigned long long)qs.suppressed);
        }
        vmm_virtio_unlock(t);
    }
}

/* --stats: the run's exit profile, the busiest first. */
static void print_stats(struct vmm_vm *vm, FILE *f)
{
    uint64_t end = monotonic_ns();
    struct vmm_stats st = VMM_INIT(struct vmm_stats);
    int r = vmm_vm_stats_read(vm, &st);
    if (r < 0) {
        fprintf(stderr, "%s: cannot read the exit profile: %s\n", prog, vmm_strerror(r));
        return;
    }
    fprintf(f,
            "%s: stats: since vmm-run started: VM created %.1f ms, first guest entry %.1f ms, "
            "run ended %.1f ms\n",
            prog, ms_since_start(st.created_ns), ms_since_start(st.first_run_ns),
            ms_since_start(end));
    fprintf(f,
            "%s: stats: %llu exits to vmm-run; in KVM_RUN %.1f ms, from exits to re-entry "
            "%.1f ms (summed over vCPUs)\n",
            prog, (unsigned long long)st.exits, (double)st.guest_ns / 1e6,
            (double)st.exit_ns / 1e6);
    /* Reasons, the most time first: a selection sort over the few there are. */
    bool shown[VMM_STATS_REASONS] = {false};
    fprintf(f, "  %-20s %10s %10s %9s\n", "exit reason", "count", "ms", "us/exit");
    for (;;) {
        int best = -1;
        for (int i = 0; i < VMM_STATS_REASONS; i++)
            if (!shown[i] && st.reasons[i].count &&
                (best < 0 || st.reasons[i].ns > st.reasons[best].ns))
                best = i;
        if (best < 0)
            break;
        shown[best] = true;
        const struct vmm_stats_count *c = &st.reasons[best];
        fprintf(f, "  %-20s %10llu %10.1f %9.1f\n", vmm_kvm_exit_reason_name((uint32_t)best),
                (unsigned long long)c->count, (double)c->ns / 1e6,
                (double)c->ns / 1e3 / (double)c->count);
    }
    fprintf(f, "  %-20s %10s %10s %9s\n", "site", "count", "ms", "us/exit");
    for (uint32_t i = 0; i < st.nr_sites && i < 20; i++) {
        const struct vmm_stats_site *s = &st.sites[i];
        const char *what = s->kvm_reason == KVM_EXIT_IO ? (s->write ? "out" : "in")
                           : s->kvm_reason == KVM_EXIT_MMIO
                               ? (s->write ? "mmio-wr" : "mmio-rd")
                               : vmm_kvm_exit_reason_name(s->kvm_reason);
        char site[40];
        snprintf(site, sizeof(site), "%s 0x%llx", what, (unsigned long long)s->addr);
        fprintf(f, "  %-20s %10llu %10.1f %9.1f\n", site, (unsigned long long)s->count,
                (double)s->ns / 1e6, (double)s->ns / 1e3 / (double)s->count);
    }
    uint64_t more_count = st.other_count, more_ns = st.other_ns;
    for (uint32_t i = 20; i < st.nr_sites; i++) {
        more_count += st.sites[i].count;
        more_ns += st.sites[i].ns;
    }
    if (more_count)
        fprintf(f, "  %-20s %10llu %10.1f\n", "other sites", (unsigned long long)more_count,
                (double)more_ns / 1e6);
    print_net_stats(f);
    fflush(f);
}

static struct vmm_exit run_vm(const struct options *o, int sfd)
{
    struct vmm_vm *vm;
    int r = vmm_vm_create(&o->cfg, &vm);
    if (r < 0)
        fail("cannot create the VM: %s", vmm_strerror(r));
    add_memory(vm, o);

    struct vmm_machine machine = {
        .size = sizeof(struct vmm_machine), .nr_vcpus = o->vcpus, .mem = vmm_vm_memory(vm)};
    add_platform_devices(vm, o, &machine);
    add_virtio_devices(vm, o, &machine);
    /* The PCI address latch (0xCF8): its writes only matter to the data
     * access that follows, so they need not exit (a PCI scan costs one exit
     * per probe instead of two). Without KVM's support, they exit. */
    r = vmm_vm_coalesce_writes(vm, 0xcf8, 4, true);
    if (r < 0 && r != -ENOTSUP)
        fail("cannot coalesce writes to port 0xcf8: %s", vmm_strerror(r));
    struct vmm_vfio_container *vfio = add_vfio_devices(vm, o, &machine);

    for (unsigned i = 0; i < o->vcpus; i++) {
        struct vmm_vcpu *vcpu;
        r = vmm_vcpu_create(vm, i, &vcpu);
        if (r < 0)
            fail("cannot create vCPU %u: %s", i, vmm_strerror(r));
    }
    if (o->cpu_disable)
        for (unsigned i = 0; i < o->vcpus; i++)
            apply_cpu_features(vmm_vm_vcpu(vm, i), o->cpu_disable);

    if (o->migrate_fd >= 0) {
        char why[256] = "";
        held_error = why;
        held_error_size = sizeof(why);
        r = vmm_vm_migrate_recv(vm, o->migrate_fd);
        held_error = NULL;
        close(o->migrate_fd);
        if (r < 0)
            fail("cannot receive the VM: %s", why[0] ? why : vmm_strerror(r));
    } else if (o->restore_dir) {
        char why[256] = "";
        struct vmm_restore_options ro =
            VMM_INIT(struct vmm_restore_options, .memory = o->restore_memory);
        held_error = why;
        held_error_size = sizeof(why);
        r = vmm_vm_restore(vm, o->restore_dir, &ro);
        held_error = NULL;
        if (r < 0)
            fail("cannot restore '%s': %s", o->restore_dir, why[0] ? why : vmm_strerror(r));
    } else {
        enum boot_kind kind = o->boot == BOOT_AUTO ? classify_image(o->kernel) : o->boot;
        if (kind == BOOT_PROGRAM && o->kernel_cache)
            fail("--kernel-cache is for a Linux bzImage, not '%s'", o->kernel);
        if (kind == BOOT_PROGRAM)
            boot_program(vm, o);
        else
            boot_linux(vm, o, kind, &machine);
    }

    /* The control socket's diff snapshots need every page the guest or the
     * devices write from the first snapshot on: log them from the start. */
    for (unsigned i = 0; o->api_sock && i < vmm_memory_region_count(vmm_vm_memory(vm)); i++)
        if ((r = vmm_vm_dirty_log_start(vm, i)) < 0)
            fail("cannot log dirty pages for diff snapshots: %s", vmm_strerror(r));
    if (sfd >= 0 && vmm_event_loop_add(vmm_vm_event_loop(vm), sfd, EPOLLIN, on_signal, vm) < 0)
        fail("cannot watch for SIGINT/SIGTERM");
    install_seccomp(vm, o);
    if (api_listen_fd >= 0 &&
        vmm_event_loop_add(vmm_vm_event_loop(vm), api_listen_fd, EPOLLIN, api_accept, vm) < 0)
        fail("cannot watch the control socket");
    if (o->stats && (r = vmm_vm_stats_enable(vm)) < 0)
        fail("cannot turn the exit profile on: %s", vmm_strerror(r));
    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    r = vmm_vm_run(vm, &ex);
    if (r < 0)
        fail("cannot run the VM: %s", vmm_strerror(r));
    if (o->stats)
        print_stats(vm, o->stats_out);
    if (ex.reason == VMM_EXIT_STOPPED && o->verbose)
        report_vcpus(vm, o->vcpus);
    if (migrate_thread_started) {
        pthread_join(migrate_thread, NULL);
        migrate_thread_started = false;
    }
    /* Connections belong to this VM: a restarted one starts without them. */
    for (unsigned i = 0; i < API_CLIENTS && api_listen_fd >= 0; i++)
        api_close(vmm_vm_event_loop(vm), &api_clients[i]);
    api_paused = false;
    vmm_vm_destroy(vm);
    the_pci_bus = NULL;
    the_balloon = NULL;
    memset(the_nets, 0, sizeof(the_nets));
    vmm_vfio_container_close(vfio);
    return ex;
}

/* What parse_options asks of main besides running the VM it describes. */
enum parse_result {
    PARSE_ERROR = -1, /* *e says why, in one line */
    PARSE_RUN,        /* o describes the VM to run */
    PARSE_HELP,       /* -h: print the usage, exit 0 */
    PARSE_VERSION,    /* -V: print the version, exit 0 */
    PARSE_CPU_HELP,   /* --cpu-disable help: list the features, exit 0 */
};

/* Parse vmm-run's command line into *o without side effects beyond getopt's
 * state (restarted here) and argv's option values, which o points into (and
 * --disk/--net cut up). On PARSE_ERROR, *e is a heap string (the caller
 * frees it) naming the problem; *o may be half filled and is released by
 * free_options either way. */
static enum parse_result parse_options(int argc, char **argv, struct options *o, char **e)
{
    enum {
        OPT_CONSOLE = 256,
        OPT_IRQCHIP,
        OPT_INITRD,
        OPT_CMDLINE,
        OPT_BOOT,
        OPT_CPU_DISABLE,
        OPT_ON_REBOOT,
        OPT_RNG,
        OPT_DISK,
        OPT_SECCOMP,
        OPT_TRANSPORT,
        OPT_NET,
        OPT_BALLOON,
        OPT_VSOCK,
        OPT_SAVE,
        OPT_SNAPSHOT_ON,
        OPT_RESTORE,
        OPT_RESTORE_MEMORY,
        OPT_API_SOCK,
        OPT_VFIO,
        OPT_MIGRATE_LISTEN,
        OPT_THP,
        OPT_MEM_BACKING,
        OPT_MEM_MERGE,
        OPT_STATS,
        OPT_KERNEL_CACHE,
    };
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"boot", required_argument, NULL, OPT_BOOT},
        {"mem", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'c'},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"rng", no_argument, NULL, OPT_RNG},
        {"disk", required_argument, NULL, OPT_DISK},
        {"transport", required_argument, NULL, OPT_TRANSPORT},
        {"net", required_argument, NULL, OPT_NET},
        {"balloon", optional_argument, NULL, OPT_BALLOON},
        {"vsock", required_argument, NULL, OPT_VSOCK},
        {"irqchip", required_argument, NULL, OPT_IRQCHIP},
        {"cpu-disable", required_argument, NULL, OPT_CPU_DISABLE},
        {"on-reboot", required_argument, NULL, OPT_ON_REBOOT},
        {"seccomp", required_argument, NULL, OPT_SECCOMP},
        {"save", required_argument, NULL, OPT_SAVE},
        {"snapshot-on", required_argument, NULL, OPT_SNAPSHOT_ON},
        {"restore", required_argument, NULL, OPT_RESTORE},
        {"restore-memory", required_argument, NULL, OPT_RESTORE_MEMORY},
        {"api-sock", required_argument, NULL, OPT_API_SOCK},
        {"vfio", required_argument, NULL, OPT_VFIO},
        {"migrate-listen", required_argument, NULL, OPT_MIGRATE_LISTEN},
        {"thp", no_argument, NULL, OPT_THP},
        {"mem-backing", required_argument, NULL, OPT_MEM_BACKING},
        {"mem-merge", no_argument, NULL, OPT_MEM_MERGE},
        {"stats", optional_argument, NULL, OPT_STATS},
        {"kernel-cache", required_argument, NULL, OPT_KERNEL_CACHE},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.console = "stdio",
                          .migrate_fd = -1,
                          .pci = true,
                          .mem_size = DEFAULT_MEM,
                          .vcpus = 1,
                          .seccomp = 1 + VMM_SECCOMP_TRAP,
                          .cfg = VMM_INIT(struct vmm_vm_config)};

    *e = NULL;
    int c;
    opterr = 0;
    optind = 0; /* a full restart: parse_options may run more than once */
    while ((c = getopt_long(argc, argv, ":k:m:c:vhV", opts, NULL)) != -1) {
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
        case OPT_BOOT:
            o->machine_opt = "--boot";
            if (strcmp(optarg, "auto") == 0)
                o->boot = BOOT_AUTO;
            else if (strcmp(optarg, "program") == 0)
                o->boot = BOOT_PROGRAM;
            else if (strcmp(optarg, "linux") == 0)
                o->boot = BOOT_LINUX;
            else if (strcmp(optarg, "pvh") == 0)
                o->boot = BOOT_PVH;
            else
                return opt_error(e, "invalid boot protocol '%s' (auto, linux, pvh or program)",
                                 optarg);
            break;
        case 'm':
            o->machine_opt = "--mem";
            o->mem_size = parse_size(optarg);
            if (o->mem_size == 0)
                return opt_error(e, "invalid memory size '%s' (use e.g. 128M or 1G)", optarg);
            break;
        case 'c': {
            o->machine_opt = "--vcpus";
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-' || v < 1 || v > MAX_VCPUS)
                return opt_error(e, "invalid vCPU count '%s' (1-%d)", optarg, MAX_VCPUS);
            o->vcpus = (unsigned)v;
            break;
        }
        case OPT_CONSOLE:
            o->console = optarg;
            o->console_given = true;
            break;
        case OPT_IRQCHIP:
            o->machine_opt = "--irqchip";
            if (strcmp(optarg, "split") == 0)
                o->cfg.irqchip = VMM_IRQCHIP_SPLIT;
            else if (strcmp(optarg, "kernel") == 0)
                o->cfg.irqchip = VMM_IRQCHIP_KERNEL;
            else
                return opt_error(e, "invalid interrupt controller '%s' (split or kernel)", optarg);
            break;
        case OPT_CPU_DISABLE:
            if (strcmp(optarg, "help") == 0)
                return PARSE_CPU_HELP;
            if (check_cpu_features(optarg, e) < 0)
                return PARSE_ERROR;
            o->machine_opt = "--cpu-disable";
            if (o->cpu_disable) { /* repeated: the lists add up */
                char *both = NULL;
                if (asprintf(&both, "%s,%s", o->cpu_disable, optarg) < 0)
                    return opt_error(e, "out of memory");
                free(o->cpu_disable_joined);
                o->cpu_disable = o->cpu_disable_joined = both;
            } else {
                o->cpu_disable = optarg;
            }
            break;
        case OPT_RNG:
            o->machine_opt = "--rng";
            o->rng = true;
            break;
        case OPT_DISK: {
            if (o->nr_disks == MAX_DISKS)
                return opt_error(e, "too many --disk options (at most %d)", MAX_DISKS);
            struct vmm_virtio_blk_config *disk = &o->disks[o->nr_disks++];
            *disk = VMM_INIT(struct vmm_virtio_blk_config, .path = optarg);
            /* Trailing ",ro", ",rw" and ",direct" are options (the last of
             * ro/rw wins); anything else after a comma is part of the path.
             * Options are peeled from the end, so the first one seen is the
             * last given. */
            bool mode_set = false;
            for (char *comma; (comma = strrchr(optarg, ','));) {
                if (strcmp(comma, ",ro") == 0 || strcmp(comma, ",rw") == 0) {
                    if (!mode_set)
                        disk->readonly = comma[2] == 'o';
                    mode_set = true;
                } else if (strcmp(comma, ",direct") == 0) {
                    disk->direct = true;
                } else {
                    break;
                }
                *comma = '\0';
            }
            if (!*disk->path)
                return opt_error(e, "--disk needs a file or block device (PATH[,ro][,direct])");
            break;
        }
        case OPT_TRANSPORT:
            if (strcmp(optarg, "mmio") == 0)
                o->pci = false;
            else if (strcmp(optarg, "pci") == 0)
                o->pci = true;
            else
                return opt_error(e, "invalid --transport '%s' (mmio or pci)", optarg);
            o->machine_opt = "--transport"; /* a snapshot's description brings it back */
            break;
        case OPT_NET:
            if (o->nr_nets == MAX_NETS)
                return opt_error(e, "too many --net options (at most %d)", MAX_NETS);
            if (parse_net(optarg, &o->nets[o->nr_nets++], e) < 0)
                return PARSE_ERROR;
            break;
        case OPT_BALLOON:
            if (o->balloon)
                return opt_error(e, "--balloon given twice");
            o->balloon = true;
            o->machine_opt = "--balloon"; /* a snapshot's description brings it back */
            if (optarg && parse_balloon(optarg, &o->balloon_cfg, e) < 0)
                return PARSE_ERROR;
            if (!optarg)
                o->balloon_cfg = VMM_INIT(struct vmm_virtio_balloon_config);
            break;
        case OPT_VSOCK:
            if (o->vsock)
                return opt_error(e, "--vsock given twice");
            o->vsock = true;
            if (parse_vsock(optarg, &o->vsock_cfg, e) < 0)
                return PARSE_ERROR;
            break;
        case OPT_ON_REBOOT:
            if (strcmp(optarg, "exit") == 0)
                o->restart_on_reboot = false;
            else if (strcmp(optarg, "restart") == 0)
                o->restart_on_reboot = true;
            else
                return opt_error(e, "invalid --on-reboot action '%s' (exit or restart)", optarg);
            break;
        case OPT_SECCOMP:
            if (strcmp(optarg, "kill") == 0)
                o->seccomp = 1 + VMM_SECCOMP_TRAP; /* reported by on_sigsys, then exit */
            else if (strcmp(optarg, "log") == 0)
                o->seccomp = 1 + VMM_SECCOMP_LOG;
            else if (strcmp(optarg, "off") == 0)
                o->seccomp = SECCOMP_OFF;
            else
                return opt_error(e, "invalid --seccomp mode '%s' (kill, log or off)", optarg);
            break;
        case OPT_VFIO:
            if (o->nr_vfio == MAX_VFIO)
                return opt_error(e, "too many --vfio options (at most %d)", MAX_VFIO);
            o->vfio[o->nr_vfio++] = optarg;
            o->machine_opt = "--vfio";
            break;
        case OPT_SAVE:
            if (!*optarg)
                return opt_error(e, "--save needs a directory");
            o->save_dir = optarg;
            break;
        case OPT_SNAPSHOT_ON:
            if (strcmp(optarg, "USR1") == 0 || strcmp(optarg, "SIGUSR1") == 0)
                o->snapshot_signal = SIGUSR1;
            else if (strcmp(optarg, "USR2") == 0 || strcmp(optarg, "SIGUSR2") == 0)
                o->snapshot_signal = SIGUSR2;
            else
                return opt_error(e, "invalid --snapshot-on signal '%s' (USR1 or USR2)", optarg);
            break;
        case OPT_API_SOCK:
            if (!*optarg || strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return opt_error(e, "--api-sock needs a socket path of at most %zu bytes",
                                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            o->api_sock = optarg;
            break;
        case OPT_THP:
            o->thp = true;
            break;
        case OPT_MEM_BACKING:
            if (strcmp(optarg, "anon") == 0)
                o->mem_backing = VMM_MEMORY_ANON;
            else if (strcmp(optarg, "memfd") == 0)
                o->mem_backing = VMM_MEMORY_MEMFD;
            else
                return opt_error(e, "invalid --mem-backing '%s' (anon or memfd)", optarg);
            o->mem_backing_given = true;
            break;
        case OPT_MEM_MERGE:
            o->mem_merge = true;
            break;
        case OPT_MIGRATE_LISTEN: {
            /* What follows the scheme must not be empty ("tcp:" alone ends there). */
            const char *rest = strncmp(optarg, "unix:", 5) == 0  ? optarg + 5
                               : strncmp(optarg, "tcp:", 4) == 0 ? optarg + 4
                                                                 : NULL;
            if (!rest || !*rest)
                return opt_error(e, "invalid --migrate-listen '%s' (unix:PATH or tcp:HOST:PORT)",
                                 optarg);
            o->migrate_listen = optarg;
            break;
        }
        case OPT_RESTORE:
            if (!*optarg)
                return opt_error(e, "--restore needs a snapshot directory");
            o->restore_dir = optarg;
            break;
        case OPT_RESTORE_MEMORY:
            if (strcmp(optarg, "eager") == 0)
                o->restore_memory = VMM_RESTORE_EAGER;
            else if (strcmp(optarg, "lazy") == 0)
                o->restore_memory = VMM_RESTORE_LAZY;
            else if (strcmp(optarg, "uffd") == 0)
                o->restore_memory = VMM_RESTORE_UFFD;
            else
                return opt_error(e, "invalid --restore-memory '%s' (eager, lazy or uffd)", optarg);
            o->restore_memory_given = true;
            break;
        case OPT_STATS:
            if (optarg && !*optarg)
                return opt_error(e, "--stats= needs a file name (or no '=' for stderr)");
            o->stats = optarg ? optarg : "";
            break;
        case OPT_KERNEL_CACHE:
            if (!*optarg)
                return opt_error(e, "--kernel-cache needs a directory");
            o->kernel_cache = optarg;
            o->machine_opt = "--kernel-cache"; /* it loads a kernel: not with --restore */
            break;
        case 'v':
            o->verbose++;
            break;
        case 'h':
            return PARSE_HELP;
        case 'V':
            return PARSE_VERSION;
        case ':':
            return opt_error(e, "option '%s' needs a value (see --help)", argv[optind - 1]);
        default:
            if (optopt) /* a short option, perhaps inside a cluster like -kv */
                return opt_error(e, "unknown option '-%c' (see --help)", optopt);
            return opt_error(e, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return opt_error(e, "unexpected argument '%s' (see --help)", argv[optind]);
    if (o->snapshot_signal && !o->save_dir)
        return opt_error(e, "--snapshot-on needs --save DIR");
    if (o->save_dir && !o->snapshot_signal)
        o->snapshot_signal = SIGUSR1;
    if (o->migrate_listen && o->restore_dir)
        return opt_error(e, "--migrate-listen and --restore both bring a VM: choose one");
    if (o->nr_vfio && (o->save_dir || o->api_sock))
        return opt_error(
            e,
            "--vfio cannot be combined with %s (a passed-through device's state cannot be "
            "saved)",
            o->save_dir ? "--save" : "--api-sock");
    if (o->migrate_listen) {
        if (o->kernel || o->initrd || o->cmdline || o->machine_opt)
            return opt_error(e, "--migrate-listen takes the machine from the source: drop %s",
                             o->kernel    ? "--kernel"
                             : o->initrd  ? "--initrd"
                             : o->cmdline ? "--cmdline"
                                          : o->machine_opt);
        if (o->restart_on_reboot || o->restore_memory_given)
            return opt_error(e, "--migrate-listen cannot be combined with --on-reboot restart or "
                                "--restore-memory");
        return PARSE_RUN; /* main receives the VM's description */
    }
    if (o->restore_dir) {
        if (o->kernel || o->initrd || o->cmdline || o->machine_opt)
            return opt_error(e, "--restore takes the machine from the snapshot: drop %s",
                             o->kernel    ? "--kernel"
                             : o->initrd  ? "--initrd"
                             : o->cmdline ? "--cmdline"
                                          : o->machine_opt);
        if (o->restart_on_reboot)
            return opt_error(
                e, "--on-reboot restart cannot be combined with --restore (there is no kernel to "
                   "boot again)");
        if (!o->restore_memory_given)
            o->restore_memory = VMM_RESTORE_LAZY;
        return PARSE_RUN; /* main reads the snapshot's description */
    }
    if (o->restore_memory_given)
        return opt_error(e, "--restore-memory needs --restore");
    if (!o->kernel)
        return opt_error(e, "no guest image given: use --kernel FILE (see --help)");
    if (o->mem_size < MIN_MEM || o->mem_size > MAX_MEM || o->mem_size % 4096)
        return opt_error(e, "invalid memory size: %llu bytes (a multiple of 4K from 1M to 1T)",
                         (unsigned long long)o->mem_size);
    return PARSE_RUN;
}

static void free_options(struct options *o)
{
    free(o->cpu_disable_joined);
    o->cpu_disable_joined = NULL;
}

/* Fail fast, in one line that names the device and the way out, on a host
 * where /dev/kvm cannot be used (the library would say why in two). */
static void check_kvm(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return;
    }
    if (errno == ENOENT)
        fail(
            "/dev/kvm does not exist: this host has no KVM (load kvm_intel or kvm_amd on a machine "
            "with virtualization, or run vmm-run under nested KVM with "
            "tests/nested/run-nested.sh)");
    if (errno == EACCES || errno == EPERM)
        fail("cannot open /dev/kvm: %s (run as root or join the group that owns /dev/kvm)",
             strerror(errno));
    fail("cannot open /dev/kvm: %s (its KVM module may not be bound; tests/nested/run-nested.sh "
         "runs vmm-run under nested KVM instead)",
         strerror(errno));
}

int main(int argc, char **argv)
{
    start_ns = monotonic_ns();
    struct options o;
    char *why;
    switch (parse_options(argc, argv, &o, &why)) {
    case PARSE_ERROR:
        fail("%s", why ? why : "out of memory");
    case PARSE_HELP:
        fputs(usage, stdout);
        exit(0);
    case PARSE_VERSION:
        printf("vmm-run (libvmm) %s\n", vmm_version_string());
        exit(0);
    case PARSE_CPU_HELP:
        list_cpu_features();
        exit(0);
    case PARSE_RUN:
        break;
    }
    check_kvm();
    if (o.stats) {
        o.stats_out = *o.stats ? fopen(o.stats, "we") : stderr;
        if (!o.stats_out)
            fail("cannot open the --stats file '%s': %s", o.stats, strerror(errno));
    }

    if (o.verbose)
        vmm_log_set_handler(log_to_stderr, NULL, o.verbose > 1 ? VMM_LOG_DEBUG : VMM_LOG_INFO);
    else
        vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_ERROR);

    if (o.restore_dir)
        read_vm_description(o.restore_dir, &o);
    if (o.migrate_listen)
        wait_for_migration(&o);

    o.out_fd = STDOUT_FILENO;
    o.in_fd = -1;
    if (strcmp(o.console, "stdio") == 0) {
        o.in_fd = STDIN_FILENO;
    } else if (strcmp(o.console, "virtio") == 0) {
        o.virtio_console = true; /* stdin goes to the virtio console, not the UART */
    } else {
        o.out_fd = open(o.console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (o.out_fd < 0)
            fail("cannot open console file '%s': %s", o.console, strerror(errno));
    }

    /* SIGINT/SIGTERM/SIGHUP/SIGQUIT stop the VM through the event loop (vCPU
     * threads inherit the blocked mask, so the signals only arrive there), so
     * the terminal is always restored. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGHUP);
    sigaddset(&stop_set, SIGQUIT);
    if (o.save_dir) {
        sigaddset(&stop_set, o.snapshot_signal);
        snapshot_signal = o.snapshot_signal;
    }
    snapshot_opts = &o;
    if (o.api_sock)
        api_open(o.api_sock);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    int sfd = signalfd(-1, &stop_set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        fail("cannot watch for SIGINT/SIGTERM: %s", strerror(errno));
    /* A reader that goes away must not kill us through SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    if (o.in_fd >= 0 || o.virtio_console)
        make_stdin_raw();
    struct vmm_exit ex;
    for (;;) {
        ex = run_vm(&o, sfd);
        /* A triple fault resets a PC, and Linux's reboot=t relies on it. */
        if (ex.reason == VMM_EXIT_SHUTDOWN) {
            if (o.verbose)
                fprintf(stderr, "%s: %s (rip 0x%llx): a reset, as on a PC\n", prog, ex.detail,
                        (unsigned long long)ex.rip);
            ex.reason = VMM_EXIT_RESET;
        }
        if (ex.reason != VMM_EXIT_RESET || !o.restart_on_reboot)
            break;
        if (atomic_load(&stop_signal)) {
            ex.reason = VMM_EXIT_STOPPED;
            break;
        }
        if (o.verbose)
            fprintf(stderr, "%s: guest rebooted; restarting the VM\n", prog);
    }
    restore_tty();

    int status;
    if (atomic_load(&snapshot_saved)) {
        fprintf(stderr, "%s: saved the VM to '%s'\n", prog, o.save_dir);
        ex.reason = VMM_EXIT_NONE;
    }
    if (atomic_load(&migrated)) {
        fprintf(stderr,
                "%s: migrated the VM to '%s' (stopped %.1f ms, %.1f ms in all, %llu pages, "
                "%u rounds after the first%s)\n",
                prog, migrate_target, migrate_result.downtime_us / 1000.0,
                migrate_result.total_us / 1000.0, (unsigned long long)migrate_result.pages,
                migrate_result.rounds,
                migrate_result.flags & VMM_MIGRATE_MEMFD ? ", memory passed as memfds" : "");
        ex.reason = VMM_EXIT_NONE;
    }
    switch (ex.reason) {
    case VMM_EXIT_NONE:
        status = 0;
        break;
    case VMM_EXIT_GUEST_EXIT:
        status = ex.status & 0xff;
        break;
    case VMM_EXIT_POWEROFF:
    case VMM_EXIT_RESET:
        status = 0;
        break;
    case VMM_EXIT_STOPPED: {
        int sig = atomic_load(&stop_signal);
        fprintf(stderr, "%s: stopped by %s\n", prog, sig ? strsignal(sig) : "a signal");
        status = sig ? 128 + sig : 1;
        break;
    }
    default:
        fprintf(stderr, "%s: guest failed: %s: %s (vCPU %u, rip 0x%llx)\n", prog,
                vmm_exit_reason_name(ex.reason), ex.detail, ex.vcpu, (unsigned long long)ex.rip);
        status = 1;
        break;
    }
    close(sfd);
    if (api_listen_fd >= 0) {
        close(api_listen_fd);
        unlink(o.api_sock);
    }
    if (o.out_fd != STDOUT_FILENO)
        close(o.out_fd);
    free_options(&o);
    if (o.stats_out && o.stats_out != stderr)
        fclose(o.stats_out);
    return status;
}
