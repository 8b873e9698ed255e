/* SPDX-License-Identifier: Apache-2.0 */
/* Console output on COM1 by polling, and a small printf (%s %c %d %u %x %p,
 * with an l modifier), serialised across vCPUs by a spinlock. */
#include "guest.h"

/* Bound on LSR polls per byte: a UART that never reports THR empty must not
 * hang the guest; the byte is sent anyway. */
#define THRE_POLLS 10000

static struct spinlock serial_lock;

static void put_raw(char c)
{
    for (unsigned i = 0; i < THRE_POLLS; i++)
        if (inb(COM1_LSR) & UART_LSR_THRE)
            break;
    outb(COM1_THR, (uint8_t)c);
}

static void write_raw(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        put_raw(s[i]);
}

void serial_putc(char c)
{
    spin_lock(&serial_lock);
    put_raw(c);
    spin_unlock(&serial_lock);
}

void serial_write(const char *s, size_t len)
{
    spin_lock(&serial_lock);
    write_raw(s, len);
    spin_unlock(&serial_lock);
}

void puts(const char *s)
{
    serial_write(s, strlen(s));
}

static void put_number(uint64_t v, unsigned base, bool negative)
{
    char buf[24];
    unsigned n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (negative)
        put_raw('-');
    while (n)
        put_raw(buf[--n]);
}

void vprintf(const char *fmt, va_list ap)
{
    spin_lock(&serial_lock);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            put_raw(*p);
            continue;
        }
        bool is_long = false;
        p++;
        while (*p == 'l') {
            is_long = true;
            p++;
        }
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            write_raw(s ? s : "(null)", strlen(s ? s : "(null)"));
            break;
        }
        case 'c':
            put_raw((char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t v = is_long ? va_arg(ap, long) : va_arg(ap, int);
            put_number(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0);
            break;
        }
        case 'u':
            put_number(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10, false);
            break;
        case 'x':
            put_number(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16, false);
            break;
        case 'p':
            write_raw("0x", 2);
            put_number((uint64_t)(uintptr_t)va_arg(ap, void *), 16, false);
            break;
        case '%':
            put_raw('%');
            break;
        case '\0':
            p--; /* a lone '%' at the end */
            break;
        default:
            put_raw('%');
            put_raw(*p);
            break;
        }
    }
    spin_unlock(&serial_lock);
}

void printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}
