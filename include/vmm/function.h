/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Function micro-VMs: a kernel-less guest whose C functions the host calls by
 * name, each call starting from the state the guest reached at the end of its
 * initialisation. The guest side of the contract is in function_abi.h and
 * docs/function-vm.md; a guest runtime is in tests/guests/fnrt.
 *
 * Life of a function VM: vmm_fn_create loads an ELF64 image into a VM of the
 * configured memory budget (one vCPU, long mode) and runs it until it says it
 * is ready; that state is kept as an in-memory snapshot (the pages the guest
 * or the loader wrote, and the vCPU registers). vmm_fn_call then writes the
 * call into the guest's IN buffer and runs it until it returns or aborts,
 * answering the host calls it makes on the way; afterwards the VM is put back
 * to the snapshot (only the pages dirtied since are copied back, found with
 * KVM's dirty log), whatever the call did, so no call sees another's data.
 *
 * The guest is hostile: every length and offset it hands over is checked, a
 * guest that loops is stopped by the call's deadline or vmm_fn_cancel, and a
 * guest that faults, touches memory it does not have or breaks the protocol
 * fails that call only.
 *
 * Threads: one call at a time per function VM (vmm_fn_call, create and
 * destroy from one thread); vmm_fn_cancel from any thread. Separate function
 * VMs are independent.
 */
#ifndef VMM_FUNCTION_H
#define VMM_FUNCTION_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/function_abi.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_fn;

/* Default and smallest memory budget. */
#define VMM_FN_MEM_DEFAULT (4ull << 20)
#define VMM_FN_MEM_MIN     (2ull << 20)

/* Configuration of a function VM. Zero means default; growth convention (abi.h). */
struct vmm_fn_config {
    uint32_t size;     /* sizeof(struct vmm_fn_config) */
    const void *image; /* the ELF64 image in memory, image_size bytes, or: */
    size_t image_size;
    const char *image_path;   /* the ELF64 image's file (when image is NULL) */
    uint64_t mem_size;        /* guest RAM in bytes, a multiple of 2 MiB (default 4 MiB) */
    uint64_t init_timeout_ns; /* bound on the run to READY (default 1 s; UINT64_MAX: none) */
    const char *kvm_path;     /* default "/dev/kvm" */
};

/*
 * One value of a call, of a result or of a host call. An array element: its
 * layout is fixed and never grows (new types would use .type and the
 * reserved room). For VMM_FN_BYTES, data points at len bytes.
 */
struct vmm_fn_val {
    uint32_t type; /* VMM_FN_INT or VMM_FN_BYTES (function_abi.h) */
    uint32_t len;  /* VMM_FN_BYTES: byte count */
    int64_t i;     /* VMM_FN_INT: the value */
    const void *data;
    uint64_t reserved;
};

/* Shorthands for building argument arrays. */
#define VMM_FN_INT_VAL(v)      ((struct vmm_fn_val){.type = VMM_FN_INT, .len = 8, .i = (v)})
#define VMM_FN_BYTES_VAL(p, n) ((struct vmm_fn_val){.type = VMM_FN_BYTES, .len = (n), .data = (p)})

/* What a call gave back. */
struct vmm_fn_result {
    uint32_t size; /* in: sizeof(struct vmm_fn_result) (abi.h): filled that far */
    /* The result values. Borrowed: valid until the next vmm_fn_call on this
     * function VM or its destruction. */
    const struct vmm_fn_val *values;
    unsigned count;
    int abort_code;  /* -ECONNABORTED: the guest's VMM_FN_OP_ABORT code */
    uint64_t exits;  /* guest exits the call took (host calls included) */
    char error[128]; /* why the call failed ("" on success) */
};

/* The reply a host function builds; see vmm_fn_reply_int. */
struct vmm_fn_reply;

/*
 * A host function the guest may call by name. args are the guest's
 * arguments, copied out of guest memory and valid until it returns; results
 * go into reply (vmm_fn_reply_int/bytes). Return 0, or a negative errno the
 * guest receives as the call's status (its results are then dropped). Runs
 * on the thread inside vmm_fn_call; it may not call into fn except
 * vmm_fn_cancel.
 */
typedef int (*vmm_fn_host_fn)(void *opaque, struct vmm_fn *fn, const struct vmm_fn_val *args,
                              unsigned nargs, struct vmm_fn_reply *reply);

/*
 * Create a function VM: a VM with cfg->mem_size bytes of RAM at address 0
 * and one vCPU, the ELF64 image loaded (no segment below
 * VMM_FN_IMAGE_MIN), run until it signals VMM_FN_OP_READY, that state kept
 * as the snapshot every call starts from. Where KVM has the MSR filter the
 * guest gets no MSR access and no LAPIC (docs/function-vm.md). The bound on
 * initialisation is kept by a POSIX timer that sends the VM's kick signal
 * (SIGRTMIN + 1) to the calling thread until READY or the deadline. Returns 0, -EINVAL (bad cfg, no
 * image, a refused image), -ETIMEDOUT (no READY within init_timeout_ns),
 * -EPROTO (the guest did something else before READY: it faulted, aborted,
 * made a host call or touched a port or address it should not; logged),
 * -ENOMEM, or a -errno from KVM (-ENOENT/-EACCES: no usable /dev/kvm).
 */
VMM_API VMM_MUST_USE int vmm_fn_create(const struct vmm_fn_config *cfg, struct vmm_fn **out);

/* Tear down a function VM. Accepts NULL. Not while a call runs. */
VMM_API void vmm_fn_destroy(struct vmm_fn *fn);

/*
 * Register fn_cb under name (1..VMM_FN_NAME_MAX bytes) for the guest's host
 * calls; registering a name again replaces its function. Not while a call
 * runs. Returns 0, -EINVAL (bad name or NULL callback) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_fn_register(struct vmm_fn *fn, const char *name, vmm_fn_host_fn fn_cb,
                                         void *opaque);

/*
 * Call the guest function name with args[0..nargs) and wait for it; timeout_ns
 * bounds the call (0: no bound; the first call with a bound starts one
 * deadline thread for fn, which lives until vmm_fn_destroy), and
 * vmm_fn_cancel ends it early. Whatever
 * happens, the VM is back in its snapshot state when this returns. res->size
 * must be set (abi.h); res gets the result values on success and the reason
 * in res->error on failure. Returns 0 or:
 * -EINVAL   bad arguments (a name of the wrong length, a bad value type,
 *           more than VMM_FN_VALUES_MAX - 1 arguments, a res->size the
 *           library does not know);
 * -E2BIG    the call does not fit the guest's IN buffer;
 * -ENOENT   the guest has no function of that name;
 * -ETIMEDOUT the deadline passed; -ECANCELED: vmm_fn_cancel;
 * -ECONNABORTED the guest aborted the call (res->abort_code, res->error);
 * -EPROTO   the guest broke the protocol (a malformed message, a bad signal);
 * -EFAULT   the guest faulted (triple fault) or touched memory or a port it
 *           does not have;
 * -EBUSY    a call is running on fn (this one called from a host function);
 * -EIO      the function VM is unusable after a failed reset (destroy it);
 * or a -errno from KVM. The guest's own misbehaviour is logged at debug level.
 */
VMM_API VMM_MUST_USE int vmm_fn_call(struct vmm_fn *fn, const char *name,
                                     const struct vmm_fn_val *args, unsigned nargs,
                                     uint64_t timeout_ns, struct vmm_fn_result *res);

/* End the call running on fn now (vmm_fn_call returns -ECANCELED); no effect
 * when none runs. Any thread, also from a host function. */
VMM_API void vmm_fn_cancel(struct vmm_fn *fn);

/* Append a result to a host function's reply. Return 0, -EINVAL (NULL data
 * with len > 0) or -ENOSPC (the reply would not fit VMM_FN_HRET_SIZE or
 * exceed VMM_FN_VALUES_MAX values). */
VMM_API int vmm_fn_reply_int(struct vmm_fn_reply *reply, int64_t v);
VMM_API int vmm_fn_reply_bytes(struct vmm_fn_reply *reply, const void *data, size_t len);

/* Statistics of a function VM. */
struct vmm_fn_stats {
    uint32_t size;                /* in: sizeof(struct vmm_fn_stats) (abi.h): filled that far */
    uint64_t calls;               /* vmm_fn_call calls that ran the guest */
    uint64_t failed;              /* of those, the ones that did not return 0 */
    uint64_t snapshot_pages;      /* 4 KiB pages held by the snapshot */
    uint64_t pages_restored;      /* pages copied back or zeroed by resets, in total */
    uint64_t last_pages_restored; /* by the last call's reset */
};

/* Fill *st. Returns 0 or -EINVAL (a size the library does not know). */
VMM_API int vmm_fn_get_stats(const struct vmm_fn *fn, struct vmm_fn_stats *st);

/*
 * Encoding helpers, shared with tests and tools: vmm_fn_encode writes a
 * message of vals[0..n) into buf (size cap) and returns its size, or
 * -E2BIG/-EINVAL; vmm_fn_decode checks the message in buf[0..len) (as the
 * library checks everything a guest hands over) and points vals[0..max) into
 * buf, returning the value count, or -EPROTO (malformed) / -ENOSPC (more than
 * max values).
 */
VMM_API int vmm_fn_encode(void *buf, size_t cap, const struct vmm_fn_val *vals, unsigned n);
VMM_API int vmm_fn_decode(const void *buf, size_t len, struct vmm_fn_val *vals, unsigned max);

#ifdef __cplusplus
}
#endif

#endif /* VMM_FUNCTION_H */
