# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The vsock cases' level-1 side, before vmm-run: installed as DATA/l1-before.d/80-vsock.sh by
# tests/linux/hooks/80-vsock.sh; run-cases.sh runs it before each case as "sh 80-vsock.sh CASE"; it
# acts only for a case with DATA/vsock/CASE. In the background (pids to DATA/vsock/CASE/pids):
# - the listener for level 2's connection to port 5001: the Unix socket DATA/vsock/CASE.sock_5001
#   (vmm-run's PATH_<port>), or with vhost=on an AF_VSOCK listener (the host is CID 2); it gets
#   b.bin into guest-in.got and sends a.bin back;
# - level 1's connection to level 2's port 5000: "CONNECT 5000" on DATA/vsock/CASE.sock, or with
#   vhost=on AF_VSOCK to the guest's CID, retried every 0.5 s (for two minutes) until level 2
#   listens; it sends a.bin and gets b.bin into host-in.got.
# Marker: L1-VSOCK-READY.
case=$1
d=$DATA/vsock/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
io=$(cat "$DATA/vsock/vsock-io")
sock=$DATA/vsock/$case.sock
cid=$(cat "$d/cid")
rm -f "$d"/*.got "$d"/*.err "$d/pids" "$sock" "${sock}_5001"
if [ -f "$d/vhost" ]; then
    timeout 300 "$io" listen 5001 1048576 "$d/a.bin" "$d/guest-in.got" 2>"$d/listen.err" &
else
    timeout 300 "$io" ulisten "${sock}_5001" 1048576 "$d/a.bin" "$d/guest-in.got" \
        2>"$d/listen.err" &
fi
echo $! >>"$d/pids"
(
    i=0
    while [ "$i" -lt 240 ]; do
        if [ -f "$d/vhost" ]; then
            timeout 120 "$io" connect "$cid" 5000 1048576 "$d/a.bin" "$d/host-in.got"
        else
            timeout 120 "$io" uconnect "$sock" 5000 1048576 "$d/a.bin" "$d/host-in.got"
        fi 2>"$d/connect.err" && break
        sleep 0.5
        i=$((i + 1))
    done
) </dev/null >/dev/null 2>&1 &
echo $! >>"$d/pids"
echo "L1-VSOCK-READY $([ -f "$d/vhost" ] && echo "AF_VSOCK (vhost), guest CID $cid" ||
    echo "Unix sockets $sock")"
