#!/bin/sh
# Run every fuzz target of a VMM_FUZZ build for a bounded time, nproc at a
# time, each from its seed corpus (new inputs go to a scratch folder, the
# checked-in corpus is only read). Fails when any target finds a crash, a
# leak, a timeout or an out-of-memory; the reproducer is kept under
# $FUZZ_ARTIFACTS (default: the scratch folder, printed).
#   fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]
set -eu
[ $# -ge 2 ] || { echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2; exit 2; }
build=$1
secs=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
targets=${*:-$(cd "$src/corpus" && ls)}
work=$(mktemp -d "${TMPDIR:-/tmp}/libvmm-fuzz.XXXXXX")
art=${FUZZ_ARTIFACTS:-$work}
jobs=$(nproc 2>/dev/null || echo 2)

run_one() {
    t=$1
    mkdir -p "$work/$t"
    if "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/$t-" "$work/$t" "$src/corpus/$t" \
        >"$work/$t.log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
        echo "fuzz: $t: $execs executions in ${secs} s, no finding"
    else
        echo "fuzz: $t FAILED (log below; reproducer under $art)"
        tail -n 60 "$work/$t.log"
        return 1
    fi
}

fail=0
running=0
pids=""
for t in $targets; do
    [ -x "$build/fuzz/$t" ] || { echo "fuzz: $build/fuzz/$t is not built" >&2; exit 1; }
    run_one "$t" &
    pids="$pids $!"
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        for p in $pids; do wait "$p" || fail=1; done
        pids=""
        running=0
    fi
done
for p in $pids; do wait "$p" || fail=1; done
[ "$fail" -eq 0 ] && [ "$art" = "$work" ] && rm -rf "$work"
exit "$fail"
