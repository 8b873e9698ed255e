/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Linux loader on the host's own kernel: /boot/vmlinuz-* (a distribution
 * bzImage) into a 256 MiB guest, and, with --vmlinux, the ELF vmlinux inside
 * it (the payload named by payload_offset/payload_length, decompressed with
 * the xz, gzip or zstd command). Exits 77 when the kernel or the tool is
 * missing. Malloc-backed guest memory, no /dev/kvm.
 */
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/linux.h>
#include <vmm/memory.h>

#include "check_compat.h"

#define GUEST_SIZE (256ull << 20)

static char kernel_path[512];
static bool want_vmlinux;

static void skip(const char *why)
{
    printf("SKIP: %s\n", why);
    exit(77);
}

/* The newest-sorting /boot/vmlinuz-*. */
static void find_kernel(void)
{
    glob_t g;
    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0 || g.gl_pathc == 0)
        skip("no /boot/vmlinuz-* on this machine");
    snprintf(kernel_path, sizeof(kernel_path), "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    if (access(kernel_path, R_OK) != 0)
        skip("the host kernel is not readable");
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_gt(n, 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static struct vmm_memory *mem;
static unsigned char *ram;

static void setup(void)
{
    ram = calloc(1, GUEST_SIZE); /* untouched pages cost nothing */
    ck_assert_ptr_nonnull(ram);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, GUEST_SIZE, ram), 0);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(ram);
}

START_TEST(test_real_bzimage)
{
    size_t size;
    unsigned char *img = read_file(kernel_path, &size);
    ck_assert_int_eq(vmm_kernel_detect(img, size), VMM_KERNEL_BZIMAGE);

    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    int r = vmm_linux_load_kernel(mem, img, size, NULL, &b);
    ck_assert_msg(r == 0, "%s: %d %s", kernel_path, r, b.error);
    const struct vmm_linux_setup_header *h = &b.hdr;
    printf("%s: protocol %u.%02u, load [0x%llx, 0x%llx), entry 0x%llx, init_size 0x%x, "
           "pref 0x%llx, align 0x%x, cmdline_size %u, initrd_addr_max 0x%x\n",
           kernel_path, b.boot_version >> 8, b.boot_version & 0xff,
           (unsigned long long)b.kernel_low, (unsigned long long)b.kernel_high,
           (unsigned long long)b.entry, h->init_size, (unsigned long long)h->pref_address,
           h->kernel_alignment, h->cmdline_size, h->initrd_addr_max);
    ck_assert_uint_ge(b.boot_version, 0x020c);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    ck_assert_uint_eq(b.entry, b.kernel_low + 0x200);
    ck_assert_uint_ge(b.kernel_high - b.kernel_low, h->init_size);
    if (h->relocatable_kernel) {
        ck_assert_uint_eq(b.kernel_low % h->kernel_alignment, 0);
        ck_assert_uint_ge(b.kernel_low, h->pref_address);
    }
    size_t setup = (size_t)((h->setup_sects ? h->setup_sects : 4) + 1) * 512;
    ck_assert(memcmp(ram + b.kernel_low, img + setup, size - setup) == 0);

    /* initrd, command line, zero page */
    size_t rd_size = 4u << 20;
    unsigned char *rd = malloc(rd_size);
    for (size_t j = 0; j < rd_size; j++)
        rd[j] = (unsigned char)(j * 31 + 7);
    ck_assert_int_eq(vmm_linux_load_initrd(mem, rd, rd_size, NULL, &b), 0);
    ck_assert_uint_eq(b.initrd_addr % 4096, 0);
    ck_assert_uint_le(b.initrd_addr + rd_size - 1, h->initrd_addr_max);
    ck_assert(b.initrd_addr >= b.kernel_high || b.initrd_addr + rd_size <= b.kernel_low);
    ck_assert(memcmp(ram + b.initrd_addr, rd, rd_size) == 0);
    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "console=ttyS0 panic=-1", &b), 0);
    char *too_long = malloc(h->cmdline_size + 2);
    memset(too_long, 'a', h->cmdline_size + 1);
    too_long[h->cmdline_size + 1] = '\0';
    ck_assert_int_eq(
        vmm_linux_set_cmdline(mem, too_long,
                              &(struct vmm_linux_boot){.size = sizeof(struct vmm_linux_boot),
                                                       .cmdline_max = h->cmdline_size}),
        -ENOSPC);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    struct vmm_linux_boot_params zp;
    memcpy(&zp, ram + VMM_X86_ZERO_PAGE, sizeof(zp));
    ck_assert_uint_eq(zp.hdr.version, b.boot_version);
    ck_assert_uint_eq(zp.hdr.init_size, h->init_size);
    ck_assert_uint_eq(zp.hdr.type_of_loader, 0xff);
    ck_assert_uint_eq(zp.hdr.ramdisk_image, b.initrd_addr);
    ck_assert_uint_eq(zp.hdr.ramdisk_size, rd_size);
    ck_assert_uint_eq(zp.e820_entries, 3);
    ck_assert_uint_eq(zp.e820_table[2].addr + zp.e820_table[2].size, GUEST_SIZE);

    /* the file path gives the same result */
    struct vmm_linux_boot f = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, kernel_path, NULL, &f), 0);
    ck_assert_uint_eq(f.entry, b.entry);
    ck_assert_uint_eq(f.kernel_high, b.kernel_high);

    /* a guest too small for pref_address + init_size is refused with a reason */
    if (h->relocatable_kernel && h->pref_address + h->init_size > (64u << 20)) {
        struct vmm_memory *small;
        ck_assert_int_eq(vmm_memory_create(&small), 0);
        ck_assert_int_ge(vmm_memory_add_external(small, 0, 64u << 20, ram), 0);
        ck_assert_int_eq(vmm_linux_load_kernel(small, img, size, NULL, &f), -ENOSPC);
        printf("64 MiB guest: %s\n", f.error);
        vmm_memory_destroy(small);
    }
    free(too_long);
    free(rd);
    free(img);
}
END_TEST

/* The payload's place in the bzImage and the command that decompresses it. */
static size_t payload_offset, payload_length;
static const char *decompressor;

/* Before any test runs (a skip must be this process's exit status). */
static void pick_decompressor(void)
{
    size_t size;
    FILE *f = fopen(kernel_path, "rb");
    unsigned char head[0x26c];
    if (!f || fread(head, 1, sizeof(head), f) != sizeof(head))
        skip("cannot read the host kernel's header");
    struct vmm_linux_setup_header h;
    memcpy(&h, head + VMM_LINUX_HDR_OFFSET, sizeof(h));
    fseek(f, 0, SEEK_END);
    size = (size_t)ftell(f);
    size_t setup = (size_t)((h.setup_sects ? h.setup_sects : 4) + 1) * 512;
    if (h.header != VMM_LINUX_HDR_MAGIC || h.version < 0x0208 ||
        setup + (uint64_t)h.payload_offset + h.payload_length > size || h.payload_length < 6)
        skip("the host kernel names no payload (not a bzImage of protocol 2.08+)");
    payload_offset = setup + h.payload_offset;
    payload_length = h.payload_length;
    unsigned char magic[6];
    fseek(f, (long)payload_offset, SEEK_SET);
    if (fread(magic, 1, sizeof(magic), f) != sizeof(magic))
        skip("cannot read the kernel payload");
    fclose(f);
    if (memcmp(magic,
               "\xfd"
               "7zXZ\0",
               6) == 0)
        decompressor = "xz -dc --single-stream";
    else if (memcmp(magic, "\x1f\x8b", 2) == 0)
        decompressor = "gzip -dc";
    else if (memcmp(magic, "\x28\xb5\x2f\xfd", 4) == 0)
        decompressor = "zstd -dcq";
    else
        skip("the kernel payload is compressed with something this test cannot undo");
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "command -v %.*s >/dev/null 2>&1", (int)strcspn(decompressor, " "),
             decompressor);
    if (system(cmd) != 0)
        skip("the decompressor for the kernel payload is not installed");
}

/* Pull the vmlinux out of the bzImage into a temporary file. */
static void extract_vmlinux(char *out, size_t out_len)
{
    size_t size;
    unsigned char *img = read_file(kernel_path, &size);
    ck_assert_uint_le(payload_offset + payload_length, size);
    char in[PATH_MAX];
    int fd = mkstemp(vmm_test_tmpname(in, sizeof(in), "vmm-vmlinux-"));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, img + payload_offset, payload_length), (ssize_t)payload_length);
    close(fd);
    free(img);
    int n = snprintf(out, out_len, "%s.elf", in);
    ck_assert(n > 0 && (size_t)n < out_len);
    /* gzip warns (status 2) about the size trailer after the stream: judge by
     * the output instead. */
    char cmd[2 * PATH_MAX + 64];
    n = snprintf(cmd, sizeof(cmd), "%s < '%s' > '%s' 2>/dev/null", decompressor, in, out);
    ck_assert(n > 0 && (size_t)n < sizeof(cmd));
    int st = system(cmd);
    unlink(in);
    struct stat sb;
    ck_assert_msg(stat(out, &sb) == 0 && sb.st_size > 4, "%s failed (status %d)", decompressor, st);
}

START_TEST(test_real_vmlinux)
{
    char path[PATH_MAX + 8];
    extract_vmlinux(path, sizeof(path));

    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    int r = vmm_linux_load_kernel_file(mem, path, NULL, &b);
    ck_assert_msg(r == 0, "vmlinux: %d %s", r, b.error);
    ck_assert_int_eq(b.format, VMM_KERNEL_ELF);
    printf("vmlinux of %s: [0x%llx, 0x%llx), 64-bit entry 0x%llx, PVH note %s (entry 0x%x)\n",
           kernel_path, (unsigned long long)b.kernel_low, (unsigned long long)b.kernel_high,
           (unsigned long long)b.entry, b.pvh_entry ? "present" : "absent", b.pvh_entry);
    ck_assert(b.entry >= b.kernel_low && b.entry < b.kernel_high);
    ck_assert_int_eq(b.protocol, b.pvh_entry ? VMM_LINUX_BOOT_PVH : VMM_LINUX_BOOT_64);

    /* The kernel's config says whether the note must be there. */
    char config[600];
    const char *ver = strrchr(kernel_path, '/') + 1 + strlen("vmlinuz-");
    snprintf(config, sizeof(config), "/boot/config-%s", ver);
    char grep[700];
    snprintf(grep, sizeof(grep), "grep -qx CONFIG_PVH=y '%s' 2>/dev/null", config);
    if (access(config, R_OK) == 0) {
        bool pvh_config = system(grep) == 0;
        ck_assert_msg(pvh_config == (b.pvh_entry != 0), "CONFIG_PVH=%s but the note is %s",
                      pvh_config ? "y" : "n", b.pvh_entry ? "present" : "absent");
    }

    ck_assert_int_eq(vmm_linux_set_cmdline(mem, "console=ttyS0", &b), 0);
    ck_assert_int_eq(vmm_linux_write_params(mem, NULL, &b), 0);
    if (b.pvh_entry) {
        struct vmm_hvm_start_info si;
        memcpy(&si, ram + VMM_X86_PVH_INFO, sizeof(si));
        ck_assert_uint_eq(si.magic, VMM_HVM_START_MAGIC);
        ck_assert_uint_eq(si.memmap_entries, 3);
    }

    struct vmm_kernel_options o = {.size = sizeof(struct vmm_kernel_options), .no_pvh = true};
    ck_assert_int_eq(vmm_linux_load_kernel_file(mem, path, &o, &b), 0);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    unlink(path);
}
END_TEST

int main(int argc, char **argv)
{
    want_vmlinux = argc > 1 && strcmp(argv[1], "--vmlinux") == 0;
    find_kernel();
    if (want_vmlinux)
        pick_decompressor();
    Suite *s = suite_create("linux_real");
    TCase *tc = tcase_create(want_vmlinux ? "vmlinux" : "bzimage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, want_vmlinux ? test_real_vmlinux : test_real_bzimage);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
