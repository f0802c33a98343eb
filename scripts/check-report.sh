#!/usr/bin/env bash
# The run report in a real browser: a real demo run (dbt-duckdb, 14 windows, the
# late window failing once), its report loaded in headless Chromium, and the
# rendered DOM checked (lanes, bars, the failed attempt, the table and its filter,
# no console error). Installs Chromium (Debian's package) where it is missing.
#
#   scripts/check-report.sh [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  echo "check-report: installing chromium" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-report.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The test build's binary: the report does not need an optimised one.
cargo build --quiet --locked
herd="$(pwd)/target/debug/dbt-herd"
"$herd" demo --headless --days 14 --workers 4 --dir "$work/demo" >"$work/demo.out" 2>&1 || {
  cat "$work/demo.out" >&2; exit 1; }
state=$(ls -d "$work"/demo/runs/*/ | head -n 1)
t0=$(date +%s.%N)
"$herd" report "$state" -o "$work/report.html" >/dev/null
t1=$(date +%s.%N)
python3 scripts/check_report.py "$work/report.html" 14 4
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "check-report: report written in %.0f ms\n", (b - a) * 1000 }'
if [ $# -ge 1 ]; then
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,900 \
    --screenshot="$1" "file://$work/report.html#filter=2024-01-1" 2>/dev/null
  echo "check-report: screenshot in $1"
fi
