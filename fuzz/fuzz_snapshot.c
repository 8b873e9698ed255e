/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot state file reader (lib/snapshot): the input is a state file,
 * parsed from memory (snap_file_parse, then every section found and read
 * back through the bounded reader) and read from a real file in a scratch
 * snapshot directory (vmm_snapshot_app_data: open, size check, read, parse,
 * the application blob). Nothing is restored onto a VM: that needs
 * /dev/kvm, and the sections' own parsers are the parts' (tests/integration
 * test_snapshot covers those with real VMs).
 *
 * The first input byte is a mode: bit 0 seals the rest as a file body
 * (header, length and both CRCs computed here, so the fuzzer explores the
 * sections rather than the CRC), bits 1-3 pick the buffer size offered for
 * the blob.
 *
 * Checked: no memory error, UB or leak; a parsed file's sections lie inside
 * it, 8-byte aligned, unique, at most SNAP_MAX_SECTIONS, each found by its
 * (tag, instance) and readable to exactly its end; the file road and the
 * memory road agree on the verdict and on the blob.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <vmm/snapshot.h>

#include "fuzz_common.h"
#include "snapshot/snapshot_internal.h"

static char dir[PATH_MAX], state_path[PATH_MAX + 8];

static void remove_dir(void)
{
    unlink(state_path);
    rmdir(dir);
}

static void init_once(void)
{
    fz_quiet_logs();
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/libvmm-fuzz-snap-XXXXXX", base ? base : "/tmp");
    FZ_CHECK(mkdtemp(dir));
    snprintf(state_path, sizeof(state_path), "%s/state", dir);
    atexit(remove_dir);
}

/* data[0..size) as a state file: sealed (a header made for it) or as is. */
static uint8_t *make_file(const uint8_t *data, size_t size, bool seal, size_t *len)
{
    size_t head = seal ? SNAP_HEADER_SIZE : 0;
    uint8_t *f = malloc(head + size + 1);
    FZ_CHECK(f);
    memcpy(f + head, data, size);
    if (seal) {
        uint32_t version = SNAP_VERSION, hsize = SNAP_HEADER_SIZE;
        uint64_t body = size;
        uint32_t crc = snap_crc32(0, data, size);
        memcpy(f, SNAP_MAGIC, 8);
        memcpy(f + 8, &version, 4);
        memcpy(f + 12, &hsize, 4);
        memcpy(f + 16, &body, 8);
        memcpy(f + 24, &crc, 4);
        uint32_t hcrc = snap_crc32(0, f, 28);
        memcpy(f + 28, &hcrc, 4);
    }
    *len = head + size;
    return f;
}

/* Every section found and read to its end; returns the blob's length or
 * SIZE_MAX when there is none. */
static size_t walk(struct vmm_snap_file *f)
{
    size_t app = SIZE_MAX;
    FZ_CHECK(f->count <= SNAP_MAX_SECTIONS);
    for (unsigned i = 0; i < f->count; i++) {
        const struct snap_section *s = &f->sections[i];
        FZ_CHECK(s->payload >= f->data + SNAP_HEADER_SIZE + 16);
        FZ_CHECK(s->len <= f->size && (size_t)(s->payload - f->data) <= f->size - s->len);
        FZ_CHECK((size_t)(s->payload - f->data) % 8 == 0);
        for (unsigned j = 0; j < i; j++)
            FZ_CHECK(f->sections[j].tag != s->tag || f->sections[j].instance != s->instance);
        struct vmm_snap_reader r;
        FZ_CHECK(snap_file_find(f, s->tag, s->instance, &r) == 0);
        FZ_CHECK(r.p == s->payload && r.left == s->len);
        uint64_t v;
        size_t got = 0;
        while (snap_get_u64(&r, &v) == 0)
            got += 8;
        uint8_t b;
        while (snap_get(&r, &b, 1) == 0)
            got++;
        FZ_CHECK(got == s->len && snap_done(&r) == 0);
        if (s->tag == SNAP_TAG_APP && s->instance == 0)
            app = s->len;
    }
    return app;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        init_once();
    struct fz in = {data, size};
    uint8_t mode = fz_u8(&in);
    size_t len;
    uint8_t *file = make_file(in.p, in.n, mode & 1, &len);

    int fd = open(state_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FZ_CHECK(fd >= 0 && write(fd, file, len) == (ssize_t)len);
    close(fd);

    /* From memory (the parser takes the buffer over). */
    struct vmm_snap_file f;
    char why[200] = "";
    int pr = snap_file_parse(file, len, &f, why, sizeof(why));
    size_t app = SIZE_MAX;
    if (pr == 0) {
        app = walk(&f);
        snap_file_free(&f);
    } else {
        FZ_CHECK((pr == -EBADMSG || pr == -EPROTO) && why[0]);
    }

    /* From the directory. */
    static uint8_t blob[4096];
    size_t max = (size_t)1 << (4 * ((mode >> 1) & 3)), blen = SIZE_MAX; /* 1 .. 4096 */
    int r = vmm_snapshot_app_data(dir, blob, max, &blen);
    if (pr < 0)
        FZ_CHECK(r == pr);
    else if (app == SIZE_MAX)
        FZ_CHECK(r == -ENOENT);
    else
        FZ_CHECK(blen == app && r == (app > max ? -ENOSPC : 0));
    return 0;
}
