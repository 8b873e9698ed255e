# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The balloon cases' level-1 monitor (see l1-balloon-before.sh, which starts it as
# "sh l1-balloon-monitor.sh CASE" with DATA and CASE_LOG in the environment).
case=$1
d=$DATA/balloon/$case
sock=$DATA/balloon/$case.sock
mode=$(cat "$d/mode")
fail() {
    echo "L1-BALLOON-FAIL $*"
    exit 0
}
# wait_for STRING TENTHS: until vmm-run's output has STRING (while vmm-run runs).
wait_for() {
    i=0
    while ! grep -qF -- "$1" "$CASE_LOG" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        i=$((i + 1))
        [ "$i" -lt "$2" ] || return 1
        sleep 0.1
    done
}
# vmm-run's pid: the process named vmm-run with this case's socket on its command line.
find_pid() {
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = vmm-run ] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$sock" && echo "${p#/proc/}" && return
    done
}
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
api() {
    perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect: $!\n";
        print $s "$ARGV[1]\n";
        my $l = <$s>;
        print defined $l ? $l : "no reply\n";' "$sock" "$1" 2>&1
}

i=0
pid=
while [ -z "$pid" ] && [ "$i" -lt 600 ]; do
    pid=$(find_pid)
    [ -n "$pid" ] || sleep 0.1
    i=$((i + 1))
done
[ -n "$pid" ] || fail "no vmm-run with $sock"

if [ "$mode" = inflate ]; then
    wait_for L2-BALLOON-FREED 1800 || fail "level 2 did not write and free its memory"
    rss0=$(status "$pid" VmRSS) anon0=$(status "$pid" RssAnon) shm0=$(status "$pid" RssShmem)
    r=$(api '{"cmd":"balloon","target_mib":128}')
    [ "$r" = '{"ok":true,"target_mib":128}' ] || fail "balloon request: $r"
    i=0
    until api '{"cmd":"stats"}' | grep -q '"actual_mib":128[,}]'; do
        kill -0 "$pid" 2>/dev/null || fail "vmm-run ended"
        i=$((i + 1))
        [ "$i" -lt 600 ] || fail "the balloon did not reach 128 MiB: $(api '{"cmd":"stats"}')"
        sleep 0.2
    done
    wait_for L2-BALLOON-INFLATED 600 || fail "level 2 did not see the balloon"
    rss1=$(status "$pid" VmRSS) anon1=$(status "$pid" RssAnon) shm1=$(status "$pid" RssShmem)
    fell=$(((rss0 - rss1) / 1024))
    echo "L1-BALLOON-RSS before=$rss0 after=$rss1 fell=${fell} MiB" \
        "(RssAnon $anon0->$anon1, RssShmem $shm0->$shm1 kB)"
    echo "L1-BALLOON-STATS $(api '{"cmd":"stats"}')"
    r=$(api '{"cmd":"balloon","target_mib":0}')
    [ "$r" = '{"ok":true,"target_mib":0}' ] || fail "deflate request: $r"
    [ "$fell" -ge 100 ] || fail "RSS fell by $fell MiB (less than 100)"
    echo "L1-BALLOON-OK"
else
    peak=0
    while ! grep -qF L2-BALLOON-FREED "$CASE_LOG" 2>/dev/null; do
        rss=$(status "$pid" VmRSS)
        [ -n "$rss" ] || fail "vmm-run ended before L2-BALLOON-FREED"
        [ "$rss" -le "$peak" ] || peak=$rss
        sleep 0.1
    done
    t0=$(cut -d' ' -f1 /proc/uptime)
    i=0
    while :; do
        rss=$(status "$pid" VmRSS)
        [ -n "$rss" ] || fail "vmm-run ended"
        [ $((peak - rss)) -lt 102400 ] || break
        i=$((i + 1))
        [ "$i" -lt 900 ] || break
        sleep 0.1
    done
    t=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
    stats=$(api '{"cmd":"stats"}')
    rep=$(echo "$stats" | sed -n 's/.*"reported_bytes":\([0-9]*\).*/\1/p')
    fell=$(((peak - rss) / 1024))
    echo "L1-BALLOON-REPORT peak=$peak after=$rss fell=$fell MiB in=${t}s" \
        "reported=$((${rep:-0} / 1048576)) MiB"
    r=$(api '{"cmd":"balloon","target_mib":4}')
    [ "$r" = '{"ok":true,"target_mib":4}' ] || fail "balloon request: $r"
    [ "$fell" -ge 100 ] || fail "RSS fell by $fell MiB within 90 s (less than 100)"
    echo "L1-BALLOON-OK"
fi
