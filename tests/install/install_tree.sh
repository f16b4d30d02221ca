#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build into DESTDIR=$WORK/destdir with prefix /usr, as a
# package or `make install PREFIX=/usr DESTDIR=...` would, and uses it as a
# user does: the examples built through pkg-config (PKG_CONFIG_SYSROOT_DIR)
# and through find_package(pagewire CONFIG), then run against the installed
# libpagewire.so.0; the tools' --version and man pages from the tree; then
# the manifest-driven uninstall leaves nothing behind.
set -euo pipefail
build=${1:?usage: install_tree.sh BUILD_DIR SOURCE_DIR WORK_DIR}
src=${2:?}
work=${3:?}
# the prefix the build was configured with: pagewire.pc and the CMake
# package carry it (make install PREFIX=/usr configures a build with /usr)
P=${4:-/usr/local}
fail() { echo "install: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
for t in pkg-config cc make cmake man; do
	command -v $t >/dev/null || { echo "install: SKIP: $t not found"; exit 77; }
done

rm -rf "$work"
mkdir -p "$work"
D=$work/destdir
# cmake --install rewrites the build's install_manifest.txt: keep the one of
# a real `make install`, so `make uninstall` still removes that.
manifest=$build/install_manifest.txt
[ -f "$manifest" ] && cp "$manifest" "$work/saved_manifest"
restore() { if [ -f "$work/saved_manifest" ]; then cp "$work/saved_manifest" "$manifest"; else rm -f "$manifest"; fi; }
trap restore EXIT

step "cmake --install (DESTDIR=$D, prefix $P)"
DESTDIR=$D cmake --install "$build" --prefix "$P" > "$work/install.log"
cp "$manifest" "$work/manifest"
# lib/ or lib/<multiarch>/: GNUInstallDirs chose it when the build was
# configured (multiarch only for a build configured with prefix /usr)
so=$(find "$D$P" -name libpagewire.so.0 | head -1)
[ -n "$so" ] || fail "no libpagewire.so.0 installed under $D$P"
libdir=$(dirname "${so#$D}")
for f in $libdir/libpagewire.so.0 $libdir/libpagewire.so $libdir/libpagewire.a \
	 $libdir/pkgconfig/pagewire.pc $libdir/cmake/pagewire/pagewireConfig.cmake \
	 $libdir/cmake/pagewire/pagewireConfigVersion.cmake \
	 $P/include/pagewire/pagewire.h $P/bin/pagewire-perf $P/bin/pagewire-demo \
	 $P/share/man/man7/pagewire.7 $P/share/man/man1/pagewire-perf.1 \
	 $P/share/man/man1/pagewire-demo.1 $P/share/man/man3/pw_reg_mr.3 \
	 $P/share/man/man3/pw_dereg_mr.3 $P/share/man/man3/pw_post_send.3 \
	 $P/share/doc/pagewire/LICENSE $P/share/doc/pagewire/README.md \
	 $P/share/doc/pagewire/CHANGELOG.md $P/share/doc/pagewire/examples/rc_pingpong.c; do
	[ -e "$D$f" ] || fail "not installed: $f"
done
real=$(readlink -f "$D$libdir/libpagewire.so.0")
echo "installed $(wc -l < "$work/manifest") files; libpagewire.so.0 -> $(basename "$real")"
bash "$src/tests/install/abi.sh" "$D$libdir/libpagewire.so.0" "$src"
# every section-3 page the header's functions need, link pages included
for fn in $(python3 "$src/scripts/public-symbols.py" "$src/include/pagewire/pagewire.h"); do
	[ -e "$D$P/share/man/man3/$fn.3" ] || fail "no man page for $fn"
done
step "man pages render from the installed tree"
for p in pagewire.7 pw_dereg_mr.3 pagewire-perf.1; do
	out=$(MANPATH=$D$P/share/man MANWIDTH=80 man --warnings -P cat "${p%.*}" 2>&1 >/dev/null) ||
		fail "man ${p%.*} failed: $out"
	[ -z "$out" ] || fail "man --warnings ${p%.*}: $out"
done

export LD_LIBRARY_PATH=$D$libdir
step "tools from the tree"
v=$("$D$P/bin/pagewire-perf" --version)
[ "$v" = "pagewire-perf $(sed -n 's/^#define PW_VERSION_STRING[[:space:]]*"\(.*\)"/\1/p' "$src/include/pagewire/pagewire.h")" ] ||
	fail "pagewire-perf --version printed '$v'"
echo "$v; $("$D$P/bin/pagewire-demo" --version)"
ldd "$D$P/bin/pagewire-perf" | grep -q "libpagewire.so.0 => $D" ||
	fail "pagewire-perf does not load the installed libpagewire.so.0: $(ldd "$D$P/bin/pagewire-perf" | grep pagewire)"

step "examples through pkg-config"
cp -r "$D$P/share/doc/pagewire/examples" "$work/pc"
export PKG_CONFIG_SYSROOT_DIR=$D PKG_CONFIG_LIBDIR=$D$libdir/pkgconfig
echo "pkg-config --cflags --libs pagewire: $(pkg-config --cflags --libs pagewire)"
make -C "$work/pc" CFLAGS="-O2 -Wall -Wextra -Werror" > "$work/pc.log" 2>&1 || { cat "$work/pc.log"; fail "examples did not build with pkg-config"; }
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR

step "examples through find_package(pagewire)"
cmake -S "$work/pc" -B "$work/cm" -DCMAKE_PREFIX_PATH="$D$P" -DCMAKE_C_FLAGS="-Wall -Werror" > "$work/cm.log" 2>&1 &&
	cmake --build "$work/cm" >> "$work/cm.log" 2>&1 || { cat "$work/cm.log"; fail "examples did not build with find_package"; }
step "static linking through pagewire::pagewire_static"
cmake -S "$src/tests/install/consumer" -B "$work/st" -DCMAKE_PREFIX_PATH="$D$P" \
	-DEXAMPLES="$work/pc" > "$work/st.log" 2>&1 &&
	cmake --build "$work/st" >> "$work/st.log" 2>&1 || { cat "$work/st.log"; fail "static consumer did not build"; }
if readelf -d "$work/st/hello_static" | grep -q 'NEEDED.*libpagewire'; then
	fail "hello_static needs libpagewire.so"
fi

# Run each example of both builds; servers print "port N" first.
run_pair() {	# dir name server-args -- client-args
	local dir=$1 name=$2; shift 2
	local sargs=() cargs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
	shift; cargs=("$@")
	local log=$work/$name.$(basename "$dir")
	"$dir/$name" -p 0 "${sargs[@]}" > "$log.server" 2>&1 &
	local spid=$! port= i
	for i in $(seq 1 100); do
		port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$log.server" | head -1)
		[ -n "$port" ] && break
		kill -0 $spid 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$port" ] || { kill $spid 2>/dev/null; cat "$log.server"; fail "$name server printed no port"; }
	if ! timeout 60 "$dir/$name" -p "$port" "${cargs[@]}" 127.0.0.1 > "$log.client" 2>&1; then
		kill $spid 2>/dev/null; cat "$log.server" "$log.client"; fail "$name client failed"
	fi
	if ! timeout 30 tail --pid=$spid -f /dev/null; then
		kill $spid; fail "$name server did not exit"
	fi
	wait $spid || { cat "$log.server"; fail "$name server failed"; }
	echo "$name ($(basename "$dir")): $(tail -1 "$log.client")"
}
for dir in "$work/pc" "$work/cm"; do
	step "run examples ($(basename "$dir"))"
	out=$(timeout 60 "$dir/hello" 2>&1) || { echo "$out"; fail "hello failed"; }
	echo "hello: $(echo "$out" | tail -1)"
	run_pair "$dir" rc_pingpong -s 4096 -n 500 -- -s 4096 -n 500
	run_pair "$dir" rc_pingpong -e -s 65536 -n 200 -- -e -s 65536 -n 200
	run_pair "$dir" kv_lookup --
	out=$(timeout 60 "$dir/munmap_events" 2>&1) || { echo "$out"; fail "munmap_events failed"; }
	echo "munmap_events: $(echo "$out" | tail -1)"
done
out=$(timeout 60 "$work/st/hello_static" 2>&1) || { echo "$out"; fail "hello_static failed"; }
echo "hello_static: $(echo "$out" | tail -1)"

step "uninstall from the manifest"
bash "$src/scripts/uninstall.sh" "$work/manifest" "$D"
left=$(find "$D" -type f -o -type l)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "install: PASS"
