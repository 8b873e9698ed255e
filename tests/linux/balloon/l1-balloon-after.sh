# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The balloon cases' level-1 check, after vmm-run: installed as DATA/l1-after.d/85-balloon.sh by
# tests/linux/hooks/85-balloon.sh. It prints what the monitor (l1-balloon-monitor.sh) found, once
# it has ended (it ends by itself when vmm-run has; 10 s at most, then it is stopped).
case=$1
d=$DATA/balloon/$case
[ -n "$case" ] && [ -f "$d/monitor.pid" ] || exit 0
pid=$(cat "$d/monitor.pid")
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    echo "L1-BALLOON-FAIL the monitor did not end"
fi
cat "$d/monitor.out"
rm -f "$d/monitor.pid" "$DATA/balloon/$case.sock"
