# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# The virtio-net cases' check in level 2 (busybox sh), installed as /etc/l2-init.d/60-net.sh by
# tests/linux/hooks/60-net.sh and sourced by /init before L2-DONE. It acts only in a case that has
# /etc/libvmm-net/<case> (libvmm.case=<case> on the command line). The device: vmm-run's
# --net tap=vmmtap0 on level 1, whose side of the tap is 10.0.2.1/24 (net/l1-net-before.sh); the
# guest's own driver (virtio_net over virtio_mmio, found through the ACPI DSDT) is eth0, 10.0.2.15.
# Markers (a step that fails prints "L2-NET-FAIL <step>: <what>" instead):
#   L2-NET-MODULES <n> loaded    the modules of /lib/modules/net/order, in that order
#   L2-NET-LINK <mac> mtu=<n> up eth0's address and MTU (from the device's configuration space)
#   L2-NET-QUEUES <n>            eth0's receive queues (the pairs the driver uses)
#   L2-NET-BALLOON ok <kB>       with a balloon-mib file: MemTotal fell by that much (within 10 s)
#   L2-NET-PING ok               three pings of level 1's tap address answered
#   L2-NET-DOWN <sha256>         what level 1 served on 10.0.2.1:5556 (4 MiB over TCP)
#   L2-NET-UP served             up.bin served on port 5557 to level 1 (which checks its SHA-256)
#   L2-NET-IRQS <count>          the virtio-net interrupts of /proc/interrupts
#   L2-NET-OK <s>                every step passed, and the seconds the steps took
l2_net() {
    local case dir fail=0 m n i t0 mac mtu sha kb0

    case=$(sed -n 's/.*libvmm\.case=\([^ ]*\).*/\1/p' /proc/cmdline)
    dir=/etc/libvmm-net/$case
    [ -n "$case" ] && [ -d "$dir" ] || return 0
    t0=$(cut -d' ' -f1 /proc/uptime)
    nfail() {
        echo "L2-NET-FAIL $*"
        fail=1
    }

    kb0=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo) # before the balloon driver inflates
    n=0
    while read -r m; do
        [ -n "$m" ] || continue
        if insmod "/lib/modules/net/$m.ko"; then
            n=$((n + 1))
        else
            nfail "insmod: $m"
        fi
    done </lib/modules/net/order
    echo "L2-NET-MODULES $n loaded ($(tr '\n' ' ' </lib/modules/net/order))"

    if ! l2_wait_for /sys/class/net/eth0; then
        nfail "no eth0 ($(cd /sys/class/net && echo *))"
        return 0
    fi
    ip link set lo up
    ip link set eth0 up || nfail "eth0 up"
    ip addr add 10.0.2.15/24 dev eth0 || nfail "eth0 address"
    mac=$(cat /sys/class/net/eth0/address)
    mtu=$(cat /sys/class/net/eth0/mtu)
    i=0
    while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ "$i" -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "L2-NET-LINK $mac mtu=$mtu $(cat /sys/class/net/eth0/operstate)"
    [ -z "$(cat "$dir/mac")" ] || [ "$mac" = "$(cat "$dir/mac")" ] || nfail "mac $mac"
    [ "$mtu" = "$(cat "$dir/mtu")" ] || nfail "mtu $mtu"
    n=0
    for m in /sys/class/net/eth0/queues/rx-*; do
        [ -e "$m" ] && n=$((n + 1))
    done
    echo "L2-NET-QUEUES $n"
    [ "$n" = "$(cat "$dir/queues")" ] || nfail "$n receive queues"
    if [ -f "$dir/balloon-mib" ]; then
        # The driver inflates on its own once loaded; MemTotal falls as it does.
        local want kb
        want=$(($(cat "$dir/balloon-mib") * 1024 * 9 / 10))
        i=0
        while [ "$i" -lt 100 ]; do
            kb=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
            [ $((kb0 - kb)) -ge "$want" ] && break
            sleep 0.1
            i=$((i + 1))
        done
        if [ $((kb0 - kb)) -ge "$want" ]; then
            echo "L2-NET-BALLOON ok $((kb0 - kb))"
        else
            nfail "balloon: MemTotal $kb0 -> $kb kB"
        fi
    fi

    if ping -c 3 -W 5 10.0.2.1 >/tmp/ping.out 2>&1; then
        echo "L2-NET-PING ok"
    else
        nfail "ping: $(tr '\n' ' ' </tmp/ping.out)"
    fi

    # Level 1 serves 4 MiB on port 5556; then level 2 serves its own on 5557 for level 1 to fetch.
    # nc stops at the end of its input: a FIFO opened read-write is one that never ends.
    mkfifo /tmp/net.fifo
    if timeout 120 nc 10.0.2.1 5556 <>/tmp/net.fifo >/tmp/down.bin; then
        sha=$(sha256sum /tmp/down.bin | cut -d' ' -f1)
        echo "L2-NET-DOWN $sha"
        [ "$sha" = "$(cat "$dir/down.sha256")" ] ||
            nfail "download: $(wc -c </tmp/down.bin) bytes, SHA-256 $sha"
    else
        nfail "download from 10.0.2.1:5556"
    fi
    rm -f /tmp/down.bin
    if timeout 120 nc -l -p 5557 <"$dir/up.bin" >/dev/null; then
        echo "L2-NET-UP served"
    else
        nfail "serving on port 5557"
    fi
    echo "L2-NET-IRQS $(grep -i virtio /proc/interrupts |
        awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }')"
    [ "$fail" = 1 ] || echo "L2-NET-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
        'BEGIN { printf "%.2f", b - a }')"
}
l2_net
unset -f l2_net nfail
