/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An epoll event loop for device back ends: file descriptors (eventfds,
 * sockets, ttys, pipes) with callbacks. A VM owns one and runs it on an I/O
 * thread during vmm_vm_run; an application may also run a loop itself and add
 * its own fds to it.
 *
 * Threads: add/modify/remove may be called from any thread, including from a
 * callback. When remove returns on a thread other than the loop's, the fd's
 * callback is not running and will not run again; removed from inside a
 * callback, it will not run again after the current call. run/run_once are
 * for one thread at a time; stop works from any thread.
 */
#ifndef VMM_EVENT_H
#define VMM_EVENT_H

#include <stdint.h>
#include <vmm/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_event_loop;

/* events is the EPOLL* mask that fired (EPOLLIN, EPOLLOUT, EPOLLHUP, ...). */
typedef void (*vmm_event_fn)(void *opaque, int fd, uint32_t events);

/* Create a loop. Returns 0, -ENOMEM or a -errno from epoll/eventfd. */
VMM_API VMM_MUST_USE int vmm_event_loop_create(struct vmm_event_loop **out);

/* Free a loop that is not running; fds are not closed. Accepts NULL. */
VMM_API void vmm_event_loop_destroy(struct vmm_event_loop *loop);

/*
 * Watch fd for events (EPOLLIN/EPOLLOUT..., level-triggered). The fd stays
 * the caller's. Returns 0, -EEXIST (already watched), -EPERM (fd cannot be
 * polled, e.g. a regular file), or another -errno.
 */
VMM_API VMM_MUST_USE int vmm_event_loop_add(struct vmm_event_loop *loop, int fd, uint32_t events,
                                            vmm_event_fn fn, void *opaque);

/* Change the events watched for fd (0 pauses it). 0, -ENOENT or -errno. */
VMM_API int vmm_event_loop_modify(struct vmm_event_loop *loop, int fd, uint32_t events);

/* Stop watching fd. 0 or -ENOENT. */
VMM_API int vmm_event_loop_remove(struct vmm_event_loop *loop, int fd);

/* Number of fds watched. */
VMM_API unsigned vmm_event_loop_count(struct vmm_event_loop *loop);

/* Wait up to timeout_ms (-1: forever) and dispatch what is ready. Returns the
 * number of callbacks run, 0 on time-out or stop, or -errno. */
VMM_API int vmm_event_loop_run_once(struct vmm_event_loop *loop, int timeout_ms);

/* Dispatch until vmm_event_loop_stop. Returns 0 or -errno. */
VMM_API int vmm_event_loop_run(struct vmm_event_loop *loop);

/* Make run return (and a blocked run_once wake up). Any thread; async-signal-
 * safe. A stop before run starts makes the next run return at once. */
VMM_API void vmm_event_loop_stop(struct vmm_event_loop *loop);

#ifdef __cplusplus
}
#endif

#endif /* VMM_EVENT_H */
