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
[ "$fail" = 0 ] && echo "L1-VIRTIO-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
    'BEGIN { printf "%.2f", b - a }')"
exit 0
