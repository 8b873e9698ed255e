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
#include "pci/pci_regs.h"
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
    ck_assert_int_eq(vmm_bus_read(mmio, BAR + off, (uint8_t *)&v, len), 0);
    return v;
}

static void wr(uint64_t off, uint64_t v, uint32_t len)
{
    ck_assert_int_eq(vmm_bus_write(mmio, BAR + off, (uint8_t *)&v, len), 0);
}

static void setup(void)
{
    msis = intx_level = intx_raises = 0;
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(virtio_pci_suite());
}
