# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# The virtio cases' check in level 1 (or on the host in direct mode), after vmm-run has exited: level 1
# is the host of the level-2 VM, so what the guest wrote must be in the disk image file. Installed as
# DATA/l1-after.d/50-virtio.sh by tests/linux/hooks/50-virtio.sh; run-cases.sh runs it after each case
# as "sh 50-virtio.sh CASE" with DATA in the environment. It acts only for a case with DATA/virtio/CASE.
# Markers (a check that fails prints "L1-VIRTIO-FAIL <check>: <what>" instead):
#   L1-VIRTIO-WRITTEN <token>   written.txt of the image, as debugfs reads it
#   L1-VIRTIO-COPY ok           copy.bin of the image has big.bin's SHA-256
#   L1-VIRTIO-FSCK clean        e2fsck -fn finds nothing to fix
#   L1-VIRTIO-RO-UNCHANGED      the read-only disk's image has the SHA-256 it had before the run
#   L1-VIRTIO-EXITS ok: ...     with DATA/virtio/CASE/randread, no exit site of /dev/vda's BARs
#                               took an exit per read (the figures: exits per read)
#   L1-VIRTIO-OK <s>            all of them, and the seconds these checks took
case=$1
d=$DATA/virtio/$case
img=$DATA/$case.vda.img
[ -n "$case" ] && [ -d "$d" ] || exit 0
e2=$DATA/virtio/e2fs
t0=$(cut -d' ' -f1 /proc/uptime)
tmp=${TMPDIR:-/tmp}/l1-virtio.$$
fail=0
e2run() {
    prog=$1
    shift
    "$e2/ld.so" --library-path "$e2/lib" "$e2/$prog" "$@"
}
vfail() {
    echo "L1-VIRTIO-FAIL $*"
    fail=1
}

w=$(e2run debugfs -R 'cat /written.txt' "$img" 2>/dev/null)
if [ "$w" = "$(cat "$d/write-token")" ]; then
    echo "L1-VIRTIO-WRITTEN $w"
else
    vfail "written: debugfs read '$w' from written.txt"
fi

rm -f "$tmp.copy"
e2run debugfs -R "dump /copy.bin $tmp.copy" "$img" >/dev/null 2>&1
sha=$(sha256sum "$tmp.copy" 2>/dev/null | cut -d' ' -f1)
if [ -n "$sha" ] && [ "$sha" = "$(cat "$d/big.sha256")" ]; then
    echo "L1-VIRTIO-COPY ok"
else
    vfail "copy: copy.bin has SHA-256 '$sha', expected $(cat "$d/big.sha256")"
fi
rm -f "$tmp.copy"

if e2run e2fsck -fn "$img" >"$tmp.fsck" 2>&1; then
    echo "L1-VIRTIO-FSCK clean"
else
    vfail "fsck: e2fsck -fn exit status $?"
    sed 's/^/L1-VIRTIO-FSCK-LOG /' "$tmp.fsck" | head -n 30
fi
rm -f "$tmp.fsck"

sha=$(sha256sum "$DATA/virtio-ro.img" | cut -d' ' -f1)
if [ "$sha" = "$(cat "$DATA/virtio/ro.sha256")" ]; then
    echo "L1-VIRTIO-RO-UNCHANGED"
else
    vfail "read-only disk: the image changed (SHA-256 $sha)"
fi
# The random-read workload (DATA/virtio/CASE/randread: N reads): with ioeventfd notifies and irqfd
# (MSI-X) interrupts, no read may cost an exit to vmm-run. Its --stats profile (in CASE_LOG) lists
# the busiest exit sites: a notify or interrupt-status access per read would put a site with N or
# more exits inside /dev/vda's BARs (which level 2 printed). Those BARs' listed exits (the driver's
# setup) per read, the bound with the unlisted ones ("other sites") and the total, for the record.
if [ -f "$d/randread" ] && [ -n "${CASE_LOG:-}" ]; then
    n=$(cat "$d/randread")
    bars=$(sed -n 's/.*L2-RANDREAD-BARS \([0-9a-fx -]*\).*/\1/p' "$CASE_LOG" | head -n1)
    total=$(sed -n 's/.*stats: \([0-9]*\) exits to vmm-run.*/\1/p' "$CASE_LOG" | head -n1)
    other=$(awk '$1 == "other" && $2 == "sites" { print $3 }' "$CASE_LOG" | head -n1)
    dev=0 top=0
    # shellcheck disable=SC2034 # ms and us: the columns after the count
    while read -r kind addr count ms us; do
        case "$kind" in in | out | mmio-rd | mmio-wr) ;; *) continue ;; esac
        case "$addr" in 0x*) ;; *) continue ;; esac
        for bar in $bars; do
            if [ $((addr)) -ge $((${bar%-*})) ] && [ $((addr)) -le $((${bar#*-})) ]; then
                dev=$((dev + count))
                [ "$count" -gt "$top" ] && top=$count
            fi
        done
    done <"$CASE_LOG"
    if [ -z "$bars" ] || [ -z "$total" ]; then
        vfail "exits: no BARs from level 2 ('$bars') or no --stats profile ('$total')"
    elif [ "$top" -ge "$n" ]; then
        vfail "exits: a site in /dev/vda's BARs has $top exits for $n reads"
    else
        other=${other:-0}
        echo "L1-VIRTIO-EXITS ok: $n reads; exits to vmm-run at /dev/vda's BARs: $dev listed" \
            "($(awk -v a="$dev" -v n="$n" 'BEGIN { printf "%.3f", a / n }') a read)," \
            "at most $((dev + other)) with the unlisted sites" \
            "($(awk -v a="$((dev + other))" -v n="$n" 'BEGIN { printf "%.3f", a / n }') a read);" \
            "$total in the whole run (boot, console)"
    fi
fi
[ "$fail" = 0 ] && echo "L1-VIRTIO-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
    'BEGIN { printf "%.2f", b - a }')"
exit 0
