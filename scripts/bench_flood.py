#!/usr/bin/env python3
"""Measures what a log flood costs dbt-herd itself: N workers of the fake dbt's
`flood` behaviour, each printing L JSON log events as fast as it can, on one
backfill of N daily windows. Reports dbt-herd's own CPU (utime + stime of the
dbt-herd process, not its children), CPU per line, peak RSS (VmHWM), wall time,
and in the TUI mode the frame statistics (DBT_HERD_FRAME_STATS).

    bench_flood.py HERD_BINARY [--workers 16] [--lines 50000] [--tui] [--size 160x48]

The process is sampled from /proc every 20 ms; the last sample before it exits
is taken as its CPU time (an error of at most one sample interval).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "tests", "support", "fake_dbt.py")
TICK = os.sysconf("SC_CLK_TCK")


def sample(pid):
    """(cpu seconds, peak RSS in MiB) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    except (OSError, StopIteration, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, hwm / 1024


def run_args(herd, work, workers):
    end = 1 + workers  # N daily windows from the 1st
    return [herd, "run", "--dbt", FAKE, "--project-dir", work, "-s", "flood",
            "--backfill", f"2024-01-01..2024-01-{end:02d}" if end < 32 else "2024-01-01..2024-03-01",
            "--workers", str(workers), "--state-dir", os.path.join(work, "state"),
            "--shared-warehouse", "no", "--mode", "cold"]


def find_pid(herd, timeout=10.0, word=b"run"):
    end = time.time() + timeout
    while time.time() < end:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[0] == herd.encode() and argv[1] == word:
                return int(d)
        time.sleep(0.02)
    sys.exit("bench-flood: dbt-herd did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("herd")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--lines", type=int, default=50000)
    ap.add_argument("--tui", action="store_true")
    ap.add_argument("--size", default="160x48")
    a = ap.parse_args()
    herd = os.path.abspath(a.herd)
    work = tempfile.mkdtemp(prefix="herd-flood.")
    with open(os.path.join(work, "dbt_project.yml"), "w") as f:
        f.write("name: flood\n")
    env = dict(os.environ, FAKE_LINES=str(a.lines))
    argv = run_args(herd, work, a.workers)
    sock = f"herd-flood-{os.getpid()}"
    frames = os.path.join(work, "frames")
    started = time.time()
    try:
        if a.tui:
            w, h = a.size.split("x")
            line = " ".join(f"'{x}'" for x in argv)
            subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "b",
                            "-x", w, "-y", h,
                            f"FAKE_LINES={a.lines} DBT_HERD_FRAME_STATS=1 {line} 2>'{frames}'; sleep 600"],
                           check=True)
            pid = find_pid(herd)
            # The run itself is a process of its own; the TUI is its client.
            serve = find_pid(herd, word=b"serve")
            proc = None
        else:
            proc = subprocess.Popen(argv + ["--headless"], env=env, stdout=subprocess.DEVNULL)
            pid = proc.pid
            serve = None
        served = (0.0, 0.0)
        last = (0.0, 0.0)
        done_at = None
        while True:
            s = sample(pid)
            if s is None:
                break
            last = s
            if serve:
                served = sample(serve) or served
            if a.tui and done_at is None:
                screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", "b"],
                                        capture_output=True, text=True).stdout
                head = screen.splitlines()[0] if screen else ""
                if " 0 running" in head and " 0 pending" in head:
                    done_at = time.time()
                    s = sample(pid)
                    last = s or last
                    subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "b", "q"])
            time.sleep(0.02)
        if proc:
            proc.wait()
        wall = (done_at or time.time()) - started
        total = a.workers * a.lines
        cpu, rss = last
        mode = f"TUI {a.size}" if a.tui else "headless"
        print(f"{mode}: {a.workers} workers x {a.lines} events = {total} lines")
        if serve:
            both = cpu + served[0]
            print(f"wall {wall:.1f} s · dbt-herd CPU {both:.2f} s ({served[0]:.2f} s the run, {cpu:.2f} s the TUI)"
                  f" · {both / total * 1e6:.2f} us per line · peak RSS {served[1]:.0f} MiB the run, {rss:.0f} MiB the TUI")
        else:
            print(f"wall {wall:.1f} s · dbt-herd CPU {cpu:.2f} s · {cpu / total * 1e6:.2f} us per line"
                  f" · peak RSS {rss:.0f} MiB")
        if a.tui:
            for _ in range(50):
                if os.path.exists(frames) and os.path.getsize(frames) > 0:
                    break
                time.sleep(0.1)
            with open(frames) as f:
                sys.stdout.write(f.read())
    finally:
        if a.tui:
            subprocess.run(["tmux", "-L", sock, "kill-server"], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
