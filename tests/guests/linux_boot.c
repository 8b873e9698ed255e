/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checks what a Linux kernel is handed at entry, from inside the guest: the
 * zero page (64-bit boot protocol, through a bzImage or an ELF) or the
 * hvm_start_info (PVH), the memory map, the command line, the initrd bytes,
 * the RSDP pointer, setup_data and the entry state. The host says what to
 * expect on the command line:
 *
 *   libvmm-linux-test mem=HEX initrd=HEX rsdp=HEX resv=HEX resvsize=HEX dtb=HEX
 *
 * (all hex, each but mem optional). Prints "linux-boot: <protocol> OK" and
 * exits 0, or names the first failed check and exits with its number.
 */
#include <vmm/linux.h>

#include "guest.h"

#define PROTO_64  1
#define PROTO_PVH 2

extern uint64_t entry_params, entry_flags, entry_cr0;
extern uint16_t entry_cs, entry_ds, entry_ss;

#define MAGIC_WORD "libvmm-linux-test"

static void fail(int code, const char *what, uint64_t got, uint64_t want)
{
    printf("linux-boot: check %d failed: %s: got 0x%lx, want 0x%lx\n", code, what, got, want);
    guest_exit(code);
}

#define CHECK(code, what, got, want)                                                               \
    do {                                                                                           \
        uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                                      \
        if (g_ != w_)                                                                              \
            fail((code), (what), g_, w_);                                                          \
    } while (0)

/* The hex value after " key=" on the command line; *present says whether
 * the key is there. */
static uint64_t param(const char *cmdline, const char *key, bool *present)
{
    size_t klen = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            uint64_t v = 0;
            p += klen + 1;
            if (p[0] == '0' && p[1] == 'x')
                p += 2;
            for (;; p++) {
                unsigned d;
                if (*p >= '0' && *p <= '9')
                    d = (unsigned)(*p - '0');
                else if (*p >= 'a' && *p <= 'f')
                    d = (unsigned)(*p - 'a' + 10);
                else
                    break;
                v = v * 16 + d;
            }
            if (present)
                *present = true;
            return v;
        }
    }
    if (present)
        *present = false;
    return 0;
}

struct mem_entry {
    uint64_t addr, size;
    uint32_t type;
};

/* The memory map against what the host built: low RAM, the low reserved
 * range, the rest of RAM with one reserved range cut out of it. */
static void check_map(const struct mem_entry *e, unsigned n, const char *cmdline)
{
    bool has_resv;
    uint64_t mem = param(cmdline, "mem", NULL);
    uint64_t resv = param(cmdline, "resv", &has_resv);
    uint64_t resv_size = param(cmdline, "resvsize", NULL);
    CHECK(20, "map entries", n, has_resv ? 5 : 3);
    CHECK(21, "map[0] addr", e[0].addr, 0);
    CHECK(22, "map[0] size", e[0].size, 0x9fc00);
    CHECK(23, "map[0] type", e[0].type, VMM_E820_RAM);
    CHECK(24, "map[1] addr", e[1].addr, 0x9fc00);
    CHECK(25, "map[1] end", e[1].addr + e[1].size, 0x100000);
    CHECK(26, "map[1] type", e[1].type, VMM_E820_RESERVED);
    CHECK(27, "map[2] addr", e[2].addr, 0x100000);
    CHECK(28, "map[2] type", e[2].type, VMM_E820_RAM);
    uint64_t ram = 0, end = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i > 0 && e[i].addr < e[i - 1].addr + e[i - 1].size)
            fail(29, "map overlaps or is unsorted at entry", i, 0);
        if (e[i].type == VMM_E820_RAM)
            ram += e[i].size;
        end = e[i].addr + e[i].size;
    }
    CHECK(30, "map end", end, mem);
    if (has_resv) {
        CHECK(31, "map[3] (reserved) addr", e[3].addr, resv);
        CHECK(34, "map[3] type", e[3].type, VMM_E820_RESERVED);
        CHECK(32, "map[3] size", e[3].size, resv_size);
        CHECK(33, "RAM bytes", ram, mem - 0x60400 - resv_size);
    } else {
        CHECK(33, "RAM bytes", ram, mem - 0x60400);
    }
}

static void check_initrd(uint64_t addr, uint64_t size, const char *cmdline)
{
    bool want;
    uint64_t want_size = param(cmdline, "initrd", &want);
    if (!want) {
        CHECK(40, "initrd size", size, 0);
        return;
    }
    CHECK(41, "initrd size", size, want_size);
    CHECK(42, "initrd alignment", addr & 0xfff, 0);
    if (addr < 0x100000 || addr + size > param(cmdline, "mem", NULL))
        fail(43, "initrd outside RAM above 1 MiB", addr, 0);
    const volatile uint8_t *p = (const volatile uint8_t *)addr;
    for (uint64_t j = 0; j < size; j++)
        if (p[j] != (uint8_t)(j * 31 + 7))
            fail(44, "initrd byte", j, (uint8_t)(j * 31 + 7));
}

static const char *check_cmdline(uint64_t addr)
{
    if (addr == 0)
        fail(10, "no command line", 0, 1);
    const char *cmdline = (const char *)addr;
    if (memcmp(cmdline, MAGIC_WORD, sizeof(MAGIC_WORD) - 1) != 0)
        fail(11, "command line does not start with " MAGIC_WORD, 0, 0);
    printf("linux-boot: command line \"%s\"\n", cmdline);
    return cmdline;
}

/* MTRRdefType, which firmware leaves enabled with write-back as the default
 * type (the library's Linux entry state sets it). */
static uint64_t mtrr_def_type(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0x2ffu));
    return (uint64_t)hi << 32 | lo;
}

static int check_zero_page(uint64_t params)
{
    CHECK(50, "RSI (zero page)", params, VMM_X86_ZERO_PAGE);
    CHECK(51, "RFLAGS.IF at entry", entry_flags & 0x200, 0);
    CHECK(52, "CS at entry (__BOOT_CS)", entry_cs, 0x10);
    CHECK(65, "DS at entry (__BOOT_DS)", entry_ds, 0x18);
    CHECK(66, "SS at entry (__BOOT_DS)", entry_ss, 0x18);
    CHECK(67, "MTRRdefType (enabled, write-back)", mtrr_def_type(), 0xc06);
    const struct vmm_linux_boot_params *zp = (const void *)params;
    CHECK(53, "hdr.header", zp->hdr.header, VMM_LINUX_HDR_MAGIC);
    CHECK(54, "hdr.boot_flag", zp->hdr.boot_flag, VMM_LINUX_BOOT_FLAG);
    CHECK(55, "hdr.type_of_loader", zp->hdr.type_of_loader, 0xff);
    CHECK(56, "loadflags.LOADED_HIGH", zp->hdr.loadflags & VMM_LINUX_LOADED_HIGH, 1);
    CHECK(57, "sentinel", zp->sentinel, 0);
    const char *cmdline =
        check_cmdline(zp->hdr.cmd_line_ptr | (uint64_t)zp->ext_cmd_line_ptr << 32);

    struct mem_entry map[VMM_E820_MAX];
    unsigned n = zp->e820_entries;
    if (n > VMM_E820_MAX)
        fail(58, "e820_entries", n, VMM_E820_MAX);
    for (unsigned i = 0; i < n; i++) {
        struct vmm_e820_entry e = zp->e820_table[i];
        map[i] = (struct mem_entry){e.addr, e.size, e.type};
    }
    check_map(map, n, cmdline);
    check_initrd(zp->hdr.ramdisk_image | (uint64_t)zp->ext_ramdisk_image << 32,
                 zp->hdr.ramdisk_size | (uint64_t)zp->ext_ramdisk_size << 32, cmdline);
    CHECK(59, "acpi_rsdp_addr", zp->acpi_rsdp_addr, param(cmdline, "rsdp", NULL));

    bool want_dtb;
    uint64_t dtb_len = param(cmdline, "dtb", &want_dtb);
    if (want_dtb) {
        const struct vmm_setup_data *sd = (const void *)zp->hdr.setup_data;
        if (!sd)
            fail(60, "setup_data", 0, 1);
        CHECK(61, "setup_data type", sd->type, VMM_SETUP_DTB);
        CHECK(62, "setup_data len", sd->len, dtb_len);
        CHECK(63, "setup_data next", sd->next, 0);
        if (memcmp(sd + 1, "fake-dtb", 8) != 0)
            fail(64, "setup_data bytes", 0, 0);
    } else {
        CHECK(60, "setup_data", zp->hdr.setup_data, 0);
    }
    puts("linux-boot: 64-bit OK\n");
    return 0;
}

static int check_pvh(uint64_t params)
{
    CHECK(70, "EBX (start info)", params, VMM_X86_PVH_INFO);
    CHECK(71, "CR0.PE|PG at entry", entry_cr0 & 0x80000001u, 1);
    CHECK(72, "EFLAGS.IF at entry", entry_flags & 0x200, 0);
    CHECK(73, "CS at entry", entry_cs, 0x8);
    CHECK(68, "DS at entry", entry_ds, 0x10);
    CHECK(69, "SS at entry", entry_ss, 0x10);
    CHECK(79, "MTRRdefType (enabled, write-back)", mtrr_def_type(), 0xc06);
    const struct vmm_hvm_start_info *si = (const void *)params;
    CHECK(74, "start info magic", si->magic, VMM_HVM_START_MAGIC);
    CHECK(75, "start info version", si->version, 1);
    const char *cmdline = check_cmdline(si->cmdline_paddr);

    struct mem_entry map[VMM_E820_MAX];
    unsigned n = si->memmap_entries;
    if (n > VMM_E820_MAX || !si->memmap_paddr)
        fail(76, "memmap_entries", n, VMM_E820_MAX);
    const struct vmm_hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
    for (unsigned i = 0; i < n; i++)
        map[i] = (struct mem_entry){mm[i].addr, mm[i].size, mm[i].type};
    check_map(map, n, cmdline);

    bool want_initrd;
    param(cmdline, "initrd", &want_initrd);
    CHECK(77, "nr_modules", si->nr_modules, want_initrd ? 1 : 0);
    if (want_initrd) {
        const struct vmm_hvm_modlist_entry *mod = (const void *)si->modlist_paddr;
        check_initrd(mod->paddr, mod->size, cmdline);
    }
    CHECK(78, "rsdp_paddr", si->rsdp_paddr, param(cmdline, "rsdp", NULL));
    puts("linux-boot: PVH OK\n");
    return 0;
}

int linux_main(int protocol, uint64_t params);

int linux_main(int protocol, uint64_t params)
{
    guest_runtime_init(0, 1);
    if (protocol == PROTO_PVH)
        return check_pvh(params);
    return check_zero_page(params);
}

/* The runtime's start.S calls this; this guest enters through its own. */
int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)cpu;
    (void)ncpus;
    return 99;
}
