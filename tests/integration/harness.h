/* SPDX-License-Identifier: Apache-2.0 */
/* A small fixture for integration tests: a VM with RAM, the platform devices
 * and a console captured through a pipe, running an ELF guest or raw code. */
#ifndef VMM_TESTS_HARNESS_H
#define VMM_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/vmm.h>

#define HARNESS_RAW_ENTRY 0x100000ull

struct harness {
    struct vmm_vm *vm;
    int console[2]; /* pipe: the UART writes console[1]; tests read console[0] */
    int input[2];   /* pipe: tests write input[1]; the UART reads input[0] */
    char output[8192];
    size_t output_len;
    struct vmm_exit exit;
};

/* Create a VM with mem_mb MiB of RAM at 0, COM1 wired to pipes, the exit
 * device and the i8042. Fails the test on error. */
void harness_init(struct harness *h, enum vmm_irqchip irqchip, unsigned mem_mb);
/* The same with the RAM backed as backing says. */
void harness_init_backed(struct harness *h, enum vmm_irqchip irqchip, unsigned mem_mb,
                         enum vmm_memory_backing backing);

/* Load guest programs: an ELF from the test guest directory, or raw bytes at
 * HARNESS_RAW_ENTRY. Then create vcpus vCPUs entering it. */
void harness_load_guest(struct harness *h, const char *name, unsigned vcpus);
void harness_load_raw(struct harness *h, const void *code, size_t len, unsigned vcpus);

/* Run to the end (vmm_vm_run) and collect the console output. */
void harness_run(struct harness *h);

/* Tear down (the fixture's fds and the VM). */
void harness_fini(struct harness *h);

/* Path of a test guest ELF (static buffer). */
const char *harness_guest_path(const char *name);

/* Write a minimal static ELF64 with code at HARNESS_RAW_ENTRY to path. */
void harness_write_raw_elf(const char *path, const void *code, size_t len);

#endif
