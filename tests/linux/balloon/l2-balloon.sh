# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# The balloon cases' level-2 side (busybox sh), installed as /etc/l2-init.d/85-balloon.sh by
# tests/linux/hooks/85-balloon.sh and sourced by /init before L2-DONE; it acts only in a case that
# has /etc/libvmm-balloon/<case>. It loads virtio_mmio and virtio_balloon, writes 200 MiB (zeros
# into a tmpfs file: pages the host then backs), frees it, and says so;
# level 1 (balloon/l1-balloon-monitor.sh) then acts on vmm-run's control socket, and level 2
# follows the balloon through MemTotal (the driver takes inflated pages out of it):
# - "inflate": level 1 sets the balloon to 128 MiB, measures, then back to 0;
# - "report" (free page reporting): level 1 watches the freed pages come back, then sets the
#   balloon to 4 MiB to say it is done.
# Markers ("L2-BALLOON-FAIL <what>" for a step that fails):
#   L2-BALLOON-MODULES <n> loaded
#   L2-BALLOON-FREED <n> MiB in <s> s   written and freed again
#   L2-BALLOON-INFLATED <kB>       MemTotal fell by that much (inflate: at least 90% of 128 MiB)
#   L2-BALLOON-DEFLATED            MemTotal back where it was (inflate)
#   L2-BALLOON-DONE-SEEN <kB>      level 1's "done" (report: the 4 MiB balloon)
l2_balloon() {
    local case dir mode m n i kb0 kb free mib t0
    case=$(sed -n 's/.*libvmm\.case=\([^ ]*\).*/\1/p' /proc/cmdline)
    dir=/etc/libvmm-balloon/$case
    [ -n "$case" ] && [ -d "$dir" ] || return 0
    mode=$(cat "$dir/mode")
    memtotal() { awk '/^MemTotal/ { print $2 }' /proc/meminfo; }
    # wait_memtotal_drop KB SECONDS: until MemTotal is at least KB below kb0.
    wait_memtotal_drop() {
        i=0
        while [ "$i" -lt $(($2 * 10)) ]; do
            kb=$(memtotal)
            [ $((kb0 - kb)) -ge "$1" ] && return 0
            sleep 0.1
            i=$((i + 1))
        done
        return 1
    }
    kb0=$(memtotal)
    n=0
    while read -r m; do
        [ -n "$m" ] || continue
        if insmod "/lib/modules/balloon/$m.ko"; then n=$((n + 1)); else
            echo "L2-BALLOON-FAIL insmod $m"
        fi
    done </lib/modules/balloon/order
    echo "L2-BALLOON-MODULES $n loaded"

    # 200 MiB (or all but 64 MiB of what is free, if less): more than the 128 MiB balloon, whose
    # pages come first from those just freed (pages the host backs).
    free=$(awk '/^MemFree/ { print int($2 / 1024) }' /proc/meminfo)
    mib=$((free - 64))
    [ "$mib" -le 200 ] || mib=200
    t0=$(cut -d' ' -f1 /proc/uptime)
    mkdir -p /mnt/fill
    mount -t tmpfs -o size=${mib}m tmpfs /mnt/fill
    dd if=/dev/zero of=/mnt/fill/f bs=1M count="$mib" 2>/dev/null ||
        echo "L2-BALLOON-FAIL writing $mib MiB"
    rm -f /mnt/fill/f
    umount /mnt/fill
    echo "L2-BALLOON-FREED $mib MiB in $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
        'BEGIN { printf "%.1f", b - a }') s"

    if [ "$mode" = inflate ]; then
        if wait_memtotal_drop $((128 * 1024 * 9 / 10)) 120; then
            echo "L2-BALLOON-INFLATED $((kb0 - kb))"
        else
            echo "L2-BALLOON-FAIL inflate: MemTotal $kb0 -> $kb kB"
            return 0
        fi
        i=0
        while [ "$(memtotal)" -lt "$kb0" ] && [ "$i" -lt 1200 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if [ "$(memtotal)" -ge "$kb0" ]; then
            echo "L2-BALLOON-DEFLATED"
        else
            echo "L2-BALLOON-FAIL deflate: MemTotal $(memtotal) kB, was $kb0"
        fi
    elif wait_memtotal_drop 3600 120; then
        echo "L2-BALLOON-DONE-SEEN $((kb0 - kb))"
    else
        echo "L2-BALLOON-FAIL level 1 did not say it was done"
    fi
}
l2_balloon
unset -f l2_balloon memtotal wait_memtotal_drop
