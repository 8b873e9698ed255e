# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The balloon cases' level-1 side: installed as DATA/l1-before.d/85-balloon.sh by
# tests/linux/hooks/85-balloon.sh; run-cases.sh runs it before each case as "sh 85-balloon.sh CASE"
# (it acts only for a case with DATA/balloon/CASE). It starts, in the background, the monitor that
# follows vmm-run's output (CASE_LOG) and drives its control socket DATA/balloon/CASE.sock
# (perl-base's IO::Socket::UNIX as the client), reading vmm-run's memory from /proc/PID/status
# (VmRSS, RssAnon, RssShmem) into DATA/balloon/CASE/monitor.out, which the after-script prints:
# - inflate: at L2-BALLOON-FREED, the RSS before; the balloon set to 128 MiB; once the driver
#   reports it all (stats: actual_mib) and level 2 saw it, the RSS after; the balloon back to 0.
#     L1-BALLOON-RSS before=<kB> after=<kB> fell=<MiB> (RssAnon a->b, RssShmem a->b)
#     L1-BALLOON-OK (fell by 100 MiB or more) or L1-BALLOON-FAIL <what>
# - report: the highest RSS seen while level 2 writes; after L2-BALLOON-FREED, the RSS until it
#   has fallen by 100 MiB (within 90 s); then the balloon set to 4 MiB (level 2's cue to end).
#     L1-BALLOON-REPORT peak=<kB> after=<kB> fell=<MiB> in=<s> reported=<MiB>
#     L1-BALLOON-OK or L1-BALLOON-FAIL <what>
case=$1
d=$DATA/balloon/$case
[ -n "$case" ] && [ -d "$d" ] || exit 0
rm -f "$d/monitor.out" "$d/monitor.pid" "$DATA/balloon/$case.sock"
sh "$DATA/balloon/l1-balloon-monitor.sh" "$case" </dev/null >"$d/monitor.out" 2>&1 &
echo $! >"$d/monitor.pid"
echo "L1-BALLOON-MONITOR $(cat "$d/mode")"
