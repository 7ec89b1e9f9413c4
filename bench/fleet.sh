#!/usr/bin/env bash
# One collector carrying many simulated agents (issue 17): prepares the fleet
# once (keys, client certificates and sealed spools for the largest count),
# then runs each count for SECONDS against a fresh release collector.
#
#   bash bench/fleet.sh [SECONDS] [COUNTS...]     (default: 30 1000 1500 1750 2000)
#
# Every run's store is verified; each run prints one JSON line (stdout) and
# a summary (stderr). WORMLOG_FLEET_DIR (default /var/tmp/wormlog-fleet)
# holds the fleet: about 1.2 MB per agent and 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
counts=("${@:-1000 1500 1750 2000}")
read -r -a counts <<<"${counts[*]}"
dir=${WORMLOG_FLEET_DIR:-/var/tmp/wormlog-fleet}
# Separately: built together, the collector would take in the simulator's
# dependency features and not be the binary that ships.
cargo build --release --locked -p wormlog-collector >&2
cargo build --release --locked -p wormlog-fleet-bench >&2
bin=target/release
max=0
for n in "${counts[@]}"; do ((n > max)) && max=$n; done
if [[ ! -f $dir/fleet.json ]] || (($(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['agents'])" "$dir/fleet.json") < max)) \
    || (($(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['lines'])" "$dir/fleet.json") < seconds * 100)); then
    rm -rf "$dir"
    "$bin/wormlog-fleet-bench" prepare "$dir" --agents "$max" --seconds "$seconds"
fi
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%FT%TZ)" >&2
for n in "${counts[@]}"; do
    "$bin/wormlog-fleet-bench" run "$dir" --collector "$bin/wormlog-collector" --agents "$n" --seconds "$seconds" --verify
done
