/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The receiving side of live migration (lib/snapshot/migrate.c): a stream
 * of messages the input describes goes through a socket into
 * vmm_migrate_recv_hello, then vmm_vm_migrate_recv on a VM of one 1 MiB
 * memory region, no vCPU and no device (made once: with a split irqchip,
 * restoring onto it costs one KVM_SET_CLOCK). Without a usable /dev/kvm only
 * the hello is received (said once on stderr).
 *
 * The input is a program: HELLO (version, blob), PAGES (region, count,
 * first page, fill byte; the header says what the input says, the pages
 * follow), STATE (a state file body the target seals with a valid header
 * and CRCs, so the fuzzer explores the sections: META, MEMR... and their
 * checks against the VM), END, OFFER (capabilities: the receiver answers
 * with an ACCEPT), MEMFD (a region's memfd message without its descriptor,
 * which the stream cannot carry), and raw bytes (headers of any type and
 * length, truncations). The stream (up to 1 MiB, cut where the socket's
 * buffer is full) is in the socket before the receiver runs, which may stop
 * reading at any point.
 *
 * Checked: no memory error, UB or leak; the receiver returns 0 or a
 * -errno, and answers with exactly one REPLY whose status matches (after
 * one ACCEPT, when the stream made an offer).
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmm/memory.h>
#include <vmm/snapshot.h>
#include <vmm/vm.h>

#include "fuzz_common.h"
#include "snapshot/snapshot_internal.h"

#define MEM_BYTES  (1u << 20)
#define MAX_STREAM (1u << 20)

enum op { OP_HELLO, OP_PAGES, OP_STATE, OP_END, OP_RAW, OP_OFFER, OP_MEMFD, OP_COUNT };

static struct vmm_vm *vm;
static bool ready;

struct stream {
    uint8_t *p; /* MAX_STREAM bytes */
    size_t len;
};

static void put(struct stream *s, const void *p, size_t n)
{
    if (n > MAX_STREAM - s->len)
        n = MAX_STREAM - s->len;
    if (!n)
        return;
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

static void header(struct stream *s, uint32_t type, uint64_t len)
{
    uint32_t h[4] = {MIG_MAGIC, type, (uint32_t)len, (uint32_t)(len >> 32)};
    put(s, h, sizeof(h));
}

static void build(struct stream *s, struct fz *in)
{
    for (unsigned steps = 0; fz_more(in) && steps < 64 && s->len < MAX_STREAM; steps++) {
        switch (fz_u8(in) % OP_COUNT) {
        case OP_HELLO: {
            uint32_t version = fz_u8(in) & 1 ? fz_u32(in) : 1;
            size_t n;
            const uint8_t *blob = fz_take(in, fz_u16(in), &n);
            header(s, 1, 4 + n);
            put(s, &version, 4);
            put(s, blob, n);
            break;
        }
        case OP_PAGES: {
            uint32_t hdr[4] = {fz_u8(in), fz_u16(in), fz_u32(in), 0};
            uint8_t fill = fz_u8(in);
            uint32_t sent = hdr[1] % 300; /* what follows; hdr[1] is what it claims */
            header(s, 2, 16 + (uint64_t)sent * 4096);
            put(s, hdr, sizeof(hdr));
            static uint8_t page[4096];
            memset(page, fill, sizeof(page));
            for (uint32_t i = 0; i < sent; i++)
                put(s, page, sizeof(page));
            break;
        }
        case OP_STATE: {
            size_t n;
            const uint8_t *body = fz_take(in, fz_u16(in), &n);
            uint8_t h[SNAP_HEADER_SIZE];
            uint32_t version = SNAP_VERSION, hsize = SNAP_HEADER_SIZE, crc = snap_crc32(0, body, n);
            uint64_t blen = n;
            memcpy(h, SNAP_MAGIC, 8);
            memcpy(h + 8, &version, 4);
            memcpy(h + 12, &hsize, 4);
            memcpy(h + 16, &blen, 8);
            memcpy(h + 24, &crc, 4);
            uint32_t hcrc = snap_crc32(0, h, 28);
            memcpy(h + 28, &hcrc, 4);
            header(s, 3, sizeof(h) + n);
            put(s, h, sizeof(h));
            put(s, body, n);
            break;
        }
        case OP_END:
            header(s, 4, 0);
            break;
        case OP_RAW: {
            size_t n;
            const uint8_t *raw = fz_take(in, fz_u8(in), &n);
            put(s, raw, n);
            break;
        }
        case OP_OFFER: { /* answered with an ACCEPT before the reply */
            uint32_t caps = fz_u8(in) & 1 ? fz_u32(in) : MIG_CAP_MEMFD;
            header(s, MIG_OFFER, 4);
            put(s, &caps, 4);
            break;
        }
        case OP_MEMFD: { /* without its descriptor: the stream has none */
            struct mig_memfd m = {fz_u8(in) % 3, 0, fz_u8(in) & 1 ? fz_u32(in) : 0,
                                  fz_u8(in) & 1 ? fz_u32(in) : MEM_BYTES};
            header(s, MIG_MEMFD, sizeof(m));
            put(s, &m, sizeof(m));
            break;
        }
        }
    }
}

/* The whole stream into the socket before the receiver runs (no thread
 * to switch to): as much as its buffer holds, then end of stream. */
static void send_stream(const struct stream *s, int fd)
{
    int big = 2 * MAX_STREAM;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    for (size_t off = 0; off < s->len;) {
        ssize_t w = send(fd, s->p + off, s->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0)
            break; /* full: the rest is cut off */
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
}

static void init_once(void)
{
    fz_quiet_logs();
    ready = true;
    struct vmm_vm_config cfg = VMM_INIT(struct vmm_vm_config, .irqchip = VMM_IRQCHIP_SPLIT);
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = MEM_BYTES);
    if (vmm_vm_create(&cfg, &vm) < 0 || vmm_vm_add_memory(vm, &rc) < 0) {
        fprintf(stderr, "fuzz_migrate: no usable /dev/kvm: receiving the hello only\n");
        vmm_vm_destroy(vm);
        vm = NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        init_once();
    struct fz in = {data, size};
    static uint8_t buf[MAX_STREAM];
    struct stream s = {.p = buf};
    build(&s, &in);
    int sv[2];
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    send_stream(&s, sv[0]);

    static uint8_t blob[VMM_SNAPSHOT_APP_MAX];
    size_t len = SIZE_MAX;
    int r = vmm_migrate_recv_hello(sv[1], blob, sizeof(blob), &len);
    FZ_CHECK(r <= 0);
    if (r == 0) {
        FZ_CHECK(len <= sizeof(blob));
        if (vm) {
            r = vmm_vm_migrate_recv(vm, sv[1]);
            FZ_CHECK(r <= 0);
            /* Exactly one reply, with the receiver's status, after the
             * answer to an offer, if any. */
            shutdown(sv[1], SHUT_WR);
            uint32_t h[4], status;
            FZ_CHECK(recv(sv[0], h, sizeof(h), MSG_WAITALL) == sizeof(h));
            if (h[1] == MIG_ACCEPT) {
                uint32_t caps;
                FZ_CHECK(h[2] == 4 && recv(sv[0], &caps, 4, MSG_WAITALL) == 4);
                FZ_CHECK((caps & ~MIG_CAP_MEMFD) == 0);
                FZ_CHECK(recv(sv[0], h, sizeof(h), MSG_WAITALL) == sizeof(h));
            }
            FZ_CHECK(h[0] == MIG_MAGIC && h[1] == 5 && h[2] >= 4 && h[3] == 0);
            FZ_CHECK(recv(sv[0], &status, 4, MSG_WAITALL) == 4 && status == (uint32_t)-r);
        }
    }
    close(sv[1]);
    close(sv[0]);
    return 0;
}
