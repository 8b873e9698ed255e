#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The CTest command of a suite labelled kvm: runs it directly where kvm-batch.sh found a usable
# /dev/kvm, or reports what it did inside the nested level 1 of this ctest run.
# usage: kvm-test.sh RESULTS NAME EXECUTABLE [ARG...]
# Under VMM_REQUIRE_KVM=1 (CI) a skip (exit 77) is a failure.
results=$1 name=$2
shift 2
skipped() {
    if [ "${VMM_REQUIRE_KVM:-0}" = 1 ]; then
        echo "FAIL: $name skipped ($1), and VMM_REQUIRE_KVM=1 makes a skipped KVM test a failure"
        exit 1
    fi
    exit 77
}
mode=$(cat "$results/mode" 2>/dev/null || echo none)
# A suite that needs a device file the host lacks ran nested even so (kvm-batch.sh).
[ "$mode" != direct ] || [ ! -e "$results/$name.nested" ] || mode=nested
case "$mode" in
direct)
    "$@"
    rc=$?
    [ "$rc" != 77 ] || skipped "the suite exited 77"
    exit "$rc"
    ;;
nested)
    if [ -f "$results/$name.skip" ]; then
        echo "SKIP: $(cat "$results/$name.skip")"
        skipped "$(cat "$results/$name.skip")"
    fi
    echo "nested: $name ran in this ctest run's nested QEMU level 1 (tests/nested/run-nested.sh); its output:"
    cat "$results/$name.out" 2>/dev/null
    if [ ! -s "$results/$name.rc" ]; then
        echo "FAIL: $name did not finish in the level 1: see $results/level1.log"
        exit 1
    fi
    rc=$(cat "$results/$name.rc")
    [ "$rc" != 77 ] || skipped "the suite exited 77 inside the level 1"
    exit "$rc"
    ;;
skip)
    echo "SKIP: $(cat "$results/why")"
    skipped "$(cat "$results/why")"
    ;;
*)
    echo "FAIL: no kvm_setup result in $results (run it through ctest, which runs kvm_setup first)"
    exit 1
    ;;
esac
