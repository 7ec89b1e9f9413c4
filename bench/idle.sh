#!/usr/bin/env bash
# An idle daemon watching N quiet files (default 100) of L lines each
# (default 20): once every line is in the spool, the CPU it uses over a
# window (default 30 s) as a percentage of one core (from the threads'
# schedstat, in nanoseconds), its resident memory (now and peak), and its
# open file descriptors.
#
#   bench/idle.sh [FILES] [SECONDS] [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"; secs="${2:-30}"; lines="${3:-20}"
work=/var/tmp/wormlog-idle
chattr -R -ia "$work" 2>/dev/null || true
rm -rf "$work"; mkdir -p "$work/logs"
python3 - "$work/logs" "$n" "$lines" <<'PY'
import sys
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(1, n + 1):
    with open(f"{d}/f{i}.log", "w") as f:
        f.writelines(f"quiet file {i} line {j} of a mail server's or a pod's log\n" for j in range(k))
PY
cat > "$work/agent.toml" <<CFG
[agent]
id = "idle"
spool_dir = "$work/spool"
key_dir = "$work/keys"
control_socket = "$work/control.sock"

[[sources.file]]
name = "quiet"
paths = ["$work/logs/*.log"]
CFG
cargo build --release --quiet -p wormlog
bin="$PWD/target/release/wormlog"
"$bin" keygen --key-dir "$work/keys" >/dev/null 2>&1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$bin" run --config "$work/agent.toml" 2>"$work/err" &
pid=$!
# Wait (at most 120 s) until every line is in the spool.
want=$((n * lines))
for _ in $(seq 1200); do
  got=$("$bin" status --config "$work/agent.toml" --json 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s.get("entries") or 0 for s in d.get("sources", {}).values()))' 2>/dev/null || echo 0)
  [ "$got" -ge "$want" ] && break
  sleep 0.1
done
sleep 2
cpu_ns() { cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s}'; }
t0=$(cpu_ns)
sleep "$secs"
t1=$(cpu_ns)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
fds=$(ls "/proc/$pid/fd" | wc -l)
[ -n "${WORMLOG_IDLE_PERF:-}" ] && perf record -F 4999 -g -o "$WORMLOG_IDLE_PERF" -p "$pid" -- sleep "${WORMLOG_IDLE_PERF_S:-20}" 2>/dev/null
kill -TERM "$pid"; wait "$pid"
entries=$("$bin" cat --spool "$work/spool" --json | grep -c '"kind":"entry"' || true)
python3 -c "print(f'idle daemon, $n quiet files of $lines lines ($entries of $want lines in the spool), ${secs}s: {($t1-$t0)/1e9/$secs*100:.4f}% of one core, RSS {$rss/1024:.1f} MiB (peak {$hwm/1024:.1f} MiB), {$fds} open descriptors')"
chattr -R -ia "$work" 2>/dev/null || true
rm -rf "$work"
