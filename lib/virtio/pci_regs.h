/* SPDX-License-Identifier: Apache-2.0 */
/* The virtio-pci modern layout (virtio 1.2 section 4.1.4) as this library's
 * transport lays it out in BAR 0: what a driver sees. Private to
 * lib/virtio/pci.c and the tests that play the driver. */
#ifndef VMM_VIRTIO_PCI_REGS_H
#define VMM_VIRTIO_PCI_REGS_H

#define VPCI_VENDOR      0x1af4
#define VPCI_DEVICE_BASE 0x1040 /* + device type: a modern-only device */
#define VPCI_SUBSYSTEM   0x0040

/* Vendor capabilities: struct virtio_pci_cap's cfg_type. */
#define VPCI_CAP_VENDOR 0x09
#define VPCI_CAP_COMMON 1
#define VPCI_CAP_NOTIFY 2
#define VPCI_CAP_ISR    3
#define VPCI_CAP_DEVICE 4

/* BAR 0. */
#define VPCI_BAR_SIZE          0x8000
#define VPCI_COMMON_SIZE       0x40
#define VPCI_ISR_OFFSET        0x1000
#define VPCI_DEVICE_OFFSET     0x2000
#define VPCI_NOTIFY_OFFSET     0x3000
#define VPCI_NOTIFY_MULTIPLIER 4 /* queue i notifies at VPCI_NOTIFY_OFFSET + 4 * i */
#define VPCI_MSIX_TABLE_OFFSET 0x4000
#define VPCI_MSIX_PBA_OFFSET   0x5000

/* struct virtio_pci_common_cfg */
#define VPCI_DFSELECT       0x00 /* le32 device_feature_select */
#define VPCI_DF             0x04 /* le32 device_feature */
#define VPCI_GFSELECT       0x08 /* le32 driver_feature_select */
#define VPCI_GF             0x0c /* le32 driver_feature */
#define VPCI_MSIX_CONFIG    0x10 /* le16 config_msix_vector */
#define VPCI_NUM_QUEUES     0x12 /* le16 */
#define VPCI_STATUS         0x14 /* u8 device_status */
#define VPCI_CFG_GENERATION 0x15 /* u8 config_generation */
#define VPCI_Q_SELECT       0x16 /* le16 queue_select */
#define VPCI_Q_SIZE         0x18 /* le16 */
#define VPCI_Q_MSIX_VECTOR  0x1a /* le16 */
#define VPCI_Q_ENABLE       0x1c /* le16 */
#define VPCI_Q_NOTIFY_OFF   0x1e /* le16 */
#define VPCI_Q_DESC         0x20 /* le64 */
#define VPCI_Q_DRIVER       0x28 /* le64 */
#define VPCI_Q_DEVICE       0x30 /* le64 */
#define VPCI_Q_NOTIF_DATA   0x38 /* le16 queue_notif_config_data */
#define VPCI_Q_RESET        0x3a /* le16 queue_reset */

#endif /* VMM_VIRTIO_PCI_REGS_H */
