/* SPDX-License-Identifier: Apache-2.0 */
/* The device tree through dtc: the blob is decompiled with
 * `dtc -I dtb -O dts` (which runs its own checks and warns about malformed
 * nodes) and the source text is checked. Skips (77) without dtc (Debian
 * package device-tree-compiler). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vmm/fdt.h>

#include "check_compat.h"
#include "tables_fixture.h"
#include "tools.h"

static struct fixture fx;
static const char *dir;

static void setup(void)
{
    fx_init(&fx, FX_RAM_SIZE);
    dir = tool_tmpdir();
}

static void teardown(void)
{
    tool_rmdir(dir);
    fx_fini(&fx);
}

#define ASSERT_HAS(text, needle)                                                                   \
    ck_assert_msg(strstr((text), (needle)) != NULL, "missing \"%s\" in:\n%.3000s", (needle), (text))

/* Decompile blob; dtc must succeed without a warning. Returns the
 * normalized source (free it). */
static char *decompile(const void *blob, size_t size)
{
    tool_write_file(dir, "tree.dtb", blob, size);
    int rc = tool_run(dir, "dtc -I dtb -O dts -o tree.dts tree.dtb", "dtc.log");
    char *log = tool_read_file(dir, "dtc.log");
    ck_assert_msg(rc == 0 && log[0] == '\0', "dtc (%d):\n%s", rc, log);
    free(log);
    char *raw = tool_read_file(dir, "tree.dts");
    char *text = tool_normalize(raw);
    free(raw);
    return text;
}

START_TEST(dtc_decompiles_the_tree)
{
    struct vmm_machine m = fx_machine(fx.mem, 3);
    m.nr_reserved = 1;
    m.reserved[0] = (struct vmm_machine_range){.base = 0x9fc00, .size = 0x60400};
    struct vmm_fdt_params p = {
        .size = sizeof(struct vmm_fdt_params),
        .cmdline = "console=ttyS0 reboot=k",
        .initrd_start = 0x100000,
        .initrd_size = 0x20000,
    };
    void *blob;
    size_t size;
    ck_assert_int_eq(vmm_fdt_create(&m, &p, &blob, &size), 0);
    char *dts = decompile(blob, size);
    free(blob);

    ASSERT_HAS(dts, "/memreserve/ 0x000000000009fc00 0x0000000000060400;");
    ASSERT_HAS(dts, "/ { compatible = \"linux,dummy-virt\"; model = \"libvmm\"; "
                    "#address-cells = <0x02>; #size-cells = <0x02>; "
                    "interrupt-parent = <0x01>;");
    ASSERT_HAS(dts, "chosen { bootargs = \"console=ttyS0 reboot=k\"; "
                    "linux,initrd-start = <0x00 0x100000>; linux,initrd-end = <0x00 0x120000>; "
                    "stdout-path = \"/isa@i0/serial@i3f8\"; };");
    ASSERT_HAS(dts, "memory@0 { device_type = \"memory\"; reg = <0x00 0x00 0x00 0x200000>; };");
    ASSERT_HAS(dts, "cpus { #address-cells = <0x01>; #size-cells = <0x00>; "
                    "cpu@0 { device_type = \"cpu\"; reg = <0x00>; }; "
                    "cpu@1 { device_type = \"cpu\"; reg = <0x01>; }; "
                    "cpu@2 { device_type = \"cpu\"; reg = <0x02>; }; };");
    ASSERT_HAS(dts, "interrupt-controller@fee00000 { compatible = \"intel,ce4100-lapic\"; "
                    "reg = <0x00 0xfee00000 0x00 0x1000>; intel,virtual-wire-mode; };");
    ASSERT_HAS(dts, "interrupt-controller@fec00000 { compatible = \"intel,ce4100-ioapic\"; "
                    "reg = <0x00 0xfec00000 0x00 0x1000>; interrupt-controller; "
                    "#interrupt-cells = <0x02>; #address-cells = <0x00>; phandle = <0x01>; };");
    ASSERT_HAS(dts, "isa@i0 { compatible = \"isa\"; #address-cells = <0x02>; "
                    "#size-cells = <0x01>; ranges = <0x01 0x00 0x00 0x00 0x10000>; "
                    "serial@i3f8 { compatible = \"ns16550a\"; reg = <0x01 0x3f8 0x08>; "
                    "clock-frequency = <0x1c2000>; interrupts = <0x04 0x03>; }; "
                    "serial@i2f8 {");
    ASSERT_HAS(dts, "virtio_mmio@d0000000 { compatible = \"virtio,mmio\"; "
                    "reg = <0x00 0xd0000000 0x00 0x1000>; interrupts = <0x05 0x03>; "
                    "dma-coherent; };");
    ASSERT_HAS(dts, "virtio_mmio@d0001000 {");
    ASSERT_HAS(dts, "virtio_mmio@d0002000 { compatible = \"virtio,mmio\"; "
                    "reg = <0x00 0xd0002000 0x00 0x1000>; interrupts = <0x10 0x03>;");
    ck_assert_uint_eq(count_of(dts, "\"virtio,mmio\""), 3);
    ck_assert_uint_eq(count_of(dts, "device_type = \"cpu\""), 3);
    free(dts);
}
END_TEST

/* The check itself works: a broken tree is refused. */
START_TEST(dtc_refuses_a_broken_blob)
{
    struct vmm_machine m = fx_machine(fx.mem, 1);
    void *blob;
    size_t size;
    ck_assert_int_eq(vmm_fdt_create(&m, NULL, &blob, &size), 0);
    /* The first token of the structure block (off_dt_struct, big-endian at
     * header offset 8) becomes an unknown one. */
    unsigned char *b = blob;
    uint32_t off = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
    ck_assert_uint_lt(off + 4, size);
    b[off + 3] = 0x7f;
    tool_write_file(dir, "bad.dtb", blob, size);
    free(blob);
    int rc = tool_run(dir, "dtc -I dtb -O dts -o bad.dts bad.dtb", "bad.log");
    char *log = tool_read_file(dir, "bad.log");
    ck_assert_msg(rc != 0 || log[0] != '\0', "dtc accepted a broken blob");
    free(log);
}
END_TEST

static Suite *dtc_suite(void)
{
    Suite *s = suite_create("fdt_dtc");
    TCase *tc = tcase_create("dtc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60); /* runs dtc through the shell */
    tcase_add_test(tc, dtc_decompiles_the_tree);
    tcase_add_test(tc, dtc_refuses_a_broken_blob);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tool_require("dtc", "device-tree-compiler");
    return vmm_test_run_suite(dtc_suite());
}
