/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/vfio and its unit test: finding a PCI device's IOMMU
 * group in sysfs and checking it can be handed to VFIO. */
#ifndef VMM_VFIO_INTERNAL_H
#define VMM_VFIO_INTERNAL_H

#include <stdint.h>

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

#endif /* VMM_VFIO_INTERNAL_H */
