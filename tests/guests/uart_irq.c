/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The 16550's interrupts through the IOAPIC (IRQ 4 = pin 4) and the LAPIC:
 * THR-empty interrupts edge-triggered, received-data interrupts (the host
 * feeds "ping\n"), then THR-empty interrupts level-triggered, where each
 * next interrupt only arrives if the previous EOI reached the IOAPIC.
 * A periodic LAPIC timer bounds every wait.
 */
#include "guest.h"

#define UART_PIN     4
#define UART_VECTOR  0x24
#define TIMER_VECTOR 0x30
#define SPURIOUS_VEC 0xff

#define IER_RDA  0x01
#define IER_THRE 0x02
#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT2 0x08 /* gates the UART's IRQ line on PC hardware */

#define IIR_ID(iir) ((iir)&0x0f)
#define IIR_THRE    0x2
#define IIR_RDA     0x4
#define IIR_TIMEOUT 0xc

/* Periodic watchdog: 10^7 ticks / 16 at KVM's 1 GHz APIC bus = 160 ms. */
#define TIMER_DIV_16 0x3
#define TIMER_COUNT  10000000u
/* hlt wake-ups allowed per wait (UART interrupts and timer ticks together). */
#define MAX_WAKEUPS 60

#define LEVEL_ROUNDS 3

/* Exit codes. */
enum {
    FAIL_THRE_EDGE = 1,
    FAIL_RDA = 2,
    FAIL_RX_EMPTY = 3,
    FAIL_RX_OVERFLOW = 4,
    FAIL_THRE_LEVEL = 5,
    FAIL_BAD_REDIR = 6,
};

static volatile unsigned thre_seen, rda_seen, uart_irqs, timer_ticks;
static volatile uint8_t last_iir;

__attribute__((interrupt)) static void uart_handler(struct interrupt_frame *f)
{
    (void)f;
    /* Reading IIR also acknowledges a THR-empty interrupt. */
    uint8_t iir = inb(COM1_IIR);
    last_iir = iir;
    uart_irqs++;
    if (IIR_ID(iir) == IIR_THRE)
        thre_seen++;
    else if (IIR_ID(iir) == IIR_RDA || IIR_ID(iir) == IIR_TIMEOUT)
        rda_seen++;
    lapic_eoi();
}

__attribute__((interrupt)) static void timer_handler(struct interrupt_frame *f)
{
    (void)f;
    timer_ticks++;
    lapic_eoi();
}

/* A spurious interrupt takes no EOI. */
__attribute__((interrupt)) static void spurious_handler(struct interrupt_frame *f)
{
    (void)f;
}

/* Sleep until *counter passes target; false after MAX_WAKEUPS wake-ups. */
static bool wait_for(volatile unsigned *counter, unsigned target)
{
    for (unsigned wakeups = 0; *counter < target; wakeups++) {
        if (wakeups == MAX_WAKEUPS)
            return false;
        cpu_sti_hlt_cli();
    }
    return true;
}

static void fail(int code, const char *what)
{
    outb(COM1_IER, 0);
    printf("uart_irq: %s: gave up after %u hlt wake-ups (uart irqs %u, last IIR %x, timer ticks "
           "%u)\n",
           what, MAX_WAKEUPS, uart_irqs, last_iir, timer_ticks);
    guest_exit(code);
}

static void route_uart(bool level)
{
    uint32_t low = UART_VECTOR | (level ? IOAPIC_REDIR_LEVEL : 0); /* fixed, physical, high */
    ioapic_set_redir(UART_PIN, low, 0);
    uint32_t back = ioapic_get_redir_low(UART_PIN);
    /* bits 12 (delivery status) and 14 (remote IRR) are the IOAPIC's own */
    if ((back & ~((1u << 12) | (1u << 14))) != low) {
        printf("uart_irq: redirection entry reads back %x, wrote %x\n", back, low);
        guest_exit(FAIL_BAD_REDIR);
    }
}

/* Each round re-arms THR-empty by enabling it with THR already empty. */
static void thre_rounds(unsigned rounds, int code, const char *what)
{
    for (unsigned r = 0; r < rounds; r++) {
        unsigned target = thre_seen + 1;
        outb(COM1_IER, IER_THRE);
        if (!wait_for(&thre_seen, target))
            fail(code, what);
        outb(COM1_IER, 0);
    }
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();

    idt_set_handler(UART_VECTOR, uart_handler);
    idt_set_handler(TIMER_VECTOR, timer_handler);
    idt_set_handler(SPURIOUS_VEC, spurious_handler);
    pic_mask_all();
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_TIMER_DIV, TIMER_DIV_16);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, TIMER_COUNT);

    outb(COM1_IER, 0);
    outb(COM1_MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    (void)inb(COM1_IIR);

    /* Phase 1: THR empty, edge-triggered. */
    route_uart(false);
    thre_rounds(2, FAIL_THRE_EDGE, "THR-empty (edge)");

    /* Phase 2: received data. Bytes may arrive in pieces: collect until '\n'. */
    puts("uart_irq: waiting for input\n");
    char rx[64];
    unsigned len = 0;
    bool line_done = false;
    outb(COM1_IER, IER_RDA);
    while (!line_done) {
        if (!wait_for(&rda_seen, rda_seen + 1))
            fail(FAIL_RDA, "received data");
        while (inb(COM1_LSR) & UART_LSR_DR) {
            char c = (char)inb(COM1_RBR);
            if (c == '\n') {
                line_done = true;
                break;
            }
            if (len == sizeof(rx)) {
                outb(COM1_IER, 0);
                puts("uart_irq: input line too long\n");
                guest_exit(FAIL_RX_OVERFLOW);
            }
            rx[len++] = c;
        }
    }
    outb(COM1_IER, 0);
    if (len == 0) {
        puts("uart_irq: empty input line\n");
        return FAIL_RX_EMPTY;
    }
    puts("rx: ");
    serial_write(rx, len);
    puts("\n");

    /* Phase 3: THR empty, level-triggered: round n + 1 needs round n's EOI to
     * have cleared the entry's remote IRR. */
    route_uart(true);
    thre_rounds(LEVEL_ROUNDS, FAIL_THRE_LEVEL, "THR-empty (level)");

    ioapic_set_redir(UART_PIN, IOAPIC_REDIR_MASKED, 0);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_TIMER_INIT, 0);
    printf("uart_irq ok (%u uart interrupts)\n", uart_irqs);
    return 0;
}
