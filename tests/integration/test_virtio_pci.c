/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCI and virtio-pci through KVM: the test guest virtio_pci (enumeration
 * through 0xCF8 and ECAM, BAR sizing and moving, MSI-X, an entropy device
 * driven through the common configuration, hostile writes) against a root
 * complex and device built through the library on both interrupt
 * controllers, and through vmm-run --transport pci; and a PCI device of the
 * test's own (memory and I/O BARs, MSI) driven by the guest pci_msi.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>
#include <string.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

static void library_round_trip(enum vmm_irqchip irqchip, bool coalesce)
{
    struct harness h;
    harness_init(&h, irqchip, 16);
    struct vmm_pci_bus *bus;
    ck_assert_int_eq(vmm_vm_add_pci(h.vm, NULL, &bus), 0);
    /* With the address latch's writes coalesced, the guest must see the
     * same configuration space, with no exit for those writes. */
    int coalesced = coalesce ? vmm_vm_coalesce_writes(h.vm, 0xcf8, 4, true) : -1;
    if (coalesce)
        ck_assert_msg(coalesced == 0 || coalesced == -ENOTSUP, "coalesce: %d", coalesced);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_rng_create(NULL, &dev), 0);
    struct vmm_virtio_pci *vp;
    ck_assert_int_eq(vmm_virtio_pci_add(bus, NULL, &dev, &vp), 0);
    /* The ranges are taken: a second root complex does not fit. */
    ck_assert_int_eq(vmm_vm_add_pci(h.vm, NULL, NULL), -EEXIST);
    harness_load_guest(&h, "virtio_pci", 1);
    if (coalesce)
        ck_assert_int_eq(vmm_vm_stats_enable(h.vm), 0);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h.exit.reason), h.exit.status,
                  h.output);
    ck_assert_ptr_nonnull(strstr(h.output, "virtio_pci ok: slot 1 of 1 devices, BAR 0xc0100000"));
    if (coalesce) {
        struct vmm_stats es = VMM_INIT(struct vmm_stats);
        ck_assert_int_eq(vmm_vm_stats_read(h.vm, &es), 0);
        uint64_t latch = 0, data = 0;
        for (uint32_t i = 0; i < es.nr_sites; i++) {
            if (es.sites[i].kvm_reason != KVM_EXIT_IO)
                continue;
            if (es.sites[i].addr >= 0xcf8 && es.sites[i].addr < 0xcfc && es.sites[i].write)
                latch += es.sites[i].count;
            if (es.sites[i].addr >= 0xcfc && es.sites[i].addr < 0xd00)
                data += es.sites[i].count;
        }
        ck_assert_uint_gt(data, 32);
        if (coalesced == 0)
            ck_assert_uint_eq(latch, 0);
        else
            ck_assert_uint_gt(latch, 32);
    }
    /* The guest moved BAR 0 before using the device: every notification
     * still came through an ioeventfd at the new place, none as an exit to
     * the BAR; the completions went out as MSI-X vectors, the last one
     * (MSI-X off) through INTx. */
    struct vmm_virtio_pci_stats st = VMM_INIT(struct vmm_virtio_pci_stats);
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), 0);
    ck_assert_uint_eq(st.notify_exits, 0);
    ck_assert_uint_ge(st.notifies, 3);
    ck_assert_uint_ge(st.msix_interrupts, 2);
    ck_assert_uint_eq(st.intx_interrupts, 1);
    ck_assert_uint_eq(st.refused_writes, 3); /* queue_enable 0, two queue_size */
    ck_assert_uint_eq(st.status, 0xf);
    ck_assert_uint_eq(vmm_pci_bar_address(vmm_virtio_pci_dev(vp), 0), 0xc0100000ull);
    struct vmm_pci_stats ps = VMM_INIT(struct vmm_pci_stats);
    ck_assert_int_eq(vmm_pci_get_stats(bus, &ps), 0);
    ck_assert_uint_ge(ps.msix_delivered, 2);
    ck_assert_uint_gt(ps.config_reads, 32); /* the scan of 31 slots and more */
    harness_fini(&h);
}

START_TEST(library_split_irqchip)
{
    library_round_trip(VMM_IRQCHIP_SPLIT, false);
}
END_TEST

START_TEST(library_kernel_irqchip)
{
    library_round_trip(VMM_IRQCHIP_KERNEL, false);
}
END_TEST

/* ---- a device of the test's own ---- */

struct own_device {
    struct vmm_pci_dev *dev;
    uint32_t doorbell;
    unsigned rings, io_writes;
    uint8_t io_last;
    int msi_result;
};

static void own_read(void *opaque, unsigned bar, uint64_t off, void *data, uint32_t len)
{
    struct own_device *o = opaque;
    uint32_t v = 0;
    if (bar == 1)
        v = 0xabababab;
    else if (off == 0)
        v = 0x600dcafe;
    else if (off == 8)
        v = o->rings;
    memcpy(data, &v, len < 4 ? len : 4);
}

static void own_write(void *opaque, unsigned bar, uint64_t off, const void *data, uint32_t len)
{
    struct own_device *o = opaque;
    if (bar == 1) {
        o->io_writes++;
        memcpy(&o->io_last, data, 1);
    } else if (off == 4 && len == 4) {
        memcpy(&o->doorbell, data, 4);
        o->rings++;
        o->msi_result = vmm_pci_msi_notify(o->dev, 0);
    }
}

static const struct vmm_pci_device_ops own_ops = {
    .size = sizeof(struct vmm_pci_device_ops), .bar_read = own_read, .bar_write = own_write};

static void own_device_msi(enum vmm_irqchip irqchip)
{
    struct harness h;
    harness_init(&h, irqchip, 16);
    struct vmm_pci_bus *bus;
    ck_assert_int_eq(vmm_vm_add_pci(h.vm, NULL, &bus), 0);
    struct own_device o = {.msi_result = 1};
    struct vmm_pci_device d = VMM_INIT(
        struct vmm_pci_device, .vendor_id = 0x1234, .device_id = 0x5053, .class_code = 0xff00,
        .bars = {[0] = {.size = 0x1000}, [1] = {.size = 16, .flags = VMM_PCI_BAR_IO}},
        .msi_vectors = 1, .ops = &own_ops, .opaque = &o, .name = "own");
    ck_assert_int_eq(vmm_pci_add_device(bus, &d, &o.dev), 0);
    harness_load_guest(&h, "pci_msi", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h.exit.reason), h.exit.status,
                  h.output);
    ck_assert_ptr_nonnull(strstr(h.output, "pci_msi ok: slot 1, BAR 0xc0000000, ports 0xc000"));
    ck_assert_uint_eq(o.doorbell, 0x77);
    ck_assert_uint_eq(o.rings, 1);
    ck_assert_int_eq(o.msi_result, 0); /* sent, not left pending */
    ck_assert_uint_eq(o.io_writes, 1);
    ck_assert_uint_eq(o.io_last, 0x5a);
    harness_fini(&h);
}

START_TEST(library_coalesced_latch)
{
    library_round_trip(VMM_IRQCHIP_SPLIT, true);
}
END_TEST

START_TEST(own_device_split_irqchip)
{
    own_device_msi(VMM_IRQCHIP_SPLIT);
}
END_TEST

START_TEST(own_device_kernel_irqchip)
{
    own_device_msi(VMM_IRQCHIP_KERNEL);
}
END_TEST

/* Run vmm-run with args (stdin /dev/null), its output in out. Returns its
 * exit status. */
static int run_vmm(const char *args, char *out, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s </dev/null 2>&1", VMM_RUN_PATH, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(launcher_transport_pci)
{
    char out[4096], args[512];
    /* virtio-pci is the default transport, and --transport pci names it. */
    for (int named = 0; named < 2; named++) {
        snprintf(args, sizeof(args), "--kernel %s --mem 16M --rng%s",
                 harness_guest_path("virtio_pci"), named ? " --transport pci" : "");
        int st = run_vmm(args, out, sizeof(out));
        ck_assert_msg(st == 0, "status %d: %s", st, out);
        ck_assert_ptr_nonnull(strstr(out, "virtio_pci ok"));
    }
    /* On virtio-mmio the guest finds no PCI at all. */
    snprintf(args, sizeof(args), "--kernel %s --mem 16M --rng --transport mmio",
             harness_guest_path("virtio_pci"));
    ck_assert_int_eq(run_vmm(args, out, sizeof(out)), 1);
    ck_assert_ptr_nonnull(strstr(out, "no PCI host bridge"));
    /* Nor without virtio devices: no root complex is made for none. */
    snprintf(args, sizeof(args), "--kernel %s --mem 16M", harness_guest_path("virtio_pci"));
    ck_assert_int_eq(run_vmm(args, out, sizeof(out)), 1);
    ck_assert_ptr_nonnull(strstr(out, "no PCI host bridge"));
    snprintf(args, sizeof(args), "--kernel %s --transport isa", harness_guest_path("virtio_pci"));
    ck_assert_int_eq(run_vmm(args, out, sizeof(out)), 1);
    ck_assert_str_eq(out, "vmm-run: invalid --transport 'isa' (mmio or pci)\n");
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("virtio_pci");
    TCase *tc = tcase_create("kvm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, library_split_irqchip);
    tcase_add_test(tc, library_kernel_irqchip);
    tcase_add_test(tc, library_coalesced_latch);
    tcase_add_test(tc, launcher_transport_pci);
    tcase_add_test(tc, own_device_split_irqchip);
    tcase_add_test(tc, own_device_kernel_irqchip);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
