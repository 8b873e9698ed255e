/* SPDX-License-Identifier: Apache-2.0 */
/* The virtio entropy device (virtio 1.2 section 5.4): one request queue whose
 * device-writable buffers are filled from getrandom(), with an optional
 * token-bucket rate limit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_rng.h>

#include "virtio_internal.h"

/* The most bytes given for one request: a guest offering a huge buffer gets
 * a partial fill (the used length says how much), not seconds of our CPU. */
#define RNG_MAX_PER_REQUEST (64u << 10)
/* iovecs per fill; a buffer in more pieces is filled in several rounds. */
#define RNG_IOV 16

struct rng {
    struct vmm_virtio_transport *t;
    uint64_t rate;   /* bytes per second; 0: unlimited */
    uint64_t tokens; /* bytes the guest may take now (<= rate) */
    struct timespec last_refill;
    int timer_fd; /* wakes us when tokens come back; -1 without a loop */
    bool timer_watched;
    bool timer_armed;
    uint64_t bytes_given;
};

static uint64_t elapsed_ns(const struct timespec *a, const struct timespec *b)
{
    int64_t ns = (int64_t)(b->tv_sec - a->tv_sec) * 1000000000 + (b->tv_nsec - a->tv_nsec);
    return ns > 0 ? (uint64_t)ns : 0;
}

static void refill(struct rng *d)
{
    if (!d->rate)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t ns = elapsed_ns(&d->last_refill, &now);
    if (ns >= 1000000000ull) {
        d->tokens = d->rate; /* a full second: the bucket is full */
        d->last_refill = now;
        return;
    }
    /* rate * ns / 1e9 without overflow: rate < 2^64, ns < 1e9 < 2^30. */
    unsigned __int128 add = (unsigned __int128)d->rate * ns / 1000000000u;
    if (add == 0)
        return; /* keep last_refill so fractions accumulate */
    d->tokens = d->tokens + (uint64_t)add > d->rate ? d->rate : d->tokens + (uint64_t)add;
    d->last_refill = now;
}

/* Sleep on the timer until enough time passed for a few bytes. */
static void arm_timer(struct rng *d)
{
    if (d->timer_fd < 0 || d->timer_armed)
        return;
    /* Time for 1/64 of a second's worth of bytes (at least one), capped at
     * 100 ms. */
    uint64_t want = d->rate / 64 ? d->rate / 64 : 1;
    uint64_t ns = (unsigned __int128)want * 1000000000u / d->rate;
    if (ns > 100000000u)
        ns = 100000000u;
    if (ns < 100000u)
        ns = 100000u;
    struct itimerspec its = {.it_value = {.tv_sec = 0, .tv_nsec = (long)ns}};
    if (timerfd_settime(d->timer_fd, 0, &its, NULL) == 0)
        d->timer_armed = true;
}

/* Fill up to max bytes of chain's writable part, straight into guest memory;
 * returns the bytes filled. One segment at a time, so RNG_IOV iovecs always
 * suffice unless one segment spans that many memory regions. */
static uint32_t fill(struct vmm_virtq_chain *c, uint64_t max)
{
    uint64_t want = c->writable_len < max ? c->writable_len : max;
    uint64_t done = 0;
    for (unsigned s = 0; s < c->nr_writable && done < want; s++) {
        uint64_t len = c->seg[c->nr_readable + s].len;
        if (len > want - done)
            len = want - done;
        struct iovec iov[RNG_IOV];
        int n = vmm_virtq_chain_iov(c, true, done, len, iov, RNG_IOV);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            uint8_t *p = iov[i].iov_base;
            size_t left = iov[i].iov_len;
            while (left > 0) {
                ssize_t r = getrandom(p, left, 0);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    return (uint32_t)done;
                p += r;
                left -= (size_t)r;
                done += (uint64_t)r;
            }
        }
    }
    return (uint32_t)done;
}

/* Serve requests while tokens last, up to one wake-up's budget (lock
 * held): the rest on the next wake-up. */
static void rng_process(struct rng *d)
{
    struct vmm_virtq *q = vmm_virtio_queue(d->t, 0);
    if (!vmm_virtio_driver_ok(d->t))
        return;
    uint64_t bytes = 0;
    for (unsigned chains = 0;; chains++) {
        if (chains == VMM_VIRTIO_WAKE_CHAINS || bytes >= VMM_VIRTIO_WAKE_BYTES) {
            vmm_virtio_requeue(d->t, 0);
            break;
        }
        refill(d);
        if (d->rate && d->tokens == 0) {
            arm_timer(d);
            break;
        }
        struct vmm_virtq_chain *c;
        int r = vmm_virtq_pop(q, &c);
        if (r <= 0)
            break;
        uint64_t max = RNG_MAX_PER_REQUEST;
        if (d->rate && d->tokens < max)
            max = d->tokens;
        uint32_t n = fill(c, max);
        if (d->rate)
            d->tokens -= n;
        d->bytes_given += n;
        bytes += n;
        (void)vmm_virtq_push(q, c, n);
    }
    vmm_virtq_notify(q);
}

static void rng_timer(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct rng *d = opaque;
    uint64_t expirations;
    if (read(fd, &expirations, sizeof(expirations)) < 0)
        return;
    vmm_virtio_lock(d->t);
    d->timer_armed = false;
    rng_process(d);
    vmm_virtio_unlock(d->t);
}

/* Snapshots: requests are served at once (none is held), and the token
 * bucket starts full again in the restored VM. */
static int rng_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    (void)opaque;
    (void)w;
    return 0;
}

static int rng_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    (void)opaque;
    (void)r;
    return 0;
}

static const struct virtio_snap_ops rng_snap = {.save = rng_snap_save, .restore = rng_snap_restore};

static int rng_attach(void *opaque, struct vmm_virtio_transport *t)
{
    struct rng *d = opaque;
    d->t = t;
    t->snap = &rng_snap;
    struct vmm_event_loop *loop = vmm_virtio_event_loop(t);
    if (d->rate && loop) {
        d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (d->timer_fd < 0)
            return -errno;
        int r = vmm_event_loop_add(loop, d->timer_fd, EPOLLIN, rng_timer, d);
        if (r < 0)
            return r;
        d->timer_watched = true;
    }
    return 0;
}

static void rng_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    memset(data, 0, len); /* no configuration space */
}

static void rng_queue_notify(void *opaque, unsigned index)
{
    (void)index;
    rng_process(opaque);
}

static void rng_reset(void *opaque)
{
    struct rng *d = opaque;
    if (d->timer_armed && d->timer_fd >= 0) {
        struct itimerspec off = {0};
        (void)timerfd_settime(d->timer_fd, 0, &off, NULL);
        d->timer_armed = false;
    }
}

static void rng_destroy(void *opaque)
{
    struct rng *d = opaque;
    if (d->timer_watched)
        (void)vmm_event_loop_remove(vmm_virtio_event_loop(d->t), d->timer_fd);
    if (d->timer_fd >= 0)
        close(d->timer_fd);
    free(d);
}

static const struct vmm_virtio_device_ops rng_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = rng_attach,
    .config_read = rng_config_read,
    .reset = rng_reset,
    .queue_notify = rng_queue_notify,
    .destroy = rng_destroy,
};

int vmm_virtio_rng_create(const struct vmm_virtio_rng_config *cfg, struct vmm_virtio_device *dev)
{
    struct vmm_virtio_rng_config c = {0};
    if (!dev || !VMM_ABI_OUT_OK(dev) || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    cfg = &c;
    unsigned qsize = cfg && cfg->queue_size ? cfg->queue_size : 256;
    if (!vmm_is_pow2(qsize) || qsize > VMM_VIRTQ_MAX_SIZE)
        return -EINVAL;
    struct rng *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->rate = cfg ? cfg->rate_limit : 0;
    d->tokens = d->rate;
    d->timer_fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &d->last_refill);
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_RNG,
        .num_queues = 1,
        .queue_max_size = qsize,
        .config_size = 0,
        .ops = &rng_ops,
        .opaque = d,
        .name = "virtio-rng",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_rng(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                          const struct vmm_virtio_rng_config *cfg, struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_rng_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}
