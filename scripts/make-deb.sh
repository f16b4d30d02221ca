#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the Debian packages (libpagewire0, libpagewire-dev, pagewire-tools,
# libfabric-pagewire)
# with dpkg-buildpackage from a copy of this tree (tracked files and new
# ones git does not ignore, so no build directory leaks in) and checks them
# with lintian. Usage: make-deb.sh OUTDIR; the .debs land in OUTDIR.
# Exit: 0 built and lintian printed no E: line, 1 otherwise.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: make-deb.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
ver=$(sed -n '1s/^pagewire (\([^)]*\)).*/\1/p' "$src/debian/changelog")
hdr=$(sed -n 's/^#define PW_VERSION_STRING[[:space:]]*"\(.*\)"/\1/p' "$src/include/pagewire/pagewire.h")
if [ "$ver" != "$hdr" ]; then
	echo "make-deb: debian/changelog says $ver, the header $hdr" >&2
	exit 1
fi
tree="$out/pagewire-$ver"
rm -rf "$tree" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$tree"
cd "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git ls-files -z -c -o --exclude-standard | while IFS= read -r -d '' f; do
		[ -e "$f" ] && printf '%s\0' "$f"
	done | tar --null -T - -cf - | tar -C "$tree" -xf -
else
	tar --exclude='./build*' --exclude=./.git -cf - . | tar -C "$tree" -xf -
fi
cd "$tree"
echo "make-deb: dpkg-buildpackage in $tree (log: $out/build.log)"
if ! dpkg-buildpackage -b -us -uc -j"$(nproc)" >"$out/build.log" 2>&1; then
	tail -40 "$out/build.log" >&2
	echo "make-deb: dpkg-buildpackage failed" >&2
	exit 1
fi
changes=$(ls "$out"/pagewire_"$ver"_*.changes)
ls -1 "$out"/*.deb
echo "make-deb: lintian $changes"
lintian --no-tag-display-limit --info "$changes" | tee "$out/lintian.txt" || true
if grep -q '^E:' "$out/lintian.txt"; then
	echo "make-deb: lintian reported errors" >&2
	exit 1
fi
echo "make-deb: lintian: no errors ($(grep -c '^W:' "$out/lintian.txt" || true) warnings)"
