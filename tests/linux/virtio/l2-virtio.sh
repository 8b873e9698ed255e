# shellcheck shell=sh disable=SC3043 # busybox sh has local
# SPDX-License-Identifier: Apache-2.0
# The virtio cases' check in level 2 (busybox sh), installed as /etc/l2-init.d/50-virtio.sh by
# tests/linux/hooks/50-virtio.sh and sourced by /init before L2-DONE. It acts only in a case that has
# /etc/libvmm-virtio/<case> (libvmm.case=<case> on the command line). The devices, as cases.txt gives
# them to vmm-run: a virtio console, a virtio entropy device, disk 1 (ext4, read-write) and disk 2
# (ext4, read-only), all virtio-mmio devices the guest finds in the ACPI DSDT (LNRO0005), or with
# the transport pci ($dir/transport) virtio-pci functions (vendor 0x1af4) on the PCI host bridge the
# DSDT describes, each interrupting through MSI-X.
# Markers (a step that fails prints "L2-VIRTIO-FAIL <step>: <what>" instead):
#   L2-VIRTIO-MODULES <n> loaded          the modules of /lib/modules/virtio/order, in that order
#   L2-VIRTIO-DEVICES platform=<n> virtio=<n> ids=<sorted device IDs> (pci=<n> with PCI)
#   L2-VIRTIO-MSIX <n> vectors            PCI only: the virtio vectors in /proc/interrupts that are
#                                         PCI-MSI(X) ones, at least one per device, and some fired
#   L2-VIRTIO-BLK vda cache=<..> serial=<..> vdb ...   what the driver found (for the log only)
#   L2-VIRTIO-READ <token>                hello.txt of /dev/vda (the token only the disk image has)
#   L2-VIRTIO-BIG ok                      big.bin of /dev/vda has the SHA-256 the hook recorded
#   L2-VIRTIO-WROTE <token>               written.txt (this token) and copy.bin (of big.bin) written to
#                                         /dev/vda, synced and unmounted
#   L2-VIRTIO-RO-READ <token>             ro.txt of /dev/vdb
#   L2-VIRTIO-RO refused                  /dev/vdb is read-only: blockdev --getro says 1, a write to
#                                         the device fails, a read-write mount fails or ends read-only,
#                                         and writing a file there fails
#   L2-HVC hello <token>                  written to /dev/hvc0: only vmm-run's virtio console shows it
#   L2-HWRNG <hex>                        32 bytes read from /dev/hwrng (not all zeros)
#   L2-RANDREAD-BARS <start>-<end> ...    with vmm-run --stats ($dir/randread: N), /dev/vda's BARs,
#   L2-RANDREAD <N> reads of 4 KiB ...    then N random 4 KiB O_DIRECT reads of it (randread.c)
#   L2-VIRTIO-IRQS <name>=<count> ...     the virtio interrupts of /proc/interrupts
#   L2-VIRTIO-OK <s>                      every step passed, and the seconds the steps took
l2_virtio() {
    local case dir fail=0 m n v want nwant got f i tok sha hex opts t0 transport t lvl

    case=$(sed -n 's/.*libvmm\.case=\([^ ]*\).*/\1/p' /proc/cmdline)
    dir=/etc/libvmm-virtio/$case
    [ -n "$case" ] && [ -d "$dir" ] || return 0
    t0=$(cut -d' ' -f1 /proc/uptime)
    # The kernel's console messages (ext4's mounts) would land inside the markers' lines on the
    # same console ("L2-VIRTIO-RO-REA[ 13.08] EXT4-fs ..."): only emergencies while the steps run.
    read -r lvl _ </proc/sys/kernel/printk
    echo 1 >/proc/sys/kernel/printk
    vfail() {
        echo "L2-VIRTIO-FAIL $*"
        fail=1
    }
    # wait_for PATH: up to 10 s for a device node or sysfs entry the kernel adds.
    wait_for() {
        i=0
        while [ ! -e "$1" ] && [ "$i" -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        [ -e "$1" ]
    }

    n=0
    while read -r m; do
        [ -n "$m" ] || continue
        if insmod "/lib/modules/virtio/$m.ko"; then
            n=$((n + 1))
        else
            vfail "insmod: $m"
        fi
    done </lib/modules/virtio/order
    echo "L2-VIRTIO-MODULES $n loaded ($(tr '\n' ' ' </lib/modules/virtio/order))"

    # The devices: one platform device per DSDT entry, one virtio device per platform device.
    want=$(cat "$dir/ids")
    nwant=$(echo "$want" | wc -w)
    wait_for "/sys/bus/virtio/devices/virtio$((nwant - 1))" || true
    n=0 v=0
    transport=$(cat "$dir/transport" 2>/dev/null || echo mmio)
    if [ "$transport" = pci ]; then
        for f in /sys/bus/pci/devices/*; do
            [ "$(cat "$f/vendor" 2>/dev/null)" = 0x1af4 ] && n=$((n + 1))
        done
    else
        for f in /sys/bus/platform/devices/LNRO0005:*; do [ -e "$f" ] && n=$((n + 1)); done
    fi
    for f in /sys/bus/virtio/devices/*; do [ -e "$f" ] && v=$((v + 1)); done
    got=$(cat /sys/bus/virtio/devices/*/device 2>/dev/null | sed 's/^0x0*//' | sort -n |
        tr '\n' ' ' | sed 's/ $//')
    echo "L2-VIRTIO-DEVICES $transport=$n virtio=$v ids=$got"
    [ "$n" -eq "$nwant" ] || vfail "devices: $n $transport virtio devices, expected $nwant"
    [ "$got" = "$want" ] || vfail "devices: virtio device IDs '$got', expected '$want'"
    for f in /sys/bus/virtio/devices/*; do
        [ -e "$f/driver" ] || vfail "devices: ${f##*/} (ID $(cat "$f/device")) has no driver"
    done

    # Disk 1, read-write: read what the host put there, write a file and a copy of big.bin.
    mkdir -p /mnt/vda /mnt/vdb
    if ! wait_for /dev/vda || ! wait_for /dev/vdb; then
        vfail "disks: no /dev/vda or /dev/vdb (in /sys/block: $(echo /sys/block/*))"
    elif [ "$(cat /sys/block/vda/ro)" != 0 ] || [ "$(cat /sys/block/vdb/ro)" != 1 ]; then
        vfail "disks: vda ro=$(cat /sys/block/vda/ro), vdb ro=$(cat /sys/block/vdb/ro); expected 0 and 1"
    fi
    f=""
    for i in /sys/block/vd*; do
        [ -e "$i" ] || continue
        f="$f ${i##*/} cache=$(sed 's/ /-/' "$i/queue/write_cache") serial=$(cat "$i/serial" 2>&1)"
    done
    echo "L2-VIRTIO-BLK$f"
    if [ -e /dev/vda ] && mount -t ext4 /dev/vda /mnt/vda; then
        echo "L2-VIRTIO-READ $(cat /mnt/vda/hello.txt)"
        sha=$(sha256sum /mnt/vda/big.bin | cut -d' ' -f1)
        if [ "$sha" = "$(cat "$dir/big.sha256")" ]; then
            echo "L2-VIRTIO-BIG ok"
        else
            vfail "read: big.bin has SHA-256 $sha, expected $(cat "$dir/big.sha256")"
        fi
        tok=$(cat "$dir/write-token")
        if echo "$tok" >/mnt/vda/written.txt && cp /mnt/vda/big.bin /mnt/vda/copy.bin && sync &&
            umount /mnt/vda; then
            echo "L2-VIRTIO-WROTE $tok"
        else
            vfail "write: writing written.txt and copy.bin to /dev/vda, sync or umount failed"
            umount /mnt/vda 2>/dev/null
        fi
    else
        vfail "read: cannot mount /dev/vda (ext4)"
    fi

    # Disk 2, read-only: every way to write must fail.
    if [ -e /dev/vdb ]; then
        f=""
        [ "$(blockdev --getro /dev/vdb)" = 1 ] || f="$f blockdev--getro=$(blockdev --getro /dev/vdb)"
        if dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=notrunc,fsync 2>/dev/null; then
            f="$f device-write-succeeded"
        fi
        # busybox mount retries read-only when the kernel refuses read-write (EACCES/EROFS).
        if mount -t ext4 -o rw /dev/vdb /mnt/vdb 2>/dev/null || mount -t ext4 -o ro /dev/vdb /mnt/vdb; then
            opts=$(awk '$2 == "/mnt/vdb" { print $4 }' /proc/mounts)
            case "$opts" in ro*) ;; *) f="$f mounted-$opts" ;; esac
            echo "L2-VIRTIO-RO-READ $(cat /mnt/vdb/ro.txt)"
            if echo x 2>/dev/null >/mnt/vdb/new.txt; then
                f="$f file-write-succeeded"
            fi
            umount /mnt/vdb || f="$f umount"
        else
            f="$f cannot-mount"
        fi
        if [ -z "$f" ]; then
            echo "L2-VIRTIO-RO refused"
        else
            vfail "read-only disk:$f"
        fi
    fi

    # The virtio console: this line reaches vmm-run's stdout only through the device.
    if wait_for /dev/hvc0; then
        if echo "L2-HVC hello $(cat "$dir/hvc-token")" >/dev/hvc0; then
            echo "L2-VIRTIO-HVC written"
        else
            vfail "console: cannot write /dev/hvc0"
        fi
    else
        vfail "console: no /dev/hvc0"
    fi

    # The entropy device, through the hw_random core.
    if wait_for /dev/hwrng; then
        hex=$(timeout 10 head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \n')
        echo "L2-HWRNG $hex rng_current=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
        if [ "${#hex}" -ne 64 ]; then
            vfail "hwrng: read ${#hex} hex digits, expected 64"
        elif [ -z "$(echo "$hex" | tr -d 0)" ]; then
            vfail "hwrng: all zeros"
        fi
    else
        vfail "hwrng: no /dev/hwrng"
    fi

    # The random-read workload (a case with vmm-run --stats): the BARs of /dev/vda's PCI function,
    # where level 1 looks for the exits the reads caused in vmm-run's exit profile, then the reads.
    if [ -f "$dir/randread" ] && [ "$transport" = pci ] && [ -e /dev/vda ]; then
        f=$(readlink -f /sys/block/vda/device)/..
        echo "L2-RANDREAD-BARS $(awk '$1 !~ /^0x0+$/ { printf "%s-%s ", $1, $2 }' "$f/resource")"
        /bin/randread /dev/vda "$(cat "$dir/randread")" || fail=1
    fi

    echo "L2-VIRTIO-IRQS $(awk '/virtio/ { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i
        printf "%s=%d ", $NF, s }' /proc/interrupts)"
    if [ "$transport" = pci ]; then
        # Each vector a line "N: counts... PCI-MSI(X)-... virtioK-<what>"; every device has some,
        # and the queues the steps above used raised them.
        m=$(grep -c 'PCI-MSI.*virtio' /proc/interrupts || true)
        t=$(awk '/PCI-MSI.*virtio/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i }
            END { print s + 0 }' /proc/interrupts)
        echo "L2-VIRTIO-MSIX $m vectors, $t interrupts"
        if [ "$m" -lt "$nwant" ] || [ "$t" -eq 0 ]; then
            vfail "msix: $m virtio MSI-X vectors with $t interrupts (want $nwant or more, some raised)"
        fi
    fi
    [ "$fail" = 0 ] && echo "L2-VIRTIO-OK $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" \
        'BEGIN { printf "%.2f", b - a }')"
    echo "$lvl" >/proc/sys/kernel/printk
    unset -f vfail wait_for
}
l2_virtio
unset -f l2_virtio
