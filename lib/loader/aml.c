/* SPDX-License-Identifier: Apache-2.0 */
/* The AML encoder of the DSDT builder (see aml.h). */
#include "aml.h"

#include <errno.h>
#include <string.h>

#include "tables.h"

/* Opcodes and prefixes (ACPI 6.5, 20.3). */
#define AML_ZERO_OP        0x00
#define AML_ONE_OP         0x01
#define AML_NAME_OP        0x08
#define AML_BYTE_PREFIX    0x0a
#define AML_WORD_PREFIX    0x0b
#define AML_DWORD_PREFIX   0x0c
#define AML_STRING_PREFIX  0x0d
#define AML_QWORD_PREFIX   0x0e
#define AML_SCOPE_OP       0x10
#define AML_BUFFER_OP      0x11
#define AML_PACKAGE_OP     0x12
#define AML_METHOD_OP      0x14
#define AML_ARG0_OP        0x68
#define AML_NOTIFY_OP      0x86
#define AML_LEQUAL_OP      0x93
#define AML_IF_OP          0xa0
#define AML_DUAL_NAME      0x2e
#define AML_MULTI_NAME     0x2f
#define AML_EXT_OP_PREFIX  0x5b
#define AML_DEVICE_OP      0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR      0x5c
#define AML_PARENT_CHAR    0x5e
#define AML_MAX_NAME_SEGS  255
#define AML_MAX_PKG_LENGTH 0x0fffffffu

/* Resource descriptor tags (ACPI 6.5, 6.4). */
#define RES_IRQ_NOFLAGS  0x22 /* small item 0x04, length 2 */
#define RES_IO           0x47 /* small item 0x08, length 7 */
#define RES_END_TAG      0x79 /* small item 0x0f, length 1 */
#define RES_MEMORY32_FIX 0x86
#define RES_EXT_IRQ      0x89
#define RES_DWORD_ADDR   0x87
#define RES_WORD_ADDR    0x88
#define RES_QWORD_ADDR   0x8a

/* Address space descriptors: resource types and flags. */
#define ADDR_TYPE_MEMORY 0
#define ADDR_TYPE_IO     1
#define ADDR_TYPE_BUS    2
#define ADDR_MIN_MAX_FIX 0x0c /* _MIF | _MAF; producer, positive decode */
#define ADDR_MEM_RW      0x01 /* NonCacheable, ReadWrite */
#define ADDR_IO_ENTIRE   0x03

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
    memset(a, 0, sizeof(*a));
    a->buf = buf;
    a->cap = cap;
}

int aml_finish(const struct aml *a)
{
    if (a->err)
        return a->err;
    if (a->depth != 0)
        return -EINVAL;
    return a->len > (size_t)AML_MAX_PKG_LENGTH ? -ENOSPC : (int)a->len;
}

static void fail(struct aml *a, int err)
{
    if (!a->err)
        a->err = err;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    if (a->err)
        return;
    if (n > a->cap - a->len) {
        fail(a, -ENOSPC);
        return;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/* Insert n bytes at offset at, moving what follows. */
static void insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
    if (a->err)
        return;
    if (n > a->cap - a->len) {
        fail(a, -ENOSPC);
        return;
    }
    memmove(a->buf + at + n, a->buf + at, a->len - at);
    memcpy(a->buf + at, p, n);
    a->len += n;
}

static bool seg_char_ok(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

void aml_name_string(struct aml *a, const char *path)
{
    uint8_t segs[AML_MAX_NAME_SEGS][4];
    unsigned nsegs = 0;
    const char *p = path;

    if (a->err)
        return;
    if (*p == '\\') {
        aml_byte(a, AML_ROOT_CHAR);
        p++;
    } else {
        while (*p == '^') {
            aml_byte(a, AML_PARENT_CHAR);
            p++;
        }
    }
    for (;;) {
        unsigned n = 0;
        if (nsegs == AML_MAX_NAME_SEGS) {
            fail(a, -EINVAL);
            return;
        }
        while (*p && *p != '.') {
            if (n == 4 || !seg_char_ok(*p, n == 0)) {
                fail(a, -EINVAL);
                return;
            }
            segs[nsegs][n++] = (uint8_t)*p++;
        }
        if (n == 0) {
            fail(a, -EINVAL);
            return;
        }
        while (n < 4)
            segs[nsegs][n++] = '_';
        nsegs++;
        if (*p == '\0')
            break;
        p++; /* the '.' */
    }
    if (nsegs == 2) {
        aml_byte(a, AML_DUAL_NAME);
    } else if (nsegs > 2) {
        aml_byte(a, AML_MULTI_NAME);
        aml_byte(a, (uint8_t)nsegs);
    }
    aml_bytes(a, segs, (size_t)nsegs * 4);
}

/* The shortest Integer encoding of v into out; returns its length. */
static size_t encode_integer(uint64_t v, uint8_t out[9])
{
    if (v == 0) {
        out[0] = AML_ZERO_OP;
        return 1;
    }
    if (v == 1) {
        out[0] = AML_ONE_OP;
        return 1;
    }
    size_t n;
    if (v <= 0xff) {
        out[0] = AML_BYTE_PREFIX;
        n = 1;
    } else if (v <= 0xffff) {
        out[0] = AML_WORD_PREFIX;
        n = 2;
    } else if (v <= 0xffffffffu) {
        out[0] = AML_DWORD_PREFIX;
        n = 4;
    } else {
        out[0] = AML_QWORD_PREFIX;
        n = 8;
    }
    for (size_t i = 0; i < n; i++)
        out[1 + i] = (uint8_t)(v >> (8 * i));
    return 1 + n;
}

void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t enc[9];
    aml_bytes(a, enc, encode_integer(v, enc));
}

void aml_string(struct aml *a, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] > 0x7f) {
            fail(a, -EINVAL);
            return;
        }
    }
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, n);
    aml_byte(a, 0);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
    int d[4];
    if (strlen(id) != 7) {
        fail(a, -EINVAL);
        return;
    }
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z') {
            fail(a, -EINVAL);
            return;
        }
    }
    for (int i = 0; i < 4; i++) {
        if ((d[i] = hex_digit(id[3 + i])) < 0) {
            fail(a, -EINVAL);
            return;
        }
    }
    /* Three 5-bit letters ('A' = 1) then the product number, big-endian. */
    unsigned c1 = (unsigned)(id[0] - 0x40), c2 = (unsigned)(id[1] - 0x40),
             c3 = (unsigned)(id[2] - 0x40);
    uint8_t b[4] = {
        (uint8_t)((c1 << 2) | (c2 >> 3)),
        (uint8_t)(((c2 & 7) << 5) | c3),
        (uint8_t)((d[0] << 4) | d[1]),
        (uint8_t)((d[2] << 4) | d[3]),
    };
    aml_integer(a,
                (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24);
}

void aml_name(struct aml *a, const char *path)
{
    aml_byte(a, AML_NAME_OP);
    aml_name_string(a, path);
}

static void open_block(struct aml *a, bool buffer, bool template)
{
    if (a->err)
        return;
    if (a->depth == AML_MAX_DEPTH) {
        fail(a, -EINVAL);
        return;
    }
    a->open[a->depth].start = a->len;
    a->open[a->depth].buffer = buffer;
    a->open[a->depth].template = template;
    a->depth++;
}

void aml_scope_begin(struct aml *a, const char *path)
{
    aml_byte(a, AML_SCOPE_OP);
    open_block(a, false, false);
    aml_name_string(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
    aml_byte(a, AML_EXT_OP_PREFIX);
    aml_byte(a, AML_DEVICE_OP);
    open_block(a, false, false);
    aml_name_string(a, path);
}

void aml_package_begin(struct aml *a, uint8_t elements)
{
    aml_byte(a, AML_PACKAGE_OP);
    open_block(a, false, false);
    aml_byte(a, elements);
}

void aml_resource_template_begin(struct aml *a)
{
    aml_byte(a, AML_BUFFER_OP);
    open_block(a, true, true);
}

void aml_method_begin(struct aml *a, const char *path, unsigned args, bool serialized)
{
    if (args > 7) {
        fail(a, -EINVAL);
        return;
    }
    aml_byte(a, AML_METHOD_OP);
    open_block(a, false, false);
    aml_name_string(a, path);
    /* MethodFlags: ArgCount in bits 0-2, SerializeFlag bit 3, SyncLevel 0. */
    aml_byte(a, (uint8_t)(args | (serialized ? 0x08 : 0)));
}

void aml_if_begin(struct aml *a)
{
    aml_byte(a, AML_IF_OP);
    open_block(a, false, false);
}

void aml_lequal(struct aml *a)
{
    aml_byte(a, AML_LEQUAL_OP);
}

void aml_arg(struct aml *a, unsigned n)
{
    if (n > 6) {
        fail(a, -EINVAL);
        return;
    }
    aml_byte(a, (uint8_t)(AML_ARG0_OP + n));
}

void aml_notify(struct aml *a, const char *path, uint8_t value)
{
    aml_byte(a, AML_NOTIFY_OP);
    aml_name_string(a, path);
    aml_integer(a, value);
}

/* PkgLength (20.2.4) for contents of n bytes: the encoded length counts its
 * own bytes too. Returns the encoding's length, 0 when n is too large. */
static size_t encode_pkg_length(size_t n, uint8_t out[4])
{
    if (n + 1 <= 0x3f) {
        out[0] = (uint8_t)(n + 1);
        return 1;
    }
    for (size_t bytes = 2; bytes <= 4; bytes++) {
        size_t total = n + bytes;
        if (total >> (4 + 8 * (bytes - 1)) != 0)
            continue;
        out[0] = (uint8_t)(((bytes - 1) << 6) | (total & 0x0f));
        for (size_t i = 1; i < bytes; i++)
            out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
        return bytes;
    }
    return 0;
}

void aml_end(struct aml *a)
{
    if (a->err)
        return;
    if (a->depth == 0) {
        fail(a, -EINVAL);
        return;
    }
    size_t start = a->open[a->depth - 1].start;
    if (a->open[a->depth - 1].template) {
        /* The End Tag's checksum makes the descriptors, itself included, sum to 0. */
        aml_byte(a, RES_END_TAG);
        if (a->err)
            return;
        aml_byte(a, tables_checksum(a->buf + start, a->len - start));
    }
    if (a->open[a->depth - 1].buffer) {
        uint8_t size[9];
        insert(a, start, size, encode_integer(a->len - start, size));
    }
    uint8_t pkg[4];
    size_t n = encode_pkg_length(a->len - start, pkg);
    if (n == 0) {
        fail(a, -ENOSPC);
        return;
    }
    insert(a, start, pkg, n);
    a->depth--;
}

void aml_io(struct aml *a, uint16_t port, uint8_t len)
{
    uint8_t d[8] = {RES_IO, 0x01 /* 16-bit decode */};
    tables_put16(d + 2, port); /* minimum base */
    tables_put16(d + 4, port); /* maximum base */
    d[6] = 1;                  /* alignment */
    d[7] = len;
    aml_bytes(a, d, sizeof(d));
}

void aml_irq_noflags(struct aml *a, unsigned irq)
{
    if (irq >= 16) {
        fail(a, -EINVAL);
        return;
    }
    uint8_t d[3] = {RES_IRQ_NOFLAGS};
    tables_put16(d + 1, (uint16_t)(1u << irq));
    aml_bytes(a, d, sizeof(d));
}

void aml_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size)
{
    uint8_t d[12] = {RES_MEMORY32_FIX};
    tables_put16(d + 1, 9); /* length of what follows the 3-byte header */
    d[3] = writable ? 1 : 0;
    tables_put32(d + 4, base);
    tables_put32(d + 8, size);
    aml_bytes(a, d, sizeof(d));
}

void aml_interrupt(struct aml *a, unsigned flags, uint32_t gsi)
{
    uint8_t d[9] = {RES_EXT_IRQ};
    tables_put16(d + 1, 6); /* flags, count and one interrupt number */
    d[3] = (uint8_t)flags;
    d[4] = 1;
    tables_put32(d + 5, gsi);
    aml_bytes(a, d, sizeof(d));
}

/* An address space descriptor with fields of width w (2, 4 or 8 bytes):
 * granularity, minimum, maximum, translation, length. */
static void address_space(struct aml *a, uint8_t tag, unsigned w, uint8_t type, uint8_t tflags,
                          uint64_t min, uint64_t len)
{
    uint8_t d[3 + 3 + 5 * 8] = {tag};
    size_t n = 6 + 5 * w;
    tables_put16(d + 1, (uint16_t)(n - 3));
    d[3] = type;
    d[4] = ADDR_MIN_MAX_FIX;
    d[5] = tflags;
    uint64_t v[5] = {0, min, min + len - 1, 0, len};
    for (unsigned i = 0; i < 5; i++)
        for (unsigned b = 0; b < w; b++)
            d[6 + i * w + b] = (uint8_t)(v[i] >> (8 * b));
    aml_bytes(a, d, n);
}

void aml_word_bus_number(struct aml *a, uint16_t min, uint16_t len)
{
    address_space(a, RES_WORD_ADDR, 2, ADDR_TYPE_BUS, 0, min, len);
}

void aml_word_io(struct aml *a, uint16_t min, uint32_t len)
{
    address_space(a, RES_WORD_ADDR, 2, ADDR_TYPE_IO, ADDR_IO_ENTIRE, min, len);
}

void aml_dword_memory(struct aml *a, uint32_t min, uint64_t len)
{
    address_space(a, RES_DWORD_ADDR, 4, ADDR_TYPE_MEMORY, ADDR_MEM_RW, min, len);
}

void aml_qword_memory(struct aml *a, uint64_t min, uint64_t len)
{
    address_space(a, RES_QWORD_ADDR, 8, ADDR_TYPE_MEMORY, ADDR_MEM_RW, min, len);
}
