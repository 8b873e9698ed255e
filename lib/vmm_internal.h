/* SPDX-License-Identifier: Apache-2.0 */
/* Private helpers shared by every component: logging and small utilities. */
#ifndef VMM_INTERNAL_H
#define VMM_INTERNAL_H

#include <stdbool.h>
#include <vmm/error.h>

/* Log through the application's handler (no-op without one). */
void vmm_log(enum vmm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool vmm_log_enabled(enum vmm_log_level level);

#define vmm_log_error(...) vmm_log(VMM_LOG_ERROR, __VA_ARGS__)
#define vmm_log_warn(...)  vmm_log(VMM_LOG_WARN, __VA_ARGS__)
#define vmm_log_info(...)  vmm_log(VMM_LOG_INFO, __VA_ARGS__)
#define vmm_log_debug(...) vmm_log(VMM_LOG_DEBUG, __VA_ARGS__)

/*
 * Warning lines for one kind of event a guest can cause at will (a malformed
 * chain, a broken queue, a refused register write), budgeted over the
 * lifetime of the object that keeps it: resets do not refill it, so no guest
 * can turn its own misbehaviour into a flood of log lines. Zero-initialised.
 */
struct vmm_log_limit {
    unsigned warned;
};

/* Log one such event: at warning level for the first max of l (the last of
 * them saying that further ones go to debug level), at debug level after. */
void vmm_log_limited(struct vmm_log_limit *l, unsigned max, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define VMM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct iovec;
/*
 * writev(2) that a vanished reader cannot kill the process with: SIGPIPE is
 * blocked in the calling thread for the write, and one the write raised is
 * consumed before unblocking (unless one was already pending). Retries on
 * EINTR; returns what writev returns, errno set (EPIPE for a gone reader).
 */
long vmm_writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt);

/* How a device's output reaches its fd without blocking a vCPU forever or
 * killing the process with SIGPIPE (the UART's and the virtio console's). */
enum vmm_out_kind {
    VMM_OUT_NONE,    /* no fd: output is dropped */
    VMM_OUT_REGULAR, /* regular file or block device: never blocks */
    VMM_OUT_PIPE,    /* pipe/FIFO: may block, may raise SIGPIPE */
    VMM_OUT_SOCKET,  /* sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) */
    VMM_OUT_OTHER,   /* tty and other character devices: may block */
};

/* What kind of output fd is (VMM_OUT_NONE for -1). */
enum vmm_out_kind vmm_out_classify(int fd);

/* Whether a write to this kind may block: poll for POLLOUT first. */
static inline bool vmm_out_needs_poll(enum vmm_out_kind kind)
{
    return kind == VMM_OUT_PIPE || kind == VMM_OUT_OTHER;
}

/*
 * One write of iov[0..n) to fd the way its kind needs: sendmsg without
 * waiting or SIGPIPE for a socket, vmm_writev_nosigpipe for a pipe, writev
 * otherwise. Retries on EINTR; does not poll. Returns what writev returns,
 * errno set.
 */
long vmm_out_writev(int fd, enum vmm_out_kind kind, const struct iovec *iov, int n);

#endif /* VMM_INTERNAL_H */
