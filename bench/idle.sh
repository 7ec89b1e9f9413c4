#!/usr/bin/env bash
# An idle daemon watching N quiet files (default 100): CPU used over a
# window (default 30 s), as a percentage of one core, and its RSS.
#
#   bench/idle.sh [FILES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"; secs="${2:-30}"
work=/var/tmp/wormlog-idle
chattr -R -ia "$work" 2>/dev/null || true
rm -rf "$work"; mkdir -p "$work/logs"
for i in $(seq "$n"); do echo "quiet file $i" > "$work/logs/f$i.log"; done
cat > "$work/agent.toml" <<CFG
[agent]
id = "idle"
spool_dir = "$work/spool"
key_dir = "$work/keys"

[[sources.file]]
name = "quiet"
paths = ["$work/logs/*.log"]
CFG
cargo build --release --quiet -p wormlog
bin="$PWD/target/release/wormlog"
"$bin" keygen --key-dir "$work/keys" >/dev/null 2>&1
"$bin" run --config "$work/agent.toml" 2>"$work/err" &
pid=$!
sleep 5   # let it read the files once
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
sleep "$secs"
t1=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid"
python3 -c "print(f'idle daemon, $n quiet files, ${secs}s: {($t1-$t0)/$hz/$secs*100:.3f}% of one core, RSS {$rss/1024:.1f} MiB')"
chattr -R -ia "$work" 2>/dev/null || true
rm -rf "$work"
