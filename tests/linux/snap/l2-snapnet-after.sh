# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# Level-2 step of a snapshot case with a network device (hooks/70-snap.sh), sourced by /init after
# the count, in the restored VM: level 1 still answers pings through the device the snapshot saved
# (its receive buffers handed back to the driver's ring, the tap given again with --net tap=NAME).
#   L2-SNAPNET-AFTER ok | L2-SNAPNET-FAIL ping after: <what>
if ping -c 3 -W 5 10.0.2.1 >/tmp/ping.out 2>&1; then
    echo "L2-SNAPNET-AFTER ok"
else
    echo "L2-SNAPNET-FAIL ping after: $(tr '\n' ' ' </tmp/ping.out)"
fi
