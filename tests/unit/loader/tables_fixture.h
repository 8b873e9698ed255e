/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the firmware-table suites: a malloc-backed guest RAM filled with
 * a canary, a typical machine, and little-endian readers. */
#ifndef VMM_TESTS_TABLES_FIXTURE_H
#define VMM_TESTS_TABLES_FIXTURE_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/machine.h>
#include <vmm/memory.h>

#define FX_RAM_SIZE (2u << 20)
#define FX_CANARY   0xa5

struct fixture {
    struct vmm_memory *mem;
    unsigned char *ram;
    size_t ram_size;
};

/* Guest RAM [0, size) in one region over a canary-filled buffer. */
static inline void fx_init(struct fixture *fx, size_t size)
{
    fx->ram_size = size;
    fx->ram = malloc(size);
    ck_assert_ptr_nonnull(fx->ram);
    memset(fx->ram, FX_CANARY, size);
    ck_assert_int_eq(vmm_memory_create(&fx->mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(fx->mem, 0, size, fx->ram), 0);
}

static inline void fx_fini(struct fixture *fx)
{
    vmm_memory_destroy(fx->mem);
    free(fx->ram);
    memset(fx, 0, sizeof(*fx));
}

/* Every byte outside [lo, hi) still holds the canary. */
static inline bool fx_untouched_outside(const struct fixture *fx, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < fx->ram_size; i++)
        if ((i < lo || i >= hi) && fx->ram[i] != FX_CANARY)
            return false;
    return true;
}

static inline bool fx_untouched(const struct fixture *fx)
{
    return fx_untouched_outside(fx, 0, 0);
}

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline uint8_t byte_sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* n bytes of needle somewhere in hay[0..len). */
static inline bool contains(const uint8_t *hay, size_t len, const void *needle, size_t n)
{
    return n <= len && memmem(hay, len, needle, n) != NULL;
}

/*
 * A typical machine: vcpus vCPUs, COM1 (0x3f8, GSI 4) and COM2 (0x2f8,
 * GSI 3), three virtio-mmio devices at VMM_X86_VIRTIO_MMIO_BASE (GSIs 5, 6
 * and 16), the ACPI PM ports, an RTC and an i8042.
 */
static inline struct vmm_machine fx_machine(const struct vmm_memory *mem, unsigned vcpus)
{
    struct vmm_machine m = {
        .size = sizeof(struct vmm_machine),
        .nr_vcpus = vcpus,
        .mem = mem,
        .nr_serial = 2,
        .serial = {{.port = 0x3f8, .gsi = 4}, {.port = 0x2f8, .gsi = 3}},
        .nr_virtio = 3,
        .acpi_pm = true,
        .rtc = true,
        .i8042 = true,
    };
    static const uint32_t gsis[3] = {5, 6, 16};
    for (unsigned i = 0; i < 3; i++) {
        m.virtio[i].base = VMM_X86_VIRTIO_MMIO_BASE + i * VMM_X86_VIRTIO_MMIO_SIZE;
        m.virtio[i].size = VMM_X86_VIRTIO_MMIO_SIZE;
        m.virtio[i].gsi = gsis[i];
    }
    return m;
}

#endif
