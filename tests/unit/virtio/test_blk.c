/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-blk on a standalone virtio-mmio transport, malloc-backed guest
 * memory and a temporary image file: every request type, read-only disks,
 * short reads, and hostile chains each followed by a request that works. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/virtio.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_mmio.h>

#include "check_compat.h"
#include "virtio/mmio_regs.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE       16
#define IMG_SECTORS 2048u
#define IMG_SIZE    (IMG_SECTORS * 512u)

/* Guest buffers inside the driver's memory (TD_BUF .. TD_MEM_BASE + TD_MEM_SIZE). */
#define G_HDR    0x20000ull
#define G_DATA   0x21000ull /* up to 64 KiB */
#define G_STATUS 0x31000ull
#define G_DWZ    0x31100ull
#define G_ID     0x31200ull
#define G_HDR2   0x31800ull /* a second request's header */
#define G_MANY   0x32000ull /* per-request areas for the many-in-flight test */

static struct td drv;
static struct vmm_event_loop *loop;
static struct vmm_virtio_mmio *mmio;
static char img[PATH_MAX];
static int img_fd = -1;
static unsigned irqs;
static unsigned ring_size; /* the queue size driver_init sets up */
static uint8_t *extra;     /* a region a test adds; freed after the map */

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 13 + (i >> 9) * 5 + 1);
}

static void make_image(void)
{
    img_fd = mkstemp(vmm_test_tmpname(img, sizeof(img), "blk-test-"));
    ck_assert_int_ge(img_fd, 0);
    static uint8_t buf[IMG_SIZE];
    for (uint64_t i = 0; i < IMG_SIZE; i++)
        buf[i] = pattern(i);
    ck_assert_int_eq(pwrite(img_fd, buf, IMG_SIZE, 0), (ssize_t)IMG_SIZE);
}

static void count_irq(void *opaque)
{
    irqs++;
}

/* ---- the driver's register accesses ---- */

static void w32(uint64_t off, uint32_t v)
{
    vmm_virtio_mmio_bus_ops()->write(mmio, off, (const uint8_t *)&v, 4);
}

static uint32_t r32(uint64_t off)
{
    uint32_t v = 0;
    vmm_virtio_mmio_bus_ops()->read(mmio, off, (uint8_t *)&v, 4);
    return v;
}

static uint64_t device_features(void)
{
    w32(VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint64_t f = r32(VMM_VIRTIO_MMIO_DEVICE_FEATURES);
    w32(VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    return f | (uint64_t)r32(VMM_VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

/* Reset, negotiate `want` (masked by what is offered), set queue 0 up and
 * set DRIVER_OK, as a guest driver does. */
static void driver_init(uint64_t want)
{
    w32(VMM_VIRTIO_MMIO_STATUS, 0);
    w32(VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE);
    w32(VMM_VIRTIO_MMIO_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER);
    uint64_t f = device_features() & (want | VMM_VIRTIO_F_VERSION_1);
    w32(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w32(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
    w32(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
    uint32_t st =
        VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK;
    w32(VMM_VIRTIO_MMIO_STATUS, st);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_STATUS), st);
    memset(td_ptr(&drv, TD_DESC), 0, 0x3000);
    drv.avail_idx = drv.used_seen = 0;
    drv.size = ring_size;
    w32(VMM_VIRTIO_MMIO_QUEUE_SEL, 0);
    ck_assert_uint_ge(r32(VMM_VIRTIO_MMIO_QUEUE_NUM_MAX), ring_size);
    w32(VMM_VIRTIO_MMIO_QUEUE_NUM, ring_size);
    w32(VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)TD_DESC);
    w32(VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    w32(VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)TD_AVAIL);
    w32(VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
    w32(VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)TD_USED);
    w32(VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
    w32(VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    w32(VMM_VIRTIO_MMIO_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_STATUS), st | VMM_VIRTIO_STATUS_DRIVER_OK);
}

static void attach_disk(const struct vmm_virtio_blk_config *bc, bool with_loop)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_blk_create(bc, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000, .gsi = 5, .mem = drv.mem,
                 .loop = with_loop ? loop : NULL, .interrupt = count_irq);
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &mmio), 0);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_MAGIC_VALUE), VMM_VIRTIO_MMIO_MAGIC);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_DEVICE_ID), VMM_VIRTIO_ID_BLOCK);
}

static void setup_common(bool ro, bool with_loop)
{
    irqs = 0;
    ring_size = QSIZE;
    make_image();
    td_init(&drv, QSIZE);
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    struct vmm_virtio_blk_config bc =
        VMM_INIT(struct vmm_virtio_blk_config, .path = img, .readonly = ro,
                 .serial = "test-serial-0123", .queue_size = 256);
    attach_disk(&bc, with_loop);
    driver_init(VMM_VIRTIO_BLK_F_SEG_MAX | VMM_VIRTIO_BLK_F_BLK_SIZE | VMM_VIRTIO_BLK_F_FLUSH |
                VMM_VIRTIO_BLK_F_RO | VMM_VIRTIO_BLK_F_DISCARD | VMM_VIRTIO_BLK_F_WRITE_ZEROES);
}

static void setup(void)
{
    setup_common(false, true);
}

static void setup_ro(void)
{
    setup_common(true, true);
}

static void setup_noloop(void)
{
    setup_common(false, false);
}

static void teardown(void)
{
    vmm_virtio_mmio_destroy(mmio);
    mmio = NULL;
    vmm_event_loop_destroy(loop);
    loop = NULL;
    td_fini(&drv);
    free(extra);
    extra = NULL;
    if (img_fd >= 0) {
        close(img_fd);
        unlink(img);
    }
    img_fd = -1;
}

/* ---- building and running requests ---- */

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

/* Put a chain of n segments at descriptors first.., make it available. */
static void post_at(unsigned first, const struct seg *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        td_desc(&drv, first + i, s[i].gpa, s[i].len,
                (uint16_t)((i + 1 < n ? TD_F_NEXT : 0) | (s[i].writable ? TD_F_WRITE : 0)),
                (uint16_t)(first + i + 1));
    td_avail(&drv, (uint16_t)first);
}

static void kick(void)
{
    w32(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Run the event loop until `count` more used entries appear (bounded). */
static void wait_used(unsigned count)
{
    uint16_t want = (uint16_t)(drv.used_seen + count);
    for (int i = 0; i < 200 && td_used_idx(&drv) != want; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 50), 0);
    ck_assert_uint_eq(td_used_idx(&drv), want);
}

/* Post one chain, kick, wait for it; returns the used length. */
static uint32_t run_chain(const struct seg *s, unsigned n)
{
    post_at(0, s, n);
    kick();
    wait_used(1);
    uint32_t id, len;
    td_used_elem(&drv, drv.used_seen, &id, &len);
    drv.used_seen++;
    ck_assert_uint_eq(id, 0);
    return len;
}

static void put_hdr(uint64_t gpa, uint32_t type, uint64_t sector)
{
    uint8_t *p = td_ptr(&drv, gpa);
    uint32_t prio = 0;
    memcpy(p, &type, 4);
    memcpy(p + 4, &prio, 4);
    memcpy(p + 8, &sector, 8);
}

static uint8_t status(void)
{
    return *(uint8_t *)td_ptr(&drv, G_STATUS);
}

/* A read of len bytes at sector into G_DATA; returns the status. */
static uint8_t do_read(uint64_t sector, uint32_t len, uint32_t *used)
{
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, sector);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg s[] = {{G_HDR, 16, false}, {G_DATA, len, true}, {G_STATUS, 1, true}};
    uint32_t u = run_chain(s, 3);
    if (used)
        *used = u;
    return status();
}

static uint8_t do_write(uint64_t sector, const void *src, uint32_t len)
{
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_OUT, sector);
    memcpy(td_ptr(&drv, G_DATA), src, len);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg s[] = {{G_HDR, 16, false}, {G_DATA, len, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s, 3), 1);
    return status();
}

static uint8_t do_dwz(uint32_t type, uint64_t sector, uint32_t num, uint32_t flags)
{
    put_hdr(G_HDR, type, 0);
    uint8_t *p = td_ptr(&drv, G_DWZ);
    memcpy(p, &sector, 8);
    memcpy(p + 8, &num, 4);
    memcpy(p + 12, &flags, 4);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg s[] = {{G_HDR, 16, false}, {G_DWZ, 16, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s, 3), 1);
    return status();
}

static uint8_t do_simple(uint32_t type)
{
    put_hdr(G_HDR, type, 0);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg s[] = {{G_HDR, 16, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s, 2), 1);
    return status();
}

/* The image's bytes [off, off + len) are pattern() (expect NULL) or all
 * equal to *expect. */
static void check_image(uint64_t off, uint64_t len, const uint8_t *fill)
{
    static uint8_t buf[IMG_SIZE];
    ck_assert_uint_le(off + len, IMG_SIZE);
    ck_assert_int_eq(pread(img_fd, buf, len, off), (ssize_t)len);
    uint64_t bad = len;
    for (uint64_t i = 0; i < len && bad == len; i++)
        if (buf[i] != (fill ? *fill : pattern(off + i)))
            bad = i;
    ck_assert_msg(bad == len, "image byte %llu is 0x%x", (unsigned long long)(off + bad),
                  bad < len ? buf[bad] : 0);
}

/* A good read after whatever came before: the device still works. */
static void good_read_works(void)
{
    uint32_t used;
    ck_assert_uint_eq(do_read(5, 1024, &used), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(used, 1025);
    const uint8_t *d = td_ptr(&drv, G_DATA);
    for (unsigned i = 0; i < 1024; i += 97)
        ck_assert_uint_eq(d[i], pattern(5 * 512 + i));
}

static struct vmm_virtio_blk_stats stats(void)
{
    struct vmm_virtio_blk_stats st = VMM_INIT(struct vmm_virtio_blk_stats);
    ck_assert_int_eq(vmm_virtio_blk_get_stats(vmm_virtio_mmio_transport(mmio), &st), 0);
    return st;
}

/* ---- tests ---- */

START_TEST(test_features_and_config)
{
    uint64_t f = device_features();
    ck_assert(f & VMM_VIRTIO_F_VERSION_1);
    ck_assert(f & VMM_VIRTIO_BLK_F_BLK_SIZE);
    ck_assert(f & VMM_VIRTIO_BLK_F_FLUSH);
    ck_assert(f & VMM_VIRTIO_BLK_F_SEG_MAX);
    ck_assert(f & VMM_VIRTIO_BLK_F_DISCARD);
    ck_assert(f & VMM_VIRTIO_BLK_F_WRITE_ZEROES);
    ck_assert(!(f & VMM_VIRTIO_BLK_F_RO));
    ck_assert(!(f & VMM_VIRTIO_BLK_F_MQ));
    uint64_t cap = r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_CAPACITY) |
                   (uint64_t)r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_CAPACITY + 4) << 32;
    ck_assert_uint_eq(cap, IMG_SECTORS);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_BLK_SIZE), 512);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_SEG_MAX),
                      VMM_VIRTIO_BLK_SEG_MAX);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS),
                      VMM_VIRTIO_BLK_MAX_DISCARD);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_MAX_DISCARD_SEG), 1);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT), 1);
    ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG), 1);
    uint8_t unmap = 0;
    vmm_virtio_mmio_bus_ops()->read(
        mmio, VMM_VIRTIO_MMIO_CONFIG + VMM_VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP, &unmap, 1);
    ck_assert_uint_eq(unmap, 1);
    ck_assert_uint_eq(stats().capacity, IMG_SECTORS);
}
END_TEST

START_TEST(test_read)
{
    uint32_t used;
    ck_assert_uint_eq(do_read(3, 4096, &used), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(used, 4097);
    const uint8_t *d = td_ptr(&drv, G_DATA);
    for (unsigned i = 0; i < 4096; i++)
        if (d[i] != pattern(3 * 512 + i))
            ck_abort_msg("byte %u of the read differs", i);
    /* The last sector of the disk. */
    ck_assert_uint_eq(do_read(IMG_SECTORS - 1, 512, &used), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(d[511], pattern(IMG_SIZE - 1));
    ck_assert_uint_ge(irqs, 2);
    struct vmm_virtio_blk_stats st = stats();
    ck_assert_uint_eq(st.reads, 2);
    ck_assert_uint_eq(st.bytes_read, 4096 + 512);
    ck_assert_uint_eq(st.io_errors, 0);
}
END_TEST

START_TEST(test_write_scattered_and_flush)
{
    /* 8 KiB at sector 100 from three descriptors of 1, 4 and 3 KiB. */
    uint8_t *d = td_ptr(&drv, G_DATA);
    for (unsigned i = 0; i < 8192; i++)
        d[i] = (uint8_t)(i ^ 0x5a);
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_OUT, 100);
    struct seg s[] = {{G_HDR, 16, false},
                      {G_DATA, 1024, false},
                      {G_DATA + 1024, 4096, false},
                      {G_DATA + 5120, 3072, false},
                      {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s, 5), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(do_simple(VMM_VIRTIO_BLK_T_FLUSH), VMM_VIRTIO_BLK_S_OK);
    uint8_t back[8192];
    ck_assert_int_eq(pread(img_fd, back, sizeof(back), 100 * 512), (ssize_t)sizeof(back));
    for (unsigned i = 0; i < 8192; i++)
        if (back[i] != (uint8_t)(i ^ 0x5a))
            ck_abort_msg("image byte %u differs", i);
    check_image(0, 100 * 512, NULL);
    check_image(116 * 512, IMG_SIZE - 116 * 512, NULL);
    /* And it reads back through the device. */
    uint32_t used;
    memset(d, 0, 8192);
    ck_assert_uint_eq(do_read(101, 512, &used), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(d[3], (uint8_t)((512 + 3) ^ 0x5a));
    struct vmm_virtio_blk_stats st = stats();
    ck_assert_uint_eq(st.writes, 1);
    ck_assert_uint_eq(st.flushes, 1);
    ck_assert_uint_eq(st.bytes_written, 8192);
}
END_TEST

START_TEST(test_header_and_data_any_layout)
{
    /* VERSION_1 means any layout: the header and the data in one
     * descriptor, the data and the status in one descriptor. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_OUT, 7);
    memset(td_ptr(&drv, G_HDR + 16), 0x77, 512);
    struct seg w[] = {{G_HDR, 16 + 512, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(w, 2), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_OK);
    uint8_t fill = 0x77;
    check_image(7 * 512, 512, &fill);
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 7);
    uint8_t *d = td_ptr(&drv, G_DATA);
    memset(d, 0, 513);
    d[512] = 0xff;
    struct seg r[] = {{G_HDR, 16, false}, {G_DATA, 513, true}};
    ck_assert_uint_eq(run_chain(r, 2), 513);
    ck_assert_uint_eq(d[512], VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(d[0], 0x77);
    ck_assert_uint_eq(d[511], 0x77);
}
END_TEST

START_TEST(test_get_id)
{
    uint8_t *id = td_ptr(&drv, G_ID);
    memset(id, 0xee, 32);
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_GET_ID, 0);
    struct seg s[] = {{G_HDR, 16, false}, {G_ID, 20, true}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s, 3), 21);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_OK);
    ck_assert_int_eq(memcmp(id, "test-serial-0123\0\0\0\0", 20), 0);
    ck_assert_uint_eq(id[20], 0xee);
    /* A shorter buffer gets the start of the id. */
    memset(id, 0xee, 32);
    struct seg s8[] = {{G_HDR, 16, false}, {G_ID, 8, true}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(s8, 3), 9);
    ck_assert_int_eq(memcmp(id, "test-ser", 8), 0);
    ck_assert_uint_eq(id[8], 0xee);
    ck_assert_uint_eq(stats().get_ids, 2);
}
END_TEST

START_TEST(test_discard)
{
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 16, 16, 0), VMM_VIRTIO_BLK_S_OK);
    uint8_t zero = 0;
    check_image(16 * 512, 16 * 512, &zero);
    check_image(0, 16 * 512, NULL);
    check_image(32 * 512, IMG_SIZE - 32 * 512, NULL);
    /* Unmap is not a discard flag; unknown flags are unsupported. */
    ck_assert_uint_eq(
        do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 40, 8, VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
        VMM_VIRTIO_BLK_S_UNSUPP);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 40, 8, 0x80), VMM_VIRTIO_BLK_S_UNSUPP);
    check_image(40 * 512, 8 * 512, NULL);
    /* Past the end, overflowing, above the limit: IOERR, nothing touched. */
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, IMG_SECTORS - 4, 8, 0),
                      VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, UINT64_MAX - 2, 8, 0),
                      VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 0, VMM_VIRTIO_BLK_MAX_DISCARD + 1, 0),
                      VMM_VIRTIO_BLK_S_IOERR);
    check_image(IMG_SIZE - 4 * 512, 4 * 512, NULL);
    /* Zero sectors: nothing to do. */
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 50, 0, 0), VMM_VIRTIO_BLK_S_OK);
    /* Two segments (the device offers one). */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_DISCARD, 0);
    memset(td_ptr(&drv, G_DWZ), 0, 32);
    struct seg two[] = {{G_HDR, 16, false}, {G_DWZ, 32, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(two, 3), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    /* A segment cut short. */
    struct seg part[] = {{G_HDR, 16, false}, {G_DWZ, 12, false}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(part, 3), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();
}
END_TEST

START_TEST(test_write_zeroes)
{
    uint8_t zero = 0;
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, 64, 3, 0), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(
        do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, 128, 64, VMM_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
        VMM_VIRTIO_BLK_S_OK);
    check_image(64 * 512, 3 * 512, &zero);
    check_image(67 * 512, 61 * 512, NULL);
    check_image(128 * 512, 64 * 512, &zero);
    check_image(192 * 512, IMG_SIZE - 192 * 512, NULL);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, 0x2), VMM_VIRTIO_BLK_S_UNSUPP);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, IMG_SECTORS, 1, 0),
                      VMM_VIRTIO_BLK_S_IOERR);
    struct vmm_virtio_blk_stats st = stats();
    ck_assert_uint_eq(st.write_zeroes, 2);
    ck_assert_uint_eq(st.unsupported, 1);
    good_read_works();
}
END_TEST

START_TEST(test_readonly_refusal)
{
    uint64_t f = device_features();
    ck_assert(f & VMM_VIRTIO_BLK_F_RO);
    ck_assert(!(f & VMM_VIRTIO_BLK_F_DISCARD));
    ck_assert(!(f & VMM_VIRTIO_BLK_F_WRITE_ZEROES));
    uint8_t junk[1024];
    memset(junk, 0x11, sizeof(junk));
    ck_assert_uint_eq(do_write(0, junk, sizeof(junk)), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_DISCARD, 0, 8, 0), VMM_VIRTIO_BLK_S_UNSUPP);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VMM_VIRTIO_BLK_S_UNSUPP);
    check_image(0, IMG_SIZE, NULL);
    /* Reads and flushes still work. */
    ck_assert_uint_eq(do_simple(VMM_VIRTIO_BLK_T_FLUSH), VMM_VIRTIO_BLK_S_OK);
    good_read_works();
    ck_assert_uint_eq(stats().io_errors, 1);
}
END_TEST

START_TEST(test_short_read_is_an_error)
{
    /* The image shrinks under the device: the capacity still says 2048
     * sectors, the last ones now end the file early. */
    ck_assert_int_eq(ftruncate(img_fd, IMG_SIZE - 1024), 0);
    uint32_t used;
    ck_assert_uint_eq(do_read(IMG_SECTORS - 4, 2048, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_le(used, 1024 + 1);
    ck_assert_uint_eq(do_read(IMG_SECTORS - 1, 512, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(used, 1);
    good_read_works();
}
END_TEST

START_TEST(test_hostile_requests)
{
    uint32_t used;
    struct vmm_virtio_blk_stats before = stats();
    /* A header shorter than 16 bytes. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 0);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg short_hdr[] = {{G_HDR, 8, false}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(short_hdr, 3), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();

    /* The header in a device-writable descriptor: nothing readable. The
     * status goes in the last writable byte. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 0);
    struct seg wr_hdr[] = {{G_HDR, 16, true}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    ck_assert_uint_eq(run_chain(wr_hdr, 3), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();

    /* No status byte at all: completed with length 0, nothing written. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_OUT, 0);
    memset(td_ptr(&drv, G_DATA), 0x99, 512);
    struct seg no_status[] = {{G_HDR, 16, false}, {G_DATA, 512, false}};
    ck_assert_uint_eq(run_chain(no_status, 2), 0);
    check_image(0, 512, NULL);
    good_read_works();

    /* Sectors past the capacity, straddling its end, overflowing. */
    ck_assert_uint_eq(do_read(IMG_SECTORS, 512, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(used, 1);
    ck_assert_uint_eq(do_read(IMG_SECTORS - 1, 1024, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_read(UINT64_MAX, 512, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_read(UINT64_MAX / 512 + 1, 512, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_read(1ull << 55, 512, &used), VMM_VIRTIO_BLK_S_IOERR);
    uint8_t junk[512] = {0};
    ck_assert_uint_eq(do_write(IMG_SECTORS, junk, 512), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_write(UINT64_MAX - 1, junk, 512), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();

    /* Data lengths that are not multiples of 512. */
    ck_assert_uint_eq(do_read(0, 1000, &used), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(used, 1);
    ck_assert_uint_eq(do_write(0, junk, 100), VMM_VIRTIO_BLK_S_IOERR);
    check_image(0, 1024, NULL);
    good_read_works();

    /* A read with readable data after the header; an unknown type. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 0);
    struct seg rd_data[] = {{G_HDR, 16 + 512, false}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(rd_data, 3), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    ck_assert_uint_eq(do_simple(99), VMM_VIRTIO_BLK_S_UNSUPP);
    ck_assert_uint_eq(do_simple(VMM_VIRTIO_BLK_T_OUT | 0x80000000u), VMM_VIRTIO_BLK_S_UNSUPP);
    good_read_works();

    /* Data outside guest memory: the queue rejects the chain (0 bytes). */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 0);
    struct seg outside[] = {
        {G_HDR, 16, false}, {TD_MEM_BASE + TD_MEM_SIZE - 256, 512, true}, {G_STATUS, 1, true}};
    ck_assert_uint_eq(run_chain(outside, 3), 0);
    good_read_works();

    /* A chain of one writable byte: no header, the byte gets IOERR. */
    struct seg one_byte[] = {{G_STATUS, 1, true}};
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    ck_assert_uint_eq(run_chain(one_byte, 1), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();

    struct vmm_virtio_blk_stats after = stats();
    ck_assert_uint_ge(after.bad_requests - before.bad_requests, 12);
    ck_assert_uint_eq(after.unsupported - before.unsupported, 2);
    check_image(0, IMG_SIZE, NULL);
}
END_TEST

/* A read of 200 one-sector pieces through an indirect table (202
 * descriptors with the header and the status byte); returns the used
 * length. */
static uint32_t read_in_200_pieces(void)
{
    const unsigned n = 200;
    uint64_t table = TD_INDIRECT;
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 0);
    td_desc_at(&drv, table, 0, G_HDR, 16, TD_F_NEXT, 1);
    for (unsigned i = 1; i <= n; i++)
        td_desc_at(&drv, table, i, G_MANY + 512ull * (i - 1), 512, TD_F_NEXT | TD_F_WRITE,
                   (uint16_t)(i + 1));
    td_desc_at(&drv, table, n + 1, G_STATUS, 1, TD_F_WRITE, 0);
    td_desc(&drv, 0, table, 16 * (n + 2), TD_F_INDIRECT, 0);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    td_avail(&drv, 0);
    kick();
    wait_used(1);
    uint32_t id, len;
    td_used_elem(&drv, drv.used_seen, &id, &len);
    drv.used_seen++;
    return len;
}

START_TEST(test_too_many_segments)
{
    /* On a queue of 256 the queue takes the chain, but it has more pieces
     * than the device takes (seg_max), so IOERR; then a good request. */
    ring_size = 256;
    driver_init(VMM_VIRTIO_F_INDIRECT_DESC);
    ck_assert_uint_eq(read_in_200_pieces(), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();
    /* On a queue of 16 the chain is longer than the queue: malformed, and
     * completed with nothing written, not even the status. */
    ring_size = QSIZE;
    driver_init(VMM_VIRTIO_F_INDIRECT_DESC);
    ck_assert_uint_eq(read_in_200_pieces(), 0);
    ck_assert_uint_eq(status(), 0xff);
    good_read_works();
}
END_TEST

/* Post a request of type with the given segments (the header at G_HDR),
 * kick, expect IOERR and a request that works after it. */
static void expect_ioerr(uint32_t type, const struct seg *s, unsigned n)
{
    put_hdr(G_HDR, type, 0);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    ck_assert_uint_eq(run_chain(s, n), 1);
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_IOERR);
    good_read_works();
}

START_TEST(test_request_carries_no_more_than_its_type)
{
    /* Each type carries what virtio 1.2 section 5.2.6 gives it, no more:
     * segments past that cost the device nothing but an IOERR. */
    struct vmm_virtio_blk_stats before = stats();
    struct seg flush_data[] = {{G_HDR, 16, false}, {G_DATA, 512, false}, {G_STATUS, 1, true}};
    expect_ioerr(VMM_VIRTIO_BLK_T_FLUSH, flush_data, 3);
    struct seg flush_room[] = {{G_HDR, 16, false}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    expect_ioerr(VMM_VIRTIO_BLK_T_FLUSH, flush_room, 3);
    /* Many one-byte writable pieces, as issue 14's flushes had. */
    struct seg flush_bytes[QSIZE] = {{G_HDR, 16, false}};
    for (unsigned i = 1; i < QSIZE; i++)
        flush_bytes[i] = (struct seg){G_DATA + i, 1, true};
    flush_bytes[QSIZE - 1].gpa = G_STATUS;
    expect_ioerr(VMM_VIRTIO_BLK_T_FLUSH, flush_bytes, QSIZE);
    struct seg id_long[] = {{G_HDR, 16, false}, {G_ID, 21, true}, {G_STATUS, 1, true}};
    expect_ioerr(VMM_VIRTIO_BLK_T_GET_ID, id_long, 3);
    memset(td_ptr(&drv, G_DWZ), 0, 16);
    struct seg dwz_room[] = {
        {G_HDR, 16, false}, {G_DWZ, 16, false}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    expect_ioerr(VMM_VIRTIO_BLK_T_DISCARD, dwz_room, 4);
    expect_ioerr(VMM_VIRTIO_BLK_T_WRITE_ZEROES, dwz_room, 4);
    struct seg out_room[] = {
        {G_HDR, 16, false}, {G_DATA, 512, false}, {G_DATA + 512, 512, true}, {G_STATUS, 1, true}};
    expect_ioerr(VMM_VIRTIO_BLK_T_OUT, out_room, 4);
    struct vmm_virtio_blk_stats after = stats();
    ck_assert_uint_eq(after.bad_requests - before.bad_requests, 7);
    ck_assert_uint_eq(after.flushes, before.flushes);
    ck_assert_uint_eq(after.discards + after.write_zeroes, before.discards + before.write_zeroes);
    ck_assert_uint_eq(after.writes, before.writes);
    check_image(0, IMG_SIZE, NULL);
    /* What each type does carry still works. */
    ck_assert_uint_eq(do_simple(VMM_VIRTIO_BLK_T_FLUSH), VMM_VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(test_issue_recipe_refused)
{
    /* Issue 14's recipe: queue size 256, every head pointing at one shared
     * 512 KiB indirect table of a FLUSH header and 32767 one-byte writable
     * descriptors. It pinned ~386 MiB of host heap per disk; each chain is
     * now refused unread (completed with nothing written) and the same
     * guest's next request is answered. */
    ring_size = 256;
    driver_init(VMM_VIRTIO_F_INDIRECT_DESC);
    const unsigned n = VMM_VIRTQ_MAX_SIZE;
    const uint64_t table = TD_MEM_BASE + TD_MEM_SIZE;
    extra = calloc(n, 16);
    ck_assert_ptr_nonnull(extra);
    ck_assert_int_ge(vmm_memory_add_external(drv.mem, table, 16ull * n, extra), 0);
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_FLUSH, 0);
    td_desc_host(extra, G_HDR, 16, TD_F_NEXT, 1);
    for (unsigned i = 1; i < n; i++)
        td_desc_host(extra + 16ull * i, G_DATA + i % 4096, 1,
                     TD_F_WRITE | (i < n - 1 ? TD_F_NEXT : 0), (uint16_t)(i + 1));
    for (unsigned h = 0; h < 256; h++) {
        td_desc(&drv, h, table, 16 * n, TD_F_INDIRECT, 0);
        td_avail(&drv, (uint16_t)h);
    }
    long rss = td_peak_rss_kib();
    kick();
    wait_used(256);
    ck_assert_int_lt(td_peak_rss_kib() - rss, 8 << 10);
    for (unsigned k = 0; k < 256; k++) {
        uint32_t id, len;
        td_used_elem(&drv, drv.used_seen + k, &id, &len);
        ck_assert_uint_eq(len, 0);
    }
    drv.used_seen = (uint16_t)(drv.used_seen + 256);
    ck_assert_uint_eq(stats().flushes, 0);
    struct vmm_virtq_stats qs = VMM_INIT(struct vmm_virtq_stats);
    vmm_virtq_get_stats(vmm_virtio_queue(vmm_virtio_mmio_transport(mmio), 0), &qs);
    ck_assert_uint_eq(qs.bad_chains, 256);
    ck_assert_uint_eq(qs.held_bytes, 0);
    good_read_works();
}
END_TEST

START_TEST(test_seg_max_fits_the_queue)
{
    /* A request's chain (header, data, status) may be no longer than its
     * queue, and Linux takes seg_max as given: a small queue offers less. */
    const unsigned sizes[] = {1, 2, 4, 16, 128, 256, 1024};
    const uint32_t want[] = {1, 1, 2, 14, 126, 126, 126};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct vmm_virtio_blk_config bc =
            VMM_INIT(struct vmm_virtio_blk_config, .path = img, .queue_size = sizes[i]);
        struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
        ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), 0);
        uint32_t seg_max = 0;
        dev.ops->config_read(dev.opaque, VMM_VIRTIO_BLK_CFG_SEG_MAX, &seg_max, 4);
        ck_assert_uint_eq(seg_max, want[i]);
        vmm_virtio_device_free(&dev);
    }
}
END_TEST

START_TEST(test_many_in_flight)
{
    /* Several reads made available together, one kick. */
    const unsigned n = QSIZE / 4;
    for (unsigned i = 0; i < n; i++) {
        uint64_t base = G_MANY + 0x1400ull * i;
        put_hdr(base, VMM_VIRTIO_BLK_T_IN, 10 + 8ull * i);
        *(uint8_t *)td_ptr(&drv, base + 0x1200) = 0xff;
        struct seg s[] = {{base, 16, false}, {base + 0x200, 4096, true}, {base + 0x1200, 1, true}};
        post_at(3 * i, s, 3);
    }
    kick();
    wait_used(n);
    bool seen_head[QSIZE] = {false};
    for (unsigned k = 0; k < n; k++) {
        uint32_t id, len;
        td_used_elem(&drv, drv.used_seen + k, &id, &len);
        ck_assert_uint_lt(id, QSIZE);
        ck_assert_uint_eq(id % 3, 0);
        ck_assert(!seen_head[id]);
        seen_head[id] = true;
        ck_assert_uint_eq(len, 4097);
    }
    drv.used_seen = (uint16_t)(drv.used_seen + n);
    for (unsigned i = 0; i < n; i++) {
        uint64_t base = G_MANY + 0x1400ull * i;
        ck_assert_uint_eq(*(uint8_t *)td_ptr(&drv, base + 0x1200), VMM_VIRTIO_BLK_S_OK);
        const uint8_t *d = td_ptr(&drv, base + 0x200);
        ck_assert_uint_eq(d[0], pattern((10 + 8ull * i) * 512));
        ck_assert_uint_eq(d[4095], pattern((10 + 8ull * i) * 512 + 4095));
    }
}
END_TEST

static struct vmm_virtq_stats queue_stats(void)
{
    struct vmm_virtq_stats st = VMM_INIT(struct vmm_virtq_stats);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(mmio);
    vmm_virtio_lock(t);
    ck_assert_int_eq(vmm_virtq_get_stats(vmm_virtio_queue(t, 0), &st), 0);
    vmm_virtio_unlock(t);
    return st;
}

static uint64_t chains_popped(void)
{
    return queue_stats().popped;
}

START_TEST(test_wake_budget)
{
    /* 128 reads made available at once, one kick: the first wake-up of the
     * loop starts VMM_VIRTIO_WAKE_CHAINS of them and re-arms the queue's
     * notification; later wake-ups start the rest with no kick from the
     * driver, and every read completes with the right data. */
    const unsigned n = 128;
    ring_size = 256;
    driver_init(0);
    for (unsigned i = 0; i < n; i++) {
        uint64_t hdr = G_HDR + 16ull * i, buf = G_MANY + 0x280ull * i;
        put_hdr(hdr, VMM_VIRTIO_BLK_T_IN, i);
        /* The data and the status byte in one writable descriptor. */
        struct seg s[] = {{hdr, 16, false}, {buf, 513, true}};
        post_at(2 * i, s, 2);
    }
    kick();
    ck_assert_int_ge(vmm_event_loop_run_once(loop, 0), 1);
    ck_assert_uint_eq(chains_popped(), VMM_VIRTIO_WAKE_CHAINS);
    wait_used(n);
    ck_assert_uint_eq(chains_popped(), n);
    for (unsigned k = 0; k < n; k++) {
        uint32_t id, len;
        td_used_elem(&drv, drv.used_seen + k, &id, &len);
        ck_assert_uint_eq(len, 513);
    }
    drv.used_seen = (uint16_t)(drv.used_seen + n);
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *b = td_ptr(&drv, G_MANY + 0x280ull * i);
        ck_assert_uint_eq(b[0], pattern(512ull * i));
        ck_assert_uint_eq(b[511], pattern(512ull * i + 511));
        ck_assert_uint_eq(b[512], VMM_VIRTIO_BLK_S_OK);
    }
    ring_size = QSIZE;
}
END_TEST

START_TEST(test_reset_cancels_in_flight)
{
    /* 48 writes of freshly written data and flushes in flight (the kernel's
     * workers take them), then the driver resets: the reset cancels what
     * has not started and waits for the rest, so when the status write
     * returns no request holds a chain any more, none was completed into
     * the ring, and none completes into the queue set up next. */
    const unsigned n = 48;
    ring_size = 256;
    driver_init(VMM_VIRTIO_BLK_F_FLUSH);
    for (unsigned i = 0; i < n; i++) {
        uint64_t hdr = G_HDR + 16ull * i, buf = G_MANY + 0x280ull * i;
        bool flush = i % 4 == 3;
        put_hdr(hdr, flush ? VMM_VIRTIO_BLK_T_FLUSH : VMM_VIRTIO_BLK_T_OUT, 8ull * i);
        memset(td_ptr(&drv, buf), (int)i, 513);
        *(uint8_t *)td_ptr(&drv, G_STATUS + i) = 0xff;
        struct seg w[] = {{hdr, 16, false}, {buf, 512, false}, {G_STATUS + i, 1, true}};
        struct seg f[] = {{hdr, 16, false}, {G_STATUS + i, 1, true}};
        if (flush)
            post_at(3 * i, f, 2);
        else
            post_at(3 * i, w, 3);
    }
    kick();
    ck_assert_int_ge(vmm_event_loop_run_once(loop, 0), 1);
    ck_assert_uint_eq(chains_popped(), n);
    uint16_t used_before = td_used_idx(&drv);
    w32(VMM_VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(queue_stats().held_bytes, 0);
    ck_assert_uint_eq(td_used_idx(&drv), used_before);
    /* Whatever had not completed before the reset never reports. */
    unsigned untouched = 0;
    for (unsigned i = 0; i < n; i++)
        untouched += *(uint8_t *)td_ptr(&drv, G_STATUS + i) == 0xff;
    ck_assert_uint_eq(untouched, n - used_before);
    ring_size = QSIZE;
    driver_init(0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_uint_eq(td_used_idx(&drv), 0);
    good_read_works();
}
END_TEST

START_TEST(test_reset_with_requests_in_flight)
{
    /* A flush of freshly dirtied pages goes to the kernel's workers and
     * takes a while (reads served from the page cache would finish inside
     * the notification): reset while it is in flight. */
    static uint8_t buf[IMG_SIZE];
    ck_assert_int_eq(pread(img_fd, buf, IMG_SIZE, 0), (ssize_t)IMG_SIZE);
    ck_assert_int_eq(pwrite(img_fd, buf, IMG_SIZE, 0), (ssize_t)IMG_SIZE);
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_FLUSH, 0);
    *(uint8_t *)td_ptr(&drv, G_STATUS) = 0xff;
    struct seg s[] = {{G_HDR, 16, false}, {G_STATUS, 1, true}};
    post_at(0, s, 2);
    kick();
    /* Let the notification through: the flush starts. */
    ck_assert_int_ge(vmm_event_loop_run_once(loop, 100), 0);
    ck_assert_uint_eq(stats().flushes, 1);
    if (td_used_idx(&drv) == 0) {
        /* Still in flight (the usual case): the reset waits for it and
         * drops it; neither the status byte nor the used ring changes. */
        w32(VMM_VIRTIO_MMIO_STATUS, 0);
        ck_assert_uint_eq(r32(VMM_VIRTIO_MMIO_STATUS), 0);
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 20), 0);
        ck_assert_uint_eq(td_used_idx(&drv), 0);
        ck_assert_uint_eq(*(uint8_t *)td_ptr(&drv, G_STATUS), 0xff);
    } else {
        printf("note: the flush finished before the reset; in-flight reset not exercised\n");
    }
    /* Set up again: it works. */
    driver_init(0);
    good_read_works();
}
END_TEST

START_TEST(test_synchronous_without_loop)
{
    /* No event loop: the request is done when the notify write returns. */
    put_hdr(G_HDR, VMM_VIRTIO_BLK_T_IN, 9);
    struct seg s[] = {{G_HDR, 16, false}, {G_DATA, 512, true}, {G_STATUS, 1, true}};
    post_at(0, s, 3);
    kick();
    ck_assert_uint_eq(td_used_idx(&drv), 1);
    drv.used_seen++;
    ck_assert_uint_eq(status(), VMM_VIRTIO_BLK_S_OK);
    ck_assert_uint_eq(*(uint8_t *)td_ptr(&drv, G_DATA), pattern(9 * 512));
    uint8_t junk[512];
    memset(junk, 0x42, sizeof(junk));
    ck_assert_uint_eq(do_write(20, junk, 512), VMM_VIRTIO_BLK_S_OK);
    check_image(20 * 512, 512, junk);
    ck_assert_uint_eq(do_dwz(VMM_VIRTIO_BLK_T_WRITE_ZEROES, 20, 1, 0), VMM_VIRTIO_BLK_S_OK);
    uint8_t zero = 0;
    check_image(20 * 512, 512, &zero);
}
END_TEST

START_TEST(test_create_errors)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_blk_create(NULL, &dev), -EINVAL);
    struct vmm_virtio_blk_config bc =
        VMM_INIT(struct vmm_virtio_blk_config, .path = "/nonexistent/disk.img");
    ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), -ENOENT);
    bc.path = img;
    bc.queue_size = 100;
    ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), -EINVAL);
    bc.queue_size = 0;
    bc.serial = "0123456789abcdefghijk"; /* 21 bytes */
    ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), -EINVAL);
    bc.serial = NULL;
    /* An image under one sector has no capacity. */
    ck_assert_int_eq(ftruncate(img_fd, 100), 0);
    ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), -EINVAL);
    /* A description never handed to a transport is freed by the caller. */
    ck_assert_int_eq(ftruncate(img_fd, IMG_SIZE + 100), 0);
    ck_assert_int_eq(vmm_virtio_blk_create(&bc, &dev), 0);
    vmm_virtio_device_free(&dev);
    /* Stats of something that is not a disk. */
    struct vmm_virtio_blk_stats st = VMM_INIT(struct vmm_virtio_blk_stats);
    ck_assert_int_eq(vmm_virtio_blk_get_stats(NULL, &st), -EINVAL);
}
END_TEST

static Suite *blk_suite(void)
{
    Suite *s = suite_create("virtio-blk");
    /* Real file I/O through io_uring, waited for by polling. */
    TCase *tc = tcase_create("requests");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_features_and_config);
    tcase_add_test(tc, test_read);
    tcase_add_test(tc, test_write_scattered_and_flush);
    tcase_add_test(tc, test_header_and_data_any_layout);
    tcase_add_test(tc, test_get_id);
    tcase_add_test(tc, test_discard);
    tcase_add_test(tc, test_write_zeroes);
    tcase_add_test(tc, test_short_read_is_an_error);
    tcase_add_test(tc, test_hostile_requests);
    tcase_add_test(tc, test_too_many_segments);
    tcase_add_test(tc, test_request_carries_no_more_than_its_type);
    tcase_add_test(tc, test_issue_recipe_refused);
    tcase_add_test(tc, test_seg_max_fits_the_queue);
    tcase_add_test(tc, test_many_in_flight);
    tcase_add_test(tc, test_wake_budget);
    tcase_add_test(tc, test_reset_with_requests_in_flight);
    tcase_add_test(tc, test_reset_cancels_in_flight);
    tcase_add_test(tc, test_create_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("readonly");
    tcase_add_checked_fixture(tc, setup_ro, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_readonly_refusal);
    suite_add_tcase(s, tc);
    tc = tcase_create("no-loop");
    tcase_add_checked_fixture(tc, setup_noloop, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_synchronous_without_loop);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(blk_suite());
}
