/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An asynchronous block back end over io_uring: a file or block device, with
 * vectored reads and writes, flush, discard and write-zeroes, each tagged
 * with a caller's cookie. Completions are signalled on an eventfd registered
 * with the ring, so an epoll event loop can drive it (vmm_blkio_fd, then
 * vmm_blkio_process).
 *
 * Requests are queued by the vmm_blkio_{readv,writev,flush,discard,
 * write_zeroes} calls and handed to the kernel together by vmm_blkio_submit:
 * one system call per batch. The iovec arrays and the memory they point at
 * stay the caller's and must stay valid until the request completes (the
 * data is never copied: guest buffers go straight to the kernel).
 *
 * Threads: a back end is not thread-safe; its user serializes every call
 * (the virtio-blk device holds its queue lock around them).
 */
#ifndef VMM_VIRTIO_BLKIO_H
#define VMM_VIRTIO_BLKIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vmm_blkio;

/* The largest data length of one read or write (an io_uring result is an
 * int32 and the kernel caps one transfer just below 2 GiB). */
#define VMM_BLKIO_MAX_RW (1u << 30)
/* The most iovecs in one read or write (IOV_MAX). */
#define VMM_BLKIO_MAX_IOV 1024u
/* Default and largest number of requests in flight. */
#define VMM_BLKIO_DEFAULT_DEPTH 128u
#define VMM_BLKIO_MAX_DEPTH     4096u

/* Configuration; zero means default. */
struct vmm_blkio_config {
    const char *path; /* a regular file or a block device */
    bool readonly;    /* open O_RDONLY; every write-type request fails with -EROFS */
    bool direct;      /* O_DIRECT: buffers, offsets and lengths must be aligned */
    unsigned depth;   /* most requests in flight (0: VMM_BLKIO_DEFAULT_DEPTH) */
};

/*
 * Called once per finished request from vmm_blkio_process with the cookie
 * given at submission and the result: the bytes transferred for a read or a
 * write (a read at the end of the file returns fewer than asked, 0 past it),
 * 0 for flush/discard/write-zeroes, or -errno. The request's slot is free
 * again when the callback runs, so it may queue new requests (and submit
 * them), but it must not call vmm_blkio_process, vmm_blkio_wait or
 * vmm_blkio_close.
 */
typedef void (*vmm_blkio_done_fn)(void *opaque, void *cookie, int64_t res);

/*
 * Open cfg->path and set up a ring of cfg->depth entries and its eventfd.
 * Returns 0, -EINVAL (bad config, not a file or block device), -errno from
 * open/io_uring_setup (-ENOTSUP-like errors where io_uring is absent).
 */
int vmm_blkio_open(const struct vmm_blkio_config *cfg, vmm_blkio_done_fn done, void *opaque,
                   struct vmm_blkio **out);

/* Wait for the requests in flight to finish (their callbacks are not called),
 * then close the ring, the eventfd and the file. Accepts NULL. */
void vmm_blkio_close(struct vmm_blkio *b);

/* Size in bytes (st_size, or BLKGETSIZE64 for a block device) at open. */
uint64_t vmm_blkio_size(const struct vmm_blkio *b);
/* Logical block size: BLKSSZGET for a block device, 512 for a file. */
uint32_t vmm_blkio_block_size(const struct vmm_blkio *b);
/* Alignment of buffers, offsets and lengths that O_DIRECT needs (1 without). */
uint32_t vmm_blkio_mem_align(const struct vmm_blkio *b);
bool vmm_blkio_readonly(const struct vmm_blkio *b);
bool vmm_blkio_is_blockdev(const struct vmm_blkio *b);

/* The eventfd that becomes readable when completions are ready (for
 * vmm_event_loop_add with EPOLLIN). Owned by the back end. */
int vmm_blkio_fd(const struct vmm_blkio *b);

/* Make vmm_blkio_fd readable, so its event loop callback runs again soon
 * (for work its owner put off). */
void vmm_blkio_kick(struct vmm_blkio *b);

/* How many more requests can be queued now (depth minus those in flight). */
unsigned vmm_blkio_space(const struct vmm_blkio *b);
/* Requests queued or in flight. */
unsigned vmm_blkio_inflight(const struct vmm_blkio *b);

/*
 * Queue a request. Each returns 0 (cookie's callback will run once), or, with
 * nothing queued and no callback: -EBUSY (no free slot; wait for
 * completions), -EROFS (a write-type request on a read-only back end),
 * -EINVAL (iovcnt 0 or above VMM_BLKIO_MAX_IOV, a total length of 0 or above
 * VMM_BLKIO_MAX_RW, offset + length overflows, misaligned for O_DIRECT or for
 * the device's block size), -ENOSPC (a write, discard or write-zeroes
 * reaching past vmm_blkio_size; reads past it are allowed and come back
 * short).
 */
int vmm_blkio_readv(struct vmm_blkio *b, uint64_t offset, const struct iovec *iov, unsigned iovcnt,
                    void *cookie);
int vmm_blkio_writev(struct vmm_blkio *b, uint64_t offset, const struct iovec *iov, unsigned iovcnt,
                     void *cookie);
/* fsync (fdatasync would miss size changes on some file systems). */
int vmm_blkio_flush(struct vmm_blkio *b, void *cookie);
/* Deallocate [offset, offset + len): a hole punched in a file, BLKDISCARD on
 * a block device. The range then reads as zeroes in a file; on a device it
 * reads as whatever the device says. */
int vmm_blkio_discard(struct vmm_blkio *b, uint64_t offset, uint64_t len, void *cookie);
/* Make [offset, offset + len) read as zeroes: fallocate ZERO_RANGE (or, with
 * unmap, PUNCH_HOLE) where the file system can, else writes of zeroes. */
int vmm_blkio_write_zeroes(struct vmm_blkio *b, uint64_t offset, uint64_t len, bool unmap,
                           void *cookie);

/* Hand every queued request to the kernel with one system call. Requests
 * the kernel finished within that call (reads served from the page cache)
 * have their callbacks run before it returns (unless it is called from a
 * callback), and what those callbacks queue is submitted too. Returns the
 * number handed over (0 when nothing was queued) or -errno (the requests
 * stay queued and the next submit or process retries them). */
int vmm_blkio_submit(struct vmm_blkio *b);

/*
 * Clear the eventfd, run the callback of every finished request, then submit
 * whatever the callbacks and multi-step requests queued. Returns the number
 * of callbacks run (0 if none was ready), never blocks.
 */
int vmm_blkio_process(struct vmm_blkio *b);

/*
 * Process without clearing the eventfd, for a caller that watches
 * vmm_blkio_fd edge-triggered (vmm_event_loop_add_edge): every signal is one
 * wake-up there, so the read(2) that process spends to make a level-triggered
 * fd quiet is saved, one system call per batch of completions that finished
 * outside submit. The counter only grows (it cannot realistically reach its
 * limit). Same return as process.
 */
int vmm_blkio_reap(struct vmm_blkio *b);

/*
 * Block until at least one request finishes and run process. Returns what
 * process returned (0 is possible: a multi-step request moved on), 0 at once
 * with nothing in flight, or -errno when nothing can make progress (a
 * submit or wait that keeps failing). Loop on vmm_blkio_inflight to drain.
 */
int vmm_blkio_wait(struct vmm_blkio *b);

/*
 * Cancel every request queued or in flight and wait until each has finished:
 * for a device reset, so that nothing the old queue asked for goes on for
 * long. Requests the kernel had not started complete with -ECANCELED; ones
 * already running (a buffered write in a kernel worker) and ones finished
 * meanwhile with their own result; a write-zeroes done in steps stops after
 * its current step (-ECANCELED). Every callback runs once, before this
 * returns. Returns 0, or -errno when the ring cannot make progress (then
 * requests may still be in flight: vmm_blkio_close waits for them). On a
 * kernel without IORING_ASYNC_CANCEL_ANY (before 5.19) it only waits. Not
 * from a callback.
 */
int vmm_blkio_cancel_all(struct vmm_blkio *b);

#endif /* VMM_VIRTIO_BLKIO_H */
