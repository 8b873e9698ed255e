#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Level 1's /init for run-nested.sh (busybox sh, inside QEMU): load the modules, chroot into the
# host's root (virtio-9p tag "host") with fresh /proc, /sys, /dev, /run, run the session's cmd.sh
# (tag "session") with its output in the session's "out", write its exit status to "rc", power off.
# Markers on the console: NESTED-L1 up|ready|done, NESTED-L1-FAIL <why>.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
uptime() { cut -d' ' -f1 /proc/uptime; }
fail() {
    echo "NESTED-L1-FAIL $*"
    poweroff -f
    exit 1
}
echo "NESTED-L1 up uptime=$(uptime) kernel=$(uname -r)"

while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/modules/$mod.ko" || echo "NESTED-L1 insmod $mod failed"
done </modules/order
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm-amd ($(grep -c svm /proc/cpuinfo) CPUs with svm)"

p9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$p9" host /host || fail "cannot mount the host's root (9p tag host)"
h=/host
mount -t proc proc $h/proc || fail "cannot mount /proc in the chroot"
mount -t sysfs sysfs $h/sys || fail "cannot mount /sys in the chroot"
mount -t devtmpfs devtmpfs $h/dev || fail "cannot mount /dev in the chroot"
mkdir -p $h/dev/pts $h/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $h/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $h/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $h/run || fail "cannot mount /run in the chroot"
n=$h/run/libvmm-nested
mkdir -p $n/session $n/tmp
mount -t 9p -o "$p9" session $n/session || fail "cannot mount the session folder (9p tag session)"
if [ -b /dev/vda ]; then
    mount -t ext4 /dev/vda $n/tmp || fail "cannot mount the scratch disk"
else
    mount -t tmpfs tmpfs $n/tmp
fi
chmod 1777 $n/tmp
ip link set lo up 2>/dev/null
echo "NESTED-L1 ready uptime=$(uptime)"

chroot $h /bin/sh /run/libvmm-nested/session/cmd.sh </dev/null >$n/session/out 2>&1
rc=$?
echo "$rc" >$n/session/rc
sync
echo "NESTED-L1 done rc=$rc uptime=$(uptime)"
poweroff -f
