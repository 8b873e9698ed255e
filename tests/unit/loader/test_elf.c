/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the ELF loader: good images, lying images and file handling,
 * on malloc-backed guest memory (no /dev/kvm). */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/loader.h>
#include <vmm/memory.h>

#include "check_compat.h"

/* Guest RAM: [0, 4 MiB) as two adjacent 2 MiB regions over one buffer, so a
 * segment can straddle a region boundary. */
#define RAM_SIZE   (4u << 20)
#define RAM_HALF   (2u << 20)
#define CANARY     0xa5
#define TEXT_ADDR  0x100000ull
#define TEXT_FILE  0x300ull
#define TEXT_MEM   0x400ull
#define DATA_ADDR  0x1ff000ull /* straddles the 2 MiB region boundary */
#define DATA_FILE  0x100ull
#define DATA_MEM   0x3000ull
#define ENTRY_ADDR (TEXT_ADDR + 0x10)

static struct vmm_memory *mem;
static unsigned char *ram;

static void setup(void)
{
    ram = malloc(RAM_SIZE);
    ck_assert_ptr_nonnull(ram);
    memset(ram, CANARY, RAM_SIZE);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, RAM_HALF, ram), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, RAM_HALF, RAM_HALF, ram + RAM_HALF), 0);
}

static void teardown(void)
{
    vmm_memory_destroy(mem);
    free(ram);
    mem = NULL;
    ram = NULL;
}

static bool ram_untouched(void)
{
    for (size_t i = 0; i < RAM_SIZE; i++)
        if (ram[i] != CANARY)
            return false;
    return true;
}

/* ---- a tiny ELF image builder ---- */

struct seg_spec {
    uint32_t type;
    uint32_t flags;
    uint64_t paddr;
    uint64_t vaddr;
    uint64_t filesz;
    uint64_t memsz;
};

struct image {
    unsigned char *buf;
    size_t size;
    struct vmm_load_options opts;
};

/* The byte a segment's file data holds at offset j. */
static unsigned char seg_byte(unsigned seg, uint64_t j)
{
    return (unsigned char)(0x11 * (seg + 1) + j * 7);
}

/* Lay out: ELF header, program headers, then each segment's file data. */
static struct image build_elf(const struct seg_spec *segs, unsigned n, uint64_t entry)
{
    size_t off = sizeof(Elf64_Ehdr) + n * sizeof(Elf64_Phdr);
    size_t total = off;
    for (unsigned i = 0; i < n; i++)
        total += segs[i].filesz;

    struct image im = {
        .buf = calloc(1, total), .size = total, .opts = VMM_INIT(struct vmm_load_options)};
    ck_assert_ptr_nonnull(im.buf);

    Elf64_Ehdr *eh = (Elf64_Ehdr *)im.buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = entry;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = (Elf64_Half)n;

    for (unsigned i = 0; i < n; i++) {
        Elf64_Phdr *ph = (Elf64_Phdr *)(im.buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
        ph->p_type = segs[i].type;
        ph->p_flags = segs[i].flags;
        ph->p_offset = off;
        ph->p_paddr = segs[i].paddr;
        ph->p_vaddr = segs[i].vaddr ? segs[i].vaddr : segs[i].paddr;
        ph->p_filesz = segs[i].filesz;
        ph->p_memsz = segs[i].memsz;
        ph->p_align = 0x1000;
        for (uint64_t j = 0; j < segs[i].filesz; j++)
            im.buf[off + j] = seg_byte(i, j);
        off += segs[i].filesz;
    }
    return im;
}

/* Text (with a little zero fill), a note, and data whose .bss crosses into
 * the second region. */
static struct image good_image(void)
{
    const struct seg_spec segs[] = {
        {PT_LOAD, PF_R | PF_X, TEXT_ADDR, 0, TEXT_FILE, TEXT_MEM},
        {PT_NOTE, PF_R, 0, 0, 0x10, 0x10},
        {PT_LOAD, PF_R | PF_W, DATA_ADDR, 0, DATA_FILE, DATA_MEM},
    };
    return build_elf(segs, 3, ENTRY_ADDR);
}

static Elf64_Ehdr *ehdr(struct image *im)
{
    return (Elf64_Ehdr *)im->buf;
}

static Elf64_Phdr *phdr(struct image *im, unsigned i)
{
    return (Elf64_Phdr *)(im->buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static void check_segment_placed(unsigned seg, uint64_t paddr, uint64_t filesz, uint64_t memsz)
{
    for (uint64_t j = 0; j < filesz; j++)
        ck_assert_uint_eq(ram[paddr + j], seg_byte(seg, j));
    for (uint64_t j = filesz; j < memsz; j++)
        ck_assert_uint_eq(ram[paddr + j], 0);
    /* nothing written around it */
    ck_assert_uint_eq(ram[paddr - 1], CANARY);
    ck_assert_uint_eq(ram[paddr + memsz], CANARY);
}

/* ---- good images ---- */

static char last_log[512];
static enum vmm_log_level last_level;

static void record_log(void *opaque, enum vmm_log_level level, const char *msg)
{
    last_level = level;
    snprintf(last_log, sizeof(last_log), "%s", msg);
}

START_TEST(test_good_image)
{
    struct image im = good_image();
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    memset(&res, 0xff, sizeof(res));
    res.size = sizeof(res);

    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), 0);
    ck_assert_str_eq(res.error, "");
    ck_assert_uint_eq(res.entry, ENTRY_ADDR);
    ck_assert_uint_eq(res.low, TEXT_ADDR);
    ck_assert_uint_eq(res.high, DATA_ADDR + DATA_MEM);
    ck_assert_uint_eq(res.segments, 2);
    check_segment_placed(0, TEXT_ADDR, TEXT_FILE, TEXT_MEM);
    check_segment_placed(2, DATA_ADDR, DATA_FILE, DATA_MEM);
    /* outside the segments, RAM keeps its canary */
    size_t changed = 0;
    for (size_t i = 0; i < RAM_SIZE; i++)
        changed += ram[i] != CANARY;
    ck_assert_uint_le(changed, TEXT_MEM + DATA_MEM);
    free(im.buf);
}
END_TEST

/* The header buffer need not be aligned. */
START_TEST(test_good_image_unaligned)
{
    struct image im = good_image();
    unsigned char *odd = malloc(im.size + 1);
    ck_assert_ptr_nonnull(odd);
    memcpy(odd + 1, im.buf, im.size);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, odd + 1, im.size, NULL, &res), 0);
    ck_assert_uint_eq(res.segments, 2);
    check_segment_placed(0, TEXT_ADDR, TEXT_FILE, TEXT_MEM);
    free(odd);
    free(im.buf);
}
END_TEST

/* A kernel-style image linked high (p_vaddr != p_paddr): the entry is
 * translated to its physical address. */
START_TEST(test_good_image_high_vaddr)
{
    const uint64_t vbase = 0xffffffff81000000ull;
    const struct seg_spec segs[] = {
        {PT_LOAD, PF_R | PF_X, TEXT_ADDR, vbase, TEXT_FILE, TEXT_MEM},
    };
    struct image im = build_elf(segs, 1, vbase + 0x20);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), 0);
    ck_assert_uint_eq(res.entry, TEXT_ADDR + 0x20);
    ck_assert_uint_eq(res.segments, 1);
    check_segment_placed(0, TEXT_ADDR, TEXT_FILE, TEXT_MEM);
    free(im.buf);

    /* a physical entry point (as vmlinux has) is accepted too */
    im = build_elf(segs, 1, TEXT_ADDR + 0x30);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), 0);
    ck_assert_uint_eq(res.entry, TEXT_ADDR + 0x30);
    free(im.buf);
}
END_TEST

/* Segments may sit exactly at min_addr and end exactly at the end of RAM. */
START_TEST(test_good_image_edges)
{
    const struct seg_spec segs[] = {
        {PT_LOAD, PF_R | PF_X, 0x180000, 0, 0x100, 0x100},
        {PT_LOAD, PF_R | PF_W, RAM_SIZE - 0x1000, 0, 0x10, 0x1000},
        {PT_LOAD, PF_R, 0x300000, 0, 0, 0}, /* empty: ignored */
    };
    struct image im = build_elf(segs, 3, 0x180000);
    im.opts.min_addr = 0x180000;
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, &im.opts, &res), 0);
    ck_assert_uint_eq(res.low, 0x180000);
    ck_assert_uint_eq(res.high, RAM_SIZE);
    ck_assert_uint_eq(res.segments, 2);
    ck_assert_uint_eq(ram[RAM_SIZE - 1], 0);
    ck_assert_uint_eq(ram[RAM_SIZE - 0x1000], seg_byte(1, 0));
    ck_assert_uint_eq(ram[0x300000], CANARY);
    free(im.buf);
}
END_TEST

START_TEST(test_refusal_is_logged)
{
    struct image im = good_image();
    ehdr(&im)->e_machine = EM_AARCH64;
    last_log[0] = '\0';
    vmm_log_set_handler(record_log, NULL, VMM_LOG_DEBUG);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), -EINVAL);
    vmm_log_set_handler(NULL, NULL, VMM_LOG_ERROR);
    ck_assert_int_eq(last_level, VMM_LOG_DEBUG);
    ck_assert_ptr_nonnull(strstr(last_log, res.error));
    free(im.buf);
}
END_TEST

START_TEST(test_null_arguments)
{
    struct image im = good_image();
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, NULL), -EINVAL);
    ck_assert_int_eq(vmm_elf_load(NULL, im.buf, im.size, NULL, &res), -EINVAL);
    ck_assert_str_ne(res.error, "");
    ck_assert_int_eq(vmm_elf_load(mem, NULL, im.size, NULL, &res), -EINVAL);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, 0, NULL, &res), -EINVAL);
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

/* ---- hostile images: each mutates the good image ---- */

struct hostile_case {
    const char *name;
    void (*mutate)(struct image *im);
    int err;
};

static void m_truncated_header(struct image *im)
{
    im->size = sizeof(Elf64_Ehdr) - 1;
}
static void m_truncated_phdrs(struct image *im)
{
    im->size = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + 10;
}
static void m_bad_magic(struct image *im)
{
    ehdr(im)->e_ident[EI_MAG1] = 'X';
}
static void m_class32(struct image *im)
{
    ehdr(im)->e_ident[EI_CLASS] = ELFCLASS32;
}
static void m_big_endian(struct image *im)
{
    ehdr(im)->e_ident[EI_DATA] = ELFDATA2MSB;
}
static void m_bad_version(struct image *im)
{
    ehdr(im)->e_version = 2;
}
static void m_wrong_machine(struct image *im)
{
    ehdr(im)->e_machine = EM_386;
}
static void m_et_dyn(struct image *im)
{
    ehdr(im)->e_type = ET_DYN;
}
static void m_phentsize(struct image *im)
{
    ehdr(im)->e_phentsize = sizeof(Elf64_Phdr) - 8;
}
static void m_phnum_huge(struct image *im)
{
    ehdr(im)->e_phnum = 0xffff;
}
static void m_phnum_over_limit(struct image *im)
{
    ehdr(im)->e_phnum = VMM_ELF_MAX_PHDRS + 1;
}
static void m_phnum_zero(struct image *im)
{
    ehdr(im)->e_phnum = 0;
}
static void m_phoff_past_end(struct image *im)
{
    ehdr(im)->e_phoff = im->size;
}
static void m_phoff_overflow(struct image *im)
{
    ehdr(im)->e_phoff = UINT64_MAX - 16;
}
static void m_data_past_end(struct image *im)
{
    phdr(im, 0)->p_offset = im->size - 8;
}
static void m_data_offset_overflow(struct image *im)
{
    phdr(im, 2)->p_offset = UINT64_MAX - 0x10;
}
static void m_filesz_gt_memsz(struct image *im)
{
    phdr(im, 2)->p_memsz = DATA_FILE - 1;
}
static void m_paddr_overflow(struct image *im)
{
    phdr(im, 2)->p_paddr = UINT64_MAX - 0x100;
    phdr(im, 2)->p_vaddr = 0x300000;
}
static void m_vaddr_overflow(struct image *im)
{
    phdr(im, 0)->p_vaddr = UINT64_MAX - 0x100;
}
static void m_past_guest_memory(struct image *im)
{
    phdr(im, 2)->p_paddr = RAM_SIZE - DATA_MEM + 1;
}
static void m_far_outside_memory(struct image *im)
{
    phdr(im, 2)->p_paddr = 0x100000000ull;
}
static void m_below_default_min(struct image *im)
{
    phdr(im, 2)->p_paddr = VMM_LOAD_DEFAULT_MIN_ADDR - 0x1000;
}
static void m_below_min_option(struct image *im)
{
    im->opts.min_addr = TEXT_ADDR + 0x1000;
}
static void m_overlap(struct image *im)
{
    phdr(im, 2)->p_paddr = TEXT_ADDR + TEXT_MEM - 1;
}
static void m_same_address(struct image *im)
{
    phdr(im, 2)->p_paddr = TEXT_ADDR;
}
static void m_no_pt_load(struct image *im)
{
    phdr(im, 0)->p_type = PT_NOTE;
    phdr(im, 2)->p_type = PT_GNU_STACK;
}
static void m_only_empty_pt_load(struct image *im)
{
    phdr(im, 2)->p_type = PT_NOTE;
    phdr(im, 0)->p_filesz = 0;
    phdr(im, 0)->p_memsz = 0;
}
static void m_entry_outside(struct image *im)
{
    ehdr(im)->e_entry = 0x50000;
}
static void m_entry_one_past(struct image *im)
{
    ehdr(im)->e_entry = TEXT_ADDR + TEXT_MEM;
}
static void m_entry_not_exec(struct image *im)
{
    ehdr(im)->e_entry = DATA_ADDR + 4;
}
static void m_entry_text_not_exec(struct image *im)
{
    phdr(im, 0)->p_flags = PF_R;
}

static const struct hostile_case hostile[] = {
    {"truncated header", m_truncated_header, -EINVAL},
    {"truncated phdrs", m_truncated_phdrs, -EINVAL},
    {"bad magic", m_bad_magic, -EINVAL},
    {"32-bit class", m_class32, -EINVAL},
    {"big endian", m_big_endian, -EINVAL},
    {"bad version", m_bad_version, -EINVAL},
    {"wrong machine", m_wrong_machine, -EINVAL},
    {"ET_DYN", m_et_dyn, -EINVAL},
    {"phentsize", m_phentsize, -EINVAL},
    {"phnum huge", m_phnum_huge, -EINVAL},
    {"phnum over limit", m_phnum_over_limit, -EINVAL},
    {"phnum zero", m_phnum_zero, -EINVAL},
    {"phoff past end", m_phoff_past_end, -EINVAL},
    {"phoff overflow", m_phoff_overflow, -EINVAL},
    {"data past end", m_data_past_end, -EINVAL},
    {"data offset overflow", m_data_offset_overflow, -EINVAL},
    {"filesz > memsz", m_filesz_gt_memsz, -EINVAL},
    {"paddr overflow", m_paddr_overflow, -EINVAL},
    {"vaddr overflow", m_vaddr_overflow, -EINVAL},
    {"past guest memory", m_past_guest_memory, -EFAULT},
    {"far outside memory", m_far_outside_memory, -EFAULT},
    {"below default min", m_below_default_min, -EFAULT},
    {"below min option", m_below_min_option, -EFAULT},
    {"overlap", m_overlap, -EINVAL},
    {"same address", m_same_address, -EINVAL},
    {"no PT_LOAD", m_no_pt_load, -EINVAL},
    {"only empty PT_LOAD", m_only_empty_pt_load, -EINVAL},
    {"entry outside", m_entry_outside, -EINVAL},
    {"entry one past text", m_entry_one_past, -EINVAL},
    {"entry in data", m_entry_not_exec, -EINVAL},
    {"text not executable", m_entry_text_not_exec, -EINVAL},
};

START_TEST(test_hostile_image)
{
    const struct hostile_case *c = &hostile[_i];
    struct image im = good_image();
    c->mutate(&im);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    memset(&res, 0x5a, sizeof(res));
    res.size = sizeof(res);

    int ret = vmm_elf_load(mem, im.buf, im.size, &im.opts, &res);
    ck_assert_msg(ret == c->err, "%s: got %d, want %d (%s)", c->name, ret, c->err, res.error);
    ck_assert_msg(res.error[0] != '\0', "%s: no reason given", c->name);
    ck_assert_msg(strlen(res.error) < sizeof(res.error), "%s: unterminated reason", c->name);
    ck_assert_uint_eq(res.segments, 0);
    ck_assert_msg(ram_untouched(), "%s: guest memory written", c->name);
    free(im.buf);
}
END_TEST

/* The example reason in the contract discussion: a segment outside memory
 * names the segment and its range. */
START_TEST(test_reason_names_segment)
{
    struct image im = good_image();
    m_far_outside_memory(&im);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), -EFAULT);
    ck_assert_str_eq(res.error, "segment 2 [0x100000000, 0x100003000) lies outside guest memory");
    free(im.buf);
}
END_TEST

/* A segment on a read-only region is refused before anything is written. */
START_TEST(test_readonly_region)
{
    struct vmm_region_config rom = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0x800000,
                                    .len = 0x10000,
                                    .backing = VMM_MEMORY_ANON,
                                    .flags = VMM_MEMORY_F_READONLY};
    ck_assert_int_ge(vmm_memory_add_region(mem, &rom), 0);
    struct image im = good_image();
    phdr(&im, 2)->p_paddr = 0x800000;
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), -EROFS);
    ck_assert_str_ne(res.error, "");
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

/* ---- vmm_elf_load_file ---- */

static char tmpdir[PATH_MAX];

static void file_setup(void)
{
    setup();
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(tmpdir, sizeof(tmpdir), "vmm-elf-test-")));
}

static void file_teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    teardown();
}

static void write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, size), (ssize_t)size);
    close(fd);
}

START_TEST(test_file_good)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "good.elf");
    struct image im = good_image();
    write_file(path, im.buf, im.size);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), 0);
    ck_assert_str_eq(res.error, "");
    ck_assert_uint_eq(res.entry, ENTRY_ADDR);
    ck_assert_uint_eq(res.segments, 2);
    check_segment_placed(0, TEXT_ADDR, TEXT_FILE, TEXT_MEM);
    check_segment_placed(2, DATA_ADDR, DATA_FILE, DATA_MEM);
    free(im.buf);
}
END_TEST

START_TEST(test_file_hostile)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "bad.elf");
    struct image im = good_image();
    m_overlap(&im);
    write_file(path, im.buf, im.size);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), -EINVAL);
    ck_assert_ptr_nonnull(strstr(res.error, "overlaps"));
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

START_TEST(test_file_missing)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "nope.elf");
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), -ENOENT);
    ck_assert_ptr_nonnull(strstr(res.error, "nope.elf"));
    ck_assert(ram_untouched());
}
END_TEST

START_TEST(test_file_directory)
{
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, tmpdir, NULL, &res), -EISDIR);
    ck_assert_str_ne(res.error, "");
    ck_assert(ram_untouched());
}
END_TEST

START_TEST(test_file_empty)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "empty.elf");
    write_file(path, "", 0);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), -EINVAL);
    ck_assert_ptr_nonnull(strstr(res.error, "empty file"));
    ck_assert(ram_untouched());
}
END_TEST

/* A FIFO must be refused, not block waiting for a writer. */
START_TEST(test_file_fifo)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "fifo");
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), -EINVAL);
    ck_assert_str_ne(res.error, "");
}
END_TEST

START_TEST(test_file_too_big)
{
    char path[PATH_MAX];
    vmm_test_path(path, sizeof(path), tmpdir, "big.elf");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    /* sparse: costs no disk */
    ck_assert_int_eq(ftruncate(fd, RAM_SIZE + (1 << 20) + 1), 0);
    close(fd);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    ck_assert_int_eq(vmm_elf_load_file(mem, path, NULL, &res), -EFBIG);
    ck_assert_str_ne(res.error, "");
    ck_assert(ram_untouched());
}
END_TEST

START_TEST(test_options_and_result_check_their_size)
{
    /* Growth convention (vmm/abi.h): options or a result whose .size is 0 or
     * past the library's struct are refused with -EINVAL before anything is
     * read or written; an older, shorter struct is read (or filled) that
     * far, the rest taking defaults (or left as the caller had it). */
    struct image im = good_image();
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    memset(res.error, 'x', sizeof(res.error));
    res.size = 0;
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), -EINVAL);
    res.size = sizeof(res) + 8;
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, NULL, &res), -EINVAL);
    ck_assert_int_eq(vmm_elf_load_file(mem, "/nonexistent", NULL, &res), -EINVAL);
    ck_assert_int_eq(res.error[0], 'x'); /* not even the reason written */
    res.size = sizeof(res);
    im.opts.size = 0;
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, &im.opts, &res), -EINVAL);
    im.opts.size = sizeof(im.opts) + 8;
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, &im.opts, &res), -EINVAL);
    ck_assert(ram_untouched());

    /* An older result without error: filled up to it; the reason of a
     * refusal is not written past the caller's struct. */
    memset(&res, 0x5a, sizeof(res));
    res.size = offsetof(struct vmm_load_result, error);
    im.opts = VMM_INIT(struct vmm_load_options);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, im.size, &im.opts, &res), 0);
    ck_assert_uint_eq(res.entry, ENTRY_ADDR);
    ck_assert_uint_eq(res.segments, 2);
    ck_assert_uint_eq((unsigned char)res.error[0], 0x5a);
    ck_assert_int_eq(vmm_elf_load(mem, im.buf, 8, &im.opts, &res), -EINVAL);
    ck_assert_uint_eq((unsigned char)res.error[0], 0x5a);
    free(im.buf);
}
END_TEST

static Suite *elf_suite(void)
{
    Suite *s = suite_create("elf");

    /* Every test fills and scans 4 MiB of guest RAM; the file tests also
     * write files and run rm: generous for ASan on a loaded machine. */
    TCase *tc = tcase_create("image");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_good_image);
    tcase_add_test(tc, test_good_image_unaligned);
    tcase_add_test(tc, test_good_image_high_vaddr);
    tcase_add_test(tc, test_good_image_edges);
    tcase_add_test(tc, test_options_and_result_check_their_size);
    tcase_add_test(tc, test_refusal_is_logged);
    tcase_add_test(tc, test_null_arguments);
    tcase_add_loop_test(tc, test_hostile_image, 0, (int)(sizeof(hostile) / sizeof(hostile[0])));
    tcase_add_test(tc, test_reason_names_segment);
    tcase_add_test(tc, test_readonly_region);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, file_setup, file_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_file_good);
    tcase_add_test(tc, test_file_hostile);
    tcase_add_test(tc, test_file_missing);
    tcase_add_test(tc, test_file_directory);
    tcase_add_test(tc, test_file_empty);
    tcase_add_test(tc, test_file_fifo);
    tcase_add_test(tc, test_file_too_big);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(elf_suite());
}
