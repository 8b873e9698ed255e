/* SPDX-License-Identifier: Apache-2.0 */
/* The guests' IDT: every exception reports itself on COM1 and exits with a
 * code naming the vector, instead of the triple fault an empty IDT gives. */
#include "guest.h"

#define KERNEL_CS      0x8    /* the boot GDT's code segment (vcpu.h) */
#define GATE_INTERRUPT 0x8e00 /* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint16_t flags; /* IST in bits 2:0, type/DPL/P in 15:8 */
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
};

struct idt_pointer {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

void idt_set_handler(unsigned vector, interrupt_handler handler)
{
    uint64_t a = (uint64_t)(uintptr_t)handler;
    struct idt_gate g = {
        .offset_low = (uint16_t)a,
        .selector = KERNEL_CS,
        .flags = GATE_INTERRUPT,
        .offset_mid = (uint16_t)(a >> 16),
        .offset_high = (uint32_t)(a >> 32),
    };
    idt[vector & 0xff] = g;
}

/* Not under the serial lock: the exception may have hit while it was held. */
static void report(unsigned vector, uint64_t error, const struct interrupt_frame *f)
{
    static const char hex[] = "0123456789abcdef";
    char msg[] = "guest: exception 0x.. error 0x................ rip 0x................\n";
    msg[19] = hex[(vector >> 4) & 0xf];
    msg[20] = hex[vector & 0xf];
    for (int i = 0; i < 16; i++) {
        msg[30 + i] = hex[(error >> (60 - 4 * i)) & 0xf];
        msg[53 + i] = hex[(f->rip >> (60 - 4 * i)) & 0xf];
    }
    for (const char *p = msg; *p; p++) {
        for (unsigned i = 0; i < 10000 && !(inb(COM1_LSR) & UART_LSR_THRE); i++)
            ;
        outb(COM1_THR, (uint8_t)*p);
    }
    guest_exit(GUEST_EXIT_EXCEPTION(vector));
}

#define EXC_NOERR(n)                                                                               \
    __attribute__((interrupt)) static void exc_##n(struct interrupt_frame *f)                      \
    {                                                                                              \
        report(n, 0, f);                                                                           \
    }
#define EXC_ERR(n)                                                                                 \
    __attribute__((interrupt)) static void exc_##n(struct interrupt_frame *f, unsigned long err)   \
    {                                                                                              \
        report(n, err, f);                                                                         \
    }

EXC_NOERR(0)
EXC_NOERR(1)
EXC_NOERR(2)
EXC_NOERR(3)
EXC_NOERR(4)
EXC_NOERR(5)
EXC_NOERR(6)
EXC_NOERR(7)
EXC_ERR(8)
EXC_NOERR(9)
EXC_ERR(10)
EXC_ERR(11)
EXC_ERR(12)
EXC_ERR(13)
EXC_ERR(14)
EXC_NOERR(15)
EXC_NOERR(16)
EXC_ERR(17)
EXC_NOERR(18)
EXC_NOERR(19)
EXC_NOERR(20)
EXC_ERR(21)

void idt_init(void)
{
    /* Handlers taking an error code have another type; the CPU, not C, calls them. */
    static const interrupt_handler exc[] = {
        exc_0,
        exc_1,
        exc_2,
        exc_3,
        exc_4,
        exc_5,
        exc_6,
        exc_7,
        (interrupt_handler)(void *)exc_8,
        exc_9,
        (interrupt_handler)(void *)exc_10,
        (interrupt_handler)(void *)exc_11,
        (interrupt_handler)(void *)exc_12,
        (interrupt_handler)(void *)exc_13,
        (interrupt_handler)(void *)exc_14,
        exc_15,
        exc_16,
        (interrupt_handler)(void *)exc_17,
        exc_18,
        exc_19,
        exc_20,
        (interrupt_handler)(void *)exc_21,
    };
    for (unsigned v = 0; v < sizeof(exc) / sizeof(exc[0]); v++)
        idt_set_handler(v, exc[v]);

    struct idt_pointer p = {.limit = sizeof(idt) - 1, .base = (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(p));
}
