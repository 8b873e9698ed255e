/* SPDX-License-Identifier: Apache-2.0 */
/* The function-VM message encoding (function_abi.h): building messages for
 * the guest and checking the ones it hands over, which are hostile input. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <vmm/function.h>

#include "function_internal.h"

/* Payload bytes plus padding to 8; len < 2^32, so no overflow in 64 bits. */
static inline uint64_t padded(uint64_t len)
{
    return (len + 7) & ~UINT64_C(7);
}

static int val_check(const struct vmm_fn_val *v)
{
    if (v->type == VMM_FN_INT)
        return 0;
    if (v->type == VMM_FN_BYTES && (v->len == 0 || v->data))
        return 0;
    return -EINVAL;
}

int vmm_fn_encode(void *buf, size_t cap, const struct vmm_fn_val *vals, unsigned n)
{
    if ((!buf && cap) || (!vals && n) || n > VMM_FN_VALUES_MAX)
        return -EINVAL;
    uint64_t size = sizeof(struct vmm_fn_msg);
    for (unsigned i = 0; i < n; i++) {
        if (val_check(&vals[i]) < 0)
            return -EINVAL;
        uint32_t len = vals[i].type == VMM_FN_INT ? 8 : vals[i].len;
        size += sizeof(struct vmm_fn_wire_val) + padded(len);
    }
    if (size > cap || size > INT_MAX)
        return -E2BIG;
    uint8_t *p = buf;
    struct vmm_fn_msg h = {.size = (uint32_t)size, .count = n};
    memcpy(p, &h, sizeof(h));
    uint64_t off = sizeof(h);
    for (unsigned i = 0; i < n; i++) {
        const struct vmm_fn_val *v = &vals[i];
        uint32_t len = v->type == VMM_FN_INT ? 8 : v->len;
        struct vmm_fn_wire_val w = {.type = v->type, .len = len};
        memcpy(p + off, &w, sizeof(w));
        off += sizeof(w);
        if (v->type == VMM_FN_INT)
            memcpy(p + off, &v->i, 8);
        else if (len)
            memcpy(p + off, v->data, len);
        memset(p + off + len, 0, padded(len) - len);
        off += padded(len);
    }
    return (int)size;
}

int vmm_fn_decode(const void *buf, size_t len, struct vmm_fn_val *vals, unsigned max)
{
    const uint8_t *p = buf;
    struct vmm_fn_msg h;
    if (!buf || len < sizeof(h))
        return -EPROTO;
    memcpy(&h, p, sizeof(h));
    if (h.size < sizeof(h) || h.size > len || h.count > VMM_FN_VALUES_MAX)
        return -EPROTO;
    if (h.count > max || (!vals && h.count))
        return -ENOSPC;
    uint64_t off = sizeof(h);
    for (unsigned i = 0; i < h.count; i++) {
        struct vmm_fn_wire_val w;
        if (h.size - off < sizeof(w))
            return -EPROTO;
        memcpy(&w, p + off, sizeof(w));
        off += sizeof(w);
        if ((w.type != VMM_FN_INT && w.type != VMM_FN_BYTES) ||
            (w.type == VMM_FN_INT && w.len != 8) || padded(w.len) > h.size - off)
            return -EPROTO;
        vals[i] = (struct vmm_fn_val){.type = w.type, .len = w.len};
        if (w.type == VMM_FN_INT)
            memcpy(&vals[i].i, p + off, 8);
        else
            vals[i].data = p + off;
        off += padded(w.len);
    }
    if (off != h.size)
        return -EPROTO;
    return (int)h.count;
}

/* ---- a host function's reply, built in place ---- */

void fn_reply_init(struct vmm_fn_reply *r, uint8_t *buf, size_t cap)
{
    r->buf = buf;
    r->cap = cap;
    /* Room for the header and value 0, the status, filled by fn_reply_finish. */
    r->off = sizeof(struct vmm_fn_msg) + sizeof(struct vmm_fn_wire_val) + 8;
    r->count = 1;
}

static int reply_put(struct vmm_fn_reply *r, uint32_t type, const void *data, uint32_t len)
{
    uint64_t need = sizeof(struct vmm_fn_wire_val) + padded(len);
    if (r->count >= VMM_FN_VALUES_MAX || need > r->cap - r->off)
        return -ENOSPC;
    struct vmm_fn_wire_val w = {.type = type, .len = len};
    memcpy(r->buf + r->off, &w, sizeof(w));
    if (len)
        memcpy(r->buf + r->off + sizeof(w), data, len);
    memset(r->buf + r->off + sizeof(w) + len, 0, padded(len) - len);
    r->off += need;
    r->count++;
    return 0;
}

int vmm_fn_reply_int(struct vmm_fn_reply *reply, int64_t v)
{
    return reply ? reply_put(reply, VMM_FN_INT, &v, 8) : -EINVAL;
}

int vmm_fn_reply_bytes(struct vmm_fn_reply *reply, const void *data, size_t len)
{
    if (!reply || (!data && len))
        return -EINVAL;
    if (len > UINT32_MAX)
        return -ENOSPC;
    return reply_put(reply, VMM_FN_BYTES, data, (uint32_t)len);
}

size_t fn_reply_finish(struct vmm_fn_reply *r, int status)
{
    if (status < 0) {
        /* A failed host function's results are dropped. */
        r->off = sizeof(struct vmm_fn_msg) + sizeof(struct vmm_fn_wire_val) + 8;
        r->count = 1;
    }
    struct vmm_fn_msg h = {.size = (uint32_t)r->off, .count = r->count};
    struct vmm_fn_wire_val w = {.type = VMM_FN_INT, .len = 8};
    int64_t st = status;
    memcpy(r->buf, &h, sizeof(h));
    memcpy(r->buf + sizeof(h), &w, sizeof(w));
    memcpy(r->buf + sizeof(h) + sizeof(w), &st, sizeof(st));
    return r->off;
}
