# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# Level-2 check of the migration case (hooks/80-mig.sh), sourced by /init: mig-mem counts to 40
# (a tick every 0.2 s), rewriting and checking 8 MiB each tick, while level 1 moves the VM from
# one vmm-run to another (mig/l1-mig-before.sh); it ends on the target.
#   L2-MIG-COUNT <i>, L2-MIG-MEM ok ..., or L2-MIG-FAIL <why>   (mig-mem.c)
#   L2-MIG-DONE
# With the virtio modules (hooks/80-mig.sh gives the source --rng): the entropy device is read on
# the source and again on the target, where its interrupts must still come:
#   L2-MIG-RNG before <hex>, L2-MIG-RNG ok <hex>   (or L2-MIG-FAIL rng: <what>)
mig_rng() { timeout 10 head -c 32 /dev/hwrng 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
rng=0
if [ -f /lib/modules/virtio/order ]; then
    while read -r m; do
        [ -n "$m" ] && insmod "/lib/modules/virtio/$m.ko"
    done </lib/modules/virtio/order
    i=0
    while [ ! -e /dev/hwrng ] && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    hex=$(mig_rng)
    if [ "${#hex}" -eq 64 ]; then
        echo "L2-MIG-RNG before $(echo "$hex" | cut -c1-16)"
        rng=1
    else
        echo "L2-MIG-FAIL rng: read ${#hex} hex digits before the migration"
    fi
fi
/bin/mig-mem 40 || echo "L2-MIG-FAIL mig-mem exited $?"
if [ "$rng" = 1 ]; then
    hex=$(mig_rng)
    if [ "${#hex}" -eq 64 ]; then
        echo "L2-MIG-RNG ok $(echo "$hex" | cut -c1-16)"
    else
        echo "L2-MIG-FAIL rng: read ${#hex} hex digits after the migration"
    fi
fi
echo "L2-MIG-DONE"
