/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live migration (include/vmm/snapshot.h): pre-copy rounds from the dirty
 * log over a stream, then the VM stopped, its last pages and its state; or,
 * over a Unix socket with every region a memfd, the VM stopped and its
 * memfds handed over instead of the pages.
 *
 * Messages, each a 16-byte header (u32 magic "LVMG", u32 type, u64 payload
 * length) then the payload:
 *   HELLO  source: u32 protocol version, the application's blob
 *   OFFER  source, version 2, right after HELLO: u32 capabilities
 *   ACCEPT target, its answer: u32 capabilities it takes (a subset)
 *   PAGES  source: u32 region, u32 count, u64 first page, count pages
 *   MEMFD  source (capability MEMFD taken): struct mig_memfd, the region's
 *          memfd in SCM_RIGHTS; one for each region, before STATE
 *   STATE  source: a state file (format.c) without guest memory
 *   END    source: nothing follows
 *   REPLY  target: u32 status (0, or a positive errno), a one-line reason
 * A source with nothing to offer (a TCP link, memory that is not all
 * memfds, VMM_MIGRATE_COPY) speaks version 1, HELLO then PAGES, which
 * targets of either version take. The target trusts nothing it reads:
 * every length, index and descriptor is checked before use.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vmm/snapshot.h>

#include "cpu/cpu_internal.h"
#include "memory/memory_internal.h"
#include "snapshot_internal.h"

#define MIG_RUN_PAGES 256u /* pages per PAGES message, at most */
#define MIG_REASON    256u

#define MIG_DEFAULT_DOWNTIME_MS 300u
#define MIG_DEFAULT_ROUNDS      30u

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t r = send(fd, b, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ECONNRESET;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_msg(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    struct mig_header h = {.magic = MIG_MAGIC, .type = type, .len = alen + blen};
    int r = send_all(fd, &h, sizeof(h));
    if (r == 0 && alen)
        r = send_all(fd, a, alen);
    if (r == 0 && blen)
        r = send_all(fd, b, blen);
    return r;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- source ---- */

struct mig_region {
    uint8_t *host;
    int fd;             /* the memfd or file behind it, or -1 */
    uint64_t fd_offset; /* where the region starts in fd */
    uint64_t pages;
    size_t nwords;
    uint64_t *pending; /* pages to send */
    bool started_log;  /* the migration turned dirty logging on */
};

struct mig_source {
    struct vmm_vm *vm;
    int fd;
    unsigned n;
    struct mig_region *r;
    uint64_t sent_pages;
};

static bool page_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (unsigned i = 0; i < 4096 / 8; i++)
        if (w[i])
            return false;
    return true;
}

/* OR the pages dirtied since the last fetch into pending. */
static int fetch_dirty(struct mig_source *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct mig_region *g = &s->r[i];
        uint64_t *bm = calloc(g->nwords, sizeof(uint64_t));
        if (!bm)
            return -ENOMEM;
        int r = vmm_vm_dirty_fetch(s->vm, i, bm, g->nwords);
        for (size_t w = 0; w < g->nwords && r == 0; w++)
            g->pending[w] |= bm[w];
        free(bm);
        if (r < 0)
            return r;
    }
    return 0;
}

static uint64_t pending_pages(const struct mig_source *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->n; i++)
        for (size_t w = 0; w < s->r[i].nwords; w++)
            n += (uint64_t)__builtin_popcountll(s->r[i].pending[w]);
    return n;
}

static bool test_page(const uint64_t *bm, uint64_t p)
{
    return bm[p / 64] & (1ull << (p % 64));
}

static void clear_pages(uint64_t *bm, uint64_t from, uint64_t to)
{
    for (uint64_t p = from; p < to; p++)
        bm[p / 64] &= ~(1ull << (p % 64));
}

/* Round 0, for a region backed by a memfd or a file: leave out the pages
 * in its holes, which read as zeros but would be allocated by reading them
 * (a memfd's are, a guest's untouched memory). Writes after the log's
 * last fetch are in the next one. Where the file system cannot say, every
 * page stays. */
static void drop_holes(struct mig_region *g)
{
    uint64_t end = g->pages * 4096, pos = 0;
    while (g->fd >= 0 && pos < end) {
        off_t data = lseek(g->fd, (off_t)(g->fd_offset + pos), SEEK_DATA);
        if (data < 0 && errno != ENXIO)
            return;
        uint64_t d = data < 0 ? end : (uint64_t)data - g->fd_offset;
        if (d > end)
            d = end;
        /* Only pages wholly in the hole. */
        clear_pages(g->pending, (pos + 4095) / 4096, d / 4096);
        if (d >= end)
            return;
        off_t hole = lseek(g->fd, (off_t)(g->fd_offset + d), SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole <= g->fd_offset + d)
            return;
        pos = (uint64_t)hole - g->fd_offset;
    }
}

/* Send every pending page (skip_zero: the first round, whose target memory
 * is all zeros), in runs. */
static int send_pending(struct mig_source *s, bool skip_zero)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct mig_region *g = &s->r[i];
        for (uint64_t p = 0; p < g->pages;) {
            if (!test_page(g->pending, p) || (skip_zero && page_zero(g->host + p * 4096))) {
                p++;
                continue;
            }
            uint64_t end = p + 1;
            while (end < g->pages && end - p < MIG_RUN_PAGES && test_page(g->pending, end) &&
                   !(skip_zero && page_zero(g->host + end * 4096)))
                end++;
            struct {
                uint32_t region, count;
                uint64_t first;
            } hdr = {i, (uint32_t)(end - p), p};
            int r =
                send_msg(s->fd, MIG_PAGES, &hdr, sizeof(hdr), g->host + p * 4096, (end - p) * 4096);
            if (r < 0)
                return r;
            s->sent_pages += end - p;
            p = end;
        }
        memset(g->pending, 0, g->nwords * sizeof(uint64_t));
    }
    return 0;
}

/* The memory layout, for the target to check against its VM. */
static void put_layout(struct vmm_vm *vm, struct vmm_snap_writer *w)
{
    unsigned n = vmm_memory_region_count(vm->mem);
    snap_section_begin(w, SNAP_TAG_MEMORY, 0);
    snap_put_u32(w, n);
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(vm->mem, i, &info) == 0) {
            snap_put_u64(w, info.gpa);
            snap_put_u64(w, info.len);
        }
    }
    snap_section_end(w);
}

/* The target's REPLY after the header h: 0, or its error with its
 * reason logged. */
static int read_reply_body(int fd, const struct mig_header *h)
{
    uint32_t status;
    char why[MIG_REASON + 1] = "";
    int r = 0;
    if (h->magic != MIG_MAGIC || h->type != MIG_REPLY || h->len < 4 || h->len > 4 + MIG_REASON)
        r = -EPROTO;
    if (r == 0)
        r = recv_all(fd, &status, 4);
    if (r == 0)
        r = recv_all(fd, why, (size_t)h->len - 4);
    if (r < 0) {
        vmm_log_error("migrate: no answer from the target: %s", vmm_strerror(r));
        return r;
    }
    if (status) {
        vmm_log_error("migrate: the target refused: %s", why);
        return status < 4096 ? -(int)status : -EPROTO;
    }
    return 0;
}

/* The target's answer: 0, or its error with its reason logged. */
static int read_reply(int fd)
{
    struct mig_header h;
    int r = recv_all(fd, &h, sizeof(h));
    if (r < 0) {
        vmm_log_error("migrate: no answer from the target: %s", vmm_strerror(r));
        return r;
    }
    return read_reply_body(fd, &h);
}

/* The target's ACCEPT of an OFFER: the capabilities it takes into *caps,
 * none beyond offered; a REPLY is its refusal. */
static int read_accept(int fd, uint32_t offered, uint32_t *caps)
{
    struct mig_header h;
    int r = recv_all(fd, &h, sizeof(h));
    if (r == 0 && h.magic == MIG_MAGIC && h.type == MIG_REPLY) {
        r = read_reply_body(fd, &h);
        return r < 0 ? r : -EPROTO; /* an answer of success makes no sense here */
    }
    if (r == 0 && (h.magic != MIG_MAGIC || h.type != MIG_ACCEPT || h.len != 4))
        r = -EPROTO;
    if (r == 0)
        r = recv_all(fd, caps, 4);
    if (r == 0 && (*caps & ~offered))
        r = -EPROTO;
    if (r < 0)
        vmm_log_error("migrate: no answer to the offer of memfds from the target (a library that "
                      "only copies refuses it: send with VMM_MIGRATE_COPY): %s",
                      vmm_strerror(r));
    return r;
}

/* Region i's memfd with its MEMFD message, in SCM_RIGHTS. */
static int send_memfd(int fd, unsigned i, const struct vmm_region_info *info)
{
    struct mig_header h = {.magic = MIG_MAGIC, .type = MIG_MEMFD, .len = sizeof(struct mig_memfd)};
    struct mig_memfd m = {.region = i, .gpa = info->gpa, .len = info->len};
    uint8_t bytes[sizeof(h) + sizeof(m)];
    memcpy(bytes, &h, sizeof(h));
    memcpy(bytes + sizeof(h), &m, sizeof(m));
    struct iovec iov = {.iov_base = bytes, .iov_len = sizeof(bytes)};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &info->fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    /* The descriptor went with the first byte; the rest, if any, as is. */
    return send_all(fd, bytes + n, sizeof(bytes) - (size_t)n);
}

/* Whether the memory may go as memfds: a Unix socket, every region a memfd
 * of the library's. */
static bool can_pass_memfds(const struct mig_source *s)
{
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt(s->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
        return false;
    for (unsigned i = 0; i < s->n; i++)
        if (!memory_region_memfd(s->vm->mem, i))
            return false;
    return s->n > 0;
}

/* Build the state file of the stopped VM. */
static int build_state(struct vmm_vm *vm, const struct vmm_migrate_options *o, uint8_t **file,
                       size_t *size)
{
    uint8_t id[SNAP_ID_BYTES];
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
        return -errno;
    struct vmm_snap_writer w;
    snap_writer_init(&w);
    int r = snap_state_put(vm, id, o->app_data, o->app_len, &w);
    put_layout(vm, &w);
    *file = r == 0 ? snap_file_build(&w, size) : NULL;
    if (r == 0 && !*file)
        r = w.err ? w.err : -ENOMEM;
    snap_writer_fini(&w);
    return r;
}

/* The memfd way: stop, hand every region's memfd over, the state, the
 * answer. The world stays stopped until the target has answered; on
 * success the regions are blanked before it thaws, so that nothing here
 * (a device, the balloon) reaches the memory the target now runs. */
static int migrate_memfds(struct mig_source *s, const struct vmm_migrate_options *o, bool *stopped,
                          bool *was_paused, double *stop_ms)
{
    struct vmm_vm *vm = s->vm;
    int r = snap_world_stop(vm, was_paused);
    if (r < 0)
        return r;
    *stopped = true;
    *stop_ms = now_ms();
    for (unsigned i = 0; i < s->n && r == 0; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if ((r = vmm_memory_region_info(vm->mem, i, &info)) == 0)
            r = send_memfd(s->fd, i, &info);
    }
    uint8_t *file = NULL;
    size_t size = 0;
    if (r == 0)
        r = build_state(vm, o, &file, &size);
    if (r == 0)
        r = send_msg(s->fd, MIG_STATE, file, size, NULL, 0);
    free(file);
    if (r == 0)
        r = send_msg(s->fd, MIG_END, NULL, 0, NULL, 0);
    if (r == 0)
        r = read_reply(s->fd);
    if (r == 0)
        for (unsigned i = 0; i < s->n; i++)
            memory_region_blank(vm->mem, i);
    snap_world_thaw(vm); /* the VM stays paused */
    return r;
}

/* The copying way: pre-copy rounds, stop, the last pages, the state. */
static int migrate_copy(struct mig_source *s, const struct vmm_migrate_options *o, bool *stopped,
                        bool *was_paused, unsigned *rounds, double *stop_ms)
{
    struct vmm_vm *vm = s->vm;
    int r = 0;
    for (unsigned i = 0; i < s->n && r == 0; i++) {
        if (i >= vm->slot_cap || !vm->slot_dirty_log[i]) {
            if ((r = vmm_vm_dirty_log_start(vm, i)) < 0)
                return r;
            s->r[i].started_log = true;
        }
    }
    vm->snap_base_valid = false; /* migration reads the dirty log */
    /* Round 0: everything (the target's memory is zeros: those are left);
     * the log counts from before it reads. */
    if ((r = fetch_dirty(s)) < 0)
        return r;
    for (unsigned i = 0; i < s->n; i++)
        memset(s->r[i].pending, 0xff, s->r[i].nwords * sizeof(uint64_t));
    for (unsigned i = 0; i < s->n; i++) {
        if (s->r[i].pages % 64)
            s->r[i].pending[s->r[i].nwords - 1] = (1ull << (s->r[i].pages % 64)) - 1;
        drop_holes(&s->r[i]);
    }
    double t0 = now_ms();
    if ((r = send_pending(s, true)) < 0)
        return r;
    double bytes_per_ms = (double)s->sent_pages * 4096 / (now_ms() - t0 + 0.001);

    /* Pre-copy until what is left fits the downtime. */
    unsigned round = 1;
    for (; round <= o->max_rounds; round++) {
        if ((r = fetch_dirty(s)) < 0)
            return r;
        uint64_t left = pending_pages(s);
        if ((double)left * 4096 / bytes_per_ms <= o->downtime_ms)
            break;
        uint64_t before = s->sent_pages;
        t0 = now_ms();
        if ((r = send_pending(s, false)) < 0)
            return r;
        bytes_per_ms = (double)(s->sent_pages - before) * 4096 / (now_ms() - t0 + 0.001);
    }
    *rounds = round - 1;

    /* Stop, the last pages, the state. */
    if ((r = snap_world_stop(vm, was_paused)) < 0)
        return r;
    *stopped = true;
    *stop_ms = now_ms();
    size_t size = 0;
    uint8_t *file = NULL;
    if ((r = fetch_dirty(s)) == 0 && (r = send_pending(s, false)) == 0)
        r = build_state(vm, o, &file, &size);
    snap_world_thaw(vm); /* the VM stays paused */
    if (r == 0)
        r = send_msg(s->fd, MIG_STATE, file, size, NULL, 0);
    free(file);
    if (r == 0)
        r = send_msg(s->fd, MIG_END, NULL, 0, NULL, 0);
    if (r == 0)
        r = read_reply(s->fd);
    return r;
}

static int migrate(struct mig_source *s, const struct vmm_migrate_options *o, bool *stopped,
                   bool *was_paused, struct vmm_migrate_result *res)
{
    uint32_t offer = 0, caps = 0;
    if (!(o->flags & VMM_MIGRATE_COPY) && can_pass_memfds(s))
        offer |= MIG_CAP_MEMFD;
    uint32_t version = offer ? MIG_VERSION : MIG_VERSION_COPY;
    double start_ms = now_ms(), stop_ms = 0;
    int r = send_msg(s->fd, MIG_HELLO, &version, 4, o->app_data, o->app_len);
    if (r == 0 && offer && (r = send_msg(s->fd, MIG_OFFER, &offer, 4, NULL, 0)) == 0)
        r = read_accept(s->fd, offer, &caps);
    if (r < 0)
        return r;
    unsigned rounds = 0;
    bool by_memfd = caps & MIG_CAP_MEMFD;
    vmm_log_info("migrate: %s", by_memfd ? "passing the memory as memfds"
                                : offer  ? "copying the memory (the target takes no memfds)"
                                         : "copying the memory");
    if (by_memfd)
        r = migrate_memfds(s, o, stopped, was_paused, &stop_ms);
    else
        r = migrate_copy(s, o, stopped, was_paused, &rounds, &stop_ms);
    if (r == 0) {
        double end_ms = now_ms();
        res->rounds = rounds;
        res->pages = s->sent_pages;
        res->total_us = (uint64_t)((end_ms - start_ms) * 1000);
        res->downtime_us = (uint64_t)((end_ms - stop_ms) * 1000);
        res->flags = by_memfd ? VMM_MIGRATE_MEMFD : 0;
        vmm_log_info("migrate: %" PRIu64 " pages in %u rounds%s, %.1f ms stopped", s->sent_pages,
                     rounds, by_memfd ? " (memory passed as memfds)" : "", end_ms - stop_ms);
    }
    return r;
}

int vmm_vm_migrate_send(struct vmm_vm *vm, int fd, const struct vmm_migrate_options *opts)
{
    struct vmm_migrate_options o = {0};
    if (!vm || fd < 0 || (opts && VMM_ABI_COPY_IN(&o, opts) < 0) ||
        o.app_len > VMM_SNAPSHOT_APP_MAX || (o.app_len && !o.app_data) || !vm->mem ||
        (o.flags & ~VMM_MIGRATE_COPY) || (o.result && !VMM_ABI_OUT_OK(o.result)))
        return -EINVAL;
    struct vmm_migrate_result res = VMM_INIT(struct vmm_migrate_result);
    if (!o.downtime_ms)
        o.downtime_ms = MIG_DEFAULT_DOWNTIME_MS;
    if (!o.max_rounds)
        o.max_rounds = MIG_DEFAULT_ROUNDS;
    struct mig_source s = {.vm = vm, .fd = fd, .n = vmm_memory_region_count(vm->mem)};
    s.r = calloc(s.n + 1, sizeof(*s.r));
    if (!s.r)
        return -ENOMEM;
    int r = 0;
    for (unsigned i = 0; i < s.n && r == 0; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        struct mig_region *g = &s.r[i];
        if ((r = vmm_memory_region_info(vm->mem, i, &info)) < 0)
            break;
        if (info.len % 4096) {
            vmm_log_error("migrate: memory region %u is not a whole number of pages", i);
            r = -EINVAL;
            break;
        }
        g->host = info.host;
        g->fd = info.fd;
        g->fd_offset = info.fd_offset;
        g->pages = info.len / 4096;
        g->nwords = (size_t)((g->pages + 63) / 64);
        g->pending = calloc(g->nwords + 1, sizeof(uint64_t));
        if (!g->pending)
            r = -ENOMEM;
    }
    bool stopped = false, was_paused = false;
    if (r == 0)
        r = migrate(&s, &o, &stopped, &was_paused, &res);
    if (r < 0) {
        vmm_log_error("migrate: %s; the VM goes on here", vmm_strerror(r));
        if (stopped && !was_paused)
            (void)vmm_vm_resume(vm);
    }
    for (unsigned i = 0; i < s.n; i++) {
        if (s.r[i].started_log)
            (void)vmm_vm_dirty_log_stop(vm, i);
        free(s.r[i].pending);
    }
    free(s.r);
    if (r == 0 && o.result)
        VMM_ABI_COPY_OUT(o.result, &res);
    return r;
}

/* ---- target ---- */

static void close_fds(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
}

int mig_recv_header(int fd, struct mig_header *h, int fds[MIG_MAX_FDS], unsigned *nfds)
{
    uint8_t *b = (uint8_t *)h;
    size_t got = 0;
    bool too_many = false;
    *nfds = 0;
    while (got < sizeof(*h)) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(MIG_MAX_FDS * sizeof(int))];
        } ctl;
        struct iovec iov = {.iov_base = b + got, .iov_len = sizeof(*h) - got};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close_fds(fds, *nfds);
            *nfds = 0;
            return n < 0 ? -errno : -ECONNRESET;
        }
        got += (size_t)n;
        too_many |= (msg.msg_flags & MSG_CTRUNC) != 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
                c->cmsg_len < CMSG_LEN(0))
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t j = 0; j < k; j++) {
                int f;
                memcpy(&f, CMSG_DATA(c) + j * sizeof(int), sizeof(int));
                if (*nfds < MIG_MAX_FDS)
                    fds[(*nfds)++] = f;
                else {
                    close(f);
                    too_many = true;
                }
            }
        }
    }
    if (h->magic != MIG_MAGIC || too_many) {
        close_fds(fds, *nfds);
        *nfds = 0;
        return -EPROTO;
    }
    return 0;
}

/* A header without descriptors (the greeting). */
static int recv_header(int fd, struct mig_header *h)
{
    int fds[MIG_MAX_FDS];
    unsigned nfds;
    int r = mig_recv_header(fd, h, fds, &nfds);
    if (r == 0 && nfds) {
        close_fds(fds, nfds);
        r = -EPROTO;
    }
    return r;
}

int vmm_migrate_recv_hello(int fd, void *buf, size_t max, size_t *len)
{
    struct mig_header h;
    uint32_t version;
    if (fd < 0 || !len || (max && !buf))
        return -EINVAL;
    int r = recv_header(fd, &h);
    if (r == 0 && (h.type != MIG_HELLO || h.len < 4 || h.len > 4 + VMM_SNAPSHOT_APP_MAX))
        r = -EPROTO;
    if (r == 0)
        r = recv_all(fd, &version, 4);
    if (r == 0 && version != MIG_VERSION && version != MIG_VERSION_COPY) {
        vmm_log_error("migrate: the source speaks protocol version %" PRIu32
                      ", this library %u or %u",
                      version, MIG_VERSION_COPY, MIG_VERSION);
        r = -EPROTO;
    }
    if (r < 0)
        return r;
    *len = (size_t)h.len - 4;
    if (*len > max)
        return -ENOSPC;
    return recv_all(fd, buf, *len);
}

static int reply(int fd, int err, const char *why)
{
    uint32_t status = (uint32_t)-err;
    size_t n = strnlen(why, MIG_REASON);
    return send_msg(fd, MIG_REPLY, &status, 4, why, n);
}

/* A PAGES message: into guest memory, every bound checked first. */
static int recv_pages(struct vmm_vm *vm, int fd, uint64_t len, char *why, size_t why_len)
{
    struct {
        uint32_t region, count;
        uint64_t first;
    } hdr;
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    int r = len < sizeof(hdr) ? -EPROTO : recv_all(fd, &hdr, sizeof(hdr));
    if (r < 0)
        return r;
    if (hdr.count == 0 || hdr.count > MIG_RUN_PAGES ||
        len - sizeof(hdr) != (uint64_t)hdr.count * 4096 ||
        vmm_memory_region_info(vm->mem, hdr.region, &info) < 0 || hdr.first > info.len / 4096 ||
        hdr.count > info.len / 4096 - hdr.first) {
        snprintf(why, why_len, "a page run outside guest memory");
        return -EPROTO;
    }
    return recv_all(fd, (uint8_t *)info.host + hdr.first * 4096, (size_t)hdr.count * 4096);
}

/* The layout the source sent against this VM's. */
static int check_layout(struct vmm_vm *vm, struct vmm_snap_file *f, char *why, size_t why_len)
{
    struct vmm_snap_reader rd;
    uint32_t n;
    if (snap_file_find(f, SNAP_TAG_MEMORY, 0, &rd) < 0 || snap_get_u32(&rd, &n) < 0)
        return -EBADMSG;
    if (n != vmm_memory_region_count(vm->mem)) {
        snprintf(why, why_len, "the source has %" PRIu32 " memory regions, this VM %u", n,
                 vmm_memory_region_count(vm->mem));
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t gpa, len;
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (snap_get_u64(&rd, &gpa) < 0 || snap_get_u64(&rd, &len) < 0 ||
            vmm_memory_region_info(vm->mem, i, &info) < 0)
            return -EBADMSG;
        if (gpa != info.gpa || len != info.len) {
            snprintf(why, why_len, "memory region %u differs from the source's", i);
            return -EINVAL;
        }
    }
    return snap_done(&rd);
}

static int recv_state(struct vmm_vm *vm, int fd, uint64_t len, char *why, size_t why_len)
{
    if (len > SNAP_MAX_FILE + (uint64_t)SNAP_HEADER_SIZE) {
        snprintf(why, why_len, "the state is too large");
        return -EPROTO;
    }
    uint8_t *data = malloc((size_t)len + 1);
    if (!data)
        return -ENOMEM;
    int r = recv_all(fd, data, (size_t)len);
    if (r < 0) {
        free(data);
        return r;
    }
    struct vmm_snap_file f;
    if ((r = snap_file_parse(data, (size_t)len, &f, why, why_len)) < 0)
        return r;
    uint8_t id[SNAP_ID_BYTES];
    if ((r = snap_restore_meta(vm, &f, id)) < 0 || (r = check_layout(vm, &f, why, why_len)) < 0 ||
        (r = snap_restore_rest(vm, &f)) < 0) {
        if (!why[0])
            snprintf(why, why_len, "the state does not fit this VM (see its log)");
    }
    snap_file_free(&f);
    return r;
}

int mig_memfd_check(const struct vmm_memory *mem, const struct mig_memfd *m, const int *fds,
                    unsigned nfds, unsigned *region, char *why, size_t why_len)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    struct stat st;
    int seals, fl;
    if (nfds != 1) {
        snprintf(why, why_len, "a memfd message with %u descriptors, not 1", nfds);
        return -EPROTO;
    }
    if (m->flags || vmm_memory_region_info(mem, m->region, &info) < 0 || m->gpa != info.gpa ||
        m->len != info.len) {
        snprintf(why, why_len, "a memfd for a region this VM does not have");
        return -EPROTO;
    }
    if (!memory_region_anonymous(mem, m->region) && !memory_region_memfd(mem, m->region)) {
        snprintf(why, why_len, "memory region %" PRIu32 " cannot take a memfd", m->region);
        return -EPROTO;
    }
    seals = fcntl(fds[0], F_GET_SEALS);
    fl = fcntl(fds[0], F_GETFL);
    if (seals < 0 || fl < 0 || fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_len, "the descriptor for region %" PRIu32 " is not a memfd", m->region);
        return -EPROTO;
    }
    if (!(seals & F_SEAL_SHRINK) || (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) ||
        (fl & O_ACCMODE) != O_RDWR) {
        snprintf(why, why_len, "the memfd for region %" PRIu32 " may shrink or is not writable",
                 m->region);
        return -EPROTO;
    }
    if ((uint64_t)st.st_size != info.len) {
        snprintf(why, why_len,
                 "the memfd for region %" PRIu32 " is %lld bytes, the region %" PRIu64, m->region,
                 (long long)st.st_size, info.len);
        return -EPROTO;
    }
    *region = m->region;
    return 0;
}

/* Whether this VM can take the source's memfds over fd: a Unix socket, and
 * every region one that may (not the caller's memory, a file, huge pages
 * or a ROM). */
static bool can_take_memfds(struct vmm_vm *vm, int fd)
{
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
        return false;
    unsigned n = vmm_memory_region_count(vm->mem);
    for (unsigned i = 0; i < n; i++)
        if (!memory_region_anonymous(vm->mem, i) && !memory_region_memfd(vm->mem, i))
            return false;
    return n > 0;
}

/* An OFFER: answered with what this VM takes. */
static int recv_offer(struct vmm_vm *vm, int fd, uint64_t len, uint32_t *caps, char *why,
                      size_t why_len)
{
    uint32_t offer;
    if (len != 4) {
        snprintf(why, why_len, "a malformed offer");
        return -EPROTO;
    }
    int r = recv_all(fd, &offer, 4);
    if (r < 0)
        return r;
    *caps = offer & MIG_CAP_MEMFD;
    if ((*caps & MIG_CAP_MEMFD) && !can_take_memfds(vm, fd))
        *caps &= ~MIG_CAP_MEMFD;
    vmm_log_info("migrate: the source offers 0x%" PRIx32 ", taken 0x%" PRIx32, offer, *caps);
    return send_msg(fd, MIG_ACCEPT, caps, 4, NULL, 0);
}

/* A MEMFD message whose header came with fds: checked, then mapped. */
static int recv_memfd(struct vmm_vm *vm, int fd, uint64_t len, int *fds, unsigned nfds,
                      bool *adopted, char *why, size_t why_len)
{
    struct mig_memfd m;
    unsigned region;
    int r = len != sizeof(m) ? -EPROTO : recv_all(fd, &m, sizeof(m));
    if (r == -EPROTO)
        snprintf(why, why_len, "a malformed memfd message");
    if (r == 0)
        r = mig_memfd_check(vm->mem, &m, fds, nfds, &region, why, why_len);
    if (r == 0 && adopted[region]) {
        snprintf(why, why_len, "two memfds for region %u", region);
        r = -EPROTO;
    }
    if (r == 0) {
        /* Marked first: a failed mapping leaves the region blanked. */
        adopted[region] = true;
        if ((r = memory_region_adopt_memfd(vm->mem, region, fds[0])) < 0)
            snprintf(why, why_len, "cannot map the memfd of region %u: %s", region,
                     vmm_strerror(r));
    }
    close_fds(fds, nfds);
    return r;
}

int vmm_vm_migrate_recv(struct vmm_vm *vm, int fd)
{
    if (!vm || fd < 0 || !vm->mem)
        return -EINVAL;
    char why[MIG_REASON] = "";
    unsigned n = vmm_memory_region_count(vm->mem), taken = 0;
    bool *adopted = calloc(n + 1, sizeof(bool));
    if (!adopted)
        return -ENOMEM;
    int r = snap_restore_check_fresh(vm);
    bool have_state = false, first = true;
    uint32_t caps = 0;
    while (r == 0) {
        struct mig_header h;
        int fds[MIG_MAX_FDS];
        unsigned nfds;
        if ((r = mig_recv_header(fd, &h, fds, &nfds)) < 0)
            break;
        if (nfds && h.type != MIG_MEMFD) {
            close_fds(fds, nfds);
            snprintf(why, sizeof(why), "descriptors with message %" PRIu32, h.type);
            r = -EPROTO;
        } else if (h.type == MIG_OFFER && first) {
            r = recv_offer(vm, fd, h.len, &caps, why, sizeof(why));
        } else if (h.type == MIG_MEMFD && (caps & MIG_CAP_MEMFD) && !have_state) {
            r = recv_memfd(vm, fd, h.len, fds, nfds, adopted, why, sizeof(why));
            taken += r == 0;
        } else if (h.type == MIG_PAGES && !(caps & MIG_CAP_MEMFD) && !have_state) {
            r = recv_pages(vm, fd, h.len, why, sizeof(why));
        } else if (h.type == MIG_STATE && !have_state && (!(caps & MIG_CAP_MEMFD) || taken == n)) {
            r = recv_state(vm, fd, h.len, why, sizeof(why));
            have_state = r == 0;
        } else if (h.type == MIG_END && h.len == 0 && have_state) {
            /* Without the OK the source goes on, on its memory: then none
             * of it may stay mapped here. */
            if ((r = reply(fd, 0, "")) < 0) {
                snprintf(why, sizeof(why), "the reply could not be sent: %s", vmm_strerror(r));
                break;
            }
            vmm_log_info("migrate: received%s; the VM may run",
                         taken ? " (memory from the source's memfds)" : "");
            free(adopted);
            return 0;
        } else {
            close_fds(fds, nfds);
            snprintf(why, sizeof(why), "unexpected message %" PRIu32, h.type);
            r = -EPROTO;
        }
        first = false;
    }
    /* The source goes on with its memory: none of it stays mapped here. */
    for (unsigned i = 0; i < n; i++)
        if (adopted[i])
            memory_region_blank(vm->mem, i);
    free(adopted);
    if (!why[0])
        snprintf(why, sizeof(why), "%s", vmm_strerror(r));
    vmm_log_error("migrate: receiving: %s", why);
    (void)reply(fd, r, why);
    return r;
}
