/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio-pci transport on a standalone root complex, played from the
 * driver's side with the entropy device behind it: the PCI identity and
 * vendor capabilities, bring-up through the common configuration, INTx with
 * the ISR while MSI-X is off, per-queue MSI-X vectors once it is on, and the
 * writes a driver must not make.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/pci.h>
#include <vmm/virtio.h>
#include <vmm/virtio_pci.h>
#include <vmm/virtio_rng.h>

#include "check_compat.h"
#include "pci/pci_internal.h"
#include "pci/pci_regs.h"
#include "snapshot/snapshot_internal.h"
#include "virtio/pci_regs.h"
#include "virtio/virtio_internal.h"
#include "vq_driver.h"

#define QSIZE 8
#define BAR   VMM_PCI_MMIO32_BASE
#define SLOT  1

static struct td d;
static struct vmm_bus *pio, *mmio;
static struct vmm_pci_bus *pci;
static struct vmm_virtio_pci *vp;
static uint64_t bar_at; /* where BAR 0 answers: BAR unless a test moves it */
static unsigned msis, intx_level, intx_raises;
static uint32_t last_msi_data;

static void on_msi(void *opaque, uint64_t address, uint32_t data)
{
    (void)opaque;
    ck_assert_uint_eq(address, 0xfee00000u);
    msis++;
    last_msi_data = data;
}

static void on_intx(void *opaque, unsigned gsi, bool level)
{
    (void)opaque;
    ck_assert_uint_eq(gsi, 17); /* slot 1's INTA: the second of the default four lines */
    intx_raises += level;
    intx_level = level;
}

static void cfg_write(unsigned reg, uint32_t v, uint32_t len)
{
    ck_assert_int_eq(
        vmm_bus_write(mmio, VMM_PCI_ECAM_BASE + (SLOT << 15) + reg, (uint8_t *)&v, len), 0);
}

static uint32_t cfg_read(unsigned reg, uint32_t len)
{
    uint32_t v = 0;
    ck_assert_int_eq(vmm_bus_read(mmio, VMM_PCI_ECAM_BASE + (SLOT << 15) + reg, (uint8_t *)&v, len),
                     0);
    return v;
}

static uint64_t rd(uint64_t off, uint32_t len)
{
    uint64_t v = 0;
    ck_assert_int_eq(vmm_bus_read(mmio, bar_at + off, (uint8_t *)&v, len), 0);
    return v;
}

static void wr(uint64_t off, uint64_t v, uint32_t len)
{
    ck_assert_int_eq(vmm_bus_write(mmio, bar_at + off, (uint8_t *)&v, len), 0);
}

/* A root complex with the entropy device as a virtio-pci function, on
 * pio and mmio, memory decoding on. */
static void make_bus(void)
{
    struct vmm_pci_config pc = VMM_INIT(struct vmm_pci_config, .msi = on_msi, .intx = on_intx);
    ck_assert_int_eq(vmm_pci_bus_create(&pc, &pci), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(pci, pio, mmio), 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_rng_config rc = VMM_INIT(struct vmm_virtio_rng_config, .queue_size = QSIZE);
    ck_assert_int_eq(vmm_virtio_rng_create(&rc, &dev), 0);
    struct vmm_virtio_pci_config cfg = VMM_INIT(struct vmm_virtio_pci_config, .mem = d.mem);
    ck_assert_int_eq(vmm_virtio_pci_add(pci, &cfg, &dev, &vp), 0);
}

static void setup(void)
{
    msis = intx_level = intx_raises = 0;
    bar_at = BAR;
    td_init(&d, QSIZE);
    ck_assert_int_eq(vmm_bus_create("pio", &pio), 0);
    ck_assert_int_eq(vmm_bus_create("mmio", &mmio), 0);
    struct vmm_pci_config pc = VMM_INIT(struct vmm_pci_config, .msi = on_msi, .intx = on_intx);
    ck_assert_int_eq(vmm_pci_bus_create(&pc, &pci), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(pci, pio, mmio), 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_rng_config rc = VMM_INIT(struct vmm_virtio_rng_config, .queue_size = QSIZE);
    ck_assert_int_eq(vmm_virtio_rng_create(&rc, &dev), 0);
    struct vmm_virtio_pci_config cfg = VMM_INIT(struct vmm_virtio_pci_config, .mem = d.mem);
    ck_assert_int_eq(vmm_virtio_pci_add(pci, &cfg, &dev, &vp), 0);
    cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
}

static void teardown(void)
{
    vmm_pci_bus_detach(pci);
    vmm_pci_bus_destroy(pci); /* destroys the transport and the device */
    vmm_bus_destroy(mmio);
    vmm_bus_destroy(pio);
    td_fini(&d);
}

static uint32_t refused_count(void)
{
    struct vmm_virtio_pci_stats st = VMM_INIT(struct vmm_virtio_pci_stats);
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), 0);
    return (uint32_t)st.refused_writes;
}

#define ACK     VMM_VIRTIO_STATUS_ACKNOWLEDGE
#define DRV     VMM_VIRTIO_STATUS_DRIVER
#define FEAT_OK VMM_VIRTIO_STATUS_FEATURES_OK
#define DRV_OK  VMM_VIRTIO_STATUS_DRIVER_OK

static void negotiate(uint64_t f)
{
    wr(VPCI_STATUS, ACK, 1);
    wr(VPCI_STATUS, ACK | DRV, 1);
    wr(VPCI_GFSELECT, 0, 4);
    wr(VPCI_GF, (uint32_t)f, 4);
    wr(VPCI_GFSELECT, 1, 4);
    wr(VPCI_GF, f >> 32, 4);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK, 1);
}

static void setup_queue(uint16_t vector)
{
    wr(VPCI_Q_SELECT, 0, 2);
    wr(VPCI_Q_SIZE, QSIZE, 2);
    wr(VPCI_Q_MSIX_VECTOR, vector, 2);
    wr(VPCI_Q_DESC, d.desc, 8);
    wr(VPCI_Q_DRIVER, (uint32_t)d.avail, 4); /* by halves, as Linux does */
    wr(VPCI_Q_DRIVER + 4, 0, 4);
    wr(VPCI_Q_DEVICE, d.used, 8);
    wr(VPCI_Q_ENABLE, 1, 2);
    ck_assert_uint_eq(rd(VPCI_Q_ENABLE, 2), 1);
}

/* Post one 16-byte request and notify. */
static void request(unsigned k)
{
    td_desc(&d, k, TD_BUF + 16 * k, 16, TD_F_WRITE, 0);
    td_avail(&d, (uint16_t)k);
    wr(VPCI_NOTIFY_OFFSET + rd(VPCI_Q_NOTIFY_OFF, 2) * VPCI_NOTIFY_MULTIPLIER, 0, 2);
}

START_TEST(identity_and_capabilities)
{
    ck_assert_uint_eq(cfg_read(PCI_VENDOR_ID, 4), (0x1040u + VMM_VIRTIO_ID_RNG) << 16 | 0x1af4);
    ck_assert_uint_eq(cfg_read(PCI_REVISION, 1), 1);
    ck_assert_uint_eq(cfg_read(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    ck_assert_uint_eq(cfg_read(PCI_BAR0, 4), (uint32_t)BAR | PCI_BAR_MEM64);
    /* The chain: MSI-X (2 vectors: configuration and the one queue), then
     * common, ISR and notify (no device configuration: the rng has none). */
    unsigned c = cfg_read(PCI_CAP_PTR, 1), types = 0, n = 0;
    ck_assert_uint_eq(cfg_read(c, 1), PCI_CAP_ID_MSIX);
    ck_assert_uint_eq(cfg_read(c + 2, 2), 1);
    for (c = cfg_read(c + 1, 1); c; c = cfg_read(c + 1, 1), n++) {
        ck_assert_uint_eq(cfg_read(c, 1), PCI_CAP_ID_VENDOR);
        unsigned type = cfg_read(c + 3, 1);
        ck_assert_uint_eq(cfg_read(c + 4, 1), 0); /* BAR 0 */
        types |= 1u << type;
        if (type == VPCI_CAP_NOTIFY) {
            ck_assert_uint_eq(cfg_read(c + 2, 1), 20);
            ck_assert_uint_eq(cfg_read(c + 8, 4), VPCI_NOTIFY_OFFSET);
            ck_assert_uint_eq(cfg_read(c + 16, 4), VPCI_NOTIFY_MULTIPLIER);
        } else {
            ck_assert_uint_eq(cfg_read(c + 2, 1), 16);
        }
        ck_assert_uint_lt(n, 4);
    }
    ck_assert_uint_eq(types, 1u << VPCI_CAP_COMMON | 1u << VPCI_CAP_ISR | 1u << VPCI_CAP_NOTIFY);
    ck_assert_uint_eq(rd(VPCI_NUM_QUEUES, 2), 1);
    ck_assert_uint_eq(rd(VPCI_Q_SIZE, 2), QSIZE);
    ck_assert_uint_eq(rd(VPCI_MSIX_CONFIG, 2), VMM_PCI_NO_VECTOR);
    wr(VPCI_DFSELECT, 1, 4);
    ck_assert_uint_eq(rd(VPCI_DF, 4) & 1, 1); /* VIRTIO_F_VERSION_1 */
}
END_TEST

START_TEST(intx_and_isr_without_msix)
{
    negotiate(VMM_VIRTIO_F_VERSION_1);
    ck_assert_uint_eq(rd(VPCI_STATUS, 1), ACK | DRV | FEAT_OK);
    setup_queue(0);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK | DRV_OK, 1);
    request(0);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 1);
    ck_assert_uint_eq(td_get_u32(&d, d.used + 8), 16);
    /* MSI-X is off: the interrupt went out on INTx with the ISR's queue bit. */
    ck_assert_uint_eq(msis, 0);
    ck_assert_uint_eq(intx_level, 1);
    ck_assert(cfg_read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    ck_assert_uint_eq(rd(VPCI_ISR_OFFSET, 1), 1);
    ck_assert_uint_eq(intx_level, 0); /* reading acknowledged it */
    ck_assert_uint_eq(rd(VPCI_ISR_OFFSET, 1), 0);
}
END_TEST

START_TEST(msix_vector_per_queue)
{
    unsigned c = cfg_read(PCI_CAP_PTR, 1);
    /* Vector 1 (the queue's): data 0x61; vector 0 stays masked. */
    wr(VPCI_MSIX_TABLE_OFFSET + 16, 0xfee00000u, 4);
    wr(VPCI_MSIX_TABLE_OFFSET + 24, 0x61, 4);
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 0, 4);
    cfg_write(c + 2, PCI_MSIX_ENABLE, 2);
    negotiate(VMM_VIRTIO_F_VERSION_1);
    wr(VPCI_MSIX_CONFIG, 0, 2);
    ck_assert_uint_eq(rd(VPCI_MSIX_CONFIG, 2), 0);
    wr(VPCI_MSIX_CONFIG, 2, 2); /* the function has vectors 0 and 1 only */
    ck_assert_uint_eq(rd(VPCI_MSIX_CONFIG, 2), VMM_PCI_NO_VECTOR);
    setup_queue(1);
    ck_assert_uint_eq(rd(VPCI_Q_MSIX_VECTOR, 2), 1);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK | DRV_OK, 1);
    request(0);
    request(1);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 2);
    ck_assert_uint_eq(msis, 2);
    ck_assert_uint_eq(last_msi_data, 0x61);
    ck_assert_uint_eq(intx_raises, 0);
    ck_assert_uint_eq(rd(VPCI_ISR_OFFSET, 1), 0);
    /* Masked vector: the interrupt waits in the PBA until unmasked. */
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 1, 4);
    request(2);
    ck_assert_uint_eq(msis, 2);
    ck_assert_uint_eq(rd(VPCI_MSIX_PBA_OFFSET, 8), 2);
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 0, 4);
    ck_assert_uint_eq(msis, 3);
    ck_assert_uint_eq(rd(VPCI_MSIX_PBA_OFFSET, 8), 0);
    /* NO_VECTOR for the queue: no interrupt at all. */
    wr(VPCI_STATUS, 0, 1);
    ck_assert_uint_eq(rd(VPCI_STATUS, 1), 0);
    ck_assert_uint_eq(rd(VPCI_Q_MSIX_VECTOR, 2), VMM_PCI_NO_VECTOR);
}
END_TEST

/* A back end that runs the ring itself (vhost) takes the queue's
 * notification eventfd: notifications then go to it, not the device. */
START_TEST(notify_fd_hands_notifications_over)
{
    struct vmm_virtio_transport *t = vmm_virtio_pci_transport(vp);
    ck_assert_int_eq(t->notify_fd(t, 0, true), -ENOTSUP); /* standalone: no eventfd */
    vmm_pci_bus_detach(pci);
    vmm_pci_bus_destroy(pci);
    struct vmm_event_loop *loop;
    ck_assert_int_eq(vmm_event_loop_create(&loop), 0);
    struct vmm_pci_config pc = VMM_INIT(struct vmm_pci_config, .msi = on_msi, .intx = on_intx);
    ck_assert_int_eq(vmm_pci_bus_create(&pc, &pci), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(pci, pio, mmio), 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_rng_config rc = VMM_INIT(struct vmm_virtio_rng_config, .queue_size = QSIZE);
    ck_assert_int_eq(vmm_virtio_rng_create(&rc, &dev), 0);
    struct vmm_virtio_pci_config cfg =
        VMM_INIT(struct vmm_virtio_pci_config, .mem = d.mem, .loop = loop);
    ck_assert_int_eq(vmm_virtio_pci_add(pci, &cfg, &dev, &vp), 0);
    cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    t = vmm_virtio_pci_transport(vp);
    negotiate(VMM_VIRTIO_F_VERSION_1);
    setup_queue(VMM_PCI_NO_VECTOR);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK | DRV_OK, 1);
    ck_assert_int_eq(t->notify_fd(t, 1, true), -ENOTSUP); /* the device has one queue */
    vmm_virtio_lock(t);
    int fd = t->notify_fd(t, 0, true);
    vmm_virtio_unlock(t);
    ck_assert_int_ge(fd, 0);
    request(0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 1), 0);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 0); /* not the device's any more */
    uint64_t n = 0;
    ck_assert_int_eq(read(fd, &n, sizeof(n)), (ssize_t)sizeof(n));
    ck_assert_uint_ge(n, 1);
    /* Taken back: the next notification reaches the device. */
    vmm_virtio_lock(t);
    ck_assert_int_eq(t->notify_fd(t, 0, false), fd);
    vmm_virtio_unlock(t);
    request(1);
    for (int i = 0; i < 50 && td_get_u16(&d, d.used + 2) != 2; i++)
        ck_assert_int_ge(vmm_event_loop_run_once(loop, 10), 0);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 2);
    vmm_pci_bus_detach(pci);
    vmm_pci_bus_destroy(pci);
    ck_assert_uint_eq(vmm_event_loop_count(loop), 0);
    vmm_event_loop_destroy(loop);
    /* teardown's: an empty bus to destroy again. */
    ck_assert_int_eq(vmm_pci_bus_create(&pc, &pci), 0);
    ck_assert_int_eq(vmm_pci_bus_attach(pci, pio, mmio), 0);
}
END_TEST

START_TEST(hostile_common_writes)
{
    unsigned before = refused_count();
    /* Queue set-up before FEATURES_OK, a queue that does not exist, odd
     * widths, and read-only fields: refused, nothing changes. */
    wr(VPCI_Q_ENABLE, 1, 2);
    ck_assert_uint_eq(rd(VPCI_Q_ENABLE, 2), 0);
    wr(VPCI_Q_SELECT, 5, 2);
    wr(VPCI_Q_SIZE, 4, 2);
    wr(VPCI_Q_ENABLE, 1, 2);
    ck_assert_uint_eq(rd(VPCI_Q_SIZE, 2), 0);
    wr(VPCI_Q_SELECT, 0, 2);
    wr(VPCI_Q_SIZE, 4, 4); /* a 16-bit field written with 32 bits */
    wr(VPCI_STATUS + 1, 0xff, 1);
    wr(VPCI_NUM_QUEUES, 9, 2);
    wr(VPCI_Q_NOTIFY_OFF, 3, 2);
    wr(VPCI_Q_DESC + 2, 0, 2);
    ck_assert_uint_eq(rd(VPCI_Q_SIZE, 2), QSIZE);
    ck_assert_uint_eq(rd(VPCI_NUM_QUEUES, 2), 1);
    ck_assert_uint_eq(refused_count(), before + 8);
    /* Features the device does not offer: FEATURES_OK does not stick. */
    negotiate(VMM_VIRTIO_F_VERSION_1 | 1ull << 60);
    ck_assert_uint_eq(rd(VPCI_STATUS, 1), ACK | DRV);
    wr(VPCI_STATUS, 0, 1);
    negotiate(VMM_VIRTIO_F_VERSION_1);
    /* A ring outside guest memory is refused at queue_enable. */
    wr(VPCI_Q_DESC, 0x7fff0000, 8);
    wr(VPCI_Q_ENABLE, 1, 2);
    ck_assert_uint_eq(rd(VPCI_Q_ENABLE, 2), 0);
    setup_queue(VMM_PCI_NO_VECTOR);
    /* Live queue: its address and size stay; writing 0 to enable is refused. */
    wr(VPCI_Q_DESC, 0, 8);
    wr(VPCI_Q_ENABLE, 0, 2);
    ck_assert_uint_eq(rd(VPCI_Q_DESC, 8), d.desc);
    ck_assert_uint_eq(rd(VPCI_Q_ENABLE, 2), 1);
    /* Status may only add bits; DRIVER_OK then works. */
    wr(VPCI_STATUS, ACK, 1);
    ck_assert_uint_eq(rd(VPCI_STATUS, 1), ACK | DRV | FEAT_OK);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK | DRV_OK, 1);
    ck_assert_uint_eq(rd(VPCI_STATUS, 1), ACK | DRV | FEAT_OK | DRV_OK);
    /* Notifications of queues that do not exist, and past the structure. */
    wr(VPCI_NOTIFY_OFFSET + 4 * 3, 0, 2);
    wr(0x7000, 1, 4);
    wr(VPCI_DEVICE_OFFSET, 1, 4); /* no device configuration */
    ck_assert_uint_eq(rd(VPCI_DEVICE_OFFSET, 4), 0);
    request(0);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 1);
}
END_TEST

START_TEST(bad_arguments)
{
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_rng_create(NULL, &dev), 0);
    /* Standalone without memory: refused, and the device is freed. */
    ck_assert_int_eq(vmm_virtio_pci_add(pci, NULL, &dev, NULL), -EINVAL);
    ck_assert_int_eq(vmm_virtio_rng_create(NULL, &dev), 0);
    ck_assert_int_eq(vmm_virtio_pci_add(NULL, NULL, &dev, NULL), -EINVAL);
    struct vmm_virtio_pci_config big = {.size = sizeof(big) + 4};
    ck_assert_int_eq(vmm_virtio_rng_create(NULL, &dev), 0);
    ck_assert_int_eq(vmm_virtio_pci_add(pci, &big, &dev, NULL), -EINVAL);
    struct vmm_virtio_pci_stats st = {.size = 2};
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), -EINVAL);
}
END_TEST

/* ---- snapshots ---- */

/* The bus's and the transport's state, saved as a snapshot saves them. */
struct saved {
    uint8_t bus[4096], fn[1024];
    size_t bus_len, fn_len;
};

static void snap_save(struct saved *sv)
{
    struct vmm_snap_writer bw, tw;
    snap_writer_init(&bw);
    snap_writer_init(&tw);
    ck_assert_int_eq(vmm_pci_bus_snap_check(pci), 0);
    ck_assert_int_eq(vmm_virtio_pci_snap_freeze(vp), 0);
    ck_assert_int_eq(vmm_pci_bus_snap_save(pci, &bw), 0);
    ck_assert_int_eq(vmm_virtio_pci_snap_save(vp, &tw), 0);
    vmm_virtio_pci_snap_thaw(vp);
    ck_assert_uint_le(bw.len, sizeof(sv->bus));
    ck_assert_uint_le(tw.len, sizeof(sv->fn));
    memcpy(sv->bus, bw.buf, bw.len);
    memcpy(sv->fn, tw.buf, tw.len);
    sv->bus_len = bw.len;
    sv->fn_len = tw.len;
    snap_writer_fini(&bw);
    snap_writer_fini(&tw);
}

/* Replace the bus by a new one made alike and restore sv into it, bus
 * first: the first error, or 0. */
static int snap_restore(const struct saved *sv)
{
    vmm_pci_bus_detach(pci);
    vmm_pci_bus_destroy(pci);
    make_bus();
    struct vmm_snap_reader r = {.p = sv->bus, .left = sv->bus_len};
    int rc = vmm_pci_bus_snap_restore(pci, &r);
    if (rc == 0)
        rc = snap_done(&r);
    if (rc == 0) {
        r = (struct vmm_snap_reader){.p = sv->fn, .left = sv->fn_len};
        rc = vmm_virtio_pci_snap_restore(vp, &r);
    }
    return rc;
}

#define MOVED (BAR + 0x10000)

/* A function mid-work: BAR 0 moved, MSI-X on with the queue's vector
 * masked and pending, a request done, selectors and the address latch set. */
static void mid_work(void)
{
    cfg_write(PCI_BAR0, (uint32_t)MOVED, 4);
    bar_at = MOVED;
    cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    unsigned c = cfg_read(PCI_CAP_PTR, 1);
    wr(VPCI_MSIX_TABLE_OFFSET + 16, 0xfee00000u, 4);
    wr(VPCI_MSIX_TABLE_OFFSET + 24, 0x61, 4);
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 0, 4);
    cfg_write(c + 2, PCI_MSIX_ENABLE, 2);
    negotiate(VMM_VIRTIO_F_VERSION_1);
    wr(VPCI_MSIX_CONFIG, 0, 2);
    setup_queue(1);
    wr(VPCI_STATUS, ACK | DRV | FEAT_OK | DRV_OK, 1);
    request(0);
    ck_assert_uint_eq(msis, 1);
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 1, 4); /* masked: the next one waits */
    request(1);
    ck_assert_uint_eq(msis, 1);
    ck_assert_uint_eq(rd(VPCI_MSIX_PBA_OFFSET, 8), 2);
    wr(VPCI_DFSELECT, 1, 4);
    wr(VPCI_GFSELECT, 1, 4);
    uint32_t latch = 0x80000810u;
    ck_assert_int_eq(vmm_bus_write(pio, 0xcf8, (uint8_t *)&latch, 4), 0);
}

START_TEST(snapshot_round_trip)
{
    mid_work();
    uint8_t cfg[PCI_CFG_SIZE], common[VPCI_COMMON_SIZE], table[32];
    for (unsigned i = 0; i < PCI_CFG_SIZE; i += 4)
        *(uint32_t *)&cfg[i] = cfg_read(i, 4);
    for (unsigned i = 0; i < VPCI_COMMON_SIZE; i += 2)
        *(uint16_t *)&common[i] = (uint16_t)rd(i, 2);
    for (unsigned i = 0; i < sizeof(table); i += 4)
        *(uint32_t *)&table[i] = (uint32_t)rd(VPCI_MSIX_TABLE_OFFSET + i, 4);
    static struct saved sv;
    snap_save(&sv);
    ck_assert_int_eq(snap_restore(&sv), 0);

    /* The driver sees what it left: configuration space, BAR 0 where it
     * put it, the common structure, the MSI-X table and pending bit, the
     * address latch. */
    ck_assert_uint_eq(vmm_pci_bar_address(vmm_virtio_pci_dev(vp), 0), MOVED);
    for (unsigned i = 0; i < PCI_CFG_SIZE; i += 4)
        ck_assert_uint_eq(cfg_read(i, 4), *(uint32_t *)&cfg[i]);
    for (unsigned i = 0; i < VPCI_COMMON_SIZE; i += 2)
        ck_assert_uint_eq(rd(i, 2), *(uint16_t *)&common[i]);
    for (unsigned i = 0; i < sizeof(table); i += 4)
        ck_assert_uint_eq(rd(VPCI_MSIX_TABLE_OFFSET + i, 4), *(uint32_t *)&table[i]);
    ck_assert_uint_eq(rd(VPCI_MSIX_PBA_OFFSET, 8), 2);
    uint32_t latch = 0;
    ck_assert_int_eq(vmm_bus_read(pio, 0xcf8, (uint8_t *)&latch, 4), 0);
    ck_assert_uint_eq(latch, 0x80000810u);
    ck_assert_uint_eq(msis, 1);
    /* Unmasked, the pending interrupt goes out; the queue goes on. */
    wr(VPCI_MSIX_TABLE_OFFSET + 28, 0, 4);
    ck_assert_uint_eq(msis, 2);
    ck_assert_uint_eq(last_msi_data, 0x61);
    request(2);
    ck_assert_uint_eq(td_get_u16(&d, d.used + 2), 3);
    ck_assert_uint_eq(msis, 3);
    ck_assert_uint_eq(intx_raises, 0);
    /* A second save of the restored function is the same state. */
    static struct saved again;
    snap_save(&again);
    ck_assert_uint_eq(again.bus_len, sv.bus_len);
    ck_assert_uint_eq(again.fn_len, sv.fn_len);
}
END_TEST

/* Offsets in struct saved: slot 1's function follows the host bridge's. */
#define FN1   (sizeof(struct pci_snap_bus) + sizeof(struct pci_snap_fn))
#define TABLE (FN1 + sizeof(struct pci_snap_fn))
#define PBA   (TABLE + 32)
#define Q0    sizeof(struct vpci_snap)

static void patch(uint8_t *base, size_t off, const void *v, size_t n)
{
    memcpy(base + off, v, n);
}

START_TEST(snapshot_hostile_fields_are_refused)
{
    mid_work();
    static struct saved sv, bad;
    snap_save(&sv);
    ck_assert_uint_eq(sv.bus_len, PBA + 8);
    const uint32_t u32s[] = {2, 0x3, 0xfec00000u};
    const uint16_t vec5 = 5, size6 = 6, size16 = 16, cfg7 = 7;
    const uint64_t outside = 0xfec00000u, notoffered = 1ull << 60;
    const uint8_t isr4 = 4, two = 2;
    const uint32_t zero = 0;
    struct {
        bool fn; /* patch the transport's state, else the bus's */
        size_t off;
        const void *v;
        size_t n;
        int want;
    } cases[] = {
        /* the bus: another version, other slots, a read-only bit, a BAR
         * outside its window, a reserved Vector Control bit, a pending bit
         * past the table, an INTx level that is no level */
        {false, offsetof(struct pci_snap_bus, version), &u32s[0], 4, -EPROTO},
        {false, offsetof(struct pci_snap_bus, pad), &u32s[0], 4, -EBADMSG},
        {false, FN1 + offsetof(struct pci_snap_fn, vendor_device), &u32s[2], 4, -EINVAL},
        {false, FN1 + offsetof(struct pci_snap_fn, cfg) + PCI_REVISION, &two, 1, -EBADMSG},
        {false, FN1 + offsetof(struct pci_snap_fn, bar_addr), &outside, 8, -EBADMSG},
        {false, FN1 + offsetof(struct pci_snap_fn, cfg) + PCI_BAR0, &u32s[2], 4, -EBADMSG},
        {false, TABLE + 12, &u32s[0], 4, -EBADMSG},
        {false, TABLE + 28, &zero, 4, -EBADMSG}, /* vector 1 pending yet unmasked */
        {false, PBA, &vec5, 1, -EBADMSG},
        {false, FN1 + offsetof(struct pci_snap_fn, intx_level), &u32s[0], 4, -EBADMSG},
        {false, FN1 + offsetof(struct pci_snap_fn, msi_pending), &u32s[1], 4, -EBADMSG},
        /* the transport: another version or device, an unknown status bit,
         * features not offered, an ISR bit, vectors beyond the table, a
         * queue size not a power of two or above the maximum */
        {true, offsetof(struct vpci_snap, version), &u32s[0], 4, -EPROTO},
        {true, offsetof(struct vpci_snap, type), &u32s[0], 4, -EINVAL},
        {true, offsetof(struct vpci_snap, status), &u32s[2], 4, -EBADMSG},
        {true, offsetof(struct vpci_snap, features), &notoffered, 8, -EBADMSG},
        {true, offsetof(struct vpci_snap, isr), &isr4, 1, -EBADMSG},
        {true, offsetof(struct vpci_snap, config_vector), &vec5, 2, -EBADMSG},
        {true, offsetof(struct vpci_snap, activated), &two, 1, -EBADMSG},
        {true, Q0 + offsetof(struct vpci_snap_queue, vector), &cfg7, 2, -EBADMSG},
        {true, Q0 + offsetof(struct vpci_snap_queue, size), &size6, 2, -EBADMSG},
        {true, Q0 + offsetof(struct vpci_snap_queue, size), &size16, 2, -EBADMSG},
        {true, Q0 + offsetof(struct vpci_snap_queue, enabled), &two, 1, -EBADMSG},
        {true, Q0 + offsetof(struct vpci_snap_queue, reset_done), &two, 1, -EBADMSG},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bad = sv;
        patch(cases[i].fn ? bad.fn : bad.bus, cases[i].off, cases[i].v, cases[i].n);
        int rc = snap_restore(&bad);
        ck_assert_msg(rc == cases[i].want, "case %u: %d, not %d", i, rc, cases[i].want);
    }
    /* The slot mask says slot 2 too: not this machine. */
    bad = sv;
    uint32_t slots = 0x7;
    patch(bad.bus, offsetof(struct pci_snap_bus, slots), &slots, 4);
    ck_assert_int_eq(snap_restore(&bad), -EINVAL);
    /* Truncated anywhere: malformed. */
    bad = sv;
    bad.bus_len = TABLE + 4;
    ck_assert_int_eq(snap_restore(&bad), -EBADMSG);
    bad = sv;
    bad.fn_len = Q0 + 8;
    ck_assert_int_eq(snap_restore(&bad), -EBADMSG);
    /* And the state as saved still restores. */
    ck_assert_int_eq(snap_restore(&sv), 0);
}
END_TEST

/* A function of an application's device model cannot be saved. */
START_TEST(snapshot_refuses_foreign_functions)
{
    ck_assert_int_eq(vmm_pci_bus_snap_check(pci), 0);
    struct vmm_pci_device own =
        VMM_INIT(struct vmm_pci_device, .vendor_id = 0x1234, .device_id = 1, .name = "own");
    struct vmm_pci_dev *dev;
    ck_assert_int_eq(vmm_pci_add_device(pci, &own, &dev), 0);
    ck_assert_int_eq(vmm_pci_bus_snap_check(pci), -ENOTSUP);
}
END_TEST

static Suite *virtio_pci_suite(void)
{
    Suite *s = suite_create("virtio_pci");
    TCase *tc = tcase_create("transport");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, identity_and_capabilities);
    tcase_add_test(tc, intx_and_isr_without_msix);
    tcase_add_test(tc, msix_vector_per_queue);
    tcase_add_test(tc, notify_fd_hands_notifications_over);
    tcase_add_test(tc, hostile_common_writes);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, snapshot_round_trip);
    tcase_add_test(tc, snapshot_hostile_fields_are_refused);
    tcase_add_test(tc, snapshot_refuses_foreign_functions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(virtio_pci_suite());
}
