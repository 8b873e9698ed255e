/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-vsock (virtio 1.2 section 5.10, device type 19): stream sockets
 * between the guest (its CID in the configuration space) and the host
 * (CID 2), carried on the host side by Unix sockets in Firecracker's style.
 *
 * The device listens on a Unix socket at path. A host program connects
 * there and writes "CONNECT <port>\n" (port in decimal, the guest's
 * listening port); once the guest accepts, the device answers
 * "OK <host_port>\n" (the host-side port it chose for the connection) and
 * the socket carries the stream both ways. A guest that refuses closes the
 * socket without an answer; a malformed handshake closes that socket only.
 * A handshake made before the guest's driver runs (or posts receive
 * buffers) waits for it. A guest connection to host port P is connected to
 * the Unix socket "<path>_<P>" (refused, RST, where nothing listens there).
 *
 * Flow control is the specification's credit scheme both ways: the guest
 * may have at most VMM_VIRTIO_VSOCK_BUF_ALLOC bytes per connection that the
 * host socket has not taken yet (the device holds them; a guest that sends
 * past its credit has the connection reset), and the device sends the
 * guest no more than the buffer space the guest advertises. Connections
 * are at most VMM_VIRTIO_VSOCK_MAX_CONNS, so what a guest can make the host
 * hold is bounded. Everything runs on the transport's event loop with
 * non-blocking sockets. A device reset closes every connection the guest
 * knew about (host connections still waiting for the guest stay).
 *
 * With vhost (struct vmm_virtio_vsock_config.vhost) the kernel's
 * vhost-vsock runs the receive and transmit queues instead, and the host
 * side is the kernel's AF_VSOCK sockets.
 */
#ifndef VMM_VIRTIO_VSOCK_H
#define VMM_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The host's CID (VMADDR_CID_HOST) and the lowest a guest may have. */
#define VMM_VIRTIO_VSOCK_HOST_CID      2
#define VMM_VIRTIO_VSOCK_MIN_GUEST_CID 3

/* Connections a device carries at once (host- and guest-initiated). */
#define VMM_VIRTIO_VSOCK_MAX_CONNS 128
/* The receive buffer the device advertises per connection (buf_alloc):
 * the most guest bytes it holds for a host socket that does not read. */
#define VMM_VIRTIO_VSOCK_BUF_ALLOC (128u << 10)

/* Configuration of a vsock device. Zero means default; growth convention
 * (abi.h). */
struct vmm_virtio_vsock_config {
    uint32_t size;      /* sizeof(struct vmm_virtio_vsock_config) */
    uint64_t guest_cid; /* VMM_VIRTIO_VSOCK_MIN_GUEST_CID .. 0xfffffffe; required */
    /* The Unix socket the device listens on; made by create (nothing may
     * exist there), removed when the device goes away. Guest connections
     * to port P go to "<path>_<P>". Required without vhost, NULL with it;
     * at most 96 bytes. */
    const char *path;
    unsigned queue_size; /* default 256 */
    /* Run rx and tx in the kernel with vhost-vsock (/dev/vhost-vsock, the
     * vhost_vsock module): the host side is then the kernel's AF_VSOCK
     * sockets (connect to guest_cid, listen on VMADDR_CID_ANY), not Unix
     * sockets. Guest notifications reach it through the transport's
     * ioeventfds, its interrupts are relayed by the event loop. The
     * counters below do not move, and pages it writes are not marked in
     * the dirty log. */
    bool vhost;
};

/*
 * Describe a vsock device for a transport: makes the listening socket at
 * cfg->path and fills *dev, whose .size the caller has set (abi.h; its
 * opaque is a new device that the transport frees through ops->destroy; if
 * *dev is never handed to a transport, free it with vmm_virtio_device_free).
 * The transport needs an event loop (attach fails with -EINVAL without
 * one). Returns 0, -EINVAL (cfg NULL, a CID out of range, no or too long a
 * path, or one with vhost, a size the library does not know, bad queue
 * size), -EADDRINUSE (something exists at path; with vhost: another VM has
 * the CID), -ENOENT (vhost without /dev/vhost-vsock), -ENOMEM or another
 * -errno from the socket or vhost calls; the reason is logged.
 */
VMM_API VMM_MUST_USE int vmm_virtio_vsock_create(const struct vmm_virtio_vsock_config *cfg,
                                                 struct vmm_virtio_device *dev);

/* Create a vsock device and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_vsock(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                                 const struct vmm_virtio_vsock_config *cfg,
                                                 struct vmm_virtio_mmio **out);

/* Counters of a vsock device. */
struct vmm_virtio_vsock_stats {
    uint32_t size;        /* sizeof(struct vmm_virtio_vsock_stats); growth convention (abi.h) */
    uint64_t tx_packets;  /* packets the guest sent (any op) */
    uint64_t tx_bytes;    /* stream bytes the guest sent, taken for host sockets */
    uint64_t rx_packets;  /* packets delivered to the guest (any op) */
    uint64_t rx_bytes;    /* stream bytes delivered to the guest */
    uint64_t bad_packets; /* guest packets dropped: short header, wrong CIDs */
    uint64_t resets;      /* RST packets sent to the guest */
    uint64_t conns_total; /* connections established since creation */
    uint32_t conns_open;  /* connections open now (handshakes included) */
};

/* Copy the device's counters into *stats, whose .size the caller has set
 * (abi.h). Returns 0, or -EINVAL (NULL, t's device is not a vsock device,
 * or a size the library does not know: nothing is written). Takes the
 * device lock: not from inside the device's callbacks. */
VMM_API int vmm_virtio_vsock_get_stats(struct vmm_virtio_transport *t,
                                       struct vmm_virtio_vsock_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_VSOCK_H */
