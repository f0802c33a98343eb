#!/usr/bin/env python3
"""The demo backfill three ways, side by side with the same workers and threads:
the hand-written ProcessPoolExecutor baseline (../shared/baselines/pool_runner.py),
dbt-herd cold (a dbt process per batch) and dbt-herd warm (a long-lived dbt
process per worker). For each: the makespan, its ratio to the baseline's, the
per-batch overhead above dbt's own `elapsed_time` (median and p95), and the peak
RSS of one dbt process (cold, baseline) or warm worker.

    bench_vs_pool.py HERD DBT DEMO_DIR --days 24 96 --workers 1 2 4 [--threads 1]

DEMO_DIR is a prepared demo (`dbt-herd demo --prepare-only --dir DEMO_DIR`). Run it
through scripts/bench-vs-pool.sh, which builds and prepares everything.
"""
import argparse, datetime, json, os, shutil, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "..", "shared", "baselines", "pool_runner.py")


class RssPeak(threading.Thread):
    """Largest RSS of any one process tagged HERD_BENCH=<tag>, sampled every 50 ms."""

    def __init__(self, tag):
        super().__init__(daemon=True)
        self.needle = b"HERD_BENCH=" + tag.encode()
        self.peak_kib = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if self.needle not in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                        continue
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmRSS:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                except (OSError, ValueError):
                    continue
            time.sleep(0.05)

    def stop(self):
        self.done.set()
        self.join()
        return self.peak_kib / 1024


def timed(tag, cmd, log):
    rss = RssPeak(tag)
    rss.start()
    t0 = time.time()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    return wall, rss.stop(), code


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def herd_overheads(state):
    s = json.load(open(os.path.join(state, "summary.json")))
    return [b["overhead_s"] for b in s["batches"] if b.get("overhead_s") is not None], s


def pool_overheads(out, log):
    """Batch duration (from the baseline's lines) minus dbt's elapsed_time."""
    got = []
    for line in open(log):
        parts = line.split()
        if len(parts) >= 4 and parts[0].endswith(":") and parts[3].endswith("s"):
            name = parts[0][:-1]
            try:
                duration = float(parts[3][:-1])
                rr = json.load(open(os.path.join(out, name, "target", "run_results.json")))
            except (OSError, ValueError):
                continue
            got.append(duration - rr["elapsed_time"])
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("herd")
    ap.add_argument("dbt")
    ap.add_argument("demo")
    ap.add_argument("--days", type=int, nargs="+", default=[24])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    python = os.path.join(os.path.dirname(a.dbt), "python")
    project, data = os.path.join(a.demo, "project"), os.path.join(a.demo, "data")
    work = a.work or os.path.join(a.demo, "bench")
    print(f"{'days':>4} {'workers':>7} {'how':<6} {'wall_s':>8} {'vs pool':>8} "
          f"{'overhead median':>15} {'p95':>6} {'peak RSS MiB':>12}  ok")
    for days in a.days:
        end = datetime.date(2024, 1, 1) + datetime.timedelta(days=days)
        for w in a.workers:
            run = os.path.join(work, f"d{days}-w{w}")
            shutil.rmtree(run, ignore_errors=True)
            os.makedirs(run)
            env = {"HERD_DEMO_SOURCE": f"{data}/source.duckdb", "HERD_DEMO_LANDING": f"{data}/landing"}
            # The baseline: a DuckDB file per batch, as its plan format allows.
            plan, start = [], datetime.date(2024, 1, 1)
            for i in range(days):
                d, e = start + datetime.timedelta(days=i), start + datetime.timedelta(days=i + 1)
                plan.append({"name": str(d), "args": ["build", "--vars", json.dumps({"start_date": str(d), "end_date": str(e)})],
                             "env": dict(env, DUCKDB_PATH=f"{run}/pool-wh/{d}.duckdb", HERD_BENCH=f"pool-{days}-{w}")})
            os.makedirs(f"{run}/pool-wh")
            json.dump(plan, open(f"{run}/plan.json", "w"))
            pool_wall, pool_rss, pool_code = timed(
                f"pool-{days}-{w}",
                [python, BASELINE, "--plan", f"{run}/plan.json", "--workers", str(w), "--threads", str(a.threads),
                 "--dbt", a.dbt, "--project-dir", project, "--profiles-dir", project, "--out", f"{run}/pool"],
                f"{run}/pool.log")
            rows = [("pool", pool_wall, pool_overheads(f"{run}/pool", f"{run}/pool.log"), pool_rss, pool_code == 0)]
            for mode in ("cold", "warm"):
                tag = f"{mode}-{days}-{w}"
                os.makedirs(f"{run}/{mode}-wh")
                cmd = [a.herd, "run", "--headless", "--mode", mode, "--project-dir", project, "--profiles-dir", project,
                       "--dbt", a.dbt, "--backfill", f"2024-01-01..{end}", "--workers", str(w), "--threads", str(a.threads),
                       "--state-dir", f"{run}/{mode}-state", "--env", f"DUCKDB_PATH={run}/{mode}-wh/worker{{worker}}.duckdb",
                       "--env", f"HERD_BENCH={tag}"] + [f"--env={k}={v}" for k, v in env.items()]
                wall, rss, code = timed(tag, cmd, f"{run}/{mode}.log")
                overheads, _ = herd_overheads(f"{run}/{mode}-state")
                rows.append((mode, wall, overheads, rss, code == 0))
            for how, wall, over, rss, ok in rows:
                print(f"{days:>4} {w:>7} {how:<6} {wall:>8.1f} {wall / pool_wall:>8.2f} "
                      f"{statistics.median(over) if over else float('nan'):>15.2f} {pct(over, 95):>6.2f} "
                      f"{rss:>12.0f}  {'yes' if ok else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
