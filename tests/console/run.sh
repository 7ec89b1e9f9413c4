#!/usr/bin/env bash
# The console's browser tests (tests/console/test_console.py): a real
# collector and real agents built here, driven in Debian's headless
# Chromium through Selenium and Debian's chromedriver.
#
#   bash tests/console/run.sh            # the tests
#   bash tests/console/run.sh --shots    # and the screenshots in docs/console/
#
# Needs: apt-get install chromium chromium-driver python3-selenium
# python3-cryptography (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--shots" ]; then
  export WORMLOG_CONSOLE_SHOTS="$PWD/docs/console"
fi
for need in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$need" ] || { echo "tests/console: $need is missing (apt-get install chromium chromium-driver)" >&2; exit 1; }
done
python=/usr/bin/python3
"$python" -c 'import selenium, cryptography' || {
  echo "tests/console: $python needs python3-selenium and python3-cryptography" >&2; exit 1; }
cargo build --locked -q -p wormlog -p wormlog-collector
export WORMLOG_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug"
exec "$python" tests/console/test_console.py
