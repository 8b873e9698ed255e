/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mkbzimage IN.elf OUT: wrap a test guest into a minimal bzImage (a host
 * build tool). The guest's PT_LOAD segments, flattened from their lowest
 * physical address, become the protected-mode kernel after one setup sector;
 * the setup header says boot protocol 2.15, LOADED_HIGH, XLF_KERNEL_64, not
 * relocatable, pref_address = that lowest address, init_size = the whole
 * memory image (with .bss). The ELF entry must be at base + 0x200, the
 * bzImage 64-bit entry.
 *
 * mkbzimage --xz IN.elf OUT also appends the whole ELF, XZ-compressed as the
 * kernel build does (x86 BCJ + LZMA2, CRC32 check, then its size as 4
 * little-endian bytes), as the payload the header points at (payload_offset,
 * payload_length; init_size grows to hold it): the image still boots
 * through its 64-bit entry, and a loader that extracts the payload boots the
 * same guest as an ELF.
 */
#include <elf.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SETUP_SECTS 1
#define SETUP_SIZE  ((SETUP_SECTS + 1) * 512)

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        if (n > 0 && (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *size = (size_t)n;
    }
    fclose(f);
    return buf;
}

static void put16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* in[0..n) as the kernel build's XZ payload: the stream, then n (LE32). */
static unsigned char *xz_payload(const unsigned char *in, size_t n, size_t *out_len)
{
    lzma_options_lzma lz;
    if (lzma_lzma_preset(&lz, 1))
        return NULL;
    lzma_filter filters[] = {{.id = LZMA_FILTER_X86, .options = NULL},
                             {.id = LZMA_FILTER_LZMA2, .options = &lz},
                             {.id = LZMA_VLI_UNKNOWN, .options = NULL}};
    size_t cap = lzma_stream_buffer_bound(n) + 4, pos = 0;
    unsigned char *out = malloc(cap);
    if (!out || lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, in, n, out, &pos,
                                          cap - 4) != LZMA_OK) {
        free(out);
        return NULL;
    }
    put32(out + pos, (uint32_t)n);
    *out_len = pos + 4;
    return out;
}

int main(int argc, char **argv)
{
    bool xz = argc == 4 && strcmp(argv[1], "--xz") == 0;
    if (xz) {
        argv++;
        argc--;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: mkbzimage [--xz] IN.elf OUT\n");
        return 2;
    }
    size_t size;
    unsigned char *elf = slurp(argv[1], &size);
    if (!elf || size < sizeof(Elf64_Ehdr)) {
        fprintf(stderr, "mkbzimage: cannot read %s\n", argv[1]);
        return 1;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, elf, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr) > size) {
        fprintf(stderr, "mkbzimage: %s is not an ELF64 executable\n", argv[1]);
        return 1;
    }
    uint64_t base = UINT64_MAX, file_end = 0, mem_end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, elf + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_offset + ph.p_filesz > size) {
            fprintf(stderr, "mkbzimage: segment %u outside the file\n", i);
            return 1;
        }
        if (ph.p_paddr < base)
            base = ph.p_paddr;
        if (ph.p_paddr + ph.p_filesz > file_end)
            file_end = ph.p_paddr + ph.p_filesz;
        if (ph.p_paddr + ph.p_memsz > mem_end)
            mem_end = ph.p_paddr + ph.p_memsz;
    }
    if (base == UINT64_MAX || eh.e_entry != base + 0x200 || mem_end - base > (64u << 20)) {
        fprintf(stderr, "mkbzimage: want PT_LOADs under 64 MiB with the entry at base + 0x200\n");
        return 1;
    }
    uint64_t flat = (file_end - base + 15) & ~15ull;
    uint64_t init_size = (mem_end - base + 0xfff) & ~0xfffull;
    size_t xz_len = 0;
    unsigned char *payload = xz ? xz_payload(elf, size, &xz_len) : NULL;
    if (xz && !payload) {
        fprintf(stderr, "mkbzimage: cannot compress %s\n", argv[1]);
        return 1;
    }
    uint64_t ksize = (flat + xz_len + 15) & ~15ull;
    if (xz && size > init_size)
        init_size = (size + 0xfff) & ~0xfffull;
    unsigned char *out = calloc(1, SETUP_SIZE + ksize);
    if (!out)
        return 1;
    if (xz)
        memcpy(out + SETUP_SIZE + flat, payload, xz_len);
    unsigned char *k = out + SETUP_SIZE;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, elf + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_LOAD && ph.p_filesz)
            memcpy(k + (ph.p_paddr - base), elf + ph.p_offset, ph.p_filesz);
    }

    out[0x1f1] = SETUP_SECTS;
    put32(out + 0x1f4, (uint32_t)(ksize / 16)); /* syssize */
    put16(out + 0x1fe, 0xaa55);                 /* boot_flag */
    out[0x200] = 0xeb;                          /* jmp short: header ends at 0x26c */
    out[0x201] = 0x6a;
    memcpy(out + 0x202, "HdrS", 4);
    put16(out + 0x206, 0x020f);                    /* version 2.15 */
    out[0x211] = 0x01;                             /* loadflags: LOADED_HIGH */
    put32(out + 0x214, (uint32_t)base);            /* code32_start */
    put32(out + 0x22c, 0x7fffffff);                /* initrd_addr_max */
    put32(out + 0x230, 0x200000);                  /* kernel_alignment */
    out[0x234] = 0;                                /* relocatable_kernel: no */
    out[0x235] = 12;                               /* min_alignment */
    put16(out + 0x236, 0x1);                       /* xloadflags: XLF_KERNEL_64 */
    put32(out + 0x238, 0x7ff);                     /* cmdline_size */
    put32(out + 0x248, (uint32_t)(xz ? flat : 0)); /* payload_offset */
    put32(out + 0x24c, (uint32_t)xz_len);          /* payload_length */
    put64(out + 0x258, base);                      /* pref_address */
    put32(out + 0x260, (uint32_t)init_size);

    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(out, 1, SETUP_SIZE + ksize, f) != SETUP_SIZE + ksize || fclose(f) != 0) {
        fprintf(stderr, "mkbzimage: cannot write %s\n", argv[2]);
        return 1;
    }
    free(out);
    free(payload);
    free(elf);
    return 0;
}
