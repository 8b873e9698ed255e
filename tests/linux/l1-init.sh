#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level 1's /init (busybox sh), inside QEMU: load KVM, run the level-2 cases, power off.
# Markers: L1-INIT, L1-KVM ok|missing, the cases' markers (run-cases.sh), L1-DONE.
export PATH=/bin
# The initramfs holds no device nodes: without /dev/console the kernel started us with no
# stdin/stdout, so take the console from devtmpfs.
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "L1-INIT uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/modules/$mod.ko" || echo "L1-INSMOD-FAIL $mod"
done </modules/order

if [ -c /dev/kvm ]; then
    echo "L1-KVM ok uptime=$(cut -d' ' -f1 /proc/uptime)"
    TMPDIR=/tmp sh /run-cases.sh /cases.run /vmm/vmm-run /data
else
    echo "L1-KVM missing"
    grep -c svm /proc/cpuinfo | sed 's/^/L1-SVM-FLAGS /'
fi
echo "L1-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
