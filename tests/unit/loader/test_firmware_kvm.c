/* SPDX-License-Identifier: Apache-2.0 */
/* The firmware tables as a guest sees them, on real KVM: the "firmware" test
 * guest scans low memory for the ACPI RSDP and the MP floating pointer the
 * way a BIOS-booted kernel does, checks every checksum, and exits with the
 * number of local APICs the MADT lists (the MP table must agree). */
#include <stdio.h>
#include <string.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "integration/harness.h"

static void run_with_vcpus(unsigned vcpus)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 4);
    struct vmm_memory *mem = vmm_vm_memory(h.vm);
    struct vmm_machine m = {
        .size = sizeof(struct vmm_machine),
        .nr_vcpus = vcpus,
        .mem = mem,
        .nr_serial = 1,
        .serial = {{.port = 0x3f8, .gsi = 4}},
        .nr_virtio = 2,
        .virtio = {{.base = VMM_X86_VIRTIO_MMIO_BASE, .size = VMM_X86_VIRTIO_MMIO_SIZE, .gsi = 5},
                   {.base = VMM_X86_VIRTIO_MMIO_BASE + VMM_X86_VIRTIO_MMIO_SIZE,
                    .size = VMM_X86_VIRTIO_MMIO_SIZE,
                    .gsi = 16}},
        .i8042 = true,
    };
    struct vmm_acpi_result acpi = VMM_INIT(struct vmm_acpi_result);
    struct vmm_mptable_result mp = VMM_INIT(struct vmm_mptable_result);
    ck_assert_int_gt(vmm_acpi_write(mem, &m, NULL, &acpi), 0);
    ck_assert_int_gt(vmm_mptable_write(mem, &m, NULL, &mp), 0);

    harness_load_guest(&h, "firmware", vcpus);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT, "exit %s, output: %s",
                  vmm_exit_reason_name(h.exit.reason), h.output);
    ck_assert_msg(h.exit.status == (int)vcpus, "status 0x%x, output: %s", h.exit.status, h.output);
    char want[128];
    snprintf(want, sizeof(want),
             "firmware: MADT lists %u local APICs, MP table %u processors, %u vCPUs\n", vcpus,
             vcpus, vcpus);
    ck_assert_msg(strstr(h.output, want), "output: %s", h.output);
    harness_fini(&h);
}

START_TEST(guest_finds_the_tables_with_one_vcpu)
{
    run_with_vcpus(1);
}
END_TEST

START_TEST(guest_finds_the_tables_with_three_vcpus)
{
    run_with_vcpus(3);
}
END_TEST

/* Without tables the guest says so instead of counting garbage. */
START_TEST(guest_without_tables_finds_none)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 4);
    harness_load_guest(&h, "firmware", 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 0xf1);
    ck_assert_msg(strstr(h.output, "ACPI tables not usable"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

static Suite *firmware_suite(void)
{
    Suite *s = suite_create("firmware_kvm");
    TCase *tc = tcase_create("guest");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, guest_finds_the_tables_with_one_vcpu);
    tcase_add_test(tc, guest_finds_the_tables_with_three_vcpus);
    tcase_add_test(tc, guest_without_tables_finds_none);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vmm_test_require_kvm();
    return vmm_test_run_suite(firmware_suite());
}
