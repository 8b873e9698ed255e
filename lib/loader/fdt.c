/* SPDX-License-Identifier: Apache-2.0 */
/* The flattened device tree of a machine (see fdt.h), written with libfdt's
 * sequential-write API; libfdt's error codes become -errno here. */
#include <errno.h>
#include <inttypes.h>
#include <libfdt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/fdt.h>

#include "tables.h"
#include "vmm_internal.h"

#define FDT_UART_CLOCK   1843200 /* the PC's 1.8432 MHz 16550 clock */
#define FDT_APIC_SIZE    0x1000
#define FDT_ISA_IO_SIZE  0x10000
#define FDT_INITIAL_SIZE 0x2000u
#define FDT_BUF_ALIGN    8 /* libfdt wants the blob 8-byte aligned */
#define FDT_NAME_MAX     48

/* libfdt's negative FDT_ERR_* collide with errno values: translate. */
static int fdt_errno(int err)
{
    return err == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
}

#define FDT_TRY(call)                                                                              \
    do {                                                                                           \
        int fdt_try_rc_ = (call);                                                                  \
        if (fdt_try_rc_ < 0)                                                                       \
            return fdt_errno(fdt_try_rc_);                                                         \
    } while (0)

/* A property of 32-bit cells. */
static int prop_cells(void *fdt, const char *name, const uint32_t *cells, unsigned n)
{
    fdt32_t be[8];
    for (unsigned i = 0; i < n; i++)
        be[i] = cpu_to_fdt32(cells[i]);
    return fdt_property(fdt, name, be, (int)(n * sizeof(be[0])));
}

/* reg = <base size> with two cells each. */
static int prop_reg64(void *fdt, uint64_t base, uint64_t size)
{
    uint32_t cells[4] = {(uint32_t)(base >> 32), (uint32_t)base, (uint32_t)(size >> 32),
                         (uint32_t)size};
    return prop_cells(fdt, "reg", cells, 4);
}

static int prop_irq(void *fdt, uint32_t gsi)
{
    uint32_t cells[2] = {gsi, VMM_FDT_IRQ_EDGE_RISING};
    return prop_cells(fdt, "interrupts", cells, 2);
}

static int add_chosen(void *fdt, const struct tables_machine *t, const struct vmm_fdt_params *p)
{
    char path[FDT_NAME_MAX];
    FDT_TRY(fdt_begin_node(fdt, "chosen"));
    if (p && p->cmdline && p->cmdline[0])
        FDT_TRY(fdt_property_string(fdt, "bootargs", p->cmdline));
    if (p && p->initrd_size) {
        FDT_TRY(fdt_property_u64(fdt, "linux,initrd-start", p->initrd_start));
        FDT_TRY(fdt_property_u64(fdt, "linux,initrd-end", p->initrd_start + p->initrd_size));
    }
    if (t->m->nr_serial) {
        snprintf(path, sizeof(path), "/isa@i0/serial@i%x", t->m->serial[0].port);
        FDT_TRY(fdt_property_string(fdt, "stdout-path", path));
    }
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

static int add_memory(void *fdt, const struct vmm_memory *mem)
{
    char name[FDT_NAME_MAX];
    unsigned n = vmm_memory_region_count(mem);
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) < 0)
            return -EINVAL;
        /* ROM is not RAM: e820 lists it as reserved, so no memory node. */
        if (info.flags & VMM_MEMORY_F_READONLY)
            continue;
        snprintf(name, sizeof(name), "memory@%" PRIx64, info.gpa);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "device_type", "memory"));
        FDT_TRY(prop_reg64(fdt, info.gpa, info.len));
        FDT_TRY(fdt_end_node(fdt));
    }
    return 0;
}

static int add_cpus(void *fdt, const struct tables_machine *t)
{
    char name[FDT_NAME_MAX];
    FDT_TRY(fdt_begin_node(fdt, "cpus"));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 1));
    FDT_TRY(fdt_property_u32(fdt, "#size-cells", 0));
    for (unsigned i = 0; i < t->nr_vcpus; i++) {
        snprintf(name, sizeof(name), "cpu@%x", i);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "device_type", "cpu"));
        FDT_TRY(fdt_property_u32(fdt, "reg", i)); /* the APIC id */
        FDT_TRY(fdt_end_node(fdt));
    }
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

static int add_apics(void *fdt, const struct tables_machine *t)
{
    char name[FDT_NAME_MAX];

    snprintf(name, sizeof(name), "interrupt-controller@%" PRIx64, t->lapic_addr);
    FDT_TRY(fdt_begin_node(fdt, name));
    FDT_TRY(fdt_property_string(fdt, "compatible", "intel,ce4100-lapic"));
    FDT_TRY(prop_reg64(fdt, t->lapic_addr, FDT_APIC_SIZE));
    /* No 8259s and no IMCR: the local APICs take ExtINT/NMI themselves. */
    FDT_TRY(fdt_property(fdt, "intel,virtual-wire-mode", NULL, 0));
    FDT_TRY(fdt_end_node(fdt));

    snprintf(name, sizeof(name), "interrupt-controller@%" PRIx64, t->ioapic_addr);
    FDT_TRY(fdt_begin_node(fdt, name));
    FDT_TRY(fdt_property_string(fdt, "compatible", "intel,ce4100-ioapic"));
    FDT_TRY(prop_reg64(fdt, t->ioapic_addr, FDT_APIC_SIZE));
    FDT_TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
    FDT_TRY(fdt_property_u32(fdt, "#interrupt-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 0));
    FDT_TRY(fdt_property_u32(fdt, "phandle", VMM_FDT_IOAPIC_PHANDLE));
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

/* Serial ports in I/O space, under an ISA bus whose I/O space maps 1:1 onto
 * root addresses 0..0xffff (see fdt.h). */
static int add_isa(void *fdt, const struct vmm_machine *m)
{
    char name[FDT_NAME_MAX];
    if (m->nr_serial == 0)
        return 0;
    FDT_TRY(fdt_begin_node(fdt, "isa@i0"));
    FDT_TRY(fdt_property_string(fdt, "compatible", "isa"));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "#size-cells", 1));
    uint32_t ranges[5] = {1, 0, 0, 0, FDT_ISA_IO_SIZE};
    FDT_TRY(prop_cells(fdt, "ranges", ranges, 5));
    for (unsigned i = 0; i < m->nr_serial; i++) {
        const struct vmm_machine_serial *s = &m->serial[i];
        snprintf(name, sizeof(name), "serial@i%x", s->port);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "compatible", "ns16550a"));
        uint32_t reg[3] = {1, s->port, TABLES_SERIAL_PORTS};
        FDT_TRY(prop_cells(fdt, "reg", reg, 3));
        FDT_TRY(fdt_property_u32(fdt, "clock-frequency", FDT_UART_CLOCK));
        FDT_TRY(prop_irq(fdt, s->gsi));
        FDT_TRY(fdt_end_node(fdt));
    }
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

static int add_virtio(void *fdt, const struct vmm_machine *m)
{
    char name[FDT_NAME_MAX];
    for (unsigned i = 0; i < m->nr_virtio; i++) {
        const struct vmm_machine_virtio *v = &m->virtio[i];
        snprintf(name, sizeof(name), "virtio_mmio@%" PRIx64, v->base);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "compatible", "virtio,mmio"));
        FDT_TRY(prop_reg64(fdt, v->base, v->size));
        FDT_TRY(prop_irq(fdt, v->gsi));
        FDT_TRY(fdt_property(fdt, "dma-coherent", NULL, 0));
        FDT_TRY(fdt_end_node(fdt));
    }
    return 0;
}

static int build_tree(void *fdt, int size, const struct tables_machine *t,
                      const struct vmm_fdt_params *p)
{
    const struct vmm_machine *m = t->m;
    int r;

    FDT_TRY(fdt_create(fdt, size));
    for (unsigned i = 0; i < m->nr_reserved; i++) {
        if (m->reserved[i].size)
            FDT_TRY(fdt_add_reservemap_entry(fdt, m->reserved[i].base, m->reserved[i].size));
    }
    FDT_TRY(fdt_finish_reservemap(fdt));
    FDT_TRY(fdt_begin_node(fdt, ""));
    static const char compatible[] = "linux,dummy-virt";
    FDT_TRY(fdt_property(fdt, "compatible", compatible, sizeof(compatible)));
    FDT_TRY(fdt_property_string(fdt, "model", "libvmm"));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "#size-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "interrupt-parent", VMM_FDT_IOAPIC_PHANDLE));
    if ((r = add_chosen(fdt, t, p)) < 0 || (r = add_memory(fdt, m->mem)) < 0 ||
        (r = add_cpus(fdt, t)) < 0 || (r = add_apics(fdt, t)) < 0 || (r = add_isa(fdt, m)) < 0 ||
        (r = add_virtio(fdt, m)) < 0)
        return r;
    FDT_TRY(fdt_end_node(fdt));
    FDT_TRY(fdt_finish(fdt));
    return (int)fdt_totalsize(fdt);
}

/* Everything that does not depend on the buffer. */
static int check(const struct vmm_machine *caller, const struct vmm_fdt_params *p,
                 struct tables_machine *t)
{
    int r = tables_machine_check(caller, VMM_FDT_MAX_VCPUS, false, t);
    if (r < 0)
        return r;
    const struct vmm_machine *machine = t->m; /* the checked copy */
    if (!machine->mem || vmm_memory_region_count(machine->mem) == 0) {
        vmm_log_debug("fdt: the machine has no memory");
        return -EINVAL;
    }
    if (p && p->cmdline && strnlen(p->cmdline, VMM_FDT_MAX_CMDLINE + 1) > VMM_FDT_MAX_CMDLINE) {
        vmm_log_debug("fdt: command line longer than %u bytes", VMM_FDT_MAX_CMDLINE);
        return -EINVAL;
    }
    if (p && p->initrd_size) {
        uint64_t end;
        if (__builtin_add_overflow(p->initrd_start, p->initrd_size, &end)) {
            vmm_log_debug("fdt: the initrd range wraps");
            return -EINVAL;
        }
        if (vmm_memory_check_range(machine->mem, p->initrd_start, p->initrd_size) != 0) {
            vmm_log_debug("fdt: initrd [0x%" PRIx64 ", 0x%" PRIx64 ") outside guest memory",
                          p->initrd_start, end);
            return -EFAULT;
        }
    }
    return 0;
}

/* The caller's params as a full, zero-filled copy (NULL: all defaults). */
static int params_in(const struct vmm_fdt_params *params, struct vmm_fdt_params *p)
{
    *p = VMM_INIT(struct vmm_fdt_params);
    return params ? VMM_ABI_COPY_IN(p, params) : 0;
}

int vmm_fdt_build(const struct vmm_machine *machine, const struct vmm_fdt_params *caller_params,
                  void *buf, size_t size)
{
    struct tables_machine t;
    struct vmm_fdt_params p;
    const struct vmm_fdt_params *params = &p;
    if (!buf || (uintptr_t)buf % FDT_BUF_ALIGN != 0 || params_in(caller_params, &p) < 0)
        return -EINVAL;
    int r = check(machine, params, &t);
    if (r < 0)
        return r;
    r = build_tree(buf, size > INT_MAX ? INT_MAX : (int)size, &t, params);
    if (r < 0)
        vmm_log_debug("fdt: building the tree failed: %d", r);
    return r;
}

int vmm_fdt_create(const struct vmm_machine *machine, const struct vmm_fdt_params *caller_params,
                   void **blob, size_t *size)
{
    struct tables_machine t;
    struct vmm_fdt_params p;
    const struct vmm_fdt_params *params = &p;
    if (!blob || !size)
        return -EINVAL;
    *blob = NULL;
    *size = 0;
    if (params_in(caller_params, &p) < 0)
        return -EINVAL;
    int r = check(machine, params, &t);
    if (r < 0)
        return r;

    size_t cap = FDT_INITIAL_SIZE;
    if (params && params->cmdline)
        cap += strlen(params->cmdline); /* bounded by check() */
    for (;;) {
        if (cap > VMM_FDT_MAX_SIZE)
            cap = VMM_FDT_MAX_SIZE;
        void *buf = malloc(cap); /* malloc's alignment is enough for libfdt */
        if (!buf)
            return -ENOMEM;
        r = build_tree(buf, (int)cap, &t, params);
        if (r >= 0) {
            void *fit = realloc(buf, (size_t)r);
            *blob = fit ? fit : buf;
            *size = (size_t)r;
            return 0;
        }
        free(buf);
        if (r != -ENOSPC || cap == VMM_FDT_MAX_SIZE)
            return r;
        cap *= 2;
    }
}

int vmm_fdt_write(struct vmm_memory *mem, vmm_gpa_t gpa, const void *fdt, size_t size)
{
    struct fdt_header hdr;
    if (!mem || !fdt || size < sizeof(hdr))
        return -EINVAL;
    /* Check an aligned copy of the header: the blob may sit anywhere. */
    memcpy(&hdr, fdt, sizeof(hdr));
    if (fdt_check_header(&hdr) != 0 || fdt_totalsize(&hdr) > size ||
        fdt_totalsize(&hdr) > INT_MAX) {
        vmm_log_debug("fdt: not a valid device tree of at most %zu bytes", size);
        return -EINVAL;
    }
    uint32_t total = fdt_totalsize(&hdr);
    if (vmm_memory_check_range(mem, gpa, total) != 0) {
        vmm_log_debug("fdt: [0x%" PRIx64 ", +0x%x) lies outside guest memory", gpa, total);
        return -EFAULT;
    }
    int r = vmm_memory_write(mem, gpa, fdt, total);
    return r < 0 ? r : (int)total;
}
