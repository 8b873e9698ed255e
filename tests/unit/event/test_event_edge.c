/* SPDX-License-Identifier: Apache-2.0 */
/* Edge-triggered fds on the event loop (vmm_event_loop_add_edge, hidden):
 * one callback per signal without draining, coalescing, pause/resume and
 * removal keep their level-triggered guarantees, and the public add still
 * refuses EPOLLET. */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/event.h>

#include "check_compat.h"
#include "event/event_internal.h"

static struct vmm_event_loop *loop;
static int efd;
static int hits;

static void setup(void)
{
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ck_assert_int_ge(efd, 0);
    hits = 0;
}

static void teardown(void)
{
    vmm_event_loop_destroy(loop);
    close(efd);
}

static void signal_fd(void)
{
    uint64_t one = 1;
    ck_assert_int_eq(write(efd, &one, sizeof(one)), (int)sizeof(one));
}

/* Counts, never reads the fd. */
static void count_cb(void *opaque, int fd, uint32_t events)
{
    (void)opaque;
    ck_assert_int_eq(fd, efd);
    ck_assert(events & EPOLLIN);
    hits++;
}

START_TEST(test_edge_without_draining)
{
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN, count_cb, NULL), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 0), 0);
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(hits, 1);
    /* Not drained, yet no second callback: the edge was consumed. */
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(hits, 1);
    /* Every later signal is a new edge, though the counter never reached 0. */
    for (int i = 0; i < 5; i++) {
        signal_fd();
        ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    }
    ck_assert_int_eq(hits, 6);
    /* Signals before the loop looks coalesce into one callback. */
    signal_fd();
    signal_fd();
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(hits, 7);
    uint64_t count;
    ck_assert_int_eq(read(efd, &count, sizeof(count)), (int)sizeof(count));
    ck_assert_uint_eq(count, 9);
}
END_TEST

START_TEST(test_edge_pause_resume_remove)
{
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN, count_cb, NULL), 0);
    ck_assert_int_eq(vmm_event_loop_modify(loop, efd, 0), 0);
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(hits, 0);
    /* Resuming reports what came while paused, once, and stays
     * edge-triggered. */
    ck_assert_int_eq(vmm_event_loop_modify(loop, efd, EPOLLIN), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(hits, 1);
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(hits, 2);
    /* A signal collected while the fd was paused and resumed is not lost
     * either (modify re-reports a readable fd). */
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_modify(loop, efd, 0), 0);
    ck_assert_int_eq(vmm_event_loop_modify(loop, efd, EPOLLIN), 0);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(hits, 3);
    /* Removed: no more callbacks; re-added: the undrained fd reports. */
    ck_assert_int_eq(vmm_event_loop_remove(loop, efd), 0);
    signal_fd();
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_int_eq(hits, 3);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN, count_cb, NULL), 0);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN, count_cb, NULL), -EEXIST);
    ck_assert_int_eq(vmm_event_loop_run_once(loop, 1000), 1);
    ck_assert_int_eq(hits, 4);
    ck_assert_int_eq(vmm_event_loop_remove(loop, efd), 0);
}
END_TEST

START_TEST(test_edge_argument_checks)
{
    ck_assert_int_eq(vmm_event_loop_add_edge(NULL, efd, EPOLLIN, count_cb, NULL), -EINVAL);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, -1, EPOLLIN, count_cb, NULL), -EBADF);
    ck_assert_int_eq(vmm_event_loop_add_edge(loop, efd, EPOLLIN | EPOLLONESHOT, count_cb, NULL),
                     -EINVAL);
    /* The public add stays level-triggered only. */
    ck_assert_int_eq(vmm_event_loop_add(loop, efd, EPOLLIN | EPOLLET, count_cb, NULL), -EINVAL);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("event-edge");
    TCase *tc = tcase_create("edge");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_edge_without_draining);
    tcase_add_test(tc, test_edge_pause_resume_remove);
    tcase_add_test(tc, test_edge_argument_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(suite());
}
