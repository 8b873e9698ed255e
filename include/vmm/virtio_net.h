/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-net (virtio 1.2 section 5.1, device type 1) over a Linux tap
 * device. The tap is opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so the
 * virtio-net header the guest writes goes to the kernel as it is (checked
 * against the negotiated offloads first) and the one the kernel writes comes
 * to the guest; the receive offloads the guest negotiates (GUEST_CSUM,
 * GUEST_TSO4/6, GUEST_ECN, GUEST_UFO) are handed to the tap with
 * TUNSETOFFLOAD. Mergeable receive buffers, MAC, MTU and link status in the
 * configuration space, and multiqueue (IFF_MULTI_QUEUE, one tap queue per
 * queue pair, the control queue's VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) are
 * offered. Everything runs on the transport's event loop: the tap fds are
 * non-blocking and watched only while the guest has posted receive buffers,
 * so a guest that posts none costs no CPU.
 */
#ifndef VMM_VIRTIO_NET_H
#define VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature bits of virtio-net (virtio 1.2 section 5.1.3). */
#define VMM_VIRTIO_NET_F_CSUM       (1ull << 0)
#define VMM_VIRTIO_NET_F_GUEST_CSUM (1ull << 1)
#define VMM_VIRTIO_NET_F_MTU        (1ull << 3)
#define VMM_VIRTIO_NET_F_MAC        (1ull << 5)
#define VMM_VIRTIO_NET_F_GUEST_TSO4 (1ull << 7)
#define VMM_VIRTIO_NET_F_GUEST_TSO6 (1ull << 8)
#define VMM_VIRTIO_NET_F_GUEST_ECN  (1ull << 9)
#define VMM_VIRTIO_NET_F_GUEST_UFO  (1ull << 10)
#define VMM_VIRTIO_NET_F_HOST_TSO4  (1ull << 11)
#define VMM_VIRTIO_NET_F_HOST_TSO6  (1ull << 12)
#define VMM_VIRTIO_NET_F_HOST_ECN   (1ull << 13)
#define VMM_VIRTIO_NET_F_HOST_UFO   (1ull << 14)
#define VMM_VIRTIO_NET_F_MRG_RXBUF  (1ull << 15)
#define VMM_VIRTIO_NET_F_STATUS     (1ull << 16)
#define VMM_VIRTIO_NET_F_CTRL_VQ    (1ull << 17)
#define VMM_VIRTIO_NET_F_MQ         (1ull << 22)

/* The most queue pairs a device may have. */
#define VMM_VIRTIO_NET_MAX_PAIRS 16

/* The virtio-net header every frame carries (struct virtio_net_hdr_v1, the
 * one VIRTIO_F_VERSION_1 devices use): flags, gso_type, hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers. */
#define VMM_VIRTIO_NET_HDR_SIZE 12

/* Configuration of a network device. Zero means default; growth convention
 * (abi.h). */
struct vmm_virtio_net_config {
    uint32_t size; /* sizeof(struct vmm_virtio_net_config) */
    /* Name of the tap interface (at most 15 bytes). An existing tap is
     * attached to (it must have been made with IFF_VNET_HDR, and with
     * IFF_MULTI_QUEUE when queue_pairs > 1; owned by this user, or the
     * process has CAP_NET_ADMIN); a missing one is created (CAP_NET_ADMIN)
     * and goes away with the device. Required. */
    const char *tap;
    uint8_t mac[6];       /* all zero: a random locally administered address */
    uint16_t mtu;         /* offered with VIRTIO_NET_F_MTU (68..65535); 0: not offered */
    unsigned queue_pairs; /* 1..VMM_VIRTIO_NET_MAX_PAIRS (default 1); more
                             than one offers VIRTIO_NET_F_MQ */
    unsigned queue_size;  /* default 256 */
    /* Token-bucket rate limits, with one second of burst; 0: unlimited.
     * tx is what the guest sends, rx what it receives. A frame goes when
     * its bucket is not empty and may take it below zero, so a limit is
     * kept on average and frames are never split. */
    uint64_t tx_bytes_per_sec, tx_packets_per_sec;
    uint64_t rx_bytes_per_sec, rx_packets_per_sec;
    /* Run the data plane in the kernel with vhost-net (/dev/vhost-net, the
     * vhost_net module): guest notifications reach it through the
     * transport's ioeventfds, its interrupts are relayed by the event loop
     * (virtio-mmio must set InterruptStatus). One vhost-net instance per
     * queue pair (the control queue stays in the process); no rate limit;
     * the counters below do not move, pages it writes are not
     * marked in the dirty log, and without VIRTIO_NET_F_MRG_RXBUF it leaves
     * the header's num_buffers unset (Linux's driver ignores it then). */
    bool vhost;
};

/*
 * Describe a network device for a transport: opens the tap (and one more
 * tap queue per extra queue pair), and fills *dev, whose .size the caller
 * has set (abi.h; its opaque is a new device that the transport frees
 * through ops->destroy, closing the tap; if *dev is never handed to a
 * transport, free it with vmm_virtio_device_free). The transport needs an
 * event loop (attach fails with -EINVAL without one). Returns 0, -EINVAL
 * (cfg NULL, no or too long a tap name, a multicast MAC, a size the library
 * does not know, bad queue size, queue_pairs or mtu), -ENOENT (no
 * /dev/net/tun), -EPERM
 * (the tap belongs to someone else, or creating one needs CAP_NET_ADMIN),
 * -EBUSY (the tap is in use), -ENOMEM or another -errno from the tap; the
 * reason is logged with the tap's name.
 */
VMM_API VMM_MUST_USE int vmm_virtio_net_create(const struct vmm_virtio_net_config *cfg,
                                               struct vmm_virtio_device *dev);

/* Create a network device and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_net(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                               const struct vmm_virtio_net_config *cfg,
                                               struct vmm_virtio_mmio **out);

/* Set the link status the guest sees (VIRTIO_NET_S_LINK_UP; up at start):
 * a change raises a configuration-change interrupt. While the link is down
 * no frame moves: the guest's transmissions are completed and dropped,
 * frames from the tap wait in it. Returns 0, or -EINVAL when t's device is
 * not a network device. Any thread but the device's callbacks (it takes the
 * device lock). */
VMM_API int vmm_virtio_net_set_link(struct vmm_virtio_transport *t, bool up);

/* Counters of a network device. */
struct vmm_virtio_net_stats {
    uint32_t size;       /* sizeof(struct vmm_virtio_net_stats); growth convention (abi.h) */
    uint64_t tx_packets; /* frames written to the tap */
    uint64_t tx_bytes;   /* their bytes, virtio-net header excluded */
    uint64_t tx_dropped; /* transmit chains refused (malformed, oversize,
                            offloads not negotiated, link down, tap error) */
    uint64_t rx_packets; /* frames delivered to the guest */
    uint64_t rx_bytes;   /* their bytes, header excluded */
    uint64_t rx_dropped; /* frames read from the tap that did not fit */
    uint64_t rx_buffers; /* receive chains used (more than rx_packets with
                            mergeable buffers) */
    uint64_t throttled;  /* times a rate limit held frames back */
    uint64_t ctrl_cmds;  /* control queue commands (accepted or not) */
    uint32_t queue_pairs_active; /* queue pairs the guest uses now */
};

/* Copy the device's counters into *stats, whose .size the caller has set
 * (abi.h). Returns 0, or -EINVAL (NULL, t's device is not a network device,
 * or a size the library does not know: nothing is written). Takes the device
 * lock: not from inside the device's callbacks. */
VMM_API int vmm_virtio_net_get_stats(struct vmm_virtio_transport *t,
                                     struct vmm_virtio_net_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_NET_H */
