/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VFIO device as a function on libvmm's PCI bus (vmm_vfio_pci_add, see
 * vfio.h): a struct vmm_pci_device built from the device's configuration
 * space and region info, whose callbacks forward BAR accesses to the device
 * fd, map its mmap-able BAR pages as KVM memory slots wherever the guest
 * places the BAR, mirror the command register, and point VFIO's MSI, MSI-X
 * and INTx triggers at the bus's irqfds (VFIO_DEVICE_SET_IRQS).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmm/event.h>
#include <vmm/pci.h>
#include <vmm/vfio.h>

#include "pci/pci_internal.h"
#include "vfio_internal.h"
#include "vmm_internal.h"

#define CFG_SIZE    256
#define CAP_ID_PM   0x01
#define CAP_ID_MSI  0x05
#define CAP_ID_MSIX 0x11
#define CMD_FORWARD 0x0547 /* I/O, memory, bus master, parity, SERR, INTx disable */
#define PAGE        4096ull
#define LOG_BUDGET  16

struct piece {
    uint64_t off, len; /* inside the BAR, page-aligned */
    void *host;        /* mmap of the device fd */
    unsigned slot;
    bool mapped; /* a KVM slot now */
};

struct vfio_bar {
    uint64_t size;
    uint64_t fd_offset; /* the region's offset in the device fd */
    struct piece pieces[VFIO_MAX_PIECES];
    unsigned nr_pieces;
};

struct vfio_pci {
    struct vmm_vfio_device *d;
    uint64_t cfg_offset; /* configuration space in the device fd */
    struct vmm_vm *vm;
    struct vmm_pci_dev *pdev;
    char name[32];
    struct vfio_bar bars[VMM_PCI_MAX_BARS];
    unsigned msix_vectors, msi_vectors;
    int *vector_fd;           /* MSI-X's then MSI's, the bus's irqfds */
    int *held_fd;             /* the same vectors' eventfds while masked (event loop) */
    bool *deliverable;        /* per vector: the bus's vector_deliverable */
    pthread_mutex_t irq_lock; /* irq_index, deliverable: after the bus's locks */
    int irq_index;            /* the VFIO interrupt enabled now, or -1 */
    bool irqs_off;            /* wiring them failed: the guest's choice is ignored */
    unsigned msi_enabled;     /* MSI vectors VFIO signals now (irq_lock) */
    int intx_fd;              /* INTx trigger (-1: no INTx) */
    int intx_resample;        /* the irqfd's resample fd, VFIO's unmask */
    unsigned intx_gsi;
    uint8_t pm[8];    /* the power management capability's body */
    uint64_t trapped; /* BAR accesses forwarded (atomic) */
    struct vmm_log_limit log;
};

/* ---- BARs ---- */

static void bar_read(void *opaque, unsigned bar, uint64_t offset, void *data, uint32_t len)
{
    struct vfio_pci *p = opaque;
    __atomic_fetch_add(&p->trapped, 1, __ATOMIC_RELAXED);
    if (bar >= VMM_PCI_MAX_BARS || offset + len > p->bars[bar].size ||
        pread(p->d->fd, data, len, (off_t)(p->bars[bar].fd_offset + offset)) != (ssize_t)len) {
        memset(data, 0xff, len);
        vmm_log_limited(&p->log, LOG_BUDGET, "%s: BAR %u read at 0x%" PRIx64 " failed", p->name,
                        bar, offset);
    }
}

static void bar_write(void *opaque, unsigned bar, uint64_t offset, const void *data, uint32_t len)
{
    struct vfio_pci *p = opaque;
    __atomic_fetch_add(&p->trapped, 1, __ATOMIC_RELAXED);
    if (bar >= VMM_PCI_MAX_BARS || offset + len > p->bars[bar].size ||
        pwrite(p->d->fd, data, len, (off_t)(p->bars[bar].fd_offset + offset)) != (ssize_t)len)
        vmm_log_limited(&p->log, LOG_BUDGET, "%s: BAR %u write at 0x%" PRIx64 " failed", p->name,
                        bar, offset);
}

static void pieces_unmap(struct vfio_pci *p, struct vfio_bar *b)
{
    for (unsigned i = 0; i < b->nr_pieces; i++) {
        if (b->pieces[i].mapped)
            vmm_vm_device_slot_clear(p->vm, b->pieces[i].slot);
        b->pieces[i].mapped = false;
    }
}

/* The guest moved BAR bar or switched its decoding: the mapped pieces
 * follow it; every other access traps to bar_read/bar_write. */
static void bar_moved(void *opaque, unsigned bar, uint64_t addr)
{
    struct vfio_pci *p = opaque;
    struct vfio_bar *b = &p->bars[bar];
    pieces_unmap(p, b);
    if (addr == VMM_PCI_BAR_NONE)
        return;
    for (unsigned i = 0; i < b->nr_pieces; i++) {
        struct piece *pc = &b->pieces[i];
        int r = vmm_vm_device_slot_set(p->vm, addr + pc->off, pc->len, pc->host, &pc->slot);
        if (r < 0)
            vmm_log_limited(&p->log, LOG_BUDGET,
                            "%s: BAR %u [0x%" PRIx64 ", +0x%" PRIx64 ") not mapped (%s): trapped",
                            p->name, bar, pc->off, pc->len, vmm_strerror(r));
        else
            pc->mapped = true;
    }
}

/* Cut [start, end) out of the n ranges of r (room for VFIO_MAX_PIECES);
 * returns the new count. */
static unsigned ranges_cut(struct vfio_range *r, unsigned n, uint64_t start, uint64_t end)
{
    struct vfio_range out[VFIO_MAX_PIECES];
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t s = r[i].off, e = s + r[i].len;
        if (e <= start || end <= s) {
            if (k < VFIO_MAX_PIECES)
                out[k++] = r[i];
            continue;
        }
        if (s < start && k < VFIO_MAX_PIECES)
            out[k++] = (struct vfio_range){.off = s, .len = start - s};
        if (end < e && k < VFIO_MAX_PIECES)
            out[k++] = (struct vfio_range){.off = end, .len = e - end};
    }
    memcpy(r, out, k * sizeof(out[0]));
    return k;
}

unsigned vmm_vfio_bar_pieces(uint64_t size, const struct vfio_range *areas, unsigned nr_areas,
                             const struct vfio_range *holes, unsigned nr_holes,
                             struct vfio_range out[VFIO_MAX_PIECES])
{
    const struct vfio_range whole = {.off = 0, .len = size};
    unsigned n = 0;
    if (!areas) {
        areas = &whole;
        nr_areas = 1;
    }
    for (unsigned i = 0; i < nr_areas && n < VFIO_MAX_PIECES; i++) {
        uint64_t s = areas[i].off, e = areas[i].off + areas[i].len;
        if (s >= size || e < s)
            continue;
        if (e > size)
            e = size;
        s = (s + PAGE - 1) & ~(PAGE - 1);
        e &= ~(PAGE - 1);
        if (s < e)
            out[n++] = (struct vfio_range){.off = s, .len = e - s};
    }
    for (unsigned i = 0; i < nr_holes; i++) {
        if (!holes[i].len)
            continue;
        uint64_t end = holes[i].off + holes[i].len;
        n = ranges_cut(out, n, holes[i].off & ~(PAGE - 1),
                       end < holes[i].off ? UINT64_MAX : (end + PAGE - 1) & ~(PAGE - 1));
    }
    return n;
}

/* The areas of BAR index VFIO lets mmap: *whole (no sparse-mmap
 * capability), else the capability's *nr areas (at most VFIO_MAX_PIECES).
 * Returns 0 or -errno. */
static int bar_areas(struct vfio_pci *p, unsigned index, const struct vfio_region_info *ri,
                     struct vfio_range *areas, unsigned *nr, bool *whole)
{
    *nr = 0;
    *whole = true;
    if (!(ri->flags & VFIO_REGION_INFO_FLAG_CAPS) || ri->argsz <= sizeof(*ri))
        return 0;
    if (ri->argsz > 65536)
        return -EIO;
    struct vfio_region_info *full = calloc(1, ri->argsz);
    if (!full)
        return -ENOMEM;
    full->argsz = ri->argsz;
    full->index = index;
    int r = ioctl(p->d->fd, VFIO_DEVICE_GET_REGION_INFO, full) < 0 ? -errno : 0;
    uint32_t off = full->cap_offset;
    for (unsigned hops = 0; r == 0 && off && hops < 16; hops++) {
        if (off < sizeof(*full) || off > full->argsz - sizeof(struct vfio_info_cap_header))
            break;
        const struct vfio_info_cap_header *h = (const void *)((const uint8_t *)full + off);
        if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP &&
            off + sizeof(struct vfio_region_info_cap_sparse_mmap) <= full->argsz) {
            const struct vfio_region_info_cap_sparse_mmap *sm = (const void *)h;
            *whole = false;
            for (uint32_t i = 0; i < sm->nr_areas && *nr < VFIO_MAX_PIECES; i++) {
                if (off + sizeof(*sm) + (i + 1) * sizeof(sm->areas[0]) > full->argsz)
                    break;
                areas[(*nr)++] =
                    (struct vfio_range){.off = sm->areas[i].offset, .len = sm->areas[i].size};
            }
        }
        off = h->next;
    }
    free(full);
    return r;
}

static int bars_init(struct vfio_pci *p, const uint8_t *cfg, struct vmm_pci_device *dv,
                     unsigned msix_bar, uint64_t msix_table, uint64_t msix_pba)
{
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        struct vfio_region_info ri;
        int r = vmm_vfio_region_info(p->d, VFIO_PCI_BAR0_REGION_INDEX + i, &ri);
        if (r < 0)
            return r;
        if (!ri.size)
            continue;
        uint32_t raw;
        memcpy(&raw, cfg + 0x10 + 4 * i, 4);
        struct vmm_pci_bar *bar = &dv->bars[i];
        bar->size = ri.size;
        if (raw & 1) {
            bar->flags = VMM_PCI_BAR_IO;
        } else {
            bar->flags =
                (raw & 0x4 ? VMM_PCI_BAR_MEM64 : 0) | (raw & 0x8 ? VMM_PCI_BAR_PREFETCH : 0);
        }
        if ((ri.size & (ri.size - 1)) || (raw & 1 ? ri.size > 256 : ri.size < 16)) {
            vmm_log_warn("%s: BAR %u of 0x%llx bytes left out (not a size the bus places)", p->name,
                         i, (unsigned long long)ri.size);
            *bar = (struct vmm_pci_bar){0};
            continue;
        }
        struct vfio_bar *b = &p->bars[i];
        b->size = ri.size;
        b->fd_offset = ri.offset;
        if (!(raw & 1) && (ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
            struct vfio_range areas[VFIO_MAX_PIECES], pieces[VFIO_MAX_PIECES];
            unsigned nr_areas;
            bool whole;
            r = bar_areas(p, VFIO_PCI_BAR0_REGION_INDEX + i, &ri, areas, &nr_areas, &whole);
            if (r < 0)
                return r;
            /* The MSI-X table's and PBA's pages stay trapped (lib/pci). */
            struct vfio_range holes[2] = {{0}, {0}};
            if (p->msix_vectors && i == msix_bar) {
                holes[0] = (struct vfio_range){msix_table, (uint64_t)p->msix_vectors * 16};
                holes[1] = (struct vfio_range){msix_pba, (p->msix_vectors + 63) / 64 * 8};
            }
            unsigned n =
                vmm_vfio_bar_pieces(ri.size, whole ? NULL : areas, nr_areas, holes, 2, pieces);
            for (unsigned k = 0; k < n; k++)
                b->pieces[k] = (struct piece){.off = pieces[k].off, .len = pieces[k].len};
            b->nr_pieces = n;
        }
        unsigned kept = 0;
        for (unsigned k = 0; k < b->nr_pieces; k++) {
            struct piece pc = b->pieces[k];
            pc.host = mmap(NULL, pc.len, PROT_READ | PROT_WRITE, MAP_SHARED, p->d->fd,
                           (off_t)(ri.offset + pc.off));
            if (pc.host == MAP_FAILED)
                vmm_log_warn("%s: BAR %u [0x%" PRIx64 ", +0x%" PRIx64 ") cannot be mapped (%s): "
                             "trapped instead",
                             p->name, i, pc.off, pc.len, vmm_strerror(-errno));
            else
                b->pieces[kept++] = pc;
        }
        b->nr_pieces = kept;
        if (bar->flags & VMM_PCI_BAR_MEM64)
            i++;
    }
    return 0;
}

/* ---- configuration space and interrupts ---- */

/* The command register bits the guest set, onto the device (VFIO checks
 * memory and I/O decoding and bus mastering against them). */
static void config_write(void *opaque, unsigned reg, const void *data, uint32_t len)
{
    struct vfio_pci *p = opaque;
    if (reg > 5 || reg + len <= 4)
        return;
    uint8_t cmd[2];
    /* pread/pwrite straight away: a vCPU thread's seccomp filter allows
     * those, not VFIO's region-info ioctl. */
    if (pread(p->d->fd, cmd, 2, (off_t)(p->cfg_offset + 4)) != 2)
        return;
    for (unsigned i = 0; i < 2; i++) {
        unsigned at = 4 + i;
        if (at >= reg && at < reg + len)
            cmd[i] = (uint8_t)((cmd[i] & ~(CMD_FORWARD >> 8 * i)) |
                               (((const uint8_t *)data)[at - reg] & (CMD_FORWARD >> 8 * i)));
    }
    if (pwrite(p->d->fd, cmd, 2, (off_t)(p->cfg_offset + 4)) != 2)
        vmm_log_limited(&p->log, LOG_BUDGET, "%s: command register write failed", p->name);
}

/* VFIO_DEVICE_SET_IRQS of vectors start.. with fds (NULL and n 0: off). */
static int set_irqs_at(struct vfio_pci *p, unsigned index, uint32_t action, unsigned start,
                       const int *fds, unsigned n)
{
    size_t sz = sizeof(struct vfio_irq_set) + n * sizeof(int);
    struct vfio_irq_set *s = calloc(1, sz);
    if (!s)
        return -ENOMEM;
    s->argsz = (uint32_t)sz;
    s->flags = (n ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | action;
    s->index = index;
    s->start = start;
    s->count = n;
    if (n)
        memcpy(s->data, fds, n * sizeof(int));
    int r = ioctl(p->d->fd, VFIO_DEVICE_SET_IRQS, s) < 0 ? -errno : 0;
    free(s);
    return r;
}

static int set_irqs(struct vfio_pci *p, unsigned index, uint32_t action, const int *fds, unsigned n)
{
    return set_irqs_at(p, index, action, 0, fds, n);
}

/* Where VFIO should signal vector slot s (MSI-X's, then MSI's) now: the
 * bus's irqfd while deliverable, else our eventfd (irq_lock held). */
static int vector_target(const struct vfio_pci *p, unsigned s)
{
    return p->deliverable[s] ? p->vector_fd[s] : p->held_fd[s];
}

static int intx_on(struct vfio_pci *p)
{
    int r = set_irqs(p, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, &p->intx_fd, 1);
    if (r == 0)
        r = set_irqs(p, VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, &p->intx_resample, 1);
    return r;
}

/* The guest switched between INTx, MSI and MSI-X: VFIO's triggers follow,
 * each MSI/MSI-X vector onto the bus's irqfd of the vector. */
static void irq_mode(void *opaque, unsigned mode, unsigned vectors)
{
    struct vfio_pci *p = opaque;
    if (p->irqs_off)
        return;
    pthread_mutex_lock(&p->irq_lock);
    if (p->irq_index >= 0)
        (void)set_irqs(p, (unsigned)p->irq_index, VFIO_IRQ_SET_ACTION_TRIGGER, NULL, 0);
    p->irq_index = -1;
    p->msi_enabled = 0;
    int r = 0;
    int fds[VMM_PCI_MSIX_MAX];
    if (mode == VMM_PCI_IRQ_MSIX && p->msix_vectors) {
        for (unsigned v = 0; v < p->msix_vectors; v++)
            fds[v] = vector_target(p, v);
        r = set_irqs(p, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, fds, p->msix_vectors);
        p->irq_index = r == 0 ? VFIO_PCI_MSIX_IRQ_INDEX : -1;
    } else if (mode == VMM_PCI_IRQ_MSI && vectors && vectors <= p->msi_vectors) {
        for (unsigned v = 0; v < vectors; v++)
            fds[v] = vector_target(p, p->msix_vectors + v);
        r = set_irqs(p, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, fds, vectors);
        p->irq_index = r == 0 ? VFIO_PCI_MSI_IRQ_INDEX : -1;
        p->msi_enabled = r == 0 ? vectors : 0;
    } else if (mode == VMM_PCI_IRQ_INTX && p->intx_fd >= 0) {
        r = intx_on(p);
        p->irq_index = r == 0 ? VFIO_PCI_INTX_IRQ_INDEX : -1;
    }
    pthread_mutex_unlock(&p->irq_lock);
    if (r < 0)
        vmm_log_limited(&p->log, LOG_BUDGET, "%s: switching interrupts (mode %u): %s", p->name,
                        mode, vmm_strerror(r));
}

/* A vector became deliverable or stopped being so: VFIO signals the
 * bus's irqfd (in the kernel, straight to the guest) or, while masked, our
 * eventfd, whose interrupts held_ready hands to the bus as pending. On the
 * way back, one that came meanwhile goes to the irqfd. Called under the
 * device's MSI lock. */
static void vector_deliverable(void *opaque, bool msix, unsigned vector, bool deliverable)
{
    struct vfio_pci *p = opaque;
    unsigned s = msix ? vector : p->msix_vectors + vector;
    if (s >= p->msix_vectors + p->msi_vectors)
        return;
    pthread_mutex_lock(&p->irq_lock);
    if (p->deliverable && p->deliverable[s] != deliverable) {
        p->deliverable[s] = deliverable;
        bool live = msix ? p->irq_index == VFIO_PCI_MSIX_IRQ_INDEX
                         : p->irq_index == VFIO_PCI_MSI_IRQ_INDEX && vector < p->msi_enabled;
        int fd = vector_target(p, s);
        int r = live ? set_irqs_at(p, msix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX,
                                   VFIO_IRQ_SET_ACTION_TRIGGER, vector, &fd, 1)
                     : 0;
        if (r < 0)
            vmm_log_limited(&p->log, LOG_BUDGET, "%s: rewiring vector %u: %s", p->name, vector,
                            vmm_strerror(r));
        uint64_t n;
        if (deliverable && read(p->held_fd[s], &n, sizeof(n)) == sizeof(n)) {
            uint64_t one = 1;
            if (write(p->vector_fd[s], &one, sizeof(one)) < 0)
                vmm_log_limited(&p->log, LOG_BUDGET, "%s: vector %u: %s", p->name, vector,
                                vmm_strerror(-errno));
        }
    }
    pthread_mutex_unlock(&p->irq_lock);
}

/* Event loop: the device signalled a masked vector; the bus keeps it
 * pending (or sends it, unmasked meanwhile). */
static void held_ready(void *opaque, int fd, uint32_t events)
{
    struct vfio_pci *p = opaque;
    (void)events;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return;
    for (unsigned s = 0; s < p->msix_vectors + p->msi_vectors; s++) {
        if (p->held_fd[s] != fd)
            continue;
        if (s < p->msix_vectors)
            (void)vmm_pci_msix_notify(p->pdev, s);
        else
            (void)vmm_pci_msi_notify(p->pdev, s - p->msix_vectors);
        return;
    }
}

static void destroy(void *opaque)
{
    struct vfio_pci *p = opaque;
    if (p->pdev)
        vmm_log_debug("%s: %" PRIu64 " BAR accesses trapped and forwarded", p->name, p->trapped);
    if (p->irq_index >= 0)
        (void)set_irqs(p, (unsigned)p->irq_index, VFIO_IRQ_SET_ACTION_TRIGGER, NULL, 0);
    for (unsigned v = 0; p->held_fd && v < p->msix_vectors + p->msi_vectors; v++) {
        if (p->held_fd[v] < 0)
            continue;
        (void)vmm_event_loop_remove(vmm_vm_event_loop(p->vm), p->held_fd[v]);
        close(p->held_fd[v]);
    }
    if (p->intx_fd >= 0) {
        (void)vmm_vm_irqfd_remove(p->vm, p->intx_fd, p->intx_gsi);
        close(p->intx_fd);
        close(p->intx_resample);
    }
    for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++) {
        pieces_unmap(p, &p->bars[i]);
        for (unsigned k = 0; k < p->bars[i].nr_pieces; k++)
            munmap(p->bars[i].pieces[k].host, p->bars[i].pieces[k].len);
    }
    vmm_vfio_device_close(p->d);
    free(p->vector_fd);
    free(p->held_fd);
    free(p->deliverable);
    pthread_mutex_destroy(&p->irq_lock);
    free(p);
}

static const struct vmm_pci_device_ops vfio_pci_ops = {
    .size = sizeof(struct vmm_pci_device_ops),
    .bar_read = bar_read,
    .bar_write = bar_write,
    .bar_moved = bar_moved,
    .destroy = destroy,
    .config_write = config_write,
    .irq_mode = irq_mode,
    .vector_deliverable = vector_deliverable,
};

/* VFIO's count of interrupts of kind index (0: none). */
static unsigned irq_count(struct vfio_pci *p, unsigned index)
{
    struct vfio_irq_info ii = {.argsz = sizeof(ii), .index = index};
    if (index >= p->d->info.num_irqs || ioctl(p->d->fd, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0)
        return 0;
    return ii.count;
}

int vmm_vfio_msix_parse(uint16_t ctl, uint32_t table, uint32_t pba,
                        const uint64_t bar_size[VMM_PCI_MAX_BARS], struct vfio_msix *out)
{
    unsigned n = (ctl & 0x7ffu) + 1u, bar = table & 7u;
    uint64_t t = table & ~7u, b = pba & ~7u;
    if (bar >= VMM_PCI_MAX_BARS || (pba & 7u) != bar || n > VMM_PCI_MSIX_MAX)
        return -EINVAL;
    uint64_t size = bar_size[bar];
    /* Offsets are under 2^32 and sizes small: no overflow. */
    if (t + (uint64_t)n * 16 > size || b + (n + 63u) / 64u * 8 > size)
        return -EINVAL;
    *out = (struct vfio_msix){.vectors = n, .bar = bar, .table = t, .pba = b};
    return 0;
}

/* Walk the device's capabilities: MSI and MSI-X (to emulate) and power
 * management (shown read-only); the rest stay hidden. */
static void caps_scan(struct vfio_pci *p, const uint8_t *cfg, struct vmm_pci_device *dv,
                      struct vmm_pci_cap *pm, unsigned *msix_bar, uint64_t *table, uint64_t *pba)
{
    if (!(cfg[0x06] & 0x10))
        return;
    unsigned off = cfg[0x34] & 0xfc;
    for (unsigned hops = 0; off >= 0x40 && off <= CFG_SIZE - 12 && hops < 48; hops++) {
        uint8_t id = cfg[off];
        uint16_t ctl = (uint16_t)(cfg[off + 2] | cfg[off + 3] << 8);
        if (id == CAP_ID_MSI) {
            unsigned n = 1u << ((ctl >> 1) & 7), have = irq_count(p, VFIO_PCI_MSI_IRQ_INDEX);
            while (n > have && n > 1)
                n >>= 1;
            dv->msi_vectors = have && n <= 32 ? n : 0;
        } else if (id == CAP_ID_MSIX) {
            uint32_t t, b;
            memcpy(&t, cfg + off + 4, 4);
            memcpy(&b, cfg + off + 8, 4);
            uint64_t sizes[VMM_PCI_MAX_BARS] = {0};
            struct vfio_region_info ri;
            /* Memory BARs of a size bars_init places; the rest count as none. */
            for (unsigned i = 0; i < VMM_PCI_MAX_BARS; i++)
                if (!(cfg[0x10 + 4 * i] & 1) &&
                    vmm_vfio_region_info(p->d, VFIO_PCI_BAR0_REGION_INDEX + i, &ri) == 0 &&
                    ri.size >= 16 && !(ri.size & (ri.size - 1)))
                    sizes[i] = ri.size;
            struct vfio_msix m;
            if (vmm_vfio_msix_parse(ctl, t, b, sizes, &m) < 0) {
                vmm_log_warn("%s: MSI-X left out (table 0x%08x, PBA 0x%08x: a BAR past the last, "
                             "different BARs, too many vectors or past the BAR's end)",
                             p->name, t, b);
            } else if (irq_count(p, VFIO_PCI_MSIX_IRQ_INDEX) < m.vectors) {
                vmm_log_warn("%s: MSI-X left out (VFIO has fewer vectors than the table)", p->name);
            } else {
                dv->msix_vectors = m.vectors;
                *msix_bar = m.bar;
                *table = m.table;
                *pba = m.pba;
            }
        } else if (id == CAP_ID_PM && off + 2 + sizeof(p->pm) <= CFG_SIZE) {
            memcpy(p->pm, cfg + off + 2, sizeof(p->pm) - 2);
            *pm = (struct vmm_pci_cap){.id = CAP_ID_PM, .len = 6, .data = p->pm};
            dv->nr_caps = 1;
        }
        off = cfg[off + 1] & 0xfc;
    }
}

static int intx_init(struct vfio_pci *p, const uint8_t *cfg)
{
    p->intx_fd = p->intx_resample = -1;
    if (!cfg[0x3d] || !irq_count(p, VFIO_PCI_INTX_IRQ_INDEX))
        return 0;
#ifndef __x86_64__
    /* x86's split irqchip resamples in the library (vmm_vm_irqfd). */
    if (vmm_vm_irqchip(p->vm) != VMM_IRQCHIP_KERNEL) {
        vmm_log_warn("%s: INTx left out: it needs the in-kernel irqchip's resample irqfd", p->name);
        return 0;
    }
#endif
    p->intx_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->intx_resample = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->intx_fd < 0 || p->intx_resample < 0) {
        int r = -errno;
        if (p->intx_fd >= 0)
            close(p->intx_fd);
        if (p->intx_resample >= 0)
            close(p->intx_resample);
        p->intx_fd = p->intx_resample = -1;
        return r;
    }
    return 0;
}

/* Once on the bus: the bus's irqfd of every vector for VFIO's MSI/MSI-X
 * triggers, the INTx line's resample irqfd, INTx on (the mode a function
 * starts in). */
static int irqs_wire(struct vfio_pci *p)
{
    unsigned n = p->msix_vectors + p->msi_vectors;
    struct vmm_event_loop *loop = vmm_vm_event_loop(p->vm);
    p->vector_fd = calloc(n ? n : 1, sizeof(int));
    p->held_fd = calloc(n ? n : 1, sizeof(int));
    bool *deliverable = calloc(n ? n : 1, sizeof(bool));
    if (!p->vector_fd || !p->held_fd || !deliverable || !loop) {
        free(deliverable);
        return -ENOMEM;
    }
    for (unsigned v = 0; v < n; v++)
        p->held_fd[v] = -1;
    for (unsigned v = 0; v < n; v++) {
        int fd = vmm_pci_vector_eventfd(p->pdev, v < p->msix_vectors,
                                        v < p->msix_vectors ? v : v - p->msix_vectors);
        if (fd < 0) {
            free(deliverable);
            return fd;
        }
        p->vector_fd[v] = fd;
        p->held_fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = p->held_fd[v] < 0 ? -errno
                                  : vmm_event_loop_add(loop, p->held_fd[v], EPOLLIN, held_ready, p);
        if (r < 0) {
            if (p->held_fd[v] >= 0)
                close(p->held_fd[v]);
            p->held_fd[v] = -1;
            free(deliverable);
            return r;
        }
    }
    /* From here on vector_deliverable tracks the vectors (all masked:
     * MSI and MSI-X start off). */
    pthread_mutex_lock(&p->irq_lock);
    p->deliverable = deliverable;
    pthread_mutex_unlock(&p->irq_lock);
    if (p->intx_fd < 0)
        return 0;
    p->intx_gsi = vmm_pci_intx_gsi(p->pdev);
    int r = vmm_vm_irqfd(p->vm, p->intx_fd, p->intx_gsi, p->intx_resample);
    if (r == 0 && (r = intx_on(p)) == 0)
        p->irq_index = VFIO_PCI_INTX_IRQ_INDEX;
    if (r < 0)
        vmm_log_error("%s: INTx through GSI %u: %s", p->name, p->intx_gsi, vmm_strerror(r));
    return r;
}

int vmm_vfio_pci_add(struct vmm_vfio_device *d, struct vmm_pci_bus *bus, struct vmm_pci_dev **out)
{
    struct vmm_vm *vm = bus ? vmm_pci_bus_vm(bus) : NULL;
    uint8_t cfg[CFG_SIZE];
    int r = d && vm ? vmm_vfio_device_config_read(d, 0, cfg, sizeof(cfg)) : -EINVAL;
    if (r == 0 && (cfg[0x0e] & 0x7f) != 0) {
        vmm_log_error("vfio: %s is not a type-0 function (a bridge?)", d->address);
        r = -ENOTSUP;
    }
    if (r < 0) {
        vmm_vfio_device_close(d);
        return r;
    }
    struct vfio_pci *p = calloc(1, sizeof(*p));
    if (!p) {
        vmm_vfio_device_close(d);
        return -ENOMEM;
    }
    p->d = d;
    p->vm = vm;
    p->irq_index = -1;
    pthread_mutex_init(&p->irq_lock, NULL);
    struct vfio_region_info ri;
    r = vmm_vfio_region_info(d, VFIO_PCI_CONFIG_REGION_INDEX, &ri);
    if (r < 0) {
        vmm_vfio_device_close(d);
        free(p);
        return r;
    }
    p->cfg_offset = ri.offset;
    snprintf(p->name, sizeof(p->name), "vfio %s", d->address);
    struct vmm_pci_cap pm;
    unsigned msix_bar = 0;
    uint64_t table = 0, pba = 0;
    struct vmm_pci_device dv = {
        .size = sizeof(dv),
        .vendor_id = (uint16_t)(cfg[0] | cfg[1] << 8),
        .device_id = (uint16_t)(cfg[2] | cfg[3] << 8),
        .revision = cfg[8],
        .prog_if = cfg[9],
        .class_code = (uint16_t)(cfg[0x0a] | cfg[0x0b] << 8),
        .subsystem_vendor_id = (uint16_t)(cfg[0x2c] | cfg[0x2d] << 8),
        .subsystem_id = (uint16_t)(cfg[0x2e] | cfg[0x2f] << 8),
        .ops = &vfio_pci_ops,
        .opaque = p,
        .name = p->name,
        .caps = &pm,
    };
    caps_scan(p, cfg, &dv, &pm, &msix_bar, &table, &pba);
    p->msix_vectors = dv.msix_vectors;
    p->msi_vectors = dv.msi_vectors;
    dv.msix_bar = msix_bar;
    dv.msix_table_offset = table;
    dv.msix_pba_offset = pba;
    r = bars_init(p, cfg, &dv, msix_bar, table, pba);
    if (r == 0)
        r = intx_init(p, cfg);
    if (r < 0) {
        destroy(p);
        return r;
    }
    dv.intx = p->intx_fd >= 0;
    struct vmm_pci_dev *pdev;
    r = vmm_pci_add_device(bus, &dv, &pdev); /* destroys p on failure */
    if (r < 0)
        return r;
    /* From here on the bus owns p: a failure leaves the function on the
     * bus without interrupts, to go with the VM (the caller gives up). */
    p->pdev = pdev;
    vmm_pci_dev_set_snap_refusal(pdev, "a passed-through (VFIO) device, whose state lives in the "
                                       "hardware: snapshots and migration are not possible");
    r = irqs_wire(p);
    if (r < 0) {
        /* On the bus without interrupts until the VM goes. */
        p->irqs_off = true;
        return r;
    }
    vmm_log_debug("%s: PCI function %02x.%x (MSI-X %u, MSI %u, INTx %s)", p->name,
                  vmm_pci_dev_bdf(pdev) >> 3, vmm_pci_dev_bdf(pdev) & 7, p->msix_vectors,
                  p->msi_vectors, p->intx_fd >= 0 ? "yes" : "no");
    if (out)
        *out = pdev;
    return 0;
}
