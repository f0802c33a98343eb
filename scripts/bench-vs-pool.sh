#!/usr/bin/env bash
# Runs the demo backfill with dbt-herd and with the hand-written ProcessPoolExecutor
# baseline (../shared/baselines/pool_runner.py), side by side with the same workers
# and threads, and prints wall times and the peak connections in use (the sum of
# --threads over live dbt processes, sampled every 50 ms).
#
#   scripts/bench-vs-pool.sh [WORKERS...]        default: 1 2 4
#   DAYS=24 THREADS=1 scripts/bench-vs-pool.sh 4
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
baseline="$root/../shared/baselines/pool_runner.py"
[ -f "$baseline" ] || { echo "bench: $baseline not found" >&2; exit 2; }
workers_list=${*:-1 2 4}
days=${DAYS:-24}
threads=${THREADS:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
herd="$root/target/release/dbt-herd"
dbt=$("$herd" demo --prepare-only --dir "$work/demo" | tail -n 1)
python="$(dirname "$dbt")/python"
project="$work/demo/project"
data="$work/demo/data"
# Deliver the late file up front: the benchmark compares clean runs.
mv "$data/landing/late/"*.csv "$data/landing/"
end=$(date -d "2024-01-01 + $days days" +%F)

# Peak of the summed --threads of live processes tagged HERD_BENCH=<tag> (a process
# whose parent is also counted is the same dbt behind a launcher shim: counted once).
sampler() {
  "$python" - "$1" "$2" <<'PY'
import os, sys, time
tag, out = sys.argv[1].encode(), sys.argv[2]
peak = 0
while not os.path.exists(out + ".stop"):
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"HERD_BENCH=" + tag not in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                continue
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if stat[0] in ("Z", "X") or b"--threads" not in argv:
            continue
        procs[pid] = (stat[1], int(argv[argv.index(b"--threads") + 1]))
    peak = max(peak, sum(t for ppid, t in procs.values() if ppid not in procs))
    time.sleep(0.05)
open(out, "w").write(str(peak))
PY
}

measure() { # tag command... → prints "wall peak"
  local tag=$1; shift
  sampler "$tag" "$work/peak-$tag" & local sp=$!
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$work/out-$tag.log" 2>&1 || true
  t1=$(date +%s.%N)
  touch "$work/peak-$tag.stop"; wait "$sp"
  echo "$("$python" -c "print(round($t1 - $t0, 2))") $(cat "$work/peak-$tag")"
}

printf '%-8s %-8s %12s %12s %8s %10s %10s\n' workers threads herd_wall_s pool_wall_s ratio herd_peak pool_peak
for w in $workers_list; do
  budget=$((w * threads))
  # The baseline's plan: the same windows, vars and per-batch DuckDB files.
  "$python" - "$work/plan-$w.json" "$days" "$work/wh-pool-$w" "$data" "$w" <<'PY'
import datetime, json, sys
out, days, wh, data, w = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
start = datetime.date(2024, 1, 1)
plan = []
for i in range(days):
    d, e = start + datetime.timedelta(days=i), start + datetime.timedelta(days=i + 1)
    plan.append({"name": str(d), "args": ["build", "--vars", json.dumps({"start_date": str(d), "end_date": str(e)})],
                 "env": {"DUCKDB_PATH": f"{wh}/{d}.duckdb", "HERD_DEMO_SOURCE": f"{data}/source.duckdb",
                         "HERD_DEMO_LANDING": f"{data}/landing", "HERD_BENCH": f"pool-{w}"}})
json.dump(plan, open(out, "w"))
PY
  mkdir -p "$work/wh-pool-$w" "$work/wh-herd-$w"
  herd_res=$(measure "herd-$w" "$herd" run --headless --project-dir "$project" --profiles-dir "$project" --dbt "$dbt" \
    --backfill "2024-01-01..$end" --workers "$w" --threads "$threads" --budget "$budget" \
    --state-dir "$work/state-$w" \
    --env "DUCKDB_PATH=$work/wh-herd-$w/{batch}.duckdb" --env "HERD_DEMO_SOURCE=$data/source.duckdb" \
    --env "HERD_DEMO_LANDING=$data/landing" --env "HERD_BENCH=herd-$w")
  pool_res=$(measure "pool-$w" "$python" "$baseline" --plan "$work/plan-$w.json" --workers "$w" --threads "$threads" \
    --dbt "$dbt" --project-dir "$project" --profiles-dir "$project" --out "$work/pool-$w")
  read -r hw hp <<<"$herd_res"
  read -r pw pp <<<"$pool_res"
  grep -q "all batches succeeded" "$work/out-herd-$w.log" || { echo "bench: dbt-herd run failed:"; tail -5 "$work/out-herd-$w.log"; }
  grep -q "failed=0" "$work/out-pool-$w.log" || { echo "bench: baseline run failed:"; tail -5 "$work/out-pool-$w.log"; }
  printf '%-8s %-8s %12.1f %12.1f %8.3f %10s %10s\n' "$w" "$threads" "$hw" "$pw" "$("$python" -c "print($hw / $pw)")" "$hp/$budget" "$pp"
done
