# shellcheck shell=bash disable=SC2034 # l2_modules_why is for the caller
# SPDX-License-Identifier: Apache-2.0
# Sourced by hooks (tests/linux/hooks/*.sh; not a hook itself): copies kernel modules into a
# level-2 initramfs variant.
#
# l2_modules MODDIR DEST MODULE...: each MODULE of the kernel whose modules.dep is in MODDIR, and
# what modules.dep says it needs, decompressed into DEST/<name>.ko, with DEST/order (load order,
# dependencies first) and DEST/builtin (those built into the kernel). Returns 1 with the reason in
# l2_modules_why when a module is missing.
l2_modules() {
    local moddir=$1 dest=$2 m p
    shift 2
    local -A seen=()
    local order=() builtin=()
    l2_modules_why=""
    l2_mod_add() { # PATH as modules.dep writes it, after what it depends on
        local path=$1 dep k base
        local -a deps
        [ -z "${seen[$path]:-}" ] || return 0
        seen[$path]=1
        dep=$(grep -E "^$path:" "$moddir/modules.dep" | head -n1 || true)
        read -r -a deps <<<"${dep#*:}"
        for ((k = ${#deps[@]} - 1; k >= 0; k--)); do
            l2_mod_add "${deps[k]}" || return 1
        done
        base=${path##*/}
        base=${base%.xz} base=${base%.zst} base=${base%.gz} base=${base%.ko}
        case "$path" in
        *.ko) cp -f "$moddir/$path" "$dest/$base.ko" ;;
        *.ko.xz) xz -dc "$moddir/$path" >"$dest/$base.ko" ;;
        *.ko.zst) zstd -dcq "$moddir/$path" >"$dest/$base.ko" ;;
        *.ko.gz) gzip -dc "$moddir/$path" >"$dest/$base.ko" ;;
        *) l2_modules_why="module $path: unknown compression"; return 1 ;;
        esac
        order+=("$base")
    }
    if [ ! -r "$moddir/modules.dep" ]; then
        l2_modules_why="no modules in $moddir"
        return 1
    fi
    mkdir -p "$dest"
    for m in "$@"; do
        p=$({ grep -oE "^([^:]*/)?${m//[-_]/[-_]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" ||
            true; } | head -n1 | tr -d :)
        if [ -n "$p" ]; then
            l2_mod_add "$p" || return 1
        elif grep -qE "/${m//[-_]/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
            builtin+=("$m")
        else
            l2_modules_why="the kernel has $m neither as a module nor built in"
            return 1
        fi
    done
    printf '%s\n' "${order[@]}" >"$dest/order"
    printf '%s\n' "${builtin[@]}" >"$dest/builtin"
    unset -f l2_mod_add
}
