#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The README's demo: vmm-run boots the bundled hello guest on 2 vCPUs. On a host whose /dev/kvm
# cannot be opened it says so in one line and runs the same command inside a nested QEMU level 1
# (tests/nested/run-nested.sh; needs qemu-system-x86, linux-image-amd64 and busybox-static).
# usage: run-demo.sh BUILD_DIR
[ $# -eq 1 ] && [ -d "$1" ] || { echo "usage: run-demo.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
set -- "$build/examples/vmm-run" --kernel "$build/tests/guests/hello.elf" --vcpus 2
if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then
    exec "$@"
fi
echo "demo: no usable /dev/kvm here, so vmm-run runs inside a nested QEMU level 1 (tests/nested/run-nested.sh)"
exec bash "$src/tests/nested/run-nested.sh" -q --work "$build/nested" -- "$@"
