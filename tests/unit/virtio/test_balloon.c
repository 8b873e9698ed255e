/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-balloon on a standalone virtio-mmio transport, the test playing the
 * driver (vq_driver.h). Guest memory has an anonymous region and a memfd
 * region besides the rings' own: inflated pages must read back as zeros and
 * leave the host (not resident for the anonymous one, a hole in the memfd),
 * pages around them keep their bytes, and page numbers outside guest memory
 * are skipped. Also the statistics queue, free page reporting, the target
 * and the queue numbering that follows the negotiated features.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vmm/virtio.h>
#include <vmm/virtio_balloon.h>
#include <vmm/virtio_mmio.h>

#include "check_compat.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/mmio_regs.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE     16
#define ANON_GPA  0x100000ull
#define MEMFD_GPA 0x200000ull
#define REGION    0x100000ull /* 1 MiB each */
#define PAGE      4096ull

#define ACK     VMM_VIRTIO_STATUS_ACKNOWLEDGE
#define DRV     VMM_VIRTIO_STATUS_DRIVER
#define FEAT_OK VMM_VIRTIO_STATUS_FEATURES_OK
#define DRV_OK  VMM_VIRTIO_STATUS_DRIVER_OK

static struct td d;       /* inflateq, and the memory */
static struct td ring[3]; /* deflateq, then the third and fourth queues */
static struct vmm_virtio_mmio *m;
static const struct vmm_bus_ops *ops;
static unsigned irqs;
static struct vmm_region_info anon, memfd;

static void on_irq(void *opaque)
{
    (void)opaque;
    irqs++;
}

static uint32_t rd(uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    ops->read(m, off, (uint8_t *)&v, 4);
    return v;
}

static void wr(uint64_t off, uint32_t v)
{
    ops->write(m, off, (const uint8_t *)&v, 4);
}

static void setup_queue(unsigned sel, const struct td *r)
{
    wr(VMM_VIRTIO_MMIO_QUEUE_SEL, sel);
    wr(VMM_VIRTIO_MMIO_QUEUE_NUM, r->size);
    wr(VMM_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)r->desc);
    wr(VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)r->avail);
    wr(VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)r->used);
    wr(VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_READY, 1);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_QUEUE_READY), 1);
}

static void setup(void)
{
    irqs = 0;
    td_init(&d, QSIZE);
    for (unsigned i = 0; i < 3; i++)
        td_other_ring(&ring[i], &d, QSIZE, 0x15000 + 0x400ull * i, 0x15100 + 0x400ull * i,
                      0x15200 + 0x400ull * i);
    struct vmm_region_config rc =
        VMM_INIT(struct vmm_region_config, .gpa = ANON_GPA, .len = REGION);
    int a = vmm_memory_add_region(d.mem, &rc);
    ck_assert_int_ge(a, 0);
    rc = VMM_INIT(struct vmm_region_config, .gpa = MEMFD_GPA, .len = REGION,
                  .backing = VMM_MEMORY_MEMFD);
    int f = vmm_memory_add_region(d.mem, &rc);
    ck_assert_int_ge(f, 0);
    anon = VMM_INIT(struct vmm_region_info);
    memfd = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(d.mem, (unsigned)a, &anon), 0);
    ck_assert_int_eq(vmm_memory_region_info(d.mem, (unsigned)f, &memfd), 0);
    ck_assert_int_ge(memfd.fd, 0);
    ops = vmm_virtio_mmio_bus_ops();
}

static void teardown(void)
{
    vmm_virtio_mmio_destroy(m);
    m = NULL;
    td_fini(&d);
}

/* Create the balloon and bring it up with features, queues [0, nq). */
static void balloon_up(const struct vmm_virtio_balloon_config *cfg, uint64_t features, unsigned nq)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_balloon_create(cfg, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .mem = d.mem, .interrupt = on_irq);
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m), 0);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_DEVICE_ID), VMM_VIRTIO_ID_BALLOON);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV);
    features |= VMM_VIRTIO_F_VERSION_1;
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VMM_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_STATUS), ACK | DRV | FEAT_OK);
    setup_queue(0, &d);
    for (unsigned i = 1; i < nq; i++)
        setup_queue(i, &ring[i - 1]);
    wr(VMM_VIRTIO_MMIO_STATUS, ACK | DRV | FEAT_OK | DRV_OK);
}

static struct vmm_virtio_balloon_stats stats(void)
{
    struct vmm_virtio_balloon_stats s = VMM_INIT(struct vmm_virtio_balloon_stats);
    ck_assert_int_eq(vmm_virtio_balloon_get_stats(vmm_virtio_mmio_transport(m), &s), 0);
    return s;
}

/* Fill guest page gpa with a byte. */
static void fill_page(uint64_t gpa, uint8_t v)
{
    uint8_t buf[PAGE];
    memset(buf, v, sizeof(buf));
    ck_assert_int_eq(vmm_memory_write(d.mem, gpa, buf, sizeof(buf)), 0);
}

/* Whether guest page gpa holds only byte v. */
static bool page_is(uint64_t gpa, uint8_t v)
{
    uint8_t buf[PAGE];
    ck_assert_int_eq(vmm_memory_read(d.mem, gpa, buf, sizeof(buf)), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        if (buf[i] != v)
            return false;
    return true;
}

static bool resident(const void *host)
{
    unsigned char v = 0;
    ck_assert_int_eq(mincore((void *)host, PAGE, &v), 0);
    return v & 1;
}

static long memfd_blocks(void)
{
    struct stat st;
    ck_assert_int_eq(fstat(memfd.fd, &st), 0);
    return (long)st.st_blocks;
}

/* Send page numbers on ring r (queue index qi) in one readable buffer. */
static void send_pfns(struct td *r, unsigned qi, uint16_t slot, const uint32_t *pfn, unsigned n)
{
    uint64_t at = TD_BUF + 0x1000ull * slot;
    memcpy(td_ptr(r, at), pfn, 4ull * n);
    td_desc(r, slot, at, 4 * n, 0, 0);
    td_avail(r, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

START_TEST(test_balloon_inflate_returns_pages)
{
    balloon_up(NULL, 0, 2);
    for (uint64_t p = 0; p < 16; p++) {
        fill_page(ANON_GPA + p * PAGE, 0x5a);
        fill_page(MEMFD_GPA + p * PAGE, 0xa5);
    }
    ck_assert(resident((uint8_t *)anon.host + 4 * PAGE));
    long blocks = memfd_blocks();
    /* Anonymous pages 4-7 (out of order, one twice), memfd pages 2-9, one
     * page number past guest memory. */
    uint32_t pfn[] = {0x105, 0x104, 0x107, 0x106, 0x105, 0x202, 0x203,
                      0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0xfffff};
    send_pfns(&d, 0, 0, pfn, sizeof(pfn) / sizeof(pfn[0]));
    ck_assert_uint_eq(td_used_idx(&d), 1);
    /* The memfd has a hole where its pages were (before reading them back,
     * which allocates them again). */
    ck_assert_int_le(memfd_blocks(), blocks - (long)(8 * PAGE / 512));
    for (uint64_t p = 0; p < 16; p++) {
        bool in_anon = p >= 4 && p <= 7, in_memfd = p >= 2 && p <= 9;
        ck_assert_msg(page_is(ANON_GPA + p * PAGE, in_anon ? 0 : 0x5a), "anon page %lu",
                      (unsigned long)p);
        ck_assert_msg(page_is(MEMFD_GPA + p * PAGE, in_memfd ? 0 : 0xa5), "memfd page %lu",
                      (unsigned long)p);
    }
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.inflated_pages, 14);
    ck_assert_uint_eq(s.bad_pages, 1);
    ck_assert_uint_eq(s.returned_bytes, 12 * PAGE);

    /* Deflating is counted; the pages are the guest's again (and zero). */
    uint32_t back[] = {0x104, 0x202};
    send_pfns(&ring[0], 1, 0, back, 2);
    ck_assert_uint_eq(td_used_idx(&ring[0]), 1);
    ck_assert_uint_eq(stats().deflated_pages, 2);
    fill_page(ANON_GPA + 4 * PAGE, 0x11);
    ck_assert(page_is(ANON_GPA + 4 * PAGE, 0x11));
}
END_TEST

START_TEST(test_balloon_anonymous_pages_leave_the_host)
{
    balloon_up(NULL, 0, 2);
    for (uint64_t p = 0; p < 8; p++)
        fill_page(ANON_GPA + p * PAGE, 0x77);
    for (uint64_t p = 0; p < 8; p++)
        ck_assert(resident((uint8_t *)anon.host + p * PAGE));
    uint32_t pfn[] = {0x100, 0x101, 0x102, 0x103};
    send_pfns(&d, 0, 0, pfn, 4);
    for (uint64_t p = 0; p < 8; p++)
        ck_assert_msg(resident((uint8_t *)anon.host + p * PAGE) == (p >= 4), "page %lu",
                      (unsigned long)p);
}
END_TEST

/* A full batch of page numbers, in reverse order, with sysinfo(2) killing
 * the process (as vmm-run's seccomp filters do: glibc's qsort calls it to
 * size its buffer for 256 entries or more). Check forks each test. */
START_TEST(test_balloon_full_batch_without_sysinfo)
{
    balloon_up(NULL, 0, 2);
    for (uint64_t p = 0; p < 256; p++)
        fill_page(ANON_GPA + p * PAGE, 0x33);
    uint32_t pfn[256];
    for (unsigned i = 0; i < 256; i++)
        pfn[i] = 0x1ff - i;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sysinfo, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    send_pfns(&d, 0, 0, pfn, 256);
    ck_assert_uint_eq(td_used_idx(&d), 1);
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.inflated_pages, 256);
    ck_assert_uint_eq(s.returned_bytes, 256 * PAGE);
    for (uint64_t p = 0; p < 256; p += 51)
        ck_assert_msg(!resident((uint8_t *)anon.host + p * PAGE), "page %lu", (unsigned long)p);
}
END_TEST

START_TEST(test_balloon_hostile_chains)
{
    balloon_up(NULL, 0, 2);
    fill_page(ANON_GPA, 0x33);
    fill_page(ANON_GPA + PAGE, 0x33);
    /* Six bytes: one whole page number, the rest ignored. A writable
     * descriptor after it is not read. */
    uint32_t pfn[2] = {0x100, 0x101};
    memcpy(td_ptr(&d, TD_BUF), pfn, 8);
    td_desc(&d, 0, TD_BUF, 6, TD_F_NEXT, 1);
    td_desc(&d, 1, TD_BUF + 0x100, 64, TD_F_WRITE, 0);
    td_avail(&d, 0);
    /* A page number at the very top of the 32-bit range, and 0 (below the
     * memory of this map). */
    uint32_t far[] = {0xffffffffu, 0};
    memcpy(td_ptr(&d, TD_BUF + 0x200), far, 8);
    td_desc(&d, 2, TD_BUF + 0x200, 8, 0, 0);
    td_avail(&d, 2);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    ck_assert_uint_eq(td_used_idx(&d), 2);
    ck_assert(page_is(ANON_GPA, 0));
    ck_assert(page_is(ANON_GPA + PAGE, 0x33));
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.inflated_pages, 3);
    ck_assert_uint_eq(s.bad_pages, 2);
    /* A queue the features did not create is ignored. */
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert_uint_eq(stats().inflated_pages, 3);
}
END_TEST

START_TEST(test_balloon_target_and_actual)
{
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .target_bytes = 8 * PAGE + 100);
    balloon_up(&c, 0, 2);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG), 8);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    unsigned before = irqs;
    ck_assert_int_eq(vmm_virtio_balloon_set_target(t, 64 << 20), 0);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG), 16384);
    ck_assert_uint_gt(irqs, before);
    ck_assert(rd(VMM_VIRTIO_MMIO_INTERRUPT_STATUS) & VMM_VIRTIO_INT_CONFIG);
    /* The driver writes actual; num_pages is the device's. */
    wr(VMM_VIRTIO_MMIO_CONFIG + 4, 1234);
    wr(VMM_VIRTIO_MMIO_CONFIG, 1);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG), 16384);
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.actual_pages, 1234);
    ck_assert_uint_eq(s.target_pages, 16384);
    ck_assert_int_eq(vmm_virtio_balloon_set_target(t, (uint64_t)1 << 45), -EINVAL);
    ck_assert_int_eq(vmm_virtio_balloon_set_target(NULL, 0), -EINVAL);
    c.target_bytes = (uint64_t)1 << 44;
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_balloon_create(&c, &dev), -EINVAL);
}
END_TEST

/* Write one statistics entry at buffer offset i. */
static void stat_entry(struct td *r, uint64_t at, unsigned i, uint16_t tag, uint64_t val)
{
    memcpy(td_ptr(r, at + 10ull * i), &tag, 2);
    memcpy(td_ptr(r, at + 10ull * i + 2), &val, 8);
}

START_TEST(test_balloon_stats_queue)
{
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .stats = true, .reporting = true);
    balloon_up(&c, VMM_VIRTIO_BALLOON_F_STATS_VQ, 3);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    ck_assert_int_eq(vmm_virtio_balloon_request_stats(t), -EAGAIN);
    struct td *sq = &ring[1]; /* queue 2: statsq */
    uint64_t at = TD_BUF + 0x3000;
    stat_entry(sq, at, 0, VMM_VIRTIO_BALLOON_S_MEMFREE, 123456789);
    stat_entry(sq, at, 1, 99, 1); /* unknown: skipped */
    stat_entry(sq, at, 2, VMM_VIRTIO_BALLOON_S_MEMTOT, 987654321);
    td_desc(sq, 0, at, 30, 0, 0);
    td_avail(sq, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    /* The device keeps the buffer until it wants fresh values. */
    ck_assert_uint_eq(td_used_idx(sq), 0);
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.stats_updates, 1);
    ck_assert_uint_eq(s.guest[VMM_VIRTIO_BALLOON_S_MEMFREE], 123456789);
    ck_assert_uint_eq(s.guest[VMM_VIRTIO_BALLOON_S_MEMTOT], 987654321);
    ck_assert_uint_eq(s.guest_valid,
                      (1u << VMM_VIRTIO_BALLOON_S_MEMFREE) | (1u << VMM_VIRTIO_BALLOON_S_MEMTOT));
    ck_assert_int_eq(vmm_virtio_balloon_request_stats(t), 0);
    ck_assert_uint_eq(td_used_idx(sq), 1);
    ck_assert_int_eq(vmm_virtio_balloon_request_stats(t), -EAGAIN);
    /* Without REPORTING negotiated there is no fourth queue. */
    wr(VMM_VIRTIO_MMIO_QUEUE_SEL, 3);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 3);
    ck_assert_uint_eq(stats().reported_bytes, 0);
}
END_TEST

START_TEST(test_balloon_free_page_reporting)
{
    /* Statistics offered but not negotiated: reporting_vq is queue 2. */
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .stats = true, .reporting = true);
    balloon_up(&c, VMM_VIRTIO_BALLOON_F_REPORTING, 3);
    for (uint64_t p = 0; p < 32; p++)
        fill_page(MEMFD_GPA + p * PAGE, 0x42);
    long blocks = memfd_blocks();
    struct td *rq = &ring[1];
    /* A report with a range past guest memory: the queue completes the
     * chain unused, and nothing is freed. */
    td_desc(rq, 0, MEMFD_GPA + 8 * PAGE, 16 * PAGE, TD_F_WRITE | TD_F_NEXT, 1);
    td_desc(rq, 1, 0x7ff00000ull, 16 * PAGE, TD_F_WRITE, 0);
    td_avail(rq, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert_uint_eq(td_used_idx(rq), 1);
    ck_assert(page_is(MEMFD_GPA + 8 * PAGE, 0x42));
    ck_assert_uint_eq(stats().reported_bytes, 0);
    /* Two free blocks (16 pages and 4). */
    td_desc(rq, 3, MEMFD_GPA + 8 * PAGE, 16 * PAGE, TD_F_WRITE | TD_F_NEXT, 4);
    td_desc(rq, 4, MEMFD_GPA + 28 * PAGE, 4 * PAGE, TD_F_WRITE, 0);
    td_avail(rq, 3);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert_uint_eq(td_used_idx(rq), 2);
    ck_assert_int_le(memfd_blocks(), blocks - (long)(20 * PAGE / 512));
    for (uint64_t p = 0; p < 32; p++) {
        bool freed = (p >= 8 && p < 24) || p >= 28;
        ck_assert_msg(page_is(MEMFD_GPA + p * PAGE, freed ? 0 : 0x42), "page %lu",
                      (unsigned long)p);
    }
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.reported_bytes, 20 * PAGE);
    ck_assert_uint_eq(s.returned_bytes, 20 * PAGE);
}
END_TEST

/* Put a hint command buffer (readable, len bytes holding id) on ring r,
 * queue qi, at slot. */
static void send_cmd(struct td *r, unsigned qi, uint16_t slot, uint32_t id, uint32_t len)
{
    uint64_t at = TD_BUF + 0x1000ull * slot;
    memcpy(td_ptr(r, at), &id, 4);
    td_desc(r, slot, at, len, 0, 0);
    td_avail(r, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

/* Hint [gpa, gpa + len) free on ring r, queue qi, at slot. */
static void send_hint(struct td *r, unsigned qi, uint16_t slot, uint64_t gpa, uint32_t len)
{
    td_desc(r, slot, gpa, len, TD_F_WRITE, 0);
    td_avail(r, slot);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

START_TEST(test_balloon_free_page_hinting)
{
    /* Statistics offered, not negotiated: free_page_vq is queue 2. */
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .stats = true, .hinting = true);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_balloon_create(&c, &dev), 0);
    ck_assert(dev.features & VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT);
    ck_assert(dev.features & VMM_VIRTIO_BALLOON_F_PAGE_POISON);
    ck_assert_uint_eq(dev.config_size, 16);
    vmm_virtio_device_free(&dev);
    balloon_up(&c, VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT, 3);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    struct td *hq = &ring[1];
    for (uint64_t p = 0; p < 32; p++)
        fill_page(MEMFD_GPA + p * PAGE, 0x42);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 8), 0);
    /* Hints with no command under way are ignored. */
    send_hint(hq, 2, 0, MEMFD_GPA, 4 * PAGE);
    ck_assert_uint_eq(td_used_idx(hq), 1);
    ck_assert(page_is(MEMFD_GPA, 0x42));
    ck_assert_uint_eq(stats().bad_hints, 1);
    /* The host starts a command: a new ID, a config interrupt. */
    unsigned before = irqs;
    ck_assert_int_eq(vmm_virtio_balloon_hint(t, true), 2);
    ck_assert_uint_gt(irqs, before);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 8), 2);
    /* The driver cannot write the command ID. */
    wr(VMM_VIRTIO_MMIO_CONFIG + 8, 7);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 8), 2);
    /* A wrong ID, a short command: hints after them are ignored. */
    send_cmd(hq, 2, 1, 7, 4);
    send_hint(hq, 2, 2, MEMFD_GPA, 4 * PAGE);
    send_cmd(hq, 2, 3, 2, 3);
    send_hint(hq, 2, 4, MEMFD_GPA, 4 * PAGE);
    ck_assert(page_is(MEMFD_GPA, 0x42));
    ck_assert_uint_eq(stats().bad_hints, 5);
    ck_assert_uint_eq(stats().hinted_bytes, 0);
    /* The right ID: its hints go back; a range past guest memory and a
     * huge one are completed unused. */
    send_cmd(hq, 2, 5, 2, 4);
    send_hint(hq, 2, 6, MEMFD_GPA + 8 * PAGE, 8 * PAGE);
    send_hint(hq, 2, 7, 0x7ff00000ull, 16 * PAGE);
    send_hint(hq, 2, 8, 0xfffffffffffff000ull, 0xffffffffu);
    ck_assert_uint_eq(td_used_idx(hq), 9);
    for (uint64_t p = 0; p < 32; p++)
        ck_assert_msg(page_is(MEMFD_GPA + p * PAGE, p >= 8 && p < 16 ? 0 : 0x42), "page %lu",
                      (unsigned long)p);
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.returned_bytes, 8 * PAGE);
    ck_assert_uint_eq(s.hinted_bytes, 8 * PAGE);
    ck_assert_uint_eq(s.hint_cmd_id, 2);
    /* STOP from the driver ends the command: later hints are ignored. */
    send_cmd(hq, 2, 9, 0, 4);
    send_hint(hq, 2, 10, MEMFD_GPA + 20 * PAGE, 4 * PAGE);
    ck_assert(page_is(MEMFD_GPA + 20 * PAGE, 0x42));
    /* DONE, then a new command with a new ID; the old ID no longer works. */
    ck_assert_int_eq(vmm_virtio_balloon_hint(t, false), 1);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 8), 1);
    send_cmd(hq, 2, 11, 1, 4);
    send_hint(hq, 2, 12, MEMFD_GPA + 20 * PAGE, 4 * PAGE);
    ck_assert_int_eq(vmm_virtio_balloon_hint(t, true), 3);
    send_cmd(hq, 2, 13, 2, 4);
    send_hint(hq, 2, 14, MEMFD_GPA + 20 * PAGE, 4 * PAGE);
    ck_assert(page_is(MEMFD_GPA + 20 * PAGE, 0x42));
    send_cmd(hq, 2, 15, 3, 4);
    send_hint(hq, 2, 0, MEMFD_GPA + 20 * PAGE, 4 * PAGE);
    ck_assert(page_is(MEMFD_GPA + 20 * PAGE, 0));
    s = stats();
    ck_assert_uint_eq(s.hinted_bytes, 12 * PAGE);
    ck_assert_uint_eq(s.returned_bytes, 12 * PAGE);
    /* A reset ends the command. */
    wr(VMM_VIRTIO_MMIO_STATUS, 0);
    ck_assert_uint_eq(stats().hint_cmd_id, 0);
    ck_assert_int_eq(vmm_virtio_balloon_hint(NULL, true), -EINVAL);
}
END_TEST

START_TEST(test_balloon_hinting_not_offered)
{
    balloon_up(NULL, 0, 2);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    ck_assert_int_eq(vmm_virtio_balloon_hint(t, true), -ENOTSUP);
    /* Config space is num_pages and actual only: past them reads zero,
     * and a poison written there is not kept. */
    wr(VMM_VIRTIO_MMIO_CONFIG + 12, 0xaaaaaaaa);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 12), 0);
    ck_assert_uint_eq(stats().poison_val, 0);
}
END_TEST

/* A driver that poisons free pages gets its reported pages kept (they must
 * read back as the poison); inflated pages still go back. Without the
 * feature negotiated the value is ignored. */
START_TEST(test_balloon_page_poison)
{
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .reporting = true);
    balloon_up(&c, VMM_VIRTIO_BALLOON_F_REPORTING | VMM_VIRTIO_BALLOON_F_PAGE_POISON, 3);
    for (uint64_t p = 0; p < 32; p++)
        fill_page(MEMFD_GPA + p * PAGE, 0xaa);
    wr(VMM_VIRTIO_MMIO_CONFIG + 12, 0xaaaaaaaa);
    ck_assert_uint_eq(rd(VMM_VIRTIO_MMIO_CONFIG + 12), 0xaaaaaaaa);
    struct td *rq = &ring[1];
    td_desc(rq, 0, MEMFD_GPA, 16 * PAGE, TD_F_WRITE, 0);
    td_avail(rq, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert_uint_eq(td_used_idx(rq), 1);
    for (uint64_t p = 0; p < 16; p++)
        ck_assert(page_is(MEMFD_GPA + p * PAGE, 0xaa));
    /* Out of guest memory: completed unused, not kept. */
    td_desc(rq, 1, 0x7ff00000ull, 16 * PAGE, TD_F_WRITE, 0);
    td_avail(rq, 1);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    struct vmm_virtio_balloon_stats s = stats();
    ck_assert_uint_eq(s.kept_bytes, 16 * PAGE);
    ck_assert_uint_eq(s.returned_bytes, 0);
    ck_assert_uint_eq(td_used_idx(rq), 2);
    ck_assert_uint_eq(s.poison_val, 0xaaaaaaaa);
    uint32_t pfn = (uint32_t)((MEMFD_GPA >> 12) + 20);
    send_pfns(&d, 0, 0, &pfn, 1);
    ck_assert(page_is(MEMFD_GPA + 20 * PAGE, 0));
    /* Zero poison: reports go back again. */
    wr(VMM_VIRTIO_MMIO_CONFIG + 12, 0);
    td_desc(rq, 2, MEMFD_GPA, 4 * PAGE, TD_F_WRITE, 0);
    td_avail(rq, 2);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert(page_is(MEMFD_GPA, 0));
}
END_TEST

START_TEST(test_balloon_poison_not_negotiated)
{
    struct vmm_virtio_balloon_config c =
        VMM_INIT(struct vmm_virtio_balloon_config, .reporting = true);
    balloon_up(&c, VMM_VIRTIO_BALLOON_F_REPORTING, 3);
    fill_page(MEMFD_GPA, 0xaa);
    wr(VMM_VIRTIO_MMIO_CONFIG + 12, 0xaaaaaaaa);
    struct td *rq = &ring[1];
    td_desc(rq, 0, MEMFD_GPA, PAGE, TD_F_WRITE, 0);
    td_avail(rq, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert(page_is(MEMFD_GPA, 0));
    ck_assert_uint_eq(stats().kept_bytes, 0);
}
END_TEST

/* Restore the saved device state buf[0..len) into a fresh balloon made from
 * c; its counters in *out. Returns what restore said. */
static int restore_into(const struct vmm_virtio_balloon_config *c, const uint8_t *buf, size_t len,
                        struct vmm_virtio_balloon_stats *out)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_balloon_create(c, &dev), 0);
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .mem = d.mem, .interrupt = on_irq);
    struct vmm_virtio_mmio *m2;
    ck_assert_int_eq(vmm_virtio_mmio_create(&mc, &dev, &m2), 0);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m2);
    ck_assert_ptr_nonnull(t->snap);
    struct vmm_snap_reader r = {.p = buf, .left = len};
    vmm_virtio_lock(t);
    int rc = t->snap->restore(t->dev.opaque, &r);
    if (rc == 0)
        rc = snap_done(&r);
    vmm_virtio_unlock(t);
    *out = (struct vmm_virtio_balloon_stats)VMM_INIT(struct vmm_virtio_balloon_stats);
    ck_assert_int_eq(vmm_virtio_balloon_get_stats(t, out), 0);
    vmm_virtio_mmio_destroy(m2);
    return rc;
}

/* Snapshots: the held statistics buffer goes back to the driver at
 * quiesce, and target, actual, poison, the hinting command and the counters
 * come back in a fresh device; a malformed section is refused. */
START_TEST(test_balloon_snapshot_round_trip)
{
    struct vmm_virtio_balloon_config c = VMM_INIT(struct vmm_virtio_balloon_config, .stats = true,
                                                  .hinting = true, .target_bytes = PAGE);
    balloon_up(&c,
               VMM_VIRTIO_BALLOON_F_STATS_VQ | VMM_VIRTIO_BALLOON_F_FREE_PAGE_HINT |
                   VMM_VIRTIO_BALLOON_F_PAGE_POISON,
               4);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(m);
    ck_assert_int_eq(vmm_virtio_balloon_set_target(t, 64 << 20), 0);
    wr(VMM_VIRTIO_MMIO_CONFIG + 4, 1234);
    wr(VMM_VIRTIO_MMIO_CONFIG + 12, 0xaa);
    ck_assert_int_eq(vmm_virtio_balloon_hint(t, true), 2);
    send_cmd(&ring[2], 3, 0, 2, 4);
    struct td *sq = &ring[1];
    stat_entry(sq, TD_BUF + 0x3000, 0, VMM_VIRTIO_BALLOON_S_MEMFREE, 4242);
    td_desc(sq, 0, TD_BUF + 0x3000, 10, 0, 0);
    td_avail(sq, 0);
    wr(VMM_VIRTIO_MMIO_QUEUE_NOTIFY, 2);
    ck_assert_uint_eq(td_used_idx(sq), 0);

    struct vmm_snap_writer w;
    snap_writer_init(&w);
    vmm_virtio_lock(t);
    ck_assert_int_eq(t->snap->quiesce(t->dev.opaque), 0);
    ck_assert_int_eq(t->snap->save(t->dev.opaque, &w), 0);
    vmm_virtio_unlock(t);
    ck_assert_int_eq(w.err, 0);
    /* The driver has its buffer back, to refill. */
    ck_assert_uint_eq(td_used_idx(sq), 1);
    ck_assert_int_eq(vmm_virtio_balloon_request_stats(t), -EAGAIN);

    struct vmm_virtio_balloon_stats want = stats(), got;
    ck_assert_int_eq(restore_into(&c, w.buf, w.len, &got), 0);
    ck_assert_uint_eq(got.target_pages, 16384);
    ck_assert_uint_eq(got.actual_pages, 1234);
    ck_assert_uint_eq(got.poison_val, 0xaa);
    ck_assert_uint_eq(got.hint_cmd_id, 2);
    ck_assert_uint_eq(got.guest[VMM_VIRTIO_BALLOON_S_MEMFREE], 4242);
    ck_assert_mem_eq(&got, &want, sizeof(got));

    /* Truncated, and a corrupt hinting flag: -EBADMSG. A balloon built
     * without hinting (another config space) is not the saved one. */
    ck_assert_int_eq(restore_into(&c, w.buf, w.len - 4, &got), -EBADMSG);
    ck_assert_int_eq(restore_into(&c, w.buf, 10, &got), -EBADMSG);
    uint8_t *bad = malloc(w.len);
    ck_assert_ptr_nonnull(bad);
    memcpy(bad, w.buf, w.len);
    bad[20] = 7; /* hint_active */
    ck_assert_int_eq(restore_into(&c, bad, w.len, &got), -EBADMSG);
    memcpy(bad, w.buf, w.len);
    bad[16] = 0; /* next_id 0 */
    ck_assert_int_eq(restore_into(&c, bad, w.len, &got), -EBADMSG);
    free(bad);
    struct vmm_virtio_balloon_config plain =
        VMM_INIT(struct vmm_virtio_balloon_config, .stats = true);
    ck_assert_int_eq(restore_into(&plain, w.buf, w.len, &got), -EINVAL);
    snap_writer_fini(&w);
}
END_TEST

static Suite *balloon_suite(void)
{
    Suite *s = suite_create("virtio-balloon");
    TCase *tc = tcase_create("balloon");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_balloon_inflate_returns_pages);
    tcase_add_test(tc, test_balloon_anonymous_pages_leave_the_host);
    tcase_add_test(tc, test_balloon_hostile_chains);
    tcase_add_test(tc, test_balloon_target_and_actual);
    tcase_add_test(tc, test_balloon_stats_queue);
    tcase_add_test(tc, test_balloon_free_page_reporting);
    tcase_add_test(tc, test_balloon_free_page_hinting);
    tcase_add_test(tc, test_balloon_hinting_not_offered);
    tcase_add_test(tc, test_balloon_page_poison);
    tcase_add_test(tc, test_balloon_poison_not_negotiated);
    tcase_add_test(tc, test_balloon_snapshot_round_trip);
    tcase_add_test(tc, test_balloon_full_batch_without_sysinfo);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(balloon_suite());
}
