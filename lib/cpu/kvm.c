/* SPDX-License-Identifier: Apache-2.0 */
/* /dev/kvm: opening it, checking the API version and capabilities, and
 * naming exits for error messages. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cpu_internal.h"

#define KVM_API_EXPECTED 12

int vmm_kvm_ioctl(int fd, unsigned long req, void *arg)
{
    int r;
    do {
        r = ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int vmm_kvm_open(const char *path, int *kvm_fd)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        vmm_log_error("cannot open %s: %s", path, vmm_strerror(err));
        return err;
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_EXPECTED) {
        vmm_log_error("%s speaks KVM API version %d, libvmm needs %d", path, version,
                      KVM_API_EXPECTED);
        close(fd);
        return -ENOTSUP;
    }
    *kvm_fd = fd;
    return 0;
}

struct kvm_cap_need {
    int cap;
    const char *name;
};

#define CAP(c)                                                                                     \
    {                                                                                              \
        c, #c                                                                                      \
    }

/* What every VM needs, whatever its interrupt controller. */
#if defined(__aarch64__)
/* arm64: registers through ONE_REG, PSCI 0.2 in KVM, the vGIC as a device;
 * the split irqchip does not exist there (vmm_kvm_check_caps refuses it). */
static const struct kvm_cap_need caps_common[] = {
    CAP(KVM_CAP_USER_MEMORY),  CAP(KVM_CAP_IMMEDIATE_EXIT), CAP(KVM_CAP_IRQ_ROUTING),
    CAP(KVM_CAP_IRQFD),        CAP(KVM_CAP_IOEVENTFD),      CAP(KVM_CAP_ONE_REG),
    CAP(KVM_CAP_ARM_PSCI_0_2), CAP(KVM_CAP_DEVICE_CTRL),    CAP(KVM_CAP_MP_STATE),
};
static const struct kvm_cap_need caps_split[] = {
    CAP(KVM_CAP_SPLIT_IRQCHIP),
};
static const struct kvm_cap_need caps_kernel[] = {
    CAP(KVM_CAP_IRQCHIP),
};
#else
static const struct kvm_cap_need caps_common[] = {
    CAP(KVM_CAP_USER_MEMORY),  CAP(KVM_CAP_IMMEDIATE_EXIT), CAP(KVM_CAP_IRQ_ROUTING),
    CAP(KVM_CAP_IRQFD),        CAP(KVM_CAP_IOEVENTFD),      CAP(KVM_CAP_EXT_CPUID),
    CAP(KVM_CAP_SET_TSS_ADDR), CAP(KVM_CAP_MP_STATE),
};
static const struct kvm_cap_need caps_split[] = {
    CAP(KVM_CAP_SPLIT_IRQCHIP),
    CAP(KVM_CAP_SIGNAL_MSI),
};
static const struct kvm_cap_need caps_kernel[] = {
    CAP(KVM_CAP_IRQCHIP),
    CAP(KVM_CAP_PIT2),
    CAP(KVM_CAP_IRQ_INJECT_STATUS),
};
#endif

static int check_list(int fd, const struct kvm_cap_need *caps, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
            vmm_log_error("KVM lacks a capability libvmm needs: %s", caps[i].name);
            return -ENOTSUP;
        }
    }
    return 0;
}

int vmm_kvm_check_caps(int kvm_fd, int vm_fd, enum vmm_irqchip irqchip)
{
    /* Ask the VM where we have one: some capabilities are per VM type. */
    int fd = vm_fd >= 0 ? vm_fd : kvm_fd;
    int r = check_list(fd, caps_common, VMM_ARRAY_SIZE(caps_common));
    if (r)
        return r;
    if (irqchip == VMM_IRQCHIP_SPLIT)
        return check_list(fd, caps_split, VMM_ARRAY_SIZE(caps_split));
    return check_list(fd, caps_kernel, VMM_ARRAY_SIZE(caps_kernel));
}

const char *vmm_kvm_exit_name(uint32_t reason)
{
    static const char *const names[] = {
        [KVM_EXIT_UNKNOWN] = "UNKNOWN",
        [KVM_EXIT_EXCEPTION] = "EXCEPTION",
        [KVM_EXIT_IO] = "IO",
        [KVM_EXIT_HYPERCALL] = "HYPERCALL",
        [KVM_EXIT_DEBUG] = "DEBUG",
        [KVM_EXIT_HLT] = "HLT",
        [KVM_EXIT_MMIO] = "MMIO",
        [KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
        [KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
        [KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
        [KVM_EXIT_INTR] = "INTR",
        [KVM_EXIT_SET_TPR] = "SET_TPR",
        [KVM_EXIT_TPR_ACCESS] = "TPR_ACCESS",
        [KVM_EXIT_NMI] = "NMI",
        [KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
        [KVM_EXIT_OSI] = "OSI",
        [KVM_EXIT_PAPR_HCALL] = "PAPR_HCALL",
        [KVM_EXIT_WATCHDOG] = "WATCHDOG",
        [KVM_EXIT_EPR] = "EPR",
        [KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
        [KVM_EXIT_IOAPIC_EOI] = "IOAPIC_EOI",
        [KVM_EXIT_HYPERV] = "HYPERV",
        [KVM_EXIT_X86_RDMSR] = "X86_RDMSR",
        [KVM_EXIT_X86_WRMSR] = "X86_WRMSR",
    };
    if (reason < VMM_ARRAY_SIZE(names) && names[reason])
        return names[reason];
    return "?";
}
