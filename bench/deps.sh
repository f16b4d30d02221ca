#!/usr/bin/env bash
# Debian packages that bench/compare.sh needs, installed (when missing) by the
# project's own scripts/deps.sh (apt-get, as root):
#   ucx-utils      ucx_perftest (UCX over tcp)
#   libfabric-bin  fi_pingpong, fi_info (libfabric tcp provider)
#   libfabric-dev  headers + libfabric.so to build bench/fi_rma_bw.c
#   gnuplot-nox    the bandwidth-vs-size plot (SVG)
#   python3        bench/bench.py (parsing, medians, table, BENCHMARKS.md)
#   gcc            cc for the two helper programs
#   iproute2       ss, to wait until a server listens
#   procps         ps/pgrep-free process checks (kill -0 is enough) and uptime
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../scripts/deps.sh" ucx-utils libfabric-bin libfabric-dev gnuplot-nox python3 gcc iproute2 procps
