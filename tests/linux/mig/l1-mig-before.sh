#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level-1 step before the migration case's vmm-run (hooks/80-mig.sh; run by run-cases.sh as
# "sh SCRIPT <case>" before every case, so it does nothing for the others). The case's own
# vmm-run is the target (--migrate-listen unix:DATA/mig/<case>.sock, the guest's serial output
# into DATA/mig/<case>.console). This starts, in the background, the source: vmm-run booting the
# kernel with --api-sock (its stdout, the guest's serial output, into <case>.src.out; its stderr
# into <case>.src.err), and a driver that waits for the guest's count (L2-MIG-COUNT 4) and the
# target's socket, sends {"cmd":"migrate","to":"unix:..."} over the control socket (perl-base's
# IO::Socket::UNIX as the client), waits for the source to exit and writes the reply and its
# exit status into <case>.result. mig/l1-mig-after.sh checks them.
name=$1
mig=$DATA/mig
[ -f "$mig/$name.args" ] || exit 0
tmp=${TMPDIR:-/tmp}
api=$tmp/mig-$name.api sock=$mig/$name.sock
vmm=$(cat "$mig/vmm-run")
rm -f "$api" "$sock" "$mig/$name".src.* "$mig/$name.console" "$mig/$name.result"*
eval "set -- $(cat "$mig/$name.args")"
(
    timeout -s KILL 150 "$vmm" "$@" --api-sock "$api" >"$mig/$name.src.out" 2>"$mig/$name.src.err" &
    pid=$!
    echo "$pid" >"$mig/$name.src.pid"
    t=0
    while ! grep -q 'L2-MIG-COUNT 4' "$mig/$name.src.out" && kill -0 "$pid" 2>/dev/null &&
        [ "$t" -lt 1200 ]; do
        sleep 0.1
        t=$((t + 1))
    done
    while [ ! -S "$sock" ] && [ "$t" -lt 1500 ]; do
        sleep 0.1
        t=$((t + 1))
    done
    reply="no migration: the guest did not count or the target did not listen (after $((t / 10)) s)"
    if grep -q 'L2-MIG-COUNT 4' "$mig/$name.src.out" && [ -S "$sock" ]; then
        reply=$(perl -MIO::Socket::UNIX -e '
            my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect: $!\n";
            (my $d = $ARGV[1]) =~ s/(["\\])/\\$1/g;
            print $s "{\"cmd\":\"migrate\",\"to\":\"unix:$d\"}\n";
            my $l = <$s>;
            print defined $l ? $l : "no reply\n";' "$api" "$sock" 2>&1)
    fi
    wait "$pid"
    rc=$?
    printf 'reply %s\nrc %s\n' "$reply" "$rc" >"$mig/$name.result.tmp"
    mv "$mig/$name.result.tmp" "$mig/$name.result"
    rm -f "$api"
) </dev/null >/dev/null 2>&1 &
echo "L1-MIG-SOURCE started"
