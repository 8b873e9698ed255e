/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection through a VM's set-up on /dev/kvm: creating the VM (its
 * KVM ioctls, irqchip, event loop), its memory, every platform device, the
 * virtio devices (blk over a real io_uring) and its vCPUs, with every
 * allocation and set-up system call failing in turn (fault.h). Each time the
 * failing call returns -errno, and vmm_vm_destroy of what was made leaves no
 * memory (LeakSanitizer, sanitizer build) and no fd behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/vcpu.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_rng.h>
#include <vmm/vm.h>

#include "check_compat.h"
#include "fault.h"

static struct vmm_vm *vm;
static char img[PATH_MAX];

static int vm_op(void *ctx)
{
    (void)ctx;
    int r = vmm_vm_create(NULL, &vm);
    if (r < 0)
        return r;
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 4 << 20);
    struct vmm_virtio_blk_config bc = VMM_INIT(struct vmm_virtio_blk_config, .path = img);
    struct vmm_virtio_console_config cc =
        VMM_INIT(struct vmm_virtio_console_config, .in_fd = -1, .out_fd = -1);
    struct vmm_vcpu *vcpu;
    uint64_t base = VMM_X86_VIRTIO_MMIO_BASE;
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0 ||
        (r = vmm_vm_add_uart(vm, VMM_COM1_PORT, VMM_COM1_IRQ, NULL, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) < 0 || (r = vmm_vm_add_rtc(vm)) < 0 ||
        (r = vmm_vm_add_i8042(vm)) < 0 || (r = vmm_vm_add_acpi_pm(vm)) < 0 ||
        (r = vmm_vm_add_virtio_blk(vm, base, 5, &bc, NULL)) < 0 ||
        (r = vmm_vm_add_virtio_console(vm, base + 0x1000, 6, &cc, NULL)) < 0 ||
        (r = vmm_vm_add_virtio_rng(vm, base + 0x2000, 7, NULL, NULL)) < 0 ||
        (r = vmm_vcpu_create(vm, 0, &vcpu)) < 0 || (r = vmm_vcpu_create(vm, 1, &vcpu)) < 0) {
        vmm_vm_destroy(vm);
        return r;
    }
    return 0;
}

static void vm_cleanup(void *ctx)
{
    (void)ctx;
    vmm_vm_destroy(vm);
}

START_TEST(test_vm_setup)
{
    int fd = mkstemp(vmm_test_tmpname(img, sizeof(img), "fault-kvm-img-"));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
    close(fd);
    struct fault_case c = {"vm", vm_op, vm_cleanup, NULL};
    ck_assert_uint_gt(fault_walk(&c), 20);
    unlink(img);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("fault-kvm");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vm_setup);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
