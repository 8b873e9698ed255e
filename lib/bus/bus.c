/* SPDX-License-Identifier: Apache-2.0 */
/* PIO and MMIO buses: a sorted table of claimed ranges, looked up by binary
 * search under a read lock; the device is called after the lock is dropped,
 * holding a reference that unregistering waits for (as kvmtool does). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <vmm/bus.h>

#include "vmm_internal.h"

/* How many unclaimed accesses a bus names in its debug log before going quiet. */
#define UNCLAIMED_LOG_LIMIT 8

/* In bus_device.users beside the count of calls in progress: the device is
 * off the table and its unregister waits for the count to reach zero. */
#define DEVICE_UNREGISTERING (1u << 31)

/* In vmm_bus.readers beside the count of look-ups in progress: a writer
 * holds or waits for the table. */
#define TABLE_WRITER (1u << 31)

/* One registration. On the heap, so that a dispatch can go on using it
 * after dropping the bus lock; freed by the unregister that removed it,
 * once no call is in progress. */
struct bus_device {
    struct vmm_bus_ops ops;
    void *opaque;
    uint32_t users; /* atomic: calls in progress | DEVICE_UNREGISTERING */
};

struct bus_entry {
    uint64_t base;
    uint64_t len;
    struct bus_device *dev;
};

/*
 * Locking: the table lock guards the table only. Dispatch holds it for
 * reading while it looks the address up and takes a reference on the
 * device, never while the device runs, so a device that blocks (the UART
 * waiting on a full output fd) holds up neither dispatches to other devices
 * nor register and unregister. Unregister takes the entry off the table
 * under the write lock, then, without it, waits on idle for that device's
 * calls in progress only.
 *
 * The table lock is a reader count (table_read_lock) rather than a
 * pthread_rwlock_t: a read side held for one binary search needs no more
 * than an atomic increment and decrement, which keeps a dispatch, two
 * reference-count atomics included, cheaper than the rwlock alone was.
 */
struct vmm_bus {
    char name[16];
    /* Writers (register/unregister) are rare; readers are every vCPU exit. */
    uint32_t readers;          /* atomic: look-ups in progress | TABLE_WRITER */
    pthread_mutex_t writer;    /* held by the writer; readers it stops wait on it */
    struct bus_entry *entries; /* sorted by base, non-overlapping */
    size_t count;
    size_t cap;
    /* A device's last call wakes its unregister through these. */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle;
    uint64_t unclaimed_reads;  /* atomic */
    uint64_t unclaimed_writes; /* atomic */
    uint64_t last_unclaimed;   /* atomic */
};

/* The buses whose callbacks this thread is inside, innermost first. A
 * callback may not register or unregister on any of them: unregistering a
 * device whose call is in progress on this thread would wait for itself. */
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

/* Hold the table for a look-up. Writers go first: a reader that meets one
 * backs out and sleeps on the writer's mutex until the table is free. */
static inline void table_read_lock(struct vmm_bus *bus)
{
    while (__atomic_fetch_add(&bus->readers, 1, __ATOMIC_ACQUIRE) & TABLE_WRITER) {
        __atomic_fetch_sub(&bus->readers, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&bus->writer);
        pthread_mutex_unlock(&bus->writer);
    }
}

static inline void table_read_unlock(struct vmm_bus *bus)
{
    __atomic_fetch_sub(&bus->readers, 1, __ATOMIC_RELEASE);
}

/* Hold the table to change it. Readers hold it for one binary search and
 * never across a call, so waiting for those already inside is yielding a
 * few times, not sleeping. */
static void table_write_lock(struct vmm_bus *bus)
{
    pthread_mutex_lock(&bus->writer);
    __atomic_fetch_or(&bus->readers, TABLE_WRITER, __ATOMIC_RELAXED);
    while (__atomic_load_n(&bus->readers, __ATOMIC_ACQUIRE) != TABLE_WRITER)
        sched_yield();
}

static void table_write_unlock(struct vmm_bus *bus)
{
    __atomic_fetch_and(&bus->readers, ~TABLE_WRITER, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&bus->writer);
}

int vmm_bus_create(const char *name, struct vmm_bus **out)
{
    struct vmm_bus *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return -ENOMEM;
    snprintf(bus->name, sizeof(bus->name), "%s", name ? name : "bus");
    int r = pthread_mutex_init(&bus->writer, NULL);
    if (r)
        goto err_free;
    r = pthread_mutex_init(&bus->idle_lock, NULL);
    if (r)
        goto err_writer;
    r = pthread_cond_init(&bus->idle, NULL);
    if (r)
        goto err_idle_lock;
    *out = bus;
    return 0;

err_idle_lock:
    pthread_mutex_destroy(&bus->idle_lock);
err_writer:
    pthread_mutex_destroy(&bus->writer);
err_free:
    free(bus);
    return -r;
}

void vmm_bus_destroy(struct vmm_bus *bus)
{
    if (!bus)
        return;
    for (size_t i = 0; i < bus->count; i++)
        free(bus->entries[i].dev);
    pthread_cond_destroy(&bus->idle);
    pthread_mutex_destroy(&bus->idle_lock);
    pthread_mutex_destroy(&bus->writer);
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

/* Put dev at [base, base + len) in the table. Caller holds the write lock. */
static int bus_insert(struct vmm_bus *bus, uint64_t base, uint64_t len, uint64_t end,
                      struct bus_device *dev)
{
    ssize_t i = bus_floor(bus, end);
    /* The only candidate for overlap is the last entry starting at or
     * before our end; entries are disjoint and sorted. */
    if (i >= 0 && bus->entries[i].base + (bus->entries[i].len - 1) >= base)
        return -EEXIST;
    if (bus->count == bus->cap) {
        size_t cap = bus->cap ? bus->cap * 2 : 16;
        struct bus_entry *e = realloc(bus->entries, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        bus->entries = e;
        bus->cap = cap;
    }
    size_t pos = (size_t)(i + 1);
    memmove(&bus->entries[pos + 1], &bus->entries[pos],
            (bus->count - pos) * sizeof(bus->entries[0]));
    bus->entries[pos] = (struct bus_entry){.base = base, .len = len, .dev = dev};
    bus->count++;
    return 0;
}

int vmm_bus_register(struct vmm_bus *bus, uint64_t base, uint64_t len,
                     const struct vmm_bus_ops *ops, void *opaque)
{
    uint64_t end;
    struct vmm_bus_ops copy; /* an older, shorter table: the rest reads as NULL */
    if (!ops || VMM_ABI_COPY_IN(&copy, ops) < 0 || len == 0 ||
        __builtin_add_overflow(base, len - 1, &end))
        return -EINVAL;
    if (dispatching_on(bus))
        return -EDEADLK;
    struct bus_device *dev = malloc(sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    *dev = (struct bus_device){.ops = copy, .opaque = opaque};

    table_write_lock(bus);
    int r = bus_insert(bus, base, len, end, dev);
    table_write_unlock(bus);
    if (r < 0)
        free(dev);
    return r;
}

/* Wait until dev, already off the table, has no call in progress. */
static void bus_wait_idle(struct vmm_bus *bus, struct bus_device *dev)
{
    /* From here a call that ends the last one wakes us (bus_put). */
    uint32_t users = __atomic_fetch_or(&dev->users, DEVICE_UNREGISTERING, __ATOMIC_ACQUIRE);
    if (users == 0)
        return;
    /* Checked under idle_lock, which bus_put takes to wake us, so the wake-up
     * cannot fall between the check and the wait. */
    pthread_mutex_lock(&bus->idle_lock);
    while (__atomic_load_n(&dev->users, __ATOMIC_ACQUIRE) != DEVICE_UNREGISTERING)
        pthread_cond_wait(&bus->idle, &bus->idle_lock);
    pthread_mutex_unlock(&bus->idle_lock);
}

int vmm_bus_unregister(struct vmm_bus *bus, uint64_t base)
{
    if (dispatching_on(bus))
        return -EDEADLK;
    struct bus_device *dev = NULL;
    table_write_lock(bus);
    ssize_t i = bus_floor(bus, base);
    if (i >= 0 && bus->entries[i].base == base) {
        dev = bus->entries[i].dev;
        memmove(&bus->entries[i], &bus->entries[i + 1],
                (bus->count - (size_t)i - 1) * sizeof(bus->entries[0]));
        bus->count--;
    }
    table_write_unlock(bus);
    if (!dev)
        return -ENOENT;
    /* No new call can find it now; wait out those already on their way,
     * without the bus lock, so the rest of the bus keeps working. */
    bus_wait_idle(bus, dev);
    free(dev);
    return 0;
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

/* The device at addr with a reference taken, and its offset; NULL and why
 * when nobody claims the access. */
static struct bus_device *bus_get(struct vmm_bus *bus, uint64_t addr, uint32_t len,
                                  uint64_t *offset, int *err)
{
    table_read_lock(bus);
    const struct bus_entry *e = bus_lookup(bus, addr, len, err);
    struct bus_device *dev = NULL;
    if (e) {
        dev = e->dev;
        *offset = addr - e->base;
        /* Relaxed: the unregister that removes dev takes the write lock
         * after we drop the read lock, and so sees this. */
        __atomic_add_fetch(&dev->users, 1, __ATOMIC_RELAXED);
    }
    table_read_unlock(bus);
    return dev;
}

/* Drop a reference from bus_get; dev may be freed as soon as this returns,
 * or even before it does, so it is not touched after the decrement. */
static void bus_put(struct vmm_bus *bus, struct bus_device *dev)
{
    /* Release: what the call did is seen by the unregister that frees dev. */
    if (__atomic_sub_fetch(&dev->users, 1, __ATOMIC_RELEASE) == DEVICE_UNREGISTERING) {
        pthread_mutex_lock(&bus->idle_lock);
        pthread_cond_broadcast(&bus->idle);
        pthread_mutex_unlock(&bus->idle_lock);
    }
}

/* Run one access on the device that claims it, outside the bus lock.
 * Returns 0 or why nobody took it. */
static int bus_dispatch(struct vmm_bus *bus, uint64_t addr, uint8_t *rdata, const uint8_t *wdata,
                        uint32_t len)
{
    if (len == 0 || len > 8)
        return -EINVAL;
    uint64_t offset = 0;
    int err;
    struct bus_device *dev = bus_get(bus, addr, len, &offset, &err);
    if (!dev) {
        if (rdata)
            memset(rdata, 0xff, len);
        bus_count_unclaimed(bus, addr, len, wdata != NULL);
        return err;
    }
    struct dispatch_frame frame = {bus, dispatch_top};
    dispatch_top = &frame;
    if (rdata) {
        if (dev->ops.read)
            dev->ops.read(dev->opaque, offset, rdata, len);
        else
            memset(rdata, 0xff, len);
    } else if (dev->ops.write) {
        dev->ops.write(dev->opaque, offset, wdata, len);
    }
    dispatch_top = frame.outer;
    bus_put(bus, dev);
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

int vmm_bus_get_stats(struct vmm_bus *bus, struct vmm_bus_stats *stats)
{
    if (!bus || !stats || !VMM_ABI_OUT_OK(stats))
        return -EINVAL;
    struct vmm_bus_stats s = {
        .unclaimed_reads = __atomic_load_n(&bus->unclaimed_reads, __ATOMIC_RELAXED),
        .unclaimed_writes = __atomic_load_n(&bus->unclaimed_writes, __ATOMIC_RELAXED),
        .last_unclaimed_addr = __atomic_load_n(&bus->last_unclaimed, __ATOMIC_RELAXED),
    };
    VMM_ABI_COPY_OUT(stats, &s);
    return 0;
}
