/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio console (virtio 1.2 section 5.3), one port without
 * VIRTIO_CONSOLE_F_MULTIPORT: receiveq 0 carries host input to the guest,
 * transmitq 1 guest output to the host.
 *
 * Input is read by the event loop into a small buffer and copied into
 * receiveq buffers; while the buffer holds bytes the guest has no room for,
 * the input fd is paused, so a guest that posts no buffers cannot make us
 * spin or read without bound. Output is written without ever blocking the
 * event loop: a full pipe, socket or terminal parks the current chain and
 * waits for the fd to become writable; a vanished reader (EPIPE) or another
 * error drops output, logged once, never SIGPIPE.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_mmio.h>

#include "snapshot/snapshot_internal.h"
#include "virtio_internal.h"

#define CONSOLE_RX_Q 0
#define CONSOLE_TX_Q 1

#define CONSOLE_IN_BUF 4096
#define CONSOLE_CONFIG 12 /* cols, rows, max_nr_ports, emerg_wr */
#define CONSOLE_TX_IOV 16
/* Most bytes written out of one transmit chain; the rest is dropped and
 * counted. Linux's port writes are at most 32 pages; without a cap, an
 * indirect table of 32768 descriptors over all of guest RAM would have the
 * event loop write terabytes for one notification. */
#define CONSOLE_TX_MAX_CHAIN (256u << 10)

/* Bytes per write to a terminal or other character device once poll says
 * it is writable: small enough that the write does not block. */
#define CONSOLE_TTY_CHUNK 256

struct console {
    struct vmm_virtio_transport *t;
    struct vmm_event_loop *loop;
    uint16_t cols, rows;

    int in_fd;
    bool in_lazy; /* not pollable (regular file, /dev/null): read as buffers come */
    bool in_watched;
    uint32_t in_events; /* what the loop watches in_fd for now */
    bool in_eof;
    uint8_t in_buf[CONSOLE_IN_BUF];
    size_t in_off, in_len; /* pending input: in_buf[in_off, in_off + in_len) */

    int out_fd;
    enum vmm_out_kind out_kind;
    int out_watch_fd; /* a dup of out_fd the loop watches for POLLOUT; -1: none */
    bool out_watched;
    bool out_waiting;                 /* out_watch_fd is armed */
    struct vmm_virtq_chain *tx_chain; /* a chain being written out */
    uint64_t tx_off;                  /* bytes of it already written */
    bool out_error_logged;
    struct vmm_log_limit tx_oversize_log;

    uint64_t rx_bytes, tx_bytes, tx_dropped;
};

/* ---- input ---- */

static void in_update_watch(struct console *c)
{
    if (!c->in_watched)
        return;
    uint32_t want = (!c->in_eof && c->in_len == 0) ? EPOLLIN : 0;
    if (want != c->in_events && vmm_event_loop_modify(c->loop, c->in_fd, want) == 0)
        c->in_events = want;
}

/* Read what in_fd has into the empty input buffer; marks end of input. */
static void in_read(struct console *c)
{
    ssize_t n = read(c->in_fd, c->in_buf, sizeof(c->in_buf));
    if (n > 0) {
        c->in_off = 0;
        c->in_len = (size_t)n;
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (n < 0)
            vmm_log_warn("virtio-console: reading input fd %d: %s", c->in_fd, vmm_strerror(-errno));
        c->in_eof = true;
    }
}

/* Copy pending input into receiveq buffers (lock held). An input fd that
 * cannot be polled is read here, as the guest offers buffers. */
static void rx_deliver(struct console *c)
{
    if (!vmm_virtio_driver_ok(c->t))
        return;
    struct vmm_virtq *q = vmm_virtio_queue(c->t, CONSOLE_RX_Q);
    for (unsigned chains = 0;; chains++) {
        if (c->in_len == 0 && c->in_lazy && !c->in_eof)
            in_read(c);
        if (c->in_len == 0)
            break;
        if (chains == VMM_VIRTIO_WAKE_CHAINS) {
            vmm_virtio_requeue(c->t, CONSOLE_RX_Q); /* the rest on the next wake-up */
            break;
        }
        struct vmm_virtq_chain *chain;
        if (vmm_virtq_pop(q, &chain) <= 0)
            break;
        int n = vmm_virtq_chain_write(chain, 0, c->in_buf + c->in_off, c->in_len);
        if (n < 0)
            n = 0;
        (void)vmm_virtq_push(q, chain, (uint32_t)n);
        c->in_off += (size_t)n;
        c->in_len -= (size_t)n;
        c->rx_bytes += (uint64_t)n;
    }
    if (c->in_len == 0)
        c->in_off = 0;
    vmm_virtq_notify(q);
}

static void in_event(void *opaque, int fd, uint32_t events)
{
    (void)events;
    struct console *c = opaque;
    (void)fd;
    vmm_virtio_lock(c->t);
    if (c->in_len == 0 && !c->in_eof)
        in_read(c);
    rx_deliver(c);
    in_update_watch(c);
    vmm_virtio_unlock(c->t);
}

/* ---- output ---- */

static bool out_writable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do {
        r = poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    /* POLLERR/POLLHUP: let the write report why. */
    return r != 0;
}

/* Clamp iov[0..n) to at most max bytes; returns the new count. */
static int clamp_iov(struct iovec *iov, int n, size_t max)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (total + iov[i].iov_len >= max) {
            iov[i].iov_len = max - total;
            return i + 1;
        }
        total += iov[i].iov_len;
    }
    return n;
}

/* Write what is left of tx_chain's readable part. 0 when done (written or
 * dropped), -EAGAIN when out_fd is full. */
static int tx_write(struct console *c)
{
    struct vmm_virtq_chain *ch = c->tx_chain;
    if (c->out_kind == VMM_OUT_NONE) {
        c->tx_off = ch->readable_len;
        return 0;
    }
    uint64_t end = ch->readable_len;
    if (end > CONSOLE_TX_MAX_CHAIN) {
        if (c->tx_off == 0) {
            c->tx_dropped += end - CONSOLE_TX_MAX_CHAIN;
            /* The guest can send these at will: one warning, then debug. */
            vmm_log_limited(&c->tx_oversize_log, 1,
                            "virtio-console: a %" PRIu64 "-byte transmit buffer; writing the "
                            "first %u bytes and dropping the rest",
                            end, CONSOLE_TX_MAX_CHAIN);
        }
        end = CONSOLE_TX_MAX_CHAIN;
    }
    while (c->tx_off < end) {
        struct iovec iov[CONSOLE_TX_IOV];
        uint64_t left = end - c->tx_off;
        int n = vmm_virtq_chain_iov(ch, false, c->tx_off, left, iov, CONSOLE_TX_IOV);
        if (n == -ENOSPC) {
            /* Fragmented: write the first segment that starts here. */
            uint64_t off = c->tx_off, seglen = 0;
            for (unsigned i = 0; i < ch->nr_readable; i++) {
                if (off < ch->seg[i].len) {
                    seglen = ch->seg[i].len - off;
                    break;
                }
                off -= ch->seg[i].len;
            }
            n = vmm_virtq_chain_iov(ch, false, c->tx_off, seglen, iov, CONSOLE_TX_IOV);
        }
        if (n <= 0) {
            c->tx_dropped += end - c->tx_off;
            c->tx_off = end;
            return 0;
        }
        /* A pipe or terminal takes what fits without blocking once it
         * polls writable: a pipe PIPE_BUF bytes, a terminal a chunk. */
        if (vmm_out_needs_poll(c->out_kind)) {
            if (!out_writable_now(c->out_fd))
                return -EAGAIN;
            n = clamp_iov(iov, n, c->out_kind == VMM_OUT_PIPE ? PIPE_BUF : CONSOLE_TTY_CHUNK);
        }
        long w = vmm_out_writev(c->out_fd, c->out_kind, iov, n);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -EAGAIN;
        if (w <= 0) {
            if (!c->out_error_logged) {
                c->out_error_logged = true;
                vmm_log_warn("virtio-console: output fd %d: %s; dropping output", c->out_fd,
                             w < 0 ? vmm_strerror(-errno) : "wrote nothing");
            }
            c->tx_dropped += end - c->tx_off;
            c->tx_off = end;
            return 0;
        }
        c->tx_off += (uint64_t)w;
        c->tx_bytes += (uint64_t)w;
    }
    return 0;
}

static void out_wait(struct console *c, bool on)
{
    if (!c->out_watched || c->out_waiting == on)
        return;
    if (vmm_event_loop_modify(c->loop, c->out_watch_fd, on ? EPOLLOUT : 0) == 0)
        c->out_waiting = on;
}

/* Write out transmitq buffers until the queue is empty, out_fd full or one
 * wake-up's budget spent (then the rest on the next wake-up; lock held). */
static void tx_process(struct console *c)
{
    if (!vmm_virtio_driver_ok(c->t))
        return;
    struct vmm_virtq *q = vmm_virtio_queue(c->t, CONSOLE_TX_Q);
    uint64_t written_before = c->tx_bytes; /* what costs: bytes written out */
    for (unsigned chains = 0;; chains++) {
        if (chains == VMM_VIRTIO_WAKE_CHAINS ||
            c->tx_bytes - written_before >= VMM_VIRTIO_WAKE_BYTES) {
            vmm_virtio_requeue(c->t, CONSOLE_TX_Q);
            break;
        }
        if (!c->tx_chain) {
            if (vmm_virtq_pop(q, &c->tx_chain) <= 0) {
                c->tx_chain = NULL;
                break;
            }
            c->tx_off = 0;
        }
        if (tx_write(c) == -EAGAIN) {
            /* Without a watch the next notification retries. */
            out_wait(c, true);
            break;
        }
        (void)vmm_virtq_push(q, c->tx_chain, 0);
        c->tx_chain = NULL;
    }
    if (!c->tx_chain)
        out_wait(c, false);
    vmm_virtq_notify(q);
}

static void out_event(void *opaque, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    struct console *c = opaque;
    vmm_virtio_lock(c->t);
    out_wait(c, false);
    tx_process(c);
    vmm_virtio_unlock(c->t);
}

/* ---- device callbacks ---- */

/* ---- snapshots: input read but not yet delivered ---- */

static int console_quiesce(void *opaque)
{
    struct console *c = opaque;
    if (c->tx_chain) {
        vmm_log_error("virtio-console: output is blocked (its reader does not read)");
        return -EBUSY;
    }
    return 0;
}

static int console_snap_save(void *opaque, struct vmm_snap_writer *w)
{
    struct console *c = opaque;
    snap_put_u32(w, (uint32_t)c->in_len);
    snap_put(w, c->in_buf + c->in_off, c->in_len);
    return 0;
}

static int console_snap_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct console *c = opaque;
    uint32_t len;
    if (snap_get_u32(r, &len) < 0 || len > sizeof(c->in_buf) || snap_get(r, c->in_buf, len) < 0) {
        vmm_log_error("restore: malformed virtio console state");
        return -EBADMSG;
    }
    c->in_off = 0;
    c->in_len = len;
    in_update_watch(c);
    return 0;
}

static const struct virtio_snap_ops console_snap = {
    .quiesce = console_quiesce, .save = console_snap_save, .restore = console_snap_restore};

static int console_attach(void *opaque, struct vmm_virtio_transport *t)
{
    struct console *c = opaque;
    c->t = t;
    t->snap = &console_snap;
    c->loop = vmm_virtio_event_loop(t);
    if (!c->loop) {
        /* Standalone: input is read as the guest offers buffers. */
        c->in_lazy = c->in_fd >= 0;
        return 0;
    }
    if (c->in_fd >= 0) {
        int r = vmm_event_loop_add(c->loop, c->in_fd, EPOLLIN, in_event, c);
        if (r == -EPERM) {
            c->in_lazy = true; /* epoll cannot watch it: reading never blocks */
        } else if (r < 0) {
            vmm_log_error("virtio-console: cannot watch input fd %d: %s", c->in_fd,
                          vmm_strerror(r));
            return r;
        } else {
            c->in_watched = true;
            c->in_events = EPOLLIN;
        }
    }
    if (c->out_kind == VMM_OUT_PIPE || c->out_kind == VMM_OUT_SOCKET ||
        c->out_kind == VMM_OUT_OTHER) {
        /* A dup: the loop keys on fd numbers, and out_fd may equal in_fd. */
        c->out_watch_fd = fcntl(c->out_fd, F_DUPFD_CLOEXEC, 0);
        if (c->out_watch_fd >= 0 &&
            vmm_event_loop_add(c->loop, c->out_watch_fd, 0, out_event, c) == 0) {
            c->out_watched = true;
        } else if (c->out_watch_fd >= 0) {
            /* Not pollable (e.g. /dev/null): its writes do not block. */
            close(c->out_watch_fd);
            c->out_watch_fd = -1;
        }
    }
    return 0;
}

static void console_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct console *c = opaque;
    uint8_t cfg[CONSOLE_CONFIG] = {0};
    memcpy(cfg + 0, &c->cols, 2);
    memcpy(cfg + 2, &c->rows, 2);
    uint32_t max_ports = 1;
    memcpy(cfg + 4, &max_ports, 4);
    memcpy(data, cfg + offset, len); /* the transport checked the range */
}

static void console_queue_notify(void *opaque, unsigned index)
{
    struct console *c = opaque;
    if (index == CONSOLE_RX_Q) {
        rx_deliver(c);
        in_update_watch(c);
    } else if (index == CONSOLE_TX_Q) {
        tx_process(c);
    }
}

static void console_reset(void *opaque)
{
    struct console *c = opaque;
    /* The driver forgot the chain; pending input waits for the next one. */
    vmm_virtq_chain_free(c->tx_chain);
    c->tx_chain = NULL;
    out_wait(c, false);
}

static void console_queue_reset(void *opaque, unsigned index)
{
    struct console *c = opaque;
    if (index == CONSOLE_TX_Q) {
        vmm_virtq_chain_free(c->tx_chain);
        c->tx_chain = NULL;
        out_wait(c, false);
    }
}

static void console_destroy(void *opaque)
{
    struct console *c = opaque;
    if (c->in_watched)
        (void)vmm_event_loop_remove(c->loop, c->in_fd);
    if (c->out_watched)
        (void)vmm_event_loop_remove(c->loop, c->out_watch_fd);
    if (c->out_watch_fd >= 0)
        close(c->out_watch_fd);
    vmm_virtq_chain_free(c->tx_chain);
    free(c);
}

static const struct vmm_virtio_device_ops console_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = console_attach,
    .config_read = console_config_read,
    .reset = console_reset,
    .queue_notify = console_queue_notify,
    .queue_reset = console_queue_reset,
    .destroy = console_destroy,
};

int vmm_virtio_console_create(const struct vmm_virtio_console_config *cfg,
                              struct vmm_virtio_device *dev)
{
    struct vmm_virtio_console_config cfg_copy;
    if (!dev || !cfg || !VMM_ABI_OUT_OK(dev) || VMM_ABI_COPY_IN(&cfg_copy, cfg) < 0)
        return -EINVAL;
    cfg = &cfg_copy;
    unsigned qsize = cfg->queue_size ? cfg->queue_size : 256;
    if (!vmm_is_pow2(qsize) || qsize > VMM_VIRTQ_MAX_SIZE || cfg->cols > UINT16_MAX ||
        cfg->rows > UINT16_MAX)
        return -EINVAL;
    if ((cfg->in_fd >= 0 && fcntl(cfg->in_fd, F_GETFL) < 0) ||
        (cfg->out_fd >= 0 && fcntl(cfg->out_fd, F_GETFL) < 0))
        return -EBADF;
    struct console *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->in_fd = cfg->in_fd < 0 ? -1 : cfg->in_fd;
    c->out_fd = cfg->out_fd < 0 ? -1 : cfg->out_fd;
    c->out_kind = vmm_out_classify(c->out_fd);
    c->out_watch_fd = -1;
    c->cols = (uint16_t)cfg->cols;
    c->rows = (uint16_t)cfg->rows;
    struct vmm_virtio_device full = {
        .size = sizeof(full),
        .type = VMM_VIRTIO_ID_CONSOLE,
        .features = (cfg->cols || cfg->rows) ? VMM_VIRTIO_CONSOLE_F_SIZE : 0,
        .num_queues = 2,
        .queue_max_size = qsize,
        .config_size = CONSOLE_CONFIG,
        .ops = &console_ops,
        .opaque = c,
        .name = "virtio-console",
    };
    VMM_ABI_COPY_OUT(dev, &full);
    return 0;
}

int vmm_vm_add_virtio_console(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                              const struct vmm_virtio_console_config *cfg,
                              struct vmm_virtio_mmio **out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    int r = vmm_virtio_console_create(cfg, &dev);
    if (r < 0)
        return r;
    return vmm_vm_add_virtio_mmio(vm, base, gsi, &dev, out);
}
