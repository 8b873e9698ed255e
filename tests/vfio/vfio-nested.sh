#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# lib/vfio against a real VFIO (CTest vfio_nested, label nested): a level 1 with QEMU's emulated
# IOMMU (intel-iommu with interrupt remapping; intel_iommu=on iommu=pt; run-nested.sh adds
# no_timer_check, or a loaded host's slow TCG makes level 1 panic: "timer doesn't work through
# Interrupt-remapped IO-APIC") and its emulated edu device,
# which level 1 binds to vfio-pci through driver_override; vfio-probe then opens it through the
# library and must read edu's IDs (1234:11e8) from its configuration space and find BAR 0 (1 MiB,
# mmap-able); a device still on its host driver (the 9p share's virtio-pci function) must be
# refused with -EBUSY (-16) and the reason. Then DMA: guest memory mapped through the container
# (a second mapping refused with -EBUSY; memory over the MSI window the IOMMU reserves refused with
# -EINVAL), KVM's VFIO pseudo-device created on a VM, edu's ID register read through BAR 0, and edu copying a
# pattern out of guest memory into its buffer and back to another place, and into memory the VM
# adds after the mapping; with edu on that VM's PCI bus, a snapshot of the VM is refused (-ENOTSUP)
# with the reason. Then, in the same level 1, passthrough: vmm-run --vfio puts edu on its
# PCI bus and runs the vfio_edu test guest (tests/guests/vfio_edu.c) under the default seccomp
# filters: the guest finds edu, reads its ID through the mapped BAR, gets a factorial with an MSI
# and DMAs a pattern there and back, then tries hostile config writes (a bad MSI address, BAR 0
# onto RAM and around the window, decoding off) and checks edu still answers; vmm-run refuses a
# malformed address and a device on its host driver in one line each. The guest's BAR accesses
# (1000 ID reads among them) all go through the KVM memory slot: vmm-run's debug log must count no
# trapped access. A second run with --irqchip kernel also takes edu's INTx (a resample irqfd), twice.
# A third run passes edu and an e1000e through together (one container, two groups) to the
# vfio_e1000e guest for MSI-X: the table emulated in a trapped page, a vector raised by the NIC,
# hostile table and PBA writes.
# Last, a stock Linux as level 2 (the Debian kernel level 1 runs, the level-2 initramfs of tests/linux
# built with tests/linux/l2-lib.sh, with e1000e from the kernel's modules and l2-vfio-net.sh): with
# the e1000e passed through (vmm-run --vfio, the default split irqchip), its own driver takes the NIC,
# gets link and pings level 1, whose own e1000 sits on the same QEMU hub (-netdev hubport, no other
# backend: nothing leaves the emulator) at 10.0.3.1.
# The first run (the split irqchip) takes edu's INTx too: the library's IOAPIC resamples it.
# usage: vfio-nested.sh VFIO_PROBE WORK_DIR VMM_RUN VFIO_EDU_ELF VFIO_E1000E_ELF
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
probe=$1 work=$2 vmm_run=$3 guest=$4 guest_msix=$5
mkdir -p "$work"
work=$(cd "$work" && pwd)

# The level-2 Linux: the newest kernel (as level 1 and tests/linux), busybox, e1000e.
# shellcheck source=../linux/l2-lib.sh
. "$here/../linux/l2-lib.sh"
kernel=${VMM_LINUX_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
kver=${kernel##*/vmlinuz-}
busybox=$(command -v busybox || true)
l2=$work/l2
rm -rf "$l2"
mkdir -p "$l2"
l2_why=""
if [ -z "$kernel" ] || [ -z "$busybox" ]; then
    l2_why="no kernel or busybox"
elif ! l2_modules "${VMM_LINUX_MODULES:-/lib/modules/$kver}" "$l2/root/lib/modules/vfio" e1000e; then
    l2_why=$L2_WHY
else
    l2_busybox_root "$l2/root" "$busybox"
    install -m 0755 "$here/../linux/l2-init.sh" "$l2/root/init"
    mkdir -p "$l2/root/etc/l2-init.d"
    install -m 0644 "$here/l2-vfio-net.sh" "$l2/root/etc/l2-init.d/70-vfio-net.sh"
    echo vfio-net >"$l2/root/etc/libvmm-l2-file"
    l2_mkcpio "$l2/root" "$l2/initrd.cpio"
    cp -f "$kernel" "$l2/bzImage"
fi
[ -z "$l2_why" ] || echo "cannot build the level-2 Linux: $l2_why"

# shellcheck disable=SC2016 # expanded by the shell in level 1
inner='
set -u
for m in vfio vfio_iommu_type1 vfio-pci; do modprobe "$m" || { echo "cannot load $m"; exit 3; }; done
edu="" other="" nic="" l1nic=""
for d in /sys/bus/pci/devices/*; do
    id="$(cat "$d/vendor"):$(cat "$d/device")"
    case "$id" in
    0x1234:0x11e8) edu=${d##*/} ;;
    0x8086:0x10d3) nic=${d##*/} ;;
    0x8086:0x100e) l1nic=${d##*/} ;;
    0x1af4:*) [ -e "$d/driver" ] && [ -z "$other" ] && other=${d##*/} ;;
    esac
done
[ -n "$edu" ] || { echo "no edu device"; exit 3; }
echo "edu $edu group $(basename "$(readlink "/sys/bus/pci/devices/$edu/iommu_group")") other $other"
echo vfio-pci >"/sys/bus/pci/devices/$edu/driver_override"
[ -e "/sys/bus/pci/devices/$edu/driver" ] && echo "$edu" >"/sys/bus/pci/devices/$edu/driver/unbind"
echo "$edu" >/sys/bus/pci/drivers_probe
echo "driver $(basename "$(readlink "/sys/bus/pci/devices/$edu/driver")")"
if [ -n "$nic" ]; then
    echo vfio-pci >"/sys/bus/pci/devices/$nic/driver_override"
    [ -e "/sys/bus/pci/devices/$nic/driver" ] && echo "$nic" >"/sys/bus/pci/devices/$nic/driver/unbind"
    echo "$nic" >/sys/bus/pci/drivers_probe
fi
"$1" "$edu" "$other"
echo "probe status $?"
"$2" --kernel "$3" --vfio "$edu" -vv
echo "vmm-run status $?"
"$2" --kernel "$3" --vfio "$edu" --irqchip kernel
echo "vmm-run kernel irqchip status $?"
"$2" --kernel "$4" --vfio "$edu" --vfio "$nic"
echo "vmm-run msi-x status $?"
"$2" --kernel "$3" --vfio 00:99.9
echo "vmm-run bad address status $?"
"$2" --kernel "$3" --vfio "$other"
echo "vmm-run host driver status $?"
# Level 1 own e1000 on the hub, then level 2 under vmm-run with the e1000e.
modprobe e1000 || echo "cannot load e1000"
ifc=$(ls "/sys/bus/pci/devices/$l1nic/net" 2>/dev/null)
ip link set "$ifc" up && ip addr add 10.0.3.1/24 dev "$ifc" && echo "level 1 nic $ifc up"
if [ -s "$5/initrd.cpio" ]; then
    timeout 240 "$2" --kernel "$5/bzImage" --initrd "$5/initrd.cpio" --mem 256M \
        --cmdline "console=ttyS0 panic=-1" --cpu-disable xsave,avx --vfio "$nic"
    echo "vmm-run linux status $?"
fi
'
out=$(bash "$here/../nested/run-nested.sh" --work "$work" -q --timeout 420 \
    --qemu-arg -device --qemu-arg intel-iommu,intremap=on --qemu-arg -device --qemu-arg edu \
    --qemu-arg -netdev --qemu-arg hubport,id=n1,hubid=1 \
    --qemu-arg -device --qemu-arg e1000e,netdev=n1,mac=52:54:00:4c:32:02 \
    --qemu-arg -netdev --qemu-arg hubport,id=n2,hubid=1 \
    --qemu-arg -device --qemu-arg e1000,netdev=n2,mac=52:54:00:4c:31:01 \
    --append "intel_iommu=on iommu=pt" -- sh -c "$inner" sh "$probe" "$vmm_run" "$guest" "$guest_msix" "$l2" 2>&1)
rc=$?
out=${out//$'\r'/} # level 2's console lines end in CR LF
echo "$out"
[ "$rc" = 77 ] && exit 77
fails=0
check() { # check WHAT PATTERN
    if grep -qE -- "$2" <<<"$out"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
holds() { # holds WHAT COMMAND...
    if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
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
check "the VM's memory mapped, and a region added later" "^map vm 0 later region [0-9]+$"
check "edu DMA into the later region" "^dma into later memory ok$"
check "a VFIO function refuses a snapshot of its VM" "^snapshot with vfio -95$"
check "... with the reason" "cannot be saved: a passed-through \\(VFIO\\) device"
check "probe passed" "^probe status 0$"
check "guest: edu found, ID through the mapped BAR" "^vfio-edu: slot [0-9]+ BAR0 0x[0-9a-f]+ id 0x10000ed$"
check "guest: factorial" "^vfio-edu: 10! = 3628800$"
check "guest: its MSI" "^vfio-edu: msi 1$"
check "guest: DMA there and back with an MSI" "^vfio-edu: dma ok \(256 bytes there and back, msi 2\)$"
check "guest: an MSI to a bad address held pending, sent once fixed" "^vfio-edu: msi held pending while its address was bad$"
check "guest: hostile writes refused" "^vfio-edu: hostile writes refused$"
check "guest: all steps, edu fine afterwards" "^vfio-edu ok: id, factorial, dma, 4 msi, "
check "vmm-run --vfio ran the guest to the end" "^vmm-run status 0$"
check "every BAR access of the guest went through the mapping (none trapped)" \
    "^vmm-run: debug: vfio [0-9a-f:.]+: 0 BAR accesses trapped and forwarded$"
intx=$(grep -cE "^vfio-edu: intx 2 on GSI [0-9]+$" <<<"$out")
holds "INTx through a resample irqfd, twice, under the split and the kernel irqchip ($intx runs)" \
    [ "$intx" = 2 ]
check "vmm-run --vfio --irqchip kernel ran the guest to the end" "^vmm-run kernel irqchip status 0$"
check "MSI-X: e1000e's table found" "^vfio-e1000e: slot [0-9]+, 5 MSI-X vectors, table BAR 3\+0x0, PBA BAR 3\+0x2000$"
check "MSI-X: the NIC's vector arrives" "^vfio-e1000e: msi-x 1$"
check "MSI-X: a masked vector pending in the PBA, sent when unmasked" "^vfio-e1000e: masked vector pending, then sent \(msi-x 2\)$"
check "MSI-X: hostile table and PBA writes refused" "^vfio-e1000e: hostile table writes refused$"
check "MSI-X: the vector works afterwards" "^vfio-e1000e ok: 4 msi-x"
check "vmm-run with two devices passed through ran to the end" "^vmm-run msi-x status 0$"
check "vmm-run refuses a malformed address" "^vmm-run bad address status 1$"
check "... in one line" "^vmm-run: --vfio 00:99.9: cannot open the device: "
check "vmm-run refuses a device on its host driver" "^vmm-run host driver status 1$"
check "level 1's own NIC on the hub" "^level 1 nic [a-z0-9]+ up$"
check "level 2: Linux ran its init" "L2-INIT uptime="
check "level 2: e1000e's driver on the passed-through NIC" "L2-VFIO-NIC e1000e 52:54:00:4c:32:02$"
check "level 2: link" "L2-VFIO-LINK up$"
check "level 2: pinged level 1 across the hub" "L2-VFIO-PING ok$"
check "level 2: the NIC's interrupts" "L2-VFIO-IRQS [1-9][0-9]* on [1-9]"
no_l2_fail() { ! grep -q L2-VFIO-FAIL <<<"$out"; }
holds "level 2: no step failed" no_l2_fail
check "level 2: powered off" "L2-DONE uptime="
check "vmm-run ran level 2 to its power-off" "^vmm-run linux status 0$"
holds "the level-2 Linux built${l2_why:+ ($l2_why)}" [ -z "$l2_why" ]
[ "$rc" = 0 ] || { echo "FAIL: exit status $rc"; fails=$((fails + 1)); }
[ "$fails" = 0 ]
