#!/usr/bin/env python3
"""A stand-in for `dbt` that misbehaves on demand, for faults real dbt won't
produce when asked. The batch's `--select` names the behaviour:

  ok         three nodes succeed, run_results.json written, exit 0
  fail       node 2 errors, node 3 skipped, exit 1
  flaky      fails like `fail` on the first run in a target dir; `dbt retry` fixes it
  crash      a few events, then SIGSEGV (no run_results.json)
  norr       exit 1 without run_results.json
  empty      the selection matches nothing (dbt's exit 0 + warning)
  hang       ignores SIGINT and SIGTERM and sleeps: only SIGKILL ends it
  sleepy     sleeps FAKE_SLEEP seconds (default 30) then succeeds; SIGINT ends it like dbt (exit 2)
  orphan     leaves a grandchild that ignores SIGTERM, then exits 0
  garbage    invalid UTF-8, escape sequences and a 2 MB line, run_results.json, exit 0
  nothing    exit 0 with no event and no run_results.json (not dbt)
  stale      writes run_results.json with another invocation_id, exit 0
  flood      FAKE_LINES (default 20000) log events as fast as it can, then succeeds

FAKE_FLAKY_WINDOWS=a,b,… makes the windows that start on those dates `flaky`
(a backfill of many windows with a few failing).
"""
import json, os, signal, sys, time, uuid

args = sys.argv[1:]
cmd = args[0] if args else ""

def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default

target = opt("--target-path")
select = opt("--select", "ok")
flaky_windows = [v for v in os.environ.get("FAKE_FLAKY_WINDOWS", "").split(",") if v]
if cmd != "retry" and flaky_windows:
    try:
        start = json.loads(opt("--vars", "{}")).get("start_date")
    except ValueError:
        start = None
    if start in flaky_windows:
        select = "flaky"
inv = str(uuid.uuid4())
batch = os.environ.get("DBT_ENV_CUSTOM_ENV_HERD_BATCH", "?")
rr_path = os.path.join(target, "run_results.json") if target else None

if target:
    # Leave a trace of every invocation beside the target dir, for the tests.
    os.makedirs(target, exist_ok=True)
    seen = {k: v for k, v in os.environ.items() if k.startswith(("HERD_", "DBT_ENV_CUSTOM_ENV_"))}
    with open(os.path.join(os.path.dirname(target), "invocations.jsonl"), "a") as f:
        f.write(json.dumps({"argv": args, "env": seen, "pid": os.getpid(), "pgid": os.getpgid(0)}) + "\n")

if cmd == "retry":
    # dbt retry: rerun the error/skipped nodes of the previous invocation.
    try:
        prev = json.load(open(rr_path))
        select = prev["args"]["select"]
    except Exception:
        print("Could not find previous run in target directory", file=sys.stderr)
        sys.exit(2)

def event(name, level="info", msg="", **data):
    line = {"info": {"name": name, "level": level, "msg": msg, "invocation_id": inv,
                     "ts": "2024-01-01T00:00:00Z", "pid": os.getpid(), "thread": "MainThread",
                     "extra": {"HERD_BATCH": batch}},
            "data": data}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()

def node(i):
    return {"unique_id": f"model.fake.m{i}", "node_name": f"m{i}", "resource_type": "model",
            "node_path": f"m{i}.sql", "node_status": "success"}

def write_results(statuses, extra_args=None):
    results = [{"unique_id": f"model.fake.m{i}", "status": st, "execution_time": 0.01,
                "message": ("boom in m%d" % i) if st == "error" else None, "failures": None,
                "relation_name": None, "timing": [], "thread_id": "Thread-1", "adapter_response": {}}
               for i, st in statuses]
    doc = {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                        "invocation_id": inv, "env": {}},
           "results": results, "elapsed_time": 0.1,
           "args": {"select": select, "which": cmd}}
    text = json.dumps(doc)
    # Like dbt: open in place and write in pieces (no rename).
    with open(rr_path, "w") as f:
        half = len(text) // 2
        f.write(text[:half]); f.flush()
        f.write(text[half:])

def run_nodes(statuses):
    event("ConcurrencyLine", msg="Concurrency: 1 threads", num_threads=int(opt("--threads", "1")),
          node_count=len(statuses), target_name="fake")
    for i, st in statuses:
        if st == "skipped":
            event("SkippingDetails", msg=f"SKIP m{i}", node_info=node(i), index=i, total=len(statuses))
            continue
        event("LogStartLine", msg=f"START m{i}", node_info=node(i), index=i, total=len(statuses))
        ni = node(i); ni["node_status"] = st
        event("LogModelResult", level="error" if st == "error" else "info",
              msg=f"{st} m{i}", node_info=ni, status=st, execution_time=0.01, index=i, total=len(statuses))

event("MainReportVersion", msg="Running with dbt=1.11.0 (fake)")

if select in ("ok",) or (cmd == "retry" and select == "flaky"):
    statuses = [(1, "success"), (2, "success"), (3, "success")] if cmd != "retry" else [(2, "success"), (3, "success")]
    run_nodes(statuses); write_results(statuses)
    event("CommandCompleted", level="debug", success=True); sys.exit(0)
elif select in ("fail", "flaky"):
    statuses = [(1, "success"), (2, "error"), (3, "skipped")]
    run_nodes(statuses); write_results(statuses)
    event("RunResultError", level="error", msg="boom in m2")
    event("CommandCompleted", level="debug", success=False); sys.exit(1)
elif select == "crash":
    run_nodes([(1, "success")])
    os.kill(os.getpid(), signal.SIGSEGV)
elif select == "norr":
    event("MainEncounteredError", level="error", msg="Encountered an error: fake compile error")
    sys.exit(1)
elif select == "empty":
    event("NoNodesForSelectionCriteria", level="warn",
          msg="The selection criterion 'empty' does not match any enabled nodes")
    event("NothingToDo", level="warn", msg="Nothing to do.")
    sys.exit(0)
elif select == "hang":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run_nodes([(1, "success")])
    while True:
        time.sleep(1)
elif select == "flood":
    for i in range(int(os.environ.get("FAKE_LINES", "20000"))):
        event("JinjaLogInfo", msg=f"flood line {i} " + "x" * 80)
    run_nodes([(1, "success")]); write_results([(1, "success")]); sys.exit(0)
elif select == "sleepy":
    def on_int(*_):
        event("LogCancelLine", msg="CANCEL query")
        write_results([(1, "success")])
        sys.exit(2)
    signal.signal(signal.SIGINT, on_int)
    event("LogStartLine", msg="START m1", node_info=node(1), index=1, total=1)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "30")))
    run_nodes([(1, "success")]); write_results([(1, "success")]); sys.exit(0)
elif select == "orphan":
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.closerange(0, 3)  # don't hold the pipes: only the group keeps it visible
        time.sleep(300)
        os._exit(0)
    statuses = [(1, "success")]
    run_nodes(statuses); write_results(statuses); sys.exit(0)
elif select == "garbage":
    out = sys.stdout.buffer
    out.write(b"plain \xff\xfe invalid utf8\n")
    out.write(b"\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x07title\x1b[2J\n")
    out.write(b"x" * (2 * 1024 * 1024))
    out.write(b"\n{not json\n")
    out.flush()
    write_results([])
    sys.exit(0)
elif select == "nothing":
    sys.exit(0)
elif select == "stale":
    inv_real = inv
    inv = "someone-else"
    write_results([(1, "success")])
    inv = inv_real
    run_nodes([(1, "error")])
    sys.exit(0)
else:
    print(f"fake dbt: unknown behaviour {select!r}", file=sys.stderr)
    sys.exit(2)
