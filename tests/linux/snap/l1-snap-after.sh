#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level-1 step after a snapshot case's vmm-run (hooks/70-snap.sh; run by run-cases.sh as
# "sh SCRIPT <case>" after every case, so it does nothing for the others): a case with a disk
# (DATA/snap/<case>.disk) had level 2 write each count to its own sector, before the snapshot in
# the first vmm-run and after it in the restored one; every sector 0 .. 23 must hold its count.
#   L1-SNAP-DISK ok (24 sectors)
#   L1-SNAP-FAIL disk: <why>
name=$1
img=$DATA/snap/$name.disk
[ -f "$img" ] || exit 0
i=0
while [ "$i" -lt 24 ]; do
    got=$(dd if="$img" bs=512 skip="$i" count=1 2>/dev/null | tr -d '\000')
    if [ "$got" != "L2-SNAP-DISK $i" ]; then
        echo "L1-SNAP-FAIL disk: sector $i holds '$got'"
        exit 0
    fi
    i=$((i + 1))
done
echo "L1-SNAP-DISK ok ($i sectors)"
