#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The real-Linux test: boots the level-2 cases of cases.txt with vmm-run, either nested (inside the
# level 1 of tests/nested/run-nested.sh: the host's Debian kernel under QEMU's emulator with kvm_amd,
# the host's root shared into it) or directly on the host's /dev/kvm where that is a real KVM. The
# cases run the same way in both (run-cases.sh on the host's files). Builds everything it needs under --work at test time,
# keeps the full console log there, and checks each case's markers and exit status.
#
# usage: run-linux.sh --vmm-run FILE --guests DIR --work DIR [--src DIR]
# Environment:
#   VMM_LINUX_DIRECT=1|0   run directly on the host's /dev/kvm (1) or nested in QEMU (0); default:
#                          direct when /dev/kvm is usable, kvm_intel or kvm_amd is loaded and
#                          kvm_pvm is not
#   VMM_LINUX_CASES=ERE    only the cases whose name matches
#   VMM_LINUX_ALL=1        run the cases that cases.txt has off too
#   VMM_LINUX_KERNEL=FILE  the bzImage (default: the newest /boot/vmlinuz-*)
#   VMM_LINUX_MODULES=DIR  its modules (default: /lib/modules/<its version>)
#   VMM_LINUX_CMDLINE=STR  level-2 command line before libvmm.case=<name> (default console=ttyS0 panic=-1)
#   VMM_LINUX_TIMEOUT=S    overall limit for QEMU (default: 90 s + the cases' timeouts)
#   VMM_QEMU=FILE          qemu-system-x86_64 to use (and the other VMM_NESTED_* of run-nested.sh)
#   VMM_REQUIRE_KVM=1      fail instead of skipping (CI)
# Exit status: 0 all run cases passed, 1 a failure, 77 something needed is missing (with the reason).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vmm_run="" guests="" work=""
while [ $# -gt 0 ]; do
    case "$1" in
    --vmm-run) vmm_run=$2; shift 2 ;;
    --guests) guests=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --src) src=$2; shift 2 ;;
    *) echo "run-linux.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$vmm_run" ] && [ -n "$guests" ] && [ -n "$work" ] || {
    echo "usage: run-linux.sh --vmm-run FILE --guests DIR --work DIR [--src DIR]" >&2
    exit 2
}

skip() {
    # CI (VMM_REQUIRE_KVM=1) installs everything this needs: a skip there is a failure.
    [ "${VMM_REQUIRE_KVM:-0}" != 1 ] || { echo "FAIL: skipped under VMM_REQUIRE_KVM=1: $*"; exit 1; }
    echo "SKIP: $*"
    exit 77
}
die() { echo "FAIL: $*"; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }
have() { command -v "$1" >/dev/null 2>&1; }

t_start=$(now)
[ -d "$guests" ] && guests=$(cd "$guests" && pwd)
[ -x "$vmm_run" ] || skip "vmm-run not built: $vmm_run"
for t in cpio awk od dd; do have "$t" || skip "$t is not installed"; done

# --- what to run on ---------------------------------------------------------------------------
direct=${VMM_LINUX_DIRECT:-auto}
if [ "$direct" = auto ]; then
    direct=0
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] &&
        { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
        direct=1
    fi
fi
if [ "$direct" = 1 ]; then
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "VMM_LINUX_DIRECT=1 but /dev/kvm is not usable"
    mode=direct
else
    mode=nested
    nested=$src/../nested/run-nested.sh
    [ -f "$nested" ] || die "no $nested"
fi

kernel=${VMM_LINUX_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] ||
    skip "no readable Linux kernel (${kernel:-/boot/vmlinuz-*}; package linux-image-amd64)"
busybox=${VMM_LINUX_BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || skip "busybox is not installed (package busybox-static)"
if have readelf && readelf -lW "$busybox" 2>/dev/null | grep -q INTERP; then
    skip "$busybox is dynamically linked: install busybox-static"
fi

# Little-endian integers out of a file: u8/u16/u32 FILE OFFSET.
u8() { od -An -tu1 -j"$2" -N1 "$1" | tr -d ' \n'; }
u16() { od -An -tu2 -j"$2" -N2 "$1" | tr -d ' \n'; }
u32() { od -An -tu4 -j"$2" -N4 "$1" | tr -d ' \n'; }

# The boot protocol header: "HdrS" at 0x202; the version string's offset at 0x20e (from 0x200).
[ "$(dd if="$kernel" bs=1 skip=$((0x202)) count=4 2>/dev/null)" = HdrS ] ||
    skip "$kernel is not a bzImage"
kver_ptr=$(u16 "$kernel" $((0x20e)))
kver=$(dd if="$kernel" bs=1 skip=$((kver_ptr + 0x200)) count=128 2>/dev/null | tr '\0' '\n' |
    head -n1 | cut -d' ' -f1 || true)

mkdir -p "$work"
work=$(cd "$work" && pwd)
log=$work/console.log
[ "$mode" = direct ] && log=$work/direct.log
rm -f "$work/console.log" "$work/direct.log" "$work/report.txt"
echo "mode: $mode; kernel: $kernel ($kver); work: $work"

# --- level-2 images -----------------------------------------------------------------------------
t_build=$(now)
l2=$work/l2
mkdir -p "$l2"
cp -f "$kernel" "$l2/bzImage"

# The ELF vmlinux inside the bzImage: setup_sects at 0x1f1 (0 means 4), payload_offset and
# payload_length at 0x248/0x24c, relative to the protected-mode part at (setup_sects + 1) * 512.
vmlinux_note="" pvh_note=""
extract_vmlinux() {
    local ss po pl off magic out=$l2/vmlinux
    ss=$(u8 "$kernel" $((0x1f1)))
    [ "$ss" -ne 0 ] || ss=4
    po=$(u32 "$kernel" $((0x248)))
    pl=$(u32 "$kernel" $((0x24c)))
    off=$(((ss + 1) * 512 + po))
    [ "$pl" -gt 4 ] || { vmlinux_note="no payload in the bzImage header"; return 1; }
    magic=$(od -An -tx1 -j"$off" -N4 "$kernel" | tr -d ' \n')
    # Every format gets the uncompressed size appended (4 bytes): leave it out.
    # shellcheck disable=SC2054 # the commas are dd's
    local payload=(dd if="$kernel" iflag=skip_bytes,count_bytes skip="$off" count=$((pl - 4))
        bs=1M status=none)
    case "$magic" in
    fd377a58) have xz || { vmlinux_note="xz is not installed"; return 1; }
        "${payload[@]}" | xz -dc --single-stream >"$out.tmp" ;;
    1f8b*) have gzip || { vmlinux_note="gzip is not installed"; return 1; }
        "${payload[@]}" | gzip -dc >"$out.tmp" ;;
    28b52ffd) have zstd || { vmlinux_note="zstd is not installed"; return 1; }
        "${payload[@]}" | zstd -dcq >"$out.tmp" ;;
    *) vmlinux_note="payload compression with magic $magic is not handled"; return 1 ;;
    esac
    [ "$(od -An -tx1 -N4 "$out.tmp" | tr -d ' \n')" = 7f454c46 ] ||
        { vmlinux_note="the payload is not an ELF file"; return 1; }
    mv -f "$out.tmp" "$out"
}
has_vmlinux=0 has_pvh=0
# The cached vmlinux is reused only for the very kernel file it came from:
# dpkg keeps a package's build date as the mtime, so an upgraded kernel may
# look older than the cache.
kernel_stamp="$kernel $(stat -Lc '%s %Y %i' "$kernel" 2>/dev/null)"
if [ -s "$l2/vmlinux" ] && [ "$(cat "$l2/vmlinux.stamp" 2>/dev/null)" = "$kernel_stamp" ]; then
    has_vmlinux=1
elif extract_vmlinux; then
    has_vmlinux=1
    printf '%s\n' "$kernel_stamp" >"$l2/vmlinux.stamp"
else
    rm -f "$l2/vmlinux" "$l2/vmlinux.tmp" "$l2/vmlinux.stamp"
fi
if [ "$has_vmlinux" = 1 ]; then
    # XEN_ELFNOTE_PHYS32_ENTRY (18): the PVH entry point.
    if ! have readelf; then
        pvh_note="readelf is not installed (binutils)"
    elif readelf -nW "$l2/vmlinux" | grep -Eq 'Xen.*(0x00000012|PHYS32_ENTRY)'; then
        has_pvh=1
    else
        pvh_note="the vmlinux has no Xen PVH entry note"
    fi
fi
t_vmlinux=$(elapsed "$t_build")

# The level-2 image helpers (l2_busybox_root, l2_mkcpio, l2_modules; also for the hooks).
# shellcheck source=l2-lib.sh
. "$src/l2-lib.sh"

token="libvmm-l2-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
data=$work/data
rm -rf "$l2/root" "$l2/extra" "$l2"/initrd-*.cpio "$work/l1" "$data"
mkdir -p "$data"
l2_busybox_root "$l2/root" "$busybox"
install -m 0755 "$src/l2-init.sh" "$l2/root/init"
printf '%s\n' "$token" >"$l2/root/etc/libvmm-l2-file"
mkdir -p "$l2/root/etc/l2-init.d"

# Hooks: tests/linux/hooks/*.sh, sourced here in name order before the images are packed, under
# this script's set -euo pipefail. They see:
#   L2_ROOT   the level-2 initramfs tree: add files, or checks as $L2_ROOT/etc/l2-init.d/*.sh that
#             the level-2 /init sources before L2-DONE
#   L2_EXTRA  where a tree L2_EXTRA/<variant>/ makes a variant of the level-2 initramfs: the archive
#             of L2_ROOT followed by the tree's own (Linux unpacks both into one root), that a case
#             names as @L2_INITRD:<variant>@, so that what only some cases need stays out of the
#             others
#   DATA      files for vmm-run (disk images: a case names them as @DATA@/file), and scripts
#             DATA/l1-after.d/*.sh that run-cases.sh runs after each case as "sh SCRIPT <case>",
#             where vmm-run ran (level 1, or the host in direct mode)
#   WORK, MODE (nested or direct), KERNEL, KVER
# They add case lines to cases.txt, and may write per case WORK/expect/<case>, more strings its
# output must contain, one a line, known only at test time ("!string": must not contain), and
# WORK/skip/<case>, a reason to skip it.
rm -rf "$work/expect" "$work/skip"
mkdir -p "$work/expect" "$work/skip"
mkdir -p "$l2/extra"
export L2_ROOT=$l2/root L2_EXTRA=$l2/extra DATA=$data WORK=$work MODE=$mode KERNEL=$kernel
export KVER=$kver
for hook in "$src"/hooks/*.sh; do
    [ -f "$hook" ] || continue
    echo "hook: $hook"
    # shellcheck disable=SC1090
    . "$hook"
done
l2_mkcpio "$l2/root" "$l2/initrd.cpio"
# The variants: Linux unpacks concatenated archives one after the other into the same root.
for x in "$l2/extra"/*/; do
    [ -d "$x" ] || continue
    v=$(basename "$x")
    [[ "$v" =~ ^[A-Za-z0-9._-]+$ ]] || die "hooks: bad initramfs variant name '$v'"
    l2_mkcpio "$x" "$l2/extra-$v.cpio"
    cat "$l2/initrd.cpio" "$l2/extra-$v.cpio" >"$l2/initrd-$v.cpio"
    rm -f "$l2/extra-$v.cpio"
done

# --- the case list --------------------------------------------------------------------------------
help=$("$vmm_run" --help 2>&1 || true)
cmdline_base=${VMM_LINUX_CMDLINE:-console=ttyS0 panic=-1}
filter=${VMM_LINUX_CASES:-}

c_name=() c_kind=() c_timeout=() c_expect=() c_cpus=() c_cmdline=() c_status=()
runfile=$work/cases.run
: >"$runfile"
case_timeouts=0
while IFS='|' read -r name state kind timeout expect args; do
    name=$(trim "$name")
    case "$name" in '' | '#'*) continue ;; esac
    state=$(trim "$state") kind=$(trim "$kind") timeout=$(trim "$timeout")
    expect=$(trim "$expect") args=$(trim "$args")
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "cases.txt: bad case name '$name'"
    [[ "$timeout" =~ ^[0-9]+$ ]] || die "cases.txt: $name: bad timeout '$timeout'"
    case "$kind" in guest | linux) ;; *) die "cases.txt: $name: bad kind '$kind'" ;; esac
    if [ -n "$filter" ] && ! [[ "$name" =~ $filter ]]; then
        continue
    fi
    i=${#c_name[@]}
    c_name[i]=$name c_kind[i]=$kind c_timeout[i]=$timeout c_expect[i]=$expect
    c_cpus[i]=1
    vcpus_re=' --vcpus ([0-9]+) '
    [[ " $args " =~ $vcpus_re ]] && c_cpus[i]=${BASH_REMATCH[1]}
    c_cmdline[i]="$cmdline_base libvmm.case=$name"
    # @CMDLINE:words@ is @CMDLINE@ with more words at its end.
    extra_re='@CMDLINE:([^@]*)@'
    if [[ "$args" =~ $extra_re ]]; then
        c_cmdline[i]+=" ${BASH_REMATCH[1]}"
        args=${args//"${BASH_REMATCH[0]}"/@CMDLINE@}
    fi
    status=run
    [ "$state" = off ] && [ "${VMM_LINUX_ALL:-0}" = 1 ] && state=on
    case "$state" in
    on | auto) ;;
    off) status="skip (off in cases.txt)" ;;
    *) die "cases.txt: $name: bad state '$state'" ;;
    esac
    if [ "$status" = run ]; then
        for opt in $(grep -oE -- '--[a-z0-9][a-z0-9-]*' <<<"$args" | sort -u); do
            grep -qE -- "(^|[^a-z0-9-])$opt([^a-z0-9-]|$)" <<<"$help" && continue
            if [ "$state" = auto ]; then
                status="skip (vmm-run has no $opt yet)"
            else
                status="fail (vmm-run has no $opt)"
            fi
            break
        done
    fi
    if [ "$status" = run ] && [ -f "$work/skip/$name" ]; then
        status="skip ($(head -n1 "$work/skip/$name"))"
    fi
    variant_re='@L2_INITRD:([A-Za-z0-9._-]+)@'
    if [ "$status" = run ] && [[ "$args" =~ $variant_re ]] &&
        [ ! -f "$l2/initrd-${BASH_REMATCH[1]}.cpio" ]; then
        status="skip (no level-2 initramfs variant '${BASH_REMATCH[1]}' from the hooks)"
    fi
    if [ "$status" = run ] && [[ "$args" == *@VMLINUX* ]] && [ "$has_vmlinux" != 1 ]; then
        status="skip (no vmlinux: $vmlinux_note)"
    fi
    if [ "$status" = run ] && [[ "$args" == *@VMLINUX_PVH@* ]] && [ "$has_pvh" != 1 ]; then
        status="skip ($pvh_note)"
    fi
    c_status[i]=$status
    [ "$status" = run ] || continue
    # run-cases.sh expands "$GUESTS", "$L2" and "$DATA" where it runs the case (maybe on copies).
    r=$args
    r=${r//@GUESTS@/\"\$GUESTS\"}
    r=${r//@BZIMAGE@/\"\$L2/bzImage\"}
    r=${r//@VMLINUX_PVH@/\"\$L2/vmlinux\"}
    r=${r//@VMLINUX@/\"\$L2/vmlinux\"}
    r=${r//@L2_INITRD@/\"\$L2/initrd.cpio\"}
    while [[ "$r" =~ $variant_re ]]; do
        r=${r//${BASH_REMATCH[0]}/\"\$L2/initrd-${BASH_REMATCH[1]}.cpio\"}
    done
    r=${r//@DATA@/\"\$DATA\"}
    r=${r//@CMDLINE@/\'${c_cmdline[i]}\'}
    printf '%s|%s|%s\n' "$name" "$timeout" "$r" >>"$runfile"
    case_timeouts=$((case_timeouts + timeout))
done <"$src/cases.txt"
[ "${#c_name[@]}" -gt 0 ] || skip "no case in cases.txt matches VMM_LINUX_CASES='$filter'"

# --- run ----------------------------------------------------------------------------------------
t_build_total=$(elapsed "$t_build")

t_run=$(now)
cases=(env AWK="$busybox awk" L2="$l2" GUESTS="$guests" STAGE="$([ "$mode" = nested ] && echo 1 || echo 0)"
    sh "$src/run-cases.sh" "$runfile" "$vmm_run" "$data")
# The full output goes to the log; the progress lines also to stdout as they come, so that a run
# stopped from outside (ctest's TIMEOUT) still shows how far it got.
progress() { tee "$log" | { grep --line-buffered -E '^(L1-CASE |L1-STAGE|nested: |run-nested.sh: )' || true; }; }
set +e
if [ "$mode" = nested ]; then
    limit=${VMM_LINUX_TIMEOUT:-$((90 + case_timeouts))}
    echo "running nested (tests/nested/run-nested.sh, limit ${limit}s), log: $log"
    bash "$nested" --work "$work/nested" --timeout "$limit" --keep-console "$work/level1.log" -- \
        "${cases[@]}" </dev/null 2>&1 | progress
else
    echo "running directly on /dev/kvm, log: $log"
    TMPDIR=$work "${cases[@]}" </dev/null 2>&1 | progress
fi
run_rc=${PIPESTATUS[0]}
set -e
t_run=$(elapsed "$t_run")

# --- check ----------------------------------------------------------------------------------------
clean=$work/console.clean
tr -d '\r' <"$log" >"$clean"
failed=0
report() { echo "$*" | tee -a "$work/report.txt"; }
marker() { grep -m1 -oE "$1( .*)?\$" <<<"$out" | head -n1 || true; }
field() { grep -oE "(^| )$1=[^ ]*" <<<"$2" | head -n1 | cut -d= -f2 || true; }

if [ "$mode" = nested ] && [ "$run_rc" = 77 ]; then
    skip "$(grep -m1 'cannot run nested here' "$clean" | sed 's/^run-nested.sh: //')"
fi
if [ "$mode" = nested ] && { [ "$run_rc" = 124 ] || [ "$run_rc" = 125 ]; }; then
    tail -n 40 "$clean"
    die "the nested level 1 failed (run-nested.sh exit $run_rc; its console: $work/level1.log)"
fi

for ((i = 0; i < ${#c_name[@]}; i++)); do
    name=${c_name[i]} status=${c_status[i]}
    if [ "$status" != run ]; then
        [[ "$status" == fail* ]] && failed=1
        report "$(printf '%-10s %s %s' "$name" "$(tr a-z A-Z <<<"${status%% *}")" "${status#* }")"
        continue
    fi
    # The case's output: from its L1-CASE-BEGIN to its L1-CASE line.
    out=$(awk -v n="$name" '$0 == "L1-CASE-BEGIN " n { on = 1; next }
        on && index($0, "L1-CASE " n " rc=") == 1 { exit } on' "$clean")
    end=$(grep -m1 -E "^L1-CASE $name rc=" "$clean" || true)
    why=()
    want_rc=0
    if [ -z "$end" ]; then
        why+=("did not finish (no L1-CASE line)")
    fi
    rc=$(field rc "$end")
    IFS=';' read -r -a expects <<<"${c_expect[i]}"
    for e in "${expects[@]}"; do
        e=$(trim "$e")
        case "$e" in
        '' | -) ;;
        rc=*) want_rc=${e#rc=} ;;
        *) grep -qF -- "$e" <<<"$out" || why+=("no '$e'") ;;
        esac
    done
    # The hooks' expectations with this run's tokens.
    if [ -f "$work/expect/$name" ]; then
        while IFS= read -r e; do
            case "$e" in
            '') ;;
            '!'*) ! grep -qF -- "${e#!}" <<<"$out" || why+=("'${e#!}': $(grep -m1 -F -- "${e#!}" <<<"$out")") ;;
            *) grep -qF -- "$e" <<<"$out" || why+=("no '$e'") ;;
            esac
        done <"$work/expect/$name"
    fi
    [ -z "$end" ] || [ "$rc" = "$want_rc" ] || why+=("exit status $rc, expected $want_rc")
    [ "$(field timedout "$end")" != 1 ] || why+=("timed out after ${c_timeout[i]}s")
    runinit="-" l2init="-"
    if [ "${c_kind[i]}" = linux ]; then
        # Markers may follow other output on their line (a console escape, a kernel message).
        cpus=$(marker L2-CPUS | cut -d' ' -f2)
        cmd=$(marker L2-CMDLINE | cut -d' ' -f2-)
        file=$(marker L2-FILE | cut -d' ' -f2)
        [ -n "$(marker L2-INIT)" ] || why+=("no L2-INIT (level-2 init did not start)")
        [ "$cpus" = "${c_cpus[i]}" ] || why+=("L2-CPUS '$cpus', expected ${c_cpus[i]}")
        [ "$(trim "$cmd")" = "${c_cmdline[i]}" ] || why+=("L2-CMDLINE '$cmd', expected '${c_cmdline[i]}'")
        [ "$file" = "$token" ] || why+=("L2-FILE '$file', expected this run's token")
        [ -n "$(marker L2-DONE)" ] || why+=("no L2-DONE")
        runinit=$(grep -m1 -oE '\[ *[0-9]+\.[0-9]+\] Run /init' <<<"$out" | grep -oE '[0-9]+\.[0-9]+' || true)
        [ -n "$runinit" ] || runinit=$(marker L2-RUNINIT | grep -oE '[0-9]+\.[0-9]+' | head -n1 || true)
        runinit=${runinit:--}
        l2init=$(grep -m1 "^L1-MARK $name l2-init=" <<<"$out" | cut -d= -f2 || true)
        l2init=${l2init:--}
    fi
    wall=$(field wall "$end")
    if [ "${#why[@]}" -eq 0 ]; then
        result=PASS
    else
        result=FAIL
        failed=1
    fi
    report "$(printf '%-10s %s rc=%s wall=%ss vmm-run-to-L2-INIT=%ss kernel-Run-/init=%ss' \
        "$name" "$result" "${rc:--}" "${wall:--}" "$l2init" "$runinit")"
    if [ "$result" = FAIL ]; then
        for w in "${why[@]}"; do report "           - $w"; done
        echo "---- last lines of $name's output ----"
        tail -n 30 <<<"$out"
        echo "----"
    fi
done

[ "$run_rc" = 0 ] || { failed=1; report "run-cases.sh exited $run_rc"; }
report "timings: level-2 images ${t_vmlinux}s (vmlinux extraction), images total ${t_build_total}s, run ${t_run}s, all $(elapsed "$t_start")s"
if [ "$mode" = nested ]; then
    report "level 1: $(grep -m1 '^nested: level 1 done' "$clean" | sed 's/^nested: //')"
fi
report "full log: $log"
exit "$failed"
