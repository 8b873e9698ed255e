# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The virtio-net cases' set-up in level 1 (or on the host in direct mode), before vmm-run: installed
# as DATA/l1-before.d/60-net.sh by tests/linux/hooks/60-net.sh; run-cases.sh runs it before each case
# as "sh 60-net.sh CASE" with DATA in the environment. It acts only for a case with DATA/net/CASE.
# It makes the persistent tap vmmtap0 (vmm-run attaches to it; multiqueue for a case with queues=N),
# 10.0.2.1/24, up, and starts level 1's
# side of the transfers in the background: a server of down.bin on 10.0.2.1:5556 for level 2 to
# fetch, and a client that fetches level 2's up.bin from 10.0.2.15:5557 once level 2 serves it
# (retrying for two minutes), into DATA/net/CASE/up.got, then writes up.done. Their pids go to
# DATA/net/CASE/pids for the after-script.
# Markers: L1-NET-TAP vmmtap0 10.0.2.1/24 up, or "L1-NET-FAIL <step>: <what>".
case=$1
d=$DATA/net/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
bb=$(cat "$DATA/net/busybox")
rm -f "$d/up.got" "$d/up.done" "$d/pids"
ip=ip
command -v ip >/dev/null 2>&1 || ip="$bb ip"
$ip link del vmmtap0 2>/dev/null
# shellcheck disable=SC2046 # tapflags: words for ip
if ! $ip tuntap add dev vmmtap0 mode tap vnet_hdr $(cat "$d/tapflags" 2>/dev/null) 2>"$d/err"; then
    echo "L1-NET-FAIL tap: $(cat "$d/err")"
    exit 0
fi
# No IPv6 on the tap: nothing but the test's frames.
echo 1 >/proc/sys/net/ipv6/conf/vmmtap0/disable_ipv6 2>/dev/null
if ! $ip addr add 10.0.2.1/24 dev vmmtap0 || ! $ip link set vmmtap0 up; then
    echo "L1-NET-FAIL tap address"
    exit 0
fi
timeout 300 "$bb" nc -l -p 5556 <"$d/down.bin" >/dev/null 2>&1 &
echo $! >>"$d/pids"
# busybox nc stops at the end of its input: a FIFO opened read-write gives it one that never ends
# (in TMPDIR: DATA may be on 9p, where a FIFO is no FIFO).
fifo=${TMPDIR:-/tmp}/l1-net-fifo.$$
rm -f "$fifo"
mkfifo "$fifo"
echo "$fifo" >"$d/fifo-path"
(
    i=0
    while [ "$i" -lt 120 ]; do
        if timeout 120 "$bb" nc 10.0.2.15 5557 <>"$fifo" >"$d/up.got" 2>/dev/null &&
            [ -s "$d/up.got" ]; then
            break
        fi
        sleep 1
        i=$((i + 1))
    done
    : >"$d/up.done"
) </dev/null >/dev/null 2>&1 &
echo $! >>"$d/pids"
echo "L1-NET-TAP vmmtap0 10.0.2.1/24 up"
