# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# Level 2 of vfio_nested (tests/vfio/vfio-nested.sh): installed as /etc/l2-init.d/70-vfio-net.sh in
# the level-2 initramfs and sourced by tests/linux/l2-init.sh before L2-DONE. The kernel's own
# e1000e driver takes the NIC vmm-run --vfio passed through (QEMU's e1000e in level 1, on the same
# QEMU hub as level 1's own e1000 at 10.0.3.1), brings eth0 up as 10.0.3.2/24 and pings level 1.
# Markers (a step that fails prints "L2-VFIO-FAIL <step>: <what>" instead):
#   L2-VFIO-MODULES <names>        the modules of /lib/modules/vfio/order, loaded in that order
#   L2-VFIO-NIC <driver> <mac>     eth0's driver and address
#   L2-VFIO-LINK up                eth0's carrier
#   L2-VFIO-PING ok                level 1 answered three pings
#   L2-VFIO-IRQS <n> on <vectors>  eth0's interrupts in /proc/interrupts, on how many vectors
l2_vfio_net() {
    local m i drv irqs
    for m in $(cat /lib/modules/vfio/order); do
        insmod "/lib/modules/vfio/$m.ko" || echo "L2-VFIO-FAIL insmod: $m"
    done
    echo "L2-VFIO-MODULES $(tr '\n' ' ' </lib/modules/vfio/order)"
    if ! l2_wait_for /sys/class/net/eth0; then
        echo "L2-VFIO-FAIL no eth0: $(dmesg | grep -i e1000e | tail -n 5)"
        return 0
    fi
    drv=$(basename "$(readlink /sys/class/net/eth0/device/driver)")
    echo "L2-VFIO-NIC $drv $(cat /sys/class/net/eth0/address)"
    ip link set lo up
    ip link set eth0 up || echo "L2-VFIO-FAIL eth0 up"
    ip addr add 10.0.3.2/24 dev eth0 || echo "L2-VFIO-FAIL eth0 address"
    i=0
    while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ "$i" -lt 200 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; then
        echo "L2-VFIO-LINK up"
    else
        echo "L2-VFIO-FAIL link: no carrier after 20 s"
    fi
    if ping -c 3 -w 30 10.0.3.1; then
        echo "L2-VFIO-PING ok"
    else
        echo "L2-VFIO-FAIL ping: 10.0.3.1 did not answer"
    fi
    irqs=$(awk '/eth0/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; v++ }
        END { printf "%d on %d", n, v }' /proc/interrupts)
    echo "L2-VFIO-IRQS $irqs"
}
l2_vfio_net
unset -f l2_vfio_net
