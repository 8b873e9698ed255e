/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_snapshot: how fast a VM comes back from a snapshot, against creating
 * the same VM from scratch in the same run (the floor).
 *
 * The VM: 512 MiB of RAM (64 MiB of it written), 2 vCPUs, a guest that
 * loops on an OUT to port 0x80. Each round times, from nothing to the first
 * OUT a vCPU executes: building the VM from scratch (create, memory, vCPUs,
 * code, boot state, run), and building it from a snapshot instead of the
 * code and boot state, memory mapped copy-on-write (lazy), read (eager) or
 * faulted in through userfaultfd.
 * Also the time to take the snapshot, how many clones a second the lazy path
 * gives, and a live migration's total time and downtime (its last guest OUT
 * on the source to its first on the target) for a guest that dirties a page
 * per exit: its memory copied (anonymous, and memfd with VMM_MIGRATE_COPY),
 * and its memfds handed over. Prints medians and ratios against the scratch floor.
 *
 * usage: bench_snapshot [--rounds N] [--dir DIR]   (DIR: where the snapshot
 * goes; default $TMPDIR or /tmp)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#define MEM_SIZE    (512ull << 20)
#define WRITTEN     (64ull << 20)
#define VCPUS       2
#define CODE_GPA    0x100000ull
#define BENCH_PORT  0x80
#define SOURCE_OUTS 1000u
#define ROUNDS_DEF  20

/* xor eax,eax; 1: out 0x80,al; inc eax; jmp 1b */
static const uint8_t code[] = {0x31, 0xc0, 0xe6, 0x80, 0xff, 0xc0, 0xeb, 0xfa};
/* The migrated guest dirties a page per OUT, round a 16 MiB window at 16 MiB:
 * xor eax,eax; mov ebx,0x1000000; 1: mov [rbx],eax; add ebx,0x1000;
 * and ebx,0xffffff; or ebx,0x1000000; out 0x80,al; inc eax; jmp 1b */
static const uint8_t dirty_code[] = {0x31, 0xc0, 0xbb, 0x00, 0x00, 0x00, 0x01, 0x89, 0x03,
                                     0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xe3, 0xff,
                                     0xff, 0xff, 0x00, 0x81, 0xcb, 0x00, 0x00, 0x00, 0x01,
                                     0xe6, 0x80, 0xff, 0xc0, 0xeb, 0xe6};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct port {
    struct vmm_vm *vm;
    atomic_uint outs;
    bool end_at_first; /* timed rounds: the first OUT ends the run */
    bool stamp_each;   /* migration source: the time of every OUT */
    double first_ms;
    _Atomic double last_ms;
};

static void port_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct port *p = opaque;
    (void)offset;
    (void)data;
    (void)len;
    if (p->stamp_each)
        atomic_store(&p->last_ms, now_ms());
    if (atomic_fetch_add(&p->outs, 1) == 0 && p->end_at_first) {
        p->first_ms = now_ms();
        vmm_vm_request_exit(p->vm, VMM_EXIT_GUEST_EXIT, 0, "bench");
    }
}

static void port_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)offset;
    memset(data, 0, len);
}

static const struct vmm_bus_ops port_ops = {
    .size = sizeof(struct vmm_bus_ops), .read = port_read, .write = port_write};

static void check(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "bench_snapshot: %s: %s\n", what, vmm_strerror(r));
        exit(1);
    }
}

/* The machine without its guest: memory, the port, the vCPUs. */
static struct vmm_vm *build_backed(struct port *p, enum vmm_memory_backing backing)
{
    struct vmm_vm *vm;
    check(vmm_vm_create(NULL, &vm), "creating the VM");
    struct vmm_region_config ram =
        VMM_INIT(struct vmm_region_config, .len = MEM_SIZE, .backing = backing);
    check(vmm_vm_add_memory(vm, &ram), "adding memory");
    p->vm = vm;
    atomic_store(&p->outs, 0);
    check(vmm_bus_register(vmm_vm_pio_bus(vm), BENCH_PORT, 1, &port_ops, p), "the port");
    for (unsigned i = 0; i < VCPUS; i++) {
        struct vmm_vcpu *v;
        check(vmm_vcpu_create(vm, i, &v), "creating a vCPU");
    }
    return vm;
}

static struct vmm_vm *build(struct port *p)
{
    return build_backed(p, VMM_MEMORY_ANON);
}

static void boot_code(struct vmm_vm *vm, const uint8_t *c, size_t len)
{
    check(vmm_memory_write(vmm_vm_memory(vm), CODE_GPA, c, len), "writing the code");
    for (unsigned i = 0; i < VCPUS; i++) {
        struct vmm_x86_boot_state b = VMM_INIT(struct vmm_x86_boot_state, .entry = CODE_GPA);
        check(vmm_vcpu_set_boot_state(vmm_vm_vcpu(vm, i), &b), "boot state");
    }
}

static void boot(struct vmm_vm *vm)
{
    boot_code(vm, code, sizeof(code));
}

static void *run_thread(void *arg)
{
    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    check(vmm_vm_run(arg, &ex), "running");
    return NULL;
}

/* One timed round: 0 scratch, 1 lazy restore, 2 eager restore, 3 userfaultfd. */
static double round_ms(int kind, const char *dir)
{
    struct port p = {.end_at_first = true};
    double t0 = now_ms();
    struct vmm_vm *vm = build(&p);
    if (kind == 0) {
        boot(vm);
    } else {
        static const uint32_t how[] = {0, VMM_RESTORE_LAZY, VMM_RESTORE_EAGER, VMM_RESTORE_UFFD};
        struct vmm_restore_options o = VMM_INIT(struct vmm_restore_options, .memory = how[kind]);
        check(vmm_vm_restore(vm, dir, &o), "restoring");
    }
    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    check(vmm_vm_run(vm, &ex), "running");
    double t = p.first_ms - t0;
    vmm_vm_destroy(vm);
    return t;
}

/* The target of the migration: receive, then run to the guest's first OUT. */
struct mig_target {
    int fd;
    struct port port;
    struct vmm_vm *vm;
    int ret;
};

static void *target_main(void *arg)
{
    struct mig_target *t = arg;
    size_t len;
    t->ret = vmm_migrate_recv_hello(t->fd, NULL, 0, &len);
    if (t->ret == 0)
        t->ret = vmm_vm_migrate_recv(t->vm, t->fd);
    if (t->ret == 0) {
        struct vmm_exit ex = VMM_INIT(struct vmm_exit);
        t->ret = vmm_vm_run(t->vm, &ex);
    }
    return NULL;
}

/* Move a VM dirtying a page per OUT between two VMs of this process over a
 * socketpair, its memory backed as backing says, with flags
 * (vmm_migrate_options): the total time, the guest's downtime (its last OUT
 * on the source to its first on the target), the pages it dirtied a
 * second meanwhile, and how the memory went (vmm_migrate_result.flags). */
struct mig_figures {
    double total_ms, down_ms, dirty_per_s;
    uint64_t pages;
    uint32_t flags;
};

static void migrate_once(enum vmm_memory_backing backing, uint32_t flags, struct mig_figures *f)
{
    struct port src = {.stamp_each = true};
    struct vmm_vm *vm = build_backed(&src, backing);
    boot_code(vm, dirty_code, sizeof(dirty_code));
    pthread_t run, recv;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        pthread_create(&run, NULL, run_thread, vm) != 0)
        exit(1);
    while (atomic_load(&src.outs) < SOURCE_OUTS)
        usleep(1000);
    static struct mig_target t;
    t = (struct mig_target){.fd = sv[1], .port = {.end_at_first = true}};
    t.vm = build_backed(&t.port, backing);
    if (pthread_create(&recv, NULL, target_main, &t) != 0)
        exit(1);
    struct vmm_migrate_result res = VMM_INIT(struct vmm_migrate_result);
    struct vmm_migrate_options o =
        VMM_INIT(struct vmm_migrate_options, .result = &res, .flags = flags);
    unsigned outs0 = atomic_load(&src.outs);
    double t0 = now_ms();
    check(vmm_vm_migrate_send(vm, sv[0], &o), "migrating");
    f->total_ms = now_ms() - t0;
    f->dirty_per_s = (atomic_load(&src.outs) - outs0) / (f->total_ms / 1e3);
    f->pages = res.pages;
    f->flags = res.flags;
    pthread_join(recv, NULL);
    check(t.ret, "receiving the migration");
    f->down_ms = t.port.first_ms - atomic_load(&src.last_ms);
    vmm_vm_stop(vm);
    pthread_join(run, NULL);
    vmm_vm_destroy(vm);
    vmm_vm_destroy(t.vm);
    close(sv[0]);
    close(sv[1]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    unsigned rounds = ROUNDS_DEF;
    const char *tmp = getenv("TMPDIR");
    const char *base = tmp && *tmp ? tmp : "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: bench_snapshot [--rounds N] [--dir DIR]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 1000)
        rounds = ROUNDS_DEF;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/bench-snapshot-%d", base, (int)getpid());

    /* The snapshot: the guest running, 64 MiB of its memory written. */
    struct port src = {0};
    struct vmm_vm *vm = build(&src);
    boot(vm);
    static uint8_t chunk[1 << 20];
    for (uint64_t off = 0; off < WRITTEN; off += sizeof(chunk)) {
        memset(chunk, (int)(off >> 20) | 1, sizeof(chunk));
        check(vmm_memory_write(vmm_vm_memory(vm), (2ull << 20) + off, chunk, sizeof(chunk)),
              "filling memory");
    }
    pthread_t t;
    if (pthread_create(&t, NULL, run_thread, vm) != 0)
        return 1;
    while (atomic_load(&src.outs) < SOURCE_OUTS)
        usleep(1000);
    double s0 = now_ms();
    check(vmm_vm_snapshot(vm, dir, NULL), "taking the snapshot");
    double save_ms = now_ms() - s0;
    vmm_vm_stop(vm);
    pthread_join(t, NULL);
    vmm_vm_destroy(vm);

    double *v[4];
    for (int k = 0; k < 4; k++) {
        v[k] = calloc(rounds, sizeof(double));
        if (!v[k])
            return 1;
    }
    for (unsigned r = 0; r < rounds; r++)
        for (int k = 0; k < 4; k++)
            v[k][r] = round_ms(k, dir);
    double scratch = median(v[0], rounds), lazy = median(v[1], rounds),
           eager = median(v[2], rounds), uffd = median(v[3], rounds);

    printf("bench_snapshot: %u MiB VM (%u MiB written), %d vCPUs, %u rounds, medians, from "
           "nothing to the guest's first instruction out:\n",
           (unsigned)(MEM_SIZE >> 20), (unsigned)(WRITTEN >> 20), VCPUS, rounds);
    printf("  created from scratch (floor)   %8.3f ms\n", scratch);
    printf("  restored, memory mapped (lazy) %8.3f ms  = %.2fx the floor\n", lazy, lazy / scratch);
    printf("  restored, memory read (eager)  %8.3f ms  = %.2fx the floor\n", eager,
           eager / scratch);
    printf("  restored, memory faulted in    %8.3f ms  = %.2fx the floor (userfaultfd)\n", uffd,
           uffd / scratch);
    printf("  clones a second (lazy, one at a time): %.0f\n", 1000.0 / lazy);
    printf("  taking the snapshot: %.3f ms\n", save_ms);
    /* The same guest and memory, copied (anonymous memory, then memfds
     * with VMM_MIGRATE_COPY) and with its memfds handed over. */
    static const struct {
        enum vmm_memory_backing backing;
        uint32_t flags;
        const char *what;
    } mig[] = {{VMM_MEMORY_ANON, 0, "copied, anonymous memory"},
               {VMM_MEMORY_MEMFD, VMM_MIGRATE_COPY, "copied, memfd memory   "},
               {VMM_MEMORY_MEMFD, 0, "memfds handed over     "}};
    struct mig_figures f[3];
    printf("  live migration of a %u MiB VM over a Unix socketpair, the guest dirtying a page "
           "per exit over 16 MiB:\n",
           (unsigned)(MEM_SIZE >> 20));
    for (int k = 0; k < 3; k++) {
        migrate_once(mig[k].backing, mig[k].flags, &f[k]);
        printf("    %s %9.3f ms in all, %8.3f ms down, %7llu pages sent, guest dirtying "
               "%.0f pages/s%s\n",
               mig[k].what, f[k].total_ms, f[k].down_ms, (unsigned long long)f[k].pages,
               f[k].dirty_per_s, (f[k].flags & VMM_MIGRATE_MEMFD) ? " (memfd)" : "");
    }
    printf("    memfds handed over against copying (anonymous): %.4fx the total time, %.2fx the "
           "downtime\n",
           f[2].total_ms / f[0].total_ms, f[2].down_ms / f[0].down_ms);

    char path[4200];
    snprintf(path, sizeof(path), "%s/state", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/memory", dir);
    unlink(path);
    rmdir(dir);
    for (int k = 0; k < 4; k++)
        free(v[k]);
    return 0;
}
