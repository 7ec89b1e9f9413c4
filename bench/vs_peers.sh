#!/usr/bin/env bash
# The file-source benchmark beside rsyslog and syslog-ng, in the same run,
# alternating, RUNS times each (default 3): a file of 200-byte lines
# (default 1 GiB) read from its start into durable storage. Peers at their
# default (a) and most durable batched setting (b2); see ../shared/bench.
# Each round also runs `wormlog append` and the file source with
# `[spool] encrypt_to` (encryption at rest, one age recipient).
#
#   bench/vs_peers.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
kit="$(cd ../shared/bench && pwd)"
mib="${1:-1024}"; runs="${2:-3}"
work=/var/tmp/wormlog-bench
mkdir -p "$work"
command -v /usr/bin/time >/dev/null || { apt-get update -qq; apt-get install -y -qq time; }
"$kit/install_peers.sh" "$work/peers" >/dev/null
[ -x "$work/gen_lines" ] || cc -O2 -o "$work/gen_lines" "$kit/gen_lines.c"
input="$work/in-${mib}m.log"
lines=$(( mib * 1024 * 1024 / 200 ))
[ -f "$input" ] || "$work/gen_lines" "$lines" "$input"
cargo build --release --quiet -p wormlog
# Encryption at rest in the same rounds: one age recipient.
command -v age-keygen >/dev/null || { apt-get update -qq; apt-get install -y -qq age; }
[ -f "$work/age-id.txt" ] || age-keygen -o "$work/age-id.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/age-id.txt")
echo "# $(date -u +%FT%TZ) $(nproc) cores; input $input ($lines lines of 200 bytes)"
for i in $(seq "$runs"); do
  python3 bench/file_source.py "$PWD/target/release/wormlog" "$input" "$work"
  WORMLOG_BENCH_APPEND=1 python3 bench/file_source.py "$PWD/target/release/wormlog" "$input" "$work"
  WORMLOG_BENCH_ENCRYPT_TO="$recipient" python3 bench/file_source.py "$PWD/target/release/wormlog" "$input" "$work"
  for peer in rsyslog syslog-ng; do
    for mode in a b2; do
      python3 "$kit/run_peer.py" "$peer" "$mode" "$input" "$work/peer-runs" "$work/peers"
    done
  done
done
