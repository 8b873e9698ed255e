# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the virtio-net cases.
#
# A net case is a case line of cases.txt whose arguments name the level-2 initramfs variant "net"
# (@L2_INITRD:net@) and "--net tap=vmmtap0,...". At test time this builds:
#   L2_EXTRA/net/
#     lib/modules/net/        virtio_mmio, virtio_pci, virtio_net, virtio_balloon and what
#                             modules.dep says they need, in load order ("order"; "builtin" lists
#                             those built into the kernel)
#     etc/l2-init.d/60-net.sh the level-2 check (net/l2-net.sh)
#     etc/libvmm-net/<name>/  per case: up.bin (4 MiB of random bytes level 2 sends to level 1
#                             "reps" times over: 16 MiB, or VMM_LINUX_NET_MIB), down.sha256 (of
#                             what level 1 serves, as many times over), the MAC and MTU to expect, the
#                             queue pairs (queues=N) and the balloon target in MiB (--balloon=target=)
#   DATA/net/<name>/          down.bin (4 MiB level 1 serves reps times over), reps, up.sha256,
#                             tapflags (multi_queue with queues=N)
#   DATA/net/busybox          the static busybox whose nc level 1 uses
#   DATA/l1-before.d/60-net.sh  (net/l1-net-before.sh) makes the tap vmmtap0, 10.0.2.1/24, up, and
#                             starts level 1's side of the transfers in the background
#   DATA/l1-after.d/60-net.sh   (net/l1-net-after.sh) checks what level 1 received, removes the tap
#   WORK/expect/<name>        the markers with this run's SHA-256 sums
# Without the modules it marks the net cases skipped (WORK/skip/<name>) with the reason.

net_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local moddir=${VMM_LINUX_MODULES:-/lib/modules/$KVER}
    local cases=() name why="" args

    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"@L2_INITRD:net@"* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0

    if [ ! -r "$moddir/modules.dep" ]; then
        why="no modules for kernel $KVER in $moddir"
    elif ! have sha256sum; then
        why="sha256sum is not installed"
    fi

    local xroot=$L2_EXTRA/net
    local mdir=$xroot/lib/modules/net
    if [ -z "$why" ] &&
        ! l2_modules "$moddir" "$mdir" virtio_mmio virtio_pci virtio_net virtio_balloon; then
        why=$L2_WHY
    fi
    if [ -n "$why" ]; then
        rm -rf "$xroot"
        for name in "${cases[@]}"; do
            echo "$why" >"$WORK/skip/$name"
        done
        echo "hook 60-net: skipping ${cases[*]}: $why"
        return 0
    fi

    mkdir -p "$xroot/etc/l2-init.d" "$DATA/l1-before.d" "$DATA/l1-after.d" "$DATA/net"
    install -m 0644 "$here/net/l2-net.sh" "$xroot/etc/l2-init.d/60-net.sh"
    install -m 0644 "$here/net/l1-net-before.sh" "$DATA/l1-before.d/60-net.sh"
    install -m 0644 "$here/net/l1-net-after.sh" "$DATA/l1-after.d/60-net.sh"
    # shellcheck disable=SC2154 # busybox: run-linux.sh's, which sources this
    printf '%s\n' "$busybox" >"$DATA/net/busybox"

    # Each way moves 4 MiB of random bytes repeated: 16 MiB, or VMM_LINUX_NET_MIB (a multiple of 4;
    # 64 is the issue's figure, too slow for CI under TCG: see README.md).
    local mib=${VMM_LINUX_NET_MIB:-16} reps
    if ! [[ "$mib" =~ ^[1-9][0-9]*$ ]] || ((mib % 4)); then
        die "hook 60-net: VMM_LINUX_NET_MIB=$mib: not a positive multiple of 4"
    fi
    reps=$((mib / 4))
    net_rep() { # FILE N: FILE N times over
        local k
        for ((k = 0; k < $2; k++)); do cat "$1"; done
    }
    local d l1 up_sha down_sha mac mtu queues balloon
    for name in "${cases[@]}"; do
        args=$(awk -F'|' -v n="$name" '{ gsub(/^[ \t]+|[ \t]+$/, "", $1) } $1 == n { print $6 }' \
            "$here/cases.txt")
        mac=$(sed -n 's/.*--net [^ ]*mac=\([0-9a-f:]*\).*/\1/p' <<<"$args")
        mtu=$(sed -n 's/.*--net [^ ]*mtu=\([0-9]*\).*/\1/p' <<<"$args")
        queues=$(sed -n 's/.*--net [^ ]*queues=\([0-9]*\).*/\1/p' <<<"$args")
        balloon=$(sed -n 's/.*--balloon=[^ ]*target=\([0-9]*\)M.*/\1/p' <<<"$args")
        d=$xroot/etc/libvmm-net/$name
        l1=$DATA/net/$name
        mkdir -p "$d" "$l1"
        head -c 4194304 /dev/urandom >"$d/up.bin"
        head -c 4194304 /dev/urandom >"$l1/down.bin"
        up_sha=$(net_rep "$d/up.bin" "$reps" | sha256sum | cut -d' ' -f1)
        down_sha=$(net_rep "$l1/down.bin" "$reps" | sha256sum | cut -d' ' -f1)
        printf '%s\n' "$reps" >"$d/reps"
        printf '%s\n' "$reps" >"$l1/reps"
        printf '%s\n' "$down_sha" >"$d/down.sha256"
        printf '%s\n' "$up_sha" >"$l1/up.sha256"
        printf '%s\n' "${mac:-}" >"$d/mac"
        printf '%s\n' "${mtu:-1500}" >"$d/mtu"
        printf '%s\n' "${queues:-1}" >"$d/queues"
        [ -z "$balloon" ] || printf '%s\n' "$balloon" >"$d/balloon-mib"
        if [ "${queues:-1}" -gt 1 ]; then echo multi_queue; fi >"$l1/tapflags"
        {
            echo "L2-NET-PING ok"
            [ -z "$mac" ] || echo "L2-NET-LINK $mac mtu=${mtu:-1500} up"
            echo "L2-NET-QUEUES ${queues:-1}"
            [ -z "$balloon" ] || echo "L2-NET-BALLOON ok"
            echo "L2-NET-DOWN $down_sha"
            echo "L1-NET-UP $up_sha"
            echo "!L2-NET-FAIL"
            echo "!L1-NET-FAIL"
        } >"$WORK/expect/$name"
    done
    echo "hook 60-net: cases ${cases[*]}; level-2 modules: $L2_ORDER" \
        "${L2_BUILTIN:+(built in: $L2_BUILTIN)}"
}
net_hook
unset -f net_hook net_rep
