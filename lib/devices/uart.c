/* SPDX-License-Identifier: Apache-2.0 */
/* The 16550A UART: register model, receive FIFO, interrupt line, host fd
 * back end, and its VM glue (PIO bus, GSI, event loop). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vmm/bus.h>
#include <vmm/devices.h>
#include <vmm/event.h>
#include <vmm/vm.h>

#include "snapshot/snapshot_internal.h"
#include "vmm_internal.h"

#define UART_NPORTS 8
/* Larger than a real 16550A's 16 bytes: the guest cannot tell (it only sees
 * DR and the trigger level), and it halves the event-loop wake-ups per byte
 * of pasted input. */
#define UART_RX_FIFO 64
/* How long a vCPU waits for a full output fd before the UART starts dropping
 * bytes; afterwards it does not wait until the fd drains. */
#define UART_TX_STALL_MS 500

/* Register offsets. */
#define UART_RBR 0 /* read; THR on write; DLL with DLAB */
#define UART_IER 1 /* DLM with DLAB */
#define UART_IIR 2 /* read; FCR on write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08
#define IER_MASK 0x0f

#define IIR_NO_INT       0x01
#define IIR_MSI          0x00
#define IIR_THRI         0x02
#define IIR_RDI          0x04
#define IIR_RLSI         0x06
#define IIR_RX_TIMEOUT   0x0c
#define IIR_FIFO_ENABLED 0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_TRIGGER  0xc0

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

/*
 * Locking: lock guards the registers, the FIFO and the input-fd state; it is
 * taken by vCPU threads (bus callbacks) and the event-loop thread
 * (poll_input). set_irq is called with lock held, so the levels it reports
 * reach the line in the order the state changed; it must not call back into
 * the UART (vmm_vm_set_irq does not). The event loop's lock nests inside
 * lock (modify for pausing input); vmm_event_loop_remove, which may wait for
 * our own callback, is only called without lock. tx_lock serialises writes
 * to out_fd, which may wait, outside lock so input keeps flowing meanwhile.
 */
struct vmm_uart {
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    bool fifo_enabled;
    uint8_t rx_trigger; /* bytes; 1, 4, 8 or 14 */
    uint8_t lsr_err;    /* sticky LSR error bits (OE), cleared by reading LSR */
    uint8_t msr_delta;  /* MSR bits 3:0, cleared by reading MSR */
    bool thr_ipending;  /* THRE interrupt pending until IIR read reports it */
    bool irq_level;
    uint8_t rx[UART_RX_FIFO];
    unsigned rx_head, rx_count;
    uint64_t rx_overruns;

    void (*set_irq)(void *opaque, bool level);
    void *irq_opaque;

    int in_fd;
    bool in_lazy; /* not pollable: read on the vCPU thread as the guest drains */
    bool in_eof;
    struct vmm_event_loop *loop; /* VM UART: the loop watching in_fd */
    bool in_watched;
    bool in_paused;

    pthread_mutex_t tx_lock;
    int out_fd;
    enum vmm_out_kind out_kind;
    bool tx_stalled; /* under tx_lock */
    bool tx_failing; /* under tx_lock: a drop was logged, not yet recovered */
    uint64_t tx_dropped;

    /* VM glue. */
    struct vmm_vm *vm;
    unsigned gsi;
    uint16_t port;
    bool irq_error_logged;
};

/* ---- register model (lock held) ---- */

static const uint8_t rx_trigger_bytes[4] = {1, 4, 8, 14};

static void rx_clear(struct vmm_uart *u)
{
    u->rx_head = 0;
    u->rx_count = 0;
}

static bool rx_push(struct vmm_uart *u, uint8_t byte)
{
    if (u->rx_count == UART_RX_FIFO) {
        u->lsr_err |= LSR_OE;
        u->rx_overruns++;
        return false;
    }
    u->rx[(u->rx_head + u->rx_count) % UART_RX_FIFO] = byte;
    u->rx_count++;
    return true;
}

static uint8_t rx_pop(struct vmm_uart *u)
{
    /* An empty FIFO reads as 0; real chips return stale data. */
    if (u->rx_count == 0)
        return 0;
    uint8_t byte = u->rx[u->rx_head];
    u->rx_head = (u->rx_head + 1) % UART_RX_FIFO;
    u->rx_count--;
    return byte;
}

/* The modem-status input lines: wired to MCR in loopback, otherwise a
 * permanently connected, ready peer (carrier, DSR and CTS up). */
static uint8_t msr_lines(const struct vmm_uart *u)
{
    if (!(u->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t v = 0;
    if (u->mcr & MCR_RTS)
        v |= MSR_CTS;
    if (u->mcr & MCR_DTR)
        v |= MSR_DSR;
    if (u->mcr & MCR_OUT1)
        v |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        v |= MSR_DCD;
    return v;
}

static uint8_t lsr_value(const struct vmm_uart *u)
{
    /* Output is written out at once, so the transmitter is always empty.
     * Bit 7 (error in FIFO) only counts parity/framing/break: never here. */
    return (u->rx_count ? LSR_DR : 0) | u->lsr_err | LSR_THRE | LSR_TEMT;
}

/* The highest-priority pending interrupt, as IIR bits 3:0. */
static uint8_t iir_id(const struct vmm_uart *u)
{
    if ((u->ier & IER_RLSI) && u->lsr_err)
        return IIR_RLSI;
    if ((u->ier & IER_RDI) && u->rx_count) {
        /* Below the trigger level the chip reports data by the character
         * time-out instead; Linux treats both alike. */
        if (u->fifo_enabled && u->rx_count < u->rx_trigger)
            return IIR_RX_TIMEOUT;
        return IIR_RDI;
    }
    if ((u->ier & IER_THRI) && u->thr_ipending)
        return IIR_THRI;
    if ((u->ier & IER_MSI) && u->msr_delta)
        return IIR_MSI;
    return IIR_NO_INT;
}

/* On PCs the UART's interrupt pin reaches the PIC/IOAPIC only through a
 * buffer enabled by MCR.OUT2, and Linux's 8250 driver sets OUT2 for that
 * reason: an interrupt is visible only with OUT2 set. */
static void update_irq(struct vmm_uart *u)
{
    bool level = iir_id(u) != IIR_NO_INT && (u->mcr & MCR_OUT2);
    if (level == u->irq_level)
        return;
    u->irq_level = level;
    if (u->set_irq)
        u->set_irq(u->irq_opaque, level);
}

static void input_pause(struct vmm_uart *u)
{
    if (!u->in_watched || u->in_paused)
        return;
    if (vmm_event_loop_modify(u->loop, u->in_fd, 0) == 0)
        u->in_paused = true;
}

static void input_resume(struct vmm_uart *u)
{
    /* Hysteresis: wait for half the FIFO to drain, so the loop reads in
     * chunks rather than waking for every byte the guest takes. */
    if (!u->in_watched || !u->in_paused || u->rx_count > UART_RX_FIFO / 2)
        return;
    int r = vmm_event_loop_modify(u->loop, u->in_fd, EPOLLIN);
    if (r == 0)
        u->in_paused = false;
    else
        vmm_log_warn("uart: cannot resume input fd %d: %s", u->in_fd, vmm_strerror(r));
}

/* Read from a non-pollable in_fd into an empty FIFO (vCPU thread). */
static void input_lazy_fill(struct vmm_uart *u)
{
    if (!u->in_lazy || u->in_eof || u->in_fd < 0 || u->rx_count)
        return;
    ssize_t n;
    do {
        n = read(u->in_fd, u->rx, UART_RX_FIFO);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        u->rx_head = 0;
        u->rx_count = (unsigned)n;
        return;
    }
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0)
        vmm_log_warn("uart: reading input fd %d: %s; no more input", u->in_fd,
                     vmm_strerror(-errno));
    u->in_eof = true;
}

static uint8_t reg_read(struct vmm_uart *u, unsigned off)
{
    uint8_t v = 0;
    switch (off) {
    case UART_RBR:
        if (u->lcr & LCR_DLAB)
            return u->dll;
        input_lazy_fill(u);
        v = rx_pop(u);
        input_resume(u);
        break;
    case UART_IER:
        return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
    case UART_IIR: {
        uint8_t id = iir_id(u);
        /* Reading IIR while it names THRE is what acknowledges THRE. */
        if (id == IIR_THRI)
            u->thr_ipending = false;
        v = id | (u->fifo_enabled ? IIR_FIFO_ENABLED : 0);
        break;
    }
    case UART_LCR:
        return u->lcr;
    case UART_MCR:
        return u->mcr;
    case UART_LSR:
        input_lazy_fill(u);
        v = lsr_value(u);
        u->lsr_err = 0;
        break;
    case UART_MSR:
        v = msr_lines(u) | u->msr_delta;
        u->msr_delta = 0;
        break;
    case UART_SCR:
        return u->scr;
    }
    update_irq(u);
    return v;
}

/* Returns true when val must be transmitted (after dropping lock). */
static bool reg_write(struct vmm_uart *u, unsigned off, uint8_t val)
{
    bool transmit = false;
    switch (off) {
    case UART_RBR:
        if (u->lcr & LCR_DLAB) {
            u->dll = val;
            return false;
        }
        if (u->mcr & MCR_LOOP)
            rx_push(u, val);
        else
            transmit = true;
        /* The holding register empties at once, so THRE is pending again. */
        u->thr_ipending = true;
        break;
    case UART_IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = val;
            return false;
        }
        val &= IER_MASK;
        /* Enabling THRI with the holder empty raises THRE right away; Linux
         * checks this at start-up (UART_BUG_THRE / UART_BUG_TXEN). */
        if ((val & IER_THRI) && !(u->ier & IER_THRI))
            u->thr_ipending = true;
        u->ier = val;
        /* A driver that enables receive interrupts wants input: fetch some
         * from a non-pollable source, which nothing else would wake. */
        if (val & IER_RDI)
            input_lazy_fill(u);
        break;
    case UART_IIR: { /* FCR */
        bool enable = val & FCR_ENABLE;
        if (enable != u->fifo_enabled)
            rx_clear(u);
        u->fifo_enabled = enable;
        /* The other FCR bits only take effect with the FIFO enable bit. */
        if (enable) {
            if (val & FCR_CLEAR_RX)
                rx_clear(u);
            u->rx_trigger = rx_trigger_bytes[(val & FCR_TRIGGER) >> 6];
        }
        input_resume(u);
        break;
    }
    case UART_LCR:
        u->lcr = val;
        return false;
    case UART_MCR: {
        uint8_t before = msr_lines(u);
        u->mcr = val & MCR_MASK;
        uint8_t after = msr_lines(u);
        uint8_t changed = before ^ after;
        if (changed & MSR_CTS)
            u->msr_delta |= MSR_DCTS;
        if (changed & MSR_DSR)
            u->msr_delta |= MSR_DDSR;
        if (changed & MSR_DCD)
            u->msr_delta |= MSR_DDCD;
        if ((before & MSR_RI) && !(after & MSR_RI))
            u->msr_delta |= MSR_TERI;
        break;
    }
    case UART_LSR:
    case UART_MSR:
        return false; /* factory test writes: ignored */
    case UART_SCR:
        u->scr = val;
        return false;
    }
    update_irq(u);
    return transmit;
}

/* ---- output ---- */

/* Wait (bounded) until out_fd takes a byte. 0, -EAGAIN (stalled) or -errno. */
static int out_wait_writable(struct vmm_uart *u)
{
    struct pollfd p = {.fd = u->out_fd, .events = POLLOUT};
    int timeout = u->tx_stalled ? 0 : UART_TX_STALL_MS;
    int r = poll(&p, 1, timeout);
    /* A signal is most likely a kick (stop/pause) of this vCPU: answer it
     * rather than wait on; the byte is dropped, the fd is not marked stalled. */
    if (r < 0 && errno == EINTR)
        return -EAGAIN;
    if (r < 0)
        return -errno;
    if (r == 0) {
        u->tx_stalled = true;
        return -EAGAIN;
    }
    if (p.revents & POLLNVAL)
        return -EBADF;
    /* POLLERR/POLLHUP: let the write report why. */
    return 0;
}

static int out_write_byte(struct vmm_uart *u, uint8_t byte)
{
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    int r;
    if (u->out_kind == VMM_OUT_NONE)
        return 0;
    /* Blocking fds are the caller's; we may not make them non-blocking, so
     * poll first: a pipe or tty that polls writable takes one byte. */
    if (vmm_out_needs_poll(u->out_kind) && (r = out_wait_writable(u)) < 0)
        return r;
    long n = vmm_out_writev(u->out_fd, u->out_kind, &iov, 1);
    if (n < 0 && u->out_kind == VMM_OUT_SOCKET && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        /* A full socket: wait (bounded) for room, then once more. */
        if ((r = out_wait_writable(u)) < 0)
            return r;
        n = vmm_out_writev(u->out_fd, u->out_kind, &iov, 1);
    }
    if (n < 0)
        return -errno;
    return n == 1 ? 0 : -EIO;
}

static void uart_transmit(struct vmm_uart *u, uint8_t byte)
{
    if (u->out_kind == VMM_OUT_NONE)
        return;
    pthread_mutex_lock(&u->tx_lock);
    int r = out_write_byte(u, byte);
    if (r == 0) {
        u->tx_stalled = false;
        if (u->tx_failing)
            vmm_log_info("uart: output fd %d writable again (%llu bytes dropped so far)", u->out_fd,
                         (unsigned long long)u->tx_dropped);
        u->tx_failing = false;
    } else {
        /* The guest never sees output errors: the byte is dropped. */
        u->tx_dropped++;
        if (!u->tx_failing)
            vmm_log_warn("uart: dropping output, fd %d: %s", u->out_fd, vmm_strerror(r));
        u->tx_failing = true;
    }
    pthread_mutex_unlock(&u->tx_lock);
}

/* ---- bus callbacks ---- */

/* A wider access acts like the ISA bus splitting it into byte accesses to
 * consecutive ports; bytes past the 8 registers read as 0xff. */
static void uart_bus_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct vmm_uart *u = opaque;
    pthread_mutex_lock(&u->lock);
    for (uint32_t i = 0; i < len; i++) {
        if (offset < UART_NPORTS && i < UART_NPORTS - offset)
            data[i] = reg_read(u, (unsigned)offset + i);
        else
            data[i] = 0xff;
    }
    pthread_mutex_unlock(&u->lock);
}

static void uart_bus_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct vmm_uart *u = opaque;
    for (uint32_t i = 0; i < len; i++) {
        if (offset >= UART_NPORTS || i >= UART_NPORTS - offset)
            break;
        pthread_mutex_lock(&u->lock);
        bool transmit = reg_write(u, (unsigned)offset + i, data[i]);
        pthread_mutex_unlock(&u->lock);
        if (transmit)
            uart_transmit(u, data[i]);
    }
}

static const struct vmm_bus_ops uart_ops = {
    .size = sizeof(struct vmm_bus_ops),
    .read = uart_bus_read,
    .write = uart_bus_write,
};

const struct vmm_bus_ops *vmm_uart_bus_ops(void)
{
    return &uart_ops;
}

/* ---- create / destroy ---- */

static bool fd_is_valid(int fd)
{
    return fcntl(fd, F_GETFL) >= 0;
}

int vmm_uart_create(const struct vmm_uart_config *cfg, struct vmm_uart **out)
{
    if (!out)
        return -EINVAL;
    struct vmm_uart_config c = {.size = sizeof(c), .out_fd = -1, .in_fd = -1};
    if (cfg && VMM_ABI_COPY_OVER(&c, cfg) < 0)
        return -EINVAL;
    if (c.out_fd < -1 || c.in_fd < -1 || (c.out_fd >= 0 && !fd_is_valid(c.out_fd)) ||
        (c.in_fd >= 0 && !fd_is_valid(c.in_fd)))
        return -EINVAL;
    struct vmm_uart *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    int r = pthread_mutex_init(&u->lock, NULL);
    if (r) {
        free(u);
        return -r;
    }
    r = pthread_mutex_init(&u->tx_lock, NULL);
    if (r) {
        pthread_mutex_destroy(&u->lock);
        free(u);
        return -r;
    }
    u->rx_trigger = 1;
    u->set_irq = c.set_irq;
    u->irq_opaque = c.irq_opaque;
    u->out_fd = c.out_fd;
    u->out_kind = vmm_out_classify(c.out_fd);
    u->in_fd = c.in_fd;
    if (c.in_fd >= 0) {
        struct stat st;
        u->in_lazy = fstat(c.in_fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
    }
    *out = u;
    return 0;
}

void vmm_uart_destroy(struct vmm_uart *uart)
{
    if (!uart)
        return;
    if (uart->tx_dropped || uart->rx_overruns)
        vmm_log_debug("uart: %llu output bytes dropped, %llu input overruns",
                      (unsigned long long)uart->tx_dropped, (unsigned long long)uart->rx_overruns);
    pthread_mutex_destroy(&uart->tx_lock);
    pthread_mutex_destroy(&uart->lock);
    free(uart);
}

/* ---- input ---- */

size_t vmm_uart_receive(struct vmm_uart *uart, const void *buf, size_t len)
{
    if (!uart || !buf)
        return 0;
    const uint8_t *p = buf;
    size_t n = 0;
    pthread_mutex_lock(&uart->lock);
    /* What does not fit is lost on a real line: that is an overrun. */
    while (n < len && rx_push(uart, p[n]))
        n++;
    update_irq(uart);
    pthread_mutex_unlock(&uart->lock);
    return n;
}

int vmm_uart_poll_input(struct vmm_uart *uart)
{
    if (!uart)
        return -EINVAL;
    int ret = 0;
    bool stop_watching = false;
    pthread_mutex_lock(&uart->lock);
    if (uart->in_fd < 0 || uart->in_eof)
        goto out;
    unsigned room = UART_RX_FIFO - uart->rx_count;
    if (room == 0) {
        /* Level-triggered input would wake the loop forever: pause it until
         * the guest drains the FIFO. */
        input_pause(uart);
        goto out;
    }
    if (!uart->in_lazy) {
        /* Only what is ready: the fd may be blocking, and lock is held. */
        struct pollfd p = {.fd = uart->in_fd, .events = POLLIN};
        int pr;
        do {
            pr = poll(&p, 1, 0);
        } while (pr < 0 && errno == EINTR);
        if (pr == 0)
            goto out;
        if (pr < 0) {
            ret = -errno;
            goto out;
        }
    }
    uint8_t buf[UART_RX_FIFO];
    ssize_t n;
    do {
        n = read(uart->in_fd, buf, room);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            rx_push(uart, buf[i]);
        ret = (int)n;
        if (uart->rx_count == UART_RX_FIFO)
            input_pause(uart);
        update_irq(uart);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ret = 0;
    } else {
        /* End of input, or an error that will not go away (EIO on a hung-up
         * tty, EBADF): stop reading either way. */
        if (n < 0) {
            ret = -errno;
            vmm_log_warn("uart: reading input fd %d: %s; no more input", uart->in_fd,
                         vmm_strerror(ret));
        }
        uart->in_eof = true;
        stop_watching = uart->in_watched;
        uart->in_watched = false;
        uart->in_paused = false;
    }
out:
    pthread_mutex_unlock(&uart->lock);
    if (stop_watching)
        vmm_event_loop_remove(uart->loop, uart->in_fd);
    return ret;
}

/* ---- snapshots: the registers, the interrupt state and the receive FIFO ---- */

/* The saved registers, in a fixed layout. */
struct uart_image {
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    uint8_t fifo_enabled, rx_trigger, lsr_err, msr_delta, thr_ipending, irq_level;
    uint8_t rx_head, rx_count, pad[2];
    uint8_t rx[UART_RX_FIFO];
};

static int uart_freeze(void *opaque)
{
    struct vmm_uart *u = opaque;
    pthread_mutex_lock(&u->lock);
    return 0;
}

static void uart_thaw(void *opaque)
{
    struct vmm_uart *u = opaque;
    pthread_mutex_unlock(&u->lock);
}

static int uart_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vmm_uart *u = opaque;
    struct uart_image im = {
        .ier = u->ier,
        .lcr = u->lcr,
        .mcr = u->mcr,
        .scr = u->scr,
        .dll = u->dll,
        .dlm = u->dlm,
        .fifo_enabled = u->fifo_enabled,
        .rx_trigger = u->rx_trigger,
        .lsr_err = u->lsr_err,
        .msr_delta = u->msr_delta,
        .thr_ipending = u->thr_ipending,
        .irq_level = u->irq_level,
        .rx_head = (uint8_t)u->rx_head,
        .rx_count = (uint8_t)u->rx_count,
    };
    memcpy(im.rx, u->rx, sizeof(im.rx));
    snap_put(w, &im, sizeof(im));
    return 0;
}

/* The line level is restored with the interrupt controller, so it is only
 * taken over here, not driven again. */
static int uart_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vmm_uart *u = opaque;
    struct uart_image im;
    if (snap_get(r, &im, sizeof(im)) < 0 || snap_done(r) < 0 || im.rx_head >= UART_RX_FIFO ||
        im.rx_count > UART_RX_FIFO ||
        (im.rx_trigger != 1 && im.rx_trigger != 4 && im.rx_trigger != 8 && im.rx_trigger != 14) ||
        (im.ier & ~IER_MASK) || (im.mcr & ~MCR_MASK) || (im.msr_delta & 0xf0) ||
        im.fifo_enabled > 1 || im.thr_ipending > 1 || im.irq_level > 1) {
        vmm_log_error("restore: malformed UART state");
        return -EBADMSG;
    }
    pthread_mutex_lock(&u->lock);
    u->ier = im.ier;
    u->lcr = im.lcr;
    u->mcr = im.mcr;
    u->scr = im.scr;
    u->dll = im.dll;
    u->dlm = im.dlm;
    u->fifo_enabled = im.fifo_enabled;
    u->rx_trigger = im.rx_trigger;
    u->lsr_err = im.lsr_err & LSR_OE;
    u->msr_delta = im.msr_delta;
    u->thr_ipending = im.thr_ipending;
    u->irq_level = im.irq_level;
    u->rx_head = im.rx_head;
    u->rx_count = im.rx_count;
    memcpy(u->rx, im.rx, sizeof(u->rx));
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static const struct vmm_snap_part_ops uart_snap = {
    .name = "UART",
    .tag = SNAP_TAG_UART,
    .freeze = uart_freeze,
    .thaw = uart_thaw,
    .save = uart_save,
    .restore = uart_restore,
};

/* ---- VM glue ---- */

static void uart_vm_set_irq(void *opaque, bool level)
{
    struct vmm_uart *u = opaque;
    int r = vmm_vm_set_irq(u->vm, u->gsi, level);
    /* Called with u->lock held, which also guards irq_error_logged. */
    if (r < 0 && !u->irq_error_logged) {
        vmm_log_error("uart at 0x%x: cannot set gsi %u: %s", u->port, u->gsi, vmm_strerror(r));
        u->irq_error_logged = true;
    }
}

static void uart_input_ready(void *opaque, int fd, uint32_t events)
{
    /* EPOLLHUP/EPOLLERR are settled by the read: data left in a hung-up pipe
     * is still delivered, and read() == 0 or an error stops the watch. */
    (void)vmm_uart_poll_input(opaque);
}

static void uart_vm_cleanup(void *opaque)
{
    struct vmm_uart *u = opaque;
    pthread_mutex_lock(&u->lock);
    bool watched = u->in_watched;
    u->in_watched = false;
    pthread_mutex_unlock(&u->lock);
    if (watched)
        vmm_event_loop_remove(u->loop, u->in_fd);
    vmm_bus_unregister(vmm_vm_pio_bus(u->vm), u->port);
    vmm_uart_destroy(u);
}

int vmm_vm_add_uart(struct vmm_vm *vm, uint16_t port, unsigned gsi,
                    const struct vmm_uart_config *cfg, struct vmm_uart **out)
{
    if (!vm || gsi >= VMM_IOAPIC_PINS || (unsigned)port + UART_NPORTS > 0x10000)
        return -EINVAL;
#if defined(__aarch64__)
    vmm_log_error("uart: port I/O devices do not exist on arm64 (vmm_vm_add_pl011)");
    return -ENOTSUP;
#endif
    struct vmm_uart_config c = {.size = sizeof(c), .out_fd = -1, .in_fd = -1};
    if (cfg && VMM_ABI_COPY_OVER(&c, cfg) < 0)
        return -EINVAL;
    c.size = sizeof(c);
    /* The VM drives the line; a caller's set_irq has no place here. */
    c.set_irq = NULL;
    c.irq_opaque = NULL;
    struct vmm_uart *u;
    int r = vmm_uart_create(&c, &u);
    if (r < 0)
        return r;
    u->vm = vm;
    u->gsi = gsi;
    u->port = port;
    u->set_irq = uart_vm_set_irq;
    u->irq_opaque = u;

    r = vmm_bus_register(vmm_vm_pio_bus(vm), port, UART_NPORTS, &uart_ops, u);
    if (r < 0) {
        vmm_log_error("uart: cannot claim ports 0x%x-0x%x: %s", port, port + UART_NPORTS - 1,
                      vmm_strerror(r));
        goto err_destroy;
    }
    if (u->in_fd >= 0 && !u->in_lazy) {
        u->loop = vmm_vm_event_loop(vm);
        /* Set before add: the callback may run as soon as add returns. */
        u->in_watched = true;
        r = vmm_event_loop_add(u->loop, u->in_fd, EPOLLIN, uart_input_ready, u);
        if (r == -EPERM) {
            /* /dev/null and the like: epoll refuses them, read lazily. */
            u->in_watched = false;
            u->in_lazy = true;
        } else if (r < 0) {
            u->in_watched = false;
            vmm_log_error("uart: cannot watch input fd %d: %s", u->in_fd, vmm_strerror(r));
            goto err_unregister;
        }
    }
    r = vmm_snap_register(vm, &uart_snap, port, u);
    if (r < 0)
        goto err_unwatch;
    r = vmm_vm_add_cleanup(vm, uart_vm_cleanup, u);
    if (r < 0)
        goto err_unsnap;
    if (out)
        *out = u;
    return 0;

err_unsnap:
    vmm_snap_unregister(vm, SNAP_TAG_UART, port);
err_unwatch:
    pthread_mutex_lock(&u->lock);
    bool watched = u->in_watched;
    u->in_watched = false;
    pthread_mutex_unlock(&u->lock);
    if (watched)
        vmm_event_loop_remove(u->loop, u->in_fd);
err_unregister:
    vmm_bus_unregister(vmm_vm_pio_bus(vm), port);
err_destroy:
    vmm_uart_destroy(u);
    return r;
}
