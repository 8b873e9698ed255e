/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small ACPI Machine Language encoder (ACPI 6.5 chapter 20) for the DSDT:
 * names, integers, strings, Scope, Device, Name, Package, Buffer, Method,
 * If, LEqual, Notify, and the resource descriptors of a _CRS
 * ResourceTemplate (chapter 6.4).
 *
 * The encoder writes into a caller's fixed buffer. Errors are sticky: after
 * the first one (-ENOSPC: the buffer is full; -EINVAL: a bad name, string or
 * nesting) every call does nothing and aml_finish returns it, so a builder
 * emits a whole table and checks once. Blocks (Scope, Device, Package,
 * Buffer, Method, If) are opened with *_begin and closed with aml_end; their PkgLength is
 * inserted when they close, when the size is known.
 */
#ifndef VMM_LOADER_AML_H
#define VMM_LOADER_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 8

/* Extended Interrupt descriptor flags (ACPI 6.4.3.6). */
#define AML_INT_CONSUMER   (1u << 0) /* else ResourceProducer */
#define AML_INT_EDGE       (1u << 1) /* else Level */
#define AML_INT_ACTIVE_LOW (1u << 2) /* else ActiveHigh */
#define AML_INT_SHARED     (1u << 3) /* else Exclusive */
#define AML_INT_WAKE       (1u << 4)

struct aml {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
    unsigned depth;
    struct {
        size_t start;  /* where the PkgLength goes (the block's contents follow) */
        bool buffer;   /* a Buffer: its BufferSize is inserted too */
        bool template; /* a ResourceTemplate: aml_end adds the End Tag */
    } open[AML_MAX_DEPTH];
};

/* Start encoding into buf[0..cap). */
void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/* The number of bytes encoded, or the first error (-EINVAL also when a
 * block is still open). */
int aml_finish(const struct aml *a);

/* Raw bytes. */
void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);

/* A NameString: an optional root prefix '\' or parent prefixes '^', then
 * NameSegs of 1-4 characters [A-Z0-9_] (not starting with a digit; padded
 * with '_') separated by '.', e.g. "\\_SB_.COM1" or "_HID". */
void aml_name_string(struct aml *a, const char *path);

/* An Integer in its shortest encoding (Zero, One, Byte/Word/DWord/QWord). */
void aml_integer(struct aml *a, uint64_t v);

/* A String of ASCII 0x01-0x7f. */
void aml_string(struct aml *a, const char *s);

/* EISAID("PNP0501"): three capital letters and four hex digits compressed
 * into a DWord. */
void aml_eisaid(struct aml *a, const char *id);

/* Name(path, ...): the caller encodes the object that follows. */
void aml_name(struct aml *a, const char *path);

/* Blocks, closed with aml_end. */
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_package_begin(struct aml *a, uint8_t elements);
/* A Buffer holding resource descriptors; aml_end appends the End Tag with
 * the checksum that makes the descriptors sum to zero. */
void aml_resource_template_begin(struct aml *a);
void aml_end(struct aml *a);

/* Method(path, args, Serialized or NotSerialized) { ... }: args 0..7. */
void aml_method_begin(struct aml *a, const char *path, unsigned args, bool serialized);
/* If (predicate) { ... }: the caller encodes the predicate, then the body. */
void aml_if_begin(struct aml *a);
/* LEqual(x, y): the caller encodes the two operands after it. */
void aml_lequal(struct aml *a);
/* ArgN (0..6), a method's argument as an operand. */
void aml_arg(struct aml *a, unsigned n);
/* Notify(path, value) */
void aml_notify(struct aml *a, const char *path, uint8_t value);

/* Resource descriptors (inside a resource template). */
/* IO(Decode16, port, port, 1, len) */
void aml_io(struct aml *a, uint16_t port, uint8_t len);
/* IRQNoFlags() {irq}, irq < 16 */
void aml_irq_noflags(struct aml *a, unsigned irq);
/* Memory32Fixed(ReadWrite or ReadOnly, base, size) */
void aml_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t size);
/* Interrupt(flags: AML_INT_*) {gsi} */
void aml_interrupt(struct aml *a, unsigned flags, uint32_t gsi);
/* Address space descriptors (6.4.3.5) for a bridge's windows: a
 * ResourceProducer, MinFixed, MaxFixed, PosDecode range [min, min + len)
 * with granularity and translation 0. len > 0. */
/* WordBusNumber(...) */
void aml_word_bus_number(struct aml *a, uint16_t min, uint16_t len);
/* WordIO(..., EntireRange) */
void aml_word_io(struct aml *a, uint16_t min, uint32_t len);
/* DWordMemory(..., NonCacheable, ReadWrite) */
void aml_dword_memory(struct aml *a, uint32_t min, uint64_t len);
/* QWordMemory(..., NonCacheable, ReadWrite) */
void aml_qword_memory(struct aml *a, uint64_t min, uint64_t len);

#endif /* VMM_LOADER_AML_H */
