/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by the Check suites. */
#ifndef VMM_TESTS_CHECK_COMPAT_H
#define VMM_TESTS_CHECK_COMPAT_H

#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Exit 77 (CTest skip) with a reason when /dev/kvm cannot be opened. */
static inline void vmm_test_require_kvm(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("SKIP: /dev/kvm is not available here\n");
        exit(77);
    }
    close(fd);
}

/* Scratch files live under $TMPDIR (else /tmp), never at fixed names: a test
 * may run where / is a network or 9p mount on which mkfifo or O_DIRECT fail,
 * with $TMPDIR pointing at a local file system. */
static inline const char *vmm_test_tmpdir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : "/tmp";
}

/* "dir/name" into buf (size bytes, PATH_MAX is always enough for a scratch
 * directory and a short name); fails the test rather than truncate. */
static inline char *vmm_test_path(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    ck_assert_msg(n >= 0 && (size_t)n < size, "path %s/%s does not fit in %zu bytes", dir, name,
                  size);
    return buf;
}

/* The template "<tmpdir>/<prefix>XXXXXX" for mkstemp or mkdtemp into buf. */
static inline char *vmm_test_tmpname(char *buf, size_t size, const char *prefix)
{
    int n = snprintf(buf, size, "%s/%sXXXXXX", vmm_test_tmpdir(), prefix);
    ck_assert_msg(n >= 0 && (size_t)n < size, "scratch name %s/%sXXXXXX does not fit in %zu bytes",
                  vmm_test_tmpdir(), prefix, size);
    return buf;
}

/* An anonymous scratch file opened "w+", already unlinked: tmpfile(3), but
 * under $TMPDIR like every other scratch file. */
static inline FILE *vmm_test_tmpfile(void)
{
    char path[PATH_MAX];
    int fd = mkstemp(vmm_test_tmpname(path, sizeof(path), "vmm-test-"));
    ck_assert_msg(fd >= 0, "mkstemp %s failed", path);
    unlink(path);
    FILE *f = fdopen(fd, "w+");
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Run one suite and exit with Check's verdict. Check keeps its own scratch
 * files in $TEMP (else /tmp): point it at the same directory. */
static inline int vmm_test_run_suite(Suite *s)
{
    if (getenv("TMPDIR"))
        setenv("TEMP", vmm_test_tmpdir(), 0);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
