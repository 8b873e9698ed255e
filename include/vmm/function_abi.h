/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The function-VM ABI (docs/function-vm.md): what a guest built for
 * vmm_fn_create (function.h) and the host agree on. Constants and wire
 * layouts only, with no library declarations, so a freestanding guest can
 * include it as it is.
 *
 * Memory: guest-physical addresses equal virtual ones (the long-mode entry
 * state of vmm_vcpu_set_boot_state identity-maps the first 4 GiB). Four
 * buffers at fixed addresses below the image, each named for its direction:
 *
 *   VMM_FN_HCALL_ADDR   guest -> host: a host-call request
 *   VMM_FN_HRET_ADDR    host -> guest: the reply to a host call
 *   VMM_FN_IN_ADDR      host -> guest: the call (function name and arguments)
 *   VMM_FN_OUT_ADDR     guest -> host: the result, or an abort's reason
 *
 * The guest image lies at or above VMM_FN_IMAGE_MIN (the loader refuses
 * anything lower).
 *
 * Signals: one byte written with `outb` to VMM_FN_PORT; the byte says which
 * (VMM_FN_OP_*). Any other port or MMIO access, a wider or repeated access
 * to the port, or a read of it, ends the call with an error.
 *
 * Messages (every buffer holds one): a struct vmm_fn_msg header, then
 * .count values, each a struct vmm_fn_wire_val header followed by .len
 * payload bytes and zero padding to a multiple of 8. .size is the whole
 * message, header included, and must equal the sum of its parts exactly.
 * All integers are little-endian.
 */
#ifndef VMM_FUNCTION_ABI_H
#define VMM_FUNCTION_ABI_H

#include <stdint.h>

#define VMM_FN_ABI_VERSION 1

#define VMM_FN_HCALL_ADDR 0x10000ull
#define VMM_FN_HCALL_SIZE 0x10000u /* 64 KiB */
#define VMM_FN_HRET_ADDR  0x20000ull
#define VMM_FN_HRET_SIZE  0x10000u /* 64 KiB */
#define VMM_FN_IN_ADDR    0x30000ull
#define VMM_FN_IN_SIZE    0x40000u /* 256 KiB */
#define VMM_FN_OUT_ADDR   0x70000ull
#define VMM_FN_OUT_SIZE   0x40000u /* 256 KiB */
#define VMM_FN_IMAGE_MIN  0xb0000ull

/* The signal port and what its byte says. */
#define VMM_FN_PORT 0x6e0
enum vmm_fn_op {
    /* Initialisation done: the host snapshots the VM here, and every call
     * starts from this state with the call in IN. Only once, before any call. */
    VMM_FN_OP_READY = 1,
    /* The call returned: its result message (any number of values) is in OUT. */
    VMM_FN_OP_RETURN = 2,
    /* A host call: its request is in HCALL (value 0: the host function's
     * name, VMM_FN_BYTES; then its arguments). When the guest runs again the
     * reply is in HRET: value 0 is a VMM_FN_INT status (0, or a negative
     * errno: -ENOSYS for a name the host did not register), then the results. */
    VMM_FN_OP_HOSTCALL = 3,
    /* The call failed inside the guest: OUT holds value 0, a VMM_FN_INT
     * code (VMM_FN_ABORT_*), and value 1, a VMM_FN_BYTES reason (may be empty). */
    VMM_FN_OP_ABORT = 4,
};

/* Abort codes the host gives a meaning to; any other code is the guest's own. */
#define VMM_FN_ABORT_NOFUNC  1 /* no function of that name: the call returns -ENOENT */
#define VMM_FN_ABORT_BADARGS 2 /* the arguments did not fit the function: -EINVAL */

/* Value types. */
#define VMM_FN_INT   1u /* len 8: a signed 64-bit integer */
#define VMM_FN_BYTES 2u /* len bytes, any content (names: 1..VMM_FN_NAME_MAX) */

/* Limits. */
#define VMM_FN_NAME_MAX   63u /* bytes in a function name */
#define VMM_FN_VALUES_MAX 64u /* values in one message */

/* The message header, at the start of each buffer. */
struct vmm_fn_msg {
    uint32_t size;  /* bytes, this header included */
    uint32_t count; /* values that follow */
};

/* Each value's header; the payload follows, padded to 8 bytes. */
struct vmm_fn_wire_val {
    uint32_t type; /* VMM_FN_INT, VMM_FN_BYTES */
    uint32_t len;  /* payload bytes before padding */
};

#endif /* VMM_FUNCTION_ABI_H */
