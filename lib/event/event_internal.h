/* SPDX-License-Identifier: Apache-2.0 */
/* Hidden event-loop helpers for other components (not in the public API). */
#ifndef VMM_EVENT_INTERNAL_H
#define VMM_EVENT_INTERNAL_H

#include <stdint.h>
#include <vmm/event.h>

/*
 * vmm_event_loop_add, edge-triggered (EPOLLET): the callback runs once per
 * wake-up of fd (each eventfd write or eventfd_signal is one), and the fd
 * need not be drained. Made for notification eventfds whose counter carries
 * no information: the callback skips the read(2) that a level-triggered fd
 * needs to stop firing, one system call per notification. The counter grows
 * by one per signal and cannot realistically reach its 2^64 - 2 limit.
 *
 * What level-triggered fds get from the loop holds here too: an event
 * collected for an fd that was paused, removed or re-added meanwhile is
 * dropped, and resuming (modify to a non-zero mask) or re-adding reports an
 * fd that is still readable at once, so a signal that came while paused is
 * not lost (an undrained eventfd stays readable: one extra callback).
 * vmm_event_loop_modify keeps the fd edge-triggered. Same returns as add.
 */
int vmm_event_loop_add_edge(struct vmm_event_loop *loop, int fd, uint32_t events, vmm_event_fn fn,
                            void *opaque);

#endif /* VMM_EVENT_INTERNAL_H */
