# shellcheck shell=sh
# SPDX-License-Identifier: Apache-2.0
# Level-2 check of the migration case (hooks/80-mig.sh), sourced by /init: mig-mem counts to 40
# (a tick every 0.2 s), rewriting and checking 8 MiB each tick, while level 1 moves the VM from
# one vmm-run to another (mig/l1-mig-before.sh); it ends on the target.
#   L2-MIG-COUNT <i>, L2-MIG-MEM ok ..., or L2-MIG-FAIL <why>   (mig-mem.c)
#   L2-MIG-DONE
/bin/mig-mem 40 || echo "L2-MIG-FAIL mig-mem exited $?"
echo "L2-MIG-DONE"
