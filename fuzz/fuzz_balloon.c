/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The virtio balloon over virtio-mmio, with and without an event loop: the
 * input picks the device (statistics queue, free page reporting,
 * deflate-on-oom, free page hinting, queue size) and plays a hostile guest in fuzz_mmio.h's
 * language: page number arrays of any length and content on the inflate
 * and deflate queues (pages the guest's own rings live in included: they
 * really go back to the host, read as zeroes afterwards), free page reports
 * of any address and length, statistics buffers, configuration space
 * writes; the host side sets targets, asks for statistics and starts and
 * ends hint commands meanwhile.
 *
 * Checked: no memory error, UB or leak (the sanitizers); destroy leaves
 * nothing on the loop and no late access to guest memory; the counters say
 * what the host asked (the target) and hold only known statistics.
 */
#include <errno.h>
#include <vmm/virtio_balloon.h>

#include "fuzz_mmio.h"

enum op { OP_TARGET = FM_OP_COUNT, OP_REQUEST_STATS, OP_STATS, OP_HINT, OP_COUNT };

static struct vmm_event_loop *loop;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop) {
        fz_quiet_logs();
        FZ_CHECK(vmm_event_loop_create(&loop) == 0);
    }
    struct fz in = {data, size};
    uint8_t cfg = fz_u8(&in);
    uint32_t target = fz_u16(&in);
    struct vmm_virtio_balloon_config bc =
        VMM_INIT(struct vmm_virtio_balloon_config, .target_bytes = (uint64_t)target << 12,
                 .stats = cfg & 1, .reporting = cfg & 2, .deflate_on_oom = cfg & 4,
                 .queue_size = cfg & 8 ? 16 : 256, .hinting = cfg & 16);
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    FZ_CHECK(vmm_virtio_balloon_create(&bc, &dev) == 0);
    struct fm f;
    fm_open(&f, &dev, dev.num_queues, cfg & 0x80 ? NULL : loop);
    struct vmm_virtio_transport *t = vmm_virtio_mmio_transport(f.m);
    for (unsigned steps = 0; fz_more(&in) && steps < 1024; steps++) {
        unsigned op = fz_u8(&in) % OP_COUNT;
        switch (op) {
        case OP_TARGET: {
            uint64_t bytes = fz_u64(&in) % (1ull << 46);
            int r = vmm_virtio_balloon_set_target(t, bytes);
            FZ_CHECK(r == ((bytes >> 12) > UINT32_MAX ? -EINVAL : 0));
            if (r == 0)
                target = (uint32_t)(bytes >> 12);
            break;
        }
        case OP_REQUEST_STATS: {
            int r = vmm_virtio_balloon_request_stats(t);
            FZ_CHECK(r == 0 || r == -EAGAIN);
            break;
        }
        case OP_STATS: {
            struct vmm_virtio_balloon_stats st = VMM_INIT(struct vmm_virtio_balloon_stats);
            FZ_CHECK(vmm_virtio_balloon_get_stats(t, &st) == 0);
            FZ_CHECK(st.target_pages == target);
            FZ_CHECK((st.guest_valid >> VMM_VIRTIO_BALLOON_S_NR) == 0);
            break;
        }
        case OP_HINT: {
            bool start = fz_u8(&in) & 1;
            int r = vmm_virtio_balloon_hint(t, start);
            FZ_CHECK(bc.hinting ? (start ? r >= 2 : r == 1) : r == -ENOTSUP);
            break;
        }
        default:
            fm_step(&f, &in, op);
            break;
        }
    }
    fm_close(&f);
    return 0;
}
