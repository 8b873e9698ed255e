/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection for the tests in this folder: the suites are linked with
 * -Wl,--wrap for the allocation functions and the system calls the library
 * makes to set things up (see CMakeLists.txt), so every such call from the
 * library's objects goes through fault.c first. Armed with n, the n-th
 * wrapped call fails (NULL and ENOMEM for an allocation, -1 and an errno for
 * a system call, -errno for liburing); disarmed, every call goes through.
 * Nothing of this is in the library itself: only these test binaries are
 * linked this way.
 *
 * fault_walk runs an operation with the 1st, 2nd, ... wrapped call failing
 * until a run makes fewer calls than the failure's number (the operation
 * then succeeded untouched), and after each run checks: the result is 0
 * (a failure the library tolerates) or a -errno, the cleanup left as many
 * open fds as there were before, and (in a sanitizer build) LeakSanitizer
 * finds nothing leaked. VMM_FAULT_ONLY=n runs only the n-th failure,
 * VMM_FAULT_MAX caps the walk (default 2000).
 */
#ifndef VMM_TEST_FAULT_H
#define VMM_TEST_FAULT_H

#include <stdbool.h>

/* Fail the n-th wrapped call from now on (n >= 1); 0 disarms. */
void fault_arm(unsigned n);
/* Disarm; returns whether the armed failure happened. */
bool fault_disarm(void);
/* The name of the call made to fail last ("" if none). */
const char *fault_last(void);

/* One operation under test: returns 0 with everything it made kept in ctx
 * (which cleanup frees), or a negative errno with nothing kept (the
 * library's error paths must free what the failed call made; op frees what
 * it made before that call). */
struct fault_case {
    const char *name;
    int (*op)(void *ctx);
    void (*cleanup)(void *ctx); /* after op returned 0 */
    void *ctx;
};

/* Walk every failure point of c; returns the number of runs (the points
 * plus the final clean one). Fails the Check test on a broken rule. */
unsigned fault_walk(const struct fault_case *c);

#endif /* VMM_TEST_FAULT_H */
