#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one fabtests program against the pagewire provider over loopback:
# the unit tests (fi_getinfo_test, fi_eq_test, ...) alone, the
# client/server ones as a server and a client on 127.0.0.1 (-s names the
# source as runfabtests.sh does: without it a server listens on the first
# interface, which an FI_EP_RDM client given 127.0.0.1 does not reach).
#
#   fabtests.sh PROVIDER_DIR FABTESTS_PREFIX PROVIDER "TEST ARGS"
#
# PROVIDER may name a layering with "+" for ";" (pagewire+ofi_rxm), which
# CTest cannot pass inside one argument.
#
# Exit: 0 passed, 77 skipped (no fabtests build: give FABTESTS=PREFIX, or
# keep the fabtests tarball beside the checkout), 1 failed.
set -uo pipefail
provdir=$1 prefix=$2 prov=${3//+/;} test=$4
bin=$prefix/bin
if [ ! -x "$bin/fi_msg" ]; then
	echo "SKIP: no fabtests in $prefix (set FABTESTS=PREFIX or provide ../shared/scripts/build-fabtests.sh)"
	exit 77
fi
export FI_PROVIDER_PATH=$provdir PATH=$bin:$PATH
read -r -a argv <<<"$test"
name=${argv[0]}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case $name in
fi_getinfo_test|fi_eq_test|fi_cq_test|fi_mr_test|fi_dom_test|fi_av_test|fi_cntr_test)
	timeout 120 "${argv[@]}" -p "$prov" >"$out/u.log" 2>&1
	rc=$?
	cat "$out/u.log"
	[ $rc = 0 ] || { echo "FAIL: $test exited $rc"; exit 1; }
	if grep -q -i "FAIL" "$out/u.log"; then
		echo "FAIL: $test reported a failing case"
		exit 1
	fi
	exit 0
	;;
esac
# The client/server run, on a port of our own (so that a test run beside
# others does not collide).
port=$((20000 + RANDOM % 20000))
timeout 60 "${argv[@]}" -p "$prov" -s 127.0.0.1 -B "$port" >"$out/s.log" 2>&1 &
spid=$!
sleep 0.5
timeout 60 "${argv[@]}" -p "$prov" -s 127.0.0.1 -P "$port" 127.0.0.1 >"$out/c.log" 2>&1
crc=$?
wait "$spid"
src=$?
echo "--- server"; cat "$out/s.log"
echo "--- client"; cat "$out/c.log"
if [ $src != 0 ] || [ $crc != 0 ]; then
	echo "FAIL: $test: server exited $src, client $crc"
	exit 1
fi
echo "PASS: $test (server and client exited 0)"
