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
#   L2-NET-DOWN <sha256> (<n> MiB in <s> s)  of what level 1 served on 10.0.2.1:5556 (up.bin's
#                                size times reps, over TCP) and how long it took
#   L2-NET-UP sent (<n> MiB in <s> s)  up.bin sent reps times to 10.0.2.1:5557 and level 1 closed
#                                its end (it checks the SHA-256)
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

    # Level 1 serves down.bin REPS times on port 5556, hashed as it arrives (nothing stored); then
    # level 2 sends up.bin REPS times to port 5557, where level 1 hashes it. nc stops at the end of
    # its input: for the download, a FIFO opened read-write is one that never ends.
    reps=$(cat "$dir/reps")
    mkfifo /tmp/net.fifo
    t1=$(cut -d' ' -f1 /proc/uptime)
    sha=$({
        timeout 280 nc 10.0.2.1 5556 <>/tmp/net.fifo
        echo $? >/tmp/net.rc
    } | sha256sum | cut -d' ' -f1)
    t2=$(cut -d' ' -f1 /proc/uptime)
    echo "L2-NET-DOWN $sha ($((reps * 4)) MiB in $(awk -v a="$t1" -v b="$t2" \
        'BEGIN { printf "%.2f", b - a }') s)"
    if [ "$(cat /tmp/net.rc)" != 0 ]; then
        nfail "download from 10.0.2.1:5556: nc status $(cat /tmp/net.rc)"
    elif [ "$sha" != "$(cat "$dir/down.sha256")" ]; then
        nfail "download: SHA-256 $sha"
    fi
    if i=0 && while [ "$i" -lt "$reps" ]; do
        cat "$dir/up.bin" || exit 1
        i=$((i + 1))
    done | timeout 280 nc 10.0.2.1 5557; then
        # nc has written it all to the socket: level 1 has it all once it closed its end, which
        # leaves this end in TIME_WAIT (state 06 in /proc/net/tcp; port 5557 is 15B5).
        i=0
        while awk '$3 ~ /:15B5$/ && $4 != "06" { f = 1 } END { exit !f }' /proc/net/tcp &&
            [ "$i" -lt 600 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        t3=$(cut -d' ' -f1 /proc/uptime)
            if [ "$i" -lt 600 ]; then
            echo "L2-NET-UP sent ($((reps * 4)) MiB in $(awk -v a="$t2" -v b="$t3" \
                'BEGIN { printf "%.2f", b - a }') s)"
        else
            nfail "upload: level 1 did not close 10.0.2.1:5557"
        fi
    else
        nfail "sending to 10.0.2.1:5557"
    fi
    echo "L2-NET-IRQS $(grep -i virtio /proc/interrupts |
        awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { print s + 0 }')"
    [ "$fail" = 1 ] || echo "L2-NET-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
        'BEGIN { printf "%.2f", b - a }')"
}
l2_net
unset -f l2_net nfail
