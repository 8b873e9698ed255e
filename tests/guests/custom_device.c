/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest of examples/custom_device.c: it talks to two devices the library
 * has never heard of, both written by the embedding application.
 *
 * - An accumulator on ports 0x560-0x567 that the application answers from
 *   the exit records of vmm_vcpu_run_once (nothing registered on the bus):
 *   a 4-byte OUT to 0x560 adds, a 4-byte IN reads the sum; REP OUTSB to 0x564
 *   appends to a tape the host prints, REP INSB reads the host's message.
 * - A virtio "echo" device (device id ECHO_DEVICE_ID) on virtio-mmio slot 0:
 *   each request's bytes come back XORed with the key in its configuration
 *   space (le32 key at 0, writable; le32 count of requests served at 4).
 *
 * Exits with the number of the first failing check, 0 when all pass.
 */
#include "virtio_drv.h"

#define ACC_PORT  0x560
#define TAPE_PORT 0x564

#define ECHO_DEVICE_ID  0x4543484fu /* "ECHO" */
#define ECHO_CFG_KEY    0x0
#define ECHO_CFG_SERVED 0x4
#define ECHO_KEY        0x20u /* flips the case of ASCII letters */

enum {
    FAIL_SUM = 1,
    FAIL_SUM_AGAIN = 2,
    FAIL_TAPE_IN = 3,
    FAIL_FIND = 10,
    FAIL_INIT = 11,
    FAIL_QUEUE = 12,
    FAIL_DRIVER_OK = 13,
    FAIL_KEY = 14,
    FAIL_TIMEOUT = 15,
    FAIL_REPLY = 16,
    FAIL_SERVED = 17,
};

static struct vdev dev;
static struct vq q;
static char reply[64];

static void rep_outsb(uint16_t port, const void *buf, uint64_t n)
{
    __asm__ volatile("rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

static void rep_insb(uint16_t port, void *buf, uint64_t n)
{
    __asm__ volatile("rep insb" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}

static int accumulator(void)
{
    uint32_t want = 0;
    for (uint32_t i = 1; i <= 10; i++) {
        outl(ACC_PORT, i);
        want += i;
    }
    uint32_t got = inl(ACC_PORT);
    if (got != want) {
        printf("custom_device: accumulator reads %x, want %x\n", got, want);
        return FAIL_SUM;
    }
    outl(ACC_PORT, 0x1000);
    if (inl(ACC_PORT) != want + 0x1000)
        return FAIL_SUM_AGAIN;

    static const char note[] = "guest says hi";
    rep_outsb(TAPE_PORT, note, sizeof(note) - 1);
    char msg[7] = "";
    rep_insb(TAPE_PORT, msg, 6);
    if (memcmp(msg, "libvmm", 6) != 0) {
        printf("custom_device: tape reads '%s'\n", msg);
        return FAIL_TAPE_IN;
    }
    printf("custom_device: accumulator %u, tape '%s'\n", got, msg);
    return 0;
}

/* One request through the echo device: text out, text ^ key back. */
static int echo(uint16_t head, const char *text)
{
    uint32_t n = (uint32_t)strlen(text);
    memset(reply, 0, sizeof(reply));
    vq_desc(&q, head, (uint64_t)text, n, VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
    vq_desc(&q, (uint16_t)(head + 1), (uint64_t)reply, sizeof(reply), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&q, head);
    uint32_t id, len;
    if (vq_wait(&q, &id, &len) < 0)
        return FAIL_TIMEOUT;
    if (id != head || len != n)
        return FAIL_REPLY;
    for (uint32_t i = 0; i < n; i++)
        if ((uint8_t)reply[i] != ((uint8_t)text[i] ^ ECHO_KEY))
            return FAIL_REPLY;
    printf("custom_device: echo '%s' -> '%s'\n", text, reply);
    return 0;
}

static int echo_device(void)
{
    if (vdev_find(&dev, ECHO_DEVICE_ID, 0) < 0)
        return FAIL_FIND;
    if (vdev_init(&dev, 0) < 0)
        return FAIL_INIT;
    if (vq_setup(&dev, &q, 0) < 0)
        return FAIL_QUEUE;
    vdev_write(&dev, VMMIO_CONFIG + ECHO_CFG_KEY, ECHO_KEY);
    if (vdev_read(&dev, VMMIO_CONFIG + ECHO_CFG_KEY) != ECHO_KEY)
        return FAIL_KEY;
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;
    int r = echo(0, "HelloDevice");
    if (r == 0)
        r = echo(2, "stepBYstep");
    if (r)
        return r;
    uint32_t served = vdev_read(&dev, VMMIO_CONFIG + ECHO_CFG_SERVED);
    if (served != 2) {
        printf("custom_device: echo served %u requests, want 2\n", served);
        return FAIL_SERVED;
    }
    return 0;
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    int r = accumulator();
    if (r == 0)
        r = echo_device();
    if (r == 0)
        puts("custom_device ok\n");
    return r;
}
