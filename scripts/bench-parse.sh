#!/usr/bin/env bash
# What the cold path's shared partial parse saves on a multi-selector run: the
# demo project as 8 selector batches (each a model with its parents, `dbt run`) (one window's vars) on 2 workers, cold,
# twice: as dbt-herd runs it (each batch starts from a partial parse made
# before it), and with `-- --no-partial-parse` (each batch parses from
# nothing, as a pool script's processes do). Prints the wall time and the mean
# per-batch overhead above dbt's own elapsed_time.
#
#   scripts/bench-parse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-parse.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
herd="$(pwd)/target/release/dbt-herd"
dbt=$("$herd" demo --prepare-only --dir "$work/demo" | tail -n 1)
project="$work/demo/project"
data="$work/demo/data"

run() { # name, then extra arguments
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$herd" run --headless --mode cold --command run --workers 2 --threads 1 --dbt "$dbt" \
    --project-dir "$project" --profiles-dir "$project" \
    -s +stg_orders -s +stg_customers -s +stg_products -s +stg_payments \
    -s +stg_order_items -s +int_order_lines -s +int_orders_enriched -s +int_customer_orders \
    --vars '{"start_date": "2024-01-02", "end_date": "2024-01-03"}' \
    --env "DUCKDB_PATH=$work/wh-$name-{worker}.duckdb" \
    --env "HERD_DEMO_SOURCE=$data/source.duckdb" --env "HERD_DEMO_LANDING=$data/landing" \
    --state-dir "$work/state-$name" "$@" >"$work/$name.out" 2>&1 || true
  t1=$(date +%s.%N)
  python3 - "$work/state-$name/summary.json" "$name" "$t0" "$t1" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
over = [b["overhead_s"] for b in s["batches"] if b.get("overhead_s") is not None]
ok = all(b["status"] == "succeeded" for b in s["batches"])
print(f"{sys.argv[2]:<18} wall {float(sys.argv[4]) - float(sys.argv[3]):6.2f} s · "
      f"overhead mean {statistics.mean(over):.2f} s, median {statistics.median(over):.2f} s · "
      f"{len(over)} batches{'' if ok else ' (NOT ALL SUCCEEDED)'}")
for b in s["batches"]:
    if b["status"] != "succeeded":
        print(f"  {b['status']}: {b['label']}: {(b.get('error') or '')[:200]}")
PY
}

run shared-parse
run no-partial-parse -- --no-partial-parse
