/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PCI root complex as a hostile guest sees it: configuration space
 * through the 0xCF8/0xCFC ports (any width, any offset of the data port)
 * and through ECAM, BAR sizing and moves (into, across and out of the
 * windows, I/O and 64-bit ones included), command register decode
 * switches, MSI and MSI-X capability writes (enable, function mask, vector
 * masks, table and PBA accesses), and the BARs' contents. On the bus: a
 * device model of the test's own (a 32-bit BAR with the MSI-X table and
 * PBA, an I/O BAR, a 64-bit prefetchable BAR, MSI, INTx, a vendor
 * capability) and a virtio-pci function (the rng or the console, with or
 * without an event loop) whose common configuration, notification, ISR and
 * device configuration structures the guest drives, with a Linux-like
 * set-up and entropy requests as shortcuts; the host side signals MSI-X
 * and MSI vectors and INTx meanwhile.
 *
 * Checked: no memory error, UB or leak (the sanitizers); the model's BAR
 * callbacks only ever see accesses inside the BAR (offset + length within
 * its size) and moves to addresses aligned to its size; destroy leaves
 * nothing on the loop.
 */
#include <errno.h>
#include <sys/mman.h>
#include <vmm/bus.h>
#include <vmm/event.h>
#include <vmm/memory.h>
#include <vmm/pci.h>
#include <vmm/virtio.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_pci.h>
#include <vmm/virtio_rng.h>

#include "fuzz_common.h"
#include "virtio/pci_regs.h"

#define MEM_BASE    0x10000ull
#define MEM_SIZE    0x10000ull
#define MMIO64_BASE 0x100000000ull
#define MMIO64_SIZE (1ull << 34)
#define MODEL_VECS  8
#define MODEL_MSI   4
#define RING        (MEM_BASE + 0x1000) /* the virtio queue: desc, avail +0x1000, used +0x2000 */
#define RNG_BUF     (MEM_BASE + 0x8000)

enum op {
    OP_CF8,
    OP_CFC,
    OP_ECAM_WRITE,
    OP_ECAM_READ,
    OP_BAR_WRITE,
    OP_BAR_READ,
    OP_RAW_MMIO,
    OP_RAW_PIO,
    OP_SIZE_BAR,
    OP_MSIX_NOTIFY,
    OP_MSI_NOTIFY,
    OP_INTX,
    OP_VIRTIO_SETUP,
    OP_RNG_REQUEST,
    OP_LOOP,
    OP_COUNT
};

static const struct vmm_pci_bar model_bars[VMM_PCI_MAX_BARS] = {
    {0x1000, 0},
    {0x20, VMM_PCI_BAR_IO},
    {0x10000, VMM_PCI_BAR_MEM64 | VMM_PCI_BAR_PREFETCH},
};

struct fuzz_pci {
    struct vmm_bus *pio, *mmio;
    struct vmm_pci_bus *bus;
    struct vmm_pci_dev *model;
    struct vmm_virtio_pci *vp;
    struct vmm_memory *mem;
    uint8_t *host;
    struct vmm_event_loop *loop;
    uint64_t msis;
};

static struct vmm_event_loop *shared_loop;

static void model_access(unsigned bar, uint64_t offset, uint32_t len)
{
    FZ_CHECK(bar < VMM_PCI_MAX_BARS && model_bars[bar].size);
    FZ_CHECK(len >= 1 && len <= 8 && offset + len <= model_bars[bar].size);
}

static void model_read(void *opaque, unsigned bar, uint64_t offset, void *data, uint32_t len)
{
    (void)opaque;
    model_access(bar, offset, len);
    memset(data, 0x5a, len);
}

static void model_write(void *opaque, unsigned bar, uint64_t offset, const void *data, uint32_t len)
{
    (void)opaque;
    (void)data;
    model_access(bar, offset, len);
}

static void model_moved(void *opaque, unsigned bar, uint64_t addr)
{
    (void)opaque;
    FZ_CHECK(bar < VMM_PCI_MAX_BARS && model_bars[bar].size);
    FZ_CHECK(addr == VMM_PCI_BAR_NONE || addr % model_bars[bar].size == 0);
}

static void on_msi(void *opaque, uint64_t address, uint32_t data)
{
    (void)address;
    (void)data;
    ((struct fuzz_pci *)opaque)->msis++;
}

static void on_intx(void *opaque, unsigned gsi, bool level)
{
    (void)opaque;
    (void)level;
    FZ_CHECK(gsi >= 16 && gsi <= 19);
}

static void make(struct fuzz_pci *f, uint8_t cfg)
{
    FZ_CHECK(vmm_bus_create("pio", &f->pio) == 0 && vmm_bus_create("mmio", &f->mmio) == 0);
    struct vmm_pci_config pc =
        VMM_INIT(struct vmm_pci_config, .mmio64_base = MMIO64_BASE, .mmio64_size = MMIO64_SIZE,
                 .msi = on_msi, .intx = on_intx, .irq_opaque = f);
    FZ_CHECK(vmm_pci_bus_create(&pc, &f->bus) == 0);
    FZ_CHECK(vmm_pci_bus_attach(f->bus, f->pio, f->mmio) == 0);

    static const uint8_t vendor_cap[6] = {6, 1, 2, 3, 4, 5};
    static const struct vmm_pci_cap caps[1] = {{.id = 0x09, .len = 6, .data = vendor_cap}};
    static const struct vmm_pci_device_ops ops = {.size = sizeof(ops),
                                                  .bar_read = model_read,
                                                  .bar_write = model_write,
                                                  .bar_moved = model_moved};
    struct vmm_pci_device d = VMM_INIT(
        struct vmm_pci_device, .vendor_id = 0x1234, .device_id = 0x5678, .class_code = 0xff00,
        .msix_vectors = cfg & 1 ? MODEL_VECS : 0, .msix_bar = 0, .msix_table_offset = 0,
        .msix_pba_offset = 0x800, .intx = true, .nr_caps = 1, .caps = caps, .ops = &ops,
        .name = "fuzz-model", .msi_vectors = cfg & 2 ? MODEL_MSI : 0);
    memcpy(d.bars, model_bars, sizeof(model_bars));
    FZ_CHECK(vmm_pci_add_device(f->bus, &d, &f->model) == 0);

    f->host = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FZ_CHECK(f->host != MAP_FAILED);
    FZ_CHECK(vmm_memory_create(&f->mem) == 0);
    FZ_CHECK(vmm_memory_add_external(f->mem, MEM_BASE, MEM_SIZE, f->host) >= 0);
    f->loop = cfg & 4 ? shared_loop : NULL;
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    if (cfg & 8) {
        struct vmm_virtio_console_config cc =
            VMM_INIT(struct vmm_virtio_console_config, .in_fd = -1, .out_fd = -1);
        FZ_CHECK(vmm_virtio_console_create(&cc, &dev) == 0);
    } else {
        struct vmm_virtio_rng_config rc = VMM_INIT(struct vmm_virtio_rng_config);
        FZ_CHECK(vmm_virtio_rng_create(&rc, &dev) == 0);
    }
    struct vmm_virtio_pci_config vc =
        VMM_INIT(struct vmm_virtio_pci_config, .mem = f->mem, .loop = f->loop);
    FZ_CHECK(vmm_virtio_pci_add(f->bus, &vc, &dev, &f->vp) == 0);
}

static void destroy(struct fuzz_pci *f)
{
    if (f->loop)
        for (int i = 0; i < 4; i++)
            (void)vmm_event_loop_run_once(f->loop, 0);
    vmm_pci_bus_detach(f->bus);
    vmm_pci_bus_destroy(f->bus);
    if (f->loop)
        FZ_CHECK(vmm_event_loop_count(f->loop) == 0);
    vmm_bus_destroy(f->pio);
    vmm_bus_destroy(f->mmio);
    vmm_memory_destroy(f->mem);
    munmap(f->host, MEM_SIZE);
}

static struct vmm_pci_dev *pick(struct fuzz_pci *f, uint8_t which)
{
    return which & 1 ? vmm_virtio_pci_dev(f->vp) : f->model;
}

static uint32_t width(uint8_t code)
{
    static const uint32_t w[4] = {1, 2, 4, 8};
    return w[code % 4];
}

/* ECAM offset of register reg (extended space included) of a slot: 0, 1
 * or 2 (empty, the model, the virtio function), or any of 0..63 (past 31:
 * beyond bus 0's window). */
static uint32_t cfg_addr(struct fz *in)
{
    uint8_t slot = fz_u8(in);
    uint16_t reg = fz_u16(in);
    return (uint32_t)(slot % 4 == 3 ? slot >> 2 : slot % 4) << 15 | (reg & 0xfff);
}

static void ecam(struct fuzz_pci *f, uint32_t addr, bool write, uint64_t v, uint32_t len)
{
    uint64_t gpa = VMM_PCI_ECAM_BASE + addr;
    if (write)
        (void)vmm_bus_write(f->mmio, gpa, (const uint8_t *)&v, len);
    else
        (void)vmm_bus_read(f->mmio, gpa, (uint8_t *)&v, len);
}

static uint32_t ecam_read32(struct fuzz_pci *f, unsigned slot, unsigned reg)
{
    uint32_t v = 0;
    (void)vmm_bus_read(f->mmio, VMM_PCI_ECAM_BASE + (slot << 15) + reg, (uint8_t *)&v, 4);
    return v;
}

/* Access offset of BAR bar of a device wherever it answers now (nowhere:
 * at its last address, which must answer nothing). */
static void bar_access(struct fuzz_pci *f, struct vmm_pci_dev *d, unsigned bar, uint64_t off,
                       bool write, uint64_t v, uint32_t len)
{
    uint64_t at = vmm_pci_bar_address(d, bar);
    if (at == VMM_PCI_BAR_NONE)
        return;
    bool io = d == f->model && (model_bars[bar].flags & VMM_PCI_BAR_IO);
    struct vmm_bus *b = io ? f->pio : f->mmio;
    if (io && len == 8)
        len = 4;
    if (write)
        (void)vmm_bus_write(b, at + off, (const uint8_t *)&v, len);
    else
        (void)vmm_bus_read(b, at + off, (uint8_t *)&v, len);
}

static void vp_write(struct fuzz_pci *f, uint64_t off, uint64_t v, uint32_t len)
{
    bar_access(f, vmm_virtio_pci_dev(f->vp), 0, off, true, v, len);
}

/* The virtio-pci function's set-up as Linux does it: decode on, MSI-X
 * (perhaps), features, queue 0 of the input's size and vector, DRIVER_OK. */
static void virtio_setup(struct fuzz_pci *f, struct fz *in)
{
    uint64_t want = fz_u64(in);
    uint8_t size_log = fz_u8(in), msix = fz_u8(in);
    uint16_t vector = fz_u16(in);
    struct vmm_pci_dev *d = vmm_virtio_pci_dev(f->vp);
    unsigned slot = (vmm_pci_dev_bdf(d) >> 3) & 31;
    ecam(f, slot << 15 | 4, true, 0x0007, 2); /* I/O, memory, bus master */
    if (msix & 1) {
        for (unsigned cap = ecam_read32(f, slot, 0x34) & 0xfc, n = 0; cap && n < 16; n++) {
            uint32_t h = ecam_read32(f, slot, cap);
            if ((h & 0xff) == 0x11) { /* MSI-X: enable */
                ecam(f, slot << 15 | (cap + 2), true, 0x8000, 2);
                break;
            }
            cap = (h >> 8) & 0xfc;
        }
    }
    vp_write(f, VPCI_STATUS, 0, 1);
    vp_write(f, VPCI_STATUS, VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER, 1);
    uint64_t feat = want | VMM_VIRTIO_F_VERSION_1;
    for (unsigned sel = 0; sel < 2; sel++) {
        vp_write(f, VPCI_GFSELECT, sel, 4);
        vp_write(f, VPCI_GF, (uint32_t)(feat >> (32 * sel)), 4);
    }
    uint32_t st =
        VMM_VIRTIO_STATUS_ACKNOWLEDGE | VMM_VIRTIO_STATUS_DRIVER | VMM_VIRTIO_STATUS_FEATURES_OK;
    vp_write(f, VPCI_STATUS, st, 1);
    vp_write(f, VPCI_MSIX_CONFIG, vector, 2);
    vp_write(f, VPCI_Q_SELECT, 0, 2);
    vp_write(f, VPCI_Q_SIZE, 1u << (size_log % 9), 2);
    vp_write(f, VPCI_Q_MSIX_VECTOR, vector, 2);
    vp_write(f, VPCI_Q_DESC, RING, 8);
    vp_write(f, VPCI_Q_DRIVER, RING + 0x1000, 8);
    vp_write(f, VPCI_Q_DEVICE, RING + 0x2000, 8);
    memset(f->host + (RING - MEM_BASE) + 0x1000, 0, 0x2000);
    vp_write(f, VPCI_Q_ENABLE, 1, 2);
    vp_write(f, VPCI_STATUS, st | VMM_VIRTIO_STATUS_DRIVER_OK, 1);
}

/* A writable buffer in descriptor 0 of queue 0, made available, notified. */
static void rng_request(struct fuzz_pci *f, struct fz *in)
{
    uint16_t len = fz_u16(in) % 0x4000, idx;
    uint8_t d[16] = {0};
    uint64_t addr = RNG_BUF;
    uint16_t flags = 2;
    memcpy(d, &addr, 8);
    memcpy(d + 8, &(uint32_t){len}, 4);
    memcpy(d + 12, &flags, 2);
    uint8_t *ring = f->host + (RING - MEM_BASE);
    memcpy(ring, d, sizeof(d));
    /* Every available entry is 0 (set-up zeroes the ring): only the index moves. */
    memcpy(&idx, ring + 0x1002, 2);
    idx++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(ring + 0x1002, &idx, 2);
    vp_write(f, VPCI_NOTIFY_OFFSET, 0, 2);
}

static void run(struct fuzz_pci *f, struct fz *in)
{
    for (unsigned steps = 0; fz_more(in) && steps < 2048; steps++) {
        unsigned op = fz_u8(in) % OP_COUNT;
        switch (op) {
        case OP_CF8: {
            uint32_t e = cfg_addr(in); /* ECAM form: slot << 15 | function << 12 | reg */
            uint32_t a = 0x80000000u | (e >> 12) << 8 | (e & 0xfc);
            if (fz_u8(in) & 1)
                a = fz_u32(in);
            (void)vmm_bus_write(f->pio, VMM_PCI_CONFIG_PORT, (const uint8_t *)&a, 4);
            break;
        }
        case OP_CFC: {
            uint8_t off = fz_u8(in) % 8, wc = fz_u8(in);
            uint32_t v = fz_u32(in), len = width(wc) == 8 ? 4 : width(wc);
            if (fz_u8(in) & 1)
                (void)vmm_bus_write(f->pio, VMM_PCI_CONFIG_PORT + off, (const uint8_t *)&v, len);
            else
                (void)vmm_bus_read(f->pio, VMM_PCI_CONFIG_PORT + off, (uint8_t *)&v, len);
            break;
        }
        case OP_ECAM_WRITE: {
            uint32_t a = cfg_addr(in), len = width(fz_u8(in));
            ecam(f, a, true, fz_u64(in), len);
            break;
        }
        case OP_ECAM_READ: {
            uint32_t a = cfg_addr(in), len = width(fz_u8(in));
            ecam(f, a, false, 0, len);
            break;
        }
        case OP_BAR_WRITE:
        case OP_BAR_READ: {
            uint8_t which = fz_u8(in), wc = fz_u8(in);
            uint32_t off = fz_u32(in) % 0x10000;
            uint64_t v = fz_u64(in);
            bar_access(f, pick(f, which), (which >> 1) % VMM_PCI_MAX_BARS, off, op == OP_BAR_WRITE,
                       v, width(wc));
            break;
        }
        case OP_RAW_MMIO: {
            uint64_t a = fz_u64(in), v = fz_u64(in);
            uint8_t wc = fz_u8(in);
            if (wc & 4)
                (void)vmm_bus_write(f->mmio, a, (const uint8_t *)&v, width(wc));
            else
                (void)vmm_bus_read(f->mmio, a, (uint8_t *)&v, width(wc));
            break;
        }
        case OP_RAW_PIO: {
            uint16_t a = fz_u16(in);
            uint32_t v = fz_u32(in);
            uint8_t wc = fz_u8(in);
            uint32_t len = width(wc) == 8 ? 4 : width(wc);
            if (wc & 4)
                (void)vmm_bus_write(f->pio, a, (const uint8_t *)&v, len);
            else
                (void)vmm_bus_read(f->pio, a, (uint8_t *)&v, len);
            break;
        }
        case OP_SIZE_BAR: {
            /* The OS's sizing dance, then a move to the input's address. */
            uint8_t which = fz_u8(in);
            unsigned slot = (vmm_pci_dev_bdf(pick(f, which)) >> 3) & 31;
            unsigned reg = 0x10 + 4 * ((which >> 1) % 6);
            uint32_t old = ecam_read32(f, slot, reg), v = fz_u32(in);
            ecam(f, slot << 15 | 4, true, 0, 2);
            ecam(f, slot << 15 | reg, true, 0xffffffff, 4);
            (void)ecam_read32(f, slot, reg);
            ecam(f, slot << 15 | reg, true, which & 0x80 ? v : old, 4);
            ecam(f, slot << 15 | 4, true, 0x0007, 2);
            break;
        }
        case OP_MSIX_NOTIFY: {
            uint8_t which = fz_u8(in);
            int r = vmm_pci_msix_notify(pick(f, which), fz_u16(in) % (MODEL_VECS + 4));
            FZ_CHECK(r == 0 || r == -EINVAL || r == -EAGAIN);
            break;
        }
        case OP_MSI_NOTIFY: {
            int r = vmm_pci_msi_notify(f->model, fz_u8(in) % (MODEL_MSI + 2));
            FZ_CHECK(r == 0 || r == -EINVAL || r == -EAGAIN);
            break;
        }
        case OP_INTX: {
            uint8_t which = fz_u8(in);
            vmm_pci_intx_set(pick(f, which), which & 2);
            break;
        }
        case OP_VIRTIO_SETUP:
            virtio_setup(f, in);
            break;
        case OP_RNG_REQUEST:
            rng_request(f, in);
            break;
        case OP_LOOP:
            if (f->loop)
                (void)vmm_event_loop_run_once(f->loop, 0);
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!shared_loop) {
        fz_quiet_logs();
        FZ_CHECK(vmm_event_loop_create(&shared_loop) == 0);
    }
    struct fz in = {data, size};
    struct fuzz_pci f = {0};
    make(&f, fz_u8(&in));
    run(&f, &in);
    destroy(&f);
    return 0;
}
