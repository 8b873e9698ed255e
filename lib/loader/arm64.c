/* SPDX-License-Identifier: Apache-2.0 */
/* arm64 Linux: the Image header (Documentation/arch/arm64/booting.rst), the
 * device tree an arm64 kernel needs, and placing kernel, initrd and tree in
 * guest memory. Plain data code: it builds and is tested on any host. */
#include <errno.h>
#include <inttypes.h>
#include <libfdt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/arm64.h>

#include "vmm_internal.h"

#define SZ_4K            0x1000ull
#define SZ_2M            0x200000ull
#define ALIGN_UP(x, a)   (((x) + (a)-1) & ~((a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((a)-1))

#define FDT_INITIAL_SIZE 0x2000u
#define FDT_NAME_MAX     48
#define APB_PCLK_HZ      24000000u

/* Interrupt specifier cells of "arm,gic-v3" (bindings/interrupt-controller). */
#define GIC_SPI              0u
#define GIC_PPI              1u
#define IRQ_TYPE_EDGE_RISING 1u
#define IRQ_TYPE_LEVEL_HIGH  4u
/* SPIs the vGIC has (lib/cpu/aarch64: 128 interrupt IDs, 32 private). */
#define ARM64_NR_SPIS 96u

static void why_set(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t why_len, const char *fmt, ...)
{
    if (!why || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int vmm_arm64_image_parse(const void *buf, size_t len, struct vmm_arm64_image *caller, char *why,
                          size_t why_len)
{
    struct vmm_arm64_image img = VMM_INIT(struct vmm_arm64_image);
    if (!buf || !caller || !VMM_ABI_OUT_OK(caller))
        return -EINVAL;
    /* The header: code0, code1, text_offset, image_size, flags, res2-4,
     * magic (offset 56), res5. */
    const uint8_t *h = buf;
    if (len < VMM_ARM64_IMAGE_HEADER_SIZE) {
        why_set(why, why_len, "not an arm64 Image: %zu bytes, shorter than its 64-byte header",
                len);
        return -ENOEXEC;
    }
    if (h[0] == 0x1f && h[1] == 0x8b) {
        why_set(why, why_len,
                "a gzip-compressed kernel (vmlinuz): boot the Image inside it "
                "(zcat vmlinuz > Image)");
        return -ENOEXEC;
    }
    if (le32(h + 56) != VMM_ARM64_IMAGE_MAGIC) {
        why_set(why, why_len, "not an arm64 Image: no \"ARM\\x64\" magic at offset 56");
        return -ENOEXEC;
    }
    img.text_offset = le64(h + 8);
    img.image_size = le64(h + 16);
    img.flags = le64(h + 24);
    if (img.flags & VMM_ARM64_IMAGE_FLAG_BE) {
        why_set(why, why_len, "arm64 Image is a big-endian kernel; only little-endian boots");
        return -ENOEXEC;
    }
    if (img.image_size == 0) {
        why_set(why, why_len,
                "arm64 Image has image_size 0 (a kernel before 3.17): its size is unknown");
        return -ENOEXEC;
    }
    if (img.image_size < len) {
        why_set(why, why_len, "arm64 Image: image_size %" PRIu64 " is smaller than the file (%zu)",
                img.image_size, len);
        return -ENOEXEC;
    }
    if (img.text_offset % SZ_4K || img.text_offset >= SZ_2M) {
        why_set(why, why_len,
                "arm64 Image: text_offset 0x%" PRIx64 " is not 4 KiB aligned below 2 MiB",
                img.text_offset);
        return -ENOEXEC;
    }
    VMM_ABI_COPY_OUT(caller, &img);
    return 0;
}

/* ---- the device tree ---- */

static int fdt_errno(int err)
{
    return err == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
}

#define FDT_TRY(call)                                                                              \
    do {                                                                                           \
        int fdt_try_rc_ = (call);                                                                  \
        if (fdt_try_rc_ < 0)                                                                       \
            return fdt_errno(fdt_try_rc_);                                                         \
    } while (0)

static int prop_cells(void *fdt, const char *name, const uint32_t *cells, unsigned n)
{
    fdt32_t be[16];
    for (unsigned i = 0; i < n; i++)
        be[i] = cpu_to_fdt32(cells[i]);
    return fdt_property(fdt, name, be, (int)(n * sizeof(be[0])));
}

static int prop_reg64(void *fdt, uint64_t base, uint64_t size)
{
    uint32_t cells[4] = {(uint32_t)(base >> 32), (uint32_t)base, (uint32_t)(size >> 32),
                         (uint32_t)size};
    return prop_cells(fdt, "reg", cells, 4);
}

static int prop_spi(void *fdt, uint32_t spi, uint32_t type)
{
    uint32_t cells[3] = {GIC_SPI, spi, type};
    return prop_cells(fdt, "interrupts", cells, 3);
}

/* A property holding a list of NUL-terminated strings (sizeof includes the last NUL). */
#define PROP_STRINGS(fdt, name, lit) fdt_property((fdt), (name), (lit), sizeof(lit))

static int add_memory(void *fdt, const struct vmm_memory *mem)
{
    char name[FDT_NAME_MAX];
    unsigned n = vmm_memory_region_count(mem);
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) < 0)
            return -EINVAL;
        if (info.flags & VMM_MEMORY_F_READONLY)
            continue;
        snprintf(name, sizeof(name), "memory@%" PRIx64, info.gpa);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "device_type", "memory"));
        FDT_TRY(prop_reg64(fdt, info.gpa, info.len));
        FDT_TRY(fdt_end_node(fdt));
    }
    return 0;
}

static int add_cpus(void *fdt, unsigned nr_vcpus)
{
    char name[FDT_NAME_MAX];
    FDT_TRY(fdt_begin_node(fdt, "cpus"));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 1));
    FDT_TRY(fdt_property_u32(fdt, "#size-cells", 0));
    for (unsigned i = 0; i < nr_vcpus; i++) {
        snprintf(name, sizeof(name), "cpu@%x", i);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "device_type", "cpu"));
        FDT_TRY(fdt_property_string(fdt, "compatible", "arm,armv8"));
        FDT_TRY(fdt_property_string(fdt, "enable-method", "psci"));
        /* KVM gives vCPU i MPIDR affinity 0 = i (up to 16 per cluster:
         * the layout has at most VMM_ARM64_MAX_VCPUS, aff1 = i / 16). */
        FDT_TRY(fdt_property_u32(fdt, "reg", (i / 16u) << 8 | (i % 16u)));
        FDT_TRY(fdt_end_node(fdt));
    }
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

static int add_platform(void *fdt, const struct vmm_arm64_machine *m)
{
    char name[FDT_NAME_MAX];

    FDT_TRY(fdt_begin_node(fdt, "psci"));
    FDT_TRY(PROP_STRINGS(fdt, "compatible", "arm,psci-0.2\0arm,psci"));
    FDT_TRY(fdt_property_string(fdt, "method", "hvc"));
    FDT_TRY(fdt_end_node(fdt));

    /* The architected timer: secure, non-secure physical, virtual and
     * hypervisor PPIs, level-triggered. */
    FDT_TRY(fdt_begin_node(fdt, "timer"));
    FDT_TRY(fdt_property_string(fdt, "compatible", "arm,armv8-timer"));
    uint32_t ppis[12] = {GIC_PPI, 13, IRQ_TYPE_LEVEL_HIGH, GIC_PPI, 14, IRQ_TYPE_LEVEL_HIGH,
                         GIC_PPI, 11, IRQ_TYPE_LEVEL_HIGH, GIC_PPI, 10, IRQ_TYPE_LEVEL_HIGH};
    FDT_TRY(prop_cells(fdt, "interrupts", ppis, 12));
    FDT_TRY(fdt_property(fdt, "always-on", NULL, 0));
    FDT_TRY(fdt_end_node(fdt));

    snprintf(name, sizeof(name), "intc@%" PRIx64, (uint64_t)VMM_ARM64_GIC_DIST_BASE);
    FDT_TRY(fdt_begin_node(fdt, name));
    FDT_TRY(fdt_property_string(fdt, "compatible", "arm,gic-v3"));
    FDT_TRY(fdt_property_u32(fdt, "#interrupt-cells", 3));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 0)); /* no ITS child */
    FDT_TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
    FDT_TRY(fdt_property_u32(fdt, "#redistributor-regions", 1));
    uint64_t rsize = (uint64_t)m->nr_vcpus * VMM_ARM64_GIC_REDIST_SIZE;
    uint32_t reg[8] = {0, (uint32_t)VMM_ARM64_GIC_DIST_BASE,   0, (uint32_t)VMM_ARM64_GIC_DIST_SIZE,
                       0, (uint32_t)VMM_ARM64_GIC_REDIST_BASE, 0, (uint32_t)rsize};
    FDT_TRY(prop_cells(fdt, "reg", reg, 8));
    FDT_TRY(fdt_property_u32(fdt, "phandle", VMM_ARM64_GIC_PHANDLE));
    FDT_TRY(fdt_end_node(fdt));

    FDT_TRY(fdt_begin_node(fdt, "apb-pclk"));
    FDT_TRY(fdt_property_string(fdt, "compatible", "fixed-clock"));
    FDT_TRY(fdt_property_u32(fdt, "#clock-cells", 0));
    FDT_TRY(fdt_property_u32(fdt, "clock-frequency", APB_PCLK_HZ));
    FDT_TRY(fdt_property_string(fdt, "clock-output-names", "clk24mhz"));
    FDT_TRY(fdt_property_u32(fdt, "phandle", VMM_ARM64_CLOCK_PHANDLE));
    FDT_TRY(fdt_end_node(fdt));

    if (m->uart) {
        snprintf(name, sizeof(name), "pl011@%" PRIx64, (uint64_t)VMM_ARM64_UART_BASE);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(PROP_STRINGS(fdt, "compatible", "arm,pl011\0arm,primecell"));
        FDT_TRY(prop_reg64(fdt, VMM_ARM64_UART_BASE, VMM_ARM64_UART_SIZE));
        FDT_TRY(prop_spi(fdt, VMM_ARM64_UART_SPI, IRQ_TYPE_LEVEL_HIGH));
        uint32_t clocks[2] = {VMM_ARM64_CLOCK_PHANDLE, VMM_ARM64_CLOCK_PHANDLE};
        FDT_TRY(prop_cells(fdt, "clocks", clocks, 2));
        FDT_TRY(PROP_STRINGS(fdt, "clock-names", "uartclk\0apb_pclk"));
        FDT_TRY(fdt_end_node(fdt));
    }

    for (unsigned i = 0; i < m->nr_virtio; i++) {
        const struct vmm_machine_virtio *v = &m->virtio[i];
        snprintf(name, sizeof(name), "virtio_mmio@%" PRIx64, v->base);
        FDT_TRY(fdt_begin_node(fdt, name));
        FDT_TRY(fdt_property_string(fdt, "compatible", "virtio,mmio"));
        FDT_TRY(prop_reg64(fdt, v->base, v->size));
        /* irqfd pulses the line: edge-triggered, so no pulse is lost. */
        FDT_TRY(prop_spi(fdt, v->gsi, IRQ_TYPE_EDGE_RISING));
        FDT_TRY(fdt_property(fdt, "dma-coherent", NULL, 0));
        FDT_TRY(fdt_end_node(fdt));
    }
    return 0;
}

static int add_chosen(void *fdt, const struct vmm_arm64_machine *m, const struct vmm_fdt_params *p)
{
    char path[FDT_NAME_MAX];
    FDT_TRY(fdt_begin_node(fdt, "chosen"));
    if (p->cmdline && p->cmdline[0])
        FDT_TRY(fdt_property_string(fdt, "bootargs", p->cmdline));
    if (p->initrd_size) {
        FDT_TRY(fdt_property_u64(fdt, "linux,initrd-start", p->initrd_start));
        FDT_TRY(fdt_property_u64(fdt, "linux,initrd-end", p->initrd_start + p->initrd_size));
    }
    if (m->uart) {
        snprintf(path, sizeof(path), "/pl011@%" PRIx64, (uint64_t)VMM_ARM64_UART_BASE);
        FDT_TRY(fdt_property_string(fdt, "stdout-path", path));
    }
    FDT_TRY(fdt_end_node(fdt));
    return 0;
}

static int build_tree(void *fdt, int size, const struct vmm_arm64_machine *m,
                      const struct vmm_fdt_params *p)
{
    int r;
    FDT_TRY(fdt_create(fdt, size));
    FDT_TRY(fdt_finish_reservemap(fdt));
    FDT_TRY(fdt_begin_node(fdt, ""));
    FDT_TRY(fdt_property_string(fdt, "compatible", "linux,dummy-virt"));
    FDT_TRY(fdt_property_string(fdt, "model", "libvmm"));
    FDT_TRY(fdt_property_u32(fdt, "#address-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "#size-cells", 2));
    FDT_TRY(fdt_property_u32(fdt, "interrupt-parent", VMM_ARM64_GIC_PHANDLE));
    if ((r = add_chosen(fdt, m, p)) < 0 || (r = add_memory(fdt, m->mem)) < 0 ||
        (r = add_cpus(fdt, m->nr_vcpus)) < 0 || (r = add_platform(fdt, m)) < 0)
        return r;
    FDT_TRY(fdt_end_node(fdt));
    FDT_TRY(fdt_finish(fdt));
    return (int)fdt_totalsize(fdt);
}

static int check(const struct vmm_arm64_machine *m, const struct vmm_fdt_params *p)
{
    if (!m->mem || vmm_memory_region_count(m->mem) == 0) {
        vmm_log_debug("arm64 fdt: the machine has no memory");
        return -EINVAL;
    }
    if (m->nr_vcpus == 0 || m->nr_vcpus > VMM_ARM64_MAX_VCPUS) {
        vmm_log_debug("arm64 fdt: %u vCPUs (1..%u)", m->nr_vcpus, VMM_ARM64_MAX_VCPUS);
        return -EINVAL;
    }
    if (m->nr_virtio > VMM_MACHINE_MAX_VIRTIO)
        return -EINVAL;
    for (unsigned i = 0; i < m->nr_virtio; i++) {
        const struct vmm_machine_virtio *v = &m->virtio[i];
        uint64_t end;
        if (v->gsi >= ARM64_NR_SPIS || v->size == 0 ||
            __builtin_add_overflow(v->base, v->size, &end)) {
            vmm_log_debug("arm64 fdt: virtio device %u: bad window or SPI %u", i, v->gsi);
            return -EINVAL;
        }
    }
    if (p->cmdline && strnlen(p->cmdline, VMM_FDT_MAX_CMDLINE + 1) > VMM_FDT_MAX_CMDLINE)
        return -EINVAL;
    if (p->initrd_size) {
        uint64_t end;
        if (__builtin_add_overflow(p->initrd_start, p->initrd_size, &end))
            return -EINVAL;
        if (vmm_memory_check_range(m->mem, p->initrd_start, p->initrd_size) != 0)
            return -EFAULT;
    }
    return 0;
}

int vmm_arm64_fdt_create(const struct vmm_arm64_machine *machine,
                         const struct vmm_fdt_params *params, void **blob, size_t *size)
{
    struct vmm_arm64_machine m = VMM_INIT(struct vmm_arm64_machine);
    struct vmm_fdt_params p = VMM_INIT(struct vmm_fdt_params);
    if (!blob || !size)
        return -EINVAL;
    *blob = NULL;
    *size = 0;
    if (!machine || VMM_ABI_COPY_IN(&m, machine) < 0 || (params && VMM_ABI_COPY_IN(&p, params) < 0))
        return -EINVAL;
    int r = check(&m, &p);
    if (r < 0)
        return r;
    size_t cap = FDT_INITIAL_SIZE + (p.cmdline ? strlen(p.cmdline) : 0) + 256u * m.nr_vcpus;
    for (;;) {
        if (cap > VMM_FDT_MAX_SIZE)
            cap = VMM_FDT_MAX_SIZE;
        void *buf = malloc(cap);
        if (!buf)
            return -ENOMEM;
        r = build_tree(buf, (int)cap, &m, &p);
        if (r >= 0) {
            void *fit = realloc(buf, (size_t)r);
            *blob = fit ? fit : buf;
            *size = (size_t)r;
            return 0;
        }
        free(buf);
        if (r != -ENOSPC || cap == VMM_FDT_MAX_SIZE)
            return r;
        cap *= 2;
    }
}

/* ---- loading ---- */

/* The first writable region: where kernel, initrd and tree go. */
static int first_ram(const struct vmm_memory *mem, uint64_t *base, uint64_t *len)
{
    unsigned n = vmm_memory_region_count(mem);
    for (unsigned i = 0; i < n; i++) {
        struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
        if (vmm_memory_region_info(mem, i, &info) < 0)
            return -EINVAL;
        if (!(info.flags & VMM_MEMORY_F_READONLY)) {
            *base = info.gpa;
            *len = info.len;
            return 0;
        }
    }
    return -EINVAL;
}

int vmm_arm64_linux_load(struct vmm_memory *mem, const struct vmm_arm64_machine *machine,
                         const void *kernel, size_t kernel_len, const void *initrd,
                         size_t initrd_len, const char *cmdline, struct vmm_arm64_linux *caller,
                         char *why, size_t why_len)
{
    struct vmm_arm64_linux out = VMM_INIT(struct vmm_arm64_linux);
    struct vmm_arm64_image img = VMM_INIT(struct vmm_arm64_image);
    struct vmm_arm64_machine m = VMM_INIT(struct vmm_arm64_machine);
    if (!mem || !machine || !kernel || (!initrd && initrd_len) || !caller ||
        !VMM_ABI_OUT_OK(caller) || VMM_ABI_COPY_IN(&m, machine) < 0 || m.mem != mem)
        return -EINVAL;
    int r = vmm_arm64_image_parse(kernel, kernel_len, &img, why, why_len);
    if (r < 0)
        return r;
    uint64_t base, len;
    if (first_ram(mem, &base, &len) < 0) {
        why_set(why, why_len, "arm64 Linux: the guest has no RAM");
        return -EINVAL;
    }
    /* The kernel at a 2 MiB-aligned base + text_offset, the tree in the top
     * 2 MiB-aligned 2 MiB (it must not cross a 2 MiB boundary), the initrd
     * page-aligned right below it. */
    uint64_t kbase = ALIGN_UP(base, SZ_2M);
    uint64_t end = ALIGN_DOWN(base + len, SZ_2M);
    out.kernel = kbase + img.text_offset;
    out.kernel_end = out.kernel + img.image_size;
    if (end < kbase + SZ_2M || out.kernel_end > end - SZ_2M) {
        why_set(why, why_len,
                "arm64 Linux: a %" PRIu64 " MiB kernel and its device tree do not fit in %" PRIu64
                " MiB of RAM",
                img.image_size >> 20, len >> 20);
        return -ENOSPC;
    }
    out.dtb = end - SZ_2M;
    if (initrd_len) {
        uint64_t need = ALIGN_UP((uint64_t)initrd_len, SZ_4K);
        if (need > out.dtb - out.kernel_end) {
            why_set(why, why_len,
                    "arm64 Linux: a %zu MiB initrd does not fit between the kernel and the "
                    "device tree",
                    initrd_len >> 20);
            return -ENOSPC;
        }
        out.initrd = out.dtb - need;
        out.initrd_size = initrd_len;
    }
    struct vmm_fdt_params p = VMM_INIT(struct vmm_fdt_params, .cmdline = cmdline,
                                       .initrd_start = out.initrd, .initrd_size = out.initrd_size);
    void *dtb;
    size_t dtb_size;
    r = vmm_arm64_fdt_create(&m, &p, &dtb, &dtb_size);
    if (r < 0) {
        why_set(why, why_len, "arm64 Linux: cannot build the device tree: %s", vmm_strerror(r));
        return r;
    }
    if ((r = vmm_memory_write(mem, out.kernel, kernel, kernel_len)) < 0 ||
        (initrd_len && (r = vmm_memory_write(mem, out.initrd, initrd, initrd_len)) < 0) ||
        (r = vmm_memory_write(mem, out.dtb, dtb, dtb_size)) < 0)
        why_set(why, why_len, "arm64 Linux: writing guest memory: %s", vmm_strerror(r));
    free(dtb);
    if (r < 0)
        return r;
    VMM_ABI_COPY_OUT(caller, &out);
    return 0;
}
