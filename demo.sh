#!/usr/bin/env bash
# wormlog demo: seal a sample log into a spool, read it back, verify it with
# the host's first public key, then tamper with a copy and watch `verify`
# name the damage. Everything happens in one directory (default ./demo-out).
#
#   ./demo.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-demo-out}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building wormlog (release)"
cargo build --release --quiet -p wormlog
bin="$PWD/target/release/wormlog"

if [ -d "$out" ]; then
  # Sealed segments are immutable (chattr +i): clear the flags to remove them.
  chattr -R -ia "$out" 2>/dev/null || true
  rm -rf "$out"
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

cat > "$out/agent.toml" <<EOF
[agent]
id = "demo-host"
spool_dir = "$out/spool"
key_dir = "$out/keys"

[spool]
# "try": chattr +a / +i where the file system and CAP_LINUX_IMMUTABLE allow,
# a loud warning and an alert record in the chain where they do not.
append_only = "try"
EOF

say "wormlog keygen: the host key; the printed public key is all a verifier needs"
pubkey="$("$bin" keygen --key-dir "$out/keys")"
echo "$pubkey"

say "wormlog check-config"
"$bin" check-config --config "$out/agent.toml"

say "wormlog append: an embedded sample of an audit trail, hostile bytes included"
{
  printf '%s\n' \
    'Nov 26 07:00:01 ehr-01 sshd[811]: Accepted publickey for dr.jones from 10.0.4.17 port 51234' \
    'Nov 26 07:00:05 ehr-01 sudo: dr.jones : TTY=pts/0 ; PWD=/home/dr.jones ; USER=root ; COMMAND=/usr/bin/less /var/lib/ehr/patient-4711.json' \
    'Nov 26 07:01:12 ehr-01 ehr-api[2301]: user=dr.jones action=READ record=patient-4711 result=ok'
  printf 'Nov 26 07:01:13 ehr-01 ehr-api[2301]: user=\033[31mmallory\033[0m action=EXPORT note=\xe2\x80\xaetxt.exe invalid=\xff\xfe nul=\x00 end\n'
  printf 'Nov 26 07:02:00 ehr-01 ehr-api[2301]: a last line without a newline'
} | "$bin" append --config "$out/agent.toml" --source ehr

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
python3 - "$seg" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
i = b.find(b"result=ok")
b[i + 7:i + 9] = b"no"
open(p, "wb").write(b)
print(f"changed 'result=ok' to 'result=no' at byte {i + 7} of {p}")
EOF

say "…and wormlog verify names where (exit code 1)"
set +e
"$bin" verify --spool "$out/tampered" --pubkey "$pubkey"
code=$?
set -e
echo "exit code: $code"
[ "$code" -eq 1 ]

say "done: the spool is in $out/spool (remove with: chattr -R -ia $out && rm -rf $out)"
