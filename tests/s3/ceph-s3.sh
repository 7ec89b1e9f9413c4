#!/usr/bin/env bash
# Copied from ../shared/s3/ceph-s3.sh (the shared recipe), kept here so the
# project's S3 tests (tests/s3/run.sh) do not depend on it. Two changes:
# - the monitor's free-space guard is off (mon data avail warn/crit = -1;
#   0 does not turn it off). It counts percent of the whole filesystem: a
#   CI machine's 252 GB disk with 1.4 GiB free is "0 %", and ceph-mon
#   exited at start with ENOSPC although this throw-away cluster needs a
#   few MB (its OSD is memstore, in memory). The S3 suite passes with BASE
#   on a filesystem with 12 MB free;
# - the monitor is started by start_mon, which says why when it does not
#   answer: the monitor's own last words if it exited (the ENOSPC above
#   was first seen as "mon did not answer"), its process state if it hangs.
# Single-node throw-away Ceph (1 mon, no mgr, 1 memstore OSD, size 1)
# + radosgw (beast) on 127.0.0.1, for S3 Object Lock tests. No systemd, no cephadm.
#   usage: ceph-s3.sh up | down | env      (run as root; Debian bookworm, Ceph 16.2.15)
set -euo pipefail

BASE=${CEPH_S3_BASE:-/var/tmp/ceph-s3}
RGW_PORT=${RGW_PORT:-7480}
MON_V2=${MON_V2_PORT:-3300}
MON_V1=${MON_V1_PORT:-6789}
OBJSTORE=${OBJSTORE:-memstore}        # memstore | bluestore
ACCESS_KEY=${S3_ACCESS_KEY:-testaccesskey}
SECRET_KEY=${S3_SECRET_KEY:-testsecretkey}
CONF=$BASE/ceph.conf
KEYRING=$BASE/keyring

ceph_() { timeout 60 ceph -c "$CONF" "$@"; }

install_pkgs() {  # ~13 s on a fresh bookworm box, ~300 MB on disk
  local pkgs="ceph-mon ceph-osd radosgw ceph-common curl"
  local missing=0
  for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool curl; do
    command -v "$b" >/dev/null || missing=1
  done
  if [ $missing = 1 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
}

down() {
  for p in "$BASE"/run/*.pid; do
    [ -e "$p" ] || continue
    pid=$(cat "$p"); kill "$pid" 2>/dev/null || true
  done
  for p in "$BASE"/run/*.pid; do          # wait up to 10 s, then SIGKILL by PID
    [ -e "$p" ] || continue
    pid=$(cat "$p")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$BASE"
}

fail() {  # print what the daemons said, tear everything down, exit non-zero
  echo "ceph-s3: $*" >&2
  for f in "$BASE"/log/*; do echo "== $f" >&2; tail -n 20 "$f" >&2; done
  down; exit 1
}

start_bg() {  # name, then command; records the PID of the foreground daemon
  local name=$1; shift
  setsid "$@" </dev/null >>"$BASE/log/$name.out" 2>&1 &
  echo $! >"$BASE/run/$name.pid"
}

show_daemon() {  # what a daemon that does not answer is doing
  local pid; pid=$(cat "$BASE/run/$1.pid" 2>/dev/null) || return 0
  echo "== $1 (pid $pid)" >&2
  ps -o pid,stat,etime,wchan:32,args -p "$pid" >&2 || echo "(not running)" >&2
  cat "/proc/$pid/stack" >&2 2>/dev/null || true
  ss -ltnp 2>/dev/null | grep -E ":($MON_V2|$MON_V1) " >&2 || echo "(nothing listens on $MON_V2 or $MON_V1)" >&2
}

start_mon() {  # one start, polled for 60 s; says why if it does not answer
  local pid deadline
  start_bg mon.a ceph-mon -c "$CONF" -i a -f
  pid=$(cat "$BASE/run/mon.a.pid")
  deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    timeout 8 ceph -c "$CONF" --connect-timeout 5 mon stat >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      # Its status too: on a full disk it cannot write what it says (it
      # exits with ENOSPC, 28, when the free-space guard stops it).
      local rc=0; wait "$pid" || rc=$?
      echo "ceph-s3: mon.a exited with status $rc; free space by $BASE: $(df -h --output=avail,pcent "$BASE" | tail -n 1); it said:" >&2
      tail -n 5 "$BASE/log/mon.a.out" >&2
      return 1
    fi
    sleep 1
  done
  echo "ceph-s3: mon.a did not answer in 60 s" >&2
  show_daemon mon.a
  return 1
}

up() {
  local t0=$SECONDS
  install_pkgs
  echo "[$((SECONDS-t0))s] packages present; free space: $(df -h --output=avail,pcent "$(dirname "$BASE")" | tail -n 1)"
  down
  mkdir -p "$BASE"/{run,log,mon.a,osd.0,rgw.x}
  local fsid osd_uuid; fsid=$(cat /proc/sys/kernel/random/uuid); osd_uuid=$(cat /proc/sys/kernel/random/uuid)

  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
keyring = $KEYRING
run dir = $BASE/run
admin socket = $BASE/run/\$name.asok
log file = $BASE/log/\$name.log
pid file = $BASE/run/\$name.daemon-pid
crash dir = $BASE/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon data avail warn = -1
mon data avail crit = -1
[mon]
mon data = $BASE/\$name
[osd]
osd data = $BASE/\$name
osd objectstore = $OBJSTORE
memstore device bytes = 1073741824
bluestore block path = $BASE/\$name/block.file
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
osd memory target = 939524096
[client.rgw.x]
rgw data = $BASE/rgw.x
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 32
EOF

  ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n client.rgw.x \
    --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null

  monmaptool --create --fsid "$fsid" \
    --addv a "[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]" "$BASE/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$BASE/monmap" --keyring "$KEYRING"
  start_mon || fail "mon did not answer"
  echo "[$((SECONDS-t0))s] mon up"

  ceph_ osd new "$osd_uuid" 0 >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$BASE/log/osd.0.out" 2>&1
  start_bg osd.0 ceph-osd -c "$CONF" -i 0 -f
  for _ in $(seq 120); do
    ceph_ osd dump 2>/dev/null | grep -q '^osd.0 up' && break; sleep 0.5
  done
  ceph_ osd dump | grep -q '^osd.0 up' || fail "osd.0 did not come up"
  echo "[$((SECONDS-t0))s] osd.0 up"

  start_bg rgw.x radosgw -c "$CONF" -n client.rgw.x -f
  for _ in $(seq 240); do
    curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/" 2>/dev/null && break; sleep 0.5
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/" || fail "rgw did not come up"
  echo "[$((SECONDS-t0))s] rgw answering on 127.0.0.1:$RGW_PORT"

  timeout 60 radosgw-admin -c "$CONF" user create --uid=ci --display-name=CI \
    --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >/dev/null
  echo "[$((SECONDS-t0))s] S3 ready: endpoint http://127.0.0.1:$RGW_PORT key $ACCESS_KEY"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
