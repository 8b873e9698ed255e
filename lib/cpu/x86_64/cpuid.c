/* SPDX-License-Identifier: Apache-2.0 */
/* CPUID tables for vCPUs: KVM's supported leaves with a topology that is
 * consistent for the VM's vCPU count, and the hypervisor leaves. */
#include <errno.h>
#include <string.h>

#include "../cpu_internal.h"

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR   (1u << 31)
#define CPUID_1_EDX_HTT          (1u << 28)

/* Bits needed to number n things (ceil(log2(n))), 0 for n <= 1. */
static unsigned bits_for(unsigned n)
{
    unsigned b = 0;
    while ((1u << b) < n)
        b++;
    return b;
}

/* Leaf 0xb/0x1f subleaf contents: one thread per core, nr_vcpus cores in one
 * package, x2APIC id = vCPU index. */
static void topology_leaf(struct kvm_cpuid_entry2 *e, uint32_t function, uint32_t subleaf,
                          unsigned index, unsigned nr_vcpus)
{
    *e = (struct kvm_cpuid_entry2){.function = function,
                                   .index = subleaf,
                                   .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                                   .edx = index};
    switch (subleaf) {
    case 0: /* SMT level */
        e->eax = 0;
        e->ebx = 1;
        e->ecx = (1u << 8) | subleaf;
        break;
    case 1: /* core level */
        e->eax = bits_for(nr_vcpus);
        e->ebx = nr_vcpus;
        e->ecx = (2u << 8) | subleaf;
        break;
    default: /* invalid level ends the enumeration */
        e->ecx = subleaf;
        break;
    }
}

int vmm_x86_cpuid_build(const struct kvm_cpuid_entry2 *supported, unsigned n, unsigned index,
                        unsigned nr_vcpus, struct kvm_cpuid_entry2 *out, unsigned max)
{
    unsigned count = 0;
    bool have_1f = false;
    if (nr_vcpus == 0)
        nr_vcpus = 1;
    unsigned pkg_bits = bits_for(nr_vcpus);

    for (unsigned i = 0; i < n; i++) {
        const struct kvm_cpuid_entry2 *s = &supported[i];
        /* Topology leaves are rewritten below, whatever KVM reported. */
        if (s->function == 0xb || s->function == 0x1f) {
            have_1f |= s->function == 0x1f;
            continue;
        }
        if (count == max)
            return -E2BIG;
        struct kvm_cpuid_entry2 *e = &out[count++];
        *e = *s;
        switch (e->function) {
        case 0x1:
            e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)(index & 0xff) << 24) |
                     ((uint32_t)((1u << pkg_bits) > 255 ? 255 : (1u << pkg_bits)) << 16);
            e->ecx |= CPUID_1_ECX_HYPERVISOR;
            if (nr_vcpus > 1)
                e->edx |= CPUID_1_EDX_HTT;
            else
                e->edx &= ~CPUID_1_EDX_HTT;
            break;
        case 0x4:
            /* EAX[31:26]: addressable core ids in the package, minus one;
             * EAX[25:14]: threads sharing this cache, minus one (one thread
             * per core; the last-level cache is shared by the package). */
            if ((e->eax & 0x1f) != 0) {
                bool llc = ((e->eax >> 5) & 0x7) >= 3;
                uint32_t sharing = llc ? (1u << pkg_bits) - 1 : 0;
                /* a 6-bit field */
                uint32_t cores_m1 = (1u << pkg_bits) - 1 > 63 ? 63 : (1u << pkg_bits) - 1;
                e->eax = (e->eax & 0x3fffu) | (sharing << 14) | (cores_m1 << 26);
            }
            break;
        case 0x80000008:
            /* AMD: ECX[7:0] cores minus one, ECX[15:12] APIC id bits for cores. */
            e->ecx = (e->ecx & ~0xf0ffu) | ((nr_vcpus - 1) & 0xff) | (pkg_bits << 12);
            break;
        default:
            break;
        }
    }

    /* Describe the topology in leaf 0xb (and 0x1f where the CPU has it). */
    for (int leaf = 0; leaf < 2; leaf++) {
        uint32_t fn = leaf == 0 ? 0xb : 0x1f;
        if (leaf == 1 && !have_1f)
            continue;
        for (uint32_t sub = 0; sub < 3; sub++) {
            if (count == max)
                return -E2BIG;
            topology_leaf(&out[count++], fn, sub, index, nr_vcpus);
        }
    }
    return (int)count;
}

/*
 * Named feature bits for the CPUID filter. A name may stand for several bits:
 * turning off a feature also turns off what cannot work without it (AVX and
 * its successors need XSAVE to manage their state).
 */
enum { R_EAX, R_EBX, R_ECX, R_EDX };

struct feature_bit {
    uint32_t function, index;
    uint8_t reg, bit;
};

struct feature {
    const char *name;
    const char *what;
    struct feature_bit bits[16];
    unsigned nbits;
};

#define KVM_LEAF 0x40000001u

static const struct feature features[] = {
    {"xsave",
     "XSAVE state management (also turns off OSXSAVE and the AVX family: FMA, F16C, AVX2, "
     "AVX-512, and XSAVEOPT/C/S)",
     {{1, 0, R_ECX, 26},
      {1, 0, R_ECX, 27},
      {1, 0, R_ECX, 28},
      {1, 0, R_ECX, 12},
      {1, 0, R_ECX, 29},
      {7, 0, R_EBX, 5},
      {7, 0, R_EBX, 16},
      {7, 0, R_EBX, 17},
      {7, 0, R_EBX, 21},
      {7, 0, R_EBX, 28},
      {7, 0, R_EBX, 30},
      {7, 0, R_EBX, 31},
      {0xd, 1, R_EAX, 0},
      {0xd, 1, R_EAX, 1},
      {0xd, 1, R_EAX, 3}},
     15},
    {"avx",
     "AVX (also FMA, F16C, AVX2 and AVX-512 F/DQ/IFMA/CD/BW/VL)",
     {{1, 0, R_ECX, 28},
      {1, 0, R_ECX, 12},
      {1, 0, R_ECX, 29},
      {7, 0, R_EBX, 5},
      {7, 0, R_EBX, 16},
      {7, 0, R_EBX, 17},
      {7, 0, R_EBX, 21},
      {7, 0, R_EBX, 28},
      {7, 0, R_EBX, 30},
      {7, 0, R_EBX, 31}},
     10},
    {"avx2", "AVX2", {{7, 0, R_EBX, 5}}, 1},
    {"avx512f",
     "AVX-512 foundation (also DQ/IFMA/CD/BW/VL)",
     {{7, 0, R_EBX, 16},
      {7, 0, R_EBX, 17},
      {7, 0, R_EBX, 21},
      {7, 0, R_EBX, 28},
      {7, 0, R_EBX, 30},
      {7, 0, R_EBX, 31}},
     6},
    {"x2apic", "x2APIC mode of the local APIC", {{1, 0, R_ECX, 21}}, 1},
    {"tsc-deadline", "TSC-deadline timer mode", {{1, 0, R_ECX, 24}}, 1},
    {"pdpe1gb", "1 GiB pages", {{0x80000001, 0, R_EDX, 26}}, 1},
    {"rdrand", "RDRAND", {{1, 0, R_ECX, 30}}, 1},
    {"kvmclock",
     "KVM paravirtual clock (both MSR sets)",
     {{KVM_LEAF, 0, R_EAX, 0}, {KVM_LEAF, 0, R_EAX, 3}},
     2},
    {"async-pf",
     "KVM asynchronous page faults",
     {{KVM_LEAF, 0, R_EAX, 4}, {KVM_LEAF, 0, R_EAX, 10}, {KVM_LEAF, 0, R_EAX, 14}},
     3},
    {"steal-time", "KVM steal time accounting", {{KVM_LEAF, 0, R_EAX, 5}}, 1},
    {"pv-eoi", "KVM paravirtual end of interrupt", {{KVM_LEAF, 0, R_EAX, 6}}, 1},
    {"pv-unhalt", "KVM paravirtual spinlock unhalt", {{KVM_LEAF, 0, R_EAX, 7}}, 1},
    {"pv-tlb-flush", "KVM paravirtual TLB flush", {{KVM_LEAF, 0, R_EAX, 9}}, 1},
    {"pv-ipi", "KVM paravirtual IPIs", {{KVM_LEAF, 0, R_EAX, 11}}, 1},
    {"pv-sched-yield", "KVM paravirtual sched yield", {{KVM_LEAF, 0, R_EAX, 13}}, 1},
};

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, unsigned reg)
{
    switch (reg) {
    case R_EAX:
        return &e->eax;
    case R_EBX:
        return &e->ebx;
    case R_ECX:
        return &e->ecx;
    default:
        return &e->edx;
    }
}

static struct kvm_cpuid_entry2 *find_entry(struct kvm_cpuid_entry2 *t, unsigned n, uint32_t fn,
                                           uint32_t index)
{
    for (unsigned i = 0; i < n; i++) {
        bool indexed = t[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        if (t[i].function == fn && (!indexed || t[i].index == index))
            return &t[i];
    }
    return NULL;
}

const char *vmm_cpuid_feature_name(unsigned i, const char **what)
{
    if (i >= VMM_ARRAY_SIZE(features))
        return NULL;
    if (what)
        *what = features[i].what;
    return features[i].name;
}

int vmm_cpuid_set_feature(struct kvm_cpuid_entry2 *entries, unsigned n, const char *name, bool on)
{
    if (!entries || !name)
        return -EINVAL;
    const struct feature *f = NULL;
    for (unsigned i = 0; i < VMM_ARRAY_SIZE(features); i++) {
        if (strcmp(features[i].name, name) == 0) {
            f = &features[i];
            break;
        }
    }
    if (!f)
        return -ENOENT;
    /* Turning on sets only the feature's first bit, and only where its leaf
     * exists (-ENOTSUP otherwise). */
    unsigned nbits = on ? 1 : f->nbits;
    int changed = 0;
    for (unsigned b = 0; b < nbits; b++) {
        const struct feature_bit *fb = &f->bits[b];
        struct kvm_cpuid_entry2 *e = find_entry(entries, n, fb->function, fb->index);
        if (!e) {
            if (on)
                return -ENOTSUP;
            continue;
        }
        uint32_t *r = entry_reg(e, fb->reg);
        uint32_t old = *r;
        if (on)
            *r |= 1u << fb->bit;
        else
            *r &= ~(1u << fb->bit);
        changed += old != *r;
    }
    return changed;
}

void vmm_x86_cpuid_add_kvm_features(int kvm_fd, struct kvm_cpuid2 *supported)
{
    if (vmm_kvm_ioctl(kvm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_TSC_DEADLINE_TIMER) <=
        0)
        return;
    for (uint32_t i = 0; i < supported->nent; i++)
        if (supported->entries[i].function == 0x1)
            supported->entries[i].ecx |= CPUID_1_ECX_TSC_DEADLINE;
}
