#!/usr/bin/env bash
# Builds the .deb and .rpm packages of wormlog and wormlog-collector and
# checks them on this machine (as CI does; needs root, cargo-deb,
# cargo-generate-rpm, lintian, rpm, rpmlint and systemd's tools):
#
#   * lintian and rpmlint, with every accepted finding explained in
#     packaging/README.md;
#   * the files and scripts of the .rpm (rpm -qpl, rpm -qp --scripts);
#   * the .deb installed with apt-get: files where documented, the system
#     user, the directories and their modes, the host key created once and
#     never replaced, `check-config` passing on the packaged configurations;
#   * the sysusers and tmpfiles entries (systemd-sysusers --dry-run,
#     systemd-tmpfiles --create into an empty root);
#   * systemd-analyze verify and security (exposure at most 2.0) on each
#     unit;
#   * an upgrade (reinstall) keeps a changed configuration and the key;
#     removal and purge keep the spool.
#
#   packaging/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

say "building (profile dist) and packaging"
# One build per binary: built together, cargo unifies the dependencies'
# features and the agent takes in the collector's (0.5 MB more code, about
# 0.7 MiB more resident while it runs; docs/BENCHMARKS.md).
cargo build --locked --profile dist -p wormlog
cargo build --locked --profile dist -p wormlog-collector
cargo deb --locked -p wormlog --profile dist --no-build
cargo deb --locked -p wormlog-collector --profile dist --no-build
cargo generate-rpm -p agent --profile dist
cargo generate-rpm -p collector --profile dist
# Where cargo put them (CARGO_TARGET_DIR may move it).
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
debs=("$target"/debian/wormlog_*.deb "$target"/debian/wormlog-collector_*.deb)
rpms=("$target"/generate-rpm/wormlog-[0-9]*.rpm "$target"/generate-rpm/wormlog-collector-*.rpm)
ls -l "${debs[@]}" "${rpms[@]}"

say "lintian"
lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs "${debs[@]}"

say "rpmlint"
rpmlint -r packaging/rpmlintrc "${rpms[@]}"

say "the .rpm: files, configuration files, scripts"
files=$(rpm -qpl "${rpms[0]}")
for f in /usr/bin/wormlog /etc/wormlog/agent.toml /usr/lib/systemd/system/wormlog.service \
         /usr/lib/systemd/system/wormlog-verify.service /usr/lib/systemd/system/wormlog-verify.timer \
         /usr/lib/sysusers.d/wormlog.conf /usr/lib/tmpfiles.d/wormlog.conf; do
    grep -qx "$f" <<<"$files" || fail "$f is not in ${rpms[0]}"
done
rpm -qp --configfiles "${rpms[0]}" | grep -qx /etc/wormlog/agent.toml || fail "agent.toml is not a config file"
scripts=$(rpm -qp --scripts "${rpms[0]}")
grep -q "systemd-sysusers" <<<"$scripts" || fail "no sysusers in the %post"
grep -q "wormlog keygen" <<<"$scripts" || fail "no keygen in the %post"
rpm -qpl "${rpms[1]}" | grep -qx /usr/bin/wormlog-collector || fail "no collector binary"

say "sysusers and tmpfiles"
systemd-sysusers --dry-run "$PWD"/packaging/sysusers/wormlog.conf "$PWD"/packaging/sysusers/wormlog-collector.conf
root=$(mktemp -d)
mkdir -p "$root/etc"
systemd-sysusers --root="$root" "$PWD"/packaging/sysusers/wormlog.conf "$PWD"/packaging/sysusers/wormlog-collector.conf
systemd-tmpfiles --create --root="$root" "$PWD"/packaging/tmpfiles/wormlog.conf "$PWD"/packaging/tmpfiles/wormlog-collector.conf
[ "$(stat -c %a "$root/var/lib/wormlog/spool")" = 700 ] || fail "spool mode in a fresh root"
[ -d "$root/var/lib/wormlog-collector/store" ] || fail "no store directory in a fresh root"
rm -rf "$root"

say "installing the .deb packages"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${debs[0]}" "${debs[1]}"
for f in /usr/bin/wormlog /usr/bin/wormlog-collector /etc/wormlog/agent.toml /etc/wormlog/collector.toml \
         /usr/lib/systemd/system/wormlog.service /usr/lib/systemd/system/wormlog-collector.service \
         /usr/lib/systemd/system/wormlog-verify.service /usr/lib/systemd/system/wormlog-verify.timer \
         /usr/share/doc/wormlog/README.md /var/lib/wormlog/keys/host.pub; do
    [ -e "$f" ] || fail "$f is missing after install"
done
getent passwd wormlog >/dev/null || fail "no user wormlog"
getent passwd wormlog-collector >/dev/null || fail "no user wormlog-collector"
[ "$(stat -c %a:%U /var/lib/wormlog/spool)" = 700:wormlog ] || fail "spool mode/owner"
[ "$(stat -c %U /var/lib/wormlog/keys/host.key)" = wormlog ] || fail "the key belongs to wormlog"
dpkg-query -W -f='${Conffiles}\n' wormlog | grep -q /etc/wormlog/agent.toml || fail "agent.toml is no conffile"
wormlog check-config --config /etc/wormlog/agent.toml
wormlog-collector check-config --config /etc/wormlog/collector.toml

say "systemd-analyze verify and security"
systemd-analyze verify /usr/lib/systemd/system/wormlog.service /usr/lib/systemd/system/wormlog-collector.service \
    /usr/lib/systemd/system/wormlog-verify.service /usr/lib/systemd/system/wormlog-verify.timer
for u in wormlog wormlog-collector; do
    level=$(systemd-analyze security --offline=true "/usr/lib/systemd/system/$u.service" |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    echo "$u.service: exposure $level"
    awk -v l="$level" 'BEGIN { exit !(l != "" && l <= 2.0) }' || fail "$u.service exposure $level > 2.0"
done

say "upgrade (reinstall) keeps a changed configuration and the host key"
key=$(cat /var/lib/wormlog/keys/host.pub)
echo "# changed by the operator" >> /etc/wormlog/agent.toml
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --reinstall -o Dpkg::Options::=--force-confold "${debs[0]}"
grep -q "changed by the operator" /etc/wormlog/agent.toml || fail "the configuration was overwritten"
[ "$(cat /var/lib/wormlog/keys/host.pub)" = "$key" ] || fail "the host key was replaced"

say "removal and purge keep the spool"
printf 'a line\n' | runuser -u wormlog -- wormlog append --config /etc/wormlog/agent.toml --source check
seg=$(ls /var/lib/wormlog/spool/*.wlseg | head -n 1)
DEBIAN_FRONTEND=noninteractive apt-get remove -y wormlog
[ -e "$seg" ] || fail "removal deleted the spool"
DEBIAN_FRONTEND=noninteractive apt-get purge -y wormlog wormlog-collector
[ -e "$seg" ] || fail "purge deleted the spool"
[ -e /var/lib/wormlog/keys/host.key ] || fail "purge deleted the host key"
echo "packages: all checks passed"
