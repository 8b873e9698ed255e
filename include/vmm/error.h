/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Common definitions for every libvmm header: the export and result-checking
 * macros, the error convention and the logging callback.
 *
 * Error convention: fallible calls return an int, 0 (or a count) on success
 * and a negative errno value on failure. -EFAULT means a guest address outside
 * guest memory, -EINVAL malformed guest or caller data, -ENOSPC a full ring or
 * buffer, -ENOTSUP a feature the host lacks.
 *
 * The library never prints, exits or aborts. It reports through the log
 * handler installed here; without one, messages are dropped.
 */
#ifndef VMM_ERROR_H
#define VMM_ERROR_H

#include <stdarg.h>
#include <vmm/abi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMM_API      __attribute__((visibility("default")))
#define VMM_MUST_USE __attribute__((warn_unused_result))

enum vmm_log_level {
    VMM_LOG_ERROR = 0,
    VMM_LOG_WARN = 1,
    VMM_LOG_INFO = 2,
    VMM_LOG_DEBUG = 3,
};

/* A log handler gets one formatted line (no trailing newline). It may be
 * called from any thread the library runs on (vCPU threads, the event loop
 * thread), possibly concurrently, so it must be thread-safe. */
typedef void (*vmm_log_fn)(void *opaque, enum vmm_log_level level, const char *msg);

/*
 * Install the process-wide log handler; messages above max_level are dropped
 * before formatting. fn == NULL removes the handler. Thread-safe; meant to be
 * called once at start-up.
 */
VMM_API void vmm_log_set_handler(vmm_log_fn fn, void *opaque, enum vmm_log_level max_level);

/* A static English description of a negative errno value returned by the
 * library (strerror of -err); never NULL. Thread-safe. */
VMM_API const char *vmm_strerror(int err);

/* The name of a log level ("error", "warn", "info", "debug"). */
VMM_API const char *vmm_log_level_name(enum vmm_log_level level);

#ifdef __cplusplus
}
#endif

#endif /* VMM_ERROR_H */
