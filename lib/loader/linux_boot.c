/* SPDX-License-Identifier: Apache-2.0 */
/* The Linux boot steps after the kernel: initrd placement, the command line,
 * setup_data, the entry description, and the one-call vmm_linux_boot_setup. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "linux_internal.h"

#define PAGE_SIZE 0x1000ull

int linux_find_overlap(uint64_t base, uint64_t end, const struct vmm_range *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (vmm_range_overlaps(base, end, &r[i]))
            return (int)i;
    return -1;
}

/* Lowest fit in one run: each step moves past an avoided range, so the walk
 * ends after at most navoid + 1 steps. */
static bool place_low(const struct vmm_range *run, const struct linux_place *q, uint64_t *addr)
{
    uint64_t a = run->base > q->lo ? run->base : q->lo;
    uint64_t top = run->end < q->hi ? run->end : q->hi;
    for (unsigned step = 0; step <= q->navoid; step++) {
        uint64_t end;
        if (__builtin_add_overflow(a, q->align - 1, &a))
            return false;
        a &= ~(q->align - 1);
        if (__builtin_add_overflow(a, q->size, &end) || end > top)
            return false;
        int k = linux_find_overlap(a, end, q->avoid, q->navoid);
        if (k < 0) {
            *addr = a;
            return true;
        }
        a = q->avoid[k].end;
    }
    return false;
}

/* Highest fit in one run, symmetrically: each step moves below an avoided
 * range. */
static bool place_high(const struct vmm_range *run, const struct linux_place *q, uint64_t *addr)
{
    uint64_t bottom = run->base > q->lo ? run->base : q->lo;
    uint64_t top = run->end < q->hi ? run->end : q->hi;
    for (unsigned step = 0; step <= q->navoid; step++) {
        if (top < q->size)
            return false;
        uint64_t a = (top - q->size) & ~(q->align - 1);
        if (a < bottom)
            return false;
        int k = linux_find_overlap(a, a + q->size, q->avoid, q->navoid);
        if (k < 0) {
            *addr = a;
            return true;
        }
        top = q->avoid[k].base;
    }
    return false;
}

int linux_place(const struct vmm_memory *mem, const struct linux_place *req, uint64_t *addr)
{
    struct vmm_range *runs;
    int n = vmm_loader_ram_runs(mem, &runs);
    if (n < 0)
        return n;
    int r = -ENOSPC;
    if (req->size == 0 || req->lo >= req->hi) {
        free(runs);
        return r;
    }
    for (int i = 0; i < n; i++) {
        const struct vmm_range *run = &runs[req->highest ? n - 1 - i : i];
        bool ok = req->highest ? place_high(run, req, addr) : place_low(run, req, addr);
        if (ok) {
            r = 0;
            break;
        }
    }
    free(runs);
    return r;
}

/* ---- initrd ---- */

static int load_initrd(struct vmm_memory *mem, const struct vmm_image *im,
                       const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    boot->error[0] = '\0';
    uint64_t max = boot->initrd_addr_max ? boot->initrd_addr_max : 0xffffffffull;
    uint64_t hi = max == UINT64_MAX ? UINT64_MAX : max + 1;

    struct vmm_range avoid[VMM_MACHINE_MAX_RESERVED + 1];
    int n = vmm_loader_machine_reserved(machine, avoid);
    if (n < 0)
        return linux_fail(boot, -EINVAL, "machine has a malformed reserved range");
    if (boot->kernel_high > boot->kernel_low)
        avoid[n++] = (struct vmm_range){boot->kernel_low, boot->kernel_high};

    struct linux_place req = {.size = im->size,
                              .align = PAGE_SIZE,
                              .lo = VMM_LINUX_MIN_ADDR,
                              .hi = hi,
                              .highest = true,
                              .avoid = avoid,
                              .navoid = (unsigned)n};
    uint64_t addr;
    int r = linux_place(mem, &req, &addr);
    if (r == -ENOMEM)
        return linux_fail(boot, r, "out of memory");
    if (r < 0)
        return linux_fail(boot, -ENOSPC,
                          "no room for a %" PRIu64
                          "-byte initrd in RAM between 1 MiB and 0x%" PRIx64
                          " clear of the kernel and reserved ranges",
                          im->size, max);
    r = vmm_image_to_guest(mem, addr, im, 0, im->size);
    if (r < 0)
        return linux_fail(boot, r, "copying the initrd to 0x%" PRIx64 " failed: %s", addr,
                          r == -EINVAL && !im->buf ? "the file shrank" : vmm_strerror(r));
    boot->initrd_addr = addr;
    boot->initrd_size = im->size;
    vmm_log_debug("linux: initrd at [0x%" PRIx64 ", 0x%" PRIx64 ")", addr, addr + im->size);
    return 0;
}

static int initrd_from_memory(struct vmm_memory *mem, const void *data, size_t size,
                              const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    if (!mem || (!data && size != 0))
        return linux_fail(boot, -EINVAL, "no guest memory or initrd given");
    if (size == 0)
        return linux_fail(boot, -EINVAL, "empty initrd");
    struct vmm_image im = {.buf = data, .fd = -1, .size = size};
    return load_initrd(mem, &im, machine, boot);
}

static int initrd_from_file(struct vmm_memory *mem, const char *path,
                            const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    if (!mem || !path)
        return linux_fail(boot, -EINVAL, "no guest memory or initrd path given");
    struct vmm_image im;
    int r = vmm_image_open(&im, path, vmm_memory_total_size(mem), boot->error, sizeof(boot->error));
    if (r < 0)
        return r;
    r = load_initrd(mem, &im, machine, boot);
    vmm_image_close(&im);
    return r;
}

int vmm_linux_load_initrd(struct vmm_memory *mem, const void *data, size_t size,
                          const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_machine mc;
    const struct vmm_machine *m;
    if (linux_boot_in(&b, boot) < 0 || vmm_machine_in(machine, &mc, &m) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, initrd_from_memory(mem, data, size, m, &b));
}

int vmm_linux_load_initrd_file(struct vmm_memory *mem, const char *path,
                               const struct vmm_machine *machine, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_machine mc;
    const struct vmm_machine *m;
    if (linux_boot_in(&b, boot) < 0 || vmm_machine_in(machine, &mc, &m) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, initrd_from_file(mem, path, m, &b));
}

/* ---- command line ---- */

static int set_cmdline(struct vmm_memory *mem, const char *cmdline, struct vmm_linux_boot *boot)
{
    boot->error[0] = '\0';
    if (!mem || !cmdline)
        return linux_fail(boot, -EINVAL, "no guest memory or command line given");
    uint64_t max = VMM_X86_CMDLINE_MAX - 1;
    if (boot->cmdline_max && boot->cmdline_max < max)
        max = boot->cmdline_max;
    size_t len = strlen(cmdline);
    if (len > max)
        return linux_fail(
            boot, -ENOSPC,
            "command line of %zu bytes is longer than the %" PRIu64 " the kernel takes", len, max);
    int r = vmm_memory_write(mem, VMM_X86_CMDLINE, cmdline, len + 1);
    if (r < 0)
        return linux_fail(boot, r, "cannot write the command line at 0x%llx: %s", VMM_X86_CMDLINE,
                          vmm_strerror(r));
    boot->cmdline_addr = VMM_X86_CMDLINE;
    boot->cmdline_len = (uint32_t)len;
    return 0;
}

int vmm_linux_set_cmdline(struct vmm_memory *mem, const char *cmdline, struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    if (linux_boot_in(&b, boot) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, set_cmdline(mem, cmdline, &b));
}

/* ---- setup_data ---- */

static int add_setup_data(struct vmm_memory *mem, uint32_t type, const void *data, size_t len,
                          struct vmm_linux_boot *boot)
{
    boot->error[0] = '\0';
    if (!mem || (!data && len != 0))
        return linux_fail(boot, -EINVAL, "no guest memory or setup_data given");
    if (boot->protocol == VMM_LINUX_BOOT_PVH)
        return linux_fail(boot, -EINVAL,
                          "PVH has no setup_data: load the kernel with no_pvh to pass it");
    uint64_t start = boot->setup_data_end ? boot->setup_data_end : VMM_X86_SETUP_DATA;
    if (start < VMM_X86_SETUP_DATA || start > VMM_X86_SETUP_DATA_END)
        return linux_fail(boot, -EINVAL,
                          "setup_data_end 0x%" PRIx64 " is outside the setup_data area", start);
    start = (start + 7) & ~7ull;
    uint64_t room = start < VMM_X86_SETUP_DATA_END ? VMM_X86_SETUP_DATA_END - start : 0;
    if (len > room || sizeof(struct vmm_setup_data) > room - len)
        return linux_fail(boot, -ENOSPC,
                          "no room for %zu bytes of setup_data type %u in [0x%" PRIx64 ", 0x%llx)",
                          len, type, start, VMM_X86_SETUP_DATA_END);

    struct vmm_setup_data sd = {.next = 0, .type = type, .len = (uint32_t)len};
    int r = vmm_memory_write(mem, start, &sd, sizeof(sd));
    if (r == 0 && len)
        r = vmm_memory_write(mem, start + sizeof(sd), data, len);
    if (r == 0 && boot->setup_data_last) {
        uint64_t next = start;
        r = vmm_memory_write(mem, boot->setup_data_last + offsetof(struct vmm_setup_data, next),
                             &next, sizeof(next));
    }
    if (r < 0)
        return linux_fail(boot, r, "cannot write setup_data at 0x%" PRIx64 ": %s", start,
                          vmm_strerror(r));
    if (!boot->setup_data)
        boot->setup_data = start;
    boot->setup_data_last = start;
    boot->setup_data_end = start + sizeof(sd) + len;
    return 0;
}

int vmm_linux_add_setup_data(struct vmm_memory *mem, uint32_t type, const void *data, size_t len,
                             struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    if (linux_boot_in(&b, boot) < 0)
        return -EINVAL;
    return linux_boot_out(boot, &b, add_setup_data(mem, type, data, len, &b));
}

/* ---- entry ---- */

int vmm_linux_get_entry(const struct vmm_linux_boot *caller, struct vmm_x86_linux_entry *entry)
{
    struct vmm_linux_boot full;
    const struct vmm_linux_boot *boot = &full;
    if (linux_boot_in(&full, caller) < 0 || !entry || !VMM_ABI_OUT_OK(entry) || !boot->params_addr)
        return -EINVAL;
    struct vmm_x86_linux_entry e = {.size = sizeof(e), .params = boot->params_addr};
    switch (boot->protocol) {
    case VMM_LINUX_BOOT_64:
        e.mode = VMM_X86_LINUX_ENTRY_64;
        e.entry = boot->entry;
        break;
    case VMM_LINUX_BOOT_PVH:
        if (!boot->pvh_entry || boot->params_addr > UINT32_MAX)
            return -EINVAL;
        e.mode = VMM_X86_LINUX_ENTRY_PVH;
        e.entry = boot->pvh_entry;
        break;
    default:
        return -EINVAL;
    }
    VMM_ABI_COPY_OUT(entry, &e);
    return 0;
}

/* ---- all in one ---- */

static int boot_setup(struct vmm_memory *mem, const struct vmm_linux_config *cfg,
                      const struct vmm_kernel_options *kopts_in, struct vmm_linux_boot *boot)
{
    if (!mem || !cfg) {
        memset(boot, 0, sizeof(*boot));
        return linux_fail(boot, -EINVAL, "no guest memory or configuration given");
    }
    if (!cfg->kernel_path == !cfg->kernel) {
        memset(boot, 0, sizeof(*boot));
        return linux_fail(boot, -EINVAL, "give exactly one of kernel_path and kernel");
    }
    if (cfg->initrd_path && cfg->initrd) {
        memset(boot, 0, sizeof(*boot));
        return linux_fail(boot, -EINVAL, "give at most one of initrd_path and initrd");
    }

    struct vmm_kernel_options kopts = *kopts_in;
    if (!kopts.machine)
        kopts.machine = cfg->machine;
    int r = cfg->kernel_path
                ? vmm_linux_load_kernel_file(mem, cfg->kernel_path, &kopts, boot)
                : vmm_linux_load_kernel(mem, cfg->kernel, cfg->kernel_size, &kopts, boot);
    if (r < 0)
        return r;
    if (cfg->dtb && boot->protocol == VMM_LINUX_BOOT_PVH)
        return linux_fail(boot, -EINVAL,
                          "a device tree needs the 64-bit boot protocol: set kernel_opts->no_pvh");
    if (cfg->initrd_path)
        r = vmm_linux_load_initrd_file(mem, cfg->initrd_path, kopts.machine, boot);
    else if (cfg->initrd)
        r = vmm_linux_load_initrd(mem, cfg->initrd, cfg->initrd_size, kopts.machine, boot);
    if (r < 0)
        return r;
    if (cfg->cmdline && (r = vmm_linux_set_cmdline(mem, cfg->cmdline, boot)) < 0)
        return r;
    if (cfg->dtb &&
        (r = vmm_linux_add_setup_data(mem, VMM_SETUP_DTB, cfg->dtb, cfg->dtb_size, boot)) < 0)
        return r;
    boot->rsdp_addr = cfg->rsdp_addr;
    return vmm_linux_write_params(mem, kopts.machine, boot);
}

int vmm_linux_boot_setup(struct vmm_memory *mem, const struct vmm_linux_config *cfg,
                         struct vmm_linux_boot *boot)
{
    struct vmm_linux_boot b;
    struct vmm_linux_config c;
    struct vmm_kernel_options o = VMM_INIT(struct vmm_kernel_options);
    struct vmm_machine km, cm;
    const struct vmm_linux_config *cp = NULL;
    if (linux_boot_in(&b, boot) < 0)
        return -EINVAL;
    if (cfg) {
        if (VMM_ABI_COPY_IN(&c, cfg) < 0 || linux_kopts_in(c.kernel_opts, &o, &km) < 0 ||
            vmm_machine_in(c.machine, &cm, &c.machine) < 0)
            return -EINVAL;
        c.kernel_opts = &o;
        cp = &c;
    }
    return linux_boot_out(boot, &b, boot_setup(mem, cp, &o, &b));
}
