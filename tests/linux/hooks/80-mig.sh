# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Hook of the real-Linux test (sourced by run-linux.sh, see README.md): the live-migration cases.
#
# A migration case is a case line of cases.txt whose arguments listen on
# "--migrate-listen unix:@DATA@/mig/<name>.sock": its vmm-run is the target. Before it, level 1
# (DATA/l1-before.d/80-mig.sh, mig/l1-mig-before.sh) starts the source in the background, booting
# the same kernel with the initramfs variant "mig" and --api-sock, and a driver that migrates the
# guest to the target through the control socket while it writes memory (mig/mig-mem.c, from
# mig/l2-mig.sh); after it, mig/l1-mig-after.sh checks the reply, the source's exit and the count
# across both. This writes:
#   DATA/mig/<name>.args   the source's arguments (the kernel, the variant, the case's command
#                          line, 128 MiB, 1 vCPU; *-memfd-* cases: --mem-backing memfd; with the
#                          modules: --rng, on virtio-mmio except for *-memfd-* cases)
#   L2_EXTRA/mig/lib/modules/virtio/  virtio_mmio, virtio_pci, virtio-rng and what they need
#   DATA/mig/vmm-run       the vmm-run to run
#   L2_EXTRA/mig/bin/mig-mem, L2_EXTRA/mig/etc/l2-init.d/80-mig.sh   the level-2 program
#   WORK/expect/<name>     what must not appear (L1-MIG-FAIL, L2-MIG-FAIL), and how the memory
#                          went ("memory":"copied", or "memory":"memfd" for *-memfd-* cases)
# Without perl (the control socket's client) or a C compiler that links statically (mig-mem),
# the cases are skipped.

mig_hook() {
    local here=${BASH_SOURCE[0]%/*}/..
    local cases=() name args why=
    while IFS='|' read -r name _ _ _ _ args; do
        name=$(trim "$name")
        case "$name" in '' | '#'*) continue ;; esac
        [[ "$args" == *"--migrate-listen unix:@DATA@/mig/$name.sock"* ]] && cases+=("$name")
    done <"$here/cases.txt"
    [ "${#cases[@]}" -gt 0 ] || return 0
    mkdir -p "$DATA/mig" "$DATA/l1-before.d" "$DATA/l1-after.d" "$L2_EXTRA/mig/bin" \
        "$L2_EXTRA/mig/etc/l2-init.d"
    if ! have perl || ! perl -MIO::Socket::UNIX -e 1 2>/dev/null; then
        why="perl with IO::Socket::UNIX is not installed (package perl-base)"
    elif ! "${CC:-cc}" -static -O2 -o "$L2_EXTRA/mig/bin/mig-mem" "$here/mig/mig-mem.c" 2>"$WORK/mig-cc.log"; then
        why="cannot link mig-mem statically with ${CC:-cc} (package libc6-dev): $(head -n1 "$WORK/mig-cc.log")"
    fi
    if [ -n "$why" ]; then
        for name in "${cases[@]}"; do echo "$why" >"$WORK/skip/$name"; done
        echo "hook 80-mig: skipping ${cases[*]}: $why"
        return 0
    fi
    install -m 0644 "$here/mig/l2-mig.sh" "$L2_EXTRA/mig/etc/l2-init.d/80-mig.sh"
    install -m 0644 "$here/mig/l1-mig-before.sh" "$DATA/l1-before.d/80-mig.sh"
    install -m 0644 "$here/mig/l1-mig-after.sh" "$DATA/l1-after.d/80-mig.sh"
    # shellcheck disable=SC2154 # vmm_run is run-linux.sh's
    (cd "$(dirname "$vmm_run")" && printf '%s/%s\n' "$(pwd)" "$(basename "$vmm_run")") \
        >"$DATA/mig/vmm-run"
    # The command line run-linux.sh checks L2-CMDLINE against.
    local cmdline="${VMM_LINUX_CMDLINE:-console=ttyS0 panic=-1} libvmm.case="
    # An entropy device moves with the VM where the kernel's modules are at hand: level 2 reads it
    # on the source and again on the target (L2-MIG-RNG ok); *-memfd-* cases on virtio-pci
    # (vmm-run's default: its MSI-X state moves), the others on virtio-mmio. Only the modules it
    # needs, so the source counts soon after boot.
    local rng=""
    if l2_modules "${VMM_LINUX_MODULES:-/lib/modules/$KVER}" "$L2_EXTRA/mig/lib/modules/virtio" \
        virtio_mmio virtio_pci virtio-rng; then
        rng=1
    else
        rm -rf "$L2_EXTRA/mig/lib/modules"
        echo "hook 80-mig: no entropy device: $L2_WHY"
    fi
    local extra memory
    for name in "${cases[@]}"; do
        # *-memfd-*: the source's memory is a memfd, which the library hands over to the target
        # (SCM_RIGHTS on the Unix socket) instead of copying it; the reply says which it did.
        extra="" memory='"memory":"copied"'
        case "$name" in *-memfd-*) extra=" --mem-backing memfd" memory='"memory":"memfd"' ;; esac
        if [ -n "$rng" ]; then
            case "$name" in *-memfd-*) extra+=" --rng" ;; *) extra+=" --transport mmio --rng" ;; esac
        fi
        # Words for run-cases.sh's shell: "$L2" is where it runs the case.
        printf '%s\n' "--kernel \"\$L2/bzImage\" --initrd \"\$L2/initrd-mig.cpio\"" \
            "--cmdline '$cmdline$name' --mem 128M --vcpus 1 --cpu-disable xsave,avx$extra" |
            tr '\n' ' ' >"$DATA/mig/$name.args"
        printf '%s\n' "!L1-MIG-FAIL" "!L2-MIG-FAIL" "$memory" ${rng:+"L2-MIG-RNG ok"} \
            >"$WORK/expect/$name"
    done
    echo "hook 80-mig: cases ${cases[*]}"
}
mig_hook
unset -f mig_hook
