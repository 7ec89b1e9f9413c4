#!/usr/bin/env bash
# The S3 store backend's tests (collector/tests/s3.rs) against a real S3
# with Object Lock: a throw-away single-node Ceph with radosgw from
# Debian's packages (tests/s3/ceph-s3.sh, which installs them), started
# here and stopped at the end. Needs root.
#
#   bash tests/s3/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CEPH_S3_BASE=${CEPH_S3_BASE:-/var/tmp/wormlog-ceph-s3}
bash tests/s3/ceph-s3.sh up
trap 'bash tests/s3/ceph-s3.sh down' EXIT
eval "$(bash tests/s3/ceph-s3.sh env)"
export WORMLOG_TEST_S3=$AWS_ENDPOINT_URL
unset AWS_ENDPOINT_URL
cargo test -p wormlog-collector --locked --test s3 -- --ignored --test-threads=1
