/* SPDX-License-Identifier: Apache-2.0 */
/* The raw-KVM floor the benchmarks compare libvmm against: bare ioctls, no
 * library code, and the small helpers (timing, stats, spawning) they share. */
#ifndef BENCH_RAW_KVM_H
#define BENCH_RAW_KVM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

/* Guest-physical layout of the floor's boot structures and code. */
#define RAW_GDT        0x1000ull
#define RAW_PML4       0x2000ull
#define RAW_PDPT       0x3000ull
#define RAW_PD         0x4000ull /* one page: the first 1 GiB with 2 MiB pages */
#define RAW_CODE       0x100000ull
#define RAW_EXIT_PORT  0xf4 /* the port the benchmark guests end on (libvmm's exit port) */
#define RAW_IOAPIC_PIN 24   /* pins asked for with KVM_CAP_SPLIT_IRQCHIP, as libvmm does */

/* One VM with one vCPU and one anonymous memory slot at gpa 0. */
struct raw_kvm {
    int kvm_fd;
    int vm_fd;
    int vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;
    size_t mem_size;
};

/* What the floor asks of transparent huge pages for its guest memory:
 * nothing (the host's default), MADV_NOHUGEPAGE (what libvmm asks without
 * VMM_MEMORY_F_THP), or MADV_HUGEPAGE on a 2 MiB-aligned mapping (what it
 * does with the flag). For the next raw_kvm_create calls of this process. */
enum raw_thp { RAW_THP_HOST, RAW_THP_OFF, RAW_THP_ON };
void raw_kvm_set_thp(enum raw_thp mode);

/* Open /dev/kvm, create the VM with a split irqchip, map mem_size bytes of
 * anonymous memory as slot 0, create vCPU 0. Returns 0 or -errno (nothing is
 * left open on failure). */
int raw_kvm_create(struct raw_kvm *k, size_t mem_size);

/* Write identity page tables, a flat GDT and code (at RAW_CODE) into guest
 * memory and put the vCPU in 64-bit long mode at RAW_CODE. Returns 0/-errno. */
int raw_kvm_boot(struct raw_kvm *k, const void *code, size_t len);

/* One KVM_RUN; returns the KVM exit reason or -errno. */
int raw_kvm_run(struct raw_kvm *k);

/* Close and unmap everything. Accepts a zeroed or failed struct. */
void raw_kvm_destroy(struct raw_kvm *k);

/* 0 when /dev/kvm can be opened and speaks API 12; else -errno with a
 * reason in why. */
int raw_kvm_probe(char *why, size_t n);

/* The whole floor once: create (mem_size), boot code, run until the OUT to
 * RAW_EXIT_PORT, destroy. Returns 0, or -errno / -EIO (unexpected exit). */
int raw_kvm_one_shot(size_t mem_size, const void *code, size_t len);

/* The guest every startup/RSS benchmark runs: mov al,0; out 0xf4,al; hlt. */
extern const uint8_t bench_exit_guest[5];

/* ---- helpers shared by the benchmark programs ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* Sort v[0..n) in place and return the p-th percentile (0..100, nearest
 * rank). p = 50 is the median. */
double bench_percentile(double *v, size_t n, double p);

/* Write a minimal static ELF64 x86-64 executable with one R+X PT_LOAD at
 * RAW_CODE whose entry is code, into a new temporary file. Returns 0 and the
 * path in path (size n), or -errno. The caller unlinks it. */
int bench_write_tiny_elf(const uint8_t *code, size_t len, char *path, size_t n);

/* For the whole-process benchmarks: when *guest is NULL, write the tiny exit
 * guest to a temp file (path in tmp, to unlink) and point *guest at it; put
 * this program's own path in self (for its --raw-process floor). Prints why
 * and returns -1 on failure. */
int bench_process_setup(const char *prog, const char **guest, char *tmp, size_t tmp_len, char *self,
                        size_t self_len);

/* fork/exec argv[0] with stdout (and stderr when quiet_stderr) on
 * /dev/null, wait for it with wait4. Fills the wall time from fork to reap,
 * the child's resource usage and its wait status. Returns 0 or -errno. */
int bench_spawn(char *const argv[], int quiet_stderr, uint64_t *wall_ns, struct rusage *ru,
                int *status);

/* bench_spawn that must succeed: on a spawn failure or a non-zero exit it
 * prints "PROG: WHAT run N failed: why" and returns -1. */
int bench_spawn_ok(char *const argv[], const char *prog, const char *what, unsigned long i,
                   uint64_t *wall_ns, struct rusage *ru);

/* Describe a wait status ("exit 0", "signal 9") into buf. */
const char *bench_status_str(int status, char *buf, size_t n);

/* Parse a positive decimal count; 0 on malformed input. */
unsigned long bench_parse_count(const char *s);

#endif /* BENCH_RAW_KVM_H */
