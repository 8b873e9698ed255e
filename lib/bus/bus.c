/* SPDX-License-Identifier: Apache-2.0 */
/* PIO and MMIO buses: a sorted table of claimed ranges, looked up by binary
 * search under a read lock so that unregistering waits for dispatches. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <vmm/bus.h>

#include "vmm_internal.h"

/* How many unclaimed accesses a bus names in its debug log before going quiet. */
#define UNCLAIMED_LOG_LIMIT 8

struct bus_entry {
    uint64_t base;
    uint64_t len;
    struct vmm_bus_ops ops;
    void *opaque;
};

struct vmm_bus {
    char name[16];
    /* Writers (register/unregister) are rare; readers are every vCPU exit. */
    pthread_rwlock_t lock;
    struct bus_entry *entries; /* sorted by base, non-overlapping */
    size_t count;
    size_t cap;
    uint64_t unclaimed_reads;  /* atomic */
    uint64_t unclaimed_writes; /* atomic */
    uint64_t last_unclaimed;   /* atomic */
};

/* The buses whose callbacks this thread is inside, innermost first: a
 * callback that registers on any of them would wait for itself, and a nested
 * dispatch on one of them already holds its read lock. */
struct dispatch_frame {
    const struct vmm_bus *bus;
    struct dispatch_frame *outer;
};
static __thread struct dispatch_frame *dispatch_top;

static bool dispatching_on(const struct vmm_bus *bus)
{
    for (const struct dispatch_frame *f = dispatch_top; f; f = f->outer)
        if (f->bus == bus)
            return true;
    return false;
}

int vmm_bus_create(const char *name, struct vmm_bus **out)
{
    struct vmm_bus *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return -ENOMEM;
    snprintf(bus->name, sizeof(bus->name), "%s", name ? name : "bus");
    /* Prefer writers: with many busy vCPUs a reader-preferring lock can keep
     * an unregister waiting indefinitely. Nested dispatch on the same bus
     * does not re-take the lock (see dispatching_on), so this cannot
     * deadlock a callback. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int r = pthread_rwlock_init(&bus->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (r) {
        free(bus);
        return -r;
    }
    *out = bus;
    return 0;
}

void vmm_bus_destroy(struct vmm_bus *bus)
{
    if (!bus)
        return;
    pthread_rwlock_destroy(&bus->lock);
    free(bus->entries);
    free(bus);
}

/* Index of the last entry with base <= addr, or -1. Caller holds the lock. */
static ssize_t bus_floor(const struct vmm_bus *bus, uint64_t addr)
{
    size_t lo = 0, hi = bus->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bus->entries[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (ssize_t)lo - 1;
}

int vmm_bus_register(struct vmm_bus *bus, uint64_t base, uint64_t len,
                     const struct vmm_bus_ops *ops, void *opaque)
{
    uint64_t end;
    if (!ops || len == 0 || __builtin_add_overflow(base, len - 1, &end))
        return -EINVAL;
    if (dispatching_on(bus))
        return -EDEADLK;

    pthread_rwlock_wrlock(&bus->lock);
    int r = 0;
    ssize_t i = bus_floor(bus, end);
    /* The only candidate for overlap is the last entry starting at or
     * before our end; entries are disjoint and sorted. */
    if (i >= 0 && bus->entries[i].base + (bus->entries[i].len - 1) >= base) {
        r = -EEXIST;
        goto out;
    }
    if (bus->count == bus->cap) {
        size_t cap = bus->cap ? bus->cap * 2 : 16;
        struct bus_entry *e = realloc(bus->entries, cap * sizeof(*e));
        if (!e) {
            r = -ENOMEM;
            goto out;
        }
        bus->entries = e;
        bus->cap = cap;
    }
    size_t pos = (size_t)(i + 1);
    memmove(&bus->entries[pos + 1], &bus->entries[pos],
            (bus->count - pos) * sizeof(bus->entries[0]));
    bus->entries[pos] = (struct bus_entry){.base = base, .len = len, .ops = *ops, .opaque = opaque};
    bus->count++;
out:
    pthread_rwlock_unlock(&bus->lock);
    return r;
}

int vmm_bus_unregister(struct vmm_bus *bus, uint64_t base)
{
    if (dispatching_on(bus))
        return -EDEADLK;
    /* Taking the write lock waits for every dispatch in progress. */
    pthread_rwlock_wrlock(&bus->lock);
    ssize_t i = bus_floor(bus, base);
    int r = -ENOENT;
    if (i >= 0 && bus->entries[i].base == base) {
        memmove(&bus->entries[i], &bus->entries[i + 1],
                (bus->count - (size_t)i - 1) * sizeof(bus->entries[0]));
        bus->count--;
        r = 0;
    }
    pthread_rwlock_unlock(&bus->lock);
    return r;
}

static void bus_count_unclaimed(struct vmm_bus *bus, uint64_t addr, uint32_t len, bool write)
{
    uint64_t n = __atomic_add_fetch(write ? &bus->unclaimed_writes : &bus->unclaimed_reads, 1,
                                    __ATOMIC_RELAXED);
    __atomic_store_n(&bus->last_unclaimed, addr, __ATOMIC_RELAXED);
    if (n <= UNCLAIMED_LOG_LIMIT)
        vmm_log_debug("%s: unclaimed %u-byte %s at 0x%llx%s", bus->name, len,
                      write ? "write" : "read", (unsigned long long)addr,
                      n == UNCLAIMED_LOG_LIMIT ? " (no more logged)" : "");
}

/* Find the entry wholly holding [addr, addr + len). Caller holds the lock. */
static const struct bus_entry *bus_lookup(const struct vmm_bus *bus, uint64_t addr, uint32_t len,
                                          int *err)
{
    ssize_t i = bus_floor(bus, addr);
    *err = -ENOENT;
    if (i < 0)
        return NULL;
    const struct bus_entry *e = &bus->entries[i];
    uint64_t off = addr - e->base;
    if (off >= e->len)
        return NULL;
    if (len > e->len - off) {
        *err = -EINVAL; /* starts inside the device, runs off its end */
        return NULL;
    }
    return e;
}

/* Run one access under the bus's read lock (unless this thread already holds
 * it further up the stack). Returns 0 or why nobody took it. */
static int bus_dispatch(struct vmm_bus *bus, uint64_t addr, uint8_t *rdata, const uint8_t *wdata,
                        uint32_t len)
{
    if (len == 0 || len > 8)
        return -EINVAL;
    bool nested = dispatching_on(bus);
    if (!nested)
        pthread_rwlock_rdlock(&bus->lock);
    int err;
    const struct bus_entry *e = bus_lookup(bus, addr, len, &err);
    struct dispatch_frame frame = {bus, dispatch_top};
    dispatch_top = &frame;
    if (rdata) {
        if (e && e->ops.read)
            e->ops.read(e->opaque, addr - e->base, rdata, len);
        else
            memset(rdata, 0xff, len);
    } else if (e && e->ops.write) {
        e->ops.write(e->opaque, addr - e->base, wdata, len);
    }
    dispatch_top = frame.outer;
    if (!nested)
        pthread_rwlock_unlock(&bus->lock);
    if (!e) {
        bus_count_unclaimed(bus, addr, len, wdata != NULL);
        return err;
    }
    return 0;
}

int vmm_bus_read(struct vmm_bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
    return bus_dispatch(bus, addr, data, NULL, len);
}

int vmm_bus_write(struct vmm_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
    return bus_dispatch(bus, addr, NULL, data, len);
}

void vmm_bus_get_stats(struct vmm_bus *bus, struct vmm_bus_stats *stats)
{
    stats->unclaimed_reads = __atomic_load_n(&bus->unclaimed_reads, __ATOMIC_RELAXED);
    stats->unclaimed_writes = __atomic_load_n(&bus->unclaimed_writes, __ATOMIC_RELAXED);
    stats->last_unclaimed_addr = __atomic_load_n(&bus->last_unclaimed, __ATOMIC_RELAXED);
}
