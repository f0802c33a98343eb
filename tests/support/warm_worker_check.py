#!/usr/bin/env python3
"""Checks assets/worker/herd_worker.py against real dbt and the demo project.

Starts the worker the way the supervisor does (own process group, protocol on
two inherited descriptors named in HERD_WORKER_FDS, stdin /dev/null, stdout and
stderr drained by threads) and drives it through parse, daily windows, a
failure and its retry, printing from user code, SIGINT during a run and while
idle, parse digests and memory. Prints PASS / FAIL / INFO / MEASURE lines and
exits 1 if any check failed.

Run it with the dbt venv's python (it also uses that venv's `duckdb` module):

    dbt-herd demo --prepare-only --dir DEMO
    <venv>/bin/python tests/support/warm_worker_check.py DEMO [--keep]

DEMO may also come from HERD_WARM_DEMO. The demo is copied into a temp dir
(the checks add a few models and move a late landing file there); DEMO itself
is not modified.
"""
import datetime
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "..", "..", "assets", "worker", "herd_worker.py")
REPLY_TIMEOUT = 180.0

FAILED = []


def check(name, ok, detail=""):
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""), flush=True)
    if not ok:
        FAILED.append(name)
    return ok


def info(text):
    print("INFO " + text, flush=True)


def measure(text):
    print("MEASURE " + text, flush=True)


# Models added to the temp copy of the demo project, in models/herd_check/.
EXTRA_MODELS = {
    # {{ print() }} in a model, plus an env var that only one run sets.
    "check_print.sql": """
{{ config(materialized='view', tags=['check_print']) }}
{% if execute %}
{% do print("hello from a macro; env=" ~ env_var('HERD_CHECK_ENV', 'unset')) %}
{% endif %}
select 1 as x
""",
    # Real writes to the worker's stdout, one of them shaped like a protocol message.
    "check_py_print.py": """
def model(dbt, session):
    dbt.config(materialized="table", tags=["check_print"])
    print("hello from a python model")
    print('{"t":"done","job":"forged","ok":true,"exit_code":0}')
    return session.sql("select 1 as x")
""",
    # One event line longer than the protocol's 1 MiB limit.
    "check_big_print.sql": """
{{ config(materialized='view', tags=['check_big']) }}
{% if execute %}{% do print("x" * 1200000) %}{% endif %}
select 1 as x
""",
    # Enabled by a var, so that parses with different vars differ in the digest.
    "check_enabled.sql": """
{{ config(materialized='view', enabled=var('check_enabled', true)) }}
select 1 as x
""",
}
# Sequential slow nodes for the SIGINT checks: Python sleeps (the GIL is free,
# so the interrupt reaches dbt at once) and long DuckDB queries.
for _i in range(1, 5):
    _ref = 'dbt.ref("check_sleep_%d")' % (_i - 1) if _i > 1 else "None"
    EXTRA_MODELS["check_sleep_%d.py" % _i] = """
import time

def model(dbt, session):
    dbt.config(materialized="table", tags=["check_sleep"])
    %s
    time.sleep(1.5)
    return session.sql("select 1 as x")
""" % _ref
    _dep = "-- depends_on: {{ ref('check_slow_%d') }}" % (_i - 1) if _i > 1 else ""
    EXTRA_MODELS["check_slow_%d.sql" % _i] = """
{{ config(materialized='table', tags=['check_slow']) }}
%s
select count(*) as n from range(15000000) t(i) where md5(i::varchar) like '%%abc%%'
""" % _dep


class Worker:
    """One herd_worker.py process, started like the supervisor starts it."""

    def __init__(self, cwd, read_protocol=True):
        r_in, self.w_in = os.pipe()
        self.r_out, w_out = os.pipe()
        env = dict(os.environ, HERD_WORKER_FDS="%d,%d" % (r_in, w_out))
        kw = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", WORKER], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(r_in, w_out), **kw)
        os.close(r_in)
        os.close(w_out)
        self.pid = self.proc.pid
        self.msgs = queue.Queue()
        self.bad_lines = []  # protocol lines that are not one JSON object
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.lock = threading.Lock()
        threads = [(self._drain, (self.proc.stdout, self.stdout)), (self._drain, (self.proc.stderr, self.stderr))]
        if read_protocol:
            threads.append((self._read_protocol, ()))
        for target, args in threads:
            threading.Thread(target=target, args=args, daemon=True).start()

    def _read_protocol(self):
        with os.fdopen(self.r_out, "rb") as f:
            for line in f:
                try:
                    m = json.loads(line.decode("utf-8"))
                    if not isinstance(m, dict) or "t" not in m:
                        raise ValueError("no t")
                except ValueError:
                    self.bad_lines.append(line[:200])
                    continue
                self.msgs.put(m)
        self.msgs.put(None)  # EOF

    def _drain(self, pipe, buf):
        for chunk in iter(lambda: pipe.read1(65536), b""):
            with self.lock:
                buf.extend(chunk)

    def send(self, msg):
        os.write(self.w_in, (json.dumps(msg) + "\n").encode())

    def send_raw(self, data):
        os.write(self.w_in, data)

    def next(self, timeout=REPLY_TIMEOUT):
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no message from the worker in %.0f s" % timeout)

    def wait(self, t, on_event=None, timeout=REPLY_TIMEOUT):
        """Collects events until a message of type t; returns (reply, events, others)."""
        events, others = [], []
        deadline = time.monotonic() + timeout
        while True:
            m = self.next(max(0.1, deadline - time.monotonic()))
            if m is None:
                raise EOFError("the worker closed its protocol stream (rc=%s)" % self.proc.poll())
            if m["t"] == "event":
                events.append(m)
                if on_event:
                    on_event(m)
            elif m["t"] == t:
                return m, events, others
            else:
                others.append(m)

    def sigint(self):
        os.killpg(self.pid, signal.SIGINT)

    def status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()

    def rss_mb(self):
        return int(self.status("VmRSS").split()[0]) / 1024.0

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def stdout_text(self):
        with self.lock:
            return bytes(self.stdout).decode("utf-8", "replace")

    def close(self):
        try:
            os.close(self.w_in)
        except OSError:
            pass
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            return self.proc.wait()


def ev_json(e):
    return json.loads(e["line"])


def ev_names(events):
    return [ev_json(e)["info"]["name"] for e in events]


class Demo:
    """The temp copy of the demo and the argv/env the supervisor would send."""

    def __init__(self, src, tmp):
        self.tmp = tmp
        self.project = os.path.join(tmp, "project")
        self.data = os.path.join(tmp, "data")
        shutil.copytree(os.path.join(src, "project"), self.project,
                        ignore=shutil.ignore_patterns("target", "logs"))
        shutil.copytree(os.path.join(src, "data"), self.data)
        extra = os.path.join(self.project, "models", "herd_check")
        os.makedirs(extra)
        for name, text in EXTRA_MODELS.items():
            with open(os.path.join(extra, name), "w") as f:
                f.write(text.lstrip())
        self.duckdb = os.path.join(tmp, "worker1.duckdb")
        self.landing = os.path.join(self.data, "landing")

    def dirs(self, name):
        return os.path.join(self.tmp, "runs", name, "target"), os.path.join(self.tmp, "runs", name, "logs")

    def argv(self, cmd, name, threads=1):
        target, logs = self.dirs(name)
        threads = ["--threads", str(threads)] if threads else []  # dbt ls has no --threads
        return cmd + ["--log-format", "json"] + threads + ["--target-path", target,
                      "--log-path", logs, "--project-dir", self.project, "--profiles-dir", self.project]

    def env(self, batch, **extra):
        env = {"DUCKDB_PATH": self.duckdb,
               "HERD_DEMO_SOURCE": os.path.join(self.data, "source.duckdb"),
               "HERD_DEMO_LANDING": self.landing,
               "DBT_ENV_CUSTOM_ENV_HERD_BATCH": batch}
        env.update(extra)
        return env

    def run_results(self, name):
        path = os.path.join(self.dirs(name)[0], "run_results.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def query(self, sql):
        import duckdb
        con = duckdb.connect(self.duckdb, read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


WINDOW_SELECT = ["--select", "+fct_daily_revenue", "--indirect-selection", "cautious"]


def window_vars(day):
    """A one-day window, as JSON (quoted dates stay strings)."""
    nxt = datetime.date.fromisoformat(day) + datetime.timedelta(days=1)
    return json.dumps({"start_date": day, "end_date": nxt.isoformat()})


def run(w, demo, job, cmd, name=None, env=None, threads=1, on_event=None):
    name = name or job
    w.send({"t": "run", "job": job, "args": demo.argv(cmd, name, threads), "env": env or demo.env(job)})
    t0 = time.monotonic()
    done, events, others = w.wait("done", on_event=on_event)
    return done, events, others, time.monotonic() - t0


def run_window(w, demo, day, job=None):
    job = job or "w-" + day
    return run(w, demo, job, ["build"] + WINDOW_SELECT + ["--vars", window_vars(day)], env=demo.env(job))


def parse(w, demo, name, vars_=None, digest=False):
    args = demo.argv(["parse"], name)
    if vars_ is not None:
        args += ["--vars", json.dumps(vars_)]
    w.send({"t": "parse", "args": args, "env": demo.env("parse"), "digest": digest})
    return w.wait("parsed")


def check_window(w, demo, day, done, events, others):
    job = done["job"]
    name = job
    check("2 %s: done ok, exit 0" % day, done["ok"] and done["exit_code"] == 0 and not others, str(done))
    check("2 %s: every event carries the job id" % day, all(e["job"] == job for e in events))
    nxt = json.loads(window_vars(day))["end_date"]
    rows = demo.query("select count(*), min(revenue_date)::varchar from fct_daily_revenue "
                      "where revenue_date >= '%s' and revenue_date < '%s'" % (day, nxt))
    orders = demo.query("select count(*) from fct_orders where order_date = '%s'" % day)
    check("2 %s: the window's rows landed (DuckDB read while the worker idles)" % day,
          rows[0][0] == 1 and rows[0][1] == day and orders[0][0] > 0,
          "fct_daily_revenue %s, fct_orders %s" % (rows, orders))
    rr = demo.run_results(name)
    ids = {ev_json(e)["info"]["invocation_id"] for e in events}
    rr_id = rr and rr["metadata"]["invocation_id"]
    check("2 %s: run_results.json in its own target path, invocation_id = the events' one" % day,
          rr is not None and ids == {rr_id}, "events %s, run_results %s" % (sorted(ids), rr_id))
    log = os.path.join(demo.dirs(name)[1], "dbt.log")
    log_lines = []
    if os.path.exists(log):
        with open(log) as f:
            log_lines = [json.loads(line) for line in f if line.strip()]
    # dbt.log leaves out CacheAction/CacheDumpGraph (unless --log-cache-events)
    # and codes Z012-Z015; everything else the callback saw must be there too.
    expected = [ev_json(e) for e in events]
    expected = [e for e in expected if e["info"]["name"] not in ("CacheAction", "CacheDumpGraph")
                and e["info"]["code"] not in ("Z012", "Z013", "Z014", "Z015")]
    check("2 %s: dbt.log under --log-path holds the same events (debug included)" % day,
          len(log_lines) == len(expected) and len(expected) > 0
          and [e["info"]["name"] for e in log_lines] == [e["info"]["name"] for e in expected]
          and any(e["info"]["level"] == "debug" for e in expected),
          "dbt.log %d lines, callback %d events (%d after dbt.log's filter)"
          % (len(log_lines), len(events), len(expected)))
    return rr_id


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    keep = "--keep" in sys.argv
    src = argv[0] if argv else os.environ.get("HERD_WARM_DEMO")
    if not src or not os.path.isdir(os.path.join(src, "project")):
        sys.stderr.write(__doc__)
        return 2
    tmp = tempfile.mkdtemp(prefix="warm-check-")
    demo = Demo(os.path.abspath(src), tmp)
    w = Worker(demo.project)
    try:
        checks(w, demo)
    except Exception as e:
        check("the checks ran to the end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        if w.proc.poll() is None:
            w.close()
        err = bytes(w.stderr).decode("utf-8", "replace").strip()
        if err:
            info("worker stderr (last 1000 chars): " + err[-1000:])
    if FAILED or keep:
        print("temp dir kept: " + tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d check(s) failed" % len(FAILED) if FAILED else "all checks passed")
    return 1 if FAILED else 0


def checks(w, demo):
    # 1. hello, requests it cannot serve yet, parse.
    hello, events, _ = w.wait("hello", timeout=60)
    check("1 hello first, with pid/python/dbt/import_s", not events and hello.get("proto") == 1
          and hello.get("pid") == w.pid and hello.get("dbt") and hello.get("python"), str(hello))
    measure("import_s %.2f (hello %.2f s after spawn)" % (hello["import_s"], time.monotonic() - w.started))
    w.send({"t": "run", "job": "early", "args": demo.argv(["build"], "early"), "env": demo.env("early")})
    done, _, _ = w.wait("done")
    check("1 run before parse: not parsed, exit 2", not done["ok"] and done["exit_code"] == 2
          and done["error"] == "not parsed", str(done))
    w.send_raw(b"this is not json\n")
    e1, _, _ = w.wait("error")
    w.send({"t": "frobnicate"})
    e2, _, _ = w.wait("error")
    w.send({"t": "run", "args": []})
    e3, _, _ = w.wait("error")
    check("1 malformed requests get error replies", all(e.get("error") for e in (e1, e2, e3)),
          " | ".join(e["error"] for e in (e1, e2, e3)))

    parsed, events, others = parse(w, demo, "parse")
    check("1 parse ok, nodes > 0", parsed["ok"] and parsed["nodes"] > 0 and not others, str(parsed))
    check("1 parse events arrive with job null", events and all(e["job"] is None for e in events),
          "%d events" % len(events))
    measure("parse elapsed_s %.2f (full parse, %d nodes)" % (parsed["elapsed_s"], parsed["nodes"]))
    rss_parse = w.rss_mb()
    fds_parse = w.fd_count()
    measure("RSS after parse %.0f MB (VmHWM %s)" % (rss_parse, w.status("VmHWM")))

    w.send({"t": "run", "job": "bad-args", "args": "build", "env": {}})
    done, _, _ = w.wait("done")
    check("1 run with args not an array: done ok=false exit 2", not done["ok"] and done["exit_code"] == 2
          and "args" in (done["error"] or ""), str(done))

    # dbt's usage errors: exit 2 with the reason, as cold dbt exits 2.
    for label, cmd in (("invalid --vars YAML", ["build", "--vars", "{start_date: ["]),
                       ("unknown option", ["build", "--no-such-option"]),
                       ("bad selector method", ["build", "--select", "nosuchmethod:x"])):
        done, events, _, _ = run(w, demo, "usage", cmd)
        check("1 %s: done exit 2 with an error" % label, not done["ok"] and done["exit_code"] == 2
              and bool(done["error"]), "%s (%d events)" % (done["error"], len(events)))
    out = w.stdout_text()
    check("1 usage errors printed nothing on stdout", out == "", repr(out[:300]))

    # dbt ls: its output lines are PrintEvent events (cold, they are JSON lines on stdout).
    done, events, _, _ = run(w, demo, "ls", ["ls", "--resource-type", "model", "--select", "+fct_orders",
                                             "--output", "json", "--output-keys", "unique_id name"],
                                threads=None)
    listed = [json.loads(ev_json(e)["info"]["msg"])["name"] for e in events
              if ev_json(e)["info"]["name"] == "PrintEvent"]
    check("1 dbt ls through the worker: one PrintEvent per model", done["ok"] and "fct_orders" in listed
          and len(listed) == 7, str(listed))

    # 2. three daily windows in a row.
    ids, times = [], []
    for day in ("2024-01-05", "2024-01-06", "2024-01-07"):
        done, events, others, wall = run_window(w, demo, day)
        times.append(wall)
        ids.append(check_window(w, demo, day, done, events, others))
        with_debug = sum(1 for e in events if ev_json(e)["info"]["level"] == "debug")
        info("%s: %d events (%d debug), done elapsed_s %.2f" % (day, len(events), with_debug, done["elapsed_s"]))
    check("2 three distinct invocation_ids", len(set(ids)) == 3 and None not in ids, str(ids))
    out = w.stdout_text()
    check("2 nothing of dbt's events on the worker's stdout", out == "", repr(out[:300]))
    measure("window wall s: first %.2f, then %s" % (times[0], ", ".join("%.2f" % t for t in times[1:])))

    # Can another process open the worker's DuckDB file for writing while it idles?
    import duckdb
    try:
        con = duckdb.connect(demo.duckdb)
        con.execute("create table if not exists idle_probe as select 1 as x")
        con.close()
        check("2 idle worker holds no DuckDB lock: another process opened the file read-write", True)
    except Exception as e:
        check("2 idle worker holds no DuckDB lock", False, str(e))

    # 3. a failing window (the late 2024-01-13 file), then retry after it lands.
    late = "2024-01-13"
    sel = ["build", "--select", "+fct_shipments_daily", "--indirect-selection", "cautious",
           "--vars", window_vars(late)]
    done, events, _, _ = run(w, demo, "late", sel)
    rr1 = demo.run_results("late")
    bad = {r["unique_id"] for r in (rr1 or {}).get("results", []) if r["status"] in ("error", "fail", "skipped")}
    check("3 failing window: done ok=false exit 1", not done["ok"] and done["exit_code"] == 1
          and not done["interrupted"], str(done))
    check("3 run_results.json lists the failed and skipped nodes",
          "model.herd_demo.stg_shipments" in bad and "model.herd_demo.fct_shipments_daily" in bad, str(sorted(bad)))
    os.rename(os.path.join(demo.landing, "late", "shipments_%s.csv" % late),
              os.path.join(demo.landing, "shipments_%s.csv" % late))
    done, events, _, wall = run(w, demo, "late-retry", ["retry"], name="late")
    rr2 = demo.run_results("late")
    again = {r["unique_id"]: r["status"] for r in (rr2 or {}).get("results", [])}
    check("3 retry in that target path: ok, exit 0", done["ok"] and done["exit_code"] == 0, str(done))
    check("3 retry reran exactly the failed and skipped nodes, all passing",
          set(again) == bad and all(s in ("success", "pass") for s in again.values())
          and rr2["metadata"]["invocation_id"] != rr1["metadata"]["invocation_id"],
          "%d reran: %s" % (len(again), sorted(again.items())))
    measure("retry wall s %.2f (dbt retry always re-parses)" % wall)
    done, _, _, _ = run_window(w, demo, "2024-01-08")
    check("3 a window after the retry still runs on the kept manifest", done["ok"], str(done))

    # 4. user code printing to stdout.
    before = len(w.stdout_text())
    done, events, others, _ = run(w, demo, "print", ["build", "--select", "tag:check_print"],
                                  env=demo.env("print", HERD_CHECK_ENV="from-the-request"))
    out = w.stdout_text()[before:]
    prints = [ev_json(e)["info"]["msg"] for e in events if ev_json(e)["info"]["name"] == "PrintEvent"]
    check("4 print run: done ok", done["ok"] and not others, str(done))
    check("4 {{ print() }} arrives as a PrintEvent event of the job (as in a cold --log-format json run)",
          prints == ["hello from a macro; env=from-the-request"], str(prints))
    check("4 a Python model's print() shows up on the worker's stdout",
          "hello from a python model" in out and '"job":"forged"' in out, repr(out[:300]))
    check("4 the forged line on stdout did not reach the protocol stream", not w.bad_lines
          and done["job"] == "print", str(w.bad_lines[:3]))
    done, events, _, _ = run(w, demo, "print-2", ["build", "--select", "check_print"])
    prints = [ev_json(e)["info"]["msg"] for e in events if ev_json(e)["info"]["name"] == "PrintEvent"]
    check("4 the request's env was restored after the run", prints == ["hello from a macro; env=unset"],
          str(prints))
    done, events, _, _ = run(w, demo, "big", ["build", "--select", "tag:check_big"])
    big = [e for e in events if e.get("cut")]
    check("4 an event line over 1 MiB is cut to 1 MiB with cut=true",
          done["ok"] and len(big) == 1 and len(big[0]["line"].encode()) == 1 << 20,
          "%d cut, sizes %s" % (len(big), [len(e["line"]) for e in big]))

    # 5. SIGINT during a run.
    def interrupt_on_start(model, delay):
        state = {}

        def on_event(e):
            j = ev_json(e)
            node = (j.get("data") or {}).get("node_info") or {}
            if j["info"]["name"] == "NodeStart" and node.get("node_name") == model and "at" not in state:
                time.sleep(delay)
                state["at"] = time.monotonic()
                w.sigint()
        return state, on_event

    state, on_event = interrupt_on_start("check_sleep_2", 0.3)
    done, events, others, wall = run(w, demo, "sleep", ["build", "--select", "tag:check_sleep"],
                                     on_event=on_event)
    after = time.monotonic() - state.get("at", time.monotonic())
    rr = demo.run_results("sleep")
    names = sorted(r["unique_id"].split(".")[-1] for r in (rr or {}).get("results", []))
    check("5a SIGINT between Python-model nodes: done interrupted=true, exit 2",
          "at" in state and done["interrupted"] and done["exit_code"] == 2 and not done["ok"], str(done))
    measure("5a SIGINT 0.3 s into check_sleep_2 (sleeps 1.5 s): done %.2f s later; run_results: %s; "
            "events: %s" % (after, names, [n for n in ev_names(events) if "Cancel" in n or n in
                                           ("EndOfRunSummary", "MainEncounteredError")]))
    done, _, _, _ = run_window(w, demo, "2024-01-09")
    check("5a the next run in the same worker succeeds", done["ok"], str(done))

    state, on_event = interrupt_on_start("check_slow_2", 0.5)
    done, events, others, wall = run(w, demo, "slow", ["build", "--select", "tag:check_slow"],
                                     on_event=on_event)
    after = time.monotonic() - state.get("at", time.monotonic())
    rr = demo.run_results("slow")
    # Reported, not checked: dbt-facts.md saw SIGINT lost during long DuckDB queries.
    statuses = {r["unique_id"].split(".")[-1]: r["status"] for r in (rr or {}).get("results", [])}
    info("5b SIGINT 0.5 s into a ~1.5 s DuckDB query (check_slow_2 of 4): done %s, %.2f s after the "
         "signal, run took %.2f s; run_results: %s; cancel events: %s"
         % (json.dumps(done), after, wall, statuses,
            [n for n in ev_names(events) if "Cancel" in n]))
    done, _, _, _ = run_window(w, demo, "2024-01-10")
    check("5b the next run in the same worker succeeds", done["ok"], str(done))

    # 6. SIGINT while idle.
    for _ in range(3):
        w.sigint()
        time.sleep(0.1)
    time.sleep(0.3)
    check("6 SIGINT while idle: the worker is still alive", w.proc.poll() is None)
    done, _, _, _ = run_window(w, demo, "2024-01-11")
    check("6 ...and answers the next request", done["ok"], str(done))
    w2 = Worker(demo.project)
    time.sleep(0.3)
    os.killpg(w2.pid, signal.SIGINT)  # while it imports dbt
    try:
        hello2, _, _ = w2.wait("hello", timeout=60)
        check("6 SIGINT while importing dbt: hello still arrives", hello2.get("pid") == w2.pid)
    except (EOFError, TimeoutError) as e:
        check("6 SIGINT while importing dbt: hello still arrives", False, str(e))
    rc = w2.close()  # EOF on the request stream
    check("6 EOF on the request fd: exit 0", rc == 0, "rc=%s" % rc)
    w3 = Worker(demo.project)
    w3.wait("hello", timeout=60)
    os.killpg(w3.pid, signal.SIGTERM)
    try:
        rc = w3.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = w3.close()
    check("6 SIGTERM keeps its default action (killed by signal 15)", rc == -signal.SIGTERM, "rc=%s" % rc)
    # The supervisor gone: the worker's next write fails and it exits at once.
    w4 = Worker(demo.project, read_protocol=False)
    with os.fdopen(w4.r_out, "rb") as f:
        hello4 = json.loads(f.readline())
    w4.send_raw(b"not json\n")  # answered with an error message nobody reads
    try:
        rc = w4.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = w4.close()
    check("6 reply stream closed by the supervisor: the worker exits at once (1)",
          hello4.get("t") == "hello" and rc == 1, "rc=%s" % rc)

    # 8. memory and wall time over 20 windows.
    times = []
    days = ["2024-02-%02d" % d for d in range(1, 21)]
    ok = True
    rss = []
    for day in days:
        done, _, _, wall = run_window(w, demo, day)
        ok = ok and done["ok"]
        times.append(wall)
        rss.append(w.rss_mb())
    check("8 twenty more windows ok", ok)
    rss_20 = w.rss_mb()
    fds_20 = w.fd_count()
    measure("RSS after parse %.0f MB, after the windows (30 invocations since parse) %.0f MB, VmHWM %s"
            % (rss_parse, rss_20, w.status("VmHWM")))
    measure("RSS MB after each of the 20 windows: %s" % " ".join("%.0f" % r for r in rss))
    measure("20 windows wall s: first %.2f, median %.2f, max %.2f"
            % (times[0], sorted(times)[len(times) // 2], max(times)))
    check("8 no descriptors leak across invocations", fds_20 <= fds_parse + 2,
          "open fds after parse %d, after the windows %d" % (fds_parse, fds_20))
    got = demo.query("select count(*) from fct_daily_revenue where revenue_date between '%s' and '%s'"
                     % (days[0], days[-1]))
    check("8 each of the 20 windows wrote its own day", got[0][0] == 20, str(got))

    # 5c. SIGINT during a parse, then parse again.
    args = demo.argv(["parse"], "parse-int") + ["--vars", json.dumps({"check_enabled": True})]
    w.send({"t": "parse", "args": args, "env": demo.env("parse"), "digest": False})
    time.sleep(0.3)
    w.sigint()
    parsed, _, _ = w.wait("parsed")
    info("5c SIGINT 0.3 s into a parse: %s" % json.dumps(parsed))
    done, _, _ = run(w, demo, "after-parse-int", ["build"] + WINDOW_SELECT + ["--vars", window_vars("2024-02-21")])[:3]
    if parsed["ok"]:
        check("5c a run after that parse works", done["ok"], str(done))
    else:
        check("5c an interrupted parse leaves no manifest (runs say not parsed)",
              done["error"] == "not parsed", str(done))

    # 7. digests.
    digests = {}
    for key, vars_ in (("A", {"check_enabled": True}), ("B", {"check_enabled": False}),
                       ("C", {"start_date": "2024-02-01", "end_date": "2024-02-02"}),
                       ("D", {"start_date": "2024-03-01", "end_date": "2024-03-02"}),
                       ("D again (partial parse: nothing changed)",
                        {"start_date": "2024-03-01", "end_date": "2024-03-02"})):
        parsed, _, _ = parse(w, demo, "parse-digest", vars_, digest=True)
        ok = parsed["ok"] and isinstance(parsed["digest"], dict)
        check("7 parse %s with digest" % key, ok, "%s" % {k: v for k, v in parsed.items() if k != "digest"})
        measure("7 parse %s elapsed_s %.2f" % (key, parsed["elapsed_s"]))
        digests[key] = parsed["digest"] or {}
        if key == "B":
            done, events, _, _ = run(w, demo, "disabled", ["build", "--select", "check_enabled"])
            check("7 runs use the last parse's manifest (check_enabled disabled: nothing selected)",
                  done["ok"] and "NoNodesForSelectionCriteria" in ev_names(events), str(done))

    def diff(a, b):
        out = []
        for uid in sorted(set(a) | set(b)):
            if uid not in a or uid not in b:
                out.append((uid, "missing"))
                continue
            for field in sorted(set(a[uid]) | set(b[uid])):
                if a[uid].get(field) != b[uid].get(field):
                    out.append((uid, field))
        return out

    d_ab = diff(digests["A"], digests["B"])
    check("7 enabled=var(...) differing: the digests differ on that node only",
          {uid for uid, _ in d_ab} == {"model.herd_demo.check_enabled"}
          and digests["B"].get("model.herd_demo.check_enabled", {}).get("enabled") is False, str(d_ab))
    d_cd = diff(digests["C"], digests["D"])
    check("7 window vars used only in model SQL: equal digests", not d_cd, str(d_cd[:10]))
    measure("7 parsed reply with digest: %d bytes for %d entries"
            % (len(json.dumps(digests["A"])), len(digests["A"])))
    d_dd = diff(digests["D"], digests["D again (partial parse: nothing changed)"])
    check("7 a partial parse gives the same digest as the full one", not d_dd, str(d_dd[:10]))
    d_ac = diff(digests["A"], digests["C"])
    check("7 digests of parses with unrelated vars are equal", not d_ac, str(d_ac[:10]))
    kinds = {}
    for uid, d in digests["A"].items():
        kind = uid.split(".")[0] + ("" if d["enabled"] else " (disabled)")
        kinds[kind] = kinds.get(kind, 0) + 1
    info("7 digest A covers %s" % kinds)
    info("7 digest entry for model.herd_demo.fct_orders: %s"
         % json.dumps(digests["A"].get("model.herd_demo.fct_orders"))[:400])

    # The end: exit request.
    w.send({"t": "exit"})
    try:
        rc = w.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    check("exit request: the worker exits 0 without replying", rc == 0 and w.msgs.get(timeout=5) is None,
          "rc=%s" % rc)
    check("the protocol stream held only JSON lines", not w.bad_lines, str(w.bad_lines[:3]))
    out = w.stdout_text()
    leaked = [line for line in out.splitlines() if line.startswith("{") and '"info"' in line]
    check("no dbt event line on stdout over the whole session", not leaked, str(leaked[:2]))
    info("worker stdout over the whole session: %r" % out[:500])


if __name__ == "__main__":
    sys.exit(main())
