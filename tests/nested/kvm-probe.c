/* SPDX-License-Identifier: Apache-2.0 */
/* vmm-kvm-probe: says whether this host's /dev/kvm can run the KVM tests directly.
 *
 * Exit 0 and print "direct: <what>" when /dev/kvm opens read-write, reports API version 12 and
 * creates a VM; exit 1 and print "none: <why>" otherwise. "What" names the emulating kvm_pvm,
 * which runs small guests but not Linux, apart from a hardware KVM. Used by the CTest wiring
 * (tests/nested/kvm-batch.sh), the README's demo and run-bench to pick direct or nested runs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int module_loaded(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "/sys/module/%s", name);
    return access(path, F_OK) == 0;
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("none: cannot open /dev/kvm: %s\n", strerror(errno));
        return 1;
    }
    int version = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        printf("none: /dev/kvm reports API version %d, not %d\n", version, KVM_API_VERSION);
        close(kvm);
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        printf("none: KVM_CREATE_VM failed: %s\n", strerror(errno));
        close(kvm);
        return 1;
    }
    close(vm);
    close(kvm);
    if (module_loaded("kvm_pvm"))
        printf("direct: kvm_pvm (KVM's API over an instruction emulator; small guests only)\n");
    else if (module_loaded("kvm_intel") || module_loaded("kvm_amd"))
        printf("direct: %s\n", module_loaded("kvm_intel") ? "kvm_intel" : "kvm_amd");
    else
        printf("direct: /dev/kvm\n");
    return 0;
}
