/* SPDX-License-Identifier: Apache-2.0 */
/* The Intel MultiProcessor Specification 1.4 table of an x86 machine (see
 * acpi.h): the floating pointer and the configuration table right after it,
 * laid out in a host buffer and copied into guest memory in one piece. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/acpi.h>

#include "tables.h"
#include "vmm_internal.h"

#define MP_SPEC_REV 4 /* 1.4 */

/* Floating pointer structure (MP spec 4.1). */
#define MPF_SIZE     16
#define MPF_PHYSPTR  4
#define MPF_LENGTH   8 /* in 16-byte units */
#define MPF_SPEC     9
#define MPF_CHECKSUM 10
#define MPF_FEATURE1 11 /* 0: a configuration table is present */
#define MPF_FEATURE2 12 /* bit 7 IMCRP clear: virtual-wire mode */

/* Configuration table header (4.2). */
#define MPC_HEADER_SIZE 44
#define MPC_LENGTH      4
#define MPC_SPEC        6
#define MPC_CHECKSUM    7
#define MPC_OEM_ID      8  /* 8 bytes */
#define MPC_PRODUCT_ID  16 /* 12 bytes */
#define MPC_ENTRY_COUNT 34
#define MPC_LAPIC_ADDR  36

/* Entries (4.3). */
#define MP_PROCESSOR  0 /* 20 bytes */
#define MP_BUS        1 /* 8 bytes each from here on */
#define MP_IOAPIC     2
#define MP_IOINTR     3
#define MP_LINTR      4
#define MP_PROC_SIZE  20
#define MP_ENTRY_SIZE 8

#define MP_CPU_ENABLED    0x01
#define MP_CPU_BSP        0x02
#define MP_LAPIC_VERSION  0x14 /* an integrated local APIC */
#define MP_IOAPIC_VERSION 0x11
#define MP_CPU_SIGNATURE  0x600 /* family 6 */
#define MP_CPU_FEATURES   0x201 /* FPU, APIC */

#define MP_INT           0 /* vectored interrupt */
#define MP_NMI           1
#define MP_EXTINT        3
#define MP_IRQ_HIGH_EDGE 0x5 /* polarity 01 active high, trigger 01 edge */
#define MP_ISA_BUS       0
#define MP_ALL_LAPICS    0xff

/* GSIs >= 16 that devices use, each once. */
struct mp_extra_gsis {
    uint8_t seen[TABLES_MAX_IOAPIC_PINS / 8];
    unsigned count;
};

static void note_gsi(struct mp_extra_gsis *g, uint32_t gsi)
{
    if (gsi < 16 || (g->seen[gsi / 8] & (1u << (gsi % 8))))
        return;
    g->seen[gsi / 8] |= (uint8_t)(1u << (gsi % 8));
    g->count++;
}

static uint8_t *entry8(uint8_t *p, uint8_t type, uint8_t b1, uint16_t w, uint8_t b4, uint8_t b5,
                       uint8_t b6, uint8_t b7)
{
    p[0] = type;
    p[1] = b1;
    tables_put16(p + 2, w);
    p[4] = b4;
    p[5] = b5;
    p[6] = b6;
    p[7] = b7;
    return p + MP_ENTRY_SIZE;
}

static void build(const struct tables_machine *t, const struct mp_extra_gsis *g, vmm_gpa_t addr,
                  uint8_t *s, size_t used, unsigned entries)
{
    uint8_t *mpc = s + MPF_SIZE;
    uint8_t *e = mpc + MPC_HEADER_SIZE;

    for (unsigned i = 0; i < t->nr_vcpus; i++, e += MP_PROC_SIZE) {
        e[0] = MP_PROCESSOR;
        e[1] = (uint8_t)i; /* local APIC id */
        e[2] = MP_LAPIC_VERSION;
        e[3] = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0);
        tables_put32(e + 4, MP_CPU_SIGNATURE);
        tables_put32(e + 8, MP_CPU_FEATURES);
    }
    e[0] = MP_BUS;
    e[1] = MP_ISA_BUS;
    memcpy(e + 2, "ISA   ", 6);
    e += MP_ENTRY_SIZE;

    e[0] = MP_IOAPIC;
    e[1] = t->ioapic_id;
    e[2] = MP_IOAPIC_VERSION;
    e[3] = 1; /* enabled */
    tables_put32(e + 4, (uint32_t)t->ioapic_addr);
    e += MP_ENTRY_SIZE;

    /* ISA IRQs with the bus's own (edge, active high) polarity and trigger.
     * IRQ 2 is the 8259 cascade, and its pin carries IRQ 0. */
    for (unsigned irq = 0; irq < 16; irq++) {
        if (irq == 2)
            continue;
        e = entry8(e, MP_IOINTR, MP_INT, 0, MP_ISA_BUS, (uint8_t)irq, t->ioapic_id,
                   (uint8_t)(irq == 0 ? 2 : irq));
    }
    for (unsigned gsi = 16; gsi < TABLES_MAX_IOAPIC_PINS; gsi++) {
        if (g->seen[gsi / 8] & (1u << (gsi % 8)))
            e = entry8(e, MP_IOINTR, MP_INT, MP_IRQ_HIGH_EDGE, MP_ISA_BUS, (uint8_t)gsi,
                       t->ioapic_id, (uint8_t)gsi);
    }
    e = entry8(e, MP_LINTR, MP_EXTINT, 0, MP_ISA_BUS, 0, MP_ALL_LAPICS, 0);
    entry8(e, MP_LINTR, MP_NMI, 0, MP_ISA_BUS, 0, MP_ALL_LAPICS, 1);

    size_t mpc_len = used - MPF_SIZE;
    memcpy(mpc, "PCMP", 4);
    tables_put16(mpc + MPC_LENGTH, (uint16_t)mpc_len);
    mpc[MPC_SPEC] = MP_SPEC_REV;
    memcpy(mpc + MPC_OEM_ID, VMM_ACPI_OEM_ID "  ", 8);
    memcpy(mpc + MPC_PRODUCT_ID, "MICROVM     ", 12);
    tables_put16(mpc + MPC_ENTRY_COUNT, (uint16_t)entries);
    tables_put32(mpc + MPC_LAPIC_ADDR, (uint32_t)t->lapic_addr);
    mpc[MPC_CHECKSUM] = tables_checksum(mpc, mpc_len);

    memcpy(s, "_MP_", 4);
    tables_put32(s + MPF_PHYSPTR, (uint32_t)(addr + MPF_SIZE));
    s[MPF_LENGTH] = 1;
    s[MPF_SPEC] = MP_SPEC_REV;
    s[MPF_FEATURE1] = 0;
    s[MPF_FEATURE2] = 0;
    s[MPF_CHECKSUM] = tables_checksum(s, MPF_SIZE);
}

/* Check and size the table; *used and *entries on success. */
static int plan(const struct vmm_machine *caller, vmm_gpa_t addr, uint64_t room,
                struct tables_machine *t, struct mp_extra_gsis *g, size_t *used, unsigned *entries)
{
    int r = tables_machine_check(caller, VMM_MPTABLE_MAX_VCPUS, false, t);
    if (r < 0)
        return r;
    const struct vmm_machine *machine = t->m; /* the checked copy */
    if (addr % 16 != 0) {
        vmm_log_debug("mptable: 0x%" PRIx64 " is not 16-byte aligned", addr);
        return -EINVAL;
    }
    memset(g, 0, sizeof(*g));
    for (unsigned i = 0; i < machine->nr_serial; i++)
        note_gsi(g, machine->serial[i].gsi);
    for (unsigned i = 0; i < machine->nr_virtio; i++)
        note_gsi(g, machine->virtio[i].gsi);

    /* processors, bus, IOAPIC, 15 ISA IRQs, device GSIs, 2 local interrupts */
    unsigned n8 = 1 + 1 + 15 + g->count + 2;
    size_t size = MPF_SIZE + MPC_HEADER_SIZE + (size_t)MP_PROC_SIZE * t->nr_vcpus +
                  (size_t)MP_ENTRY_SIZE * n8;
    /* Both pointers in the floating pointer and header are 32-bit. */
    if (addr >= TABLES_4G || size > TABLES_4G - addr) {
        vmm_log_debug("mptable: 0x%" PRIx64 " is past 4 GiB", addr);
        return -EINVAL;
    }
    if (size > room) {
        vmm_log_debug("mptable: %zu bytes do not fit in 0x%" PRIx64, size, room);
        return -ENOSPC;
    }
    *used = size;
    *entries = t->nr_vcpus + n8;
    return 0;
}

static int build_scratch(const struct vmm_machine *machine, vmm_gpa_t addr, uint64_t room,
                         uint8_t **out, struct vmm_mptable_result *res)
{
    struct tables_machine t;
    struct mp_extra_gsis g;
    size_t used;
    unsigned entries;
    int r = plan(machine, addr, room, &t, &g, &used, &entries);
    if (r < 0)
        return r;
    uint8_t *s = calloc(1, used);
    if (!s)
        return -ENOMEM;
    build(&t, &g, addr, s, used, entries);
    *out = s;
    *res = (struct vmm_mptable_result){
        .size = sizeof(struct vmm_mptable_result),
        .floating = addr,
        .table = addr + MPF_SIZE,
        .len = used,
        .entries = entries,
    };
    return (int)used;
}

int vmm_mptable_build(const struct vmm_machine *machine, vmm_gpa_t addr, void *buf, size_t size,
                      struct vmm_mptable_result *res)
{
    struct vmm_mptable_result tmp;
    uint8_t *s;
    if (!buf || (res && !VMM_ABI_OUT_OK(res)))
        return -EINVAL;
    int r = build_scratch(machine, addr, size, &s, &tmp);
    if (r < 0)
        return r;
    memcpy(buf, s, (size_t)r);
    free(s);
    if (res)
        VMM_ABI_COPY_OUT(res, &tmp);
    return r;
}

int vmm_mptable_write(struct vmm_memory *mem, const struct vmm_machine *machine,
                      const struct vmm_mptable_options *opts, struct vmm_mptable_result *res)
{
    struct vmm_mptable_options o = VMM_INIT(struct vmm_mptable_options);
    struct vmm_mptable_result tmp;
    uint8_t *s;

    if (!mem || !machine || (opts && VMM_ABI_COPY_IN(&o, opts) < 0) ||
        (res && !VMM_ABI_OUT_OK(res)))
        return -EINVAL;
    vmm_gpa_t addr = o.addr ? o.addr : VMM_X86_MPTABLE;
    vmm_gpa_t end = o.end ? o.end : VMM_X86_MPTABLE_END;
    if (addr >= end) {
        vmm_log_debug("mptable: empty range [0x%" PRIx64 ", 0x%" PRIx64 ")", addr, end);
        return -EINVAL;
    }
    int r = build_scratch(machine, addr, end - addr, &s, &tmp);
    if (r < 0)
        return r;
    r = tables_copy_in(mem, addr, s, r, "mptable");
    if (r < 0)
        return r;
    if (res)
        VMM_ABI_COPY_OUT(res, &tmp);
    return r;
}
