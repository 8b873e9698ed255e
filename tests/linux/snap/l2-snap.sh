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
bound=missing
for dev in /sys/bus/acpi/drivers/vmgenid/LVMM0001:*; do
    [ -e "$dev" ] && bound=bound
done
echo "L2-SNAP-VMGENID $bound"
i=0
while [ "$i" -lt 24 ]; do
    echo "L2-SNAP-COUNT $i"
    i=$((i + 1))
    sleep 0.25
done
echo "L2-SNAP-VMFORK $(dmesg | grep -c 'virtual machine fork')"
echo "L2-SNAP-DONE"
