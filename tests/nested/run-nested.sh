#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs one command under real (nested) KVM on a host that has no usable /dev/kvm.
#
# Level 1 is the host's own Debian kernel under QEMU's emulator (q35, TCG, -cpu max, which emulates
# AMD-V), with kvm-amd loaded from the host's modules: it has a real /dev/kvm. The host's root is
# shared into it read-write over virtio-9p and the command runs chrooted into that share, in the
# same working directory, with the same environment (less a few variables, below), so any program
# of the host runs as it would on a KVM host. Its stdout and stderr come back on this script's
# stdout as they are written; its exit status is this script's.
#
# Inside, the chroot has fresh /proc, /sys, /dev (with /dev/kvm), /dev/pts, /dev/shm and /run
# (tmpfs; the host's /run is not visible). TMPDIR points at /run/libvmm-nested/tmp, a local
# filesystem: ext4 on a scratch disk where mkfs.ext4 exists (O_DIRECT and FIFOs work there, unlike
# on 9p or 6.1's tmpfs), else a tmpfs. VMM_NESTED=1 tells the command where it runs.
#
# usage: run-nested.sh [options] [--] COMMAND [ARG...]
#   --work DIR        cache and run folders (default $VMM_NESTED_WORK, else
#                     ${XDG_CACHE_HOME:-$HOME/.cache}/libvmm-nested)
#   --timeout S       kill level 1 after S seconds (default 1800); exit 124 then
#   --mem MIB         level-1 memory (default 2048)
#   --smp N           level-1 vCPUs (default 1)
#   --scratch MIB     size of the scratch disk behind TMPDIR (default 4096; sparse)
#   --cwd DIR         working directory of the command (default: this one)
#   --keep            keep the run folder (console log, output, status)
#   --keep-console F  copy level 1's console log to F
#   --qemu-arg ARG    one more QEMU argument (repeatable), before the shares: e.g. an emulated
#                     device for level 1 ("-device edu"), or "-device intel-iommu,intremap=on"
#   --append WORDS    more words for level 1's kernel command line (e.g. "intel_iommu=on")
#   -q, --quiet       no "nested:" lines on stderr
# Environment: VMM_QEMU (qemu-system-x86_64), VMM_NESTED_KERNEL (a bzImage; default the newest
# /boot/vmlinuz-*), VMM_NESTED_MODULES (its modules; default /lib/modules/<its version>),
# VMM_NESTED_BUSYBOX (a static busybox).
# Exit status: the command's; 77 when this host cannot run a nested level 1 (the reason on
# stderr); 124 when the time ran out; 125 when level 1 failed before the command finished (its
# console log is printed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH=$PATH:/usr/sbin:/sbin # mkfs.ext4
work=${VMM_NESTED_WORK:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/libvmm-nested}
timeout=1800 mem=2048 smp=1 scratch_mib=4096 cwd=$PWD keep=0 quiet=0 console_copy="" append_extra=""
qemu_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --work) work=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --scratch) scratch_mib=$2; shift 2 ;;
    --cwd) cwd=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --keep-console) console_copy=$2; shift 2 ;;
    --qemu-arg) qemu_extra+=("$2"); shift 2 ;;
    --append) append_extra=" $2"; shift 2 ;;
    -q | --quiet) quiet=1; shift ;;
    --) shift; break ;;
    -*) echo "run-nested.sh: unknown option '$1'" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: run-nested.sh [options] [--] COMMAND [ARG...]" >&2; exit 2; }
for n in "$timeout" "$mem" "$smp" "$scratch_mib"; do
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || { echo "run-nested.sh: bad number '$n'" >&2; exit 2; }
done

say() { [ "$quiet" = 1 ] || echo "nested: $*" >&2; }
skip() { echo "run-nested.sh: cannot run nested here: $*" >&2; exit 77; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- what level 1 needs -------------------------------------------------------------------------
qemu=${VMM_QEMU:-$(command -v qemu-system-x86_64 || true)}
[ -n "$qemu" ] && [ -x "$qemu" ] || skip "qemu-system-x86_64 is not installed (package qemu-system-x86)"
kernel=${VMM_NESTED_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] ||
    skip "no readable Linux kernel (${kernel:-/boot/vmlinuz-*}; package linux-image-amd64)"
busybox=${VMM_NESTED_BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || skip "busybox is not installed (package busybox-static)"
if have readelf && readelf -lW "$busybox" 2>/dev/null | grep -q INTERP; then
    skip "$busybox is dynamically linked (package busybox-static)"
fi
for t in cpio timeout tail; do have "$t" || skip "$t is not installed"; done
# The kernel's version string: offset at 0x20e of the setup header, relative to 0x200.
[ "$(dd if="$kernel" bs=1 skip=$((0x202)) count=4 2>/dev/null)" = HdrS ] || skip "$kernel is not a bzImage"
kver_ptr=$(od -An -tu2 -j$((0x20e)) -N2 "$kernel" | tr -d ' \n')
kver=$(dd if="$kernel" bs=1 skip=$((kver_ptr + 0x200)) count=128 2>/dev/null | tr '\0' '\n' |
    head -n1 | cut -d' ' -f1)
moddir=${VMM_NESTED_MODULES:-/lib/modules/$kver}
[ -r "$moddir/modules.dep" ] || skip "no modules for kernel $kver in $moddir (package linux-image-amd64)"

mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -d "$cwd" ] || { echo "run-nested.sh: no such directory: $cwd" >&2; exit 2; }
cwd=$(cd "$cwd" && pwd)

# --- the level-1 initramfs (cached) ---------------------------------------------------------------
# The modules: 9p over virtio-pci for the shares, virtio-blk and ext4 for the scratch disk, kvm-amd
# (QEMU's emulator only emulates AMD-V), tun and vhost_net for the virtio-net tests (/dev/net/tun,
# /dev/vhost-net), vhost_vsock for the vhost-vsock test (/dev/vhost-vsock, AF_VSOCK). Each with its
# dependencies from modules.dep, dependencies first; crc32c_generic
# is ext4's and jbd2's soft dependency.
want_modules=(virtio_pci 9pnet_virtio 9p virtio_blk crc32c_generic ext4 kvm-amd tun vhost_net vhost_vsock)
stamp="v1 ${want_modules[*]} $kernel $(stat -Lc '%s %Y %i' "$kernel") $(cksum <"$here/l1-init.sh") $(readlink -f "$busybox")"
initrd=$work/l1-initrd.cpio
if [ ! -s "$initrd" ] || [ "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "building the level-1 initramfs ($kver)"
    root=$(mktemp -d "$work/l1-root.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/host" "$root/modules"
    cp -f "$busybox" "$root/bin/busybox"
    for a in $("$busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
    done
    install -m 0755 "$here/l1-init.sh" "$root/init"
    : >"$root/modules/order"
    declare -A loaded=()
    add_module() { # add_module PATH-IN-MODULES.DEP
        local rel=$1 line deps d base
        base=$(basename "$rel")
        base=${base%.xz} base=${base%.zst} base=${base%.gz} base=${base%.ko}
        [ -z "${loaded[$base]:-}" ] || return 0
        loaded[$base]=1
        line=$(grep -E "^$rel:" "$moddir/modules.dep" || true)
        read -r -a deps <<<"${line#*:}"
        # modules.dep lists a module's dependencies so that loading them last to first works.
        for ((d = ${#deps[@]} - 1; d >= 0; d--)); do add_module "${deps[d]}"; done
        case "$rel" in
        *.ko) cp -f "$moddir/$rel" "$root/modules/$base.ko" ;;
        *.ko.xz) xz -dc "$moddir/$rel" >"$root/modules/$base.ko" ;;
        *.ko.zst) zstd -dcq "$moddir/$rel" >"$root/modules/$base.ko" ;;
        *.ko.gz) gzip -dc "$moddir/$rel" >"$root/modules/$base.ko" ;;
        *) skip "module $rel: unknown compression" ;;
        esac
        echo "$base" >>"$root/modules/order"
    }
    for m in "${want_modules[@]}"; do
        # Module file names may use - or _ for the same module.
        pat=${m//[-_]/[-_]}
        rel=$(grep -oE "^([^:]*/)?$pat\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 | tr -d :)
        if [ -z "$rel" ]; then
            # Built into the kernel: nothing to load.
            grep -qE "/$pat\.ko$" "$moddir/modules.builtin" 2>/dev/null && continue
            skip "module $m is not among the modules of $kver"
        fi
        add_module "$rel"
    done
    # Another run may be building the same file at the same time: each writes its own, then renames.
    tmp=$(mktemp "$initrd.XXXXXX")
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$tmp"
    mv -f "$tmp" "$initrd"
    printf '%s\n' "$stamp" >"$initrd.stamp"
    rm -rf "$root"
    trap - EXIT
fi

# --- this run -----------------------------------------------------------------------------------
run=$(mktemp -d "$work/run.XXXXXX")
qpid="" tpid=""
cleanup() {
    [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
    [ -z "$tpid" ] || kill "$tpid" 2>/dev/null || true
    rm -f "$run/scratch.img"
    [ "$keep" = 1 ] || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# POSIX sh single quoting.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
    echo "# written by run-nested.sh; run by level 1's /init inside the chroot"
    # The environment, less what belongs to this shell or to the host's own session.
    while IFS= read -r name; do
        case "$name" in
        PWD | OLDPWD | SHLVL | _ | TMPDIR | TMP | TEMP | TERM | DISPLAY | XDG_RUNTIME_DIR | \
            SSH_* | DBUS_* | BASH_FUNC_*) continue ;;
        esac
        [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        echo "export $name=$(q "${!name}")"
    done <<<"$(compgen -e)"
    echo "export TMPDIR=/run/libvmm-nested/tmp VMM_NESTED=1 TERM=dumb"
    echo "cd $(q "$cwd") || exit 125"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
} >"$run/cmd.sh"
: >"$run/out"

# QEMU's option syntax: a comma inside a value is written twice.
qrun=${run//,/,,}
scratch_args=()
if have mkfs.ext4; then
    truncate -s "${scratch_mib}M" "$run/scratch.img"
    mkfs.ext4 -q -F -O ^has_journal -m 0 -E lazy_itable_init=1,nodiscard "$run/scratch.img"
    scratch_args=(-drive "file=$qrun/scratch.img,if=virtio,format=raw,cache=unsafe")
else
    say "mkfs.ext4 is not installed (package e2fsprogs): TMPDIR is a tmpfs (no O_DIRECT there)"
fi

say "running in a QEMU level 1 with nested KVM ($kver, ${mem} MiB, $smp vCPU): $*"
t0=${EPOCHREALTIME/,/.}
# The command's output as it arrives (the host side of the 9p share); tail stops when QEMU does.
# no_timer_check: under heavy load on the host, the emulated 8254's test ticks can come too late
# and level 1 panics ("8254 timer not connected to IO-APIC"); the timer works, the check is the
# problem.
set +e
timeout -k 10 "$timeout" "$qemu" -M q35 -accel tcg -cpu max -smp "$smp" -m "$mem" \
    -nodefaults -no-reboot -display none \
    -chardev "file,id=con,path=$qrun/console.log" -serial chardev:con \
    -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1 quiet no_timer_check$append_extra" \
    "${qemu_extra[@]}" \
    -virtfs "local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap" \
    -virtfs "local,path=$qrun,mount_tag=session,security_model=passthrough,multidevs=remap" \
    "${scratch_args[@]}" </dev/null >"$run/qemu.log" 2>&1 &
qpid=$!
tail -n +1 -f --pid="$qpid" "$run/out" &
tpid=$!
# Level 1 writes rc (over 9p, at once on the host) before it syncs and powers off. Once rc is
# there, QEMU gets 30 s to end on its own; a level 1 whose power-off hangs (a task stuck in the
# kernel, a disk that never syncs) must not hold the caller until the time limit.
stopped_late=0
while kill -0 "$qpid" 2>/dev/null; do
    if [ -s "$run/rc" ]; then
        for ((i = 0; i < 300; i++)); do
            kill -0 "$qpid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$qpid" 2>/dev/null; then
            stopped_late=1
            kill "$qpid" 2>/dev/null
        fi
        break
    fi
    sleep 0.2
done
wait "$qpid"
qrc=$?
qpid=""
wait "$tpid"
tpid=""
set -e
t1=${EPOCHREALTIME/,/.}
cp -f "$run/console.log" "$work/last-console.log" 2>/dev/null || true
[ -z "$console_copy" ] || cp -f "$run/console.log" "$console_copy" 2>/dev/null || true

clean_console() { tr -d '\r' <"$run/console.log"; }
if [ -s "$run/rc" ]; then
    rc=$(tr -cd '0-9' <"$run/rc")
    boot=$(clean_console | grep -m1 '^NESTED-L1 ready' | grep -oE 'uptime=[0-9.]+' | cut -d= -f2 || true)
    [ "$stopped_late" = 0 ] ||
        say "level 1 did not power off within 30 s of the command's end: QEMU stopped (console: $work/last-console.log)"
    say "level 1 done: exit status $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s in all, ${boot:-?} s of it level 1's boot"
    exit "${rc:-125}"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "run-nested.sh: level 1 killed at the ${timeout}s limit; its console:" >&2
    clean_console | tail -n 30 >&2
    exit 124
fi
echo "run-nested.sh: level 1 ended (QEMU exit $qrc) before the command finished; its console and QEMU's output:" >&2
clean_console | tail -n 30 >&2
tail -n 10 "$run/qemu.log" >&2
exit 125
