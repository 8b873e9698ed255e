/* SPDX-License-Identifier: Apache-2.0 */
/* The virtio-mmio register layout (virtio 1.2 section 4.2.2): what a driver
 * sees in the window. Private to the transport (lib/virtio/mmio.c) and to the
 * tests and benchmark that play the driver; embedders never need it. */
#ifndef VMM_VIRTIO_MMIO_REGS_H
#define VMM_VIRTIO_MMIO_REGS_H

/* Register offsets. */
#define VMM_VIRTIO_MMIO_MAGIC_VALUE         0x000 /* 0x74726976, "virt" */
#define VMM_VIRTIO_MMIO_VERSION             0x004 /* 2 */
#define VMM_VIRTIO_MMIO_DEVICE_ID           0x008
#define VMM_VIRTIO_MMIO_VENDOR_ID           0x00c
#define VMM_VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VMM_VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VMM_VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VMM_VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VMM_VIRTIO_MMIO_QUEUE_SEL           0x030
#define VMM_VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VMM_VIRTIO_MMIO_QUEUE_NUM           0x038
#define VMM_VIRTIO_MMIO_QUEUE_READY         0x044
#define VMM_VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VMM_VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VMM_VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VMM_VIRTIO_MMIO_STATUS              0x070
#define VMM_VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VMM_VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VMM_VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VMM_VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VMM_VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VMM_VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VMM_VIRTIO_MMIO_SHM_SEL             0x0ac
#define VMM_VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VMM_VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VMM_VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VMM_VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VMM_VIRTIO_MMIO_QUEUE_RESET         0x0c0
#define VMM_VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VMM_VIRTIO_MMIO_CONFIG              0x100

#define VMM_VIRTIO_MMIO_MAGIC  0x74726976u
#define VMM_VIRTIO_MMIO_VENDOR 0x4d4d56u /* "VMM" */

#endif /* VMM_VIRTIO_MMIO_REGS_H */
