/* SPDX-License-Identifier: Apache-2.0 */
/* CPUID tables for vCPUs: KVM's supported leaves with a topology that is
 * consistent for the VM's vCPU count, and the hypervisor leaves. */
#include <errno.h>
#include <string.h>

#include "../cpu_internal.h"

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)

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
