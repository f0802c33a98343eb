#!/usr/bin/env python3
"""Times `dbt-herd attach` on a detached run of N windows; see bench-attach.sh."""
import datetime, os, statistics, subprocess, sys, tempfile, time

herd, fake, n, rounds = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
work = tempfile.mkdtemp(prefix="herd-bench-attach.")
open(os.path.join(work, "dbt_project.yml"), "w").write("name: fake\n")
state = os.path.join(work, "state")
start = datetime.date(2024, 1, 1)
end = start + datetime.timedelta(days=n)
env = dict(os.environ, FAKE_SLEEP="600")
out = subprocess.run(
    [herd, "run", "--detach", "--dbt", fake, "--project-dir", work, "-s", "sleepy",
     "--backfill", f"{start}..{end}", "--workers", "4", "--shared-warehouse", "no",
     "--mode", "cold", "--state-dir", state, "--grace-int", "1", "--grace-term", "1"],
    env=env, capture_output=True, text=True, check=True)
assert out.stdout.strip() == state, out

def headless():
    t0 = time.perf_counter()
    p = subprocess.Popen([herd, "attach", state, "--headless"], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if "state dir:" in line:
            took = time.perf_counter() - t0
            break
    p.terminate(); p.wait()
    return took

sock = f"herd-bench-attach-{os.getpid()}"
def tui():
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "kill-server"], capture_output=True)
    t0 = time.perf_counter()
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "48",
                    f"{herd} attach {state} --read-only"], check=True)
    while True:
        screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True, text=True).stdout
        if f"/{n} done" in screen:
            took = time.perf_counter() - t0
            break
        time.sleep(0.01)
    subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    return took

try:
    time.sleep(1)
    h = [headless() for _ in range(rounds)]
    t = [tui() for _ in range(rounds)]
    print(f"{n} batches · attach --headless to its first lines: median {statistics.median(h)*1000:.0f} ms, max {max(h)*1000:.0f} ms")
    print(f"{n} batches · attach (TUI, 160x48) to a full header: median {statistics.median(t)*1000:.0f} ms, max {max(t)*1000:.0f} ms (includes starting tmux)")
finally:
    subprocess.run([herd, "stop", state], capture_output=True)
    subprocess.run(["rm", "-rf", work])
