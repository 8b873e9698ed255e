/* SPDX-License-Identifier: Apache-2.0 */
/* Guest runtime core: start-up, exit, spinlock and the few libc functions the
 * compiler may emit calls to. */
#include "guest.h"

#define EXIT_PORT 0xf4

void guest_runtime_init(unsigned cpu, unsigned ncpus)
{
    (void)cpu;
    (void)ncpus;
    idt_init();
}

void guest_park(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

void guest_exit(int code)
{
    outb(EXIT_PORT, (uint8_t)code);
    guest_park();
}

void spin_lock(struct spinlock *l)
{
    while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
            cpu_pause();
    }
}

void spin_unlock(struct spinlock *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

/* rep stos/movs: one emulated instruction each instead of a byte loop. */
void *memset(void *d, int c, size_t n)
{
    void *p = d;
    __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *p = d;
    __asm__ volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}
