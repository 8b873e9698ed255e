/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the guest memory map: every backing, checked access, atomics and dirty tracking. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmm/memory.h>

#include "check_compat.h"

#define PAGE 4096u
#define MIB  (UINT64_C(1) << 20)

static struct vmm_memory *new_map(void)
{
    struct vmm_memory *mem = NULL;
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_ptr_nonnull(mem);
    return mem;
}

static int add(struct vmm_memory *mem, vmm_gpa_t gpa, uint64_t size,
               enum vmm_memory_backing backing, unsigned flags)
{
    struct vmm_region_config cfg = {.size = sizeof(struct vmm_region_config),
                                    .gpa = gpa,
                                    .len = size,
                                    .backing = backing,
                                    .flags = flags};
    return vmm_memory_add_region(mem, &cfg);
}

/* The permission string ("rw-p") of the /proc/self/maps line holding addr. */
static void host_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    bool found = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) != 3)
            continue;
        if ((uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
            memcpy(perms, p, 5);
            found = true;
            break;
        }
    }
    fclose(f);
    ck_assert_msg(found, "no mapping holds %p", addr);
}

static void assert_not_executable(const struct vmm_memory *mem, unsigned index)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, index, &info), 0);
    char perms[5];
    host_perms(info.host, perms);
    ck_assert_msg(perms[2] != 'x', "region %u is executable: %s", index, perms);
    host_perms((uint8_t *)info.host + info.len - 1, perms);
    ck_assert_msg(perms[2] != 'x', "region %u tail is executable: %s", index, perms);
}

/* Whether the /proc/self/smaps entry holding addr lists flag (a two-letter
 * VmFlags mnemonic such as "hg" or "nh"). */
static bool host_vmflag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    bool inside = false, found = false, seen = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        /* Only a mapping's first line starts "lo-hi" (keys like
         * "AnonHugePages:" stop the scan at their first letter). */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            seen = true;
            for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
                found = found || strcmp(t, flag) == 0;
            break;
        }
    }
    fclose(f);
    ck_assert_msg(seen, "no smaps entry holds %p", addr);
    return found;
}

/* Whether this kernel has transparent huge pages at all. */
static bool host_has_thp(void)
{
    return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
}

/* A temporary file of size bytes, already unlinked. */
static int temp_file(uint64_t size)
{
    char path[PATH_MAX];
    int fd = mkstemp(vmm_test_tmpname(path, sizeof(path), "vmm-test-memory-"));
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    return fd;
}

START_TEST(test_create_destroy)
{
    ck_assert_int_eq(vmm_memory_create(NULL), -EINVAL);
    vmm_memory_destroy(NULL);
    struct vmm_memory *mem = new_map();
    ck_assert_uint_eq(vmm_memory_region_count(mem), 0);
    ck_assert_uint_eq(vmm_memory_total_size(mem), 0);
    ck_assert_int_eq(vmm_memory_find_region(mem, 0, NULL), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, 0, 1), -EFAULT);
    uint8_t b;
    ck_assert_int_eq(vmm_memory_read(mem, 0, &b, 1), -EFAULT);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_anon_region)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0x100000, MIB, VMM_MEMORY_ANON, 0), 0);

    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    ck_assert_uint_eq(info.index, 0);
    ck_assert_uint_eq(info.gpa, 0x100000);
    ck_assert_uint_eq(info.len, MIB);
    ck_assert_int_eq(info.fd, -1);
    ck_assert_ptr_nonnull(info.host);
    /* Not asked to be dumped: DONTDUMP applied, so F_DUMP is not reported. */
    ck_assert_uint_eq(info.flags & VMM_MEMORY_F_DUMP, 0);
    ck_assert_int_eq(vmm_memory_region_info(mem, 1, &info), -ENOENT);

    const char msg[] = "hello, guest";
    ck_assert_int_eq(vmm_memory_write(mem, 0x100010, msg, sizeof(msg)), 0);
    char back[sizeof(msg)] = {0};
    ck_assert_int_eq(vmm_memory_read(mem, 0x100010, back, sizeof(back)), 0);
    ck_assert_str_eq(back, msg);
    ck_assert_mem_eq((uint8_t *)info.host + 0x10, msg, sizeof(msg));

    void *p = NULL;
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100010, sizeof(msg), VMM_ACCESS_READ, &p), 0);
    ck_assert_ptr_eq(p, (uint8_t *)info.host + 0x10);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100010, 1, 0, &p), -EINVAL);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100010, 1, 0x80, &p), -EINVAL);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100010, 1, VMM_ACCESS_READ, NULL), -EINVAL);

    ck_assert_int_eq(vmm_memory_find_region(mem, 0x100000 + MIB - 1, &info), 0);
    ck_assert_int_eq(vmm_memory_find_region(mem, 0x100000 + MIB, NULL), -EFAULT);
    ck_assert_int_eq(vmm_memory_find_region(mem, 0xfffff, NULL), -EFAULT);
    ck_assert_uint_eq(vmm_memory_total_size(mem), MIB);

    assert_not_executable(mem, 0);
    vmm_memory_destroy(mem);
}
END_TEST

/* Large regions are placed so that host and guest addresses agree modulo
 * 2 MiB (KVM can then use huge second-level mappings). */
START_TEST(test_anon_alignment_and_hints)
{
    struct vmm_memory *mem = new_map();
    unsigned flags = VMM_MEMORY_F_THP | VMM_MEMORY_F_MERGEABLE | VMM_MEMORY_F_DUMP;
    ck_assert_int_eq(add(mem, 0x1000, 4 * MIB, VMM_MEMORY_ANON, flags), 0);
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    ck_assert_uint_eq((uintptr_t)info.host % (2 * MIB), 0x1000);
    /* THP/KSM may be missing on a host; a failure is dropped from the
     * applied flags, never a failed region. DUMP is kept as asked. */
    ck_assert_uint_eq(info.flags & ~(VMM_MEMORY_F_THP | VMM_MEMORY_F_MERGEABLE), VMM_MEMORY_F_DUMP);
    /* The whole region is usable, first and last byte. */
    uint8_t v = 0x5a;
    ck_assert_int_eq(vmm_memory_write(mem, 0x1000, &v, 1), 0);
    ck_assert_int_eq(vmm_memory_write(mem, 0x1000 + 4 * MIB - 1, &v, 1), 0);
    assert_not_executable(mem, 0);
    if (host_has_thp() && (info.flags & VMM_MEMORY_F_THP)) {
        ck_assert(host_vmflag(info.host, "hg"));
        ck_assert(!host_vmflag(info.host, "nh"));
    }
    vmm_memory_destroy(mem);
}
END_TEST

/* Without VMM_MEMORY_F_THP, anonymous and memfd memory asks for no huge
 * pages (a host with THP "always" would spend 2 MiB on a guest's first
 * write); a caller's file is left to its file system. */
START_TEST(test_no_thp_unless_asked)
{
    if (!host_has_thp())
        return; /* nothing to ask for or against */
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0, 4 * MIB, VMM_MEMORY_ANON, 0), 0);
    ck_assert_int_eq(add(mem, 4 * MIB, 4 * MIB, VMM_MEMORY_MEMFD, 0), 1);
    int fd = temp_file(4 * MIB);
    struct vmm_region_config fc = {
        .size = sizeof(fc), .gpa = 8 * MIB, .len = 4 * MIB, .backing = VMM_MEMORY_FILE, .fd = fd};
    ck_assert_int_eq(vmm_memory_add_region(mem, &fc), 2);
    close(fd);
    for (unsigned i = 0; i < 3; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        ck_assert_int_eq(vmm_memory_region_info(mem, i, &info), 0);
        ck_assert_uint_eq(info.flags & VMM_MEMORY_F_THP, 0);
        ck_assert(!host_vmflag(info.host, "hg"));
        ck_assert_int_eq(host_vmflag(info.host, "nh"), i < 2);
        /* Writing still works as before, first and last byte. */
        uint8_t v = 0xa5;
        ck_assert_int_eq(vmm_memory_write(mem, info.gpa, &v, 1), 0);
        ck_assert_int_eq(vmm_memory_write(mem, info.gpa + info.len - 1, &v, 1), 0);
    }
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_memfd_region)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0, 2 * MIB, VMM_MEMORY_MEMFD, 0), 0);
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    ck_assert_int_ge(info.fd, 0);
    ck_assert_uint_eq(info.fd_offset, 0);

    int seals = fcntl(info.fd, F_GET_SEALS);
    ck_assert_int_ge(seals, 0);
    ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
    ck_assert_int_ne(fcntl(info.fd, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_ne(ftruncate(info.fd, PAGE), 0);
    ck_assert_int_eq(errno, EPERM);

    /* Shared: a write through the map is visible through the fd. */
    const uint32_t magic = 0xfeedf00d;
    ck_assert_int_eq(vmm_memory_write(mem, 0x12340, &magic, sizeof(magic)), 0);
    uint32_t got = 0;
    ck_assert_int_eq(pread(info.fd, &got, sizeof(got), 0x12340), (ssize_t)sizeof(got));
    ck_assert_uint_eq(got, magic);

    assert_not_executable(mem, 0);
    int fd = info.fd;
    vmm_memory_destroy(mem);
    /* The map owned the memfd and closed it. */
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(test_file_region)
{
    int fd = temp_file(4 * PAGE);
    struct vmm_memory *mem = new_map();
    struct vmm_region_config cfg = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0x10000,
                                    .len = 2 * PAGE,
                                    .backing = VMM_MEMORY_FILE,
                                    .fd = fd,
                                    .fd_offset = PAGE};
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), 0);
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    ck_assert_int_ge(info.fd, 0);
    ck_assert_int_ne(info.fd, fd); /* dup'ed */
    ck_assert_uint_eq(info.fd_offset, PAGE);

    /* The map keeps its own fd: closing the caller's changes nothing. */
    int keep = dup(fd);
    close(fd);
    const char msg[] = "written by the guest side";
    ck_assert_int_eq(vmm_memory_write(mem, 0x10000 + PAGE + 8, msg, sizeof(msg)), 0);
    char back[sizeof(msg)] = {0};
    ck_assert_int_eq(pread(keep, back, sizeof(back), PAGE + PAGE + 8), (ssize_t)sizeof(back));
    ck_assert_str_eq(back, msg);

    /* And file writes show through guest reads (MAP_SHARED both ways). */
    ck_assert_int_eq(pwrite(keep, "ZZ", 2, PAGE), 2);
    char zz[2];
    ck_assert_int_eq(vmm_memory_read(mem, 0x10000, zz, 2), 0);
    ck_assert_mem_eq(zz, "ZZ", 2);

    assert_not_executable(mem, 0);
    vmm_memory_destroy(mem);
    close(keep);
}
END_TEST

START_TEST(test_file_region_hostile)
{
    int fd = temp_file(2 * PAGE);
    struct vmm_memory *mem = new_map();
    struct vmm_region_config cfg = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0,
                                    .len = 2 * PAGE,
                                    .backing = VMM_MEMORY_FILE,
                                    .fd = fd,
                                    .fd_offset = PAGE};
    /* One page short of offset + size. */
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    cfg.fd_offset = 0;
    cfg.len = 3 * PAGE;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    /* offset + size wraps. */
    cfg.len = PAGE;
    cfg.fd_offset = UINT64_MAX - PAGE + 1;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    cfg.fd_offset = 100; /* not page aligned */
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    cfg.fd_offset = 0;
    cfg.fd = -1;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EBADF);
    /* HUGETLB on a FILE: the file's filesystem decides its page size. */
    cfg.fd = fd;
    cfg.flags = VMM_MEMORY_F_HUGETLB;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    ck_assert_uint_eq(vmm_memory_region_count(mem), 0);

    /* Exactly the file's size is fine. */
    cfg.flags = 0;
    cfg.len = 2 * PAGE;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), 0);
    vmm_memory_destroy(mem);
    close(fd);
}
END_TEST

/* A ROM from a file opened read-only: mapped read-only on the host too. */
START_TEST(test_file_readonly)
{
    char path[PATH_MAX];
    int wfd = mkstemp(vmm_test_tmpname(path, sizeof(path), "vmm-test-rom-"));
    ck_assert_int_ge(wfd, 0);
    ck_assert_int_eq(pwrite(wfd, "ROM!", 4, 0), 4);
    ck_assert_int_eq(ftruncate(wfd, PAGE), 0);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    close(wfd);

    struct vmm_memory *mem = new_map();
    struct vmm_region_config cfg = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0xf0000,
                                    .len = PAGE,
                                    .backing = VMM_MEMORY_FILE,
                                    .fd = fd};
    /* A writable shared mapping of a read-only fd is refused by the kernel. */
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EACCES);
    cfg.flags = VMM_MEMORY_F_READONLY;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), 0);
    char rom[4];
    ck_assert_int_eq(vmm_memory_read(mem, 0xf0000, rom, 4), 0);
    ck_assert_mem_eq(rom, "ROM!", 4);
    ck_assert_int_eq(vmm_memory_write(mem, 0xf0000, "x", 1), -EROFS);
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    char perms[5];
    host_perms(info.host, perms);
    ck_assert_str_eq(perms, "r--s");
    vmm_memory_destroy(mem);
    close(fd);
}
END_TEST

/* HUGETLB needs reserved huge pages, which this host may lack: it must either
 * work or fail with a -errno, never crash or leave a region behind. */
START_TEST(test_hugetlb)
{
    enum vmm_memory_backing backings[] = {VMM_MEMORY_ANON, VMM_MEMORY_MEMFD};
    for (unsigned i = 0; i < 2; i++) {
        struct vmm_memory *mem = new_map();
        int rc = add(mem, 0, 2 * MIB, backings[i], VMM_MEMORY_F_HUGETLB);
        if (rc >= 0) {
            ck_assert_uint_eq(vmm_memory_region_count(mem), 1);
            uint64_t v = 0x1122334455667788;
            ck_assert_int_eq(vmm_memory_write(mem, 2 * MIB - 8, &v, 8), 0);
            uint64_t back = 0;
            ck_assert_int_eq(vmm_memory_read(mem, 2 * MIB - 8, &back, 8), 0);
            ck_assert_uint_eq(back, v);
            assert_not_executable(mem, 0);
        } else {
            ck_assert_int_ge(rc, -4095);
            ck_assert_uint_eq(vmm_memory_region_count(mem), 0);
        }
        /* A size that is not a multiple of the huge page size. */
        ck_assert_int_eq(add(mem, 4 * MIB, PAGE, backings[i], VMM_MEMORY_F_HUGETLB), -EINVAL);
        ck_assert_int_eq(
            add(mem, 4 * MIB, 2 * MIB, backings[i], VMM_MEMORY_F_HUGETLB | VMM_MEMORY_F_THP),
            -EINVAL);
        vmm_memory_destroy(mem);
    }
}
END_TEST

/* Growth convention (vmm/abi.h): a config or info whose .size is 0 or past
 * the library's struct is refused with -EINVAL and nothing is added or
 * written; an older, shorter config gets the defaults of the fields it
 * lacks (flags here), an older info is filled up to its size only. */
START_TEST(test_region_structs_check_their_size)
{
    struct vmm_memory *mem = new_map();
    struct vmm_region_config cfg = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = PAGE,
                                            .flags = VMM_MEMORY_F_READONLY | (1u << 20));
    cfg.size = 0;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    cfg.size = sizeof(cfg) + 8;
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);
    ck_assert_uint_eq(vmm_memory_region_count(mem), 0);

    cfg.size = offsetof(struct vmm_region_config, flags); /* the unknown flag is past it */
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), 0);

    struct vmm_region_info info;
    memset(&info, 0x5a, sizeof(info));
    for (int bad = 0; bad < 2; bad++) {
        info.size = bad ? sizeof(info) + 8 : 0;
        ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), -EINVAL);
        ck_assert_int_eq(vmm_memory_find_region(mem, 0, &info), -EINVAL);
        ck_assert_uint_eq(info.index, 0x5a5a5a5au);
    }
    info.size = offsetof(struct vmm_region_info, flags);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &info), 0);
    ck_assert_uint_eq(info.size, offsetof(struct vmm_region_info, flags));
    ck_assert_uint_eq(info.len, PAGE);
    ck_assert_uint_eq(info.flags, 0x5a5a5a5au);
    info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_find_region(mem, 0, &info), 0);
    ck_assert_uint_eq(info.flags, 0); /* the older config's default */
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_bad_configs)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(vmm_memory_add_region(mem, NULL), -EINVAL);
    ck_assert_int_eq(vmm_memory_add_region(NULL, NULL), -EINVAL);
    ck_assert_int_eq(add(mem, 0, 0, VMM_MEMORY_ANON, 0), -EINVAL);        /* zero size */
    ck_assert_int_eq(add(mem, 0, PAGE + 1, VMM_MEMORY_ANON, 0), -EINVAL); /* unaligned size */
    ck_assert_int_eq(add(mem, 0, 100, VMM_MEMORY_MEMFD, 0), -EINVAL);     /* unaligned size */
    ck_assert_int_eq(add(mem, 0x800, PAGE, VMM_MEMORY_ANON, 0), -EINVAL); /* unaligned gpa */
    ck_assert_int_eq(add(mem, 0, PAGE, (enum vmm_memory_backing)7, 0), -EINVAL);
    ck_assert_int_eq(add(mem, 0, PAGE, VMM_MEMORY_ANON, 1u << 20), -EINVAL); /* unknown flag */
    /* gpa + size overflows. */
    ck_assert_int_eq(add(mem, UINT64_MAX - PAGE + 1, 2 * PAGE, VMM_MEMORY_ANON, 0), -EINVAL);
    ck_assert_int_eq(add(mem, PAGE, UINT64_MAX - PAGE + 1, VMM_MEMORY_ANON, 0), -EINVAL);
    /* fd_offset only means something for FILE. */
    struct vmm_region_config cfg = {.size = sizeof(struct vmm_region_config),
                                    .len = PAGE,
                                    .backing = VMM_MEMORY_ANON,
                                    .fd_offset = PAGE};
    ck_assert_int_eq(vmm_memory_add_region(mem, &cfg), -EINVAL);

    uint8_t buf[16];
    ck_assert_int_eq(vmm_memory_add_external(mem, 0, 0, buf), -EINVAL);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0, sizeof(buf), NULL), -EINVAL);
    ck_assert_int_eq(vmm_memory_add_external(mem, UINT64_MAX - 7, sizeof(buf), buf), -EINVAL);
    ck_assert_uint_eq(vmm_memory_region_count(mem), 0);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_overlaps)
{
    static uint8_t a[0x3000], b[0x1000];
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x10000, sizeof(a), a), 0);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x10000, sizeof(b), b), -EEXIST); /* same start */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0xf800, sizeof(b), b), -EEXIST);  /* head */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x12fff, sizeof(b), b), -EEXIST); /* tail */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x11000, 1, b), -EEXIST);         /* inside */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x8000, 0x10000, b), -EEXIST);    /* around */
    ck_assert_int_eq(add(mem, 0x12000, PAGE, VMM_MEMORY_ANON, 0), -EEXIST);
    /* Touching either end is fine. */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x13000, sizeof(b), b), 1);
    ck_assert_int_eq(add(mem, 0xf000, PAGE, VMM_MEMORY_ANON, 0), 2);
    ck_assert_uint_eq(vmm_memory_region_count(mem), 3);
    ck_assert_uint_eq(vmm_memory_total_size(mem), 0x5000);
    vmm_memory_destroy(mem);
}
END_TEST

/* Indices are the order of addition (KVM slot numbers), whatever the gpa
 * order; lookups still find the right region among many. */
START_TEST(test_indices_and_lookup)
{
    static uint8_t backing[64][16];
    struct vmm_memory *mem = new_map();
    /* Added in a scrambled gpa order: region i sits at gpa ((i * 37) % 64) * 0x100. */
    for (unsigned i = 0; i < 64; i++)
        ck_assert_int_eq(vmm_memory_add_external(mem, ((i * 37) % 64) * 0x100, 16, backing[i]),
                         (int)i);
    for (unsigned i = 0; i < 64; i++) {
        vmm_gpa_t gpa = ((i * 37) % 64) * 0x100;
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        ck_assert_int_eq(vmm_memory_find_region(mem, gpa + 15, &info), (int)i);
        ck_assert_ptr_eq(info.host, backing[i]);
        ck_assert_int_eq(vmm_memory_find_region(mem, gpa + 16, NULL), -EFAULT);
    }
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_region_cap)
{
    static uint8_t byte[600];
    struct vmm_memory *mem = new_map();
    unsigned n = 0;
    int rc;
    while ((rc = vmm_memory_add_external(mem, (vmm_gpa_t)n * 2, 1, &byte[n])) >= 0)
        n++;
    ck_assert_int_eq(rc, -ENOSPC);
    ck_assert_uint_eq(n, 512);
    ck_assert_uint_eq(vmm_memory_region_count(mem), 512);
    ck_assert_int_eq(vmm_memory_find_region(mem, 511 * 2, NULL), 511);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_range_edges)
{
    static uint8_t lo[PAGE], hi[PAGE];
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(vmm_memory_add_external(mem, 0, sizeof(lo), lo), 0);
    /* The highest possible region: ends at UINT64_MAX (exclusive). */
    vmm_gpa_t top = UINT64_MAX - (PAGE - 1);
    ck_assert_int_eq(vmm_memory_add_external(mem, top, PAGE - 1, hi), 1);

    uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* Ending exactly at the end of memory: fine. One byte more: not. */
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 8, buf, 8), 0);
    ck_assert_int_eq(vmm_memory_read(mem, PAGE - 8, buf, 8), 0);
    ck_assert_int_eq(vmm_memory_check_range(mem, PAGE - 8, 8), 0);
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 8, buf, 9), -EFAULT);
    ck_assert_int_eq(vmm_memory_read(mem, PAGE - 8, buf, 9), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, PAGE - 8, 9), -EFAULT);
    void *p;
    ck_assert_int_eq(vmm_memory_get_ptr(mem, PAGE - 8, 8, VMM_ACCESS_READ, &p), 0);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, PAGE - 8, 9, VMM_ACCESS_READ, &p), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, PAGE, 0), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, PAGE - 1, 0), 0);

    /* Near the top of the address space, gpa + len must not wrap into low memory. */
    ck_assert_int_eq(vmm_memory_write(mem, top, buf, PAGE - 1 > 8 ? 8 : 1), 0);
    ck_assert_int_eq(vmm_memory_check_range(mem, top, PAGE - 1), 0);
    ck_assert_int_eq(vmm_memory_check_range(mem, top, PAGE), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, UINT64_MAX - 1, 2), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, UINT64_MAX - 1, UINT64_MAX), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, 16, UINT64_MAX), -EFAULT);
    ck_assert_int_eq(vmm_memory_read(mem, UINT64_MAX - 1, buf, 8), -EFAULT);
    ck_assert_int_eq(vmm_memory_write(mem, UINT64_MAX - 1, buf, 8), -EFAULT);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, UINT64_MAX - 1, 8, VMM_ACCESS_READ, &p), -EFAULT);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 8, SIZE_MAX, VMM_ACCESS_READ, &p), -EFAULT);
    ck_assert_int_eq(vmm_memory_find_region(mem, UINT64_MAX, NULL), -EFAULT);
    ck_assert_int_eq(vmm_memory_find_region(mem, UINT64_MAX - 1, NULL), 1);
    uint16_t v16;
    ck_assert_int_eq(vmm_memory_load_u16(mem, UINT64_MAX - 1, &v16), -EFAULT);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_adjacent_regions)
{
    static uint8_t a[PAGE], b[PAGE], c[PAGE];
    struct vmm_memory *mem = new_map();
    /* Added out of order: b, then a right below it, then c right above. */
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x2000, PAGE, b), 0);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x1000, PAGE, a), 1);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x3000, PAGE, c), 2);

    uint8_t buf[PAGE + 32];
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    /* Crosses all three regions. */
    ck_assert_int_eq(vmm_memory_write(mem, 0x1ff0, buf, sizeof(buf)), 0);
    ck_assert_mem_eq(a + PAGE - 16, buf, 16);
    ck_assert_mem_eq(b, buf + 16, PAGE);
    ck_assert_mem_eq(c, buf + 16 + PAGE, 16);
    uint8_t back[sizeof(buf)];
    ck_assert_int_eq(vmm_memory_read(mem, 0x1ff0, back, sizeof(back)), 0);
    ck_assert_mem_eq(back, buf, sizeof(buf));
    ck_assert_int_eq(vmm_memory_check_range(mem, 0x1000, 3 * PAGE), 0);

    /* One pointer cannot span two mappings. */
    void *p;
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x1ff8, 16, VMM_ACCESS_READ, &p), -EFAULT);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x1ff8, 8, VMM_ACCESS_READ, &p), 0);
    ck_assert_ptr_eq(p, a + PAGE - 8);
    uint32_t v32;
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x1ffc, &v32), 0);
    ck_assert_int_eq(vmm_memory_store_u32(mem, 0x1ffe, 1), -EINVAL);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_gap)
{
    static uint8_t a[PAGE], b[PAGE];
    memset(a, 0xaa, sizeof(a));
    memset(b, 0xbb, sizeof(b));
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(vmm_memory_add_external(mem, 0, PAGE, a), 0);
    ck_assert_int_eq(vmm_memory_add_external(mem, 2 * PAGE, PAGE, b), 1);

    uint8_t buf[2 * PAGE + 16];
    memset(buf, 0x11, sizeof(buf));
    /* Starts in a, crosses the hole, ends in b: refused, and nothing written. */
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 8, buf, sizeof(buf)), -EFAULT);
    for (unsigned i = 0; i < PAGE; i++) {
        ck_assert_uint_eq(a[i], 0xaa);
        ck_assert_uint_eq(b[i], 0xbb);
    }
    ck_assert_int_eq(vmm_memory_read(mem, PAGE - 8, buf, sizeof(buf)), -EFAULT);
    ck_assert_int_eq(vmm_memory_check_range(mem, 0, 3 * PAGE), -EFAULT);
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 8, buf, 9), -EFAULT);
    ck_assert_uint_eq(a[PAGE - 8], 0xaa);
    ck_assert_int_eq(vmm_memory_read(mem, PAGE, buf, 1), -EFAULT);
    ck_assert_int_eq(vmm_memory_find_region(mem, PAGE, NULL), -EFAULT);
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 8, buf, 8), 0);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_atomics)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0, PAGE, VMM_MEMORY_ANON, 0), 0);
    ck_assert_int_eq(vmm_memory_store_u32(mem, 0x100, 0xdeadbeef), 0);
    ck_assert_int_eq(vmm_memory_store_u16(mem, 0x104, 0xcafe), 0);
    uint32_t v32 = 0;
    uint16_t v16 = 0;
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x100, &v32), 0);
    ck_assert_uint_eq(v32, 0xdeadbeef);
    ck_assert_int_eq(vmm_memory_load_u16(mem, 0x104, &v16), 0);
    ck_assert_uint_eq(v16, 0xcafe);
    ck_assert_int_eq(vmm_memory_load_u16(mem, 0x102, &v16), 0);
    ck_assert_uint_eq(v16, 0xdead);

    /* Misaligned. */
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x102, &v32), -EINVAL);
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x101, &v32), -EINVAL);
    ck_assert_int_eq(vmm_memory_store_u32(mem, 0x103, 0), -EINVAL);
    ck_assert_int_eq(vmm_memory_load_u16(mem, 0x101, &v16), -EINVAL);
    ck_assert_int_eq(vmm_memory_store_u16(mem, 0x105, 0), -EINVAL);
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x100, &v32), 0);
    ck_assert_uint_eq(v32, 0xdeadbeef);
    /* Outside memory; the last word is fine. */
    ck_assert_int_eq(vmm_memory_store_u32(mem, PAGE, 0), -EFAULT);
    ck_assert_int_eq(vmm_memory_load_u16(mem, PAGE, &v16), -EFAULT);
    ck_assert_int_eq(vmm_memory_store_u32(mem, PAGE - 4, 7), 0);
    ck_assert_int_eq(vmm_memory_store_u16(mem, UINT64_MAX - 1, 7), -EFAULT);

    /* External memory aligned for the guest but not on the host. */
    uint8_t *raw = malloc(64);
    ck_assert_ptr_nonnull(raw);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x10000, 32, raw + 1), 1);
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x10000, &v32), -EINVAL);
    ck_assert_int_eq(vmm_memory_store_u16(mem, 0x10000, 1), -EINVAL);
    ck_assert_int_eq(vmm_memory_write(mem, 0x10000, "abc", 3), 0);
    vmm_memory_destroy(mem);
    /* The map never freed or unmapped external memory. */
    ck_assert_mem_eq(raw + 1, "abc", 3);
    free(raw);
}
END_TEST

START_TEST(test_readonly_region)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0, PAGE, VMM_MEMORY_ANON, 0), 0);
    ck_assert_int_eq(add(mem, PAGE, PAGE, VMM_MEMORY_ANON, VMM_MEMORY_F_READONLY), 1);
    struct vmm_region_info ram = VMM_INIT(struct vmm_region_info);
    struct vmm_region_info rom = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_info(mem, 0, &ram), 0);
    ck_assert_int_eq(vmm_memory_region_info(mem, 1, &rom), 0);
    ck_assert_uint_ne(rom.flags & VMM_MEMORY_F_READONLY, 0);

    /* The VMM fills the ROM through the host pointer... */
    memcpy(rom.host, "BIOS", 4);
    char buf[8];
    ck_assert_int_eq(vmm_memory_read(mem, PAGE, buf, 4), 0);
    ck_assert_mem_eq(buf, "BIOS", 4);
    /* ...but every write path on the guest's behalf refuses. */
    ck_assert_int_eq(vmm_memory_write(mem, PAGE, "x", 1), -EROFS);
    void *p;
    ck_assert_int_eq(vmm_memory_get_ptr(mem, PAGE, 4, VMM_ACCESS_WRITE, &p), -EROFS);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, PAGE, 4, VMM_ACCESS_READ | VMM_ACCESS_WRITE, &p),
                     -EROFS);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, PAGE, 4, VMM_ACCESS_READ, &p), 0);
    ck_assert_int_eq(vmm_memory_store_u32(mem, PAGE, 1), -EROFS);
    ck_assert_int_eq(vmm_memory_store_u16(mem, PAGE + 2, 1), -EROFS);
    uint32_t v;
    ck_assert_int_eq(vmm_memory_load_u32(mem, PAGE, &v), 0);
    /* A write from RAM into the ROM writes nothing, not even the RAM part. */
    ck_assert_int_eq(vmm_memory_write(mem, PAGE - 4, "12345678", 8), -EROFS);
    ck_assert_mem_eq((uint8_t *)ram.host + PAGE - 4, "\0\0\0\0", 4);
    ck_assert_mem_eq(rom.host, "BIOS", 4);
    /* A range that leaves memory is -EFAULT even when it touches the ROM. */
    ck_assert_int_eq(vmm_memory_write(mem, PAGE, buf, PAGE + 1), -EFAULT);
    assert_not_executable(mem, 1);
    vmm_memory_destroy(mem);
}
END_TEST

START_TEST(test_dirty_exact)
{
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0x100000, 130 * PAGE, VMM_MEMORY_ANON, 0), 0);
    uint64_t bm[3] = {0};
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), -EINVAL); /* not tracking */
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 1, bm, 3), -ENOENT);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 1, true), -ENOENT);
    /* Writes before tracking starts are not recorded. */
    ck_assert_int_eq(vmm_memory_write(mem, 0x100000, "a", 1), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, true), 0);
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0] | bm[1] | bm[2], 0);

    /* Bytes 4095..4096: pages 0 and 1 exactly. */
    ck_assert_int_eq(vmm_memory_write(mem, 0x100000 + 4095, "xy", 2), 0);
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0], 0x3);
    ck_assert_uint_eq(bm[1] | bm[2], 0);
    /* Fetch cleared them. */
    memset(bm, 0, sizeof(bm));
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0] | bm[1] | bm[2], 0);

    /* Every write path; reads and read pointers mark nothing. */
    void *p;
    uint32_t v;
    ck_assert_int_eq(vmm_memory_store_u32(mem, 0x100000 + 5 * PAGE, 1), 0);      /* page 5 */
    ck_assert_int_eq(vmm_memory_store_u16(mem, 0x100000 + 64 * PAGE + 2, 1), 0); /* page 64 */
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100000 + 129 * PAGE, 1, VMM_ACCESS_WRITE, &p), 0);
    ck_assert_int_eq(vmm_memory_get_ptr(mem, 0x100000 + 7 * PAGE, 1, VMM_ACCESS_READ, &p), 0);
    ck_assert_int_eq(vmm_memory_load_u32(mem, 0x100000 + 8 * PAGE, &v), 0);
    ck_assert_int_eq(vmm_memory_read(mem, 0x100000 + 9 * PAGE, &v, 4), 0);
    /* A write over a whole word of pages: 62..66. */
    static uint8_t big[5 * PAGE];
    ck_assert_int_eq(vmm_memory_write(mem, 0x100000 + 62 * PAGE, big, sizeof(big)), 0);
    /* The caller's bits are ORed into, not overwritten. */
    bm[0] = UINT64_C(1) << 40;
    bm[1] = bm[2] = 0;
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0], (UINT64_C(1) << 5) | (UINT64_C(1) << 40) | (UINT64_C(3) << 62));
    ck_assert_uint_eq(bm[1], 0x7);
    ck_assert_uint_eq(bm[2], UINT64_C(1) << 1);

    /* 130 pages need 3 words. */
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 2), -ENOSPC);
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, NULL, 0), -ENOSPC);

    /* mark_dirty: across the region end and beyond memory, ignored outside. */
    vmm_memory_mark_dirty(mem, 0x100000 + 128 * PAGE + 1, 10 * PAGE);
    vmm_memory_mark_dirty(mem, 0, 0x100000 + 1);
    vmm_memory_mark_dirty(mem, 0x100000 + 3 * PAGE, UINT64_MAX);
    memset(bm, 0, sizeof(bm));
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0], ~UINT64_C(0) & ~UINT64_C(0x6));
    ck_assert_uint_eq(bm[1], ~UINT64_C(0));
    ck_assert_uint_eq(bm[2], 0x3);

    /* Off, then on again: starts clean; fetch while off is -EINVAL. */
    ck_assert_int_eq(vmm_memory_write(mem, 0x100000, "a", 1), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, false), 0);
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), -EINVAL);
    ck_assert_int_eq(vmm_memory_write(mem, 0x100000 + PAGE, "a", 1), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, true), 0);
    memset(bm, 0, sizeof(bm));
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, bm, 3), 0);
    ck_assert_uint_eq(bm[0] | bm[1] | bm[2], 0);
    vmm_memory_destroy(mem);
}
END_TEST

/* External regions need no alignment: pages count from the region's gpa. */
START_TEST(test_dirty_external_unaligned)
{
    uint8_t *buf = calloc(1, 2 * PAGE + 1);
    ck_assert_ptr_nonnull(buf);
    struct vmm_memory *mem = new_map();
    static uint8_t other[PAGE];
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x123, 2 * PAGE + 1, buf), 0);
    ck_assert_int_eq(vmm_memory_add_external(mem, 0x123 + 2 * PAGE + 1, PAGE, other), 1);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, true), 0);
    /* Region bytes 4095..4096 (gpa 0x123 + 4095) and its last byte (page 2). */
    ck_assert_int_eq(vmm_memory_write(mem, 0x123 + PAGE - 1, "ab", 2), 0);
    /* Crosses into the untracked neighbour: only page 2 of region 0. */
    ck_assert_int_eq(vmm_memory_write(mem, 0x123 + 2 * PAGE, "cd", 2), 0);
    uint64_t bm = 0;
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, &bm, 1), 0);
    ck_assert_uint_eq(bm, 0x7);
    ck_assert_uint_eq(buf[2 * PAGE], 'c');
    ck_assert_uint_eq(other[0], 'd');
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 1, &bm, 1), -EINVAL);
    vmm_memory_destroy(mem);
    free(buf);
}
END_TEST

struct dirty_writer {
    struct vmm_memory *mem;
    unsigned first_page;
    unsigned pages;
};

static void *dirty_writer_main(void *arg)
{
    struct dirty_writer *w = arg;
    for (unsigned i = 0; i < w->pages; i++) {
        uint32_t v = i;
        if (vmm_memory_store_u32(w->mem, (uint64_t)(w->first_page + i) * PAGE, v) != 0)
            return (void *)1;
        if (vmm_memory_write(w->mem, (uint64_t)(w->first_page + i) * PAGE + 100, &v, 4) != 0)
            return (void *)1;
    }
    return NULL;
}

/* Several writers and a concurrent fetcher: the union of all fetches holds
 * exactly the pages written. */
START_TEST(test_dirty_concurrent)
{
    enum { WRITERS = 4, PER = 512, PAGES = WRITERS * PER, WORDS = PAGES / 64 };
    struct vmm_memory *mem = new_map();
    ck_assert_int_eq(add(mem, 0, (uint64_t)PAGES * PAGE, VMM_MEMORY_ANON, 0), 0);
    ck_assert_int_eq(vmm_memory_dirty_track(mem, 0, true), 0);

    pthread_t threads[WRITERS];
    struct dirty_writer args[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        /* Interleave writers within the same bitmap words. */
        args[i] = (struct dirty_writer){.mem = mem, .first_page = i * PER, .pages = PER};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, dirty_writer_main, &args[i]), 0);
    }
    static uint64_t all[WORDS];
    for (unsigned round = 0; round < 200; round++)
        ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, all, WORDS), 0);
    for (unsigned i = 0; i < WRITERS; i++) {
        void *ret;
        ck_assert_int_eq(pthread_join(threads[i], &ret), 0);
        ck_assert_ptr_null(ret);
    }
    ck_assert_int_eq(vmm_memory_dirty_fetch(mem, 0, all, WORDS), 0);
    for (unsigned w = 0; w < WORDS; w++)
        ck_assert_uint_eq(all[w], ~UINT64_C(0));
    vmm_memory_destroy(mem);
}
END_TEST

static Suite *memory_suite(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("regions");
    tcase_add_test(tc, test_create_destroy);
    tcase_add_test(tc, test_anon_region);
    tcase_add_test(tc, test_anon_alignment_and_hints);
    tcase_add_test(tc, test_no_thp_unless_asked);
    tcase_add_test(tc, test_memfd_region);
    tcase_add_test(tc, test_file_region);
    tcase_add_test(tc, test_file_region_hostile);
    tcase_add_test(tc, test_file_readonly);
    tcase_add_test(tc, test_hugetlb);
    tcase_add_test(tc, test_bad_configs);
    tcase_add_test(tc, test_region_structs_check_their_size);
    tcase_add_test(tc, test_overlaps);
    tcase_add_test(tc, test_indices_and_lookup);
    tcase_add_test(tc, test_region_cap);
    suite_add_tcase(s, tc);

    tc = tcase_create("access");
    tcase_add_test(tc, test_range_edges);
    tcase_add_test(tc, test_adjacent_regions);
    tcase_add_test(tc, test_gap);
    tcase_add_test(tc, test_atomics);
    tcase_add_test(tc, test_readonly_region);
    suite_add_tcase(s, tc);

    tc = tcase_create("dirty");
    tcase_set_timeout(tc, 20); /* writer threads racing the fetches */
    tcase_add_test(tc, test_dirty_exact);
    tcase_add_test(tc, test_dirty_external_unaligned);
    tcase_add_test(tc, test_dirty_concurrent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(memory_suite());
}
