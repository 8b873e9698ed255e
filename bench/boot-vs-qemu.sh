#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# boot-vs-qemu: Debian's own bzImage booted by vmm-run and by Debian's QEMU `-M microvm` (its
# default firmware, qboot), the same machine for both (256 MiB, 1 vCPU, serial console, command
# line "console=ttyS0 quiet"), the same busybox initramfs whose /init prints one line and powers
# off. Each boot is timed from the VMM's start to that line (and to the VMM's exit); the two VMMs
# are interleaved (vmm-run, QEMU, vmm-run, ...) so that drift on a shared host hits both alike.
# Prints every boot, the medians, and vmm-run's median over QEMU's.
#
# Where /dev/kvm is a real KVM the boots run on it; otherwise all of them run inside ONE nested
# QEMU level 1 (tests/nested/run-nested.sh, the level 1 tests/linux uses), and the figures are
# nested-KVM figures: compare only the ratio. QEMU for level 2 is the same Debian
# qemu-system-x86_64 as the host's (level 1 shares the host's root), with -accel kvm.
#
# --profile adds initcall_debug to both command lines (the kernel's own timestamps for each
# initcall) and vmm-run --stats (exits by kind and port/address, time in each); /init then prints
# the kernel log after its line. Profiling runs are not timed comparably: use them to see where
# the time goes, and the plain mode for the figures.
#
# usage: boot-vs-qemu.sh [--vmm-run FILE] [--base FILE] [--runs N] [--profile] [--work DIR]
#                        [--vmm-arg ARG]... [--new-arg ARG]... [--qemu-arg ARG]...
#                        [--only vmm|qemu]
#   --vmm-run FILE  vmm-run to time (default: build/examples/vmm-run of this tree)
#   --base FILE     another vmm-run (e.g. one built from an older commit) booted in the same
#                   rounds with the same arguments: its median and vmm-run's over it measure a
#                   change
#   --runs N        boots of each (default 5)
#   --vmm-arg ARG   one more vmm-run argument (repeatable), e.g. to compare one of its options
#   --new-arg ARG   one more argument for vmm-run but not --base (repeatable): an option the
#                   base lacks, e.g. --new-arg --kernel-cache --new-arg DIR
#   --qemu-arg ARG  one more QEMU argument (repeatable)
#   --only WHICH    boot only vmm-run or only QEMU (profiling one side)
# Environment: VMM_BENCH_KERNEL (bzImage; default the newest /boot/vmlinuz-*), VMM_QEMU,
# VMM_KVM_MODE=auto|direct|nested (as run-bench.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

vmm_run=$root/build/examples/vmm-run base="" runs=5 profile=0 work="" only="" inner=0
vmm_extra=() new_extra=() qemu_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --vmm-run) vmm_run=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --work) work=$2; shift 2 ;;
    --vmm-arg) vmm_extra+=("$2"); shift 2 ;;
    --new-arg) new_extra+=("$2"); shift 2 ;;
    --qemu-arg) qemu_extra+=("$2"); shift 2 ;;
    --only) only=$2; shift 2 ;;
    --inner) inner=1; shift ;; # internal: run the boots here (level 1 or a KVM host)
    *) echo "boot-vs-qemu.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "boot-vs-qemu.sh: bad --runs '$runs'" >&2; exit 2; }
case "$only" in '' | vmm | qemu) ;; *) echo "boot-vs-qemu.sh: --only vmm or qemu" >&2; exit 2 ;; esac
die() { echo "boot-vs-qemu.sh: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[ -x "$vmm_run" ] || die "no vmm-run at $vmm_run (build first, or --vmm-run FILE)"
vmm_run=$(cd "$(dirname "$vmm_run")" && pwd)/$(basename "$vmm_run")
if [ -n "$base" ]; then
    [ -x "$base" ] || die "no vmm-run at $base (--base)"
    base=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")
fi
qemu=${VMM_QEMU:-$(command -v qemu-system-x86_64 || true)}
[ -n "$qemu" ] || die "qemu-system-x86_64 is not installed (package qemu-system-x86)"
kernel=${VMM_BENCH_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no readable bzImage (package linux-image-amd64)"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is not installed (package busybox-static)"
work=${work:-$root/build/bench/boot-vs-qemu}
mkdir -p "$work"
work=$(cd "$work" && pwd)

# --- the initramfs: busybox, an /init that prints BENCH-INIT and powers off ------------------------
initrd=$work/initrd.cpio
if [ "$inner" = 0 ]; then
    r=$work/root
    rm -rf "$r"
    mkdir -p "$r/bin" "$r/dev" "$r/proc" "$r/sys"
    cp -f "$busybox" "$r/bin/busybox"
    for a in sh mount cat dmesg grep poweroff; do ln -sf busybox "$r/bin/$a"; done
    cat >"$r/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo BENCH-INIT
mount -t proc proc /proc
case " $(cat /proc/cmdline) " in
*" initcall_debug "*)
    # Each console byte costs an exit: leave out the "calling" lines and the initcalls under 1 ms.
    echo BENCH-DMESG-BEGIN
    dmesg | grep -vE 'calling  |returned -?[0-9]+ after [0-9]{1,3} usecs'
    echo BENCH-DMESG-END ;;
esac
poweroff -f
EOF
    chmod 0755 "$r/init"
    (cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$initrd"
    rm -rf "$r"
fi

if [ "$inner" = 0 ]; then
    mode=${VMM_KVM_MODE:-auto}
    if [ "$mode" = auto ]; then
        mode=nested
        if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null && [ ! -d /sys/module/kvm_pvm ] &&
            { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
            mode=direct
        fi
    fi
    args=(--vmm-run "$vmm_run" --runs "$runs" --work "$work" --inner)
    [ "$profile" = 1 ] && args+=(--profile)
    [ -n "$only" ] && args+=(--only "$only")
    [ -n "$base" ] && args+=(--base "$base")
    for a in "${vmm_extra[@]}"; do args+=(--vmm-arg "$a"); done
    for a in "${new_extra[@]}"; do args+=(--new-arg "$a"); done
    for a in "${qemu_extra[@]}"; do args+=(--qemu-arg "$a"); done
    case "$mode" in
    direct)
        echo "boot-vs-qemu: on this host's /dev/kvm"
        exec bash "$0" "${args[@]}"
        ;;
    nested)
        echo "boot-vs-qemu: inside one nested QEMU level 1 (tests/nested/run-nested.sh): nested-KVM figures, compare only the ratio"
        limit=$((120 + runs * 3 * 90))
        exec nice -n 5 bash "$root/tests/nested/run-nested.sh" --quiet --timeout "$limit" -- \
            bash "$0" "${args[@]}"
        ;;
    *) die "VMM_KVM_MODE must be auto, direct or nested" ;;
    esac
fi

# --- inner: the boots ---------------------------------------------------------------------------
cmdline="console=ttyS0 quiet"
[ "$profile" = 1 ] && cmdline+=" initcall_debug"
# QEMU's emulated AMD-V (the nested road) does not intercept XSETBV: the tests/linux cases hide
# XSAVE/AVX from level 2, and so does QEMU here, the same CPUID for both.
cpu_off=()
qcpu=host
if [ "${VMM_NESTED:-0}" = 1 ]; then
    cpu_off=(--cpu-disable xsave,avx)
    qcpu=host,xsave=off,avx=off
fi
vmm_cmd=("$vmm_run" --kernel "$kernel" --initrd "$initrd" --cmdline "$cmdline" --mem 256M
    --vcpus 1 "${cpu_off[@]}")
vmm_cmd+=("${vmm_extra[@]}")
base_cmd=()
if [ -n "$base" ]; then
    # An older vmm-run may lack --stats: the base gets the kernel's timestamps only.
    base_cmd=("${vmm_cmd[@]}")
    base_cmd[0]=$base
fi
vmm_cmd+=("${new_extra[@]}")
[ "$profile" = 1 ] && vmm_cmd+=(--stats)
qemu_cmd=("$qemu" -M microvm -accel kvm -cpu "$qcpu" -m 256M -smp 1 -nodefaults -no-user-config
    -display none -serial stdio -no-reboot -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
    "${qemu_extra[@]}")

now() { echo "${EPOCHREALTIME/,/.}"; }
# boot NAME CMD...: runs CMD, prints "NAME <to-line> <to-exit> <rc>" (seconds), full log kept.
boot() {
    local name=$1 i=$2 t0 log=$work/$1-$2.log
    shift 2
    t0=$(now)
    { timeout 120 "$@" </dev/null 2>&1; echo "BENCH-RC $?"; } | {
        local line t1="" t2 rc=""
        : >"$log"
        while IFS= read -r line; do
            printf '%s\n' "$line" >>"$log"
            case "$line" in
            *BENCH-INIT*) [ -n "$t1" ] || t1=$(now) ;;
            BENCH-RC\ *) rc=${line#BENCH-RC } ;;
            esac
        done
        t2=$(now)
        awk -v n="$name" -v a="$t0" -v b="${t1:-nan}" -v c="$t2" -v rc="$rc" 'BEGIN {
            printf "%s %s %.3f %s\n", n, (b == "nan" ? "nan" : sprintf("%.3f", b - a)), c - a, rc }'
    }
}

echo "boot-vs-qemu: kernel $kernel, initramfs $initrd, command line '$cmdline', $runs runs each"
echo "vmm-run: ${vmm_cmd[*]}"
echo "qemu:    ${qemu_cmd[*]}"
[ -z "$base" ] || echo "base:    ${base_cmd[*]}"
results=$work/results.txt
: >"$results"
for ((i = 1; i <= runs; i++)); do
    if [ "$only" != qemu ]; then
        boot vmm "$i" "${vmm_cmd[@]}" | tee -a "$results"
        [ -z "$base" ] || boot base "$i" "${base_cmd[@]}" | tee -a "$results"
    fi
    if [ "$only" != vmm ]; then
        boot qemu "$i" "${qemu_cmd[@]}" | tee -a "$results"
    fi
done
if [ "$profile" = 1 ]; then
    for f in "$work"/*-1.log; do
        [ -f "$f" ] || continue
        echo "=== $(basename "$f" .log): the VMM's output (console, kernel log, --stats)"
        tr -d '\r' <"$f"
    done
fi
# Medians and the ratio; a boot without the line or with a non-zero status fails the run.
awk '
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    if ($2 == "nan" || $4 != 0) { bad++; print "FAILED boot: " $0; next }
    n[$1]++; l[$1, n[$1]] = $2; e[$1, n[$1]] = $3
}
END {
    for (k in n) {
        for (i = 1; i <= n[k]; i++) { x[i] = l[k, i]; y[i] = e[k, i] }
        ml[k] = median(x, n[k]); me[k] = median(y, n[k])
        lo = 1e9; hi = 0
        for (i = 1; i <= n[k]; i++) { if (l[k, i] < lo) lo = l[k, i]; if (l[k, i] > hi) hi = l[k, i] }
        printf "median %-4s to init line %.2f s (min %.2f, max %.2f), to exit %.2f s, %d runs\n", k, ml[k], lo, hi, me[k], n[k]
    }
    if (("vmm" in n) && ("qemu" in n))
        printf "ratio vmm-run/qemu-microvm to init line: %.2fx (to exit %.2fx)\n", ml["vmm"] / ml["qemu"], me["vmm"] / me["qemu"]
    if (("base" in n) && ("qemu" in n))
        printf "ratio base/qemu-microvm to init line: %.2fx\n", ml["base"] / ml["qemu"]
    if (("vmm" in n) && ("base" in n))
        printf "ratio vmm-run/base to init line: %.2fx (to exit %.2fx)\n", ml["vmm"] / ml["base"], me["vmm"] / me["base"]
    exit bad ? 1 : 0
}' "$results"
