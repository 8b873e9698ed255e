/* SPDX-License-Identifier: Apache-2.0 */
/* libvmm: the umbrella header. Including it pulls in every public component. */
#ifndef VMM_VMM_H
#define VMM_VMM_H

#include <vmm/abi.h>
#include <vmm/error.h>
#include <vmm/version.h>
#include <vmm/memory.h>
#include <vmm/bus.h>
#include <vmm/event.h>
#include <vmm/vm.h>
#include <vmm/vcpu.h>
#include <vmm/devices.h>
#include <vmm/loader.h>
#include <vmm/linux.h>
#include <vmm/machine.h>
#include <vmm/acpi.h>
#include <vmm/fdt.h>
#include <vmm/virtio.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_rng.h>
#include <vmm/virtio_blk.h>
#include <vmm/seccomp.h>
#include <vmm/function_abi.h>
#include <vmm/function.h>
#include <vmm/pci.h>
#include <vmm/virtio_pci.h>
#include <vmm/vfio.h>
#include <vmm/virtio_net.h>
#include <vmm/virtio_balloon.h>
#include <vmm/virtio_vsock.h>
#include <vmm/snapshot.h>
#include <vmm/stats.h>
#include <vmm/arm64.h>

#endif /* VMM_VMM_H */
