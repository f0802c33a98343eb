"""A warm dbt worker: imports dbt once, parses once, then runs many invocations.

Started with its cwd in the dbt project, stdin on /dev/null, and stdout/stderr
drained into the running batch's raw log. The protocol runs over two inherited
descriptors named in HERD_WORKER_FDS="<in_fd>,<out_fd>": one JSON object per
line each way, never on stdout, because dbt, adapters, Python models and user
code may print anything there.

Requests:  parse {args, env, digest} | run {job, args, env} | exit
Replies:   hello, event {job, line[, cut]}, parsed, done, error

SIGINT cancels the request in progress the way it cancels a cold dbt (dbt's own
KeyboardInterrupt handling, which also cancels warehouse queries) and is
ignored while idle, so the supervisor can signal the whole process group at any
time. SIGTERM keeps its default action.

Python 3.9+ standard library and dbt only.
"""
import json
import os
import signal
import sys
import threading
import time
import traceback

PROTO = 1
MAX_EVENT_LINE = 1 << 20  # bytes; a longer event line is cut
MAX_ERROR = 64 * 1024  # characters of an error text

_out_fd = -1
_out_lock = threading.Lock()
_job = None  # id of the run in progress; events of a parse carry null
_busy = False  # a dbt invocation is in progress: SIGINT interrupts it
_in_send = False  # the main thread is writing a message: SIGINT must wait
_pending_sigint = False
_sigint_seen = False  # SIGINT reached the invocation in progress
_manifest = None


def send(msg):
    """Writes one message as one line. Under a lock, so that lines written by
    dbt's node threads (events) never interleave; exits at once when the
    supervisor is gone, because nobody would read what we do next."""
    global _in_send, _pending_sigint
    # ensure_ascii=False + "replace": lone surrogates (undecodable paths, env
    # values) become "?" instead of \udXXX escapes that strict parsers reject.
    data = (json.dumps(msg, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
        "utf-8", "replace")
    main = threading.current_thread() is threading.main_thread()
    if main:
        _in_send = True  # a KeyboardInterrupt mid-write would leave half a line
    try:
        with _out_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(_out_fd, view):]
    except OSError:
        os._exit(1)
    finally:
        if main:
            _in_send = False
    if main and _pending_sigint and _busy:
        _pending_sigint = False
        raise KeyboardInterrupt


def _on_sigint(signum, frame):
    """Idle: ignore (the handler, unlike SIG_IGN, is not inherited by programs
    dbt or user code exec). Busy: raise KeyboardInterrupt like Python's default
    handler, which is what dbt's cancel logic waits for; but not in the middle
    of writing a line, and not in _invoke's own frame right after dbt returned,
    where it would only throw away a finished result."""
    global _pending_sigint, _sigint_seen
    if not _busy:
        return
    _sigint_seen = True
    if _in_send:
        _pending_sigint = True
        return
    if frame is not None and frame.f_code is _invoke.__code__:
        return
    raise KeyboardInterrupt


def describe(exc):
    """Class and message on one line, plus where it was raised."""
    text = " ".join(str(exc).split())
    out = type(exc).__name__ + (": " + text if text else "")
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames:
        f = frames[-1]
        out += " (at %s:%s in %s)" % (os.path.basename(f.filename), f.lineno, f.name)
    return out[:MAX_ERROR]


def on_event(ev):
    """dbtRunner callback, called in whichever thread fired the event."""
    try:
        # The stdout JSON logger scrubs DBT_ENV_SECRET_* values out of the
        # line after msg_to_json; do the same so the line is identical.
        line = env_scrubber(msg_to_json(ev))
        msg = {"t": "event", "job": _job, "line": line}
        raw = line.encode("utf-8", "replace")
        if len(raw) > MAX_EVENT_LINE:
            msg["line"] = raw[:MAX_EVENT_LINE].decode("utf-8", "ignore")
            msg["cut"] = True
    except Exception as e:  # never break dbt's run because of one event
        sys.stderr.write("herd_worker: event not sent: %s\n" % describe(e))
        return
    send(msg)


class _Env:
    """Sets the request's env for one invocation, then restores what was there."""

    def __init__(self, env):
        if not isinstance(env, dict):
            raise TypeError("env must be an object of strings")
        self.env = env
        self.saved = {}

    def __enter__(self):
        try:
            for k, v in self.env.items():
                self.saved[k] = os.environ.get(k)
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = str(v)
        except BaseException:  # e.g. a NUL in a value: undo what was set
            self.__exit__()
            raise
        # dbt caches DBT_ENV_CUSTOM_ENV_* (every event's info.extra) on first use.
        reset_metadata_vars()

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_metadata_vars()


def _invoke(runner, args):
    global _busy, _pending_sigint, _sigint_seen
    _pending_sigint = _sigint_seen = False
    _busy = True
    try:
        return runner.invoke(args)
    finally:
        _busy = False


def _after_invocation():
    """Leaves nothing of the finished invocation open while idle.

    dbt's file logger keeps the batch's dbt.log open until the next invocation
    sets up its own; events fired before that setup would land in the old file.
    dbt-duckdb keeps its DuckDB database (and attached files) open between
    invocations (keep_open defaults to true), which holds the file lock while
    the worker idles, so nothing else could open the worker's DuckDB file."""
    import logging
    try:
        em = get_event_manager()
        em.loggers.clear()
        em.callbacks = [on_event]
        for name in ("file_log", "stdout_log"):
            log = logging.getLogger(name)
            for h in list(log.handlers):
                log.removeHandler(h)
                if isinstance(h, logging.FileHandler):
                    h.close()
        ddb = sys.modules.get("dbt.adapters.duckdb.connections")
        if ddb is not None:
            cm = ddb.DuckDBConnectionManager
            with cm._LOCK:
                env, cm._ENV = cm._ENV, None
            if env is not None:
                env.close()
    except Exception as e:  # the invocation's result matters more
        sys.stderr.write("herd_worker: cleanup after the invocation: %s\n" % describe(e))


def run_dbt(job, args, env):
    """One invocation. Returns (result or None, KeyboardInterrupt caught here)."""
    global _job
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise TypeError("args must be an array of strings")
    _job = job
    try:
        with _Env(env or {}):
            try:
                manifest = None if args[:1] == ["parse"] else _manifest
                return _invoke(dbtRunner(manifest=manifest, callbacks=[on_event]), args), False
            except KeyboardInterrupt:
                return None, True
    finally:
        _job = None
        _after_invocation()


def _clean(v):
    """JSON-safe copy (sets, dates, enums become lists and strings)."""
    return json.loads(json.dumps(v, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def digest(manifest):
    """What the parse baked into each node, for comparing two parses node by node."""
    out = {}
    items = [(n, True) for n in manifest.nodes.values()]
    items += [(s, True) for s in manifest.sources.values()]
    items += [(d, False) for ds in manifest.disabled.values() for d in ds]
    for node, enabled in items:
        if node.unique_id in out:
            continue  # a disabled twin of an enabled node (or of another disabled one)
        d = node.to_dict(omit_none=False)
        out[node.unique_id] = _clean({
            "database": d.get("database"),
            "schema": d.get("schema"),
            "alias": d.get("alias", d.get("identifier")),
            "config": d.get("config"),
            "depends_on": d.get("depends_on"),
            "refs": d.get("refs"),
            "sources": d.get("sources"),
            "checksum": d.get("checksum"),
            "enabled": enabled and bool((d.get("config") or {}).get("enabled", True)),
        })
    return out


def handle_parse(req):
    global _manifest
    t0 = time.monotonic()
    reply = {"t": "parsed", "ok": False, "elapsed_s": 0.0, "nodes": 0, "error": None, "digest": None}
    _manifest = None  # a failed parse must not leave the runs on an older one
    try:
        res, caught = run_dbt(None, req.get("args"), req.get("env"))
        if caught or (_sigint_seen and not res.success):
            # A KeyboardInterrupt deep in the parser may come out as another
            # exception (mashumaro wraps it in InvalidFieldValue, for one).
            cause = res.exception if res is not None else None
            reply["error"] = "KeyboardInterrupt: parse interrupted by SIGINT" + (
                "" if cause is None or isinstance(cause, KeyboardInterrupt) else " (%s)" % describe(cause))
        elif not res.success:
            reply["error"] = describe(res.exception) if res.exception else "parse failed"
        elif not isinstance(res.result, Manifest):
            reply["error"] = "the invocation did not return a manifest (args must start with parse)"
        else:
            _manifest = res.result
            reply["ok"] = True
            reply["nodes"] = len(_manifest.nodes)
            if req.get("digest"):
                reply["digest"] = digest(_manifest)
    except Exception as e:
        _manifest = None
        reply["ok"], reply["digest"] = False, None
        reply["error"] = describe(e)
    reply["elapsed_s"] = round(time.monotonic() - t0, 3)
    send(reply)


def _failures(result):
    """A one-line summary of the nodes that did not succeed (exit code 1)."""
    bad = [(r.node.unique_id, str(getattr(r.status, "value", r.status)))
           for r in getattr(result, "results", None) or []
           if str(getattr(r.status, "value", r.status)) in ("error", "fail", "runtime error", "partial success")]
    if not bad:
        return "dbt reported failure"
    shown = ", ".join("%s (%s)" % b for b in bad[:5])
    return "%d node(s) failed: %s%s" % (len(bad), shown, ", ..." if len(bad) > 5 else "")


def _forget_paths(manifest):
    """Clears where the last invocation wrote each node's SQL.

    The parsed manifest is shared by every batch of this worker, and dbt names
    a node's file in its errors ("compiled code at ...") from the path it last
    wrote: a node that fails before this invocation writes it again would point
    at the previous batch's target dir, whose SQL has other dates."""
    # dbt only writes these two, and reads them only to name files in messages.
    for node in manifest.nodes.values():
        for attr in ("build_path", "compiled_path"):
            if getattr(node, attr, None) is not None:
                try:
                    setattr(node, attr, None)
                except Exception:  # a node type without the field: nothing to forget
                    pass


def handle_run(req):
    job = req["job"]
    t0 = time.monotonic()
    reply = {"t": "done", "job": job, "ok": False, "exit_code": 2, "interrupted": False,
             "error": None, "elapsed_s": 0.0}
    try:
        if _manifest is None:
            reply["error"] = "not parsed"
        else:
            _forget_paths(_manifest)
            res, caught = run_dbt(job, req.get("args"), req.get("env"))
            exc = res.exception if res is not None else KeyboardInterrupt()
            # Also when dbt turned the KeyboardInterrupt into another error.
            reply["interrupted"] = caught or isinstance(exc, KeyboardInterrupt) or (
                _sigint_seen and not res.success)
            if res is not None and res.success:
                reply["ok"], reply["exit_code"] = True, 0
            elif exc is None:  # the invocation ran; nodes failed (dbt's exit 1)
                reply["exit_code"], reply["error"] = 1, _failures(res.result)
            else:
                reply["error"] = describe(exc)
    except Exception as e:
        reply["ok"], reply["exit_code"], reply["error"] = False, 2, describe(e)
    reply["elapsed_s"] = round(time.monotonic() - t0, 3)
    send(reply)


def serve(infile):
    for raw in infile:
        if not raw.strip():
            continue
        try:
            req = json.loads(raw.decode("utf-8"))
            t = req.get("t") if isinstance(req, dict) else None
        except ValueError as e:
            send({"t": "error", "error": "not a JSON line: %s" % describe(e)})
            continue
        if t == "exit":
            return
        if t == "parse":
            handle_parse(req)
        elif t == "run" and isinstance(req.get("job"), str):
            handle_run(req)
        elif t == "run":
            send({"t": "error", "error": "run request without a string job id"})
        else:
            send({"t": "error", "error": "unknown request type %r" % (t,)})


def main():
    global _out_fd, dbtRunner, Manifest, msg_to_json, env_scrubber
    global reset_metadata_vars, get_event_manager
    signal.signal(signal.SIGINT, _on_sigint)  # from the start: importing dbt is idle time too
    try:
        in_fd, _out_fd = (int(x) for x in os.environ["HERD_WORKER_FDS"].split(","))
    except (KeyError, ValueError):
        sys.stderr.write("herd_worker: HERD_WORKER_FDS must be \"<in_fd>,<out_fd>\"\n")
        return 2
    # Programs started by dbt or user code must not hold the protocol pipes
    # open: the supervisor would never see EOF when this worker dies.
    os.set_inheritable(in_fd, False)
    os.set_inheritable(_out_fd, False)
    os.environ.pop("HERD_WORKER_FDS", None)

    t0 = time.monotonic()
    from dbt.cli.main import dbtRunner
    from dbt.contracts.graph.manifest import Manifest
    from dbt.version import __version__ as dbt_version
    from dbt_common.events.functions import env_scrubber, msg_to_json, reset_metadata_vars
    from dbt_common.events.event_manager_client import get_event_manager
    import dbt.events.logging as dbt_logging
    import_s = time.monotonic() - t0

    # Events reach the supervisor through the callback. dbt's console logger
    # would print every one of them a second time on stdout, so each
    # invocation's console logger gets a filter that drops everything. The
    # file logger (dbt.log under --log-path) is left as it is, and the argv
    # stays what a cold batch gets (so run_results.json `args` match too).
    stdout_config = getattr(dbt_logging, "get_stdout_config", None)

    def muted_stdout_config(*a, **kw):
        config = stdout_config(*a, **kw)
        config.filter = lambda msg: False
        return config

    if stdout_config is None:
        sys.stderr.write("herd_worker: this dbt has no get_stdout_config; events also go to stdout\n")
    else:
        dbt_logging.get_stdout_config = muted_stdout_config
    get_event_manager().callbacks = [on_event]

    send({"t": "hello", "proto": PROTO, "pid": os.getpid(),
          "python": "%d.%d.%d" % sys.version_info[:3], "dbt": dbt_version,
          "import_s": round(import_s, 3)})
    with os.fdopen(in_fd, "rb") as infile:
        serve(infile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
