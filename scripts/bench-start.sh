#!/usr/bin/env bash
# Time to the first batch and CPU, against one plain `dbt parse`, on generated
# 500- and 2,000-model projects, in each mode, on one shared DuckDB file and on
# a file per worker. See BENCHMARKS.md ("Start-up").
#
#   scripts/bench-start.sh                 500 and 2000 models, one run each
#   REPS=3 scripts/bench-start.sh 2000     medians of three
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-start.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
herd="$(pwd)/target/release/dbt-herd"
dbt=$("$herd" demo --prepare-only --dir "$work/demo" | tail -n 1)
python3 scripts/bench_start.py "$herd" "$dbt" "$work" "$@"
