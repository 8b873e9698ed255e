# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the snapshot cases.
#
# A snapshot case is a case line of cases.txt whose arguments restore "@DATA@/snap/<name>": its
# vmm-run is the second half. Before it, level 1 (DATA/l1-before.d/70-snap.sh, snap/l1-snap.sh)
# boots the same kernel with the initramfs variant "snap" and --api-sock, snapshots the guest
# through the control socket while it counts, and kills that vmm-run; the case's vmm-run then
# restores the snapshot and the guest must count on to its end (snap/l2-snap.sh) and power off.
# This writes:
#   DATA/snap/<name>.args   the first vmm-run's arguments (the kernel, the variant, the case's
#                           command line, 128 MiB, 1 vCPU; snap-pci-*: --transport pci --rng)
#   DATA/snap/vmm-run       the vmm-run to run
#   DATA/snap/<name>.disk   snap-1 and other cases without --transport pci or --net: a 64 KiB
#                           virtio-mmio disk (the first vmm-run's --disk, kept by the snapshot) that
#                           level 2 writes its count to, sector by sector; level 1 reads it back
#                           after the case (DATA/l1-after.d/70-snap.sh, snap/l1-snap-after.sh)
#   L2_EXTRA/snap/etc/l2-init.d/70-snap.sh   the level-2 count
#   WORK/expect/<name>      what must not appear (L1-SNAP-FAIL, L2-SNAPNET-FAIL, L2-SNAP-DISK-FAIL)
# A case whose arguments give --net (snap-net-1) boots with the variant "snapnet" instead: "snap" and
# virtio_net (hooks/60-net.sh's modules) with snap/l2-snapnet-*.sh around the count, and --net
# tap=vmmtap0 (which l1-snap.sh makes, 10.0.2.1/24); the case's --net tap=vmmtap0 restores it there.
# Without perl (the control socket's client) the cases are skipped, and the --net ones without
# hooks/60-net.sh's modules.

snap_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local cases=() name args
    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"--restore @DATA@/snap/$name "* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0
    if ! have perl || ! perl -MIO::Socket::UNIX -e 1 2>/dev/null; then
        for name in "${cases[@]}"; do
            echo "perl with IO::Socket::UNIX is not installed (package perl-base)" >"$WORK/skip/$name"
        done
        echo "hook 70-snap: skipping ${cases[*]}: no perl"
        return 0
    fi
    mkdir -p "$DATA/snap" "$DATA/l1-before.d" "$L2_EXTRA/snap/etc/l2-init.d"
    install -m 0644 "$here/snap/l2-snap.sh" "$L2_EXTRA/snap/etc/l2-init.d/70-snap.sh"
    install -m 0644 "$here/snap/l1-snap.sh" "$DATA/l1-before.d/70-snap.sh"
    mkdir -p "$DATA/l1-after.d"
    install -m 0644 "$here/snap/l1-snap-after.sh" "$DATA/l1-after.d/70-snap.sh"
    # shellcheck disable=SC2154 # vmm_run is run-linux.sh's
    (cd "$(dirname "$vmm_run")" && printf '%s/%s\n' "$(pwd)" "$(basename "$vmm_run")") \
        >"$DATA/snap/vmm-run"
    # The command line run-linux.sh checks L2-CMDLINE against.
    local cmdline="${VMM_LINUX_CMDLINE:-console=ttyS0 panic=-1} libvmm.case="
    # snap-pci-*: the first vmm-run has virtio-pci (an entropy device with MSI-X); level 2 loads
    # the virtio modules the virtio hook (50-virtio.sh) gathered, in the snap variant too.
    local mods=$L2_EXTRA/virtio/lib/modules/virtio
    if [ -f "$mods/order" ]; then
        mkdir -p "$L2_EXTRA/snap/lib/modules"
        cp -rf "$mods" "$L2_EXTRA/snap/lib/modules/"
    fi
    local variant extra
    for name in "${cases[@]}"; do
        variant=snap extra=""
        case "$name" in
        snap-pci-*)
            if [ ! -f "$mods/order" ]; then
                echo "no virtio modules from hook 50-virtio" >"$WORK/skip/$name"
                continue
            fi
            extra="--transport pci --rng"
            ;;
        *)
            rm -f "$DATA/snap/$name.disk"
            if ! grep -qE "^ *$name *[|].* --net " "$here/cases.txt"; then
                if [ ! -f "$mods/order" ]; then
                    echo "no virtio modules from hook 50-virtio" >"$WORK/skip/$name"
                    continue
                fi
                truncate -s 64K "$DATA/snap/$name.disk"
                # On virtio-mmio: snap-pci-* and snap-net-* are on the default, virtio-pci.
                extra="--transport mmio --disk \"\$DATA/snap/$name.disk\""
            fi
            ;;
        esac
        if grep -qE "^ *$name *[|].* --net " "$here/cases.txt"; then
            if [ ! -r "$L2_EXTRA/net/lib/modules/net/order" ]; then
                echo "no virtio_net modules (hooks/60-net.sh made none)" >"$WORK/skip/$name"
                continue
            fi
            variant=snapnet extra="--net tap=vmmtap0,mac=52:54:00:12:34:56"
            mkdir -p "$L2_EXTRA/snapnet/etc/l2-init.d" "$L2_EXTRA/snapnet/lib/modules"
            cp -r "$L2_EXTRA/net/lib/modules/net" "$L2_EXTRA/snapnet/lib/modules/"
            install -m 0644 "$here/snap/l2-snap.sh" "$L2_EXTRA/snapnet/etc/l2-init.d/70-snap.sh"
            install -m 0644 "$here/snap/l2-snapnet-up.sh" \
                "$L2_EXTRA/snapnet/etc/l2-init.d/65-snapnet.sh"
            install -m 0644 "$here/snap/l2-snapnet-after.sh" \
                "$L2_EXTRA/snapnet/etc/l2-init.d/75-snapnet.sh"
        fi
        # Words for run-cases.sh's shell: "$L2" is where it runs the case.
        printf '%s\n' "--kernel \"\$L2/bzImage\" --initrd \"\$L2/initrd-$variant.cpio\"" \
            "--cmdline '$cmdline$name' --mem 128M --vcpus 1 --cpu-disable xsave,avx $extra" |
            tr '\n' ' ' >"$DATA/snap/$name.args"
        printf '%s\n' "!L1-SNAP-FAIL" "!L2-SNAPNET-FAIL" "!L2-SNAP-DISK-FAIL" >"$WORK/expect/$name"
    done
    echo "hook 70-snap: cases ${cases[*]}"
}
snap_hook
unset -f snap_hook
