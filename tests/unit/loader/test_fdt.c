/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the device-tree builder: the tree read back with libfdt
 * (header, nodes, properties, reservations), the malloc'ed and guest-memory
 * variants, and hostile machines, parameters, buffers and blobs. */
#include <errno.h>
#include <libfdt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/fdt.h>

#include "check_compat.h"
#include "tables_fixture.h"

#define HIGH_BASE 0x100000000ull
#define HIGH_SIZE (1u << 20)

static struct fixture fx;
static unsigned char *high;
static uint64_t blob_store[0x4000]; /* 128 KiB, 8-byte aligned */
static void *const blob = blob_store;

/* RAM [0, 2 MiB) plus [4 GiB, 4 GiB + 1 MiB). */
static void setup(void)
{
    fx_init(&fx, FX_RAM_SIZE);
    high = malloc(HIGH_SIZE);
    ck_assert_ptr_nonnull(high);
    ck_assert_int_ge(vmm_memory_add_external(fx.mem, HIGH_BASE, HIGH_SIZE, high), 0);
    memset(blob_store, 0xee, sizeof(blob_store));
}

static void teardown(void)
{
    fx_fini(&fx);
    free(high);
}

static int node(const void *fdt, const char *path)
{
    int off = fdt_path_offset(fdt, path);
    ck_assert_msg(off >= 0, "%s: %s", path, fdt_strerror(off));
    return off;
}

static const void *prop(const void *fdt, const char *path, const char *name, int *len)
{
    const void *p = fdt_getprop(fdt, node(fdt, path), name, len);
    ck_assert_msg(p != NULL, "%s:%s missing", path, name);
    return p;
}

static void assert_cells(const void *fdt, const char *path, const char *name, const uint32_t *want,
                         int n)
{
    int len;
    const fdt32_t *c = prop(fdt, path, name, &len);
    ck_assert_int_eq(len, n * 4);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fdt32_to_cpu(c[i]) == want[i], "%s:%s[%d] = %#x, want %#x", path, name, i,
                      fdt32_to_cpu(c[i]), want[i]);
}

static void assert_string(const void *fdt, const char *path, const char *name, const char *want)
{
    int len;
    const char *s = prop(fdt, path, name, &len);
    ck_assert_int_eq(len, (int)strlen(want) + 1);
    ck_assert_str_eq(s, want);
}

static uint64_t get_u64(const void *fdt, const char *path, const char *name)
{
    int len;
    const void *v = prop(fdt, path, name, &len);
    ck_assert_int_eq(len, 8);
    fdt64_t be; /* properties are only 4-byte aligned */
    memcpy(&be, v, sizeof(be));
    return fdt64_to_cpu(be);
}

START_TEST(fdt_tree_reads_back)
{
    struct vmm_machine m = fx_machine(fx.mem, 3);
    m.nr_reserved = 2;
    m.reserved[0] = (struct vmm_machine_range){.base = 0x9fc00, .size = 0x60400};
    m.reserved[1] = (struct vmm_machine_range){.base = 0x1f0000, .size = 0x1000};
    struct vmm_fdt_params p = {
        .size = sizeof(struct vmm_fdt_params),
        .cmdline = "console=ttyS0 root=/dev/vda",
        .initrd_start = 0x180000,
        .initrd_size = 0x8000,
    };
    int n = vmm_fdt_build(&m, &p, blob, sizeof(blob_store));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(fdt_check_header(blob), 0);
    ck_assert_uint_eq(fdt_totalsize(blob), (uint32_t)n);

    /* root */
    int len;
    const char *compat = prop(blob, "/", "compatible", &len);
    ck_assert_str_eq(compat, "linux,dummy-virt");
    assert_cells(blob, "/", "#address-cells", (uint32_t[]){2}, 1);
    assert_cells(blob, "/", "#size-cells", (uint32_t[]){2}, 1);
    assert_cells(blob, "/", "interrupt-parent", (uint32_t[]){VMM_FDT_IOAPIC_PHANDLE}, 1);

    /* reservations */
    ck_assert_int_eq(fdt_num_mem_rsv(blob), 2);
    uint64_t addr, size;
    ck_assert_int_eq(fdt_get_mem_rsv(blob, 0, &addr, &size), 0);
    ck_assert_uint_eq(addr, 0x9fc00);
    ck_assert_uint_eq(size, 0x60400);
    ck_assert_int_eq(fdt_get_mem_rsv(blob, 1, &addr, &size), 0);
    ck_assert_uint_eq(addr, 0x1f0000);

    /* memory: one node per region */
    assert_string(blob, "/memory@0", "device_type", "memory");
    assert_cells(blob, "/memory@0", "reg", (uint32_t[]){0, 0, 0, FX_RAM_SIZE}, 4);
    assert_cells(blob, "/memory@100000000", "reg", (uint32_t[]){1, 0, 0, HIGH_SIZE}, 4);

    /* cpus */
    assert_cells(blob, "/cpus", "#address-cells", (uint32_t[]){1}, 1);
    assert_cells(blob, "/cpus", "#size-cells", (uint32_t[]){0}, 1);
    for (unsigned i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/cpus/cpu@%u", i);
        assert_string(blob, path, "device_type", "cpu");
        assert_cells(blob, path, "reg", (uint32_t[]){i}, 1);
    }
    ck_assert_int_eq(fdt_path_offset(blob, "/cpus/cpu@3"), -FDT_ERR_NOTFOUND);

    /* chosen */
    assert_string(blob, "/chosen", "bootargs", "console=ttyS0 root=/dev/vda");
    ck_assert_uint_eq(get_u64(blob, "/chosen", "linux,initrd-start"), 0x180000);
    ck_assert_uint_eq(get_u64(blob, "/chosen", "linux,initrd-end"), 0x188000);
    assert_string(blob, "/chosen", "stdout-path", "/isa@i0/serial@i3f8");

    /* interrupt controllers */
    int ioapic = fdt_node_offset_by_phandle(blob, VMM_FDT_IOAPIC_PHANDLE);
    ck_assert_int_eq(ioapic, node(blob, "/interrupt-controller@fec00000"));
    ck_assert_int_eq(fdt_node_check_compatible(blob, ioapic, "intel,ce4100-ioapic"), 0);
    ck_assert_ptr_nonnull(fdt_getprop(blob, ioapic, "interrupt-controller", &len));
    ck_assert_int_eq(len, 0);
    assert_cells(blob, "/interrupt-controller@fec00000", "#interrupt-cells", (uint32_t[]){2}, 1);
    assert_cells(blob, "/interrupt-controller@fec00000", "reg",
                 (uint32_t[]){0, 0xfec00000, 0, 0x1000}, 4);
    int lapic = node(blob, "/interrupt-controller@fee00000");
    ck_assert_int_eq(fdt_node_check_compatible(blob, lapic, "intel,ce4100-lapic"), 0);

    /* serial ports on the ISA bus, in I/O space */
    assert_cells(blob, "/isa@i0", "ranges", (uint32_t[]){1, 0, 0, 0, 0x10000}, 5);
    assert_cells(blob, "/isa@i0/serial@i3f8", "reg", (uint32_t[]){1, 0x3f8, 8}, 3);
    assert_cells(blob, "/isa@i0/serial@i3f8", "interrupts", (uint32_t[]){4, 3}, 2);
    assert_string(blob, "/isa@i0/serial@i3f8", "compatible", "ns16550a");
    assert_cells(blob, "/isa@i0/serial@i2f8", "reg", (uint32_t[]){1, 0x2f8, 8}, 3);
    assert_cells(blob, "/isa@i0/serial@i2f8", "interrupts", (uint32_t[]){3, 3}, 2);

    /* virtio-mmio */
    static const uint32_t gsis[3] = {5, 6, 16};
    for (unsigned i = 0; i < 3; i++) {
        char path[40];
        uint32_t base = (uint32_t)(VMM_X86_VIRTIO_MMIO_BASE + i * 0x1000);
        snprintf(path, sizeof(path), "/virtio_mmio@%x", base);
        assert_string(blob, path, "compatible", "virtio,mmio");
        assert_cells(blob, path, "reg", (uint32_t[]){0, base, 0, 0x1000}, 4);
        assert_cells(blob, path, "interrupts", (uint32_t[]){gsis[i], VMM_FDT_IRQ_EDGE_RISING}, 2);
    }
    int count = 0;
    for (int off = fdt_node_offset_by_compatible(blob, -1, "virtio,mmio"); off >= 0;
         off = fdt_node_offset_by_compatible(blob, off, "virtio,mmio"))
        count++;
    ck_assert_int_eq(count, 3);
}
END_TEST

START_TEST(fdt_minimal_machine)
{
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = fx.mem};
    int n = vmm_fdt_build(&m, NULL, blob, sizeof(blob_store));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(fdt_check_header(blob), 0);
    node(blob, "/cpus/cpu@0");
    ck_assert_int_eq(fdt_path_offset(blob, "/cpus/cpu@1"), -FDT_ERR_NOTFOUND);
    int chosen = node(blob, "/chosen");
    ck_assert_ptr_null(fdt_getprop(blob, chosen, "bootargs", NULL));
    ck_assert_ptr_null(fdt_getprop(blob, chosen, "linux,initrd-start", NULL));
    ck_assert_ptr_null(fdt_getprop(blob, chosen, "stdout-path", NULL));
    ck_assert_int_eq(fdt_path_offset(blob, "/isa@i0"), -FDT_ERR_NOTFOUND);
    ck_assert_int_eq(fdt_num_mem_rsv(blob), 0);
    /* An empty command line is no command line. */
    struct vmm_fdt_params p = {.size = sizeof(struct vmm_fdt_params), .cmdline = ""};
    ck_assert_int_gt(vmm_fdt_build(&m, &p, blob, sizeof(blob_store)), 0);
    ck_assert_ptr_null(fdt_getprop(blob, node(blob, "/chosen"), "bootargs", NULL));
}
END_TEST

/* A ROM region is not RAM: no memory node for it (e820 calls it reserved). */
START_TEST(fdt_rom_is_not_memory)
{
    struct vmm_region_config rom = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0xfffc0000,
                                    .len = 0x40000,
                                    .flags = VMM_MEMORY_F_READONLY};
    ck_assert_int_ge(vmm_memory_add_region(fx.mem, &rom), 0);
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .mem = fx.mem};
    ck_assert_int_gt(vmm_fdt_build(&m, NULL, blob, sizeof(blob_store)), 0);
    ck_assert_int_eq(fdt_path_offset(blob, "/memory@fffc0000"), -FDT_ERR_NOTFOUND);
    assert_cells(blob, "/memory@0", "reg", (uint32_t[]){0, 0, 0, FX_RAM_SIZE}, 4);
    assert_cells(blob, "/memory@100000000", "reg", (uint32_t[]){1, 0, 0, HIGH_SIZE}, 4);
}
END_TEST

START_TEST(fdt_virtio_above_4g_and_many_vcpus)
{
    struct vmm_machine m = fx_machine(fx.mem, VMM_FDT_MAX_VCPUS);
    m.virtio[0].base = 0x800000000ull; /* the ACPI builder refuses this one */
    int n = vmm_fdt_build(&m, NULL, blob, sizeof(blob_store));
    ck_assert_int_gt(n, 0);
    assert_cells(blob, "/virtio_mmio@800000000", "reg", (uint32_t[]){8, 0, 0, 0x1000}, 4);
    assert_cells(blob, "/cpus/cpu@3ff", "reg", (uint32_t[]){1023}, 1);
    m.nr_vcpus = VMM_FDT_MAX_VCPUS + 1;
    ck_assert_int_eq(vmm_fdt_build(&m, NULL, blob, sizeof(blob_store)), -EINVAL);
}
END_TEST

START_TEST(fdt_create_allocates_exactly)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    void *b = NULL;
    size_t size = 0;
    ck_assert_int_eq(vmm_fdt_create(&m, NULL, &b, &size), 0);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fdt_check_header(b), 0);
    ck_assert_uint_eq(fdt_totalsize(b), size);
    int n = vmm_fdt_build(&m, NULL, blob, sizeof(blob_store));
    ck_assert_uint_eq((size_t)n, size);
    ck_assert_mem_eq(b, blob, size);
    free(b);

    /* A command line at the limit makes the buffer grow. */
    char *cmdline = malloc(VMM_FDT_MAX_CMDLINE + 2);
    ck_assert_ptr_nonnull(cmdline);
    memset(cmdline, 'x', VMM_FDT_MAX_CMDLINE);
    cmdline[VMM_FDT_MAX_CMDLINE] = '\0';
    struct vmm_fdt_params p = {.size = sizeof(struct vmm_fdt_params), .cmdline = cmdline};
    ck_assert_int_eq(vmm_fdt_create(&m, &p, &b, &size), 0);
    int len;
    const char *args = fdt_getprop(b, fdt_path_offset(b, "/chosen"), "bootargs", &len);
    ck_assert_int_eq(len, VMM_FDT_MAX_CMDLINE + 1);
    ck_assert_mem_eq(args, cmdline, VMM_FDT_MAX_CMDLINE);
    free(b);

    /* One byte more is refused, and nothing is handed out. */
    cmdline[VMM_FDT_MAX_CMDLINE] = 'x';
    cmdline[VMM_FDT_MAX_CMDLINE + 1] = '\0';
    b = (void *)1;
    size = 7;
    ck_assert_int_eq(vmm_fdt_create(&m, &p, &b, &size), -EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_uint_eq(size, 0);
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, sizeof(blob_store)), -EINVAL);
    free(cmdline);

    ck_assert_int_eq(vmm_fdt_create(&m, NULL, NULL, &size), -EINVAL);
    ck_assert_int_eq(vmm_fdt_create(&m, NULL, &b, NULL), -EINVAL);
    ck_assert_int_eq(vmm_fdt_create(NULL, NULL, &b, &size), -EINVAL);
}
END_TEST

START_TEST(fdt_small_buffers_are_enospc)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    int n = vmm_fdt_build(&m, NULL, blob, sizeof(blob_store));
    ck_assert_int_gt(n, 0);
    for (int size = 0; size < n; size += 13) {
        memset(blob_store, 0xee, sizeof(blob_store));
        ck_assert_int_eq(vmm_fdt_build(&m, NULL, blob, (size_t)size), -ENOSPC);
        ck_assert_uint_eq(((const unsigned char *)blob)[size], 0xee);
    }
    ck_assert_int_eq(vmm_fdt_build(&m, NULL, blob, (size_t)n), n);
    ck_assert_int_eq(fdt_check_header(blob), 0);
}
END_TEST

START_TEST(fdt_refuses_bad_input)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    size_t cap = sizeof(blob_store);
    ck_assert_int_eq(vmm_fdt_build(NULL, NULL, blob, cap), -EINVAL);
    ck_assert_int_eq(vmm_fdt_build(&m, NULL, NULL, cap), -EINVAL);
    ck_assert_int_eq(vmm_fdt_build(&m, NULL, (char *)blob + 4, cap - 4), -EINVAL);

    struct vmm_machine bad = m;
    bad.mem = NULL;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);
    struct vmm_memory *empty;
    ck_assert_int_eq(vmm_memory_create(&empty), 0);
    bad.mem = empty;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);
    vmm_memory_destroy(empty);

    bad = m;
    bad.nr_serial = VMM_MACHINE_MAX_SERIAL + 1;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);
    bad = m;
    bad.nr_virtio = VMM_MACHINE_MAX_VIRTIO + 1;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);
    bad = m;
    bad.virtio[1].gsi = 24;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);
    bad = m;
    bad.virtio[1].base = UINT64_MAX - 0xfff;
    ck_assert_int_eq(vmm_fdt_build(&bad, NULL, blob, cap), -EINVAL);

    /* initrd ranges: wrapping, outside guest memory, across the hole */
    struct vmm_fdt_params p = {
        .size = sizeof(struct vmm_fdt_params), .initrd_start = UINT64_MAX - 10, .initrd_size = 20};
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, cap), -EINVAL);
    p = (struct vmm_fdt_params){.size = sizeof(struct vmm_fdt_params),
                                .initrd_start = FX_RAM_SIZE - 0x1000,
                                .initrd_size = 0x2000};
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, cap), -EFAULT);
    p = (struct vmm_fdt_params){.size = sizeof(struct vmm_fdt_params),
                                .initrd_start = HIGH_BASE + HIGH_SIZE,
                                .initrd_size = 1};
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, cap), -EFAULT);
    p = (struct vmm_fdt_params){
        .size = sizeof(struct vmm_fdt_params), .initrd_start = HIGH_BASE, .initrd_size = HIGH_SIZE};
    ck_assert_int_gt(vmm_fdt_build(&m, &p, blob, cap), 0);

    /* Growth convention (vmm/abi.h): a .size of 0 or past the library's
     * struct is refused before anything is written; an older, shorter
     * struct (here without the initrd fields) gets their defaults. */
    p = VMM_INIT(struct vmm_fdt_params, .cmdline = "console=ttyS0", .initrd_start = UINT64_MAX - 10,
                 .initrd_size = 20);
    memset(blob_store, 0xee, sizeof(blob_store));
    p.size = 0;
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, cap), -EINVAL);
    p.size = sizeof(p) + 8;
    ck_assert_int_eq(vmm_fdt_build(&m, &p, blob, cap), -EINVAL);
    ck_assert_uint_eq(((const unsigned char *)blob)[0], 0xee);
    void *made = (void *)1;
    size_t made_size = 1;
    ck_assert_int_eq(vmm_fdt_create(&m, &p, &made, &made_size), -EINVAL);
    ck_assert_ptr_null(made);
    p.size = offsetof(struct vmm_fdt_params, initrd_start);
    ck_assert_int_gt(vmm_fdt_build(&m, &p, blob, cap), 0);
    int chosen = fdt_path_offset(blob, "/chosen");
    ck_assert_int_ge(chosen, 0);
    ck_assert_ptr_nonnull(fdt_getprop(blob, chosen, "bootargs", NULL));
    ck_assert_ptr_null(fdt_getprop(blob, chosen, "linux,initrd-start", NULL));
}
END_TEST

START_TEST(fdt_write_to_guest_memory)
{
    struct vmm_machine m = fx_machine(fx.mem, 2);
    void *b;
    size_t size;
    ck_assert_int_eq(vmm_fdt_create(&m, NULL, &b, &size), 0);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, b, size), (int)size);
    ck_assert_mem_eq(fx.ram + 0x30000, b, size);
    ck_assert(fx_untouched_outside(&fx, 0x30000, 0x30000 + size));
    ck_assert_int_eq(fdt_check_header(fx.ram + 0x30000), 0);

    /* Any alignment of the source blob will do. */
    unsigned char *odd = malloc(size + 1);
    ck_assert_ptr_nonnull(odd);
    memcpy(odd + 1, b, size);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x50000, odd + 1, size), (int)size);
    ck_assert_mem_eq(fx.ram + 0x50000, b, size);
    free(odd);

    memset(fx.ram, FX_CANARY, fx.ram_size);
    /* outside guest memory, or crossing its end */
    ck_assert_int_eq(vmm_fdt_write(fx.mem, FX_RAM_SIZE - size / 2, b, size), -EFAULT);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, UINT64_MAX - 8, b, size), -EFAULT);
    /* a lying or short blob */
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, b, size - 1), -EINVAL);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, b, 16), -EINVAL);
    unsigned char *lie = malloc(size);
    ck_assert_ptr_nonnull(lie);
    memcpy(lie, b, size);
    lie[0] ^= 0xff; /* magic */
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, lie, size), -EINVAL);
    memcpy(lie, b, size);
    fdt_set_totalsize(lie, 0x7fffffff);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, lie, size), -EINVAL);
    memcpy(lie, b, size);
    fdt_set_off_dt_struct(lie, 0xfffffff0);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, lie, size), -EINVAL);
    free(lie);
    ck_assert_int_eq(vmm_fdt_write(NULL, 0x30000, b, size), -EINVAL);
    ck_assert_int_eq(vmm_fdt_write(fx.mem, 0x30000, NULL, size), -EINVAL);
    ck_assert(fx_untouched(&fx));
    free(b);
}
END_TEST

static Suite *fdt_suite(void)
{
    Suite *s = suite_create("fdt");
    TCase *tc = tcase_create("fdt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20); /* trees built many times, 2 MiB of guest RAM */
    tcase_add_test(tc, fdt_tree_reads_back);
    tcase_add_test(tc, fdt_minimal_machine);
    tcase_add_test(tc, fdt_rom_is_not_memory);
    tcase_add_test(tc, fdt_virtio_above_4g_and_many_vcpus);
    tcase_add_test(tc, fdt_create_allocates_exactly);
    tcase_add_test(tc, fdt_small_buffers_are_enospc);
    tcase_add_test(tc, fdt_refuses_bad_input);
    tcase_add_test(tc, fdt_write_to_guest_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(fdt_suite());
}
