#!/usr/bin/env bash
# The slow suites, as CI runs them after `cargo test --workspace`: the
# packages built, linted, installed and removed on this machine
# (packaging/check.sh), then installed in Debian booted under a real
# systemd (systemd-nspawn) with the operator's path walked
# (packaging/systemd-test.sh), then the S3 store backend against a real
# radosgw with Object Lock (tests/s3/run.sh), then the auditor's console in
# a real headless Chromium (tests/console/run.sh). Needs root, network for the first
# debootstrap, and what .ci/run installs.
#
#   bash packaging/slow-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm@0.21.1
started=$(date +%s)
bash packaging/check.sh
checked=$(date +%s)
bash packaging/systemd-test.sh
booted=$(date +%s)
df -h / /var/tmp | sed 's/^/disk before the S3 suite: /'
bash tests/s3/run.sh
s3_done=$(date +%s)
bash tests/console/run.sh
done_at=$(date +%s)
echo "slow suites passed: check.sh $((checked - started)) s, systemd-test.sh $((booted - checked)) s, S3 (radosgw) $((s3_done - booted)) s, console (Chromium) $((done_at - s3_done)) s"
