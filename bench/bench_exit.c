/* SPDX-License-Identifier: Apache-2.0 */
/* bench_exit: per-exit cost of a port write through vmm_vcpu_run against the
 * same guest loop on bare KVM_RUN ioctls, interleaved in one process. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"

#define LOOP_PORT      0x510
#define DEFAULT_EXITS  20000
#define DEFAULT_ROUNDS 5
#define GUEST_MEM      (128ull << 20)

/*
 * The wall time per exit is mostly the host's KVM (several us on an emulating host), whose
 * jitter between runs is larger than the VMM's own cost. So the link wraps
 * ioctl() (-Wl,--wrap=ioctl, for libvmm's objects and the raw floor alike)
 * and sums the time spent in userspace between one KVM_RUN returning and the
 * next being entered: the per-exit userspace cost of each, measured the same
 * way, with the same timestamp overhead on both sides.
 */
static struct {
    int on;
    uint64_t last; /* when the last KVM_RUN returned; 0 before the first */
    uint64_t ns;   /* summed userspace time between KVM_RUNs */
    uint64_t gaps;
} user_clock;

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req != KVM_RUN || !user_clock.on)
        return __real_ioctl(fd, req, arg);
    uint64_t t = bench_now_ns();
    if (user_clock.last) {
        user_clock.ns += t - user_clock.last;
        user_clock.gaps++;
    }
    int r = __real_ioctl(fd, req, arg);
    user_clock.last = bench_now_ns();
    return r;
}

static void user_clock_start(void)
{
    user_clock.on = 1;
    user_clock.last = 0;
    user_clock.ns = 0;
    user_clock.gaps = 0;
}

/* Userspace ns per exit since user_clock_start. */
static double user_clock_stop(void)
{
    user_clock.on = 0;
    return user_clock.gaps ? (double)user_clock.ns / (double)user_clock.gaps : 0;
}

/* mov ecx, N; mov dx, LOOP_PORT; 1: out dx, al; dec ecx; jnz 1b;
 * mov al, 0; out RAW_EXIT_PORT, al; hlt */
static size_t make_loop_guest(uint8_t *code, uint32_t n)
{
    /* clang-format off */
    static const uint8_t tmpl[] = {
        0xb9, 0, 0, 0, 0,                              /* mov ecx, imm32 (patched) */
        0x66, 0xba, LOOP_PORT & 0xff, LOOP_PORT >> 8,  /* mov dx, imm16 */
        0xee,                                          /* 1: out dx, al */
        0xff, 0xc9,                                    /* dec ecx */
        0x75, 0xfb,                                    /* jnz 1b (-5) */
        0xb0, 0x00,                                    /* mov al, 0 */
        0xe6, RAW_EXIT_PORT,                           /* out RAW_EXIT_PORT, al */
        0xf4,                                          /* hlt */
    };
    /* clang-format on */
    memcpy(code, tmpl, sizeof(tmpl));
    memcpy(code + 1, &n, sizeof(n));
    return sizeof(tmpl);
}

/* The cheapest possible device: the point is the dispatch around it. */
static void empty_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
}

static void end_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    vmm_vm_request_exit(opaque, VMM_EXIT_GUEST_EXIT, data[0], NULL);
}

/* One library round: returns ns per loop exit, or a negative errno. */
static double libvmm_round(const uint8_t *code, size_t len, uint32_t n, uint64_t *exits,
                           double *user)
{
    struct vmm_vm *vm;
    int r = vmm_vm_create(NULL, &vm);
    if (r < 0)
        return r;
    static const struct vmm_bus_ops loop_ops = {.size = sizeof(struct vmm_bus_ops),
                                                .write = empty_write};
    const struct vmm_bus_ops end_ops = {.size = sizeof(struct vmm_bus_ops), .write = end_write};
    struct vmm_region_config rc = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = GUEST_MEM};
    struct vmm_vcpu *v;
    double out = -EIO;
    if ((r = vmm_vm_add_memory(vm, &rc)) < 0 ||
        (r = vmm_memory_write(vmm_vm_memory(vm), RAW_CODE, code, len)) < 0 ||
        (r = vmm_bus_register(vmm_vm_pio_bus(vm), LOOP_PORT, 1, &loop_ops, NULL)) < 0 ||
        (r = vmm_bus_register(vmm_vm_pio_bus(vm), RAW_EXIT_PORT, 1, &end_ops, vm)) < 0 ||
        (r = vmm_vcpu_create(vm, 0, &v)) < 0 ||
        (r = vmm_vcpu_set_boot_state(v, &VMM_INIT(struct vmm_x86_boot_state, .entry = RAW_CODE))) <
            0) {
        out = r;
        goto done;
    }
    struct vmm_exit e = VMM_INIT(struct vmm_exit);
    uint64_t before = vmm_vcpu_exit_count(v);
    user_clock_start();
    uint64_t t0 = bench_now_ns();
    r = vmm_vcpu_run(v, &e);
    uint64_t t1 = bench_now_ns();
    *user = user_clock_stop();
    *exits = vmm_vcpu_exit_count(v) - before;
    if (r < 0) {
        out = r;
    } else if (e.reason != VMM_EXIT_GUEST_EXIT) {
        fprintf(stderr, "bench_exit: libvmm run ended with %s: %s\n",
                vmm_exit_reason_name(e.reason), e.detail);
    } else {
        /* The final exit (to the end port) is one more of the same kind. */
        out = (double)(t1 - t0) / (double)(n + 1);
    }
done:
    vmm_vm_destroy(vm);
    return out;
}

/* One raw round: the same guest on KVM_RUN with KVM_EXIT_IO handled inline. */
static double raw_round(const uint8_t *code, size_t len, uint32_t n, uint64_t *exits, double *user)
{
    struct raw_kvm k;
    int r = raw_kvm_create(&k, GUEST_MEM);
    if (r < 0)
        return r;
    r = raw_kvm_boot(&k, code, len);
    if (r < 0) {
        raw_kvm_destroy(&k);
        return r;
    }
    uint64_t count = 0;
    volatile uint8_t sink = 0;
    double out = -EIO;
    user_clock_start();
    uint64_t t0 = bench_now_ns();
    for (;;) {
        r = raw_kvm_run(&k);
        if (r != KVM_EXIT_IO)
            break;
        count++;
        const uint8_t *data = (const uint8_t *)k.run + k.run->io.data_offset;
        if (k.run->io.port == RAW_EXIT_PORT) {
            r = 0;
            break;
        }
        sink = data[0];
    }
    uint64_t t1 = bench_now_ns();
    *user = user_clock_stop();
    (void)sink;
    *exits = count;
    if (r == 0)
        out = (double)(t1 - t0) / (double)(n + 1);
    else
        fprintf(stderr, "bench_exit: raw run ended with %s %d\n", r < 0 ? "error" : "exit",
                r < 0 ? -r : r);
    raw_kvm_destroy(&k);
    return out;
}

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm: %s: %s\n", vmm_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    unsigned long n = DEFAULT_EXITS, rounds = DEFAULT_ROUNDS;
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("Usage: %s [EXITS [ROUNDS]]\n"
               "Per-exit cost of a guest port write through libvmm vs raw KVM ioctls.\n"
               "EXITS: port writes per run (default %d); ROUNDS: runs of each (default %d).\n",
               argv[0], DEFAULT_EXITS, DEFAULT_ROUNDS);
        return 0;
    }
    if (argc > 1 && ((n = bench_parse_count(argv[1])) == 0 || n > UINT32_MAX)) {
        fprintf(stderr, "bench_exit: bad exit count '%s'\n", argv[1]);
        return 2;
    }
    if (argc > 2 && ((rounds = bench_parse_count(argv[2])) == 0 || rounds > 1000)) {
        fprintf(stderr, "bench_exit: bad round count '%s'\n", argv[2]);
        return 2;
    }
    char why[128];
    if (raw_kvm_probe(why, sizeof(why)) < 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_WARN);

    uint8_t code[64];
    size_t len = make_loop_guest(code, (uint32_t)n);
    printf("exit: guest does %lu `out dx,al` to port 0x%x (empty write callback) + 1 final "
           "exit; %lu rounds each, interleaved raw/libvmm, 128 MiB, 1 vCPU, split irqchip\n",
           n, LOOP_PORT, rounds);

    double *raw = calloc(rounds, sizeof(double)), *lib = calloc(rounds, sizeof(double));
    double *raw_user = calloc(rounds, sizeof(double)), *lib_user = calloc(rounds, sizeof(double));
    if (!raw || !lib || !raw_user || !lib_user) {
        fprintf(stderr, "bench_exit: out of memory\n");
        return 1;
    }
    uint64_t raw_exits = 0, lib_exits = 0;
    double ignored;
    /* Warm both paths (page faults on the code, KVM's first-run work)
     * before anything is timed. */
    (void)raw_round(code, len, (uint32_t)n, &raw_exits, &ignored);
    (void)libvmm_round(code, len, (uint32_t)n, &lib_exits, &ignored);
    for (unsigned long i = 0; i < rounds; i++) {
        /* Alternate which goes first so drift in the host hits both. */
        for (int pass = 0; pass < 2; pass++) {
            if ((pass == 0) == (i % 2 == 0))
                raw[i] = raw_round(code, len, (uint32_t)n, &raw_exits, &raw_user[i]);
            else
                lib[i] = libvmm_round(code, len, (uint32_t)n, &lib_exits, &lib_user[i]);
        }
        if (raw[i] < 0 || lib[i] < 0) {
            fprintf(stderr, "bench_exit: round %lu failed: %s\n", i + 1,
                    strerror(raw[i] < 0 ? (int)-raw[i] : (int)-lib[i]));
            return 1;
        }
        printf("exit: round %lu: raw %.3f us/exit, libvmm %.3f us/exit; in userspace: raw %.0f "
               "ns/exit, libvmm %.0f ns/exit\n",
               i + 1, raw[i] / 1e3, lib[i] / 1e3, raw_user[i], lib_user[i]);
    }
    printf("exit: exits per run: raw %llu, libvmm %llu (expected %lu)\n",
           (unsigned long long)raw_exits, (unsigned long long)lib_exits, n + 1);
    double raw_med = bench_percentile(raw, rounds, 50);
    double lib_med = bench_percentile(lib, rounds, 50);
    double raw_umed = bench_percentile(raw_user, rounds, 50);
    double lib_umed = bench_percentile(lib_user, rounds, 50);
    printf("exit: raw %.2f us/exit, libvmm %.2f us/exit, ratio %.3f (target < 1.03)\n",
           raw_med / 1e3, lib_med / 1e3, lib_med / raw_med);
    printf("exit: per-exit userspace overhead (libvmm - raw): %+.0f ns measured between "
           "KVM_RUNs (raw %.0f ns, libvmm %.0f ns, medians); %+.0f ns from the wall-clock "
           "medians above\n",
           lib_umed - raw_umed, raw_umed, lib_umed, lib_med - raw_med);
    free(raw_user);
    free(lib_user);
    free(raw);
    free(lib);
    return 0;
}
