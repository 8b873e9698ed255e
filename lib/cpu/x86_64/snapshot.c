/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x86 state in snapshots: each vCPU's registers, MSRs, LAPIC, events, CPUID
 * and TSC frequency; the VM's clock and KVM's irqchip and PIT; and whether
 * this host can give a restored guest the CPUID features it saw.
 *
 * A vCPU section:
 *   u32 flags (VCPU_HAS_*) | u32 CPUID count | kvm_cpuid_entry2[count]
 *   | u32 TSC kHz | kvm_mp_state | kvm_regs | kvm_sregs | kvm_fpu
 *   | u32 XSAVE bytes | XSAVE area | kvm_xcrs | kvm_debugregs
 *   | kvm_lapic_state | u32 MSR count | kvm_msr_entry[count]
 *   | kvm_vcpu_events (read last when saving)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../arch.h"
#include "../cpu_internal.h"
#include "snapshot/snapshot_internal.h"

#define VCPU_HAS_XSAVE     (1u << 0) /* the area is XSAVE, else only kvm_fpu counts */
#define VCPU_HAS_XCRS      (1u << 1)
#define VCPU_HAS_DEBUGREGS (1u << 2)
#define VCPU_FLAGS_KNOWN   (VCPU_HAS_XSAVE | VCPU_HAS_XCRS | VCPU_HAS_DEBUGREGS)

/* Bounds on what a section may claim. */
#define SNAP_MAX_MSRS  4096u
#define SNAP_MAX_XSAVE (1u << 20)

#define VM_HAS_IRQCHIP (1u << 0) /* three kvm_irqchip and a kvm_pit_state2 follow */

static int check_ext(struct vmm_vm *vm, long cap)
{
    int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
    return r > 0 ? r : 0;
}

/* The XSAVE area size KVM uses for this VM's vCPUs (0: no XSAVE). */
static unsigned xsave_size(struct vmm_vm *vm)
{
#ifdef KVM_CAP_XSAVE2
    int n = check_ext(vm, KVM_CAP_XSAVE2);
    if (n > (int)sizeof(struct kvm_xsave))
        return (unsigned)n;
#endif
    return check_ext(vm, KVM_CAP_XSAVE) ? sizeof(struct kvm_xsave) : 0;
}

/* ---- MSRs ---- */

/* KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores. Caller frees. */
static int msr_index_list(struct vmm_vm *vm, struct kvm_msr_list **out)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    int r = vmm_kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
    if (r < 0 && r != -E2BIG)
        return r;
    if (probe.nmsrs > SNAP_MAX_MSRS)
        return -E2BIG;
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
    if (!l)
        return -ENOMEM;
    l->nmsrs = probe.nmsrs;
    r = vmm_kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l);
    if (r < 0) {
        free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* Read every listed MSR the vCPU has, dropping those KVM refuses for it
 * (KVM_GET_MSRS stops at the first one). Returns the count in m. */
static int read_msrs(struct vmm_vcpu *vcpu, struct kvm_msrs **out)
{
    struct kvm_msr_list *list;
    int r = msr_index_list(vcpu->vm, &list);
    if (r < 0)
        return r;
    struct kvm_msrs *m = calloc(1, sizeof(*m) + list->nmsrs * sizeof(struct kvm_msr_entry));
    if (!m) {
        free(list);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < list->nmsrs; i++)
        m->entries[i].index = list->indices[i];
    unsigned n = list->nmsrs;
    free(list);
    unsigned done = 0;
    while (done < n) {
        /* Ask from done on: a header in front of the rest of the entries. */
        struct kvm_msrs *part = calloc(1, sizeof(*part) + (n - done) * sizeof(part->entries[0]));
        if (!part) {
            free(m);
            return -ENOMEM;
        }
        part->nmsrs = n - done;
        memcpy(part->entries, &m->entries[done], (n - done) * sizeof(part->entries[0]));
        r = vmm_kvm_ioctl(vcpu->fd, KVM_GET_MSRS, part);
        if (r < 0) {
            free(part);
            free(m);
            return r;
        }
        memcpy(&m->entries[done], part->entries, (size_t)r * sizeof(part->entries[0]));
        free(part);
        done += (unsigned)r;
        if (done < n) {
            /* This one is not the vCPU's: drop it and go on after it. */
            memmove(&m->entries[done], &m->entries[done + 1],
                    (n - done - 1) * sizeof(m->entries[0]));
            n--;
        }
    }
    m->nmsrs = n;
    *out = m;
    return 0;
}

/* Write the saved MSRs. One KVM refuses that already holds the saved value
 * (a read-only one) is skipped; any other refusal fails the restore. */
static int write_msrs(struct vmm_vcpu *vcpu, struct kvm_msr_entry *e, unsigned n)
{
    unsigned done = 0;
    while (done < n) {
        struct kvm_msrs *part = calloc(1, sizeof(*part) + (n - done) * sizeof(part->entries[0]));
        if (!part)
            return -ENOMEM;
        part->nmsrs = n - done;
        memcpy(part->entries, &e[done], (n - done) * sizeof(part->entries[0]));
        int r = vmm_kvm_ioctl(vcpu->fd, KVM_SET_MSRS, part);
        free(part);
        if (r < 0)
            return r;
        done += (unsigned)r;
        if (done == n)
            break;
        struct kvm_msr_entry now = {.index = e[done].index};
        if (vmm_vcpu_get_msrs(vcpu, &now, 1) != 1 || now.data != e[done].data) {
            vmm_log_error("restore: vCPU %u: this host refuses MSR 0x%" PRIx32 " = 0x%" PRIx64,
                          vcpu->index, e[done].index, (uint64_t)e[done].data);
            return -ENOTSUP;
        }
        done++;
    }
    return 0;
}

/* ---- vCPU ---- */

int vmm_arch_vcpu_save(struct vmm_vcpu *vcpu, struct vmm_snap_writer *w)
{
    struct vmm_vm *vm = vcpu->vm;
    int r = vmm_arch_vcpu_apply_cpuid(vcpu); /* the table the guest sees */
    if (r < 0)
        return r;

    unsigned xsize = xsave_size(vm);
    uint32_t flags = (xsize ? VCPU_HAS_XSAVE : 0) |
                     (check_ext(vm, KVM_CAP_XCRS) ? VCPU_HAS_XCRS : 0) |
                     (check_ext(vm, KVM_CAP_DEBUGREGS) ? VCPU_HAS_DEBUGREGS : 0);
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_xcrs xcrs = {0};
    struct kvm_debugregs dbg = {0};
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_msrs *msrs = NULL;
    void *xsave = NULL;
    const char *what;

    int khz = vmm_kvm_ioctl(vcpu->fd, KVM_GET_TSC_KHZ, NULL);
    if (khz <= 0) {
        what = "KVM_GET_TSC_KHZ";
        r = khz < 0 ? khz : -ENOTSUP;
        goto fail;
    }
#define GET(req, arg)                                                                              \
    do {                                                                                           \
        what = #req;                                                                               \
        if ((r = vmm_kvm_ioctl(vcpu->fd, req, arg)) < 0)                                           \
            goto fail;                                                                             \
    } while (0)
    GET(KVM_GET_MP_STATE, &mp);
    GET(KVM_GET_REGS, &regs);
    GET(KVM_GET_SREGS, &sregs);
    GET(KVM_GET_FPU, &fpu);
    if (xsize) {
        xsave = calloc(1, xsize);
        r = -ENOMEM;
        what = "XSAVE";
        if (!xsave)
            goto fail;
#ifdef KVM_GET_XSAVE2
        if (xsize > sizeof(struct kvm_xsave))
            GET(KVM_GET_XSAVE2, xsave);
        else
#endif
            GET(KVM_GET_XSAVE, xsave);
    }
    if (flags & VCPU_HAS_XCRS)
        GET(KVM_GET_XCRS, &xcrs);
    if (flags & VCPU_HAS_DEBUGREGS)
        GET(KVM_GET_DEBUGREGS, &dbg);
    GET(KVM_GET_LAPIC, &lapic);
    what = "KVM_GET_MSRS";
    if ((r = read_msrs(vcpu, &msrs)) < 0)
        goto fail;
    /* Last: what the reads above cannot change any more. */
    GET(KVM_GET_VCPU_EVENTS, &events);
#undef GET

    snap_section_begin(w, SNAP_TAG_VCPU, vcpu->index);
    snap_put_u32(w, flags);
    snap_put_u32(w, vcpu->cpuid_count);
    snap_put(w, vcpu->cpuid, vcpu->cpuid_count * sizeof(struct kvm_cpuid_entry2));
    snap_put_u32(w, (uint32_t)khz);
    snap_put(w, &mp, sizeof(mp));
    snap_put(w, &regs, sizeof(regs));
    snap_put(w, &sregs, sizeof(sregs));
    snap_put(w, &fpu, sizeof(fpu));
    snap_put_u32(w, xsize);
    snap_put(w, xsave, xsize);
    snap_put(w, &xcrs, sizeof(xcrs));
    snap_put(w, &dbg, sizeof(dbg));
    snap_put(w, &lapic, sizeof(lapic));
    snap_put_u32(w, msrs->nmsrs);
    snap_put(w, msrs->entries, msrs->nmsrs * sizeof(struct kvm_msr_entry));
    snap_put(w, &events, sizeof(events));
    snap_section_end(w);
    free(msrs);
    free(xsave);
    return w->err;

fail:
    vmm_log_error("snapshot: vCPU %u: %s: %s", vcpu->index, what, vmm_strerror(r));
    free(msrs);
    free(xsave);
    return r;
}

/* The saved vCPU state, read and checked before anything is applied. */
struct vcpu_image {
    uint32_t flags;
    uint32_t ncpuid;
    struct kvm_cpuid_entry2 *cpuid;
    uint32_t khz;
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    uint32_t xsize;
    void *xsave;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs dbg;
    struct kvm_lapic_state lapic;
    uint32_t nmsrs;
    struct kvm_msr_entry *msrs;
    struct kvm_vcpu_events events;
};

static void image_free(struct vcpu_image *im)
{
    free(im->cpuid);
    free(im->xsave);
    free(im->msrs);
}

static int image_read(struct vmm_snap_reader *rd, struct vcpu_image *im, unsigned host_xsize)
{
    *im = (struct vcpu_image){0};
    if (snap_get_u32(rd, &im->flags) < 0 || (im->flags & ~VCPU_FLAGS_KNOWN) ||
        snap_get_u32(rd, &im->ncpuid) < 0 || im->ncpuid > MAX_CPUID_ENTRIES)
        return -EBADMSG;
    im->cpuid = calloc(im->ncpuid + 1, sizeof(*im->cpuid));
    if (!im->cpuid)
        return -ENOMEM;
    if (snap_get(rd, im->cpuid, im->ncpuid * sizeof(*im->cpuid)) < 0 ||
        snap_get_u32(rd, &im->khz) < 0 || snap_get(rd, &im->mp, sizeof(im->mp)) < 0 ||
        snap_get(rd, &im->regs, sizeof(im->regs)) < 0 ||
        snap_get(rd, &im->sregs, sizeof(im->sregs)) < 0 ||
        snap_get(rd, &im->fpu, sizeof(im->fpu)) < 0 || snap_get_u32(rd, &im->xsize) < 0 ||
        im->xsize > SNAP_MAX_XSAVE || (!!im->xsize != !!(im->flags & VCPU_HAS_XSAVE)))
        return -EBADMSG;
    if (im->xsize) {
        if (im->xsize > host_xsize) {
            vmm_log_error("restore: the guest's XSAVE area takes %u bytes, this host's %u",
                          im->xsize, host_xsize);
            return -ENOTSUP;
        }
        im->xsave = calloc(1, host_xsize);
        if (!im->xsave)
            return -ENOMEM;
        if (snap_get(rd, im->xsave, im->xsize) < 0)
            return -EBADMSG;
    }
    if (snap_get(rd, &im->xcrs, sizeof(im->xcrs)) < 0 ||
        snap_get(rd, &im->dbg, sizeof(im->dbg)) < 0 ||
        snap_get(rd, &im->lapic, sizeof(im->lapic)) < 0 || snap_get_u32(rd, &im->nmsrs) < 0 ||
        im->nmsrs > SNAP_MAX_MSRS || im->xcrs.nr_xcrs > KVM_MAX_XCRS)
        return -EBADMSG;
    im->msrs = calloc(im->nmsrs + 1, sizeof(*im->msrs));
    if (!im->msrs)
        return -ENOMEM;
    if (snap_get(rd, im->msrs, im->nmsrs * sizeof(*im->msrs)) < 0 ||
        snap_get(rd, &im->events, sizeof(im->events)) < 0 || snap_done(rd) < 0)
        return -EBADMSG;
    return 0;
}

int vmm_arch_vcpu_restore(struct vmm_vcpu *vcpu, struct vmm_snap_reader *rd)
{
    struct vmm_vm *vm = vcpu->vm;
    struct vcpu_image im;
    unsigned host_xsize = xsave_size(vm);
    int r = image_read(rd, &im, host_xsize);
    if (r < 0) {
        if (r == -EBADMSG)
            vmm_log_error("restore: vCPU %u: malformed state", vcpu->index);
        image_free(&im);
        return r;
    }
    char why[160];
    r = vmm_x86_cpuid_host_check(im.cpuid, im.ncpuid, vm->supported_cpuid, why, sizeof(why));
    if (r < 0) {
        vmm_log_error("restore: vCPU %u: %s", vcpu->index, why);
        goto out;
    }
    const char *what = "CPUID";
    if ((r = vmm_vcpu_set_cpuid(vcpu, im.cpuid, im.ncpuid)) < 0)
        goto fail;
    int khz = vmm_kvm_ioctl(vcpu->fd, KVM_GET_TSC_KHZ, NULL);
    if (khz != (int)im.khz &&
        vmm_kvm_ioctl(vcpu->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)im.khz) < 0) {
        vmm_log_error("restore: vCPU %u: this host cannot run the guest's TSC at %u kHz (it "
                      "runs at %d kHz)",
                      vcpu->index, im.khz, khz);
        r = -ENOTSUP;
        goto out;
    }
#define SET(req, arg)                                                                              \
    do {                                                                                           \
        what = #req;                                                                               \
        if ((r = vmm_kvm_ioctl(vcpu->fd, req, arg)) < 0)                                           \
            goto fail;                                                                             \
    } while (0)
    SET(KVM_SET_MP_STATE, &im.mp);
    SET(KVM_SET_REGS, &im.regs);
    SET(KVM_SET_SREGS, &im.sregs);
    if (im.flags & VCPU_HAS_XSAVE)
        SET(KVM_SET_XSAVE, im.xsave);
    else
        SET(KVM_SET_FPU, &im.fpu);
    if ((im.flags & VCPU_HAS_XCRS) && im.xcrs.nr_xcrs)
        SET(KVM_SET_XCRS, &im.xcrs);
    if (im.flags & VCPU_HAS_DEBUGREGS)
        SET(KVM_SET_DEBUGREGS, &im.dbg);
    SET(KVM_SET_LAPIC, &im.lapic);
    what = "KVM_SET_MSRS";
    if ((r = write_msrs(vcpu, im.msrs, im.nmsrs)) < 0)
        goto out;
    /* What KVM_GET_VCPU_EVENTS said is valid, of what a plain VM may set. */
    im.events.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                       KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
    SET(KVM_SET_VCPU_EVENTS, &im.events);
#undef SET
    vcpu->has_run = true; /* its state is set: no boot CPUID rebuild */
    r = 0;
    goto out;
fail:
    vmm_log_error("restore: vCPU %u: %s: %s", vcpu->index, what, vmm_strerror(r));
out:
    image_free(&im);
    return r;
}

/* ---- CPUID against this host ---- */

struct cpuid_feature_word {
    uint32_t function, index;
    unsigned reg;    /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    uint32_t ignore; /* bits that are not host features (topology, OS-set, ours) */
};

static const struct cpuid_feature_word feature_words[] = {
    {1, 0, 2, (1u << 27) | (1u << 31)}, /* OSXSAVE (CR4), hypervisor (ours) */
    {1, 0, 3, (1u << 28)},              /* HTT (topology) */
    {7, 0, 1, 0},
    {7, 0, 2, (1u << 4)}, /* OSPKE (CR4) */
    {7, 0, 3, 0},
    {7, 1, 0, 0},
    {0xd, 1, 0, 0},
    {0x80000001, 0, 2, 0},
    {0x80000001, 0, 3, 0},
};

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *t, unsigned n,
                                                 uint32_t function, uint32_t index)
{
    for (unsigned i = 0; i < n; i++)
        if (t[i].function == function &&
            (!(t[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || t[i].index == index))
            return &t[i];
    return NULL;
}

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
    return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

int vmm_x86_cpuid_host_check(const struct kvm_cpuid_entry2 *guest, unsigned n,
                             const struct kvm_cpuid2 *host, char *why, size_t why_len)
{
    static const char regs[] = "abcd";
    for (unsigned i = 0; i < VMM_ARRAY_SIZE(feature_words); i++) {
        const struct cpuid_feature_word *fw = &feature_words[i];
        const struct kvm_cpuid_entry2 *g = cpuid_find(guest, n, fw->function, fw->index);
        if (!g)
            continue;
        const struct kvm_cpuid_entry2 *h =
            cpuid_find(host->entries, host->nent, fw->function, fw->index);
        uint32_t want = cpuid_reg(g, fw->reg) & ~fw->ignore;
        uint32_t missing = want & ~(h ? cpuid_reg(h, fw->reg) : 0);
        if (missing) {
            snprintf(why, why_len,
                     "this host lacks CPUID features the guest saw: leaf 0x%" PRIx32 ".%" PRIu32
                     " e%cx bits 0x%08" PRIx32,
                     fw->function, fw->index, regs[fw->reg], missing);
            return -ENOTSUP;
        }
    }
    return 0;
}

/* ---- VM: clock, in-kernel irqchip and PIT ---- */

int vmm_arch_vm_save(struct vmm_vm *vm, struct vmm_snap_writer *w)
{
    struct kvm_clock_data clock = {0};
    int r = vmm_kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock);
    if (r < 0) {
        vmm_log_error("snapshot: KVM_GET_CLOCK: %s", vmm_strerror(r));
        return r;
    }
    bool kernel = vm->cfg.irqchip == VMM_IRQCHIP_KERNEL;
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    if (kernel) {
        for (unsigned i = 0; i < 3; i++) {
            chips[i] = (struct kvm_irqchip){.chip_id = i};
            if ((r = vmm_kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i])) < 0) {
                vmm_log_error("snapshot: KVM_GET_IRQCHIP %u: %s", i, vmm_strerror(r));
                return r;
            }
        }
        if ((r = vmm_kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &pit)) < 0) {
            vmm_log_error("snapshot: KVM_GET_PIT2: %s", vmm_strerror(r));
            return r;
        }
    }
    snap_section_begin(w, SNAP_TAG_VM, 0);
    snap_put_u32(w, kernel ? VM_HAS_IRQCHIP : 0);
    snap_put_u64(w, clock.clock);
    if (kernel) {
        snap_put(w, chips, sizeof(chips));
        snap_put(w, &pit, sizeof(pit));
    }
    snap_section_end(w);
    return w->err;
}

int vmm_arch_vm_restore(struct vmm_vm *vm, struct vmm_snap_reader *rd)
{
    uint32_t flags = 0;
    uint64_t clock;
    bool kernel = vm->cfg.irqchip == VMM_IRQCHIP_KERNEL;
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    if (snap_get_u32(rd, &flags) < 0 || (flags & ~VM_HAS_IRQCHIP) || snap_get_u64(rd, &clock) < 0 ||
        (kernel &&
         (snap_get(rd, chips, sizeof(chips)) < 0 || snap_get(rd, &pit, sizeof(pit)) < 0)) ||
        snap_done(rd) < 0) {
        vmm_log_error("restore: malformed VM state%s",
                      !!(flags & VM_HAS_IRQCHIP) != kernel
                          ? " (saved with another interrupt controller)"
                          : "");
        return -EBADMSG;
    }
    int r;
    if (kernel) {
        for (unsigned i = 0; i < 3; i++) {
            if (chips[i].chip_id != i)
                return -EBADMSG;
            if ((r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i])) < 0) {
                vmm_log_error("restore: KVM_SET_IRQCHIP %u: %s", i, vmm_strerror(r));
                return r;
            }
        }
        if ((r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, &pit)) < 0) {
            vmm_log_error("restore: KVM_SET_PIT2: %s", vmm_strerror(r));
            return r;
        }
    }
    /* The guest's clock goes on from where it was saved, not from the time
     * the snapshot spent on disk. */
    struct kvm_clock_data cd = {.clock = clock};
    if ((r = vmm_kvm_ioctl(vm->vm_fd, KVM_SET_CLOCK, &cd)) < 0) {
        vmm_log_error("restore: KVM_SET_CLOCK: %s", vmm_strerror(r));
        return r;
    }
    return 0;
}
