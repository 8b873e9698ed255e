#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Compares the symbols a built libvmm exports with its version script:
#   check-symbols.sh NM MAP shared  libvmm.so   (nm -D --defined-only)
#   check-symbols.sh NM MAP archive libvmm.a    (nm --defined-only --extern-only)
# Fails naming every symbol exported but not listed, and listed but not
# exported. The map lists one symbol a line ("    name;"), no wildcards.
set -eu
[ $# -eq 4 ] || { echo "usage: $0 NM MAP shared|archive LIBRARY" >&2; exit 2; }
nm=$1 map=$2 kind=$3 lib=$4
export LC_ALL=C
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmm-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);[[:space:]]*$/\1/p' "$map" | sort >"$tmp/listed"
[ -s "$tmp/listed" ] || { echo "$map lists no symbols" >&2; exit 1; }
fail=0
if grep -nE '^[[:space:]]*[^*/[:space:]][^;]*[*?[][^;]*;' "$map"; then
    echo "$map: a wildcard in a symbol name (above): list each symbol" >&2
    fail=1
fi
if uniq -d "$tmp/listed" | grep .; then
    echo "$map: listed twice (above)" >&2
    fail=1
fi
if grep -v '^vmm_' "$tmp/listed"; then
    echo "$map: exported names start with vmm_ (above)" >&2
    fail=1
fi

case $kind in
shared) "$nm" -D --defined-only "$lib" >"$tmp/nm" ;;
archive) "$nm" --defined-only --extern-only "$lib" >"$tmp/nm" ;;
*) echo "$0: shared or archive, not $kind" >&2; exit 2 ;;
esac
# "VALUE TYPE NAME[@@NODE]"; the version nodes themselves show as type A.
awk 'NF == 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/exported"

comm -23 "$tmp/exported" "$tmp/listed" >"$tmp/extra"
comm -13 "$tmp/exported" "$tmp/listed" >"$tmp/missing"
if [ -s "$tmp/extra" ]; then
    echo "$lib exports symbols that $map does not list:" >&2
    sed 's/^/  /' "$tmp/extra" >&2
    fail=1
fi
if [ -s "$tmp/missing" ]; then
    echo "$lib does not export symbols that $map lists:" >&2
    sed 's/^/  /' "$tmp/missing" >&2
    fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "$lib: exports the $(wc -l <"$tmp/listed") symbols $map lists, no others"
