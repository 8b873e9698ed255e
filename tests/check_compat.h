/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by the Check suites. */
#ifndef VMM_TESTS_CHECK_COMPAT_H
#define VMM_TESTS_CHECK_COMPAT_H

#include <check.h>
#include <fcntl.h>
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

/* Run one suite and exit with Check's verdict. */
static inline int vmm_test_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
