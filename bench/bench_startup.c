/* SPDX-License-Identifier: Apache-2.0 */
/* bench_startup: create VM -> the guest's first exit -> destroy, through libvmm
 * (split and kernel irqchip) and on raw ioctls; optionally whole processes. */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"

#define GUEST_MEM          (128ull << 20)
#define DEFAULT_ITERATIONS 50
#define DEFAULT_PROCESSES  20

/*
 * Where the time goes: the link wraps ioctl() (-Wl,--wrap=ioctl, which
 * catches libvmm's calls and the raw floor's alike) and charges each call's
 * duration to its request code, per variant. Printed with --profile.
 */
#define PROF_VARIANTS 4 /* the variants in main */
#define PROF_SLOTS    48

struct prof_slot {
    unsigned long req;
    uint64_t count;
    uint64_t ns;
};

static struct prof_slot prof[PROF_VARIANTS][PROF_SLOTS];
static int prof_variant = -1; /* which variant is running; -1: not recording */

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (prof_variant < 0)
        return __real_ioctl(fd, req, arg);
    uint64_t t0 = bench_now_ns();
    int r = __real_ioctl(fd, req, arg);
    uint64_t dt = bench_now_ns() - t0;
    struct prof_slot *tab = prof[prof_variant];
    for (unsigned i = 0; i < PROF_SLOTS; i++) {
        if (tab[i].count == 0 || tab[i].req == req) {
            tab[i].req = req;
            tab[i].count++;
            tab[i].ns += dt;
            break;
        }
    }
    return r;
}

static const char *ioctl_name(unsigned long req)
{
    static const struct {
        unsigned long req;
        const char *name;
    } names[] = {
        {KVM_GET_API_VERSION, "KVM_GET_API_VERSION"},
        {KVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION"},
        {KVM_CREATE_VM, "KVM_CREATE_VM"},
        {KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE"},
        {KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID"},
        {KVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR"},
        {KVM_ENABLE_CAP, "KVM_ENABLE_CAP"},
        {KVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP"},
        {KVM_CREATE_PIT2, "KVM_CREATE_PIT2"},
        {KVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION"},
        {KVM_CREATE_VCPU, "KVM_CREATE_VCPU"},
        {KVM_SET_CPUID2, "KVM_SET_CPUID2"},
        {KVM_GET_SREGS, "KVM_GET_SREGS"},
        {KVM_SET_SREGS, "KVM_SET_SREGS"},
        {KVM_SET_REGS, "KVM_SET_REGS"},
        {KVM_GET_REGS, "KVM_GET_REGS"},
        {KVM_SET_FPU, "KVM_SET_FPU"},
        {KVM_SET_MP_STATE, "KVM_SET_MP_STATE"},
        {KVM_SET_GSI_ROUTING, "KVM_SET_GSI_ROUTING"},
        {KVM_RUN, "KVM_RUN"},
    };
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].req == req)
            return names[i].name;
    return "(other ioctl)";
}

/* Per-iteration mean time of each ioctl the variant made, over iters runs. */
static void prof_report(int variant, const char *name, unsigned long iters, double total_mean)
{
    struct prof_slot *tab = prof[variant];
    double sum = 0;
    printf("profile: %s: ioctls per iteration (mean over %lu; calls, us)\n", name, iters);
    for (unsigned i = 0; i < PROF_SLOTS && tab[i].count; i++) {
        double us = (double)tab[i].ns / (double)iters / 1e3;
        sum += us;
        printf("profile:   %-28s %5.1f  %8.1f us\n", ioctl_name(tab[i].req),
               (double)tab[i].count / (double)iters, us);
    }
    printf("profile:   %-28s        %8.1f us  (everything else: other syscalls, "
           "close/munmap teardown, library code)\n",
           "rest of the iteration", total_mean / 1e3 - sum);
}

/* Phase times of one in-process iteration, in ns. */
struct phases {
    double setup;   /* create VM .. boot state set (raw: create .. sregs/regs) */
    double run;     /* KVM_RUN .. the guest's exit handled */
    double destroy; /* teardown */
    double total;
};

static void idle_event(void *opaque, int fd, uint32_t events)
{
}

static void end_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    vmm_vm_request_exit(opaque, VMM_EXIT_GUEST_EXIT, data[0], NULL);
}

/* threaded: run through vmm_vm_run (a vCPU thread, plus the I/O thread since
 * an fd is watched, as in any launcher with a console) instead of calling
 * vmm_vcpu_run on this thread. */
static int libvmm_once(enum vmm_irqchip chip, bool threaded, struct phases *p)
{
    static const struct vmm_bus_ops end_ops = {.size = sizeof(struct vmm_bus_ops),
                                               .write = end_write};
    uint64_t t0 = bench_now_ns();
    struct vmm_vm *vm;
    int r = vmm_vm_create(&VMM_INIT(struct vmm_vm_config, .irqchip = chip), &vm);
    if (r < 0)
        return r;
    struct vmm_region_config rc = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = GUEST_MEM};
    struct vmm_vcpu *v;
    struct vmm_exit e = VMM_INIT(struct vmm_exit);
    if ((r = vmm_vm_add_memory(vm, &rc)) < 0 ||
        (r = vmm_memory_write(vmm_vm_memory(vm), RAW_CODE, bench_exit_guest,
                              sizeof(bench_exit_guest))) < 0 ||
        (r = vmm_bus_register(vmm_vm_pio_bus(vm), RAW_EXIT_PORT, 1, &end_ops, vm)) < 0 ||
        (r = vmm_vcpu_create(vm, 0, &v)) < 0 ||
        (r = vmm_vcpu_set_boot_state(v, &VMM_INIT(struct vmm_x86_boot_state, .entry = RAW_CODE))) <
            0) {
        vmm_vm_destroy(vm);
        return r;
    }
    int idle = -1;
    if (threaded) {
        idle = eventfd(0, EFD_CLOEXEC);
        if (idle < 0 ||
            (r = vmm_event_loop_add(vmm_vm_event_loop(vm), idle, EPOLLIN, idle_event, NULL)) < 0) {
            r = idle < 0 ? -errno : r;
            if (idle >= 0)
                close(idle);
            vmm_vm_destroy(vm);
            return r;
        }
    }
    uint64_t t1 = bench_now_ns();
    r = threaded ? vmm_vm_run(vm, &e) : vmm_vcpu_run(v, &e);
    uint64_t t2 = bench_now_ns();
    vmm_vm_destroy(vm);
    if (idle >= 0)
        close(idle);
    uint64_t t3 = bench_now_ns();
    if (r < 0)
        return r;
    if (e.reason != VMM_EXIT_GUEST_EXIT) {
        fprintf(stderr, "bench_startup: libvmm run ended with %s: %s\n",
                vmm_exit_reason_name(e.reason), e.detail);
        return -EIO;
    }
    *p = (struct phases){.setup = (double)(t1 - t0),
                         .run = (double)(t2 - t1),
                         .destroy = (double)(t3 - t2),
                         .total = (double)(t3 - t0)};
    return 0;
}

static int raw_once(struct phases *p)
{
    uint64_t t0 = bench_now_ns();
    struct raw_kvm k;
    int r = raw_kvm_create(&k, GUEST_MEM);
    if (r < 0)
        return r;
    r = raw_kvm_boot(&k, bench_exit_guest, sizeof(bench_exit_guest));
    uint64_t t1 = bench_now_ns();
    if (r == 0) {
        r = raw_kvm_run(&k);
        if (r == KVM_EXIT_IO && k.run->io.port == RAW_EXIT_PORT)
            r = 0;
        else if (r >= 0)
            r = -EIO;
    }
    uint64_t t2 = bench_now_ns();
    raw_kvm_destroy(&k);
    uint64_t t3 = bench_now_ns();
    if (r < 0)
        return r;
    *p = (struct phases){.setup = (double)(t1 - t0),
                         .run = (double)(t2 - t1),
                         .destroy = (double)(t3 - t2),
                         .total = (double)(t3 - t0)};
    return 0;
}

struct series {
    const char *name;
    double *setup, *run, *destroy, *total;
};

static int series_alloc(struct series *s, const char *name, size_t n)
{
    s->name = name;
    s->setup = calloc(n, sizeof(double));
    s->run = calloc(n, sizeof(double));
    s->destroy = calloc(n, sizeof(double));
    s->total = calloc(n, sizeof(double));
    return s->setup && s->run && s->destroy && s->total ? 0 : -ENOMEM;
}

static void series_free(struct series *s)
{
    free(s->setup);
    free(s->run);
    free(s->destroy);
    free(s->total);
}

static void series_put(struct series *s, size_t i, const struct phases *p)
{
    s->setup[i] = p->setup;
    s->run[i] = p->run;
    s->destroy[i] = p->destroy;
    s->total[i] = p->total;
}

static double series_report(struct series *s, size_t n)
{
    double med = bench_percentile(s->total, n, 50), p90 = bench_percentile(s->total, n, 90);
    printf("startup: %-16s median %8.3f ms  p90 %8.3f ms   (setup %.3f, to first exit %.3f, "
           "destroy %.3f ms, medians)\n",
           s->name, med / 1e6, p90 / 1e6, bench_percentile(s->setup, n, 50) / 1e6,
           bench_percentile(s->run, n, 50) / 1e6, bench_percentile(s->destroy, n, 50) / 1e6);
    return med;
}

static double mean(const double *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return n ? sum / (double)n : 0;
}

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm: %s: %s\n", vmm_log_level_name(level), msg);
}

/* Spawn argv once; its wall time in ns, or -1 (with a message) on failure. */
static double time_one_process(char *const argv[], const char *what, unsigned long i)
{
    uint64_t ns;
    struct rusage ru;
    if (bench_spawn_ok(argv, "bench_startup", what, i, &ns, &ru) < 0)
        return -1;
    return (double)ns;
}

/* Time n runs of each command, interleaved; medians in ns (-1 on failure). */
static void time_processes(char *const a_argv[], char *const b_argv[], unsigned long n,
                           double *a_med, double *b_med)
{
    const char *a_name = "raw KVM process (--raw-process)", *b_name = "vmm-run";
    double *a = calloc(n, sizeof(double)), *b = calloc(n, sizeof(double));
    *a_med = *b_med = -1;
    if (!a || !b)
        goto out;
    for (unsigned long i = 0; i < n; i++) {
        if ((a[i] = time_one_process(a_argv, a_name, i)) < 0 ||
            (b[i] = time_one_process(b_argv, b_name, i)) < 0)
            goto out;
    }
    *a_med = bench_percentile(a, n, 50);
    *b_med = bench_percentile(b, n, 50);
    printf("process: %-34s median %8.3f ms  p90 %8.3f ms\n", a_name, *a_med / 1e6,
           bench_percentile(a, n, 90) / 1e6);
    printf("process: %-34s median %8.3f ms  p90 %8.3f ms\n", b_name, *b_med / 1e6,
           bench_percentile(b, n, 90) / 1e6);
out:
    free(a);
    free(b);
}

static const char usage[] =
    "Usage: %s [--iterations N] [--profile] [--processes N] [--vmm-run PATH [--guest ELF]\n"
    "          [--vmm-arg ARG]...]\n"
    "In one process: create VM (128 MiB, 1 vCPU) -> guest's first exit -> destroy, through\n"
    "libvmm (split and kernel irqchip) and on raw KVM ioctls, N iterations (default %d).\n"
    "With --vmm-run: also time whole vmm-run processes on ELF (default: a tiny generated\n"
    "guest) against a raw-KVM process (this program with --raw-process), N times (default %d).\n"
    "--profile: also print the time spent in each ioctl, per variant.\n"
    "--vmm-arg: one more argument for vmm-run (e.g. --vmm-arg --seccomp --vmm-arg off).\n";

int main(int argc, char **argv)
{
    unsigned long iters = DEFAULT_ITERATIONS, procs = DEFAULT_PROCESSES;
    const char *vmm_run = NULL, *guest = NULL;
    char *extra[16];
    unsigned nr_extra = 0;
    int profile = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--raw-process")) {
            /* The floor for a whole process: one raw VM and nothing else. */
            raw_kvm_set_thp(RAW_THP_OFF);
            int r = raw_kvm_one_shot(GUEST_MEM, bench_exit_guest, sizeof(bench_exit_guest));
            return r < 0 ? 1 : 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, argv[0], DEFAULT_ITERATIONS, DEFAULT_PROCESSES);
            return 0;
        } else if (!strcmp(a, "--profile")) {
            profile = 1;
            continue;
        } else if (!strcmp(a, "--iterations") && val) {
            iters = bench_parse_count(val);
        } else if (!strcmp(a, "--processes") && val) {
            procs = bench_parse_count(val);
        } else if (!strcmp(a, "--vmm-run") && val) {
            vmm_run = val;
        } else if (!strcmp(a, "--guest") && val) {
            guest = val;
        } else if (!strcmp(a, "--vmm-arg") && val && nr_extra < 16) {
            extra[nr_extra++] = (char *)val;
        } else {
            fprintf(stderr, "bench_startup: bad argument '%s' (see --help)\n", a);
            return 2;
        }
        i++;
    }
    if (iters == 0 || procs == 0 || iters > 100000 || procs > 100000) {
        fprintf(stderr, "bench_startup: bad iteration/process count\n");
        return 2;
    }
    char why[128];
    if (raw_kvm_probe(why, sizeof(why)) < 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_WARN);
    /* Guest memory as libvmm asks for it without VMM_MEMORY_F_THP: a THP
     * "always" host would otherwise zero a 2 MiB page for the floor only. */
    raw_kvm_set_thp(RAW_THP_OFF);

    enum { RAW, SPLIT, KERNEL, THREADED, NVARIANTS };
    static const char *const names[NVARIANTS] = {
        [RAW] = "raw KVM (split)",
        [SPLIT] = "libvmm split",
        [KERNEL] = "libvmm kernel",
        [THREADED] = "libvmm vm_run",
    };
    _Static_assert(NVARIANTS <= PROF_VARIANTS, "profile table too small");
    struct series ser[NVARIANTS];
    for (unsigned v = 0; v < NVARIANTS; v++) {
        if (series_alloc(&ser[v], names[v], iters) < 0) {
            fprintf(stderr, "bench_startup: out of memory\n");
            return 1;
        }
    }
    printf("startup: create VM (128 MiB, 1 vCPU) -> guest's first exit (out 0xf4) -> destroy, "
           "%lu iterations each, interleaved (kernel irqchip after the rest), one process\n"
           "startup: libvmm split/kernel: vmm_vcpu_run on the calling thread; libvmm vm_run: "
           "split, vmm_vm_run (vCPU thread + I/O thread watching an idle eventfd)\n",
           iters);
    struct phases p;
    int r = 0;
    /* The kernel irqchip runs in a block of its own after the others: tearing
     * down its VM leaves work behind in the host kernel that would land on
     * whichever variant ran next. Within a block the order rotates so drift
     * in the host lands on every variant; iteration 0 is an untimed warm-up
     * (first-touch costs in this process and in KVM). */
    static const unsigned blocks[][3] = {{RAW, SPLIT, THREADED}, {KERNEL}};
    static const unsigned block_len[] = {3, 1};
    for (unsigned b = 0; b < 2; b++) {
        for (unsigned long i = 0; i <= iters; i++) {
            for (unsigned k = 0; k < block_len[b]; k++) {
                unsigned v = blocks[b][(k + i) % block_len[b]];
                prof_variant = profile && i > 0 ? (int)v : -1;
                switch (v) {
                case RAW:
                    r = raw_once(&p);
                    break;
                case SPLIT:
                    r = libvmm_once(VMM_IRQCHIP_SPLIT, false, &p);
                    break;
                case KERNEL:
                    r = libvmm_once(VMM_IRQCHIP_KERNEL, false, &p);
                    break;
                default:
                    r = libvmm_once(VMM_IRQCHIP_SPLIT, true, &p);
                    break;
                }
                prof_variant = -1;
                if (r < 0) {
                    fprintf(stderr, "bench_startup: %s iteration %lu failed: %s\n", names[v], i,
                            strerror(-r));
                    return 1;
                }
                if (i > 0)
                    series_put(&ser[v], i - 1, &p);
            }
        }
    }
    double med[NVARIANTS];
    for (unsigned v = 0; v < NVARIANTS; v++)
        med[v] = series_report(&ser[v], iters);
    if (profile)
        for (unsigned v = 0; v < NVARIANTS; v++)
            prof_report((int)v, names[v], iters, mean(ser[v].total, iters));
    printf("startup: raw %.3f ms, libvmm %.3f ms, ratio %.2f (target < 1.5x)\n", med[RAW] / 1e6,
           med[SPLIT] / 1e6, med[SPLIT] / med[RAW]);
    printf("startup: for comparison: libvmm kernel irqchip %.3f ms (ratio %.2f), libvmm "
           "vmm_vm_run %.3f ms (ratio %.2f)\n",
           med[KERNEL] / 1e6, med[KERNEL] / med[RAW], med[THREADED] / 1e6,
           med[THREADED] / med[RAW]);
    for (unsigned v = 0; v < NVARIANTS; v++)
        series_free(&ser[v]);

    if (!vmm_run) {
        printf("process: skipped (give --vmm-run PATH [--guest ELF] to time whole processes)\n");
        return 0;
    }
    char tmp[256] = "";
    char self[4096];
    if (bench_process_setup("bench_startup", &guest, tmp, sizeof(tmp), self, sizeof(self)) < 0)
        return 1;
    char *raw_argv[] = {self, "--raw-process", NULL};
    char *vmm_argv[16 + 4] = {(char *)vmm_run};
    unsigned n = 1;
    for (unsigned j = 0; j < nr_extra; j++)
        vmm_argv[n++] = extra[j];
    vmm_argv[n++] = "--kernel";
    vmm_argv[n++] = (char *)guest;
    vmm_argv[n] = NULL;
    printf("process: fork/exec/wait, %lu runs each, stdout to /dev/null; guest %s%s\n", procs,
           guest, tmp[0] ? " (generated: mov al,0; out 0xf4,al)" : "");
    /* One untimed run each fills the page cache with both binaries. */
    uint64_t ns;
    struct rusage ru;
    int status;
    (void)bench_spawn(raw_argv, 1, &ns, &ru, &status);
    (void)bench_spawn(vmm_argv, 1, &ns, &ru, &status);
    double praw, pvmm;
    time_processes(raw_argv, vmm_argv, procs, &praw, &pvmm);
    if (praw > 0 && pvmm > 0)
        printf("process: raw %.3f ms, vmm-run %.3f ms, ratio %.2f (target < 1.5x)\n", praw / 1e6,
               pvmm / 1e6, pvmm / praw);
    if (tmp[0])
        unlink(tmp);
    return 0;
}
