#!/usr/bin/env bash
# Spool benchmarks: durable append (records/s, MB/s, cost per record beside
# SHA-256 alone), verify MB/s, time to reopen a 1 GiB spool. Medians of
# WORMLOG_BENCH_RUNS runs (default 3). Results go in docs/BENCHMARKS.md.
#
#   bench/spool.sh                       # defaults: 2,000,000 records, 1 GiB reopen
#   WORMLOG_BENCH_DIR=/mnt/x bench/spool.sh   # the disk under test
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
cargo bench -p wormlog-spool --bench spool 2>&1 | grep -v -E '^\s*(Compiling|Finished|Running)'
