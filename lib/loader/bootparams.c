/* SPDX-License-Identifier: Apache-2.0 */
/* What Linux is told at entry: the e820 memory map, the zero page of the
 * 64-bit boot protocol and the PVH hvm_start_info. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "linux_internal.h"

/* The layouts are the kernel's ABI: pin every offset the loader writes. */
_Static_assert(sizeof(struct vmm_e820_entry) == 20, "e820 entry");
_Static_assert(sizeof(struct vmm_linux_setup_header) == 0x26c - 0x1f1, "setup header size");
_Static_assert(sizeof(struct vmm_linux_boot_params) == 4096, "zero page size");
#define ZP_AT(field, off)                                                                          \
    _Static_assert(offsetof(struct vmm_linux_boot_params, field) == (off), #field)
#define HDR_AT(field, off)                                                                         \
    _Static_assert(offsetof(struct vmm_linux_boot_params, hdr.field) == (off), "hdr." #field)
ZP_AT(acpi_rsdp_addr, 0x070);
ZP_AT(ext_ramdisk_image, 0x0c0);
ZP_AT(ext_ramdisk_size, 0x0c4);
ZP_AT(ext_cmd_line_ptr, 0x0c8);
ZP_AT(cc_blob_address, 0x13c);
ZP_AT(e820_entries, 0x1e8);
ZP_AT(sentinel, 0x1ef);
ZP_AT(hdr, 0x1f1);
ZP_AT(edd_mbr_sig_buffer, 0x290);
ZP_AT(e820_table, 0x2d0);
ZP_AT(eddbuf, 0xd00);
HDR_AT(setup_sects, 0x1f1);
HDR_AT(syssize, 0x1f4);
HDR_AT(boot_flag, 0x1fe);
HDR_AT(jump, 0x200);
HDR_AT(header, 0x202);
HDR_AT(version, 0x206);
HDR_AT(type_of_loader, 0x210);
HDR_AT(loadflags, 0x211);
HDR_AT(code32_start, 0x214);
HDR_AT(ramdisk_image, 0x218);
HDR_AT(ramdisk_size, 0x21c);
HDR_AT(heap_end_ptr, 0x224);
HDR_AT(cmd_line_ptr, 0x228);
HDR_AT(initrd_addr_max, 0x22c);
HDR_AT(kernel_alignment, 0x230);
HDR_AT(relocatable_kernel, 0x234);
HDR_AT(min_alignment, 0x235);
HDR_AT(xloadflags, 0x236);
HDR_AT(cmdline_size, 0x238);
HDR_AT(payload_offset, 0x248);
HDR_AT(payload_length, 0x24c);
HDR_AT(setup_data, 0x250);
HDR_AT(pref_address, 0x258);
HDR_AT(init_size, 0x260);
HDR_AT(kernel_info_offset, 0x268);
_Static_assert(sizeof(struct vmm_setup_data) == 16, "setup_data header");
_Static_assert(sizeof(struct vmm_hvm_start_info) == 0x38, "hvm_start_info size");
_Static_assert(offsetof(struct vmm_hvm_start_info, modlist_paddr) == 0x10, "modlist_paddr");
_Static_assert(offsetof(struct vmm_hvm_start_info, cmdline_paddr) == 0x18, "cmdline_paddr");
_Static_assert(offsetof(struct vmm_hvm_start_info, rsdp_paddr) == 0x20, "rsdp_paddr");
_Static_assert(offsetof(struct vmm_hvm_start_info, memmap_paddr) == 0x28, "memmap_paddr");
_Static_assert(offsetof(struct vmm_hvm_start_info, memmap_entries) == 0x30, "memmap_entries");
_Static_assert(sizeof(struct vmm_hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct vmm_hvm_memmap_entry) == 24, "hvm_memmap_table_entry");
_Static_assert(VMM_LINUX_PVH_MODLIST + sizeof(struct vmm_hvm_modlist_entry) <= VMM_X86_CMDLINE,
               "PVH module list overlaps the command line");
_Static_assert(VMM_X86_ZERO_PAGE + sizeof(struct vmm_linux_boot_params) <= VMM_X86_PVH_MEMMAP,
               "zero page overlaps the PVH memory map");

/* The heap end a 16-bit loader would give the setup code (boot.rst's
 * example layout). The 64-bit entry never runs the setup code, but the
 * flag and pointer are what every loader hands over. */
#define HEAP_END_PTR (0xfe00u - 0x200u)

/* ---- e820 ---- */

static int range_cmp(const void *a, const void *b)
{
    const struct vmm_range *x = a, *y = b;
    return x->base < y->base ? -1 : x->base > y->base;
}

static int e820_cmp(const void *a, const void *b)
{
    const struct vmm_e820_entry *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int vmm_e820_build(const struct vmm_machine *caller, struct vmm_e820_entry *out, unsigned max)
{
    struct vmm_machine copy;
    const struct vmm_machine *machine;
    if (vmm_machine_in(caller, &copy, &machine) < 0 || !machine || !machine->mem || (!out && max))
        return -EINVAL;
    const struct vmm_memory *mem = machine->mem;
    unsigned nregions = vmm_memory_region_count(mem);

    /* Reserved: the low firmware range, the machine's ranges, ROMs. */
    struct vmm_range *rsv = calloc(1 + VMM_MACHINE_MAX_RESERVED + nregions, sizeof(*rsv));
    struct vmm_range *runs = NULL;
    struct vmm_e820_entry *all = NULL;
    int r;
    if (!rsv)
        return -ENOMEM;
    unsigned nrsv = 0;
    rsv[nrsv++] = (struct vmm_range){VMM_X86_EBDA_START, VMM_X86_HIGH_MEMORY};
    r = vmm_loader_machine_reserved(machine, rsv + nrsv);
    if (r < 0)
        goto out;
    nrsv += (unsigned)r;
    for (unsigned i = 0; i < nregions; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) == 0 && info.len &&
            (info.flags & VMM_MEMORY_F_READONLY))
            rsv[nrsv++] = (struct vmm_range){info.gpa, info.gpa + info.len};
    }
    qsort(rsv, nrsv, sizeof(*rsv), range_cmp);
    unsigned m = 0;
    for (unsigned i = 0; i < nrsv; i++) {
        if (m > 0 && rsv[i].base <= rsv[m - 1].end) {
            if (rsv[i].end > rsv[m - 1].end)
                rsv[m - 1].end = rsv[i].end;
        } else {
            rsv[m++] = rsv[i];
        }
    }
    nrsv = m;

    int nruns = vmm_loader_ram_runs(mem, &runs);
    if (nruns < 0) {
        r = nruns;
        goto out;
    }
    /* Each reserved range splits at most one more RAM piece off a run. */
    unsigned cap = (unsigned)nruns + 2 * nrsv + 1;
    all = calloc(cap, sizeof(*all));
    if (!all) {
        r = -ENOMEM;
        goto out;
    }
    unsigned n = 0;
    for (int i = 0; i < nruns; i++) {
        uint64_t cur = runs[i].base;
        for (unsigned k = 0; k < nrsv && cur < runs[i].end; k++) {
            if (rsv[k].end <= cur || rsv[k].base >= runs[i].end)
                continue;
            if (rsv[k].base > cur)
                all[n++] = (struct vmm_e820_entry){cur, rsv[k].base - cur, VMM_E820_RAM};
            cur = rsv[k].end;
        }
        if (cur < runs[i].end)
            all[n++] = (struct vmm_e820_entry){cur, runs[i].end - cur, VMM_E820_RAM};
    }
    for (unsigned k = 0; k < nrsv; k++)
        all[n++] =
            (struct vmm_e820_entry){rsv[k].base, rsv[k].end - rsv[k].base, VMM_E820_RESERVED};
    qsort(all, n, sizeof(*all), e820_cmp);
    if (n > max) {
        r = -ENOSPC;
        goto out;
    }
    memcpy(out, all, n * sizeof(*all));
    r = (int)n;
out:
    free(rsv);
    free(runs);
    free(all);
    return r;
}

/* The machine to describe: the caller's, with mem filled in when it has none. */
static const struct vmm_machine *machine_or_default(const struct vmm_machine *machine,
                                                    const struct vmm_memory *mem,
                                                    struct vmm_machine *local)
{
    if (machine && machine->mem)
        return machine;
    if (machine)
        *local = *machine;
    else
        *local = VMM_INIT(struct vmm_machine);
    local->mem = mem;
    return local;
}

static int build_map(struct vmm_memory *mem, const struct vmm_machine *machine,
                     struct vmm_e820_entry *map, struct vmm_linux_boot *boot)
{
    if (machine && machine->mem && machine->mem != mem)
        return linux_fail(boot, -EINVAL,
                          "the machine describes other guest memory than the one given");
    struct vmm_machine local;
    int n = vmm_e820_build(machine_or_default(machine, mem, &local), map, VMM_E820_MAX);
    if (n == -ENOSPC)
        return linux_fail(boot, n, "the memory map needs more than %u entries", VMM_E820_MAX);
    if (n < 0)
        return linux_fail(boot, n, "cannot build the memory map: %s", vmm_strerror(n));
    return n;
}

/* ---- 64-bit boot protocol: the zero page ---- */

static int write_boot_params(struct vmm_memory *mem, const struct vmm_machine *machine,
                             struct vmm_linux_boot *boot)
{
    boot->error[0] = '\0';
    if (!mem)
        return linux_fail(boot, -EINVAL, "no guest memory given");

    struct vmm_linux_boot_params *zp = calloc(1, sizeof(*zp));
    if (!zp)
        return linux_fail(boot, -ENOMEM, "out of memory");
    struct vmm_linux_setup_header *h = &zp->hdr;
    if (boot->format == VMM_KERNEL_BZIMAGE) {
        /* The kernel's own header, then the loader's fields on top. */
        size_t len = boot->hdr_len < sizeof(*h) ? boot->hdr_len : sizeof(*h);
        memcpy(h, &boot->hdr, len);
        h->loadflags |= VMM_LINUX_CAN_USE_HEAP;
        h->heap_end_ptr = HEAP_END_PTR;
    } else {
        /* An ELF vmlinux has no header: give it the minimal one the 64-bit
         * entry reads. */
        h->boot_flag = VMM_LINUX_BOOT_FLAG;
        h->header = VMM_LINUX_HDR_MAGIC;
        h->version = 0x020f;
        h->loadflags = VMM_LINUX_LOADED_HIGH;
        h->cmdline_size = boot->cmdline_max ? boot->cmdline_max : VMM_X86_CMDLINE_MAX - 1;
        h->initrd_addr_max = boot->initrd_addr_max && boot->initrd_addr_max <= UINT32_MAX
                                 ? (uint32_t)boot->initrd_addr_max
                                 : UINT32_MAX;
    }
    h->type_of_loader = 0xff; /* undefined loader */
    if (boot->cmdline_addr) {
        h->cmd_line_ptr = (uint32_t)boot->cmdline_addr;
        zp->ext_cmd_line_ptr = (uint32_t)(boot->cmdline_addr >> 32);
    }
    if (boot->initrd_size) {
        h->ramdisk_image = (uint32_t)boot->initrd_addr;
        zp->ext_ramdisk_image = (uint32_t)(boot->initrd_addr >> 32);
        h->ramdisk_size = (uint32_t)boot->initrd_size;
        zp->ext_ramdisk_size = (uint32_t)(boot->initrd_size >> 32);
    }
    h->setup_data = boot->setup_data;
    /* acpi_rsdp_addr is read from protocol 2.14 on. */
    if (boot->rsdp_addr && (boot->format != VMM_KERNEL_BZIMAGE || boot->boot_version >= 0x020e))
        zp->acpi_rsdp_addr = boot->rsdp_addr;

    int r = build_map(mem, machine, zp->e820_table, boot);
    if (r >= 0) {
        zp->e820_entries = (uint8_t)r;
        r = vmm_memory_write(mem, VMM_X86_ZERO_PAGE, zp, sizeof(*zp));
        if (r < 0)
            linux_fail(boot, r, "cannot write the zero page at 0x%llx: %s", VMM_X86_ZERO_PAGE,
                       vmm_strerror(r));
    }
    free(zp);
    if (r < 0)
        return r;
    boot->params_addr = VMM_X86_ZERO_PAGE;
    return 0;
}

/* ---- PVH: hvm_start_info ---- */

static int write_pvh_start_info(struct vmm_memory *mem, const struct vmm_machine *machine,
                                struct vmm_linux_boot *boot)
{
    boot->error[0] = '\0';
    if (!mem)
        return linux_fail(boot, -EINVAL, "no guest memory given");

    struct vmm_e820_entry map[VMM_E820_MAX];
    int n = build_map(mem, machine, map, boot);
    if (n < 0)
        return n;
    struct vmm_hvm_memmap_entry memmap[VMM_E820_MAX];
    for (int i = 0; i < n; i++)
        memmap[i] = (struct vmm_hvm_memmap_entry){
            .addr = map[i].addr, .size = map[i].size, .type = map[i].type};

    struct vmm_hvm_start_info si = {
        .magic = VMM_HVM_START_MAGIC,
        .version = 1,
        .cmdline_paddr = boot->cmdline_addr,
        .rsdp_paddr = boot->rsdp_addr,
        .memmap_paddr = VMM_X86_PVH_MEMMAP,
        .memmap_entries = (uint32_t)n,
    };
    int r = vmm_memory_write(mem, VMM_X86_PVH_MEMMAP, memmap, (size_t)n * sizeof(memmap[0]));
    if (r == 0 && boot->initrd_size) {
        struct vmm_hvm_modlist_entry mod = {.paddr = boot->initrd_addr, .size = boot->initrd_size};
        r = vmm_memory_write(mem, VMM_LINUX_PVH_MODLIST, &mod, sizeof(mod));
        si.nr_modules = 1;
        si.modlist_paddr = VMM_LINUX_PVH_MODLIST;
    }
    if (r == 0)
        r = vmm_memory_write(mem, VMM_X86_PVH_INFO, &si, sizeof(si));
    if (r < 0)
        return linux_fail(boot, r, "cannot write the PVH start info at 0x%llx: %s",
                          VMM_X86_PVH_INFO, vmm_strerror(r));
    boot->params_addr = VMM_X86_PVH_INFO;
    return 0;
}

static int write_params(struct vmm_memory *mem, const struct vmm_machine *machine,
                        struct vmm_linux_boot *boot)
{
    switch (boot->protocol) {
    case VMM_LINUX_BOOT_64:
        return write_boot_params(mem, machine, boot);
    case VMM_LINUX_BOOT_PVH:
        return write_pvh_start_info(mem, machine, boot);
    default:
        return linux_fail(boot, -EINVAL, "no kernel loaded: nothing to describe");
    }
}

/* The public writers, under the growth convention (linux_internal.h). */
typedef int (*params_writer)(struct vmm_memory *, const struct vmm_machine *,
                             struct vmm_linux_boot *);

static int params_step(params_writer write, struct vmm_memory *mem,
                       const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_machine mc;
    const struct vmm_machine *m;
    if (linux_boot_in(&b, boot) < 0 || vmm_machine_in(machine, &mc, &m) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, write(mem, m, &b));
}

int vmm_linux_write_boot_params(struct vmm_memory *mem, const struct vmm_machine *machine,
                                struct vmm_linux_boot *boot)
{
    return params_step(write_boot_params, mem, machine, boot);
}

int vmm_linux_write_pvh_start_info(struct vmm_memory *mem, const struct vmm_machine *machine,
                                   struct vmm_linux_boot *boot)
{
    return params_step(write_pvh_start_info, mem, machine, boot);
}

int vmm_linux_write_params(struct vmm_memory *mem, const struct vmm_machine *machine,
                           struct vmm_linux_boot *boot)
{
    return params_step(write_params, mem, machine, boot);
}
