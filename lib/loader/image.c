/* SPDX-License-Identifier: Apache-2.0 */
/* Loader plumbing: images read from a buffer or straight from a file into
 * guest memory, refusal reasons, and the RAM/reserved ranges of a machine. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader_internal.h"

int vmm_loader_fail(char *err, size_t n, const char *tag, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    vmm_log_debug("%s: %s", tag, err);
    return code;
}

int vmm_image_open(struct vmm_image *im, const char *path, uint64_t max_size, char *err, size_t n)
{
    *im = (struct vmm_image){.fd = -1, .path = path};
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = -errno;
        return vmm_loader_fail(err, n, "loader", e, "cannot open %s: %s", path, vmm_strerror(e));
    }
    struct stat st;
    int r;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        vmm_loader_fail(err, n, "loader", r, "cannot stat %s: %s", path, vmm_strerror(r));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        r = vmm_loader_fail(err, n, "loader", -EISDIR, "%s is a directory", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = vmm_loader_fail(err, n, "loader", -EINVAL, "%s is not a regular file", path);
        goto fail;
    }
    if (st.st_size <= 0) {
        r = vmm_loader_fail(err, n, "loader", -EINVAL, "%s: empty file", path);
        goto fail;
    }
    if (max_size && (uint64_t)st.st_size > max_size) {
        r = vmm_loader_fail(err, n, "loader", -EFBIG, "%s: %lld bytes is larger than guest memory",
                            path, (long long)st.st_size);
        goto fail;
    }
    im->fd = fd;
    im->size = (uint64_t)st.st_size;
    return 0;
fail:
    close(fd);
    return r;
}

void vmm_image_close(struct vmm_image *im)
{
    if (im->fd >= 0)
        close(im->fd);
    im->fd = -1;
}

static int image_range_ok(const struct vmm_image *im, uint64_t off, uint64_t len)
{
    uint64_t end;
    return !__builtin_add_overflow(off, len, &end) && end <= im->size;
}

/* pread exactly len bytes; a file that ends early has shrunk under us. */
static int pread_all(int fd, void *dst, size_t len, uint64_t off)
{
    unsigned char *p = dst;
    while (len > 0) {
        size_t chunk = len < (1u << 30) ? len : (1u << 30);
        ssize_t got = pread(fd, p, chunk, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return -EINVAL;
        p += got;
        off += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

int vmm_image_read(const struct vmm_image *im, uint64_t off, void *dst, size_t len)
{
    if (!image_range_ok(im, off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (im->buf) {
        memcpy(dst, im->buf + off, len);
        return 0;
    }
    return pread_all(im->fd, dst, len, off);
}

int vmm_image_to_guest(struct vmm_memory *mem, vmm_gpa_t gpa, const struct vmm_image *im,
                       uint64_t off, uint64_t len)
{
    if (!image_range_ok(im, off, len) || len > SIZE_MAX)
        return -EINVAL;
    if (len == 0)
        return 0;
    if (vmm_memory_check_range(mem, gpa, len) != 0)
        return -EFAULT;
    if (im->buf)
        return vmm_memory_write(mem, gpa, im->buf + off, (size_t)len);

    /* One pread per region: the bytes go from the page cache to guest RAM. */
    while (len > 0) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_find_region(mem, gpa, &info) < 0)
            return -EFAULT;
        uint64_t room = info.gpa + info.len - gpa;
        size_t chunk = (size_t)(len < room ? len : room);
        void *p;
        int r = vmm_memory_get_ptr(mem, gpa, chunk, VMM_ACCESS_WRITE, &p);
        if (r < 0)
            return r;
        r = pread_all(im->fd, p, chunk, off);
        if (r < 0)
            return r;
        gpa += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

int vmm_guest_zero(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t len)
{
    void *p;

    if (len == 0)
        return 0;
    if (len <= SIZE_MAX && vmm_memory_get_ptr(mem, gpa, (size_t)len, VMM_ACCESS_WRITE, &p) == 0) {
        memset(p, 0, (size_t)len);
        return 0;
    }
    /* The range spans adjacent regions: write through the checked path. */
    static const unsigned char zeros[4096];
    while (len > 0) {
        size_t chunk = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        int ret = vmm_memory_write(mem, gpa, zeros, chunk);
        if (ret < 0)
            return ret;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

/* ---- ranges ---- */

static int range_cmp(const void *a, const void *b)
{
    const struct vmm_range *x = a, *y = b;
    if (x->base != y->base)
        return x->base < y->base ? -1 : 1;
    return 0;
}

int vmm_loader_ram_runs(const struct vmm_memory *mem, struct vmm_range **out)
{
    unsigned n = vmm_memory_region_count(mem);
    struct vmm_range *r = calloc(n ? n : 1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) != 0 || info.len == 0)
            continue;
        if (info.flags & VMM_MEMORY_F_READONLY)
            continue;
        /* The map refuses regions whose end wraps. */
        r[k++] = (struct vmm_range){info.gpa, info.gpa + info.len};
    }
    qsort(r, k, sizeof(*r), range_cmp);
    unsigned m = 0;
    for (unsigned i = 0; i < k; i++) {
        if (m > 0 && r[i].base <= r[m - 1].end) {
            if (r[i].end > r[m - 1].end)
                r[m - 1].end = r[i].end;
        } else {
            r[m++] = r[i];
        }
    }
    *out = r;
    return (int)m;
}

int vmm_loader_machine_reserved(const struct vmm_machine *machine, struct vmm_range *out)
{
    if (!machine)
        return 0;
    if (machine->nr_reserved > VMM_MACHINE_MAX_RESERVED)
        return -EINVAL;
    int k = 0;
    for (unsigned i = 0; i < machine->nr_reserved; i++) {
        const struct vmm_machine_range *m = &machine->reserved[i];
        uint64_t end;
        if (__builtin_add_overflow(m->base, m->size, &end))
            return -EINVAL;
        if (m->size == 0)
            continue;
        out[k++] = (struct vmm_range){m->base, end};
    }
    return k;
}

int vmm_loader_readonly_overlap(const struct vmm_memory *mem, uint64_t base, uint64_t end)
{
    unsigned n = vmm_memory_region_count(mem);
    for (unsigned r = 0; r < n && r <= INT_MAX; r++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, r, &info) != 0 || !(info.flags & VMM_MEMORY_F_READONLY))
            continue;
        /* A region's end cannot wrap: the map refuses such regions. */
        if (info.gpa < end && base < info.gpa + info.len)
            return (int)r;
    }
    return -1;
}
