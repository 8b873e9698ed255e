/* SPDX-License-Identifier: Apache-2.0 */
/* The ACPI tables of an x86 machine (see acpi.h): RSDP, XSDT, a
 * hardware-reduced FADT, MADT and DSDT, laid out in one host buffer and then
 * copied into guest memory in one piece. Offsets follow ACPI 6.5 chapter 5. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/acpi.h>

#include "aml.h"
#include "tables.h"
#include "vmm_internal.h"

/* Room the scratch buffer gives the tables: far more than the largest
 * machine needs (255 vCPUs and 32 virtio devices take about 5 KiB). */
#define ACPI_SCRATCH_SIZE 0x10000u
#define ACPI_ALIGN        16u

/* Common header of every description table (5.2.6). */
#define SDT_HEADER_SIZE  36
#define SDT_LENGTH       4
#define SDT_REVISION     8
#define SDT_CHECKSUM     9
#define SDT_OEM_ID       10
#define SDT_OEM_TABLE_ID 16
#define SDT_OEM_REVISION 24
#define SDT_CREATOR_ID   28
#define SDT_CREATOR_REV  32

/* RSDP (5.2.5.3). */
#define RSDP_SIZE         36
#define RSDP_CHECKSUM     8
#define RSDP_OEM_ID       9
#define RSDP_REVISION     15
#define RSDP_RSDT         16
#define RSDP_LENGTH       20
#define RSDP_XSDT         24
#define RSDP_EXT_CHECKSUM 32
#define RSDP_V1_SIZE      20

/* FADT (5.2.9), revision 6. */
_Static_assert(VMM_MACHINE_MAX_SERIAL <= 9 && VMM_MACHINE_MAX_VIRTIO <= 100,
               "device names have one (COMn) or two (VRnn) digits");

#define FADT_SIZE           276
#define FADT_REVISION       6
#define FADT_MINOR_VERSION  5
#define FADT_CENTURY        108
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS          112
#define FADT_RESET_REG      116
#define FADT_RESET_VALUE    128
#define FADT_MINOR          131
#define FADT_X_DSDT         140
#define FADT_SLEEP_CONTROL  244
#define FADT_SLEEP_STATUS   256
#define FADT_HYPERVISOR_ID  268

#define FADT_F_RESET_REG_SUP   (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

#define IAPC_8042                 (1u << 1)
#define IAPC_VGA_NOT_PRESENT      (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED    (1u << 3)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* Generic Address Structure (5.2.3.2). */
#define GAS_SYSTEM_IO   1
#define GAS_ACCESS_BYTE 1

/* MADT (5.2.12). */
#define MADT_LAPIC_ADDR        36
#define MADT_FLAGS             40
#define MADT_HEADER_SIZE       44
#define MADT_LAPIC             0 /* Processor Local APIC, 8 bytes */
#define MADT_IOAPIC            1 /* I/O APIC, 12 bytes */
#define MADT_ISO               2 /* Interrupt Source Override, 10 bytes */
#define MADT_LAPIC_NMI         4 /* Local APIC NMI, 6 bytes */
#define MADT_LAPIC_ENABLED     1u
#define MPS_INTI_POLARITY_HIGH 0x1
#define MPS_INTI_TRIGGER_EDGE  0x4

#define DSDT_REVISION 2 /* 64-bit integers */

/* MCFG (PCI Firmware 3.2, 4.1.2): header, 8 reserved bytes, then one
 * 16-byte allocation per segment bus range. */
#define MCFG_SIZE     (SDT_HEADER_SIZE + 8 + 16)
#define MCFG_REVISION 1

static const char hypervisor_id[8] = "LIBVMM";

static size_t align_up(size_t v)
{
    return (v + ACPI_ALIGN - 1) & ~(size_t)(ACPI_ALIGN - 1);
}

static void sdt_header(uint8_t *t, const char sig[4], uint32_t length, uint8_t revision)
{
    char table_id[9];
    memcpy(t, sig, 4);
    tables_put32(t + SDT_LENGTH, length);
    t[SDT_REVISION] = revision;
    memcpy(t + SDT_OEM_ID, VMM_ACPI_OEM_ID, 6);
    snprintf(table_id, sizeof(table_id), "LVMM%.4s", sig);
    memcpy(t + SDT_OEM_TABLE_ID, table_id, 8);
    tables_put32(t + SDT_OEM_REVISION, 1);
    memcpy(t + SDT_CREATOR_ID, "LVMM", 4);
    tables_put32(t + SDT_CREATOR_REV, 1);
}

static void sdt_checksum(uint8_t *t, uint32_t length)
{
    t[SDT_CHECKSUM] = 0;
    t[SDT_CHECKSUM] = tables_checksum(t, length);
}

/* An 8-bit SystemIO register. */
static void gas_io8(uint8_t *g, uint16_t port)
{
    g[0] = GAS_SYSTEM_IO;
    g[1] = 8; /* bit width */
    g[2] = 0; /* bit offset */
    g[3] = GAS_ACCESS_BYTE;
    tables_put64(g + 4, port);
}

static size_t build_fadt(const struct tables_machine *t, uint8_t *f, uint64_t dsdt)
{
    const struct vmm_machine *m = t->m;
    uint32_t flags = FADT_F_HW_REDUCED_ACPI;
    uint16_t boot_arch = IAPC_VGA_NOT_PRESENT;

    /* MSIs exist where PCI does (its MSI-X); without it nothing sends one. */
    if (!m->pci.present)
        boot_arch |= IAPC_MSI_NOT_SUPPORTED;

    if (m->i8042)
        boot_arch |= IAPC_8042;
    if (!m->rtc)
        boot_arch |= IAPC_CMOS_RTC_NOT_PRESENT;
    if (m->rtc)
        f[FADT_CENTURY] = VMM_ACPI_RTC_CENTURY;
    if (m->acpi_pm) {
        flags |= FADT_F_RESET_REG_SUP;
        gas_io8(f + FADT_RESET_REG, VMM_ACPI_RESET_PORT);
        f[FADT_RESET_VALUE] = VMM_ACPI_RESET_VALUE;
        gas_io8(f + FADT_SLEEP_CONTROL, VMM_ACPI_SLEEP_PORT);
        gas_io8(f + FADT_SLEEP_STATUS, VMM_ACPI_SLEEP_PORT);
    }
    sdt_header(f, "FACP", FADT_SIZE, FADT_REVISION);
    tables_put16(f + FADT_IAPC_BOOT_ARCH, boot_arch);
    tables_put32(f + FADT_FLAGS, flags);
    f[FADT_MINOR] = FADT_MINOR_VERSION;
    /* Only the 64-bit pointer: the spec wants DSDT zero when X_DSDT is used. */
    tables_put64(f + FADT_X_DSDT, dsdt);
    memcpy(f + FADT_HYPERVISOR_ID, hypervisor_id, sizeof(hypervisor_id));
    sdt_checksum(f, FADT_SIZE);
    return FADT_SIZE;
}

static size_t madt_size(const struct tables_machine *t)
{
    return MADT_HEADER_SIZE + 8u * t->nr_vcpus + 12 + 10 + 6;
}

static size_t build_madt(const struct tables_machine *t, uint8_t *p)
{
    size_t off = MADT_HEADER_SIZE;

    tables_put32(p + MADT_LAPIC_ADDR, (uint32_t)t->lapic_addr);
    tables_put32(p + MADT_FLAGS, 0); /* no PCAT_COMPAT: there are no 8259s */
    for (unsigned i = 0; i < t->nr_vcpus; i++, off += 8) {
        uint8_t *e = p + off;
        e[0] = MADT_LAPIC;
        e[1] = 8;
        e[2] = (uint8_t)i; /* ACPI processor UID */
        e[3] = (uint8_t)i; /* APIC id */
        tables_put32(e + 4, MADT_LAPIC_ENABLED);
    }
    uint8_t *io = p + off;
    io[0] = MADT_IOAPIC;
    io[1] = 12;
    io[2] = t->ioapic_id;
    tables_put32(io + 4, (uint32_t)t->ioapic_addr);
    tables_put32(io + 8, 0); /* GSI base */
    off += 12;

    /* ISA IRQ 0 (the PIT) arrives on GSI 2, edge-triggered, active high. */
    uint8_t *iso = p + off;
    iso[0] = MADT_ISO;
    iso[1] = 10;
    iso[2] = 0; /* bus: ISA */
    iso[3] = 0; /* source IRQ */
    tables_put32(iso + 4, 2);
    tables_put16(iso + 8, MPS_INTI_POLARITY_HIGH | MPS_INTI_TRIGGER_EDGE);
    off += 10;

    /* NMI on LINT1 of every processor (UID 0xff), as the MP table says. */
    uint8_t *nmi = p + off;
    nmi[0] = MADT_LAPIC_NMI;
    nmi[1] = 6;
    nmi[2] = 0xff;
    tables_put16(nmi + 3, 0); /* conforming polarity and trigger */
    nmi[5] = 1;               /* LINT1 */
    off += 6;

    sdt_header(p, "APIC", (uint32_t)off, 5);
    sdt_checksum(p, (uint32_t)off);
    return off;
}

static void resource_name(struct aml *a, const char *name)
{
    aml_name(a, name);
    aml_resource_template_begin(a);
}

static void dsdt_serial(struct aml *a, unsigned i, const struct vmm_machine_serial *s)
{
    /* i < VMM_MACHINE_MAX_SERIAL (checked): one digit. */
    const char name[5] = {'C', 'O', 'M', (char)('1' + i), '\0'};
    aml_device_begin(a, name);
    aml_name(a, "_HID");
    aml_eisaid(a, "PNP0501");
    aml_name(a, "_UID");
    aml_integer(a, i + 1);
    resource_name(a, "_CRS");
    aml_io(a, s->port, TABLES_SERIAL_PORTS);
    if (s->gsi < 16)
        aml_irq_noflags(a, s->gsi);
    else
        aml_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, s->gsi);
    aml_end(a); /* ResourceTemplate */
    aml_end(a); /* Device */
}

static void dsdt_virtio(struct aml *a, unsigned i, const struct vmm_machine_virtio *v)
{
    /* i < VMM_MACHINE_MAX_VIRTIO (checked): two digits. */
    const char name[5] = {'V', 'R', (char)('0' + i / 10), (char)('0' + i % 10), '\0'};
    aml_device_begin(a, name);
    aml_name(a, "_HID");
    aml_string(a, "LNRO0005"); /* drivers/virtio/virtio_mmio.c */
    aml_name(a, "_UID");
    aml_integer(a, i);
    resource_name(a, "_CRS");
    aml_memory32_fixed(a, true, (uint32_t)v->base, (uint32_t)v->size);
    aml_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, v->gsi);
    aml_end(a);
    aml_end(a);
}

static size_t build_mcfg(const struct vmm_machine_pci *pci, uint8_t *p)
{
    uint8_t *e = p + SDT_HEADER_SIZE + 8;
    tables_put64(e, pci->ecam_base);
    tables_put16(e + 8, 0); /* segment */
    e[10] = 0;              /* start bus */
    e[11] = 0;              /* end bus: the ECAM covers bus 0 */
    sdt_header(p, "MCFG", MCFG_SIZE, MCFG_REVISION);
    sdt_checksum(p, MCFG_SIZE);
    return MCFG_SIZE;
}

/* The PCI host bridge: PNP0A08 (PCI Express) compatible with PNP0A03, its
 * bus range and windows in _CRS, INTA..INTD of each slot in _PRT (global
 * GSIs, level-triggered active-low by ACPI's rule for _PRT without link
 * devices), and the ECAM range reserved as a motherboard resource. */
static void dsdt_pci(struct aml *a, const struct vmm_machine_pci *pci)
{
    aml_device_begin(a, "PCI0");
    aml_name(a, "_HID");
    aml_eisaid(a, "PNP0A08");
    aml_name(a, "_CID");
    aml_eisaid(a, "PNP0A03");
    aml_name(a, "_SEG");
    aml_integer(a, 0);
    aml_name(a, "_BBN");
    aml_integer(a, 0);
    aml_name(a, "_UID");
    aml_integer(a, 0);
    resource_name(a, "_CRS");
    aml_word_bus_number(a, 0, 1);
    aml_io(a, 0xcf8, 8);
    if (pci->io_size)
        aml_word_io(a, (uint16_t)pci->io_base, pci->io_size);
    aml_dword_memory(a, (uint32_t)pci->mmio32_base, pci->mmio32_size);
    if (pci->mmio64_size)
        aml_qword_memory(a, pci->mmio64_base, pci->mmio64_size);
    aml_end(a); /* ResourceTemplate */
    /* Slot 0 is the host bridge: slots 1..31, four pins each. */
    aml_name(a, "_PRT");
    aml_package_begin(a, 31 * 4);
    for (unsigned slot = 1; slot < 32; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            aml_package_begin(a, 4);
            aml_integer(a, (uint64_t)slot << 16 | 0xffff);
            aml_integer(a, pin);
            aml_integer(a, 0);
            aml_integer(a, pci->intx_gsi[(slot + pin) % 4]);
            aml_end(a);
        }
    }
    aml_end(a); /* _PRT */
    aml_end(a); /* PCI0 */

    aml_device_begin(a, "RES0");
    aml_name(a, "_HID");
    aml_eisaid(a, "PNP0C02");
    resource_name(a, "_CRS");
    aml_qword_memory(a, pci->ecam_base, 1u << 20);
    aml_end(a);
    aml_end(a);
}

/* The VM generation ID (Microsoft's "Virtual Machine Generation ID", read
 * by Linux's vmgenid driver through its _CID) and the Generic Event Device
 * (ACPI0013, 5.6.9) whose interrupt has it notified (0x80) when the ID
 * changed, e.g. after a restore. The _HID is the library's own: the driver
 * matches the _CID. */
static void dsdt_vmgenid(struct aml *a, uint64_t addr, uint32_t gsi)
{
    aml_device_begin(a, "VGEN");
    aml_name(a, "_HID");
    aml_string(a, "LVMM0001");
    aml_name(a, "_CID");
    aml_string(a, "VM_GEN_COUNTER");
    aml_name(a, "_DDN");
    aml_string(a, "VM_Gen_Counter");
    /* ADDR: the ID's address, low then high 32 bits. */
    aml_name(a, "ADDR");
    aml_package_begin(a, 2);
    aml_integer(a, (uint32_t)addr);
    aml_integer(a, addr >> 32);
    aml_end(a);
    aml_end(a); /* VGEN */

    aml_device_begin(a, "GED0");
    aml_name(a, "_HID");
    aml_string(a, "ACPI0013");
    aml_name(a, "_UID");
    aml_integer(a, 0);
    resource_name(a, "_CRS");
    aml_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, gsi);
    aml_end(a);
    /* The GED calls _EVT with the GSI that fired. */
    aml_method_begin(a, "_EVT", 1, true);
    aml_if_begin(a);
    aml_lequal(a);
    aml_arg(a, 0);
    aml_integer(a, gsi);
    aml_notify(a, "VGEN", 0x80);
    aml_end(a); /* If */
    aml_end(a); /* _EVT */
    aml_end(a); /* GED0 */
}

/* The DSDT into p[0..cap). Returns its length or -ENOSPC/-EINVAL. */
static int build_dsdt(const struct tables_machine *t, uint8_t *p, size_t cap)
{
    const struct vmm_machine *m = t->m;
    struct aml a;

    if (cap < SDT_HEADER_SIZE)
        return -ENOSPC;
    aml_init(&a, p + SDT_HEADER_SIZE, cap - SDT_HEADER_SIZE);
    aml_scope_begin(&a, "\\_SB_");
    for (unsigned i = 0; i < m->nr_serial; i++)
        dsdt_serial(&a, i, &m->serial[i]);
    if (m->rtc) {
        aml_device_begin(&a, "RTC_");
        aml_name(&a, "_HID");
        aml_eisaid(&a, "PNP0B00");
        resource_name(&a, "_CRS");
        aml_io(&a, 0x70, 2);
        aml_end(&a);
        aml_end(&a);
    }
    if (m->i8042) {
        aml_device_begin(&a, "PS2K");
        aml_name(&a, "_HID");
        aml_eisaid(&a, "PNP0303");
        resource_name(&a, "_CRS");
        aml_io(&a, 0x60, 1);
        aml_io(&a, 0x64, 1);
        aml_irq_noflags(&a, 1);
        aml_end(&a);
        aml_end(&a);
    }
    for (unsigned i = 0; i < m->nr_virtio; i++)
        dsdt_virtio(&a, i, &m->virtio[i]);
    if (m->pci.present)
        dsdt_pci(&a, &m->pci);
    if (m->vmgenid_addr)
        dsdt_vmgenid(&a, m->vmgenid_addr, m->vmgenid_gsi);
    aml_end(&a); /* \_SB_ */
    if (m->acpi_pm) {
        /* SLP_TYPa, SLP_TYPb, reserved, reserved */
        aml_name(&a, "\\_S5_");
        aml_package_begin(&a, 4);
        aml_integer(&a, VMM_ACPI_S5_TYPE);
        aml_integer(&a, 0);
        aml_integer(&a, 0);
        aml_integer(&a, 0);
        aml_end(&a);
    }
    int n = aml_finish(&a);
    if (n < 0)
        return n;
    uint32_t length = (uint32_t)(SDT_HEADER_SIZE + (size_t)n);
    sdt_header(p, "DSDT", length, DSDT_REVISION);
    sdt_checksum(p, length);
    return (int)length;
}

/* Lay the tables out in scratch[0..cap) as they will lie at addr. */
static int build(const struct tables_machine *t, vmm_gpa_t addr, uint8_t *s, size_t cap,
                 struct vmm_acpi_result *res)
{
    bool pci = t->m->pci.present;
    size_t xsdt = align_up(RSDP_SIZE);
    size_t xsdt_len = SDT_HEADER_SIZE + (pci ? 3 : 2) * 8;
    size_t fadt = align_up(xsdt + xsdt_len);
    size_t madt = align_up(fadt + FADT_SIZE);
    size_t mcfg = align_up(madt + madt_size(t));
    size_t dsdt = align_up(mcfg + (pci ? MCFG_SIZE : 0));

    if (dsdt > cap)
        return -ENOSPC;
    int dsdt_len = build_dsdt(t, s + dsdt, cap - dsdt);
    if (dsdt_len < 0)
        return dsdt_len;
    build_madt(t, s + madt);
    if (pci)
        build_mcfg(&t->m->pci, s + mcfg);
    build_fadt(t, s + fadt, addr + dsdt);

    sdt_header(s + xsdt, "XSDT", (uint32_t)xsdt_len, 1);
    tables_put64(s + xsdt + SDT_HEADER_SIZE, addr + fadt);
    tables_put64(s + xsdt + SDT_HEADER_SIZE + 8, addr + madt);
    if (pci)
        tables_put64(s + xsdt + SDT_HEADER_SIZE + 16, addr + mcfg);
    sdt_checksum(s + xsdt, (uint32_t)xsdt_len);

    memcpy(s, "RSD PTR ", 8);
    memcpy(s + RSDP_OEM_ID, VMM_ACPI_OEM_ID, 6);
    s[RSDP_REVISION] = 2;
    tables_put32(s + RSDP_RSDT, 0); /* no RSDT: the XSDT is the one */
    tables_put32(s + RSDP_LENGTH, RSDP_SIZE);
    tables_put64(s + RSDP_XSDT, addr + xsdt);
    s[RSDP_CHECKSUM] = tables_checksum(s, RSDP_V1_SIZE);
    s[RSDP_EXT_CHECKSUM] = tables_checksum(s, RSDP_SIZE);

    size_t used = dsdt + (size_t)dsdt_len;
    if (res) {
        *res = (struct vmm_acpi_result){
            .size = sizeof(struct vmm_acpi_result),
            .rsdp = addr,
            .xsdt = addr + xsdt,
            .fadt = addr + fadt,
            .madt = addr + madt,
            .dsdt = addr + dsdt,
            .len = used,
            .mcfg = pci ? addr + mcfg : 0,
        };
    }
    return (int)used;
}

/* Check everything, then build into a zeroed scratch buffer of at most size
 * bytes; *out gets the buffer (free it) on success. */
static int build_scratch(const struct vmm_machine *machine, vmm_gpa_t addr, uint64_t size,
                         uint8_t **out, struct vmm_acpi_result *res)
{
    struct tables_machine t;
    int r = tables_machine_check(machine, VMM_ACPI_MAX_VCPUS, true, &t);
    if (r < 0)
        return r;
    /* The XSDT could point higher, but firmware tables live in low memory. */
    if (addr % ACPI_ALIGN != 0 || addr >= TABLES_4G) {
        vmm_log_debug("acpi: tables at 0x%" PRIx64 " (want 16-byte aligned, below 4 GiB)", addr);
        return -EINVAL;
    }
    size_t cap = size < ACPI_SCRATCH_SIZE ? (size_t)size : ACPI_SCRATCH_SIZE;
    uint8_t *s = calloc(1, cap ? cap : 1);
    if (!s)
        return -ENOMEM;
    struct vmm_acpi_result tmp;
    r = build(&t, addr, s, cap, &tmp);
    if (r >= 0 && addr + (uint64_t)r > TABLES_4G)
        r = -EINVAL;
    /* The tables would hide the VMGenID, or it them. */
    uint64_t genid = t.m->vmgenid_addr;
    if (r >= 0 && genid && genid < addr + (uint64_t)r && genid + TABLES_VMGENID_SIZE > addr)
        r = -EINVAL;
    if (r < 0) {
        vmm_log_debug("acpi: the tables do not fit in [0x%" PRIx64 ", +0x%" PRIx64 "): %d", addr,
                      size, r);
        free(s);
        return r;
    }
    if (res)
        *res = tmp;
    *out = s;
    return r;
}

int vmm_acpi_build(const struct vmm_machine *machine, vmm_gpa_t addr, void *buf, size_t size,
                   struct vmm_acpi_result *res)
{
    struct vmm_acpi_result tmp;
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

int vmm_acpi_write(struct vmm_memory *mem, const struct vmm_machine *machine,
                   const struct vmm_acpi_options *opts, struct vmm_acpi_result *res)
{
    struct vmm_acpi_options o = VMM_INIT(struct vmm_acpi_options);
    struct vmm_acpi_result tmp;
    uint8_t *s;

    if (!mem || !machine || (opts && VMM_ABI_COPY_IN(&o, opts) < 0) ||
        (res && !VMM_ABI_OUT_OK(res)))
        return -EINVAL;
    vmm_gpa_t addr = o.addr ? o.addr : VMM_X86_ACPI_TABLES;
    vmm_gpa_t end = o.end ? o.end : VMM_X86_ACPI_TABLES_END;
    if (addr >= end) {
        vmm_log_debug("acpi: empty table range [0x%" PRIx64 ", 0x%" PRIx64 ")", addr, end);
        return -EINVAL;
    }
    int r = build_scratch(machine, addr, end - addr, &s, &tmp);
    if (r < 0)
        return r;
    r = tables_copy_in(mem, addr, s, r, "acpi");
    if (r < 0)
        return r;
    if (res)
        VMM_ABI_COPY_OUT(res, &tmp);
    return r;
}
