#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Test of run-nested.sh (CTest nested_runner, label nested): one level-1 boot checks that the command
# gets its arguments, environment and working directory intact, output and exit status come back,
# /dev/kvm works inside, and TMPDIR takes FIFOs and O_DIRECT; then the failure paths: a missing QEMU
# (77 with the reason), a level 1 out of time (124), a bad option (2).
# usage: test-runner.sh WORK_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$1
mkdir -p "$work"
fails=0
check() { # check WHAT CONDITION...
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

# Missing prerequisites: 77 and the reason, without starting anything.
out=$(VMM_QEMU=/nonexistent/qemu bash "$here/run-nested.sh" --work "$work" -- true 2>&1)
check "no QEMU: exit 77" [ $? = 77 ]
check "no QEMU: says why" grep -q "qemu-system-x86_64 is not installed" <<<"$out"
bash "$here/run-nested.sh" --bogus -- true >/dev/null 2>&1
check "bad option: exit 2" [ $? = 2 ]

# The happy path, with hostile-looking arguments and environment.
dir="$work/a dir with 'quotes' and \$dollar"
mkdir -p "$dir"
arg1="two  spaces" arg2="it's \"quoted\" \$HOME \`x\`" arg3=$'line1\nline2'
export VMM_TEST_ENV=$'tab\there \'single\' "double" $(not run)'
inner='
    printf "arg1=[%s]\n" "$1"; printf "arg2=[%s]\n" "$2"; printf "arg3=[%s]\n" "$3"
    printf "env=[%s]\n" "$VMM_TEST_ENV"; printf "cwd=[%s]\n" "$PWD"; echo "nested=$VMM_NESTED"
    [ -c /dev/kvm ] && echo kvm=char
    f=$(mktemp -u "$TMPDIR/fifo.XXXXXX") && mkfifo "$f" && echo fifo=ok
    dd if=/dev/zero of="$TMPDIR/direct" bs=4096 count=4 oflag=direct status=none && echo direct=ok
    echo to-stderr >&2
    exit 42'
out=$(cd "$dir" && bash "$here/run-nested.sh" --work "$work" -q --timeout 300 -- \
    sh -c "$inner" sh "$arg1" "$arg2" "$arg3" 2>&1)
rc=$?
if [ "$rc" = 77 ]; then
    echo "$out"
    [ "${VMM_REQUIRE_KVM:-0}" != 1 ] || { echo "FAIL: skipped under VMM_REQUIRE_KVM=1"; exit 1; }
    exit 77
fi
echo "$out" | sed 's/^/  | /'
check "exit status comes back" [ "$rc" = 42 ]
check "argument with spaces" grep -qxF "arg1=[$arg1]" <<<"$out"
check "argument with quotes and \$" grep -qxF "arg2=[$arg2]" <<<"$out"
check "argument with a newline" grep -qzF "arg3=[$arg3]" <<<"$out"
check "environment" grep -qF "env=[$VMM_TEST_ENV]" <<<"$out"
check "working directory" grep -qxF "cwd=[$dir]" <<<"$out"
check "VMM_NESTED=1" grep -qx "nested=1" <<<"$out"
check "/dev/kvm inside" grep -qx "kvm=char" <<<"$out"
check "mkfifo in TMPDIR" grep -qx "fifo=ok" <<<"$out"
check "O_DIRECT in TMPDIR" grep -qx "direct=ok" <<<"$out"
check "stderr comes back" grep -qx "to-stderr" <<<"$out"

# Out of time: QEMU is killed, 124.
bash "$here/run-nested.sh" --work "$work" -q --timeout 2 -- sleep 60 >/dev/null 2>&1
check "time limit: exit 124" [ $? = 124 ]

echo "$((11 + 4 - fails)) passed, $fails failed"
[ "$fails" = 0 ]
