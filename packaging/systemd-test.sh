#!/usr/bin/env bash
# The operator's path under a real systemd: boots Debian bookworm in a
# systemd-nspawn container, installs the two .deb packages that
# packaging/check.sh built, and walks what README.md tells an operator to
# do, with an assertion at each step (packaging/README.md lists them):
#
#   start → active; a `logger` line and a file line reach the spool; status
#   lists every configured source with its state; a reload is applied and
#   recorded; a broken reload is refused visibly; a broken restart ends
#   `failed`; SIGSTOP → watchdog restart; enrolment exactly as README says →
#   records and receipts flow and both sides verify; the collector's
#   warnings at warning priority; stop leaves a `stop` record and no
#   warning; remove and purge keep spool, key and store.
#
#   packaging/systemd-test.sh          (root; after packaging/check.sh)
#
# It builds nothing. The container's root is copied from a cached
# debootstrap base ($WORMLOG_SYSD_BASE, default /var/tmp/sysd-base), made
# once if missing (needs debootstrap and the Debian mirror; about a minute
# on a CI machine), with every package the .debs and the test need already
# in its apt cache: the container has no network. Needs systemd-nspawn
# (systemd-container), nsenter and chattr on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${WORMLOG_SYSD_BASE:-/var/tmp/sysd-base}
# What the base holds; a different list makes a new base.
include=systemd,systemd-sysv,dbus,curl,openssl,e2fsprogs,procps,iproute2,ca-certificates,python3
base_id="bookworm minbase $include"
t_start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
die() { echo "FATAL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (systemd-nspawn)"
for tool in systemd-nspawn nsenter chattr cargo python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install systemd-container util-linux e2fsprogs)"
done

target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
# The newest of each, as packaging/check.sh left them.
agent_deb=$(ls -t "$target"/debian/wormlog_*.deb 2>/dev/null | head -n 1 || true)
collector_deb=$(ls -t "$target"/debian/wormlog-collector_*.deb 2>/dev/null | head -n 1 || true)
[ -n "$agent_deb" ] && [ -n "$collector_deb" ] ||
    die "no .deb files in $target/debian: run packaging/check.sh first"

# ---------------------------------------------------------------- the base
make_base() {
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local tmp="$base.tmp.$$"
    rm -rf "$tmp"
    say "creating the debootstrap base $base (once)"
    local t0; t0=$(date +%s)
    debootstrap --variant=minbase --include="$include" bookworm "$tmp" ||
        { rm -rf "$tmp"; die "debootstrap failed"; }
    # Whatever the packages depend on beyond the base, into its apt cache
    # (the container has no network).
    mkdir -p "$tmp/share"
    cp "$agent_deb" "$collector_deb" "$tmp/share/"
    chroot "$tmp" /bin/sh -c 'apt-get update -qq && apt-get install -y --download-only --no-install-recommends /share/*.deb' >/dev/null ||
        { rm -rf "$tmp"; die "downloading the packages' dependencies failed"; }
    rm -rf "$tmp/share"
    echo "$base_id" > "$tmp/.wormlog-sysd-base"
    rm -rf "$base"
    mv "$tmp" "$base"
    echo "base made in $(( $(date +%s) - t0 ))s"
}
# The packages' dependencies are part of what the base must hold.
base_id="$base_id; $(dpkg-deb -f "$agent_deb" Depends); $(dpkg-deb -f "$collector_deb" Depends)"
if [ "$(cat "$base/.wormlog-sysd-base" 2>/dev/null)" != "$base_id" ]; then
    make_base
fi

# ------------------------------------------------------------- the machine
run_id=$$
root=$(mktemp -d /var/tmp/wormlog-sysd-root.XXXXXX)
share=$(mktemp -d /var/tmp/wormlog-sysd-share.XXXXXX)
out="$root.nspawn.log"
npid=""
cleanup() {
    local rc=$?
    if [ -n "$npid" ] && kill -0 "$npid" 2>/dev/null; then
        kill "$npid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$npid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$npid" 2>/dev/null || true
    fi
    chattr -R -ia "$root" 2>/dev/null || true
    rm -rf "$root" "$share" "$out"
    exit "$rc"
}
trap cleanup EXIT INT TERM

say "a fresh root from the base"
cp -a --reflink=auto "$base/." "$root/"
cp "$agent_deb" "$collector_deb" "$share/"
echo wormtest > "$root/etc/hostname"

# What running systemd in nspawn here takes (learned 2026-12):
# --keep-unit and --register=no, since there is no system bus on the host
# for machined; --private-network leaves loopback only, hence the packages
# in the base's apt cache; nspawn's fake boot id is undone inside (below);
# auditd cannot run in a container (no audit netlink), so the packaged
# audit source waits for its path; the machine is stopped by killing the
# nspawn process (no machinectl without registration), and the root
# removed after `chattr -R -ia` (sealed segments are immutable).
say "booting it"
setsid systemd-nspawn -D "$root" --machine="wormtest$run_id" --register=no --keep-unit \
    --private-network --bind-ro="$share:/share" --console=passive -b \
    </dev/null >"$out" 2>&1 &
npid=$!
# The container's PID 1: the child of nspawn that has become systemd (an
# earlier child of nspawn is a short-lived helper).
pid1=""
deadline=$(( $(date +%s) + 30 ))
while [ -z "$pid1" ]; do
    pid1=$(ps -o pid=,comm= --ppid "$npid" 2>/dev/null | awk '$2 == "systemd" { print $1; exit }' || true)
    kill -0 "$npid" 2>/dev/null || { cat "$out"; die "systemd-nspawn exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$out"; die "the container did not start"; }
    [ -n "$pid1" ] || sleep 0.2
done

# A command inside the container (bash -c), with its output.
inside() {
    nsenter -t "$pid1" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LC_ALL=C.UTF-8 /bin/bash -c "$1"
}
state=$(inside 'timeout 120 systemctl is-system-running --wait' || true)
case "$state" in
    running|degraded) ;;
    *) cat "$out"; die "the container did not boot: $state" ;;
esac
# The view of the boot id a real host has (see /work/shared/testing notes:
# nspawn's fake boot id versus the kernel's behind ProtectProc=).
inside 'umount /proc/sys/kernel/random/boot_id && systemctl restart systemd-journald'
t_booted=$(date +%s)
echo "booted in $(( t_booted - t_start ))s"

# ------------------------------------------------------------- assertions
failures=()
current=""
step() { current="$*"; say "$*"; }
journal() {
    echo "---- journal (wormlog, wormlog-collector), last 25 lines:" >&2
    inside 'journalctl --no-pager -o short-precise -n 25 -u wormlog -u wormlog-collector' >&2 || true
    echo "----" >&2
}
ok() { echo "ok: $*"; }
fail() {
    echo "FAIL [$current]: $*" >&2
    failures+=("[$current] $*")
    journal
}
# check "what" 'command inside': passes when the command exits 0.
check() {
    local what=$1 cmd=$2 got
    if got=$(inside "$cmd" 2>&1); then
        ok "$what"
    else
        fail "$what: $got"
    fi
}
# eventually SECONDS "what" 'command inside': polls until it exits 0.
eventually() {
    local secs=$1 what=$2 cmd=$3 got
    local deadline=$(( $(date +%s) + secs ))
    while :; do
        if got=$(inside "$cmd" 2>&1); then
            ok "$what"
            return 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "$what (after ${secs}s): $got"
            return 0
        fi
        sleep 0.5
    done
}
# The records of the spool, as JSON lines (as root: the spool is 0700).
cat_spool='wormlog cat --spool /var/lib/wormlog/spool --json'

step "install both packages (offline, from /share)"
if got=$(inside 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /share/wormlog_*.deb /share/wormlog-collector_*.deb' 2>&1); then
    ok "apt-get install"
else
    echo "$got" >&2
    die "the packages do not install offline (is a dependency missing from the base's apt cache?)"
fi
grep -q "/var/lib/wormlog/keys/host.pub: ed25519:" <<<"$got" &&
    ! grep -qi "above" <<<"$got" &&
    ok "the post-install text names the public key and where it is" ||
    fail "post-install text: $(grep wormlog: <<<"$got")"

step "configure the agent as README says: an id, a log file, metrics"
inside 'mkdir -p /var/log/app && echo "file line one" >> /var/log/app/app.log
    sed -i "s/^# id = \"web-01\".*/id = \"web-01\"/" /etc/wormlog/agent.toml
    cat >> /etc/wormlog/agent.toml <<EOF

[[sources.file]]
name = "app"
paths = ["/var/log/app/*.log"]

[metrics]
listen = "127.0.0.1:9810"
EOF'
# A shorter watchdog than the unit's 30 s, so that the SIGSTOP step takes
# seconds; the mechanism is the unit's.
inside 'mkdir -p /run/systemd/system/wormlog.service.d && printf "[Service]\nWatchdogSec=6s\n" > /run/systemd/system/wormlog.service.d/test.conf && systemctl daemon-reload'
check "check-config passes as the service user" \
    'runuser -u wormlog -- wormlog check-config --config /etc/wormlog/agent.toml'

step "start → active"
check "systemctl start wormlog" 'systemctl start wormlog'
check "wormlog is active" 'systemctl is-active wormlog'

step "a logger line and a file line in the spool"
inside 'logger -t wormtest "journal line $(cat /proc/sys/kernel/random/uuid)" ; echo "file line two" >> /var/log/app/app.log'
eventually 30 "the logger line is in the spool" \
    "$cat_spool | grep '\"source\":\"journal\"' | grep -q 'journal line '"
eventually 30 "the file lines are in the spool" \
    "$cat_spool | grep '\"source\":\"app\"' | grep -q 'file line two'"

step "status lists every configured source, with its state"
status_check='wormlog status --config /etc/wormlog/agent.toml --json | python3 -c "
import json, sys
v = json.load(sys.stdin)
s = v[\"sources\"]
want = {\"journal\": \"reading\", \"audit\": \"waiting-for-path\", \"app\": \"reading\"}
got = {k: s.get(k, {}).get(\"state\") for k in want}
assert got == want, (got, s)
assert s[\"audit\"][\"kind\"] == \"auditd\" and \"audit.log\" in s[\"audit\"][\"state_detail\"], s[\"audit\"]
"'
eventually 20 "status: journal reading, audit waiting-for-path, app reading" "$status_check"
check "status for a person lists the silent audit source" \
    'wormlog status --config /etc/wormlog/agent.toml | grep -E "source +audit: auditd waiting-for-path"'
check "the metrics show the silent source's state" \
    'curl -sf http://127.0.0.1:9810/metrics | grep -E "^wormlog_source_state\{.*source=\"audit\".*\} 1$" | grep -q waiting-for-path'
check "the log says the audit log does not exist" \
    'journalctl -u wormlog --no-pager | grep -q "source audit: no readable file matches /var/log/audit/audit.log"'

step "reload: applied and recorded"
inside 'sed -i "s/^disk_budget = .*/disk_budget = \"3GiB\"/" /etc/wormlog/agent.toml'
check "systemctl reload wormlog" 'systemctl reload wormlog'
eventually 20 "a config record with the new file's SHA-256" \
    "$cat_spool | grep '\"kind\":\"config\"' | grep -q \"\$(sha256sum /etc/wormlog/agent.toml | cut -c1-64)\""

step "a broken reload is refused visibly"
pid_before=$(inside 'systemctl show -p MainPID --value wormlog')
inside 'cp /etc/wormlog/agent.toml /root/agent.toml.good && printf "\n[spool]\nbroken = \n" >> /etc/wormlog/agent.toml'
if inside 'systemctl reload wormlog' >/dev/null 2>&1; then
    fail "systemctl reload with a broken file succeeded"
else
    ok "systemctl reload with a broken file fails"
fi
check "the journal names the file, line and column" \
    'journalctl -u wormlog --no-pager | grep -qE "/etc/wormlog/agent.toml:[0-9]+:[0-9]+:"'
check "still active, same process" \
    "systemctl is-active wormlog && [ \"\$(systemctl show -p MainPID --value wormlog)\" = $pid_before ]"

step "a broken restart ends failed"
inside 'systemctl restart wormlog' >/dev/null 2>&1 && fail "restart with a broken file succeeded" || true
eventually 60 "wormlog ends failed (no endless auto-restart)" \
    '[ "$(systemctl show -p ActiveState --value wormlog)" = failed ]'
sleep 6  # longer than RestartSec: it must stay failed
check "and stays failed" '[ "$(systemctl show -p ActiveState --value wormlog)" = failed ]'
check "its journal has the file:line:column" \
    'journalctl -u wormlog --no-pager -n 50 | grep -qE "agent.toml:[0-9]+:[0-9]+:"'
inside 'cp /root/agent.toml.good /etc/wormlog/agent.toml && systemctl reset-failed wormlog'
check "fixed, it starts again" 'systemctl start wormlog && systemctl is-active wormlog'

step "SIGSTOP → watchdog restart"
pid_before=$(inside 'systemctl show -p MainPID --value wormlog')
inside "kill -STOP $pid_before"
eventually 60 "the watchdog restarted the agent (new main PID, active)" \
    "[ \"\$(systemctl show -p MainPID --value wormlog)\" != $pid_before ] && [ \"\$(systemctl show -p MainPID --value wormlog)\" != 0 ] && systemctl is-active wormlog"
check "the journal says watchdog" \
    'journalctl -u wormlog --no-pager | grep -qi "watchdog timeout"'

step "enrolment exactly as README says"
# The certificates: README "Forwarding to a collector", step 1, verbatim
# (bash for the <(...)).
inside 'mkdir -p /root/pki && cd /root/pki &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=wormlog CA" -keyout ca-key.pem -out ca.pem &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=collector" \
        -keyout collector-key.pem -out collector.csr &&
    openssl x509 -req -in collector.csr -CA ca.pem -CAkey ca-key.pem -days 825 \
        -extfile <(printf "subjectAltName=DNS:collector.example") -out collector.pem &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=web-01" \
        -keyout agent-key.pem -out agent.csr &&
    openssl x509 -req -in agent.csr -CA ca.pem -CAkey ca-key.pem -days 825 \
        -extfile <(printf "subjectAltName=DNS:web-01") -out agent.pem' >/dev/null 2>&1 ||
    fail "the openssl commands of README failed"
# Copying them, with the owners and modes README gives (agent and
# collector on one machine here).
inside 'cd /root/pki &&
    install -m 0644 -o root -g root ca.pem /etc/wormlog/ca.pem &&
    install -m 0640 -o root -g wormlog agent.pem agent-key.pem /etc/wormlog/ &&
    install -m 0640 -o root -g wormlog-collector collector.pem collector-key.pem /etc/wormlog/ &&
    echo "127.0.0.1 collector.example" >> /etc/hosts'
# The collector: step 2 (store_dir as packaged).
inside 'sed -i -e "/^\[collector\]/,/^\[/ s|^listen = .*|listen = \"0.0.0.0:8443\"|" \
        -e "s|^# tls_cert = .*|tls_cert = \"/etc/wormlog/collector.pem\"|" \
        -e "s|^# tls_key = .*|tls_key = \"/etc/wormlog/collector-key.pem\"|" \
        -e "s|^# client_ca = .*|client_ca = \"/etc/wormlog/ca.pem\"|" /etc/wormlog/collector.toml &&
    printf "\n[[agents]]\nid = \"web-01\"\npubkey = \"%s\"\n" "$(cat /var/lib/wormlog/keys/host.pub)" >> /etc/wormlog/collector.toml'
check "collector check-config passes as its service user" \
    'runuser -u wormlog-collector -- wormlog-collector check-config --config /etc/wormlog/collector.toml'
check "systemctl start wormlog-collector" 'systemctl start wormlog-collector'
check "the collector is active" 'systemctl is-active wormlog-collector'
# The agent: step 3.
inside 'cat >> /etc/wormlog/agent.toml <<EOF

[forward]
url = "https://collector.example:8443"
ca_file = "/etc/wormlog/ca.pem"
cert_file = "/etc/wormlog/agent.pem"
key_file = "/etc/wormlog/agent-key.pem"
EOF'
check "agent check-config passes as the service user" \
    'runuser -u wormlog -- wormlog check-config --config /etc/wormlog/agent.toml'
check "systemctl reload wormlog (forwarding on)" 'systemctl reload wormlog'
inside 'logger -t wormtest "forwarded line"'
eventually 60 "the collector holds the agent's records" \
    "wormlog-collector cat --store /var/lib/wormlog-collector/store --agent web-01 --json | grep -q 'forwarded line'"
eventually 60 "receipts come back into the agent's chain" \
    "$cat_spool | grep -q '\"kind\":\"receipt\"'"
eventually 60 "status: nothing behind once the collector holds everything" \
    'wormlog status --config /etc/wormlog/agent.toml | grep -q "all held by the collector"'

step "check-config opens the files it names, as the service user"
# The agent reads every file (CAP_DAC_READ_SEARCH): a file that is not
# there is what it can fail on.
inside 'mv /etc/wormlog/agent-key.pem /etc/wormlog/agent-key.pem.away'
if inside 'systemctl reload wormlog' >/dev/null 2>&1; then
    fail "a reload with a missing client key succeeded"
else
    ok "a reload with a missing client key fails"
fi
check "the journal names the missing key file" \
    'journalctl -u wormlog --no-pager -n 30 | grep -q "key_file /etc/wormlog/agent-key.pem: cannot read"'
inside 'mv /etc/wormlog/agent-key.pem.away /etc/wormlog/agent-key.pem'
inside 'chmod 0600 /etc/wormlog/collector-key.pem'
check "[collector work] collector check-config refuses a key its user cannot read" \
    '! runuser -u wormlog-collector -- wormlog-collector check-config --config /etc/wormlog/collector.toml'
inside 'chmod 0640 /etc/wormlog/collector-key.pem'

step "[collector work] the collector under systemd: Type=notify, metrics listener, warnings"
check "the collector unit is Type=notify" \
    '[ "$(systemctl show -p Type --value wormlog-collector)" = notify ]'
check "GET /health on the metrics listener, no client certificate" \
    'curl -sf http://127.0.0.1:9102/health'
check "GET /metrics on the metrics listener" \
    'curl -sf http://127.0.0.1:9102/metrics | grep -q "^wormlog_collector_"'
# A refused client: web-01's certificate writing another agent's chain.
inside 'curl -s -o /dev/null --cacert /etc/wormlog/ca.pem --cert /root/pki/agent.pem --key /root/pki/agent-key.pem \
    -X POST -H "Wormlog-Seq: 0" --data-binary x https://collector.example:8443/v1/agents/web-02/records' || true
eventually 10 "the refusal is logged at warning priority" \
    'journalctl -u wormlog-collector -p warning --no-pager | grep -q "web-02"'

step "the daily verification: timer enabled, a run recorded in the journal and the chain"
check "wormlog-verify.timer is enabled" 'systemctl is-enabled wormlog-verify.timer'
check "systemctl start wormlog-verify.service (exit 0: verified and recorded)" \
    'systemctl start wormlog-verify.service'
check "its result in the journal at priority info" \
    'journalctl -u wormlog-verify -p info --no-pager | grep -q "verify: OK: "'
eventually 15 "its result in the chain (source wormlog-verify)" \
    "$cat_spool | grep -q '\"source\":\"wormlog-verify\"'"

step "stop leaves a stop record and no warning"
cursor=$(inside 'journalctl -u wormlog -n 0 --show-cursor --no-pager | sed -n "s/^-- cursor: //p"')
check "systemctl stop wormlog" 'systemctl stop wormlog'
check "the last record is a stop record (and its checkpoint)" \
    "$cat_spool | grep -v '\"kind\":\"checkpoint\"' | tail -n 1 | grep -q '\"kind\":\"stop\"'"
check "no warning at the stop" \
    "[ -z \"\$(journalctl -u wormlog --after-cursor='$cursor' -p warning --no-pager -q)\" ]"
check "no journalctl-exited message at the stop" \
    "! journalctl -u wormlog --after-cursor='$cursor' --no-pager -q | grep -q 'journalctl exited'"
check "systemctl stop wormlog-collector" 'systemctl stop wormlog-collector'

step "both sides verify"
check "wormlog verify (the spool, with the host's public key)" \
    'wormlog verify --spool /var/lib/wormlog/spool --pubkey /var/lib/wormlog/keys/host.pub'
check "wormlog-collector verify (the store, as README names it)" \
    'wormlog-collector verify --store /var/lib/wormlog-collector/store'

step "remove and purge keep spool, key and store"
check "apt-get remove" 'DEBIAN_FRONTEND=noninteractive apt-get remove -y wormlog wormlog-collector >/dev/null'
check "after remove: spool, key, store" \
    'ls /var/lib/wormlog/spool/*.wlseg >/dev/null && [ -s /var/lib/wormlog/keys/host.key ] && [ -n "$(ls -A /var/lib/wormlog-collector/store)" ]'
check "apt-get purge" 'DEBIAN_FRONTEND=noninteractive apt-get purge -y wormlog wormlog-collector >/dev/null'
check "after purge: spool, key, store" \
    'ls /var/lib/wormlog/spool/*.wlseg >/dev/null && [ -s /var/lib/wormlog/keys/host.key ] && [ -n "$(ls -A /var/lib/wormlog-collector/store)" ]'

t_end=$(date +%s)
say "done in $(( t_end - t_start ))s (boot $(( t_booted - t_start ))s, steps $(( t_end - t_booted ))s)"
if [ "${#failures[@]}" -gt 0 ]; then
    echo "${#failures[@]} assertion(s) failed:" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "systemd test: all assertions passed"
