/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bzImage's XZ payload booted directly (vmm_kernel_options.extract_payload)
 * and kept in a cache directory (payload_cache_dir): synthetic bzImages whose
 * payload is the synthetic vmlinux, compressed here with liblzma as the
 * kernel build does (x86 BCJ + LZMA2, CRC32, the size appended), and the
 * hostile variants: a payload out of bounds, a truncated or corrupt stream,
 * output past or short of the stated size or past init_size, a stream that
 * asks the decoder for too much memory; cache entries that are stale, of
 * another user's making, of the wrong size or not an ELF.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lzma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vmm/linux.h>
#include <vmm/memory.h>

#include "check_compat.h"
#include "linux_images.h"

#define RAM_SIZE (32u << 20)
#define CANARY   0xa5

static struct vmm_memory *mem;
static unsigned char *ram;
static char tmpdir[PATH_MAX];

static void setup(void)
{
    ram = malloc(RAM_SIZE);
    ck_assert_ptr_nonnull(ram);
    memset(ram, CANARY, RAM_SIZE);
    ck_assert_int_eq(vmm_memory_create(&mem), 0);
    ck_assert_int_ge(vmm_memory_add_external(mem, 0, RAM_SIZE, ram), 0);
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(tmpdir, sizeof(tmpdir), "vmm-bzpayload-")));
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
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

/* in[0..n) XZ-compressed as the kernel build does, without the trailer. */
static unsigned char *xz(const unsigned char *in, size_t n, size_t *len)
{
    lzma_options_lzma lz;
    ck_assert(!lzma_lzma_preset(&lz, 0));
    lzma_filter f[] = {{.id = LZMA_FILTER_X86, .options = NULL},
                       {.id = LZMA_FILTER_LZMA2, .options = &lz},
                       {.id = LZMA_VLI_UNKNOWN, .options = NULL}};
    size_t cap = lzma_stream_buffer_bound(n), pos = 0;
    unsigned char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(lzma_stream_buffer_encode(f, LZMA_CHECK_CRC32, NULL, in, n, out, &pos, cap),
                     LZMA_OK);
    *len = pos;
    return out;
}

/* The synthetic bzImage with payload (stream_len bytes, then stated as a
 * 4-byte size) as the last bytes of its protected-mode kernel. */
static struct test_image wrap(const unsigned char *stream, size_t stream_len, uint32_t stated)
{
    struct test_image im = build_bzimage();
    size_t off = im.size, plen = stream_len + 4;
    im.size = (off + plen + 16 + 15) & ~(size_t)15; /* room for px_garbage_after */
    im.buf = realloc(im.buf, im.size);
    ck_assert_ptr_nonnull(im.buf);
    memset(im.buf + off, 0, im.size - off);
    memcpy(im.buf + off, stream, stream_len);
    memcpy(im.buf + off + stream_len, &stated, 4);
    struct vmm_linux_setup_header *h = bz_hdr(&im);
    h->payload_offset = (uint32_t)(off - BZ_SETUP_SIZE);
    h->payload_length = (uint32_t)plen;
    h->syssize = (uint32_t)((im.size - BZ_SETUP_SIZE) / 16);
    return im;
}

/* A bzImage carrying build_vmlinux(pvh_len, VL_PHYS) as its XZ payload. */
static struct test_image bz_with_vmlinux(unsigned pvh_len, size_t *stream_len, uint32_t *elf_len)
{
    struct test_image vl = build_vmlinux(pvh_len, VL_PHYS);
    unsigned char *s = xz(vl.buf, vl.size, stream_len);
    struct test_image im = wrap(s, *stream_len, (uint32_t)vl.size);
    *elf_len = (uint32_t)vl.size;
    free(s);
    free(vl.buf);
    return im;
}

static void check_vmlinux_loaded(const struct vmm_linux_boot *b)
{
    ck_assert_int_eq(b->format, VMM_KERNEL_ELF);
    ck_assert_uint_eq(b->kernel_low, VL_PHYS);
    ck_assert_uint_eq(b->kernel_high, VL_DATA_PHYS + VL_DATA_MEM);
    for (uint64_t j = 0; j < VL_TEXT; j++)
        ck_assert_uint_eq(ram[VL_PHYS + j], vl_byte(0, j));
}

START_TEST(test_extract_boots_payload)
{
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    struct vmm_kernel_options o = VMM_INIT(struct vmm_kernel_options, .extract_payload = true);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    check_vmlinux_loaded(&b);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_PVH);
    ck_assert_uint_eq(b.pvh_entry, VL_PVH_ENTRY);
    ck_assert_str_eq(b.error, "");

    /* no_pvh: the payload's 64-bit entry. */
    o.no_pvh = true;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    check_vmlinux_loaded(&b);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    ck_assert_uint_eq(b.entry, VL_PHYS);

    /* Off by default: the bzImage as it is. */
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, NULL, &b), 0);
    ck_assert_int_eq(b.format, VMM_KERNEL_BZIMAGE);
    free(im.buf);
}
END_TEST

/* What cannot be extracted boots as the bzImage: another compression, no
 * payload, a payload that is not an ELF. */
START_TEST(test_extract_falls_back)
{
    struct vmm_kernel_options o = VMM_INIT(struct vmm_kernel_options, .extract_payload = true);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    static const unsigned char gzip[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2};
    struct test_image im = wrap(gzip, sizeof(gzip), 0x1000);
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(b.format, VMM_KERNEL_BZIMAGE);
    ck_assert_uint_eq(b.entry, BZ_PREF + 0x200);
    ck_assert_str_eq(b.error, "");
    free(im.buf);

    im = build_bzimage();
    bz_hdr(&im)->payload_offset = 0;
    bz_hdr(&im)->payload_length = 0;
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(b.format, VMM_KERNEL_BZIMAGE);
    free(im.buf);

    static const unsigned char text[] = "not an ELF, just text long enough";
    size_t sl;
    unsigned char *s = xz(text, sizeof(text), &sl);
    im = wrap(s, sl, sizeof(text));
    ck_assert_int_eq(vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b), 0);
    ck_assert_int_eq(b.format, VMM_KERNEL_BZIMAGE);
    free(s);
    free(im.buf);
}
END_TEST

/* ---- hostile payloads ---- */

struct px_case {
    const char *name;
    void (*mutate)(struct test_image *im, size_t stream_len, uint32_t elf_len);
    int err;
};

static unsigned char *payload(struct test_image *im)
{
    return im->buf + BZ_SETUP_SIZE + bz_hdr(im)->payload_offset;
}

static void set_stated(struct test_image *im, size_t at, uint32_t v)
{
    memcpy(payload(im) + at, &v, 4);
}

static void px_past_image(struct test_image *im, size_t sl, uint32_t el)
{
    (void)sl;
    (void)el;
    bz_hdr(im)->payload_length += 0x100;
}

static void px_truncated(struct test_image *im, size_t sl, uint32_t el)
{
    /* The stream cut 64 bytes short, the trailer moved up to its end. */
    bz_hdr(im)->payload_length = (uint32_t)(sl - 64 + 4);
    set_stated(im, sl - 64, el);
}

static void px_more_than_stated(struct test_image *im, size_t sl, uint32_t el)
{
    set_stated(im, sl, el - 1);
}

static void px_less_than_stated(struct test_image *im, size_t sl, uint32_t el)
{
    set_stated(im, sl, el + 100);
}

static void px_past_init_size(struct test_image *im, size_t sl, uint32_t el)
{
    (void)el;
    set_stated(im, sl, BZ_INIT_SIZE + 1);
}

static void px_stated_zero(struct test_image *im, size_t sl, uint32_t el)
{
    (void)el;
    set_stated(im, sl, 0);
}

static void px_corrupt(struct test_image *im, size_t sl, uint32_t el)
{
    (void)el;
    payload(im)[sl / 2] ^= 0x55;
}

static void px_garbage_after(struct test_image *im, size_t sl, uint32_t el)
{
    /* 4 bytes of junk between the stream and the trailer. */
    bz_hdr(im)->payload_length += 4;
    memset(payload(im) + sl, 0x5a, 4);
    set_stated(im, sl + 4, el);
}

/* The LZMA2 filter's dictionary raised to 4 GiB in the block header (its
 * CRC32 recomputed): the decoder would need more than its limit. */
static void px_huge_dictionary(struct test_image *im, size_t sl, uint32_t el)
{
    (void)sl;
    (void)el;
    unsigned char *bh = payload(im) + 12; /* after the stream header */
    size_t hlen = ((size_t)bh[0] + 1) * 4;
    unsigned i;
    for (i = 2; i + 2 < hlen - 4; i++)
        if (bh[i] == 0x21 && bh[i + 1] == 0x01) /* LZMA2, 1 byte of properties */
            break;
    ck_assert_uint_lt(i + 2, hlen - 4);
    bh[i + 2] = 40; /* dictionary 4 GiB - 1 */
    uint32_t crc = lzma_crc32(bh, hlen - 4, 0);
    memcpy(bh + hlen - 4, &crc, 4);
}

static const struct px_case px_cases[] = {
    {"payload past the image", px_past_image, -EINVAL},
    {"truncated stream", px_truncated, -EINVAL},
    {"more output than stated", px_more_than_stated, -EFBIG},
    {"less output than stated", px_less_than_stated, -EINVAL},
    {"stated size past init_size", px_past_init_size, -EFBIG},
    {"stated size zero", px_stated_zero, -EFBIG},
    {"corrupt stream", px_corrupt, -EINVAL},
    {"garbage after the stream", px_garbage_after, -EINVAL},
    {"dictionary past the memory limit", px_huge_dictionary, -E2BIG},
};

START_TEST(test_extract_hostile)
{
    const struct px_case *c = &px_cases[_i];
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    c->mutate(&im, sl, el);
    struct vmm_kernel_options o = VMM_INIT(struct vmm_kernel_options, .extract_payload = true);
    struct vmm_linux_boot b = VMM_INIT(struct vmm_linux_boot);
    int r = vmm_linux_load_kernel(mem, im.buf, im.size, &o, &b);
    ck_assert_msg(r == c->err, "%s: got %d (%s), want %d", c->name, r, b.error, c->err);
    ck_assert_msg(b.error[0] != '\0', "%s: no reason", c->name);
    ck_assert_msg(ram_untouched(), "%s: guest memory written", c->name);
    free(im.buf);
}
END_TEST

/* ---- the cache ---- */

static void write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, size), (ssize_t)size);
    close(fd);
}

/* The one cache entry's path (asserting there is exactly one). */
static void only_entry(const char *dir, char *path, size_t n)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "ls -A '%s'", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char name[256], more[256];
    ck_assert_ptr_nonnull(fgets(name, sizeof(name), p));
    ck_assert_msg(!fgets(more, sizeof(more), p), "a second entry: %s", more);
    pclose(p);
    name[strcspn(name, "\n")] = '\0';
    ck_assert_msg(strncmp(name, "vmlinux-", 8) == 0, "entry %s", name);
    vmm_test_path(path, n, dir, name);
}

static int load_cached(const char *kernel, const char *dir, struct vmm_linux_boot *b)
{
    struct vmm_kernel_options o =
        VMM_INIT(struct vmm_kernel_options, .extract_payload = true, .payload_cache_dir = dir);
    *b = VMM_INIT(struct vmm_linux_boot);
    return vmm_linux_load_kernel_file(mem, kernel, &o, b);
}

START_TEST(test_cache_stores_and_serves)
{
    char kernel[PATH_MAX], dir[PATH_MAX], entry[PATH_MAX];
    vmm_test_path(kernel, sizeof(kernel), tmpdir, "bzImage");
    vmm_test_path(dir, sizeof(dir), tmpdir, "cache");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    write_file(kernel, im.buf, im.size);

    struct vmm_linux_boot b;
    ck_assert_int_eq(load_cached(kernel, dir, &b), 0);
    check_vmlinux_loaded(&b);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_PVH);
    only_entry(dir, entry, sizeof(entry));
    /* The entry: the compressed payload it was made from, then the vmlinux. */
    struct stat st;
    ck_assert_int_eq(stat(entry, &st), 0);
    ck_assert_uint_gt(st.st_size, el);
    size_t tl = (size_t)st.st_size, pre = tl - el;

    /* Served from the entry: a byte changed in its vmlinux reaches the guest. */
    unsigned char *e = malloc(tl);
    int fd = open(entry, O_RDWR);
    ck_assert_int_eq(pread(fd, e, tl, 0), (ssize_t)tl);
    size_t text = pre;
    while (text + 4 <= tl &&
           memcmp(e + text,
                  (unsigned char[]){vl_byte(0, 0), vl_byte(0, 1), vl_byte(0, 2), vl_byte(0, 3)},
                  4) != 0)
        text++;
    ck_assert_uint_lt(text + 4, tl);
    e[text] ^= 0xff;
    ck_assert_int_eq(pwrite(fd, e, tl, 0), (ssize_t)tl);
    ck_assert_int_eq(load_cached(kernel, dir, &b), 0);
    ck_assert_uint_eq(ram[VL_PHYS], vl_byte(0, 0) ^ 0xff);

    /* An entry under this image's name made from another payload (a forged
     * CRC) is not used: the image's own payload boots, and replaces it. */
    e[0] ^= 0x01;
    ck_assert_int_eq(pwrite(fd, e, tl, 0), (ssize_t)tl);
    close(fd);
    ck_assert_int_eq(load_cached(kernel, dir, &b), 0);
    ck_assert_uint_eq(ram[VL_PHYS], vl_byte(0, 0));
    fd = open(entry, O_RDONLY);
    ck_assert_int_eq(pread(fd, e, tl, 0), (ssize_t)tl);
    close(fd);
    ck_assert_uint_eq(e[text], vl_byte(0, 0));

    /* A changed image finds no entry of the old one: its own payload boots
     * (here the same vmlinux without the PVH note) and gets its own entry. */
    free(im.buf);
    im = bz_with_vmlinux(0, &sl, &el);
    write_file(kernel, im.buf, im.size);
    ck_assert_int_eq(load_cached(kernel, dir, &b), 0);
    check_vmlinux_loaded(&b);
    ck_assert_int_eq(b.protocol, VMM_LINUX_BOOT_64);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) = 2", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(e);
    free(im.buf);
}
END_TEST

/* An entry that another user could have written, one of the wrong size, a
 * symlink, one that is no ELF: not used, replaced by a fresh extraction. */
START_TEST(test_cache_distrusts_entries)
{
    char kernel[PATH_MAX], dir[PATH_MAX], entry[PATH_MAX], other[PATH_MAX];
    vmm_test_path(kernel, sizeof(kernel), tmpdir, "bzImage");
    vmm_test_path(dir, sizeof(dir), tmpdir, "cache");
    vmm_test_path(other, sizeof(other), tmpdir, "other");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    write_file(kernel, im.buf, im.size);
    struct vmm_linux_boot b;
    ck_assert_int_eq(load_cached(kernel, dir, &b), 0);
    only_entry(dir, entry, sizeof(entry));
    struct stat st;
    ck_assert_int_eq(stat(entry, &st), 0);
    size_t tl = (size_t)st.st_size, pre = tl - el;
    unsigned char *good = malloc(tl), *bad = malloc(tl);
    int fd = open(entry, O_RDONLY);
    ck_assert_int_eq(pread(fd, good, tl, 0), (ssize_t)tl);
    close(fd);
    memset(bad, 0x42, tl);
    for (int round = 0; round < 5; round++) {
        ck_assert_int_eq(unlink(entry), 0);
        if (round == 0) { /* group-writable */
            write_file(entry, bad, tl);
            ck_assert_int_eq(chmod(entry, 0664), 0);
        } else if (round == 1) { /* wrong size */
            write_file(entry, bad, tl - 1);
        } else if (round == 2) { /* a symlink to a file of the right size */
            write_file(other, bad, tl);
            ck_assert_int_eq(symlink(other, entry), 0);
        } else if (round == 3) { /* this payload, then no ELF */
            memcpy(bad, good, pre);
            write_file(entry, bad, tl);
        } else { /* a second link to a whole entry: anyone's file could be one */
            ck_assert_int_eq(unlink(other), 0);
            write_file(other, good, tl);
            ck_assert_int_eq(link(other, entry), 0);
        }
        memset(ram, CANARY, RAM_SIZE);
        ck_assert_msg(load_cached(kernel, dir, &b) == 0, "round %d: %s", round, b.error);
        check_vmlinux_loaded(&b);
        ck_assert_int_eq(lstat(entry, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 022, 0);
        ck_assert_uint_eq(st.st_nlink, 1);
        ck_assert_uint_eq(st.st_size, tl);
    }
    free(good);
    free(bad);
    free(im.buf);
}
END_TEST

/* A cache directory others can write is refused: they could place entries. */
START_TEST(test_cache_dir_shared)
{
    char kernel[PATH_MAX], dir[PATH_MAX];
    vmm_test_path(kernel, sizeof(kernel), tmpdir, "bzImage");
    vmm_test_path(dir, sizeof(dir), tmpdir, "shared");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(chmod(dir, 0777), 0);
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    write_file(kernel, im.buf, im.size);
    struct vmm_linux_boot b;
    memset(ram, CANARY, RAM_SIZE);
    ck_assert_int_eq(load_cached(kernel, dir, &b), -EPERM);
    ck_assert_ptr_nonnull(strstr(b.error, "shared"));
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

START_TEST(test_cache_dir_missing)
{
    char kernel[PATH_MAX], dir[PATH_MAX];
    vmm_test_path(kernel, sizeof(kernel), tmpdir, "bzImage");
    vmm_test_path(dir, sizeof(dir), tmpdir, "no-such-dir");
    size_t sl;
    uint32_t el;
    struct test_image im = bz_with_vmlinux(4, &sl, &el);
    write_file(kernel, im.buf, im.size);
    struct vmm_linux_boot b;
    ck_assert_int_eq(load_cached(kernel, dir, &b), -ENOENT);
    ck_assert_ptr_nonnull(strstr(b.error, "no-such-dir"));
    ck_assert(ram_untouched());
    free(im.buf);
}
END_TEST

static Suite *bzpayload_suite(void)
{
    Suite *s = suite_create("bzpayload");
    TCase *tc = tcase_create("extract");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_extract_boots_payload);
    tcase_add_test(tc, test_extract_falls_back);
    tcase_add_loop_test(tc, test_extract_hostile, 0, (int)(sizeof(px_cases) / sizeof(px_cases[0])));
    suite_add_tcase(s, tc);
    tc = tcase_create("cache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cache_stores_and_serves);
    tcase_add_test(tc, test_cache_distrusts_entries);
    tcase_add_test(tc, test_cache_dir_missing);
    tcase_add_test(tc, test_cache_dir_shared);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vmm_test_run_suite(bzpayload_suite());
}
