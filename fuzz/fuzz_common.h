/* SPDX-License-Identifier: Apache-2.0 */
/* What the fuzz targets share: an input cursor that reads little-endian
 * integers and yields zeroes past the end (so every input is a valid
 * program), a log handler that formats every line at debug level and drops
 * it, and the check that stops the run on a broken invariant. */
#ifndef VMM_FUZZ_COMMON_H
#define VMM_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/error.h>

struct fz {
    const uint8_t *p;
    size_t n;
};

static inline bool fz_more(const struct fz *f)
{
    return f->n > 0;
}

static inline uint64_t fz_bytes_le(struct fz *f, unsigned len)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < len && f->n; i++, f->p++, f->n--)
        v |= (uint64_t)*f->p << (8 * i);
    return v;
}

static inline uint8_t fz_u8(struct fz *f)
{
    return (uint8_t)fz_bytes_le(f, 1);
}

static inline uint16_t fz_u16(struct fz *f)
{
    return (uint16_t)fz_bytes_le(f, 2);
}

static inline uint32_t fz_u32(struct fz *f)
{
    return (uint32_t)fz_bytes_le(f, 4);
}

static inline uint64_t fz_u64(struct fz *f)
{
    return fz_bytes_le(f, 8);
}

/* Up to max bytes of the input, borrowed: *len says how many. */
static inline const uint8_t *fz_take(struct fz *f, size_t max, size_t *len)
{
    const uint8_t *p = f->p;
    *len = max < f->n ? max : f->n;
    f->p += *len;
    f->n -= *len;
    return p;
}

static void fz_log(void *opaque, enum vmm_log_level level, const char *msg)
{
    if (opaque)
        fprintf(stderr, "libvmm %s: %s\n", vmm_log_level_name(level), msg);
}

/* Every log line is formatted (its format and arguments are part of what is
 * fuzzed), then dropped: FUZZ_LOG=1 prints them. */
static inline void fz_quiet_logs(void)
{
    const char *e = getenv("FUZZ_LOG");
    static int print = 1;
    vmm_log_set_handler(fz_log, e && *e == '1' ? &print : NULL, VMM_LOG_DEBUG);
}

/* A broken invariant is a finding: say which and crash so libFuzzer keeps
 * the input. */
#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* VMM_FUZZ_COMMON_H */
