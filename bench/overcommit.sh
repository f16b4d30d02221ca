#!/usr/bin/env bash
# bench/overcommit.sh: the four fault policies on one overcommitted target,
# in one run: pinned, stall, drop, notify, interleaved, BENCH_RUNS times
# each, `pagewire-perf overcommit` inside a memory cgroup (v1) and with a
# zram swap device, both set up here as root and torn down
# on exit. Medians go into BENCHMARKS.md between the overcommit markers.
#
#   bench/overcommit.sh [OUT_DIR]          (compare.sh calls it)
#
# Environment: BENCH_RUNS (5), BENCH_QUICK=1 (3 s per run), BENCH_UPDATE_MD
# (1), PAGEWIRE_PERF, OC_BUDGET (64M), OC_RATIO (8), OC_SECONDS (10),
# OC_CGROUP_LIMIT (256M: the target's budget, the initiator, the libraries
# fit; the pinned region does not), ZRAM_SIZE (1G).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bench/out}
RUNS=${BENCH_RUNS:-5}
PERF=${PAGEWIRE_PERF:-$ROOT/build/bin/pagewire-perf}
BUDGET=${OC_BUDGET:-64M}
RATIO=${OC_RATIO:-8}
SECS=${OC_SECONDS:-10}
[ "${BENCH_QUICK:-0}" = 1 ] && SECS=${OC_SECONDS:-3}
LIMIT=${OC_CGROUP_LIMIT:-256M}
export ZRAM_SIZE=${ZRAM_SIZE:-1G}
RAW=$OUT/overcommit.jsonl
mkdir -p "$OUT"
: >"$RAW"

note() { echo "overcommit.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	note "SKIP: needs root (zram swap and a memory cgroup)"
	exit 0
fi
if [ -z "${OC_IN_ZRAM:-}" ]; then
	# once, around everything: a fresh zram swap device, torn down after
	OC_IN_ZRAM=1 sh "$ROOT/tests/scripts/with_zram_swap.sh" bash "$0" "$OUT"
	rc=$?
	[ $rc = 77 ] && note "SKIP: no zram swap here"
	exit 0
fi
CG=/sys/fs/cgroup/memory
if [ ! -d "$CG" ]; then
	note "SKIP: no cgroup v1 memory controller at $CG"
	exit 0
fi
CGD=$CG/pagewire-overcommit-$$
mkdir "$CGD" || { note "SKIP: cannot create $CGD"; exit 0; }
cleanup() {
	# move ourselves out before removing it
	echo $$ >"$CG/cgroup.procs" 2>/dev/null
	rmdir "$CGD" 2>/dev/null
}
trap cleanup EXIT INT TERM
echo "$LIMIT" >"$CGD/memory.limit_in_bytes" || { note "SKIP: cannot set the limit"; exit 0; }
# swap use counts against memsw when it exists; allow it generously
[ -e "$CGD/memory.memsw.limit_in_bytes" ] && echo -1 >"$CGD/memory.memsw.limit_in_bytes" 2>/dev/null

run_one() {
	local pol=$1
	# the subshell joins the cgroup, then becomes pagewire-perf
	timeout $((SECS * 3 + 120)) bash -c \
		"echo \$\$ >'$CGD/cgroup.procs' && exec '$PERF' overcommit --json --policy=$pol \
		 --budget=$BUDGET --ratio=$RATIO --seconds=$SECS" 2>>"$OUT/overcommit.err" |
		grep '"test":"overcommit"' >>"$RAW" ||
		echo "{\"test\":\"overcommit\",\"policy\":\"$pol\",\"verified\":false,\"error\":\"pagewire-perf failed (see overcommit.err)\"}" >>"$RAW"
}

for r in $(seq 1 "$RUNS"); do
	note "run $r/$RUNS"
	for pol in pinned stall drop notify; do
		run_one "$pol"
	done
done

"${PY:-python3}" - "$RAW" "$ROOT/BENCHMARKS.md" "${BENCH_UPDATE_MD:-1}" \
	"$BUDGET" "$RATIO" "$SECS" "$LIMIT" "$ZRAM_SIZE" "$RUNS" <<'EOF'
import json, statistics, sys, time
raw, md, update, budget, ratio, secs, limit, zram, runs = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
pols = ["pinned", "stall", "drop", "notify"]
def med(p, k):
    v = [r[k] for r in rows if r.get("policy") == p and k in r and r.get("verified")]
    return statistics.median(v) if v else None
out = []
out.append("Produced by `bench/overcommit.sh` (run by `make bench`) on %s: "
           "`pagewire-perf overcommit --budget=%s --ratio=%s --seconds=%s`, "
           "%s runs per policy, medians; the whole tool in a memory cgroup "
           "limited to %s, with a %s zram swap device. Random 4 KiB WRITEs "
           "and READs, 16 in flight, over a region %s times the budget; every "
           "byte verified at the end."
           % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), budget, ratio,
              secs, runs, limit, zram, ratio))
out.append("")
out.append("| policy | verified runs | ops/s | vs DROP | p50 us | p99 us | target peak RSS | faults | invalidations | notifications | FAULT_IN | resent bytes | wasted bytes | stall s |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
drop = med("drop", "ops_per_s")
for p in pols:
    n = sum(1 for r in rows if r.get("policy") == p and r.get("verified"))
    errs = sorted({r.get("error", "") for r in rows if r.get("policy") == p and not r.get("verified")})
    if not n:
        out.append("| %s | 0/%s | %s | | | | | | | | | | | |" % (p, runs, "; ".join(e for e in errs if e) or "failed"))
        continue
    f = lambda k, fmt="%.0f": (fmt % med(p, k)) if med(p, k) is not None else ""
    out.append("| %s | %d/%s | %s | %s | %s | %s | %.0f MiB | %s | %s | %s | %s | %s | %s | %.2f |" % (
        p, n, runs, f("ops_per_s"),
        ("%.2fx" % (med(p, "ops_per_s") / drop)) if drop else "",
        f("lat_p50_us", "%.0f"), f("lat_p99_us", "%.0f"),
        med(p, "peak_rss_bytes") / 2**20, f("faults"), f("invalidations"),
        f("notifications"), f("fault_in_sent"), f("retransmitted_bytes"),
        f("wasted_bytes"), (med(p, "stall_ns") or 0) / 1e9))
text = "\n".join(out)
print(text)
if update == "1":
    s = open(md).read()
    b, e = "<!-- overcommit:begin -->", "<!-- overcommit:end -->"
    block = b + "\n" + text + "\n" + e
    if b in s and e in s:
        s = s[:s.index(b)] + block + s[s.index(e) + len(e):]
    else:
        s = s.rstrip("\n") + "\n\n## Overcommit: the four policies\n\n" + block + "\n"
    open(md, "w").write(s)
EOF
