/* SPDX-License-Identifier: Apache-2.0 */
/* The CMOS RTC standalone on a plain bus (no VM, no /dev/kvm): the host's
 * time, status registers, CMOS RAM, setting the clock in every mode. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <vmm/bus.h>
#include <vmm/devices.h>

#include "check_compat.h"

#define INDEX VMM_RTC_PORT
#define DATA  (VMM_RTC_PORT + 1)

#define REG_SECONDS 0x00
#define REG_MINUTES 0x02
#define REG_HOURS   0x04
#define REG_WEEKDAY 0x06
#define REG_DAY     0x07
#define REG_MONTH   0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32

#define B_SET    0x80
#define B_BINARY 0x04
#define B_24H    0x02

static struct vmm_bus *bus;
static struct vmm_rtc *rtc;

static void add_rtc(struct vmm_bus *b, uint16_t port, struct vmm_rtc **out)
{
    ck_assert_int_eq(vmm_rtc_create(out), 0);
    ck_assert_int_eq(vmm_bus_register(b, port, VMM_RTC_PORTS, vmm_rtc_bus_ops(), *out), 0);
}

static void setup(void)
{
    ck_assert_int_eq(vmm_bus_create("pio", &bus), 0);
    add_rtc(bus, VMM_RTC_PORT, &rtc);
}

static void teardown(void)
{
    ck_assert_int_eq(vmm_bus_unregister(bus, VMM_RTC_PORT), 0);
    vmm_rtc_destroy(rtc);
    rtc = NULL;
    vmm_bus_destroy(bus);
    bus = NULL;
}

static uint8_t rd(uint16_t port)
{
    uint8_t v = 0x5a;
    ck_assert_int_eq(vmm_bus_read(bus, port, &v, 1), 0);
    return v;
}

static void wr(uint16_t port, uint8_t v)
{
    ck_assert_int_eq(vmm_bus_write(bus, port, &v, 1), 0);
}

/* CMOS register reg of the RTC whose index port is port. */
static uint8_t cmos_at(uint16_t port, uint8_t reg)
{
    wr(port, reg);
    return rd((uint16_t)(port + 1));
}

static uint8_t cmos(uint8_t reg)
{
    return cmos_at(INDEX, reg);
}

static void cmos_set(uint8_t reg, uint8_t v)
{
    wr(INDEX, reg);
    wr(DATA, v);
}

static unsigned bcd(uint8_t v)
{
    return (v >> 4) * 10u + (v & 0xfu);
}

START_TEST(test_create_refuses_null)
{
    ck_assert_int_eq(vmm_rtc_create(NULL), -EINVAL);
    vmm_rtc_destroy(NULL);
}
END_TEST

START_TEST(test_power_on_state)
{
    /* What a kernel checks first: valid time, not mid-update, BCD 24-hour. */
    ck_assert_uint_eq(cmos(REG_D), 0x80);
    ck_assert_uint_eq(cmos(REG_A), 0x26);
    ck_assert_uint_eq(cmos(REG_B), B_24H);
    ck_assert_uint_eq(cmos(REG_C), 0x00);
    /* CMOS RAM starts out zero. */
    for (unsigned reg = 0x0e; reg < 0x80; reg++)
        if (reg != REG_CENTURY)
            ck_assert_uint_eq(cmos((uint8_t)reg), 0);
}
END_TEST

START_TEST(test_host_time)
{
    /* The date is the host's (UTC), in BCD. Retry across a minute tick. */
    for (int tries = 0;; tries++) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        unsigned year = bcd(cmos(REG_CENTURY)) * 100 + bcd(cmos(REG_YEAR));
        unsigned mon = bcd(cmos(REG_MONTH)), day = bcd(cmos(REG_DAY));
        unsigned wday = bcd(cmos(REG_WEEKDAY));
        unsigned hour = bcd(cmos(REG_HOURS)), min = bcd(cmos(REG_MINUTES));
        unsigned sec = bcd(cmos(REG_SECONDS));
        ck_assert_uint_lt(sec, 60);
        if (min != (unsigned)tm.tm_min && tries < 3)
            continue;
        ck_assert_uint_eq(year, (unsigned)tm.tm_year + 1900);
        ck_assert_uint_eq(mon, (unsigned)tm.tm_mon + 1);
        ck_assert_uint_eq(day, (unsigned)tm.tm_mday);
        ck_assert_uint_eq(wday, (unsigned)tm.tm_wday + 1);
        ck_assert_uint_eq(hour, (unsigned)tm.tm_hour);
        ck_assert_uint_eq(min, (unsigned)tm.tm_min);
        break;
    }
}
END_TEST

START_TEST(test_index_and_ram)
{
    /* Bit 7 of the index is the NMI mask, not part of the index. */
    wr(INDEX, 0x80 | REG_D);
    ck_assert_uint_eq(rd(DATA), 0x80);
    /* The index port reads back the index (harmless; real parts differ). */
    ck_assert_uint_eq(rd(INDEX), REG_D);
    /* CMOS RAM keeps what is written, up to the last byte. */
    cmos_set(0x40, 0xa5);
    cmos_set(0x7f, 0x3c);
    ck_assert_uint_eq(cmos(0x40), 0xa5);
    ck_assert_uint_eq(cmos(0x7f), 0x3c);
    wr(INDEX, 0x80 | 0x7f);
    ck_assert_uint_eq(rd(DATA), 0x3c);
    /* Status registers C and D are read-only; A never shows an update. */
    cmos_set(REG_D, 0x00);
    ck_assert_uint_eq(cmos(REG_D), 0x80);
    cmos_set(REG_C, 0xff);
    ck_assert_uint_eq(cmos(REG_C), 0x00);
    cmos_set(REG_A, 0xa6);
    ck_assert_uint_eq(cmos(REG_A), 0x26);
    /* A wide read answers in the first byte; the rest reads as all ones. */
    wr(INDEX, 0x40);
    uint16_t w = 0;
    ck_assert_int_eq(vmm_bus_read(bus, INDEX, (uint8_t *)&w, 2), 0);
    ck_assert_uint_eq(w, 0xff40);
    ck_assert_int_eq(vmm_bus_read(bus, DATA, (uint8_t *)&w, 2), -EINVAL);
}
END_TEST

START_TEST(test_set_binary_and_12_hour)
{
    /* Binary mode, then set the clock to 2001-02-03 04:05:06 through SET. */
    cmos_set(REG_B, B_SET | B_BINARY | B_24H);
    cmos_set(REG_CENTURY, 20);
    cmos_set(REG_YEAR, 1);
    cmos_set(REG_MONTH, 2);
    cmos_set(REG_DAY, 3);
    cmos_set(REG_HOURS, 4);
    cmos_set(REG_MINUTES, 5);
    cmos_set(REG_SECONDS, 6);
    ck_assert_uint_eq(cmos(REG_YEAR), 1); /* staged time while SET is held */
    ck_assert_uint_eq(cmos(REG_SECONDS), 6);
    cmos_set(REG_B, B_BINARY | B_24H);
    ck_assert_uint_eq(cmos(REG_CENTURY), 20);
    ck_assert_uint_eq(cmos(REG_YEAR), 1);
    ck_assert_uint_eq(cmos(REG_MONTH), 2);
    ck_assert_uint_eq(cmos(REG_DAY), 3);
    ck_assert_uint_eq(cmos(REG_HOURS), 4);
    ck_assert_uint_eq(cmos(REG_WEEKDAY), 7); /* a Saturday */
    /* 12-hour mode: 04:xx is 4 AM. */
    cmos_set(REG_B, B_BINARY);
    ck_assert_uint_eq(cmos(REG_HOURS), 4);
    /* 12-hour mode, binary: 14:xx reads as 2 with the PM bit. */
    cmos_set(REG_B, B_SET | B_BINARY);
    cmos_set(REG_HOURS, 0x80 | 2);
    cmos_set(REG_B, B_BINARY);
    ck_assert_uint_eq(cmos(REG_HOURS), 0x80 | 2);
    cmos_set(REG_B, B_BINARY | B_24H);
    ck_assert_uint_eq(cmos(REG_HOURS), 14);
    /* Midnight and noon in 12-hour mode are 12 AM and 12 PM. */
    cmos_set(REG_B, B_SET | B_BINARY | B_24H);
    cmos_set(REG_HOURS, 0);
    cmos_set(REG_B, B_BINARY);
    ck_assert_uint_eq(cmos(REG_HOURS), 12);
    cmos_set(REG_B, B_SET | B_BINARY | B_24H);
    cmos_set(REG_HOURS, 12);
    cmos_set(REG_B, B_BINARY);
    ck_assert_uint_eq(cmos(REG_HOURS), 0x80 | 12);
}
END_TEST

START_TEST(test_set_bcd_and_at_once)
{
    /* Linux's default: BCD, 24-hour, set through SET. */
    cmos_set(REG_B, B_SET | B_24H);
    cmos_set(REG_CENTURY, 0x20);
    cmos_set(REG_YEAR, 0x31);
    cmos_set(REG_MONTH, 0x12);
    cmos_set(REG_DAY, 0x25);
    cmos_set(REG_HOURS, 0x23);
    cmos_set(REG_MINUTES, 0x59);
    cmos_set(REG_SECONDS, 0x00); /* a minute before the date rolls over */
    cmos_set(REG_B, B_24H);
    ck_assert_uint_eq(cmos(REG_CENTURY), 0x20);
    ck_assert_uint_eq(cmos(REG_YEAR), 0x31);
    ck_assert_uint_eq(cmos(REG_MONTH), 0x12);
    ck_assert_uint_eq(cmos(REG_DAY), 0x25);
    ck_assert_uint_eq(cmos(REG_HOURS), 0x23);

    /* A write without SET takes effect at once; the rest of the date stays. */
    cmos_set(REG_YEAR, 0x42);
    ck_assert_uint_eq(cmos(REG_YEAR), 0x42);
    ck_assert_uint_eq(cmos(REG_MONTH), 0x12);
    ck_assert_uint_eq(cmos(REG_CENTURY), 0x20);
    cmos_set(REG_CENTURY, 0x21);
    ck_assert_uint_eq(cmos(REG_CENTURY), 0x21);
    ck_assert_uint_eq(cmos(REG_YEAR), 0x42);
}
END_TEST

START_TEST(test_nonsense_date)
{
    /* Nonsense written to the date does not break the clock. */
    cmos_set(REG_B, B_SET | B_BINARY | B_24H);
    cmos_set(REG_MONTH, 0xff);
    cmos_set(REG_DAY, 0x00);
    cmos_set(REG_HOURS, 0xff);
    cmos_set(REG_MINUTES, 0xff);
    cmos_set(REG_SECONDS, 0xff);
    cmos_set(REG_B, B_BINARY | B_24H);
    ck_assert_uint_le(cmos(REG_MONTH), 12);
    ck_assert_uint_ge(cmos(REG_MONTH), 1);
    ck_assert_uint_ge(cmos(REG_DAY), 1);
    ck_assert_uint_le(cmos(REG_DAY), 31);
    ck_assert_uint_lt(cmos(REG_HOURS), 24);
    ck_assert_uint_lt(cmos(REG_MINUTES), 60);
    ck_assert_uint_lt(cmos(REG_SECONDS), 60);
}
END_TEST

/* Each RTC is a clock of its own: setting one moves no other. */
START_TEST(test_two_clocks_apart)
{
    struct vmm_rtc *other;
    add_rtc(bus, 0x170, &other);
    unsigned year = bcd(cmos(REG_CENTURY)) * 100 + bcd(cmos(REG_YEAR));
    cmos_set(REG_B, B_SET | B_24H);
    cmos_set(REG_CENTURY, 0x19);
    cmos_set(REG_YEAR, 0x70);
    cmos_set(REG_B, B_24H);
    cmos_set(0x40, 0x11);
    ck_assert_uint_eq(cmos(REG_YEAR), 0x70);

    unsigned other_year = bcd(cmos_at(0x170, REG_CENTURY)) * 100 + bcd(cmos_at(0x170, REG_YEAR));
    /* The host year, give or take a New Year's Eve during the test. */
    ck_assert_uint_ge(other_year, year);
    ck_assert_uint_le(other_year, year + 1);
    ck_assert_uint_eq(cmos_at(0x170, 0x40), 0);

    ck_assert_int_eq(vmm_bus_unregister(bus, 0x170), 0);
    vmm_rtc_destroy(other);
}
END_TEST

static Suite *rtc_suite(void)
{
    Suite *s = suite_create("rtc");
    TCase *tc = tcase_create("standalone");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_create_refuses_null);
    tcase_add_test(tc, test_power_on_state);
    tcase_add_test(tc, test_host_time);
    tcase_add_test(tc, test_index_and_ram);
    tcase_add_test(tc, test_set_binary_and_12_hour);
    tcase_add_test(tc, test_set_bcd_and_at_once);
    tcase_add_test(tc, test_nonsense_date);
    tcase_add_test(tc, test_two_clocks_apart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(rtc_suite());
}
