/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny freestanding virtio-mmio (version 2) driver for the test guests:
 * device discovery in the vmm-run window layout, feature negotiation, split
 * queues in static memory, and interrupt-driven waits (IOAPIC + LAPIC, with
 * a LAPIC-timer watchdog so a lost interrupt ends in a failure, not a hang).
 *
 * Layout convention (vmm-run): device slot n sits at
 * VIRTIO_MMIO_BASE + n * 0x1000 and interrupts on GSI 5 + n. Guest memory is
 * identity-mapped, so pointers are guest-physical addresses.
 *
 * Typical use:
 *     struct vdev dev;  struct vq q;
 *     if (vdev_find(&dev, VIRTIO_ID_RNG) < 0 || vdev_init(&dev, 0) < 0) fail;
 *     vq_setup(&dev, &q, 0);  vdev_driver_ok(&dev);
 *     vq_desc(&q, 0, (uint64_t)buf, len, VIRTQ_DESC_F_WRITE, 0);
 *     vq_submit(&q, 0);                 (makes head 0 available and notifies)
 *     vq_wait(&q, &id, &len);           (sleeps until the device used it)
 */
#ifndef VIRTIO_DRV_H
#define VIRTIO_DRV_H

#include "guest.h"

#define VIRTIO_MMIO_BASE  0xd0000000ull
#define VIRTIO_MMIO_SLOTS 8
#define VIRTIO_FIRST_GSI  5
#define VIRTIO_VECTOR     0x50 /* every virtio device interrupts on this vector */

#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

/* Registers (virtio 1.2, 4.2.2). */
#define VMMIO_MAGIC          0x000
#define VMMIO_VERSION        0x004
#define VMMIO_DEVICE_ID      0x008
#define VMMIO_DEV_FEATURES   0x010
#define VMMIO_DEV_FEAT_SEL   0x014
#define VMMIO_DRV_FEATURES   0x020
#define VMMIO_DRV_FEAT_SEL   0x024
#define VMMIO_QUEUE_SEL      0x030
#define VMMIO_QUEUE_NUM_MAX  0x034
#define VMMIO_QUEUE_NUM      0x038
#define VMMIO_QUEUE_READY    0x044
#define VMMIO_QUEUE_NOTIFY   0x050
#define VMMIO_INT_STATUS     0x060
#define VMMIO_INT_ACK        0x064
#define VMMIO_STATUS         0x070
#define VMMIO_QUEUE_DESC_LO  0x080
#define VMMIO_QUEUE_DESC_HI  0x084
#define VMMIO_QUEUE_AVAIL_LO 0x090
#define VMMIO_QUEUE_AVAIL_HI 0x094
#define VMMIO_QUEUE_USED_LO  0x0a0
#define VMMIO_QUEUE_USED_HI  0x0a4
#define VMMIO_CONFIG_GEN     0x0fc
#define VMMIO_CONFIG         0x100

#define VSTATUS_ACK         1
#define VSTATUS_DRIVER      2
#define VSTATUS_DRIVER_OK   4
#define VSTATUS_FEATURES_OK 8
#define VSTATUS_NEEDS_RESET 64
#define VSTATUS_FAILED      128

#define VIRTIO_F_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_EVENT_IDX     (1ull << 29)
#define VIRTIO_F_VERSION_1     (1ull << 32)

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

/* Every queue this driver sets up has this many entries. */
#define VQ_SIZE 16

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[VQ_SIZE];
    uint16_t used_event;
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[VQ_SIZE];
    uint16_t avail_event;
};

/* One queue's rings (one page: desc at 0, avail at 256, used at 512). */
struct vq_rings {
    struct virtq_desc desc[VQ_SIZE];
    struct virtq_avail avail;
    uint8_t pad[256 - sizeof(struct virtq_avail)];
    struct virtq_used used;
} __attribute__((aligned(4096)));

struct vdev {
    uint64_t base;
    unsigned slot, gsi;
    uint32_t device_id;
    uint64_t features;          /* negotiated */
    volatile unsigned irqs;     /* interrupts taken */
    volatile uint32_t isr_seen; /* InterruptStatus bits seen so far (ORed) */
};

struct vq {
    struct vdev *dev;
    unsigned index;
    struct vq_rings *r;
    uint16_t avail_idx; /* next avail index to publish */
    uint16_t last_used; /* next used index to consume */
};

static inline uint32_t vdev_read(const struct vdev *d, uint32_t reg)
{
    return mmio_read32(d->base + reg);
}
static inline void vdev_write(const struct vdev *d, uint32_t reg, uint32_t v)
{
    mmio_write32(d->base + reg, v);
}

/* Find the first device of type id in the vmm-run slots (skipping the first
 * `skip` matches). Also installs the interrupt handler, enables the LAPIC
 * and starts the watchdog timer on first use. Returns 0 or -1. */
int vdev_find(struct vdev *d, uint32_t id, unsigned skip);

/* Reset, ACKNOWLEDGE, DRIVER, negotiate VERSION_1 | (want & offered),
 * FEATURES_OK and check it stuck. Routes the device's GSI to
 * VIRTIO_VECTOR. Returns 0 or -1. */
int vdev_init(struct vdev *d, uint64_t want);

/* Set up queue index with rings from a static pool (at most 8 queues in
 * all). Returns 0 or -1 (queue missing, too small, or refused). */
int vq_setup(struct vdev *d, struct vq *q, unsigned index);

/* Set DRIVER_OK. Returns 0 or -1 (the device refused or needs reset). */
int vdev_driver_ok(struct vdev *d);

/* Reset the device (status 0) and wait for it to read back 0. */
void vdev_reset(struct vdev *d);

static inline void vq_desc(struct vq *q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                           uint16_t next)
{
    q->r->desc[i] = (struct virtq_desc){addr, len, flags, next};
}

/* Make head available (no notification). */
void vq_add(struct vq *q, uint16_t head);
/* Notify the device of queue q. */
void vq_kick(struct vq *q);
static inline void vq_submit(struct vq *q, uint16_t head)
{
    vq_add(q, head);
    vq_kick(q);
}

/* Wait (interrupt-driven, bounded by the watchdog) for the next used entry.
 * Returns 0 with the entry in id and len, or -1 on time-out. */
int vq_wait(struct vq *q, uint32_t *id, uint32_t *len);

/* Non-blocking: 1 with the next used entry, 0 if none yet. */
int vq_poll(struct vq *q, uint32_t *id, uint32_t *len);

/* Wait until the device's status has NEEDS_RESET (bounded); 0 or -1. */
int vdev_wait_needs_reset(struct vdev *d);

/* Wait (bounded) until an interrupt with InterruptStatus bit `bit` has been
 * taken from d: interrupts only get in while a wait sleeps, so one sent
 * after the work it reports was already seen by polling may still be
 * pending. 0 or -1. */
int vdev_wait_isr(struct vdev *d, uint32_t bit);

/* For drivers of other transports (virtio_pci.c): mask the PICs, enable the
 * LAPIC and start the periodic watchdog timer (once); the timer's tick
 * count, about 6 a second. */
void vdrv_start_timer(void);
unsigned vdrv_ticks(void);

#endif
