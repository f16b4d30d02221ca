#!/usr/bin/env bash
# bench/compare.sh: pagewire against raw TCP, libfabric tcp and UCX tcp, all in
# one run on loopback (127.0.0.1), reported as ratios to the raw-TCP baseline
# measured in the same run. `make bench` runs it after `make build`.
#
#   bench/compare.sh                 full: ~5-8 min on the 2-core machine
#   BENCH_QUICK=1 bench/compare.sh   quick: table sizes only, ~1-2 min
#
# Environment:
#   BENCH_RUNS=N          runs; every figure is the median over them (default 5)
#   BENCH_QUICK=1         quick mode (sizes 4K/64K/1M only, fewer iterations)
#   BENCH_OUT=DIR         results, logs, plot (default bench/out, gitignored)
#   BENCH_MAX_SECONDS=S   no new run starts after S seconds (default 540, quick 150)
#   BENCH_UPDATE_MD=0     do not rewrite the table in BENCHMARKS.md
#   BENCH_NO_DEPS=1       do not install Debian packages (bench/deps.sh)
#   PAGEWIRE_PERF=PATH    pagewire-perf binary (default build/bin/pagewire-perf)
#   BENCH_OVERCOMMIT=0    skip bench/overcommit.sh (the four fault policies)
#
# Output: the markdown table on stdout (and in BENCHMARKS.md between markers),
# bench/out/bw_vs_size.svg, bench/out/results.{json,csv}, bench/out/raw.jsonl
# (every sample), bench/out/logs/ (every command's stdout/stderr) and
# bench/out/manifest.tsv (what ran, with exit status).
#
# Every server and client runs under `timeout`, on 127.0.0.1 and on a fresh
# ephemeral port; servers are tracked by pid and ended on exit (trap).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
OUT=${BENCH_OUT:-$BENCH/out}
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-5}
PERF=${PAGEWIRE_PERF:-$ROOT/build/bin/pagewire-perf}
UPDATE_MD=${BENCH_UPDATE_MD:-1}
PY=$(command -v /usr/bin/python3 || command -v python3)

if [ "$QUICK" = 1 ]; then
	PEER_SIZES="4096 65536 1048576"  # every system, bandwidth
	PW_SWEEP=0                       # pagewire/TCP: the same three sizes
	BUDGET=$((64 << 20))             # bytes moved per bandwidth point (approx.)
	LAT_ITERS=1000
	LAT_SECS=1                       # time bound of fi_rma_bw's latency loop
	T_CMD=60                         # timeout of one command
	MAX_SECONDS=${BENCH_MAX_SECONDS:-150}
else
	PEER_SIZES="64 1024 4096 16384 65536 262144 1048576 4194304"
	PW_SWEEP=1                       # pagewire/TCP: -a, sizes 2..8M
	BUDGET=$((512 << 20))
	LAT_ITERS=5000
	LAT_SECS=5
	T_CMD=120
	MAX_SECONDS=${BENCH_MAX_SECONDS:-540}
fi
TABLE_SIZES="4096 65536 1048576"

# Keep every transport on loopback.
export UCX_TLS=tcp UCX_NET_DEVICES=lo FI_TCP_IFACE=lo
export UCX_WARN_UNUSED_ENV_VARS=n

# ---------------------------------------------------------------- processes
PIDS=()
kill_tree() { # kill_tree PID: end a `timeout` wrapper and its child, by pid
	local p=$1 c
	for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill -TERM "$c" 2>/dev/null; done
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
	for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
forget_pid() {
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill_tree "$p"; done
	PIDS=()
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT TERM

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # wait_listen PORT PID: 0 once something listens on PORT (10 s max)
	for _ in $(seq 200); do
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

iters_for() { # iters_for SIZE [DIVISOR]: bandwidth iterations from the byte budget
	local n=$((BUDGET / $1 / ${2:-1}))
	[ "$n" -lt 200 ] && n=200
	[ "$n" -gt 10000 ] && n=10000
	echo "$n"
}

MANIFEST=$OUT/manifest.tsv
RUN=0
record() { # record ROW KIND SIZE LOG RC SECONDS
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$RUN" "$1" "$2" "$3" "$4" "$5" "$6" >>"$MANIFEST"
}

# fg_run LOG CMD...: CMD under timeout, output to LOG and LOG.err; run in the
# background and waited for, so that a signal to this script acts at once.
fg_run() {
	local log=$1 cp rc
	shift
	timeout -k 2 "$T_CMD" "$@" >"$log" 2>"$log.err" &
	cp=$!
	PIDS+=("$cp")
	wait "$cp"
	rc=$?
	forget_pid "$cp"
	return $rc
}

# run_one ROW KIND SIZE TAG CMD...: a self-contained (loopback) command
run_one() {
	local row=$1 kind=$2 size=$3 tag=$4
	shift 4
	local log=$OUT/logs/r$RUN.$row.$tag.log t0=$SECONDS rc
	echo "+ $*" >"$log.cmd"
	fg_run "$log" "$@"
	rc=$?
	[ $rc = 124 ] && echo "timed out after ${T_CMD}s" >>"$log.err"
	record "$row" "$kind" "$size" "$log" "$rc" $((SECONDS - t0))
}

# run_pair ROW KIND SIZE TAG PORT: server SRV[@], then client CLI[@]
run_pair() {
	local row=$1 kind=$2 size=$3 tag=$4 port=$5
	local log=$OUT/logs/r$RUN.$row.$tag.log t0=$SECONDS rc sp
	{ echo "+ server: ${SRV[*]}"; echo "+ client: ${CLI[*]}"; } >"$log.cmd"
	timeout -k 2 $((T_CMD + 5)) "${SRV[@]}" >"$log.srv" 2>&1 &
	sp=$!
	PIDS+=("$sp")
	if ! wait_listen "$port" "$sp"; then
		echo "server did not listen on port $port: $(tail -n 1 "$log.srv" 2>/dev/null)" >"$log.err"
		: >"$log"
		rc=98
	else
		fg_run "$log" "${CLI[@]}"
		rc=$?
		[ $rc = 124 ] && echo "timed out after ${T_CMD}s" >>"$log.err"
	fi
	# the servers exit by themselves after one client; give them 3 s
	for _ in $(seq 60); do kill -0 "$sp" 2>/dev/null || break; sleep 0.05; done
	kill_tree "$sp"
	forget_pid "$sp"
	record "$row" "$kind" "$size" "$log" "$rc" $((SECONDS - t0))
}

# ------------------------------------------------------------------- setup
mkdir -p "$OUT/logs" "$OUT/bin"
rm -f "$OUT"/logs/* "$OUT"/raw.jsonl "$OUT"/results.* "$OUT"/bw_vs_size.*
printf 'run\trow\tkind\tsize\tlog\trc\tseconds\n' >"$MANIFEST"
NOTES=$OUT/notes.txt
: >"$NOTES"
note() { echo "$*" | tee -a "$NOTES" >&2; }

if [ "${BENCH_NO_DEPS:-0}" != 1 ]; then
	"$BENCH/deps.sh" || note "deps: bench/deps.sh failed (not root?); using what is installed"
fi

have() { command -v "$1" >/dev/null 2>&1; }
HAVE_UCX=0 HAVE_FIPP=0 HAVE_LF=0 HAVE_PW=0 TCP_IMPL=""
if have ucx_perftest && ucx_perftest -h >/dev/null 2>&1; then HAVE_UCX=1; else note "ucx: ucx_perftest not usable (package ucx-utils)"; fi
if have fi_pingpong && fi_info -p tcp >/dev/null 2>&1; then HAVE_FIPP=1; else note "libfabric: fi_pingpong or the tcp provider missing (libfabric-bin)"; fi
if cc -O2 -std=c11 -Wall -o "$OUT/bin/fi_rma_bw" "$BENCH/fi_rma_bw.c" -lfabric 2>"$OUT/logs/build_fi_rma_bw.err"; then
	HAVE_LF=1
else
	note "libfabric: bench/fi_rma_bw.c did not build: $(head -n 1 "$OUT/logs/build_fi_rma_bw.err")"
fi
if [ -x "$PERF" ]; then HAVE_PW=1; else note "pagewire: $PERF not found (run make build)"; fi

# Raw-TCP baseline: pagewire-perf's own tcp_bw/tcp_lat when it has them (same
# iteration logic as the pagewire tests), else bench/tcp_perf.c.
if [ $HAVE_PW = 1 ] && timeout 20 "$PERF" tcp_bw --loopback --json -s 4096 -n 10 2>/dev/null | grep -q '"tcp_bw"'; then
	TCP=("$PERF")
	TCP_IMPL="pagewire-perf tcp_bw/tcp_lat"
elif cc -O2 -std=c11 -Wall -o "$OUT/bin/tcp_perf" "$BENCH/tcp_perf.c" 2>"$OUT/logs/build_tcp_perf.err"; then
	TCP=("$OUT/bin/tcp_perf")
	TCP_IMPL="bench/tcp_perf.c (pagewire-perf has no tcp_bw yet)"
else
	note "raw TCP: no baseline (pagewire-perf lacks tcp_bw and bench/tcp_perf.c did not build); no ratios possible"
	TCP=()
fi
[ -n "$TCP_IMPL" ] && echo "raw-TCP baseline: $TCP_IMPL" >&2

{
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "nproc=$(nproc)"
	echo "kernel=$(uname -r)"
	echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "libfabric=$(fi_info --version 2>/dev/null | sed -n 's/^libfabric: //p')"
	echo "ucx=$(ucx_info -v 2>/dev/null | sed -n 's/^# Version //p')"
	echo "pagewire=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- src include tools 2>/dev/null || echo '+dirty')"
	echo "tcp_impl=$TCP_IMPL"
	echo "quick=$QUICK"
	echo "runs_requested=$RUNS"
	echo "command=$( [ "$QUICK" = 1 ] && printf 'BENCH_QUICK=1 ')$( [ -n "${BENCH_RUNS:-}" ] && printf 'BENCH_RUNS=%s ' "$RUNS")bench/compare.sh"
} >"$OUT/meta.txt"

# ------------------------------------------------------------ measurements
pw_bw() { # pw_bw ROW TEST EXTRA...: bandwidth at the plot sizes
	local row=$1 test=$2 s
	shift 2
	if [ "$PW_SWEEP" = 1 ]; then
		run_one "$row" pw all sweep "$PERF" "$test" --loopback --json -a "$@"
	else
		for s in $PEER_SIZES; do
			run_one "$row" pw "$s" "s$s" "$PERF" "$test" --loopback --json -s "$s" -n "$(iters_for "$s")" "$@"
		done
	fi
}

measure_tcp() {
	[ ${#TCP[@]} = 0 ] && return
	local s
	if [ "$PW_SWEEP" = 1 ]; then
		run_one tcp_blocking pw all sweep "${TCP[@]}" tcp_bw --loopback --json -a
	else
		for s in $PEER_SIZES; do
			run_one tcp_blocking pw "$s" "s$s" "${TCP[@]}" tcp_bw --loopback --json -s "$s" -n "$(iters_for "$s")"
		done
	fi
	run_one tcp_blocking pw 8 lat "${TCP[@]}" tcp_lat --loopback --json -s 8 -n "$LAT_ITERS"
	run_one tcp_busy pw 8 lat "${TCP[@]}" tcp_lat --loopback --json -s 8 -n "$LAT_ITERS" --busy-poll
}

measure_pagewire() {
	[ $HAVE_PW = 1 ] || return
	local s
	pw_bw pw_write_odp write_bw --mr=odp
	pw_bw pw_write_pinned write_bw --mr=pinned
	# ODP against pinned, paired in one run (what the ODP-vs-pinned criteria use)
	pw_bw pw_pair write_bw --mr=odp --vs-pinned
	pw_bw pw_read_odp read_bw --mr=odp
	for s in $TABLE_SIZES; do
		run_one pw_write_odp_busy pw "$s" "s$s" "$PERF" write_bw --loopback --json -s "$s" -n "$(iters_for "$s")" --mr=odp --busy-poll
		run_one pw_send_odp pw "$s" "s$s" "$PERF" send_bw --loopback --json -s "$s" -n "$(iters_for "$s")" --mr=odp
	done
	# --baseline: the raw-TCP ping-pong of the same invocation, just before
	run_one pw_write_odp pw 8 lat "$PERF" write_lat --loopback --json -s 8 -n "$LAT_ITERS" --mr=odp --baseline
	run_one pw_write_pinned pw 8 lat "$PERF" write_lat --loopback --json -s 8 -n "$LAT_ITERS" --mr=pinned
	run_one pw_pair pw 8 lat "$PERF" write_lat --loopback --json -s 8 -n "$LAT_ITERS" --mr=odp --vs-pinned
	run_one pw_write_odp_busy pw 8 lat "$PERF" write_lat --loopback --json -s 8 -n "$LAT_ITERS" --mr=odp --busy-poll --baseline
	run_one pw_send_odp pw 8 lat "$PERF" send_lat --loopback --json -s 8 -n "$LAT_ITERS" --mr=odp
	# 64 QPs writing 64 KiB concurrently (aggregate; the 1-QP figure is pw_write_odp at 64K)
	run_one pw_write_odp_q64 pw 65536 q64 "$PERF" write_bw --loopback --json -s 64K -q 64 --mr=odp
	measure_paging
}

# Demand paging: registration cost, fault latency, first touch,
# swapped-out target memory and head-of-line blocking, each a same-run
# comparison inside one pagewire-perf invocation. The same invocations
# measure the platform's bounds too (first touch: the kernel's page
# population rate, --swapped: its swap-in rate, hol: raw TCP's own p99
# ratio next to a stream), which bench.py shows next to each figure.
measure_paging() {
	local pol
	run_one pg_reg pwreg 0 reg "$PERF" reg --json
	for pol in stall drop; do
		run_one "pg_fault_$pol" pwpg 8 lat "$PERF" fault_lat --loopback --json -n 2000 --policy=$pol --stats
		run_one "pg_first_touch_$pol" pwpg 1048576 ft "$PERF" write_bw --loopback --json -s 1M --first-touch --policy=$pol --stats
	done
	# --swapped and hol page the target out (MADV_PAGEOUT): they need swap,
	# which with_zram_swap.sh sets up (zram) around each command and removes
	# (root; else exit 77, recorded as skipped)
	run_one pg_swapped_stall pwpg 1048576 sw sh "$ROOT/tests/scripts/with_zram_swap.sh" \
		"$PERF" write_bw --loopback --json -s 1M --swapped --stats
	run_one pg_hol pwpg 1048576 hol sh "$ROOT/tests/scripts/with_zram_swap.sh" \
		"$PERF" hol --loopback --json -s 1M --stats
}

measure_libfabric_rma() {
	[ $HAVE_LF = 1 ] || return
	local ep mode flag port sizes tests
	local sizes_csv=${PEER_SIZES// /,} table_csv=${TABLE_SIZES// /,}
	for ep in msg rdm; do
		for mode in blocking busy; do
			flag=()
			[ $mode = blocking ] && flag=(-b)
			tests=write_bw,write_lat
			sizes=$sizes_csv
			if [ $mode = busy ]; then sizes=$table_csv; fi
			[ $ep = msg ] && [ $mode = blocking ] && tests=write_bw,read_bw,write_lat
			port=$(free_port)
			SRV=("$OUT/bin/fi_rma_bw" -e "$ep" "${flag[@]}" -p "$port" -t 30)
			CLI=("$OUT/bin/fi_rma_bw" -e "$ep" "${flag[@]}" -p "$port" -t 30 -T "$tests" -S "$sizes"
				-B "$BUDGET" -n 0 -N "$LAT_ITERS" -L "$LAT_SECS" 127.0.0.1)
			# -n 0: per-size iterations from the budget within [200, 10000]
			run_pair "lf_${ep}_${mode}" lf all "$ep.$mode" "$port"
		done
	done
}

measure_fi_pingpong() {
	[ $HAVE_FIPP = 1 ] || return
	local ep prov s port it
	for ep in msg rdm; do
		prov=tcp
		[ $ep = rdm ] && prov="tcp;ofi_rxm"
		for s in 8 $PEER_SIZES; do
			if [ "$s" = 8 ]; then it=$LAT_ITERS; else it=$(iters_for "$s" 2); fi
			port=$(free_port)
			SRV=(fi_pingpong -e "$ep" -p "$prov" -B "$port" -I "$it" -S "$s")
			CLI=(fi_pingpong -e "$ep" -p "$prov" -P "$port" -I "$it" -S "$s" 127.0.0.1)
			run_pair "fipp_$ep" fipp "$s" "s$s" "$port"
		done
	done
}

ucx_pair() { # ucx_pair ROW TEST SIZE ITERS [ENV...]
	local row=$1 test=$2 s=$3 it=$4 port w
	shift 4
	port=$(free_port)
	w=$((it / 10))
	[ $w -lt 10 ] && w=10
	SRV=(env "$@" ucx_perftest -p "$port")
	CLI=(env "$@" ucx_perftest 127.0.0.1 -p "$port" -t "$test" -s "$s" -n "$it" -w "$w" -v -f)
	run_pair "$row" ucx "$s" "s$s" "$port"
}

measure_ucx() {
	[ $HAVE_UCX = 1 ] || return
	local s it
	for s in $PEER_SIZES; do
		ucx_pair ucx_put ucp_put_bw "$s" "$(iters_for "$s")"
		ucx_pair ucx_put_tuned ucp_put_bw "$s" "$(iters_for "$s")" UCX_TCP_TX_SEG_SIZE=64k UCX_TCP_RX_SEG_SIZE=64k
	done
	# ucp_get over tcp runs about one get at a time (a few MB/s at 4K): cap it
	for s in $TABLE_SIZES; do
		it=$(iters_for "$s")
		[ "$it" -gt 1000 ] && it=1000
		ucx_pair ucx_get ucp_get "$s" "$it"
	done
	ucx_pair ucx_put ucp_put_lat 8 "$LAT_ITERS"
}

START=$SECONDS
for RUN in $(seq 1 "$RUNS"); do
	if [ $RUN -gt 1 ] && [ $((SECONDS - START)) -ge "$MAX_SECONDS" ]; then
		note "time limit: stopped after $((RUN - 1)) of $RUNS runs (BENCH_MAX_SECONDS=$MAX_SECONDS)"
		break
	fi
	echo "compare.sh: run $RUN/$RUNS ($((SECONDS - START)) s so far)" >&2
	measure_tcp
	measure_pagewire
	measure_libfabric_rma
	measure_fi_pingpong
	measure_ucx
done
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
echo "seconds=$((SECONDS - START))" >>"$OUT/meta.txt"

# --------------------------------------------------------------- reporting
md_args=()
[ "$UPDATE_MD" = 1 ] && md_args=(--md "$ROOT/BENCHMARKS.md")
"$PY" "$BENCH/bench.py" "$OUT" "${md_args[@]}"

# The four fault policies on an overcommitted target (root: zram
# swap and a memory cgroup; skipped with a note otherwise). BENCH_OVERCOMMIT=0
# leaves it out.
if [ "${BENCH_OVERCOMMIT:-1}" = 1 ]; then
	PAGEWIRE_PERF=$PERF BENCH_RUNS=$RUNS BENCH_UPDATE_MD=$UPDATE_MD PY=$PY \
		bash "$BENCH/overcommit.sh" "$OUT"
fi

# The shared library against the static one: the same pagewire-perf on
# libpagewire.so.0 and on libpagewire.a, paired round by round.
# BENCH_SHARED_STATIC=0 leaves it out.
if [ "${BENCH_SHARED_STATIC:-1}" = 1 ]; then
	PAGEWIRE_PERF=$PERF BENCH_RUNS=$RUNS BENCH_UPDATE_MD=$UPDATE_MD PY=$PY \
		bash "$BENCH/shared_static.sh" "$OUT"
fi

# The libfabric provider against libfabric's tcp provider and against
# pagewire-perf (fabtests; skipped with a note without a fabtests build).
# BENCH_FABRIC=0 leaves it out.
if [ "${BENCH_FABRIC:-1}" = 1 ]; then
	PAGEWIRE_PERF=$PERF BENCH_RUNS=$RUNS BENCH_UPDATE_MD=$UPDATE_MD PY=$PY \
		bash "$BENCH/fabric.sh" "$OUT"
fi
