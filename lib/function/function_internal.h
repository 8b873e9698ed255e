/* SPDX-License-Identifier: Apache-2.0 */
/* Private parts of lib/function shared by its files. */
#ifndef VMM_FUNCTION_INTERNAL_H
#define VMM_FUNCTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <vmm/function.h>

/* A host function's reply, written straight into the HRET buffer: value 0
 * (the status) is reserved and filled by fn_reply_finish. */
struct vmm_fn_reply {
    uint8_t *buf;
    size_t cap;
    size_t off;
    unsigned count;
};

void fn_reply_init(struct vmm_fn_reply *r, uint8_t *buf, size_t cap);
/* Write the header and the status; returns the message size. A negative
 * status drops the results. */
size_t fn_reply_finish(struct vmm_fn_reply *r, int status);

#endif /* VMM_FUNCTION_INTERNAL_H */
