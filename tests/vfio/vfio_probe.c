/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vfio-probe ADDRESS [OTHER]: open the PCI device at ADDRESS through
 * lib/vfio and print what VFIO says about it (for tests/vfio/vfio-nested.sh,
 * which checks it against QEMU's emulated edu device); with OTHER, a device
 * still on its host driver, also print what opening that one returns. Then
 * DMA: guest memory mapped through the container, edu copies a pattern
 * from it into its own buffer and back to another place, which must then
 * hold the pattern; and again into memory a VM adds after its memory was
 * mapped (the container follows it).
 * Exit status 0 when every step worked, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmm/vmm.h>

/* QEMU's edu device (docs/specs/edu.rst): registers in BAR 0. */
#define EDU_ID      0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_BUFFER  0x40000 /* its DMA buffer, in its own address space */
#define DMA_START   1
#define DMA_TO_RAM  2

#define GUEST_RAM 0x100000ull /* IOVA = guest-physical: below edu's 28-bit DMA mask */
#define DMA_LEN   256

static int edu_dma(struct vmm_vfio_device *d, uint64_t src, uint64_t dst, uint64_t cmd)
{
    uint64_t cnt = DMA_LEN;
    if (vmm_vfio_device_region_write(d, 0, EDU_DMA_SRC, &src, 8) < 0 ||
        vmm_vfio_device_region_write(d, 0, EDU_DMA_DST, &dst, 8) < 0 ||
        vmm_vfio_device_region_write(d, 0, EDU_DMA_CNT, &cnt, 8) < 0 ||
        vmm_vfio_device_region_write(d, 0, EDU_DMA_CMD, &cmd, 8) < 0)
        return -1;
    /* edu runs the transfer from a timer (100 ms of virtual time); wait up to
     * 20 s, for a loaded host. */
    for (unsigned i = 0; i < 2000; i++) {
        uint64_t st = DMA_START;
        if (vmm_vfio_device_region_read(d, 0, EDU_DMA_CMD, &st, 8) < 0)
            return -1;
        if (!(st & DMA_START))
            return 0;
        usleep(10000);
    }
    return -1;
}

/* Guest memory over the MSI window: the IOMMU reserves it, so it is refused. */
static void map_reserved(struct vmm_vfio_container *c)
{
    struct vmm_memory *mem;
    struct vmm_region_config rc =
        VMM_INIT(struct vmm_region_config, .gpa = 0xfe000000, .len = 32u << 20);
    if (vmm_memory_create(&mem) < 0 || vmm_memory_add_region(mem, &rc) < 0)
        return;
    printf("map reserved %d\n", vmm_vfio_container_map_memory(c, mem));
    vmm_memory_destroy(mem);
}

/* Map guest RAM, have edu copy a pattern through its buffer. */
static int dma_round_trip(struct vmm_vfio_container *c, struct vmm_vfio_device *d)
{
    struct vmm_memory *mem;
    struct vmm_region_config rc =
        VMM_INIT(struct vmm_region_config, .gpa = GUEST_RAM, .len = 1u << 20);
    uint8_t *ram;
    if (vmm_memory_create(&mem) < 0 || vmm_memory_add_region(mem, &rc) < 0 ||
        vmm_memory_get_ptr(mem, GUEST_RAM, 1u << 20, VMM_ACCESS_READ | VMM_ACCESS_WRITE,
                           (void **)&ram) < 0)
        return -1;
    int r = vmm_vfio_container_map_memory(c, mem);
    printf("map %d again %d\n", r, vmm_vfio_container_map_memory(c, mem));
    uint16_t cmd = 0;
    uint32_t id = 0;
    if (r == 0 && vmm_vfio_device_config_read(d, 4, &cmd, 2) == 0) {
        cmd |= 0x6; /* memory decoding, bus mastering */
        r = vmm_vfio_device_config_write(d, 4, &cmd, 2);
    }
    if (r == 0)
        r = vmm_vfio_device_region_read(d, 0, EDU_ID, &id, 4);
    printf("edu id 0x%08x\n", id);
    for (unsigned i = 0; i < DMA_LEN; i++)
        ram[i] = (uint8_t)(i * 7 + 3);
    memset(ram + 0x1000, 0, DMA_LEN);
    if (r == 0)
        r = edu_dma(d, GUEST_RAM, EDU_BUFFER, DMA_START);
    if (r == 0)
        r = edu_dma(d, EDU_BUFFER, GUEST_RAM + 0x1000, DMA_START | DMA_TO_RAM);
    bool same = r == 0 && memcmp(ram, ram + 0x1000, DMA_LEN) == 0;
    printf("dma %s\n", same ? "ok" : "FAIL");
    vmm_vfio_container_unmap_memory(c);
    vmm_memory_destroy(mem);
    return same ? 0 : -1;
}

/* The VM's own memory mapped, then a region the VM adds afterwards: the
 * container maps it too (attach_vm's listener), so edu can DMA into it. */
static int dma_follows(struct vmm_vfio_container *c, struct vmm_vfio_device *d, struct vmm_vm *vm)
{
    struct vmm_region_config first =
        VMM_INIT(struct vmm_region_config, .gpa = GUEST_RAM, .len = 1u << 20);
    struct vmm_region_config later =
        VMM_INIT(struct vmm_region_config, .gpa = GUEST_RAM + (1u << 20), .len = 1u << 20);
    uint8_t *src, *dst;
    int r = vmm_vm_add_memory(vm, &first) < 0 ? -1 : 0;
    if (r == 0)
        r = vmm_vfio_container_map_memory(c, vmm_vm_memory(vm));
    int rl = r == 0 ? vmm_vm_add_memory(vm, &later) : -1;
    printf("map vm %d later region %d\n", r, rl);
    if (r < 0 || rl < 0 ||
        vmm_memory_get_ptr(vmm_vm_memory(vm), GUEST_RAM, DMA_LEN, VMM_ACCESS_WRITE, (void **)&src) <
            0 ||
        vmm_memory_get_ptr(vmm_vm_memory(vm), later.gpa, DMA_LEN, VMM_ACCESS_WRITE, (void **)&dst) <
            0)
        return -1;
    for (unsigned i = 0; i < DMA_LEN; i++)
        src[i] = (uint8_t)(i * 5 + 1);
    memset(dst, 0, DMA_LEN);
    r = edu_dma(d, GUEST_RAM, EDU_BUFFER, DMA_START);
    if (r == 0)
        r = edu_dma(d, EDU_BUFFER, later.gpa, DMA_START | DMA_TO_RAM);
    bool same = r == 0 && memcmp(src, dst, DMA_LEN) == 0;
    printf("dma into later memory %s\n", same ? "ok" : "FAIL");
    return same ? 0 : -1;
}

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
    /* KVM's VFIO device on a VM (level 1 has KVM). */
    struct vmm_vm *vm = NULL;
    int rv = vmm_vm_create(NULL, &vm);
    if (rv == 0)
        rv = vmm_vfio_container_attach_vm(c, vm);
    printf("kvm-vfio %d again %d\n", rv, vm ? vmm_vfio_container_attach_vm(c, vm) : -1);
    map_reserved(c);
    int rd = dma_round_trip(c, d);
    if (rd == 0 && rv == 0)
        rd = dma_follows(c, d, vm);
    /* On the VM's PCI bus, the passed-through function refuses a snapshot
     * (and so a migration) of its VM, with one line. */
    if (rd == 0 && rv == 0) {
        struct vmm_pci_bus *bus;
        const char *tmp = getenv("TMPDIR");
        char dir[256];
        int rp = vmm_vm_add_pci(vm, NULL, &bus);
        if (rp == 0) {
            rp = vmm_vfio_pci_add(d, bus, NULL);
            d = NULL; /* the function's: closed with the VM */
        }
        snprintf(dir, sizeof(dir), "%s/vfio-snap-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int rs = rp == 0 && mkdtemp(dir) ? vmm_vm_snapshot(vm, dir, NULL) : rp;
        printf("snapshot with vfio %d\n", rs);
        rmdir(dir);
    }
    vmm_vfio_device_close(d);
    vmm_vm_destroy(vm); /* before the container its function needs */
    vmm_vfio_container_close(c);
    return r < 0 || rb < 0 || rd < 0 || rv < 0 ? 1 : 0;
}
