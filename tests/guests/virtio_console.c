/* SPDX-License-Identifier: Apache-2.0 */
/* The console device end to end: the guest says hello on the transmit queue,
 * reads one line from the receive queue (the host's input) and echoes it
 * back as "echo: <line>". */
#include "virtio_drv.h"

enum {
    FAIL_FIND = 1,
    FAIL_INIT = 2,
    FAIL_QUEUE = 3,
    FAIL_DRIVER_OK = 4,
    FAIL_TX = 5,
    FAIL_RX = 6,
    FAIL_LONG = 7,
};

#define RX_BUFS 4
#define RX_LEN  16
#define LINE    128

static struct vdev dev;
static struct vq rx, tx;
static uint8_t rxbuf[RX_BUFS][RX_LEN];
static char txbuf[LINE + 16];
static char line[LINE];

/* Send len bytes of txbuf and wait until the device has taken them. */
static int send(size_t len)
{
    vq_desc(&tx, 0, (uint64_t)txbuf, (uint32_t)len, 0, 0);
    vq_submit(&tx, 0);
    uint32_t id, got;
    return vq_wait(&tx, &id, &got);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    if (vdev_find(&dev, VIRTIO_ID_CONSOLE, 0) < 0) {
        puts("virtio_console: no console device\n");
        return FAIL_FIND;
    }
    if (vdev_init(&dev, VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC) < 0)
        return FAIL_INIT;
    if (vq_setup(&dev, &rx, 0) < 0 || vq_setup(&dev, &tx, 1) < 0)
        return FAIL_QUEUE;
    /* Like Linux: fill the receive queue before DRIVER_OK. */
    for (unsigned i = 0; i < RX_BUFS; i++) {
        vq_desc(&rx, i, (uint64_t)rxbuf[i], RX_LEN, VIRTQ_DESC_F_WRITE, 0);
        vq_add(&rx, (uint16_t)i);
    }
    vq_kick(&rx);
    if (vdev_driver_ok(&dev) < 0)
        return FAIL_DRIVER_OK;

    const char hello[] = "virtio-console: hello from the guest\n";
    memcpy(txbuf, hello, sizeof(hello) - 1);
    if (send(sizeof(hello) - 1) < 0)
        return FAIL_TX;

    /* Collect input until a newline, recycling receive buffers. */
    size_t n = 0;
    for (;;) {
        uint32_t id, len;
        if (vq_wait(&rx, &id, &len) < 0 || id >= RX_BUFS || len > RX_LEN) {
            printf("virtio_console: no input line (have %u bytes)\n", (unsigned)n);
            return FAIL_RX;
        }
        bool eol = false;
        for (uint32_t i = 0; i < len && !eol; i++) {
            char c = (char)rxbuf[id][i];
            if (c == '\n' || c == '\r')
                eol = true;
            else if (n < LINE)
                line[n++] = c;
            else
                return FAIL_LONG;
        }
        vq_submit(&rx, (uint16_t)id);
        if (eol)
            break;
    }
    memcpy(txbuf, "echo: ", 6);
    memcpy(txbuf + 6, line, n);
    txbuf[6 + n] = '\n';
    if (send(6 + n + 1) < 0)
        return FAIL_TX;
    printf("virtio_console ok: %u interrupts\n", dev.irqs);
    return 0;
}
