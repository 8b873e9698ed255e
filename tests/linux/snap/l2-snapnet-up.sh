# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# Level-2 step of a snapshot case with a network device (hooks/70-snap.sh), sourced by /init before
# the count (snap/l2-snap.sh): loads virtio_net (the modules hooks/60-net.sh collected), brings eth0
# up as 10.0.2.15/24 and pings level 1's side of the tap (10.0.2.1, made by snap/l1-snap.sh).
#   L2-SNAPNET-BEFORE ok | L2-SNAPNET-FAIL <step>
l2_snapnet_up() {
    local m i
    while read -r m; do
        [ -n "$m" ] && ! insmod "/lib/modules/net/$m.ko" && echo "L2-SNAPNET-FAIL insmod $m"
    done </lib/modules/net/order
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    ip link set lo up
    if ! ip link set eth0 up || ! ip addr add 10.0.2.15/24 dev eth0; then
        echo "L2-SNAPNET-FAIL eth0"
        return 0
    fi
    if ping -c 3 -W 5 10.0.2.1 >/tmp/ping.out 2>&1; then
        echo "L2-SNAPNET-BEFORE ok"
    else
        echo "L2-SNAPNET-FAIL ping before: $(tr '\n' ' ' </tmp/ping.out)"
    fi
}
l2_snapnet_up
unset -f l2_snapnet_up
