# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The virtio-net cases' check in level 1 (or on the host in direct mode), after vmm-run has exited:
# installed as DATA/l1-after.d/60-net.sh by tests/linux/hooks/60-net.sh; run-cases.sh runs it after
# each case as "sh 60-net.sh CASE" with DATA in the environment. It acts only for a case with
# DATA/net/CASE. Waits (up to 10 s) for the background receiver of net/l1-net-before.sh, stops what
# is left of its servers and removes the tap.
# Markers: L1-NET-UP <sha256> (of what level 2 sent to level 1), L1-NET-OK, or
# "L1-NET-FAIL <check>: <what>".
case=$1
d=$DATA/net/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
i=0
while [ ! -e "$d/up.done" ] && [ "$i" -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
# shellcheck disable=SC2046 # one pid a line
[ -f "$d/pids" ] && kill $(cat "$d/pids") 2>/dev/null
ip=ip
command -v ip >/dev/null 2>&1 || ip="$(cat "$DATA/net/busybox") ip"
$ip link del vmmtap0 2>/dev/null
sha=$(cat "$d/up.sum" 2>/dev/null)
if [ -e "$d/up.done" ] && [ -n "$sha" ]; then
    echo "L1-NET-UP $sha"
    if [ "$sha" = "$(cat "$d/up.sha256")" ]; then
        echo "L1-NET-OK"
    else
        echo "L1-NET-FAIL upload: SHA-256 $sha ($(tail -n1 "$d/up.dd"))"
    fi
else
    echo "L1-NET-FAIL upload: nothing complete received on 10.0.2.1:5557"
fi
[ -f "$d/fifo-path" ] && rm -f "$(cat "$d/fifo-path")"
rm -f "$d/up.sum" "$d/up.dd" "$d/up.done" "$d/pids" "$d/err" "$d/fifo-path"
