/* SPDX-License-Identifier: Apache-2.0 */
/* Event loop: add/modify/remove, dispatch, stop, and removal racing callbacks. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <vmm/event.h>

#include "check_compat.h"

static struct vmm_event_loop *loop;
static int p1[2], p2[2];

static void setup(void)
{
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    ck_assert_int_eq(pipe2(p1, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(p2, O_CLOEXEC), 0);
}

static void teardown(void)
{
    vmm_event_loop_destroy(loop);
    loop = NULL;
    for (int i = 0; i < 2; i++) {
        if (p1[i] >= 0)
            close(p1[i]);
        if (p2[i] >= 0)
            close(p2[i]);
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

struct hits {
    int n;
    int fd;
    uint32_t events;
};

static void count_cb(void *opaque, int fd, uint32_t events)
{
    struct hits *h = opaque;
    __atomic_add_fetch(&h->n, 1, __ATOMIC_SEQ_CST);
    h->fd = fd;
    h->events = events;
}

static void drain_cb(void *opaque, int fd, uint32_t events)
{
    char buf[64];
    ssize_t r = read(fd, buf, sizeof(buf));
    (void)r;
    count_cb(opaque, fd, events);
}

START_TEST(test_add_dispatch)
{
    struct hits h = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, drain_cb, &h), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);
    /* Nothing ready: a time-out returns 0 and runs nothing. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(h.n, 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(h.n, 1);
    ck_assert_int_eq(h.fd, p1[0]);
    ck_assert(h.events & EPOLLIN);
    /* Drained: level-triggered, so nothing more. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(vmm_event_loop_remove(loop, p1[0]), 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(h.n, 1);
}
END_TEST

START_TEST(test_errors)
{
    struct hits h = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, count_cb, &h), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, count_cb, &h), -EEXIST);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], EPOLLIN, NULL, &h), -EINVAL);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], EPOLLIN | EPOLLET, count_cb, &h), -EINVAL);
    ck_assert_int_eq(vmm_event_loop_add(loop, -1, EPOLLIN, count_cb, &h), -EBADF);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p2[0], EPOLLIN), -ENOENT);
    ck_assert_int_eq(vmm_event_loop_remove(loop, p2[0]), -ENOENT);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);

    /* Regular files and /dev/null cannot be polled. */
    FILE *f = vmm_test_tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(vmm_event_loop_add(loop, fileno(f), EPOLLIN, count_cb, &h), -EPERM);
    ck_assert_int_eq(vmm_event_loop_add(loop, fileno(f), 0, count_cb, &h), -EPERM);
    fclose(f);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(null_fd, 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, null_fd, EPOLLIN, count_cb, &h), -EPERM);
    close(null_fd);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);
    ck_assert_int_eq(h.n, 0);

    /* NULL loop handles. */
    ck_assert_int_eq(vmm_event_loop_run_once(NULL, 0), -EINVAL);
    ck_assert_uint_eq(vmm_event_loop_count(NULL), 0);
    vmm_event_loop_stop(NULL);
    vmm_event_loop_destroy(NULL);
}
END_TEST

START_TEST(test_modify_pause)
{
    struct hits h = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, count_cb, &h), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p1[0], 0), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    /* Paused with the writer gone: a hang-up must not wake the loop either. */
    close(p1[1]);
    p1[1] = -1;
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(h.n, 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p1[0], EPOLLIN), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(h.n, 1);
    ck_assert(h.events & EPOLLIN);
    ck_assert(h.events & EPOLLHUP);

    /* Added paused, then enabled. */
    struct hits h2 = {0};
    ck_assert_int_eq(write(p2[1], "y", 1), 1);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], 0, count_cb, &h2), 0);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p1[0], 0), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p2[0], EPOLLIN | EPOLLOUT), 0);
    ck_assert_int_eq(vmm_event_loop_modify(loop, p2[0], EPOLLIN), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(h2.n, 1);
}
END_TEST

static void *run_thread(void *arg)
{
    intptr_t r = vmm_event_loop_run(arg);
    return (void *)r;
}

START_TEST(test_stop_from_thread)
{
    struct hits h = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, drain_cb, &h), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_thread, loop), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    for (int i = 0; i < 10000 && __atomic_load_n(&h.n, __ATOMIC_SEQ_CST) == 0; i++)
        sleep_ms(1); /* up to 10 s for the loop thread on a loaded machine */
    ck_assert_int_eq(__atomic_load_n(&h.n, __ATOMIC_SEQ_CST), 1);
    vmm_event_loop_stop(loop);
    void *ret;
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((intptr_t)ret, 0);

    /* The loop can run again, and a stop before run makes it return at once. */
    vmm_event_loop_stop(loop);
    ck_assert_int_eq(vmm_event_loop_run(loop), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, run_thread, loop), 0);
    sleep_ms(20);
    vmm_event_loop_stop(loop);
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((intptr_t)ret, 0);
}
END_TEST

static void *stop_later(void *arg)
{
    sleep_ms(30);
    vmm_event_loop_stop(arg);
    return NULL;
}

START_TEST(test_stop_wakes_run_once)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stop_later, loop), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, -1), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    /* The stop consumed by run_once still makes the next run return. */
    ck_assert_int_eq(vmm_event_loop_run(loop), 0);
}
END_TEST

static struct vmm_event_loop *signal_loop;

static void stop_handler(int sig)
{
    vmm_event_loop_stop(signal_loop);
}

START_TEST(test_stop_from_signal_handler)
{
    signal_loop = loop;
    struct sigaction sa = {.sa_handler = stop_handler};
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_thread, loop), 0);
    sleep_ms(20);
    ck_assert_int_eq(pthread_kill(t, SIGUSR1), 0);
    void *ret;
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((intptr_t)ret, 0);
    sigaction(SIGUSR1, &old, NULL);
}
END_TEST

/* Both fds are ready in one batch; whichever callback runs first removes
 * both, so the other one's already collected event must be dropped. */
struct pair_ctx {
    int n;
    int fds[2];
};

static void remove_both_cb(void *opaque, int fd, uint32_t events)
{
    struct pair_ctx *c = opaque;
    c->n++;
    ck_assert_int_eq(vmm_event_loop_remove(loop, c->fds[0]), 0);
    ck_assert_int_eq(vmm_event_loop_remove(loop, c->fds[1]), 0);
    /* Removing again is -ENOENT, also from inside the callback. */
    ck_assert_int_eq(vmm_event_loop_remove(loop, fd), -ENOENT);
}

START_TEST(test_remove_inside_callback)
{
    struct pair_ctx c = {.fds = {p1[0], p2[0]}};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, remove_both_cb, &c), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], EPOLLIN, remove_both_cb, &c), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    ck_assert_int_eq(write(p2[1], "x", 1), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(c.n, 1);
}
END_TEST

/* As above, but the fd is re-added at once with a new callback: the stale
 * event collected for the old registration must not reach the new one. */
static struct hits readded;

static void readd_other_cb(void *opaque, int fd, uint32_t events)
{
    struct pair_ctx *c = opaque;
    c->n++;
    int other = fd == c->fds[0] ? c->fds[1] : c->fds[0];
    ck_assert_int_eq(vmm_event_loop_remove(loop, other), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, other, EPOLLIN, count_cb, &readded), 0);
    ck_assert_int_eq(vmm_event_loop_remove(loop, fd), 0);
}

START_TEST(test_readd_inside_callback)
{
    memset(&readded, 0, sizeof(readded));
    struct pair_ctx c = {.fds = {p1[0], p2[0]}};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, readd_other_cb, &c), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], EPOLLIN, readd_other_cb, &c), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    ck_assert_int_eq(write(p2[1], "x", 1), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(c.n, 1);
    ck_assert_int_eq(readded.n, 0);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 1);
    /* The new registration works from the next wait on. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(readded.n, 1);
}
END_TEST

/* remove from another thread must wait for a running callback. */
struct slow_ctx {
    int entered;
    int removing;
    int done;
    int calls;
};

static void slow_cb(void *opaque, int fd, uint32_t events)
{
    struct slow_ctx *c = opaque;
    __atomic_add_fetch(&c->calls, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->entered, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&c->removing, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    /* Give remove time to (wrongly) return while we still run. */
    sleep_ms(100);
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
}

static void *run_once_thread(void *arg)
{
    intptr_t r = vmm_event_loop_run_once(arg, 5000);
    return (void *)r;
}

START_TEST(test_remove_waits_for_callback)
{
    struct slow_ctx c = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, slow_cb, &c), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_once_thread, loop), 0);
    while (!__atomic_load_n(&c.entered, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    __atomic_store_n(&c.removing, 1, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(vmm_event_loop_remove(loop, p1[0]), 0);
    ck_assert_int_eq(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 1);
    void *ret;
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((intptr_t)ret, 1);
    /* Still readable, but removed: never called again. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
}
END_TEST

/* Holds the loop thread inside a callback until the test has looked. */
struct hold_ctx {
    int entered;
    int release;
};

static void hold_cb(void *opaque, int fd, uint32_t events)
{
    struct hold_ctx *c = opaque;
    __atomic_store_n(&c->entered, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&c->release, __ATOMIC_SEQ_CST))
        sleep_ms(1);
}

START_TEST(test_run_once_one_thread)
{
    struct hold_ctx c = {0};
    ck_assert_int_eq(vmm_event_loop_add(loop, p1[0], EPOLLIN, hold_cb, &c), 0);
    ck_assert_int_eq(write(p1[1], "x", 1), 1);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_once_thread, loop), 0);
    while (!__atomic_load_n(&c.entered, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 0), -EBUSY);
    ck_assert_int_eq(vmm_event_loop_run(loop), -EBUSY);
    /* add/modify from another thread while the loop runs a callback. */
    ck_assert_int_eq(vmm_event_loop_modify(loop, p1[0], 0), 0);
    ck_assert_int_eq(vmm_event_loop_add(loop, p2[0], EPOLLIN, hold_cb, &c), 0);
    __atomic_store_n(&c.release, 1, __ATOMIC_SEQ_CST);
    void *ret;
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_int_eq((intptr_t)ret, 1);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 2);
}
END_TEST

/* Many fds in a table that grows while the loop dispatches. */
START_TEST(test_many_fds)
{
    enum { N = 40 };
    int fds[N][2];
    struct hits h = {0};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(pipe2(fds[i], O_CLOEXEC), 0);
        ck_assert_int_eq(vmm_event_loop_add(loop, fds[i][0], EPOLLIN, drain_cb, &h), 0);
        ck_assert_int_eq(write(fds[i][1], "x", 1), 1);
    }
    ck_assert_uint_eq(vmm_event_loop_count(loop), N);
    int total = 0;
    while (total < N) {
        int r = vmm_event_loop_run_once(loop, 1000);
        ck_assert_int_gt(r, 0);
        total += r;
    }
    ck_assert_int_eq(h.n, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(vmm_event_loop_remove(loop, fds[i][0]), 0);
        close(fds[i][0]);
        close(fds[i][1]);
    }
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
}
END_TEST

static Suite *event_suite(void)
{
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("loop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_add_dispatch);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_modify_pause);
    tcase_add_test(tc, test_stop_from_thread);
    tcase_add_test(tc, test_stop_wakes_run_once);
    tcase_add_test(tc, test_stop_from_signal_handler);
    tcase_add_test(tc, test_remove_inside_callback);
    tcase_add_test(tc, test_readd_inside_callback);
    tcase_add_test(tc, test_remove_waits_for_callback);
    tcase_add_test(tc, test_run_once_one_thread);
    tcase_add_test(tc, test_many_fds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(event_suite());
}
