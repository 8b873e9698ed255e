# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the virtio cases.
#
# A virtio case is a case line of cases.txt whose arguments name the disk image "@DATA@/<name>.vda.img"
# and the level-2 initramfs variant "virtio" (@L2_INITRD:virtio@). At test time this builds:
#   DATA/<name>.vda.img   per case, an ext4 image (mkfs.ext4 -d) holding hello.txt (a random token)
#                         and big.bin (512 KiB of random bytes)
#   DATA/virtio-ro.img    a small ext4 image for the read-only disk, shared by the cases, with ro.txt
#   WORK/expect/<name>    the markers with this run's tokens, which the driver asserts
#   L2_EXTRA/virtio/      the variant's own files:
#     lib/modules/virtio/   the Debian modules the level-2 check loads (virtio_mmio, virtio_pci, virtio_blk,
#                           virtio_console, virtio-rng, ext4 and what they need by modules.dep and
#                           modules.softdep), decompressed, with "order" (load order) and "builtin"
#     etc/l2-init.d/50-virtio.sh   the level-2 check (virtio/l2-virtio.sh)
#     etc/libvmm-virtio/<name>/    per case: the token to write, the token for the virtio console,
#                           big.bin's SHA-256, the virtio device IDs to expect, the transport
#                           (pci, vmm-run's default, or mmio when the case has --transport mmio)
#   DATA/l1-after.d/50-virtio.sh   the check after vmm-run where it ran (virtio/l1-virtio.sh): reads
#                         the image back with debugfs, runs e2fsck -fn, checks the read-only image
#   DATA/virtio/          what that check needs: debugfs and e2fsck with their shared libraries and
#                         dynamic loader (e2fs/), the tokens and SHA-256 sums
# Without what it needs (mkfs.ext4 with -d, debugfs, e2fsck, the modules) it marks the virtio cases
# skipped (WORK/skip/<name>) with the reason.

virtio_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local moddir=${VMM_LINUX_MODULES:-/lib/modules/$KVER}
    local cases=() name why="" m

    # The virtio cases: their names, from the disk image they name.
    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"@DATA@/$name.vda.img"* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0

    local mkfs debugfs e2fsck
    mkfs=$(PATH=$PATH:/sbin:/usr/sbin command -v mkfs.ext4 || true)
    debugfs=$(PATH=$PATH:/sbin:/usr/sbin command -v debugfs || true)
    e2fsck=$(PATH=$PATH:/sbin:/usr/sbin command -v e2fsck || true)
    if [ -z "$mkfs" ] || [ -z "$debugfs" ] || [ -z "$e2fsck" ]; then
        why="mkfs.ext4, debugfs or e2fsck is not installed (package e2fsprogs)"
    elif [[ "$("$mkfs" 2>&1 || true)" != *"-d "* ]]; then
        why="$mkfs has no -d (e2fsprogs 1.43 or later)"
    elif ! have ldd || ! have sha256sum; then
        why="ldd or sha256sum is not installed"
    elif [ ! -r "$moddir/modules.dep" ]; then
        why="no modules for kernel $KVER in $moddir"
    fi

    # The modules, with their dependencies, in load order. A module the kernel has built in (listed
    # in modules.builtin) needs nothing; one that is neither there nor in modules.dep skips the cases.
    local xroot=$L2_EXTRA/virtio
    local mdir=$xroot/lib/modules/virtio
    local -A seen=()
    local order=() builtin=()
    virtio_mod_path() { # NAME -> its path in modules.dep ('-' and '_' are the same), or nothing
        local re=${1//[-_]/[-_]}
        { grep -oE "^([^:]*/)?$re\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true; } | head -n1 | tr -d :
    }
    virtio_mod_add() { # PATH (as modules.dep writes it), after what it depends on
        local path=$1 dep soft s c cands k
        local -a deps
        [ -z "${seen[$path]:-}" ] || return 0
        seen[$path]=1
        local base=${path##*/}
        base=${base%.xz} base=${base%.zst} base=${base%.gz} base=${base%.ko}
        # Soft dependencies first ("softdep ext4 pre: crypto-crc32c"): the modules behind the alias,
        # the generic one where there are several (the others may need CPU features).
        soft=$(grep -E "^softdep ${base//[-_]/[-_]} pre:" "$moddir/modules.softdep" 2>/dev/null |
            sed 's/.*pre://; s/post:.*//' || true)
        for s in $soft; do
            cands=$(awk -v a="$s" '$1 == "alias" && $2 == a { print $3 }' "$moddir/modules.alias" |
                sort -u || true)
            c=$(grep -E '_generic$' <<<"$cands" | head -n1 || true)
            [ -n "$c" ] || c=$(head -n1 <<<"$cands")
            [ -n "$c" ] || continue
            c=$(virtio_mod_path "$c")
            [ -z "$c" ] || virtio_mod_add "$c"
        done
        dep=$(grep -E "^$path:" "$moddir/modules.dep" | head -n1 || true)
        read -r -a deps <<<"${dep#*:}"
        for ((k = ${#deps[@]} - 1; k >= 0; k--)); do
            virtio_mod_add "${deps[k]}"
        done
        case "$path" in
        *.ko) cp -f "$moddir/$path" "$mdir/$base.ko" ;;
        *.ko.xz) have xz || { why="xz is not installed"; return 0; }
            xz -dc "$moddir/$path" >"$mdir/$base.ko" ;;
        *.ko.zst) have zstd || { why="zstd is not installed"; return 0; }
            zstd -dcq "$moddir/$path" >"$mdir/$base.ko" ;;
        *.ko.gz) have gzip || { why="gzip is not installed"; return 0; }
            gzip -dc "$moddir/$path" >"$mdir/$base.ko" ;;
        *) why="module $path: unknown compression"; return 0 ;;
        esac
        order+=("$base")
    }
    if [ -z "$why" ]; then
        mkdir -p "$mdir"
        # virtio and virtio_ring come in as dependencies when they are modules.
        for m in virtio_mmio virtio_pci virtio_blk virtio_console virtio-rng ext4; do
            local p
            p=$(virtio_mod_path "$m")
            if [ -n "$p" ]; then
                virtio_mod_add "$p"
            elif grep -qE "/${m//[-_]/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
                builtin+=("$m")
            else
                why="$KVER has $m neither as a module nor built in"
                break
            fi
        done
    fi
    if [ -n "$why" ]; then
        rm -rf "$xroot"
        for name in "${cases[@]}"; do
            echo "$why" >"$WORK/skip/$name"
        done
        echo "hook 50-virtio: skipping ${cases[*]}: $why"
        return 0
    fi
    printf '%s\n' "${order[@]}" >"$mdir/order"
    printf '%s\n' "${builtin[@]}" >"$mdir/builtin"

    # debugfs and e2fsck for level 1, with their libraries and the dynamic loader, run as
    # "ld.so --library-path lib PROGRAM": the same on the host and in level 1's initramfs.
    local e2=$DATA/virtio/e2fs lib interp=""
    mkdir -p "$e2/lib"
    cp -f "$debugfs" "$e2/debugfs"
    cp -f "$e2fsck" "$e2/e2fsck"
    for lib in $({ ldd "$debugfs" && ldd "$e2fsck"; } | grep -oE '/[^ ]+' | sort -u); do
        case "$lib" in
        */ld-linux*) interp=$lib ;;
        *) cp -fL "$lib" "$e2/lib/" ;;
        esac
    done
    [ -n "$interp" ] || interp=$(readelf -lW "$debugfs" | grep -oE '/[^]]*ld-linux[^]]*' | head -n1)
    cp -fL "$interp" "$e2/ld.so"

    # The read-only disk, shared by the cases.
    local tree=$WORK/virtio-tree ro_token
    ro_token="libvmm-ro-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
    rm -rf "$tree"
    mkdir -p "$tree/ro"
    printf '%s\n' "$ro_token" >"$tree/ro/ro.txt"
    rm -f "$DATA/virtio-ro.img"
    "$mkfs" -q -F -t ext4 -L libvmm-ro -d "$tree/ro" "$DATA/virtio-ro.img" 2M
    sha256sum "$DATA/virtio-ro.img" | cut -d' ' -f1 >"$DATA/virtio/ro.sha256"

    mkdir -p "$xroot/etc/l2-init.d" "$DATA/l1-after.d"
    install -m 0644 "$here/virtio/l2-virtio.sh" "$xroot/etc/l2-init.d/50-virtio.sh"
    install -m 0644 "$here/virtio/l1-virtio.sh" "$DATA/l1-after.d/50-virtio.sh"

    local read_token write_token hvc_token big_sha ids args n measure randreads=2000
    for name in "${cases[@]}"; do
        read_token="libvmm-read-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
        write_token="libvmm-write-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
        hvc_token="libvmm-hvc-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
        rm -rf "$tree/rw"
        mkdir -p "$tree/rw"
        printf '%s\n' "$read_token" >"$tree/rw/hello.txt"
        head -c 524288 /dev/urandom >"$tree/rw/big.bin"
        big_sha=$(sha256sum "$tree/rw/big.bin" | cut -d' ' -f1)
        rm -f "$DATA/$name.vda.img"
        "$mkfs" -q -F -t ext4 -L libvmm-vda -d "$tree/rw" "$DATA/$name.vda.img" 8M

        # The virtio device IDs the case's arguments give (2 block, 3 console, 4 entropy), sorted.
        args=$(awk -F'|' -v n="$name" '{ gsub(/^[ \t]+|[ \t]+$/, "", $1) } $1 == n { print $6 }' \
            "$here/cases.txt")
        ids=()
        [[ " $args " == *" --console virtio "* ]] && ids+=(3)
        [[ " $args " == *" --rng "* ]] && ids+=(4)
        n=$({ grep -oE -- '--disk ' <<<"$args" || true; } | wc -l)
        for ((k = 0; k < n; k++)); do ids+=(2); done

        local d=$xroot/etc/libvmm-virtio/$name
        mkdir -p "$d" "$DATA/virtio/$name"
        printf '%s\n' "$write_token" >"$d/write-token"
        printf '%s\n' "$hvc_token" >"$d/hvc-token"
        printf '%s\n' "$big_sha" >"$d/big.sha256"
        printf '%s\n' "$big_sha" >"$DATA/virtio/$name/big.sha256"
        printf '%s\n' "$write_token" >"$DATA/virtio/$name/write-token"
        printf '%s\n' "${ids[@]}" | sort -n | tr '\n' ' ' | sed 's/ $/\n/' >"$d/ids"
        # vmm-run's default, virtio-pci: the devices are PCI functions, each with MSI-X vectors;
        # --transport mmio: virtio-mmio devices in the DSDT.
        if [[ " $args " == *" --transport mmio "* ]]; then
            echo mmio >"$d/transport"
        else
            echo pci >"$d/transport"
        fi
        measure=0
        # --stats: the exit count of a random-read workload (virtio/randread.c, linked here) on
        # /dev/vda, which level 1 takes from vmm-run's exit profile (virtio/l1-virtio.sh).
        if [[ " $args " == *" --stats "* ]]; then
            if [ ! -x "$xroot/bin/randread" ]; then
                mkdir -p "$xroot/bin"
                if ! "${CC:-cc}" -static -O2 -o "$xroot/bin/randread" "$here/virtio/randread.c" \
                    2>"$WORK/randread-cc.log"; then
                    echo "cannot link randread statically with ${CC:-cc} (package libc6-dev):" \
                        "$(head -n1 "$WORK/randread-cc.log")" >"$WORK/skip/$name"
                    continue
                fi
            fi
            echo "$randreads" >"$d/randread"
            echo "$randreads" >"$DATA/virtio/$name/randread"
            measure=1
        fi
        {
            echo "L2-VIRTIO-READ $read_token"
            echo "L2-VIRTIO-RO-READ $ro_token"
            echo "L2-VIRTIO-WROTE $write_token"
            echo "L2-HVC hello $hvc_token"
            echo "L1-VIRTIO-WRITTEN $write_token"
            echo "!L2-VIRTIO-FAIL"
            echo "!L1-VIRTIO-FAIL"
            if [ "$measure" = 1 ]; then
                echo "L2-RANDREAD $randreads reads"
                echo "L1-VIRTIO-EXITS ok"
            fi
        } >"$WORK/expect/$name"
    done
    rm -rf "$tree"
    echo "hook 50-virtio: cases ${cases[*]}; level-2 modules: ${order[*]}" \
        "${builtin:+(built in: ${builtin[*]})}"
}
virtio_hook
unset -f virtio_hook virtio_mod_path virtio_mod_add
