#!/usr/bin/env bash
# What a log flood costs dbt-herd itself: 16 workers of the fake dbt, each printing
# 50,000 JSON log events as fast as it can; dbt-herd's own CPU per line and peak
# RSS, headless and in the TUI (with frame times).
#
#   scripts/bench-flood.sh [WORKERS] [LINES]      default: 16 workers, 50000 lines each
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-16}
lines=${2:-50000}
cargo build --release --quiet
python3 scripts/bench_flood.py target/release/dbt-herd --workers "$workers" --lines "$lines"
python3 scripts/bench_flood.py target/release/dbt-herd --workers "$workers" --lines "$lines" --tui --size 160x48
