/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vfio-probe ADDRESS [OTHER]: open the PCI device at ADDRESS through
 * lib/vfio and print what VFIO says about it (for tests/vfio/vfio-nested.sh,
 * which checks it against QEMU's emulated edu device); with OTHER, a device
 * still on its host driver, also print what opening that one returns.
 * Exit status 0 when every step worked, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <vmm/vmm.h>

static void log_line(void *opaque, enum vmm_log_level level, const char *msg)
{
    (void)opaque;
    printf("log %s: %s\n", vmm_log_level_name(level), msg);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: vfio-probe ADDRESS [OTHER]\n");
        return 2;
    }
    vmm_log_set_handler(log_line, NULL, VMM_LOG_INFO);
    struct vmm_vfio_container *c;
    int r = vmm_vfio_container_open(NULL, &c);
    printf("container %d\n", r);
    if (r < 0)
        return 1;
    struct vmm_vfio_device *d;
    r = vmm_vfio_device_open(c, argv[1], &d);
    printf("open %s %d\n", argv[1], r);
    if (r < 0) {
        vmm_vfio_container_close(c);
        return 1;
    }
    uint16_t id[2] = {0, 0};
    r = vmm_vfio_device_config_read(d, 0, id, sizeof(id));
    printf("config %d id %04x:%04x\n", r, id[0], id[1]);
    printf("regions %u irqs %u\n", vmm_vfio_device_num_regions(d), vmm_vfio_device_num_irqs(d));
    struct vmm_vfio_region bar0 = VMM_INIT(struct vmm_vfio_region);
    int rb = vmm_vfio_device_region(d, 0, &bar0);
    printf("bar0 %d len 0x%llx flags%s%s%s\n", rb, (unsigned long long)bar0.len,
           bar0.flags & VMM_VFIO_REGION_READ ? " read" : "",
           bar0.flags & VMM_VFIO_REGION_WRITE ? " write" : "",
           bar0.flags & VMM_VFIO_REGION_MMAP ? " mmap" : "");
    int bad = vmm_vfio_device_region(d, 1000, &bar0);
    printf("region 1000 %d\n", bad);
    if (argc > 2) {
        struct vmm_vfio_device *other = NULL;
        printf("open %s %d\n", argv[2], vmm_vfio_device_open(c, argv[2], &other));
        vmm_vfio_device_close(other);
    }
    vmm_vfio_device_close(d);
    vmm_vfio_container_close(c);
    return r < 0 || rb < 0 ? 1 : 0;
}
