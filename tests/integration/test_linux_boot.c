/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Linux boot protocols as a guest sees them, on real KVM: the linux_boot
 * test guest, wrapped into a bzImage, booted through its 64-bit entry with a
 * zero page; as an ELF through its PVH note in 32-bit protected mode; and as
 * an ELF through the 64-bit entry with PVH turned off. The guest checks the
 * memory map, command line, initrd bytes, RSDP, setup_data and entry state
 * and reports on COM1 and the exit port.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

#define MEM_MB      64
#define INITRD_SIZE 0x4000u
#define RESV_BASE   0x2800000ull
#define RESV_SIZE   0x10000ull
#define RSDP        0xe0000ull

static const char *guest_file(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", VMM_GUEST_DIR, name);
    return path;
}

/* Put vcpu at the entry the steps recorded in b, as an embedder does. */
static void enter(struct vmm_vcpu *vcpu, const struct vmm_linux_boot *b)
{
    struct vmm_x86_linux_entry e = VMM_INIT(struct vmm_x86_linux_entry);
    ck_assert_int_eq(vmm_linux_get_entry(b, &e), 0);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(vcpu, &e), 0);
}

/* Boot kernel_file through vmm_linux_boot_setup and run it to its exit. */
static void boot(struct harness *h, enum vmm_irqchip chip, const char *kernel_file, bool no_pvh,
                 bool dtb, enum vmm_linux_protocol want)
{
    harness_init(h, chip, MEM_MB);
    struct vmm_memory *mem = vmm_vm_memory(h->vm);
    static unsigned char initrd[INITRD_SIZE];
    for (unsigned j = 0; j < INITRD_SIZE; j++)
        initrd[j] = (unsigned char)(j * 31 + 7);
    struct vmm_machine machine = {
        .size = sizeof(struct vmm_machine), .mem = mem, .nr_vcpus = 1, .nr_reserved = 1};
    machine.reserved[0] = (struct vmm_machine_range){RESV_BASE, RESV_SIZE};
    static const char fake_dtb[] = "fake-dtb";
    char cmdline[256];
    snprintf(cmdline, sizeof(cmdline),
             "libvmm-linux-test mem=0x%x initrd=0x%x rsdp=0x%llx resv=0x%llx resvsize=0x%llx%s",
             MEM_MB << 20, INITRD_SIZE, RSDP, RESV_BASE, RESV_SIZE, dtb ? " dtb=0x9" : "");
    struct vmm_linux_config cfg = {
        .size = sizeof(struct vmm_linux_config),
        .kernel_path = guest_file(kernel_file),
        .initrd = initrd,
        .initrd_size = sizeof(initrd),
        .cmdline = cmdline,
        .machine = &machine,
        .rsdp_addr = RSDP,
        .dtb = dtb ? fake_dtb : NULL,
        .dtb_size = dtb ? sizeof(fake_dtb) : 0,
        .kernel_opts = &(struct vmm_kernel_options){.size = sizeof(struct vmm_kernel_options),
                                                    .no_pvh = no_pvh},
    };
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    int r = vmm_linux_boot_setup(mem, &cfg, &b);
    ck_assert_msg(r == 0, "%s: %d %s", kernel_file, r, b.error);
    ck_assert_int_eq(b.protocol, want);
    struct vmm_vcpu *vcpu;
    ck_assert_int_eq(vmm_vcpu_create(h->vm, 0, &vcpu), 0);
    enter(vcpu, &b);
    harness_run(h);
}

static enum vmm_irqchip chip(int i)
{
    return i == 0 ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
}

START_TEST(bzimage_64bit_entry)
{
    struct harness h;
    boot(&h, chip(_i), "linux_boot.bzImage", false, true, VMM_LINUX_BOOT_64);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: 64-bit OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

START_TEST(elf_pvh_entry)
{
    struct harness h;
    boot(&h, chip(_i), "linux_boot.elf", false, false, VMM_LINUX_BOOT_PVH);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: PVH OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

START_TEST(elf_64bit_entry_without_pvh)
{
    struct harness h;
    boot(&h, VMM_IRQCHIP_SPLIT, "linux_boot.elf", true, true, VMM_LINUX_BOOT_64);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d, output:\n%s", vmm_exit_reason_name(h.exit.reason),
                  h.exit.status, h.output);
    ck_assert_msg(strstr(h.output, "linux-boot: 64-bit OK\n"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

/* The guest notices a lie: the host expects a reserved range the map lacks. */
START_TEST(guest_catches_a_wrong_map)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, MEM_MB);
    struct vmm_memory *mem = vmm_vm_memory(h.vm);
    struct vmm_linux_config cfg = {
        .size = sizeof(struct vmm_linux_config),
        .kernel_path = guest_file("linux_boot.elf"),
        .cmdline = "libvmm-linux-test mem=0x4000000 resv=0x2800000 resvsize=0x10000",
    };
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_boot_setup(mem, &cfg, &b), 0);
    struct vmm_vcpu *vcpu;
    ck_assert_int_eq(vmm_vcpu_create(h.vm, 0, &vcpu), 0);
    enter(vcpu, &b);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 20); /* "map entries" */
    ck_assert_msg(strstr(h.output, "check 20 failed"), "output: %s", h.output);
    harness_fini(&h);
}
END_TEST

static uint64_t mtrr_def_type(struct vmm_vcpu *vcpu)
{
    struct kvm_msr_entry msr = {.index = VMM_X86_MSR_MTRR_DEF_TYPE};
    ck_assert_int_eq(vmm_vcpu_get_msrs(vcpu, &msr, 1), 1);
    return msr.data;
}

static void check_flat(const struct kvm_segment *s, uint16_t selector, bool code, bool bits64)
{
    ck_assert_uint_eq(s->selector, selector);
    ck_assert_uint_eq(s->base, 0);
    ck_assert_uint_eq(s->limit, 0xffffffff);
    ck_assert_uint_eq(s->present, 1);
    ck_assert_uint_eq(s->dpl, 0);
    ck_assert_uint_eq(s->s, 1);
    ck_assert_uint_eq(s->g, 1);
    ck_assert_uint_eq(s->type & 0xa, code ? 0xa : 0x2); /* execute/read or read/write */
    ck_assert_uint_eq(s->l, code && bits64);
}

/*
 * What vmm_vcpu_set_linux_entry leaves in a vCPU, read back from KVM: for
 * the 64-bit protocol (boot.rst) long mode with CS = __BOOT_CS and DS/ES/SS =
 * __BOOT_DS, flat, in a GDT that holds them, interrupts off, RSI = zero page;
 * for PVH protected mode without paging, flat 32-bit CS/DS/ES/SS, a 32-bit
 * TSS, interrupts off, EBX = start info; MTRRdefType enabled write-back on
 * the boot vCPU and, through vmm_vcpu_set_linux_ap_state, on the others.
 */
START_TEST(linux_entry_state)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, MEM_MB);
    struct vmm_vcpu *bsp, *ap;
    ck_assert_int_eq(vmm_vcpu_create(h.vm, 0, &bsp), 0);
    ck_assert_int_eq(vmm_vcpu_create(h.vm, 1, &ap), 0);
    ck_assert_uint_ne(mtrr_def_type(ap), VMM_X86_MTRR_DEF_TYPE_WB);
    ck_assert_int_eq(vmm_vcpu_set_linux_ap_state(ap), 0);
    ck_assert_uint_eq(mtrr_def_type(ap), VMM_X86_MTRR_DEF_TYPE_WB);

    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct vmm_x86_linux_entry e =
        VMM_INIT(struct vmm_x86_linux_entry, .mode = VMM_X86_LINUX_ENTRY_64, .entry = 0x1000200,
                 .params = VMM_X86_ZERO_PAGE, .stack = 0x8000);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), 0);
    ck_assert_int_eq(vmm_vcpu_get_regs(bsp, &regs), 0);
    ck_assert_int_eq(vmm_vcpu_get_sregs(bsp, &sregs), 0);
    ck_assert_uint_eq(regs.rip, 0x1000200);
    ck_assert_uint_eq(regs.rsi, VMM_X86_ZERO_PAGE);
    ck_assert_uint_eq(regs.rsp, 0x8000);
    ck_assert_uint_eq(regs.rflags & 0x200, 0);
    check_flat(&sregs.cs, VMM_X86_BOOT_LINUX_CS, true, true);
    check_flat(&sregs.ds, VMM_X86_BOOT_LINUX_DS, false, false);
    check_flat(&sregs.es, VMM_X86_BOOT_LINUX_DS, false, false);
    check_flat(&sregs.ss, VMM_X86_BOOT_LINUX_DS, false, false);
    ck_assert_uint_eq(sregs.gdt.base, VMM_X86_BOOT_GDT_LINUX);
    ck_assert_uint_ge(sregs.gdt.limit, VMM_X86_BOOT_LINUX_DS + 7);
    ck_assert_uint_eq(sregs.cr0 & 0x80000001u, 0x80000001u); /* PE, PG */
    ck_assert_uint_eq(sregs.efer & 0x500, 0x500);            /* LME, LMA */
    ck_assert_uint_eq(mtrr_def_type(bsp), VMM_X86_MTRR_DEF_TYPE_WB);
    /* The GDT in guest memory holds the descriptors the selectors name. */
    uint64_t gdt[4];
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(h.vm), VMM_X86_BOOT_GDT_LINUX, gdt, sizeof(gdt)),
                     0);
    ck_assert_uint_eq(gdt[VMM_X86_BOOT_LINUX_CS / 8] >> 40 & 0xff, 0x9b); /* P, code, exec/read */
    ck_assert_uint_eq(gdt[VMM_X86_BOOT_LINUX_CS / 8] >> 53 & 1, 1);       /* L */
    ck_assert_uint_eq(gdt[VMM_X86_BOOT_LINUX_DS / 8] >> 40 & 0xff, 0x93); /* P, data, read/write */

    e = VMM_INIT(struct vmm_x86_linux_entry, .mode = VMM_X86_LINUX_ENTRY_PVH, .entry = 0x100000,
                 .params = VMM_X86_PVH_INFO);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), 0);
    ck_assert_int_eq(vmm_vcpu_get_regs(bsp, &regs), 0);
    ck_assert_int_eq(vmm_vcpu_get_sregs(bsp, &sregs), 0);
    ck_assert_uint_eq(regs.rip, 0x100000);
    ck_assert_uint_eq(regs.rbx, VMM_X86_PVH_INFO);
    ck_assert_uint_eq(regs.rflags & 0x20300, 0); /* VM, IF, TF */
    check_flat(&sregs.cs, 0x8, true, false);
    ck_assert_uint_eq(sregs.cs.db, 1);
    check_flat(&sregs.ds, 0x10, false, false);
    check_flat(&sregs.es, 0x10, false, false);
    check_flat(&sregs.ss, 0x10, false, false);
    ck_assert_uint_eq(sregs.tr.type, 0xb);         /* 32-bit busy TSS */
    ck_assert_uint_eq(sregs.cr0 & 0x80000001u, 1); /* PE, not PG */
    ck_assert_uint_eq(sregs.efer & 0x500, 0);
    ck_assert_uint_eq(mtrr_def_type(bsp), VMM_X86_MTRR_DEF_TYPE_WB);

    /* Refused before anything changes. */
    e.entry = 0x100000000ull;
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), -EINVAL);
    e = VMM_INIT(struct vmm_x86_linux_entry, .mode = 7);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), -EINVAL);
    e = VMM_INIT(struct vmm_x86_linux_entry, .mode = VMM_X86_LINUX_ENTRY_64);
    e.size = sizeof(e) + 8;
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), -EINVAL);
    e.size = 0;
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, &e), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(bsp, NULL), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_set_linux_entry(NULL, &e), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_set_linux_ap_state(NULL), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_get_regs(bsp, &regs), 0);
    ck_assert_uint_eq(regs.rip, 0x100000);
    harness_fini(&h);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("linux_boot");
    TCase *tc = tcase_create("protocols");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, bzimage_64bit_entry, 0, 2);
    tcase_add_loop_test(tc, elf_pvh_entry, 0, 2);
    tcase_add_test(tc, elf_64bit_entry_without_pvh);
    tcase_add_test(tc, guest_catches_a_wrong_map);
    tcase_add_test(tc, linux_entry_state);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
