#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/shared_static.sh: what the shared library costs. pagewire-perf
# (libpagewire.so.0: PIC, calls into the library through the PLT) against
# pagewire-perf-static (libpagewire.a), the same tool built from the same
# objects, paired: each round runs both back to back, the order swapped every
# round, and the figure is the median over rounds of the per-round ratio, so
# the machine's drift cancels. Writes OUT/shared_static.jsonl and, with
# BENCH_UPDATE_MD=1 (default), the table between the shared-static markers
# of BENCHMARKS.md.
#
#   bench/shared_static.sh [OUT_DIR]          (compare.sh calls it)
#
# Environment: BENCH_RUNS (rounds, default 7), BENCH_QUICK=1 (fewer
# iterations), BENCH_UPDATE_MD, PAGEWIRE_PERF, PAGEWIRE_PERF_STATIC, PY.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bench/out}
RUNS=${BENCH_RUNS:-7}
SHARED=${PAGEWIRE_PERF:-$ROOT/build/bin/pagewire-perf}
STATIC=${PAGEWIRE_PERF_STATIC:-$(dirname "$SHARED")/pagewire-perf-static}
PY=${PY:-python3}
UPDATE_MD=${BENCH_UPDATE_MD:-1}
LAT_N=20000; BW_N=20000
[ "${BENCH_QUICK:-0}" = 1 ] && { LAT_N=5000; BW_N=5000; }
RAW=$OUT/shared_static.jsonl
mkdir -p "$OUT"
: >"$RAW"
note() { echo "shared_static.sh: $*" >&2; }
for b in "$SHARED" "$STATIC"; do
	[ -x "$b" ] || { note "SKIP: $b not built"; exit 0; }
done
ldd "$SHARED" | grep -q libpagewire.so.0 || { note "SKIP: $SHARED is not linked with libpagewire.so.0"; exit 0; }

# case: name test args...
CASES=(
	"write_lat_8|write_lat -s 8 -n $LAT_N"
	"send_lat_8|send_lat -s 8 -n $LAT_N"
	"write_bw_64K|write_bw -s 64K -n $BW_N"
	"write_bw_1M|write_bw -s 1M -n $((BW_N / 4))"
	"read_bw_64K|read_bw -s 64K -n $BW_N"
)
for ((r = 0; r < RUNS; r++)); do
	for c in "${CASES[@]}"; do
		name=${c%%|*}
		read -r -a args <<<"${c#*|}"
		order=(shared static)
		[ $((r % 2)) = 1 ] && order=(static shared)
		for kind in "${order[@]}"; do
			bin=$SHARED
			[ $kind = static ] && bin=$STATIC
			line=$("$bin" "${args[@]}" --loopback --json 2>/dev/null | tail -1)
			if [ -z "$line" ]; then
				note "round $r $name $kind: no result"
				continue
			fi
			echo "{\"round\":$r,\"case\":\"$name\",\"lib\":\"$kind\",\"r\":$line}" >>"$RAW"
		done
	done
done

table=$("$PY" - "$RAW" <<'PYEOF'
import json, statistics, sys
raw = sys.argv[1]
rows = {}
for l in open(raw):
    j = json.loads(l)
    v = j["r"].get("lat_p50_us", j["r"].get("bw_MBps"))
    rows.setdefault(j["case"], {}).setdefault(j["round"], {})[j["lib"]] = v
out = ["| case | static (median) | shared (median) | shared/static per round: median | min .. max | rounds |",
       "|---|---|---|---|---|---|"]
for case, rounds in rows.items():
    pairs = [(x["shared"], x["static"]) for x in rounds.values() if "shared" in x and "static" in x]
    if not pairs:
        continue
    unit = "us p50" if "lat" in case else "MB/s"
    ratios = [s / t for s, t in pairs]
    out.append("| %s | %.2f %s | %.2f %s | %.3f | %.3f .. %.3f | %d |" % (
        case, statistics.median(t for _, t in pairs), unit,
        statistics.median(s for s, _ in pairs), unit,
        statistics.median(ratios), min(ratios), max(ratios), len(pairs)))
print("\n".join(out))
PYEOF
)
echo "$table"
[ "$UPDATE_MD" = 1 ] && echo "$table" | "$PY" "$ROOT/bench/md_section.py" "$ROOT/BENCHMARKS.md" shared-static
exit 0
