# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# Level-2 check of the snapshot case (hooks/70-snap.sh), sourced by /init: says whether Linux's
# vmgenid driver took the VM generation ID device of the DSDT, then counts, a line every 0.25 s,
# while level 1 snapshots the VM through vmm-run's control socket, kills vmm-run and restores the
# VM in a new one (l1-snap.sh): the count goes on there. At its end, the kernel's line for a new
# VM generation ("crng reseeded due to virtual machine fork", from the GED's notify) is counted.
#   L2-SNAP-VMGENID bound|missing
#   L2-SNAP-COUNT <i>      i = 0 .. 23
#   L2-SNAP-VMFORK <n>     kernel messages about a new VM generation (1 after one restore)
#   L2-SNAP-DONE
# snap-pci-*: the entropy device is a virtio-pci function with MSI-X (vmm-run --transport pci
# --rng): it is read before the snapshot and again after the restore, where the read must raise
# virtio MSI-X interrupts (the restored VM's routes and ioeventfds at the BAR Linux placed):
#   L2-SNAP-PCI-RNG ok, MSI-X <a> -> <b>   (or L2-SNAP-PCI-RNG failed: <why>)
# With a virtio disk (snap-1: vmm-run --disk), each count is also written to its own sector of
# /dev/vda ("L2-SNAP-DISK <i>", padded to 512 bytes, fsync'd), which level 1 reads back after the
# restored VM powered off (snap/l1-snap-after.sh: L1-SNAP-DISK ok); a failed write prints
#   L2-SNAP-DISK-FAIL <i>
pci=0
case " $(cat /proc/cmdline) " in *" libvmm.case=snap-pci-"*) pci=1 ;; esac
snap_msix() {
    awk '/PCI-MSI.*virtio/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i }
        END { print s + 0 }' /proc/interrupts
}
snap_rng() {
    timeout 10 head -c 32 /dev/hwrng 2>/dev/null | od -An -tx1 | tr -d ' \n'
}
if [ -f /lib/modules/virtio/order ]; then
    while read -r m; do
        [ -n "$m" ] && insmod "/lib/modules/virtio/$m.ko"
    done </lib/modules/virtio/order
fi
disk=0
[ -b /dev/vda ] && disk=1
if [ "$pci" = 1 ]; then
    i=0
    while [ ! -e /dev/hwrng ] && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "L2-SNAP-PCI-RNG before: $(snap_rng | cut -c1-16)"
fi
bound=missing
for dev in /sys/bus/acpi/drivers/vmgenid/LVMM0001:*; do
    [ -e "$dev" ] && bound=bound
done
echo "L2-SNAP-VMGENID $bound"
i=0
while [ "$i" -lt 24 ]; do
    echo "L2-SNAP-COUNT $i"
    if [ "$disk" = 1 ]; then
        printf 'L2-SNAP-DISK %d\n' "$i" | dd of=/dev/vda bs=512 seek="$i" conv=sync,notrunc,fsync \
            2>/dev/null || echo "L2-SNAP-DISK-FAIL $i"
    fi
    i=$((i + 1))
    sleep 0.25
done
echo "L2-SNAP-VMFORK $(dmesg | grep -c 'virtual machine fork')"
if [ "$pci" = 1 ]; then
    a=$(snap_msix)
    hex=$(snap_rng)
    b=$(snap_msix)
    if [ "${#hex}" -ne 64 ]; then
        echo "L2-SNAP-PCI-RNG failed: read ${#hex} hex digits"
    elif [ "$b" -le "$a" ]; then
        echo "L2-SNAP-PCI-RNG failed: no MSI-X interrupt ($a -> $b)"
    else
        echo "L2-SNAP-PCI-RNG ok, MSI-X $a -> $b"
    fi
fi
echo "L2-SNAP-DONE"
