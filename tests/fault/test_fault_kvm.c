/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection through a VM's set-up on /dev/kvm: creating the VM (its
 * KVM ioctls, irqchip, event loop), its memory, every platform device, the
 * virtio devices (blk over a real io_uring) and its vCPUs, with every
 * allocation and set-up system call failing in turn (fault.h). Each time the
 * failing call returns -errno, and vmm_vm_destroy of what was made leaves no
 * memory (LeakSanitizer, sanitizer build) and no fd behind. A second walk
 * takes the newer devices: virtio-net on a real tap, virtio-vsock on a
 * real Unix socket and virtio-balloon, on virtio-mmio and as virtio-pci
 * functions of a PCI root complex (vsock's socket path must be gone after
 * each failure, or the next run could not bind it).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vmm/devices.h>
#include <vmm/machine.h>
#include <vmm/pci.h>
#include <vmm/vcpu.h>
#include <vmm/virtio_balloon.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_net.h>
#include <vmm/virtio_pci.h>
#include <vmm/virtio_rng.h>
#include <vmm/virtio_vsock.h>
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

static char dir[PATH_MAX], sock_mmio[PATH_MAX], sock_pci[PATH_MAX];
static char tap_mmio[16], tap_pci[16];

/* On pci, a function made from dev (whose description a failing create
 * left nothing of). */
static int pci_add(struct vmm_pci_bus *pci, int r, const struct vmm_virtio_device *dev)
{
    return r < 0 ? r : vmm_virtio_pci_add(pci, NULL, dev, NULL);
}

static int newer_devices_op(void *ctx)
{
    (void)ctx;
    int r = vmm_vm_create(NULL, &vm);
    if (r < 0)
        return r;
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 16 << 20);
    struct vmm_virtio_net_config vm_net = VMM_INIT(struct vmm_virtio_net_config, .tap = tap_mmio);
    struct vmm_virtio_net_config pci_net = VMM_INIT(struct vmm_virtio_net_config, .tap = tap_pci);
    struct vmm_virtio_vsock_config vm_vsock =
        VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = 3, .path = sock_mmio);
    struct vmm_virtio_vsock_config pci_vsock =
        VMM_INIT(struct vmm_virtio_vsock_config, .guest_cid = 4, .path = sock_pci);
    struct vmm_virtio_balloon_config bc =
        VMM_INIT(struct vmm_virtio_balloon_config, .deflate_on_oom = true);
    struct vmm_pci_bus *pci;
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    uint64_t base = VMM_X86_VIRTIO_MMIO_BASE;
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0 ||
        (r = vmm_vm_add_virtio_net(vm, base, 5, &vm_net, NULL)) < 0 ||
        (r = vmm_vm_add_virtio_vsock(vm, base + 0x1000, 6, &vm_vsock, NULL)) < 0 ||
        (r = vmm_vm_add_virtio_balloon(vm, base + 0x2000, 7, &bc, NULL)) < 0 ||
        (r = vmm_vm_add_pci(vm, NULL, &pci)) < 0 ||
        (r = pci_add(pci, vmm_virtio_net_create(&pci_net, &dev), &dev)) < 0 ||
        (r = pci_add(pci, vmm_virtio_vsock_create(&pci_vsock, &dev), &dev)) < 0 ||
        (r = pci_add(pci, vmm_virtio_balloon_create(&bc, &dev), &dev)) < 0) {
        vmm_vm_destroy(vm);
        return r;
    }
    return 0;
}

START_TEST(test_newer_devices)
{
    /* The taps (made by the devices, gone with them) in a network namespace
     * of this test's own where it can make one. */
    ck_assert_msg(access("/dev/net/tun", R_OK | W_OK) == 0, "no /dev/net/tun: %s", strerror(errno));
    int id = unshare(CLONE_NEWNET) == 0 ? 0 : (int)getpid() % 100000;
    snprintf(tap_mmio, sizeof(tap_mmio), "vmmfm%d", id);
    snprintf(tap_pci, sizeof(tap_pci), "vmmfp%d", id);
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "fault-kvm-")));
    vmm_test_path(sock_mmio, sizeof(sock_mmio), dir, "m.sock");
    vmm_test_path(sock_pci, sizeof(sock_pci), dir, "p.sock");
    struct fault_case c = {"newer devices", newer_devices_op, vm_cleanup, NULL};
    ck_assert_uint_gt(fault_walk(&c), 20);
    ck_assert_int_eq(rmdir(dir), 0); /* the devices removed their sockets */
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("fault-kvm");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vm_setup);
    tcase_add_test(tc, test_newer_devices);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
