/* SPDX-License-Identifier: Apache-2.0 */
/* Finds the firmware tables the way a BIOS-booted kernel does: the ACPI RSDP
 * by scanning 0xe0000..0xfffff, the MP floating pointer by scanning the last
 * KiB of base memory and the BIOS area. Checks every checksum on the way,
 * counts the MADT's local APICs and the MP table's processors, prints both
 * and exits with the MADT count (0xf0 + n when something is wrong). */
#include "guest.h"

#define FAIL_NO_RSDP   0xf1
#define FAIL_RSDP      0xf2
#define FAIL_XSDT      0xf3
#define FAIL_NO_MADT   0xf4
#define FAIL_MADT      0xf5
#define FAIL_MPF       0xf6
#define FAIL_MPC       0xf7
#define FAIL_MISMATCH  0xf8
#define MAX_TABLE_SIZE 0x10000u

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The first 16-byte aligned copy of sig in [start, end). */
static const uint8_t *scan(uint64_t start, uint64_t end, const char *sig, size_t len)
{
    for (uint64_t a = start; a + len <= end; a += 16)
        if (memcmp((const void *)a, sig, len) == 0)
            return (const uint8_t *)a;
    return NULL;
}

/* A description table: its length is sane and its bytes sum to zero. */
static bool table_ok(const uint8_t *t, const char *sig)
{
    uint32_t len = get32(t + 4);
    return memcmp(t, sig, 4) == 0 && len >= 36 && len <= MAX_TABLE_SIZE && sum(t, len) == 0;
}

static int count_madt_lapics(unsigned *count)
{
    const uint8_t *rsdp = scan(0xe0000, 0x100000, "RSD PTR ", 8);
    if (!rsdp)
        return FAIL_NO_RSDP;
    if (sum(rsdp, 20) != 0 || rsdp[15] < 2 || get32(rsdp + 20) != 36 || sum(rsdp, 36) != 0)
        return FAIL_RSDP;
    const uint8_t *xsdt = (const uint8_t *)get64(rsdp + 24);
    if (!table_ok(xsdt, "XSDT"))
        return FAIL_XSDT;

    const uint8_t *madt = NULL;
    uint32_t entries = (get32(xsdt + 4) - 36) / 8;
    for (uint32_t i = 0; i < entries && !madt; i++) {
        const uint8_t *t = (const uint8_t *)get64(xsdt + 36 + 8 * i);
        if (memcmp(t, "APIC", 4) == 0)
            madt = t;
    }
    if (!madt)
        return FAIL_NO_MADT;
    if (!table_ok(madt, "APIC"))
        return FAIL_MADT;

    uint32_t len = get32(madt + 4);
    unsigned n = 0;
    for (uint32_t off = 44; off < len;) {
        uint8_t type = madt[off], elen = madt[off + 1];
        if (elen < 2 || off + elen > len)
            return FAIL_MADT;
        if (type == 0 && elen == 8 && (get32(madt + off + 4) & 1))
            n++;
        off += elen;
    }
    *count = n;
    return 0;
}

static int count_mp_processors(unsigned *count)
{
    const uint8_t *mpf = scan(0x9fc00, 0xa0000, "_MP_", 4);
    if (!mpf)
        mpf = scan(0xf0000, 0x100000, "_MP_", 4);
    if (!mpf || mpf[8] != 1 || sum(mpf, 16) != 0)
        return FAIL_MPF;
    const uint8_t *mpc = (const uint8_t *)(uint64_t)get32(mpf + 4);
    uint16_t len = (uint16_t)(mpc[4] | mpc[5] << 8);
    uint16_t entries = (uint16_t)(mpc[34] | mpc[35] << 8);
    if (memcmp(mpc, "PCMP", 4) != 0 || len < 44 || sum(mpc, len) != 0)
        return FAIL_MPC;

    unsigned n = 0;
    uint32_t off = 44;
    for (uint16_t i = 0; i < entries; i++) {
        uint32_t elen = mpc[off] == 0 ? 20 : 8;
        if (off + elen > len)
            return FAIL_MPC;
        if (mpc[off] == 0 && (mpc[off + 3] & 1))
            n++;
        off += elen;
    }
    *count = n;
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    unsigned lapics = 0, processors = 0;
    int r;

    if (cpu != 0)
        guest_park();
    if ((r = count_madt_lapics(&lapics)) != 0) {
        printf("firmware: ACPI tables not usable (0x%x)\n", r);
        return r;
    }
    if ((r = count_mp_processors(&processors)) != 0) {
        printf("firmware: MP table not usable (0x%x)\n", r);
        return r;
    }
    printf("firmware: MADT lists %u local APICs, MP table %u processors, %u vCPUs\n", lapics,
           processors, ncpus);
    return lapics == processors ? (int)lapics : FAIL_MISMATCH;
}
