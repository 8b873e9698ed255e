/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_loader: load and describe a Linux guest (vmm_linux_boot_setup: a
 * 60 MiB vmlinux-like ELF with a PVH note, a 10 MiB initrd, the command line,
 * the start info with its memory map) into 128 MiB of guest memory, against
 * the floor of a plain read() of the same files into a buffer and memcpy of
 * the same bytes to the same guest addresses, measured in the same run. The
 * files live in memfds (page cache, no disk); guest memory is faulted in once
 * before timing, so both sides measure copies, not page faults. No /dev/kvm.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "raw_kvm.h"

#define GUEST_MEM    (128ull << 20)
#define INITRD_SIZE  (10ull << 20)
#define DEFAULT_RUNS 15
#define NSEGS        3

/* The kernel's segments: text, data, init + .bss, 60 MiB of file in all. */
static const struct {
    uint64_t paddr, filesz, memsz;
    uint32_t flags;
} segs[NSEGS] = {
    {0x1000000, 28ull << 20, 28ull << 20, PF_R | PF_X},
    {0x2c00000, 22ull << 20, 22ull << 20, PF_R | PF_W},
    {0x4200000, 10ull << 20, 11ull << 20, PF_R | PF_W | PF_X},
};
#define VIRT_OFFSET 0xffffffff80000000ull
#define PVH_ENTRY   0x1000850u

struct pvh_note {
    uint32_t namesz, descsz, type;
    char name[4];
    uint32_t entry;
};

/* Write the kernel into a memfd: headers, the note, then each segment's data
 * page aligned. Fills the file offsets of the segments. */
static int make_kernel(uint64_t *offsets)
{
    int fd = memfd_create("bench-vmlinux", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct {
        Elf64_Ehdr eh;
        Elf64_Phdr ph[NSEGS + 1];
        struct pvh_note note;
    } h = {0};
    memcpy(h.eh.e_ident, ELFMAG, SELFMAG);
    h.eh.e_ident[EI_CLASS] = ELFCLASS64;
    h.eh.e_ident[EI_DATA] = ELFDATA2LSB;
    h.eh.e_ident[EI_VERSION] = EV_CURRENT;
    h.eh.e_type = ET_EXEC;
    h.eh.e_machine = EM_X86_64;
    h.eh.e_version = EV_CURRENT;
    h.eh.e_entry = segs[0].paddr; /* physical, as vmlinux has it */
    h.eh.e_phoff = offsetof(__typeof__(h), ph);
    h.eh.e_ehsize = sizeof(Elf64_Ehdr);
    h.eh.e_phentsize = sizeof(Elf64_Phdr);
    h.eh.e_phnum = NSEGS + 1;
    uint64_t off = 0x200000;
    for (unsigned i = 0; i < NSEGS; i++) {
        offsets[i] = off;
        h.ph[i] = (Elf64_Phdr){.p_type = PT_LOAD,
                               .p_flags = segs[i].flags,
                               .p_offset = off,
                               .p_vaddr = segs[i].paddr + VIRT_OFFSET,
                               .p_paddr = segs[i].paddr,
                               .p_filesz = segs[i].filesz,
                               .p_memsz = segs[i].memsz,
                               .p_align = 0x200000};
        off += (segs[i].filesz + 0x1fffff) & ~0x1fffffull;
    }
    h.ph[NSEGS] = (Elf64_Phdr){.p_type = PT_NOTE,
                               .p_flags = PF_R,
                               .p_offset = offsetof(__typeof__(h), note),
                               .p_filesz = sizeof(h.note),
                               .p_memsz = sizeof(h.note),
                               .p_align = 4};
    h.note = (struct pvh_note){4, 4, 18, "Xen", PVH_ENTRY};
    int r = 0;
    if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
        r = -EIO;
    unsigned char *chunk = malloc(1 << 20);
    for (unsigned i = 0; r == 0 && chunk && i < NSEGS; i++) {
        for (uint64_t done = 0; r == 0 && done < segs[i].filesz; done += 1 << 20) {
            memset(chunk, (int)(0x11 * (i + 1) + done / (1 << 20)), 1 << 20);
            if (pwrite(fd, chunk, 1 << 20, (off_t)(offsets[i] + done)) != 1 << 20)
                r = -EIO;
        }
    }
    free(chunk);
    if (!chunk || r < 0) {
        close(fd);
        return r < 0 ? r : -ENOMEM;
    }
    return fd;
}

static int make_initrd(void)
{
    int fd = memfd_create("bench-initrd", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    unsigned char *chunk = malloc(1 << 20);
    int r = chunk ? 0 : -ENOMEM;
    for (uint64_t done = 0; r == 0 && done < INITRD_SIZE; done += 1 << 20) {
        memset(chunk, (int)(0xa0 + done / (1 << 20)), 1 << 20);
        if (pwrite(fd, chunk, 1 << 20, (off_t)done) != 1 << 20)
            r = -EIO;
    }
    free(chunk);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* The floor: read() each file whole into buf, memcpy the loaded bytes to
 * where the loader puts them. */
static int floor_once(int kfd, int ifd, size_t ksize, unsigned char *buf, unsigned char *guest,
                      const uint64_t *offsets, uint64_t initrd_addr)
{
    size_t done = 0;
    while (done < ksize) {
        ssize_t n = pread(kfd, buf + done, ksize - done, (off_t)done);
        if (n <= 0)
            return -EIO;
        done += (size_t)n;
    }
    for (unsigned i = 0; i < NSEGS; i++)
        memcpy(guest + segs[i].paddr, buf + offsets[i], segs[i].filesz);
    for (done = 0; done < INITRD_SIZE;) {
        ssize_t n = pread(ifd, buf + done, INITRD_SIZE - done, (off_t)done);
        if (n <= 0)
            return -EIO;
        done += (size_t)n;
    }
    memcpy(guest + initrd_addr, buf, INITRD_SIZE);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long runs = DEFAULT_RUNS;
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("Usage: %s [RUNS]\n"
               "Times vmm_linux_boot_setup (60 MiB vmlinux + 10 MiB initrd into 128 MiB)\n"
               "against read()+memcpy of the same bytes; prints medians and their ratio.\n",
               argv[0]);
        return 0;
    }
    if (argc > 1 && (runs = bench_parse_count(argv[1])) == 0) {
        fprintf(stderr, "bench_loader: bad run count '%s'\n", argv[1]);
        return 2;
    }

    uint64_t offsets[NSEGS];
    int kfd = make_kernel(offsets);
    int ifd = make_initrd();
    if (kfd < 0 || ifd < 0) {
        fprintf(stderr, "bench_loader: cannot create the images: %s\n",
                strerror(-(kfd < 0 ? kfd : ifd)));
        return 1;
    }
    size_t ksize = (size_t)lseek(kfd, 0, SEEK_END);
    char kpath[64], ipath[64];
    snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", kfd);
    snprintf(ipath, sizeof(ipath), "/proc/self/fd/%d", ifd);

    struct vmm_memory *mem;
    struct vmm_region_config ram = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = GUEST_MEM};
    void *guest;
    if (vmm_memory_create(&mem) < 0 || vmm_memory_add_region(mem, &ram) < 0 ||
        vmm_memory_get_ptr(mem, 0, GUEST_MEM, VMM_ACCESS_WRITE, &guest) < 0) {
        fprintf(stderr, "bench_loader: cannot create guest memory\n");
        return 1;
    }
    memset(guest, 0, GUEST_MEM); /* fault it in: both sides then only copy */
    unsigned char *buf = malloc(ksize);
    double *t_lib = calloc(runs, sizeof(double));
    double *t_floor = calloc(runs, sizeof(double));
    if (!buf || !t_lib || !t_floor) {
        fprintf(stderr, "bench_loader: out of memory\n");
        return 1;
    }

    struct vmm_linux_config cfg = {
        .size = sizeof(struct vmm_linux_config),
        .kernel_path = kpath,
        .initrd_path = ipath,
        .cmdline = "console=ttyS0 root=/dev/vda rw",
        .rsdp_addr = VMM_X86_ACPI_TABLES,
    };
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    uint64_t payload = 0;
    for (unsigned i = 0; i < NSEGS; i++)
        payload += segs[i].filesz;
    payload += INITRD_SIZE;
    printf("loader: %.0f MiB vmlinux-like ELF (%u PT_LOAD, %.0f MiB loaded, PVH note) + %.0f MiB "
           "initrd into %.0f MiB, %lu runs (+1 warm-up)\n",
           ksize / 1048576.0, NSEGS, (payload - INITRD_SIZE) / 1048576.0, INITRD_SIZE / 1048576.0,
           GUEST_MEM / 1048576.0, runs);

    for (unsigned long i = 0; i <= runs; i++) {
        uint64_t t0 = bench_now_ns();
        int r = vmm_linux_boot_setup(mem, &cfg, &b);
        uint64_t t1 = bench_now_ns();
        if (r < 0) {
            fprintf(stderr, "bench_loader: vmm_linux_boot_setup: %s (%s)\n", vmm_strerror(r),
                    b.error);
            return 1;
        }
        r = floor_once(kfd, ifd, ksize, buf, guest, offsets, b.initrd_addr);
        uint64_t t2 = bench_now_ns();
        if (r < 0) {
            fprintf(stderr, "bench_loader: floor: read failed\n");
            return 1;
        }
        if (i == 0)
            continue; /* warm-up: page cache, CPU caches, allocator */
        t_lib[i - 1] = (double)(t1 - t0) / 1e6;
        t_floor[i - 1] = (double)(t2 - t1) / 1e6;
    }
    if (b.protocol != VMM_LINUX_BOOT_PVH || b.pvh_entry != PVH_ENTRY) {
        fprintf(stderr, "bench_loader: the kernel was not loaded as PVH\n");
        return 1;
    }
    double lib = bench_percentile(t_lib, runs, 50);
    double flo = bench_percentile(t_floor, runs, 50);
    printf("loader: libvmm vmm_linux_boot_setup %.2f ms (%.0f MiB/s), read()+memcpy floor %.2f ms "
           "(%.0f MiB/s), ratio %.3f\n",
           lib, payload / 1048576.0 / (lib / 1e3), flo, payload / 1048576.0 / (flo / 1e3),
           lib / flo);
    printf("loader: libvmm p90 %.2f ms, floor p90 %.2f ms; libvmm also zeroes %.0f MiB of .bss "
           "and writes the start info and memory map\n",
           bench_percentile(t_lib, runs, 90), bench_percentile(t_floor, runs, 90),
           (double)(segs[NSEGS - 1].memsz - segs[NSEGS - 1].filesz) / 1048576.0);

    free(buf);
    free(t_lib);
    free(t_floor);
    vmm_memory_destroy(mem);
    close(kfd);
    close(ifd);
    return 0;
}
