/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-function-host: load a function-VM guest (vmm/function.h), call one of
 * its functions N times and print the result and the latencies.
 *
 *   vmm-function-host GUEST.elf [-n N] [-t TIMEOUT_MS] [-m MEM_MIB] FUNCTION [ARG...]
 *
 * ARG: i:NUMBER (an integer) or s:TEXT (a byte string). The guest may call
 * the host functions "log" (prints its argument) and "kv_get" (key "n"
 * gives the integer 1, any other key the bytes "value-of-KEY").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmm/vmm.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int host_log(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args, unsigned nargs,
                    struct vmm_fn_reply *reply)
{
    if (nargs != 1 || args[0].type != VMM_FN_BYTES)
        return -EINVAL;
    if (*(const int *)opaque)
        fprintf(stderr, "guest log: %.*s\n", (int)args[0].len, (const char *)args[0].data);
    return 0;
}

static int host_kv_get(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args,
                       unsigned nargs, struct vmm_fn_reply *reply)
{
    if (nargs != 1 || args[0].type != VMM_FN_BYTES)
        return -EINVAL;
    if (args[0].len == 1 && *(const char *)args[0].data == 'n')
        return vmm_fn_reply_int(reply, 1);
    char v[96];
    int n = snprintf(v, sizeof(v), "value-of-%.*s", (int)(args[0].len > 64 ? 64 : args[0].len),
                     (const char *)args[0].data);
    return vmm_fn_reply_bytes(reply, v, (size_t)n);
}

static void print_value(const struct vmm_fn_val *v)
{
    if (v->type == VMM_FN_INT) {
        printf("  int %lld\n", (long long)v->i);
        return;
    }
    printf("  bytes[%u] ", v->len);
    const unsigned char *p = v->data;
    int text = 1;
    for (uint32_t i = 0; i < v->len; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            text = 0;
    if (text) {
        printf("\"%.*s\"\n", (int)v->len, (const char *)p);
        return;
    }
    for (uint32_t i = 0; i < v->len && i < 64; i++)
        printf("%02x", p[i]);
    printf("%s\n", v->len > 64 ? "..." : "");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm: %s: %s\n", vmm_log_level_name(level), msg);
}

static int parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static const char usage[] =
    "usage: vmm-function-host GUEST.elf [-n N] [-t TIMEOUT_MS] [-m MEM_MIB] FUNCTION [ARG...]\n"
    "  ARG: i:NUMBER or s:TEXT; -n calls (default 1000), -t per-call deadline (default 1000),\n"
    "  -m guest memory in MiB, a multiple of 2 (default 4)\n";

int main(int argc, char **argv)
{
    unsigned long long calls = 1000, timeout_ms = 1000, mem_mib = 4;
    int i = 1;
    if (argc < 3) {
        fputs(usage, stderr);
        return 2;
    }
    const char *guest = argv[i++];
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        unsigned long long *dst = !strcmp(argv[i], "-n")   ? &calls
                                  : !strcmp(argv[i], "-t") ? &timeout_ms
                                  : !strcmp(argv[i], "-m") ? &mem_mib
                                                           : NULL;
        if (!dst || parse_num(argv[i + 1], 100000000, dst) < 0) {
            fprintf(stderr, "vmm-function-host: bad option %s %s\n", argv[i], argv[i + 1]);
            return 2;
        }
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    const char *name = argv[i++];
    unsigned nargs = (unsigned)(argc - i);
    if (nargs > VMM_FN_VALUES_MAX - 1) {
        fprintf(stderr, "vmm-function-host: at most %u arguments\n", VMM_FN_VALUES_MAX - 1);
        return 2;
    }
    struct vmm_fn_val args[VMM_FN_VALUES_MAX];
    for (unsigned k = 0; k < nargs; k++) {
        const char *a = argv[i + k];
        if (!strncmp(a, "i:", 2)) {
            char *end;
            errno = 0;
            long long v = strtoll(a + 2, &end, 0);
            if (errno || end == a + 2 || *end) {
                fprintf(stderr, "vmm-function-host: bad integer argument '%s'\n", a);
                return 2;
            }
            args[k] = VMM_FN_INT_VAL(v);
        } else if (!strncmp(a, "s:", 2)) {
            args[k] = VMM_FN_BYTES_VAL(a + 2, (uint32_t)strlen(a + 2));
        } else {
            fprintf(stderr, "vmm-function-host: argument '%s' is neither i:NUMBER nor s:TEXT\n", a);
            return 2;
        }
    }
    vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_WARN);

    uint64_t t0 = now_ns();
    struct vmm_fn *fn;
    int r = vmm_fn_create(
        &VMM_INIT(struct vmm_fn_config, .image_path = guest, .mem_size = mem_mib << 20), &fn);
    uint64_t t1 = now_ns();
    if (r < 0) {
        fprintf(stderr, "vmm-function-host: cannot create the function VM from %s: %s\n", guest,
                vmm_strerror(r));
        return 1;
    }
    int verbose = 1;
    if (vmm_fn_register(fn, "log", host_log, &verbose) < 0 ||
        vmm_fn_register(fn, "kv_get", host_kv_get, NULL) < 0) {
        fprintf(stderr, "vmm-function-host: cannot register host functions\n");
        vmm_fn_destroy(fn);
        return 1;
    }
    uint64_t *lat = calloc(calls, sizeof(*lat));
    if (!lat) {
        fprintf(stderr, "vmm-function-host: out of memory\n");
        vmm_fn_destroy(fn);
        return 1;
    }
    int status = 0;
    unsigned long long failed = 0;
    for (unsigned long long c = 0; c < calls; c++) {
        struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
        uint64_t a = now_ns();
        r = vmm_fn_call(fn, name, args, nargs, timeout_ms * 1000000ull, &res);
        lat[c] = now_ns() - a;
        if (c == 0) {
            if (r < 0) {
                printf("%s: failed: %s (%s)\n", name, vmm_strerror(r), res.error);
            } else {
                printf("%s: %u result(s), %llu exit(s)\n", name, res.count,
                       (unsigned long long)res.exits);
                for (unsigned k = 0; k < res.count; k++)
                    print_value(&res.values[k]);
            }
            verbose = 0; /* one call's log lines are enough */
        }
        if (r < 0) {
            failed++;
            status = 1;
        }
    }
    struct vmm_fn_stats st = VMM_INIT(struct vmm_fn_stats);
    (void)vmm_fn_get_stats(fn, &st);
    vmm_fn_destroy(fn);
    qsort(lat, calls, sizeof(*lat), cmp_u64);
    printf("create: %.1f us (%llu snapshot pages)\n", (double)(t1 - t0) / 1e3,
           (unsigned long long)st.snapshot_pages);
    printf("calls: %llu (%llu failed); latency min %.1f us, median %.1f us, p99 %.1f us, "
           "max %.1f us; %llu pages restored by the last reset\n",
           calls, failed, (double)lat[0] / 1e3, (double)lat[calls / 2] / 1e3,
           (double)lat[calls * 99 / 100] / 1e3, (double)lat[calls - 1] / 1e3,
           (unsigned long long)st.last_pages_restored);
    free(lat);
    return status;
}
