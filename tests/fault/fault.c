/* SPDX-License-Identifier: Apache-2.0 */
/* The wrapped calls and the walk of fault.h. */
#include "fault.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

static unsigned armed; /* the call number to fail; 0: off */
static unsigned calls; /* wrapped calls since armed */
static bool fired;
static const char *last = "";

void fault_arm(unsigned n)
{
    armed = n;
    calls = 0;
    fired = false;
    last = "";
}

bool fault_disarm(void)
{
    armed = 0;
    return fired;
}

const char *fault_last(void)
{
    return last;
}

/* Whether this call is the one to fail. Single-threaded walks only: the
 * event-loop and vCPU threads of a walk's operation are not started. */
static bool fail_now(const char *name)
{
    if (!armed || fired)
        return false;
    if (++calls != armed)
        return false;
    fired = true;
    last = name;
    return true;
}

/* ---- allocations ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
int __real_posix_memalign(void **p, size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
int __wrap_posix_memalign(void **p, size_t align, size_t size);

void *__wrap_malloc(size_t size)
{
    if (fail_now("malloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_now("calloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    if (fail_now("realloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
    if (fail_now("aligned_alloc")) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_aligned_alloc(align, size);
}

int __wrap_posix_memalign(void **p, size_t align, size_t size)
{
    if (fail_now("posix_memalign"))
        return ENOMEM;
    return __real_posix_memalign(p, align, size);
}

/* ---- system calls ---- */

int __real_open(const char *path, int flags, ...);
int __real_eventfd(unsigned int initval, int flags);
int __real_timerfd_create(int clockid, int flags);
int __real_epoll_create1(int flags);
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_memfd_create(const char *name, unsigned int flags);
int __real_ioctl(int fd, unsigned long req, ...);
int __real_fcntl(int fd, int cmd, ...);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __real_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __real_io_uring_register_eventfd(struct io_uring *ring, int fd);
int __real_io_uring_register_files(struct io_uring *ring, const int *files, unsigned n);
int __wrap_open(const char *path, int flags, ...);
int __wrap_eventfd(unsigned int initval, int flags);
int __wrap_timerfd_create(int clockid, int flags);
int __wrap_epoll_create1(int flags);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_memfd_create(const char *name, unsigned int flags);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_fcntl(int fd, int cmd, ...);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __wrap_io_uring_register_eventfd(struct io_uring *ring, int fd);
int __wrap_io_uring_register_files(struct io_uring *ring, const int *files, unsigned n);
int __real_socket(int domain, int type, int protocol);
int __real_bind(int fd, const struct sockaddr *addr, socklen_t len);
int __real_listen(int fd, int backlog);
int __wrap_socket(int domain, int type, int protocol);
int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len);
int __wrap_listen(int fd, int backlog);

int __wrap_socket(int domain, int type, int protocol)
{
    if (fail_now("socket")) {
        errno = EMFILE;
        return -1;
    }
    return __real_socket(domain, type, protocol);
}

int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (fail_now("bind")) {
        errno = EADDRINUSE;
        return -1;
    }
    return __real_bind(fd, addr, len);
}

int __wrap_listen(int fd, int backlog)
{
    if (fail_now("listen")) {
        errno = ENOBUFS;
        return -1;
    }
    return __real_listen(fd, backlog);
}

int __wrap_open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = va_arg(ap, int); /* read whether or not O_CREAT: harmless */
    va_end(ap);
    if (fail_now("open")) {
        errno = EMFILE;
        return -1;
    }
    return __real_open(path, flags, mode);
}

int __wrap_eventfd(unsigned int initval, int flags)
{
    if (fail_now("eventfd")) {
        errno = EMFILE;
        return -1;
    }
    return __real_eventfd(initval, flags);
}

int __wrap_timerfd_create(int clockid, int flags)
{
    if (fail_now("timerfd_create")) {
        errno = EMFILE;
        return -1;
    }
    return __real_timerfd_create(clockid, flags);
}

int __wrap_epoll_create1(int flags)
{
    if (fail_now("epoll_create1")) {
        errno = EMFILE;
        return -1;
    }
    return __real_epoll_create1(flags);
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    /* Only adding can fail for want of memory; a failing delete would only
     * test the kernel. */
    if (op == EPOLL_CTL_ADD && fail_now("epoll_ctl")) {
        errno = ENOMEM;
        return -1;
    }
    return __real_epoll_ctl(epfd, op, fd, ev);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (fail_now("mmap")) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

int __wrap_memfd_create(const char *name, unsigned int flags)
{
    if (fail_now("memfd_create")) {
        errno = EMFILE;
        return -1;
    }
    return __real_memfd_create(name, flags);
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fail_now("ioctl")) {
        errno = ENOMEM;
        return -1;
    }
    return __real_ioctl(fd, req, arg);
}

int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    /* Duplicating can fail (no fd left); querying flags cannot. */
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && fail_now("fcntl(F_DUPFD)")) {
        errno = EMFILE;
        return -1;
    }
    return __real_fcntl(fd, cmd, arg);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (fail_now("pthread_create"))
        return EAGAIN;
    return __real_pthread_create(t, attr, fn, arg);
}

int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
    if (fail_now("io_uring_queue_init"))
        return -ENOMEM;
    return __real_io_uring_queue_init(entries, ring, flags);
}

int __wrap_io_uring_register_eventfd(struct io_uring *ring, int fd)
{
    if (fail_now("io_uring_register_eventfd"))
        return -ENOMEM;
    return __real_io_uring_register_eventfd(ring, fd);
}

int __wrap_io_uring_register_files(struct io_uring *ring, const int *files, unsigned n)
{
    if (fail_now("io_uring_register_files"))
        return -ENOMEM;
    return __real_io_uring_register_files(ring, files, n);
}

/* ---- the walk ---- */

static unsigned open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* LeakSanitizer's on-demand check, in a sanitizer build. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static unsigned env_unsigned(const char *name, unsigned def)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

unsigned fault_walk(const struct fault_case *c)
{
    unsigned only = env_unsigned("VMM_FAULT_ONLY", 0);
    unsigned max = env_unsigned("VMM_FAULT_MAX", 2000);
    unsigned fds = open_fds();
    for (unsigned n = only ? only : 1; n <= max; n++) {
        fault_arm(n);
        int r = c->op(c->ctx);
        bool hit = fault_disarm();
        const char *what = hit ? fault_last() : "nothing";
        ck_assert_msg(r == 0 || (r < 0 && r > -4096), "%s: failing call %u (%s) gave %d", c->name,
                      n, what, r);
        if (r == 0)
            c->cleanup(c->ctx);
        ck_assert_msg(open_fds() == fds, "%s: failing call %u (%s): %u fds open, %u before",
                      c->name, n, what, open_fds(), fds);
        if (__lsan_do_recoverable_leak_check)
            ck_assert_msg(__lsan_do_recoverable_leak_check() == 0,
                          "%s: failing call %u (%s) leaked (report above)", c->name, n, what);
        if (!hit) {
            /* Fewer calls than n: the operation ran untouched and the walk
             * has covered every call it makes. */
            ck_assert_msg(r == 0, "%s: failed with %d and no fault injected", c->name, r);
            printf("fault: %s: %u failure points, each handled\n", c->name, n - 1);
            return n;
        }
        if (only) {
            printf("fault: %s: failing call %u (%s) gave %d\n", c->name, n, what, r);
            fflush(stdout);
            return 1;
        }
    }
    ck_abort_msg("%s: still failing points after VMM_FAULT_MAX=%u calls", c->name, max);
    return 0;
}
