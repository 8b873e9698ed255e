/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VMM_RESTORE_UFFD: guest memory brought in on demand through userfaultfd.
 *
 * The regions the library mapped anonymously are registered for missing-page
 * faults; a thread of the VM's answers each fault, from the guest (through
 * KVM) or from the VMM itself, with the page read from the memory file
 * (UFFDIO_COPY; a page in a hole of the sparse file with UFFDIO_ZEROPAGE),
 * and between faults copies the file's data in ahead of them (background
 * prefetch). Once every region is whole the thread unregisters them and
 * ends; the VM's destruction stops it before that if need be.
 *
 * The thread starts before the application may set seccomp filters
 * (vmm_vm_set_seccomp), so it filters itself on request: the VM's helper
 * hook hands it the config through a request eventfd and waits until the
 * thread has installed VMM_SECCOMP_UFFD on itself (or has ended).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vmm/memory.h>
#include <vmm/seccomp.h>
#include <vmm/vm.h>

#include "cpu/cpu_internal.h"

#include "memory/memory_internal.h"
#include "snapshot_internal.h"
#include "vmm_internal.h"

#define PAGE          4096u
#define PREFETCH_STEP (64u << 10) /* bytes copied ahead per round between faults */

struct uffd_region {
    uint8_t *host;
    uint64_t len;
    uint64_t file_off;
    uint64_t next; /* prefetch: offset in the region not looked at yet */
};

struct vmm_uffd {
    int uffd, file_fd, stop_fd;
    int req_fd; /* wakes the thread for a filter request */
    pthread_t thread;
    bool started;
    struct vmm_vm *vm; /* whose helper hook points here, once started */
    /* Filter requests, guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool running;    /* the thread has not ended */
    bool filter_req; /* filter waits to be installed */
    int filter_ret;
    struct vmm_seccomp_config filter;
    struct uffd_region *regions;
    unsigned count;
    uint8_t *buf; /* PREFETCH_STEP bytes */
    uint64_t faults, prefetched;
};

static long uffd_ioctl(int fd, unsigned long req, void *arg)
{
    long r;
    do
        r = ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

/* Fill [host, host + len) (not populated) from file offset off: a copy of
 * the data, or zero pages where the file reads as zeros. -EEXIST (the first
 * page) or -EAGAIN (a later one: the copy stopped short): some page is
 * there already (a fault raced ahead); the caller goes page by page. */
static int fill(struct vmm_uffd *u, uint8_t *host, uint64_t len, uint64_t off)
{
    ssize_t n = pread(u->file_fd, u->buf, len, (off_t)off);
    if (n != (ssize_t)len)
        return n < 0 ? -errno : -EIO;
    bool zero = true;
    for (uint64_t i = 0; i < len && zero; i += 8)
        zero = !*(const uint64_t *)(const void *)(u->buf + i);
    if (zero) {
        struct uffdio_zeropage z = {.range = {.start = (uintptr_t)host, .len = len}};
        return (int)uffd_ioctl(u->uffd, UFFDIO_ZEROPAGE, &z);
    }
    struct uffdio_copy c = {.dst = (uintptr_t)host, .src = (uintptr_t)u->buf, .len = len};
    return (int)uffd_ioctl(u->uffd, UFFDIO_COPY, &c);
}

static struct uffd_region *region_of(struct vmm_uffd *u, uint64_t addr)
{
    for (unsigned i = 0; i < u->count; i++) {
        struct uffd_region *r = &u->regions[i];
        if (addr >= (uintptr_t)r->host && addr - (uintptr_t)r->host < r->len)
            return r;
    }
    return NULL;
}

/* Answer one fault: its page (which another fault may have filled). */
static int on_fault(struct vmm_uffd *u, uint64_t addr)
{
    struct uffd_region *r = region_of(u, addr);
    if (!r)
        return -EFAULT;
    uint64_t page = (addr - (uintptr_t)r->host) & ~(uint64_t)(PAGE - 1);
    int e = fill(u, r->host + page, PAGE, r->file_off + page);
    u->faults++;
    return e == -EEXIST ? 0 : e;
}

/* Copy the next step of data ahead of the guest. Returns false when every
 * region is whole. */
static bool prefetch_step(struct vmm_uffd *u)
{
    for (unsigned i = 0; i < u->count; i++) {
        struct uffd_region *r = &u->regions[i];
        if (r->next >= r->len)
            continue;
        uint64_t len = r->len - r->next < PREFETCH_STEP ? r->len - r->next : PREFETCH_STEP;
        int e = fill(u, r->host + r->next, len, r->file_off + r->next);
        if (e == -EEXIST || e == -EAGAIN) {
            /* Part of it is in already: page by page (skipping the rest
             * would leave those pages to read as zeros once the regions
             * are unregistered). */
            for (uint64_t p = 0; p < len; p += PAGE)
                (void)fill(u, r->host + r->next + p, PAGE, r->file_off + r->next + p);
        }
        r->next += len;
        u->prefetched += len;
        return true;
    }
    return false;
}

/* On the thread: install the requested filter, if any, and answer. */
static void serve_filter(struct vmm_uffd *u)
{
    pthread_mutex_lock(&u->lock);
    if (u->filter_req) {
        u->filter_ret = vmm_seccomp_install(VMM_SECCOMP_UFFD, &u->filter);
        u->filter_req = false;
        pthread_cond_broadcast(&u->cond);
    }
    pthread_mutex_unlock(&u->lock);
}

/* The VM's helper hook (vmm_vm_set_seccomp), any thread but the fault
 * thread: have the thread filter itself with cfg and wait for it. 0 when
 * the thread has ended (nothing left to filter). */
static int uffd_seccomp(void *opaque, const struct vmm_seccomp_config *cfg)
{
    struct vmm_uffd *u = opaque;
    pthread_mutex_lock(&u->lock);
    int r = 0;
    if (u->running) {
        u->filter = *cfg;
        u->filter_req = true;
        uint64_t one = 1;
        if (write(u->req_fd, &one, sizeof(one)) < 0)
            r = -errno;
        while (r == 0 && u->filter_req && u->running)
            pthread_cond_wait(&u->cond, &u->lock);
        if (r == 0 && !u->filter_req)
            r = u->filter_ret;
        u->filter_req = false;
    }
    pthread_mutex_unlock(&u->lock);
    return r;
}

static void *uffd_thread(void *arg)
{
    struct vmm_uffd *u = arg;
    bool prefetching = true;
    for (;;) {
        struct pollfd p[3] = {{.fd = u->uffd, .events = POLLIN},
                              {.fd = u->stop_fd, .events = POLLIN},
                              {.fd = u->req_fd, .events = POLLIN}};
        int n = poll(p, 3, prefetching ? 0 : -1);
        if (n < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (n > 0 && (p[2].revents & POLLIN)) {
            uint64_t v;
            if (read(u->req_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                break;
            serve_filter(u);
            continue;
        }
        if (n > 0 && (p[0].revents & POLLIN)) {
            struct uffd_msg msg;
            ssize_t got = read(u->uffd, &msg, sizeof(msg));
            if (got == (ssize_t)sizeof(msg) && msg.event == UFFD_EVENT_PAGEFAULT) {
                int r = on_fault(u, msg.arg.pagefault.address);
                if (r < 0)
                    vmm_log_error("restore: serving a page fault at 0x%llx: %s",
                                  (unsigned long long)msg.arg.pagefault.address, vmm_strerror(r));
            }
            continue;
        }
        if (prefetching && !prefetch_step(u)) {
            prefetching = false;
            /* Whole: no more faults can come; let the regions go. */
            for (unsigned i = 0; i < u->count; i++) {
                struct uffdio_range range = {.start = (uintptr_t)u->regions[i].host,
                                             .len = u->regions[i].len};
                (void)uffd_ioctl(u->uffd, UFFDIO_UNREGISTER, &range);
            }
            vmm_log_debug("restore: memory whole after %llu faults", (unsigned long long)u->faults);
            break;
        }
    }
    pthread_mutex_lock(&u->lock);
    u->running = false;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    return NULL;
}

static void uffd_free(struct vmm_uffd *u)
{
    if (u->vm && u->vm->helper_opaque == u) {
        u->vm->helper_seccomp = NULL;
        u->vm->helper_opaque = NULL;
    }
    if (u->started) {
        uint64_t one = 1;
        if (write(u->stop_fd, &one, sizeof(one)) < 0)
            vmm_log_debug("restore: waking the fault thread: %s", vmm_strerror(-errno));
        pthread_join(u->thread, NULL);
    }
    if (u->uffd >= 0)
        close(u->uffd);
    if (u->stop_fd >= 0)
        close(u->stop_fd);
    if (u->req_fd >= 0)
        close(u->req_fd);
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->cond);
    if (u->file_fd >= 0)
        close(u->file_fd);
    free(u->regions);
    free(u->buf);
    free(u);
}

static void uffd_cleanup(void *opaque)
{
    uffd_free(opaque);
}

int vmm_snap_uffd_prepare(struct vmm_uffd **out, int file_fd, unsigned max_regions)
{
    struct vmm_uffd *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->uffd = u->stop_fd = u->req_fd = u->file_fd = -1;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    u->regions = calloc(max_regions + 1, sizeof(*u->regions));
    u->buf = malloc(PREFETCH_STEP);
    int r = -ENOMEM;
    if (!u->regions || !u->buf)
        goto fail;
    u->file_fd = fcntl(file_fd, F_DUPFD_CLOEXEC, 0);
    u->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    u->stop_fd = eventfd(0, EFD_CLOEXEC);
    u->req_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->file_fd < 0 || u->uffd < 0 || u->stop_fd < 0 || u->req_fd < 0) {
        r = -errno;
        vmm_log_error("restore: userfaultfd: %s", vmm_strerror(r));
        goto fail;
    }
    struct uffdio_api api = {.api = UFFD_API};
    if ((r = (int)uffd_ioctl(u->uffd, UFFDIO_API, &api)) < 0) {
        vmm_log_error("restore: UFFDIO_API: %s", vmm_strerror(r));
        goto fail;
    }
    *out = u;
    return 0;
fail:
    uffd_free(u);
    return r;
}

int vmm_snap_uffd_add(struct vmm_uffd *u, struct vmm_memory *mem, unsigned index, uint64_t file_off)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    int r = vmm_memory_region_info(mem, index, &info);
    if (r < 0)
        return r;
    if (!memory_region_anonymous(mem, index) || (info.len % PAGE) || (file_off % PAGE))
        return -ENOTSUP;
    /* The region must be empty for missing-page faults: drop what a loader
     * put there (restored memory replaces it all). */
    if (madvise(info.host, info.len, MADV_DONTNEED) < 0)
        return -errno;
    struct uffdio_register reg = {.range = {.start = (uintptr_t)info.host, .len = info.len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if ((r = (int)uffd_ioctl(u->uffd, UFFDIO_REGISTER, &reg)) < 0)
        return r;
    u->regions[u->count++] =
        (struct uffd_region){.host = info.host, .len = info.len, .file_off = file_off};
    return 0;
}

int vmm_snap_uffd_start(struct vmm_uffd *u, struct vmm_vm *vm)
{
    if (u->count == 0) {
        uffd_free(u);
        return 0;
    }
    u->running = true;
    int r = pthread_create(&u->thread, NULL, uffd_thread, u);
    if (r != 0) {
        u->running = false;
        uffd_free(u);
        return -r;
    }
    u->started = true;
    (void)pthread_setname_np(u->thread, "vmm-uffd");
    r = vmm_vm_add_cleanup(vm, uffd_cleanup, u);
    if (r < 0) {
        uffd_free(u);
        return r;
    }
    /* Filtered from now on, by a filter set already or the next one. */
    u->vm = vm;
    pthread_mutex_lock(&vm->lock);
    bool on = vm->seccomp_on;
    struct vmm_seccomp_config cfg = vm->seccomp;
    vm->helper_seccomp = uffd_seccomp;
    vm->helper_opaque = u;
    pthread_mutex_unlock(&vm->lock);
    if (on && (r = uffd_seccomp(u, &cfg)) < 0)
        vmm_log_error("restore: the fault thread's seccomp filter: %s", vmm_strerror(r));
    return r;
}

void vmm_snap_uffd_abort(struct vmm_uffd *u)
{
    uffd_free(u);
}
