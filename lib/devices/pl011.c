/* SPDX-License-Identifier: Apache-2.0 */
/* An ARM PL011 UART (PrimeCell UART r1p5, ARM DDI 0183) as the amba-pl011
 * driver uses it, and the arm64 machine's MMIO devices put on a VM (the
 * PL011 and the exit device). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vmm/arm64.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/event.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "vmm_internal.h"

/* Registers (byte offsets). */
#define UARTDR    0x000
#define UARTRSR   0x004
#define UARTFR    0x018
#define UARTILPR  0x020
#define UARTIBRD  0x024
#define UARTFBRD  0x028
#define UARTLCR_H 0x02c
#define UARTCR    0x030
#define UARTIFLS  0x034
#define UARTIMSC  0x038
#define UARTRIS   0x03c
#define UARTMIS   0x040
#define UARTICR   0x044
#define UARTDMACR 0x048
#define UARTID    0xfe0 /* UARTPeriphID0-3, UARTPCellID0-3: one byte per word */

#define FR_RXFE 0x10 /* receive FIFO empty */
#define FR_RXFF 0x40 /* receive FIFO full */
#define FR_TXFE 0x80 /* transmit FIFO empty */

#define INT_RX  0x10
#define INT_TX  0x20
#define INT_RT  0x40
#define INT_ALL 0x7ff

#define RX_FIFO 16

/* Part 0x011, designer 0x41 (ARM), revision 3 (r1p5); the PrimeCell ID. */
static const uint8_t pl011_id[8] = {0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

struct vmm_pl011 {
    pthread_mutex_t lock;
    int out_fd;
    void (*set_irq)(void *opaque, bool level);
    void *irq_opaque;
    bool irq_level;
    struct vmm_log_limit out_warn;
    uint32_t ris, imsc, cr, lcr_h, ibrd, fbrd, ifls, ilpr, dmacr;
    uint8_t rx[RX_FIFO];
    unsigned rx_head, rx_count;

    int in_fd;                   /* -1: no input fd */
    bool in_eof;                 /* in_fd ended or failed: no more reads */
    struct vmm_event_loop *loop; /* on a VM: the loop watching in_fd */
    bool in_watched;             /* in_fd is in loop (else read as the guest polls) */
    bool in_paused;              /* watched, but the FIFO is full */
};

/* Called with the lock held. */
static void update_irq(struct vmm_pl011 *u)
{
    bool level = (u->ris & u->imsc) != 0;
    if (level != u->irq_level) {
        u->irq_level = level;
        if (u->set_irq)
            u->set_irq(u->irq_opaque, level);
    }
}

static void write_out(struct vmm_pl011 *u, uint8_t c)
{
    if (u->out_fd < 0)
        return;
    ssize_t n;
    do
        n = write(u->out_fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        vmm_log_limited(&u->out_warn, 4, "pl011: writing output fd %d: %s", u->out_fd,
                        vmm_strerror(-errno));
}

/* Level-triggered input would wake the loop forever while the FIFO is full:
 * pause the watch until the guest drains it (lock held). */
static void input_pause(struct vmm_pl011 *u)
{
    if (u->in_watched && !u->in_paused && vmm_event_loop_modify(u->loop, u->in_fd, 0) == 0)
        u->in_paused = true;
}

/* Read what in_fd has ready into the receive FIFO (lock held). Returns
 * true when in_fd ended and the loop should stop watching it. */
static bool input_fill(struct vmm_pl011 *u)
{
    if (u->in_fd < 0 || u->in_eof)
        return false;
    unsigned room = RX_FIFO - u->rx_count;
    if (room == 0) {
        input_pause(u);
        return false;
    }
    /* Only what is ready: the fd may be blocking, and the lock is held. */
    struct pollfd p = {.fd = u->in_fd, .events = POLLIN};
    int pr;
    do
        pr = poll(&p, 1, 0);
    while (pr < 0 && errno == EINTR);
    if (pr == 0)
        return false;
    uint8_t buf[RX_FIFO];
    ssize_t n = -1;
    if (pr > 0) {
        do
            n = read(u->in_fd, buf, room);
        while (n < 0 && errno == EINTR);
    }
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            u->rx[(u->rx_head + u->rx_count++) % RX_FIFO] = buf[i];
        u->ris |= INT_RX | INT_RT;
        update_irq(u);
        if (u->rx_count == RX_FIFO)
            input_pause(u);
        return false;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return false;
    /* End of input, or an error that will not go away (EIO on a hung-up
     * tty): stop reading either way. */
    if (n < 0)
        vmm_log_warn("pl011: reading input fd %d: %s; no more input", u->in_fd,
                     vmm_strerror(-errno));
    u->in_eof = true;
    bool was_watched = u->in_watched;
    u->in_watched = false;
    return was_watched;
}

/* The guest took a byte: resume a paused watch once half the FIFO is free
 * (so the loop reads in chunks), or read an unwatched fd (lock held). */
static void input_drained(struct vmm_pl011 *u)
{
    if (!u->in_watched) {
        if (u->rx_count == 0)
            (void)input_fill(u);
        return;
    }
    if (!u->in_paused || u->rx_count > RX_FIFO / 2)
        return;
    int r = vmm_event_loop_modify(u->loop, u->in_fd, EPOLLIN);
    if (r == 0)
        u->in_paused = false;
    else
        vmm_log_warn("pl011: cannot resume input fd %d: %s", u->in_fd, vmm_strerror(r));
}

static uint32_t reg_read(struct vmm_pl011 *u, uint64_t off)
{
    switch (off) {
    case UARTDR: {
        if (u->rx_count == 0)
            input_drained(u);
        if (u->rx_count == 0)
            return 0;
        uint8_t c = u->rx[u->rx_head];
        u->rx_head = (u->rx_head + 1) % RX_FIFO;
        if (--u->rx_count == 0)
            u->ris &= ~(uint32_t)(INT_RX | INT_RT);
        update_irq(u);
        input_drained(u);
        return c;
    }
    case UARTRSR:
        return 0;
    case UARTFR:
        if (u->rx_count == 0 && !u->in_watched)
            (void)input_fill(u);
        /* Output leaves at once: the transmit FIFO is always empty, never
         * busy. */
        return FR_TXFE | (u->rx_count == 0 ? FR_RXFE : 0) | (u->rx_count == RX_FIFO ? FR_RXFF : 0);
    case UARTILPR:
        return u->ilpr;
    case UARTIBRD:
        return u->ibrd;
    case UARTFBRD:
        return u->fbrd;
    case UARTLCR_H:
        return u->lcr_h;
    case UARTCR:
        return u->cr;
    case UARTIFLS:
        return u->ifls;
    case UARTIMSC:
        return u->imsc;
    case UARTRIS:
        return u->ris;
    case UARTMIS:
        return u->ris & u->imsc;
    case UARTDMACR:
        return u->dmacr;
    }
    if (off >= UARTID && off < UARTID + 4 * sizeof(pl011_id))
        return pl011_id[(off - UARTID) / 4];
    return 0;
}

static void reg_write(struct vmm_pl011 *u, uint64_t off, uint32_t v)
{
    switch (off) {
    case UARTDR:
        write_out(u, (uint8_t)v);
        /* The character left at once: the FIFO is below any trigger level. */
        u->ris |= INT_TX;
        break;
    case UARTRSR:
        break; /* clears errors; none are ever flagged */
    case UARTILPR:
        u->ilpr = v & 0xff;
        break;
    case UARTIBRD:
        u->ibrd = v & 0xffff;
        break;
    case UARTFBRD:
        u->fbrd = v & 0x3f;
        break;
    case UARTLCR_H:
        u->lcr_h = v & 0xff;
        break;
    case UARTCR:
        u->cr = v & 0xff87;
        break;
    case UARTIFLS:
        u->ifls = v & 0x3f;
        break;
    case UARTIMSC:
        u->imsc = v & INT_ALL;
        break;
    case UARTICR:
        u->ris &= ~(v & INT_ALL);
        break;
    case UARTDMACR:
        u->dmacr = v & 0x7;
        break;
    default:
        return; /* read-only or reserved */
    }
    update_irq(u);
}

static void pl011_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct vmm_pl011 *u = opaque;
    uint32_t v = 0;
    /* Registers are words; a byte or halfword access reads the low part of
     * an aligned register (as the driver's readb of the ID registers do). */
    if ((offset & 3) == 0) {
        pthread_mutex_lock(&u->lock);
        v = reg_read(u, offset);
        pthread_mutex_unlock(&u->lock);
    }
    for (uint32_t i = 0; i < len; i++)
        data[i] = i < 4 ? (uint8_t)(v >> (8 * i)) : 0;
}

static void pl011_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_pl011 *u = opaque;
    if ((offset & 3) != 0)
        return;
    uint32_t v = 0;
    for (uint32_t i = 0; i < len && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    pthread_mutex_lock(&u->lock);
    reg_write(u, offset, v);
    pthread_mutex_unlock(&u->lock);
}

static const struct vmm_bus_ops pl011_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = pl011_read,
    .write = pl011_write,
};

const struct vmm_bus_ops *vmm_pl011_bus_ops(void)
{
    return &pl011_ops;
}

int vmm_pl011_create(const struct vmm_pl011_config *cfg, struct vmm_pl011 **out)
{
    struct vmm_pl011_config c = {.size = sizeof(c), .out_fd = -1, .in_fd = -1};
    if (!out || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0) || c.out_fd < -1 ||
        (c.out_fd >= 0 && fcntl(c.out_fd, F_GETFD) < 0) || c.in_fd < -1 ||
        (c.in_fd >= 0 && fcntl(c.in_fd, F_GETFD) < 0))
        return -EINVAL;
    struct vmm_pl011 *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    pthread_mutex_init(&u->lock, NULL);
    u->out_fd = c.out_fd;
    u->in_fd = c.in_fd;
    u->set_irq = c.set_irq;
    u->irq_opaque = c.irq_opaque;
    /* Reset values (DDI 0183, 3.2): transmit and receive enabled, 8 bits
     * off; the driver programs the rest. */
    u->cr = 0x300;
    u->ifls = 0x12;
    *out = u;
    return 0;
}

void vmm_pl011_destroy(struct vmm_pl011 *uart)
{
    if (!uart)
        return;
    pthread_mutex_destroy(&uart->lock);
    free(uart);
}

size_t vmm_pl011_receive(struct vmm_pl011 *u, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t n = 0;
    pthread_mutex_lock(&u->lock);
    while (n < len && u->rx_count < RX_FIFO) {
        u->rx[(u->rx_head + u->rx_count) % RX_FIFO] = p[n++];
        u->rx_count++;
    }
    if (u->rx_count)
        u->ris |= INT_RX | INT_RT;
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return n;
}

/* ---- on a VM's MMIO bus ---- */

struct mmio_glue {
    struct vmm_vm *vm;
    struct vmm_log_limit irq_warn;
    uint64_t base;
    unsigned gsi;
    void *dev;
    void (*destroy)(void *dev);
};

static void glue_cleanup(void *opaque)
{
    struct mmio_glue *g = opaque;
    (void)vmm_bus_unregister(vmm_vm_mmio_bus(g->vm), g->base);
    g->destroy(g->dev);
    free(g);
}

/* Register dev at base for len bytes; the VM then owns it (and g). On
 * failure dev is destroyed. */
static int attach_mmio(struct vmm_vm *vm, const char *name, struct mmio_glue *g, uint64_t len,
                       const struct vmm_bus_ops *ops)
{
    int r = vmm_bus_register(vmm_vm_mmio_bus(vm), g->base, len, ops, g->dev);
    if (r < 0) {
        vmm_log_error("%s: cannot claim MMIO 0x%llx (+0x%llx): %s", name,
                      (unsigned long long)g->base, (unsigned long long)len, vmm_strerror(r));
        goto err;
    }
    r = vmm_vm_add_cleanup(vm, glue_cleanup, g);
    if (r == 0)
        return 0;
    (void)vmm_bus_unregister(vmm_vm_mmio_bus(vm), g->base);
err:
    g->destroy(g->dev);
    free(g);
    return r;
}

static void pl011_vm_irq(void *opaque, bool level)
{
    struct mmio_glue *g = opaque;
    int r = vmm_vm_set_irq(g->vm, g->gsi, level);
    if (r < 0)
        vmm_log_limited(&g->irq_warn, 4, "pl011: interrupt line %u: %s", g->gsi, vmm_strerror(r));
}

static void pl011_input_ready(void *opaque, int fd, uint32_t events)
{
    struct vmm_pl011 *u = opaque;
    (void)fd;
    (void)events;
    /* EPOLLHUP/EPOLLERR are settled by the read: data left in a hung-up
     * pipe is still delivered, and the end of input stops the watch. */
    pthread_mutex_lock(&u->lock);
    bool stop = input_fill(u);
    pthread_mutex_unlock(&u->lock);
    if (stop)
        vmm_event_loop_remove(u->loop, u->in_fd);
}

static void pl011_free(void *dev)
{
    struct vmm_pl011 *u = dev;
    pthread_mutex_lock(&u->lock);
    bool watched = u->in_watched;
    u->in_watched = false;
    pthread_mutex_unlock(&u->lock);
    if (watched)
        vmm_event_loop_remove(u->loop, u->in_fd);
    vmm_pl011_destroy(u);
}

int vmm_vm_add_pl011(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                     const struct vmm_pl011_config *cfg, struct vmm_pl011 **out)
{
    struct vmm_pl011_config c = {.size = sizeof(c), .out_fd = -1, .in_fd = -1};
    if (!vm || gsi >= VMM_IOAPIC_PINS || (cfg && VMM_ABI_COPY_IN(&c, cfg) < 0))
        return -EINVAL;
    struct mmio_glue *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    *g = (struct mmio_glue){.vm = vm, .base = base, .gsi = gsi, .destroy = pl011_free};
    c.set_irq = pl011_vm_irq;
    c.irq_opaque = g;
    struct vmm_pl011 *u;
    int r = vmm_pl011_create(&c, &u);
    if (r < 0) {
        free(g);
        return r;
    }
    g->dev = u;
    if (u->in_fd >= 0) {
        u->loop = vmm_vm_event_loop(vm);
        /* Set before add: the callback may run as soon as add returns. */
        u->in_watched = true;
        r = vmm_event_loop_add(u->loop, u->in_fd, EPOLLIN, pl011_input_ready, u);
        if (r < 0)
            u->in_watched = false;
        if (r < 0 && r != -EPERM) {
            vmm_log_error("pl011: cannot watch input fd %d: %s", u->in_fd, vmm_strerror(r));
            pl011_free(u);
            free(g);
            return r;
        }
        /* -EPERM: a regular file or /dev/null, which epoll refuses: read
         * as the guest polls the flag register. */
    }
    r = attach_mmio(vm, "pl011", g, VMM_ARM64_UART_SIZE, &pl011_ops);
    if (r == 0 && out)
        *out = u;
    return r;
}

static void exit_free(void *dev)
{
    vmm_exit_device_destroy(dev);
}

int vmm_vm_add_exit_device_mmio(struct vmm_vm *vm, uint64_t base)
{
    if (!vm)
        return -EINVAL;
    struct mmio_glue *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    *g = (struct mmio_glue){.vm = vm, .base = base, .destroy = exit_free};
    struct vmm_exit_device *dev;
    int r = vmm_exit_device_create(devices_vm_request_exit, vm, &dev);
    if (r < 0) {
        free(g);
        return r;
    }
    g->dev = dev;
    return attach_mmio(vm, "exit device", g, VMM_EXIT_DEVICE_PORTS, vmm_exit_device_bus_ops());
}
