#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level-1 step before the snapshot case's vmm-run (hooks/70-snap.sh; run by run-cases.sh as
# "sh SCRIPT <case>" before every case, so it does nothing for the others): boots the case's guest
# with vmm-run --api-sock, waits for its count (L2-SNAP-COUNT 4), has vmm-run save it into
# DATA/snap/<case> over the control socket ({"cmd":"snapshot","path":DIR}, answered {"ok":true};
# perl-base's IO::Socket::UNIX as the client), kills vmm-run (SIGKILL: nothing of it is left to
# help the restore) and prints what the guest printed.
# The case's own vmm-run then restores that directory. Markers:
#   L1-SNAP-SAVED at count <i>   the snapshot was taken (the last count vmm-run had printed)
#   L1-SNAP-FAIL <why>
name=$1
snap=$DATA/snap
[ -f "$snap/$name.args" ] || exit 0
tmp=${TMPDIR:-/tmp}
dir=$snap/$name sock=$tmp/snap-$name.sock log=$tmp/snap-$name.log
vmm=$(cat "$snap/vmm-run")
rm -rf "$dir" "$sock" "$log"
eval "set -- $(cat "$snap/$name.args")"
case " $* " in
*" --net tap=vmmtap0"*)
    # The tap both vmm-runs attach to, level 1's side 10.0.2.1/24 (left for the case's vmm-run).
    ip=ip
    command -v ip >/dev/null 2>&1 || ip="$(cat "$DATA/net/busybox") ip"
    $ip link del vmmtap0 2>/dev/null
    if ! $ip tuntap add dev vmmtap0 mode tap vnet_hdr || ! $ip addr add 10.0.2.1/24 dev vmmtap0 ||
        ! $ip link set vmmtap0 up; then
        echo "L1-SNAP-FAIL cannot make the tap vmmtap0"
        exit 0
    fi
    echo 1 >/proc/sys/net/ipv6/conf/vmmtap0/disable_ipv6 2>/dev/null
    ;;
esac
timeout -s KILL 120 "$vmm" "$@" --api-sock "$sock" </dev/null >"$log" 2>&1 &
pid=$!
t=0
while ! grep -q 'L2-SNAP-COUNT 4' "$log" && kill -0 "$pid" 2>/dev/null && [ "$t" -lt 900 ]; do
    sleep 0.1
    t=$((t + 1))
done
reply="the guest did not count (after $((t / 10)) s)"
if grep -q 'L2-SNAP-COUNT 4' "$log"; then
    reply=$(perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect: $!\n";
        (my $d = $ARGV[1]) =~ s/(["\\])/\\$1/g;
        print $s "{\"cmd\":\"snapshot\",\"path\":\"$d\"}\n";
        my $l = <$s>;
        print defined $l ? $l : "no reply\n";' "$sock" "$dir" 2>&1)
fi
at=$(grep -o 'L2-SNAP-COUNT [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
# vmm-run is timeout's child: SIGKILL to timeout would leave it running (holding its tap).
child=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)
[ -n "$child" ] && kill -KILL "$child" 2>/dev/null
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
cat "$log"
if [ "$reply" = '{"ok":true}' ]; then
    echo "L1-SNAP-SAVED at count $at"
else
    echo "L1-SNAP-FAIL $reply"
fi
rm -f "$sock" "$log"
