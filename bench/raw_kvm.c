/* SPDX-License-Identifier: Apache-2.0 */
/* The raw-KVM floor: the fewest ioctls that run a 64-bit guest with a split
 * irqchip, written against the KVM API document only; plus bench helpers. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_kvm.h"

const uint8_t bench_exit_guest[5] = {0xb0, 0x00, 0xe6, RAW_EXIT_PORT, 0xf4};

static int xioctl(int fd, unsigned long req, unsigned long arg)
{
    int r;
    do {
        r = ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int raw_kvm_probe(char *why, size_t n)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        snprintf(why, n, "cannot open /dev/kvm: %s", strerror(errno));
        return err;
    }
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (v != KVM_API_VERSION) {
        snprintf(why, n, "/dev/kvm speaks API version %d, not %d", v, KVM_API_VERSION);
        return -ENOTSUP;
    }
    return 0;
}

static enum raw_thp thp_mode = RAW_THP_HOST;

void raw_kvm_set_thp(enum raw_thp mode)
{
    thp_mode = mode;
}

/* Guest memory as thp_mode says; for RAW_THP_ON 2 MiB-aligned (a larger
 * reservation trimmed), so that every 2 MiB of it can be one huge page. */
static int map_guest(struct raw_kvm *k, size_t mem_size)
{
    const size_t huge = 2u << 20;
    size_t span = mem_size + (thp_mode == RAW_THP_ON ? huge : 0);
    uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    if (thp_mode == RAW_THP_ON) {
        uint8_t *a = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
        if (a > p)
            munmap(p, (size_t)(a - p));
        if (a + mem_size < p + span)
            munmap(a + mem_size, (size_t)(p + span - (a + mem_size)));
        p = a;
    }
    k->mem = p;
    k->mem_size = mem_size;
    if (thp_mode != RAW_THP_HOST &&
        madvise(p, mem_size, thp_mode == RAW_THP_ON ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
        return -errno;
    return 0;
}

int raw_kvm_create(struct raw_kvm *k, size_t mem_size)
{
    *k = (struct raw_kvm){
        .kvm_fd = -1, .vm_fd = -1, .vcpu_fd = -1, .run = MAP_FAILED, .mem = MAP_FAILED};
    int r;
    k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k->kvm_fd < 0) {
        r = -errno;
        goto fail;
    }
    r = xioctl(k->kvm_fd, KVM_CREATE_VM, 0);
    if (r < 0)
        goto fail;
    k->vm_fd = r;

    /* Local APICs in the kernel, IOAPIC/PIC left to userspace; must come
     * before any vCPU exists. */
    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {RAW_IOAPIC_PIN}};
    r = xioctl(k->vm_fd, KVM_ENABLE_CAP, (unsigned long)&cap);
    if (r < 0)
        goto fail;

    r = map_guest(k, mem_size);
    if (r < 0)
        goto fail;
    struct kvm_userspace_memory_region slot = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = mem_size,
        .userspace_addr = (uintptr_t)k->mem,
    };
    r = xioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, (unsigned long)&slot);
    if (r < 0)
        goto fail;

    r = xioctl(k->vm_fd, KVM_CREATE_VCPU, 0);
    if (r < 0)
        goto fail;
    k->vcpu_fd = r;
    r = xioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r < (int)sizeof(struct kvm_run)) {
        r = r < 0 ? r : -EINVAL;
        goto fail;
    }
    k->run_size = (size_t)r;
    k->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu_fd, 0);
    if (k->run == MAP_FAILED) {
        r = -errno;
        goto fail;
    }
    return 0;
fail:
    raw_kvm_destroy(k);
    return r;
}

void raw_kvm_destroy(struct raw_kvm *k)
{
    if (k->run != MAP_FAILED && k->run)
        munmap(k->run, k->run_size);
    if (k->vcpu_fd >= 0)
        close(k->vcpu_fd);
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    /* The slot goes with the VM fd; only then may its memory go. */
    if (k->mem != MAP_FAILED && k->mem)
        munmap(k->mem, k->mem_size);
    if (k->kvm_fd >= 0)
        close(k->kvm_fd);
    *k = (struct raw_kvm){
        .kvm_fd = -1, .vm_fd = -1, .vcpu_fd = -1, .run = MAP_FAILED, .mem = MAP_FAILED};
}

/* Page-table entry bits and control-register bits (Intel SDM vol. 3). */
#define PTE_PRESENT  0x1ull
#define PTE_WRITE    0x2ull
#define PTE_LARGE    0x80ull
#define CR0_PE_BIT   0x1ull
#define CR0_ET_BIT   0x10ull
#define CR0_PG_BIT   0x80000000ull
#define CR4_PAE_BIT  0x20ull
#define EFER_LME_BIT 0x100ull
#define EFER_LMA_BIT 0x400ull

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
    memcpy(mem + gpa, &v, sizeof(v));
}

static struct kvm_segment flat(uint16_t sel, uint8_t type, int code)
{
    return (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = sel,
        .type = type,
        .present = 1,
        .s = 1,
        .l = code ? 1 : 0,
        .db = code ? 0 : 1,
        .g = 1,
    };
}

int raw_kvm_boot(struct raw_kvm *k, const void *code, size_t len)
{
    if (k->mem_size < RAW_CODE + len || k->mem_size < (1u << 21))
        return -EINVAL;
    /* GDT: null, 64-bit code at 0x08, data at 0x10 (descriptor bit layout:
     * limit 0xfffff, G, and L for code / D/B for data). */
    put64(k->mem, RAW_GDT, 0);
    put64(k->mem, RAW_GDT + 8, 0x00af9a000000ffffull);
    put64(k->mem, RAW_GDT + 16, 0x00cf92000000ffffull);
    /* Identity-map the first GiB with 2 MiB pages: PML4 -> PDPT -> PD. The
     * pages were never touched, so unlisted entries read as zero. */
    put64(k->mem, RAW_PML4, RAW_PDPT | PTE_PRESENT | PTE_WRITE);
    put64(k->mem, RAW_PDPT, RAW_PD | PTE_PRESENT | PTE_WRITE);
    for (uint64_t i = 0; i < 512; i++)
        put64(k->mem, RAW_PD + 8 * i, (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE);
    memcpy(k->mem + RAW_CODE, code, len);

    struct kvm_sregs s;
    int r = xioctl(k->vcpu_fd, KVM_GET_SREGS, (unsigned long)&s);
    if (r < 0)
        return r;
    s.cs = flat(0x08, 0xb, 1);
    s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 0x3, 0);
    s.gdt.base = RAW_GDT;
    s.gdt.limit = 3 * 8 - 1;
    s.cr3 = RAW_PML4;
    s.cr4 = CR4_PAE_BIT;
    s.cr0 = CR0_PE_BIT | CR0_ET_BIT | CR0_PG_BIT;
    s.efer = EFER_LME_BIT | EFER_LMA_BIT;
    r = xioctl(k->vcpu_fd, KVM_SET_SREGS, (unsigned long)&s);
    if (r < 0)
        return r;
    struct kvm_regs regs = {.rip = RAW_CODE, .rflags = 0x2};
    return xioctl(k->vcpu_fd, KVM_SET_REGS, (unsigned long)&regs);
}

int raw_kvm_run(struct raw_kvm *k)
{
    int r = xioctl(k->vcpu_fd, KVM_RUN, 0);
    return r < 0 ? r : (int)k->run->exit_reason;
}

int raw_kvm_one_shot(size_t mem_size, const void *code, size_t len)
{
    struct raw_kvm k;
    int r = raw_kvm_create(&k, mem_size);
    if (r < 0)
        return r;
    r = raw_kvm_boot(&k, code, len);
    while (r == 0) {
        r = raw_kvm_run(&k);
        if (r == KVM_EXIT_IO && k.run->io.port == RAW_EXIT_PORT) {
            r = 0;
            break;
        }
        if (r >= 0)
            r = r == KVM_EXIT_IO ? 0 : -EIO;
    }
    raw_kvm_destroy(&k);
    return r;
}

/* ---- helpers ---- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    if (p == 50 && n % 2 == 0)
        return (v[n / 2 - 1] + v[n / 2]) / 2;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

int bench_write_tiny_elf(const uint8_t *code, size_t len, char *path, size_t n)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    if ((size_t)snprintf(path, n, "%s/vmm-bench-guest-XXXXXX", dir) >= n)
        return -ENAMETOOLONG;
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;

    /* The segment maps the whole file (headers included), so the entry is
     * the code right after the headers. */
    const uint64_t hdrs = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    Elf64_Ehdr eh = {
        .e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
                    ELFOSABI_SYSV},
        .e_type = ET_EXEC,
        .e_machine = EM_X86_64,
        .e_version = EV_CURRENT,
        .e_entry = RAW_CODE + hdrs,
        .e_phoff = sizeof(Elf64_Ehdr),
        .e_ehsize = sizeof(Elf64_Ehdr),
        .e_phentsize = sizeof(Elf64_Phdr),
        .e_phnum = 1,
    };
    Elf64_Phdr ph = {
        .p_type = PT_LOAD,
        .p_flags = PF_R | PF_X,
        .p_offset = 0,
        .p_vaddr = RAW_CODE,
        .p_paddr = RAW_CODE,
        .p_filesz = hdrs + len,
        .p_memsz = hdrs + len,
        .p_align = 0x1000,
    };
    uint8_t buf[512];
    if (hdrs + len > sizeof(buf)) {
        close(fd);
        unlink(path);
        return -E2BIG;
    }
    memcpy(buf, &eh, sizeof(eh));
    memcpy(buf + sizeof(eh), &ph, sizeof(ph));
    memcpy(buf + hdrs, code, len);
    ssize_t w = write(fd, buf, hdrs + len);
    int err = w == (ssize_t)(hdrs + len) ? 0 : (w < 0 ? -errno : -EIO);
    if (close(fd) < 0 && err == 0)
        err = -errno;
    if (err)
        unlink(path);
    return err;
}

int bench_spawn(char *const argv[], int quiet_stderr, uint64_t *wall_ns, struct rusage *ru,
                int *status)
{
    /* Buffered output must not be written twice, by parent and child. */
    fflush(stdout);
    fflush(stderr);
    uint64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            if (quiet_stderr)
                dup2(null, STDERR_FILENO);
            close(null);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    pid_t w;
    do {
        w = wait4(pid, status, 0, ru);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    *wall_ns = bench_now_ns() - t0;
    return 0;
}

const char *bench_status_str(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, n, "status 0x%x", status);
    return buf;
}

unsigned long bench_parse_count(const char *s)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end)
        return 0;
    return v;
}

int bench_process_setup(const char *prog, const char **guest, char *tmp, size_t tmp_len, char *self,
                        size_t self_len)
{
    if (!*guest) {
        int r = bench_write_tiny_elf(bench_exit_guest, sizeof(bench_exit_guest), tmp, tmp_len);
        if (r < 0) {
            fprintf(stderr, "%s: cannot write a guest ELF: %s\n", prog, strerror(-r));
            return -1;
        }
        *guest = tmp;
    }
    ssize_t sl = readlink("/proc/self/exe", self, self_len - 1);
    if (sl < 0) {
        fprintf(stderr, "%s: /proc/self/exe: %s\n", prog, strerror(errno));
        return -1;
    }
    self[sl] = '\0';
    return 0;
}

int bench_spawn_ok(char *const argv[], const char *prog, const char *what, unsigned long i,
                   uint64_t *wall_ns, struct rusage *ru)
{
    int status;
    char buf[32];
    int r = bench_spawn(argv, 0, wall_ns, ru, &status);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: %s run %lu failed: %s\n", prog, what, i + 1,
                r < 0 ? strerror(-r) : bench_status_str(status, buf, sizeof(buf)));
        return -1;
    }
    return 0;
}
