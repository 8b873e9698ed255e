/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal MC146818 CMOS real-time clock at ports 0x70 (index) and 0x71
 * (data): the time of day from the host clock, the status registers a kernel
 * checks before trusting the clock, and 128 bytes of CMOS RAM. No periodic,
 * alarm or update-ended interrupts: the RTC's IRQ 8 is never raised, so a
 * guest that waits for one times out as it would with a clock that has no
 * interrupt line wired (Linux's rtc-cmos reads the time without it).
 *
 * A guest may set the clock (SET bit in register B, write the time, clear
 * SET; or write a single time register, which takes effect at once): the
 * VM's clock then runs at an offset from the host's; the host clock is never
 * changed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "snapshot/snapshot_internal.h"
#include "vmm_internal.h"

#define RTC_SECONDS     0x00
#define RTC_MINUTES     0x02
#define RTC_HOURS       0x04
#define RTC_DAY_OF_WEEK 0x06
#define RTC_DAY         0x07
#define RTC_MONTH       0x08
#define RTC_YEAR        0x09
#define RTC_REG_A       0x0a
#define RTC_REG_B       0x0b
#define RTC_REG_C       0x0c
#define RTC_REG_D       0x0d
#define RTC_CENTURY     0x32

#define REG_A_UIP      0x80 /* update in progress: never set, the time is always stable */
#define REG_A_DEFAULT  0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define REG_B_SET      0x80
#define REG_B_DM       0x04 /* data mode: binary (else BCD) */
#define REG_B_24H      0x02
#define REG_B_WRITABLE 0xfe /* every bit but DSE-era bit 0 is stored */
#define REG_D_VRT      0x80 /* valid RAM and time: the battery is good */
#define HOUR_PM        0x80 /* 12-hour mode: PM flag in the hours register */

#define CMOS_SIZE 128

struct vmm_rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t ram[CMOS_SIZE];
    int64_t offset;   /* guest time minus host time, seconds */
    struct tm staged; /* the time being set while SET is held */
};

static uint8_t to_bcd(unsigned v)
{
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned from_bcd(uint8_t v)
{
    return (unsigned)(v >> 4) * 10 + (v & 0x0f);
}

static uint8_t encode(const struct vmm_rtc *rtc, unsigned v)
{
    return (rtc->ram[RTC_REG_B] & REG_B_DM) ? (uint8_t)v : to_bcd(v);
}

static unsigned decode(const struct vmm_rtc *rtc, uint8_t v)
{
    return (rtc->ram[RTC_REG_B] & REG_B_DM) ? v : from_bcd(v);
}

static uint8_t encode_hour(const struct vmm_rtc *rtc, unsigned hour)
{
    if (rtc->ram[RTC_REG_B] & REG_B_24H)
        return encode(rtc, hour);
    unsigned h12 = hour % 12 == 0 ? 12 : hour % 12;
    return (uint8_t)(encode(rtc, h12) | (hour >= 12 ? HOUR_PM : 0));
}

static unsigned decode_hour(const struct vmm_rtc *rtc, uint8_t v)
{
    if (rtc->ram[RTC_REG_B] & REG_B_24H)
        return decode(rtc, v) % 24;
    unsigned h = decode(rtc, v & 0x7f) % 12;
    return (v & HOUR_PM) ? h + 12 : h;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (the
 * calendar in 400-year eras of 146097 days, years starting in March so
 * that the leap day ends them). Plain arithmetic: glibc's gmtime_r and
 * timegm read the time zone file on first use, a file open that neither a
 * vCPU thread nor its seccomp filter should make. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);                       /* [0, 399] */
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void guest_time(const struct vmm_rtc *rtc, struct tm *tm)
{
    int64_t t = (int64_t)time(NULL) + rtc->offset;
    int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    memset(tm, 0, sizeof(*tm));
    tm->tm_sec = (int)(secs % 60);
    tm->tm_min = (int)(secs / 60 % 60);
    tm->tm_hour = (int)(secs / 3600);
    tm->tm_mday = (int)d;
    tm->tm_mon = (int)m - 1;
    tm->tm_year = (int)(y - 1900);
    tm->tm_wday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
}

static uint8_t read_reg(struct vmm_rtc *rtc, uint8_t reg)
{
    struct tm tm;
    /* While SET is held the guest sees what it is writing. */
    if (rtc->ram[RTC_REG_B] & REG_B_SET)
        tm = rtc->staged;
    else
        guest_time(rtc, &tm);
    switch (reg) {
    case RTC_SECONDS:
        return encode(rtc, (unsigned)tm.tm_sec % 60);
    case RTC_MINUTES:
        return encode(rtc, (unsigned)tm.tm_min);
    case RTC_HOURS:
        return encode_hour(rtc, (unsigned)tm.tm_hour);
    case RTC_DAY_OF_WEEK:
        return encode(rtc, (unsigned)tm.tm_wday + 1);
    case RTC_DAY:
        return encode(rtc, (unsigned)tm.tm_mday);
    case RTC_MONTH:
        return encode(rtc, (unsigned)tm.tm_mon + 1);
    case RTC_YEAR:
        return encode(rtc, (unsigned)(tm.tm_year + 1900) % 100);
    case RTC_CENTURY:
        return encode(rtc, (unsigned)(tm.tm_year + 1900) / 100);
    case RTC_REG_A:
        return rtc->ram[RTC_REG_A] & (uint8_t)~REG_A_UIP;
    case RTC_REG_C: {
        /* Interrupt flags, cleared by reading; none are ever raised. */
        uint8_t v = rtc->ram[RTC_REG_C];
        rtc->ram[RTC_REG_C] = 0;
        return v;
    }
    case RTC_REG_D:
        return REG_D_VRT;
    default:
        return rtc->ram[reg];
    }
}

static bool is_time_reg(uint8_t reg)
{
    return reg == RTC_SECONDS || reg == RTC_MINUTES || reg == RTC_HOURS || reg == RTC_DAY ||
           reg == RTC_MONTH || reg == RTC_YEAR || reg == RTC_CENTURY;
}

/* Make the staged time the guest's clock. */
static void commit_staged(struct vmm_rtc *rtc)
{
    const struct tm *tm = &rtc->staged;
    int64_t t = days_from_civil((int64_t)tm->tm_year + 1900, (unsigned)tm->tm_mon + 1,
                                (unsigned)tm->tm_mday) *
                    86400 +
                tm->tm_hour * 3600 + tm->tm_min * 60 + tm->tm_sec;
    rtc->offset = t - (int64_t)time(NULL);
}

static void write_reg(struct vmm_rtc *rtc, uint8_t reg, uint8_t v)
{
    /* Without SET held, a write to a time register takes effect at once, as
     * on the real part: change that field of the current time. */
    bool immediate = is_time_reg(reg) && !(rtc->ram[RTC_REG_B] & REG_B_SET);
    if (immediate)
        guest_time(rtc, &rtc->staged);
    switch (reg) {
    case RTC_SECONDS:
        rtc->staged.tm_sec = (int)(decode(rtc, v) % 60);
        break;
    case RTC_MINUTES:
        rtc->staged.tm_min = (int)(decode(rtc, v) % 60);
        break;
    case RTC_HOURS:
        rtc->staged.tm_hour = (int)decode_hour(rtc, v);
        break;
    case RTC_DAY_OF_WEEK:
        break; /* derived from the date */
    case RTC_DAY: {
        unsigned d = decode(rtc, v);
        rtc->staged.tm_mday = (int)(d >= 1 && d <= 31 ? d : 1);
        break;
    }
    case RTC_MONTH: {
        unsigned m = decode(rtc, v);
        rtc->staged.tm_mon = (int)(m >= 1 && m <= 12 ? m - 1 : 0);
        break;
    }
    case RTC_YEAR: {
        int century = (rtc->staged.tm_year + 1900) / 100;
        rtc->staged.tm_year = century * 100 + (int)(decode(rtc, v) % 100) - 1900;
        break;
    }
    case RTC_CENTURY: {
        int yy = (rtc->staged.tm_year + 1900) % 100;
        rtc->staged.tm_year = (int)(decode(rtc, v) % 100) * 100 + yy - 1900;
        break;
    }
    case RTC_REG_A:
        rtc->ram[RTC_REG_A] = v & (uint8_t)~REG_A_UIP;
        break;
    case RTC_REG_B: {
        bool was_set = rtc->ram[RTC_REG_B] & REG_B_SET;
        bool set = v & REG_B_SET;
        if (!was_set && set) {
            guest_time(rtc, &rtc->staged);
        } else if (was_set && !set) {
            commit_staged(rtc);
        }
        rtc->ram[RTC_REG_B] = v & REG_B_WRITABLE;
        break;
    }
    case RTC_REG_C:
    case RTC_REG_D:
        break; /* read-only */
    default:
        rtc->ram[reg] = v;
        break;
    }
    if (immediate)
        commit_staged(rtc);
}

static void rtc_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct vmm_rtc *rtc = opaque;
    memset(data, 0xff, len);
    if (len == 0)
        return;
    pthread_mutex_lock(&rtc->lock);
    if (offset == 0)
        data[0] = rtc->index; /* not readable on real parts; harmless */
    else
        data[0] = read_reg(rtc, rtc->index);
    pthread_mutex_unlock(&rtc->lock);
}

static void rtc_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_rtc *rtc = opaque;
    if (len == 0)
        return;
    pthread_mutex_lock(&rtc->lock);
    if (offset == 0)
        rtc->index = data[0] & 0x7f; /* bit 7 is the NMI mask, not an index bit */
    else
        write_reg(rtc, rtc->index, data[0]);
    pthread_mutex_unlock(&rtc->lock);
}

static const struct vmm_bus_ops rtc_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = rtc_read,
    .write = rtc_write,
};

const struct vmm_bus_ops *vmm_rtc_bus_ops(void)
{
    return &rtc_ops;
}

int vmm_rtc_create(struct vmm_rtc **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_rtc *rtc = calloc(1, sizeof(*rtc));
    if (!rtc)
        return -ENOMEM;
    int r = pthread_mutex_init(&rtc->lock, NULL);
    if (r) {
        free(rtc);
        return -r;
    }
    rtc->ram[RTC_REG_A] = REG_A_DEFAULT;
    rtc->ram[RTC_REG_B] = REG_B_24H;
    rtc->ram[RTC_REG_D] = REG_D_VRT;
    *out = rtc;
    return 0;
}

void vmm_rtc_destroy(struct vmm_rtc *rtc)
{
    if (!rtc)
        return;
    pthread_mutex_destroy(&rtc->lock);
    free(rtc);
}

static void rtc_free(void *rtc)
{
    vmm_rtc_destroy(rtc);
}

/* ---- snapshots: index, CMOS RAM, the guest's offset, a time being set ---- */

/* The most seconds the guest's clock may be off the host's in a restored
 * RTC: about 400 years. */
#define RTC_MAX_OFFSET (400ll * 366 * 86400)

struct rtc_image {
    uint8_t index, pad[7];
    uint8_t ram[CMOS_SIZE];
    int64_t offset;
    int32_t sec, min, hour, mday, mon, year;
};

static int rtc_freeze(void *opaque)
{
    struct vmm_rtc *rtc = opaque;
    pthread_mutex_lock(&rtc->lock);
    return 0;
}

static void rtc_thaw(void *opaque)
{
    struct vmm_rtc *rtc = opaque;
    pthread_mutex_unlock(&rtc->lock);
}

static int rtc_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vmm_rtc *rtc = opaque;
    struct rtc_image im = {
        .index = rtc->index,
        .offset = rtc->offset,
        .sec = rtc->staged.tm_sec,
        .min = rtc->staged.tm_min,
        .hour = rtc->staged.tm_hour,
        .mday = rtc->staged.tm_mday,
        .mon = rtc->staged.tm_mon,
        .year = rtc->staged.tm_year,
    };
    memcpy(im.ram, rtc->ram, sizeof(im.ram));
    snap_put(w, &im, sizeof(im));
    return 0;
}

static int rtc_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vmm_rtc *rtc = opaque;
    struct rtc_image im;
    if (snap_get(r, &im, sizeof(im)) < 0 || snap_done(r) < 0 || im.index > 0x7f ||
        im.offset > RTC_MAX_OFFSET || im.offset < -RTC_MAX_OFFSET || im.sec < 0 || im.sec > 59 ||
        im.min < 0 || im.min > 59 || im.hour < 0 || im.hour > 23 || im.mday < 0 || im.mday > 31 ||
        im.mon < 0 || im.mon > 11 || im.year < -1900 || im.year > 8100) {
        vmm_log_error("restore: malformed RTC state");
        return -EBADMSG;
    }
    pthread_mutex_lock(&rtc->lock);
    rtc->index = im.index;
    memcpy(rtc->ram, im.ram, sizeof(rtc->ram));
    rtc->offset = im.offset;
    rtc->staged = (struct tm){.tm_sec = im.sec,
                              .tm_min = im.min,
                              .tm_hour = im.hour,
                              .tm_mday = im.mday,
                              .tm_mon = im.mon,
                              .tm_year = im.year};
    pthread_mutex_unlock(&rtc->lock);
    return 0;
}

static const struct vmm_snap_part_ops rtc_snap = {
    .name = "RTC",
    .tag = SNAP_TAG_RTC,
    .freeze = rtc_freeze,
    .thaw = rtc_thaw,
    .save = rtc_save,
    .restore = rtc_restore,
};

int vmm_vm_add_rtc(struct vmm_vm *vm)
{
    if (!vm)
        return -EINVAL;
    struct vmm_rtc *rtc;
    int r = vmm_rtc_create(&rtc);
    if (r < 0)
        return r;
    r = vmm_snap_register(vm, &rtc_snap, VMM_RTC_PORT, rtc);
    if (r < 0) {
        vmm_rtc_destroy(rtc);
        return r;
    }
    const struct devices_pio_range range = {VMM_RTC_PORT, VMM_RTC_PORTS, &rtc_ops};
    r = devices_vm_attach_pio(vm, "rtc", rtc, rtc_free, &range, 1);
    if (r < 0)
        vmm_snap_unregister(vm, SNAP_TAG_RTC, VMM_RTC_PORT);
    return r;
}
