# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The vsock cases' level-1 check, after vmm-run: installed as DATA/l1-after.d/80-vsock.sh by
# tests/linux/hooks/80-vsock.sh. It stops what l1-vsock-before.sh left running and checks what level
# 1 received on each connection. Markers:
#   L1-VSOCK-HOST-IN <sha256>    what level 2 sent back on level 1's connection (to port 5000)
#   L1-VSOCK-GUEST-IN <sha256>   what level 2 sent on its own connection (to port 5001)
#   L1-VSOCK-OK, or "L1-VSOCK-FAIL <what>"
case=$1
d=$DATA/vsock/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
while read -r pid; do
    kill "$pid" 2>/dev/null
done <"$d/pids"
want=$(cat "$d/b.sha256")
fail=0
for x in host-in guest-in; do
    sha=$(sha256sum "$d/$x.got" 2>/dev/null | cut -d' ' -f1)
    echo "L1-VSOCK-$(echo "$x" | tr '[:lower:]' '[:upper:]') $sha"
    if [ "$sha" != "$want" ]; then
        if [ "$x" = host-in ]; then err=$(cat "$d/connect.err"); else err=$(cat "$d/listen.err"); fi
        echo "L1-VSOCK-FAIL $x: ${err:-no data}"
        fail=1
    fi
done
[ "$fail" = 1 ] || echo "L1-VSOCK-OK"
rm -f "$d"/*.got "$DATA/vsock/$case.sock" "$DATA/vsock/$case.sock_5001"
