/* SPDX-License-Identifier: Apache-2.0 */
/* The arm64 device tree through dtc: decompiled with `dtc -I dtb -O dts`
 * (no warning allowed) and every node an arm64 kernel needs checked in the
 * source text. Skips (77) without dtc (device-tree-compiler). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vmm/arm64.h>

#include "check_compat.h"
#include "tools.h"

#define RAM_SIZE (4u << 20)

static const char *dir;
static struct vmm_memory *mem;
static uint8_t *ram;

static void setup(void)
{
    dir = tool_tmpdir();
    ram = calloc(1, RAM_SIZE);
    ck_assert_ptr_nonnull(ram);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, VMM_ARM64_RAM_BASE, RAM_SIZE, ram), 0);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(ram);
    tool_rmdir(dir);
}

#define ASSERT_HAS(text, needle)                                                                   \
    ck_assert_msg(strstr((text), (needle)) != NULL, "missing \"%s\" in:\n%.4000s", (needle), (text))

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

START_TEST(the_tree_has_what_arm64_linux_needs)
{
    struct vmm_arm64_machine m =
        VMM_INIT(struct vmm_arm64_machine, .nr_vcpus = 2, .mem = mem, .uart = true, .nr_virtio = 2);
    m.virtio[0] = (struct vmm_machine_virtio){0x0a000000, 0x1000, 16};
    m.virtio[1] = (struct vmm_machine_virtio){0x0a001000, 0x1000, 17};
    struct vmm_fdt_params p = VMM_INIT(struct vmm_fdt_params, .cmdline = "console=ttyAMA0",
                                       .initrd_start = 0x40100000, .initrd_size = 0x1000);
    void *blob;
    size_t size;
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, &p, &blob, &size), 0);
    char *dts = decompile(blob, size);
    free(blob);

    ASSERT_HAS(dts, "/ { compatible = \"linux,dummy-virt\"; model = \"libvmm\"; "
                    "#address-cells = <0x02>; #size-cells = <0x02>; interrupt-parent = <0x01>;");
    ASSERT_HAS(dts, "chosen { bootargs = \"console=ttyAMA0\"; "
                    "linux,initrd-start = <0x00 0x40100000>; linux,initrd-end = <0x00 0x40101000>; "
                    "stdout-path = \"/pl011@9000000\"; };");
    ASSERT_HAS(dts, "memory@40000000 { device_type = \"memory\"; "
                    "reg = <0x00 0x40000000 0x00 0x400000>; };");
    ASSERT_HAS(dts, "cpus { #address-cells = <0x01>; #size-cells = <0x00>; "
                    "cpu@0 { device_type = \"cpu\"; compatible = \"arm,armv8\"; "
                    "enable-method = \"psci\"; reg = <0x00>; }; "
                    "cpu@1 { device_type = \"cpu\"; compatible = \"arm,armv8\"; "
                    "enable-method = \"psci\"; reg = <0x01>; }; };");
    ASSERT_HAS(dts, "psci { compatible = \"arm,psci-0.2\\0arm,psci\"; method = \"hvc\"; };");
    ASSERT_HAS(dts, "timer { compatible = \"arm,armv8-timer\"; "
                    "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>; "
                    "always-on; };");
    /* Two vCPUs: 2 x 128 KiB of redistributors. */
    ASSERT_HAS(dts,
               "intc@8000000 { compatible = \"arm,gic-v3\"; #interrupt-cells = <0x03>; "
               "#address-cells = <0x00>; interrupt-controller; #redistributor-regions = <0x01>; "
               "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>; "
               "phandle = <0x01>; };");
    ASSERT_HAS(dts, "apb-pclk { compatible = \"fixed-clock\"; #clock-cells = <0x00>; "
                    "clock-frequency = <0x16e3600>; clock-output-names = \"clk24mhz\"; "
                    "phandle = <0x02>; };");
    ASSERT_HAS(dts, "pl011@9000000 { compatible = \"arm,pl011\\0arm,primecell\"; "
                    "reg = <0x00 0x9000000 0x00 0x1000>; interrupts = <0x00 0x01 0x04>; "
                    "clocks = <0x02 0x02>; clock-names = \"uartclk\\0apb_pclk\"; };");
    ASSERT_HAS(dts, "virtio_mmio@a000000 { compatible = \"virtio,mmio\"; "
                    "reg = <0x00 0xa000000 0x00 0x1000>; interrupts = <0x00 0x10 0x01>; "
                    "dma-coherent; };");
    ASSERT_HAS(dts, "virtio_mmio@a001000 { compatible = \"virtio,mmio\"; "
                    "reg = <0x00 0xa001000 0x00 0x1000>; interrupts = <0x00 0x11 0x01>; "
                    "dma-coherent; };");
    free(dts);
}
END_TEST

/* Without a UART: no node and no stdout-path; bad machines are refused. */
START_TEST(options_and_refusals)
{
    struct vmm_arm64_machine m = VMM_INIT(struct vmm_arm64_machine, .nr_vcpus = 1, .mem = mem);
    void *blob;
    size_t size;
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, NULL, &blob, &size), 0);
    char *dts = decompile(blob, size);
    free(blob);
    ck_assert_ptr_null(strstr(dts, "pl011"));
    ck_assert_ptr_null(strstr(dts, "stdout-path"));
    free(dts);

    m.nr_vcpus = 0;
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, NULL, &blob, &size), -EINVAL);
    ck_assert_ptr_null(blob);
    m.nr_vcpus = 1;
    m.nr_virtio = 1;
    m.virtio[0] = (struct vmm_machine_virtio){0x0a000000, 0x1000, 96}; /* past the vGIC's SPIs */
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, NULL, &blob, &size), -EINVAL);
    m.virtio[0] = (struct vmm_machine_virtio){UINT64_MAX - 10, 0x1000, 16}; /* wraps */
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, NULL, &blob, &size), -EINVAL);
    m.nr_virtio = 0;
    struct vmm_fdt_params p =
        VMM_INIT(struct vmm_fdt_params, .initrd_start = 0x10000000, .initrd_size = 0x1000);
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, &p, &blob, &size), -EFAULT);
    m.size = 0;
    ck_assert_int_eq(vmm_arm64_fdt_create(&m, NULL, &blob, &size), -EINVAL);
}
END_TEST

static Suite *dtc_suite(void)
{
    Suite *s = suite_create("arm64_dtc");
    TCase *tc = tcase_create("dtc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60); /* runs dtc through the shell */
    tcase_add_test(tc, the_tree_has_what_arm64_linux_needs);
    tcase_add_test(tc, options_and_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tool_require("dtc", "device-tree-compiler");
    return vmm_test_run_suite(dtc_suite());
}
