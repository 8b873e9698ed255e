/* SPDX-License-Identifier: Apache-2.0 */
/* The epoll event loop device back ends run on: fd table, dispatch, stop. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vmm/event.h>

#include "event/event_internal.h"
#include "vmm_internal.h"

/* epoll_event.data of the stop eventfd; never a valid slot/generation pair
 * because slot indices stay far below UINT32_MAX. */
#define EVENT_STOP_TOKEN UINT64_MAX

#define EVENT_BATCH 32

enum slot_state {
    SLOT_FREE = 0,
    SLOT_ACTIVE,
    SLOT_DEAD, /* removed while its callback runs; freed when it returns */
};

struct event_slot {
    enum slot_state state;
    /* Bumped each time the slot is freed: an event collected by epoll_wait
     * for an earlier occupant carries the old value and is dropped. */
    uint32_t gen;
    int fd;
    uint32_t events; /* 0: paused, and then not in the epoll set at all */
    bool edge;       /* added by vmm_event_loop_add_edge: EPOLLET with every mask */
    bool in_callback;
    vmm_event_fn fn;
    void *opaque;
};

struct vmm_event_loop {
    int epfd;
    int stopfd;
    pthread_mutex_t lock;
    pthread_cond_t callback_done;
    struct event_slot *slots;
    unsigned nslots;
    unsigned active;
    bool running;          /* a thread is inside run_once */
    pthread_t loop_thread; /* that thread, while running */
    bool stopped;          /* run_once drained a stop; run returns and clears it */
};

static uint64_t slot_token(const struct vmm_event_loop *loop, unsigned idx)
{
    return ((uint64_t)loop->slots[idx].gen << 32) | idx;
}

int vmm_event_loop_create(struct vmm_event_loop **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_event_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return -ENOMEM;
    int ret;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        ret = -errno;
        goto err_free;
    }
    loop->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->stopfd < 0) {
        ret = -errno;
        goto err_epoll;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EVENT_STOP_TOKEN};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stopfd, &ev) < 0) {
        ret = -errno;
        goto err_stopfd;
    }
    ret = pthread_mutex_init(&loop->lock, NULL);
    if (ret) {
        ret = -ret;
        goto err_stopfd;
    }
    ret = pthread_cond_init(&loop->callback_done, NULL);
    if (ret) {
        ret = -ret;
        goto err_mutex;
    }
    *out = loop;
    return 0;

err_mutex:
    pthread_mutex_destroy(&loop->lock);
err_stopfd:
    close(loop->stopfd);
err_epoll:
    close(loop->epfd);
err_free:
    free(loop);
    vmm_log_error("event loop: cannot create: %s", vmm_strerror(ret));
    return ret;
}

void vmm_event_loop_destroy(struct vmm_event_loop *loop)
{
    if (!loop)
        return;
    pthread_cond_destroy(&loop->callback_done);
    pthread_mutex_destroy(&loop->lock);
    close(loop->stopfd);
    close(loop->epfd);
    free(loop->slots);
    free(loop);
}

/* Index of the live (not removed) entry for fd, or -1. Lock held. */
static int find_active(const struct vmm_event_loop *loop, int fd)
{
    for (unsigned i = 0; i < loop->nslots; i++)
        if (loop->slots[i].state == SLOT_ACTIVE && loop->slots[i].fd == fd)
            return (int)i;
    return -1;
}

/* A free slot, growing the table if needed; -1 when out of memory. Lock held. */
static int alloc_slot(struct vmm_event_loop *loop)
{
    for (unsigned i = 0; i < loop->nslots; i++)
        if (loop->slots[i].state == SLOT_FREE)
            return (int)i;
    unsigned n = loop->nslots ? loop->nslots * 2 : 8;
    if (n > (1u << 20))
        return -1;
    struct event_slot *s = realloc(loop->slots, n * sizeof(*s));
    if (!s)
        return -1;
    memset(&s[loop->nslots], 0, (n - loop->nslots) * sizeof(*s));
    unsigned idx = loop->nslots;
    loop->slots = s;
    loop->nslots = n;
    return (int)idx;
}

static void free_slot(struct event_slot *s)
{
    s->state = SLOT_FREE;
    s->gen++;
    s->fn = NULL;
    s->opaque = NULL;
    s->fd = -1;
}

/* Edge-triggered or one-shot modes would break level-triggered pausing for
 * callbacks that expect it; only vmm_event_loop_add_edge (internal, for fds
 * whose callbacks are written for it) sets EPOLLET. */
#define EVENT_BAD_FLAGS (EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE)

/* The epoll mask for events on a slot added with (edge) or without EPOLLET. */
static uint32_t epoll_mask(bool edge, uint32_t events)
{
    return events | (edge ? EPOLLET : 0);
}

static int event_add(struct vmm_event_loop *loop, int fd, uint32_t events, bool edge,
                     vmm_event_fn fn, void *opaque)
{
    if (!loop || !fn || (events & EVENT_BAD_FLAGS))
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    int ret = 0;
    pthread_mutex_lock(&loop->lock);
    if (find_active(loop, fd) >= 0) {
        ret = -EEXIST;
        goto out;
    }
    int idx = alloc_slot(loop);
    if (idx < 0) {
        ret = -ENOMEM;
        goto out;
    }
    struct epoll_event ev = {.events = epoll_mask(edge, events),
                             .data.u64 = slot_token(loop, (unsigned)idx)};
    /* Always add once, even when paused: that is how an fd epoll cannot
     * watch (regular file, /dev/null) is reported as -EPERM. */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        ret = -errno;
        goto out;
    }
    if (events == 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    struct event_slot *s = &loop->slots[idx];
    s->state = SLOT_ACTIVE;
    s->fd = fd;
    s->events = events;
    s->edge = edge;
    s->in_callback = false;
    s->fn = fn;
    s->opaque = opaque;
    loop->active++;
out:
    pthread_mutex_unlock(&loop->lock);
    return ret;
}

int vmm_event_loop_add(struct vmm_event_loop *loop, int fd, uint32_t events, vmm_event_fn fn,
                       void *opaque)
{
    return event_add(loop, fd, events, false, fn, opaque);
}

int vmm_event_loop_add_edge(struct vmm_event_loop *loop, int fd, uint32_t events, vmm_event_fn fn,
                            void *opaque)
{
    return event_add(loop, fd, events, true, fn, opaque);
}

int vmm_event_loop_modify(struct vmm_event_loop *loop, int fd, uint32_t events)
{
    if (!loop || (events & EVENT_BAD_FLAGS))
        return -EINVAL;
    int ret = 0;
    pthread_mutex_lock(&loop->lock);
    int idx = find_active(loop, fd);
    if (idx < 0) {
        ret = -ENOENT;
        goto out;
    }
    struct event_slot *s = &loop->slots[idx];
    if (s->events == events)
        goto out;
    /* A paused fd leaves the epoll set: epoll reports EPOLLHUP/EPOLLERR even
     * with an empty mask, and a level-triggered hang-up would spin the loop. */
    struct epoll_event ev = {.events = epoll_mask(s->edge, events),
                             .data.u64 = slot_token(loop, (unsigned)idx)};
    int op = s->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &ev) < 0) {
        ret = -errno;
        goto out;
    }
    s->events = events;
out:
    pthread_mutex_unlock(&loop->lock);
    return ret;
}

static bool on_loop_thread(const struct vmm_event_loop *loop)
{
    return loop->running && pthread_equal(loop->loop_thread, pthread_self());
}

/* A removed entry for fd whose callback still runs. Lock held. */
static bool callback_of_removed_fd_running(const struct vmm_event_loop *loop, int fd)
{
    for (unsigned i = 0; i < loop->nslots; i++) {
        const struct event_slot *s = &loop->slots[i];
        if (s->state == SLOT_DEAD && s->fd == fd && s->in_callback)
            return true;
    }
    return false;
}

int vmm_event_loop_remove(struct vmm_event_loop *loop, int fd)
{
    if (!loop)
        return -EINVAL;
    pthread_mutex_lock(&loop->lock);
    int idx = find_active(loop, fd);
    if (idx >= 0) {
        struct event_slot *s = &loop->slots[idx];
        /* EBADF here means the caller closed fd first; nothing left to undo. */
        if (s->events)
            epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
        loop->active--;
        if (s->in_callback)
            s->state = SLOT_DEAD; /* the dispatcher frees it */
        else
            free_slot(s);
    }
    /* From the loop thread (a callback) waiting would deadlock; the contract
     * there is only that the callback does not run again. Elsewhere wait, also
     * when a concurrent remove of the same fd got there first. */
    if (!on_loop_thread(loop))
        while (callback_of_removed_fd_running(loop, fd))
            pthread_cond_wait(&loop->callback_done, &loop->lock);
    pthread_mutex_unlock(&loop->lock);
    return idx >= 0 ? 0 : -ENOENT;
}

unsigned vmm_event_loop_count(struct vmm_event_loop *loop)
{
    if (!loop)
        return 0;
    pthread_mutex_lock(&loop->lock);
    unsigned n = loop->active;
    pthread_mutex_unlock(&loop->lock);
    return n;
}

static void drain_stop(struct vmm_event_loop *loop)
{
    uint64_t v;
    while (read(loop->stopfd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    __atomic_store_n(&loop->stopped, true, __ATOMIC_RELEASE);
}

/* Run the callback of one collected event if its entry still exists and
 * still wants events. Called and returns with the lock held; drops it
 * around the callback. Returns whether a callback ran. */
static bool dispatch(struct vmm_event_loop *loop, uint64_t token, uint32_t revents)
{
    unsigned idx = (unsigned)(token & UINT32_MAX);
    uint32_t gen = (uint32_t)(token >> 32);
    if (idx >= loop->nslots)
        return false;
    struct event_slot *s = &loop->slots[idx];
    /* Removed (or removed and re-added) since epoll_wait, paused, or no
     * longer interested in what fired. */
    revents &= s->events | EPOLLERR | EPOLLHUP;
    if (s->state != SLOT_ACTIVE || s->gen != gen || s->events == 0 || revents == 0)
        return false;
    s->in_callback = true;
    vmm_event_fn fn = s->fn;
    void *opaque = s->opaque;
    int fd = s->fd;
    pthread_mutex_unlock(&loop->lock);

    fn(opaque, fd, revents);

    pthread_mutex_lock(&loop->lock);
    s = &loop->slots[idx]; /* the table may have grown meanwhile */
    s->in_callback = false;
    if (s->state == SLOT_DEAD)
        free_slot(s);
    pthread_cond_broadcast(&loop->callback_done);
    return true;
}

int vmm_event_loop_run_once(struct vmm_event_loop *loop, int timeout_ms)
{
    if (!loop)
        return -EINVAL;
    pthread_mutex_lock(&loop->lock);
    if (loop->running) {
        pthread_mutex_unlock(&loop->lock);
        return -EBUSY;
    }
    loop->running = true;
    loop->loop_thread = pthread_self();
    pthread_mutex_unlock(&loop->lock);

    struct epoll_event evs[EVENT_BATCH];
    int ret = 0;
    int n = epoll_wait(loop->epfd, evs, EVENT_BATCH, timeout_ms);
    if (n < 0) {
        /* A signal (e.g. a kick) is a wake-up, not an error. */
        if (errno != EINTR) {
            ret = -errno;
            vmm_log_error("event loop: epoll_wait: %s", vmm_strerror(ret));
        }
        n = 0;
    }
    /* One critical section from the first event to clearing running, left
     * only around callbacks: a wake-up with one event takes the lock twice
     * in all (it is on every device's per-request path). */
    bool stop = false;
    pthread_mutex_lock(&loop->lock);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == EVENT_STOP_TOKEN)
            stop = true;
        else if (dispatch(loop, evs[i].data.u64, evs[i].events))
            ret++;
    }
    loop->running = false;
    pthread_mutex_unlock(&loop->lock);
    if (stop)
        drain_stop(loop);
    return ret;
}

int vmm_event_loop_run(struct vmm_event_loop *loop)
{
    if (!loop)
        return -EINVAL;
    int ret = 0;
    while (!__atomic_load_n(&loop->stopped, __ATOMIC_ACQUIRE)) {
        ret = vmm_event_loop_run_once(loop, -1);
        /* Another thread runs the loop: its stop state is not ours. */
        if (ret == -EBUSY)
            return ret;
        if (ret < 0)
            break;
    }
    /* A stop that arrives after this stays in the eventfd for the next run. */
    __atomic_store_n(&loop->stopped, false, __ATOMIC_RELEASE);
    return ret < 0 ? ret : 0;
}

void vmm_event_loop_stop(struct vmm_event_loop *loop)
{
    if (!loop)
        return;
    /* Only write(2): async-signal-safe. errno is preserved for signal
     * handlers. The counter cannot realistically saturate. */
    int saved = errno;
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(loop->stopfd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    errno = saved;
}
