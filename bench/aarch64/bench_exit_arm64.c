/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-exit cost on arm64: a guest stores to an MMIO address N times (each
 * store one KVM_EXIT_MMIO), then powers off through PSCI. Timed through
 * libvmm (vmm_vcpu_run, the store reaching a device with an empty write
 * callback on the MMIO bus) and through a raw-KVM floor in this program
 * (KVM_RUN in a loop that ignores the exit), same guest, same process, one
 * after the other in each round. The raw VM has no vGIC, libvmm's has one.
 *
 *   bench_exit_arm64 [EXITS [ROUNDS]]      (defaults 20000 and 3; at most 64 rounds)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <vmm/arm64.h>
#include <vmm/vmm.h>

#define RAM      VMM_ARM64_RAM_BASE
#define RAM_SIZE (2u << 20)
#define MMIO     0x0c000000ull

/* loop: str w1, [x0]; subs x2, x2, #1; b.ne loop;
 *       mov x0, #0x84000008 (PSCI SYSTEM_OFF); hvc #0; b . */
static const uint32_t guest[] = {0xb9000001, 0xf1000442, 0x54ffffc1, 0xd2800100,
                                 0xf2b08000, 0xd4000002, 0x14000000};

#define CORE_REG(field)                                                                            \
    (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |                                         \
     (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int set_reg(int fd, uint64_t id, uint64_t v)
{
    struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&v};
    return ioctl(fd, KVM_SET_ONE_REG, &r);
}

/* The floor: ns per exit, or a negative errno. */
static double raw_run(unsigned long exits, unsigned long *seen)
{
    double t = -EIO;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = -1, vcpu = -1;
    void *mem = MAP_FAILED;
    struct kvm_run *run = MAP_FAILED;
    int run_size = 0;
    if (kvm < 0 || (vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0)
        goto out;
    mem = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        goto out;
    memcpy(mem, guest, sizeof(guest));
    struct kvm_userspace_memory_region region = {.slot = 0,
                                                 .guest_phys_addr = RAM,
                                                 .memory_size = RAM_SIZE,
                                                 .userspace_addr = (uint64_t)(uintptr_t)mem};
    struct kvm_vcpu_init init;
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ||
        (vcpu = ioctl(vm, KVM_CREATE_VCPU, 0)) < 0 ||
        ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init) < 0)
        goto out;
    init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
    run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) < 0 || run_size <= 0)
        goto out;
    run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED || set_reg(vcpu, CORE_REG(regs.pstate), 0x3c5) < 0 ||
        set_reg(vcpu, CORE_REG(regs.pc), RAM) < 0 ||
        set_reg(vcpu, CORE_REG(regs.regs[0]), MMIO) < 0 ||
        set_reg(vcpu, CORE_REG(regs.regs[2]), exits) < 0)
        goto out;
    *seen = 0;
    double t0 = now_ns();
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (run->exit_reason == KVM_EXIT_MMIO) {
            ++*seen;
            continue;
        }
        break;
    }
    t = (now_ns() - t0) / (double)exits;
    if (run->exit_reason != KVM_EXIT_SYSTEM_EVENT)
        t = -EIO;
out:
    if (run != MAP_FAILED)
        munmap(run, (size_t)run_size);
    if (vcpu >= 0)
        close(vcpu);
    if (vm >= 0)
        close(vm);
    if (mem != MAP_FAILED)
        munmap(mem, RAM_SIZE);
    if (kvm >= 0)
        close(kvm);
    return t;
}

static void empty_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
}

static void empty_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
}

static const struct vmm_bus_ops empty_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = empty_read, .write = empty_write};

static double libvmm_run(unsigned long exits, uint64_t *seen)
{
    struct vmm_vm *vm;
    struct vmm_vcpu *vcpu;
    int r = vmm_vm_create(&VMM_INIT(struct vmm_vm_config, .irqchip = VMM_IRQCHIP_KERNEL), &vm);
    if (r < 0)
        return r;
    double t = -EIO;
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .gpa = RAM, .len = RAM_SIZE);
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0 || (r = vmm_vcpu_create(vm, 0, &vcpu)) < 0 ||
        (r = vmm_memory_write(vmm_vm_memory(vm), RAM, guest, sizeof(guest))) < 0 ||
        (r = vmm_bus_register(vmm_vm_mmio_bus(vm), MMIO, 4, &empty_ops, NULL)) < 0 ||
        (r = vmm_vcpu_set_arm64_entry(vcpu, RAM, MMIO)) < 0 ||
        (r = vmm_vcpu_set_one_reg(vcpu, CORE_REG(regs.regs[2]), exits)) < 0) {
        t = r;
        goto out;
    }
    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    uint64_t before = vmm_vcpu_exit_count(vcpu);
    double t0 = now_ns();
    r = vmm_vcpu_run(vcpu, &ex);
    t = (now_ns() - t0) / (double)exits;
    *seen = vmm_vcpu_exit_count(vcpu) - before;
    if (r < 0 || ex.reason != VMM_EXIT_POWEROFF) {
        fprintf(stderr, "bench_exit_arm64: libvmm run ended with %s: %s\n",
                r < 0 ? vmm_strerror(r) : vmm_exit_reason_name(ex.reason), ex.detail);
        t = -EIO;
    }
out:
    vmm_vm_destroy(vm);
    return t;
}

int main(int argc, char **argv)
{
    unsigned long exits = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    unsigned long rounds = argc > 2 ? strtoul(argv[2], NULL, 10) : 3;
    if (exits == 0 || rounds == 0) {
        fprintf(stderr, "usage: bench_exit_arm64 [EXITS [ROUNDS]]\n");
        return 2;
    }
    printf("exit-arm64: guest does %lu `str w1, [x0]` to unbacked MMIO 0x%llx (empty write "
           "callback), then PSCI SYSTEM_OFF; %lu rounds\n",
           exits, (unsigned long long)MMIO, rounds);
    double best_raw = 0, best_vmm = 0, ratios[64];
    if (rounds > 64)
        rounds = 64;
    for (unsigned long i = 0; i < rounds; i++) {
        unsigned long raw_seen = 0;
        uint64_t vmm_seen = 0;
        double raw = raw_run(exits, &raw_seen);
        double vmm = libvmm_run(exits, &vmm_seen);
        if (raw < 0 || vmm < 0) {
            fprintf(stderr, "bench_exit_arm64: round %lu failed (raw %s, libvmm %s)\n", i + 1,
                    raw < 0 ? vmm_strerror((int)raw) : "ok",
                    vmm < 0 ? vmm_strerror((int)vmm) : "ok");
            return 1;
        }
        printf("exit-arm64: round %lu: raw %.3f us/exit, libvmm %.3f us/exit (ratio %.2f); "
               "exits raw %lu, libvmm %llu\n",
               i + 1, raw / 1e3, vmm / 1e3, vmm / raw, raw_seen, (unsigned long long)vmm_seen);
        ratios[i] = vmm / raw;
        if (i == 0 || raw < best_raw)
            best_raw = raw;
        if (i == 0 || vmm < best_vmm)
            best_vmm = vmm;
    }
    /* Rounds run back to back, so a round's ratio shares its load; the
     * median of those is the figure least moved by a noisy host. */
    for (unsigned long i = 1; i < rounds; i++)
        for (unsigned long j = i; j > 0 && ratios[j - 1] > ratios[j]; j--) {
            double t = ratios[j];
            ratios[j] = ratios[j - 1];
            ratios[j - 1] = t;
        }
    printf("exit-arm64: best: raw %.3f us/exit, libvmm %.3f us/exit; median ratio of the rounds "
           "%.2f\n",
           best_raw / 1e3, best_vmm / 1e3, ratios[rounds / 2]);
    return 0;
}
