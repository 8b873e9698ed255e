#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level 2's /init (busybox sh), inside the libvmm guest: print what the launcher handed the kernel,
# run the hooks' checks, power off. Markers:
#   L2-INIT uptime=<s>         first thing /init does (level 1 times vmm-run up to this line)
#   L2-CPUS <n> online=<list>  online CPUs
#   L2-CMDLINE <cmdline>       /proc/cmdline
#   L2-FILE <token>            /etc/libvmm-l2-file, a token written at test time
#   L2-RUNINIT <line>          the kernel's "Run /init" line from dmesg (printk time)
#   ... lines from /etc/l2-init.d/*.sh (hooks) ...
#   L2-DONE
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
echo "L2-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
mount -t sysfs sysfs /sys

online=$(cat /sys/devices/system/cpu/online 2>/dev/null)
ncpus=$(echo "$online" | awk -F, '{
    n = 0
    for (i = 1; i <= NF; i++) {
        if (split($i, r, "-") == 2) n += r[2] - r[1] + 1
        else if ($i != "") n++
    }
    print n }')
echo "L2-CPUS $ncpus online=$online nproc=$(nproc)"
echo "L2-CMDLINE $(cat /proc/cmdline)"
echo "L2-FILE $(cat /etc/libvmm-l2-file 2>/dev/null || echo MISSING)"
echo "L2-RUNINIT $(dmesg | grep -m1 'Run /init')"

# For the hooks: wait until PATH exists, up to TENTHS tenths of a second (default 100); 1 if it
# never did.
l2_wait_for() { # PATH [TENTHS]
    _w=0
    while [ ! -e "$1" ] && [ "$_w" -lt "${2:-100}" ]; do
        sleep 0.1
        _w=$((_w + 1))
    done
    [ -e "$1" ]
}

for hook in /etc/l2-init.d/*.sh; do
    # shellcheck disable=SC1090
    [ -f "$hook" ] && . "$hook"
done
echo "L2-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
# libvmm.reboot on the command line: end by rebooting instead (vmm-run ends on either).
case " $(cat /proc/cmdline) " in
*" libvmm.reboot "*) reboot -f ;;
esac
poweroff -f
