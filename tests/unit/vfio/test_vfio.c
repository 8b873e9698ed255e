/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/vfio without VFIO: PCI addresses, the sysfs checks that name the
 * usual set-up mistakes (run against a fake sysfs tree of the shape the
 * kernel exposes), and the container's errors for a missing or foreign
 * /dev/vfio/vfio. The ioctls themselves need a host with VFIO.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/vfio.h>

#include "check_compat.h"
#include "vfio/vfio_internal.h"

static char root[PATH_MAX];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(root, sizeof(root), "vmm-vfio-")));
}

static void teardown(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void mkdirs(const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* root/rel -> target (absolute under root). */
static void link_to(const char *rel, const char *target)
{
    char path[PATH_MAX * 2], to[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(to, sizeof(to), "%s/%s", root, target);
    ck_assert_int_eq(symlink(to, path), 0);
}

/* A PCI device at addr bound to driver (NULL: none), in IOMMU group
 * (negative: none). */
static void add_device(const char *addr, const char *driver, int group)
{
    char rel[256], target[256];
    snprintf(rel, sizeof(rel), "bus/pci/devices/%s", addr);
    mkdirs(rel);
    if (driver) {
        snprintf(target, sizeof(target), "bus/pci/drivers/%s", driver);
        mkdirs(target);
        snprintf(rel, sizeof(rel), "bus/pci/devices/%s/driver", addr);
        link_to(rel, target);
    }
    if (group >= 0) {
        snprintf(target, sizeof(target), "kernel/iommu_groups/%d/devices", group);
        mkdirs(target);
        snprintf(rel, sizeof(rel), "bus/pci/devices/%s/iommu_group", addr);
        snprintf(target, sizeof(target), "kernel/iommu_groups/%d", group);
        link_to(rel, target);
        snprintf(rel, sizeof(rel), "kernel/iommu_groups/%d/devices/%s", group, addr);
        snprintf(target, sizeof(target), "bus/pci/devices/%s", addr);
        link_to(rel, target);
    }
}

START_TEST(addresses)
{
    char c[16];
    ck_assert_int_eq(vmm_vfio_parse_address("0000:00:03.0", c), 0);
    ck_assert_str_eq(c, "0000:00:03.0");
    ck_assert_int_eq(vmm_vfio_parse_address("1f:1F.7", c), 0);
    ck_assert_str_eq(c, "0000:1f:1f.7");
    ck_assert_int_eq(vmm_vfio_parse_address("ABCD:ff:00.1", c), 0);
    ck_assert_str_eq(c, "abcd:ff:00.1");
    static const char *const bad[] = {
        "",        "00:20.0",    "00:03.8",       "0:00:03.0",     "00:03.0x", "zz:03.0",
        "00-03.0", "0000:00:03", "00000:00:03.0", "0000:00:03.0 ", "+0:03.0",  "00:3.0"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(vmm_vfio_parse_address(bad[i], c) == -EINVAL, "'%s' accepted", bad[i]);
    ck_assert_int_eq(vmm_vfio_parse_address(NULL, c), -EINVAL);
}
END_TEST

START_TEST(usual_mistakes)
{
    struct vfio_location loc;
    add_device("0000:00:02.0", "e1000e", 4);
    add_device("0000:00:03.0", NULL, 5);
    add_device("0000:00:04.0", "vfio-pci", -1);
    add_device("0000:00:05.0", "vfio-pci", 6);
    add_device("0000:00:06.0", "e1000", 6); /* shares group 6 */
    ck_assert_int_eq(vmm_vfio_locate(root, "00:01.0", &loc), -ENOENT);
    ck_assert_int_eq(vmm_vfio_locate(root, "00:02.0", &loc), -EBUSY);  /* a host driver */
    ck_assert_int_eq(vmm_vfio_locate(root, "00:03.0", &loc), -EBUSY);  /* no driver */
    ck_assert_int_eq(vmm_vfio_locate(root, "00:04.0", &loc), -ENODEV); /* no IOMMU */
    ck_assert_int_eq(vmm_vfio_locate(root, "00:05.0", &loc), -EBUSY);  /* group not viable */
    ck_assert_int_eq(vmm_vfio_locate(root, "00:5.0", &loc), -EINVAL);
}
END_TEST

START_TEST(viable_groups)
{
    struct vfio_location loc;
    /* A bridge on pcieport, an unbound function and a pci-stub one may
     * share the group. */
    add_device("0000:00:1c.0", "pcieport", 9);
    add_device("0000:01:00.0", "vfio-pci", 9);
    add_device("0000:01:00.1", NULL, 9);
    add_device("0000:01:00.2", "pci-stub", 9);
    ck_assert_int_eq(vmm_vfio_locate(root, "01:00.0", &loc), 0);
    ck_assert_str_eq(loc.address, "0000:01:00.0");
    ck_assert_int_eq(loc.group, 9);
    add_device("0000:00:07.0", "vfio-pci", 12);
    ck_assert_int_eq(vmm_vfio_locate(root, "0000:00:07.0", &loc), 0);
    ck_assert_int_eq(loc.group, 12);
}
END_TEST

static void write_file(const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(reserved_ranges)
{
    mkdirs("kernel/iommu_groups/3");
    write_file("kernel/iommu_groups/3/reserved_regions",
               "0x00000000fee00000 0x00000000feefffff msi\n"
               "0x000000007c000000 0x000000007c0fffff direct\n");
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0, 0x7c000000), 0);
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0, 0x7c000001), -EINVAL);
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0x7c100000, 0x82d00000), 0);
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0x7c100000, 0x82d00001), -EINVAL);
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0xfeeff000, 0x1000), -EINVAL);
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0xfef00000, 1ull << 40), 0);
    /* A group that lists none (older kernels), and a line that is garbage. */
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 4, 0, UINT64_MAX), 0);
    write_file("kernel/iommu_groups/3/reserved_regions", "0xfee00000 msi\n");
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0, 0x1000), -EIO);
    write_file("kernel/iommu_groups/3/reserved_regions", "0x2000 0x1000 msi\n");
    ck_assert_int_eq(vmm_vfio_reserved_overlap(root, 3, 0, 0x1000), -EIO);
}
END_TEST

START_TEST(container_without_vfio)
{
    struct vmm_vfio_container *c;
    struct vmm_vfio_config cfg = VMM_INIT(struct vmm_vfio_config, .dev_root = root);
    ck_assert_int_eq(vmm_vfio_container_open(&cfg, &c), -ENOENT);
    /* Something that is not VFIO's container: its ioctls fail. */
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/vfio", root);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(vmm_vfio_container_open(&cfg, &c), -ENOTSUP);
    cfg.size = sizeof(cfg) + 8;
    ck_assert_int_eq(vmm_vfio_container_open(&cfg, &c), -EINVAL);
    ck_assert_int_eq(vmm_vfio_container_open(NULL, NULL), -EINVAL);
    vmm_vfio_container_close(NULL);
    vmm_vfio_device_close(NULL);
    ck_assert_int_eq(vmm_vfio_container_map_memory(NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_vfio_container_attach_vm(NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_vfio_pci_add(NULL, NULL, NULL), -EINVAL);
}
END_TEST

/* Which pages of a BAR become KVM memory slots: what VFIO lets map, in
 * whole pages, never the MSI-X table's or PBA's. */
START_TEST(bar_pieces)
{
    struct vfio_range out[VFIO_MAX_PIECES];
    /* The whole BAR, no MSI-X. */
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x100000, NULL, 0, NULL, 0, out), 1);
    ck_assert_uint_eq(out[0].off, 0);
    ck_assert_uint_eq(out[0].len, 0x100000);
    /* Under a page: nothing to map. */
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x800, NULL, 0, NULL, 0, out), 0);
    /* e1000e's BAR 3: table at 0 (5 vectors), PBA at 0x2000. */
    struct vfio_range holes[2] = {{0, 5 * 16}, {0x2000, 8}};
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x4000, NULL, 0, holes, 2, out), 2);
    ck_assert_uint_eq(out[0].off, 0x1000);
    ck_assert_uint_eq(out[0].len, 0x1000);
    ck_assert_uint_eq(out[1].off, 0x3000);
    ck_assert_uint_eq(out[1].len, 0x1000);
    /* A table straddling a page boundary takes both pages. */
    struct vfio_range straddle = {0x1ff0, 32};
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x4000, NULL, 0, &straddle, 1, out), 2);
    ck_assert_uint_eq(out[0].len, 0x1000);
    ck_assert_uint_eq(out[1].off, 0x3000);
    /* Sparse areas: shrunk to whole pages, clipped to the BAR, past it
     * dropped; a hole wrapping around the address space takes the rest. */
    struct vfio_range areas[3] = {{0x10, 0x2ff0}, {0x7000, 0x4000}, {0x10000, 0x1000}};
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x8000, areas, 3, NULL, 0, out), 2);
    ck_assert_uint_eq(out[0].off, 0x1000);
    ck_assert_uint_eq(out[0].len, 0x2000);
    ck_assert_uint_eq(out[1].off, 0x7000);
    ck_assert_uint_eq(out[1].len, 0x1000);
    struct vfio_range wrap = {0x2000, UINT64_MAX - 0x1000};
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x8000, NULL, 0, &wrap, 1, out), 1);
    ck_assert_uint_eq(out[0].len, 0x2000);
    /* Many holes: never more than VFIO_MAX_PIECES pieces. */
    struct vfio_range many[16];
    for (unsigned i = 0; i < 16; i++)
        many[i] = (struct vfio_range){0x2000 * i + 0x1000, 8};
    ck_assert_uint_eq(vmm_vfio_bar_pieces(0x20000, NULL, 0, many, 16, out), VFIO_MAX_PIECES);
}
END_TEST

/* The MSI-X capability's table and PBA: in one existing BAR, inside it. */
START_TEST(msix_cap)
{
    const uint64_t sizes[VMM_PCI_MAX_BARS] = {0x20000, 0, 0, 0x4000, 0, 0};
    struct vfio_msix m = {.vectors = 99};
    /* e1000e: 5 vectors, table at BAR 3 + 0, PBA at BAR 3 + 0x2000. */
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 3, 0x2003, sizes, &m), 0);
    ck_assert_uint_eq(m.vectors, 5);
    ck_assert_uint_eq(m.bar, 3);
    ck_assert_uint_eq(m.table, 0);
    ck_assert_uint_eq(m.pba, 0x2000);
    /* A table, then a PBA, ending exactly at the BAR's end; a table one
     * entry past it. */
    ck_assert_int_eq(vmm_vfio_msix_parse(0, 0x3ff3, 0x3fe3, sizes, &m), 0);
    ck_assert_uint_eq(m.vectors, 1);
    ck_assert_uint_eq(m.table, 0x3ff0);
    ck_assert_int_eq(vmm_vfio_msix_parse(0, 0x3fe3, 0x3ffb, sizes, &m), 0);
    ck_assert_uint_eq(m.pba, 0x3ff8);
    ck_assert_int_eq(vmm_vfio_msix_parse(1, 0x3ff3, 0x3fe3, sizes, &m), -EINVAL);
    m.vectors = 99;
    /* BIR 6 and 7 name no BAR (the host device's word, never trusted). */
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 6, 0x2006, sizes, &m), -EINVAL);
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 7, 0x2007, sizes, &m), -EINVAL);
    /* Table and PBA in different BARs. */
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 3, 0x2000, sizes, &m), -EINVAL);
    /* A BAR the device does not have. */
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 1, 0x2001, sizes, &m), -EINVAL);
    /* The table past the BAR's end. */
    ck_assert_int_eq(vmm_vfio_msix_parse(255, 0x3803, 0x2003, sizes, &m), -EINVAL);
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 0xfffffff3, 0x2003, sizes, &m), -EINVAL);
    /* The PBA past it. */
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 3, 0x4003, sizes, &m), -EINVAL);
    ck_assert_int_eq(vmm_vfio_msix_parse(4, 3, 0xfffffffb, sizes, &m), -EINVAL);
    ck_assert_uint_eq(m.vectors, 99); /* left alone */
    /* 256 vectors fit BAR 0; 257 (or 2048) are more than the bus has. */
    ck_assert_int_eq(vmm_vfio_msix_parse(255, 0, 0x1000, sizes, &m), 0);
    ck_assert_uint_eq(m.vectors, 256);
    ck_assert_int_eq(vmm_vfio_msix_parse(256, 0, 0x10000, sizes, &m), -EINVAL);
    ck_assert_int_eq(vmm_vfio_msix_parse(0x7ff, 0, 0x10000, sizes, &m), -EINVAL);
    ck_assert_uint_eq(m.vectors, 256);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vfio");
    TCase *tc = tcase_create("sysfs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, addresses);
    tcase_add_test(tc, usual_mistakes);
    tcase_add_test(tc, viable_groups);
    tcase_add_test(tc, reserved_ranges);
    tcase_add_test(tc, container_without_vfio);
    tcase_add_test(tc, bar_pieces);
    tcase_add_test(tc, msix_cap);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
