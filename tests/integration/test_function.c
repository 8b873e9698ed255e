/* SPDX-License-Identifier: Apache-2.0 */
/* Function VMs through KVM (vmm/function.h) with the fn_test guest: calls
 * with every argument type, host calls, each hostile function failing its
 * own call only, cancel and deadlines, no state surviving a reset, and many
 * calls without file descriptor or memory growth. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

/* ---- host functions ---- */

struct host_state {
    char logged[256];
    unsigned log_calls;
    unsigned kv_calls;
};

static int host_log(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args, unsigned nargs,
                    struct vmm_fn_reply *reply)
{
    struct host_state *s = opaque;
    if (nargs != 1 || args[0].type != VMM_FN_BYTES || args[0].len >= sizeof(s->logged))
        return -EINVAL;
    memcpy(s->logged, args[0].data, args[0].len);
    s->logged[args[0].len] = '\0';
    s->log_calls++;
    return 0;
}

/* "n" -> 1; "err" -> -EACCES; "big" -> more than HRET holds (-ENOSPC); any
 * other key -> "v:" KEY. */
static int host_kv_get(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args,
                       unsigned nargs, struct vmm_fn_reply *reply)
{
    struct host_state *s = opaque;
    s->kv_calls++;
    if (nargs != 1 || args[0].type != VMM_FN_BYTES)
        return -EINVAL;
    const char *k = args[0].data;
    if (args[0].len == 1 && k[0] == 'n')
        return vmm_fn_reply_int(reply, 1);
    if (args[0].len == 3 && !memcmp(k, "err", 3))
        return -EACCES;
    if (args[0].len == 3 && !memcmp(k, "big", 3)) {
        static uint8_t big[VMM_FN_HRET_SIZE];
        return vmm_fn_reply_bytes(reply, big, sizeof(big));
    }
    char v[80];
    int n = snprintf(v, sizeof(v), "v:%.*s", (int)(args[0].len > 64 ? 64 : args[0].len), k);
    return vmm_fn_reply_bytes(reply, v, (size_t)n);
}

/* Tries a call on its own function VM from inside a host call. */
static int host_reenter(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args,
                        unsigned nargs, struct vmm_fn_reply *reply)
{
    struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
    return vmm_fn_call(fn, "echo", NULL, 0, 0, &res);
}

/* ---- helpers ---- */

static struct host_state hs;

static struct vmm_fn *make_fn(uint64_t mem)
{
    struct vmm_fn *fn;
    int r = vmm_fn_create(&VMM_INIT(struct vmm_fn_config,
                                    .image_path = harness_guest_path("fn_test"), .mem_size = mem),
                          &fn);
    ck_assert_msg(r == 0, "vmm_fn_create: %s", vmm_strerror(r));
    memset(&hs, 0, sizeof(hs));
    ck_assert_int_eq(vmm_fn_register(fn, "log", host_log, &hs), 0);
    ck_assert_int_eq(vmm_fn_register(fn, "kv_get", host_kv_get, &hs), 0);
    return fn;
}

#define TIMEOUT                                                                                    \
    (10ull * 1000 * 1000 * 1000) /* per call; generous for emulating and nested hosts              \
                                  */

static int call(struct vmm_fn *fn, const char *name, const struct vmm_fn_val *args, unsigned n,
                struct vmm_fn_result *res)
{
    *res = VMM_INIT(struct vmm_fn_result);
    return vmm_fn_call(fn, name, args, n, TIMEOUT, res);
}

static int64_t call_int(struct vmm_fn *fn, const char *name, const struct vmm_fn_val *args,
                        unsigned n)
{
    struct vmm_fn_result res;
    int r = call(fn, name, args, n, &res);
    ck_assert_msg(r == 0, "%s: %s (%s)", name, vmm_strerror(r), res.error);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_uint_eq(res.values[0].type, VMM_FN_INT);
    return res.values[0].i;
}

/* The guest still works: echo gives its argument back. */
static void expect_healthy(struct vmm_fn *fn)
{
    struct vmm_fn_val a = VMM_FN_INT_VAL(77);
    ck_assert_int_eq(call_int(fn, "echo", &a, 1), 77);
}

/* ---- tests ---- */

START_TEST(every_argument_type_round_trips)
{
    struct vmm_fn *fn = make_fn(0);
    static uint8_t big[64 * 1024];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 3);
    uint8_t bin[256];
    for (unsigned i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)i;
    struct vmm_fn_val args[] = {
        VMM_FN_INT_VAL(0),
        VMM_FN_INT_VAL(-1),
        VMM_FN_INT_VAL(INT64_MIN),
        VMM_FN_INT_VAL(INT64_MAX),
        VMM_FN_BYTES_VAL(NULL, 0),
        VMM_FN_BYTES_VAL("x", 1),
        VMM_FN_BYTES_VAL(bin, sizeof(bin)),
        VMM_FN_BYTES_VAL(big, sizeof(big)),
    };
    unsigned n = sizeof(args) / sizeof(args[0]);
    struct vmm_fn_result res;
    int r = call(fn, "echo", args, n, &res);
    ck_assert_msg(r == 0, "echo: %s (%s)", vmm_strerror(r), res.error);
    ck_assert_uint_eq(res.count, n);
    for (unsigned i = 0; i < n; i++) {
        ck_assert_uint_eq(res.values[i].type, args[i].type);
        if (args[i].type == VMM_FN_INT) {
            ck_assert_int_eq(res.values[i].i, args[i].i);
        } else {
            ck_assert_uint_eq(res.values[i].len, args[i].len);
            if (args[i].len)
                ck_assert_mem_eq(res.values[i].data, args[i].data, args[i].len);
        }
    }
    /* No arguments at all, and no results. */
    r = call(fn, "echo", NULL, 0, &res);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(res.count, 0);

    struct vmm_fn_val s[] = {VMM_FN_INT_VAL(40), VMM_FN_INT_VAL(-3),
                             VMM_FN_BYTES_VAL("\x01\x02", 2)};
    ck_assert_int_eq(call_int(fn, "sum", s, 3), 40);
    vmm_fn_destroy(fn);
}
END_TEST

START_TEST(sha256_of_the_input)
{
    static const struct {
        const char *in;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    struct vmm_fn *fn = make_fn(0);
    for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct vmm_fn_val a = VMM_FN_BYTES_VAL(v[i].in, (uint32_t)strlen(v[i].in));
        struct vmm_fn_result res;
        ck_assert_int_eq(call(fn, "sha256", &a, 1, &res), 0);
        ck_assert_uint_eq(res.count, 1);
        ck_assert_uint_eq(res.values[0].len, 32);
        char hex[65];
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", ((const uint8_t *)res.values[0].data)[k]);
        ck_assert_str_eq(hex, v[i].hex);
    }
    /* The wrong argument type: the guest refuses it, -EINVAL. */
    struct vmm_fn_val bad = VMM_FN_INT_VAL(1);
    struct vmm_fn_result res;
    ck_assert_int_eq(call(fn, "sha256", &bad, 1, &res), -EINVAL);
    vmm_fn_destroy(fn);
}
END_TEST

START_TEST(host_calls)
{
    struct vmm_fn *fn = make_fn(0);
    struct vmm_fn_val m = VMM_FN_BYTES_VAL("hello host", 10);
    ck_assert_int_eq(call_int(fn, "log_msg", &m, 1), 0);
    ck_assert_str_eq(hs.logged, "hello host");
    ck_assert_uint_eq(hs.log_calls, 1);

    struct vmm_fn_val k = VMM_FN_BYTES_VAL("key", 3);
    struct vmm_fn_result res;
    ck_assert_int_eq(call(fn, "kv_get", &k, 1, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    ck_assert_int_eq(res.values[0].i, 0);
    ck_assert_uint_eq(res.values[1].len, 5);
    ck_assert_mem_eq(res.values[1].data, "v:key", 5);
    ck_assert_uint_eq(res.exits, 2);

    /* A host function's error reaches the guest as the status, results dropped. */
    k = VMM_FN_BYTES_VAL("err", 3);
    ck_assert_int_eq(call(fn, "kv_get", &k, 1, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(res.values[0].i, -EACCES);
    k = VMM_FN_BYTES_VAL("big", 3);
    ck_assert_int_eq(call(fn, "kv_get", &k, 1, &res), 0);
    ck_assert_int_eq(res.values[0].i, -ENOSPC);

    /* Many host calls in one guest call. */
    struct vmm_fn_val n = VMM_FN_INT_VAL(25);
    hs.kv_calls = 0;
    ck_assert_int_eq(call_int(fn, "kv_sum", &n, 1), 25);
    ck_assert_uint_eq(hs.kv_calls, 25);

    /* A host function cannot call into its own function VM. */
    ck_assert_int_eq(vmm_fn_register(fn, "kv_get", host_reenter, NULL), 0);
    k = VMM_FN_BYTES_VAL("key", 3);
    ck_assert_int_eq(call(fn, "kv_get", &k, 1, &res), 0);
    ck_assert_int_eq(res.values[0].i, -EBUSY);
    ck_assert_int_eq(vmm_fn_register(fn, "kv_get", host_kv_get, &hs), 0);

    /* An unregistered host function: the guest gets -ENOSYS, the call goes on. */
    ck_assert_int_eq(call_int(fn, "call_missing", NULL, 0), -ENOSYS);
    expect_healthy(fn);
    vmm_fn_destroy(fn);
}
END_TEST

/* Each hostile function gets its error, and the next call works. */
START_TEST(hostile_guests_fail_their_own_call_only)
{
    static const struct {
        const char *name;
        int err;
        uint64_t timeout;
    } cases[] = {
        {"spin", -ETIMEDOUT, 200ull * 1000 * 1000},
        {"halt", -ETIMEDOUT, 200ull * 1000 * 1000},
        {"write_oob", -EFAULT, 0},
        {"read_oob", -EFAULT, 0},
        {"bad_size", -EPROTO, 0},
        {"bad_len", -EPROTO, 0},
        {"bad_hcall", -EPROTO, 0},
        {"ready_again", -EPROTO, 0},
        {"wide_signal", -EPROTO, 0},
        {"fault", -EFAULT, 0},
        {"bad_port", -EFAULT, 0},
        {"fail", -ECONNABORTED, 0},
        {"no_such_function", -ENOENT, 0},
    };
    struct vmm_fn *fn = make_fn(0);
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
        int r = vmm_fn_call(fn, cases[i].name, NULL, 0,
                            cases[i].timeout ? cases[i].timeout : TIMEOUT, &res);
        ck_assert_msg(r == cases[i].err, "%s: got %d (%s), want %d", cases[i].name, r, res.error,
                      cases[i].err);
        ck_assert_str_ne(res.error, "");
        ck_assert_uint_eq(res.count, 0);
        if (r == -ECONNABORTED) {
            ck_assert_int_eq(res.abort_code, 42);
            ck_assert_ptr_nonnull(strstr(res.error, "told to fail"));
        }
        expect_healthy(fn);
    }
    /* A RETURN that only looks like a plain OUT through the identity map:
     * it returns (no results), and the next call starts clean. */
    for (int i = 0; i < 3; i++) {
        struct vmm_fn_result res;
        ck_assert_int_eq(call(fn, "remap_return", NULL, 0, &res), 0);
        ck_assert_uint_eq(res.count, 0);
        expect_healthy(fn);
    }
    /* Code overwritten by one call is back for the next. */
    ck_assert_int_eq(call_int(fn, "scribble", NULL, 0), 0);
    expect_healthy(fn);
    struct vmm_fn_stats st = VMM_INIT(struct vmm_fn_stats);
    ck_assert_int_eq(vmm_fn_get_stats(fn, &st), 0);
    ck_assert_uint_eq(st.failed, sizeof(cases) / sizeof(cases[0]));
    vmm_fn_destroy(fn);
}
END_TEST

/* Cancels fn every 20 ms until done: a cancel with no call running does
 * nothing, so however late the call starts, one cancel lands in it. */
struct canceller {
    struct vmm_fn *fn;
    volatile bool done;
};

static void *cancel_until_done(void *arg)
{
    struct canceller *c = arg;
    while (!c->done) {
        struct timespec ts = {.tv_nsec = 20 * 1000000L};
        nanosleep(&ts, NULL);
        vmm_fn_cancel(c->fn);
    }
    return NULL;
}

START_TEST(cancel_from_another_thread)
{
    struct vmm_fn *fn = make_fn(0);
    /* No call running: nothing happens, the next call is not cut short. */
    vmm_fn_cancel(fn);
    expect_healthy(fn);
    for (unsigned i = 0; i < 3; i++) {
        struct canceller c = {.fn = fn};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, cancel_until_done, &c), 0);
        struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
        int r = vmm_fn_call(fn, i == 1 ? "halt" : "spin", NULL, 0, 0, &res);
        c.done = true;
        pthread_join(t, NULL);
        ck_assert_int_eq(r, -ECANCELED);
        expect_healthy(fn);
    }
    /* A deadline that does not pass leaves a call alone; a later call with a
     * shorter one is still stopped in time. */
    struct vmm_fn_val a = VMM_FN_INT_VAL(5);
    struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
    ck_assert_int_eq(vmm_fn_call(fn, "echo", &a, 1, 60ull * 1000 * 1000 * 1000, &res), 0);
    ck_assert_int_eq(vmm_fn_call(fn, "spin", NULL, 0, 100ull * 1000 * 1000, &res), -ETIMEDOUT);
    expect_healthy(fn);
    vmm_fn_destroy(fn);
}
END_TEST

/* Set by main: the host's /dev/kvm is kvm_pvm, whose instruction emulator
 * has no SSE moves. */
static bool emulating_kvm;

START_TEST(no_state_survives_a_reset)
{
    struct vmm_fn *fn = make_fn(0);
    int64_t first_seen[2] = {0, 0};
    for (int64_t v = 1; v <= 3; v++) {
        struct vmm_fn_val a = VMM_FN_INT_VAL(v * 1000 + 1);
        struct vmm_fn_result res;
        ck_assert_int_eq(call(fn, "stash", &a, 1, &res), 0);
        ck_assert_uint_eq(res.count, 2);
        ck_assert_int_eq(res.values[0].i, 0); /* .data */
        ck_assert_int_eq(res.values[1].i, 0); /* a .bss page */
        ck_assert_int_eq(call_int(fn, "stash_dr0", &a, 1), 0);
        /* MSRs and the LAPIC: denied to the guest (the access faults, or
         * reads of a LAPIC turned off give the same value every time) or
         * reset: never the value the previous call wrote. */
        static const char *const denied_or_reset[] = {"stash_msr", "stash_apic"};
        for (unsigned k = 0; k < 2; k++) {
            int r = call(fn, denied_or_reset[k], &a, 1, &res);
            ck_assert_msg(r == 0 || r == -EFAULT, "%s: %s (%s)", denied_or_reset[k],
                          vmm_strerror(r), res.error);
            if (r == 0 && v == 1)
                first_seen[k] = res.values[0].i;
            else if (r == 0)
                ck_assert_int_eq(res.values[0].i, first_seen[k]);
            expect_healthy(fn);
        }
        int r = call(fn, "stash_xmm", &a, 1, &res);
        if (r == -EFAULT && emulating_kvm) {
            if (v == 1)
                printf("note: kvm_pvm cannot run the SSE probe (%s); xmm0 not checked\n",
                       res.error);
        } else {
            ck_assert_msg(r == 0, "stash_xmm: %s (%s)", vmm_strerror(r), res.error);
            ck_assert_int_eq(res.values[0].i, 0);
        }
    }
    /* A call's input is gone before the next call: a short argument after a
     * long one reads only zeros past its end (the sum of the bytes). */
    static uint8_t ones[4096];
    memset(ones, 1, sizeof(ones));
    struct vmm_fn_val l = VMM_FN_BYTES_VAL(ones, sizeof(ones));
    ck_assert_int_eq(call_int(fn, "sum", &l, 1), 4096);
    vmm_fn_destroy(fn);
}
END_TEST

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

#define MANY_CALLS 2000

START_TEST(many_calls_without_growth)
{
    unsigned fds0 = count_fds();
    struct vmm_fn *fn = make_fn(0);
    struct vmm_fn_val a[] = {VMM_FN_INT_VAL(0), VMM_FN_BYTES_VAL("payload", 7)};
    for (int i = 0; i < 100; i++) /* warm up: allocations that happen once */
        (void)call_int(fn, "sum", a, 1);
    unsigned fds = count_fds();
    long rss = rss_kib();
    for (int i = 0; i < MANY_CALLS; i++) {
        a[0].i = i;
        struct vmm_fn_result res;
        int r = call(fn, i % 2 ? "echo" : "sum", a, 2, &res);
        ck_assert_msg(r == 0, "call %d: %s (%s)", i, vmm_strerror(r), res.error);
        if (i % 2 == 0)
            ck_assert_int_eq(res.values[0].i, i + 'p' + 'a' + 'y' + 'l' + 'o' + 'a' + 'd');
    }
    ck_assert_uint_eq(count_fds(), fds);
    long grown = rss_kib() - rss;
    ck_assert_msg(grown < 1024, "RSS grew by %ld KiB over %d calls", grown, MANY_CALLS);
    struct vmm_fn_stats st = VMM_INIT(struct vmm_fn_stats);
    ck_assert_int_eq(vmm_fn_get_stats(fn, &st), 0);
    ck_assert_uint_eq(st.calls, MANY_CALLS + 100);
    ck_assert_uint_eq(st.failed, 0);
    /* A reset copies back a handful of pages, not the VM's memory. */
    ck_assert_uint_gt(st.last_pages_restored, 0);
    ck_assert_uint_lt(st.last_pages_restored, 16);
    vmm_fn_destroy(fn);

    /* Create and destroy leave nothing behind either. */
    for (int i = 0; i < 20; i++) {
        fn = make_fn(0);
        expect_healthy(fn);
        vmm_fn_destroy(fn);
    }
    ck_assert_uint_eq(count_fds(), fds0);
}
END_TEST

START_TEST(bad_configuration_and_calls_are_refused)
{
    struct vmm_fn *fn;
    struct vmm_fn_config c = VMM_INIT(struct vmm_fn_config);
    ck_assert_int_eq(vmm_fn_create(&c, &fn), -EINVAL); /* no image */
    c.image_path = harness_guest_path("fn_test");
    c.mem_size = 3ull << 20; /* not a multiple of 2 MiB */
    ck_assert_int_eq(vmm_fn_create(&c, &fn), -EINVAL);
    c.mem_size = 1ull << 20;
    ck_assert_int_eq(vmm_fn_create(&c, &fn), -EINVAL);
    c.mem_size = 0;
    c.size = 1;
    ck_assert_int_eq(vmm_fn_create(&c, &fn), -EINVAL);
    static const uint8_t junk[64] = {0x7f, 'E', 'L', 'F'};
    ck_assert_int_eq(
        vmm_fn_create(&VMM_INIT(struct vmm_fn_config, .image = junk, .image_size = sizeof(junk)),
                      &fn),
        -EINVAL);
    /* A guest that never gets ready. */
    ck_assert_int_eq(vmm_fn_create(&VMM_INIT(struct vmm_fn_config,
                                             .image_path = harness_guest_path("fn_badinit"),
                                             .init_timeout_ns = 200ull * 1000 * 1000),
                                   &fn),
                     -ETIMEDOUT);

    fn = make_fn(8ull << 20);
    struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
    char longname[VMM_FN_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(vmm_fn_call(fn, longname, NULL, 0, 0, &res), -EINVAL);
    ck_assert_int_eq(vmm_fn_call(fn, "", NULL, 0, 0, &res), -EINVAL);
    struct vmm_fn_val badtype = {.type = 9};
    ck_assert_int_eq(vmm_fn_call(fn, "echo", &badtype, 1, 0, &res), -EINVAL);
    static uint8_t huge[VMM_FN_IN_SIZE];
    struct vmm_fn_val h = VMM_FN_BYTES_VAL(huge, sizeof(huge));
    ck_assert_int_eq(vmm_fn_call(fn, "echo", &h, 1, 0, &res), -E2BIG);
    struct vmm_fn_result bad = {.size = 2};
    ck_assert_int_eq(vmm_fn_call(fn, "echo", NULL, 0, 0, &bad), -EINVAL);
    ck_assert_int_eq(vmm_fn_register(fn, "", host_log, NULL), -EINVAL);
    ck_assert_int_eq(vmm_fn_register(fn, longname, host_log, NULL), -EINVAL);
    ck_assert_int_eq(vmm_fn_register(fn, "x", NULL, NULL), -EINVAL);
    expect_healthy(fn);
    vmm_fn_destroy(fn);
    vmm_fn_destroy(NULL);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    emulating_kvm = access("/sys/module/kvm_pvm", F_OK) == 0;
    Suite *s = suite_create("function");
    TCase *tc = tcase_create("calls");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_argument_type_round_trips);
    tcase_add_test(tc, sha256_of_the_input);
    tcase_add_test(tc, host_calls);
    tcase_add_test(tc, hostile_guests_fail_their_own_call_only);
    tcase_add_test(tc, cancel_from_another_thread);
    tcase_add_test(tc, no_state_survives_a_reset);
    tcase_add_test(tc, many_calls_without_growth);
    tcase_add_test(tc, bad_configuration_and_calls_are_refused);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
