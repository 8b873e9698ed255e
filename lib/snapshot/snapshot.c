/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot and restore of a whole VM (include/vmm/snapshot.h): the order of
 * things, the files, guest memory and the VM's list of parts. The state of
 * each component is saved and restored next to it: the vCPUs and the VM
 * clock by the architecture (lib/cpu/x86_64/snapshot.c), devices and chips
 * through the parts they register.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/snapshot.h>

#include "cpu/arch.h"
#include "cpu/cpu_internal.h"
#include "memory/memory_internal.h"
#include "snapshot_internal.h"

#define MEMR_F_READONLY (1u << 0)

struct vmm_snap_part {
    const struct vmm_snap_part_ops *ops;
    uint32_t instance;
    void *opaque;
};

int vmm_snap_register(struct vmm_vm *vm, const struct vmm_snap_part_ops *ops, uint32_t instance,
                      void *opaque)
{
    for (unsigned i = 0; i < vm->nr_snap_parts; i++)
        if (vm->snap_parts[i].ops->tag == ops->tag && vm->snap_parts[i].instance == instance)
            return -EEXIST;
    if (vm->nr_snap_parts == vm->snap_part_cap) {
        unsigned cap = vm->snap_part_cap ? vm->snap_part_cap * 2 : 8;
        struct vmm_snap_part *p = realloc(vm->snap_parts, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        vm->snap_parts = p;
        vm->snap_part_cap = cap;
    }
    vm->snap_parts[vm->nr_snap_parts++] =
        (struct vmm_snap_part){.ops = ops, .instance = instance, .opaque = opaque};
    return 0;
}

void vmm_snap_unregister(struct vmm_vm *vm, uint32_t tag, uint32_t instance)
{
    for (unsigned i = 0; i < vm->nr_snap_parts; i++) {
        if (vm->snap_parts[i].ops->tag == tag && vm->snap_parts[i].instance == instance) {
            memmove(&vm->snap_parts[i], &vm->snap_parts[i + 1],
                    (vm->nr_snap_parts - i - 1) * sizeof(vm->snap_parts[0]));
            vm->nr_snap_parts--;
            return;
        }
    }
}

void *vmm_snap_part_opaque(struct vmm_vm *vm, uint32_t tag, uint32_t instance)
{
    for (unsigned i = 0; i < vm->nr_snap_parts; i++)
        if (vm->snap_parts[i].ops->tag == tag && vm->snap_parts[i].instance == instance)
            return vm->snap_parts[i].opaque;
    return NULL;
}

void vmm_snap_parts_free(struct vmm_vm *vm)
{
    free(vm->snap_parts);
    vm->snap_parts = NULL;
    vm->nr_snap_parts = vm->snap_part_cap = 0;
}

/* ---- files ---- */

static int path_in(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int write_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = pwrite(fd, p, chunk, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, uint64_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = pread(fd, p, chunk, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EBADMSG; /* shorter than it says */
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Open dir/name.tmp for writing; rename it over dir/name with commit. */
static int tmp_open(const char *dir, const char *name, char *tmp, size_t size)
{
    char base[PATH_MAX];
    int r = path_in(base, sizeof(base), dir, name);
    if (r < 0)
        return r;
    if (snprintf(tmp, size, "%s.tmp", base) >= (int)size)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

/* Make dir's entries (a rename into it) durable. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int tmp_commit(const char *dir, const char *name, const char *tmp)
{
    char path[PATH_MAX];
    int r = path_in(path, sizeof(path), dir, name);
    if (r < 0)
        return r;
    return rename(tmp, path) < 0 ? -errno : 0;
}

/* Read and check dir's state file. why gets the reason of a refusal. */
static int state_read(const char *dir, struct vmm_snap_file *f, char *why, size_t why_len)
{
    char path[PATH_MAX];
    int r = path_in(path, sizeof(path), dir, SNAP_STATE_FILE);
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        snprintf(why, why_len, "cannot open its state file: %s", vmm_strerror(r));
        return r;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > SNAP_MAX_FILE + (uint64_t)SNAP_HEADER_SIZE) {
        close(fd);
        snprintf(why, why_len, "its state file is not a regular file, or too large");
        return -EBADMSG;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size + 1);
    if (!data) {
        close(fd);
        return -ENOMEM;
    }
    r = read_all(fd, data, size, 0);
    close(fd);
    if (r < 0) {
        free(data);
        snprintf(why, why_len, "reading its state file: %s",
                 r == -EBADMSG ? "it shrank while read" : vmm_strerror(r));
        return r;
    }
    return snap_file_parse(data, size, f, why, why_len);
}

/* ---- guest memory ---- */

struct memory_header {
    char magic[8];
    uint32_t version;
    uint32_t pad;
    uint8_t id[SNAP_ID_BYTES];
    uint64_t size; /* the whole file */
};

static uint64_t page_up(uint64_t v)
{
    return (v + 4095) & ~(uint64_t)4095;
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    for (unsigned i = 0; i < 4096 / 8; i++)
        if (w[i])
            return false;
    return true;
}

/* Write a region's non-zero pages at off; zero pages stay holes of the
 * (sparse) file, which read back as zeros. A region whose length is not a
 * whole number of pages has its tail written as is. */
static int write_region(int fd, const uint8_t *host, uint64_t len, uint64_t off)
{
    uint64_t pos = 0;
    while (pos < len) {
        if (len - pos < 4096)
            return write_all(fd, host + pos, len - pos, off + pos);
        if (page_is_zero(host + pos)) {
            pos += 4096;
            continue;
        }
        uint64_t end = pos + 4096;
        while (end + 4096 <= len && !page_is_zero(host + end))
            end += 4096;
        int r = write_all(fd, host + pos, end - pos, off + pos);
        if (r < 0)
            return r;
        pos = end;
    }
    return 0;
}

/* Read a region back: only the file's data, its holes being zeros already
 * in fresh memory (SEEK_DATA/SEEK_HOLE; all of it where those are not
 * supported). */
static int read_region(int fd, uint8_t *host, uint64_t len, uint64_t off)
{
    uint64_t pos = 0;
    while (pos < len) {
        off_t data = lseek(fd, (off_t)(off + pos), SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return 0; /* only a hole is left */
        if (data < 0)
            return read_all(fd, host + pos, len - pos, off + pos);
        if ((uint64_t)data >= off + len)
            return 0;
        pos = (uint64_t)data - off;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        uint64_t end = hole < 0 || (uint64_t)hole > off + len ? len : (uint64_t)hole - off;
        int r = read_all(fd, host + pos, end - pos, off + pos);
        if (r < 0)
            return r;
        pos = end;
    }
    return 0;
}

/* Whether every region of the VM is dirty-logged. */
static bool all_logged(struct vmm_vm *vm)
{
    unsigned n = vm->mem ? vmm_memory_region_count(vm->mem) : 0;
    if (n == 0 || n > vm->slot_cap)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (!vm->slot_dirty_log[i])
            return false;
    return true;
}

/* Write the pages of a region that bitmap marks dirty at off. */
static int write_dirty(int fd, const uint8_t *host, uint64_t len, uint64_t off,
                       const uint64_t *bitmap)
{
    uint64_t pages = (len + 4095) / 4096;
    for (uint64_t p = 0; p < pages;) {
        if (!(bitmap[p / 64] & (1ull << (p % 64)))) {
            p++;
            continue;
        }
        uint64_t end = p + 1;
        while (end < pages && (bitmap[end / 64] & (1ull << (end % 64))))
            end++;
        uint64_t bytes = (end * 4096 > len ? len : end * 4096) - p * 4096;
        int r = write_all(fd, host + p * 4096, bytes, off + p * 4096);
        if (r < 0)
            return r;
        p = end;
    }
    return 0;
}

/* The memory file's size for the VM's regions, as memory_save lays it out. */
static uint64_t memory_file_size(struct vmm_vm *vm)
{
    uint64_t off = SNAP_MEM_HEADER;
    unsigned n = vm->mem ? vmm_memory_region_count(vm->mem) : 0;
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(vm->mem, i, &info) == 0)
            off = page_up(off + info.len);
    }
    return off;
}

static int read_memory_header(const char *dir, struct memory_header *h, uint64_t *size)
{
    char path[PATH_MAX];
    int r = path_in(path, sizeof(path), dir, SNAP_MEMORY_FILE);
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    r = fstat(fd, &st) < 0 ? -errno : read_all(fd, h, sizeof(*h), 0);
    close(fd);
    *size = (uint64_t)st.st_size;
    return r;
}

/* A diff snapshot goes into the directory of the VM's last snapshot, taken
 * with every region logged since: check that dir holds it. */
static int diff_base_check(struct vmm_vm *vm, const char *dir)
{
    if (!all_logged(vm) || !vm->snap_base_valid) {
        vmm_log_error("snapshot: a diff needs dirty logging on every memory region since the "
                      "VM's last snapshot (and no dirty-log read since)");
        return -EINVAL;
    }
    struct vmm_snap_file f;
    struct vmm_snap_reader rd;
    struct memory_header h;
    uint64_t size = 0;
    uint8_t id[SNAP_ID_BYTES];
    char why[200];
    int r = state_read(dir, &f, why, sizeof(why));
    if (r == 0) {
        r = snap_file_find(&f, SNAP_TAG_META, 0, &rd) < 0 || snap_get(&rd, id, sizeof(id)) < 0 ||
                    memcmp(id, vm->snap_base_id, sizeof(id)) != 0
                ? -EINVAL
                : 0;
        snap_file_free(&f);
    }
    if (r == 0)
        r = read_memory_header(dir, &h, &size);
    if (r < 0 || memcmp(h.id, vm->snap_base_id, SNAP_ID_BYTES) != 0 ||
        size != memory_file_size(vm)) {
        vmm_log_error("snapshot: %s does not hold this VM's last snapshot, the base of a diff",
                      dir);
        return -EINVAL;
    }
    return 0;
}

/* How memory_save writes guest memory. */
enum mem_mode {
    MEM_FULL,    /* every region, into a new memory file */
    MEM_DIFF,    /* the pages dirtied since the last snapshot, into its file */
    MEM_DIFF_TO, /* those pages, into a new sparse file beside a BASE section */
};

/* A standalone diff's BASE section: the base's id and directory, then per
 * region the bitmap of the pages the diff's memory file holds. */
static void put_base(struct vmm_snap_writer *w, const uint8_t *base_id, const char *base_path,
                     uint64_t **bitmaps, const size_t *nwords, unsigned n)
{
    snap_section_begin(w, SNAP_TAG_BASE, 0);
    snap_put(w, base_id, SNAP_ID_BYTES);
    snap_put_u32(w, (uint32_t)strlen(base_path));
    snap_put(w, base_path, strlen(base_path));
    snap_put_u32(w, n);
    for (unsigned i = 0; i < n; i++) {
        snap_put_u64(w, nwords[i]);
        snap_put(w, bitmaps[i], nwords[i] * sizeof(uint64_t));
    }
    snap_section_end(w);
}

/*
 * Write guest memory to dir's memory file and describe its layout in w:
 * every region, or (MEM_DIFF, MEM_DIFF_TO) only the pages dirtied since the
 * last snapshot, into that snapshot's file or a new one in dir that names
 * base_path. With every region logged, the dirty log is read (and so
 * restarted) either way.
 */
static int memory_save(struct vmm_vm *vm, const char *dir, const uint8_t *id, enum mem_mode mode,
                       const char *base_path, struct vmm_snap_writer *w)
{
    char tmp[PATH_MAX + 8];
    int fd;
    bool diff = mode != MEM_FULL, in_place = mode == MEM_DIFF;
    if (in_place) {
        int r = path_in(tmp, sizeof(tmp), dir, SNAP_MEMORY_FILE);
        fd = r < 0 ? r : open(tmp, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && r == 0)
            fd = -errno;
    } else {
        fd = tmp_open(dir, SNAP_MEMORY_FILE, tmp, sizeof(tmp));
    }
    if (fd < 0) {
        vmm_log_error("snapshot: opening the memory file in %s: %s", dir, vmm_strerror(fd));
        return fd;
    }
    bool track = all_logged(vm);
    uint8_t base_id[SNAP_ID_BYTES];
    memcpy(base_id, vm->snap_base_id, sizeof(base_id));
    vm->snap_base_valid = false; /* reading the log below ends the old base */
    unsigned n = vm->mem ? vmm_memory_region_count(vm->mem) : 0;
    uint64_t **bitmaps = calloc(n + 1, sizeof(*bitmaps));
    size_t *nwords = calloc(n + 1, sizeof(*nwords));
    uint64_t off = SNAP_MEM_HEADER;
    int r = bitmaps && nwords ? 0 : -ENOMEM;
    snap_section_begin(w, SNAP_TAG_MEMORY, 0);
    snap_put_u32(w, n);
    for (unsigned i = 0; i < n && r == 0; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if ((r = vmm_memory_region_info(vm->mem, i, &info)) < 0)
            break;
        snap_put_u64(w, info.gpa);
        snap_put_u64(w, info.len);
        snap_put_u64(w, off);
        snap_put_u32(w, (info.flags & VMM_MEMORY_F_READONLY) ? MEMR_F_READONLY : 0);
        if (track) {
            nwords[i] = (size_t)((info.len + 4095) / 4096 + 63) / 64;
            bitmaps[i] = calloc(nwords[i] + 1, sizeof(uint64_t));
            r = bitmaps[i] ? vmm_vm_dirty_fetch(vm, i, bitmaps[i], nwords[i] + 1) : -ENOMEM;
        }
        if (r == 0)
            r = diff ? write_dirty(fd, info.host, info.len, off, bitmaps[i])
                     : write_region(fd, info.host, info.len, off);
        off = page_up(off + info.len);
    }
    snap_section_end(w);
    if (r == 0 && mode == MEM_DIFF_TO)
        put_base(w, base_id, base_path, bitmaps, nwords, n);
    for (unsigned i = 0; bitmaps && i < n; i++)
        free(bitmaps[i]);
    free(bitmaps);
    free(nwords);
    struct memory_header h = {.version = SNAP_VERSION, .size = off};
    memcpy(h.magic, SNAP_MEM_MAGIC, 8);
    memcpy(h.id, id, SNAP_ID_BYTES);
    if (r == 0)
        r = write_all(fd, &h, sizeof(h), 0);
    if (r == 0 && !in_place && ftruncate(fd, (off_t)off) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0) /* on disk before the state file says it is whole */
        r = -errno;
    close(fd);
    if (r == 0 && !in_place)
        r = tmp_commit(dir, SNAP_MEMORY_FILE, tmp);
    if (r < 0) {
        if (!in_place)
            unlink(tmp);
        vmm_log_error("snapshot: writing guest memory to %s: %s", dir, vmm_strerror(r));
    }
    return r;
}

static int memory_restore(struct vmm_vm *vm, const char *dir, struct vmm_snap_file *f,
                          const uint8_t *id, uint32_t how)
{
    struct vmm_snap_reader rd;
    uint32_t n;
    unsigned have = vm->mem ? vmm_memory_region_count(vm->mem) : 0;
    if (snap_file_find(f, SNAP_TAG_MEMORY, 0, &rd) < 0 || snap_get_u32(&rd, &n) < 0) {
        vmm_log_error("restore: %s: the state file has no memory layout", dir);
        return -EBADMSG;
    }
    if (n != have) {
        vmm_log_error("restore: the snapshot has %" PRIu32 " memory regions, this VM %u", n, have);
        return -EINVAL;
    }
    char path[PATH_MAX];
    int r = path_in(path, sizeof(path), dir, SNAP_MEMORY_FILE);
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        vmm_log_error("restore: cannot open %s: %s", path, vmm_strerror(r));
        return r;
    }
    struct stat st;
    struct memory_header h;
    if (fstat(fd, &st) < 0 || read_all(fd, &h, sizeof(h), 0) < 0 ||
        memcmp(h.magic, SNAP_MEM_MAGIC, 8) != 0 || h.version != SNAP_VERSION ||
        memcmp(h.id, id, SNAP_ID_BYTES) != 0 || h.size != (uint64_t)st.st_size) {
        vmm_log_error("restore: %s does not belong to the state file beside it, or is truncated",
                      path);
        close(fd);
        return -EBADMSG;
    }
    struct vmm_uffd *uffd = NULL;
    if (how == VMM_RESTORE_UFFD && (r = vmm_snap_uffd_prepare(&uffd, fd, n)) < 0) {
        close(fd);
        return r;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t gpa, len, off;
        uint32_t flags;
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (snap_get_u64(&rd, &gpa) < 0 || snap_get_u64(&rd, &len) < 0 ||
            snap_get_u64(&rd, &off) < 0 || snap_get_u32(&rd, &flags) < 0 || (off & 4095) ||
            off < SNAP_MEM_HEADER || off > h.size || len > h.size - off) {
            vmm_log_error("restore: malformed memory layout in the state file");
            r = -EBADMSG;
            break;
        }
        if ((r = vmm_memory_region_info(vm->mem, i, &info)) < 0)
            break;
        if (info.gpa != gpa || info.len != len ||
            !!(info.flags & VMM_MEMORY_F_READONLY) != !!(flags & MEMR_F_READONLY)) {
            vmm_log_error("restore: memory region %u is 0x%" PRIx64 "+0x%" PRIx64
                          " in the snapshot, 0x%" PRIx64 "+0x%" PRIx64 " in this VM",
                          i, gpa, len, info.gpa, info.len);
            r = -EINVAL;
            break;
        }
        if (how == VMM_RESTORE_LAZY)
            r = memory_region_map_private(vm->mem, i, fd, off);
        else if (how == VMM_RESTORE_UFFD)
            r = vmm_snap_uffd_add(uffd, vm->mem, i, off);
        else
            r = -ENOTSUP;
        if (r == -ENOTSUP)
            r = read_region(fd, info.host, len, off);
        if (r < 0) {
            vmm_log_error("restore: loading memory region %u from %s: %s", i, path,
                          vmm_strerror(r));
            break;
        }
    }
    if (r == 0 && snap_done(&rd) < 0) {
        vmm_log_error("restore: malformed memory layout in the state file");
        r = -EBADMSG;
    }
    /* Faults are answered from here on: nothing below may touch memory
     * before (a region in the middle of a refusal stays empty). */
    if (uffd && r == 0)
        r = vmm_snap_uffd_start(uffd, vm);
    else if (uffd)
        vmm_snap_uffd_abort(uffd);
    close(fd);
    return r;
}

/* The most standalone diffs a restore follows down to a full snapshot. */
#define SNAP_MAX_CHAIN 16

/*
 * Lay a standalone diff's pages (dir's memory file, the bitmaps left in its
 * BASE section rd) over the memory its base chain restored. Every bound is
 * checked against the VM and the file first.
 */
static int memory_overlay(struct vmm_vm *vm, const char *dir, struct vmm_snap_file *f,
                          const uint8_t *id, struct vmm_snap_reader *rd)
{
    struct vmm_snap_reader lay;
    uint32_t n, nb;
    unsigned have = vmm_memory_region_count(vm->mem);
    if (snap_file_find(f, SNAP_TAG_MEMORY, 0, &lay) < 0 || snap_get_u32(&lay, &n) < 0 ||
        snap_get_u32(rd, &nb) < 0 || n != have || nb != n) {
        vmm_log_error("restore: %s: the diff's memory layout does not fit this VM", dir);
        return -EINVAL;
    }
    char path[PATH_MAX];
    int r = path_in(path, sizeof(path), dir, SNAP_MEMORY_FILE);
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        vmm_log_error("restore: cannot open %s: %s", path, vmm_strerror(r));
        return r;
    }
    struct stat st;
    struct memory_header h;
    if (fstat(fd, &st) < 0 || read_all(fd, &h, sizeof(h), 0) < 0 ||
        memcmp(h.magic, SNAP_MEM_MAGIC, 8) != 0 || h.version != SNAP_VERSION ||
        memcmp(h.id, id, SNAP_ID_BYTES) != 0 || h.size != (uint64_t)st.st_size) {
        vmm_log_error("restore: %s does not belong to the state file beside it, or is truncated",
                      path);
        close(fd);
        return -EBADMSG;
    }
    uint64_t *bm = NULL;
    for (unsigned i = 0; i < n && r == 0; i++) {
        uint64_t gpa, len, off, nwords;
        uint32_t flags;
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (snap_get_u64(&lay, &gpa) < 0 || snap_get_u64(&lay, &len) < 0 ||
            snap_get_u64(&lay, &off) < 0 || snap_get_u32(&lay, &flags) < 0 || (off & 4095) ||
            off < SNAP_MEM_HEADER || off > h.size || len > h.size - off ||
            snap_get_u64(rd, &nwords) < 0 || vmm_memory_region_info(vm->mem, i, &info) < 0 ||
            info.gpa != gpa || info.len != len || nwords != ((len + 4095) / 4096 + 63) / 64) {
            vmm_log_error("restore: %s: malformed diff, or one of another VM", dir);
            r = -EBADMSG;
            break;
        }
        free(bm);
        bm = malloc((size_t)nwords * sizeof(uint64_t) + 8);
        if (!bm) {
            r = -ENOMEM;
            break;
        }
        if (snap_get(rd, bm, (size_t)nwords * sizeof(uint64_t)) < 0) {
            r = -EBADMSG;
            break;
        }
        uint64_t pages = (len + 4095) / 4096;
        for (uint64_t p = 0; p < pages && r == 0;) {
            if (!(bm[p / 64] & (1ull << (p % 64)))) {
                p++;
                continue;
            }
            uint64_t end = p + 1;
            while (end < pages && (bm[end / 64] & (1ull << (end % 64))))
                end++;
            uint64_t bytes = (end * 4096 > len ? len : end * 4096) - p * 4096;
            r = read_all(fd, (uint8_t *)info.host + p * 4096, bytes, off + p * 4096);
            p = end;
        }
    }
    free(bm);
    close(fd);
    if (r == 0 && (snap_done(rd) < 0 || snap_done(&lay) < 0)) {
        vmm_log_error("restore: %s: malformed diff", dir);
        r = -EBADMSG;
    }
    return r;
}

/* Memory from dir's snapshot: read or mapped as how says, or for a
 * standalone diff, its base chain's (depth: diffs followed so far) with the
 * diff's pages laid over it. */
static int memory_restore_any(struct vmm_vm *vm, const char *dir, struct vmm_snap_file *f,
                              const uint8_t *id, uint32_t how, unsigned depth)
{
    struct vmm_snap_reader rd;
    if (snap_file_find(f, SNAP_TAG_BASE, 0, &rd) < 0)
        return memory_restore(vm, dir, f, id, how);
    uint8_t base_id[SNAP_ID_BYTES], got[SNAP_ID_BYTES];
    uint32_t plen;
    char base[PATH_MAX], why[200];
    if (snap_get(&rd, base_id, sizeof(base_id)) < 0 || snap_get_u32(&rd, &plen) < 0 || plen == 0 ||
        plen >= sizeof(base) || snap_get(&rd, base, plen) < 0 || memchr(base, '\0', plen)) {
        vmm_log_error("restore: %s: a diff with a malformed base", dir);
        return -EBADMSG;
    }
    base[plen] = '\0';
    if (depth == SNAP_MAX_CHAIN) {
        vmm_log_error("restore: %s: more than %u diffs on one full snapshot", dir, SNAP_MAX_CHAIN);
        return -ELOOP;
    }
    struct vmm_snap_file bf;
    int r = state_read(base, &bf, why, sizeof(why));
    if (r < 0) {
        vmm_log_error("restore: %s is a diff on %s: %s", dir, base, why);
        return r;
    }
    struct vmm_snap_reader meta;
    if (snap_file_find(&bf, SNAP_TAG_META, 0, &meta) < 0 || snap_get(&meta, got, sizeof(got)) < 0 ||
        memcmp(got, base_id, sizeof(got)) != 0) {
        vmm_log_error("restore: %s is a diff on a snapshot %s no longer holds", dir, base);
        r = -EBADMSG;
    }
    /* The pages laid over must not race the fault thread's copies from
     * the base: a chain asked to fault its memory in is read instead. */
    if (r == 0)
        r = memory_restore_any(vm, base, &bf, base_id, how, depth + 1);
    snap_file_free(&bf);
    return r < 0 ? r : memory_overlay(vm, dir, f, id, &rd);
}

/* ---- snapshot ---- */

static void thaw_parts(struct vmm_vm *vm, unsigned n)
{
    while (n-- > 0) {
        struct vmm_snap_part *p = &vm->snap_parts[n];
        if (p->ops->thaw)
            p->ops->thaw(p->opaque);
    }
}

static void put_meta(struct vmm_vm *vm, const uint8_t *id, const struct vmm_snapshot_options *o,
                     struct vmm_snap_writer *w)
{
    snap_section_begin(w, SNAP_TAG_META, 0);
    snap_put(w, id, SNAP_ID_BYTES);
    snap_put_u32(w, vm->nr_vcpus);
    snap_put_u32(w, (uint32_t)vm->cfg.irqchip);
    snap_section_end(w);
    if (o->app_len) {
        snap_section_begin(w, SNAP_TAG_APP, 0);
        snap_put(w, o->app_data, o->app_len);
        snap_section_end(w);
    }
}

int snap_world_stop(struct vmm_vm *vm, bool *was_paused)
{
    *was_paused = __atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST);
    int r = vmm_vm_pause(vm);
    if (r < 0)
        return r;
    /* vCPUs outside a run (stopped, or never run) may still owe the guest
     * the end of their last exit; parked ones completed it. */
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        struct vmm_vcpu *v = vm->vcpus[i];
        pthread_mutex_lock(&v->kick_lock);
        if (!v->in_run && v->has_run)
            (void)vmm_vcpu_settle(v);
        pthread_mutex_unlock(&v->kick_lock);
    }
    for (unsigned frozen = 0; frozen < vm->nr_snap_parts; frozen++) {
        struct vmm_snap_part *p = &vm->snap_parts[frozen];
        if (p->ops->freeze && (r = p->ops->freeze(p->opaque)) < 0) {
            vmm_log_error("snapshot: %s cannot come to rest: %s", p->ops->name, vmm_strerror(r));
            thaw_parts(vm, frozen);
            if (!*was_paused)
                (void)vmm_vm_resume(vm);
            return r;
        }
    }
    return 0;
}

void snap_world_thaw(struct vmm_vm *vm)
{
    thaw_parts(vm, vm->nr_snap_parts);
}

int snap_state_put(struct vmm_vm *vm, const uint8_t *id, const void *app, uint32_t app_len,
                   struct vmm_snap_writer *w)
{
    struct vmm_snapshot_options o = {.app_data = app, .app_len = app_len};
    put_meta(vm, id, &o, w);
    int r = vmm_arch_vm_save(vm, w);
    for (unsigned i = 0; i < vm->nr_vcpus && r == 0; i++)
        r = vmm_arch_vcpu_save(vm->vcpus[i], w);
    for (unsigned i = 0; i < vm->nr_snap_parts && r == 0; i++) {
        struct vmm_snap_part *p = &vm->snap_parts[i];
        snap_section_begin(w, p->ops->tag, p->instance);
        if ((r = p->ops->save(p->opaque, w)) < 0)
            vmm_log_error("snapshot: saving %s: %s", p->ops->name, vmm_strerror(r));
        snap_section_end(w);
    }
    return r < 0 ? r : w->err;
}

int vmm_vm_snapshot(struct vmm_vm *vm, const char *dir, const struct vmm_snapshot_options *opts)
{
    struct vmm_snapshot_options o = {0};
    if (!vm || !dir || (opts && VMM_ABI_COPY_IN(&o, opts) < 0) ||
        o.app_len > VMM_SNAPSHOT_APP_MAX || (o.app_len && !o.app_data) ||
        (o.flags & ~VMM_SNAPSHOT_DIFF))
        return -EINVAL;
    bool diff = o.flags & VMM_SNAPSHOT_DIFF;
    if (o.base && !diff)
        return -EINVAL;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        vmm_log_error("snapshot: cannot create %s: %s", dir, vmm_strerror(r));
        return r;
    }
    /* A diff into its own directory names its base there, by full path. */
    char base_path[PATH_MAX];
    enum mem_mode mode = diff ? MEM_DIFF : MEM_FULL;
    if (o.base) {
        struct stat sb, sd;
        if (!realpath(o.base, base_path) || stat(base_path, &sb) < 0 || stat(dir, &sd) < 0) {
            int r = -errno;
            vmm_log_error("snapshot: the base %s: %s", o.base, vmm_strerror(r));
            return r;
        }
        if (sb.st_dev != sd.st_dev || sb.st_ino != sd.st_ino)
            mode = MEM_DIFF_TO;
    }
    bool was_paused;
    int r = snap_world_stop(vm, &was_paused);
    if (r < 0)
        return r;
    unsigned frozen = vm->nr_snap_parts;

    uint8_t id[SNAP_ID_BYTES];
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
        r = -errno;
        goto out_thaw;
    }
    if (mode == MEM_DIFF_TO && (r = diff_base_check(vm, base_path)) < 0)
        goto out_thaw;
    if (mode == MEM_DIFF) {
        /* The state file goes before the memory file changes: a diff that
         * stops half-way leaves no snapshot that looks whole. */
        char path[PATH_MAX];
        if ((r = diff_base_check(vm, dir)) < 0 ||
            (r = path_in(path, sizeof(path), dir, SNAP_STATE_FILE)) < 0)
            goto out_thaw;
        if (unlink(path) < 0) {
            r = -errno;
            vmm_log_error("snapshot: removing %s: %s", path, vmm_strerror(r));
            goto out_thaw;
        }
    }
    struct vmm_snap_writer w;
    snap_writer_init(&w);
    if ((r = snap_state_put(vm, id, o.app_data, o.app_len, &w)) < 0)
        goto out_writer;
    /* Memory last, with every device still at rest. */
    if ((r = memory_save(vm, dir, id, mode, base_path, &w)) < 0)
        goto out_writer;
    bool base = all_logged(vm);
    thaw_parts(vm, frozen);
    frozen = 0;

    size_t size;
    uint8_t *file = snap_file_build(&w, &size);
    if (!file) {
        r = w.err ? w.err : -ENOMEM;
        goto out_writer;
    }
    char tmp[PATH_MAX + 8];
    int fd = tmp_open(dir, SNAP_STATE_FILE, tmp, sizeof(tmp));
    r = fd;
    if (fd >= 0) {
        r = write_all(fd, file, size, 0);
        if (r == 0 && fsync(fd) < 0)
            r = -errno;
        close(fd);
        if (r == 0)
            r = tmp_commit(dir, SNAP_STATE_FILE, tmp);
        if (r < 0)
            unlink(tmp);
        /* Both renames durable before the snapshot is reported taken. */
        if (r == 0)
            r = fsync_dir(dir);
    }
    free(file);
    if (r < 0) {
        vmm_log_error("snapshot: writing the state file in %s: %s", dir, vmm_strerror(r));
    } else if (base) {
        /* The dirty log counts from here: the base of the next diff. */
        memcpy(vm->snap_base_id, id, sizeof(id));
        vm->snap_base_valid = true;
    }
    if (r == 0)
        vmm_log_info("snapshot: %u vCPUs, %" PRIu64 " MiB of memory saved to %s", vm->nr_vcpus,
                     vm->mem ? vmm_memory_total_size(vm->mem) >> 20 : 0, dir);
out_writer:
    if (w.err && r == 0)
        r = w.err;
    snap_writer_fini(&w);
out_thaw:
    thaw_parts(vm, frozen);
    if (r < 0 && !was_paused)
        (void)vmm_vm_resume(vm); /* as it was */
    return r;
}

/* ---- restore ---- */

static bool part_tag(uint32_t tag)
{
    return tag != SNAP_TAG_META && tag != SNAP_TAG_APP && tag != SNAP_TAG_MEMORY &&
           tag != SNAP_TAG_VM && tag != SNAP_TAG_VCPU && tag != SNAP_TAG_BASE;
}

int snap_restore_check_fresh(struct vmm_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool busy = vm->running > 0;
    pthread_mutex_unlock(&vm->lock);
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        busy |= vm->vcpus[i]->has_run;
    if (busy) {
        vmm_log_error("restore: the VM has run already: restore into a new one");
        return -EBUSY;
    }
    return 0;
}

int snap_restore_meta(struct vmm_vm *vm, struct vmm_snap_file *f, uint8_t *id)
{
    struct vmm_snap_reader rd;
    uint32_t nr_vcpus, irqchip;
    if (snap_file_find(f, SNAP_TAG_META, 0, &rd) < 0 || snap_get(&rd, id, SNAP_ID_BYTES) < 0 ||
        snap_get_u32(&rd, &nr_vcpus) < 0 || snap_get_u32(&rd, &irqchip) < 0 || snap_done(&rd) < 0) {
        vmm_log_error("restore: the state file has no valid description of the VM");
        return -EBADMSG;
    }
    if (nr_vcpus != vm->nr_vcpus) {
        vmm_log_error("restore: the snapshot has %" PRIu32 " vCPUs, this VM %u", nr_vcpus,
                      vm->nr_vcpus);
        return -EINVAL;
    }
    if (irqchip != (uint32_t)vm->cfg.irqchip) {
        vmm_log_error("restore: the snapshot was taken with another interrupt controller");
        return -EINVAL;
    }
    return 0;
}

int snap_restore_rest(struct vmm_vm *vm, struct vmm_snap_file *f)
{
    for (unsigned i = 0; i < vm->nr_snap_parts; i++) {
        struct vmm_snap_part *p = &vm->snap_parts[i];
        struct vmm_snap_reader rd;
        if (snap_file_find(f, p->ops->tag, p->instance, &rd) < 0) {
            vmm_log_error("restore: this VM's %s (0x%" PRIx32 ") is not in the snapshot",
                          p->ops->name, p->instance);
            return -EINVAL;
        }
        int r = p->ops->restore(p->opaque, &rd);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < f->count; i++) {
        if (!f->sections[i].used && part_tag(f->sections[i].tag)) {
            uint32_t t = f->sections[i].tag;
            vmm_log_error(
                "restore: the snapshot has a device '%c%c%c%c' (0x%" PRIx32 ") this VM lacks",
                (char)t, (char)(t >> 8), (char)(t >> 16), (char)(t >> 24), f->sections[i].instance);
            return -EINVAL;
        }
    }
    struct vmm_snap_reader rd;
    if (snap_file_find(f, SNAP_TAG_VM, 0, &rd) < 0) {
        vmm_log_error("restore: the state file has no VM state");
        return -EBADMSG;
    }
    int r = vmm_arch_vm_restore(vm, &rd);
    for (unsigned i = 0; i < vm->nr_vcpus && r == 0; i++) {
        if (snap_file_find(f, SNAP_TAG_VCPU, i, &rd) < 0) {
            vmm_log_error("restore: the state file has no vCPU %u", i);
            return -EBADMSG;
        }
        r = vmm_arch_vcpu_restore(vm->vcpus[i], &rd);
    }
    return r;
}

int vmm_vm_restore(struct vmm_vm *vm, const char *dir, const struct vmm_restore_options *opts)
{
    struct vmm_restore_options o = {0};
    if (!vm || !dir || (opts && VMM_ABI_COPY_IN(&o, opts) < 0) || o.memory > VMM_RESTORE_UFFD)
        return -EINVAL;
    int r = snap_restore_check_fresh(vm);
    if (r < 0)
        return r;
    struct vmm_snap_file f;
    char why[200];
    r = state_read(dir, &f, why, sizeof(why));
    if (r < 0) {
        vmm_log_error("restore: %s: %s", dir, why);
        return r;
    }
    uint8_t id[SNAP_ID_BYTES];
    if ((r = snap_restore_meta(vm, &f, id)) < 0 ||
        (r = memory_restore_any(vm, dir, &f, id, o.memory, 0)) < 0 ||
        (r = snap_restore_rest(vm, &f)) < 0)
        goto out;
    for (unsigned i = 0; i < vm->nr_snap_parts; i++) {
        struct vmm_snap_part *p = &vm->snap_parts[i];
        if (p->ops->restored && (r = p->ops->restored(p->opaque)) < 0)
            goto out;
    }
    vmm_log_info("restore: %u vCPUs from %s", vm->nr_vcpus, dir);
out:
    snap_file_free(&f);
    return r;
}

int vmm_snapshot_app_data(const char *dir, void *buf, size_t max, size_t *len)
{
    if (!dir || !len || (max && !buf))
        return -EINVAL;
    struct vmm_snap_file f;
    char why[200];
    int r = state_read(dir, &f, why, sizeof(why));
    if (r < 0) {
        vmm_log_error("snapshot: %s: %s", dir, why);
        return r;
    }
    struct vmm_snap_reader rd;
    if (snap_file_find(&f, SNAP_TAG_APP, 0, &rd) < 0) {
        r = -ENOENT;
    } else {
        *len = rd.left;
        r = rd.left > max ? -ENOSPC : snap_get(&rd, buf, rd.left);
    }
    snap_file_free(&f);
    return r;
}
