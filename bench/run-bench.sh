#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# run-bench: the libvmm benchmarks of one build (`cmake --build BUILD --target run-bench` runs this).
# bench_exit, bench_startup, bench_rss, bench_function and bench_snapshot need KVM: they run on
# this host's /dev/kvm where it opens, else (or with VMM_KVM_MODE=nested) inside a nested QEMU
# level 1 (tests/nested/run-nested.sh), which this says first: their figures are then nested-KVM
# figures, and only the ratios against the raw floor of the same run compare. bench_blk,
# bench_vsock and bench_net need no KVM and run here (bench_net as root only).
#
# usage: run-bench.sh BUILD_DIR [BENCH...]
#   BENCH: exit startup rss function snapshot blk net vsock (default: all), e.g.
#   VMM_KVM_MODE=nested bench/run-bench.sh build startup rss exit
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] && [ -d "$1" ] || { echo "usage: run-bench.sh BUILD_DIR [BENCH...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
shift
b=$build/bench
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(exit startup rss function snapshot blk net vsock)
kvm_cmds=() other=()
for w in "${want[@]}"; do
    case "$w" in
    exit) kvm_cmds+=("'$b/bench_exit'") ;;
    startup) kvm_cmds+=("'$b/bench_startup' --vmm-run '$build/examples/vmm-run'") ;;
    rss) kvm_cmds+=("'$b/bench_rss' --vmm-run '$build/examples/vmm-run'") ;;
    function) kvm_cmds+=("'$b/bench_function'") ;;
    snapshot) kvm_cmds+=("'$b/bench_snapshot'") ;;
    blk | net | vsock) other+=("$w") ;;
    *) echo "run-bench: unknown benchmark '$w' (exit startup rss function snapshot blk net vsock)" >&2; exit 2 ;;
    esac
done

if [ ${#kvm_cmds[@]} -gt 0 ]; then
    script="set -e"
    for c in "${kvm_cmds[@]}"; do script+="; $c"; done
    mode=${VMM_KVM_MODE:-auto}
    if [ "$mode" = auto ]; then
        if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then mode=direct; else mode=nested; fi
    fi
    # Each benchmark's headline, gathered at the end (issue 15's three ratios).
    log=$(mktemp "${TMPDIR:-/tmp}/run-bench.XXXXXX")
    trap 'rm -f "$log"' EXIT
    case "$mode" in
    direct)
        echo "run-bench: on this host's /dev/kvm"
        sh -c "$script" | tee "$log"
        ;;
    nested)
        why=""
        if [ ! -c /dev/kvm ]; then
            why="no /dev/kvm here; "
        elif ! (exec 3<>/dev/kvm) 2>/dev/null; then
            why="/dev/kvm cannot be opened here; "
        fi
        echo "run-bench: ${why}running the KVM benchmarks inside a nested QEMU level 1 (tests/nested/run-nested.sh): nested-KVM figures, compare only the ratios"
        bash "$here/../tests/nested/run-nested.sh" --work "$build/bench/nested" -- sh -c "$script" |
            tee "$log"
        ;;
    *) echo "run-bench: VMM_KVM_MODE must be auto, direct or nested" >&2; exit 2 ;;
    esac
    echo "run-bench: summary ($mode KVM; each ratio against the raw-KVM floor of the same run):"
    grep -E '^(exit: raw .*ratio|startup: raw .*ratio|process: raw .*ratio|rss: raw .*difference)' \
        "$log" | sed 's/^/run-bench:   /' || true
fi
for w in "${other[@]}"; do
    if [ "$w" = blk ]; then
        echo "run-bench: bench_blk (no KVM needed) on this host"
        "$b/bench_blk"
    elif [ "$w" = vsock ]; then
        echo "run-bench: bench_vsock (no KVM needed) on this host"
        "$b/bench_vsock"
    elif [ "$(id -u)" = 0 ]; then
        echo "run-bench: bench_net (no KVM needed; root, for its taps) on this host"
        "$b/bench_net"
    else
        echo "run-bench: bench_net skipped: it makes taps in a network namespace of its own (root)"
    fi
done
