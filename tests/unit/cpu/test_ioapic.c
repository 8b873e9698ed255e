/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the split-irqchip IOAPIC model against a backend that records
 * the MSIs it sends and the routing table it installs. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/bus.h>
#include <vmm/vm.h>

#include "check_compat.h"
#include "cpu/x86_64/arch.h"

#define PINS 24

#define IOREGSEL 0x00
#define IOWIN    0x10

#define REG_ID             0x00
#define REG_VERSION        0x01
#define REG_REDIR(pin, hi) (0x10u + 2u * (pin) + (hi))

#define RTE_DELIV_STATUS (1u << 12)
#define RTE_REMOTE_IRR   (1u << 14)
#define RTE_LEVEL        (1u << 15)
#define RTE_MASKED       (1u << 16)
#define RTE_LOGICAL      (1u << 11)

#define MSI_LEVEL_TRIGGER (1u << 15)
#define MSI_LEVEL_ASSERT  (1u << 14)

#define MAX_MSIS 64

struct recorder {
    unsigned nmsi;
    uint64_t msi_addr[MAX_MSIS];
    uint32_t msi_data[MAX_MSIS];
    int msi_ret; /* what signal_msi answers */

    unsigned nroutes; /* set_routes calls */
    unsigned route_n;
    uint64_t route_addr[PINS];
    uint32_t route_data[PINS];
    bool route_valid[PINS];
};

static int rec_signal_msi(void *opaque, uint64_t address, uint32_t data)
{
    struct recorder *r = opaque;
    ck_assert_uint_lt(r->nmsi, MAX_MSIS);
    r->msi_addr[r->nmsi] = address;
    r->msi_data[r->nmsi] = data;
    r->nmsi++;
    return r->msi_ret;
}

static int rec_set_routes(void *opaque, const uint64_t *address, const uint32_t *data,
                          const bool *valid, unsigned n)
{
    struct recorder *r = opaque;
    ck_assert_uint_eq(n, PINS);
    r->nroutes++;
    r->route_n = n;
    memcpy(r->route_addr, address, n * sizeof(*address));
    memcpy(r->route_data, data, n * sizeof(*data));
    memcpy(r->route_valid, valid, n * sizeof(*valid));
    return 0;
}

static struct recorder rec;
static struct vmm_ioapic *io;
static const struct vmm_bus_ops *ops;

static void setup(void)
{
    memset(&rec, 0, sizeof(rec));
    struct vmm_ioapic_backend be = {
        .signal_msi = rec_signal_msi, .set_routes = rec_set_routes, .opaque = &rec};
    io = NULL;
    ck_assert_int_eq(vmm_ioapic_create(&be, &io), 0);
    ck_assert_ptr_nonnull(io);
    ops = vmm_ioapic_bus_ops();
    ck_assert_ptr_nonnull(ops);
    ck_assert_ptr_nonnull(ops->read);
    ck_assert_ptr_nonnull(ops->write);
}

static void teardown(void)
{
    vmm_ioapic_destroy(io);
    io = NULL;
}

static void mmio_write(uint64_t offset, uint64_t val, uint32_t len)
{
    uint8_t buf[8];
    memcpy(buf, &val, sizeof(buf));
    ops->write(io, offset, buf, len);
}

static uint64_t mmio_read(uint64_t offset, uint32_t len)
{
    uint8_t buf[8];
    memset(buf, 0x5a, sizeof(buf));
    ops->read(io, offset, buf, len);
    /* Only len bytes may be written. */
    for (uint32_t k = len; k < 8; k++)
        ck_assert_uint_eq(buf[k], 0x5a);
    uint64_t v = 0;
    memcpy(&v, buf, len);
    return v;
}

static void reg_write(uint32_t reg, uint32_t val)
{
    mmio_write(IOREGSEL, reg, 4);
    mmio_write(IOWIN, val, 4);
}

static uint32_t reg_read(uint32_t reg)
{
    mmio_write(IOREGSEL, reg, 4);
    return (uint32_t)mmio_read(IOWIN, 4);
}

static uint64_t rte_read(unsigned pin)
{
    return reg_read(REG_REDIR(pin, 0)) | ((uint64_t)reg_read(REG_REDIR(pin, 1)) << 32);
}

/* Program a whole entry, high dword first so the destination is in place
 * before the low dword unmasks. */
static void rte_write(unsigned pin, uint64_t rte)
{
    reg_write(REG_REDIR(pin, 1), (uint32_t)(rte >> 32));
    reg_write(REG_REDIR(pin, 0), (uint32_t)rte);
}

static uint64_t rte_make(uint8_t vector, unsigned mode, bool level, bool masked, uint8_t dest)
{
    return vector | ((uint64_t)mode << 8) | (level ? RTE_LEVEL : 0) | (masked ? RTE_MASKED : 0) |
           ((uint64_t)dest << 56);
}

static void assert_msi(unsigned k, uint64_t addr, uint32_t data)
{
    ck_assert_uint_gt(rec.nmsi, k);
    ck_assert_uint_eq(rec.msi_addr[k], addr);
    ck_assert_uint_eq(rec.msi_data[k], data);
}

START_TEST(test_id_and_version)
{
    ck_assert_uint_eq(reg_read(REG_ID), 0);
    uint32_t ver = reg_read(REG_VERSION);
    ck_assert_uint_eq(ver & 0xff, 0x11);
    ck_assert_uint_eq((ver >> 16) & 0xff, PINS - 1);

    /* The ID lives in bits 27:24; nothing else sticks. */
    reg_write(REG_ID, 0x05000000);
    ck_assert_uint_eq(reg_read(REG_ID), 0x05000000);
    reg_write(REG_ID, 0xffffffff);
    ck_assert_uint_eq(reg_read(REG_ID), 0x0f000000);

    /* The version register is read-only. */
    reg_write(REG_VERSION, 0);
    ck_assert_uint_eq(reg_read(REG_VERSION), ver);

    /* IOREGSEL reads back what was selected. */
    mmio_write(IOREGSEL, 0x23, 4);
    ck_assert_uint_eq(mmio_read(IOREGSEL, 4), 0x23);
    ck_assert_uint_eq(rec.nmsi, 0);
    ck_assert_uint_eq(rec.nroutes, 0);
}
END_TEST

START_TEST(test_entries_start_masked)
{
    for (unsigned pin = 0; pin < PINS; pin++) {
        uint64_t rte = rte_read(pin);
        ck_assert_msg(rte & RTE_MASKED, "pin %u starts unmasked", pin);
        ck_assert_uint_eq(rte & (RTE_REMOTE_IRR | RTE_DELIV_STATUS), 0);
        /* Raising a masked pin sends nothing. */
        ck_assert_int_eq(vmm_ioapic_set_irq(io, pin, true), 0);
    }
    ck_assert_uint_eq(rec.nmsi, 0);
}
END_TEST

START_TEST(test_program_and_read_back)
{
    for (unsigned pin = 0; pin < PINS; pin++) {
        uint64_t rte = rte_make((uint8_t)(0x30 + pin), pin % 8 == 7 ? 0 : pin % 8, pin & 1, pin & 2,
                                (uint8_t)(pin * 3));
        if (pin & 4)
            rte |= RTE_LOGICAL;
        if (pin & 8)
            rte |= 1u << 13; /* active low */
        rte_write(pin, rte);
        ck_assert_uint_eq(rte_read(pin), rte);
    }
    /* Each pin kept its own entry. */
    for (unsigned pin = 0; pin < PINS; pin++)
        ck_assert_uint_eq(rte_read(pin) & 0xff, 0x30 + pin);
    ck_assert_uint_eq(rec.nmsi, 0);
}
END_TEST

START_TEST(test_read_only_bits)
{
    /* Delivery status and remote IRR cannot be set by the guest... */
    rte_write(4, rte_make(0x44, 0, true, true, 0) | RTE_DELIV_STATUS | RTE_REMOTE_IRR);
    uint64_t rte = rte_read(4);
    ck_assert_uint_eq(rte & (RTE_DELIV_STATUS | RTE_REMOTE_IRR), 0);
    ck_assert_uint_eq(rte, rte_make(0x44, 0, true, true, 0));

    /* ...nor cleared: a delivered level interrupt stays busy until its EOI. */
    rte_write(4, rte_make(0x44, 0, true, false, 0));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 4, true), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_ne(rte_read(4) & RTE_REMOTE_IRR, 0);
    reg_write(REG_REDIR(4, 0), (uint32_t)rte_make(0x44, 0, true, false, 0));
    ck_assert_uint_ne(rte_read(4) & RTE_REMOTE_IRR, 0);
    ck_assert_uint_eq(rec.nmsi, 1);
}
END_TEST

START_TEST(test_edge_delivery)
{
    rte_write(3, rte_make(0x41, 0, false, false, 2));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, true), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    assert_msi(0, 0xfee00000u | (2u << 12), 0x41);

    /* Still high: no new edge. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, true), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, false), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, false), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, true), 0);
    ck_assert_uint_eq(rec.nmsi, 2);
    assert_msi(1, 0xfee02000u, 0x41);
    /* Edge entries never get busy. */
    ck_assert_uint_eq(rte_read(3) & RTE_REMOTE_IRR, 0);
    vmm_ioapic_eoi(io, 0x41);
    ck_assert_uint_eq(rec.nmsi, 2);

    /* Masked: a rising edge is not delivered, and unmasking later does not
     * replay it. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, false), 0);
    rte_write(3, rte_make(0x41, 0, false, true, 2));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, true), 0);
    ck_assert_uint_eq(rec.nmsi, 2);
    rte_write(3, rte_make(0x41, 0, false, false, 2));
    ck_assert_uint_eq(rec.nmsi, 2);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, false), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 3, true), 0);
    ck_assert_uint_eq(rec.nmsi, 3);
}
END_TEST

START_TEST(test_delivery_modes_and_destinations)
{
    /* Fixed, lowest priority, SMI, NMI, INIT, ExtINT: mode goes to data 10:8. */
    static const unsigned modes[] = {0, 1, 2, 4, 5, 7};
    for (unsigned k = 0; k < 6; k++) {
        uint8_t dest = (uint8_t)(0x11 * k + 0x0f);
        rte_write(k, rte_make((uint8_t)(0x50 + k), modes[k], false, false, dest));
        ck_assert_int_eq(vmm_ioapic_set_irq(io, k, true), 0);
        assert_msi(k, 0xfee00000u | ((uint64_t)dest << 12), (0x50 + k) | (modes[k] << 8));
    }
    /* Logical destination mode sets address bit 2. */
    rte_write(10, rte_make(0x60, 1, false, false, 0xff) | RTE_LOGICAL);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 10, true), 0);
    assert_msi(6, 0xfee00000u | (0xffu << 12) | (1u << 2), 0x160);
    /* The MSI is always in the 0xfee00000 window whatever the entry holds. */
    for (unsigned k = 0; k < rec.nmsi; k++)
        ck_assert_uint_eq(rec.msi_addr[k] & ~0xff00cull, 0xfee00000u);
}
END_TEST

START_TEST(test_level_delivery_and_eoi)
{
    rte_write(5, rte_make(0x52, 0, true, false, 1));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, true), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_eq(rec.msi_addr[0], 0xfee01000u);
    ck_assert_uint_eq(rec.msi_data[0] & ~MSI_LEVEL_ASSERT, 0x52 | MSI_LEVEL_TRIGGER);
    ck_assert_uint_ne(rte_read(5) & RTE_REMOTE_IRR, 0);

    /* Busy: neither a repeated high nor a new edge redelivers. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, true), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, false), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, true), 0);
    ck_assert_uint_eq(rec.nmsi, 1);

    /* An EOI for another vector changes nothing. */
    vmm_ioapic_eoi(io, 0x53);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_ne(rte_read(5) & RTE_REMOTE_IRR, 0);

    /* EOI with the line still high: delivered again, busy again. */
    vmm_ioapic_eoi(io, 0x52);
    ck_assert_uint_eq(rec.nmsi, 2);
    assert_msi(1, 0xfee01000u, rec.msi_data[0]);
    ck_assert_uint_ne(rte_read(5) & RTE_REMOTE_IRR, 0);

    /* Lowered, then EOI: idle, nothing sent. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, false), 0);
    vmm_ioapic_eoi(io, 0x52);
    ck_assert_uint_eq(rec.nmsi, 2);
    ck_assert_uint_eq(rte_read(5) & RTE_REMOTE_IRR, 0);
    /* A stray EOI on an idle pin does nothing either. */
    vmm_ioapic_eoi(io, 0x52);
    ck_assert_uint_eq(rec.nmsi, 2);

    /* And the next assertion is delivered. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 5, true), 0);
    ck_assert_uint_eq(rec.nmsi, 3);
}
END_TEST

/* A resampling irqfd's source (split irqchip INTx passthrough): raised by
 * the irqfd, lowered by the EOI, which reports the pin for its resample
 * eventfd; a line of the ordinary source on the same pin stays up. */
START_TEST(test_resample_source)
{
    rte_write(9, rte_make(0x61, 0, true, false, 0));
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, 9), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_ne(rte_read(9) & RTE_REMOTE_IRR, 0);
    /* Busy until the EOI: a second raise sends nothing. */
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, 9), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x62), 0);
    /* The EOI lowers the source and names the pin; nothing else holds the
     * line, so nothing is sent again. */
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x61), 1u << 9);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_eq(rte_read(9) & RTE_REMOTE_IRR, 0);
    /* A stray EOI reports nothing. */
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x61), 0);
    /* The device still asks: raised again, delivered again. */
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, 9), 0);
    ck_assert_uint_eq(rec.nmsi, 2);
    /* The ordinary source up too: after the EOI the pin is still asserted. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 9, true), 0);
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x61), 1u << 9);
    ck_assert_uint_eq(rec.nmsi, 3);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 9, false), 0);
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x61), 0);
    ck_assert_uint_eq(rec.nmsi, 3);
    /* Raised while masked: sent on unmask; lowered first (the irqfd went):
     * not sent. */
    rte_write(9, rte_make(0x61, 0, true, true, 0));
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, 9), 0);
    ck_assert_uint_eq(rec.nmsi, 3);
    rte_write(9, rte_make(0x61, 0, true, false, 0));
    ck_assert_uint_eq(rec.nmsi, 4);
    ck_assert_uint_eq(vmm_ioapic_eoi(io, 0x61), 1u << 9);
    rte_write(9, rte_make(0x61, 0, true, true, 0));
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, 9), 0);
    vmm_ioapic_resample_lower(io, 9);
    rte_write(9, rte_make(0x61, 0, true, false, 0));
    ck_assert_uint_eq(rec.nmsi, 4);
    /* Pins past the last refused. */
    ck_assert_int_eq(vmm_ioapic_resample_raise(io, VMM_IOAPIC_PINS), -EINVAL);
    vmm_ioapic_resample_lower(io, VMM_IOAPIC_PINS);
}
END_TEST

START_TEST(test_level_eoi_shared_vector)
{
    /* Two level pins on one vector: one EOI frees both; only the one whose
     * line is still high is delivered again. */
    rte_write(8, rte_make(0x70, 0, true, false, 0));
    rte_write(9, rte_make(0x70, 0, true, false, 1));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 8, true), 0);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 9, true), 0);
    ck_assert_uint_eq(rec.nmsi, 2);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 8, false), 0);
    vmm_ioapic_eoi(io, 0x70);
    ck_assert_uint_eq(rec.nmsi, 3);
    ck_assert_uint_eq(rec.msi_addr[2], 0xfee01000u);
    ck_assert_uint_eq(rte_read(8) & RTE_REMOTE_IRR, 0);
    ck_assert_uint_ne(rte_read(9) & RTE_REMOTE_IRR, 0);
}
END_TEST

START_TEST(test_level_masked_eoi_and_unmask)
{
    /* A level pin raised while masked is delivered on unmask. */
    rte_write(7, rte_make(0x61, 0, true, true, 3));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 7, true), 0);
    ck_assert_uint_eq(rec.nmsi, 0);
    reg_write(REG_REDIR(7, 0), (uint32_t)rte_make(0x61, 0, true, false, 0));
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_eq(rec.msi_addr[0], 0xfee03000u);
    ck_assert_uint_ne(rte_read(7) & RTE_REMOTE_IRR, 0);

    /* Masked when the EOI comes: remote IRR clears, nothing is sent; the
     * unmask then delivers the still-high line. */
    reg_write(REG_REDIR(7, 0), (uint32_t)rte_make(0x61, 0, true, true, 0));
    vmm_ioapic_eoi(io, 0x61);
    ck_assert_uint_eq(rec.nmsi, 1);
    ck_assert_uint_eq(rte_read(7) & RTE_REMOTE_IRR, 0);
    reg_write(REG_REDIR(7, 0), (uint32_t)rte_make(0x61, 0, true, false, 0));
    ck_assert_uint_eq(rec.nmsi, 2);

    /* Unmasking a level pin whose line is low sends nothing. */
    rte_write(12, rte_make(0x62, 0, true, true, 0));
    reg_write(REG_REDIR(12, 0), (uint32_t)rte_make(0x62, 0, true, false, 0));
    ck_assert_uint_eq(rec.nmsi, 2);
}
END_TEST

START_TEST(test_set_routes_table)
{
    rte_write(2, rte_make(0x42, 0, false, false, 4));
    ck_assert_uint_gt(rec.nroutes, 0);
    rte_write(9, rte_make(0x59, 1, true, false, 0x0c) | RTE_LOGICAL);
    rte_write(11, rte_make(0x5b, 0, false, true, 0)); /* programmed but masked */

    ck_assert_uint_eq(rec.route_n, PINS);
    for (unsigned pin = 0; pin < PINS; pin++)
        ck_assert_msg(rec.route_valid[pin] == (pin == 2 || pin == 9), "pin %u valid=%d", pin,
                      rec.route_valid[pin]);
    ck_assert_uint_eq(rec.route_addr[2], 0xfee04000u);
    ck_assert_uint_eq(rec.route_data[2] & ~MSI_LEVEL_ASSERT, 0x42);
    ck_assert_uint_eq(rec.route_addr[9], 0xfee0c000u | (1u << 2));
    ck_assert_uint_eq(rec.route_data[9] & ~MSI_LEVEL_ASSERT, 0x159 | MSI_LEVEL_TRIGGER);

    /* The routed message is the one a delivery would send. */
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 9, true), 0);
    assert_msi(0, rec.route_addr[9], rec.route_data[9]);

    /* Masking drops the route. */
    unsigned before = rec.nroutes;
    reg_write(REG_REDIR(2, 0), (uint32_t)rte_make(0x42, 0, false, true, 0));
    ck_assert_uint_gt(rec.nroutes, before);
    ck_assert(!rec.route_valid[2]);
    ck_assert(rec.route_valid[9]);
}
END_TEST

START_TEST(test_bad_pin)
{
    ck_assert_int_eq(vmm_ioapic_set_irq(io, PINS, true), -EINVAL);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 255, true), -EINVAL);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, UINT32_MAX, false), -EINVAL);
    ck_assert_int_eq(vmm_ioapic_set_irq(io, PINS - 1, true), 0);
    ck_assert_uint_eq(rec.nmsi, 0);
}
END_TEST

START_TEST(test_backend_failure_tolerated)
{
    rec.msi_ret = -EINVAL;
    rte_write(1, rte_make(0x31, 0, false, false, 0));
    ck_assert_int_eq(vmm_ioapic_set_irq(io, 1, true), 0);
    ck_assert_uint_eq(rec.nmsi, 1);
}
END_TEST

START_TEST(test_select_past_table)
{
    /* Snapshot the table, then poke at every register that does not exist. */
    uint64_t before[PINS];
    for (unsigned pin = 0; pin < PINS; pin++) {
        rte_write(pin, rte_make((uint8_t)(0x20 + pin), 0, false, true, (uint8_t)pin));
        before[pin] = rte_read(pin);
    }
    unsigned routes = rec.nroutes;
    for (uint32_t reg = 0x03; reg <= 0xff; reg++) {
        if (reg >= 0x10 && reg < 0x10 + 2 * PINS)
            continue;
        ck_assert_msg(reg_read(reg) == 0xffffffffu, "register 0x%x reads 0x%x", reg, reg_read(reg));
        reg_write(reg, 0);
        reg_write(reg, 0xffffffffu);
    }
    for (unsigned pin = 0; pin < PINS; pin++)
        ck_assert_uint_eq(rte_read(pin), before[pin]);
    ck_assert_uint_eq(rec.nroutes, routes);

    /* IOREGSEL is 8 bits wide; what a wider value selects is either a real
     * register or nothing, never memory past the table. */
    static const uint32_t wide[] = {0x140, 0x1ff, 0x10000, 0x800000ffu, 0xffffffffu};
    for (unsigned k = 0; k < sizeof(wide) / sizeof(wide[0]); k++) {
        mmio_write(IOREGSEL, wide[k], 4);
        uint32_t sel = (uint32_t)mmio_read(IOREGSEL, 4);
        ck_assert_uint_le(sel, 0xff);
        bool real = sel <= REG_VERSION + 1 || (sel >= 0x10 && sel < 0x10 + 2 * PINS);
        if (!real)
            ck_assert_uint_eq(mmio_read(IOWIN, 4), 0xffffffffu);
    }
    ck_assert_uint_eq(rec.nmsi, 0);
}
END_TEST

START_TEST(test_odd_sizes_and_offsets)
{
    rte_write(6, rte_make(0x66, 0, false, true, 6));
    unsigned routes = rec.nroutes;

    /* Reads off the two registers give all ones and change nothing. */
    static const uint64_t offs[] = {0x01, 0x02, 0x03, 0x04, 0x08,  0x0c,  0x11, 0x13,
                                    0x14, 0x18, 0x20, 0x40, 0x100, 0xffc, 0xfff};
    static const uint32_t sizes[] = {1, 2, 4, 8};
    for (unsigned k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
        for (unsigned s = 0; s < 4; s++) {
            uint32_t len = sizes[s];
            uint64_t off = offs[k];
            /* Stay inside the window, and keep accesses that start off a
             * register from covering IOWIN's bytes. */
            if (off + len > VMM_X86_IOAPIC_SIZE || (off < IOWIN && off + len > IOWIN))
                continue;
            /* Bytes inside IOREGSEL/IOWIN may read as register bytes. */
            bool in_reg = off < 4 || (off >= IOWIN && off < IOWIN + 4);
            uint64_t v = mmio_read(off, len);
            /* The registers are 32 bits: an 8-byte read need only have
             * all ones in the low half. */
            uint64_t mask = len == 8 ? 0xffffffffu : (UINT64_C(1) << (8 * len)) - 1;
            ck_assert_msg(in_reg || (v & mask) == mask, "read at 0x%llx/%u gave 0x%llx",
                          (unsigned long long)offs[k], len, (unsigned long long)v);
            if (!in_reg)
                mmio_write(off, 0xffffffffffffffffull, len);
        }
    }
    ck_assert_uint_eq(rte_read(6), rte_make(0x66, 0, false, true, 6));
    ck_assert_uint_eq(rec.nroutes, routes);

    /* An 8-byte write to IOWIN acts on the low dword only; the high half of
     * the value does not spill into the next register. */
    mmio_write(IOREGSEL, REG_REDIR(6, 0), 4);
    mmio_write(IOWIN, 0xdeadbeef00000000ull | (uint32_t)rte_make(0x67, 0, false, true, 0), 8);
    ck_assert_uint_eq(rte_read(6), rte_make(0x67, 0, false, true, 6));
    /* An 8-byte read of IOWIN has zero above the register. */
    mmio_write(IOREGSEL, REG_VERSION, 4);
    ck_assert_uint_eq(mmio_read(IOWIN, 8) >> 32, 0);

    /* Narrow accesses to IOREGSEL select the register. */
    mmio_write(IOREGSEL, REG_VERSION, 1);
    ck_assert_uint_eq(mmio_read(IOWIN, 4) & 0xff, 0x11);
    mmio_write(IOREGSEL, REG_REDIR(6, 1), 2);
    ck_assert_uint_eq(mmio_read(IOWIN, 4), 6u << 24);
    ck_assert_uint_eq(mmio_read(IOREGSEL, 1), REG_REDIR(6, 1));

    /* A narrow write to IOWIN does not raise the read-only bits or deliver
     * anything while the line is low. */
    mmio_write(IOREGSEL, REG_REDIR(6, 0), 4);
    mmio_write(IOWIN, 0x66, 1);
    ck_assert_uint_eq(rte_read(6) & (RTE_REMOTE_IRR | RTE_DELIV_STATUS), 0);
    mmio_write(IOREGSEL, REG_REDIR(6, 0), 4);
    mmio_write(IOWIN, 0xffff, 2);
    ck_assert_uint_eq(rte_read(6) & (RTE_REMOTE_IRR | RTE_DELIV_STATUS), 0);
    ck_assert_uint_eq(rec.nmsi, 0);

    /* Misaligned writes into the registers' own bytes: whatever they do, the
     * model stays usable (and ASan sees no stray access). */
    static const uint64_t inner[] = {0x01, 0x02, 0x03, 0x11, 0x12, 0x13};
    for (unsigned k = 0; k < sizeof(inner) / sizeof(inner[0]); k++)
        for (unsigned s = 0; s < 4; s++)
            mmio_write(inner[k], 0xffffffffffffffffull, sizes[s]);
    ck_assert_uint_eq(reg_read(REG_VERSION) & 0xff, 0x11);
}
END_TEST

START_TEST(test_through_bus)
{
    struct vmm_bus *bus = NULL;
    ck_assert_int_eq(vmm_bus_create("mmio", &bus), 0);
    ck_assert_int_eq(
        vmm_bus_register(bus, VMM_X86_IOAPIC_ADDR, VMM_X86_IOAPIC_SIZE, vmm_ioapic_bus_ops(), io),
        0);
    uint32_t v = REG_VERSION;
    ck_assert_int_eq(vmm_bus_write(bus, VMM_X86_IOAPIC_ADDR, (uint8_t *)&v, 4), 0);
    v = 0;
    ck_assert_int_eq(vmm_bus_read(bus, VMM_X86_IOAPIC_ADDR + IOWIN, (uint8_t *)&v, 4), 0);
    ck_assert_uint_eq(v, 0x11u | ((PINS - 1u) << 16));
    /* Off the end of the window: refused by the bus, all ones. */
    ck_assert_int_eq(vmm_bus_read(bus, VMM_X86_IOAPIC_ADDR + 0xffe, (uint8_t *)&v, 4), -EINVAL);
    ck_assert_uint_eq(v, 0xffffffffu);
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_X86_IOAPIC_ADDR), 0);
    vmm_bus_destroy(bus);
}
END_TEST

START_TEST(test_destroy_null)
{
    vmm_ioapic_destroy(NULL);
}
END_TEST

static Suite *ioapic_suite(void)
{
    Suite *s = suite_create("ioapic");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_id_and_version);
    tcase_add_test(tc, test_entries_start_masked);
    tcase_add_test(tc, test_program_and_read_back);
    tcase_add_test(tc, test_read_only_bits);
    tcase_add_test(tc, test_edge_delivery);
    tcase_add_test(tc, test_delivery_modes_and_destinations);
    tcase_add_test(tc, test_level_delivery_and_eoi);
    tcase_add_test(tc, test_resample_source);
    tcase_add_test(tc, test_level_eoi_shared_vector);
    tcase_add_test(tc, test_level_masked_eoi_and_unmask);
    tcase_add_test(tc, test_set_routes_table);
    tcase_add_test(tc, test_bad_pin);
    tcase_add_test(tc, test_backend_failure_tolerated);
    tcase_add_test(tc, test_select_past_table);
    tcase_add_test(tc, test_odd_sizes_and_offsets);
    tcase_add_test(tc, test_through_bus);
    tcase_add_test(tc, test_destroy_null);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(ioapic_suite());
}
