#!/usr/bin/env python3
"""Time to the first batch, against one plain `dbt parse`, on generated projects.

    bench_start.py HERD DBT WORK [N ...]      default N: 500 2000

For each project size N (scripts/gen_project.py), first one plain
`dbt parse --no-partial-parse` (what any dbt command pays before its first
node), then dbt-herd in each mode (auto, cold, warm) on one shared DuckDB file
and on a file per worker ({worker}): 2 daily windows, 2 workers, `-s` one
incremental model. Prints, per run: wall to the first batch (from launch to the
journal's first `attempt_started`), that as a multiple of the parse, the whole
run's wall and CPU (user+sys of every process it started), how long the run
took to end after its last batch, the mode it ended in, and how many warm
workers started, and its exit status. The selected model's parents are not
built, so its batches fail (exit 1): what is measured is the start. REPS (env,
default 1) repeats each run; medians are shown.
"""
import json, os, resource, shutil, statistics, subprocess, sys, time
from datetime import datetime

herd, dbt, work = sys.argv[1], sys.argv[2], sys.argv[3]
sizes = [int(n) for n in sys.argv[4:]] or [500, 2000]
reps = int(os.environ.get("REPS", "1"))
here = os.path.dirname(os.path.abspath(__file__))


def ts(text):
    return datetime.fromisoformat(text[:26] + text[-6:] if "." in text else text).timestamp()


def timed(argv, env=None, cwd=None):
    """Runs argv; returns (wall seconds, CPU seconds of the whole tree, launch time, exit)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, t0, p.returncode


def journal(state):
    with open(os.path.join(state, "journal.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def herd_run(project, n, mode, files, tag):
    state = os.path.join(work, f"state-{n}-{tag}")
    shutil.rmtree(state, ignore_errors=True)
    wh = os.path.join(work, f"wh-{n}-{tag}")
    shutil.rmtree(wh, ignore_errors=True)
    os.makedirs(wh)
    path = os.path.join(wh, "w{worker}.duckdb" if files == "worker" else "shared.duckdb")
    argv = [herd, "run", "--headless", "--mode", mode, "--workers", "2", "--threads", "1",
            "--dbt", dbt, "--project-dir", project, "--profiles-dir", project,
            "--backfill", "2024-01-02..2024-01-04", "-s", f"m{n - 1:04d}",
            "--env", f"DUCKDB_PATH={path}", "--state-dir", state]
    wall, cpu, t0, code = timed(argv)
    j = journal(state)
    first = min(ts(r["ts"]) for r in j if r["record"] == "attempt_started")
    last = max(ts(r["ts"]) for r in j if r["record"] == "attempt_finished")
    s = json.load(open(os.path.join(state, "summary.json")))
    end_after = ts(s["finished_at"]) - last
    workers = len({r["worker"] for r in j if r["record"] == "worker_started"})
    return {"first": first - t0, "wall": wall, "cpu": cpu, "end_after": end_after,
            "mode": s["mode"], "workers": workers, "exit": code}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


for n in sizes:
    project = os.path.join(work, f"gen{n}")
    if not os.path.isdir(project):
        subprocess.run([sys.executable, os.path.join(here, "gen_project.py"), project, str(n)],
                       check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, DUCKDB_PATH=os.path.join(work, f"parse-{n}.duckdb"))
    parses = []
    for _ in range(reps):
        target = os.path.join(work, f"parse-target-{n}")
        shutil.rmtree(target, ignore_errors=True)
        w, c, _, _ = timed([dbt, "parse", "--no-partial-parse", "--profiles-dir", project,
                            "--target-path", target, "--log-path", target,
                            "--vars", '{"start_date": "2024-01-02", "end_date": "2024-01-03"}'],
                           env=env, cwd=project)
        parses.append({"wall": w, "cpu": c})
    pw, pc = median(parses, "wall"), median(parses, "cpu")
    print(f"\n{n} models · one `dbt parse --no-partial-parse`: {pw:.1f} s wall, {pc:.1f} s CPU"
          f" (median of {reps})")
    print(f"{'mode':<6} {'warehouse':<13} {'first batch':>12} {'× parse':>8} {'run wall':>9} "
          f"{'run CPU':>8} {'end after last':>15} {'ended':>6} {'workers':>8} {'exit':>5}")
    for files in ("shared", "worker"):
        for mode in ("auto", "cold", "warm"):
            rows = [herd_run(project, n, mode, files, f"{mode}-{files}-{i}") for i in range(reps)]
            label = "one file" if files == "shared" else "{worker} files"
            print(f"{mode:<6} {label:<13} {median(rows, 'first'):>10.1f} s "
                  f"{median(rows, 'first') / pw:>7.2f}× {median(rows, 'wall'):>7.1f} s "
                  f"{median(rows, 'cpu'):>6.1f} s {median(rows, 'end_after'):>13.1f} s "
                  f"{rows[0]['mode']:>6} {rows[0]['workers']:>8} {rows[0]['exit']:>5}", flush=True)
