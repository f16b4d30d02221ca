#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# libpagewire.so.0's ABI: SONAME, and the exported symbols are exactly the
# functions the public header declares, each under version node PAGEWIRE_0.1,
# and exactly the linker version script's list.
set -euo pipefail
lib=${1:?usage: abi.sh LIBPAGEWIRE.SO SOURCE_DIR}
src=${2:?}
fail() { echo "abi: FAIL: $*" >&2; exit 1; }
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libpagewire.so.0 ] || fail "SONAME is '$soname', want libpagewire.so.0"
python3 "$src/scripts/public-symbols.py" "$src/include/pagewire/pagewire.h" > header.list
[ -s header.list ] || fail "no function found in the header"
sed -n 's/^[[:space:]]*\(pw_[a-z0-9_]*\);$/\1/p' "$src/src/libpagewire.map" | sort > map.list
diff -u header.list map.list || fail "src/libpagewire.map differs from the header's functions"
# every defined dynamic symbol: name@@version
nm -D --defined-only "$lib" | awk '{print $3}' | sort > exported.raw
grep -v '^PAGEWIRE_0\.1$' exported.raw > exported.syms || true
bad=$(grep -v '@@PAGEWIRE_0\.1$' exported.syms || true)
[ -z "$bad" ] || fail "exported without version node PAGEWIRE_0.1: $bad"
sed 's/@@.*//' exported.syms > exported.list
notpw=$(grep -v '^pw_' exported.list || true)
[ -z "$notpw" ] || fail "exported symbols not in the pw_ namespace: $notpw"
diff -u header.list exported.list || fail "exported symbols differ from the header's functions"
echo "abi: SONAME $soname; $(wc -l < exported.list) functions exported, all pw_*, all @@PAGEWIRE_0.1, equal to the header and the map"
