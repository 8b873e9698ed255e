# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# The vsock cases' level-2 side (busybox sh), installed as /etc/l2-init.d/80-vsock.sh by
# tests/linux/hooks/80-vsock.sh and sourced by /init before L2-DONE; it acts only in a case that has
# /etc/libvmm-vsock/<case>. It loads the modules, listens on vsock port 5000 for level 1's
# connection (level 1 sends a.bin, 1 MiB, and gets b.bin back), and connects to the host (CID 2)
# port 5001, sending b.bin and receiving a.bin (vsock-io). Markers ("L2-VSOCK-FAIL <what>" for a
# step that fails):
#   L2-VSOCK-MODULES <n> loaded
#   L2-VSOCK-CID <cid>             the guest's CID, from the device's configuration space
#   L2-VSOCK-GUEST-IN <sha256>     what came back on level 2's connection
#   L2-VSOCK-HOST-IN <sha256>      what level 1 sent on its connection
#   L2-VSOCK-OK <s>                both match, and the seconds the steps took
l2_vsock() {
    local case dir m n i t0 pid sha fail=0
    case=$(sed -n 's/.*libvmm\.case=\([^ ]*\).*/\1/p' /proc/cmdline)
    dir=/etc/libvmm-vsock/$case
    [ -n "$case" ] && [ -d "$dir" ] || return 0
    t0=$(cut -d' ' -f1 /proc/uptime)
    n=0
    while read -r m; do
        [ -n "$m" ] || continue
        if insmod "/lib/modules/vsock/$m.ko"; then n=$((n + 1)); else
            echo "L2-VSOCK-FAIL insmod $m"
            fail=1
        fi
    done </lib/modules/vsock/order
    echo "L2-VSOCK-MODULES $n loaded"
    i=0
    while [ ! -e /dev/vsock ] && [ "$i" -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    echo "L2-VSOCK-CID $(vsock-io cid 2>&1)"

    vsock-io listen 5000 1048576 "$dir/b.bin" /tmp/host-in.bin 2>/tmp/listen.err &
    pid=$!
    # Level 1 listens before vmm-run starts; a refused connection is retried all the same.
    i=0
    until vsock-io connect 2 5001 1048576 "$dir/b.bin" /tmp/guest-in.bin 2>/tmp/connect.err; do
        i=$((i + 1))
        if [ "$i" -ge 60 ]; then
            echo "L2-VSOCK-FAIL connect to 2:5001: $(cat /tmp/connect.err)"
            fail=1
            break
        fi
        sleep 0.5
    done
    sha=$(sha256sum /tmp/guest-in.bin 2>/dev/null | cut -d' ' -f1)
    echo "L2-VSOCK-GUEST-IN $sha"
    [ "$sha" = "$(cat "$dir/a.sha256")" ] || { echo "L2-VSOCK-FAIL guest-initiated: $sha"; fail=1; }
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 1200 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        echo "L2-VSOCK-FAIL level 1 did not connect to port 5000"
        fail=1
    elif ! wait "$pid"; then
        echo "L2-VSOCK-FAIL listen on 5000: $(cat /tmp/listen.err)"
        fail=1
    fi
    sha=$(sha256sum /tmp/host-in.bin 2>/dev/null | cut -d' ' -f1)
    echo "L2-VSOCK-HOST-IN $sha"
    [ "$sha" = "$(cat "$dir/a.sha256")" ] || { echo "L2-VSOCK-FAIL host-initiated: $sha"; fail=1; }
    rm -f /tmp/host-in.bin /tmp/guest-in.bin
    [ "$fail" = 1 ] || echo "L2-VSOCK-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
        'BEGIN { printf "%.2f", b - a }')"
}
l2_vsock
unset -f l2_vsock
