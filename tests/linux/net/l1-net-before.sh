# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The virtio-net cases' set-up in level 1 (or on the host in direct mode), before vmm-run: installed
# as DATA/l1-before.d/60-net.sh by tests/linux/hooks/60-net.sh; run-cases.sh runs it before each case
# as "sh 60-net.sh CASE" with DATA in the environment. It acts only for a case with DATA/net/CASE.
# It makes the persistent tap vmmtap0 (vmm-run attaches to it; multiqueue for a case with queues=N),
# 10.0.2.1/24, up, and starts level 1's
# side of the transfers in the background: a server on 10.0.2.1:5556 of down.bin repeated REPS times
# (DATA/net/CASE/reps) for level 2 to fetch, and a server on 10.0.2.1:5557 that takes what level 2
# sends and writes its SHA-256 to DATA/net/CASE/up.sum (and dd's count to up.dd), then up.done.
# Their pids (and those of the two nc, so that none is left listening for the next case) go to
# DATA/net/CASE/pids for the after-script.
# Markers: L1-NET-TAP vmmtap0 10.0.2.1/24 up, or "L1-NET-FAIL <step>: <what>".
case=$1
d=$DATA/net/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
bb=$(cat "$DATA/net/busybox")
rm -f "$d/up.sum" "$d/up.dd" "$d/up.done" "$d/pids"
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
reps=$(cat "$d/reps")
# The download: down.bin REPS times; nc stops at the end of its input, which closes the connection.
(
    i=0
    while [ "$i" -lt "$reps" ]; do
        cat "$d/down.bin"
        i=$((i + 1))
    done | sh -c 'echo $$ >>"$1/pids"; exec timeout 300 "$2" nc -l -p 5556' sh "$d" "$bb"
) </dev/null >/dev/null 2>&1 &
echo $! >>"$d/pids"
# The upload, hashed as it arrives (nothing stored). busybox nc stops at the end of its input: a FIFO
# opened read-write gives it one that never ends (in TMPDIR: DATA may be on 9p, where a FIFO is no
# FIFO), so it ends when level 2 closes the connection.
fifo=${TMPDIR:-/tmp}/l1-net-fifo.$$
rm -f "$fifo"
mkfifo "$fifo"
echo "$fifo" >"$d/fifo-path"
(
    sh -c 'echo $$ >>"$1/pids"; exec timeout 300 "$2" nc -l -p 5557' sh "$d" "$bb" <>"$fifo" |
        "$bb" dd bs=65536 2>"$d/up.dd" |
        sha256sum | cut -d' ' -f1 >"$d/up.sum"
    : >"$d/up.done"
) </dev/null >/dev/null 2>&1 &
echo $! >>"$d/pids"
echo "L1-NET-TAP vmmtap0 10.0.2.1/24 up"
