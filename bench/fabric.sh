#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/fabric.sh: the libfabric provider against libfabric's own tcp
# provider, and against pagewire-perf (what the provider layer costs),
# with fabtests 1.17.0's benchmarks. Paired: each round runs both sides of a
# case back to back, the order swapped every round, and the figure is the
# median over rounds of the per-round ratio, so the machine's drift cancels.
#
#   case                   A                                B
#   fi_rma_bw write 1M     fabtests fi_rma_bw -e msg        the same, -p tcp
#                          -o write -p pagewire (both sides
#                          write at once, as fabtests does)
#   fi_msg_pingpong 8      fabtests, -p pagewire            the same, -p tcp
#   fi_rdm_pingpong 8      fabtests, "pagewire;ofi_rxm"     "tcp;ofi_rxm"
#   provider write 1M      bench/fi_rma_bw.c -P pagewire    pagewire-perf write_bw
#   (target blocking,      -c -w 128 (one direction, window  -t 128, the same loop
#    target busy)          kept full, every op signalled;   (client --busy-poll,
#                          the target in fi_cq_sread, or    the server blocking,
#                          spinning on fi_cq_read)          or --busy-poll); with
#                                                           its own moderation
#                                                           (a completion per
#                                                           32 WRs) and with
#                                                           -Q 1 (every WR, as
#                                                           libfabric reports)
#   provider latency 8     fabtests fi_msg_pingpong         pagewire-perf send_lat
#                          -p pagewire (mean us/xfer)       --busy-poll on both
#                                                           sides (lat_avg_us)
#
# Writes OUT/fabric.jsonl and, with BENCH_UPDATE_MD=1 (default), the table
# between the fabric markers of BENCHMARKS.md. Needs a fabtests build
# (FABTESTS=PREFIX, else one is built from ../shared into OUT/fabtests when
# the tarball is there) and the provider (build/fabric); skips with a note
# otherwise.
#
#   bench/fabric.sh [OUT_DIR]          (compare.sh calls it)
#
# Environment: BENCH_RUNS (rounds, default 7), BENCH_QUICK=1 (fewer
# iterations), BENCH_UPDATE_MD, FABTESTS, PAGEWIRE_PERF, PY.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bench/out}
RUNS=${BENCH_RUNS:-7}
PERF=${PAGEWIRE_PERF:-$ROOT/build/bin/pagewire-perf}
PROVDIR=$(dirname "$(dirname "$PERF")")/fabric
PY=${PY:-python3}
UPDATE_MD=${BENCH_UPDATE_MD:-1}
BW_N=3000; LAT_N=20000
[ "${BENCH_QUICK:-0}" = 1 ] && { BW_N=1500; LAT_N=5000; }
RAW=$OUT/fabric.jsonl
LOG=$OUT/logs/fabric
mkdir -p "$OUT" "$LOG"
: >"$RAW"
note() { echo "fabric.sh: $*" >&2; }

[ -f "$PROVDIR/libpagewire-fi.so" ] || { note "SKIP: no provider in $PROVDIR (libfabric-dev missing at build time?)"; exit 0; }
[ -x "$PERF" ] || { note "SKIP: $PERF not built"; exit 0; }
FT=${FABTESTS:-}
if [ -z "$FT" ] || [ ! -x "$FT/bin/fi_rma_bw" ]; then
	FT=$OUT/fabtests
	if [ ! -x "$FT/bin/fi_rma_bw" ]; then
		if [ -x "$ROOT/../shared/scripts/build-fabtests.sh" ]; then
			"$ROOT/../shared/scripts/build-fabtests.sh" "$FT" >"$LOG/build-fabtests.log" 2>&1 ||
				{ note "SKIP: building fabtests failed ($LOG/build-fabtests.log)"; exit 0; }
		else
			note "SKIP: no fabtests (set FABTESTS=PREFIX, or keep ../shared beside the checkout)"
			exit 0
		fi
	fi
fi
LFBW=$OUT/bin/lf_rma_bw
mkdir -p "$OUT/bin"
cc -O2 -std=c11 -Wall -o "$LFBW" "$ROOT/bench/fi_rma_bw.c" -lfabric 2>"$LOG/build-lf_rma_bw.err" ||
	{ note "SKIP: bench/fi_rma_bw.c did not build ($LOG/build-lf_rma_bw.err)"; exit 0; }
export FI_PROVIDER_PATH=$PROVDIR

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ft PROV TEST ARGS...: a fabtests pair; prints the client's last line
ft() {
	local prov=$1 t=$2 p
	shift 2
	p=$(port)
	timeout 120 "$FT/bin/$t" -p "$prov" -B "$p" "$@" -s 127.0.0.1 >"$LOG/srv.log" 2>&1 &
	local sp=$!
	sleep 0.4
	timeout 120 "$FT/bin/$t" -p "$prov" -P "$p" "$@" -s 127.0.0.1 127.0.0.1 >"$LOG/cli.log" 2>&1
	local rc=$? src
	wait $sp
	src=$?
	[ $rc = 0 ] && [ $src = 0 ] && tail -n 1 "$LOG/cli.log"
}
# fabtests' columns: bytes iters total time MB/sec usec/xfer Mxfers/sec
ft_bw() { ft "$@" | awk '{print $5}'; }
ft_lat() { ft "$@" | awk '{print $6}'; }

# perf_field FIELD SERVER_MODE TEST ARGS...: pagewire-perf, the client
# busy-polling, the server blocking or busy-polling; one JSON field
perf_field() {
	local field=$1 mode=$2 p sflag=()
	shift 2
	[ "$mode" = busy ] && sflag=(--busy-poll)
	p=$(port)
	timeout 120 "$PERF" "$@" "${sflag[@]}" -p "$p" >"$LOG/perf-srv.log" 2>&1 &
	local sp=$!
	sleep 0.4
	# parsed afterwards: a parser started beside the run would take a core from it
	timeout 120 "$PERF" "$@" -p "$p" --busy-poll --json 127.0.0.1 >"$LOG/perf-cli.json" 2>"$LOG/perf-cli.err"
	wait $sp
	json_field "$field" "$LOG/perf-cli.json"
}
json_field() { tail -n 1 "$2" | "$PY" -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])" 2>/dev/null; }

# lf_bw SERVER_MODE: bench/fi_rma_bw.c over the provider, the client
# busy-polling, the server waiting in fi_cq_sread (blocking) or spinning
# on fi_cq_read (busy), as pagewire-perf's server does in that mode
lf_bw() {
	local p sflag=()
	[ "$1" = blocking ] && sflag=(-b)
	p=$(port)
	timeout 120 "$LFBW" -P pagewire -c -w 128 -p "$p" -t 60 "${sflag[@]}" >"$LOG/lf-srv.log" 2>&1 &
	local sp=$!
	sleep 0.4
	timeout 120 "$LFBW" -P pagewire -c -w 128 -p "$p" -t 60 -T write_bw -S 1M -n "$BW_N" 127.0.0.1 \
		>"$LOG/lf-cli.json" 2>"$LOG/lf-cli.err"
	wait $sp
	json_field bw_MBps "$LOG/lf-cli.json"
}

# case: name|unit|A command|B command (shell functions above)
CASES=(
	"fi_rma_bw write 1M (pagewire / tcp)|MB/s|ft_bw pagewire fi_rma_bw -e msg -o write -S 1048576 -I $BW_N|ft_bw tcp fi_rma_bw -e msg -o write -S 1048576 -I $BW_N"
	"fi_msg_pingpong 8 B (pagewire / tcp)|us|ft_lat pagewire fi_msg_pingpong -e msg -S 8 -I $LAT_N|ft_lat tcp fi_msg_pingpong -e msg -S 8 -I $LAT_N"
	"fi_rdm_pingpong 8 B (pagewire;ofi_rxm / tcp;ofi_rxm)|us|ft_lat pagewire;ofi_rxm fi_rdm_pingpong -S 8 -I $LAT_N|ft_lat tcp;ofi_rxm fi_rdm_pingpong -S 8 -I $LAT_N"
	"provider write 1M, target blocking (fi_rma_bw.c -P pagewire / pagewire-perf write_bw)|MB/s|lf_bw blocking|perf_field bw_MBps blocking write_bw -s 1M -n $BW_N -t 128"
	"provider write 1M, target busy (fi_rma_bw.c -P pagewire / pagewire-perf write_bw)|MB/s|lf_bw busy|perf_field bw_MBps busy write_bw -s 1M -n $BW_N -t 128"
	"provider write 1M, target blocking (fi_rma_bw.c -P pagewire / pagewire-perf write_bw -Q 1)|MB/s|lf_bw blocking|perf_field bw_MBps blocking write_bw -s 1M -n $BW_N -t 128 -Q 1"
	"provider write 1M, target busy (fi_rma_bw.c -P pagewire / pagewire-perf write_bw -Q 1)|MB/s|lf_bw busy|perf_field bw_MBps busy write_bw -s 1M -n $BW_N -t 128 -Q 1"
	"provider latency 8 B (fi_msg_pingpong / pagewire-perf send_lat, mean)|us|ft_lat pagewire fi_msg_pingpong -e msg -S 8 -I $LAT_N|perf_field lat_avg_us busy send_lat -s 8 -n $LAT_N"
)
for ((r = 0; r < RUNS; r++)); do
	for c in "${CASES[@]}"; do
		IFS='|' read -r name unit acmd bcmd <<<"$c"
		order=(a b)
		[ $((r % 2)) = 1 ] && order=(b a)
		declare -A v=()
		for side in "${order[@]}"; do
			cmd=$acmd
			[ $side = b ] && cmd=$bcmd
			read -r -a argv <<<"$cmd"
			# a provider name with ';' is one word already
			v[$side]=$("${argv[@]}")
		done
		if [ -z "${v[a]}" ] || [ -z "${v[b]}" ]; then
			note "round $r, $name: no result (a='${v[a]}' b='${v[b]}'; logs in $LOG)"
			continue
		fi
		echo "{\"round\":$r,\"case\":\"$name\",\"unit\":\"$unit\",\"a\":${v[a]},\"b\":${v[b]}}" >>"$RAW"
		unset v
	done
done

table=$("$PY" - "$RAW" <<'PYEOF'
import json, statistics, sys
raw = sys.argv[1]
rows = {}
for l in open(raw):
    j = json.loads(l)
    rows.setdefault((j["case"], j["unit"]), []).append((j["a"], j["b"]))
out = ["| case | A (median) | B (median) | A/B per round: median | min .. max | A-B (median) | rounds |",
       "|---|---|---|---|---|---|---|"]
for (case, unit), pairs in rows.items():
    ratios = [a / b for a, b in pairs]
    diffs = [a - b for a, b in pairs]
    out.append("| %s | %.2f %s | %.2f %s | %.3f | %.3f .. %.3f | %+.2f %s | %d |" % (
        case, statistics.median(a for a, _ in pairs), unit,
        statistics.median(b for _, b in pairs), unit,
        statistics.median(ratios), min(ratios), max(ratios),
        statistics.median(diffs), unit, len(pairs)))
print("\n".join(out))
PYEOF
)
echo "$table"
[ "$UPDATE_MD" = 1 ] && echo "$table" | "$PY" "$ROOT/bench/md_section.py" "$ROOT/BENCHMARKS.md" fabric
exit 0
