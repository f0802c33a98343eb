#!/usr/bin/env bash
# How long `dbt-herd attach` takes to show a run of many batches: a detached run
# of N windows (the fake dbt, each window sleeping), then attaches: headless (time
# to the first progress lines) and the TUI in tmux (time until the header counts
# every batch). Stops the run at the end.
#
#   scripts/bench-attach.sh [N] [ROUNDS]      default: 300 windows, 5 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
rounds=${2:-5}
cargo build --release --quiet
python3 scripts/bench_attach.py target/release/dbt-herd tests/support/fake_dbt.py "$n" "$rounds"
