#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make deb` as a test: builds the four packages with dpkg-buildpackage,
# lintian must print no E: line (scripts/make-deb.sh checks), each package
# holds what it should, and the tools run from the unpacked packages.
# (Installing with dpkg -i is left to the user: a test does not change the
# machine's package database.)
set -euo pipefail
src=${1:?usage: deb.sh SOURCE_DIR WORK_DIR}
work=${2:?}
fail() { echo "deb: FAIL: $*" >&2; exit 1; }
for t in dpkg-buildpackage dh lintian; do
	command -v $t >/dev/null || { echo "deb: SKIP: $t not found (make deb installs dpkg-dev, debhelper, lintian)"; exit 77; }
done
bash "$src/scripts/make-deb.sh" "$work"
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has() {	# package path...
	local deb=$(ls "$work"/$1_*.deb) p; shift
	dpkg-deb -c "$deb" | awk '{print $6}' > "$work/contents"
	for p in "$@"; do grep -qx "./$p" "$work/contents" || fail "$(basename "$deb") lacks $p"; done
}
has libpagewire0 usr/lib/$ma/libpagewire.so.0 usr/lib/$ma/libpagewire.so.0.1.0
has libpagewire-dev usr/include/pagewire/pagewire.h usr/lib/$ma/libpagewire.so usr/lib/$ma/libpagewire.a \
	usr/lib/$ma/pkgconfig/pagewire.pc usr/lib/$ma/cmake/pagewire/pagewireConfig.cmake \
	usr/share/man/man3/pw_reg_mr.3.gz usr/share/man/man7/pagewire.7.gz
has pagewire-tools usr/bin/pagewire-perf usr/bin/pagewire-demo usr/share/man/man1/pagewire-perf.1.gz
has libfabric-pagewire usr/lib/$ma/libfabric/libpagewire-fi.so
rm -rf "$work/root"
for d in "$work"/*.deb; do dpkg-deb -x "$d" "$work/root"; done
v=$(LD_LIBRARY_PATH=$work/root/usr/lib/$ma "$work/root/usr/bin/pagewire-perf" --version)
echo "from the packages: $v"
case "$v" in pagewire-perf\ [0-9]*) ;; *) fail "pagewire-perf --version printed '$v'" ;; esac
dpkg-deb -f "$(ls "$work"/pagewire-tools_*.deb)" Depends | grep -q libpagewire0 ||
	fail "pagewire-tools does not depend on libpagewire0"
dpkg-deb -f "$(ls "$work"/libfabric-pagewire_*.deb)" Depends | grep -q libpagewire0 ||
	fail "libfabric-pagewire does not depend on libpagewire0"
# the provider as packaged: libfabric loads it and offers FI_EP_MSG
if command -v fi_info >/dev/null; then
	FI_PROVIDER_PATH=$work/root/usr/lib/$ma/libfabric LD_LIBRARY_PATH=$work/root/usr/lib/$ma \
		fi_info -p pagewire -t FI_EP_MSG >"$work/fi_info.txt" 2>&1 ||
		fail "fi_info -p pagewire with the packaged provider: $(head -3 "$work/fi_info.txt")"
	grep -q "provider: pagewire" "$work/fi_info.txt" ||
		fail "fi_info does not list the packaged provider"
else
	echo "deb: fi_info not found (libfabric-bin): the packaged provider was not loaded"
fi
echo "deb: PASS"
