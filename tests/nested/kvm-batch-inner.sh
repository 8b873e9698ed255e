#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Inside the nested level 1 (run by kvm-batch.sh through run-nested.sh): runs each suite of LIST
# in its working directory under its time limit, N at a time, and leaves RESULTS/<name>.out and
# RESULTS/<name>.rc for kvm-test.sh. Prints one line per suite: name, exit status, seconds.
# Check's per-test timeouts are scaled (CK_TIMEOUT_MULTIPLIER, default 10 here): code runs tens
# of times slower under QEMU's emulator.
list=$1 results=$2 jobs=${3:-1}
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-10}
now() { cut -d' ' -f1 /proc/uptime; }
run_one() { # name exe dir timeout
    t0=$(now)
    (cd "$3" && exec timeout -k 10 "$4" "$2") >"$results/$1.out" 2>&1 </dev/null
    rc=$?
    echo "$rc" >"$results/$1.rc"
    echo "  $1 rc=$rc $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
}
n=0
while IFS='|' read -r name exe dir to; do
    [ -n "$name" ] || continue
    run_one "$name" "$exe" "$dir" "$to" &
    n=$((n + 1))
    if [ "$n" -ge "$jobs" ]; then
        wait
        n=0
    fi
done <"$list"
wait
exit 0
