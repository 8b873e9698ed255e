/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VFIO, the first part of device passthrough: a container with the type1
 * IOMMU, the IOMMU groups of the devices opened in it, and a PCI device
 * opened by its address, with its regions described and its configuration
 * space and regions readable and writable, guest memory DMA-mapped (kept
 * clear of the IOMMU's reserved ranges, following memory the VM adds later),
 * KVM's VFIO pseudo-device, and the device as a function on libvmm's PCI
 * bus (vmm_vfio_pci_add). Not here: iommufd/cdev.
 *
 * Opening a device checks, before any ioctl, what usually goes wrong, and
 * logs one line saying which: the device does not exist, it is bound to a
 * host driver rather than vfio-pci, it has no IOMMU group (no IOMMU, or it is
 * off), another device of its group is still bound to a host driver (the
 * group is not viable), or /dev/vfio/<group> cannot be opened (permission).
 */
#ifndef VMM_VFIO_H
#define VMM_VFIO_H

#include <stdint.h>
#include <vmm/error.h>
#include <vmm/memory.h>
#include <vmm/pci.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmm_vfio_container;
struct vmm_vfio_device;

/* Where VFIO lives. Zero means default; growth convention (abi.h). */
struct vmm_vfio_config {
    uint32_t size;          /* sizeof(struct vmm_vfio_config) */
    const char *sysfs_root; /* default "/sys" */
    const char *dev_root;   /* default "/dev/vfio" */
};

/*
 * Open the VFIO container (dev_root/vfio) and check the API version and the
 * type1 IOMMU (v2 preferred). cfg may be NULL. Returns 0, -EINVAL (a size
 * the library does not know), -ENOENT (no VFIO: the vfio modules are not
 * loaded), -EACCES, -ENOTSUP (another API version, or no type1 IOMMU) or
 * -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_vfio_container_open(const struct vmm_vfio_config *cfg,
                                                 struct vmm_vfio_container **out);

/* Close the container (unmapping what vmm_vfio_container_map_memory
 * mapped); every device opened in it must be closed first. Accepts NULL. */
VMM_API void vmm_vfio_container_close(struct vmm_vfio_container *c);

/*
 * DMA-map every region of mem for the container's devices, readable and
 * writable, at IOVA = guest-physical address, so a device DMAs to guest
 * memory where the guest's driver says. At least one device must be open
 * (the IOMMU is set with the first group). The regions must stay mapped in
 * the host while the container maps them. Returns 0, -EINVAL (also: a
 * region meets a range a group's IOMMU reserves, such as the MSI window;
 * logged with the range), -EBUSY (no device open yet, or memory already
 * mapped) or a -errno from VFIO_IOMMU_MAP_DMA (nothing stays mapped then).
 */
VMM_API VMM_MUST_USE int vmm_vfio_container_map_memory(struct vmm_vfio_container *c,
                                                       const struct vmm_memory *mem);

/* Undo vmm_vfio_container_map_memory (nothing when nothing is mapped). */
VMM_API void vmm_vfio_container_unmap_memory(struct vmm_vfio_container *c);

/*
 * Create KVM's VFIO pseudo-device on vm and add the container's groups to
 * it, and every group opened later (KVM then knows the devices can do DMA:
 * coherency and no-snoop handling). From then on, when the container maps
 * the VM's own memory (vmm_vm_memory), regions vmm_vm_add_memory adds are
 * DMA-mapped too (a failure there fails that vmm_vm_add_memory). Either
 * may go first: a VM destroyed before the container is let go of (and its
 * memory unmapped from the container) on the way; a container with
 * devices on the VM's PCI bus (vmm_vfio_pci_add) must outlive the VM.
 * Returns 0, -EINVAL, -EBUSY (already attached) or a -errno from KVM.
 */
VMM_API VMM_MUST_USE int vmm_vfio_container_attach_vm(struct vmm_vfio_container *c,
                                                      struct vmm_vm *vm);

/*
 * Open the PCI device at address ("0000:00:03.0", or "00:03.0" in domain 0)
 * in c: checks it as the top of this file says, adds its group to the
 * container (setting the IOMMU with the first group), and gets the device.
 * Returns 0, -EINVAL (a malformed address), -ENOENT (no such device),
 * -EBUSY (bound to another driver, or the group is not viable), -ENODEV (no
 * IOMMU group), -EACCES, -ENOTSUP (not a vfio-pci device) or another -errno
 * from VFIO.
 */
VMM_API VMM_MUST_USE int vmm_vfio_device_open(struct vmm_vfio_container *c, const char *address,
                                              struct vmm_vfio_device **out);

/* Reset the device where VFIO can, and close it. Accepts NULL. */
VMM_API void vmm_vfio_device_close(struct vmm_vfio_device *d);

/* Number of regions (BARs 0-5, the ROM, configuration space, ...: VFIO's
 * VFIO_PCI_*_REGION_INDEX) and interrupt kinds of the device. */
VMM_API unsigned vmm_vfio_device_num_regions(const struct vmm_vfio_device *d);
VMM_API unsigned vmm_vfio_device_num_irqs(const struct vmm_vfio_device *d);

/* struct vmm_vfio_region.flags */
#define VMM_VFIO_REGION_READ  (1u << 0)
#define VMM_VFIO_REGION_WRITE (1u << 1)
#define VMM_VFIO_REGION_MMAP  (1u << 2)

/* One region of a device. */
struct vmm_vfio_region {
    uint32_t size;   /* sizeof(struct vmm_vfio_region); growth convention (abi.h) */
    unsigned index;  /* VFIO's region index */
    uint32_t flags;  /* VMM_VFIO_REGION_* */
    uint64_t len;    /* bytes; 0: the device does not have it */
    uint64_t offset; /* where it lies in the device fd (pread/pwrite/mmap) */
};

/* Describe region index into *region (its .size set by the caller).
 * Returns 0, -EINVAL (index >= num_regions, a size the library does not
 * know) or a -errno from VFIO_DEVICE_GET_REGION_INFO. */
VMM_API int vmm_vfio_device_region(struct vmm_vfio_device *d, unsigned index,
                                   struct vmm_vfio_region *region);

/* Read len bytes of the device's configuration space at offset (through
 * VFIO, which virtualizes parts of it). Returns 0, -EINVAL (past the
 * region) or -EIO/-errno. */
VMM_API int vmm_vfio_device_config_read(struct vmm_vfio_device *d, uint32_t offset, void *data,
                                        uint32_t len);

/* Write len bytes of configuration space at offset. Returns as
 * vmm_vfio_device_config_read. */
VMM_API int vmm_vfio_device_config_write(struct vmm_vfio_device *d, uint32_t offset,
                                         const void *data, uint32_t len);

/* Read or write len bytes at offset of region index (a BAR: the device's
 * registers). Returns 0, -EINVAL (no such region, past its end, or one
 * without that access) or -EIO/-errno. */
VMM_API int vmm_vfio_device_region_read(struct vmm_vfio_device *d, unsigned index, uint64_t offset,
                                        void *data, uint32_t len);
VMM_API int vmm_vfio_device_region_write(struct vmm_vfio_device *d, unsigned index, uint64_t offset,
                                         const void *data, uint32_t len);

/*
 * Present d to the guest as a function on bus (a VM's: vmm_vm_add_pci).
 * Its identity, BARs (sizes from VFIO, placed by the bus) and power
 * management capability come from the device; its MSI and MSI-X
 * capabilities are emulated by the bus (vectors as the device has them,
 * MSI-X table and PBA in the same BAR). The guest's command register
 * (decoding, bus mastering, INTx disable) goes on to the device. BAR pages
 * VFIO lets map become KVM memory slots wherever the guest places the BAR
 * and while it decodes (accesses there never leave the guest), except the
 * pages of the MSI-X table and PBA, which the bus emulates; every other BAR
 * access traps and is forwarded with pread/pwrite on the device fd. The
 * device's MSI and MSI-X go straight to the bus's irqfds on the vectors'
 * KVM routes; while the guest masks a vector (or disables it, or gives it
 * an address no local APIC takes) VFIO signals an eventfd of the VM's event
 * loop instead, which leaves the interrupt pending with the bus until the
 * vector can take it. INTx needs the in-kernel irqchip (a resample irqfd
 * on the slot's line). DMA goes to guest memory the container maps
 * (vmm_vfio_container_map_memory of the VM's memory, which attach_vm then
 * keeps following vmm_vm_add_memory). d belongs to this call whatever it
 * returns: closed (the device reset) when the function is destroyed with
 * the VM, or at once when the function could not be added; a failure
 * after that (wiring its interrupts) leaves it on the bus, without them,
 * until the VM goes. Before the guest runs.
 * Returns 0, -EINVAL (NULL, or a bus without a VM), -ENOTSUP (a bridge),
 * -ENOSPC (no slot or window room: see vmm_pci_add_device) or a -errno.
 * out may be NULL.
 */
VMM_API VMM_MUST_USE int vmm_vfio_pci_add(struct vmm_vfio_device *d, struct vmm_pci_bus *bus,
                                          struct vmm_pci_dev **out);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VFIO_H */
