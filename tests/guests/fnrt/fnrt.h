/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fnrt: the freestanding runtime of function-VM guests (vmm/function.h,
 * docs/function-vm.md). A function is a plain C function exported by name:
 *
 *     static int add(const struct fnrt_val *args, unsigned n, struct fnrt_out *out)
 *     {
 *         if (n != 2 || args[0].type != VMM_FN_INT || args[1].type != VMM_FN_INT)
 *             return FNRT_BADARGS;
 *         return fnrt_ret_int(out, args[0].i + args[1].i);
 *     }
 *     FNRT_EXPORT(add);
 *
 * It returns 0 with its results appended to out, or an abort code (the call
 * then fails on the host; FNRT_BADARGS gives the host -EINVAL). The runtime
 * starts the guest on one vCPU with a 64 KiB stack, runs fnrt_init (if the
 * guest defines it), signals READY, and from then on every call starts right
 * there with the call in IN: decode, dispatch by name, encode, RETURN.
 */
#ifndef FNRT_H
#define FNRT_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/function_abi.h>

/* A value as the guest sees it; data points into IN (arguments) or HRET
 * (host-call results, valid until the next host call). */
struct fnrt_val {
    uint32_t type; /* VMM_FN_INT, VMM_FN_BYTES */
    uint32_t len;
    int64_t i;
    const uint8_t *data;
};

/* The result being built in OUT. */
struct fnrt_out {
    uint8_t *base;
    uint32_t off, cap, count;
};

typedef int (*fnrt_fn)(const struct fnrt_val *args, unsigned nargs, struct fnrt_out *out);

struct fnrt_export {
    const char *name;
    fnrt_fn fn;
};

/* Export fn under its own name. */
#define FNRT_EXPORT(fn)                                                                            \
    static const struct fnrt_export fnrt_export_##fn                                               \
        __attribute__((used, section("fnrt_exports"), aligned(8))) = {#fn, fn}

#define FNRT_BADARGS VMM_FN_ABORT_BADARGS
/* An append that did not fit OUT: the call aborts with this code. */
#define FNRT_NOSPACE 100

/* Called once before READY when the guest defines it. */
void fnrt_init(void);

/* Append a result. Return 0 or FNRT_NOSPACE. */
int fnrt_ret_int(struct fnrt_out *out, int64_t v);
int fnrt_ret_bytes(struct fnrt_out *out, const void *data, uint32_t len);
/* Append a VMM_FN_BYTES result of len bytes to be filled in place; NULL when
 * it does not fit. */
uint8_t *fnrt_ret_alloc(struct fnrt_out *out, uint32_t len);

/*
 * Call host function name with args[0..n); its results land in res[0..max)
 * (*nres of them). Returns the host's status: 0, a negative errno from the
 * host function, -ENOSYS (38) for a name the host did not register, or
 * -E2BIG (7) when the request does not fit HCALL, -EPROTO (71) when the
 * reply is malformed.
 */
int64_t fnrt_host_call(const char *name, const struct fnrt_val *args, unsigned n,
                       struct fnrt_val *res, unsigned max, unsigned *nres);

/* End the call with code and a reason (a C string). */
__attribute__((noreturn)) void fnrt_abort(int code, const char *msg);

/* Value shorthands. */
static inline struct fnrt_val fnrt_int(int64_t v)
{
    return (struct fnrt_val){.type = VMM_FN_INT, .len = 8, .i = v};
}
static inline struct fnrt_val fnrt_bytes(const void *p, uint32_t len)
{
    return (struct fnrt_val){.type = VMM_FN_BYTES, .len = len, .data = p};
}

static inline void fnrt_outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
