# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the virtio-balloon cases.
#
# A balloon case is a case line of cases.txt whose arguments name the level-2 initramfs variant
# "balloon" (@L2_INITRD:balloon@), "--balloon" and "--api-sock @DATA@/balloon/<case>.sock"; with
# "--balloon=reporting" it checks free page reporting, else inflating. At test time this builds:
#   L2_EXTRA/balloon/
#     lib/modules/balloon/          virtio_mmio, virtio_pci, virtio_balloon and what modules.dep
#                                   says they need
#     etc/l2-init.d/85-balloon.sh   the level-2 side (balloon/l2-balloon.sh)
#     etc/libvmm-balloon/<case>/mode  inflate or report
#   DATA/balloon/<case>/mode
#   DATA/balloon/l1-balloon-monitor.sh  the level-1 side, started in the background by
#   DATA/l1-before.d/85-balloon.sh      (balloon/l1-balloon-before.sh), printed by
#   DATA/l1-after.d/85-balloon.sh       (balloon/l1-balloon-after.sh)
#   WORK/expect/<case>              what must not appear (the FAIL markers)
# Without the modules or perl (the control socket's client) it marks the cases skipped.

balloon_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local moddir=${VMM_LINUX_MODULES:-/lib/modules/$KVER}
    local cases=() name why="" args mode
    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"@L2_INITRD:balloon@"* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0

    local xroot=$L2_EXTRA/balloon
    if ! have perl || ! perl -MIO::Socket::UNIX -e 1 2>/dev/null; then
        why="perl with IO::Socket::UNIX is not installed (package perl-base)"
    elif ! l2_modules "$moddir" "$xroot/lib/modules/balloon" virtio_mmio virtio_pci \
        virtio_balloon; then
        why=$L2_WHY
    fi
    if [ -n "$why" ]; then
        rm -rf "$xroot"
        for name in "${cases[@]}"; do echo "$why" >"$WORK/skip/$name"; done
        echo "hook 85-balloon: skipping ${cases[*]}: $why"
        return 0
    fi
    mkdir -p "$xroot/etc/l2-init.d" "$DATA/l1-before.d" "$DATA/l1-after.d" "$DATA/balloon"
    install -m 0644 "$here/balloon/l2-balloon.sh" "$xroot/etc/l2-init.d/85-balloon.sh"
    install -m 0644 "$here/balloon/l1-balloon-before.sh" "$DATA/l1-before.d/85-balloon.sh"
    install -m 0644 "$here/balloon/l1-balloon-after.sh" "$DATA/l1-after.d/85-balloon.sh"
    install -m 0644 "$here/balloon/l1-balloon-monitor.sh" "$DATA/balloon/l1-balloon-monitor.sh"
    for name in "${cases[@]}"; do
        args=$(awk -F'|' -v n="$name" '{ gsub(/^[ \t]+|[ \t]+$/, "", $1) } $1 == n { print $6 }' \
            "$here/cases.txt")
        mode=inflate
        [[ "$args" != *"--balloon="*reporting* ]] || mode=report
        mkdir -p "$xroot/etc/libvmm-balloon/$name" "$DATA/balloon/$name"
        echo "$mode" >"$xroot/etc/libvmm-balloon/$name/mode"
        echo "$mode" >"$DATA/balloon/$name/mode"
        printf '%s\n' "!L2-BALLOON-FAIL" "!L1-BALLOON-FAIL" >"$WORK/expect/$name"
    done
    echo "hook 85-balloon: cases ${cases[*]}; level-2 modules: $(tr '\n' ' ' \
        <"$xroot/lib/modules/balloon/order")"
}
balloon_hook
unset -f balloon_hook
