/* SPDX-License-Identifier: Apache-2.0 */
/* The test guests' freestanding virtio-mmio driver (see virtio_drv.h). */
#include "virtio_drv.h"

#define TIMER_VECTOR 0x30
#define SPURIOUS_VEC 0xff
/* Periodic watchdog: 10^7 ticks / 16 at KVM's 1 GHz APIC bus = 160 ms. */
#define TIMER_DIV_16 0x3
#define TIMER_COUNT  10000000u
/* Timer ticks a wait may take (about 10 s). */
#define WAIT_TICKS 64

#define MAX_DEVS   VIRTIO_MMIO_SLOTS
#define MAX_QUEUES 8

static struct vdev *devs[MAX_DEVS];
static unsigned ndevs;
static bool runtime_ready;
static volatile unsigned timer_ticks;
static struct vq_rings ring_pool[MAX_QUEUES];
static unsigned rings_used;

__attribute__((interrupt)) static void virtio_isr(struct interrupt_frame *f)
{
    (void)f;
    for (unsigned i = 0; i < ndevs; i++) {
        uint32_t isr = vdev_read(devs[i], VMMIO_INT_STATUS);
        if (isr) {
            vdev_write(devs[i], VMMIO_INT_ACK, isr);
            devs[i]->isr_seen |= isr;
            devs[i]->irqs++;
        }
    }
    lapic_eoi();
}

__attribute__((interrupt)) static void timer_isr(struct interrupt_frame *f)
{
    (void)f;
    timer_ticks++;
    lapic_eoi();
}

__attribute__((interrupt)) static void spurious_isr(struct interrupt_frame *f)
{
    (void)f;
}

static void runtime_init(void)
{
    if (runtime_ready)
        return;
    runtime_ready = true;
    pic_mask_all();
    idt_set_handler(VIRTIO_VECTOR, virtio_isr);
    idt_set_handler(TIMER_VECTOR, timer_isr);
    idt_set_handler(SPURIOUS_VEC, spurious_isr);
    lapic_enable();
    lapic_write(LAPIC_TIMER_DIV, TIMER_DIV_16);
    lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR | LAPIC_TIMER_PERIODIC);
    lapic_write(LAPIC_TIMER_INIT, TIMER_COUNT);
}

int vdev_find(struct vdev *d, uint32_t id, unsigned skip)
{
    runtime_init();
    for (unsigned n = 0; n < VIRTIO_MMIO_SLOTS; n++) {
        uint64_t base = VIRTIO_MMIO_BASE + n * 0x1000ull;
        if (mmio_read32(base + VMMIO_MAGIC) != 0x74726976 ||
            mmio_read32(base + VMMIO_VERSION) != 2 || mmio_read32(base + VMMIO_DEVICE_ID) != id)
            continue;
        if (skip-- > 0)
            continue;
        *d = (struct vdev){.base = base, .slot = n, .gsi = VIRTIO_FIRST_GSI + n, .device_id = id};
        return 0;
    }
    return -1;
}

void vdev_reset(struct vdev *d)
{
    vdev_write(d, VMMIO_STATUS, 0);
    while (vdev_read(d, VMMIO_STATUS) != 0)
        cpu_pause();
}

int vdev_init(struct vdev *d, uint64_t want)
{
    vdev_reset(d);
    vdev_write(d, VMMIO_STATUS, VSTATUS_ACK);
    vdev_write(d, VMMIO_STATUS, VSTATUS_ACK | VSTATUS_DRIVER);
    vdev_write(d, VMMIO_DEV_FEAT_SEL, 0);
    uint64_t offered = vdev_read(d, VMMIO_DEV_FEATURES);
    vdev_write(d, VMMIO_DEV_FEAT_SEL, 1);
    offered |= (uint64_t)vdev_read(d, VMMIO_DEV_FEATURES) << 32;
    if (!(offered & VIRTIO_F_VERSION_1))
        return -1;
    d->features = (want & offered) | VIRTIO_F_VERSION_1;
    vdev_write(d, VMMIO_DRV_FEAT_SEL, 0);
    vdev_write(d, VMMIO_DRV_FEATURES, (uint32_t)d->features);
    vdev_write(d, VMMIO_DRV_FEAT_SEL, 1);
    vdev_write(d, VMMIO_DRV_FEATURES, (uint32_t)(d->features >> 32));
    vdev_write(d, VMMIO_STATUS, VSTATUS_ACK | VSTATUS_DRIVER | VSTATUS_FEATURES_OK);
    if (!(vdev_read(d, VMMIO_STATUS) & VSTATUS_FEATURES_OK))
        return -1;
    bool known = false;
    for (unsigned i = 0; i < ndevs; i++)
        known |= devs[i] == d;
    if (!known && ndevs < MAX_DEVS)
        devs[ndevs++] = d;
    /* Edge-triggered, active high, fixed delivery to the BSP. */
    ioapic_set_redir(d->gsi, VIRTIO_VECTOR, 0);
    return 0;
}

int vq_setup(struct vdev *d, struct vq *q, unsigned index)
{
    vdev_write(d, VMMIO_QUEUE_SEL, index);
    if (vdev_read(d, VMMIO_QUEUE_READY) != 0 || vdev_read(d, VMMIO_QUEUE_NUM_MAX) < VQ_SIZE)
        return -1;
    /* A queue set up again (after a device reset) reuses its rings. */
    struct vq_rings *r = q->dev == d && q->index == index && q->r ? q->r : NULL;
    if (!r) {
        if (rings_used == MAX_QUEUES)
            return -1;
        r = &ring_pool[rings_used++];
    }
    memset(r, 0, sizeof(*r));
    *q = (struct vq){.dev = d, .index = index, .r = r};
    uint64_t desc = (uint64_t)r->desc, avail = (uint64_t)&r->avail, used = (uint64_t)&r->used;
    vdev_write(d, VMMIO_QUEUE_NUM, VQ_SIZE);
    vdev_write(d, VMMIO_QUEUE_DESC_LO, (uint32_t)desc);
    vdev_write(d, VMMIO_QUEUE_DESC_HI, (uint32_t)(desc >> 32));
    vdev_write(d, VMMIO_QUEUE_AVAIL_LO, (uint32_t)avail);
    vdev_write(d, VMMIO_QUEUE_AVAIL_HI, (uint32_t)(avail >> 32));
    vdev_write(d, VMMIO_QUEUE_USED_LO, (uint32_t)used);
    vdev_write(d, VMMIO_QUEUE_USED_HI, (uint32_t)(used >> 32));
    vdev_write(d, VMMIO_QUEUE_READY, 1);
    return vdev_read(d, VMMIO_QUEUE_READY) == 1 ? 0 : -1;
}

int vdev_driver_ok(struct vdev *d)
{
    uint32_t s = VSTATUS_ACK | VSTATUS_DRIVER | VSTATUS_FEATURES_OK | VSTATUS_DRIVER_OK;
    vdev_write(d, VMMIO_STATUS, s);
    return vdev_read(d, VMMIO_STATUS) == s ? 0 : -1;
}

void vq_add(struct vq *q, uint16_t head)
{
    q->r->avail.ring[q->avail_idx % VQ_SIZE] = head;
    q->avail_idx++;
    /* The ring entry (and the descriptors) before the index. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    *(volatile uint16_t *)&q->r->avail.idx = q->avail_idx;
}

void vq_kick(struct vq *q)
{
    /* The index store before the notification (MMIO is ordered on x86, but
     * keep the compiler honest). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    vdev_write(q->dev, VMMIO_QUEUE_NOTIFY, q->index);
}

int vq_poll(struct vq *q, uint32_t *id, uint32_t *len)
{
    uint16_t used = *(volatile uint16_t *)&q->r->used.idx;
    if (used == q->last_used)
        return 0;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    struct virtq_used_elem e = q->r->used.ring[q->last_used % VQ_SIZE];
    q->last_used++;
    *id = e.id;
    *len = e.len;
    return 1;
}

int vq_wait(struct vq *q, uint32_t *id, uint32_t *len)
{
    unsigned start = timer_ticks;
    for (;;) {
        if (vq_poll(q, id, len))
            return 0;
        if (timer_ticks - start > WAIT_TICKS)
            return -1;
        cpu_sti_hlt_cli();
    }
}

int vdev_wait_needs_reset(struct vdev *d)
{
    unsigned start = timer_ticks;
    while (!(vdev_read(d, VMMIO_STATUS) & VSTATUS_NEEDS_RESET)) {
        if (timer_ticks - start > WAIT_TICKS)
            return -1;
        cpu_sti_hlt_cli();
    }
    return 0;
}

int vdev_wait_isr(struct vdev *d, uint32_t bit)
{
    unsigned start = timer_ticks;
    while (!(d->isr_seen & bit)) {
        if (timer_ticks - start > WAIT_TICKS)
            return -1;
        cpu_sti_hlt_cli();
    }
    return 0;
}

void vdrv_start_timer(void)
{
    runtime_init();
}

unsigned vdrv_ticks(void)
{
    return timer_ticks;
}
