#!/usr/bin/env bash
# The aarch64 label's test: one emulated arm64 level 1 runs libvmm's arm64
# vmm-run on a real (nested) KVM.
#
#   run-aarch64.sh --src DIR --work DIR [--cache DIR] [--timeout S]
#
# 1. cross-builds libvmm for arm64 (cmake/aarch64-linux-gnu.cmake, a static
#    vmm-run) and the freestanding test guests (tests/aarch64/guests);
# 2. fetches Debian's arm64 kernel (linux-image-arm64) and busybox-static
#    with apt-get download (the arm64 architecture added), cached in --cache
#    (default $VMM_AARCH64_CACHE, else ~/.cache/libvmm-aarch64);
# 3. boots level 1: that kernel under qemu-system-aarch64 -M virt with EL2
#    (virtualization=on, GICv3) and -cpu max,pauth=off on TCG (pointer
#    authentication's emulation makes plain max 3-4x slower), KVM built in;
# 4. level 1 runs the test guests (exit status, MMIO dispatch, SMP through
#    PSCI; under the default --seccomp kill, once under log), four refusals
#    (bad --mem, bad --seccomp, not an Image, a kernel too big for its
#    memory) and then boots the same Debian kernel as level 2 with 2 vCPUs
#    (its main thread checked to be filtered), a virtio-blk disk and
#    virtio-rng; level 2's init checks its CPU count, command line, a file
#    on the disk, the rng and a line read from its console (level 1 pipes it
#    into vmm-run's stdin, which feeds the PL011), and powers off through
#    PSCI; vmm-run must exit 0. Then bench_exit_arm64 prints the per-exit
#    cost against a raw-KVM floor (figures, not checked).
# Exit status: 0 all passed, 1 a check failed, 77 cannot run here (reason
# printed), 124 level 1 ran out of time.
set -euo pipefail

src= work= timeout=300
cache=${VMM_AARCH64_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/libvmm-aarch64}
while [ $# -gt 0 ]; do
    case $1 in
    --src) src=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    *) echo "run-aarch64.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$src" ] && [ -n "$work" ] || { echo "usage: run-aarch64.sh --src DIR --work DIR" >&2; exit 2; }
src=$(cd "$src" && pwd)
skip() { echo "aarch64: cannot run here: $*"; exit 77; }
for tool in aarch64-linux-gnu-gcc qemu-system-aarch64 cpio apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || skip "no $tool (see the README's test command)"
done
dpkg --print-foreign-architectures | grep -qx arm64 ||
    skip "the arm64 architecture is not added (dpkg --add-architecture arm64; apt-get update)"
mkdir -p "$work" "$cache"
work=$(cd "$work" && pwd)
t0=$SECONDS

# --- 1. the cross build and the guests -----------------------------------------------------------
sh "$src/cmake/aarch64-deps.sh" "$cache/deps"
build=$work/build-arm64
cmake -S "$src" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
    -DVMM_AARCH64_ROOT="$cache/deps" -DVMM_STATIC_LAUNCHER=ON -DVMM_WERROR=ON \
    -DVMM_BUILD_TESTS=OFF -DVMM_BUILD_BENCH=ON -DVMM_INSTALL=OFF >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target vmm-run bench_exit_arm64 >"$work/build.log" 2>&1 ||
    { tail -50 "$work/build.log"; exit 1; }
gdir=$src/tests/aarch64/guests
mkdir -p "$work/guests"
for g in exit mmio smp; do
    aarch64-linux-gnu-gcc -O2 -ffreestanding -nostdlib -fno-pic -no-pie -mgeneral-regs-only \
        -mstrict-align -fno-stack-protector -Wall -Wextra -Wno-unused-parameter -Werror \
        -T "$gdir/guest.ld" -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
        -o "$work/guests/$g.elf" "$gdir/start.S" "$gdir/$g.c"
    aarch64-linux-gnu-objcopy -O binary "$work/guests/$g.elf" "$work/guests/$g.img"
done
echo "aarch64: cross build and guests ready at $((SECONDS - t0)) s"

# --- 2. Debian's arm64 kernel and busybox (cached) -----------------------------------------------
if [ ! -e "$cache/root/bin/busybox" ] || ! ls "$cache"/root/boot/vmlinuz-* >/dev/null 2>&1; then
    rm -rf "$cache/debs" "$cache/root"
    mkdir -p "$cache/debs"
    kpkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$kpkg" ] || skip "apt knows no linux-image-arm64 (apt-get update?)"
    (cd "$cache/debs" && apt-get -o APT::Sandbox::User=root download "$kpkg" busybox-static:arm64 \
        >/dev/null) || skip "apt-get download of $kpkg and busybox-static:arm64 failed"
    for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$cache/root"; done
fi
kernel=$(ls "$cache"/root/boot/vmlinuz-* | head -1)
kver=${kernel##*/vmlinuz-}
mods=$cache/root/lib/modules/$kver/kernel

# --- 3. level 2's initramfs and disk, level 1's initramfs -----------------------------------------
l2=$work/l2-root l1=$work/l1-root
rm -rf "$l2" "$l1"
mkdir -p "$l2/bin" "$l2/lib/modules" "$l1/bin" "$l1/guests"
cp "$cache/root/bin/busybox" "$l2/bin/busybox"
cp "$cache/root/bin/busybox" "$l1/bin/busybox"
for m in drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko \
    drivers/char/hw_random/virtio-rng.ko; do
    cp "$mods/$m" "$l2/lib/modules/"
done
cat >"$l2/init" <<'L2'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc 2>/dev/null || { mkdir -p /proc && mount -t proc proc /proc; }
mkdir -p /sys /dev /tmp && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
for m in virtio_mmio virtio_blk virtio-rng; do insmod /lib/modules/$m.ko || echo "L2: insmod $m failed"; done
sleep 1
fail=
cpus=$(grep -c ^processor /proc/cpuinfo)
[ "$cpus" = 2 ] || fail="$fail cpus=$cpus"
grep -q 'libvmm_arm64_test=1' /proc/cmdline || fail="$fail cmdline"
if [ -b /dev/vda ]; then
    tar -xf /dev/vda -C /tmp 2>/dev/null
    [ "$(cat /tmp/hello.txt 2>/dev/null)" = "libvmm arm64 disk" ] || fail="$fail disk-file"
else
    fail="$fail no-vda"
fi
ls /sys/bus/amba/drivers/uart-pl011/ 2>/dev/null | grep -q 9000000 || fail="$fail pl011-unbound"
grep -q virtio_rng /sys/class/misc/hw_random/rng_current 2>/dev/null || fail="$fail rng"
head -c 16 /dev/hwrng >/dev/null 2>&1 || fail="$fail rng-read"
# vmm-run feeds its stdin to the PL011: level 1 pipes a line in, once a
# second (bytes sent before the driver opened the port may be gone).
exec 0</dev/console
got=
for i in 1 2 3 4 5 6 7 8 9 10; do
    read -t 5 -r line || continue
    [ "$line" = libvmm-stdin-ok ] && { got=1; break; }
done
[ -n "$got" ] && echo "L2: read '$line' from the PL011" || fail="$fail stdin"
up=$(cut -d' ' -f1 /proc/uptime)
if [ -z "$fail" ]; then echo "L2-RESULT ok cpus=$cpus checked at $up s"; else echo "L2-RESULT fail:$fail"; fi
poweroff -f
L2
chmod +x "$l2/init"
(cd "$l2" && find . | cpio -o -H newc --quiet) >"$l1/l2.cpio"
mkdir -p "$work/disk"
echo "libvmm arm64 disk" >"$work/disk/hello.txt"
tar -cf "$l1/disk.tar" -C "$work/disk" hello.txt
cp "$kernel" "$l1/Image"
cp "$build/examples/vmm-run" "$l1/bin/vmm-run"
cp "$build/bench/bench_exit_arm64" "$l1/bin/bench_exit_arm64"
cp "$work"/guests/*.img "$l1/guests/"
cat >"$l1/init" <<'L1'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
echo "L1: up at $(cut -d' ' -f1 /proc/uptime) s; $(grep -c ^processor /proc/cpuinfo) CPUs; $(dmesg | grep -m1 -E 'VHE mode|Hyp mode' || echo 'no KVM line')"
if [ ! -c /dev/kvm ]; then echo "L1-RESULT nokvm"; poweroff -f; fi
vmm-run --kernel /guests/exit.img; echo "L1-RESULT exit $?"
vmm-run --kernel /guests/mmio.img; echo "L1-RESULT mmio $?"
vmm-run --kernel /guests/smp.img --vcpus 2; echo "L1-RESULT smp $?"
vmm-run --kernel /guests/exit.img --mem 3M; echo "L1-RESULT badmem $?"
vmm-run --kernel /guests/exit.img --seccomp log; echo "L1-RESULT seccomplog $?"
vmm-run --kernel /guests/exit.img --seccomp maybe; echo "L1-RESULT badseccomp $?"
vmm-run --kernel /l2.cpio 2>&1 | head -1; echo "L1-RESULT notimage $?"
vmm-run --kernel /Image --mem 32M; echo "L1-RESULT toobig $?"
start=$(cut -d' ' -f1 /proc/uptime)
(while echo libvmm-stdin-ok; do sleep 1; done) | vmm-run --kernel /Image --initrd /l2.cpio --vcpus 2 --mem 512M --disk /disk.tar --rng \
    --cmdline "console=ttyAMA0 libvmm_arm64_test=1 panic=-1 loglevel=4" &
pid=$!
# The default --seccomp kill: vmm-run's main thread runs the VM filtered.
filtered=0
for i in $(seq 100); do
    grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status 2>/dev/null && { filtered=1; break; }
    [ -d /proc/$pid ] || break
    sleep 0.1
done
wait $pid
echo "L1-RESULT linux $? $start $(cut -d' ' -f1 /proc/uptime)"
echo "L1-RESULT seccomp $filtered"
# Figures only (not checked): per-exit cost against the raw-KVM floor.
bench_exit_arm64 3000 5
poweroff -f
L1
chmod +x "$l1/init"
(cd "$l1" && find . | cpio -o -H newc --quiet) >"$work/l1.cpio"
echo "aarch64: initramfs ready at $((SECONDS - t0)) s"

# --- 4. level 1 ---------------------------------------------------------------------------------
log=$work/console.log
set +e
timeout "$timeout" qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 \
    -cpu max,pauth=off -accel tcg -smp 2 -m 1536 -nographic -no-reboot -nodefaults \
    -serial stdio -kernel "$kernel" -initrd "$work/l1.cpio" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4" </dev/null >"$log" 2>&1
rc=$?
set -e
echo "aarch64: level 1 ended (status $rc) at $((SECONDS - t0)) s"
cat "$log"
[ $rc -ne 124 ] || { echo "aarch64: level 1 ran out of its $timeout s"; exit 124; }

# --- 5. the verdict -----------------------------------------------------------------------------
fails=0
expect() { # name, expected status
    local got
    got=$(tr -d '\r' <"$log" | awk -v n="$1" '$1 == "L1-RESULT" && $2 == n {print $3; exit}')
    if [ "$got" = "$2" ]; then echo "aarch64: PASS $1 (status $got)"
    else echo "aarch64: FAIL $1: status '${got:-none}', expected $2"; fails=$((fails + 1)); fi
}
expect exit 42
expect mmio 0
expect smp 0
expect badmem 2
expect seccomplog 42
expect badseccomp 2
expect notimage 0
expect toobig 2
expect linux 0
expect seccomp 1
if tr -d '\r' <"$log" | grep -q '^L2-RESULT ok'; then echo "aarch64: PASS level 2's checks"
else echo "aarch64: FAIL level 2's checks"; fails=$((fails + 1)); fi
tr -d '\r' <"$log" | grep -q "not an arm64 Image" ||
    { echo "aarch64: FAIL the refusal of a non-Image names why"; fails=$((fails + 1)); }
tr -d '\r' <"$log" | grep -q "kernel and its device tree do not fit in 32 MiB" ||
    { echo "aarch64: FAIL the refusal of a kernel too big names why"; fails=$((fails + 1)); }
line=$(tr -d '\r' <"$log" | awk '$1 == "L1-RESULT" && $2 == "linux" {print $4, $5}')
if [ -n "$line" ]; then
    set -- $line
    echo "aarch64: level 2 boot to power-off took $(awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b - a}') s of level 1's time"
fi
[ $fails -eq 0 ] || exit 1
echo "aarch64: all passed in $((SECONDS - t0)) s"
