/* SPDX-License-Identifier: Apache-2.0 */
/* fnrt: READY, then for each call decode IN, dispatch by name, encode OUT,
 * RETURN; host calls through HCALL/HRET; aborts. */
#include "fnrt.h"

#define EPROTO_ 71
#define E2BIG_  7

extern const struct fnrt_export __start_fnrt_exports[], __stop_fnrt_exports[];

__attribute__((weak)) void fnrt_init(void)
{
}

static inline uint32_t padded(uint32_t len)
{
    return (len + 7) & ~7u;
}

/* Decode the message at buf (cap bytes) into vals[0..max); the count, or
 * -1 when malformed or too many. The host wrote it, but check anyway. */
static int decode(const uint8_t *buf, uint32_t cap, struct fnrt_val *vals, unsigned max)
{
    struct vmm_fn_msg h;
    memcpy(&h, buf, sizeof(h));
    if (h.size < sizeof(h) || h.size > cap || h.count > max)
        return -1;
    uint32_t off = sizeof(h);
    for (unsigned i = 0; i < h.count; i++) {
        struct vmm_fn_wire_val w;
        if (h.size - off < sizeof(w))
            return -1;
        memcpy(&w, buf + off, sizeof(w));
        off += sizeof(w);
        if ((w.type != VMM_FN_INT && w.type != VMM_FN_BYTES) ||
            (w.type == VMM_FN_INT && w.len != 8) || w.len > h.size - off ||
            padded(w.len) > h.size - off)
            return -1;
        vals[i] = (struct fnrt_val){.type = w.type, .len = w.len, .data = buf + off};
        if (w.type == VMM_FN_INT)
            memcpy(&vals[i].i, buf + off, 8);
        off += padded(w.len);
    }
    return off == h.size ? (int)h.count : -1;
}

static void out_init(struct fnrt_out *o, uint64_t addr, uint32_t cap)
{
    o->base = (uint8_t *)addr;
    o->off = sizeof(struct vmm_fn_msg);
    o->cap = cap;
    o->count = 0;
}

static void out_finish(struct fnrt_out *o)
{
    struct vmm_fn_msg h = {.size = o->off, .count = o->count};
    memcpy(o->base, &h, sizeof(h));
}

uint8_t *fnrt_ret_alloc(struct fnrt_out *out, uint32_t len)
{
    uint32_t need = sizeof(struct vmm_fn_wire_val) + padded(len);
    if (len > out->cap || out->count >= VMM_FN_VALUES_MAX || need > out->cap - out->off)
        return NULL;
    struct vmm_fn_wire_val w = {.type = VMM_FN_BYTES, .len = len};
    memcpy(out->base + out->off, &w, sizeof(w));
    uint8_t *p = out->base + out->off + sizeof(w);
    memset(p + len, 0, padded(len) - len);
    out->off += need;
    out->count++;
    return p;
}

int fnrt_ret_bytes(struct fnrt_out *out, const void *data, uint32_t len)
{
    uint8_t *p = fnrt_ret_alloc(out, len);
    if (!p)
        return FNRT_NOSPACE;
    memcpy(p, data, len);
    return 0;
}

int fnrt_ret_int(struct fnrt_out *out, int64_t v)
{
    uint8_t *p = fnrt_ret_alloc(out, 8);
    if (!p)
        return FNRT_NOSPACE;
    /* Same layout as bytes but the type. */
    struct vmm_fn_wire_val w = {.type = VMM_FN_INT, .len = 8};
    memcpy(p - sizeof(w), &w, sizeof(w));
    memcpy(p, &v, 8);
    return 0;
}

static int put_val(struct fnrt_out *o, const struct fnrt_val *v)
{
    return v->type == VMM_FN_INT ? fnrt_ret_int(o, v->i) : fnrt_ret_bytes(o, v->data, v->len);
}

void fnrt_abort(int code, const char *msg)
{
    struct fnrt_out o;
    out_init(&o, VMM_FN_OUT_ADDR, VMM_FN_OUT_SIZE);
    (void)fnrt_ret_int(&o, code);
    (void)fnrt_ret_bytes(&o, msg, (uint32_t)strlen(msg));
    out_finish(&o);
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_ABORT);
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

int64_t fnrt_host_call(const char *name, const struct fnrt_val *args, unsigned n,
                       struct fnrt_val *res, unsigned max, unsigned *nres)
{
    struct fnrt_out o;
    out_init(&o, VMM_FN_HCALL_ADDR, VMM_FN_HCALL_SIZE);
    struct fnrt_val nv = fnrt_bytes(name, (uint32_t)strlen(name));
    if (put_val(&o, &nv))
        return -E2BIG_;
    for (unsigned i = 0; i < n; i++)
        if (put_val(&o, &args[i]))
            return -E2BIG_;
    out_finish(&o);
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_HOSTCALL);

    struct fnrt_val vals[VMM_FN_VALUES_MAX];
    int c = decode((const uint8_t *)VMM_FN_HRET_ADDR, VMM_FN_HRET_SIZE, vals, VMM_FN_VALUES_MAX);
    if (c < 1 || vals[0].type != VMM_FN_INT)
        return -EPROTO_;
    unsigned k = 0;
    for (int i = 1; i < c && k < max; i++)
        res[k++] = vals[i];
    if (nres)
        *nres = k;
    return vals[0].i;
}

static struct fnrt_val args[VMM_FN_VALUES_MAX];

/* The call: everything after READY runs once per call, from the snapshot. */
static void dispatch(void)
{
    int n = decode((const uint8_t *)VMM_FN_IN_ADDR, VMM_FN_IN_SIZE, args, VMM_FN_VALUES_MAX);
    if (n < 1 || args[0].type != VMM_FN_BYTES)
        fnrt_abort(FNRT_BADARGS, "malformed call message");
    const struct fnrt_export *e;
    for (e = __start_fnrt_exports; e < __stop_fnrt_exports; e++)
        if (strlen(e->name) == args[0].len && memcmp(e->name, args[0].data, args[0].len) == 0)
            break;
    if (e == __stop_fnrt_exports)
        fnrt_abort(VMM_FN_ABORT_NOFUNC, "no such function");
    struct fnrt_out o;
    out_init(&o, VMM_FN_OUT_ADDR, VMM_FN_OUT_SIZE);
    int rc = e->fn(args + 1, (unsigned)n - 1, &o);
    if (rc)
        fnrt_abort(rc, rc == FNRT_NOSPACE ? "result does not fit OUT" : "function failed");
    out_finish(&o);
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_RETURN);
}

void fnrt_main(void);

void fnrt_main(void)
{
    fnrt_init();
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_READY);
    dispatch();
}

/* ---- the libc functions the compiler may call ---- */

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    if (p < q)
        return memcpy(d, s, n);
    while (n--)
        p[n] = q[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}
