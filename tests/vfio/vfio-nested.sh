#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# lib/vfio against a real VFIO (CTest vfio_nested, label nested): a level 1 with QEMU's emulated
# IOMMU (intel-iommu with interrupt remapping; intel_iommu=on iommu=pt) and its emulated edu device,
# which level 1 binds to vfio-pci through driver_override; vfio-probe then opens it through the
# library and must read edu's IDs (1234:11e8) from its configuration space and find BAR 0 (1 MiB,
# mmap-able); a device still on its host driver (the 9p share's virtio-pci function) must be
# refused with -EBUSY (-16) and the reason. Then DMA: guest memory mapped through the container
# (a second mapping refused with -EBUSY; memory over the MSI window the IOMMU reserves refused with
# -EINVAL), KVM's VFIO pseudo-device created on a VM, edu's ID register read through BAR 0, and edu copying a
# pattern out of guest memory into its buffer and back to another place.
# usage: vfio-nested.sh VFIO_PROBE WORK_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
probe=$1 work=$2
mkdir -p "$work"

# shellcheck disable=SC2016 # expanded by the shell in level 1
inner='
set -u
for m in vfio vfio_iommu_type1 vfio-pci; do modprobe "$m" || { echo "cannot load $m"; exit 3; }; done
edu="" other=""
for d in /sys/bus/pci/devices/*; do
    id="$(cat "$d/vendor"):$(cat "$d/device")"
    case "$id" in
    0x1234:0x11e8) edu=${d##*/} ;;
    0x1af4:*) [ -e "$d/driver" ] && [ -z "$other" ] && other=${d##*/} ;;
    esac
done
[ -n "$edu" ] || { echo "no edu device"; exit 3; }
echo "edu $edu group $(basename "$(readlink "/sys/bus/pci/devices/$edu/iommu_group")") other $other"
echo vfio-pci >"/sys/bus/pci/devices/$edu/driver_override"
[ -e "/sys/bus/pci/devices/$edu/driver" ] && echo "$edu" >"/sys/bus/pci/devices/$edu/driver/unbind"
echo "$edu" >/sys/bus/pci/drivers_probe
echo "driver $(basename "$(readlink "/sys/bus/pci/devices/$edu/driver")")"
"$1" "$edu" "$other"
'
out=$(bash "$here/../nested/run-nested.sh" --work "$work" -q --timeout 300 \
    --qemu-arg -device --qemu-arg intel-iommu,intremap=on --qemu-arg -device --qemu-arg edu \
    --append "intel_iommu=on iommu=pt" -- sh -c "$inner" sh "$probe" 2>&1)
rc=$?
echo "$out"
[ "$rc" = 77 ] && exit 77
fails=0
check() { # check WHAT PATTERN
    if grep -qE -- "$2" <<<"$out"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
check "level 1 ran the probe (status $rc)" "^container 0$"
check "bound to vfio-pci" "^driver vfio-pci$"
check "opened through the library" "^open [0-9a-f:.]+ 0$"
check "configuration space read" "^config 0 id 1234:11e8$"
check "BAR 0 region" "^bar0 0 len 0x100000 flags read write mmap$"
check "a region past the last refused" "^region 1000 -22$"
check "a device on its host driver refused" "^open [0-9a-f:.]+ -16$"
check "... with the reason" "is bound to virtio-pci, not to vfio-pci"
check "KVM's VFIO device, once" "^kvm-vfio 0 again -16$"
check "guest memory over the MSI window refused" "^map reserved -22$"
check "... naming the range" "reserved range \\[0xfee00000, 0xfeefffff\\] \\(msi\\)"
check "guest memory DMA-mapped once" "^map 0 again -16$"
check "edu's ID through BAR 0" "^edu id 0x010000ed$"
check "edu DMA to and from guest memory" "^dma ok$"
[ "$rc" = 0 ] || { echo "FAIL: exit status $rc"; fails=$((fails + 1)); }
[ "$fails" = 0 ]
