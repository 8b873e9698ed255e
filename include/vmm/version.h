/* SPDX-License-Identifier: Apache-2.0 */
/* libvmm version numbers, at compile time and at run time. */
#ifndef VMM_VERSION_H
#define VMM_VERSION_H

#include <vmm/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMM_VERSION_MAJOR 0
#define VMM_VERSION_MINOR 1
#define VMM_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" of the library linked at run time; static storage. */
VMM_API const char *vmm_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VERSION_H */
