#!/usr/bin/env bash
# wormlog demo: the daemon tails a sample log (through a logrotate-style
# rotation) into a sealed spool and forwards it to a local collector, which
# verifies, stores and countersigns it; a cron-style job appends to the spool
# too; both copies are read back and verified with the host's first public
# key; then a copy is tampered with and `verify` names the damage.
# Everything happens in one directory (default ./demo-out).
#
#   ./demo.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-demo-out}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building wormlog and wormlog-collector (release)"
cargo build --release --quiet -p wormlog -p wormlog-collector
bin="$PWD/target/release/wormlog"
collector_bin="$PWD/target/release/wormlog-collector"

if [ -d "$out" ]; then
  # Sealed segments are immutable (chattr +i): clear the flags to remove them.
  chattr -R -ia "$out" 2>/dev/null || true
  rm -rf "$out"
fi
mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"

say "wormlog keygen: the host key; the printed public key is all a verifier needs"
pubkey="$("$bin" keygen --key-dir "$out/keys")"
echo "$pubkey"

say "wormlog-collector serve: a local collector that knows this host's public key"
cat > "$out/collector.toml" <<CONFIG
[collector]
listen = "127.0.0.1:0"
store_dir = "$out/store"
id = "demo-collector"

[[agents]]
id = "demo-host"
pubkey = "$pubkey"
CONFIG
"$collector_bin" serve --config "$out/collector.toml" 2>"$out/collector.log" &
collector=$!
trap 'kill "$collector" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 200); do
  port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/collector.log" | head -n 1)"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$out/collector.log"; exit 1; }
echo "collector listening on 127.0.0.1:$port"

cat > "$out/agent.toml" <<CONFIG
[agent]
id = "demo-host"
spool_dir = "$out/spool"
key_dir = "$out/keys"
control_socket = "$out/control.sock"

[spool]
# "try": chattr +a / +i where the file system and CAP_LINUX_IMMUTABLE allow,
# a loud warning and an alert record in the chain where they do not.
append_only = "try"
# Signed checkpoints (each answered by a receipt from the collector) every
# 250 ms while lines arrive, instead of every 5 s, so the demo sees them.
checkpoint_interval = "250ms"

[[sources.file]]
name = "ehr"
# The glob matches the rotated names too: files are known by identity, so
# nothing is read twice.
paths = ["$out/logs/ehr.log*"]
poll_interval = "100ms"

[forward]
# Plain HTTP is allowed to a loopback address only; production uses https
# with a pinned CA and a client certificate (README: Forwarding).
url = "http://127.0.0.1:$port"
CONFIG

say "wormlog check-config"
"$bin" check-config --config "$out/agent.toml"

say "wormlog run: the daemon tails $out/logs/ehr.log"
"$bin" run --config "$out/agent.toml" 2>"$out/daemon.log" &
daemon=$!
trap 'kill "$daemon" "$collector" 2>/dev/null || true' EXIT
log="$out/logs/ehr.log"
printf '%s\n' \
  'Nov 26 07:00:01 ehr-01 sshd[811]: Accepted publickey for dr.jones from 10.0.4.17 port 51234' \
  'Nov 26 07:00:05 ehr-01 sudo: dr.jones : TTY=pts/0 ; PWD=/home/dr.jones ; USER=root ; COMMAND=/usr/bin/less /var/lib/ehr/patient-4711.json' \
  >> "$log"
sleep 0.5

say "a logrotate-style rotation: renamed (and written once more), then a new file"
mv "$log" "$log-20261126"
printf '%s\n' 'Nov 26 07:01:12 ehr-01 ehr-api[2301]: user=dr.jones action=READ record=patient-4711 result=ok' >> "$log-20261126"
printf 'Nov 26 07:01:13 ehr-01 ehr-api[2301]: user=\033[31mmallory\033[0m action=EXPORT note=\xe2\x80\xaetxt.exe invalid=\xff\xfe nul=\x00 end\n' >> "$log"
printf 'Nov 26 07:02:00 ehr-01 ehr-api[2301]: a last line without a newline' >> "$log"

# Wait (at most 20 s) until the four complete lines are in the collector's
# store and its receipt is back in the spool.
for _ in $(seq 200); do
  n=$("$collector_bin" cat --store "$out/store" --agent demo-host --json 2>/dev/null | grep -c '"kind":"entry"' || true)
  r=$("$bin" cat --spool "$out/spool" --json 2>/dev/null | grep -c '"kind":"receipt"' || true)
  [ "$n" -ge 4 ] && [ "$r" -ge 2 ] && break
  sleep 0.1
done
say "SIGTERM: the daemon writes what it read (the unfinished last line flagged), a stop record and a final signed checkpoint"
kill -TERM "$daemon"
wait "$daemon"
trap 'kill "$collector" 2>/dev/null || true' EXIT
cat "$out/daemon.log"

say "the collector's copy: verified against the same public key, countersigned"
"$collector_bin" verify --store "$out/store" --agent demo-host
"$collector_bin" cat --store "$out/store" --agent demo-host | grep -c 'ehr-01' | sed 's/^/log lines held by the collector: /'
echo "receipts in the agent's own chain: $("$bin" cat --spool "$out/spool" --json | grep -c '"kind":"receipt"')"
kill -TERM "$collector"
wait "$collector" || true
trap - EXIT

say "wormlog append: a cron job's output, as its own source"
printf 'nightly backup of /var/lib/ehr: 4711 records, ok\n' | "$bin" append --config "$out/agent.toml" --source backup

say "wormlog cat: control and bidi characters are escaped, bytes kept exactly"
"$bin" cat --spool "$out/spool"

say "wormlog cat --json (first entry)"
"$bin" cat --spool "$out/spool" --json | grep '"kind":"entry"' | head -n 1

say "wormlog verify --pubkey (exit code 0 = intact)"
"$bin" verify --spool "$out/spool" --pubkey "$pubkey"

say "the segment is write-once on disk"
lsattr "$out"/spool/*.wlseg 2>/dev/null || echo "(lsattr not available here)"

say "an intruder edits one byte of a copy of the spool…"
cp -r "$out/spool" "$out/tampered"
chattr -R -ia "$out/tampered" 2>/dev/null || true
seg="$(ls "$out"/tampered/*.wlseg | head -n 1)"
python3 - "$seg" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
i = b.find(b"result=ok")
assert i >= 0, "sample line not found"
b[i + 7:i + 9] = b"no"
open(p, "wb").write(b)
print(f"changed 'result=ok' to 'result=no' at byte {i + 7} of {p}")
PY

say "…and wormlog verify names where (exit code 1)"
set +e
"$bin" verify --spool "$out/tampered" --pubkey "$pubkey"
code=$?
set -e
echo "exit code: $code"
[ "$code" -eq 1 ]

say "done: the spool is in $out/spool (remove with: chattr -R -ia $out && rm -rf $out)"
