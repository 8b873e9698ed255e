# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the virtio-vsock cases.
#
# A vsock case is a case line of cases.txt whose arguments name the level-2 initramfs variant
# "vsock" (@L2_INITRD:vsock@) and "--vsock cid=N,path=@DATA@/vsock/<case>.sock" (Unix sockets on
# level 1's side) or "--vsock cid=N,vhost=on" (vhost-vsock: AF_VSOCK on level 1's side). Each
# carries a 1 MiB random blob each way on two connections: one level 1 opens to level 2's port
# 5000, one level 2 opens to level 1's port 5001 (vsock/vsock-io.c: the side that connected sends
# first). At test time this builds:
#   L2_EXTRA/vsock/
#     lib/modules/vsock/          virtio_mmio, virtio_pci, vmw_vsock_virtio_transport and what
#                                 modules.dep says they need (vsock,
#                                 vmw_vsock_virtio_transport_common, virtio, ...)
#     bin/vsock-io                the static helper (VMM_LINUX_VSOCK_IO, built by CMake)
#     etc/l2-init.d/80-vsock.sh   the level-2 side (vsock/l2-vsock.sh)
#     etc/libvmm-vsock/<case>/    b.bin (what level 2 sends), a.sha256 (of what level 1 sends)
#   DATA/vsock/<case>/            a.bin, b.sha256, cid, vhost (present with vhost=on)
#   DATA/vsock/vsock-io           the helper's path for level 1
#   DATA/l1-before.d/80-vsock.sh  (vsock/l1-vsock-before.sh) starts level 1's two sides
#   DATA/l1-after.d/80-vsock.sh   (vsock/l1-vsock-after.sh) checks what level 1 received
#   WORK/expect/<case>            the four SHA-256 markers of this run
# Without the modules or the helper it marks the vsock cases skipped with the reason.

vsock_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local moddir=${VMM_LINUX_MODULES:-/lib/modules/$KVER}
    local cases=() name why="" args
    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"@L2_INITRD:vsock@"* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0

    local helper=${VMM_LINUX_VSOCK_IO:-}
    local xroot=$L2_EXTRA/vsock
    if [ -z "$helper" ] || [ ! -x "$helper" ]; then
        why="no vsock-io helper (VMM_LINUX_VSOCK_IO, built by CMake)"
    elif ! have sha256sum; then
        why="sha256sum is not installed"
    elif ! l2_modules "$moddir" "$xroot/lib/modules/vsock" virtio_mmio virtio_pci \
        vmw_vsock_virtio_transport; then
        why=$L2_WHY
    fi
    if [ -n "$why" ]; then
        rm -rf "$xroot"
        for name in "${cases[@]}"; do echo "$why" >"$WORK/skip/$name"; done
        echo "hook 80-vsock: skipping ${cases[*]}: $why"
        return 0
    fi
    mkdir -p "$xroot/bin" "$xroot/etc/l2-init.d" "$DATA/l1-before.d" "$DATA/l1-after.d" \
        "$DATA/vsock"
    install -m 0755 "$helper" "$xroot/bin/vsock-io"
    install -m 0644 "$here/vsock/l2-vsock.sh" "$xroot/etc/l2-init.d/80-vsock.sh"
    install -m 0644 "$here/vsock/l1-vsock-before.sh" "$DATA/l1-before.d/80-vsock.sh"
    install -m 0644 "$here/vsock/l1-vsock-after.sh" "$DATA/l1-after.d/80-vsock.sh"
    (cd "$(dirname "$helper")" && printf '%s/%s\n' "$(pwd)" "$(basename "$helper")") \
        >"$DATA/vsock/vsock-io"

    local d l1 a_sha b_sha cid
    for name in "${cases[@]}"; do
        args=$(awk -F'|' -v n="$name" '{ gsub(/^[ \t]+|[ \t]+$/, "", $1) } $1 == n { print $6 }' \
            "$here/cases.txt")
        cid=$(sed -n 's/.*--vsock [^ ]*cid=\([0-9]*\).*/\1/p' <<<"$args")
        d=$xroot/etc/libvmm-vsock/$name
        l1=$DATA/vsock/$name
        mkdir -p "$d" "$l1"
        head -c 1048576 /dev/urandom >"$l1/a.bin"
        head -c 1048576 /dev/urandom >"$d/b.bin"
        a_sha=$(sha256sum "$l1/a.bin" | cut -d' ' -f1)
        b_sha=$(sha256sum "$d/b.bin" | cut -d' ' -f1)
        printf '%s\n' "$a_sha" >"$d/a.sha256"
        printf '%s\n' "$b_sha" >"$l1/b.sha256"
        printf '%s\n' "$cid" >"$l1/cid"
        if [[ "$args" == *"--vsock "*"vhost=on"* ]]; then : >"$l1/vhost"; fi
        {
            echo "L2-VSOCK-HOST-IN $a_sha"
            echo "L2-VSOCK-GUEST-IN $a_sha"
            echo "L1-VSOCK-HOST-IN $b_sha"
            echo "L1-VSOCK-GUEST-IN $b_sha"
            echo "!L2-VSOCK-FAIL"
            echo "!L1-VSOCK-FAIL"
        } >"$WORK/expect/$name"
    done
    echo "hook 80-vsock: cases ${cases[*]}; level-2 modules: $(tr '\n' ' ' \
        <"$xroot/lib/modules/vsock/order")"
}
vsock_hook
unset -f vsock_hook
