#!/bin/sh
# pagewire-perf's command-line contract, run for real on loopback:
#   perf_cli.sh PAGEWIRE_PERF CASE
# Every case checks exit codes and the JSON fields scripts rely on (values
# are measurements, so only their presence and sanity are asserted).
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
        if f.startswith("vs_pinned_us"):
            continue          # a difference: any sign
        if not (isinstance(o[f], (int, float)) and o[f] > 0):
            sys.exit("%s = %r is not a positive number" % (f, o[f]))
print("%d line(s) ok" % len(lines))
' "$@"
}

case $CASE in
vs_pinned_bw)
	out=$("$PERF" write_bw --loopback --json -s 64K -n 400 --vs-pinned) ||
		fail "write_bw --vs-pinned exited $?"
	echo "$out" | json_check bw_MBps pair_bw_MBps pinned_bw_MBps vs_pinned ||
		fail "write_bw JSON"
	out=$("$PERF" read_bw --loopback --json -s 4K -n 400 --mr=implicit --vs-pinned) ||
		fail "read_bw --vs-pinned exited $?"
	echo "$out" | json_check bw_MBps pair_bw_MBps pinned_bw_MBps vs_pinned ||
		fail "read_bw JSON"
	;;
vs_pinned_lat)
	out=$("$PERF" write_lat --loopback --json -n 512 --vs-pinned) ||
		fail "write_lat --vs-pinned exited $?"
	echo "$out" | json_check lat_p50_us pair_lat_p50_us pinned_lat_p50_us vs_pinned_us ||
		fail "write_lat JSON"
	;;
reg)
	# one line per (mr, size) with reg_us; ODP registration of 1 TiB works
	out=$("$PERF" reg --json -s 1M -n 5) || fail "reg exited $?"
	[ "$(echo "$out" | grep -c '"test":"reg"')" = 3 ] ||
		fail "reg -s 1M: expected 3 lines (pinned, odp, implicit): $out"
	echo "$out" | json_check size iters reg_us reg_min_us dereg_us || fail "reg JSON"
	out=$("$PERF" reg --json --mr=odp -n 5) || fail "reg --mr=odp exited $?"
	echo "$out" | grep -q '"mr":"odp","size":1099511627776' || fail "reg odp 1T: $out"
	"$PERF" reg --loopback >/dev/null 2>&1
	[ $? = 2 ] || fail "reg --loopback must be a usage error (2)"
	;;
overcommit)
	# every policy finishes with every byte verified (no swap needed at
	# this size: the budget then only invalidates); the JSON contract
	for pol in pinned stall drop notify; do
		out=$("$PERF" overcommit --json --policy=$pol --budget=4M --ratio=4 --seconds=1) ||
			fail "overcommit --policy=$pol exited $?: $out"
		echo "$out" | json_check ops_per_s bw_MBps lat_p50_us lat_p99_us peak_rss_bytes ||
			fail "overcommit $pol JSON"
		for f in policy faults invalidations notifications retransmitted_bytes \
			 wasted_bytes budget_bytes; do
			echo "$out" | grep -q "\"$f\":" || fail "overcommit $pol: no $f"
		done
		echo "$out" | grep -q '"verified":true' || fail "overcommit $pol not verified: $out"
	done
	echo "$out" | grep -q '"policy":"notify"' || fail "overcommit: policy not reported"
	"$PERF" overcommit --ratio=0 >/dev/null 2>&1
	[ $? = 2 ] || fail "overcommit --ratio=0 must be a usage error (2)"
	"$PERF" write_bw --loopback --policy=pinned >/dev/null 2>&1
	[ $? = 2 ] || fail "--policy=pinned outside overcommit must be a usage error (2)"
	;;
inval_lat)
	# both events measured, every INVALIDATE reached the peer (missed 0);
	# exit 77 (the notifier is off here) is a skip, said by the tool
	out=$("$PERF" inval_lat --json -n 50)
	rc=$?
	[ $rc = 77 ] && exit 77
	[ $rc = 0 ] || fail "inval_lat exited $rc"
	[ "$(echo "$out" | grep -c '"test":"inval_lat"')" = 2 ] ||
		fail "inval_lat: expected 2 lines (madvise, munmap): $out"
	# latencies may be 0: the peer can apply it before the caller runs again
	echo "$out" | json_check iters || fail "inval_lat JSON"
	for f in lat_p50_us lat_p99_us lat_max_us; do
		echo "$out" | grep -q "\"$f\":[0-9]" || fail "inval_lat: no $f: $out"
	done
	echo "$out" | grep -q '"event":"madvise","iters":50,' || fail "inval_lat madvise: $out"
	echo "$out" | grep -q '"event":"munmap","iters":50,' || fail "inval_lat munmap: $out"
	[ "$(echo "$out" | grep -c '"missed":0}')" = 2 ] || fail "inval_lat missed some: $out"
	"$PERF" inval_lat --loopback >/dev/null 2>&1
	[ $? = 2 ] || fail "inval_lat --loopback must be a usage error (2)"
	;;
fault_lat)
	# fresh pages against resident ones in one run; the server verifies
	# every page (written bytes exact, the rest zero) before it exits 0
	out=$("$PERF" fault_lat --loopback --json -n 300) || fail "fault_lat exited $?"
	echo "$out" | json_check lat_p50_us resident_p50_us resident_p99_us ||
		fail "fault_lat JSON"
	echo "$out" | grep -q '"added_p50_us":' || fail "fault_lat: no added_p50_us"
	echo "$out" | grep -q '"added_p99_us":' || fail "fault_lat: no added_p99_us"
	"$PERF" fault_lat --loopback --baseline >/dev/null 2>&1
	[ $? = 2 ] || fail "fault_lat --baseline must be a usage error (2)"
	;;
first_touch)
	# fresh slots against the resident one, paired; the server verifies
	# every slot; --stats carries both sides' counters; the server's page
	# population rate of the same run comes with the figures
	out=$("$PERF" write_bw --loopback --json -s 64K -n 64 --first-touch --stats) ||
		fail "write_bw --first-touch exited $?"
	echo "$out" | json_check first_touch_bw_MBps resident_bw_MBps vs_resident \
		populate_MBps populate_vs_resident populate_serial_vs_resident \
		first_touch_vs_populate ||
		fail "first-touch JSON"
	echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
assert d["populate_method"] in ("madv_populate_write", "touch"), d["populate_method"]
r = d["populate_MBps"] / d["resident_bw_MBps"]
assert abs(d["populate_vs_resident"] - r) <= 0.01 * r + 1e-3, ("populate_vs_resident", r)
s = d["stats"]
for side in ("client", "server"):
    for k in ("faults", "fault_pages", "stall_ns", "naks_sent", "dropped_bytes", "fault_inline"):
        assert k in s[side], (side, k)
assert s["server"]["faults"] > 0, "no server fault with --first-touch"
' || fail "--stats object"
	"$PERF" write_bw --loopback -a --first-touch >/dev/null 2>&1
	[ $? = 2 ] || fail "--first-touch -a must be a usage error (2)"
	;;
policy)
	# both responder policies move data that the server verifies
	for pol in stall drop notify; do
		out=$("$PERF" write_bw --loopback --json -s 256K -n 64 --policy=$pol) ||
			fail "write_bw --policy=$pol exited $?"
		echo "$out" | grep -q "\"policy\":\"$pol\"" || fail "policy $pol not reported"
		out=$("$PERF" fault_lat --loopback --json -n 100 --policy=$pol) ||
			fail "fault_lat --policy=$pol exited $?"
	done
	"$PERF" write_bw --loopback --policy=bogus >/dev/null 2>&1
	[ $? = 2 ] || fail "--policy=bogus must be a usage error (2)"
	;;
cq_mod)
	# -Q: one signalled WR in N, reported as cq_mod; at most the window;
	# 0 is a usage error
	for spec in "-Q 1:1" ":32" "-t 16 -Q 1000:16"; do
		args=${spec%:*} want=${spec##*:}
		# shellcheck disable=SC2086
		out=$("$PERF" write_bw --loopback --json -s 4K -n 200 $args) ||
			fail "write_bw $args exited $?"
		echo "$out" | grep -q "\"cq_mod\":$want," ||
			fail "write_bw $args: cq_mod $want expected: $out"
	done
	"$PERF" write_bw --loopback -Q 0 >/dev/null 2>&1
	[ $? = 2 ] || fail "-Q 0 must be a usage error (2)"
	;;
vs_pinned_usage)
	# a clear usage error (exit 2), never a run
	for args in "write_bw --mr=pinned --vs-pinned" "send_bw --vs-pinned" \
		    "atomic_lat --vs-pinned"; do
		# shellcheck disable=SC2086
		"$PERF" $args --loopback >/dev/null 2>/tmp/pw_cli_err.$$
		rc=$?
		[ $rc = 2 ] || fail "'$args' exited $rc, expected 2"
		grep -q -- "--vs-pinned" /tmp/pw_cli_err.$$ ||
			fail "'$args': the message does not name --vs-pinned"
	done
	rm -f /tmp/pw_cli_err.$$
	;;
*)
	fail "unknown case $CASE"
	;;
esac
echo "ok: $CASE"
