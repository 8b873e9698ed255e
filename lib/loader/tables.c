/* SPDX-License-Identifier: Apache-2.0 */
/* The checks every firmware-table builder applies to a struct vmm_machine
 * before describing it (see acpi.h and fdt.h for the contract). */
#include "tables.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <vmm/memory.h>

#include "loader_internal.h"
#include "vmm_internal.h"

static bool gsi_ok(const struct tables_machine *t, uint32_t gsi)
{
    /* GSI 2 carries ISA IRQ 0 (the timer) and GSI 0 is its legacy pin. */
    return gsi < t->ioapic_pins && gsi != 0 && gsi != 2;
}

int tables_machine_check(const struct vmm_machine *caller, unsigned max_vcpus, bool virtio_below_4g,
                         struct tables_machine *out)
{
    struct vmm_machine copy;
    const struct vmm_machine *machine;
    if (vmm_machine_in(caller, &copy, &machine) < 0 || !machine) {
        vmm_log_debug("tables: no machine, or a size this library does not know");
        return -EINVAL;
    }
    struct tables_machine t = {
        .m = machine,
        .nr_vcpus = machine->nr_vcpus ? machine->nr_vcpus : 1,
        .lapic_addr = machine->lapic_addr ? machine->lapic_addr : VMM_X86_LAPIC_ADDR,
        .ioapic_addr = machine->ioapic_addr ? machine->ioapic_addr : VMM_X86_IOAPIC_ADDR,
        .ioapic_pins = machine->ioapic_pins ? machine->ioapic_pins : TABLES_DEFAULT_IOAPIC_PINS,
    };
    t.ioapic_id = machine->ioapic_id ? machine->ioapic_id : (uint8_t)t.nr_vcpus;

    if (t.nr_vcpus > max_vcpus) {
        vmm_log_debug("tables: %u vCPUs, this table describes at most %u", t.nr_vcpus, max_vcpus);
        return -EINVAL;
    }
    /* The local APICs have ids 0..nr_vcpus - 1: an IOAPIC id given (0 means
     * the default, nr_vcpus) cannot be one of them. */
    if (machine->ioapic_id && machine->ioapic_id < t.nr_vcpus) {
        vmm_log_debug("tables: IOAPIC id %u is a local APIC id (below %u)", t.ioapic_id,
                      t.nr_vcpus);
        return -EINVAL;
    }
    /* Both APICs are described with 32-bit addresses (MADT, MP table). */
    if (t.lapic_addr >= TABLES_4G - 0x1000 || t.ioapic_addr >= TABLES_4G - 0x1000) {
        vmm_log_debug("tables: APIC address 0x%" PRIx64 "/0x%" PRIx64 " past 4 GiB", t.lapic_addr,
                      t.ioapic_addr);
        return -EINVAL;
    }
    if (t.ioapic_pins < TABLES_MIN_IOAPIC_PINS || t.ioapic_pins > TABLES_MAX_IOAPIC_PINS) {
        vmm_log_debug("tables: %u IOAPIC pins (want %u..%u)", t.ioapic_pins, TABLES_MIN_IOAPIC_PINS,
                      TABLES_MAX_IOAPIC_PINS);
        return -EINVAL;
    }
    if (machine->nr_serial > VMM_MACHINE_MAX_SERIAL ||
        machine->nr_virtio > VMM_MACHINE_MAX_VIRTIO ||
        machine->nr_reserved > VMM_MACHINE_MAX_RESERVED) {
        vmm_log_debug("tables: %u serial, %u virtio, %u reserved entries (at most %u, %u, %u)",
                      machine->nr_serial, machine->nr_virtio, machine->nr_reserved,
                      VMM_MACHINE_MAX_SERIAL, VMM_MACHINE_MAX_VIRTIO, VMM_MACHINE_MAX_RESERVED);
        return -EINVAL;
    }
    for (unsigned i = 0; i < machine->nr_serial; i++) {
        const struct vmm_machine_serial *s = &machine->serial[i];
        if (s->port == 0 || (uint32_t)s->port + TABLES_SERIAL_PORTS > 0x10000u ||
            !gsi_ok(&t, s->gsi)) {
            vmm_log_debug("tables: serial %u at port 0x%x, GSI %u is not usable", i, s->port,
                          s->gsi);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < machine->nr_virtio; i++) {
        const struct vmm_machine_virtio *v = &machine->virtio[i];
        uint64_t end;
        if (v->size == 0 || __builtin_add_overflow(v->base, v->size, &end) ||
            (virtio_below_4g && (end > TABLES_4G || v->size > UINT32_MAX)) || !gsi_ok(&t, v->gsi)) {
            vmm_log_debug("tables: virtio %u at 0x%" PRIx64 " + 0x%" PRIx64
                          ", GSI %u is not usable",
                          i, v->base, v->size, v->gsi);
            return -EINVAL;
        }
    }
    const struct vmm_machine_pci *pci = &machine->pci;
    if (pci->present) {
        bool ok = !(pci->ecam_base & 0xfffff) && pci->ecam_base < UINT64_MAX - 0xfffff &&
                  pci->mmio32_size && pci->mmio32_base + pci->mmio32_size <= TABLES_4G &&
                  pci->mmio32_base + pci->mmio32_size > pci->mmio32_base &&
                  pci->mmio64_base + pci->mmio64_size >= pci->mmio64_base &&
                  (uint64_t)pci->io_base + pci->io_size <= 0x10000u;
        for (unsigned i = 0; i < 4; i++)
            ok = ok && gsi_ok(&t, pci->intx_gsi[i]);
        if (!ok) {
            vmm_log_debug("tables: the PCI root complex's windows or INTx lines are not usable");
            return -EINVAL;
        }
    }
    if (machine->vmgenid_addr &&
        ((machine->vmgenid_addr & 7) || machine->vmgenid_addr > UINT64_MAX - TABLES_VMGENID_SIZE ||
         !gsi_ok(&t, machine->vmgenid_gsi))) {
        vmm_log_debug("tables: a VMGenID at 0x%" PRIx64 " (8-byte aligned), GSI %u is not usable",
                      machine->vmgenid_addr, machine->vmgenid_gsi);
        return -EINVAL;
    }
    struct vmm_range rsv[VMM_MACHINE_MAX_RESERVED];
    if (vmm_loader_machine_reserved(machine, rsv) < 0) {
        vmm_log_debug("tables: a reserved range wraps");
        return -EINVAL;
    }
    t.copy = copy;
    *out = t;
    out->m = &out->copy;
    return 0;
}

uint8_t tables_checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0u - sum);
}

int tables_copy_in(struct vmm_memory *mem, uint64_t addr, uint8_t *s, int len, const char *what)
{
    int r = len;
    if (vmm_memory_check_range(mem, addr, (uint64_t)len) != 0) {
        vmm_log_debug("%s: [0x%" PRIx64 ", +0x%x) lies outside guest memory", what, addr, len);
        r = -EFAULT;
    } else {
        int w = vmm_memory_write(mem, addr, s, (size_t)len);
        if (w < 0)
            r = w;
    }
    free(s);
    return r;
}
