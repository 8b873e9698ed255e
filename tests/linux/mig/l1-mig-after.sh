#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level-1 step after the migration case's vmm-run (the target; hooks/80-mig.sh): waits for the
# source's driver (mig/l1-mig-before.sh), prints the source's output and the target's console,
# and checks the migration:
# - the control socket's reply is {"ok":true,...} with the rounds, pages, total and downtime,
#   and how the memory went ("memory":"copied" or "memfd");
# - the source exited 0 (it hands the VM over, then ends);
# - the guest's serial output, the source's then the target's (one stream: a line may be split
#   between them), counts 0 .. 39 without a gap or a repeat, at least to 4 on the source and past it
#   on the target, and ends with the memory check passed.
# Markers:
#   L1-MIG-OK source=<last count there> reply=<the reply>
#   L1-MIG-FAIL <why>
name=$1
mig=$DATA/mig
[ -f "$mig/$name.args" ] || exit 0
t=0
while [ ! -f "$mig/$name.result" ] && [ "$t" -lt 200 ]; do
    sleep 0.1
    t=$((t + 1))
done
if [ ! -f "$mig/$name.result" ]; then
    pid=$(cat "$mig/$name.src.pid" 2>/dev/null)
    [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null
fi
echo "---- source: vmm-run --api-sock, its stderr ----"
cat "$mig/$name.src.err" 2>/dev/null
echo "---- source: the guest's serial output ----"
cat "$mig/$name.src.out" 2>/dev/null
echo "---- target: the guest's serial output (--console) ----"
cat "$mig/$name.console" 2>/dev/null
echo "----"
reply=$(sed -n 's/^reply //p' "$mig/$name.result" 2>/dev/null)
rc=$(sed -n 's/^rc //p' "$mig/$name.result" 2>/dev/null)
last=$(grep -o 'L2-MIG-COUNT [0-9]*' "$mig/$name.src.out" 2>/dev/null | tail -n1 | cut -d' ' -f2)
counts=$(cat "$mig/$name.src.out" "$mig/$name.console" 2>/dev/null | grep -o 'L2-MIG-COUNT [0-9]*' |
    awk 'BEGIN { want = 0 }
        $2 != want { printf "count %s where %d was due\n", $2, want; bad = 1; exit }
        { want++ }
        END { if (!bad) print "ok " want }')
why=
if [ ! -f "$mig/$name.result" ]; then
    why="the source did not end"
elif [ "${reply#'{"ok":true,'}" = "$reply" ]; then
    why="reply: $reply"
else
    for k in rounds pages total_us downtime_us memory; do
        case "$reply" in *"\"$k\":"*) ;; *) why="the reply lacks $k: $reply" ;; esac
    done
fi
[ -n "$why" ] || [ "$rc" = 0 ] || why="the source exited $rc"
[ -n "$why" ] || [ "$counts" = "ok 40" ] || why="the count: $counts"
if [ -z "$why" ] && { [ "${last:-0}" -lt 4 ] || [ "${last:-0}" -ge 39 ]; }; then
    why="the source counted to ${last:-nothing}, not from 4 to 38"
fi
[ -n "$why" ] || grep -q 'L2-MIG-MEM ok' "$mig/$name.console" || why="no memory check passed on the target"
if [ -z "$why" ]; then
    echo "L1-MIG-OK source=$last reply=$reply"
else
    echo "L1-MIG-FAIL $why"
fi
rm -f "$mig/$name.sock"
