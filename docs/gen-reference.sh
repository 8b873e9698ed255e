#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# libvmm's API reference, generated from the public headers: every VMM_API
# declaration in include/vmm/ with the contract comment above it (or, for a
# one-line declaration, beside it). Declarations that follow one comment with
# no blank line between them share it (vmm_vm_pause and vmm_vm_resume).
# POSIX sh and awk only, so the reference needs nothing the build lacks.
#
#   sh docs/gen-reference.sh               rewrite docs/reference.md
#   sh docs/gen-reference.sh --check       fail (exit 1) when a public function
#                                          has no contract comment, a header is
#                                          not in vmm.h, or docs/reference.md
#                                          is not what the headers give now
#   sh docs/gen-reference.sh --man DIR [VERSION]
#                                          write DIR/man3: a page per function
#                                          (functions sharing a comment share a
#                                          page through .so links) and libvmm.3
set -eu
LC_ALL=C
export LC_ALL

# Paths relative to the source root, so messages and pages name
# include/vmm/x.h wherever the tree is.
root=$(cd "$(dirname "$0")/.." && pwd)
inc=include/vmm
ref=docs/reference.md
awk_prog=docs/gen-reference.awk

usage() {
    echo "usage: $0 [--check | --man DIR [VERSION]]" >&2
    exit 2
}

# The headers vmm.h includes, in its order, on one line.
umbrella() {
    sed -n 's|^#include <vmm/\([A-Za-z0-9_]*\.h\)>.*|\1|p' "$inc/vmm.h" | tr '\n' ' '
}

# The headers in the order vmm.h includes them, then any it does not include
# (which --check refuses). version.h is generated from version.h.in.
headers() {
    umbrella=$(umbrella)
    for h in $umbrella; do
        if [ -f "$inc/$h" ]; then
            echo "$inc/$h"
        elif [ -f "$inc/$h.in" ]; then
            echo "$inc/$h.in"
        fi
    done
    for f in "$inc"/*.h "$inc"/*.h.in; do
        [ -f "$f" ] || continue
        h=${f##*/}
        h=${h%.in}
        [ "$h" = vmm.h ] && continue
        case " $umbrella " in
        *" $h "*) ;;
        *) echo "$f" ;;
        esac
    done
}

# gen MODE [ARGS]: run the extractor on every header; exit 3 when it found a
# problem (listed on stderr; the output is still complete).
gen() {
    mode=$1
    outdir=${2:-}
    version=${3:-}
    # shellcheck disable=SC2046 # header paths have no spaces
    awk -v mode="$mode" -v outdir="$outdir" -v version="$version" -v umbrella=" $(umbrella)" \
        -f "$awk_prog" $(headers)
}

cd "$root"
case ${1:-} in
"")
    [ $# -eq 0 ] || usage
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    status=0
    gen md >"$tmp" || status=$?
    [ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
    cp "$tmp" "$ref"
    echo "wrote $ref"
    exit "$status"
    ;;
--check)
    [ $# -eq 1 ] || usage
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    status=0
    gen md >"$tmp" || status=$?
    if ! diff -u "$ref" "$tmp" >&2; then
        echo "docs/reference.md is out of date: run sh docs/gen-reference.sh and commit it" >&2
        status=1
    fi
    [ "$status" -eq 0 ] || exit 1
    ;;
--man)
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then
        usage
    fi
    mkdir -p "$2/man3"
    out=$(cd "$2/man3" && pwd)
    rm -f "$out"/*.3
    # A missing comment is the --check test's to report; the pages are made.
    status=0
    gen man "$out" "${3:-}" || status=$?
    [ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
    ;;
*)
    usage
    ;;
esac
