/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bzImage's payload booted without the kernel's own decompressor: the
 * compressed vmlinux ELF the setup header points at (payload_offset,
 * payload_length) decompressed here (XZ, through liblzma), then loaded as an
 * ELF kernel (PVH entry when it has the note), optionally kept in a cache
 * directory so that later boots only read it.
 *
 * Every size comes from the hostile image and is checked: the payload lies
 * inside the protected-mode kernel (bz_check_layout), the size it states in
 * its last four bytes (the kernel build appends it) is capped by init_size
 * (the guest's decompressor could not unpack more either) and by
 * BZ_PAYLOAD_MAX, the decoder gets BZ_XZ_MEMLIMIT and must end exactly at the
 * stated size, at the end of the stream.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linux_internal.h"

/* No x86 vmlinux comes near this; the output buffer is allocated whole. */
#define BZ_PAYLOAD_MAX (1ull << 30)
/* Linux compresses with a 32 MiB dictionary (scripts/xz_wrap.sh); twice
 * that bounds what a hostile stream header can make the decoder allocate. */
#define BZ_XZ_MEMLIMIT (64ull << 20)

static const unsigned char xz_magic[6] = {0xfd, '7', 'z', 'X', 'Z', 0x00};

/* The compressors a bzImage may use (CONFIG_KERNEL_*), by their magic. */
static const char *payload_kind(const unsigned char *p, uint64_t len)
{
    static const struct {
        const char *name;
        unsigned len;
        unsigned char magic[4];
    } kinds[] = {
        {"gzip", 2, {0x1f, 0x8b}},
        {"bzip2", 3, {'B', 'Z', 'h'}},
        {"LZMA", 3, {0x5d, 0x00, 0x00}},
        {"LZO", 4, {0x89, 'L', 'Z', 'O'}},
        {"LZ4", 4, {0x02, 0x21, 0x4c, 0x18}},
        {"zstd", 4, {0x28, 0xb5, 0x2f, 0xfd}},
    };
    for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (len >= kinds[i].len && memcmp(p, kinds[i].magic, kinds[i].len) == 0)
            return kinds[i].name;
    return "an unknown format";
}

int linux_payload_read(const struct vmm_image *im, uint64_t kernel_off,
                       const struct vmm_linux_setup_header *hdr, uint64_t max,
                       struct linux_payload *pl, struct vmm_linux_boot *boot)
{
    memset(pl, 0, sizeof(*pl));
    /* bz_check_layout saw the payload inside the protected-mode kernel. */
    uint64_t off = kernel_off + hdr->payload_offset;
    uint64_t len = hdr->payload_length;
    if (hdr->payload_offset == 0 || len < sizeof(xz_magic) + 4)
        return linux_fail(boot, -ENOTSUP, "the bzImage states no compressed payload");
    unsigned char *buf = malloc(len);
    if (!buf)
        return linux_fail(boot, -ENOMEM, "out of memory for the %" PRIu64 "-byte payload", len);
    int r = vmm_image_read(im, off, buf, len);
    if (r < 0) {
        free(buf);
        return linux_fail(boot, r, "cannot read the payload: %s",
                          r == -EINVAL && !im->buf ? "the file shrank" : vmm_strerror(r));
    }
    if (memcmp(buf, xz_magic, sizeof(xz_magic)) != 0) {
        const char *kind = payload_kind(buf, len);
        free(buf);
        return linux_fail(boot, -ENOTSUP, "the payload is %s, not XZ: only XZ is extracted", kind);
    }
    uint32_t out_len;
    memcpy(&out_len, buf + len - 4, 4); /* the kernel build appends it, little-endian */
    if (out_len == 0 || out_len > hdr->init_size || out_len > max) {
        free(buf);
        return linux_fail(boot, -EFBIG,
                          "the payload states %" PRIu32 " bytes uncompressed: none, or more than "
                          "init_size 0x%" PRIx32 " or 0x%" PRIx64 " (guest memory, 1 GiB)",
                          out_len, hdr->init_size, max);
    }
    pl->xz = buf;
    pl->xz_len = len - 4;
    pl->out_len = out_len;
    return 0;
}

int linux_payload_extract(const struct linux_payload *pl, unsigned char **out,
                          struct vmm_linux_boot *boot)
{
    *out = NULL;
    unsigned char *buf = malloc(pl->out_len);
    if (!buf)
        return linux_fail(boot, -ENOMEM, "out of memory for the %" PRIu32 "-byte vmlinux",
                          pl->out_len);
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_ret ret = lzma_stream_decoder(&s, BZ_XZ_MEMLIMIT, 0);
    if (ret == LZMA_OK) {
        s.next_in = pl->xz;
        s.avail_in = pl->xz_len;
        s.next_out = buf;
        s.avail_out = pl->out_len;
        /* Each LZMA_OK made progress; with neither input nor room left the
         * next call says LZMA_BUF_ERROR, so this ends. */
        do
            ret = lzma_code(&s, LZMA_FINISH);
        while (ret == LZMA_OK);
    }
    uint64_t got = s.total_out;
    size_t left_in = s.avail_in, room = s.avail_out;
    lzma_end(&s);

    int r = 0;
    if (ret == LZMA_STREAM_END && (got != pl->out_len || left_in != 0))
        r = linux_fail(boot, -EINVAL,
                       "the XZ payload ends after %" PRIu64 " of the %" PRIu32
                       " bytes it states, %zu bytes before its size trailer",
                       got, pl->out_len, left_in);
    else if (ret == LZMA_BUF_ERROR && room == 0)
        r = linux_fail(boot, -EFBIG,
                       "the XZ payload decompresses to more than the %" PRIu32 " bytes it states",
                       pl->out_len);
    else if (ret == LZMA_BUF_ERROR)
        r = linux_fail(boot, -EINVAL, "the XZ payload is truncated after %" PRIu64 " bytes out",
                       got);
    else if (ret == LZMA_MEMLIMIT_ERROR)
        r = linux_fail(boot, -E2BIG, "the XZ payload needs more than %llu MiB to decompress",
                       BZ_XZ_MEMLIMIT >> 20);
    else if (ret == LZMA_MEM_ERROR)
        r = linux_fail(boot, -ENOMEM, "out of memory decompressing the payload");
    else if (ret != LZMA_STREAM_END)
        r = linux_fail(boot, -EINVAL,
                       "the XZ payload is corrupt (liblzma error %d after %" PRIu64 " bytes out)",
                       (int)ret, got);
    if (r < 0) {
        free(buf);
        return r;
    }
    *out = buf;
    return 0;
}

/* ---- the cache ---- */

/* The entry's name: the payload's CRC-64 and both sizes, so a changed image
 * never finds an entry made from another. */
static void cache_name(const struct linux_payload *pl, char *name, size_t n)
{
    uint64_t crc = lzma_crc64(pl->xz, pl->xz_len, 0);
    snprintf(name, n, "vmlinux-%016" PRIx64 "-%" PRIx64 "-%" PRIx32, crc, (uint64_t)pl->xz_len,
             pl->out_len);
}

/* An entry is the compressed payload it was made from, then its vmlinux:
 * it is used only when that payload is byte for byte this image's (its name,
 * a CRC the image controls, can be forged; its contents cannot).
 *
 * Read an entry for loading: a regular file of the expected size with one
 * link, owned by this user and writable by no one else (anyone else could
 * swap the kernel), holding this image's payload. 1 with *elf (allocated;
 * the vmlinux at *elf + pl->xz_len), 0 for no usable entry. */
static int cache_read(int dirfd, const char *name, const char *path, const struct linux_payload *pl,
                      unsigned char **elf)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    uint64_t want = (uint64_t)pl->xz_len + pl->out_len;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1 ||
        (st.st_mode & (S_IWGRP | S_IWOTH)) || (uint64_t)st.st_size != want) {
        vmm_log_warn("linux: kernel cache entry %s is not a plain %" PRIu64
                     "-byte file of this user: ignored",
                     path, want);
        close(fd);
        return 0;
    }
    unsigned char *buf = malloc(want);
    uint64_t got = 0;
    while (buf && got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (uint64_t)n;
    }
    close(fd);
    if (!buf || got != want || memcmp(buf, pl->xz, pl->xz_len) != 0) {
        vmm_log_warn("linux: kernel cache entry %s %s: ignored", path,
                     !buf          ? "cannot be read (out of memory)"
                     : got != want ? "could not be read whole"
                                   : "was made from another payload");
        free(buf);
        return 0;
    }
    *elf = buf;
    return 1;
}

/* Write the entry: a temporary file, flushed, renamed over the name, so a
 * reader sees the whole file or none. A failure is logged, not fatal. */
static void cache_store(int dirfd, const char *name, const char *dir,
                        const struct linux_payload *pl, const unsigned char *elf)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), ".%s.%ld.tmp", name, (long)getpid());
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        vmm_log_warn("linux: cannot create %s/%s: %s", dir, tmp, vmm_strerror(-errno));
        return;
    }
    int e = 0;
    const unsigned char *parts[2] = {pl->xz, elf};
    const uint64_t lens[2] = {pl->xz_len, pl->out_len};
    for (unsigned i = 0; i < 2; i++) {
        for (uint64_t done = 0; done < lens[i] && !e;) {
            ssize_t w = write(fd, parts[i] + done, lens[i] - done);
            if (w < 0 && errno != EINTR)
                e = errno;
            else if (w == 0)
                e = EIO;
            else if (w > 0)
                done += (uint64_t)w;
        }
    }
    if (!e && fsync(fd) < 0)
        e = errno;
    if (close(fd) < 0 && !e)
        e = errno;
    if (!e && renameat(dirfd, tmp, dirfd, name) < 0)
        e = errno;
    if (e) {
        unlinkat(dirfd, tmp, 0);
        vmm_log_warn("linux: cannot store %s in the kernel cache %s: %s", name, dir,
                     vmm_strerror(-e));
        return;
    }
    vmm_log_debug("linux: kernel cache: stored %s/%s", dir, name);
}

int linux_load_payload(struct vmm_memory *mem, const struct vmm_image *im, uint64_t kernel_off,
                       const struct vmm_linux_setup_header *hdr,
                       const struct vmm_kernel_options *opts, struct vmm_linux_boot *boot)
{
    /* The guest's decompressor could not unpack more than init_size, nor
     * could init_size exceed guest memory. */
    uint64_t max = vmm_memory_total_size(mem);
    struct linux_payload pl;
    int r = linux_payload_read(im, kernel_off, hdr, max < BZ_PAYLOAD_MAX ? max : BZ_PAYLOAD_MAX,
                               &pl, boot);
    if (r < 0)
        return r;

    const char *dir = opts->payload_cache_dir;
    int dirfd = -1;
    char name[96], path[4096];
    if (dir) {
        cache_name(&pl, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            r = -errno;
            free(pl.xz);
            return linux_fail(boot, r, "cannot open the kernel cache %s: %s", dir, vmm_strerror(r));
        }
        /* Only this user may place entries there. */
        struct stat st;
        if (fstat(dirfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            free(pl.xz);
            close(dirfd);
            return linux_fail(boot, -EPERM,
                              "the kernel cache %s is not a directory of this user that no one "
                              "else can write",
                              dir);
        }
        unsigned char *cached;
        if (cache_read(dirfd, name, path, &pl, &cached)) {
            /* Checked like any ELF image. One that fails is replaced by a
             * fresh extraction. */
            struct vmm_image cim = {
                .buf = cached + pl.xz_len, .fd = -1, .size = pl.out_len, .path = path};
            r = linux_load_vmlinux(mem, &cim, opts, boot);
            free(cached);
            if (r == 0) {
                vmm_log_debug("linux: kernel cache: booted %s", path);
                free(pl.xz);
                close(dirfd);
                return 0;
            }
            vmm_log_warn("linux: kernel cache entry %s refused (%s): extracting again", path,
                         boot->error);
            boot->error[0] = '\0';
        }
    }

    unsigned char *elf;
    r = linux_payload_extract(&pl, &elf, boot);
    if (r == 0 && (pl.out_len < SELFMAG || memcmp(elf, ELFMAG, SELFMAG) != 0))
        r = linux_fail(boot, -ENOTSUP, "the payload is not an ELF vmlinux");
    if (r == 0) {
        struct vmm_image eim = {.buf = elf, .fd = -1, .size = pl.out_len};
        r = linux_load_vmlinux(mem, &eim, opts, boot);
        if (r == 0 && dirfd >= 0)
            cache_store(dirfd, name, dir, &pl, elf);
    }
    free(pl.xz);
    free(elf);
    if (dirfd >= 0)
        close(dirfd);
    return r;
}
