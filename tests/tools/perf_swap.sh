#!/bin/sh
# pagewire-perf's swapped-memory tests, run for real on loopback:
#   perf_swap.sh PAGEWIRE_PERF CASE
# swapped, hol: `write_bw --swapped` and `hol`, briefly; they need swap, so
#   CTest runs these cases under tests/scripts/with_zram_swap.sh (root; it
#   exits 77, CTest's skip, otherwise). Exit status 0 means the server
#   verified every block that landed; the JSON fields scripts rely on must
#   be there (values are measurements: only presence and sanity checked).
# usage: no swap needed: usage errors exit 2, and without any swap both
#   tests print SKIP and exit 77.
set -u
PERF=$1
CASE=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

# json_check FIELD... < JSON lines: every line has every FIELD, numeric > 0
json_check() {
	python3 -c '
import json, sys
fields = sys.argv[1:]
lines = [l for l in sys.stdin if l.startswith("{")]
if not lines:
    sys.exit("no JSON line")
for l in lines:
    o = json.loads(l)
    for f in fields:
        if f not in o:
            sys.exit("missing %s in %s" % (f, l.strip()))
        if not (isinstance(o[f], (int, float)) and o[f] > 0):
            sys.exit("%s = %r is not a positive number" % (f, o[f]))
    for f in ("swapped_out_frac", "swapin_out_frac"):
        if f in o and o[f] > 1:
            sys.exit("%s %r > 1" % (f, o[f]))
print("%d line(s) ok" % len(lines))
' "$@"
}

has_swap() { [ "$(grep -c . /proc/swaps 2>/dev/null || echo 0)" -gt 1 ]; }

case $CASE in
swapped)
	has_swap || { echo "SKIP: no swap (run under tests/scripts/with_zram_swap.sh)" >&2; exit 77; }
	out=$("$PERF" write_bw --loopback --json -s 256K -n 64 --swapped --stats) ||
		fail "write_bw --swapped exited $?"
	# the server's swap-in rate of the same run, and the ratios on it
	echo "$out" | json_check swapped_bw_MBps resident_bw_MBps vs_resident swapped_out_frac \
		swapin_MBps swapin_out_frac swapin_vs_resident swapin_serial_vs_resident \
		swapped_vs_swapin ||
		fail "--swapped JSON: $out"
	echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
assert d["stats"]["server"]["faults"] > 0, "no server fault into swapped pages"
assert d["swapin_method"] in ("madv_populate_write", "touch"), d["swapin_method"]
r = d["swapin_MBps"] / d["resident_bw_MBps"]
assert abs(d["swapin_vs_resident"] - r) <= 0.01 * r + 1e-3, ("swapin_vs_resident", r)
' || fail "--swapped: $out"
	;;
hol)
	has_swap || { echo "SKIP: no swap (run under tests/scripts/with_zram_swap.sh)" >&2; exit 77; }
	out=$("$PERF" hol --loopback --json -s 256K -n 160) || fail "hol exited $?"
	# and the TCP reference of the same run: ping-pong alone / next to a
	# stream paced to A's rate, about as many samples as B of each kind
	echo "$out" | json_check hol_p50_us hol_p99_us alone_p50_us alone_p99_us \
		p99_ratio a_msgs a_MBps b_samples_hol b_samples_alone swapped_out_frac \
		tcp_alone_p50_us tcp_alone_p99_us tcp_hol_p50_us tcp_hol_p99_us \
		tcp_p99_ratio p99_ratio_vs_tcp tcp_samples_alone tcp_samples_hol \
		tcp_pace_MBps tcp_stream_MBps ||
		fail "hol JSON: $out"
	echo "$out" | grep -q '"qps":2' || fail "hol: not 2 QPs: $out"
	echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
# the counts of B, rounded up to whole phases (8)
assert 0 <= d["tcp_samples_alone"] - d["b_samples_alone"] < 8, "TCP alone samples"
assert 0 <= d["tcp_samples_hol"] - d["b_samples_hol"] < 8, "TCP stream-phase samples"
assert d["tcp_pace_MBps"] == d["a_MBps"], "TCP stream not paced to a_MBps"
r = d["p99_ratio"] / d["tcp_p99_ratio"]
assert abs(d["p99_ratio_vs_tcp"] - r) <= 0.01 * r + 1e-3, ("p99_ratio_vs_tcp", r)
' || fail "hol TCP reference: $out"
	;;
usage)
	for args in "write_bw --swapped -a" "write_bw --swapped --mr=pinned" \
		    "write_bw --swapped -q 2" "write_bw --swapped --first-touch" \
		    "read_bw --swapped" "hol -q 3" "hol --mr=pinned" "hol --swapped" \
		    "hol -a" "reg --swapped"; do
		# shellcheck disable=SC2086
		"$PERF" $args --loopback >/dev/null 2>&1
		rc=$?
		[ $rc = 2 ] || fail "'$args' exited $rc, expected 2 (usage)"
	done
	if has_swap; then
		echo "swap configured here: the no-swap SKIP is not checked"
	else
		for args in "write_bw -s 64K -n 32 --swapped" "hol -n 16"; do
			# shellcheck disable=SC2086
			"$PERF" $args --loopback >/dev/null 2>/tmp/pw_swap_err.$$
			rc=$?
			[ $rc = 77 ] || fail "'$args' without swap exited $rc, expected 77"
			grep -q "^SKIP: .*needs swap" /tmp/pw_swap_err.$$ ||
				fail "'$args' without swap: no SKIP message"
		done
		rm -f /tmp/pw_swap_err.$$
	fi
	;;
*)
	fail "unknown case $CASE"
	;;
esac
echo "ok: $CASE"
