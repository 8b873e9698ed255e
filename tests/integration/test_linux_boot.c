/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Linux boot protocols as a guest sees them, on real KVM: the linux_boot
 * test guest, wrapped into a bzImage, booted through its 64-bit entry with a
 * zero page; as an ELF through its PVH note in 32-bit protected mode; and as
 * an ELF through the 64-bit entry with PVH turned off. The guest checks the
 * memory map, command line, initrd bytes, RSDP, setup_data and entry state
 * and reports on COM1 and the exit port.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

#define MEM_MB      64
#define INITRD_SIZE 0x4000u
#define RESV_BASE   0x2800000ull
#define RESV_SIZE   0x10000ull
#define RSDP        0xe0000ull

static const char *guest_file(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", VMM_GUEST_DIR, name);
    return path;
}

/* Boot kernel_file through vmm_linux_boot_setup and run it to its exit. */
static void boot(struct harness *h, enum vmm_irqchip chip, const char *kernel_file, bool no_pvh,
                 bool dtb, enum vmm_linux_protocol want)
{
    harness_init(h, chip, MEM_MB);
    struct vmm_memory *mem = vmm_vm_memory(h->vm);
    static unsigned char initrd[INITRD_SIZE];
    for (unsigned j = 0; j < INITRD_SIZE; j++)
        initrd[j] = (unsigned char)(j * 31 + 7);
    struct vmm_machine machine = {.mem = mem, .nr_vcpus = 1, .nr_reserved = 1};
    machine.reserved[0] = (struct vmm_machine_range){RESV_BASE, RESV_SIZE};
    static const char fake_dtb[] = "fake-dtb";
    char cmdline[256];
    snprintf(cmdline, sizeof(cmdline),
             "libvmm-linux-test mem=0x%x initrd=0x%x rsdp=0x%llx resv=0x%llx resvsize=0x%llx%s",
             MEM_MB << 20, INITRD_SIZE, RSDP, RESV_BASE, RESV_SIZE, dtb ? " dtb=0x9" : "");
    struct vmm_linux_config cfg = {
        .kernel_path = guest_file(kernel_file),
        .initrd = initrd,
        .initrd_size = sizeof(initrd),
        .cmdline = cmdline,
        .machine = &machine,
        .rsdp_addr = RSDP,
        .dtb = dtb ? fake_dtb : NULL,
        .dtb_size = dtb ? sizeof(fake_dtb) : 0,
        .kernel_opts = {.no_pvh = no_pvh},
    };
    struct vmm_linux_boot b;
    int r = vmm_linux_boot_setup(mem, &cfg, &b);
    ck_assert_msg(r == 0, "%s: %d %s", kernel_file, r, b.error);
    ck_assert_int_eq(b.protocol, want);
    struct vmm_vcpu *vcpu;
    ck_assert_int_eq(vmm_vcpu_create(h->vm, 0, &vcpu), 0);
    ck_assert_int_eq(vmm_linux_set_entry(vcpu, &b), 0);
    harness_run(h);
}

static enum vmm_irqchip chip(int i)
{
    return i == 0 ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
}

START_TEST(bzimage_64bit_entry)
{
    struct harness h;
    boot(&h, chip(_i), "linux_boot.bzImage", false, true, VMM_LINUX_BOOT_64);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: 64-bit OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

START_TEST(elf_pvh_entry)
{
    struct harness h;
    boot(&h, chip(_i), "linux_boot.elf", false, false, VMM_LINUX_BOOT_PVH);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: PVH OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

START_TEST(elf_64bit_entry_without_pvh)
{
    struct harness h;
    boot(&h, VMM_IRQCHIP_SPLIT, "linux_boot.elf", true, true, VMM_LINUX_BOOT_64);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: 64-bit OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

/* The guest notices a lie: the host expects a reserved range the map lacks. */
START_TEST(guest_catches_a_wrong_map)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, MEM_MB);
    struct vmm_memory *mem = vmm_vm_memory(h.vm);
    struct vmm_linux_config cfg = {
        .kernel_path = guest_file("linux_boot.elf"),
        .cmdline = "libvmm-linux-test mem=0x4000000 resv=0x2800000 resvsize=0x10000",
    };
    struct vmm_linux_boot b;
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    struct vmm_vcpu *vcpu;
    ck_assert_int_eq(vmm_vcpu_create(h.vm, 0, &vcpu), 0);
    ck_assert_int_eq(vmm_linux_set_entry(vcpu, &b), 0);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 20); /* "map entries" */
    ck_assert_msg(strstr(h.output, "check 20 failed"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("linux_boot");
    TCase *tc = tcase_create("protocols");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, bzimage_64bit_entry, 0, 2);
    tcase_add_loop_test(tc, elf_pvh_entry, 0, 2);
    tcase_add_test(tc, elf_64bit_entry_without_pvh);
    tcase_add_test(tc, guest_catches_a_wrong_map);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
