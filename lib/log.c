/* SPDX-License-Identifier: Apache-2.0 */
/* The process-wide log handler, error strings and the version string. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <vmm/error.h>
#include <vmm/version.h>

#include "vmm_internal.h"

/* The handler is read on every log call from any thread; it is replaced
 * rarely, so the three fields are published as one pointer-sized snapshot. */
struct log_handler {
    vmm_log_fn fn;
    void *opaque;
    enum vmm_log_level max_level;
};

static struct log_handler handlers[2];
static struct log_handler *current;
static unsigned next_slot;

void vmm_log_set_handler(vmm_log_fn fn, void *opaque, enum vmm_log_level max_level)
{
    if (!fn) {
        __atomic_store_n(&current, NULL, __ATOMIC_RELEASE);
        return;
    }
    /* Two slots: a reader may still use the old snapshot while we fill the
     * other one. Handlers are meant to be set once at start-up. */
    struct log_handler *h = &handlers[next_slot++ & 1];
    h->fn = fn;
    h->opaque = opaque;
    h->max_level = max_level;
    __atomic_store_n(&current, h, __ATOMIC_RELEASE);
}

bool vmm_log_enabled(enum vmm_log_level level)
{
    struct log_handler *h = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    return h && level <= h->max_level;
}

/* Format one line and hand it to the handler, if it wants level; suffix
 * (when not NULL) is appended where it fits. */
static void __attribute__((format(printf, 3, 0)))
log_line(enum vmm_log_level level, const char *suffix, const char *fmt, va_list ap)
{
    struct log_handler *h = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    if (!h || level > h->max_level)
        return;
    char buf[512];
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if (suffix && n >= 0 && (size_t)n < sizeof(buf))
        snprintf(buf + n, sizeof(buf) - (size_t)n, "%s", suffix);
    h->fn(h->opaque, level, buf);
}

void vmm_log(enum vmm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(level, NULL, fmt, ap);
    va_end(ap);
}

void vmm_log_limited(struct vmm_log_limit *l, unsigned max, const char *fmt, ...)
{
    enum vmm_log_level level = VMM_LOG_DEBUG;
    const char *suffix = NULL;
    if (l->warned < max) {
        level = VMM_LOG_WARN;
        if (++l->warned == max)
            suffix = " (further ones logged at debug level)";
    }
    va_list ap;
    va_start(ap, fmt);
    log_line(level, suffix, fmt, ap);
    va_end(ap);
}

const char *vmm_strerror(int err)
{
    if (err == 0)
        return "success";
    return strerror(err < 0 ? -err : err);
}

const char *vmm_log_level_name(enum vmm_log_level level)
{
    switch (level) {
    case VMM_LOG_ERROR:
        return "error";
    case VMM_LOG_WARN:
        return "warn";
    case VMM_LOG_INFO:
        return "info";
    case VMM_LOG_DEBUG:
        return "debug";
    }
    return "?";
}

#define VMM_STR2(x) #x
#define VMM_STR(x)  VMM_STR2(x)

const char *vmm_version_string(void)
{
    return VMM_STR(VMM_VERSION_MAJOR) "." VMM_STR(VMM_VERSION_MINOR) "." VMM_STR(VMM_VERSION_PATCH);
}
