/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the x86 firmware tables: the AML encoder, the ACPI tables
 * and the MP table, read back from malloc-backed guest memory and parsed
 * field by field; hostile machines and placements next to the good ones. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <vmm/acpi.h>

#include "check_compat.h"
#include "loader/aml.h"
#include "tables_fixture.h"

static struct fixture fx;

static void setup(void)
{
    fx_init(&fx, FX_RAM_SIZE);
}

static void teardown(void)
{
    fx_fini(&fx);
}

/* ---- AML encoder ---- */

static int encode(void (*fn)(struct aml *), uint8_t *out, size_t cap)
{
    struct aml a;
    aml_init(&a, out, cap);
    fn(&a);
    return aml_finish(&a);
}

static void enc_integers(struct aml *a)
{
    aml_integer(a, 0);
    aml_integer(a, 1);
    aml_integer(a, 0xff);
    aml_integer(a, 0x100);
    aml_integer(a, 0x10000);
    aml_integer(a, 0x100000000ull);
}

START_TEST(aml_integers_use_the_shortest_encoding)
{
    uint8_t out[64];
    static const uint8_t want[] = {0x00, 0x01, 0x0a, 0xff, 0x0b, 0x00, 0x01, 0x0c, 0x00, 0x00, 0x01,
                                   0x00, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
    ck_assert_int_eq(encode(enc_integers, out, sizeof(out)), sizeof(want));
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

static void enc_names(struct aml *a)
{
    aml_name_string(a, "_HID");
    aml_name_string(a, "\\_SB_");
    aml_name_string(a, "\\_SB.COM1");
    aml_name_string(a, "^A.B.C");
    aml_name_string(a, "X1");
}

START_TEST(aml_name_strings)
{
    uint8_t out[64];
    static const uint8_t want[] = "_HID"
                                  "\\_SB_"
                                  "\\\x2e_SB_COM1"
                                  "^\x2f\x03"
                                  "A___B___C___"
                                  "X1__";
    ck_assert_int_eq(encode(enc_names, out, sizeof(out)), sizeof(want) - 1);
    ck_assert_mem_eq(out, want, sizeof(want) - 1);
}
END_TEST

static void enc_bad_name_long(struct aml *a)
{
    aml_name_string(a, "ABCDE");
}
static void enc_bad_name_char(struct aml *a)
{
    aml_name_string(a, "ab");
}
static void enc_bad_name_digit(struct aml *a)
{
    aml_name_string(a, "1ABC");
}
static void enc_bad_name_empty(struct aml *a)
{
    aml_name_string(a, "\\_SB_..X");
}
static void enc_bad_eisaid(struct aml *a)
{
    aml_eisaid(a, "pnp0501");
}
static void enc_bad_string(struct aml *a)
{
    aml_string(a, "caf\xc3\xa9");
}
static void enc_unbalanced_end(struct aml *a)
{
    aml_end(a);
}
static void enc_unclosed(struct aml *a)
{
    aml_scope_begin(a, "\\_SB_");
}
static void enc_too_deep(struct aml *a)
{
    for (int i = 0; i <= AML_MAX_DEPTH; i++)
        aml_package_begin(a, 0);
}
static void enc_bad_method(struct aml *a)
{
    aml_method_begin(a, "_EVT", 8, false);
    aml_end(a);
}

static void enc_bad_arg(struct aml *a)
{
    aml_method_begin(a, "_EVT", 1, false);
    aml_arg(a, 7);
    aml_end(a);
}

static void enc_big_irq(struct aml *a)
{
    aml_resource_template_begin(a);
    aml_irq_noflags(a, 16);
    aml_end(a);
}

START_TEST(aml_refuses_bad_input)
{
    uint8_t out[64];
    void (*bad[])(struct aml *) = {enc_bad_name_long,  enc_bad_name_char, enc_bad_name_digit,
                                   enc_bad_name_empty, enc_bad_eisaid,    enc_bad_string,
                                   enc_unbalanced_end, enc_unclosed,      enc_too_deep,
                                   enc_big_irq,        enc_bad_method,    enc_bad_arg};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(encode(bad[i], out, sizeof(out)) == -EINVAL, "case %zu", i);
}
END_TEST

static void enc_eisaid(struct aml *a)
{
    aml_eisaid(a, "PNP0303");
    aml_eisaid(a, "PNP0501");
}

START_TEST(aml_eisaid_compresses)
{
    uint8_t out[16];
    static const uint8_t want[] = {0x0c, 0x41, 0xd0, 0x03, 0x03, 0x0c, 0x41, 0xd0, 0x05, 0x01};
    ck_assert_int_eq(encode(enc_eisaid, out, sizeof(out)), sizeof(want));
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

/* A package whose contents are exactly n bytes: n - 1 Zero elements after
 * the NumElements byte. */
static unsigned pkg_bytes;
static void enc_pkg(struct aml *a)
{
    aml_package_begin(a, (uint8_t)(pkg_bytes - 1));
    for (unsigned i = 0; i + 1 < pkg_bytes; i++)
        aml_integer(a, 0);
    aml_end(a);
}

START_TEST(aml_pkg_length_grows_at_its_boundaries)
{
    static uint8_t out[8192];
    struct {
        unsigned contents;
        unsigned lead_bytes;
    } cases[] = {{62, 1}, {63, 2}, {4093, 2}, {4094, 3}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pkg_bytes = cases[i].contents;
        int n = encode(enc_pkg, out, sizeof(out));
        ck_assert_int_eq(n, 1 + cases[i].lead_bytes + cases[i].contents);
        ck_assert_uint_eq(out[0], 0x12);
        unsigned total = cases[i].contents + cases[i].lead_bytes;
        unsigned lead = out[1];
        ck_assert_uint_eq(lead >> 6, cases[i].lead_bytes - 1);
        unsigned decoded = cases[i].lead_bytes == 1 ? lead & 0x3f : lead & 0x0f;
        for (unsigned b = 1; b < cases[i].lead_bytes; b++)
            decoded |= (unsigned)out[1 + b] << (4 + 8 * (b - 1));
        ck_assert_uint_eq(decoded, total);
    }
}
END_TEST

static void enc_template(struct aml *a)
{
    aml_name(a, "_CRS");
    aml_resource_template_begin(a);
    aml_io(a, 0x3f8, 8);
    aml_irq_noflags(a, 4);
    aml_memory32_fixed(a, true, 0xd0000000, 0x1000);
    aml_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, 16);
    aml_end(a);
}

START_TEST(aml_resource_template_has_size_and_checksum)
{
    uint8_t out[64];
    int n = encode(enc_template, out, sizeof(out));
    /* Name _CRS, BufferOp, PkgLength, BytePrefix size, descriptors */
    unsigned descr = 8 + 3 + 12 + 9 + 2;
    ck_assert_int_eq(n, 5 + 1 + 1 + 2 + (int)descr);
    ck_assert_mem_eq(out, "\x08_CRS\x11", 6);
    ck_assert_uint_eq(out[6], 1 + 2 + descr);
    ck_assert_uint_eq(out[7], 0x0a);
    ck_assert_uint_eq(out[8], descr);
    const uint8_t *d = out + 9;
    static const uint8_t io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};
    static const uint8_t irq[] = {0x22, 0x10, 0x00};
    static const uint8_t mem[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x00,
                                  0x00, 0xd0, 0x00, 0x10, 0x00, 0x00};
    static const uint8_t ext[] = {0x89, 0x06, 0x00, 0x03, 0x01, 0x10, 0x00, 0x00, 0x00};
    ck_assert_mem_eq(d, io, sizeof(io));
    ck_assert_mem_eq(d + 8, irq, sizeof(irq));
    ck_assert_mem_eq(d + 11, mem, sizeof(mem));
    ck_assert_mem_eq(d + 23, ext, sizeof(ext));
    ck_assert_uint_eq(d[32], 0x79);
    ck_assert_uint_eq(byte_sum(d, descr), 0);
}
END_TEST

START_TEST(aml_full_buffer_is_sticky_enospc)
{
    uint8_t out[64];
    for (size_t cap = 0; cap < 43; cap++) {
        memset(out, 0xee, sizeof(out));
        ck_assert_int_eq(encode(enc_template, out, cap), -ENOSPC);
        for (size_t i = cap; i < sizeof(out); i++)
            ck_assert_uint_eq(out[i], 0xee);
    }
}
END_TEST

/* ---- ACPI ---- */

static const uint8_t *guest(uint64_t gpa)
{
    ck_assert_uint_lt(gpa, fx.ram_size);
    return fx.ram + gpa;
}

/* A description table at gpa with the signature, a sane length and a zero
 * byte sum, lying inside [lo, hi). */
static const uint8_t *sdt(uint64_t gpa, const char *sig, uint64_t lo, uint64_t hi)
{
    const uint8_t *t = guest(gpa);
    uint32_t len = get32(t + 4);
    ck_assert_mem_eq(t, sig, 4);
    ck_assert_uint_ge(len, 36);
    ck_assert_uint_ge(gpa, lo);
    ck_assert_uint_le(gpa + len, hi);
    ck_assert_uint_eq(byte_sum(t, len), 0);
    ck_assert_mem_eq(t + 10, "LIBVMM", 6);
    return t;
}

struct madt_counts {
    unsigned lapics, ioapics, isos, nmis, other;
    uint8_t lapic_ids[256];
};

static void walk_madt(const uint8_t *madt, struct madt_counts *c)
{
    uint32_t len = get32(madt + 4);
    memset(c, 0, sizeof(*c));
    uint32_t off = 44;
    while (off < len) {
        const uint8_t *e = madt + off;
        ck_assert_uint_ge(e[1], 2);
        ck_assert_uint_le(off + e[1], len);
        switch (e[0]) {
        case 0:
            ck_assert_uint_eq(e[1], 8);
            ck_assert_uint_eq(e[2], e[3]);
            ck_assert_uint_eq(get32(e + 4), 1); /* enabled */
            c->lapic_ids[c->lapics++] = e[3];
            break;
        case 1:
            ck_assert_uint_eq(e[1], 12);
            c->ioapics++;
            break;
        case 2:
            ck_assert_uint_eq(e[1], 10);
            c->isos++;
            break;
        case 4:
            ck_assert_uint_eq(e[1], 6);
            c->nmis++;
            break;
        default:
            c->other++;
        }
        off += e[1];
    }
    ck_assert_uint_eq(off, len);
}

START_TEST(acpi_tables_read_back)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    int n = vmm_acpi_write(fx.mem, &m, NULL, &res);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(res.len, (uint64_t)n);
    ck_assert_uint_eq(res.rsdp, VMM_X86_ACPI_TABLES);
    uint64_t lo = VMM_X86_ACPI_TABLES, hi = VMM_X86_ACPI_TABLES + res.len;
    ck_assert_uint_le(hi, VMM_X86_ACPI_TABLES_END);
    ck_assert(fx_untouched_outside(&fx, lo, hi));

    /* RSDP */
    const uint8_t *rsdp = guest(res.rsdp);
    ck_assert_mem_eq(rsdp, "RSD PTR ", 8);
    ck_assert_uint_eq(byte_sum(rsdp, 20), 0);
    ck_assert_uint_eq(rsdp[15], 2);
    ck_assert_uint_eq(get32(rsdp + 20), 36);
    ck_assert_uint_eq(byte_sum(rsdp, 36), 0);
    ck_assert_uint_eq(get64(rsdp + 24), res.xsdt);

    /* XSDT -> FADT, MADT */
    const uint8_t *xsdt = sdt(res.xsdt, "XSDT", lo, hi);
    ck_assert_uint_eq(get32(xsdt + 4), 36 + 16);
    ck_assert_uint_eq(get64(xsdt + 36), res.fadt);
    ck_assert_uint_eq(get64(xsdt + 44), res.madt);

    /* FADT */
    const uint8_t *fadt = sdt(res.fadt, "FACP", lo, hi);
    ck_assert_uint_eq(get32(fadt + 4), 276);
    ck_assert_uint_eq(fadt[8], 6);
    ck_assert_uint_eq(fadt[131] & 0xf, 5);
    ck_assert_uint_eq(get32(fadt + 36), 0); /* no FACS */
    ck_assert_uint_eq(get32(fadt + 40), 0); /* DSDT: X_DSDT only */
    ck_assert_uint_eq(get64(fadt + 140), res.dsdt);
    ck_assert_uint_eq(get32(fadt + 112), (1u << 20) | (1u << 10)); /* HW_REDUCED, RESET_REG_SUP */
    ck_assert_uint_eq(get16(fadt + 109), (1u << 1) | (1u << 2) | (1u << 3)); /* 8042, no VGA/MSI */
    ck_assert_uint_eq(fadt[108], 0x32); /* CENTURY: the RTC's CMOS register */
    ck_assert_uint_eq(fadt[108], VMM_ACPI_RTC_CENTURY);
    static const uint8_t reset[12] = {1, 8, 0, 1, 0xc1, 0x03};
    static const uint8_t sleep[12] = {1, 8, 0, 1, 0xc0, 0x03};
    ck_assert_mem_eq(fadt + 116, reset, 12);
    ck_assert_uint_eq(fadt[128], VMM_ACPI_RESET_VALUE);
    ck_assert_mem_eq(fadt + 244, sleep, 12);
    ck_assert_mem_eq(fadt + 256, sleep, 12);
    ck_assert_mem_eq(fadt + 268, "LIBVMM\0\0", 8);

    /* MADT */
    const uint8_t *madt = sdt(res.madt, "APIC", lo, hi);
    ck_assert_uint_eq(get32(madt + 36), VMM_X86_LAPIC_ADDR);
    ck_assert_uint_eq(get32(madt + 40), 0);
    struct madt_counts c;
    walk_madt(madt, &c);
    ck_assert_uint_eq(c.lapics, 2);
    ck_assert_uint_eq(c.lapic_ids[0], 0);
    ck_assert_uint_eq(c.lapic_ids[1], 1);
    ck_assert_uint_eq(c.ioapics, 1);
    ck_assert_uint_eq(c.isos, 1);
    ck_assert_uint_eq(c.nmis, 1);
    ck_assert_uint_eq(c.other, 0);
    const uint8_t *io = madt + 44 + 2 * 8;
    ck_assert_uint_eq(io[0], 1);
    ck_assert_uint_eq(io[2], 2); /* default IOAPIC id: nr_vcpus */
    ck_assert_uint_eq(get32(io + 4), VMM_X86_IOAPIC_ADDR);
    ck_assert_uint_eq(get32(io + 8), 0);
    const uint8_t *iso = io + 12;
    static const uint8_t want_iso[10] = {2, 10, 0, 0, 2, 0, 0, 0, 5, 0};
    ck_assert_mem_eq(iso, want_iso, 10);
    static const uint8_t want_nmi[6] = {4, 6, 0xff, 0, 0, 1};
    ck_assert_mem_eq(iso + 10, want_nmi, 6);

    /* DSDT */
    const uint8_t *dsdt = sdt(res.dsdt, "DSDT", lo, hi);
    uint32_t dlen = get32(dsdt + 4);
    ck_assert_uint_eq(dsdt[8], 2);
    ck_assert(contains(dsdt, dlen, "_SB_", 4));
    ck_assert(contains(dsdt, dlen, "\x0dLNRO0005", 10));
    ck_assert(contains(dsdt, dlen, "\x0c\x41\xd0\x05\x01", 5)); /* PNP0501 */
    ck_assert(contains(dsdt, dlen, "\x0c\x41\xd0\x0b\x00", 5)); /* PNP0B00 */
    ck_assert(contains(dsdt, dlen, "\x0c\x41\xd0\x03\x03", 5)); /* PNP0303 */
    ck_assert(contains(dsdt, dlen, "\x08\\_S5_\x12\x07\x04\x0a\x05\x00\x00\x00", 13));
    ck_assert(contains(dsdt, dlen, "COM1", 4));
    ck_assert(contains(dsdt, dlen, "COM2", 4));
    ck_assert(contains(dsdt, dlen, "VR02", 4));
    /* virtio 2: Memory32Fixed(ReadWrite, 0xd0002000, 0x1000), Interrupt {16} */
    static const uint8_t vmem[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x20, 0x00, 0xd0,
                                   0x00, 0x10, 0x00, 0x00, 0x89, 0x06, 0x00, 0x03,
                                   0x01, 0x10, 0x00, 0x00, 0x00, 0x79};
    ck_assert(contains(dsdt, dlen, vmem, sizeof(vmem)));
    /* COM1: IO(Decode16, 0x3f8, 0x3f8, 1, 8), IRQNoFlags {4} */
    static const uint8_t com1[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03,
                                   0x01, 0x08, 0x22, 0x10, 0x00, 0x79};
    ck_assert(contains(dsdt, dlen, com1, sizeof(com1)));
    /* RTC: IO 0x70, length 2 */
    static const uint8_t rtc[] = {0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x79};
    ck_assert(contains(dsdt, dlen, rtc, sizeof(rtc)));
}
END_TEST

START_TEST(acpi_optional_devices_follow_the_machine)
{
    struct vmm_machine m = fx_machine(fx.mem, 1);
    m.acpi_pm = false;
    m.rtc = false;
    m.i8042 = false;
    m.nr_serial = 0;
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    const uint8_t *fadt = guest(res.fadt);
    ck_assert_uint_eq(get32(fadt + 112), 1u << 20);
    ck_assert_uint_eq(get16(fadt + 109), (1u << 2) | (1u << 3) | (1u << 5));
    ck_assert_uint_eq(fadt[108], 0); /* no RTC, no CENTURY */
    static const uint8_t zero[12];
    ck_assert_mem_eq(fadt + 116, zero, 12);
    ck_assert_uint_eq(fadt[128], 0);
    ck_assert_mem_eq(fadt + 244, zero, 12);
    ck_assert_mem_eq(fadt + 256, zero, 12);
    const uint8_t *dsdt = guest(res.dsdt);
    uint32_t dlen = get32(dsdt + 4);
    ck_assert(!contains(dsdt, dlen, "_S5_", 4));
    ck_assert(!contains(dsdt, dlen, "\x41\xd0\x05\x01", 4));
    ck_assert(!contains(dsdt, dlen, "\x41\xd0\x0b\x00", 4));
    ck_assert(!contains(dsdt, dlen, "\x41\xd0\x03\x03", 4));
    ck_assert(contains(dsdt, dlen, "LNRO0005", 8));
    ck_assert_uint_eq(byte_sum(dsdt, dlen), 0);
}
END_TEST

START_TEST(acpi_serial_above_isa_gets_an_extended_interrupt)
{
    struct vmm_machine m = fx_machine(fx.mem, 1);
    m.serial[1].gsi = 20;
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    const uint8_t *dsdt = guest(res.dsdt);
    static const uint8_t com2[] = {0x47, 0x01, 0xf8, 0x02, 0xf8, 0x02, 0x01, 0x08, 0x89,
                                   0x06, 0x00, 0x03, 0x01, 0x14, 0x00, 0x00, 0x00, 0x79};
    ck_assert(contains(dsdt, get32(dsdt + 4), com2, sizeof(com2)));
}
END_TEST

START_TEST(acpi_madt_has_one_lapic_per_vcpu)
{
    static const unsigned counts[] = {0, 1, 3, 64, VMM_ACPI_MAX_VCPUS};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        struct vmm_machine m = fx_machine(fx.mem, counts[i]);
        struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
        ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
        struct madt_counts c;
        const uint8_t *madt = sdt(res.madt, "APIC", res.rsdp, res.rsdp + res.len);
        walk_madt(madt, &c);
        unsigned want = counts[i] ? counts[i] : 1; /* zero means one vCPU */
        ck_assert_uint_eq(c.lapics, want);
        for (unsigned id = 0; id < want; id++)
            ck_assert_uint_eq(c.lapic_ids[id], id);
        /* the default IOAPIC id follows the local APIC ids */
        ck_assert_uint_eq(madt[44 + 8 * want + 2], want);
    }
}
END_TEST

START_TEST(acpi_machine_overrides)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    m.lapic_addr = 0xfee10000;
    m.ioapic_addr = 0xfec10000;
    m.ioapic_id = 9;
    m.ioapic_pins = 48;
    m.virtio[0].gsi = 47;
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    const uint8_t *madt = guest(res.madt);
    ck_assert_uint_eq(get32(madt + 36), 0xfee10000);
    const uint8_t *io = madt + 44 + 2 * 8;
    ck_assert_uint_eq(io[2], 9);
    ck_assert_uint_eq(get32(io + 4), 0xfec10000);
}
END_TEST

START_TEST(acpi_build_into_a_host_buffer)
{
    struct vmm_machine m = fx_machine(NULL, 4);
    static uint8_t buf[0x20000];
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    memset(buf, 0xee, sizeof(buf));
    int n = vmm_acpi_build(&m, 0x7000, buf, sizeof(buf), &res);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(res.rsdp, 0x7000);
    ck_assert_uint_eq(get64(buf + 24), res.xsdt);
    ck_assert_uint_eq(get64(buf + (res.xsdt - 0x7000) + 36), res.fadt);
    /* Nothing written past n; one assertion for the whole tail (Check
     * records every assertion that passes, which is slow by the 100 000). */
    size_t past = (size_t)n;
    while (past < sizeof(buf) && buf[past] == 0xee)
        past++;
    ck_assert_msg(past == sizeof(buf), "byte %zu past the tables was written", past);

    /* The same machine built twice gives the same bytes. */
    static uint8_t again[0x20000];
    ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, again, sizeof(again), NULL), n);
    ck_assert_mem_eq(buf, again, (size_t)n);

    /* Too small: -ENOSPC at every size below n, and the buffer untouched. */
    for (size_t size = 0; size < (size_t)n; size += 37) {
        memset(again, 0xee, sizeof(again));
        ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, again, size, NULL), -ENOSPC);
        ck_assert_uint_eq(again[0], 0xee);
    }
    ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, again, (size_t)n, NULL), n);
    ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, NULL, sizeof(buf), NULL), -EINVAL);
    ck_assert_int_eq(vmm_acpi_build(&m, 0x7008, buf, sizeof(buf), NULL), -EINVAL);
    ck_assert_int_eq(vmm_acpi_build(&m, 0xfffffff0, buf, sizeof(buf), NULL), -EINVAL);
    /* On failure res is left alone: tables that would reach past 4 GiB. */
    struct vmm_acpi_result keep = VMM_INIT(struct vmm_acpi_result);
    memset(&keep, 0x5a, sizeof(keep));
    keep.size = sizeof(keep);
    res = keep;
    ck_assert_int_eq(vmm_acpi_build(&m, 0xfffffff0, buf, sizeof(buf), &res), -EINVAL);
    ck_assert_mem_eq(&res, &keep, sizeof(res));
    ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, buf, 16, &res), -ENOSPC);
    ck_assert_mem_eq(&res, &keep, sizeof(res));
}
END_TEST

START_TEST(tables_options_and_results_check_their_size)
{
    /* Growth convention (vmm/abi.h): options or a result whose .size is 0 or
     * past the library's struct are refused with -EINVAL before anything is
     * written; an older, shorter struct is read (or filled) that far only. */
    struct vmm_machine m = fx_machine(fx.mem, 2);
    struct vmm_acpi_options ao = VMM_INIT(struct vmm_acpi_options, .addr = 0x80000, .end = 0x90000);
    struct vmm_acpi_result ar = VMM_INIT(struct vmm_acpi_result);
    struct vmm_mptable_options mo = VMM_INIT(struct vmm_mptable_options, .addr = 0x9fc00);
    struct vmm_mptable_result mr = VMM_INIT(struct vmm_mptable_result);
    static uint8_t buf[0x20000];
    for (int bad = 0; bad < 2; bad++) {
        uint32_t a = bad ? sizeof(ao) + 8 : 0, r = bad ? sizeof(ar) + 8 : 0;
        ao.size = a;
        ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &ao, NULL), -EINVAL);
        ao.size = sizeof(ao);
        ar.size = r;
        ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &ao, &ar), -EINVAL);
        ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, buf, sizeof(buf), &ar), -EINVAL);
        mo.size = bad ? sizeof(mo) + 8 : 0;
        ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &mo, NULL), -EINVAL);
        mo.size = sizeof(mo);
        mr.size = bad ? sizeof(mr) + 8 : 0;
        ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &mo, &mr), -EINVAL);
        ck_assert_int_eq(vmm_mptable_build(&m, 0x7000, buf, sizeof(buf), &mr), -EINVAL);
    }
    for (int bad = 0; bad < 2; bad++) { /* the machine itself */
        m.size = bad ? sizeof(m) + 8 : 0;
        ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, NULL, NULL), -EINVAL);
        ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, NULL, NULL), -EINVAL);
        ck_assert_int_eq(vmm_acpi_build(&m, 0x7000, buf, sizeof(buf), NULL), -EINVAL);
    }
    m.size = sizeof(m);
    ck_assert(fx_untouched(&fx)); /* guest memory: nothing written */

    /* Older structs: options without .end (its default applies), results
     * without their last field (left as the caller had it). */
    ao.size = offsetof(struct vmm_acpi_options, end);
    ao.end = 0x80001; /* past the older struct: not read */
    memset(&ar, 0x5a, sizeof(ar));
    ar.size = offsetof(struct vmm_acpi_result, len);
    int n = vmm_acpi_write(fx.mem, &m, &ao, &ar);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(ar.size, offsetof(struct vmm_acpi_result, len));
    ck_assert_uint_eq(ar.rsdp, 0x80000);
    ck_assert_uint_eq(ar.len, 0x5a5a5a5a5a5a5a5aull);
    memset(&mr, 0x5a, sizeof(mr));
    mr.size = offsetof(struct vmm_mptable_result, entries);
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, &mo, &mr), 0);
    ck_assert_uint_eq(mr.floating, 0x9fc00);
    ck_assert_uint_eq(mr.entries, 0x5a5a5a5au);
}
END_TEST

START_TEST(acpi_placement_options)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    struct vmm_acpi_options o = {
        .size = sizeof(struct vmm_acpi_options), .addr = 0x80000, .end = 0x90000};
    int n = vmm_acpi_write(fx.mem, &m, &o, &res);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(res.rsdp, 0x80000);
    ck_assert_mem_eq(fx.ram + 0x80000, "RSD PTR ", 8);
    ck_assert(fx_untouched_outside(&fx, 0x80000, 0x80000 + (uint64_t)n));

    /* The default range is roomy, but not endless. */
    struct vmm_acpi_options tight = {.size = sizeof(struct vmm_acpi_options), .addr = 0xfff00};
    ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &tight, NULL), -ENOSPC);
    struct vmm_acpi_options tiny = {
        .size = sizeof(struct vmm_acpi_options), .addr = 0x80000, .end = 0x80000 + (uint64_t)n - 1};
    ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &tiny, NULL), -ENOSPC);
    struct vmm_acpi_options empty = {
        .size = sizeof(struct vmm_acpi_options), .addr = 0x80000, .end = 0x80000};
    ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &empty, NULL), -EINVAL);
    struct vmm_acpi_options unaligned = {
        .size = sizeof(struct vmm_acpi_options), .addr = 0x80004, .end = 0x90000};
    ck_assert_int_eq(vmm_acpi_write(fx.mem, &m, &unaligned, NULL), -EINVAL);
    ck_assert(fx_untouched_outside(&fx, 0x80000, 0x80000 + (uint64_t)n));
}
END_TEST

/* Hostile machines: each case edits a good machine one way. */
static const char *const bad_machines[] = {
    "256 vCPUs",
    "5 serial",
    "33 virtio",
    "huge nr_virtio",
    "9 reserved",
    "gsi = pins",
    "gsi past pins",
    "gsi 2",
    "gsi 0",
    "port 0",
    "port wraps",
    "virtio size 0",
    "virtio past 4G",
    "virtio wraps",
    "8 pins",
    "300 pins",
    "lapic past 4G",
    "ioapic past 4G",
    "reserved wraps",
    "ioapic id = lapic id",
    "vmgenid misaligned",
    "vmgenid gsi 2",
    "vmgenid gsi past pins",
    "vmgenid wraps",
    "vmgenid in the tables",
};

static void break_machine(struct vmm_machine *m, unsigned i)
{
    switch (i) {
    case 0:
        m->nr_vcpus = 256;
        break;
    case 1:
        m->nr_serial = 5;
        break;
    case 2:
        m->nr_virtio = 33;
        break;
    case 3:
        m->nr_virtio = 0xffffffffu;
        break;
    case 4:
        m->nr_reserved = 9;
        break;
    case 5:
        m->virtio[1].gsi = 24;
        break;
    case 6:
        m->serial[0].gsi = 1000;
        break;
    case 7:
        m->serial[0].gsi = 2;
        break;
    case 8:
        m->virtio[0].gsi = 0;
        break;
    case 9:
        m->serial[1].port = 0;
        break;
    case 10:
        m->serial[1].port = 0xfffc;
        break;
    case 11:
        m->virtio[2].size = 0;
        break;
    case 12:
        m->virtio[2].base = 0xfffff800;
        break;
    case 13:
        m->virtio[2].base = UINT64_MAX - 0x10;
        break;
    case 14:
        m->ioapic_pins = 8;
        break;
    case 15:
        m->ioapic_pins = 300;
        break;
    case 16:
        m->lapic_addr = 1ull << 32;
        break;
    case 17:
        m->ioapic_addr = 0xfffffff0;
        break;
    case 18:
        m->nr_reserved = 1;
        m->reserved[0].base = UINT64_MAX;
        m->reserved[0].size = 2;
        break;
    case 19:
        m->ioapic_id = 1; /* vCPU 1's local APIC id */
        break;
    case 20:
        m->vmgenid_addr = VMM_X86_VMGENID + 4;
        m->vmgenid_gsi = 9;
        break;
    case 21:
        m->vmgenid_addr = VMM_X86_VMGENID;
        m->vmgenid_gsi = 2;
        break;
    case 22:
        m->vmgenid_addr = VMM_X86_VMGENID;
        m->vmgenid_gsi = 24;
        break;
    case 23:
        m->vmgenid_addr = UINT64_MAX - 7;
        m->vmgenid_gsi = 9;
        break;
    case 24:
        m->vmgenid_addr = VMM_X86_ACPI_TABLES + 0x40; /* where the XSDT goes */
        m->vmgenid_gsi = 9;
        break;
    }
}

/* Every hostile machine fails with -EINVAL and writes nothing. */
START_TEST(acpi_refuses_bad_machines)
{
    for (unsigned i = 0; i < sizeof(bad_machines) / sizeof(bad_machines[0]); i++) {
        struct vmm_machine m = fx_machine(fx.mem, 2);
        break_machine(&m, i);
        const char *what = bad_machines[i];
        ck_assert_msg(vmm_acpi_write(fx.mem, &m, NULL, NULL) == -EINVAL, "ACPI: %s", what);
        /* The MP table does not describe virtio windows, nor the VMGenID. */
        bool mp_ok =
            strcmp(what, "virtio past 4G") == 0 || strcmp(what, "vmgenid in the tables") == 0;
        int mp = vmm_mptable_write(fx.mem, &m, NULL, NULL);
        ck_assert_msg(mp_ok ? mp > 0 : mp == -EINVAL, "MP: %s: %d", what, mp);
        if (mp > 0)
            memset(fx.ram, FX_CANARY, fx.ram_size);
        ck_assert_msg(fx_untouched(&fx), "%s wrote to guest memory", what);
    }
    struct vmm_machine m = fx_machine(fx.mem, 2);
    ck_assert_int_eq(vmm_acpi_write(NULL, &m, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_acpi_write(fx.mem, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_acpi_build(NULL, 0xe0000, fx.ram, 4096, NULL), -EINVAL);
    ck_assert_int_eq(vmm_mptable_write(NULL, &m, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_mptable_write(fx.mem, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_mptable_build(NULL, 0x9fc00, fx.ram, 4096, NULL), -EINVAL);
    ck_assert(fx_untouched(&fx));
}
END_TEST

START_TEST(tables_outside_guest_memory_are_efault)
{
    struct fixture small;
    /* RAM ends inside the ACPI range: the tables would cross its end. */
    fx_init(&small, 0xe0100);
    struct vmm_machine m = fx_machine(small.mem, 2);
    ck_assert_int_eq(vmm_acpi_write(small.mem, &m, NULL, NULL), -EFAULT);
    struct vmm_mptable_options mo = {
        .size = sizeof(struct vmm_mptable_options), .addr = 0xe0000, .end = 0xe0400};
    ck_assert_int_eq(vmm_mptable_write(small.mem, &m, &mo, NULL), -EFAULT);
    ck_assert(fx_untouched(&small));
    fx_fini(&small);

    /* No RAM at all there. */
    fx_init(&small, 0x80000);
    m.mem = small.mem;
    ck_assert_int_eq(vmm_acpi_write(small.mem, &m, NULL, NULL), -EFAULT);
    ck_assert_int_eq(vmm_mptable_write(small.mem, &m, NULL, NULL), -EFAULT);
    ck_assert(fx_untouched(&small));
    fx_fini(&small);
}
END_TEST

START_TEST(tables_on_read_only_memory_are_erofs)
{
    struct vmm_memory *mem;
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    struct vmm_region_config rom = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0,
                                    .len = 1 << 20,
                                    .flags = VMM_MEMORY_F_READONLY};
    ck_assert_int_ge(vmm_memory_add_region(mem, &rom), 0);
    struct vmm_machine m = fx_machine(mem, 1);
    ck_assert_int_eq(vmm_acpi_write(mem, &m, NULL, NULL), -EROFS);
    ck_assert_int_eq(vmm_mptable_write(mem, &m, NULL, NULL), -EROFS);
    vmm_memory_destroy(mem);
}
END_TEST

/* ---- MP table ---- */

struct mp_counts {
    unsigned processors, bsps, buses, ioapics, iointrs, lintrs;
    int pin_of_irq[256]; /* -1: no entry */
    unsigned entries_of_irq[256];
    uint16_t flags_of_irq[256];
};

/* Parse the table at gpa; check the floating pointer, header and checksums. */
static void parse_mp(uint64_t gpa, struct mp_counts *c, uint8_t ioapic_id)
{
    const uint8_t *mpf = guest(gpa);
    ck_assert_mem_eq(mpf, "_MP_", 4);
    ck_assert_uint_eq(byte_sum(mpf, 16), 0);
    ck_assert_uint_eq(mpf[8], 1);
    ck_assert_uint_eq(mpf[9], 4);
    ck_assert_uint_eq(mpf[11], 0); /* a configuration table follows */
    ck_assert_uint_eq(mpf[12], 0); /* virtual wire */
    uint32_t table = get32(mpf + 4);
    ck_assert_uint_eq(table, gpa + 16);

    const uint8_t *mpc = guest(table);
    uint16_t len = get16(mpc + 4);
    ck_assert_mem_eq(mpc, "PCMP", 4);
    ck_assert_uint_eq(mpc[6], 4);
    ck_assert_uint_eq(byte_sum(mpc, len), 0);
    ck_assert_uint_eq(get32(mpc + 36), VMM_X86_LAPIC_ADDR);
    ck_assert_uint_eq(get16(mpc + 40), 0); /* no extended table */

    memset(c, 0, sizeof(*c));
    for (int i = 0; i < 256; i++)
        c->pin_of_irq[i] = -1;
    uint16_t count = get16(mpc + 34);
    uint32_t off = 44;
    int last_type = 0;
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *e = mpc + off;
        ck_assert_int_ge(e[0], last_type); /* entries sorted by type */
        last_type = e[0];
        switch (e[0]) {
        case 0:
            ck_assert_uint_eq(e[1], c->processors);
            ck_assert_uint_eq(e[3] & 1, 1);
            if (e[3] & 2)
                c->bsps++;
            ck_assert_uint_eq(!!(e[3] & 2), e[1] == 0);
            c->processors++;
            off += 20;
            continue;
        case 1:
            ck_assert_mem_eq(e + 2, "ISA   ", 6);
            c->buses++;
            break;
        case 2:
            ck_assert_uint_eq(e[1], ioapic_id);
            ck_assert_uint_eq(e[3], 1);
            ck_assert_uint_eq(get32(e + 4), VMM_X86_IOAPIC_ADDR);
            c->ioapics++;
            break;
        case 3:
            ck_assert_uint_eq(e[1], 0); /* INT */
            ck_assert_uint_eq(e[4], 0); /* ISA */
            ck_assert_uint_eq(e[6], ioapic_id);
            c->pin_of_irq[e[5]] = e[7];
            c->entries_of_irq[e[5]]++;
            c->flags_of_irq[e[5]] = get16(e + 2);
            c->iointrs++;
            break;
        case 4:
            ck_assert_uint_eq(e[6], 0xff);
            ck_assert_uint_eq(e[7], c->lintrs);
            ck_assert_uint_eq(e[1], c->lintrs == 0 ? 3 : 1); /* ExtINT, NMI */
            c->lintrs++;
            break;
        default:
            ck_abort_msg("unknown MP entry type %u", e[0]);
        }
        off += 8;
    }
    ck_assert_uint_eq(off, len);
}

START_TEST(mptable_reads_back)
{
    struct vmm_machine m = fx_machine(fx.mem, 3);
    m.nr_virtio = 4;
    m.virtio[3] = m.virtio[2]; /* a second device on GSI 16: one entry */
    m.virtio[3].base += 0x1000;
    struct vmm_mptable_result res = VMM_INIT(struct vmm_mptable_result);
    int n = vmm_mptable_write(fx.mem, &m, NULL, &res);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(res.floating, VMM_X86_MPTABLE);
    ck_assert_uint_eq(res.table, VMM_X86_MPTABLE + 16);
    ck_assert_uint_eq(res.len, (uint64_t)n);
    ck_assert_uint_le(VMM_X86_MPTABLE + res.len, VMM_X86_MPTABLE_END);
    ck_assert(fx_untouched_outside(&fx, VMM_X86_MPTABLE, VMM_X86_MPTABLE + res.len));

    struct mp_counts c;
    parse_mp(res.floating, &c, 3);
    ck_assert_uint_eq(c.processors, 3);
    ck_assert_uint_eq(c.bsps, 1);
    ck_assert_uint_eq(c.buses, 1);
    ck_assert_uint_eq(c.ioapics, 1);
    ck_assert_uint_eq(c.lintrs, 2);
    ck_assert_uint_eq(c.iointrs, 15 + 1);
    ck_assert_uint_eq(res.entries, 3 + 1 + 1 + 16 + 2);
    ck_assert_int_eq(c.pin_of_irq[0], 2);
    ck_assert_int_eq(c.pin_of_irq[2], -1);
    for (int irq = 1; irq < 16; irq++) {
        if (irq != 2) {
            ck_assert_int_eq(c.pin_of_irq[irq], irq);
            ck_assert_uint_eq(c.flags_of_irq[irq], 0);
        }
    }
    ck_assert_int_eq(c.pin_of_irq[16], 16);
    ck_assert_uint_eq(c.entries_of_irq[16], 1);
    ck_assert_uint_eq(c.flags_of_irq[16], 0x5); /* edge, active high */
}
END_TEST

START_TEST(mptable_counts_and_space)
{
    /* 40 vCPUs fit the default KiB when no device GSI is above 15, 41 do not. */
    struct vmm_machine m = fx_machine(fx.mem, 40);
    m.nr_virtio = 2;
    struct vmm_mptable_result res = VMM_INIT(struct vmm_mptable_result);
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, NULL, &res), 0);
    struct mp_counts c;
    parse_mp(res.floating, &c, 40);
    ck_assert_uint_eq(c.processors, 40);
    ck_assert_uint_le(res.floating + res.len, VMM_X86_MPTABLE_END);

    memset(fx.ram, FX_CANARY, fx.ram_size);
    m.nr_vcpus = 41;
    ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, NULL, NULL), -ENOSPC);
    ck_assert(fx_untouched(&fx));

    /* ... and a larger end holds every vCPU the table can name. */
    m.nr_vcpus = VMM_MPTABLE_MAX_VCPUS;
    struct vmm_mptable_options big = {.size = sizeof(struct vmm_mptable_options), .end = 0xe0000};
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, &big, &res), 0);
    parse_mp(res.floating, &c, 255);
    ck_assert_uint_eq(c.processors, VMM_MPTABLE_MAX_VCPUS);
    ck_assert_uint_eq(c.bsps, 1);

    m.nr_vcpus = VMM_MPTABLE_MAX_VCPUS + 1;
    ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &big, NULL), -EINVAL);

    /* A single vCPU (zero means one). */
    m.nr_vcpus = 0;
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, NULL, &res), 0);
    parse_mp(res.floating, &c, 1);
    ck_assert_uint_eq(c.processors, 1);
}
END_TEST

START_TEST(mptable_placement)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    struct vmm_mptable_options o = {
        .size = sizeof(struct vmm_mptable_options), .addr = 0xf0000, .end = 0x100000};
    struct vmm_mptable_result res = VMM_INIT(struct vmm_mptable_result);
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, &o, &res), 0);
    struct mp_counts c;
    parse_mp(0xf0000, &c, 2);
    ck_assert_uint_eq(c.processors, 2);

    struct vmm_mptable_options unaligned = {.size = sizeof(struct vmm_mptable_options),
                                            .addr = 0x9fc08};
    ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &unaligned, NULL), -EINVAL);
    struct vmm_mptable_options past = {
        .size = sizeof(struct vmm_mptable_options), .addr = 0xa0000, .end = 0x9fc00};
    ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &past, NULL), -EINVAL);
    struct vmm_mptable_options small = {
        .size = sizeof(struct vmm_mptable_options), .addr = 0x9fc00, .end = 0x9fc40};
    ck_assert_int_eq(vmm_mptable_write(fx.mem, &m, &small, NULL), -ENOSPC);

    static uint8_t buf[4096];
    memset(buf, 0xee, sizeof(buf));
    int n = vmm_mptable_build(&m, 0x9fc00, buf, sizeof(buf), &res);
    ck_assert_int_gt(n, 0);
    ck_assert_mem_eq(buf, "_MP_", 4);
    ck_assert_uint_eq(res.table, 0x9fc10);
    ck_assert_uint_eq(buf[n], 0xee);
    ck_assert_int_eq(vmm_mptable_build(&m, 0x9fc00, buf, (size_t)n - 1, NULL), -ENOSPC);
    ck_assert_int_eq(vmm_mptable_build(&m, 0x9fc00, NULL, sizeof(buf), NULL), -EINVAL);
    ck_assert_int_eq(vmm_mptable_build(&m, 0xfffffff0, buf, sizeof(buf), NULL), -EINVAL);
}
END_TEST

/* Every array full, every vCPU the tables can name: still fits the defaults
 * (ACPI) or the reserved low range (MP table), and reads back whole. */
START_TEST(largest_machine_fits)
{
    struct vmm_machine m = fx_machine(fx.mem, VMM_ACPI_MAX_VCPUS);
    m.ioapic_pins = 64;
    m.nr_serial = VMM_MACHINE_MAX_SERIAL;
    for (unsigned i = 0; i < VMM_MACHINE_MAX_SERIAL; i++)
        m.serial[i] = (struct vmm_machine_serial){.port = (uint16_t)(0x3e8 + 8 * i), .gsi = 3 + i};
    m.nr_virtio = VMM_MACHINE_MAX_VIRTIO;
    for (unsigned i = 0; i < VMM_MACHINE_MAX_VIRTIO; i++)
        m.virtio[i] = (struct vmm_machine_virtio){
            .base = VMM_X86_VIRTIO_MMIO_BASE + i * VMM_X86_VIRTIO_MMIO_SIZE,
            .size = VMM_X86_VIRTIO_MMIO_SIZE,
            .gsi = 16 + i,
        };
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    int n = vmm_acpi_write(fx.mem, &m, NULL, &res);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_le(res.rsdp + res.len, VMM_X86_ACPI_TABLES_END);
    struct madt_counts c;
    walk_madt(sdt(res.madt, "APIC", res.rsdp, res.rsdp + res.len), &c);
    ck_assert_uint_eq(c.lapics, VMM_ACPI_MAX_VCPUS);
    const uint8_t *dsdt = sdt(res.dsdt, "DSDT", res.rsdp, res.rsdp + res.len);
    ck_assert(contains(dsdt, get32(dsdt + 4), "VR31", 4));
    ck_assert(contains(dsdt, get32(dsdt + 4), "COM4", 4));

    struct vmm_mptable_options o = {.size = sizeof(struct vmm_mptable_options),
                                    .end = VMM_X86_ACPI_TABLES};
    struct vmm_mptable_result mres = VMM_INIT(struct vmm_mptable_result);
    ck_assert_int_gt(vmm_mptable_write(fx.mem, &m, &o, &mres), 0);
    struct mp_counts mc;
    parse_mp(mres.floating, &mc, VMM_ACPI_MAX_VCPUS);
    ck_assert_uint_eq(mc.processors, VMM_ACPI_MAX_VCPUS);
    ck_assert_uint_eq(mc.iointrs, 15 + VMM_MACHINE_MAX_VIRTIO);
    for (unsigned gsi = 16; gsi < 16 + VMM_MACHINE_MAX_VIRTIO; gsi++)
        ck_assert_int_eq(mc.pin_of_irq[gsi], (int)gsi);
}
END_TEST

static Suite *acpi_suite(void)
{
    Suite *s = suite_create("acpi");
    TCase *aml = tcase_create("aml");
    tcase_add_test(aml, aml_integers_use_the_shortest_encoding);
    tcase_add_test(aml, aml_name_strings);
    tcase_add_test(aml, aml_refuses_bad_input);
    tcase_add_test(aml, aml_eisaid_compresses);
    tcase_add_test(aml, aml_pkg_length_grows_at_its_boundaries);
    tcase_add_test(aml, aml_resource_template_has_size_and_checksum);
    tcase_add_test(aml, aml_full_buffer_is_sticky_enospc);
    suite_add_tcase(s, aml);

    /* Tables built many times over, checked against 2 MiB of guest RAM. */
    TCase *acpi = tcase_create("acpi");
    tcase_add_checked_fixture(acpi, setup, teardown);
    tcase_set_timeout(acpi, 20);
    tcase_add_test(acpi, acpi_tables_read_back);
    tcase_add_test(acpi, acpi_optional_devices_follow_the_machine);
    tcase_add_test(acpi, acpi_serial_above_isa_gets_an_extended_interrupt);
    tcase_add_test(acpi, acpi_madt_has_one_lapic_per_vcpu);
    tcase_add_test(acpi, acpi_machine_overrides);
    tcase_add_test(acpi, acpi_build_into_a_host_buffer);
    tcase_add_test(acpi, acpi_placement_options);
    tcase_add_test(acpi, tables_options_and_results_check_their_size);
    tcase_add_test(acpi, acpi_refuses_bad_machines);
    tcase_add_test(acpi, tables_outside_guest_memory_are_efault);
    tcase_add_test(acpi, tables_on_read_only_memory_are_erofs);
    suite_add_tcase(s, acpi);

    TCase *mp = tcase_create("mptable");
    tcase_add_checked_fixture(mp, setup, teardown);
    tcase_set_timeout(mp, 20);
    tcase_add_test(mp, mptable_reads_back);
    tcase_add_test(mp, mptable_counts_and_space);
    tcase_add_test(mp, mptable_placement);
    tcase_add_test(mp, largest_machine_fits);
    suite_add_tcase(s, mp);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(acpi_suite());
}
