#!/usr/bin/env bash
# The wheel as a user gets it: build it with maturin, install it into a fresh
# venv beside pinned dbt, and run a small demo backfill with that venv's
# dbt-herd and no --dbt (it must find the dbt beside itself, with dbt not on PATH).
#
#   scripts/check-wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install -q --disable-pip-version-check "maturin>=1.5,<2" \
  "dbt-core~=1.11.0" "dbt-duckdb~=1.11.1"
"$work/venv/bin/maturin" build --release --quiet --out "$work/dist" >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2; exit 1; }
wheel=$(ls "$work"/dist/dbt_herd-*.whl)
"$pip" install -q --disable-pip-version-check "$wheel"
herd="$work/venv/bin/dbt-herd"
[ -x "$herd" ] || { echo "check-wheel: the wheel installed no dbt-herd" >&2; exit 1; }

# The demo's project and data (the test build prepares them).
cargo build --quiet --locked
"$root/target/debug/dbt-herd" demo --prepare-only --dir "$work/demo" >/dev/null
demo="$work/demo"
# No dbt on PATH: only the one beside the wheel's dbt-herd can be found.
out=$(env PATH=/usr/bin:/bin "$herd" run --headless --mode cold \
  --project-dir "$demo/project" --profiles-dir "$demo/project" \
  --backfill 2024-01-02..2024-01-04 --workers 2 \
  --env "DUCKDB_PATH=$work/wh-{worker}.duckdb" \
  --env "HERD_DEMO_SOURCE=$demo/data/source.duckdb" --env "HERD_DEMO_LANDING=$demo/data/landing" \
  --state-dir "$work/state" 2>&1) || { echo "$out" >&2; echo "check-wheel: the run failed" >&2; exit 1; }
echo "$out" | grep -q "using $work/venv/bin/dbt (beside dbt-herd)" || {
  echo "$out" >&2; echo "check-wheel: dbt-herd did not use the dbt beside it" >&2; exit 1; }
echo "$out" | grep -q "summary: all batches succeeded" || { echo "$out" >&2; exit 1; }
echo "check-wheel: ok · $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) installed beside dbt; a 2-window backfill ran with the dbt beside it"
