/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VFIO containers, groups and PCI devices (see vfio.h): the sysfs checks
 * that turn the usual set-up mistakes into one clear line, then the VFIO
 * UAPI (linux/vfio.h): container API version and type1 IOMMU, group status
 * and container, device fd, device and region info.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <vmm/vfio.h>

#include "vfio_internal.h"
#include "vmm_internal.h"

/* ---- sysfs ---- */

static int hex_field(const char *s, unsigned digits, unsigned max, unsigned *out)
{
    unsigned v = 0;
    for (unsigned i = 0; i < digits; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -EINVAL;
        v = v * 16 + d;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int vmm_vfio_parse_address(const char *a, char canonical[16])
{
    unsigned dom = 0, bus, dev, fn;
    if (!a)
        return -EINVAL;
    size_t n = strlen(a);
    if (n == 12) {
        if (a[4] != ':' || hex_field(a, 4, 0xffff, &dom) < 0)
            return -EINVAL;
        a += 5;
    } else if (n != 7) {
        return -EINVAL;
    }
    if (a[2] != ':' || a[5] != '.' || hex_field(a, 2, 0xff, &bus) < 0 ||
        hex_field(a + 3, 2, 0x1f, &dev) < 0 || hex_field(a + 6, 1, 7, &fn) < 0)
        return -EINVAL;
    snprintf(canonical, 16, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
    return 0;
}

/* The last component of what the link at path points to, or "" (no link). */
static void link_name(const char *path, char *name, size_t size)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    name[0] = '\0';
    if (n <= 0)
        return;
    target[n] = '\0';
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t len = strnlen(base, size - 1);
    memcpy(name, base, len);
    name[len] = '\0';
}

/* Drivers a device may share a group with (the kernel's own list). */
static bool driver_ok_in_group(const char *driver)
{
    return !*driver || !strcmp(driver, "vfio-pci") || !strcmp(driver, "pci-stub") ||
           !strcmp(driver, "pcieport");
}

int vmm_vfio_locate(const char *root, const char *address, struct vfio_location *loc)
{
    char path[PATH_MAX], name[NAME_MAX + 1];
    if (vmm_vfio_parse_address(address, loc->address) < 0) {
        vmm_log_error("vfio: '%s' is not a PCI address (DDDD:BB:DD.F or BB:DD.F)",
                      address ? address : "(null)");
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s", root, loc->address);
    if (access(path, F_OK) < 0) {
        vmm_log_error("vfio: there is no PCI device %s", loc->address);
        return -ENOENT;
    }
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/driver", root, loc->address);
    link_name(path, name, sizeof(name));
    if (strcmp(name, "vfio-pci") != 0) {
        vmm_log_error("vfio: %s is %s%s, not to vfio-pci (echo vfio-pci > "
                      "/sys/bus/pci/devices/%s/driver_override, then unbind and bind it)",
                      loc->address, *name ? "bound to " : "not bound to any driver", name,
                      loc->address);
        return -EBUSY;
    }
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/iommu_group", root, loc->address);
    link_name(path, name, sizeof(name));
    char *end;
    long group = strtol(name, &end, 10);
    if (!*name || *end || group < 0 || group > INT_MAX) {
        vmm_log_error("vfio: %s has no IOMMU group: is an IOMMU there and on (intel_iommu=on, "
                      "amd_iommu=on)?",
                      loc->address);
        return -ENODEV;
    }
    loc->group = (int)group;
    snprintf(path, sizeof(path), "%s/kernel/iommu_groups/%ld/devices", root, group);
    DIR *dir = opendir(path);
    if (!dir) {
        vmm_log_error("vfio: cannot list IOMMU group %ld of %s", group, loc->address);
        return -ENODEV;
    }
    int r = 0;
    unsigned seen = 0;
    for (struct dirent *e; (e = readdir(dir)) && r == 0 && seen < 1024; seen++) {
        if (e->d_name[0] == '.')
            continue;
        char dpath[PATH_MAX + NAME_MAX + 16];
        snprintf(dpath, sizeof(dpath), "%s/%s/driver", path, e->d_name);
        link_name(dpath, name, sizeof(name));
        if (!driver_ok_in_group(name)) {
            vmm_log_error("vfio: IOMMU group %ld of %s is not viable: %s is bound to %s (bind "
                          "every device of the group to vfio-pci, or unbind it)",
                          group, loc->address, e->d_name, name);
            r = -EBUSY;
        }
    }
    closedir(dir);
    return r;
}

/* ---- the container ---- */

static int memory_added(void *opaque, unsigned region);
static void vm_gone(void *opaque);

int vmm_vfio_container_open(const struct vmm_vfio_config *cfg, struct vmm_vfio_container **out)
{
    struct vmm_vfio_config c = {.size = sizeof(c)};
    if (!out || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    struct vmm_vfio_container *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->kvm_dev_fd = -1;
    snprintf(v->sysfs_root, sizeof(v->sysfs_root), "%s", c.sysfs_root ? c.sysfs_root : "/sys");
    snprintf(v->dev_root, sizeof(v->dev_root), "%s", c.dev_root ? c.dev_root : "/dev/vfio");
    char path[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/vfio", v->dev_root);
    v->fd = open(path, O_RDWR | O_CLOEXEC);
    if (v->fd < 0) {
        int r = -errno;
        vmm_log_error("vfio: cannot open %s: %s%s", path, vmm_strerror(r),
                      r == -ENOENT ? " (load the vfio-pci module)" : "");
        free(v);
        return r;
    }
    int r = ioctl(v->fd, VFIO_GET_API_VERSION);
    if (r != VFIO_API_VERSION) {
        vmm_log_error("vfio: %s speaks VFIO API %d, not %d", path, r, VFIO_API_VERSION);
        r = -ENOTSUP;
    } else if (ioctl(v->fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0) {
        v->iommu_type = VFIO_TYPE1v2_IOMMU;
        r = 0;
    } else if (ioctl(v->fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) > 0) {
        v->iommu_type = VFIO_TYPE1_IOMMU;
        r = 0;
    } else {
        vmm_log_error("vfio: no type1 IOMMU (module vfio_iommu_type1)");
        r = -ENOTSUP;
    }
    if (r < 0) {
        close(v->fd);
        free(v);
        return r;
    }
    *out = v;
    return 0;
}

void vmm_vfio_container_close(struct vmm_vfio_container *v)
{
    if (!v)
        return;
    if (v->nr_devices)
        vmm_log_warn("vfio: container closed with %u devices open", v->nr_devices);
    vmm_vfio_container_unmap_memory(v);
    if (v->vm) {
        vmm_vm_remove_memory_listener(v->vm, memory_added, v);
        vmm_vm_remove_cleanup(v->vm, vm_gone, v);
    }
    if (v->kvm_dev_fd >= 0)
        close(v->kvm_dev_fd);
    for (unsigned i = 0; i < v->nr_groups; i++)
        close(v->groups[i].fd);
    close(v->fd);
    free(v);
}

/* Tell KVM's VFIO device about group g. */
static int kvm_add_group(struct vmm_vfio_container *v, struct vfio_group *g)
{
    struct kvm_device_attr attr = {
        .group = KVM_DEV_VFIO_GROUP,
        .attr = KVM_DEV_VFIO_GROUP_ADD,
        .addr = (uint64_t)(uintptr_t)&g->fd,
    };
    if (ioctl(v->kvm_dev_fd, KVM_SET_DEVICE_ATTR, &attr) < 0) {
        int r = -errno;
        vmm_log_error("vfio: adding group %d to KVM's VFIO device: %s", g->id, vmm_strerror(r));
        return r;
    }
    return 0;
}

/* The container's entry for group id, opening and attaching it if new. */
static int group_get(struct vmm_vfio_container *v, int id, struct vfio_group **out)
{
    for (unsigned i = 0; i < v->nr_groups; i++) {
        if (v->groups[i].id == id) {
            *out = &v->groups[i];
            return 0;
        }
    }
    if (v->nr_groups == MAX_GROUPS)
        return -ENOSPC;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%d", v->dev_root, id);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int r = -errno;
        vmm_log_error("vfio: cannot open %s: %s%s", path, vmm_strerror(r),
                      r == -EACCES || r == -EPERM ? " (no permission: run as root or get the "
                                                    "group's device node)"
                      : r == -EBUSY               ? " (another process holds it)"
                                                  : "");
        return r;
    }
    struct vfio_group_status st = {.argsz = sizeof(st)};
    int r = 0;
    if (ioctl(fd, VFIO_GROUP_GET_STATUS, &st) < 0) {
        r = -errno;
    } else if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
        vmm_log_error("vfio: IOMMU group %d is not viable (a device of it is bound to a host "
                      "driver)",
                      id);
        r = -EBUSY;
    } else if (ioctl(fd, VFIO_GROUP_SET_CONTAINER, &v->fd) < 0) {
        r = -errno;
        vmm_log_error("vfio: adding group %d to the container: %s", id, vmm_strerror(r));
    } else if (!v->iommu_set) {
        if (ioctl(v->fd, VFIO_SET_IOMMU, v->iommu_type) < 0) {
            r = -errno;
            vmm_log_error("vfio: setting the type1 IOMMU: %s%s", vmm_strerror(r),
                          r == -EPERM ? " (no interrupt remapping: the IOMMU needs intremap, "
                                        "or allow_unsafe_interrupts)"
                                      : "");
            (void)ioctl(fd, VFIO_GROUP_UNSET_CONTAINER);
        } else {
            v->iommu_set = true;
        }
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    struct vfio_group *g = &v->groups[v->nr_groups++];
    *g = (struct vfio_group){.id = id, .fd = fd};
    if (v->kvm_dev_fd >= 0 && (r = kvm_add_group(v, g)) < 0) {
        v->nr_groups--;
        (void)ioctl(fd, VFIO_GROUP_UNSET_CONTAINER);
        close(fd);
        return r;
    }
    *out = g;
    return 0;
}

/* ---- devices ---- */

int vmm_vfio_device_open(struct vmm_vfio_container *v, const char *address,
                         struct vmm_vfio_device **out)
{
    struct vfio_location loc;
    if (!v || !out)
        return -EINVAL;
    int r = vmm_vfio_locate(v->sysfs_root, address, &loc);
    if (r < 0)
        return r;
    struct vfio_group *g;
    r = group_get(v, loc.group, &g);
    if (r < 0)
        return r;
    struct vmm_vfio_device *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->c = v;
    d->group = g;
    snprintf(d->address, sizeof(d->address), "%s", loc.address);
    d->fd = ioctl(g->fd, VFIO_GROUP_GET_DEVICE_FD, d->address);
    if (d->fd < 0) {
        r = -errno;
        vmm_log_error("vfio: getting device %s from group %d: %s", d->address, g->id,
                      vmm_strerror(r));
        free(d);
        return r;
    }
    d->info = (struct vfio_device_info){.argsz = sizeof(d->info)};
    if (ioctl(d->fd, VFIO_DEVICE_GET_INFO, &d->info) < 0) {
        r = -errno;
    } else if (!(d->info.flags & VFIO_DEVICE_FLAGS_PCI) ||
               d->info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
        vmm_log_error("vfio: %s is not a vfio-pci device", d->address);
        r = -ENOTSUP;
    }
    if (r < 0) {
        close(d->fd);
        free(d);
        return r;
    }
    g->users++;
    v->nr_devices++;
    vmm_log_debug("vfio: %s open (group %d, %u regions, %u interrupt kinds)", d->address, g->id,
                  d->info.num_regions, d->info.num_irqs);
    *out = d;
    return 0;
}

void vmm_vfio_device_close(struct vmm_vfio_device *d)
{
    if (!d)
        return;
    if ((d->info.flags & VFIO_DEVICE_FLAGS_RESET) && ioctl(d->fd, VFIO_DEVICE_RESET) < 0)
        vmm_log_warn("vfio: resetting %s: %s", d->address, vmm_strerror(-errno));
    close(d->fd);
    d->group->users--;
    d->c->nr_devices--;
    free(d);
}

unsigned vmm_vfio_device_num_regions(const struct vmm_vfio_device *d)
{
    return d->info.num_regions;
}

unsigned vmm_vfio_device_num_irqs(const struct vmm_vfio_device *d)
{
    return d->info.num_irqs;
}

int vmm_vfio_region_info(struct vmm_vfio_device *d, unsigned index, struct vfio_region_info *ri)
{
    if (index >= d->info.num_regions)
        return -EINVAL;
    *ri = (struct vfio_region_info){.argsz = sizeof(*ri), .index = index};
    return ioctl(d->fd, VFIO_DEVICE_GET_REGION_INFO, ri) < 0 ? -errno : 0;
}

int vmm_vfio_device_region(struct vmm_vfio_device *d, unsigned index,
                           struct vmm_vfio_region *region)
{
    struct vfio_region_info ri;
    if (!d || !region || !VMM_ABI_OUT_OK(region))
        return -EINVAL;
    int r = vmm_vfio_region_info(d, index, &ri);
    if (r < 0)
        return r;
    struct vmm_vfio_region out = {
        .size = sizeof(out),
        .index = index,
        .flags = (ri.flags & VFIO_REGION_INFO_FLAG_READ ? VMM_VFIO_REGION_READ : 0) |
                 (ri.flags & VFIO_REGION_INFO_FLAG_WRITE ? VMM_VFIO_REGION_WRITE : 0) |
                 (ri.flags & VFIO_REGION_INFO_FLAG_MMAP ? VMM_VFIO_REGION_MMAP : 0),
        .len = ri.size,
        .offset = ri.offset,
    };
    VMM_ABI_COPY_OUT(region, &out);
    return 0;
}

/* pread/pwrite len bytes at offset of region index, checked against the
 * region's size and access flags. */
static int region_io(struct vmm_vfio_device *d, unsigned index, uint64_t offset, void *data,
                     uint32_t len, bool write)
{
    struct vfio_region_info ri;
    if (!d || !data)
        return -EINVAL;
    int r = vmm_vfio_region_info(d, index, &ri);
    if (r < 0)
        return r;
    uint32_t need = write ? VFIO_REGION_INFO_FLAG_WRITE : VFIO_REGION_INFO_FLAG_READ;
    if (!(ri.flags & need) || offset > ri.size || len > ri.size - offset)
        return -EINVAL;
    ssize_t n = write ? pwrite(d->fd, data, len, (off_t)(ri.offset + offset))
                      : pread(d->fd, data, len, (off_t)(ri.offset + offset));
    if (n < 0)
        return -errno;
    return (uint32_t)n == len ? 0 : -EIO;
}

int vmm_vfio_device_config_read(struct vmm_vfio_device *d, uint32_t offset, void *data,
                                uint32_t len)
{
    return region_io(d, VFIO_PCI_CONFIG_REGION_INDEX, offset, data, len, false);
}

int vmm_vfio_device_config_write(struct vmm_vfio_device *d, uint32_t offset, const void *data,
                                 uint32_t len)
{
    return region_io(d, VFIO_PCI_CONFIG_REGION_INDEX, offset, (void *)data, len, true);
}

int vmm_vfio_device_region_read(struct vmm_vfio_device *d, unsigned index, uint64_t offset,
                                void *data, uint32_t len)
{
    return region_io(d, index, offset, data, len, false);
}

int vmm_vfio_device_region_write(struct vmm_vfio_device *d, unsigned index, uint64_t offset,
                                 const void *data, uint32_t len)
{
    return region_io(d, index, offset, (void *)data, len, true);
}

/* ---- DMA ---- */

int vmm_vfio_reserved_overlap(const char *root, int group, uint64_t iova, uint64_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/kernel/iommu_groups/%d/reserved_regions", root, group);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0; /* older kernels do not list them */
    char line[128], kind[32];
    uint64_t start, end;
    int r = 0;
    for (unsigned n = 0; r == 0 && n < 256 && fgets(line, sizeof(line), f); n++) {
        if (sscanf(line, "%" SCNx64 " %" SCNx64 " %31s", &start, &end, kind) != 3 || end < start) {
            vmm_log_error("vfio: %s: cannot parse '%.60s'", path, line);
            r = -EIO;
        } else if (len && iova <= end && start <= iova + len - 1) {
            vmm_log_error("vfio: guest memory [0x%" PRIx64 ", 0x%" PRIx64 "] meets the IOMMU's "
                          "reserved range [0x%" PRIx64 ", 0x%" PRIx64 "] (%s) of group %d: move "
                          "that memory elsewhere",
                          iova, iova + len - 1, start, end, kind, group);
            r = -EINVAL;
        }
    }
    fclose(f);
    return r;
}

void vmm_vfio_container_unmap_memory(struct vmm_vfio_container *v)
{
    if (!v)
        return;
    for (unsigned i = 0; i < v->nr_maps; i++) {
        struct vfio_iommu_type1_dma_unmap um = {
            .argsz = sizeof(um), .iova = v->maps[i].iova, .size = v->maps[i].size};
        if (ioctl(v->fd, VFIO_IOMMU_UNMAP_DMA, &um) < 0)
            vmm_log_warn("vfio: unmapping IOVA 0x%llx: %s", (unsigned long long)um.iova,
                         vmm_strerror(-errno));
    }
    free(v->maps);
    v->maps = NULL;
    v->nr_maps = 0;
    v->maps_cap = 0;
    v->mapped = NULL;
}

/* DMA-map region index of mem at IOVA = its guest-physical address, after
 * checking the groups' reserved ranges; maps[] has room for it. */
static int map_region(struct vmm_vfio_container *v, const struct vmm_memory *mem, unsigned index)
{
    struct vmm_region_info info = {.size = sizeof(info)};
    int r = vmm_memory_region_info(mem, index, &info);
    for (unsigned g = 0; g < v->nr_groups && r == 0; g++)
        r = vmm_vfio_reserved_overlap(v->sysfs_root, v->groups[g].id, info.gpa, info.len);
    if (r < 0)
        return r;
    struct vfio_iommu_type1_dma_map m = {
        .argsz = sizeof(m),
        .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = (uint64_t)(uintptr_t)info.host,
        .iova = info.gpa,
        .size = info.len,
    };
    if (ioctl(v->fd, VFIO_IOMMU_MAP_DMA, &m) < 0) {
        r = -errno;
        vmm_log_error("vfio: DMA-mapping guest memory [0x%llx, +0x%llx): %s",
                      (unsigned long long)m.iova, (unsigned long long)m.size, vmm_strerror(r));
        return r;
    }
    v->maps[v->nr_maps++] = m;
    return 0;
}

int vmm_vfio_container_map_memory(struct vmm_vfio_container *v, const struct vmm_memory *mem)
{
    if (!v || !mem)
        return -EINVAL;
    if (!v->iommu_set || v->maps)
        return -EBUSY;
    unsigned n = vmm_memory_region_count(mem);
    v->maps = calloc(n ? n : 1, sizeof(*v->maps));
    if (!v->maps)
        return -ENOMEM;
    v->maps_cap = n ? n : 1;
    v->mapped = mem;
    for (unsigned i = 0; i < n; i++) {
        int r = map_region(v, mem, i);
        if (r < 0) {
            vmm_vfio_container_unmap_memory(v);
            return r;
        }
    }
    return 0;
}

/* vmm_vm_add_memory added region to the attached VM's map: DMA-map it too
 * when the container maps that VM's memory. */
static int memory_added(void *opaque, unsigned region)
{
    struct vmm_vfio_container *v = opaque;
    if (!v->maps || v->mapped != vmm_vm_memory(v->vm))
        return 0;
    if (v->nr_maps == v->maps_cap) {
        struct vfio_iommu_type1_dma_map *m = realloc(v->maps, 2 * v->maps_cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        v->maps = m;
        v->maps_cap *= 2;
    }
    return map_region(v, v->mapped, region);
}

/* ---- KVM ---- */

/* The attached VM is being destroyed: let go of it (its KVM VFIO device
 * goes with it). The container stays usable for closing its devices. */
static void vm_gone(void *opaque)
{
    struct vmm_vfio_container *v = opaque;
    vmm_vm_remove_memory_listener(v->vm, memory_added, v);
    if (v->maps && v->mapped == vmm_vm_memory(v->vm)) /* it goes next: no DMA there */
        vmm_vfio_container_unmap_memory(v);
    close(v->kvm_dev_fd);
    v->kvm_dev_fd = -1;
    v->vm = NULL;
}

int vmm_vfio_container_attach_vm(struct vmm_vfio_container *v, struct vmm_vm *vm)
{
    if (!v || !vm)
        return -EINVAL;
    if (v->kvm_dev_fd >= 0)
        return -EBUSY;
    struct kvm_create_device cd = {.type = KVM_DEV_TYPE_VFIO};
    if (ioctl(vmm_vm_kvm_fd(vm), KVM_CREATE_DEVICE, &cd) < 0) {
        int r = -errno;
        vmm_log_error("vfio: creating KVM's VFIO device: %s", vmm_strerror(r));
        return r;
    }
    v->kvm_dev_fd = (int)cd.fd;
    v->vm = vm;
    for (unsigned i = 0; i <= v->nr_groups + 1; i++) {
        int r = i < v->nr_groups    ? kvm_add_group(v, &v->groups[i])
                : i == v->nr_groups ? vmm_vm_add_memory_listener(vm, memory_added, v)
                                    : vmm_vm_add_cleanup(vm, vm_gone, v);
        if (r < 0) {
            if (i > v->nr_groups)
                vmm_vm_remove_memory_listener(vm, memory_added, v);
            close(v->kvm_dev_fd);
            v->kvm_dev_fd = -1;
            v->vm = NULL;
            return r;
        }
    }
    return 0;
}
