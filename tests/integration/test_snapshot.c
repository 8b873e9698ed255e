/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots through KVM: the snapcount guest is saved while it waits for the
 * host, restored into new VMs (eager and copy-on-write memory), saved again
 * from a restored VM, cloned, and goes on each time exactly where it
 * stopped: its console output, its register-carried value, its memory and
 * its virtqueue. A corrupt, truncated, foreign or mismatched snapshot is
 * refused. Each restore and each clone gets a VM generation ID of its own,
 * whose interrupt the guest takes and whose ID it reads; a migration keeps
 * it. Both interrupt controller models.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"
#include "snapshot/snapshot_internal.h"

#define ROUNDS 3
#define TICKS  10

#define GENID_GSI  3          /* tests/guests/snapcount.c */
#define GENID_SEEN 0x300000ul /* the guest's count of VMGenID interrupts, then the ID it read */

static enum vmm_irqchip chip(int i)
{
    return i == 0 ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
}

/* What the guest prints from round `from` to its end, with `inputs` the
 * bytes the host sent before rounds 1 and 2. */
static void expected(char *out, size_t size, unsigned from, const char *inputs)
{
    uint64_t acc = 0x1234;
    size_t len = 0;
    out[0] = '\0';
    for (unsigned round = 0; round < ROUNDS; round++) {
        if (round && round >= from)
            len += (size_t)snprintf(out + len, size - len, "got %c\n", inputs[round - 1]);
        for (unsigned i = round * TICKS; i < (round + 1) * TICKS; i++) {
            acc = acc * 6364136223846793005ull + i;
            if (round >= from)
                len += (size_t)snprintf(out + len, size - len, "tick %u %" PRIx64 "\n", i, acc);
        }
        if (round + 1 < ROUNDS && round >= from)
            len += (size_t)snprintf(out + len, size - len, "waiting\n");
    }
    snprintf(out + len, size - len, "done\n");
}

/* The guest's VM (its RAM backed as backing says): the harness's devices
 * plus the entropy device. */
static void make_vm_backed(struct harness *h, enum vmm_irqchip irqchip, unsigned vcpus,
                           enum vmm_memory_backing backing)
{
    harness_init_backed(h, irqchip, 64, backing);
    ck_assert_int_eq(vmm_vm_add_virtio_rng(h->vm, 0xd0000000ull, 5, NULL, NULL), 0);
    ck_assert_int_eq(vmm_vm_add_vmgenid(h->vm, VMM_X86_VMGENID, GENID_GSI), 0);
    harness_load_guest(h, "snapcount", vcpus);
}

static void make_vm(struct harness *h, enum vmm_irqchip irqchip, unsigned vcpus)
{
    make_vm_backed(h, irqchip, vcpus, VMM_MEMORY_ANON);
}

/* The VM's generation ID, checked against the copy in guest memory that
 * the guest reads. */
static void genid(struct harness *h, uint8_t id[VMM_VMGENID_SIZE])
{
    uint8_t in_guest[VMM_VMGENID_SIZE];
    ck_assert_int_eq(vmm_vm_vmgenid(h->vm, id), 0);
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(h->vm), VMM_X86_VMGENID, in_guest, 16), 0);
    ck_assert_mem_eq(id, in_guest, VMM_VMGENID_SIZE);
}

/* After a run: the guest took `irqs` VMGenID interrupts, and read id at
 * the last one. */
static void genid_seen(struct harness *h, uint64_t irqs, const uint8_t *id)
{
    struct {
        uint64_t irqs;
        uint8_t id[VMM_VMGENID_SIZE];
    } seen;
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(h->vm), GENID_SEEN, &seen, sizeof(seen)), 0);
    ck_assert_msg(seen.irqs == irqs, "the guest took %" PRIu64 " VMGenID interrupts, not %" PRIu64,
                  seen.irqs, irqs);
    if (irqs)
        ck_assert_mem_eq(seen.id, id, VMM_VMGENID_SIZE);
}

struct bg_run {
    struct harness *h;
    pthread_t thread;
};

static void *run_main(void *arg)
{
    struct harness *h = arg;
    h->exit = VMM_INIT(struct vmm_exit);
    ck_assert_int_eq(vmm_vm_run(h->vm, &h->exit), 0);
    return NULL;
}

/* Collect console output until it ends with marker (or the suite's own
 * time-out fails the test). */
static void read_until(struct harness *h, const char *marker)
{
    size_t mlen = strlen(marker);
    for (;;) {
        if (h->output_len >= mlen && !strcmp(h->output + h->output_len - mlen, marker))
            return;
        struct pollfd p = {.fd = h->console[0], .events = POLLIN};
        ck_assert_int_ge(poll(&p, 1, -1), 0);
        ssize_t n =
            read(h->console[0], h->output + h->output_len, sizeof(h->output) - 1 - h->output_len);
        if (n > 0) {
            h->output_len += (size_t)n;
            h->output[h->output_len] = '\0';
        }
    }
}

/* Run h until it says it waits for the host, snapshot it into dir and
 * stop it; the output is what it printed up to the snapshot. */
static void run_and_snapshot(struct harness *h, const char *dir)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_main, h), 0);
    read_until(h, "waiting\n");
    ck_assert_int_eq(vmm_vm_snapshot(h->vm, dir, NULL), 0);
    /* Paused: nothing more comes out. */
    char extra[64];
    ck_assert_int_lt(read(h->console[0], extra, sizeof(extra)), 0);
    vmm_vm_stop(h->vm);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(h->exit.reason, VMM_EXIT_STOPPED);
}

static void restore(struct harness *h, const char *dir, enum vmm_restore_memory how)
{
    struct vmm_restore_options o = VMM_INIT(struct vmm_restore_options, .memory = how);
    ck_assert_int_eq(vmm_vm_restore(h->vm, dir, &o), 0);
}

static void send_input(struct harness *h, const char *bytes)
{
    size_t n = strlen(bytes);
    ck_assert_int_eq(write(h->input[1], bytes, n), (ssize_t)n);
}

static char *scratch_dir(void)
{
    static char tmpl[PATH_MAX];
    vmm_test_path(tmpl, sizeof(tmpl), vmm_test_tmpdir(), "vmm-snap-XXXXXX");
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static char *subdir(const char *base, const char *name)
{
    char *p;
    ck_assert_int_gt(asprintf(&p, "%s/%s", base, name), 0);
    return p;
}

static void remove_snapshot(const char *dir)
{
    char *p;
    ck_assert_int_gt(asprintf(&p, "%s/state", dir), 0);
    unlink(p);
    free(p);
    ck_assert_int_gt(asprintf(&p, "%s/memory", dir), 0);
    unlink(p);
    free(p);
    rmdir(dir);
}

/* Three VMs, one after the other, each from the last one's snapshot: the
 * output, the register-carried value, memory and the virtqueue go on. */
START_TEST(snapshot_restore_continues_where_it_stopped)
{
    static char want[4096], got[8192];
    char *base = scratch_dir(), *a = subdir(base, "a"), *b = subdir(base, "b");

    struct harness h1, h2, h3;
    uint8_t id1[VMM_VMGENID_SIZE], id2[VMM_VMGENID_SIZE], id3[VMM_VMGENID_SIZE];
    make_vm(&h1, chip(_i), 1);
    run_and_snapshot(&h1, a);
    snprintf(got, sizeof(got), "%s", h1.output);
    genid(&h1, id1);
    genid_seen(&h1, 0, NULL);
    harness_fini(&h1);

    /* Each restore is a new generation, which the guest is told about. */
    make_vm(&h2, chip(_i), 1);
    restore(&h2, a, VMM_RESTORE_EAGER);
    genid(&h2, id2);
    ck_assert_mem_ne(id1, id2, VMM_VMGENID_SIZE);
    send_input(&h2, "x");
    run_and_snapshot(&h2, b);
    strncat(got, h2.output, sizeof(got) - strlen(got) - 1);
    genid_seen(&h2, 1, id2);
    harness_fini(&h2);

    make_vm(&h3, chip(_i), 1);
    restore(&h3, b, VMM_RESTORE_LAZY);
    genid(&h3, id3);
    ck_assert_mem_ne(id3, id1, VMM_VMGENID_SIZE);
    ck_assert_mem_ne(id3, id2, VMM_VMGENID_SIZE);
    send_input(&h3, "y");
    harness_run(&h3);
    genid_seen(&h3, 2, id3);
    strncat(got, h3.output, sizeof(got) - strlen(got) - 1);
    ck_assert_msg(h3.exit.reason == VMM_EXIT_GUEST_EXIT && h3.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h3.exit.reason), h3.exit.status,
                  h3.output);
    harness_fini(&h3);

    expected(want, sizeof(want), 0, "xy");
    /* The guest's own banner lines come first; compare from the first tick. */
    const char *start = strstr(got, "tick 0 ");
    ck_assert_ptr_nonnull(start);
    ck_assert_str_eq(start, want);

    remove_snapshot(a);
    remove_snapshot(b);
    rmdir(base);
    free(a);
    free(b);
    free(base);
}
END_TEST

/* Clones: many VMs from one snapshot, sharing its memory file copy-on-write
 * (one of them reads it), each running on its own to the same end, each
 * with a VM generation ID of its own that its guest was told about. */
START_TEST(clones_run_independently)
{
    static char want[4096];
    char *base = scratch_dir(), *a = subdir(base, "a");
    struct harness h;
    make_vm(&h, chip(_i), 1);
    run_and_snapshot(&h, a);
    harness_fini(&h);
    expected(want, sizeof(want), 1, "cd");

    enum { CLONES = 16 };
    static struct harness c[CLONES];
    static uint8_t ids[CLONES][VMM_VMGENID_SIZE];
    for (unsigned i = 0; i < CLONES; i++) {
        make_vm(&c[i], chip(_i), 1);
        /* One reads memory, two fault it in, the rest map it. */
        restore(&c[i], a,
                i == 0   ? VMM_RESTORE_EAGER
                : i <= 2 ? VMM_RESTORE_UFFD
                         : VMM_RESTORE_LAZY);
        genid(&c[i], ids[i]);
        for (unsigned k = 0; k < i; k++)
            ck_assert_msg(memcmp(ids[i], ids[k], VMM_VMGENID_SIZE) != 0,
                          "clones %u and %u have one generation ID", k, i);
        send_input(&c[i], "cd");
    }
    for (unsigned i = 0; i < CLONES; i++) {
        harness_run(&c[i]);
        ck_assert_msg(c[i].exit.reason == VMM_EXIT_GUEST_EXIT && c[i].exit.status == 0,
                      "clone %u: exit %s status %d: %s", i, vmm_exit_reason_name(c[i].exit.reason),
                      c[i].exit.status, c[i].output);
        ck_assert_str_eq(c[i].output, want);
        genid_seen(&c[i], 1, ids[i]);
        harness_fini(&c[i]);
    }
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(base);
}
END_TEST

static bool files_equal_after(const char *a, const char *b, size_t skip)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    ck_assert(fa && fb);
    fseek(fa, (long)skip, SEEK_SET);
    fseek(fb, (long)skip, SEEK_SET);
    bool same = true;
    static char ba[1 << 16], bb[1 << 16];
    for (;;) {
        size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);
        if (na != nb || memcmp(ba, bb, na) != 0) {
            same = false;
            break;
        }
        if (na == 0)
            break;
    }
    fclose(fa);
    fclose(fb);
    return same;
}

/* A diff snapshot written into the last snapshot's directory leaves there
 * the same guest memory as a full snapshot taken at the same moment, and
 * restores like one. A diff without its base is refused. */
START_TEST(diff_snapshot_equals_a_full_one)
{
    static char want[4096];
    char *base = scratch_dir(), *a = subdir(base, "a"), *b = subdir(base, "b");
    struct harness h;
    make_vm(&h, chip(_i), 1);
    struct vmm_snapshot_options diff =
        VMM_INIT(struct vmm_snapshot_options, .flags = VMM_SNAPSHOT_DIFF);
    /* Not logged: no diff. */
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, &diff), -EINVAL);
    ck_assert_int_eq(vmm_vm_dirty_log_start(h.vm, 0), 0);
    /* Logged, but no base yet. */
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, &diff), -EINVAL);

    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_main, &h), 0);
    read_until(&h, "waiting\n");
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, NULL), 0);
    ck_assert_int_eq(vmm_vm_resume(h.vm), 0);
    send_input(&h, "x");
    h.output_len = 0;
    read_until(&h, "waiting\n");
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, &diff), 0);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, b, NULL), 0);
    /* The application read the log: the next diff would miss pages. */
    static uint64_t bitmap[(64u << 20) / 4096 / 64];
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, sizeof(bitmap) / sizeof(bitmap[0])),
                     0);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, b, &diff), -EINVAL);
    vmm_vm_stop(h.vm);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    harness_fini(&h);

    char *ma = subdir(a, "memory"), *mb = subdir(b, "memory");
    ck_assert(files_equal_after(ma, mb, 4096));

    make_vm(&h, chip(_i), 1);
    restore(&h, a, VMM_RESTORE_EAGER);
    send_input(&h, "y");
    harness_run(&h);
    ck_assert_int_eq(h.exit.status, 0);
    expected(want, sizeof(want), 2, "xy");
    ck_assert_str_eq(h.output, want);
    harness_fini(&h);

    free(ma);
    free(mb);
    remove_snapshot(a);
    remove_snapshot(b);
    rmdir(base);
    free(a);
    free(b);
    free(base);
}
END_TEST

/* Guest memory of h (the harness's one region), its VMGenID left out:
 * every restore writes its own there. */
static uint8_t *guest_memory(struct harness *h, size_t *size)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    ck_assert_int_eq(vmm_memory_region_count(vmm_vm_memory(h->vm)), 1);
    ck_assert_int_eq(vmm_memory_region_info(vmm_vm_memory(h->vm), 0, &info), 0);
    uint8_t *m = malloc(info.len);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(h->vm), info.gpa, m, info.len), 0);
    memset(m + VMM_X86_VMGENID - info.gpa, 0, VMM_VMGENID_SIZE);
    *size = info.len;
    return m;
}

static uint64_t allocated(const char *dir)
{
    char *p = subdir(dir, "memory");
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    free(p);
    return (uint64_t)st.st_blocks * 512;
}

/* A diff into a directory of its own holds only the dirtied pages and
 * names its base; restored (eagerly or mapped), base and diff give the
 * memory of a full snapshot taken at the same moment, and the guest goes
 * on. A diff on a diff restores through both; a diff whose base was
 * replaced is refused. */
START_TEST(standalone_diff_restores_like_a_full_one)
{
    static char want[4096];
    char *base = scratch_dir(), *a = subdir(base, "a"), *d = subdir(base, "d"),
         *e = subdir(base, "e"), *b = subdir(base, "b");
    struct harness h;
    make_vm(&h, chip(_i), 1);
    ck_assert_int_eq(vmm_vm_dirty_log_start(h.vm, 0), 0);
    struct vmm_snapshot_options diff =
        VMM_INIT(struct vmm_snapshot_options, .flags = VMM_SNAPSHOT_DIFF, .base = a);
    struct vmm_snapshot_options no_flag = VMM_INIT(struct vmm_snapshot_options, .base = a);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_main, &h), 0);
    read_until(&h, "waiting\n");
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, NULL), 0);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, d, &no_flag), -EINVAL);
    ck_assert_int_eq(vmm_vm_resume(h.vm), 0);
    send_input(&h, "x");
    h.output_len = 0;
    read_until(&h, "waiting\n");
    /* d: a diff on a; e: one on d (no page dirtied since); b: a full one. */
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, d, &diff), 0);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, e, &diff), -EINVAL); /* a is no longer the last */
    diff.base = d;
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, e, &diff), 0);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, b, NULL), 0);
    vmm_vm_stop(h.vm);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    harness_fini(&h);
    ck_assert_uint_lt(allocated(d), allocated(b));

    size_t size_full, size;
    make_vm(&h, chip(_i), 1);
    restore(&h, b, VMM_RESTORE_EAGER);
    uint8_t *full = guest_memory(&h, &size_full);
    harness_fini(&h);
    /* a + d read, a + d mapped, a + d + e read, and faulted in (the pages
     * laid over fault in the base's ahead of the prefetch): b's memory, and
     * the guest goes on. */
    for (int k = 0; k < 4; k++) {
        make_vm(&h, chip(_i), 1);
        restore(&h, k >= 2 ? e : d,
                k == 0 || k == 2 ? VMM_RESTORE_EAGER
                : k == 1         ? VMM_RESTORE_LAZY
                                 : VMM_RESTORE_UFFD);
        uint8_t *m = guest_memory(&h, &size);
        ck_assert_uint_eq(size, size_full);
        ck_assert_msg(memcmp(m, full, size_full) == 0, "restore %d differs from the full one", k);
        free(m);
        send_input(&h, "y");
        harness_run(&h);
        ck_assert_int_eq(h.exit.status, 0);
        expected(want, sizeof(want), 2, "xy");
        ck_assert_str_eq(h.output, want);
        harness_fini(&h);
    }

    /* a replaced: d (and e) lost their base. */
    make_vm(&h, chip(_i), 1);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, NULL), 0);
    harness_fini(&h);
    make_vm(&h, chip(_i), 1);
    ck_assert_int_eq(vmm_vm_restore(h.vm, e, NULL), -EBADMSG);
    harness_fini(&h);

    free(full);
    remove_snapshot(a);
    remove_snapshot(b);
    remove_snapshot(d);
    remove_snapshot(e);
    rmdir(base);
    free(a);
    free(b);
    free(d);
    free(e);
    free(base);
}
END_TEST

/* ---- live migration ---- */

struct target {
    struct harness *h;
    int fd;
    int ret;
    char blob[64];
    size_t blob_len;
};

static void *receive_main(void *arg)
{
    struct target *t = arg;
    t->ret = vmm_migrate_recv_hello(t->fd, t->blob, sizeof(t->blob), &t->blob_len);
    if (t->ret == 0)
        t->ret = vmm_vm_migrate_recv(t->h->vm, t->fd);
    return NULL;
}

/* A VM moves while it counts, and goes on on the other side; a target that
 * cannot take it refuses, and the source goes on. */
START_TEST(migration_moves_a_running_vm)
{
    static char want[4096], got[8192];
    struct harness src, dst;
    make_vm(&src, chip(_i), 1);
    make_vm(&dst, chip(_i), 1);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pthread_t run, recv_thread;
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    src.output_len = 0;
    src.output[0] = '\0';
    /* Let it count, and move it meanwhile. */
    send_input(&src, "m");
    struct target t = {.h = &dst, .fd = sv[1]};
    ck_assert_int_eq(pthread_create(&recv_thread, NULL, receive_main, &t), 0);
    /* A result of a size the library does not know: refused before anything. */
    struct vmm_migrate_result res = {.size = sizeof(res) + 8};
    struct vmm_migrate_options o =
        VMM_INIT(struct vmm_migrate_options, .app_data = "snapcount", .app_len = 9, .result = &res);
    ck_assert_int_eq(vmm_vm_migrate_send(src.vm, sv[0], &o), -EINVAL);
    res = VMM_INIT(struct vmm_migrate_result);
    ck_assert_int_eq(vmm_vm_migrate_send(src.vm, sv[0], &o), 0);
    /* What it took: pages sent, and the pause within the whole. */
    ck_assert_uint_eq(res.size, sizeof(res));
    ck_assert_uint_gt(res.pages, 0);
    ck_assert_uint_gt(res.downtime_us, 0);
    ck_assert_uint_le(res.downtime_us, res.total_us);
    ck_assert_int_eq(pthread_join(recv_thread, NULL), 0);
    ck_assert_int_eq(t.ret, 0);
    ck_assert_uint_eq(t.blob_len, 9);
    ck_assert_int_eq(memcmp(t.blob, "snapcount", 9), 0);
    vmm_vm_stop(src.vm);
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    /* The same VM, moved: the same generation, and no interrupt for it. */
    uint8_t src_id[VMM_VMGENID_SIZE], dst_id[VMM_VMGENID_SIZE];
    genid(&src, src_id);
    ck_assert_int_eq(vmm_vm_vmgenid(dst.vm, dst_id), 0);
    ck_assert_mem_eq(src_id, dst_id, VMM_VMGENID_SIZE);
    /* What the source printed before it stopped, then the target. */
    ssize_t n;
    while ((n = read(src.console[0], src.output + src.output_len,
                     sizeof(src.output) - 1 - src.output_len)) > 0)
        src.output_len += (size_t)n;
    src.output[src.output_len] = '\0';
    snprintf(got, sizeof(got), "%s", src.output);
    send_input(&dst, "n");
    harness_run(&dst);
    ck_assert_int_eq(dst.exit.status, 0);
    genid_seen(&dst, 0, NULL);
    strncat(got, dst.output, sizeof(got) - strlen(got) - 1);
    expected(want, sizeof(want), 1, "mn");
    ck_assert_str_eq(got, want);
    harness_fini(&src);
    harness_fini(&dst);
    close(sv[0]);
    close(sv[1]);

    /* A target without the entropy device refuses; the source goes on. */
    make_vm(&src, chip(_i), 1);
    harness_init(&dst, chip(_i), 64);
    harness_load_guest(&dst, "snapcount", 1);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    t = (struct target){.h = &dst, .fd = sv[1]};
    ck_assert_int_eq(pthread_create(&recv_thread, NULL, receive_main, &t), 0);
    ck_assert_int_eq(vmm_vm_migrate_send(src.vm, sv[0], NULL), -EINVAL);
    ck_assert_int_eq(pthread_join(recv_thread, NULL), 0);
    ck_assert_int_eq(t.ret, -EINVAL);
    send_input(&src, "pq");
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    ck_assert_int_eq(src.exit.status, 0);
    harness_fini(&src);
    harness_fini(&dst);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* The inode of the file behind region 0 of h's memory (its fd). */
static ino_t ram_inode(struct harness *h)
{
    struct vmm_region_info info = VMM_INIT(struct vmm_region_info);
    struct stat st;
    ck_assert_int_eq(vmm_memory_region_info(vmm_vm_memory(h->vm), 0, &info), 0);
    ck_assert_int_ge(info.fd, 0);
    ck_assert_int_eq(fstat(info.fd, &st), 0);
    return st.st_ino;
}

#define SNAP_AREA 0x200000ul /* tests/guests/snapcount.c: its pattern */

/* A connected pair of stream sockets: Unix, or TCP over the loopback. */
static void stream_pair(int sv[2], bool tcp)
{
    if (!tcp) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        return;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sv[0], 0);
    ck_assert_int_eq(connect(sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(sv[1], 0);
    close(l);
}

/* Move the counting snapcount guest from src (running, at "waiting") to
 * dst over a Unix socketpair (or TCP) with options o; *t is the receiving
 * thread's. */
static int move_over(struct harness *src, struct harness *dst, struct target *t,
                     const struct vmm_migrate_options *o, bool tcp)
{
    int sv[2];
    pthread_t recv_thread;
    stream_pair(sv, tcp);
    *t = (struct target){.h = dst, .fd = sv[1]};
    ck_assert_int_eq(pthread_create(&recv_thread, NULL, receive_main, t), 0);
    int r = vmm_vm_migrate_send(src->vm, sv[0], o);
    ck_assert_int_eq(pthread_join(recv_thread, NULL), 0);
    close(sv[0]);
    close(sv[1]);
    return r;
}

static int move(struct harness *src, struct harness *dst, struct target *t,
                const struct vmm_migrate_options *o)
{
    return move_over(src, dst, t, o, false);
}

/* A memfd-backed VM moves over a Unix socket by handing its memfds over:
 * no page is copied, the target (memfd-backed, or anonymous: _i) runs on
 * the source's memfd and the guest counts on; the source is left with
 * blank memory. A target that fails after taking the memfds drops them,
 * and the source goes on with its memory intact. VMM_MIGRATE_COPY, or a
 * TCP link, copies instead. */
START_TEST(migration_hands_memfds_over)
{
    static char want[4096], got[8192];
    struct harness src, dst;
    make_vm_backed(&src, chip(_i), 1, VMM_MEMORY_MEMFD);
    make_vm_backed(&dst, chip(_i), 1, _i ? VMM_MEMORY_ANON : VMM_MEMORY_MEMFD);
    pthread_t run;
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    src.output_len = 0;
    src.output[0] = '\0';
    send_input(&src, "m");
    ino_t ram = ram_inode(&src);
    struct target t;
    struct vmm_migrate_result res = VMM_INIT(struct vmm_migrate_result);
    struct vmm_migrate_options o =
        VMM_INIT(struct vmm_migrate_options, .app_data = "snapcount", .app_len = 9, .result = &res);
    ck_assert_int_eq(move(&src, &dst, &t, &o), 0);
    ck_assert_int_eq(t.ret, 0);
    ck_assert_uint_eq(res.flags, VMM_MIGRATE_MEMFD);
    ck_assert_uint_eq(res.pages, 0);
    ck_assert_uint_eq(res.rounds, 0);
    ck_assert_uint_gt(res.downtime_us, 0);
    ck_assert_uint_le(res.downtime_us, res.total_us);
    vmm_vm_stop(src.vm);
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    /* The target's RAM is the source's memfd; the source's is another,
     * blank: nothing it does now reaches the guest. */
    ck_assert_uint_eq(ram_inode(&dst), ram);
    ck_assert_uint_ne(ram_inode(&src), ram);
    uint64_t word = 1;
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(src.vm), SNAP_AREA, &word, 8), 0);
    ck_assert_uint_eq(word, 0);
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(dst.vm), SNAP_AREA, &word, 8), 0);
    ck_assert_uint_ne(word, 0);
    ssize_t n;
    while ((n = read(src.console[0], src.output + src.output_len,
                     sizeof(src.output) - 1 - src.output_len)) > 0)
        src.output_len += (size_t)n;
    src.output[src.output_len] = '\0';
    snprintf(got, sizeof(got), "%s", src.output);
    send_input(&dst, "n");
    harness_run(&dst);
    ck_assert_int_eq(dst.exit.status, 0);
    strncat(got, dst.output, sizeof(got) - strlen(got) - 1);
    expected(want, sizeof(want), 1, "mn");
    ck_assert_str_eq(got, want);
    harness_fini(&src);
    harness_fini(&dst);

    /* A target without the entropy device takes the memfds, then refuses
     * the state: it drops them, and the source goes on with its memory
     * (the guest checks its pattern at the end). */
    make_vm_backed(&src, chip(_i), 1, VMM_MEMORY_MEMFD);
    harness_init_backed(&dst, chip(_i), 64, VMM_MEMORY_MEMFD);
    harness_load_guest(&dst, "snapcount", 1);
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    ram = ram_inode(&src);
    ck_assert_int_eq(move(&src, &dst, &t, NULL), -EINVAL);
    ck_assert_int_eq(t.ret, -EINVAL);
    ck_assert_uint_eq(ram_inode(&src), ram);
    ck_assert_uint_ne(ram_inode(&dst), ram);
    send_input(&src, "pq");
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    ck_assert_int_eq(src.exit.status, 0);
    harness_fini(&src);
    harness_fini(&dst);

    /* Asked to copy (_i 0), or over TCP (_i 1), it copies, from memfd to
     * memfd. */
    make_vm_backed(&src, chip(_i), 1, VMM_MEMORY_MEMFD);
    make_vm_backed(&dst, chip(_i), 1, VMM_MEMORY_MEMFD);
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    ram = ram_inode(&src);
    res = VMM_INIT(struct vmm_migrate_result);
    o = VMM_INIT(struct vmm_migrate_options, .result = &res, .flags = _i ? 0 : VMM_MIGRATE_COPY);
    ck_assert_int_eq(move_over(&src, &dst, &t, &o, _i), 0);
    ck_assert_int_eq(t.ret, 0);
    ck_assert_uint_eq(res.flags, 0);
    ck_assert_uint_gt(res.pages, 0);
    ck_assert_uint_ne(ram_inode(&dst), ram);
    vmm_vm_stop(src.vm);
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    send_input(&dst, "pq");
    harness_run(&dst);
    ck_assert_int_eq(dst.exit.status, 0);
    harness_fini(&src);
    harness_fini(&dst);
}
END_TEST

/* A target that goes away mid-way (after the greeting and a little of the
 * memory): the source fails with the socket's error and goes on. */
static void *vanishing_target(void *arg)
{
    struct target *t = arg;
    static uint8_t some[64 << 10];
    t->ret = vmm_migrate_recv_hello(t->fd, t->blob, sizeof(t->blob), &t->blob_len);
    ssize_t n = t->ret == 0 ? recv(t->fd, some, sizeof(some), MSG_WAITALL) : -1;
    t->ret = n == (ssize_t)sizeof(some) ? 0 : -EIO;
    shutdown(t->fd, SHUT_RDWR);
    return NULL;
}

START_TEST(migration_survives_a_target_that_vanishes)
{
    struct harness src;
    make_vm(&src, chip(_i), 1);
    pthread_t run, recv_thread;
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct target t = {.h = NULL, .fd = sv[1]};
    ck_assert_int_eq(pthread_create(&recv_thread, NULL, vanishing_target, &t), 0);
    int r = vmm_vm_migrate_send(src.vm, sv[0], NULL);
    ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "migrate: %d", r);
    ck_assert_int_eq(pthread_join(recv_thread, NULL), 0);
    ck_assert_int_eq(t.ret, 0);
    send_input(&src, "pq");
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    ck_assert_int_eq(src.exit.status, 0);
    harness_fini(&src);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* A target fed a page run outside its memory, a message it does not know,
 * a descriptor with a message that has none or a memfd it was not offered
 * refuses with a reason and touches nothing outside. */
START_TEST(migration_target_refuses_malformed_streams)
{
    struct {
        uint32_t magic, type;
        uint64_t len;
    } hello = {SNAP_TAG('L', 'V', 'M', 'G'), 1, 4}, pages = {SNAP_TAG('L', 'V', 'M', 'G'), 2, 16},
      bogus = {SNAP_TAG('L', 'V', 'M', 'G'), 77, 0};
    uint32_t version = 1;
    struct {
        uint32_t region, count;
        uint64_t first;
    } run = {0, 1, (64u << 20) / 4096}; /* one page past the end */
    /* 2: a page run with a descriptor; 3: a memfd nobody offered. */
    struct {
        uint32_t magic, type;
        uint64_t len;
    } memfd_msg = {SNAP_TAG('L', 'V', 'M', 'G'), 8, 24};
    static const char *const reasons[] = {"outside guest memory", "unexpected message 77",
                                          "descriptors with message 2", "unexpected message 8"};
    for (int k = 0; k < 4; k++) {
        struct harness h;
        make_vm(&h, VMM_IRQCHIP_SPLIT, 1);
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(write(sv[0], &hello, sizeof(hello)), sizeof(hello));
        ck_assert_int_eq(write(sv[0], &version, 4), 4);
        if (k == 0) {
            ck_assert_int_eq(write(sv[0], &pages, sizeof(pages)), sizeof(pages));
            ck_assert_int_eq(write(sv[0], &run, sizeof(run)), sizeof(run));
        } else if (k == 1) {
            ck_assert_int_eq(write(sv[0], &bogus, sizeof(bogus)), sizeof(bogus));
        } else {
            struct iovec iov = {.iov_base = k == 2 ? (void *)&pages : (void *)&memfd_msg,
                                .iov_len = sizeof(pages)};
            union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
            } ctl;
            memset(&ctl, 0, sizeof(ctl));
            struct msghdr msg = {.msg_iov = &iov,
                                 .msg_iovlen = 1,
                                 .msg_control = ctl.buf,
                                 .msg_controllen = sizeof(ctl.buf)};
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &h.console[1], sizeof(int));
            ck_assert_int_eq(sendmsg(sv[0], &msg, 0), (ssize_t)sizeof(pages));
        }
        char blob[8];
        size_t len;
        ck_assert_int_eq(vmm_migrate_recv_hello(sv[1], blob, sizeof(blob), &len), 0);
        ck_assert_uint_eq(len, 0);
        ck_assert_int_eq(vmm_vm_migrate_recv(h.vm, sv[1]), -EPROTO);
        struct {
            uint32_t magic, type;
            uint64_t len;
            uint32_t status;
            char why[64];
        } answer = {0};
        ck_assert_int_gt(read(sv[0], &answer, sizeof(answer) - 1), 20);
        ck_assert_uint_eq(answer.type, 5);
        ck_assert_uint_eq(answer.status, EPROTO);
        ck_assert_msg(strstr(answer.why, reasons[k]), "reason: %s", answer.why);
        close(sv[0]);
        close(sv[1]);
        harness_fini(&h);
    }
}
END_TEST

/* ---- refusals ---- */

static void *slurp(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    void *p = malloc((size_t)st.st_size + 1);
    ck_assert_int_eq(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    *size = (size_t)st.st_size;
    return p;
}

static void spit(const char *path, const void *p, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, size), (ssize_t)size);
    close(fd);
}

/* Restore dir into a fresh VM of vcpus vCPUs, with or without the entropy
 * device, with a VMGenID at genid (0: none), and return what it said. */
static int try_restore(const char *dir, unsigned vcpus, bool rng, uint64_t genid)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 64);
    if (rng)
        ck_assert_int_eq(vmm_vm_add_virtio_rng(h.vm, 0xd0000000ull, 5, NULL, NULL), 0);
    if (genid)
        ck_assert_int_eq(vmm_vm_add_vmgenid(h.vm, genid, GENID_GSI), 0);
    harness_load_guest(&h, "snapcount", vcpus);
    int r = vmm_vm_restore(h.vm, dir, NULL);
    harness_fini(&h);
    return r;
}

START_TEST(bad_snapshots_are_refused)
{
    char *base = scratch_dir(), *a = subdir(base, "a"), *b = subdir(base, "b");
    struct harness h;
    make_vm(&h, VMM_IRQCHIP_SPLIT, 1);
    run_and_snapshot(&h, a);
    harness_fini(&h);
    make_vm(&h, VMM_IRQCHIP_SPLIT, 1);
    run_and_snapshot(&h, b);
    harness_fini(&h);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), 0);

    char *state = subdir(a, "state"), *memory = subdir(a, "memory");
    char *other_memory = subdir(b, "memory");
    size_t size;
    uint8_t *orig = slurp(state, &size);
    uint8_t *copy = malloc(size);

    /* One byte flipped in the body, and in the header. */
    memcpy(copy, orig, size);
    copy[size / 2] ^= 0x10;
    spit(state, copy, size);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    memcpy(copy, orig, size);
    copy[17] ^= 1;
    spit(state, copy, size);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    /* Truncated. */
    spit(state, orig, size - 8);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    /* Another magic. */
    memcpy(copy, orig, size);
    copy[0] = 'X';
    spit(state, copy, size);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    /* Another format version, with a header CRC that matches it. */
    memcpy(copy, orig, size);
    uint32_t version = SNAP_VERSION + 1;
    memcpy(copy + 8, &version, 4);
    uint32_t hcrc = snap_crc32(0, copy, 28);
    memcpy(copy + 28, &hcrc, 4);
    spit(state, copy, size);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EPROTO);
    spit(state, orig, size);

    /* A VM built unlike the saved one. */
    ck_assert_int_eq(try_restore(a, 2, true, VMM_X86_VMGENID), -EINVAL);
    ck_assert_int_eq(try_restore(a, 1, false, VMM_X86_VMGENID), -EINVAL);
    ck_assert_int_eq(try_restore(a, 1, true, 0), -EINVAL);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID - 0x1000), -EINVAL);

    /* Another snapshot's memory file, then a truncated one. */
    size_t msize, osize;
    uint8_t *mem = slurp(memory, &msize);
    uint8_t *other = slurp(other_memory, &osize);
    spit(memory, other, osize);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    spit(memory, mem, msize - 4096);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), -EBADMSG);
    spit(memory, mem, msize);
    ck_assert_int_eq(try_restore(a, 1, true, VMM_X86_VMGENID), 0);

    /* A VM that has run cannot take a snapshot in. */
    make_vm(&h, VMM_IRQCHIP_SPLIT, 1);
    send_input(&h, "zz");
    harness_run(&h);
    ck_assert_int_eq(vmm_vm_restore(h.vm, a, NULL), -EBUSY);
    harness_fini(&h);

    free(orig);
    free(copy);
    free(mem);
    free(other);
    free(state);
    free(memory);
    free(other_memory);
    remove_snapshot(a);
    remove_snapshot(b);
    rmdir(base);
    free(a);
    free(b);
    free(base);
}
END_TEST

/* The application's blob comes back; a missing directory is an error. */
/* vmm-run names its transport in every description it writes (one without
 * the line is of a virtio-mmio machine, as before virtio-pci was the default). */
static void assert_transport_line(const char *dir, const char *line)
{
    char desc[4096];
    size_t len = 0;
    ck_assert_int_eq(vmm_snapshot_app_data(dir, desc, sizeof(desc) - 1, &len), 0);
    desc[len] = '\0';
    ck_assert_msg(strstr(desc, line), "description: %s", desc);
}

START_TEST(app_data_round_trips)
{
    char *base = scratch_dir(), *a = subdir(base, "a");
    struct harness h;
    make_vm(&h, VMM_IRQCHIP_SPLIT, 1);
    struct vmm_snapshot_options o =
        VMM_INIT(struct vmm_snapshot_options, .app_data = "mem=64M", .app_len = 7);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, &o), 0);
    harness_fini(&h);
    char buf[16];
    size_t len = 0;
    ck_assert_int_eq(vmm_snapshot_app_data(a, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(len, 7);
    ck_assert_int_eq(memcmp(buf, "mem=64M", 7), 0);
    ck_assert_int_eq(vmm_snapshot_app_data(a, buf, 3, &len), -ENOSPC);
    ck_assert_uint_eq(len, 7);
    char *missing = subdir(base, "none");
    ck_assert_int_eq(vmm_snapshot_app_data(missing, buf, sizeof(buf), &len), -ENOENT);
    free(missing);
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(base);
}
END_TEST

/* ---- vmm-run --save / --restore ---- */

struct proc {
    pid_t pid;
    int in, out; /* our ends of its stdin and stdout */
    char err_path[PATH_MAX];
    char output[8192];
    size_t output_len;
};

static void spawn(struct proc *p, char *const argv[])
{
    int in[2], out[2];
    ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    int efd = mkstemp(vmm_test_tmpname(p->err_path, sizeof(p->err_path), "vmm-snap-err"));
    ck_assert_int_ge(efd, 0);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(efd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(efd);
    p->in = in[1];
    p->out = out[0];
    p->output_len = 0;
    p->output[0] = '\0';
}

/* Read its stdout until it ends with marker (NULL: until EOF). */
static void proc_read(struct proc *p, const char *marker)
{
    for (;;) {
        size_t mlen = marker ? strlen(marker) : 0;
        if (marker && p->output_len >= mlen && !strcmp(p->output + p->output_len - mlen, marker))
            return;
        ssize_t n = read(p->out, p->output + p->output_len, sizeof(p->output) - 1 - p->output_len);
        ck_assert_int_ge(n, 0);
        if (n == 0) {
            ck_assert_msg(!marker, "EOF before '%s': %s", marker, p->output);
            return;
        }
        p->output_len += (size_t)n;
        p->output[p->output_len] = '\0';
    }
}

/* Wait for it to end; returns its exit status and its stderr in err. */
static int proc_wait(struct proc *p, char *err, size_t size)
{
    int st;
    ck_assert_int_eq(waitpid(p->pid, &st, 0), p->pid);
    close(p->in);
    close(p->out);
    FILE *f = fopen(p->err_path, "r");
    size_t n = f ? fread(err, 1, size - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    unlink(p->err_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void make_disk(const char *path, off_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, size), 0);
    close(fd);
}

START_TEST(vmm_run_saves_on_a_signal_and_restores)
{
    static char want[4096];
    char err[1024];
    char *base = scratch_dir(), *a = subdir(base, "a");
    char *disk = subdir(base, "disk"), *same = subdir(base, "same"), *big = subdir(base, "big");
    make_disk(disk, 1 << 20);
    make_disk(same, 1 << 20);
    make_disk(big, 2 << 20);
    struct proc p;
    char *save_argv[] = {VMM_RUN_PATH,
                         "--kernel",
                         (char *)harness_guest_path("snapcount"),
                         "--transport",
                         "mmio",
                         "--rng",
                         "--disk",
                         disk,
                         "--save",
                         a,
                         NULL};
    spawn(&p, save_argv);
    proc_read(&p, "waiting\n");
    ck_assert_int_eq(kill(p.pid, SIGUSR1), 0);
    proc_read(&p, NULL); /* nothing more: it saved and stopped */
    ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
    assert_transport_line(a, "transport=mmio\n");
    ck_assert_msg(strstr(err, "saved the VM"), "stderr: %s", err);

    /* Three times from the same snapshot, memory read, mapped and faulted
     * in, the last two with another disk of the same size. */
    static const char *const how[] = {"eager", "lazy", "uffd"};
    for (int i = 0; i < 3; i++) {
        char *restore_argv[] = {VMM_RUN_PATH,   "--restore",         a,    "--restore-memory",
                                (char *)how[i], i ? "--disk" : NULL, same, NULL};
        spawn(&p, restore_argv);
        ck_assert_int_eq(write(p.in, "ab", 2), 2);
        proc_read(&p, NULL);
        ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
        ck_assert_str_eq(err, "");
        expected(want, sizeof(want), 1, "ab");
        ck_assert_str_eq(p.output, want);
    }

    /* Refusals: one line each. */
    char *with_big[] = {VMM_RUN_PATH, "--restore", a, "--disk", big, NULL};
    spawn(&p, with_big);
    ck_assert_int_eq(proc_wait(&p, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "the disk had 2048 sectors") && strchr(err, '\n')[1] == '\0',
                  "stderr: %s", err);

    char *with_mem[] = {VMM_RUN_PATH, "--restore", a, "--mem", "64M", NULL};
    spawn(&p, with_mem);
    ck_assert_int_eq(proc_wait(&p, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "drop --mem") && strchr(err, '\n')[1] == '\0', "stderr: %s", err);

    char *state = subdir(a, "state");
    int fd = open(state, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    char c;
    ck_assert_int_eq(pread(fd, &c, 1, 100), 1);
    c ^= 1;
    ck_assert_int_eq(pwrite(fd, &c, 1, 100), 1);
    close(fd);
    char *corrupt[] = {VMM_RUN_PATH, "--restore", a, NULL};
    spawn(&p, corrupt);
    ck_assert_int_eq(proc_wait(&p, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "cannot restore") && strstr(err, "corrupt") &&
                      strchr(err, '\n')[1] == '\0',
                  "stderr: %s", err);
    free(state);
    remove_snapshot(a);
    unlink(disk);
    unlink(same);
    unlink(big);
    rmdir(base);
    free(disk);
    free(same);
    free(big);
    free(a);
    free(base);
}
END_TEST

/* Send one request line and return the one-line answer (without '\n'). */
static const char *api(int fd, const char *cmd)
{
    static char answer[4096];
    size_t n = strlen(cmd);
    ck_assert_int_eq(send(fd, cmd, n, MSG_NOSIGNAL), (ssize_t)n);
    size_t len = 0;
    while (len == 0 || answer[len - 1] != '\n') {
        ck_assert_uint_lt(len, sizeof(answer) - 1);
        ssize_t r = recv(fd, answer + len, sizeof(answer) - 1 - len, 0);
        ck_assert_int_gt(r, 0);
        len += (size_t)r;
    }
    answer[len - 1] = '\0';
    return answer;
}

static int api_connect(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

#define API_OK            "{\"ok\":true}"
#define starts(s, prefix) (strncmp((s), (prefix), strlen(prefix)) == 0)
#define API_ERR           "{\"ok\":false,\"error\":\""

/* The control socket: pause, a full then a diff snapshot of the paused VM,
 * requests it cannot serve (answered, the VM goes on), resume, stats, and
 * the snapshot restored. */
START_TEST(control_socket_pauses_snapshots_and_resumes)
{
    static char want[4096];
    char err[1024];
    char *base = scratch_dir(), *a = subdir(base, "a"), *sock = subdir(base, "api");
    struct proc p;
    char *argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("snapcount"),
                    "--transport", "mmio",     "--rng",
                    "--api-sock",  sock,       NULL};
    spawn(&p, argv);
    proc_read(&p, "waiting\n");
    int fd = api_connect(sock);
    const char *answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(
        starts(answer, "{\"ok\":true,\"state\":\"running\",\"vcpus\":1,\"memory_mib\":") &&
            !strstr(answer, "balloon"),
        "answer: %s", answer);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"pause\"}\n"), API_OK);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stats\"}\n") + 11, "\"state\":\"paused\",\"vcpus\":1,"
                                                            "\"memory_mib\":128}");
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"diff\":false}\n", a);
    ck_assert_str_eq(api(fd, cmd), API_OK);
    /* A diff into the same directory leaves there the same snapshot. */
    snprintf(cmd, sizeof(cmd), " {\"cmd\" : \"snapshot\", \"diff\":true, \"path\":\"%s\"}\r\n", a);
    ck_assert_str_eq(api(fd, cmd), API_OK);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"frobnicate\"}\n"),
                     API_ERR "unknown cmd 'frobnicate' (pause, resume, snapshot, migrate, "
                             "balloon, stats, stop)\"}");
    ck_assert_str_eq(api(fd, "{\"cmd\":\"balloon\",\"target_mib\":16}\n"),
                     API_ERR "no balloon (start vmm-run with --balloon)\"}");
    answer = api(fd, "{\"cmd\":\"snapshot\",\"path\":\"/proc/no/such/dir\"}\n");
    ck_assert_msg(starts(answer, API_ERR) && strstr(answer, "/proc/no/such/dir"), "answer: %s",
                  answer);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"resume\"}\n"), API_OK);
    /* Resumed: the guest takes a byte and goes on to its next wait. */
    ck_assert_int_eq(write(p.in, "q", 1), 1);
    proc_read(&p, "waiting\n");
    answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(strstr(answer, "\"state\":\"running\""), "answer: %s", answer);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stop\"}\n"), API_OK);
    close(fd);
    proc_read(&p, NULL);
    ck_assert_int_ne(proc_wait(&p, err, sizeof(err)), 0);

    char *restore_argv[] = {VMM_RUN_PATH, "--restore", a, NULL};
    spawn(&p, restore_argv);
    ck_assert_int_eq(write(p.in, "ab", 2), 2);
    proc_read(&p, NULL);
    ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
    expected(want, sizeof(want), 1, "ab");
    ck_assert_str_eq(p.output, want);
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(sock);
    free(base);
}
END_TEST

/* A VM with a balloon snapshots (the balloon's state saved next to the
 * rest) and comes back with it: the target set over the control socket
 * before the snapshot is the restored balloon's; --balloon itself comes
 * from the snapshot, so giving it again is refused. */
START_TEST(vmm_run_snapshots_a_balloon)
{
    static char want[4096];
    char err[1024];
    char *base = scratch_dir(), *a = subdir(base, "a"), *sock = subdir(base, "api"),
         *sock2 = subdir(base, "api2");
    struct proc p;
    char *argv[] = {VMM_RUN_PATH,
                    "--kernel",
                    (char *)harness_guest_path("snapcount"),
                    "--transport",
                    "mmio",
                    "--rng",
                    "--balloon=target=8M,stats",
                    "--api-sock",
                    sock,
                    NULL};
    spawn(&p, argv);
    proc_read(&p, "waiting\n");
    int fd = api_connect(sock);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"balloon\",\"target_mib\":16}\n"),
                     "{\"ok\":true,\"target_mib\":16}");
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", a);
    ck_assert_str_eq(api(fd, cmd), API_OK);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stop\"}\n"), API_OK);
    close(fd);
    proc_read(&p, NULL);
    ck_assert_int_ne(proc_wait(&p, err, sizeof(err)), 0);

    char *again[] = {VMM_RUN_PATH, "--restore", a, "--balloon", NULL};
    spawn(&p, again);
    ck_assert_int_eq(proc_wait(&p, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "drop --balloon") && strchr(err, '\n')[1] == '\0', "stderr: %s", err);

    char *restore_argv[] = {VMM_RUN_PATH, "--restore", a, "--api-sock", sock2, NULL};
    spawn(&p, restore_argv);
    /* The socket is there once the VM is restored (vmm-run binds it after
     * building the VM): wait for it. */
    struct stat st;
    for (int i = 0; stat(sock2, &st) < 0; i++) {
        ck_assert_int_lt(i, 6000); /* a minute: vmm-run did not get there */
        usleep(10000);
    }
    fd = api_connect(sock2);
    const char *answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(strstr(answer, "\"balloon\":{\"target_mib\":16,"), "answer: %s", answer);
    close(fd);
    ck_assert_int_eq(write(p.in, "ab", 2), 2);
    proc_read(&p, NULL);
    ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
    expected(want, sizeof(want), 1, "ab");
    ck_assert_str_eq(p.output, want);
    unlink(sock2);
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(sock);
    free(sock2);
    free(base);
}
END_TEST

/* How many of pid's mappings are the guest RAM's memfd, and how many carry
 * KSM's VM_MERGEABLE ("mg" in smaps' VmFlags). */
static void guest_ram_mappings(pid_t pid, int *memfd, int *mergeable)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    *memfd = *mergeable = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "/memfd:vmm-guest-ram"))
            (*memfd)++;
        if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " mg"))
            (*mergeable)++;
    }
    fclose(f);
}

/* Run snapcount (args: more options, or --restore DIR ...) with the control
 * socket until it waits; check its
 * guest RAM's mappings; save it into dir (NULL: don't) and stop it. */
static void run_and_check_ram(char *const args[], const char *sock, const char *dir, int want_memfd,
                              int want_mergeable)
{
    char *argv[16] = {VMM_RUN_PATH, "--api-sock", (char *)sock};
    int n = 3;
    if (strcmp(args[0], "--restore") != 0) {
        argv[n++] = "--kernel";
        argv[n++] = (char *)harness_guest_path("snapcount");
        argv[n++] = "--rng";
        argv[n++] = "--transport"; /* snapcount's driver speaks virtio-mmio */
        argv[n++] = "mmio";
    }
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct proc p;
    char err[1024];
    spawn(&p, argv);
    if (argv[3] == NULL || strcmp(argv[3], "--restore") != 0) {
        proc_read(&p, "waiting\n");
    } else {
        /* A restored snapcount waits where it was saved, silent. */
        struct stat st;
        for (int i = 0; stat(sock, &st) < 0; i++) {
            ck_assert_int_lt(i, 6000); /* a minute: vmm-run did not get there */
            usleep(10000);
        }
    }
    /* vmm-run binds the socket first but answers once the VM is built. */
    int fd = api_connect(sock);
    ck_assert_msg(starts(api(fd, "{\"cmd\":\"stats\"}\n"), "{\"ok\":true"), "no stats");
    int memfd, mergeable;
    guest_ram_mappings(p.pid, &memfd, &mergeable);
    ck_assert_msg(want_memfd ? memfd > 0 : memfd == 0, "%d memfd mappings", memfd);
    ck_assert_msg(want_mergeable ? mergeable > 0 : mergeable == 0, "%d mergeable", mergeable);
    if (dir) {
        char cmd[PATH_MAX + 64];
        snprintf(cmd, sizeof(cmd), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", dir);
        ck_assert_str_eq(api(fd, cmd), API_OK);
    }
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stop\"}\n"), API_OK);
    close(fd);
    proc_read(&p, NULL);
    ck_assert_int_ne(proc_wait(&p, err, sizeof(err)), 0);
    unlink(sock);
}

/* --mem-backing memfd puts guest RAM on a memfd, --mem-merge advises it
 * mergeable; a snapshot keeps both, so a restore (the memory read into a
 * new memfd, or mapped private and advised again) has them too, and a
 * --mem-backing given to --restore wins. */
START_TEST(vmm_run_keeps_the_memory_backing_in_a_snapshot)
{
    char *base = scratch_dir(), *a = subdir(base, "a"), *b = subdir(base, "b"),
         *sock = subdir(base, "api");
    run_and_check_ram((char *[]){"--mem-backing", "memfd", NULL}, sock, a, 1, 0);
    run_and_check_ram((char *[]){"--restore", a, NULL}, sock, NULL, 1, 0);
    run_and_check_ram((char *[]){"--restore", a, "--mem-backing", "anon", NULL}, sock, NULL, 0, 0);
    run_and_check_ram((char *[]){"--mem-merge", NULL}, sock, b, 0, 1);
    run_and_check_ram((char *[]){"--restore", b, NULL}, sock, NULL, 0, 1);
    remove_snapshot(a);
    remove_snapshot(b);
    rmdir(base);
    free(a);
    free(b);
    free(sock);
    free(base);
}
END_TEST

/* Hostile requests on the control socket of a vmm-run under its default
 * killing seccomp filters: each is answered with an error and changes
 * nothing; a 1 MiB line without a newline ends its own connection only;
 * the balloon request and stats work; the guest goes on throughout. */
START_TEST(control_socket_refuses_malformed_requests)
{
    static const struct {
        const char *line, *error;
    } bad[] = {
        {"{\"cmd\":\"pause\"\n", "not a request: incomplete JSON"},
        {"pause\n", "not a request: bad JSON"},
        {"\n", "not a request: incomplete JSON"},
        {"[1,2]\n", "not a request: a request is a JSON object"},
        {"\"pause\"\n", "not a request: a request is a JSON object"},
        {"null\n", "not a request"},
        {"{'cmd':'pause'}\n", "not a request: bad JSON"},
        {"{\"cmd\":\"pause\"} {\"cmd\":\"stop\"}\n", "not a request"},
        {"{\"cmd\":\"pause\"}x\n", "not a request"},
        {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":1}}}}}\n", "not a request: bad JSON"},
        {"{\"cmd\":\"pause\"}\0\n", "a NUL byte"},
        {"{}\n", "no \\\"cmd\\\" in the request"},
        {"{\"cmd\":5}\n", "\\\"cmd\\\" must be a string"},
        {"{\"cmd\":null}\n", "\\\"cmd\\\" must be a string"},
        {"{\"cmd\":\"PAUSE\"}\n", "unknown cmd 'PAUSE'"},
        {"{\"cmd\":\"pause\",\"now\":true}\n", "unknown field 'now' for pause"},
        {"{\"cmd\":\"snapshot\"}\n", "snapshot needs \\\"path\\\""},
        {"{\"cmd\":\"snapshot\",\"diff\":false}\n", "snapshot needs \\\"path\\\""},
        {"{\"cmd\":\"snapshot\",\"path\":7}\n", "\\\"path\\\" must be a string"},
        {"{\"cmd\":\"snapshot\",\"path\":\"\"}\n", "must be a non-empty string"},
        {"{\"cmd\":\"snapshot\",\"path\":\"/tmp/a\\u0000b\"}\n", "without NUL bytes"},
        {"{\"cmd\":\"snapshot\",\"path\":\"/tmp/x\",\"diff\":\"yes\"}\n",
         "\\\"diff\\\" must be true or false"},
        {"{\"cmd\":\"migrate\"}\n", "migrate needs \\\"to\\\""},
        {"{\"cmd\":\"migrate\",\"to\":\"ftp:host\"}\n", "must be unix:PATH or tcp:HOST:PORT"},
        {"{\"cmd\":\"migrate\",\"to\":[\"unix:/x\"]}\n", "\\\"to\\\" must be a string"},
        {"{\"cmd\":\"balloon\"}\n", "balloon needs \\\"target_mib\\\""},
        {"{\"cmd\":\"balloon\",\"target_mib\":\"16\"}\n", "must be an integer"},
        {"{\"cmd\":\"balloon\",\"target_mib\":1.5}\n", "must be an integer"},
        {"{\"cmd\":\"balloon\",\"target_mib\":-1}\n", "must be 0 to 128"},
        {"{\"cmd\":\"balloon\",\"target_mib\":129}\n", "must be 0 to 128"},
        {"{\"cmd\":\"balloon\",\"target_mib\":9223372036854775807}\n", "must be 0 to 128"},
        {"{\"cmd\":\"balloon\",\"target_mib\":18446744073709551615}\n", "must be 0 to 128"},
        {"{\"cmd\":\"balloon\",\"target_mib\":99999999999999999999999}\n", "must be 0 to 128"},
        {"{\"cmd\":\"balloon\",\"target_mib\":1e400}\n", "must be an integer"},
    };
    char err[1024];
    char *base = scratch_dir(), *sock = subdir(base, "api");
    struct proc p;
    char *argv[] = {VMM_RUN_PATH,  "--kernel",   (char *)harness_guest_path("snapcount"),
                    "--transport", "mmio",       "--rng",
                    "--balloon",   "--api-sock", sock,
                    NULL};
    spawn(&p, argv);
    proc_read(&p, "waiting\n");
    int fd = api_connect(sock);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *line = bad[i].line;
        size_t n = strlen(line);
        if (strcmp(bad[i].error, "a NUL byte") == 0)
            n += 2; /* the "\0\n" after it */
        ck_assert_int_eq(send(fd, line, n, MSG_NOSIGNAL), (ssize_t)n);
        const char *answer = api(fd, "");
        ck_assert_msg(starts(answer, API_ERR) && strstr(answer, bad[i].error) &&
                          !strchr(answer, '\n'),
                      "request %zu: %s answered %s", i, line, answer);
    }
    /* Nothing of that paused the VM or set the balloon. */
    const char *answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(starts(answer,
                         "{\"ok\":true,\"state\":\"running\",\"vcpus\":1,\"memory_mib\":128,"
                         "\"balloon\":{\"target_mib\":0,"),
                  "answer: %s", answer);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"balloon\",\"target_mib\":16}\n"),
                     "{\"ok\":true,\"target_mib\":16}");
    answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(strstr(answer, "\"balloon\":{\"target_mib\":16,\"actual_mib\":0,"), "answer: %s",
                  answer);

    /* 1 MiB without a newline: an error and the connection closed (the
     * rest of the line may meet a reset), or closed outright. */
    static char huge[1 << 20];
    memset(huge, ' ', sizeof(huge));
    size_t sent = 0;
    while (sent < sizeof(huge)) {
        ssize_t r = send(fd, huge + sent, sizeof(huge) - sent, MSG_NOSIGNAL);
        if (r <= 0)
            break;
        sent += (size_t)r;
    }
    char reply[512] = "";
    size_t len = 0;
    for (ssize_t r;
         len < sizeof(reply) - 1 && (r = recv(fd, reply + len, sizeof(reply) - 1 - len, 0)) > 0;)
        len += (size_t)r;
    ck_assert_msg(len == 0 ||
                      strcmp(reply, API_ERR "request longer than 8191 bytes: closing\"}\n") == 0,
                  "reply: %s", reply);
    close(fd);

    /* The VM goes on, and a new connection is served. */
    ck_assert_int_eq(write(p.in, "q", 1), 1);
    proc_read(&p, "waiting\n");
    fd = api_connect(sock);
    answer = api(fd, "{\"cmd\":\"stats\"}\n");
    ck_assert_msg(strstr(answer, "\"state\":\"running\""), "answer: %s", answer);
    ck_assert_str_eq(api(fd, "{\"cmd\":\"stop\"}\n"), API_OK);
    close(fd);
    proc_read(&p, NULL);
    ck_assert_int_ne(proc_wait(&p, err, sizeof(err)), 0);
    ck_assert_msg(!strstr(err, "seccomp"), "stderr: %s", err);
    rmdir(base);
    free(sock);
    free(base);
}
END_TEST

/* vmm-run to vmm-run: the control socket's migrate command sends the VM to
 * a vmm-run --migrate-listen, which runs it on. */
START_TEST(vmm_run_migrates_to_a_listening_vmm_run)
{
    static char want[4096];
    char err[1024];
    char *base = scratch_dir(), *sock = subdir(base, "api"), *mig = subdir(base, "mig");
    char target[PATH_MAX + 8];
    if (_i == 0)
        snprintf(target, sizeof(target), "unix:%s", mig);
    else
        snprintf(target, sizeof(target), "tcp:127.0.0.1:%d", 20000 + getpid() % 20000);
    struct proc src, dst;
    char *dst_argv[] = {VMM_RUN_PATH, "--migrate-listen", target, NULL};
    spawn(&dst, dst_argv);
    char *src_argv[] = {VMM_RUN_PATH,  "--kernel", (char *)harness_guest_path("snapcount"),
                        "--transport", "mmio",     "--rng",
                        "--api-sock",  sock,       NULL};
    spawn(&src, src_argv);
    proc_read(&src, "waiting\n");
    int fd = api_connect(sock);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "{\"cmd\":\"migrate\",\"to\":\"%s\"}\n", target);
    /* Until the target listens, the source cannot connect and goes on. */
    const char *answer;
    while (starts(answer = api(fd, cmd), API_ERR "cannot connect")) {
        /* stats tell the failure */
        const char *st = api(fd, "{\"cmd\":\"stats\"}\n");
        ck_assert_msg(strstr(st, "\"migration\":{\"ok\":false,\"error\":\"cannot connect"),
                      "stats: %s", st);
        usleep(20000);
    }
    ck_assert_msg(starts(answer, "{\"ok\":true,\"rounds\":") && strstr(answer, "\"downtime_us\":"),
                  "answer: %s", answer);
    close(fd);
    proc_read(&src, NULL);
    ck_assert_msg(proc_wait(&src, err, sizeof(err)) == 0, "stderr: %s", err);
    ck_assert_msg(strstr(err, "migrated the VM") && strstr(err, "stopped"), "stderr: %s", err);

    ck_assert_int_eq(write(dst.in, "ab", 2), 2);
    proc_read(&dst, NULL);
    ck_assert_msg(proc_wait(&dst, err, sizeof(err)) == 0, "stderr: %s", err);
    expected(want, sizeof(want), 1, "ab");
    ck_assert_str_eq(dst.output, want);
    rmdir(base);
    free(sock);
    free(mig);
    free(base);
}
END_TEST

/* The seccomp filter of a thread of this process named name: the Seccomp
 * line of its status (2: filtered), or -1 when no such thread runs. */
static int thread_seccomp_mode(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int mode = -1;
    for (struct dirent *e; mode < 0 && (e = readdir(d));) {
        char path[300], comm[32] = "", line[128];
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool match = fgets(comm, sizeof(comm), f) && strncmp(comm, name, strlen(name)) == 0 &&
                     comm[strlen(name)] == '\n';
        fclose(f);
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        if (!match || !(f = fopen(path, "r")))
            continue;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "Seccomp: %d", &mode) == 1)
                break;
        fclose(f);
    }
    closedir(d);
    return mode;
}

/* A VMM_RESTORE_UFFD restore under vmm_vm_set_seccomp (killing filters, set
 * before the restore: vmm-run's order, set after it, is in
 * vmm_run_saves_on_a_signal_and_restores): the fault thread filters itself
 * before the restore returns, serves the guest's faults and its prefetch
 * within VMM_SECCOMP_UFFD's list, and the guest goes on as after any
 * restore. */
START_TEST(uffd_restore_runs_under_its_own_filter)
{
    static char want[4096];
    char *base = scratch_dir(), *a = subdir(base, "a");
    struct harness h;
    make_vm(&h, chip(0), 1);
    run_and_snapshot(&h, a);
    harness_fini(&h);
    expected(want, sizeof(want), 1, "cd");

    make_vm(&h, chip(0), 1);
    struct vmm_seccomp_config kill = VMM_INIT(struct vmm_seccomp_config);
    ck_assert_int_eq(vmm_vm_set_seccomp(h.vm, &kill), 0);
    restore(&h, a, VMM_RESTORE_UFFD);
    /* Still copying 64 MiB ahead (or done already, then gone): filtered. */
    int mode = thread_seccomp_mode("vmm-uffd");
    ck_assert_msg(mode == 2 || mode == -1, "the fault thread's Seccomp mode: %d", mode);
    send_input(&h, "cd");
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0, "exit %s: %s",
                  vmm_exit_reason_name(h.exit.reason), h.output);
    ck_assert_str_eq(h.output, want);
    harness_fini(&h);
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(base);
}
END_TEST

/* ---- virtio-pci ---- */

/* What the virtio_pci_snap guest prints from round `from` on, with
 * `inputs` the bytes sent before rounds 1 and 2. */
static void pci_expected(char *out, size_t size, unsigned from, const char *inputs)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned round = from; round < 3; round++) {
        if (round)
            len += (size_t)snprintf(out + len, size - len, "got %c\n", inputs[round - 1]);
        for (unsigned k = round * 4; k < round * 4 + 4; k++)
            len += (size_t)snprintf(out + len, size - len, "request %u: %u MSI-X interrupts\n", k,
                                    k + 1);
        if (round < 2)
            len += (size_t)snprintf(out + len, size - len, "waiting\n");
    }
    snprintf(out + len, size - len, "virtio_pci_snap ok: 12 requests, 12 MSI-X interrupts\n");
}

/* The guest's VM: the harness's devices, a root complex and the entropy
 * device as a virtio-pci function. */
static struct vmm_virtio_pci *make_pci_vm(struct harness *h, enum vmm_irqchip irqchip)
{
    harness_init(h, irqchip, 64);
    struct vmm_pci_bus *bus;
    ck_assert_int_eq(vmm_vm_add_pci(h->vm, NULL, &bus), 0);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    ck_assert_int_eq(vmm_virtio_rng_create(NULL, &dev), 0);
    struct vmm_virtio_pci *vp;
    ck_assert_int_eq(vmm_virtio_pci_add(bus, NULL, &dev, &vp), 0);
    harness_load_guest(h, "virtio_pci_snap", 1);
    return vp;
}

/* A guest driving a virtio-pci device with MSI-X is saved between
 * requests, restored in a new VM, saved again and restored again (and
 * cloned from the first snapshot): its
 * BAR stays where it moved it (notifications still caught by ioeventfds,
 * never an exit), and every completion still comes as one MSI-X
 * interrupt. A VM without PCI refuses the snapshot. */
START_TEST(virtio_pci_goes_on_after_restore)
{
    static char want[4096], got[8192];
    char *base = scratch_dir(), *a = subdir(base, "a"), *b = subdir(base, "b");
    struct harness h1, h2, h3;
    make_pci_vm(&h1, chip(_i));
    run_and_snapshot(&h1, a);
    harness_fini(&h1);

    struct vmm_virtio_pci *vp = make_pci_vm(&h2, chip(_i));
    restore(&h2, a, VMM_RESTORE_EAGER);
    send_input(&h2, "p");
    run_and_snapshot(&h2, b);
    snprintf(got, sizeof(got), "%s", h2.output);
    struct vmm_virtio_pci_stats st = VMM_INIT(struct vmm_virtio_pci_stats);
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), 0);
    ck_assert_uint_eq(st.notify_exits, 0);
    ck_assert_uint_eq(st.msix_interrupts, 4);
    ck_assert_uint_eq(st.intx_interrupts, 0);
    ck_assert_uint_eq(st.status, 0xf);
    harness_fini(&h2);

    vp = make_pci_vm(&h3, chip(_i));
    restore(&h3, b, VMM_RESTORE_LAZY);
    send_input(&h3, "q");
    harness_run(&h3);
    strncat(got, h3.output, sizeof(got) - strlen(got) - 1);
    ck_assert_msg(h3.exit.reason == VMM_EXIT_GUEST_EXIT && h3.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h3.exit.reason), h3.exit.status,
                  h3.output);
    st = VMM_INIT(struct vmm_virtio_pci_stats);
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), 0);
    ck_assert_uint_eq(st.notify_exits, 0);
    ck_assert_uint_eq(st.msix_interrupts, 4);
    harness_fini(&h3);
    pci_expected(want, sizeof(want), 1, "pq");
    ck_assert_str_eq(got, want);

    /* A clone of the first snapshot (its memory mapped copy-on-write) runs
     * on its own to the end. */
    make_pci_vm(&h3, chip(_i));
    restore(&h3, a, VMM_RESTORE_LAZY);
    send_input(&h3, "cd");
    harness_run(&h3);
    ck_assert_msg(h3.exit.reason == VMM_EXIT_GUEST_EXIT && h3.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(h3.exit.reason), h3.exit.status,
                  h3.output);
    pci_expected(want, sizeof(want), 1, "cd");
    ck_assert_str_eq(h3.output, want);
    harness_fini(&h3);

    /* The snapshot has a root complex and a function the MMIO VM lacks. */
    struct harness h;
    make_vm(&h, chip(_i), 1);
    ck_assert_int_eq(vmm_vm_restore(h.vm, a, NULL), -EINVAL);
    harness_fini(&h);

    remove_snapshot(a);
    remove_snapshot(b);
    rmdir(base);
    free(a);
    free(b);
    free(base);
}
END_TEST

/* The virtio-pci guest moves between two VMs while it makes requests, and
 * goes on on the other side with its MSI-X interrupts. */
START_TEST(virtio_pci_migrates_while_working)
{
    static char want[4096], got[8192];
    struct harness src, dst;
    make_pci_vm(&src, chip(_i));
    struct vmm_virtio_pci *vp = make_pci_vm(&dst, chip(_i));
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pthread_t run, recv_thread;
    ck_assert_int_eq(pthread_create(&run, NULL, run_main, &src), 0);
    read_until(&src, "waiting\n");
    src.output_len = 0;
    src.output[0] = '\0';
    send_input(&src, "m");
    struct target t = {.h = &dst, .fd = sv[1]};
    ck_assert_int_eq(pthread_create(&recv_thread, NULL, receive_main, &t), 0);
    ck_assert_int_eq(vmm_vm_migrate_send(src.vm, sv[0], NULL), 0);
    ck_assert_int_eq(pthread_join(recv_thread, NULL), 0);
    ck_assert_int_eq(t.ret, 0);
    vmm_vm_stop(src.vm);
    ck_assert_int_eq(pthread_join(run, NULL), 0);
    ssize_t n;
    while ((n = read(src.console[0], src.output + src.output_len,
                     sizeof(src.output) - 1 - src.output_len)) > 0)
        src.output_len += (size_t)n;
    src.output[src.output_len] = '\0';
    snprintf(got, sizeof(got), "%s", src.output);
    send_input(&dst, "n");
    harness_run(&dst);
    ck_assert_msg(dst.exit.reason == VMM_EXIT_GUEST_EXIT && dst.exit.status == 0,
                  "exit %s status %d: %s", vmm_exit_reason_name(dst.exit.reason), dst.exit.status,
                  dst.output);
    strncat(got, dst.output, sizeof(got) - strlen(got) - 1);
    pci_expected(want, sizeof(want), 1, "mn");
    ck_assert_str_eq(got, want);
    struct vmm_virtio_pci_stats st = VMM_INIT(struct vmm_virtio_pci_stats);
    ck_assert_int_eq(vmm_virtio_pci_get_stats(vp, &st), 0);
    ck_assert_uint_eq(st.notify_exits, 0);
    ck_assert_uint_gt(st.msix_interrupts, 0);
    harness_fini(&src);
    harness_fini(&dst);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* A PCI function whose state the library cannot know (an application's
 * model; a VFIO device is refused the same way) refuses the snapshot. */
START_TEST(foreign_pci_function_refuses_a_snapshot)
{
    char *base = scratch_dir(), *a = subdir(base, "a");
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    struct vmm_pci_bus *bus;
    ck_assert_int_eq(vmm_vm_add_pci(h.vm, NULL, &bus), 0);
    struct vmm_pci_device own =
        VMM_INIT(struct vmm_pci_device, .vendor_id = 0x1234, .device_id = 0x5053, .name = "own");
    ck_assert_int_eq(vmm_pci_add_device(bus, &own, NULL), 0);
    harness_load_guest(&h, "hello", 1);
    ck_assert_int_eq(vmm_vm_snapshot(h.vm, a, NULL), -ENOTSUP);
    harness_fini(&h);
    rmdir(a);
    rmdir(base);
    free(a);
    free(base);
}
END_TEST

START_TEST(vmm_run_restores_a_pci_snapshot)
{
    static char want[4096];
    char err[1024];
    char *base = scratch_dir(), *a = subdir(base, "a");
    struct proc p;
    /* virtio-pci is vmm-run's default transport. */
    char *save_argv[] = {VMM_RUN_PATH, "--kernel", (char *)harness_guest_path("virtio_pci_snap"),
                         "--rng",      "--save",   a,
                         NULL};
    spawn(&p, save_argv);
    proc_read(&p, "waiting\n");
    ck_assert_int_eq(kill(p.pid, SIGUSR1), 0);
    proc_read(&p, NULL);
    ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
    assert_transport_line(a, "transport=pci\n");

    char *restore_argv[] = {VMM_RUN_PATH, "--restore", a, NULL};
    spawn(&p, restore_argv);
    ck_assert_int_eq(write(p.in, "rs", 2), 2);
    proc_read(&p, NULL);
    ck_assert_msg(proc_wait(&p, err, sizeof(err)) == 0, "stderr: %s", err);
    ck_assert_str_eq(err, "");
    pci_expected(want, sizeof(want), 1, "rs");
    ck_assert_str_eq(p.output, want);

    /* The transport comes from the snapshot. */
    char *with_transport[] = {VMM_RUN_PATH, "--restore", a, "--transport", "mmio", NULL};
    spawn(&p, with_transport);
    ck_assert_int_eq(proc_wait(&p, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "drop --transport") && strchr(err, '\n')[1] == '\0', "stderr: %s",
                  err);
    remove_snapshot(a);
    rmdir(base);
    free(a);
    free(base);
}
END_TEST

static Suite *snapshot_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("kvm");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, snapshot_restore_continues_where_it_stopped, 0, 2);
    tcase_add_loop_test(tc, clones_run_independently, 0, 2);
    tcase_add_loop_test(tc, diff_snapshot_equals_a_full_one, 0, 2);
    tcase_add_loop_test(tc, standalone_diff_restores_like_a_full_one, 0, 2);
    tcase_add_loop_test(tc, migration_moves_a_running_vm, 0, 2);
    tcase_add_test(tc, migration_target_refuses_malformed_streams);
    tcase_add_loop_test(tc, migration_hands_memfds_over, 0, 2);
    tcase_add_loop_test(tc, migration_survives_a_target_that_vanishes, 0, 2);
    tcase_add_test(tc, bad_snapshots_are_refused);
    tcase_add_test(tc, app_data_round_trips);
    tcase_add_test(tc, uffd_restore_runs_under_its_own_filter);
    tcase_add_test(tc, vmm_run_saves_on_a_signal_and_restores);
    tcase_add_test(tc, control_socket_pauses_snapshots_and_resumes);
    tcase_add_test(tc, control_socket_refuses_malformed_requests);
    tcase_add_test(tc, vmm_run_snapshots_a_balloon);
    tcase_add_test(tc, vmm_run_keeps_the_memory_backing_in_a_snapshot);
    tcase_add_loop_test(tc, vmm_run_migrates_to_a_listening_vmm_run, 0, 2);
    tcase_add_loop_test(tc, virtio_pci_goes_on_after_restore, 0, 2);
    tcase_add_loop_test(tc, virtio_pci_migrates_while_working, 0, 2);
    tcase_add_test(tc, foreign_pci_function_refuses_a_snapshot);
    tcase_add_test(tc, vmm_run_restores_a_pci_snapshot);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vmm_test_require_kvm();
    return vmm_test_run_suite(snapshot_suite());
}
