/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/vfio and its unit test: finding a PCI device's IOMMU
 * group in sysfs and checking it can be handed to VFIO. */
#ifndef VMM_VFIO_INTERNAL_H
#define VMM_VFIO_INTERNAL_H

#include <limits.h>
#include <linux/vfio.h>
#include <stdbool.h>
#include <stdint.h>
#include <vmm/pci.h>
#include <vmm/vfio.h>

struct vfio_location {
    char address[16]; /* canonical "dddd:bb:dd.f" */
    int group;        /* IOMMU group number */
};

/*
 * Parse address ("dddd:bb:dd.f" or "bb:dd.f", hexadecimal) into its
 * canonical form. Returns 0 or -EINVAL.
 */
int vmm_vfio_parse_address(const char *address, char canonical[16]);

/*
 * Look the device up under sysfs_root: it exists, is bound to vfio-pci, has
 * an IOMMU group, and every other device of the group is unbound or bound to
 * a driver VFIO accepts (vfio-pci, pci-stub, pcieport). Logs the reason of a
 * failure in one line. Returns 0, -EINVAL, -ENOENT, -EBUSY or -ENODEV.
 */
int vmm_vfio_locate(const char *sysfs_root, const char *address, struct vfio_location *loc);

/*
 * Whether [iova, iova + len) meets a range of IOMMU group group's
 * reserved_regions under sysfs_root (the MSI window, RMRRs: the IOMMU does
 * not translate those, so guest memory there cannot be DMA-mapped). Returns
 * 0 (no, or the group lists none), -EINVAL (yes: logged with the range and
 * its kind) or -EIO (a line that does not parse).
 */
int vmm_vfio_reserved_overlap(const char *sysfs_root, int group, uint64_t iova, uint64_t len);

#define MAX_GROUPS 64

struct vfio_group {
    int id;
    int fd;
    unsigned users; /* devices open through it */
};

struct vmm_vfio_container {
    int fd;
    char sysfs_root[PATH_MAX];
    char dev_root[PATH_MAX];
    unsigned long iommu_type; /* VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU */
    bool iommu_set;
    struct vfio_group groups[MAX_GROUPS];
    unsigned nr_groups;
    unsigned nr_devices;
    struct vfio_iommu_type1_dma_map *maps; /* what map_memory mapped */
    unsigned nr_maps, maps_cap;
    const struct vmm_memory *mapped; /* the map map_memory mapped */
    struct vmm_vm *vm;               /* attach_vm's, or NULL */
    int kvm_dev_fd;                  /* its KVM VFIO device, -1 before attach_vm */
};

struct vmm_vfio_device {
    struct vmm_vfio_container *c;
    struct vfio_group *group;
    int fd;
    char address[16];
    struct vfio_device_info info;
};

/* A range of a BAR. */
struct vfio_range {
    uint64_t off, len;
};

#define VFIO_MAX_PIECES 8 /* mapped pieces of one BAR; the rest is trapped */

/*
 * lib/vfio/vfio_pci.c: the pieces of a BAR of size bytes to map into the
 * guest: areas (VFIO's sparse-mmap list; NULL: the whole BAR) clipped to
 * the BAR and shrunk to whole pages, minus every page that meets one of
 * the holes (the MSI-X table and PBA; len 0: none). At most
 * VFIO_MAX_PIECES, in order; returns how many.
 */
unsigned vmm_vfio_bar_pieces(uint64_t size, const struct vfio_range *areas, unsigned nr_areas,
                             const struct vfio_range *holes, unsigned nr_holes,
                             struct vfio_range out[VFIO_MAX_PIECES]);

/* An MSI-X capability as the device describes it. */
struct vfio_msix {
    unsigned vectors;    /* table size */
    unsigned bar;        /* the BAR of table and PBA */
    uint64_t table, pba; /* their offsets in it */
};

/*
 * lib/vfio/vfio_pci.c: the MSI-X capability's message control, table and
 * PBA registers (ctl, table, pba) checked against the device's BAR sizes
 * (bar_size[i]: VFIO's size of region i, 0: none) into *out. Returns 0, or
 * -EINVAL for a BAR index past the last BAR (BIR 6 or 7), table and PBA in
 * different BARs, more than VMM_PCI_MSIX_MAX vectors, or a table or PBA
 * that does not fit in its BAR; *out is then left alone.
 */
int vmm_vfio_msix_parse(uint16_t ctl, uint32_t table, uint32_t pba,
                        const uint64_t bar_size[VMM_PCI_MAX_BARS], struct vfio_msix *out);

/* lib/vfio/vfio.c: VFIO_DEVICE_GET_REGION_INFO of region index into *ri
 * (0, -EINVAL past the last region, or -errno). */
int vmm_vfio_region_info(struct vmm_vfio_device *d, unsigned index, struct vfio_region_info *ri);

#endif /* VMM_VFIO_INTERNAL_H */
