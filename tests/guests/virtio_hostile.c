/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A hostile driver: feeds malformed descriptor chains to the entropy and
 * console devices (loops, indices past the queue, addresses and lengths
 * outside guest memory, nested and malformed indirect tables, readable after
 * writable), checks each comes back used with 0 bytes and that a good request
 * still works; then breaks a ring outright (a head index past the queue, an
 * available index that jumps), expects DEVICE_NEEDS_RESET, resets the device
 * and uses it again. Then, on each device: oversize requests (an indirect
 * table longer than the queue, refused unread; for the rng a buffer larger
 * than one request may fill), a storm of notifications with nothing new, and
 * a reset with requests in flight, each followed by a good request that must
 * be answered (and nothing from before the reset in the new ring).
 */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_BAD_USED = 3,
    FAIL_GOOD = 4,
    FAIL_NO_NEEDS_RESET = 5,
    FAIL_RECOVER = 6,
    FAIL_CONSOLE = 7,
    FAIL_OVERSIZE = 8,
    FAIL_STORM = 9,
    FAIL_RESET_IN_FLIGHT = 10,
};

/* Notifications with nothing new in the ring, in one storm. */
#define STORM 1000

static struct vdev rng, con;
static struct vq rq, rx, tx;
static uint8_t good[32];
static struct virtq_desc table_a[4] __attribute__((aligned(16)));
static struct virtq_desc table_b[2] __attribute__((aligned(16)));
static char line[64];
static struct virtq_desc long_table[2 * VQ_SIZE] __attribute__((aligned(16)));
static uint8_t big[128 << 10];

#define FAR_AWAY 0xfff0000000000000ull

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Queue the malformed chains on q (descriptors 0..9); returns how many. */
static unsigned queue_bad_chains(struct vq *q, void *buf)
{
    uint64_t b = (uint64_t)buf;
    unsigned n = 0;
    /* 0 <-> 1: a loop. */
    vq_desc(q, 0, b, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    vq_desc(q, 1, b, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0);
    vq_add(q, 0), n++;
    /* Outside guest memory, and an address + length that wraps. */
    vq_desc(q, 2, FAR_AWAY, 16, VIRTQ_DESC_F_WRITE, 0);
    vq_add(q, 2), n++;
    vq_desc(q, 3, 0xffffffffffff0000ull, 0x20000, VIRTQ_DESC_F_WRITE, 0);
    vq_add(q, 3), n++;
    /* next past the queue size. */
    vq_desc(q, 4, b, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 200);
    vq_add(q, 4), n++;
    /* An indirect table holding another indirect descriptor. */
    table_a[0] = (struct virtq_desc){(uint64_t)table_b, sizeof(table_b), VIRTQ_DESC_F_INDIRECT, 0};
    table_b[0] = (struct virtq_desc){b, 8, VIRTQ_DESC_F_WRITE, 0};
    vq_desc(q, 5, (uint64_t)table_a, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vq_add(q, 5), n++;
    /* A zero-length table, and one of 24 bytes. */
    vq_desc(q, 6, (uint64_t)table_b, 0, VIRTQ_DESC_F_INDIRECT, 0);
    vq_add(q, 6), n++;
    vq_desc(q, 7, (uint64_t)table_b, 24, VIRTQ_DESC_F_INDIRECT, 0);
    vq_add(q, 7), n++;
    /* Device-readable after device-writable. */
    vq_desc(q, 8, b, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 9);
    vq_desc(q, 9, b, 8, 0, 0);
    vq_add(q, 8), n++;
    return n;
}

/* Wait for n used entries, each with 0 bytes written. */
static bool expect_bad_used(struct vq *q, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t id, len;
        if (vq_wait(q, &id, &len) < 0 || len != 0) {
            printf("virtio_hostile: bad chain %u: %s (len %u)\n", i,
                   len ? "data written" : "no completion", len);
            return false;
        }
    }
    return true;
}

/* An indirect table twice the queue size (one-byte writable buffers at
 * buf) behind descriptor head: longer than any chain may be. */
static void queue_long_table(struct vq *q, uint16_t head, void *buf)
{
    for (unsigned i = 0; i < 2 * VQ_SIZE; i++)
        long_table[i] = (struct virtq_desc){
            (uint64_t)buf, 1,
            (uint16_t)(VIRTQ_DESC_F_WRITE | (i + 1 < 2 * VQ_SIZE ? VIRTQ_DESC_F_NEXT : 0)),
            (uint16_t)(i + 1)};
    vq_desc(q, head, (uint64_t)long_table, sizeof(long_table), VIRTQ_DESC_F_INDIRECT, 0);
    vq_add(q, head);
}

/* Nothing more in the used ring than what the driver consumed. */
static bool used_ring_quiet(struct vq *q)
{
    uint32_t id, len;
    return vq_poll(q, &id, &len) == 0;
}

static bool rng_good_request(void)
{
    memset(good, 0, sizeof(good));
    vq_desc(&rq, 10, (uint64_t)good, sizeof(good), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&rq, 10);
    uint32_t id, len;
    return vq_wait(&rq, &id, &len) == 0 && id == 10 && len == sizeof(good) &&
           !all_zero(good, sizeof(good));
}

static bool rng_bring_up(void)
{
    return vdev_init(&rng, VIRTIO_F_INDIRECT_DESC) == 0 && vq_setup(&rng, &rq, 0) == 0 &&
           vdev_driver_ok(&rng) == 0;
}

static bool console_send(struct vq *q, uint16_t head, const char *s)
{
    size_t n = strlen(s);
    memcpy(line, s, n);
    vq_desc(q, head, (uint64_t)line, (uint32_t)n, 0, 0);
    vq_submit(q, head);
    uint32_t id, len;
    return vq_wait(q, &id, &len) == 0 && id == head;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&rng, VIRTIO_ID_RNG, 0) < 0 || vdev_find(&con, VIRTIO_ID_CONSOLE, 0) < 0)
        return FAIL_FIND;
    if (!rng_bring_up())
        return FAIL_INIT;

    /* Malformed chains on the entropy device, then a good one. */
    static uint8_t scratch[8];
    unsigned n = queue_bad_chains(&rq, scratch);
    vq_kick(&rq);
    if (!expect_bad_used(&rq, n))
        return FAIL_BAD_USED;
    if (!all_zero(scratch, sizeof(scratch)))
        return FAIL_BAD_USED;
    if (!rng_good_request())
        return FAIL_GOOD;

    /* A head index past the queue: the device needs a reset. */
    vq_submit(&rq, 200);
    if (vdev_wait_needs_reset(&rng) < 0)
        return FAIL_NO_NEEDS_RESET;
    if (vdev_wait_isr(&rng, 2) < 0) /* announced with a configuration interrupt */
        return FAIL_NO_NEEDS_RESET;
    if (!rng_bring_up() || !rng_good_request())
        return FAIL_RECOVER;

    /* The available index jumping by more than the queue size. */
    rq.avail_idx += 3 * VQ_SIZE;
    vq_submit(&rq, 10);
    if (vdev_wait_needs_reset(&rng) < 0)
        return FAIL_NO_NEEDS_RESET;
    if (!rng_bring_up() || !rng_good_request())
        return FAIL_RECOVER;

    /* Oversize: a table longer than the queue is refused unread; a 128 KiB
     * buffer is filled only up to what one request may take. */
    queue_long_table(&rq, 11, scratch);
    vq_kick(&rq);
    if (!expect_bad_used(&rq, 1) || !all_zero(scratch, sizeof(scratch)))
        return FAIL_OVERSIZE;
    vq_desc(&rq, 12, (uint64_t)big, sizeof(big), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&rq, 12);
    uint32_t id, len;
    if (vq_wait(&rq, &id, &len) < 0 || id != 12 || len == 0 || len >= sizeof(big))
        return FAIL_OVERSIZE;
    if (!rng_good_request())
        return FAIL_OVERSIZE;

    /* A notification storm with nothing new: nothing answered twice, and
     * the next request still is. */
    for (unsigned i = 0; i < STORM; i++)
        vq_kick(&rq);
    if (!used_ring_quiet(&rq) || !rng_good_request() || !used_ring_quiet(&rq))
        return FAIL_STORM;

    /* A reset with eight requests just notified: after the set-up that
     * follows, the first used entry is the new request's. */
    for (uint16_t i = 0; i < 8; i++)
        vq_desc(&rq, i, (uint64_t)big + 4096ull * i, 4096, VIRTQ_DESC_F_WRITE, 0), vq_add(&rq, i);
    vq_kick(&rq);
    if (!rng_bring_up() || !rng_good_request() || !used_ring_quiet(&rq))
        return FAIL_RESET_IN_FLIGHT;
    printf("hostile: rng still works\n");

    /* The console's transmit queue gets the same treatment. */
    if (vdev_init(&con, VIRTIO_F_INDIRECT_DESC) < 0 || vq_setup(&con, &rx, 0) < 0 ||
        vq_setup(&con, &tx, 1) < 0 || vdev_driver_ok(&con) < 0)
        return FAIL_CONSOLE;
    n = queue_bad_chains(&tx, scratch);
    vq_kick(&tx);
    if (!expect_bad_used(&tx, n))
        return FAIL_CONSOLE;
    if (!console_send(&tx, 10, "hostile: console still works\n"))
        return FAIL_CONSOLE;
    queue_long_table(&tx, 11, scratch);
    vq_kick(&tx);
    if (!expect_bad_used(&tx, 1))
        return FAIL_OVERSIZE;
    for (unsigned i = 0; i < STORM; i++)
        vq_kick(&tx);
    if (!used_ring_quiet(&tx) || !console_send(&tx, 12, "hostile: console after a storm\n") ||
        !used_ring_quiet(&tx))
        return FAIL_STORM;
    /* Lines in flight when the driver resets may or may not go out; none
     * may complete into the rings set up afterwards. */
    static const char early[] = "hostile: in flight at reset\n";
    for (uint16_t i = 0; i < 4; i++)
        vq_desc(&tx, i, (uint64_t)early, sizeof(early) - 1, 0, 0), vq_add(&tx, i);
    vq_kick(&tx);
    if (vdev_init(&con, VIRTIO_F_INDIRECT_DESC) < 0 || vq_setup(&con, &rx, 0) < 0 ||
        vq_setup(&con, &tx, 1) < 0 || vdev_driver_ok(&con) < 0)
        return FAIL_RESET_IN_FLIGHT;
    if (!console_send(&tx, 13, "hostile: console after a reset\n") || !used_ring_quiet(&tx))
        return FAIL_RESET_IN_FLIGHT;
    printf("virtio_hostile ok\n");
    return 0;
}
