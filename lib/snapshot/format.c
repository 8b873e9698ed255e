/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state file: a 32-byte header, then a body of sections.
 *
 *   header: magic "LIBVMMSN" | u32 version | u32 header size (32)
 *           | u64 body length | u32 CRC-32 of the body | u32 CRC-32 of the
 *           header's first 28 bytes
 *   section: u32 tag | u32 instance | u64 payload length | payload,
 *            padded with zeros to a multiple of 8 bytes
 *
 * Little-endian (the host's; x86_64 only for now). A reader trusts nothing:
 * lengths are checked against what is left before anything is used.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_internal.h"
#include "vmm_internal.h"

#define SECTION_HEADER 16u

/* ---- CRC-32 ---- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t snap_crc32(uint32_t crc, const void *p, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const uint8_t *b = p;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- writer ---- */

void snap_writer_init(struct vmm_snap_writer *w)
{
    *w = (struct vmm_snap_writer){.section = SIZE_MAX};
}

void snap_writer_fini(struct vmm_snap_writer *w)
{
    free(w->buf);
    snap_writer_init(w);
}

void snap_put(struct vmm_snap_writer *w, const void *p, size_t n)
{
    if (w->err)
        return;
    if (n > SNAP_MAX_FILE || w->len + n > SNAP_MAX_FILE) {
        w->err = -EFBIG;
        return;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            w->err = -ENOMEM;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void snap_put_u32(struct vmm_snap_writer *w, uint32_t v)
{
    snap_put(w, &v, sizeof(v));
}

void snap_put_u64(struct vmm_snap_writer *w, uint64_t v)
{
    snap_put(w, &v, sizeof(v));
}

void snap_section_begin(struct vmm_snap_writer *w, uint32_t tag, uint32_t instance)
{
    snap_section_end(w);
    if (w->err)
        return;
    w->section = w->len;
    snap_put_u32(w, tag);
    snap_put_u32(w, instance);
    snap_put_u64(w, 0); /* patched by snap_section_end */
}

void snap_section_end(struct vmm_snap_writer *w)
{
    if (w->section == SIZE_MAX)
        return;
    size_t start = w->section;
    w->section = SIZE_MAX;
    if (w->err)
        return;
    uint64_t len = w->len - start - SECTION_HEADER;
    memcpy(w->buf + start + 8, &len, sizeof(len));
    static const uint8_t zeros[8];
    snap_put(w, zeros, (8 - (w->len & 7)) & 7);
}

uint8_t *snap_file_build(struct vmm_snap_writer *w, size_t *size)
{
    snap_section_end(w);
    if (w->err)
        return NULL;
    uint8_t *out = malloc(SNAP_HEADER_SIZE + w->len);
    if (!out) {
        w->err = -ENOMEM;
        return NULL;
    }
    uint32_t version = SNAP_VERSION, hsize = SNAP_HEADER_SIZE;
    uint64_t body = w->len;
    uint32_t crc = snap_crc32(0, w->buf, w->len);
    memcpy(out, SNAP_MAGIC, 8);
    memcpy(out + 8, &version, 4);
    memcpy(out + 12, &hsize, 4);
    memcpy(out + 16, &body, 8);
    memcpy(out + 24, &crc, 4);
    uint32_t hcrc = snap_crc32(0, out, 28);
    memcpy(out + 28, &hcrc, 4);
    if (w->len)
        memcpy(out + SNAP_HEADER_SIZE, w->buf, w->len);
    *size = SNAP_HEADER_SIZE + w->len;
    return out;
}

/* ---- reader ---- */

int snap_get(struct vmm_snap_reader *r, void *p, size_t n)
{
    if (n > r->left)
        return -EBADMSG;
    memcpy(p, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

int snap_get_u32(struct vmm_snap_reader *r, uint32_t *v)
{
    return snap_get(r, v, sizeof(*v));
}

int snap_get_u64(struct vmm_snap_reader *r, uint64_t *v)
{
    return snap_get(r, v, sizeof(*v));
}

int snap_done(const struct vmm_snap_reader *r)
{
    return r->left ? -EBADMSG : 0;
}

void snap_file_free(struct vmm_snap_file *f)
{
    free(f->data);
    free(f->sections);
    *f = (struct vmm_snap_file){0};
}

static int parse_fail(struct vmm_snap_file *f, int err, char *why, size_t why_len, const char *msg)
{
    snprintf(why, why_len, "%s", msg);
    snap_file_free(f);
    return err;
}

int snap_file_parse(uint8_t *data, size_t size, struct vmm_snap_file *f, char *why, size_t why_len)
{
    *f = (struct vmm_snap_file){.data = data, .size = size};
    if (size < SNAP_HEADER_SIZE || memcmp(data, SNAP_MAGIC, 8) != 0)
        return parse_fail(f, -EBADMSG, why, why_len, "not a libvmm state file (bad magic)");
    uint32_t version, hsize, crc, hcrc;
    uint64_t body;
    memcpy(&version, data + 8, 4);
    memcpy(&hsize, data + 12, 4);
    memcpy(&body, data + 16, 8);
    memcpy(&crc, data + 24, 4);
    memcpy(&hcrc, data + 28, 4);
    if (snap_crc32(0, data, 28) != hcrc)
        return parse_fail(f, -EBADMSG, why, why_len, "the state file's header is corrupt");
    if (version != SNAP_VERSION) {
        snprintf(why, why_len, "state file format version %u, this library reads version %u",
                 version, SNAP_VERSION);
        snap_file_free(f);
        return -EPROTO;
    }
    if (hsize != SNAP_HEADER_SIZE)
        return parse_fail(f, -EBADMSG, why, why_len, "the state file's header is malformed");
    if (body != size - SNAP_HEADER_SIZE)
        return parse_fail(f, -EBADMSG, why, why_len,
                          body > size - SNAP_HEADER_SIZE ? "the state file is truncated"
                                                         : "the state file has trailing bytes");
    const uint8_t *p = data + SNAP_HEADER_SIZE;
    if (snap_crc32(0, p, body) != crc)
        return parse_fail(f, -EBADMSG, why, why_len, "the state file is corrupt (CRC mismatch)");

    size_t off = 0, cap = 0;
    while (off < body) {
        if (body - off < SECTION_HEADER || (off & 7))
            return parse_fail(f, -EBADMSG, why, why_len, "malformed section header");
        struct snap_section s = {0};
        uint64_t len;
        memcpy(&s.tag, p + off, 4);
        memcpy(&s.instance, p + off + 4, 4);
        memcpy(&len, p + off + 8, 8);
        off += SECTION_HEADER;
        if (len > body - off)
            return parse_fail(f, -EBADMSG, why, why_len, "a section runs past the file's end");
        s.payload = p + off;
        s.len = (size_t)len;
        off += (size_t)len;
        size_t pad = (8 - (off & 7)) & 7;
        if (pad > body - off)
            return parse_fail(f, -EBADMSG, why, why_len, "a section runs past the file's end");
        off += pad;
        for (unsigned i = 0; i < f->count; i++)
            if (f->sections[i].tag == s.tag && f->sections[i].instance == s.instance)
                return parse_fail(f, -EBADMSG, why, why_len, "a section appears twice");
        if (f->count == cap) {
            if (cap == SNAP_MAX_SECTIONS)
                return parse_fail(f, -EBADMSG, why, why_len, "too many sections");
            cap = cap ? cap * 2 : 32;
            struct snap_section *ns = realloc(f->sections, cap * sizeof(*ns));
            if (!ns)
                return parse_fail(f, -ENOMEM, why, why_len, "out of memory");
            f->sections = ns;
        }
        f->sections[f->count++] = s;
    }
    return 0;
}

int snap_file_find(struct vmm_snap_file *f, uint32_t tag, uint32_t instance,
                   struct vmm_snap_reader *r)
{
    for (unsigned i = 0; i < f->count; i++) {
        struct snap_section *s = &f->sections[i];
        if (s->tag == tag && s->instance == instance) {
            s->used = true;
            *r = (struct vmm_snap_reader){
                .p = s->payload, .left = s->len, .tag = tag, .instance = instance};
            return 0;
        }
    }
    return -ENOENT;
}
