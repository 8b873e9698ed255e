#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# CTest fixture "kvm" (test kvm_setup): decides once per ctest run how the suites labelled kvm run,
# and on a host without a usable /dev/kvm runs all of them in one nested level 1 (run-nested.sh),
# keeping each one's output and exit status for its own CTest test (kvm-test.sh) to report.
#
# usage: kvm-batch.sh --list FILE --results DIR --probe EXE [--work DIR]
#   FILE lines: name|executable|working directory|timeout in seconds|device files it needs
# Where /dev/kvm works, a suite that needs a device file this host lacks (/dev/vhost-net, say) still
# runs nested, with the other such suites in one level 1 (which loads their modules); the rest run
# directly. DIR/<name>.nested marks such a suite.
# Environment:
#   VMM_KVM_MODE=auto|direct|nested  auto (default): direct when vmm-kvm-probe says /dev/kvm works,
#                                    else nested
#   VMM_KVM_ONLY=ERE                 nested: run only the suites whose name matches
#   VMM_REQUIRE_KVM=1                (CI) fail instead of skipping when neither way works
#   VMM_NESTED_SMP=N                 level-1 vCPUs, and suites run at once there (default 1)
# Writes DIR/mode (direct, nested or skip), DIR/why (skip), DIR/<name>.out and DIR/<name>.rc
# (nested), DIR/level1.log (nested: the batch's own output).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
list="" results="" probe="" work=""
while [ $# -gt 0 ]; do
    case "$1" in
    --list) list=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --probe) probe=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "kvm-batch.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$list" ] && [ -n "$results" ] && [ -n "$probe" ] ||
    { echo "usage: kvm-batch.sh --list FILE --results DIR --probe EXE [--work DIR]" >&2; exit 2; }
work=${work:-$results/../work}

rm -rf "$results"
mkdir -p "$results"
results=$(cd "$results" && pwd)

mode=${VMM_KVM_MODE:-auto}
probe_out=$("$probe" 2>&1) && probe_ok=1 || probe_ok=0
echo "vmm-kvm-probe: $probe_out"
case "$mode" in
auto) if [ "$probe_ok" = 1 ]; then mode=direct; else mode=nested; fi ;;
direct | nested) ;;
*) echo "FAIL: VMM_KVM_MODE must be auto, direct or nested, not '$mode'"; exit 1 ;;
esac

only=${VMM_KVM_ONLY:-}
smp=${VMM_NESTED_SMP:-1}
sel=$results/list
: >"$sel"
timeouts=0
lacking=""
while IFS='|' read -r name exe dir to needs; do
    [ -n "$name" ] || continue
    if [ "$mode" = direct ]; then
        missing=""
        for n in $needs; do [ -e "$n" ] || missing="$missing $n"; done
        [ -n "$missing" ] || continue
        : >"$results/$name.nested"
        lacking="$lacking $name (no$missing)"
    elif [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then
        echo "not selected by VMM_KVM_ONLY='$only'" >"$results/$name.skip"
        continue
    fi
    printf '%s|%s|%s|%s\n' "$name" "$exe" "$dir" "$to" >>"$sel"
    timeouts=$((timeouts + to))
done <"$list"
if [ "$mode" = direct ]; then
    echo direct >"$results/mode"
    echo "kvm suites: run directly on this host's /dev/kvm"
    [ -s "$sel" ] || exit 0
fi
# The level 1 gets the suites' own limits (run one at a time) plus its boot.
limit=$((timeouts + 120))
if [ "$mode" = direct ]; then
    echo "kvm suites: except, in one nested QEMU level 1 now:$lacking"
elif [ "$probe_ok" = 1 ]; then
    echo "kvm suites: VMM_KVM_MODE=nested, so all of them run now in one nested QEMU level 1"
else
    echo "kvm suites: no usable /dev/kvm here, so all of them run now in one nested QEMU level 1"
fi
echo "  (run-nested.sh; each one's CTest test reports its share; limit ${limit}s)"
set +e
bash "$here/run-nested.sh" --work "$work" --timeout "$limit" --smp "$smp" -- \
    sh "$here/kvm-batch-inner.sh" "$sel" "$results" "$smp" 2>&1 | tee "$results/level1.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 77 ]; then
    why=$(grep -m1 'cannot run nested here' "$results/level1.log" | sed 's/^run-nested.sh: //')
    if [ "$mode" = direct ]; then
        # Only the suites that needed the level 1 are left out.
        while IFS='|' read -r name _; do
            echo "this host lacks a device file it needs and $why" >"$results/$name.skip"
        done <"$sel"
        [ "${VMM_REQUIRE_KVM:-0}" != 1 ] || { echo "FAIL: VMM_REQUIRE_KVM=1 and$lacking cannot run"; exit 1; }
        exit 0
    fi
    echo skip >"$results/mode"
    echo "no usable /dev/kvm ($probe_out) and $why" >"$results/why"
    if [ "${VMM_REQUIRE_KVM:-0}" = 1 ]; then
        echo "FAIL: VMM_REQUIRE_KVM=1 and the kvm suites can run neither directly nor nested"
        exit 1
    fi
    echo "SKIP: $(cat "$results/why")"
    exit 0
fi
[ "$mode" = direct ] || echo nested >"$results/mode"
# A suite's failure is reported by its own test; this one fails when level 1 itself did.
[ "$rc" = 0 ] || echo "FAIL: the nested level 1 failed (run-nested.sh exit $rc)"
exit "$rc"
