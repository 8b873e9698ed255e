/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the firmware-table builders of lib/loader (ACPI, MP table, device
 * tree): the checked view of a struct vmm_machine and little-endian stores. */
#ifndef VMM_LOADER_TABLES_H
#define VMM_LOADER_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmm/machine.h>

#define TABLES_DEFAULT_IOAPIC_PINS 24
#define TABLES_MIN_IOAPIC_PINS     16 /* the ISA IRQs map to GSIs 0-15 */
#define TABLES_MAX_IOAPIC_PINS     256
#define TABLES_SERIAL_PORTS        8 /* a 16550 decodes 8 ports */
#define TABLES_4G                  0x100000000ull
#define TABLES_VMGENID_SIZE        16 /* bytes of a VMGenID */

/* A machine with its defaults filled in, checked once for every builder. */
struct tables_machine {
    const struct vmm_machine *m; /* &copy once tables_machine_check is done */
    struct vmm_machine copy;     /* the caller's, zero-filled past its .size */
    unsigned nr_vcpus;
    uint64_t lapic_addr;
    uint64_t ioapic_addr;
    uint8_t ioapic_id; /* meaningful when nr_vcpus <= 255 or set explicitly */
    unsigned ioapic_pins;
};

/*
 * Check machine for a table that describes at most max_vcpus vCPUs and fill
 * out. virtio_below_4g: every virtio window must end at or below 4 GiB (ACPI
 * describes them with Memory32Fixed). Returns 0 or -EINVAL, with the reason
 * logged at debug level.
 */
int tables_machine_check(const struct vmm_machine *machine, unsigned max_vcpus,
                         bool virtio_below_4g, struct tables_machine *out);

/*
 * Copy a built table image s[0..len) into guest memory at addr and free s
 * (whatever happens). Returns len, -EFAULT when [addr, addr + len) is not
 * all guest RAM (nothing written), or what vmm_memory_write returns. what
 * names the table in the debug log.
 */
struct vmm_memory;
int tables_copy_in(struct vmm_memory *mem, uint64_t addr, uint8_t *s, int len, const char *what);

/* The byte that makes the bytes of p[0..len) sum to zero (mod 256), given
 * that the checksum byte itself is still zero. */
uint8_t tables_checksum(const uint8_t *p, size_t len);

static inline void tables_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void tables_put32(uint8_t *p, uint32_t v)
{
    tables_put16(p, (uint16_t)v);
    tables_put16(p + 2, (uint16_t)(v >> 16));
}

static inline void tables_put64(uint8_t *p, uint64_t v)
{
    tables_put32(p, (uint32_t)v);
    tables_put32(p + 4, (uint32_t)(v >> 32));
}

#endif /* VMM_LOADER_TABLES_H */
