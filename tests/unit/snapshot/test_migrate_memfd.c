/* SPDX-License-Identifier: Apache-2.0 */
/* Live migration's MEMFD message, as a target reads it off a Unix socket:
 * the header with the descriptors that came with it (mig_recv_header) and
 * the check against the VM's memory (mig_memfd_check). A message without
 * SCM_RIGHTS, with two descriptors or more than a message may carry, for a
 * region the VM lacks or one that cannot take a memfd (the caller's
 * memory), with a size or gpa unlike the region's, or whose descriptor is
 * not a memfd, may shrink or is not writable, is refused with a reason;
 * only a sealed memfd of the region's size passes. A region takes such a
 * memfd in place (memory_region_adopt_memfd) and blank memory again
 * (memory_region_blank). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/memory.h>

#include "check_compat.h"
#include "memory/memory_internal.h"
#include "snapshot/snapshot_internal.h"

#define RAM_LEN (1u << 20)
#define ROM_GPA 0x100000u

static struct vmm_memory *mem;
static void *ext;

/* Region 0: 1 MiB of memfd at 0; region 1: 64 KiB of the caller's at ROM_GPA. */
static void setup(void)
{
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    struct vmm_region_config ram =
        VMM_INIT(struct vmm_region_config, .len = RAM_LEN, .backing = VMM_MEMORY_MEMFD);
    ck_assert_int_eq(vmm_memory_add_region(mem, &ram), 0);
    ext = calloc(1, 65536);
    ck_assert_int_eq(vmm_memory_add_external(mem, ROM_GPA, 65536, ext), 1);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(ext);
}

static int memfd(uint64_t size, unsigned seals)
{
    int fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    if (seals)
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
    return fd;
}

/* Send a MEMFD message for m with n descriptors (all fd) over sv[0], read
 * its header and payload off sv[1] as the target does, and check it.
 * Returns mig_memfd_check's result (or mig_recv_header's, if it fails),
 * the reason in why. */
static int deliver(const struct mig_memfd *m, int fd, unsigned n, char *why, size_t why_len,
                   unsigned *region)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct mig_header h = {.magic = MIG_MAGIC, .type = MIG_MEMFD, .len = sizeof(*m)};
    uint8_t bytes[sizeof(h) + sizeof(*m)];
    memcpy(bytes, &h, sizeof(h));
    memcpy(bytes + sizeof(h), m, sizeof(*m));
    struct iovec iov = {.iov_base = bytes, .iov_len = sizeof(bytes)};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        for (unsigned i = 0; i < n; i++)
            memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
    ck_assert_int_eq(sendmsg(sv[0], &msg, 0), (ssize_t)sizeof(bytes));

    struct mig_header got;
    int fds[MIG_MAX_FDS];
    unsigned nfds = 99;
    int r = mig_recv_header(sv[1], &got, fds, &nfds);
    if (r == 0) {
        ck_assert_uint_eq(got.type, MIG_MEMFD);
        ck_assert_uint_eq(got.len, sizeof(*m));
        ck_assert_uint_eq(nfds, n);
        struct mig_memfd pm;
        ck_assert_int_eq(read(sv[1], &pm, sizeof(pm)), (ssize_t)sizeof(pm));
        why[0] = '\0';
        r = mig_memfd_check(mem, &pm, fds, nfds, region, why, why_len);
        for (unsigned i = 0; i < nfds; i++) {
            ck_assert_int_ge(fcntl(fds[i], F_GETFD), 0);
            ck_assert(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
            close(fds[i]);
        }
    } else {
        ck_assert_uint_eq(nfds, 0);
    }
    close(sv[0]);
    close(sv[1]);
    return r;
}

static void refused(const struct mig_memfd *m, int fd, unsigned n, const char *reason)
{
    char why[256];
    unsigned region = 77;
    ck_assert_int_eq(deliver(m, fd, n, why, sizeof(why), &region), -EPROTO);
    ck_assert_msg(strstr(why, reason), "reason '%s', expected '%s'", why, reason);
    ck_assert_uint_eq(region, 77);
}

START_TEST(a_sealed_memfd_of_the_region_passes)
{
    int fd = memfd(RAM_LEN, F_SEAL_SHRINK | F_SEAL_GROW);
    struct mig_memfd m = {.region = 0, .gpa = 0, .len = RAM_LEN};
    char why[256];
    unsigned region = 77;
    ck_assert_int_eq(deliver(&m, fd, 1, why, sizeof(why), &region), 0);
    ck_assert_uint_eq(region, 0);
    /* Only shrinking matters: a memfd that may grow is as good. */
    close(fd);
    fd = memfd(RAM_LEN, F_SEAL_SHRINK);
    ck_assert_int_eq(deliver(&m, fd, 1, why, sizeof(why), &region), 0);
    close(fd);
}
END_TEST

START_TEST(a_wrong_descriptor_count_is_refused)
{
    int fd = memfd(RAM_LEN, F_SEAL_SHRINK | F_SEAL_GROW);
    struct mig_memfd m = {.region = 0, .gpa = 0, .len = RAM_LEN};
    refused(&m, fd, 0, "0 descriptors, not 1"); /* no SCM_RIGHTS at all */
    refused(&m, fd, 2, "2 descriptors, not 1");
    /* More than a message is read with: refused with the header, none kept. */
    char why[8];
    unsigned region;
    ck_assert_int_eq(deliver(&m, fd, MIG_MAX_FDS + 2, why, sizeof(why), &region), -EPROTO);
    close(fd);
}
END_TEST

START_TEST(a_memfd_unlike_the_region_is_refused)
{
    int fd = memfd(RAM_LEN, F_SEAL_SHRINK | F_SEAL_GROW);
    struct mig_memfd m = {.region = 0, .gpa = 0, .len = RAM_LEN * 2};
    refused(&m, fd, 1, "a region this VM does not have");
    m = (struct mig_memfd){.region = 0, .gpa = 4096, .len = RAM_LEN};
    refused(&m, fd, 1, "a region this VM does not have");
    m = (struct mig_memfd){.region = 2, .gpa = 0, .len = RAM_LEN};
    refused(&m, fd, 1, "a region this VM does not have");
    m = (struct mig_memfd){.region = 0xffffffffu, .gpa = 0, .len = RAM_LEN};
    refused(&m, fd, 1, "a region this VM does not have");
    m = (struct mig_memfd){.region = 0, .flags = 1, .gpa = 0, .len = RAM_LEN};
    refused(&m, fd, 1, "a region this VM does not have");
    /* The caller's own memory cannot be replaced. */
    m = (struct mig_memfd){.region = 1, .gpa = ROM_GPA, .len = 65536};
    refused(&m, fd, 1, "cannot take a memfd");
    close(fd);
    /* The descriptor's size must be the region's, either way. */
    struct mig_memfd ok = {.region = 0, .gpa = 0, .len = RAM_LEN};
    fd = memfd(RAM_LEN + 4096, F_SEAL_SHRINK);
    refused(&ok, fd, 1, "is 1052672 bytes, the region 1048576");
    close(fd);
    fd = memfd(RAM_LEN - 4096, F_SEAL_SHRINK);
    refused(&ok, fd, 1, "is 1044480 bytes");
    close(fd);
}
END_TEST

START_TEST(a_descriptor_that_is_no_safe_memfd_is_refused)
{
    struct mig_memfd m = {.region = 0, .gpa = 0, .len = RAM_LEN};
    /* Not sealed: the source could shrink it under the guest (SIGBUS). */
    int fd = memfd(RAM_LEN, 0);
    refused(&m, fd, 1, "may shrink or is not writable");
    close(fd);
    /* Sealed against writes: the guest could not run on it. */
    fd = memfd(RAM_LEN, F_SEAL_SHRINK | F_SEAL_WRITE);
    refused(&m, fd, 1, "may shrink or is not writable");
    close(fd);
    /* A pipe is no memfd. */
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    refused(&m, p[0], 1, "is not a memfd");
    close(p[0]);
    close(p[1]);
    /* A memfd open read-only (through /proc) cannot be mapped for the guest. */
    fd = memfd(RAM_LEN, F_SEAL_SHRINK);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(ro, 0);
    refused(&m, ro, 1, "may shrink or is not writable");
    close(ro);
    close(fd);
}
END_TEST

static ino_t inode(int fd)
{
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    return st.st_ino;
}

/* A region takes a memfd at the same host address and fd number: what the
 * guest sees is the memfd's; blanked again, it has zeros of its own and the
 * memfd keeps what was written. Anonymous regions take one too; the
 * caller's memory does not. */
START_TEST(a_region_adopts_a_memfd_and_is_blanked)
{
    struct vmm_memory *m;
    ck_assert_int_eq(vmm_memory_create(&m), 0);
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .len = RAM_LEN,
                                            .backing = _i ? VMM_MEMORY_ANON : VMM_MEMORY_MEMFD);
    ck_assert_int_eq(vmm_memory_add_region(m, &ram), 0);
    struct vmm_region_info before = VMM_INIT(struct vmm_region_info), after = before;
    ck_assert_int_eq(vmm_memory_region_info(m, 0, &before), 0);
    ck_assert(_i ? memory_region_anonymous(m, 0) : memory_region_memfd(m, 0));

    int fd = memfd(RAM_LEN, F_SEAL_SHRINK | F_SEAL_GROW);
    uint64_t v = 0x1122334455667788ull, got = 0;
    ck_assert_int_eq(pwrite(fd, &v, 8, 4096), 8);
    ck_assert_int_eq(memory_region_adopt_memfd(m, 0, fd), 0);
    ck_assert_int_eq(vmm_memory_region_info(m, 0, &after), 0);
    ck_assert_ptr_eq(after.host, before.host);
    if (!_i)
        ck_assert_int_eq(after.fd, before.fd); /* the same number, now the memfd */
    ck_assert_uint_eq(inode(after.fd), inode(fd));
    ck_assert(memory_region_memfd(m, 0));
    ck_assert_int_eq(vmm_memory_read(m, 4096, &got, 8), 0);
    ck_assert_uint_eq(got, v);
    v = ~v;
    ck_assert_int_eq(vmm_memory_write(m, 8192, &v, 8), 0);
    ck_assert_int_eq(pread(fd, &got, 8, 8192), 8);
    ck_assert_uint_eq(got, v);

    memory_region_blank(m, 0);
    ck_assert_int_eq(vmm_memory_region_info(m, 0, &after), 0);
    ck_assert_ptr_eq(after.host, before.host);
    ck_assert_int_ge(after.fd, 0);
    ck_assert_uint_ne(inode(after.fd), inode(fd));
    ck_assert_int_eq(vmm_memory_read(m, 8192, &got, 8), 0);
    ck_assert_uint_eq(got, 0);
    ck_assert_int_eq(vmm_memory_write(m, 4096, &got, 8), 0);
    ck_assert_int_eq(pread(fd, &got, 8, 4096), 8);
    ck_assert_uint_eq(got, 0x1122334455667788ull); /* untouched by the blank region */
    close(fd);

    /* The caller's memory, or no such region. */
    ck_assert_int_eq(memory_region_adopt_memfd(mem, 1, 0), -ENOTSUP);
    ck_assert_int_eq(memory_region_adopt_memfd(mem, 9, 0), -ENOENT);
    vmm_memory_destroy(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("migrate_memfd");
    TCase *tc = tcase_create("memfd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_sealed_memfd_of_the_region_passes);
    tcase_add_test(tc, a_wrong_descriptor_count_is_refused);
    tcase_add_test(tc, a_memfd_unlike_the_region_is_refused);
    tcase_add_test(tc, a_descriptor_that_is_no_safe_memfd_is_refused);
    tcase_add_loop_test(tc, a_region_adopts_a_memfd_and_is_blanked, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(suite());
}
