/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_function: function VMs (vmm/function.h) against the raw-KVM floor,
 * running the same guest image (fn_test.elf, the fnrt test guest) both ways.
 *
 * cold: vmm_fn_create + one call + vmm_fn_destroy, against the floor's
 *       create VM, load the ELF segments, enter long mode, KVM_RUN to the
 *       guest's READY, write the call into IN, KVM_RUN to its RETURN, destroy.
 * warm: one vmm_fn_call (call, then reset to the snapshot) on a ready VM,
 *       against the floor's same call on a ready raw VM: write IN, KVM_SET_REGS
 *       back to the READY state, KVM_RUN to RETURN, then the reset of the pages
 *       it dirtied (KVM_GET_DIRTY_LOG and a copy of each from a snapshot). A
 *       bare exit round trip (KVM_RUN on `out` in a loop) is printed beside it.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"

#define MEM               (4ull << 20)
#define DEFAULT_COLD      30
#define DEFAULT_WARM      1000
#define PAGE              4096u
#define EXIT_LOOP_PORT    0x510
#define EXIT_LOOP_PER_RUN 2000

static uint8_t *image;
static size_t image_size;

/* The call both sides make: echo(i:7, s:"function-bench"). */
static const struct vmm_fn_val call_args[] = {VMM_FN_INT_VAL(7),
                                              VMM_FN_BYTES_VAL("function-bench", 14)};
static uint8_t call_msg[256];
static int call_msg_len;

static int read_image(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (1 << 22)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    image_size = (size_t)st.st_size;
    image = malloc(image_size);
    ssize_t n = image ? read(fd, image, image_size) : -1;
    close(fd);
    return n == (ssize_t)image_size ? 0 : -1;
}

/* ---- the floor ---- */

/* Copy the PT_LOAD segments (the image is ours: checked only enough not to
 * write out of bounds) and point the vCPU at the entry. */
static int raw_load(struct raw_kvm *k)
{
    static const uint8_t dummy = 0xf4;
    int r = raw_kvm_boot(k, &dummy, 1);
    if (r < 0)
        return r;
    Elf64_Ehdr eh;
    if (image_size < sizeof(eh))
        return -EINVAL;
    memcpy(&eh, image, sizeof(eh));
    if (eh.e_phoff > image_size || eh.e_phnum > 64 ||
        image_size - eh.e_phoff < (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr))
        return -EINVAL;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_offset > image_size || ph.p_filesz > image_size - ph.p_offset ||
            ph.p_paddr > k->mem_size || ph.p_memsz > k->mem_size - ph.p_paddr)
            return -EINVAL;
        memcpy(k->mem + ph.p_paddr, image + ph.p_offset, ph.p_filesz);
    }
    struct kvm_regs regs = {.rip = eh.e_entry, .rflags = 0x2};
    return ioctl(k->vcpu_fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

/* KVM_RUN until the guest signals op on the function port. */
static int raw_until(struct raw_kvm *k, uint8_t op)
{
    for (;;) {
        int r = raw_kvm_run(k);
        if (r == -EINTR)
            continue;
        if (r != KVM_EXIT_IO || k->run->io.port != VMM_FN_PORT)
            return r < 0 ? r : -EIO;
        uint8_t got = *((uint8_t *)k->run + k->run->io.data_offset);
        return got == op ? 0 : -EIO;
    }
}

static int raw_check_result(struct raw_kvm *k)
{
    struct vmm_fn_val v[4];
    int n = vmm_fn_decode(k->mem + VMM_FN_OUT_ADDR, VMM_FN_OUT_SIZE, v, 4);
    return n == 2 && v[0].i == 7 && v[1].len == 14 ? 0 : -EIO;
}

static int raw_cold(void)
{
    struct raw_kvm k;
    int r = raw_kvm_create(&k, MEM);
    if (r < 0)
        return r;
    if ((r = raw_load(&k)) == 0 && (r = raw_until(&k, VMM_FN_OP_READY)) == 0) {
        memcpy(k.mem + VMM_FN_IN_ADDR, call_msg, (size_t)call_msg_len);
        if ((r = raw_until(&k, VMM_FN_OP_RETURN)) == 0)
            r = raw_check_result(&k);
    }
    raw_kvm_destroy(&k);
    return r;
}

/* A ready raw VM for the warm floor: dirty logging on, a full copy of
 * memory and the registers at READY. */
struct raw_warm {
    struct raw_kvm k;
    uint8_t *snap;
    uint64_t *bitmap;
    struct kvm_regs regs;
    uint64_t pages; /* restored by the last round */
};

static int raw_warm_init(struct raw_warm *w)
{
    int r = raw_kvm_create(&w->k, MEM);
    if (r < 0)
        return r;
    if ((r = raw_load(&w->k)) < 0 || (r = raw_until(&w->k, VMM_FN_OP_READY)) < 0)
        return r;
    /* Let KVM finish the OUT before reading the registers (KVM API:
     * immediate_exit). */
    w->k.run->immediate_exit = 1;
    if (ioctl(w->k.vcpu_fd, KVM_RUN, 0) == 0 || errno != EINTR)
        return -EIO;
    w->k.run->immediate_exit = 0;
    if (ioctl(w->k.vcpu_fd, KVM_GET_REGS, &w->regs) < 0)
        return -errno;
    struct kvm_userspace_memory_region slot = {.slot = 0,
                                               .flags = KVM_MEM_LOG_DIRTY_PAGES,
                                               .memory_size = MEM,
                                               .userspace_addr = (uintptr_t)w->k.mem};
    if (ioctl(w->k.vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        return -errno;
    w->snap = malloc(MEM);
    w->bitmap = calloc(MEM / PAGE / 64, sizeof(uint64_t));
    if (!w->snap || !w->bitmap)
        return -ENOMEM;
    memcpy(w->snap, w->k.mem, MEM);
    struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = w->bitmap};
    return ioctl(w->k.vm_fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
}

static int raw_warm_call(struct raw_warm *w)
{
    memcpy(w->k.mem + VMM_FN_IN_ADDR, call_msg, (size_t)call_msg_len);
    if (ioctl(w->k.vcpu_fd, KVM_SET_REGS, &w->regs) < 0)
        return -errno;
    int r = raw_until(&w->k, VMM_FN_OP_RETURN);
    if (r == 0)
        r = raw_check_result(&w->k);
    /* The reset of what the call dirtied (and the IN the host wrote). */
    memset(w->bitmap, 0, MEM / PAGE / 8);
    struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = w->bitmap};
    if (ioctl(w->k.vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
        return -errno;
    w->bitmap[VMM_FN_IN_ADDR / PAGE / 64] |= 1ull << (VMM_FN_IN_ADDR / PAGE % 64);
    w->pages = 0;
    for (uint64_t p = 0; p < MEM / PAGE; p++) {
        if (w->bitmap[p / 64] & (1ull << (p % 64))) {
            memcpy(w->k.mem + p * PAGE, w->snap + p * PAGE, PAGE);
            w->pages++;
        }
    }
    return r;
}

static void raw_warm_fini(struct raw_warm *w)
{
    raw_kvm_destroy(&w->k);
    free(w->snap);
    free(w->bitmap);
}

/* ns per bare exit round trip: KVM_RUN on `out dx, al` in a loop. */
static double raw_exit_round_trip(void)
{
    /* mov ecx, N; mov dx, port; 1: out dx, al; dec ecx; jnz 1b; out 0xf4, al; hlt */
    uint8_t code[] = {0xb9,
                      0,
                      0,
                      0,
                      0,
                      0x66,
                      0xba,
                      EXIT_LOOP_PORT & 0xff,
                      EXIT_LOOP_PORT >> 8,
                      0xee,
                      0xff,
                      0xc9,
                      0x75,
                      0xfb,
                      0xe6,
                      RAW_EXIT_PORT,
                      0xf4};
    uint32_t n = EXIT_LOOP_PER_RUN;
    memcpy(code + 1, &n, sizeof(n));
    struct raw_kvm k;
    if (raw_kvm_create(&k, MEM) < 0 || raw_kvm_boot(&k, code, sizeof(code)) < 0) {
        raw_kvm_destroy(&k);
        return -1;
    }
    uint64_t exits = 0, t0 = bench_now_ns();
    int r;
    while ((r = raw_kvm_run(&k)) == KVM_EXIT_IO && k.run->io.port == EXIT_LOOP_PORT)
        exits++;
    uint64_t t1 = bench_now_ns();
    raw_kvm_destroy(&k);
    return r == KVM_EXIT_IO && exits == n ? (double)(t1 - t0) / (double)exits : -1;
}

/* ---- libvmm ---- */

static int check_result(const struct vmm_fn_result *res)
{
    return res->count == 2 && res->values[0].i == 7 && res->values[1].len == 14 ? 0 : -EIO;
}

static int lib_cold(void)
{
    struct vmm_fn *fn;
    int r = vmm_fn_create(
        &VMM_INIT(struct vmm_fn_config, .image = image, .image_size = image_size, .mem_size = MEM),
        &fn);
    if (r < 0)
        return r;
    struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
    r = vmm_fn_call(fn, "echo", call_args, 2, 0, &res);
    if (r == 0)
        r = check_result(&res);
    vmm_fn_destroy(fn);
    return r;
}

static void log_to_stderr(void *opaque, enum vmm_log_level level, const char *msg)
{
    fprintf(stderr, "libvmm: %s: %s\n", vmm_log_level_name(level), msg);
}

static const char usage[] = "Usage: %s [--guest FN_TEST.ELF] [--cold N] [--warm N]\n"
                            "Function VMs against the raw-KVM floor on the same guest: cold\n"
                            "(create+call+destroy, N times, default %d) and warm (call with\n"
                            "reset, N times, default %d). Default guest: fn_test.elf of this "
                            "build.\n";

int main(int argc, char **argv)
{
    const char *guest = VMM_BENCH_FN_GUEST;
    unsigned long cold = DEFAULT_COLD, warm = DEFAULT_WARM;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf(usage, argv[0], DEFAULT_COLD, DEFAULT_WARM);
            return 0;
        } else if (!strcmp(argv[i], "--guest") && val) {
            guest = val;
        } else if (!strcmp(argv[i], "--cold") && val) {
            cold = bench_parse_count(val);
        } else if (!strcmp(argv[i], "--warm") && val) {
            warm = bench_parse_count(val);
        } else {
            fprintf(stderr, "bench_function: bad argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
        i++;
    }
    if (cold == 0 || warm == 0 || cold > 100000 || warm > 10000000) {
        fprintf(stderr, "bench_function: bad iteration count\n");
        return 2;
    }
    char why[128];
    if (raw_kvm_probe(why, sizeof(why)) < 0) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    if (read_image(guest) < 0) {
        fprintf(stderr, "bench_function: cannot read the guest %s\n", guest);
        return 1;
    }
    vmm_log_set_handler(log_to_stderr, NULL, VMM_LOG_WARN);
    call_msg_len = vmm_fn_encode(
        call_msg, sizeof(call_msg),
        (const struct vmm_fn_val[]){VMM_FN_BYTES_VAL("echo", 4), call_args[0], call_args[1]}, 3);
    double *a = calloc(cold > warm ? cold : warm, sizeof(double));
    double *b = calloc(cold > warm ? cold : warm, sizeof(double));
    if (call_msg_len < 0 || !a || !b) {
        fprintf(stderr, "bench_function: setup failed\n");
        return 1;
    }

    printf("function: guest %s, %llu MiB, echo(i:7, s:\"function-bench\")\n", guest,
           (unsigned long long)(MEM >> 20));
    /* Cold: interleaved, after one untimed round of each. */
    int r = raw_cold();
    if (r == 0)
        r = lib_cold();
    for (unsigned long i = 0; i < cold && r == 0; i++) {
        for (int pass = 0; pass < 2 && r == 0; pass++) {
            bool lib = (pass == 0) == (i % 2 == 0);
            uint64_t t0 = bench_now_ns();
            r = lib ? lib_cold() : raw_cold();
            (lib ? b : a)[i] = (double)(bench_now_ns() - t0);
        }
    }
    if (r < 0) {
        fprintf(stderr, "bench_function: cold round failed: %s\n", strerror(-r));
        return 1;
    }
    double raw_cold_med = bench_percentile(a, cold, 50),
           lib_cold_med = bench_percentile(b, cold, 50);
    printf("cold: raw create+run+destroy   median %9.1f us  p90 %9.1f us (%lu runs)\n",
           raw_cold_med / 1e3, bench_percentile(a, cold, 90) / 1e3, cold);
    printf("cold: libvmm create+call+destroy median %9.1f us  p90 %9.1f us\n", lib_cold_med / 1e3,
           bench_percentile(b, cold, 90) / 1e3);
    printf("cold: ratio %.2f (target <= 1.5)\n", lib_cold_med / raw_cold_med);

    /* Warm: one ready VM each, calls interleaved in blocks of 10. */
    struct raw_warm w = {0};
    struct vmm_fn *fn = NULL;
    r = raw_warm_init(&w);
    if (r == 0)
        r = vmm_fn_create(&VMM_INIT(struct vmm_fn_config, .image = image, .image_size = image_size,
                                    .mem_size = MEM),
                          &fn);
    struct vmm_fn_result res = VMM_INIT(struct vmm_fn_result);
    for (int i = 0; i < 20 && r == 0; i++) {
        r = raw_warm_call(&w);
        if (r == 0)
            r = vmm_fn_call(fn, "echo", call_args, 2, 0, &res);
    }
    for (unsigned long i = 0; i < warm && r == 0; i += 10) {
        for (int pass = 0; pass < 2 && r == 0; pass++) {
            bool lib = (pass == 0) == (i % 20 == 0);
            for (unsigned long j = i; j < i + 10 && j < warm && r == 0; j++) {
                uint64_t t0 = bench_now_ns();
                if (lib) {
                    r = vmm_fn_call(fn, "echo", call_args, 2, 0, &res);
                    if (r == 0)
                        r = check_result(&res);
                } else {
                    r = raw_warm_call(&w);
                }
                (lib ? b : a)[j] = (double)(bench_now_ns() - t0);
            }
        }
    }
    struct vmm_fn_stats st = VMM_INIT(struct vmm_fn_stats);
    if (fn)
        (void)vmm_fn_get_stats(fn, &st);
    vmm_fn_destroy(fn);
    uint64_t raw_pages = w.pages;
    raw_warm_fini(&w);
    if (r < 0) {
        fprintf(stderr, "bench_function: warm round failed: %s\n", strerror(-r));
        return 1;
    }
    double rt = raw_exit_round_trip();
    double raw_warm_med = bench_percentile(a, warm, 50),
           lib_warm_med = bench_percentile(b, warm, 50);
    printf("warm: bare exit round trip (KVM_RUN on `out`)  %9.2f us\n", rt / 1e3);
    printf("warm: raw call + page reset  median %9.2f us  p90 %9.2f us (%lu calls, %llu pages "
           "restored per call)\n",
           raw_warm_med / 1e3, bench_percentile(a, warm, 90) / 1e3, warm,
           (unsigned long long)raw_pages);
    printf("warm: libvmm vmm_fn_call     median %9.2f us  p90 %9.2f us (%llu pages restored per "
           "call, %llu in the snapshot)\n",
           lib_warm_med / 1e3, bench_percentile(b, warm, 90) / 1e3,
           (unsigned long long)st.last_pages_restored, (unsigned long long)st.snapshot_pages);
    printf("warm: ratio %.2f against the raw call + page reset (target <= 1.2)\n",
           lib_warm_med / raw_warm_med);
    free(a);
    free(b);
    free(image);
    return 0;
}
