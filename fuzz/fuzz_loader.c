/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image loaders against hostile files: the input's first byte picks
 * vmm_elf_load (a static ELF) or the Linux steps (bzImage, ELF vmlinux with
 * or without a PVH note, a bzImage's XZ payload extracted and booted as an
 * ELF) through vmm_linux_boot_setup with an initrd, a command line, a device
 * tree blob as setup_data and reserved ranges of the input's choosing; the
 * rest of a short header sets the options, and the remaining bytes are the
 * image. Guest memory: 16 MiB of RAM at 0 and 1 MiB more at 20 MiB, so images
 * can land in a hole or straddle one.
 *
 * Checked: no memory error or UB, and what a successful load reports lies
 * in guest memory (entry, kernel span, initrd, command line, parameters).
 */
#include <errno.h>
#include <vmm/linux.h>
#include <vmm/loader.h>
#include <vmm/machine.h>
#include <vmm/memory.h>

#include "fuzz_common.h"

#define RAM_LOW   (16ull << 20)
#define RAM2_BASE (20ull << 20)
#define RAM2_LEN  (1ull << 20)

static struct vmm_memory *mem;

static void init_once(void)
{
    fz_quiet_logs();
    FZ_CHECK(vmm_memory_create(&mem) == 0);
    struct vmm_region_config low = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = RAM_LOW);
    struct vmm_region_config high =
        VMM_INIT(struct vmm_region_config, .gpa = RAM2_BASE, .len = RAM2_LEN);
    FZ_CHECK(vmm_memory_add_region(mem, &low) >= 0);
    FZ_CHECK(vmm_memory_add_region(mem, &high) >= 0);
}

static void load_elf(struct fz *in)
{
    struct vmm_load_options opts =
        VMM_INIT(struct vmm_load_options, .min_addr = fz_u8(in) & 1 ? fz_u32(in) : 0);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    size_t len;
    const uint8_t *image = fz_take(in, SIZE_MAX, &len);
    int r = vmm_elf_load(mem, image, len, &opts, &res);
    if (r == 0) {
        FZ_CHECK(res.segments > 0 && res.low < res.high);
        FZ_CHECK(vmm_memory_check_range(mem, res.low, res.high - res.low) == 0 ||
                 res.segments > 1); /* segments may sit on both sides of a hole */
        FZ_CHECK(res.entry >= res.low && res.entry < res.high);
    } else {
        FZ_CHECK(r == -EINVAL || r == -EFAULT || r == -EROFS);
        FZ_CHECK(res.error[0] != '\0');
    }
}

static void load_linux(struct fz *in)
{
    static uint8_t initrd[1 << 16];
    uint8_t flags = fz_u8(in);
    struct vmm_machine machine = VMM_INIT(struct vmm_machine, .nr_vcpus = 1, .mem = mem);
    machine.nr_reserved = flags & 3;
    for (unsigned i = 0; i < machine.nr_reserved; i++) {
        machine.reserved[i].base = fz_u32(in);
        machine.reserved[i].size = fz_u32(in);
    }
    struct vmm_kernel_options ko = VMM_INIT(
        struct vmm_kernel_options, .no_pvh = flags & 4, .load_addr = flags & 8 ? fz_u32(in) : 0,
        .min_addr = flags & 16 ? fz_u32(in) : 0, .machine = flags & 32 ? &machine : NULL);
    /* The initrd length's top bit: extract a bzImage's payload (no cache:
     * the fuzzer writes no files). */
    uint16_t initrd_word = fz_u16(in);
    ko.extract_payload = initrd_word & 0x8000;
    size_t initrd_len = (initrd_word & 0x7fff) % sizeof(initrd);
    size_t cmd_len, dtb_len;
    const uint8_t *cmd = fz_take(in, fz_u8(in), &cmd_len);
    const uint8_t *dtb = fz_take(in, fz_u8(in), &dtb_len);
    char cmdline[256];
    memcpy(cmdline, cmd, cmd_len);
    cmdline[cmd_len] = '\0';
    size_t kernel_len;
    const uint8_t *kernel = fz_take(in, SIZE_MAX, &kernel_len);
    struct vmm_linux_config cfg =
        VMM_INIT(struct vmm_linux_config, .kernel = kernel, .kernel_size = kernel_len,
                 .initrd = initrd_len ? initrd : NULL, .initrd_size = initrd_len,
                 .cmdline = flags & 64 ? cmdline : NULL, .machine = flags & 32 ? NULL : &machine,
                 .rsdp_addr = flags & 128 ? 0xe0000 : 0, .dtb = dtb_len ? dtb : NULL,
                 .dtb_size = dtb_len, .kernel_opts = &ko);
    struct vmm_linux_boot boot = VMM_INIT(struct vmm_linux_boot);
    int r = vmm_linux_boot_setup(mem, &cfg, &boot);
    if (r < 0) {
        FZ_CHECK(r != -ENOMEM || kernel_len > RAM_LOW || ko.extract_payload);
        FZ_CHECK(boot.error[0] != '\0');
        return;
    }
    FZ_CHECK(boot.kernel_low < boot.kernel_high);
    FZ_CHECK(vmm_memory_check_range(mem, boot.params_addr, 1) == 0);
    if (initrd_len)
        FZ_CHECK(vmm_memory_check_range(mem, boot.initrd_addr, initrd_len) == 0);
    if (boot.cmdline_addr)
        FZ_CHECK(vmm_memory_check_range(mem, boot.cmdline_addr, boot.cmdline_len + 1ull) == 0);
    struct vmm_x86_linux_entry entry = VMM_INIT(struct vmm_x86_linux_entry);
    FZ_CHECK(vmm_linux_get_entry(&boot, &entry) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mem)
        init_once();
    struct fz in = {data, size};
    if (fz_u8(&in) & 1)
        load_linux(&in);
    else
        load_elf(&in);
    return 0;
}
