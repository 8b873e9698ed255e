/* SPDX-License-Identifier: Apache-2.0 */
/* The freestanding runtime of the test guests: port and MMIO access, COM1
 * output, exit, a spinlock, the IDT, and LAPIC/IOAPIC helpers. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Each guest program defines this; cpu < GUEST_MAX_CPUS. Its return value is
 * the exit code (only the low 8 bits reach the host). */
int guest_main(unsigned cpu, unsigned ncpus);

/* ---- port I/O ---- */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- MMIO: one access of exactly the named width ---- */

static inline uint8_t mmio_read8(uint64_t addr)
{
    return *(volatile uint8_t *)addr;
}
static inline uint16_t mmio_read16(uint64_t addr)
{
    return *(volatile uint16_t *)addr;
}
static inline uint32_t mmio_read32(uint64_t addr)
{
    return *(volatile uint32_t *)addr;
}
static inline uint64_t mmio_read64(uint64_t addr)
{
    return *(volatile uint64_t *)addr;
}
static inline void mmio_write8(uint64_t addr, uint8_t v)
{
    *(volatile uint8_t *)addr = v;
}
static inline void mmio_write16(uint64_t addr, uint16_t v)
{
    *(volatile uint16_t *)addr = v;
}
static inline void mmio_write32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)addr = v;
}
static inline void mmio_write64(uint64_t addr, uint64_t v)
{
    *(volatile uint64_t *)addr = v;
}

/* ---- CPU control ---- */

static inline void cpu_pause(void)
{
    __asm__ volatile("pause" ::: "memory");
}
static inline void cpu_cli(void)
{
    __asm__ volatile("cli" ::: "memory");
}
/* Enable interrupts and halt until one arrives; sti's one-instruction shadow
 * means an interrupt already pending still wakes the hlt. Returns with
 * interrupts off again. */
static inline void cpu_sti_hlt_cli(void)
{
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}

/* Per-vCPU start-up before guest_main (start.S calls it): loads the IDT. */
void guest_runtime_init(unsigned cpu, unsigned ncpus);

/* Halt this vCPU for good (interrupts off). */
__attribute__((noreturn)) void guest_park(void);

/* Report code to the host (outb to port 0xf4) and halt. */
__attribute__((noreturn)) void guest_exit(int code);

/* ---- spinlock ---- */

struct spinlock {
    volatile int locked;
};

void spin_lock(struct spinlock *l);
void spin_unlock(struct spinlock *l);

/* ---- COM1 output (16550 at 0x3f8), serialised across vCPUs ---- */

#define COM1_BASE 0x3f8
#define COM1_RBR  (COM1_BASE + 0) /* read */
#define COM1_THR  (COM1_BASE + 0) /* write */
#define COM1_IER  (COM1_BASE + 1)
#define COM1_IIR  (COM1_BASE + 2) /* read */
#define COM1_LCR  (COM1_BASE + 3)
#define COM1_MCR  (COM1_BASE + 4)
#define COM1_LSR  (COM1_BASE + 5)

#define UART_LSR_DR   0x01 /* data ready */
#define UART_LSR_THRE 0x20 /* transmit holding register empty */

void serial_putc(char c);
void serial_write(const char *s, size_t len);
void puts(const char *s); /* no newline added */
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintf(const char *fmt, va_list ap);

/* ---- IDT ---- */

struct interrupt_frame {
    uint64_t rip;
    uint64_t cs;
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};

typedef void (*interrupt_handler)(struct interrupt_frame *frame);

/* Fill vectors 0-31 with handlers that report the exception and exit with
 * 0xe0 + vector, and load the IDT on this vCPU. start.S calls it. */
void idt_init(void);
/* Point vector at handler (a function with __attribute__((interrupt))). */
void idt_set_handler(unsigned vector, interrupt_handler handler);

/* Exit code of a guest that took an unexpected exception. */
#define GUEST_EXIT_EXCEPTION(vec) (0xe0 + (vec))

/* ---- local APIC (xAPIC MMIO) ---- */

#define LAPIC_BASE       0xfee00000ull
#define LAPIC_ID         0x20
#define LAPIC_EOI        0xb0
#define LAPIC_SVR        0xf0
#define LAPIC_LVT_TIMER  0x320
#define LAPIC_LVT_LINT0  0x350
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR  0x390
#define LAPIC_TIMER_DIV  0x3e0

#define LAPIC_SVR_ENABLE     (1u << 8)
#define LAPIC_LVT_MASKED     (1u << 16)
#define LAPIC_TIMER_PERIODIC (1u << 17)

static inline uint32_t lapic_read(uint32_t reg)
{
    return mmio_read32(LAPIC_BASE + reg);
}
static inline void lapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(LAPIC_BASE + reg, v);
}
static inline unsigned lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}
static inline void lapic_eoi(void)
{
    lapic_write(LAPIC_EOI, 0);
}
/* Software-enable the LAPIC with spurious vector 0xff. */
static inline void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | 0xff);
}

/* ---- legacy 8259 PICs ---- */

/* Mask every PIC input. An in-kernel irqchip has a PIC nobody programmed
 * (vector base 0) behind the BSP's LINT0, which KVM resets to ExtINT: without
 * this, ISA IRQ n also arrives as exception vector n. */
static inline void pic_mask_all(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/* ---- I/O APIC ---- */

#define IOAPIC_BASE   0xfec00000ull
#define IOAPIC_REGSEL (IOAPIC_BASE + 0x00)
#define IOAPIC_WIN    (IOAPIC_BASE + 0x10)

#define IOAPIC_REDIR_LEVEL  (1u << 15)
#define IOAPIC_REDIR_MASKED (1u << 16)

static inline uint32_t ioapic_read(uint32_t reg)
{
    mmio_write32(IOAPIC_REGSEL, reg);
    return mmio_read32(IOAPIC_WIN);
}
static inline void ioapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(IOAPIC_REGSEL, reg);
    mmio_write32(IOAPIC_WIN, v);
}
/* Program redirection entry pin: low word (vector, mode, trigger, mask) and
 * destination APIC id. Writes the high word first so the entry is never
 * unmasked with a stale destination. */
static inline void ioapic_set_redir(unsigned pin, uint32_t low, uint8_t dest)
{
    ioapic_write(0x10 + 2 * pin, IOAPIC_REDIR_MASKED);
    ioapic_write(0x11 + 2 * pin, (uint32_t)dest << 24);
    ioapic_write(0x10 + 2 * pin, low);
}
static inline uint32_t ioapic_get_redir_low(unsigned pin)
{
    return ioapic_read(0x10 + 2 * pin);
}

/* ---- freestanding libc bits the compiler may call ---- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
