#!/bin/sh
# Unpack the arm64 libraries that cannot be installed beside their amd64
# -dev package into DIR (Debian 12's libfdt-dev is not Multi-Arch: same, so
# installing libfdt-dev:arm64 would remove the host's libfdt-dev). The
# cross build finds them through -DVMM_AARCH64_ROOT=DIR
# (cmake/aarch64-linux-gnu.cmake); the headers are the host's (the same
# version, architecture-neutral). Needs `dpkg --add-architecture arm64` and
# an apt-get update. Does nothing when DIR already holds them.
set -eu
dir=${1:?usage: aarch64-deps.sh DIR}
lib=$dir/usr/lib/aarch64-linux-gnu
[ -e "$lib/libfdt.a" ] && exit 0
mkdir -p "$dir/debs"
cd "$dir/debs"
# apt's sandbox user may not write here: download as the caller.
apt-get -o APT::Sandbox::User=root download libfdt-dev:arm64 libfdt1:arm64 >/dev/null
for d in ./*.deb; do dpkg-deb -x "$d" "$dir"; done
[ -e "$lib/libfdt.a" ] || { echo "aarch64-deps: no libfdt.a for arm64 in $dir" >&2; exit 1; }
