/* SPDX-License-Identifier: Apache-2.0 */
/* Private helpers shared by every component: logging and small utilities. */
#ifndef VMM_INTERNAL_H
#define VMM_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <vmm/error.h>
#include <vmm/seccomp.h>

/* Log through the application's handler (no-op without one). */
void vmm_log(enum vmm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool vmm_log_enabled(enum vmm_log_level level);

#define vmm_log_error(...) vmm_log(VMM_LOG_ERROR, __VA_ARGS__)
#define vmm_log_warn(...)  vmm_log(VMM_LOG_WARN, __VA_ARGS__)
#define vmm_log_info(...)  vmm_log(VMM_LOG_INFO, __VA_ARGS__)
#define vmm_log_debug(...) vmm_log(VMM_LOG_DEBUG, __VA_ARGS__)

/*
 * Warning lines for one kind of event a guest can cause at will (a malformed
 * chain, a broken queue, a refused register write), budgeted over the
 * lifetime of the object that keeps it: resets do not refill it, so no guest
 * can turn its own misbehaviour into a flood of log lines. Zero-initialised.
 */
struct vmm_log_limit {
    unsigned warned;
};

/* Log one such event: at warning level for the first max of l (the last of
 * them saying that further ones go to debug level), at debug level after. */
void vmm_log_limited(struct vmm_log_limit *l, unsigned max, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define VMM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The growth convention (vmm/abi.h). Every struct under it starts with
 * uint32_t size; the sizes past versions had all lie in [4, sizeof], since
 * fields are only appended, so any size in that range is one the library
 * knows. VMM_ABI_COPY_IN(&local, caller) copies the caller's first .size
 * bytes into the zeroed full-size local (fields the caller does not know
 * read as their zero default), or returns -EINVAL touching nothing.
 * VMM_ABI_OUT_OK(caller) checks a struct to fill out before any work;
 * VMM_ABI_COPY_OUT(caller, &local) then fills its first .size bytes from
 * the full-size local, keeping the caller's .size.
 */
static inline bool vmm_abi_size_ok(uint32_t size, size_t full)
{
    return size >= sizeof(uint32_t) && size <= full;
}

static inline int vmm_abi_copy_in(void *dst, size_t full, const void *src)
{
    uint32_t size;
    memcpy(&size, src, sizeof(size));
    if (!vmm_abi_size_ok(size, full))
        return -EINVAL;
    memset(dst, 0, full);
    memcpy(dst, src, size);
    return 0;
}

static inline void vmm_abi_copy_out(void *dst, const void *src)
{
    uint32_t size;
    memcpy(&size, dst, sizeof(size));
    memcpy((char *)dst + sizeof(size), (const char *)src + sizeof(size), size - sizeof(size));
}

#define VMM_ABI_SIZE_CHECK(p)                                                                      \
    _Static_assert(__builtin_offsetof(__typeof__(*(p)), size) == 0 &&                              \
                       sizeof((p)->size) == sizeof(uint32_t),                                      \
                   "growth convention: uint32_t size first")
#define VMM_ABI_COPY_IN(dst, src)                                                                  \
    __extension__({                                                                                \
        VMM_ABI_SIZE_CHECK(dst);                                                                   \
        vmm_abi_copy_in((dst), sizeof(*(dst)), (src));                                             \
    })
/* As VMM_ABI_COPY_IN, over defaults already in dst (for a struct whose
 * defaults are not all zero): only the caller's first .size bytes change. */
#define VMM_ABI_COPY_OVER(dst, src)                                                                \
    __extension__({                                                                                \
        VMM_ABI_SIZE_CHECK(dst);                                                                   \
        uint32_t size_;                                                                            \
        memcpy(&size_, (src), sizeof(size_));                                                      \
        int r_ = vmm_abi_size_ok(size_, sizeof(*(dst))) ? 0 : -EINVAL;                             \
        if (r_ == 0)                                                                               \
            memcpy((dst), (src), size_);                                                           \
        r_;                                                                                        \
    })
#define VMM_ABI_OUT_OK(p) vmm_abi_size_ok((p)->size, sizeof(*(p)))
#define VMM_ABI_COPY_OUT(dst, src)                                                                 \
    __extension__({                                                                                \
        VMM_ABI_SIZE_CHECK(src);                                                                   \
        _Static_assert(sizeof(*(dst)) == sizeof(*(src)), "same struct");                           \
        vmm_abi_copy_out((dst), (src));                                                            \
    })

struct iovec;
/*
 * writev(2) that a vanished reader cannot kill the process with: SIGPIPE is
 * blocked in the calling thread for the write, and one the write raised is
 * consumed before unblocking (unless one was already pending). Retries on
 * EINTR; returns what writev returns, errno set (EPIPE for a gone reader).
 */
long vmm_writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt);

/* How a device's output reaches its fd without blocking a vCPU forever or
 * killing the process with SIGPIPE (the UART's and the virtio console's). */
enum vmm_out_kind {
    VMM_OUT_NONE,    /* no fd: output is dropped */
    VMM_OUT_REGULAR, /* regular file or block device: never blocks */
    VMM_OUT_PIPE,    /* pipe/FIFO: may block, may raise SIGPIPE */
    VMM_OUT_SOCKET,  /* sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) */
    VMM_OUT_OTHER,   /* tty and other character devices: may block */
};

/* What kind of output fd is (VMM_OUT_NONE for -1). */
enum vmm_out_kind vmm_out_classify(int fd);

/* Whether a write to this kind may block: poll for POLLOUT first. */
static inline bool vmm_out_needs_poll(enum vmm_out_kind kind)
{
    return kind == VMM_OUT_PIPE || kind == VMM_OUT_OTHER;
}

/*
 * One write of iov[0..n) to fd the way its kind needs: sendmsg without
 * waiting or SIGPIPE for a socket, vmm_writev_nosigpipe for a pipe, writev
 * otherwise. Retries on EINTR; does not poll. Returns what writev returns,
 * errno set.
 */
long vmm_out_writev(int fd, enum vmm_out_kind kind, const struct iovec *iov, int n);

struct vmm_vm;
/*
 * lib/cpu/routes.c: MSI routes for device interrupt vectors, each a GSI from
 * VMM_IOAPIC_PINS up that an irqfd (vmm_vm_irqfd) can feed. alloc hands out
 * a GSI with no route installed (0, -ENOSPC or -ENOMEM); set installs
 * (valid) or removes the route to address/data (0, -EINVAL for a GSI not
 * allocated, or a -errno from KVM); free returns the GSI. Thread-safe.
 */
int vmm_vm_msi_route_alloc(struct vmm_vm *vm, unsigned *gsi);
int vmm_vm_msi_route_set(struct vmm_vm *vm, unsigned gsi, uint64_t address, uint32_t data,
                         bool valid);
void vmm_vm_msi_route_free(struct vmm_vm *vm, unsigned gsi);
/* An IOAPIC pin or an allocated MSI route. */
bool vmm_vm_gsi_routable(struct vmm_vm *vm, unsigned gsi);
/* The KVM VM fd (lib/cpu/vm.c), for components that create KVM devices. */
int vmm_vm_kvm_fd(const struct vmm_vm *vm);

/*
 * lib/seccomp/seccomp.c: a filter built ahead of the thread that loads it.
 * Building (libseccomp) allocates; done on a thread vmm_vm_run starts, that
 * would give the thread a malloc arena of its own (some 100 KiB resident)
 * and put the build on the way to the guest's first instruction.
 * build: 0, -EINVAL (as vmm_seccomp_install), -ENOMEM or another -errno;
 * load: no_new_privs and the filter on the calling thread (no allocation),
 * 0 or the -errno the kernel gave; free accepts an empty program.
 */
struct vmm_seccomp_prog {
    void *insns; /* struct sock_filter[len] */
    unsigned short len;
};
int vmm_seccomp_prog_build(enum vmm_seccomp_thread kind, const struct vmm_seccomp_config *cfg,
                           struct vmm_seccomp_prog *out);
int vmm_seccomp_prog_load(const struct vmm_seccomp_prog *p);
void vmm_seccomp_prog_free(struct vmm_seccomp_prog *p);
/* As vmm_seccomp_prog_build, always through libseccomp (never the build's
 * generated programs): what lib/seccomp/gen.c writes them with, and what a
 * test compares them against. */
int vmm_seccomp_prog_build_libseccomp(enum vmm_seccomp_thread kind,
                                      const struct vmm_seccomp_config *cfg,
                                      struct vmm_seccomp_prog *out);
/* kind's allowlist as distinct system call numbers (those allowed only
 * with some arguments included, ioctl once) and ioctl request numbers,
 * without a config's extras or a sanitizer build's additions: 0, -EINVAL,
 * or -E2BIG when max is too small. And how many entries repeat within one
 * of the lists the allowlists are made of (0). For tests and sizes. */
int vmm_seccomp_allowlist(enum vmm_seccomp_thread kind, int *calls, unsigned *nr_calls,
                          unsigned max_calls, unsigned long *reqs, unsigned *nr_reqs,
                          unsigned max_reqs);
unsigned vmm_seccomp_list_repeats(void);

/*
 * lib/cpu/vm.c: device memory (a passthrough device's BAR mmap) as a KVM
 * memory slot of its own, from the top of KVM's slot numbers so that guest
 * RAM's slots (region index) never meet them: set maps len bytes of host
 * (page-aligned) at gpa and returns the slot in *slot (0, -ENOSPC with
 * VMM_VM_DEVICE_SLOTS in use, or a -errno from KVM); clear drops it.
 * Thread-safe, also from a vCPU thread.
 */
#define VMM_VM_DEVICE_SLOTS 64
int vmm_vm_device_slot_set(struct vmm_vm *vm, uint64_t gpa, uint64_t len, void *host,
                           unsigned *slot);
void vmm_vm_device_slot_clear(struct vmm_vm *vm, unsigned slot);

/*
 * lib/cpu/vm.c: call fn(opaque, region) after vmm_vm_add_memory added region
 * to the map and to KVM (DMA maps following guest memory); a negative return
 * fails that vmm_vm_add_memory. add returns 0 or -ENOSPC (at most
 * VMM_VM_MAX_LISTENERS); remove forgets the fn/opaque pair. Not while vCPUs
 * run.
 */
/* lib/cpu/vm.c: forget a vmm_vm_add_cleanup registration (the last one of
 * fn/opaque), for a component that goes before its VM. Not during
 * vmm_vm_destroy. */
void vmm_vm_remove_cleanup(struct vmm_vm *vm, void (*fn)(void *opaque), void *opaque);

#define VMM_VM_MAX_LISTENERS 8
int vmm_vm_add_memory_listener(struct vmm_vm *vm, int (*fn)(void *opaque, unsigned region),
                               void *opaque);
void vmm_vm_remove_memory_listener(struct vmm_vm *vm, int (*fn)(void *opaque, unsigned region),
                                   void *opaque);

#endif /* VMM_INTERNAL_H */
