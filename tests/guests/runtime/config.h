/* SPDX-License-Identifier: Apache-2.0 */
/* Layout constants shared by the guest runtime's assembly and C code. */
#ifndef GUEST_CONFIG_H
#define GUEST_CONFIG_H

/* vCPUs with an index at or past this only halt. */
#define GUEST_MAX_CPUS 64
/* 8 KiB stacks keep the image below the 2 MiB mempattern area. */
#define GUEST_STACK_SHIFT 13
#define GUEST_STACK_SIZE  (1 << GUEST_STACK_SHIFT)

#endif
