/* SPDX-License-Identifier: Apache-2.0 */
/* The function-VM test guest (fnrt): well-behaved functions (echo, sum,
 * sha256, host calls, state probes) and hostile ones, each failing its own
 * call only. */
#include "fnrt/fnrt.h"

#define UNBACKED 0x80000000ull /* 2 GiB: no guest RAM there under any test budget */

/* Every argument back, as it came. */
static int echo(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    for (unsigned i = 0; i < n; i++) {
        int r = a[i].type == VMM_FN_INT ? fnrt_ret_int(out, a[i].i)
                                        : fnrt_ret_bytes(out, a[i].data, a[i].len);
        if (r)
            return r;
    }
    return 0;
}
FNRT_EXPORT(echo);

/* The sum of its integer arguments and of the bytes of its byte strings. */
static int sum(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    int64_t s = 0;
    for (unsigned i = 0; i < n; i++) {
        if (a[i].type == VMM_FN_INT)
            s += a[i].i;
        else
            for (uint32_t k = 0; k < a[i].len; k++)
                s += a[i].data[k];
    }
    return fnrt_ret_int(out, s);
}
FNRT_EXPORT(sum);

/* ---- SHA-256 (FIPS 180-4) ---- */

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

static int sha256(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_BYTES)
        return FNRT_BADARGS;
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = a[0].data;
    uint64_t len = a[0].len, done = 0;
    for (; len - done >= 64; done += 64)
        sha256_block(h, p + done);
    uint8_t tail[128] = {0};
    uint64_t rest = len - done;
    memcpy(tail, p + done, rest);
    tail[rest] = 0x80;
    unsigned blocks = rest + 9 > 64 ? 2 : 1;
    uint64_t bits = len * 8;
    for (int i = 0; i < 8; i++)
        tail[blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (unsigned b = 0; b < blocks; b++)
        sha256_block(h, tail + 64 * b);
    uint8_t *d = fnrt_ret_alloc(out, 32);
    if (!d)
        return FNRT_NOSPACE;
    for (int i = 0; i < 8; i++) {
        d[4 * i] = (uint8_t)(h[i] >> 24);
        d[4 * i + 1] = (uint8_t)(h[i] >> 16);
        d[4 * i + 2] = (uint8_t)(h[i] >> 8);
        d[4 * i + 3] = (uint8_t)h[i];
    }
    return 0;
}
FNRT_EXPORT(sha256);

/* ---- host calls ---- */

/* log(msg): the host's "log"; returns its status. */
static int log_msg(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_BYTES)
        return FNRT_BADARGS;
    return fnrt_ret_int(out, fnrt_host_call("log", a, 1, NULL, 0, NULL));
}
FNRT_EXPORT(log_msg);

/* kv_get(key): the host's "kv_get"; returns its status and what it gave. */
static int kv_get(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_BYTES)
        return FNRT_BADARGS;
    struct fnrt_val res[4];
    unsigned nres = 0;
    int64_t st = fnrt_host_call("kv_get", a, 1, res, 4, &nres);
    int r = fnrt_ret_int(out, st);
    for (unsigned i = 0; i < nres && !r; i++)
        r = res[i].type == VMM_FN_INT ? fnrt_ret_int(out, res[i].i)
                                      : fnrt_ret_bytes(out, res[i].data, res[i].len);
    return r;
}
FNRT_EXPORT(kv_get);

/* Several host calls in one guest call: the sum of kv_get("n") over a[0]
 * calls, each reply an integer. */
static int kv_sum(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    int64_t s = 0;
    struct fnrt_val key = fnrt_bytes("n", 1);
    for (int64_t i = 0; i < a[0].i; i++) {
        struct fnrt_val res[1];
        unsigned nres = 0;
        if (fnrt_host_call("kv_get", &key, 1, res, 1, &nres) != 0 || nres != 1 ||
            res[0].type != VMM_FN_INT)
            fnrt_abort(3, "kv_get failed");
        s += res[0].i;
    }
    return fnrt_ret_int(out, s);
}
FNRT_EXPORT(kv_sum);

/* A host function nobody registered: returns the status it got. */
static int call_missing(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    return fnrt_ret_int(out, fnrt_host_call("no_such_host_fn", NULL, 0, NULL, 0, NULL));
}
FNRT_EXPORT(call_missing);

/* ---- state probes: each returns what an earlier call could have left ---- */

static int64_t stash_value;
static uint8_t stash_page[4096];

/* stash(v): keep v in data and in a bss page; return what was there before
 * (zero after a reset). */
static int stash(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    int64_t old_page;
    memcpy(&old_page, stash_page + 1000, 8);
    int r = fnrt_ret_int(out, stash_value);
    if (!r)
        r = fnrt_ret_int(out, old_page);
    stash_value = a[0].i;
    memcpy(stash_page + 1000, &a[0].i, 8);
    return r;
}
FNRT_EXPORT(stash);

/* The same in xmm0 (restored with the FPU/XSAVE state). */
static int stash_xmm(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    int64_t old;
    __asm__ volatile("movq %%xmm0, %0" : "=r"(old));
    __asm__ volatile("movq %0, %%xmm0" : : "r"(a[0].i));
    return fnrt_ret_int(out, old);
}
FNRT_EXPORT(stash_xmm);

/* The same in DR0 (restored with the debug registers). */
static int stash_dr0(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    int64_t old;
    __asm__ volatile("mov %%dr0, %0" : "=r"(old));
    __asm__ volatile("mov %0, %%dr0" : : "r"(a[0].i));
    return fnrt_ret_int(out, old);
}
FNRT_EXPORT(stash_dr0);

/* The same in the STAR MSR: the host either denies the guest its MSRs (the
 * call faults) or writes them back after each call. */
static int stash_msr(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000081u));
    __asm__ volatile("wrmsr"
                     :
                     : "a"((uint32_t)a[0].i), "d"((uint32_t)(a[0].i >> 32)), "c"(0xc0000081u));
    return fnrt_ret_int(out, (int64_t)((uint64_t)hi << 32 | lo));
}
FNRT_EXPORT(stash_msr);

/* The same in the LAPIC's task priority register: the host either turned
 * the LAPIC off (the access faults) or writes it back after each call. */
static int stash_apic(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    if (n != 1 || a[0].type != VMM_FN_INT)
        return FNRT_BADARGS;
    volatile uint32_t *tpr = (volatile uint32_t *)0xfee00080ull;
    uint32_t old = *tpr;
    *tpr = (uint32_t)a[0].i & 0xf0;
    return fnrt_ret_int(out, old);
}
FNRT_EXPORT(stash_apic);

/* ---- hostile ---- */

static int spin(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    for (;;)
        __asm__ volatile("" ::: "memory");
    __builtin_unreachable();
}
FNRT_EXPORT(spin);

/* Halt with interrupts off: only the deadline ends it. */
static int halt(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
    __builtin_unreachable();
}
FNRT_EXPORT(halt);

static int write_oob(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    *(volatile uint64_t *)UNBACKED = 0x1234;
    return fnrt_ret_int(out, 1);
}
FNRT_EXPORT(write_oob);

static int read_oob(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    return fnrt_ret_int(out, (int64_t) * (volatile uint64_t *)UNBACKED);
}
FNRT_EXPORT(read_oob);

/* OUT's header claims more than the buffer holds. */
static int bad_size(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    struct vmm_fn_msg h = {.size = 0xfffffff8u, .count = 1};
    memcpy((void *)VMM_FN_OUT_ADDR, &h, sizeof(h));
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_RETURN);
    return 0;
}
FNRT_EXPORT(bad_size);

/* A value whose length runs past the message. */
static int bad_len(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    struct {
        struct vmm_fn_msg h;
        struct vmm_fn_wire_val v;
        uint64_t payload;
    } m = {{sizeof(m), 1}, {VMM_FN_BYTES, 0xffffff00u}, 0};
    memcpy((void *)VMM_FN_OUT_ADDR, &m, sizeof(m));
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_RETURN);
    return 0;
}
FNRT_EXPORT(bad_len);

/* A host-call request whose name is not a byte string. */
static int bad_hcall(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    struct {
        struct vmm_fn_msg h;
        struct vmm_fn_wire_val v;
        int64_t payload;
    } m = {{sizeof(m), 1}, {VMM_FN_INT, 8}, 5};
    memcpy((void *)VMM_FN_HCALL_ADDR, &m, sizeof(m));
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_HOSTCALL);
    return 0;
}
FNRT_EXPORT(bad_hcall);

/* READY again, in the middle of a call. */
static int ready_again(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    fnrt_outb(VMM_FN_PORT, VMM_FN_OP_READY);
    return 0;
}
FNRT_EXPORT(ready_again);

/* A four-byte write to the signal port. */
static int wide_signal(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"((uint32_t)VMM_FN_OP_RETURN), "Nd"((uint16_t)VMM_FN_PORT));
    return 0;
}
FNRT_EXPORT(wide_signal);

/*
 * RETURN through a REP OUTSB that the host, reading guest memory through the
 * identity map, would take for a plain `out %al, %dx`: linear [2, 4) MiB is
 * remapped onto physical [0, 2) MiB, the REP OUTSB runs at linear 2 MiB + P
 * (physical P) while physical 2 MiB + P holds the plain OUT's opcode. A KVM
 * that completed a REP OUTS only on the next KVM_RUN (writing back its
 * emulator's registers) would carry this call's registers into the next
 * call unless the host lets it settle first; the written page tables tell
 * the host to. (Linux 6.1 finishes an OUTS before it exits.) Needs 4 MiB.
 */
static uint8_t remap_code[16] __attribute__((aligned(16)));
static const uint8_t return_op = VMM_FN_OP_RETURN;

static int remap_return(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    const uint64_t two_mib = 2ull << 20;
    uint64_t p = (uint64_t)(uintptr_t)remap_code;
    remap_code[0] = 0xf3; /* rep */
    remap_code[1] = 0x6e; /* outsb */
    remap_code[2] = 0xeb; /* jmp . */
    remap_code[3] = 0xfe;
    *(volatile uint8_t *)(two_mib + p) = 0xee; /* out %al, %dx, never run */
    struct vmm_fn_msg empty = {sizeof(empty), 0};
    memcpy((void *)VMM_FN_OUT_ADDR, &empty, sizeof(empty));
    uint64_t *pml4 = (uint64_t *)0x2000ull;
    uint64_t *pdpt = (uint64_t *)(pml4[0] & ~0xfffull);
    uint64_t *pd = (uint64_t *)(pdpt[0] & ~0xfffull);
    pd[1] = 0x0 | 0x1 | 0x2 | 0x20 | 0x40 | 0x80; /* physical 0, P RW A D PS */
    __asm__ volatile("invlpg (%0)" : : "r"(two_mib + p) : "memory");
    __asm__ volatile("mov $0x1111111111111111, %%rbx\n\t"
                     "mov $0x2222222222222222, %%r12\n\t"
                     "jmp *%0"
                     :
                     : "r"(two_mib + p), "c"(1ull), "d"((uint16_t)VMM_FN_PORT), "S"(&return_op)
                     : "rbx", "r12", "memory");
    return 0;
}
FNRT_EXPORT(remap_return);

/* Invalid opcode with no IDT: a triple fault. */
static int fault(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    __asm__ volatile("ud2");
    return 0;
}
FNRT_EXPORT(fault);

static int bad_port(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    fnrt_outb(0x80, 1);
    return 0;
}
FNRT_EXPORT(bad_port);

/* Overwrite echo's code with int3 and return: the next echo must work. */
static int scribble(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    memset((void *)(uintptr_t)echo, 0xcc, 64);
    return fnrt_ret_int(out, 0);
}
FNRT_EXPORT(scribble);

static int fail(const struct fnrt_val *a, unsigned n, struct fnrt_out *out)
{
    fnrt_abort(42, "told to fail");
}
FNRT_EXPORT(fail);
