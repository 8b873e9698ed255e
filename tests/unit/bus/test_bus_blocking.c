/* SPDX-License-Identifier: Apache-2.0 */
/* A device whose callback blocks (as the UART's does on a full output fd):
 * the bus lock is not held across it, so other devices keep being
 * dispatched and unregistered, and unregistering the blocked device itself
 * waits for its calls in progress, and only for those. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmm/bus.h>

#include "check_compat.h"

/* Generous: these bound a wait for something that should happen at once, so
 * that a regression fails the test instead of hanging it. */
#define PROMPT_MS 5000

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- a device that blocks until the test lets it go ---- */

struct blocker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned entered;  /* calls that reached the callback */
    unsigned released; /* calls the test has let go */
    unsigned finished; /* calls about to return */
};

static struct blocker *blocker_new(void)
{
    /* On the heap and freed as soon as its unregister returns: a call still
     * running after that is a use-after-free under ASan. */
    struct blocker *b = calloc(1, sizeof(*b));
    ck_assert_ptr_nonnull(b);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    return b;
}

static void blocker_free(struct blocker *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static void blocker_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct blocker *b = opaque;
    pthread_mutex_lock(&b->lock);
    unsigned ticket = b->entered++;
    pthread_cond_broadcast(&b->cond);
    while (b->released <= ticket)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    /* Linger after being let go, still using the device's state, so that
     * an unregister that did not wait frees it under our feet. */
    sleep_ms(20);
    pthread_mutex_lock(&b->lock);
    b->finished++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static const struct vmm_bus_ops blocker_ops = {.size = sizeof(struct vmm_bus_ops),
                                               .write = blocker_write};

/* Wait until *counter reaches n (under b->lock); false after PROMPT_MS. */
static bool blocker_wait(struct blocker *b, const unsigned *counter, unsigned n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PROMPT_MS / 1000;
    pthread_mutex_lock(&b->lock);
    int r = 0;
    while (*counter < n && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&b->cond, &b->lock, &deadline);
    bool ok = *counter >= n;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static void blocker_release(struct blocker *b, unsigned n)
{
    pthread_mutex_lock(&b->lock);
    b->released += n;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static unsigned blocker_count(struct blocker *b, const unsigned *counter)
{
    pthread_mutex_lock(&b->lock);
    unsigned n = *counter;
    pthread_mutex_unlock(&b->lock);
    return n;
}

/* ---- a plain device that counts its calls ---- */

static void count_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    __atomic_add_fetch((unsigned *)opaque, 1, __ATOMIC_SEQ_CST);
}

static void count_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    __atomic_add_fetch((unsigned *)opaque, 1, __ATOMIC_SEQ_CST);
    memset(data, 0x5a, len);
}

static const struct vmm_bus_ops count_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = count_read, .write = count_write};

/* ---- bus calls on a helper thread, so that the test can see them hang ---- */

enum op_kind { OP_WRITE, OP_UNREGISTER };

struct op {
    struct vmm_bus *bus;
    enum op_kind kind;
    uint64_t addr;
    pthread_t thread;
    int result;
    bool done; /* atomic */
};

static void *op_thread(void *arg)
{
    struct op *op = arg;
    uint8_t v = 1;
    if (op->kind == OP_WRITE)
        op->result = vmm_bus_write(op->bus, op->addr, &v, 1);
    else
        op->result = vmm_bus_unregister(op->bus, op->addr);
    __atomic_store_n(&op->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static void op_start(struct op *op, struct vmm_bus *bus, enum op_kind kind, uint64_t addr)
{
    *op = (struct op){.bus = bus, .kind = kind, .addr = addr};
    ck_assert_int_eq(pthread_create(&op->thread, NULL, op_thread, op), 0);
}

static bool op_done(const struct op *op)
{
    return __atomic_load_n(&op->done, __ATOMIC_SEQ_CST);
}

/* Wait for op to return; false (it is still stuck) after PROMPT_MS. */
static bool op_wait(const struct op *op)
{
    for (int i = 0; i < PROMPT_MS && !op_done(op); i++)
        sleep_ms(1);
    return op_done(op);
}

static int op_join(struct op *op)
{
    pthread_join(op->thread, NULL);
    return op->result;
}

#define SLOW  0x3f8 /* the blocking device */
#define OTHER 0x2f8 /* a device dispatched meanwhile */
#define GONE  0x2e8 /* a device unregistered meanwhile */

START_TEST(test_blocked_device_blocks_no_other)
{
    struct vmm_bus *bus;
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
    struct blocker *slow = blocker_new();
    unsigned other_calls = 0, gone_calls = 0;
    ck_assert_int_eq(vmm_bus_register(bus, SLOW, 8, &blocker_ops, slow), 0);
    ck_assert_int_eq(vmm_bus_register(bus, OTHER, 8, &count_ops, &other_calls), 0);
    ck_assert_int_eq(vmm_bus_register(bus, GONE, 8, &count_ops, &gone_calls), 0);

    /* One vCPU-like thread sits in the slow device. */
    struct op stuck;
    op_start(&stuck, bus, OP_WRITE, SLOW);
    ck_assert(blocker_wait(slow, &slow->entered, 1));

    /* Another device on the same bus is dispatched meanwhile... */
    uint8_t v = 0;
    ck_assert_int_eq(vmm_bus_write(bus, OTHER, &v, 1), 0);
    ck_assert_int_eq(vmm_bus_read(bus, OTHER + 5, &v, 1), 0);
    ck_assert_uint_eq(v, 0x5a);
    ck_assert_uint_eq(__atomic_load_n(&other_calls, __ATOMIC_SEQ_CST), 2);

    /* ...and a third one is unregistered without waiting for the slow call. */
    struct op unreg_gone;
    op_start(&unreg_gone, bus, OP_UNREGISTER, GONE);
    ck_assert_msg(op_wait(&unreg_gone), "unregistering an idle device waited on a blocked one");
    ck_assert_int_eq(op_join(&unreg_gone), 0);
    ck_assert_int_eq(vmm_bus_write(bus, GONE, &v, 1), -ENOENT);
    ck_assert_uint_eq(gone_calls, 0);

    /* The slow call was never disturbed. */
    ck_assert(!op_done(&stuck));
    ck_assert_uint_eq(blocker_count(slow, &slow->finished), 0);
    blocker_release(slow, 1);
    ck_assert_int_eq(op_join(&stuck), 0);
    ck_assert_uint_eq(blocker_count(slow, &slow->finished), 1);

    ck_assert_int_eq(vmm_bus_unregister(bus, SLOW), 0);
    blocker_free(slow);
    ck_assert_int_eq(vmm_bus_unregister(bus, OTHER), 0);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_unregister_waits_for_blocked_calls)
{
    struct vmm_bus *bus;
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
    struct blocker *slow = blocker_new();
    unsigned other_calls = 0;
    ck_assert_int_eq(vmm_bus_register(bus, SLOW, 8, &blocker_ops, slow), 0);
    ck_assert_int_eq(vmm_bus_register(bus, OTHER, 8, &count_ops, &other_calls), 0);

    /* Two calls in the slow device at once. */
    struct op stuck[2];
    op_start(&stuck[0], bus, OP_WRITE, SLOW);
    op_start(&stuck[1], bus, OP_WRITE, SLOW + 1);
    ck_assert(blocker_wait(slow, &slow->entered, 2));

    struct op unreg;
    op_start(&unreg, bus, OP_UNREGISTER, SLOW);
    /* The device leaves the table at once: new accesses find nobody (a
     * read, which this device does not implement, never blocks)... */
    uint8_t v = 0;
    int r = 0;
    for (int i = 0; i < PROMPT_MS && (r = vmm_bus_read(bus, SLOW, &v, 1)) == 0; i++)
        sleep_ms(1);
    ck_assert_int_eq(r, -ENOENT);
    /* ...while its unregister waits, the rest of the bus works (a
     * writer-preferring lock held across the slow call would stop this)... */
    struct op other;
    op_start(&other, bus, OP_WRITE, OTHER);
    ck_assert_msg(op_wait(&other), "dispatch waited behind a blocked device's unregister");
    ck_assert_int_eq(op_join(&other), 0);
    ck_assert_uint_eq(__atomic_load_n(&other_calls, __ATOMIC_SEQ_CST), 1);
    ck_assert_int_eq(vmm_bus_register(bus, 0x100, 1, &count_ops, &other_calls), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, 0x100), 0);
    ck_assert_uint_eq(blocker_count(slow, &slow->entered), 2);

    /* ...and it returns only once both calls have ended. */
    sleep_ms(50);
    ck_assert(!op_done(&unreg));
    blocker_release(slow, 1);
    ck_assert(blocker_wait(slow, &slow->finished, 1));
    sleep_ms(50);
    ck_assert(!op_done(&unreg));
    blocker_release(slow, 1);
    ck_assert(op_wait(&unreg));
    ck_assert_int_eq(op_join(&unreg), 0);
    ck_assert_uint_eq(blocker_count(slow, &slow->finished), 2);
    /* Nothing touches the device after its unregister returned (ASan). */
    blocker_free(slow);

    ck_assert_int_eq(op_join(&stuck[0]), 0);
    ck_assert_int_eq(op_join(&stuck[1]), 0);
    ck_assert_int_eq(vmm_bus_unregister(bus, SLOW), -ENOENT);
    ck_assert_int_eq(vmm_bus_unregister(bus, OTHER), 0);
    vmm_bus_destroy(bus);
}
END_TEST

/* Many short calls racing one unregister: it must neither miss the last
 * call's wake-up (hang) nor return before a call has ended. */
struct churn {
    struct vmm_bus *bus;
    unsigned calls; /* atomic */
    bool gone;      /* atomic: set once unregister returned */
    bool stop;      /* atomic */
    unsigned late;  /* atomic: calls that saw gone */
};

static void churn_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct churn *c = opaque;
    __atomic_add_fetch(&c->calls, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&c->gone, __ATOMIC_SEQ_CST))
        __atomic_add_fetch(&c->late, 1, __ATOMIC_SEQ_CST);
}

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    uint8_t v = 0;
    while (!__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST))
        (void)vmm_bus_write(c->bus, SLOW, &v, 1);
    return NULL;
}

START_TEST(test_unregister_races_short_calls)
{
    static const struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops),
                                           .write = churn_write};
    for (int round = 0; round < 200; round++) {
        struct vmm_bus *bus;
        ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
        struct churn c = {.bus = bus};
        ck_assert_int_eq(vmm_bus_register(bus, SLOW, 8, &ops, &c), 0);
        pthread_t t[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(pthread_create(&t[k], NULL, churn_thread, &c), 0);
        while (__atomic_load_n(&c.calls, __ATOMIC_SEQ_CST) < 50)
            sched_yield();
        ck_assert_int_eq(vmm_bus_unregister(bus, SLOW), 0);
        __atomic_store_n(&c.gone, true, __ATOMIC_SEQ_CST);
        __atomic_store_n(&c.stop, true, __ATOMIC_SEQ_CST);
        for (int k = 0; k < 2; k++)
            pthread_join(t[k], NULL);
        ck_assert_uint_eq(c.late, 0);
        vmm_bus_destroy(bus);
    }
}
END_TEST

/* The table changing under dispatches: entries move (memmove) and the
 * table grows (realloc) while other threads look a device up; they must
 * always find it, never a neighbour or nothing. */
struct steady {
    struct vmm_bus *bus;
    bool stop;        /* atomic */
    unsigned lookups; /* atomic */
    unsigned misses;  /* atomic: dispatches that did not reach the device */
};

static void *steady_thread(void *arg)
{
    struct steady *st = arg;
    while (!__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST)) {
        uint8_t v = 0;
        if (vmm_bus_read(st->bus, OTHER + 3, &v, 1) != 0 || v != 0x5a)
            __atomic_add_fetch(&st->misses, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&st->lookups, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

START_TEST(test_table_changes_under_dispatch)
{
    struct vmm_bus *bus;
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
    unsigned calls = 0;
    ck_assert_int_eq(vmm_bus_register(bus, OTHER, 8, &count_ops, &calls), 0);
    struct steady st = {.bus = bus};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&t[k], NULL, steady_thread, &st), 0);
    static const struct vmm_bus_ops none = {.size = sizeof(struct vmm_bus_ops)};
    for (int round = 0; round < 50; round++) {
        /* Below and above the steady device, so that it moves in the table,
         * and more of them than the table first holds, so that it grows. */
        for (uint64_t i = 0; i < 40; i++) {
            ck_assert_int_eq(vmm_bus_register(bus, 0x100 + i, 1, &none, NULL), 0);
            ck_assert_int_eq(vmm_bus_register(bus, 0x1000 + i, 1, &none, NULL), 0);
        }
        for (uint64_t i = 0; i < 40; i++) {
            ck_assert_int_eq(vmm_bus_unregister(bus, 0x100 + i), 0);
            ck_assert_int_eq(vmm_bus_unregister(bus, 0x1000 + i), 0);
        }
    }
    __atomic_store_n(&st.stop, true, __ATOMIC_SEQ_CST);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    ck_assert_uint_gt(st.lookups, 0);
    ck_assert_uint_eq(st.misses, 0);
    ck_assert_uint_eq(__atomic_load_n(&calls, __ATOMIC_SEQ_CST), st.lookups);
    ck_assert_int_eq(vmm_bus_unregister(bus, OTHER), 0);
    vmm_bus_destroy(bus);
}
END_TEST

static Suite *bus_blocking_suite(void)
{
    Suite *s = suite_create("bus_blocking");
    TCase *tc = tcase_create("blocking");
    /* The tests wait on threads; a regression hangs rather than fails. */
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_blocked_device_blocks_no_other);
    tcase_add_test(tc, test_unregister_waits_for_blocked_calls);
    tcase_add_test(tc, test_unregister_races_short_calls);
    tcase_add_test(tc, test_table_changes_under_dispatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(bus_blocking_suite());
}
