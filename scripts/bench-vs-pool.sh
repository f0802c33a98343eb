#!/usr/bin/env bash
# The demo backfill three ways, side by side: the hand-written ProcessPoolExecutor
# baseline (../shared/baselines/pool_runner.py), dbt-herd cold and dbt-herd warm,
# with the same workers and threads. Prints makespans, their ratio to the
# baseline, the per-batch overhead above dbt's own elapsed_time (median, p95) and
# the peak RSS of one dbt process or warm worker. See BENCHMARKS.md.
#
#   scripts/bench-vs-pool.sh                      24 and 96 windows, 1 2 4 workers
#   DAYS="24" WORKERS="2" scripts/bench-vs-pool.sh
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="../shared/baselines/pool_runner.py"
[ -f "$baseline" ] || { echo "bench: $baseline not found" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
herd="$(pwd)/target/release/dbt-herd"
dbt=$("$herd" demo --prepare-only --dir "$work/demo" | tail -n 1)
# Deliver the late file up front: the benchmark compares clean runs.
mv "$work/demo/data/landing/late/"*.csv "$work/demo/data/landing/"
# shellcheck disable=SC2086
python3 scripts/bench_vs_pool.py "$herd" "$dbt" "$work/demo" \
  --days ${DAYS:-24 96} --workers ${WORKERS:-1 2 4} --threads "${THREADS:-1}"
