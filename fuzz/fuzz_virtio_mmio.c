/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-mmio with the library's devices behind it: virtio-blk over a real
 * io_uring on a scratch image, the console over pipes, and the rng (with and
 * without a rate limit). The input picks the device and whether the
 * transport has an event loop, then plays a hostile guest in fuzz_mmio.h's
 * language (raw register reads and writes of any width anywhere in the
 * window, configuration space included, a driver's set-up with features and
 * queue sizes of its choosing, descriptors, available entries, guest memory
 * writes, whole chains, notifications, resets, turns of the event loop) and
 * the target's own: console input, and well-formed virtio-blk requests.
 *
 * Each configuration's device is made at its first input and kept
 * (fm_begin/fm_end): between inputs it is reset through its transport, the
 * image is emptied and the console's pipes drained, so every input starts
 * from the same state. A console that was given input (it may hold some
 * for the next driver) and a rate-limited rng (its bucket) are destroyed
 * after the input, as is any device after KEEP_RUNS inputs, so destroy's
 * checks run: it resets the device, which must not touch guest memory
 * afterwards (unmapped right after it) and must leave no fd of its own on
 * the event loop.
 *
 * Checked: no memory error, UB or leak (the sanitizers), the magic value
 * reads right, the device resets to status 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_rng.h>

#include "fuzz_mmio.h"

#define IMG_BYTES (1u << 20)
#define NCFG      48   /* device kind (3) x the input's first byte's high nibble */
#define KEEP_RUNS 4096 /* inputs a device serves before it is destroyed and made again */

enum op { OP_INPUT = FM_OP_COUNT, OP_BLK_REQ, OP_COUNT };

/* Made once: the scratch image, the console's pipes. */
static char img_path[PATH_MAX];
static int img_fd = -1;
static int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};

/* Configuration c's device while it lives. */
static struct {
    bool live;
    struct fm f;
    struct vmm_event_loop *loop; /* NULL: notifications on the caller */
    unsigned runs;
} cfgs[NCFG];

static void close_device(unsigned c)
{
    fm_close(&cfgs[c].f);
    vmm_event_loop_destroy(cfgs[c].loop);
    cfgs[c].live = false;
}

static void finish(void)
{
    for (unsigned c = 0; c < NCFG; c++)
        if (cfgs[c].live)
            close_device(c);
    if (img_path[0])
        unlink(img_path);
}

static void init_once(void)
{
    fz_quiet_logs();
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(img_path, sizeof(img_path), "%s/libvmm-fuzz-blk-XXXXXX", dir ? dir : "/tmp");
    img_fd = mkostemp(img_path, O_CLOEXEC);
    FZ_CHECK(img_fd >= 0 && ftruncate(img_fd, IMG_BYTES) == 0);
    FZ_CHECK(pipe2(in_pipe, O_CLOEXEC | O_NONBLOCK) == 0);
    FZ_CHECK(pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) == 0);
    atexit(finish);
}

/* A well-formed virtio-blk request of the input's type and sector, in three
 * descriptors from slot first of queue 0 (header, data, status; no data for
 * a length of 0), made available: the shape the fuzzer would take long to
 * find by itself. */
static void blk_req(struct fm *f, struct fz *in)
{
    uint16_t first = fz_u8(in);
    uint32_t type = fz_u8(in) % 16;
    uint64_t sector = fz_u16(in);
    uint32_t dlen = (uint32_t)(fz_u8(in) % 9) * 512;
    if (type == VMM_VIRTIO_BLK_T_GET_ID && dlen)
        dlen = VMM_VIRTIO_BLK_ID_BYTES;
    unsigned size = f->dq[0].size ? f->dq[0].size : 1;
    vmm_gpa_t hdr = FM_DATA + 0x100ull * (first % 32), data = FM_DATA + 0x2000;
    vmm_gpa_t status = hdr + 0x20;
    uint8_t h[16] = {0};
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    fm_put(f, hdr, h, sizeof(h));
    bool dev_writes = type == VMM_VIRTIO_BLK_T_IN || type == VMM_VIRTIO_BLK_T_GET_ID;
    struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
    } d[3] = {
        {hdr, 16, FM_F_NEXT},
        {data, dlen, (uint16_t)(FM_F_NEXT | (dev_writes ? FM_F_WRITE : 0))},
        {status, 1, FM_F_WRITE},
    };
    if (!dlen)
        d[1] = d[2];
    unsigned n = dlen ? 3 : 2;
    for (unsigned i = 0; i < n; i++)
        fm_put_desc(f, fm_q_desc(0) + 16ull * ((first + i) % size), d[i].addr, d[i].len, d[i].flags,
                    (uint16_t)((first + i + 1) % size));
    fm_avail(f, 0, (uint16_t)(first % size));
    fm_wr(f, VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0, 4);
}

static void drain_pipes(void)
{
    uint8_t buf[4096];
    while (read(out_pipe[0], buf, sizeof(buf)) > 0)
        ;
    while (read(in_pipe[0], buf, sizeof(buf)) > 0)
        ;
}

static void open_device(unsigned c, uint8_t cfg)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    switch (c / 16) {
    case 0: {
        struct vmm_virtio_blk_config bc =
            VMM_INIT(struct vmm_virtio_blk_config, .path = img_path, .readonly = cfg & 0x10,
                     .no_discard = cfg & 0x20, .queue_size = cfg & 0x40 ? 16 : 256);
        FZ_CHECK(vmm_virtio_blk_create(&bc, &dev) == 0);
        break;
    }
    case 1: {
        struct vmm_virtio_console_config cc = VMM_INIT(
            struct vmm_virtio_console_config, .in_fd = cfg & 0x10 ? -1 : in_pipe[0],
            .out_fd = cfg & 0x20 ? -1 : out_pipe[1], .cols = cfg & 0x40 ? 80 : 0, .rows = 25);
        FZ_CHECK(vmm_virtio_console_create(&cc, &dev) == 0);
        break;
    }
    default: {
        struct vmm_virtio_rng_config rc =
            VMM_INIT(struct vmm_virtio_rng_config, .rate_limit = cfg & 0x10 ? 4096 : 0);
        FZ_CHECK(vmm_virtio_rng_create(&rc, &dev) == 0);
        break;
    }
    }
    cfgs[c].loop = NULL;
    if (!(cfg & 0x80))
        FZ_CHECK(vmm_event_loop_create(&cfgs[c].loop) == 0);
    fm_open(&cfgs[c].f, &dev, dev.num_queues, cfgs[c].loop);
    cfgs[c].live = true;
    cfgs[c].runs = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (img_fd < 0)
        init_once();
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    unsigned c = ((cfg & 0x0f) % 3) * 16 + (cfg >> 4);
    if (!cfgs[c].live)
        open_device(c, cfg);
    struct fm *f = &cfgs[c].f;
    fm_begin(f);
    bool input = false;
    for (unsigned steps = 0; fz_more(&in) && steps < 2048; steps++) {
        unsigned op = fz_u8(&in) % OP_COUNT;
        switch (op) {
        case OP_INPUT: {
            size_t len;
            const uint8_t *src = fz_take(&in, fz_u8(&in), &len);
            ssize_t w = write(in_pipe[1], src, len);
            (void)w; /* full: the console has not read it yet */
            input = true;
            break;
        }
        case OP_BLK_REQ:
            blk_req(f, &in);
            break;
        default:
            fm_step(f, &in, op);
            break;
        }
    }
    fm_end(f);
    drain_pipes();
    /* The image as a new device finds it: empty. */
    if (c / 16 == 0)
        FZ_CHECK(ftruncate(img_fd, 0) == 0 && ftruncate(img_fd, IMG_BYTES) == 0);
    bool stateful = (c / 16 == 1 && input) || (c / 16 == 2 && (cfg & 0x10));
    if (stateful || ++cfgs[c].runs == KEEP_RUNS)
        close_device(c);
    return 0;
}
