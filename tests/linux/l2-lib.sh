# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Level-2 image helpers, sourced by tests/linux/run-linux.sh (and so its hooks) and by
# tests/vfio/vfio-nested.sh, which build their level-2 initramfs the same way:
#   l2_busybox_root ROOT BUSYBOX     a busybox root: the binary and a link per applet
#   l2_mkcpio DIR OUT                DIR as a newc archive (what Linux unpacks as its initramfs)
#   l2_modules MODDIR DEST MODULE... each MODULE (a name as modules.dep has it, - and _ alike) and
#                                    what MODDIR/modules.dep says it needs, uncompressed into
#                                    DEST/<name>.ko, load order in DEST/order, those built into the
#                                    kernel in DEST/builtin; on failure sets L2_WHY and returns 1

l2_busybox_root() {
    local root=$1 busybox=$2 a
    mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/etc"
    cp -f "$busybox" "$root/bin/busybox"
    for a in $("$busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
    done
}

l2_mkcpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"; }

l2_modules() {
    local moddir=$1 dest=$2 m p
    shift 2
    local -A l2_seen=()
    local l2_order=() l2_builtin=()
    L2_WHY=""
    [ -r "$moddir/modules.dep" ] || { L2_WHY="no modules in $moddir"; return 1; }
    mkdir -p "$dest"
    l2_mod_add() { # PATH as modules.dep writes it, after what it depends on
        local path=$1 dep k base
        local -a deps
        [ -z "${l2_seen[$path]:-}" ] || return 0
        l2_seen[$path]=1
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
        *) L2_WHY="module $path: unknown compression"; return 1 ;;
        esac
        l2_order+=("$base")
    }
    for m in "$@"; do
        p=$({ grep -oE "^([^:]*/)?${m//[-_]/[-_]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" ||
            true; } | head -n1 | tr -d :)
        if [ -n "$p" ]; then
            l2_mod_add "$p" || break
        elif grep -qE "/${m//[-_]/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
            l2_builtin+=("$m")
        else
            L2_WHY="$(basename "$moddir") has $m neither as a module nor built in"
            break
        fi
    done
    unset -f l2_mod_add
    [ -z "$L2_WHY" ] || return 1
    printf '%s\n' "${l2_order[@]}" >"$dest/order"
    printf '%s\n' "${l2_builtin[@]}" >"$dest/builtin"
    L2_ORDER="${l2_order[*]}" L2_BUILTIN="${l2_builtin[*]}"
}
