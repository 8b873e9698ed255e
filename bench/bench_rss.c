/* SPDX-License-Identifier: Apache-2.0 */
/* bench_rss: peak RSS (ru_maxrss from wait4) of the vmm-run launcher on a tiny
 * guest against a raw-KVM process running the same guest in 128 MiB. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_kvm.h"

#define GUEST_MEM      (128ull << 20)
#define DEFAULT_RUNS   5
#define SPIN_SETTLE_MS 200
#define SETTLE_READS   3
#define SETTLE_TRIES   100

/* A guest that never exits (jmp $), so a process can be inspected while it
 * runs. */
static const uint8_t spin_guest[] = {0xeb, 0xfe};

/* What a running process holds resident, from /proc/PID/smaps (exact page
 * counts, unlike ru_maxrss, which the kernel keeps from per-CPU counters that
 * may lag by tens of pages per CPU). */
struct resident {
    long total;   /* KiB */
    long guest;   /* KiB in the guest-memory mapping (the GUEST_MEM-sized one) */
    long anon;    /* KiB anonymous, guest memory included */
    long file;    /* KiB file-backed (binaries, libraries) */
    long hugepmd; /* KiB of the guest mapping in transparent huge pages */
};

/* Read pid's smaps into *res; print each mapping holding pages when verbose. */
static int read_smaps(pid_t pid, const char *who, int verbose, struct resident *res)
{
    char path[64], line[512], name[256] = "";
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_rss: %s: %s\n", path, strerror(errno));
        return -1;
    }
    *res = (struct resident){0};
    unsigned long lo = 0, hi = 0;
    if (verbose)
        printf("breakdown: %s (pid %d), mappings with resident pages (KiB resident, KiB "
               "mapped):\n",
               who, (int)pid);
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b;
        char perms[8];
        long kb;
        int off = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &off) == 3 && off > 0) {
            lo = a;
            hi = b;
            snprintf(name, sizeof(name), "%s", line + off);
            name[strcspn(name, "\n")] = '\0';
            if (!name[0])
                snprintf(name, sizeof(name), "[anon %s]", perms);
        } else if (sscanf(line, "Rss: %ld kB", &kb) == 1) {
            res->total += kb;
            if (hi - lo == GUEST_MEM)
                res->guest += kb;
            if (name[0] == '/')
                res->file += kb;
            if (verbose && kb > 0)
                printf("breakdown:   %6ld %8lu  %s%s\n", kb, (hi - lo) >> 10, name,
                       hi - lo == GUEST_MEM ? " (guest memory)" : "");
        } else if (sscanf(line, "Anonymous: %ld kB", &kb) == 1) {
            res->anon += kb;
        } else if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
            if (hi - lo == GUEST_MEM)
                res->hugepmd += kb;
        }
    }
    fclose(f);
    return 0;
}

/* Start argv on a guest that spins, let it settle (its resident total the
 * same for SETTLE_READS reads SPIN_SETTLE_MS apart: a nested level 1 may
 * take seconds to get there), read its smaps, kill it. */
static int resident_of(char *const argv[], const char *who, int verbose, struct resident *res)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_rss: fork");
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    struct timespec ts = {SPIN_SETTLE_MS / 1000, (SPIN_SETTLE_MS % 1000) * 1000000L};
    long last = -1;
    int r = 0;
    for (unsigned same = 0, tries = 0; same < SETTLE_READS && tries < SETTLE_TRIES; tries++) {
        nanosleep(&ts, NULL);
        if ((r = read_smaps(pid, who, 0, res)) < 0)
            break;
        same = res->total == last ? same + 1 : 0;
        last = res->total;
    }
    if (r == 0)
        r = read_smaps(pid, who, verbose, res);
    kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    /* A child that died before we looked measured nothing. */
    if (r == 0 && WIFEXITED(status)) {
        char buf[32];
        fprintf(stderr, "bench_rss: %s ended early (%s)\n", who,
                bench_status_str(status, buf, sizeof(buf)));
        r = -1;
    }
    return r;
}

/* Peak RSS (KiB) of one run of argv into *out; -1 on failure. */
static int peak_rss_kib(char *const argv[], const char *what, unsigned long i, double *out)
{
    uint64_t ns;
    struct rusage ru;
    if (bench_spawn_ok(argv, "bench_rss", what, i, &ns, &ru) < 0)
        return -1;
    *out = (double)ru.ru_maxrss;
    return 0;
}

static const char usage[] =
    "Usage: %s --vmm-run PATH [--guest ELF] [--runs N] [--breakdown] [--vmm-arg ARG]...\n"
    "Peak RSS (ru_maxrss via wait4) of `vmm-run --kernel ELF` against a raw-KVM process\n"
    "(this program with --raw-process MODE: 128 MiB anonymous slot, 1 vCPU, split irqchip)\n"
    "running the same guest (default ELF: generated, mov al,0; out 0xf4,al), N runs each\n"
    "(default %d), interleaved, with both THP settings: vmm-run as it is (guest memory\n"
    "MADV_NOHUGEPAGE) against the floor with MADV_NOHUGEPAGE, and vmm-run --thp against the\n"
    "floor with MADV_HUGEPAGE on 2 MiB-aligned memory; and the floor without advice (the\n"
    "host's default). Then both run a spinning guest and their resident memory is read\n"
    "from /proc/PID/smaps (exact); --breakdown lists it mapping by mapping. --vmm-arg adds\n"
    "an argument to every vmm-run command (e.g. --vmm-arg --seccomp --vmm-arg off).\n";

static int parse_thp(const char *v, enum raw_thp *mode)
{
    if (!v)
        return -1;
    if (!strcmp(v, "host"))
        *mode = RAW_THP_HOST;
    else if (!strcmp(v, "off"))
        *mode = RAW_THP_OFF;
    else if (!strcmp(v, "on"))
        *mode = RAW_THP_ON;
    else
        return -1;
    return 0;
}

/* The host's THP setting, "[always] madvise never" style, or why not. */
static void host_thp(char *buf, size_t n)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f || !fgets(buf, (int)n, f))
        snprintf(buf, n, "unknown (no THP in this kernel?)");
    else
        buf[strcspn(buf, "\n")] = '\0';
    if (f)
        fclose(f);
}

#define MAX_VMM_ARGS 16

int main(int argc, char **argv)
{
    const char *vmm_run = NULL, *guest = NULL;
    const char *extra[MAX_VMM_ARGS];
    unsigned nr_extra = 0;
    unsigned long runs = DEFAULT_RUNS;
    int want_breakdown = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        enum raw_thp mode;
        if (!strcmp(a, "--raw-process") || !strcmp(a, "--raw-spin")) {
            if (parse_thp(val, &mode) < 0) {
                fprintf(stderr, "bench_rss: %s needs host, off or on\n", a);
                return 2;
            }
            raw_kvm_set_thp(mode);
            int r = !strcmp(a, "--raw-spin")
                        ? raw_kvm_one_shot(GUEST_MEM, spin_guest, sizeof(spin_guest))
                        : raw_kvm_one_shot(GUEST_MEM, bench_exit_guest, sizeof(bench_exit_guest));
            return r < 0 ? 1 : 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, argv[0], DEFAULT_RUNS);
            return 0;
        } else if (!strcmp(a, "--breakdown")) {
            want_breakdown = 1;
            continue;
        } else if (!strcmp(a, "--vmm-run") && val) {
            vmm_run = val;
        } else if (!strcmp(a, "--guest") && val) {
            guest = val;
        } else if (!strcmp(a, "--runs") && val) {
            runs = bench_parse_count(val);
        } else if (!strcmp(a, "--vmm-arg") && val && nr_extra < MAX_VMM_ARGS) {
            extra[nr_extra++] = val;
        } else {
            fprintf(stderr, "bench_rss: bad argument '%s' (see --help)\n", a);
            return 2;
        }
        i++;
    }
    if (runs == 0 || runs > 10000) {
        fprintf(stderr, "bench_rss: bad run count\n");
        return 2;
    }
    char why[128];
    if (raw_kvm_probe(why, sizeof(why)) < 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    if (!vmm_run) {
        printf("rss: nothing measured: needs the launcher to compare against the raw floor.\n"
               "rss: run as: %s --vmm-run BUILD/examples/vmm-run [--guest ELF]\n",
               argv[0]);
        return 0;
    }

    char tmp[256] = "", spin_tmp[256] = "";
    int r;
    char self[4096];
    if (bench_process_setup("bench_rss", &guest, tmp, sizeof(tmp), self, sizeof(self)) < 0)
        return 1;
    /* vmm-run [--thp] EXTRA... --kernel ELF */
    char *vmm_argv[2][MAX_VMM_ARGS + 5];
    for (unsigned t = 0; t < 2; t++) {
        unsigned n = 0;
        vmm_argv[t][n++] = (char *)vmm_run;
        if (t)
            vmm_argv[t][n++] = "--thp";
        for (unsigned j = 0; j < nr_extra; j++)
            vmm_argv[t][n++] = (char *)extra[j];
        vmm_argv[t][n++] = "--kernel";
        vmm_argv[t][n++] = (char *)guest;
        vmm_argv[t][n] = NULL;
    }
    enum { RAW_OFF, VMM, RAW_ON, VMM_THP, RAW_HOST, NVAR };
    static const char *const names[NVAR] = {
        [RAW_OFF] = "raw KVM process, MADV_NOHUGEPAGE", [VMM] = "vmm-run",
        [RAW_ON] = "raw KVM process, MADV_HUGEPAGE",    [VMM_THP] = "vmm-run --thp",
        [RAW_HOST] = "raw KVM process, no advice",
    };
    char *const argvs[NVAR][4] = {
        [RAW_OFF] = {self, "--raw-process", "off", NULL},
        [RAW_ON] = {self, "--raw-process", "on", NULL},
        [RAW_HOST] = {self, "--raw-process", "host", NULL},
    };
    double *v[NVAR];
    for (unsigned k = 0; k < NVAR; k++) {
        if (!(v[k] = calloc(runs, sizeof(double)))) {
            fprintf(stderr, "bench_rss: out of memory\n");
            return 1;
        }
    }
    char thp[128];
    host_thp(thp, sizeof(thp));
    printf("rss: peak RSS (ru_maxrss of the child, via wait4), %lu runs each, interleaved; "
           "guest %s%s; host THP setting: %s\n",
           runs, guest, tmp[0] ? " (generated: mov al,0; out 0xf4,al)" : "", thp);
    int status = 0;
    for (unsigned long i = 0; i < runs && !status; i++) {
        for (unsigned k = 0; k < NVAR && !status; k++) {
            char *const *av = k == VMM ? vmm_argv[0] : k == VMM_THP ? vmm_argv[1] : argvs[k];
            if (peak_rss_kib(av, names[k], i, &v[k][i]) < 0)
                status = 1;
        }
    }
    if (status) {
        if (tmp[0])
            unlink(tmp);
        return 1;
    }
    double med[NVAR];
    for (unsigned k = 0; k < NVAR; k++) {
        med[k] = bench_percentile(v[k], runs, 50) / 1024.0;
        printf("rss:   %-34s %6.2f MiB (min %.2f, max %.2f)\n", names[k], med[k], v[k][0] / 1024.0,
               v[k][runs - 1] / 1024.0);
    }
    printf("rss: with THP (vmm-run --thp vs the floor with MADV_HUGEPAGE): raw %.2f MiB, vmm-run "
           "%.2f MiB, difference %+.2f MiB\n",
           med[RAW_ON], med[VMM_THP], med[VMM_THP] - med[RAW_ON]);
    printf("rss: raw %.2f MiB, vmm-run %.2f MiB, difference %+.2f MiB (target: within 0.3 MiB; "
           "both MADV_NOHUGEPAGE, vmm-run's default)\n",
           med[RAW_OFF], med[VMM], med[VMM] - med[RAW_OFF]);

    r = bench_write_tiny_elf(spin_guest, sizeof(spin_guest), spin_tmp, sizeof(spin_tmp));
    if (r < 0) {
        fprintf(stderr, "bench_rss: cannot write a guest ELF: %s\n", strerror(-r));
    } else {
        char *raw_spin[] = {self, "--raw-spin", "off", NULL};
        char *vmm_spin[MAX_VMM_ARGS + 4];
        unsigned n = 0;
        vmm_spin[n++] = (char *)vmm_run;
        for (unsigned j = 0; j < nr_extra; j++)
            vmm_spin[n++] = (char *)extra[j];
        vmm_spin[n++] = "--kernel";
        vmm_spin[n++] = spin_tmp;
        vmm_spin[n] = NULL;
        struct resident rr, vr;
        printf("rss: resident while running (exact, /proc/PID/smaps), both on a spinning guest "
               "(jmp $) once settled, the floor with MADV_NOHUGEPAGE:\n");
        if (resident_of(raw_spin, "raw KVM process", want_breakdown, &rr) == 0 &&
            resident_of(vmm_spin, "vmm-run", want_breakdown, &vr) == 0) {
            printf("rss:   raw KVM process: %7.2f MiB (guest memory %ld KiB, other anonymous %ld "
                   "KiB, files %ld KiB)\n",
                   rr.total / 1024.0, rr.guest, rr.anon - rr.guest, rr.file);
            printf("rss:   vmm-run:         %7.2f MiB (guest memory %ld KiB of which %ld KiB in "
                   "transparent huge pages, other anonymous %ld KiB, files %ld KiB)\n",
                   vr.total / 1024.0, vr.guest, vr.hugepmd, vr.anon - vr.guest, vr.file);
            printf("rss:   difference %+.2f MiB; without guest memory %+.2f MiB\n",
                   (vr.total - rr.total) / 1024.0,
                   ((vr.total - vr.guest) - (rr.total - rr.guest)) / 1024.0);
        }
        unlink(spin_tmp);
    }
    if (tmp[0])
        unlink(tmp);
    for (unsigned k = 0; k < NVAR; k++)
        free(v[k]);
    return 0;
}
