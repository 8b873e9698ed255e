#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# run-bench: the libvmm benchmarks of one build (`cmake --build BUILD --target run-bench` runs this).
# bench_exit, bench_startup, bench_rss and bench_function need KVM: they run on this host's
# /dev/kvm where it opens, else (or with VMM_KVM_MODE=nested) inside a nested QEMU level 1
# (tests/nested/run-nested.sh), which this says first: their figures are then nested-KVM figures,
# and only the ratios against the raw floor of the same run compare. bench_blk needs no KVM and
# always runs here.
#
# usage: run-bench.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] && [ -d "$1" ] || { echo "usage: run-bench.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
b=$build/bench
kvm_benches=(sh -c "set -e; '$b/bench_exit'; '$b/bench_startup' --vmm-run '$build/examples/vmm-run';
    '$b/bench_rss' --vmm-run '$build/examples/vmm-run'; '$b/bench_function'")
    '$b/bench_rss' --vmm-run '$build/examples/vmm-run'; '$b/bench_snapshot'")

mode=${VMM_KVM_MODE:-auto}
if [ "$mode" = auto ]; then
    if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then mode=direct; else mode=nested; fi
fi
case "$mode" in
direct)
    echo "run-bench: on this host's /dev/kvm"
    "${kvm_benches[@]}"
    ;;
nested)
    why=""
    if [ ! -c /dev/kvm ]; then
        why="no /dev/kvm here; "
    elif ! (exec 3<>/dev/kvm) 2>/dev/null; then
        why="/dev/kvm cannot be opened here; "
    fi
    echo "run-bench: ${why}running the KVM benchmarks inside a nested QEMU level 1 (tests/nested/run-nested.sh): nested-KVM figures, compare only the ratios"
    bash "$here/../tests/nested/run-nested.sh" --work "$build/bench/nested" -- "${kvm_benches[@]}"
    ;;
*) echo "run-bench: VMM_KVM_MODE must be auto, direct or nested" >&2; exit 2 ;;
esac
echo "run-bench: bench_blk (no KVM needed) on this host"
"$b/bench_blk"
if [ "$(id -u)" = 0 ]; then
    echo "run-bench: bench_net (no KVM needed; root, for its taps) on this host"
    "$b/bench_net"
else
    echo "run-bench: bench_net skipped: it makes taps in a network namespace of its own (root)"
fi
echo "run-bench: bench_vsock (no KVM needed) on this host"
"$b/bench_vsock"
