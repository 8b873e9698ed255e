/* SPDX-License-Identifier: Apache-2.0 */
/* Small I/O helpers shared by device back ends. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include "vmm_internal.h"

long vmm_writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r;
    do {
        r = writev(fd, iov, iovcnt);
    } while (r < 0 && errno == EINTR);
    int saved = errno;
    if (r < 0 && saved == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return r;
}

enum vmm_out_kind vmm_out_classify(int fd)
{
    if (fd < 0)
        return VMM_OUT_NONE;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return VMM_OUT_OTHER;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
        return VMM_OUT_REGULAR;
    if (S_ISFIFO(st.st_mode))
        return VMM_OUT_PIPE;
    if (S_ISSOCK(st.st_mode))
        return VMM_OUT_SOCKET;
    return VMM_OUT_OTHER;
}

long vmm_out_writev(int fd, enum vmm_out_kind kind, const struct iovec *iov, int n)
{
    ssize_t w;
    switch (kind) {
    case VMM_OUT_SOCKET: {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        do {
            w = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        return w;
    }
    case VMM_OUT_PIPE:
        return vmm_writev_nosigpipe(fd, iov, n);
    default:
        do {
            w = writev(fd, iov, n);
        } while (w < 0 && errno == EINTR);
        return w;
    }
}
