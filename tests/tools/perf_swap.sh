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
    if "swapped_out_frac" in o and o["swapped_out_frac"] > 1:
        sys.exit("swapped_out_frac %r > 1" % o["swapped_out_frac"])
print("%d line(s) ok" % len(lines))
' "$@"
}

has_swap() { [ "$(grep -c . /proc/swaps 2>/dev/null || echo 0)" -gt 1 ]; }

case $CASE in
swapped)
	has_swap || { echo "SKIP: no swap (run under tests/scripts/with_zram_swap.sh)" >&2; exit 77; }
	out=$("$PERF" write_bw --loopback --json -s 256K -n 64 --swapped --stats) ||
		fail "write_bw --swapped exited $?"
	echo "$out" | json_check swapped_bw_MBps resident_bw_MBps vs_resident swapped_out_frac ||
		fail "--swapped JSON: $out"
	echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
assert d["stats"]["server"]["faults"] > 0, "no server fault into swapped pages"
' || fail "--swapped: the server took no fault"
	;;
hol)
	has_swap || { echo "SKIP: no swap (run under tests/scripts/with_zram_swap.sh)" >&2; exit 77; }
	out=$("$PERF" hol --loopback --json -s 256K -n 160) || fail "hol exited $?"
	echo "$out" | json_check hol_p50_us hol_p99_us alone_p50_us alone_p99_us \
		p99_ratio a_msgs a_MBps b_samples_hol b_samples_alone swapped_out_frac ||
		fail "hol JSON: $out"
	echo "$out" | grep -q '"qps":2' || fail "hol: not 2 QPs: $out"
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
