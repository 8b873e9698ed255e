/* SPDX-License-Identifier: Apache-2.0 */
/* Uses the installed headers and library: prints the version, checks a
 * guest-memory round trip, and, where /dev/kvm opens, runs a tiny guest with
 * the step-by-step loop and a port device of its own that the library never
 * sees registered (without /dev/kvm that part is skipped, saying so). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vmm/vmm.h>

#define ASK_PORT 0x560 /* the consumer's device: IN gives 40 + the OUTs seen */
#define CODE_GPA 0x100000

/* Steps the guest, answering ASK_PORT; returns the guest's exit status or a
 * -errno. */
static int step_guest(struct vmm_vcpu *vcpu)
{
    unsigned outs = 0;
    struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
    for (;;) {
        int r = vmm_vcpu_run_once(vcpu, &ex);
        if (r < 0)
            return r;
        if (ex.kind == VMM_VCPU_EXIT_END)
            return ex.end.reason == VMM_EXIT_GUEST_EXIT ? ex.end.status : -EIO;
        if (ex.kind == VMM_VCPU_EXIT_IO && ex.io.port == ASK_PORT && ex.io.write) {
            outs += ex.io.count;
        } else if (ex.kind == VMM_VCPU_EXIT_IO && ex.io.port == ASK_PORT) {
            uint32_t v = 40 + outs;
            memcpy(ex.io.data, &v, ex.io.size < sizeof(v) ? ex.io.size : sizeof(v));
        } else if (ex.kind != VMM_VCPU_EXIT_HANDLED) {
            fprintf(stderr, "unexpected exit: %s\n", vmm_vcpu_exit_kind_name(ex.kind));
            return -EIO;
        }
    }
}

static int run_guest(void)
{
    /* mov dx, ASK_PORT; out dx, al; out dx, al; in eax, dx; exit with al */
    static const uint8_t code[] = {0x66, 0xba, ASK_PORT & 0xff, ASK_PORT >> 8, 0xee, 0xee,
                                   0xed, 0xe6, VMM_EXIT_PORT,   0xf4};
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("no usable /dev/kvm: the step loop is not run\n");
        return 0;
    }
    close(fd);
    struct vmm_vm *vm;
    int r = vmm_vm_create(NULL, &vm);
    if (r < 0)
        return r;
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 2 << 20);
    struct vmm_x86_boot_state boot = VMM_INIT(struct vmm_x86_boot_state, .entry = CODE_GPA);
    struct vmm_vcpu *vcpu;
    if ((r = vmm_vm_add_memory(vm, &ram)) >= 0 &&
        (r = vmm_memory_write(vmm_vm_memory(vm), CODE_GPA, code, sizeof(code))) >= 0 &&
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) >= 0 &&
        (r = vmm_vcpu_create(vm, 0, &vcpu)) >= 0 && (r = vmm_vcpu_set_boot_state(vcpu, &boot)) >= 0)
        r = step_guest(vcpu);
    vmm_vm_destroy(vm);
    if (r >= 0)
        printf("step loop: the guest was answered %d\n", r);
    return r == 42 ? 0 : r < 0 ? r : -EIO;
}

int main(void)
{
    struct vmm_memory *mem;
    static char ram[8192];
    char out[6] = "";
    if (vmm_memory_create(&mem) < 0 || vmm_memory_add_external(mem, 0x1000, sizeof(ram), ram) < 0 ||
        vmm_memory_write(mem, 0x2000, "hello", 6) < 0 || vmm_memory_read(mem, 0x2000, out, 6) < 0)
        return 1;
    vmm_memory_destroy(mem);
    printf("libvmm %s: %s\n", vmm_version_string(), out);
    int r = run_guest();
    if (r < 0)
        fprintf(stderr, "step loop: %s\n", vmm_strerror(r));
    return strcmp(out, "hello") != 0 || r < 0;
}
