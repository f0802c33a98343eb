#!/usr/bin/env bash
# How long dbt-herd takes to resolve a plan against dbt's graph on a shared
# warehouse: the demo project, and a generated project of N models, each as a
# 3-window backfill. Reads `resolved_in_s` from summary.json (written as soon as
# the run starts), then stops the run.
#
#   scripts/bench-plan.sh [N]        default N = 500
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-plan.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
herd="$(pwd)/target/release/dbt-herd"
dbt=$("$herd" demo --prepare-only --dir "$work/demo" | tail -n 1)

resolve() { # name, then dbt-herd run options
  local name=$1; shift
  "$herd" run --headless --dbt "$dbt" --shared-warehouse yes --workers 1 \
    --backfill 2024-01-01..2024-01-04 --state-dir "$work/state-$name" "$@" >"$work/$name.out" 2>&1 &
  local pid=$!
  until [ -s "$work/state-$name/summary.json" ]; do sleep 0.1; done
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$work/state-$name/summary.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["plan"]
print(f"{sys.argv[2]}: resolved in {p['resolved_in_s']} s, {len(s['batches'])} batches, "
      + ", ".join(d["kind"] for d in p["decisions"]))
PY
}

resolve demo --project-dir "$work/demo/project" --profiles-dir "$work/demo/project" \
  --env "DUCKDB_PATH=$work/demo.duckdb" --env "HERD_DEMO_SOURCE=$work/demo/data/source.duckdb" \
  --env "HERD_DEMO_LANDING=$work/demo/data/landing"
python3 scripts/gen_project.py "$work/gen" "$n" >/dev/null
resolve "generated-$n" --project-dir "$work/gen" --profiles-dir "$work/gen" --env "DUCKDB_PATH=$work/gen.duckdb"
