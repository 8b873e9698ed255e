/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring block back end: requests in fixed slots, completions through
 * an eventfd, fall-backs for what a file system or kernel lacks. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm_internal.h"
#include "virtio/blkio.h"

/* The io_uring block command for an asynchronous discard (Linux 6.12;
 * linux/blkdev.h). Older kernels answer it with -EOPNOTSUPP or -EINVAL and
 * the back end falls back to the BLKDISCARD ioctl. */
#ifndef BLOCK_URING_CMD_DISCARD
#define BLOCK_URING_CMD_DISCARD _IO(0x12, 0)
#endif

/* IORING_OP_ASYNC_CANCEL flags (Linux 5.19), for headers that predate them. */
#ifndef IORING_ASYNC_CANCEL_ALL
#define IORING_ASYNC_CANCEL_ALL (1U << 0)
#endif
#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif

/* The user_data of a cancel request's SQE: its CQE belongs to no op. */
static const char cancel_tag;

/* Write-zeroes without fallocate writes from this much zeroed memory per
 * step, one step at a time. */
#define ZERO_CHUNK (1u << 20)

enum blkio_kind {
    OP_READ,
    OP_WRITE,
    OP_FLUSH,
    OP_DISCARD,
    OP_ZEROES,
};

/* How a discard or write-zeroes is being carried out. */
enum blkio_step {
    STEP_ONE = 0,    /* a single SQE whose result is the answer */
    STEP_URING_CMD,  /* BLOCK_URING_CMD_DISCARD */
    STEP_FALLOCATE,  /* fallocate ZERO_RANGE or PUNCH_HOLE for write-zeroes */
    STEP_ZERO_WRITE, /* writes from the zero buffer, ZERO_CHUNK at a time */
};

struct blkio_op {
    void *cookie;
    struct blkio_op *next; /* free list or inline-done list */
    uint64_t offset;       /* write-zeroes by writing: what is left */
    uint64_t len;
    int64_t res; /* result of an op finished without a CQE */
    uint8_t kind;
    uint8_t step;
    bool unmap;
};

struct vmm_blkio {
    struct io_uring ring;
    bool ring_ok;
    int fd;
    int efd;
    uint64_t size;
    uint32_t block_size;
    uint32_t mem_align; /* O_DIRECT buffer alignment, 1 without O_DIRECT */
    uint32_t off_align; /* O_DIRECT offset/length alignment, 1 without */
    bool readonly;
    bool blockdev;
    bool direct;
    /* What turned out to be missing (learnt from -EOPNOTSUPP). */
    bool no_uring_discard;
    bool no_zero_range;
    bool no_punch_hole;
    bool warned_submit;
    bool single_ops;             /* IORING_OP_READ/WRITE exist: one-buffer transfers use them */
    bool fixed_file;             /* fd is registered with the ring as file 0 */
    bool reaping;                /* inside reap: callbacks are running */
    bool cancelling;             /* vmm_blkio_cancel_all: multi-step ops stop */
    bool cancel_any_unsupported; /* the kernel refused IORING_ASYNC_CANCEL_ANY */
    uint64_t completed;          /* callbacks run, ever */
    vmm_blkio_done_fn done;
    void *opaque;
    unsigned depth;
    unsigned inflight; /* ops holding a slot */
    unsigned queued;   /* SQEs prepared and not yet submitted */
    unsigned sqes_out; /* SQEs prepared whose CQE has not been seen */
    struct blkio_op *ops;
    struct blkio_op *free;
    struct blkio_op *done_head; /* finished without a CQE (ioctl fall-backs) */
    struct blkio_op **done_tail;
    void *zero_buf;
};

static int blkio_probe_size(struct vmm_blkio *b, const char *path)
{
    struct stat st;
    if (fstat(b->fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode)) {
        b->size = (uint64_t)st.st_size;
        b->block_size = 512;
    } else if (S_ISBLK(st.st_mode)) {
        uint64_t bytes;
        int ssz;
        if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0 || ioctl(b->fd, BLKSSZGET, &ssz) < 0)
            return -errno;
        if (ssz < 512 || ssz > 65536 || (ssz & (ssz - 1))) {
            vmm_log_error("blkio: %s: odd logical block size %d", path, ssz);
            return -EINVAL;
        }
        b->size = bytes;
        b->block_size = (uint32_t)ssz;
        b->blockdev = true;
    } else {
        vmm_log_error("blkio: %s is neither a regular file nor a block device", path);
        return -EINVAL;
    }
    b->mem_align = b->off_align = 1;
    if (!b->direct)
        return 0;
    /* What O_DIRECT needs: the kernel says so since 6.1; before that (or for
     * block devices before 6.11) the logical block size is safe for both
     * buffers and offsets, and 4 KiB for a file. */
    uint32_t mem = 0, off = 0;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(b->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN)) {
        if (!sx.stx_dio_mem_align || !sx.stx_dio_offset_align) {
            vmm_log_error("blkio: %s does not support O_DIRECT", path);
            return -EINVAL;
        }
        mem = sx.stx_dio_mem_align;
        off = sx.stx_dio_offset_align;
    }
#endif
    if (!mem || !off)
        mem = off = b->blockdev ? b->block_size : 4096;
    if ((mem & (mem - 1)) || (off & (off - 1)) || off > 65536 || mem > 65536) {
        vmm_log_error("blkio: %s: odd O_DIRECT alignment %u/%u", path, mem, off);
        return -EINVAL;
    }
    b->mem_align = mem;
    b->off_align = off;
    if (off > b->block_size)
        b->block_size = off;
    return 0;
}

static int submit_queued(struct vmm_blkio *b);

int vmm_blkio_open(const struct vmm_blkio_config *cfg, vmm_blkio_done_fn done, void *opaque,
                   struct vmm_blkio **out)
{
    if (!cfg || !cfg->path || !done || !out)
        return -EINVAL;
    unsigned depth = cfg->depth ? cfg->depth : VMM_BLKIO_DEFAULT_DEPTH;
    if (depth > VMM_BLKIO_MAX_DEPTH)
        return -EINVAL;
    struct vmm_blkio *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->fd = b->efd = -1;
    b->readonly = cfg->readonly;
    b->direct = cfg->direct;
    b->done = done;
    b->opaque = opaque;
    b->depth = depth;
    b->done_tail = &b->done_head;
    int r;
    int flags = (cfg->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (cfg->direct ? O_DIRECT : 0);
    b->fd = open(cfg->path, flags);
    if (b->fd < 0) {
        r = -errno;
        vmm_log_error("blkio: cannot open %s: %s", cfg->path, vmm_strerror(r));
        goto fail;
    }
    if ((r = blkio_probe_size(b, cfg->path)) < 0)
        goto fail;
    b->ops = calloc(depth, sizeof(*b->ops));
    if (!b->ops) {
        r = -ENOMEM;
        goto fail;
    }
    for (unsigned i = depth; i-- > 0;) {
        b->ops[i].next = b->free;
        b->free = &b->ops[i];
    }
    /* Every op holds at most one SQE at a time, so depth SQ entries never run
     * out and the CQ (twice as large) never overflows. A request the kernel
     * finishes asynchronously (O_DIRECT, a page-cache miss) completes as task
     * work on the submitting thread, the event loop's: COOP_TASKRUN (Linux
     * 5.19) spares that thread an interrupt when it is busy anyway (it runs
     * the work at its next system call, epoll_wait at the latest), and
     * TASKRUN_FLAG tells liburing's peek that work is pending. An older
     * kernel refuses the flags (-EINVAL): then without them. */
    r = io_uring_queue_init(depth, &b->ring, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    if (r == -EINVAL)
        r = io_uring_queue_init(depth, &b->ring, 0);
    if (r < 0) {
        vmm_log_error("blkio: io_uring_queue_init(%u): %s", depth, vmm_strerror(r));
        goto fail;
    }
    b->ring_ok = true;
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        r = -errno;
        goto fail;
    }
    r = io_uring_register_eventfd(&b->ring, b->efd);
    if (r < 0) {
        vmm_log_error("blkio: io_uring_register_eventfd: %s", vmm_strerror(r));
        goto fail;
    }
    /* A transfer into one buffer (most of a guest's: a page, a folio) is
     * cheaper for the kernel as READ/WRITE than as READV/WRITEV, which copy
     * and check the iovec array first. Both came in Linux 5.6, with probing. */
    /* A registered file saves the kernel a file lookup and reference per
     * request; without one (old kernel, out of memory) the fd is used. */
    b->fixed_file = io_uring_register_files(&b->ring, &b->fd, 1) == 0;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&b->ring);
    if (probe) {
        b->single_ops = io_uring_opcode_supported(probe, IORING_OP_READ) &&
                        io_uring_opcode_supported(probe, IORING_OP_WRITE);
        io_uring_free_probe(probe);
    }
    *out = b;
    return 0;
fail:
    vmm_blkio_close(b);
    return r;
}

/* Queue one IORING_OP_ASYNC_CANCEL for every request in the ring
 * (IORING_ASYNC_CANCEL_ANY | ALL). Requests not started yet complete with
 * -ECANCELED, ones running (a buffered write in a kernel worker) finish. */
static void queue_cancel(struct vmm_blkio *b)
{
    if (b->cancel_any_unsupported)
        return;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe && submit_queued(b) >= 0)
        sqe = io_uring_get_sqe(&b->ring);
    if (!sqe)
        return; /* then the requests just finish */
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, (void *)&cancel_tag);
    b->queued++;
    b->sqes_out++;
}

void vmm_blkio_close(struct vmm_blkio *b)
{
    if (!b)
        return;
    if (b->ring_ok) {
        /* Guest buffers must not be written after the caller frees them:
         * let everything in flight finish first. */
        while (b->queued && submit_queued(b) > 0)
            ;
        /* Only what reached the kernel can complete. */
        while (b->sqes_out > b->queued) {
            struct io_uring_cqe *cqe;
            int r = io_uring_wait_cqe(&b->ring, &cqe);
            if (r == -EINTR)
                continue;
            if (r < 0)
                break;
            io_uring_cqe_seen(&b->ring, cqe);
            b->sqes_out--;
        }
        io_uring_queue_exit(&b->ring);
    }
    if (b->efd >= 0)
        close(b->efd);
    if (b->fd >= 0)
        close(b->fd);
    free(b->zero_buf);
    free(b->ops);
    free(b);
}

uint64_t vmm_blkio_size(const struct vmm_blkio *b)
{
    return b->size;
}

uint32_t vmm_blkio_block_size(const struct vmm_blkio *b)
{
    return b->block_size;
}

uint32_t vmm_blkio_mem_align(const struct vmm_blkio *b)
{
    return b->mem_align;
}

bool vmm_blkio_readonly(const struct vmm_blkio *b)
{
    return b->readonly;
}

bool vmm_blkio_is_blockdev(const struct vmm_blkio *b)
{
    return b->blockdev;
}

int vmm_blkio_fd(const struct vmm_blkio *b)
{
    return b->efd;
}

void vmm_blkio_kick(struct vmm_blkio *b)
{
    uint64_t one = 1;
    ssize_t w = write(b->efd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is non-zero already */
}

unsigned vmm_blkio_space(const struct vmm_blkio *b)
{
    return b->depth - b->inflight;
}

unsigned vmm_blkio_inflight(const struct vmm_blkio *b)
{
    return b->inflight;
}

static struct blkio_op *op_get(struct vmm_blkio *b, enum blkio_kind kind, void *cookie)
{
    struct blkio_op *op = b->free;
    if (!op)
        return NULL;
    b->free = op->next;
    memset(op, 0, sizeof(*op));
    op->kind = (uint8_t)kind;
    op->cookie = cookie;
    b->inflight++;
    return op;
}

static void op_put(struct vmm_blkio *b, struct blkio_op *op)
{
    op->next = b->free;
    b->free = op;
    b->inflight--;
}

/* An SQE tagged with op. The SQ ring has depth entries and an op holds one
 * SQE at a time, so this only fails if the ring is in an unexpected state. */
static struct io_uring_sqe *op_sqe(struct vmm_blkio *b, struct blkio_op *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe && io_uring_submit(&b->ring) >= 0) {
        b->queued = 0;
        sqe = io_uring_get_sqe(&b->ring);
    }
    if (!sqe)
        return NULL;
    io_uring_sqe_set_data(sqe, op);
    b->queued++;
    b->sqes_out++;
    return sqe;
}

/* An op and its SQE for a request that needs nothing between the two;
 * NULL (back end full) leaves nothing taken. */
static struct io_uring_sqe *op_start(struct vmm_blkio *b, enum blkio_kind kind, void *cookie)
{
    struct blkio_op *op = op_get(b, kind, cookie);
    if (!op)
        return NULL;
    struct io_uring_sqe *sqe = op_sqe(b, op);
    if (!sqe)
        op_put(b, op);
    return sqe;
}

/* Point a read, write or flush SQE at the registered file when there is one. */
static void sqe_file(const struct vmm_blkio *b, struct io_uring_sqe *sqe)
{
    if (b->fixed_file) {
        sqe->fd = 0;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

/* Finish op without a CQE: its callback runs from the next process call,
 * which the eventfd write makes the event loop run. */
static void op_finish_inline(struct vmm_blkio *b, struct blkio_op *op, int64_t res)
{
    op->res = res;
    op->next = NULL;
    *b->done_tail = op;
    b->done_tail = &op->next;
    vmm_blkio_kick(b);
}

/* Checks shared by every request that writes: read-only, bounds, overflow. */
static int check_write_range(const struct vmm_blkio *b, uint64_t offset, uint64_t len)
{
    uint64_t end;
    if (b->readonly)
        return -EROFS;
    if (len == 0 || __builtin_add_overflow(offset, len, &end))
        return -EINVAL;
    if (end > b->size)
        return -ENOSPC;
    return 0;
}

static int check_iov(const struct vmm_blkio *b, uint64_t offset, const struct iovec *iov,
                     unsigned iovcnt)
{
    if (!iov || iovcnt == 0 || iovcnt > VMM_BLKIO_MAX_IOV)
        return -EINVAL;
    uint64_t total = 0, end;
    for (unsigned i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > VMM_BLKIO_MAX_RW)
            return -EINVAL;
        total += iov[i].iov_len; /* at most 1024 * 2^30: no overflow */
        if (b->direct && (((uintptr_t)iov[i].iov_base & (b->mem_align - 1)) ||
                          (iov[i].iov_len & (b->off_align - 1))))
            return -EINVAL;
    }
    if (total == 0 || total > VMM_BLKIO_MAX_RW || __builtin_add_overflow(offset, total, &end))
        return -EINVAL;
    if (offset & (b->off_align - 1))
        return -EINVAL;
    return 0;
}

static uint64_t iov_total(const struct iovec *iov, unsigned iovcnt)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

int vmm_blkio_readv(struct vmm_blkio *b, uint64_t offset, const struct iovec *iov, unsigned iovcnt,
                    void *cookie)
{
    int r = check_iov(b, offset, iov, iovcnt);
    if (r < 0)
        return r;
    struct io_uring_sqe *sqe = op_start(b, OP_READ, cookie);
    if (!sqe)
        return -EBUSY;
    if (iovcnt == 1 && b->single_ops)
        io_uring_prep_read(sqe, b->fd, iov[0].iov_base, (unsigned)iov[0].iov_len, offset);
    else
        io_uring_prep_readv(sqe, b->fd, iov, iovcnt, offset);
    sqe_file(b, sqe);
    return 0;
}

int vmm_blkio_writev(struct vmm_blkio *b, uint64_t offset, const struct iovec *iov, unsigned iovcnt,
                     void *cookie)
{
    int r = check_iov(b, offset, iov, iovcnt);
    if (r < 0)
        return r;
    if ((r = check_write_range(b, offset, iov_total(iov, iovcnt))) < 0)
        return r;
    struct io_uring_sqe *sqe = op_start(b, OP_WRITE, cookie);
    if (!sqe)
        return -EBUSY;
    if (iovcnt == 1 && b->single_ops)
        io_uring_prep_write(sqe, b->fd, iov[0].iov_base, (unsigned)iov[0].iov_len, offset);
    else
        io_uring_prep_writev(sqe, b->fd, iov, iovcnt, offset);
    sqe_file(b, sqe);
    return 0;
}

int vmm_blkio_flush(struct vmm_blkio *b, void *cookie)
{
    struct io_uring_sqe *sqe = op_start(b, OP_FLUSH, cookie);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_fsync(sqe, b->fd, 0);
    sqe_file(b, sqe);
    return 0;
}

/* Ranges given to a block device's discard and zero-out must be whole
 * logical blocks (the kernel says -EINVAL otherwise, which would be taken
 * for a missing feature). */
static int check_block_range(const struct vmm_blkio *b, uint64_t offset, uint64_t len)
{
    uint32_t align = b->blockdev ? b->block_size : b->off_align;
    if ((offset | len) & (align - 1))
        return -EINVAL;
    return 0;
}

static void prep_uring_discard(struct io_uring_sqe *sqe, int fd, uint64_t offset, uint64_t len)
{
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
    sqe->cmd_op = BLOCK_URING_CMD_DISCARD;
    sqe->addr = offset;
    sqe->addr3 = len;
}

static int64_t ioctl_discard(struct vmm_blkio *b, uint64_t offset, uint64_t len)
{
    uint64_t range[2] = {offset, len};
    return ioctl(b->fd, BLKDISCARD, range) < 0 ? -errno : 0;
}

int vmm_blkio_discard(struct vmm_blkio *b, uint64_t offset, uint64_t len, void *cookie)
{
    int r = check_write_range(b, offset, len);
    if (r < 0 || (r = check_block_range(b, offset, len)) < 0)
        return r;
    struct blkio_op *op = op_get(b, OP_DISCARD, cookie);
    if (!op)
        return -EBUSY;
    op->offset = offset;
    op->len = len;
    if (b->blockdev && b->no_uring_discard) {
        /* The synchronous ioctl stalls this thread for the discard; only
         * kernels before 6.12 take this path. */
        op_finish_inline(b, op, ioctl_discard(b, offset, len));
        return 0;
    }
    struct io_uring_sqe *sqe = op_sqe(b, op);
    if (!sqe) {
        op_put(b, op);
        return -EBUSY;
    }
    if (b->blockdev) {
        op->step = STEP_URING_CMD;
        prep_uring_discard(sqe, b->fd, offset, len);
    } else {
        io_uring_prep_fallocate(sqe, b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)offset, (off_t)len);
    }
    return 0;
}

/* Queue the next ZERO_CHUNK of a write-zeroes carried out by writing. */
static int zero_write_step(struct vmm_blkio *b, struct blkio_op *op)
{
    if (!b->zero_buf) {
        /* O_DIRECT may want more than a page (STATX_DIOALIGN). */
        size_t align = b->mem_align > 4096 ? b->mem_align : 4096;
        if (posix_memalign(&b->zero_buf, align, ZERO_CHUNK))
            return b->zero_buf = NULL, -ENOMEM;
        memset(b->zero_buf, 0, ZERO_CHUNK);
    }
    struct io_uring_sqe *sqe = op_sqe(b, op);
    if (!sqe)
        return -EBUSY;
    op->step = STEP_ZERO_WRITE;
    unsigned n = op->len < ZERO_CHUNK ? (unsigned)op->len : ZERO_CHUNK;
    io_uring_prep_write(sqe, b->fd, b->zero_buf, n, op->offset);
    return 0;
}

/* Queue the fallocate for a write-zeroes, or the first write when the file
 * system has said it cannot. */
static int zero_start(struct vmm_blkio *b, struct blkio_op *op)
{
    bool punch = op->unmap && !b->no_punch_hole;
    if (!punch && b->no_zero_range)
        return zero_write_step(b, op);
    struct io_uring_sqe *sqe = op_sqe(b, op);
    if (!sqe)
        return -EBUSY;
    op->step = STEP_FALLOCATE;
    int mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
    io_uring_prep_fallocate(sqe, b->fd, mode, (off_t)op->offset, (off_t)op->len);
    return 0;
}

int vmm_blkio_write_zeroes(struct vmm_blkio *b, uint64_t offset, uint64_t len, bool unmap,
                           void *cookie)
{
    int r = check_write_range(b, offset, len);
    if (r < 0 || (r = check_block_range(b, offset, len)) < 0)
        return r;
    struct blkio_op *op = op_get(b, OP_ZEROES, cookie);
    if (!op)
        return -EBUSY;
    op->offset = offset;
    op->len = len;
    op->unmap = unmap;
    if ((r = zero_start(b, op)) < 0) {
        op_put(b, op);
        return r;
    }
    return 0;
}

/* One io_uring_enter for everything queued. */
static int submit_queued(struct vmm_blkio *b)
{
    int r = io_uring_submit(&b->ring);
    if (r < 0) {
        /* Nothing is lost: the SQEs stay in the ring. Make sure something
         * calls process (which submits again) even with no CQE to come. */
        if (!b->warned_submit) {
            vmm_log_warn("blkio: io_uring_submit: %s (retrying)", vmm_strerror(r));
            b->warned_submit = true;
        }
        if (b->sqes_out == b->queued) {
            uint64_t one = 1;
            ssize_t w = write(b->efd, &one, sizeof(one));
            (void)w;
        }
        return r;
    }
    b->queued = (unsigned)r >= b->queued ? 0 : b->queued - (unsigned)r;
    return r;
}

static bool fallocate_unsupported(int64_t res)
{
    return res == -EOPNOTSUPP || res == -EINVAL || res == -ENOSYS;
}

/* A CQE for op arrived. Returns 1 when op finished (and its callback ran),
 * 0 when it goes on with another step. */
static int op_cqe(struct vmm_blkio *b, struct blkio_op *op, int64_t res)
{
    switch (op->step) {
    case STEP_URING_CMD:
        if (b->cancelling && (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOTTY)) {
            res = -ECANCELED; /* no fall-back now: the caller is waiting */
        } else if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOTTY) {
            /* No asynchronous discard in this kernel (before 6.12). */
            b->no_uring_discard = true;
            res = ioctl_discard(b, op->offset, op->len);
        }
        break;
    case STEP_FALLOCATE:
        if (b->cancelling && fallocate_unsupported(res)) {
            res = -ECANCELED;
        } else if (fallocate_unsupported(res)) {
            if (op->unmap && !b->no_punch_hole)
                b->no_punch_hole = true;
            else
                b->no_zero_range = true;
            int r = zero_start(b, op);
            if (r == 0)
                return 0;
            res = r;
        }
        break;
    case STEP_ZERO_WRITE:
        if (res > 0) {
            op->offset += (uint64_t)res;
            op->len -= (uint64_t)res < op->len ? (uint64_t)res : op->len;
            if (op->len && b->cancelling) {
                res = -ECANCELED; /* the rest is not written */
            } else if (op->len) {
                int r = zero_write_step(b, op);
                if (r == 0)
                    return 0;
                res = r;
            } else {
                res = 0;
            }
        } else if (res == 0) {
            res = -EIO; /* no progress: the device is full or gone */
        }
        break;
    default:
        break;
    }
    void *cookie = op->cookie;
    op_put(b, op);
    b->done(b->opaque, cookie, res);
    return 1;
}

/* Run the callback of everything finished (the ring's CQEs and the ops
 * finished without one). Returns the callbacks run. */
static unsigned reap_ring(struct vmm_blkio *b)
{
    unsigned n = 0;
    b->reaping = true;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
        struct blkio_op *op = io_uring_cqe_get_data(cqe);
        int64_t res = cqe->res;
        io_uring_cqe_seen(&b->ring, cqe);
        b->sqes_out--;
        if ((const void *)op == &cancel_tag) {
            if (res == -EINVAL && !b->cancel_any_unsupported) {
                b->cancel_any_unsupported = true;
                vmm_log_debug("blkio: no IORING_ASYNC_CANCEL_ANY: requests finish, not cancelled");
            }
            continue;
        }
        n += (unsigned)op_cqe(b, op, res);
    }
    while (b->done_head) {
        struct blkio_op *op = b->done_head;
        b->done_head = op->next;
        if (!b->done_head)
            b->done_tail = &b->done_head;
        void *cookie = op->cookie;
        int64_t res = op->res;
        op_put(b, op);
        b->done(b->opaque, cookie, res);
        n++;
    }
    b->reaping = false;
    b->completed += n;
    return n;
}

/* Clear the eventfd, then reap. Clearing first means a completion posted
 * after the last look at the ring leaves the eventfd readable. */
static unsigned reap(struct vmm_blkio *b)
{
    uint64_t count;
    ssize_t rd = read(b->efd, &count, sizeof(count));
    (void)rd;
    return reap_ring(b);
}

int vmm_blkio_submit(struct vmm_blkio *b)
{
    if (b->reaping) /* from a callback: the reap loop around it goes on */
        return b->queued ? submit_queued(b) : 0;
    int total = 0;
    while (b->queued) {
        /*
         * Completions posted while the kernel runs this submit (reads served
         * from the page cache finish inside it) need not signal the eventfd:
         * they are reaped right below. That saves the event loop a wake-up
         * and two system calls per batch. A completion racing with the
         * re-enable may still have seen the eventfd disabled, so with
         * requests left in the kernel the eventfd is signalled once by hand.
         */
        bool quiet = io_uring_cq_eventfd_toggle(&b->ring, false) == 0;
        int r = submit_queued(b);
        if (quiet) {
            (void)io_uring_cq_eventfd_toggle(&b->ring, true);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
        }
        (void)reap_ring(b);
        if (quiet && b->sqes_out > b->queued)
            vmm_blkio_kick(b);
        if (r < 0)
            return total ? total : r;
        total += r;
    }
    return total;
}

int vmm_blkio_process(struct vmm_blkio *b)
{
    uint64_t before = b->completed;
    (void)reap(b);
    (void)vmm_blkio_submit(b);
    return (int)(b->completed - before);
}

int vmm_blkio_reap(struct vmm_blkio *b)
{
    uint64_t before = b->completed;
    (void)reap_ring(b);
    (void)vmm_blkio_submit(b);
    return (int)(b->completed - before);
}

int vmm_blkio_wait(struct vmm_blkio *b)
{
    while (b->inflight) {
        if (b->done_head)
            return vmm_blkio_process(b);
        if (b->queued) {
            int r = vmm_blkio_submit(b);
            if (r < 0)
                return r;
            continue;
        }
        if (b->sqes_out == 0)
            return -EIO; /* slots held with nothing anywhere: cannot happen */
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe(&b->ring, &cqe);
        if (r == -EINTR)
            continue;
        if (r < 0)
            return r;
        return vmm_blkio_process(b);
    }
    return 0;
}

int vmm_blkio_cancel_all(struct vmm_blkio *b)
{
    if (!b->inflight)
        return 0;
    b->cancelling = true;
    queue_cancel(b);
    int r = 0;
    while (b->inflight && (r = vmm_blkio_wait(b)) >= 0)
        ;
    b->cancelling = false;
    return r < 0 ? r : 0;
}
