/* SPDX-License-Identifier: Apache-2.0 */
/* The smallest useful embedding of libvmm: run a guest program on one vCPU
 * with a serial console on stdout, and report how it ended. */
#include <stdio.h>
#include <vmm/vmm.h>

static void log_line(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm %s: %s\n", vmm_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GUEST.elf\n", argv[0]);
        return 2;
    }
    vmm_log_set_handler(log_line, NULL, VMM_LOG_WARN);

    struct vmm_vm *vm;
    int r = vmm_vm_create(NULL, &vm); /* split irqchip by default */
    if (r < 0) {
        fprintf(stderr, "create VM: %s\n", vmm_strerror(r));
        return 1;
    }
    struct vmm_region_config ram = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = 64 << 20};
    struct vmm_uart_config console = VMM_INIT(struct vmm_uart_config, .out_fd = 1, .in_fd = -1);
    struct vmm_load_result image = VMM_INIT(struct vmm_load_result);
    struct vmm_vcpu *vcpu;
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0 ||
        (r = vmm_elf_load_file(vmm_vm_memory(vm), argv[1], NULL, &image)) < 0 ||
        (r = vmm_vm_add_uart(vm, VMM_COM1_PORT, VMM_COM1_IRQ, &console, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) < 0 ||
        (r = vmm_vcpu_create(vm, 0, &vcpu)) < 0)
        goto out;

    struct vmm_x86_boot_state boot =
        VMM_INIT(struct vmm_x86_boot_state, .entry = image.entry, .arg0 = 0, .arg1 = 1);
    if ((r = vmm_vcpu_set_boot_state(vcpu, &boot)) < 0)
        goto out;

    /* One vCPU: run it right here on this thread. */
    struct vmm_exit exit = VMM_INIT(struct vmm_exit);
    if ((r = vmm_vcpu_run(vcpu, &exit)) < 0)
        goto out;
    printf("guest ended: %s, status %d (%s)\n", vmm_exit_reason_name(exit.reason), exit.status,
           exit.detail);
    r = exit.reason == VMM_EXIT_GUEST_EXIT ? exit.status : 1;
out:
    if (r < 0)
        fprintf(stderr, "error: %s%s%s\n", vmm_strerror(r), image.error[0] ? ": " : "",
                image.error[0] ? image.error : "");
    vmm_vm_destroy(vm);
    return r < 0 ? 1 : r;
}
