/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-console (virtio 1.2 section 5.3, device type 3): one port, no
 * multiport; guest output goes to a host fd, host input from another. */
#ifndef VMM_VIRTIO_CONSOLE_H
#define VMM_VIRTIO_CONSOLE_H

#include <stdint.h>
#include <vmm/error.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Configuration of a console. Growth convention (abi.h). */
struct vmm_virtio_console_config {
    uint32_t size; /* sizeof(struct vmm_virtio_console_config) */
    /* Host input, copied into receiveq (queue 0) buffers; -1: none. A
     * pollable fd (tty, pipe, socket) is read by the event loop when it has
     * data (its flags are left alone); one epoll cannot watch (regular file,
     * /dev/null) is read as the guest offers buffers, and so is any fd on a
     * transport without an event loop. */
    int in_fd;
    /* Host output: transmitq (queue 1) buffers are written here; -1:
     * discarded. A full pipe/socket/tty is waited on by the event loop, never
     * by blocking it; EPIPE and other errors drop the output (logged once). */
    int out_fd;
    unsigned cols, rows; /* console size offered with VIRTIO_CONSOLE_F_SIZE; 0: not offered */
    unsigned queue_size; /* default 256 */
};

/* Feature bits of the console. */
#define VMM_VIRTIO_CONSOLE_F_SIZE      (1ull << 0)
#define VMM_VIRTIO_CONSOLE_F_MULTIPORT (1ull << 1)

/*
 * Describe a console for a transport: fills *dev, whose .size the caller has
 * set (abi.h; its opaque is a new device that the transport frees through
 * ops->destroy; if *dev is never handed to a transport, free it with
 * vmm_virtio_device_free). The fds stay the caller's. Returns 0, -EINVAL
 * (cfg NULL, a cfg->size or dev->size the library does not know, bad queue
 * size, cols or rows over 65535),
 * -EBADF (an fd that is not open) or -ENOMEM.
 */
VMM_API VMM_MUST_USE int vmm_virtio_console_create(const struct vmm_virtio_console_config *cfg,
                                                   struct vmm_virtio_device *dev);

/* Create a console and put it on a virtio-mmio transport on vm (see
 * vmm_vm_add_virtio_mmio). out may be NULL. */
VMM_API VMM_MUST_USE int vmm_vm_add_virtio_console(struct vmm_vm *vm, uint64_t base, unsigned gsi,
                                                   const struct vmm_virtio_console_config *cfg,
                                                   struct vmm_virtio_mmio **out);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VIRTIO_CONSOLE_H */
