#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs the resolved level-2 cases, one vmm-run each, and prints markers around each one's output.
# Shared by level 1's /init (busybox sh inside QEMU) and the host in direct mode, so it sticks to
# POSIX sh, awk, cut and timeout as busybox has them.
#
# usage: run-cases.sh RUNFILE VMM_RUN [DATA]
# RUNFILE lines: name|timeout|arguments (shell words, evaluated: "$L2", "$GUESTS" and "$DATA" in
# them name the folders below).
# DATA: the hooks' data folder; after each vmm-run, DATA/l1-after.d/*.sh run as "sh SCRIPT <name>"
# (with DATA in the environment) to check what the case left behind, e.g. in its disk images;
# before it, DATA/l1-before.d/*.sh the same way, to set up what the case needs (a tap device);
# what they start in the background can follow vmm-run's output as it comes in the file CASE_LOG
# (in the environment).
# Environment: L2 the level-2 images (its files), GUESTS the test guests (its files); STAGE=1 first
# copies L2's and GUESTS' files and DATA into $TMPDIR/stage and runs the cases from there. Nested,
# that keeps the guests' kernels, initramfs and disk images off the 9p share of the host's root
# (level 1's TMPDIR is an ext4 disk): each case then reads and writes local files, not files
# served by QEMU, whatever the filesystem of the host's checkout.
# Prints, per case:
#   L1-CASE-BEGIN <name>
#   L1-CMD vmm-run <arguments>
#   ... the output of the DATA/l1-before.d scripts ...
#   ... vmm-run's output (stdout and stderr), with L1-MARK lines when the first output arrives and
#       when the level-2 init's L2-INIT marker arrives (seconds since vmm-run started) ...
#   ... the output of the DATA/l1-after.d scripts ...
#   L1-CASE <name> rc=<exit status> wall=<seconds> timedout=<0|1>
# Times come from /proc/uptime (centiseconds). AWK names an awk that handles each line as it arrives
# (busybox's does; mawk waits for a full buffer from a pipe).
runfile=$1
# shellcheck disable=SC2034 # vmm is used in the eval below
vmm=$2
DATA=${3:-}
export DATA
tmp=${TMPDIR:-/tmp}
awk=${AWK:-awk}

now() { cut -d' ' -f1 /proc/uptime; }

# copy_files FROM TO: FROM's regular files (not its folders) into TO.
copy_files() {
    mkdir -p "$2"
    for f in "$1"/*; do
        if [ -f "$f" ]; then cp "$f" "$2/" || return 1; fi
    done
}
L2=${L2:-} GUESTS=${GUESTS:-}
if [ "${STAGE:-0}" = 1 ]; then
    st=$tmp/stage
    t0=$(now)
    rm -rf "$st"
    { [ -z "$L2" ] || copy_files "$L2" "$st/l2"; } &&
        { [ -z "$GUESTS" ] || copy_files "$GUESTS" "$st/guests"; } &&
        { [ -z "$DATA" ] || cp -R "$DATA" "$st/data"; } ||
        { echo "L1-STAGE failed: cannot copy the cases' files into $st"; exit 1; }
    [ -z "$L2" ] || L2=$st/l2
    [ -z "$GUESTS" ] || GUESTS=$st/guests
    [ -z "$DATA" ] || DATA=$st/data
    echo "L1-STAGE $(du -sm "$st" | cut -f1) MiB copied to $st in $($awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }') s"
fi
export L2 GUESTS DATA

while IFS='|' read -r name timeout args; do
    case "$name" in '' | '#'*) continue ;; esac
    echo "L1-CASE-BEGIN $name"
    echo "L1-CMD vmm-run $args"
    rm -f "$tmp/case-rc"
    CASE_LOG=$tmp/case-$name.log
    : >"$CASE_LOG"
    export CASE_LOG
    if [ -n "$DATA" ]; then
        for before in "$DATA"/l1-before.d/*.sh; do
            [ -f "$before" ] && sh "$before" "$name" </dev/null 2>&1
        done
    fi
    t0=$(now)
    # vmm-run gets SIGTERM at the timeout (it stops the VM and exits 1), SIGKILL 5 s later.
    { eval "timeout -s TERM -k 5 $timeout \"\$vmm\" $args" </dev/null 2>&1; echo $? >"$tmp/case-rc"; } |
        $awk -v t0="$t0" -v name="$name" -v caselog="$CASE_LOG" '
            function since(  l, a) {
                l = ""
                getline l < "/proc/uptime"
                close("/proc/uptime")
                split(l, a, " ")
                return a[1] - t0
            }
            NR == 1 { printf "L1-MARK %s first-output=%.2f\n", name, since() }
            { print; fflush(); print > caselog; fflush(caselog) }
            /L2-INIT/ && !seen { seen = 1; printf "L1-MARK %s l2-init=%.2f\n", name, since(); fflush() }'
    t1=$(now)
    rc=$(cat "$tmp/case-rc" 2>/dev/null || echo 255)
    if [ -n "$DATA" ]; then
        for after in "$DATA"/l1-after.d/*.sh; do
            [ -f "$after" ] && sh "$after" "$name" </dev/null 2>&1
        done
    fi
    rm -f "$CASE_LOG"
    echo "L1-CASE $name rc=$rc $($awk -v a="$t0" -v b="$t1" -v to="$timeout" \
        'BEGIN { printf "wall=%.2f timedout=%d", b - a, (b - a >= to - 0.5) }')"
done <"$runfile"
