//! Warm workers end to end: the real binary against real dbt-core 1.11 +
//! dbt-duckdb on the demo project (and, for protocol faults, against small fake
//! worker programs). Each warm worker is a long-lived Python process; every test
//! checks that none outlives the run.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::demo::*;
use common::running::{Finished, start};
use common::tmux::{Tmux, shell_line};
use common::*;
use dbt_herd::demo::{DemoDirs, LATE_DAY};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(120);

/// A Python model that takes a few seconds, so that a test can act while it runs.
const SLOW_MODEL: &str = "def model(dbt, session):\n    import time\n    time.sleep(4)\n    return session.sql(\"select 1 as x\")\n";

// ---------------------------------------------------------------------------
// Helpers

fn run_to_end(cmd: Command) -> Finished {
    start(cmd).finish(LONG)
}

/// The journal's records, in order.
fn journal(state: &Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a journal record is JSON"))
        .collect()
}

/// The journal record of one kind for one batch's attempt.
fn record(state: &Path, kind: &str, batch: &str, attempt: u64) -> Option<Value> {
    journal(state).into_iter().find(|r| {
        r["record"] == kind && r["batch"] == batch && r["attempt"].as_u64() == Some(attempt)
    })
}

/// The pid a batch's attempt ran in (for a warm batch, its worker process).
fn spawned_pid(state: &Path, batch: &str, attempt: u64) -> Option<i32> {
    record(state, "attempt_spawned", batch, attempt)
        .and_then(|r| r["pid"].as_i64())
        .map(|p| i32::try_from(p).unwrap())
}

fn attempt_log(state: &Path, batch: &str, attempt: u32, stream: &str) -> PathBuf {
    state
        .join("batches")
        .join(batch)
        .join(format!("attempt-{attempt}.{stream}.log"))
}

/// Waits until dbt has started `node` in the batch's first attempt (its event is
/// in the raw log): the batch is running inside dbt, not just handed over.
fn wait_for_node_start(state: &Path, batch: &str, node: &str) {
    let log = attempt_log(state, batch, 1, "stdout");
    assert!(
        wait_for(LONG, || std::fs::read_to_string(&log).is_ok_and(|s| s
            .lines()
            .any(|l| l.contains(node) && l.contains("\"NodeStart\"")))),
        "dbt never started {node} in {batch}: {:?}",
        std::fs::read_to_string(&log)
    );
}

/// `demo_args` with `DUCKDB_PATH` set to `path` instead of one file per worker.
fn demo_args_with_duckdb(
    dirs: &DemoDirs,
    dbt: &Path,
    state: &Path,
    tag: &str,
    path: &str,
) -> Vec<OsString> {
    demo_args(dirs, dbt, state, tag)
        .into_iter()
        .map(|a| {
            if a.to_string_lossy().starts_with("DUCKDB_PATH=") {
                format!("DUCKDB_PATH={path}").into()
            } else {
                a
            }
        })
        .collect()
}

fn status_of(s: &Value, id: &str) -> String {
    batch(s, id)["status"].as_str().unwrap().to_string()
}

fn write_model(dirs: &DemoDirs, file: &str, text: &str) {
    std::fs::write(dirs.project.join("models").join(file), text).unwrap();
}

fn no_tagged_processes_now(tag: &str, what: &str) {
    let left = tagged_processes(tag);
    assert!(left.is_empty(), "{what}: processes left: {left:?}");
}

fn no_tagged_processes_soon(tag: &str, what: &str) {
    assert!(
        wait_for(Duration::from_secs(5), || tagged_processes(tag).is_empty()),
        "{what}: processes left: {:?}",
        tagged_processes(tag)
    );
}

// ---------------------------------------------------------------------------
// 1. A warm backfill lands every window.

/// Per worker DuckDB file, the `(revenue_date, order_count)` rows of
/// `fct_daily_revenue`; and the source's order count per day.
const QUERY_WAREHOUSE: &str = r#"
import duckdb, glob, json, os, sys
warehouse, source = sys.argv[1], sys.argv[2]
files = {}
for path in sorted(glob.glob(os.path.join(warehouse, "worker*.duckdb"))):
    con = duckdb.connect(path, read_only=True)
    try:
        files[os.path.basename(path)] = con.sql(
            "select strftime(revenue_date, '%Y-%m-%d'), order_count from fct_daily_revenue order by 1"
        ).fetchall()
    except duckdb.CatalogException:
        files[os.path.basename(path)] = []
    con.close()
con = duckdb.connect(source, read_only=True)
orders = dict(con.sql(
    "select strftime(order_date, '%Y-%m-%d'), count(*) from orders group by 1"
).fetchall())
print(json.dumps({"files": files, "orders": orders}))
"#;

#[test]
fn warm_backfill_lands_every_window_in_its_workers_file() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("warm-backfill");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"];
    let run = run_to_end(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-06",
            "--workers",
            "2",
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after a warm backfill");

    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    assert!(s["mode_reason"].is_null(), "{s}");
    for day in days {
        let b = batch(&s, day);
        assert_eq!(b["status"], "succeeded", "{b}");
        assert!(b["nodes"]["success"].as_u64().unwrap() >= 10, "{b}");
    }

    // Which worker ran which window, as the journal says.
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for day in days {
        let started = record(&state, "attempt_started", day, 1).unwrap();
        let worker = started["worker"].as_u64().unwrap();
        expected
            .entry(format!("worker{worker}.duckdb"))
            .or_default()
            .insert(day.to_string());
    }

    let out = Command::new(dbt.with_file_name("python"))
        .arg("-c")
        .arg(QUERY_WAREHOUSE)
        .arg(&dirs.warehouse)
        .arg(dirs.data.join("source.duckdb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut all_days = BTreeSet::new();
    for (file, rows) in got["files"].as_object().unwrap() {
        let rows = rows.as_array().unwrap();
        let dates: BTreeSet<String> = rows
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            rows.len(),
            dates.len(),
            "one row per day in {file}: {rows:?}"
        );
        // Each window's vars reached its SQL: a worker's file holds exactly the
        // days of the windows it ran, and each day's count is that day's orders.
        assert_eq!(
            dates,
            expected.get(file).cloned().unwrap_or_default(),
            "{file} holds other days than its windows: {got}"
        );
        for r in rows {
            let day = r[0].as_str().unwrap();
            assert_eq!(
                r[1], got["orders"][day],
                "{file}: order_count of {day} is not the source's: {got}"
            );
        }
        all_days.extend(dates);
    }
    let want: BTreeSet<String> = days.iter().map(ToString::to_string).collect();
    assert_eq!(all_days, want, "{got}");
}

// ---------------------------------------------------------------------------
// 2. A failed window goes on with `dbt retry` in a warm worker.

/// Node ids of a run_results.json and their statuses.
fn node_statuses(path: &Path) -> BTreeMap<String, String> {
    let rr: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn failed_window_is_retried_warm_on_resume_with_only_its_failed_nodes() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("warm-retry");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let good = "2024-01-12";
    let run = run_to_end(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-12..2024-01-14",
            "--workers",
            "1",
            "--retries",
            "0",
        ],
    ));
    assert_eq!(run.code, Some(1), "{}", run.both());
    no_tagged_processes_now(&t, "after the first run");
    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    assert_eq!(status_of(&s, good), "succeeded");
    let late = batch(&s, LATE_DAY);
    assert_eq!(late["status"], "failed", "{late}");
    assert_eq!(late["attempts"], 1, "{late}");
    assert!(
        late["error"].as_str().unwrap().contains("have not landed"),
        "{late}"
    );
    let first = record(&state, "attempt_started", LATE_DAY, 1).unwrap();
    assert_eq!(first["kind"], "full", "{first}");

    let results = state
        .join("batches")
        .join(LATE_DAY)
        .join("target")
        .join("run_results.json");
    let attempt1 = node_statuses(&results);
    let to_retry: BTreeSet<&String> = attempt1
        .iter()
        .filter(|(_, st)| matches!(st.as_str(), "error" | "fail" | "skipped" | "runtime error"))
        .map(|(id, _)| id)
        .collect();
    let succeeded: BTreeSet<&String> = attempt1
        .iter()
        .filter(|(_, st)| matches!(st.as_str(), "success" | "pass"))
        .map(|(id, _)| id)
        .collect();
    assert!(
        !to_retry.is_empty() && !succeeded.is_empty(),
        "{attempt1:?}"
    );

    assert!(
        dirs.deliver_late(LATE_DAY).unwrap(),
        "the late file was there"
    );
    let mut resume = Command::new(bin());
    resume
        .args(["run", "--headless", "--resume"])
        .arg(&state)
        .stdin(Stdio::null());
    let run = run_to_end(resume);
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after the resume");
    assert!(
        run.stdout
            .contains(&format!("{LATE_DAY} · worker 1 · attempt 2 (dbt retry)")),
        "{}",
        run.both()
    );

    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "the resume ran warm: {s}");
    let late = batch(&s, LATE_DAY);
    assert_eq!(late["status"], "succeeded", "{late}");
    assert_eq!(late["attempts"], 2, "{late}");
    let second = record(&state, "attempt_started", LATE_DAY, 2).unwrap();
    assert_eq!(second["kind"], "retry", "{second}");
    assert!(
        !attempt_log(&state, good, 2, "stdout").exists(),
        "{good} ran again"
    );

    // dbt retry ran exactly the nodes that failed or were skipped, and they passed.
    let attempt2 = node_statuses(&results);
    let ran: BTreeSet<&String> = attempt2.keys().collect();
    assert_eq!(
        ran, to_retry,
        "attempt 2 should run only what attempt 1 did not finish"
    );
    assert!(
        ran.is_disjoint(&succeeded),
        "attempt 2 ran nodes that had succeeded"
    );
    assert!(
        attempt2.values().all(|st| st == "success" || st == "pass"),
        "{attempt2:?}"
    );
}

// ---------------------------------------------------------------------------
// 3. When batches do not parse alike: cold (auto) or a usage error (warm).

/// A model with no test and no input: a cold batch of it is quick.
const ONE_MODEL: &str = "select 1 as x\n";

/// Lines of `stderr` that contain every one of `words`.
fn lines_with<'a>(stderr: &'a str, words: &[&str]) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

#[test]
fn auto_goes_cold_when_duckdb_path_uses_batch_and_says_why() {
    let (_tmp, dirs, dbt) = demo();
    write_model(&dirs, "one.sql", ONE_MODEL);
    let t = tag("warm-fallback-auto");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let path = format!("{}/{{batch}}.duckdb", dirs.warehouse.display());
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--headless"])
        .args(demo_args_with_duckdb(&dirs, &dbt, &state, &t, &path))
        .args([
            "--backfill",
            "2024-01-02..2024-01-04",
            "--workers",
            "2",
            "--select",
            "one",
        ])
        .stdin(Stdio::null());
    let run = run_to_end(cmd);
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after a cold run");

    let s = summary(&state);
    assert_eq!(s["mode"], "cold", "{s}");
    let reason = s["mode_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("DUCKDB_PATH") && reason.contains("{batch}"),
        "mode_reason should name DUCKDB_PATH and {{batch}}: {s}"
    );
    // Cold batches each got their own file, named by the batch.
    for id in ["2024-01-02_one", "2024-01-03_one"] {
        assert_eq!(status_of(&s, id), "succeeded");
        assert!(
            dirs.warehouse.join(format!("{id}.duckdb")).exists(),
            "no DuckDB file for {id}"
        );
    }
    let why = lines_with(&run.stderr, &["DUCKDB_PATH", "{batch}"]);
    assert_eq!(
        why.len(),
        1,
        "one line on stderr should say why the run is cold:\n{}",
        run.both()
    );
    // The profile reads DUCKDB_PATH: that decides it before any parse.
    assert!(why[0].contains("the profile reads it"), "{}", why[0]);
    assert!(
        !state.join("workers").join("w1").exists(),
        "no warm worker should start (or parse) to find that out:\n{}",
        run.both()
    );
}

#[test]
fn mode_warm_refuses_a_duckdb_path_with_batch_before_any_batch_runs() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("warm-fallback-warm");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let path = format!("{}/{{batch}}.duckdb", dirs.warehouse.display());
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--headless", "--mode", "warm"])
        .args(demo_args_with_duckdb(&dirs, &dbt, &state, &t, &path))
        .args(["--backfill", "2024-01-02..2024-01-04", "--workers", "2"])
        .stdin(Stdio::null());
    let run = run_to_end(cmd);
    assert_eq!(run.code, Some(2), "{}", run.both());
    no_tagged_processes_now(&t, "after the refusal");

    let why = lines_with(&run.stderr, &["DUCKDB_PATH", "{batch}"]);
    assert_eq!(why.len(), 1, "{}", run.both());
    assert!(why[0].contains("--mode warm"), "{}", why[0]);
    assert!(
        !state.join("workers").join("w1").exists(),
        "refused before any worker started:\n{}",
        run.both()
    );
    assert!(!run.stdout.contains("start "), "{}", run.both());
    // No batch began: no journal record, no batch dir, no DuckDB file.
    assert!(journal(&state).is_empty(), "{:?}", journal(&state));
    let batch_dirs: Vec<_> = std::fs::read_dir(state.join("batches"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(batch_dirs.is_empty(), "{batch_dirs:?}");
    for day in ["2024-01-02", "2024-01-03"] {
        assert!(!dirs.warehouse.join(format!("{day}.duckdb")).exists());
    }
}

#[test]
fn auto_goes_cold_when_a_model_is_enabled_by_the_window_var() {
    let (_tmp, dirs, dbt) = demo();
    write_model(&dirs, "one.sql", ONE_MODEL);
    write_model(
        &dirs,
        "early_only.sql",
        "{{ config(enabled=(var('start_date', '2024-01-01') < '2024-01-03')) }}\nselect 1 as x\n",
    );
    let t = tag("warm-fallback-enabled");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let run = run_to_end(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--backfill",
            "2024-01-02..2024-01-04",
            "--workers",
            "2",
            "--select",
            "one",
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after a cold run");
    let s = summary(&state);
    assert_eq!(s["mode"], "cold", "{s}");
    let reason = s["mode_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("model.herd_demo.early_only") && reason.contains("enabled"),
        "mode_reason should name the model and enabled: {s}"
    );
    // The first window ran warm on the worker that parsed with its own vars
    // while the check's second parse went on; the verdict turned the rest cold,
    // saying why in one line.
    let both = run.both();
    let why = lines_with(&both, &["early_only", "enabled"]);
    assert_eq!(
        why.len(),
        1,
        "one line should say why the run is cold:\n{}",
        run.both()
    );
    assert!(why[0].contains("running cold from now on"), "{}", why[0]);
    for day in ["2024-01-02_one", "2024-01-03_one"] {
        assert_eq!(status_of(&s, day), "succeeded", "{s}");
    }
    let workers: Vec<i64> = journal(&state)
        .iter()
        .filter(|r| r["record"] == "worker_started")
        .filter_map(|r| r["pid"].as_i64())
        .collect();
    let first = spawned_pid(&state, "2024-01-02_one", 1);
    let second = spawned_pid(&state, "2024-01-03_one", 1);
    assert!(
        first.is_some_and(|p| workers.contains(&i64::from(p))),
        "the first window ran on warm worker 1: {first:?} {workers:?}"
    );
    assert!(
        second.is_some_and(|p| !workers.contains(&i64::from(p))),
        "the second window ran cold, in a dbt process of its own: {second:?} {workers:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. Stopping a warm batch: Ctrl-C, and the TUI's cancel.

#[test]
fn ctrl_c_during_a_warm_batch_cancels_it_and_leaves_no_process() {
    let (_tmp, dirs, dbt) = demo();
    write_model(&dirs, "slow.py", SLOW_MODEL);
    let t = tag("warm-sigint");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let running = start(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-04",
            "--workers",
            "1",
            "--select",
            "slow",
            "--grace-int",
            "2",
            "--grace-term",
            "1",
        ],
    ));
    let first = "2024-01-02_slow";
    assert!(
        wait_for(LONG, || running
            .stdout()
            .contains("start     2024-01-02 slow")),
        "{}",
        running.stdout()
    );
    wait_for_node_start(&state, first, "model.herd_demo.slow");
    // SAFETY: kill(2) on the dbt-herd process this test started.
    assert_eq!(unsafe { libc::kill(running.pid(), libc::SIGINT) }, 0);
    let run = running.finish(Duration::from_secs(60));
    assert_eq!(run.code, Some(130), "{}", run.both());
    no_tagged_processes_soon(&t, "after Ctrl-C");
    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    assert_eq!(status_of(&s, first), "cancelled", "{s}");
    assert_eq!(status_of(&s, "2024-01-03_slow"), "pending", "{s}");
}

#[test]
fn cancel_in_the_tui_keeps_the_warm_worker_for_the_next_batch() {
    let (_tmp, dirs, dbt) = demo();
    write_model(&dirs, "slow.py", SLOW_MODEL);
    let t = tag("warm-tui-cancel");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let mut words: Vec<OsString> = vec![bin().into(), "run".into()];
    words.extend(demo_args(&dirs, &dbt, &state, &t));
    words.extend(
        [
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-04",
            "-w",
            "1",
            "--select",
            "slow",
            // Long enough for dbt to end the interrupted model by itself.
            "--grace-int",
            "10",
        ]
        .iter()
        .map(Into::into),
    );
    let tmux = Tmux::start("warm-cancel", &shell_line(words), 120, 36, "");
    let (first, second) = ("2024-01-02_slow", "2024-01-03_slow");
    tmux.wait("the first batch to run", LONG, |s| s.contains("RUNNING"));
    wait_for_node_start(&state, first, "model.herd_demo.slow");

    // The focused pane is worker 1's: c asks, y cancels its batch.
    tmux.keys(&["c"]);
    tmux.wait("the question", LONG, |s| {
        s.contains("which is running? (y / n)")
    });
    tmux.keys(&["y"]);
    tmux.wait("the first batch to be cancelled", LONG, |s| {
        s.lines().next().unwrap_or("").contains("1 cancelled")
    });
    let done = tmux.wait("the second batch to succeed", LONG, |s| {
        let header = s.lines().next().unwrap_or("");
        header.contains("1 ok") && header.contains("1 cancelled") && s.contains("DONE")
    });
    let s = summary(&state);
    assert_eq!(status_of(&s, first), "cancelled", "{s}\n{done}");
    assert_eq!(status_of(&s, second), "succeeded", "{s}\n{done}");
    assert_eq!(s["mode"], "warm", "{s}");
    let (a, b) = (
        spawned_pid(&state, first, 1).unwrap(),
        spawned_pid(&state, second, 1).unwrap(),
    );
    assert_eq!(
        a, b,
        "the worker that ran the cancelled batch should run the next one"
    );

    tmux.keys(&["q"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(
        end.contains("EXIT=1"),
        "a cancelled batch is not success:\n{end}"
    );
    no_tagged_processes_soon(&t, "after quitting the TUI");
}

// ---------------------------------------------------------------------------
// 5. A warm worker killed mid-batch.

#[test]
fn a_worker_killed_mid_batch_fails_that_batch_and_a_new_worker_runs_the_next() {
    let (_tmp, dirs, dbt) = demo();
    write_model(&dirs, "slow.py", SLOW_MODEL);
    let t = tag("warm-kill9");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let running = start(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-04",
            "--workers",
            "1",
            "--select",
            "slow",
            "--retries",
            "0",
        ],
    ));
    let (first, second) = ("2024-01-02_slow", "2024-01-03_slow");
    assert!(
        wait_for(LONG, || spawned_pid(&state, first, 1).is_some()),
        "{}",
        running.stdout()
    );
    wait_for_node_start(&state, first, "model.herd_demo.slow");
    let pid = spawned_pid(&state, first, 1).unwrap();
    let workers: Vec<Proc> = tagged_processes(&t)
        .into_iter()
        .filter(|p| p.argv.iter().any(|a| a.contains("herd_worker.py")))
        .collect();
    assert!(
        workers.iter().any(|p| p.pid == pid),
        "the batch's pid {pid} is not a worker: {workers:?}"
    );
    // SAFETY: kill(2) on the tagged worker process of this test.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    let run = running.finish(LONG);
    assert_eq!(run.code, Some(1), "{}", run.both());
    no_tagged_processes_now(&t, "after the run");
    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    assert_eq!(status_of(&s, first), "failed", "{s}");
    assert_eq!(status_of(&s, second), "succeeded", "{s}");
    let again = spawned_pid(&state, second, 1).unwrap();
    assert_ne!(again, pid, "the next batch should run in a new worker");
}

// ---------------------------------------------------------------------------
// 6. A worker that breaks the protocol.

/// A fake worker: says hello, parses (an empty digest when asked), and on `run`
/// does what `ON_RUN` says.
const FAKE_WORKER: &str = r#"
import json, os, sys
fd_in, fd_out = (int(x) for x in os.environ["HERD_WORKER_FDS"].split(","))

def send(msg):
    data = memoryview((json.dumps(msg) + "\n").encode())
    while data:
        data = data[os.write(fd_out, data):]

def on_run(job):
    ON_RUN

send({"t": "hello", "proto": 1, "pid": os.getpid()})
with os.fdopen(fd_in, "rb") as requests:
    for raw in requests:
        req = json.loads(raw)
        if req["t"] == "parse":
            send({"t": "parsed", "ok": True, "elapsed_s": 0.01,
                  "digest": {} if req.get("digest") else None})
        elif req["t"] == "run":
            on_run(req["job"])
        elif req["t"] == "exit":
            break
"#;

/// Half a `done` line, then the worker ends with `code`.
fn half_done_then_exit(code: i32) -> String {
    format!(
        "os.write(fd_out, ('{{\"t\":\"done\",\"job\":\"%s\",\"ok\":tr' % job).encode())\n    sys.exit({code})"
    )
}

/// One event line of 9 MiB, then a `done` that says all went well.
const HUGE_EVENT: &str = "send({\"t\": \"event\", \"job\": job, \"line\": \"x\" * (9 << 20)})\n    send({\"t\": \"done\", \"job\": job, \"ok\": True, \"exit_code\": 0})";

/// A warm headless run of a fake project with `program` as the worker
/// program: its dir (state dir inside), the command and the tag.
struct FakeWorkerRun {
    dir: tempfile::TempDir,
    cmd: Command,
    tag: String,
}

impl FakeWorkerRun {
    fn new(name: &str, program_text: &str, backfill: &str, workers: &str) -> Self {
        let mut log = Vec::new();
        let dbt = dbt_herd::venv::ensure(&mut log)
            .unwrap_or_else(|e| panic!("dbt venv: {e}\n{}", text(&log)));
        let dir = fake_project();
        let program = dir.path().join("fake_worker.py");
        std::fs::write(&program, program_text).unwrap();
        let tag = tag(name);
        let mut cmd = Command::new(bin());
        cmd.args([
            "run",
            "--headless",
            "--mode",
            "warm",
            "--shared-warehouse",
            "no",
        ])
        .args(["--grace-int", "1", "--grace-term", "1", "--retries", "0"])
        .args(["--backfill", backfill, "--workers", workers])
        .arg("--project-dir")
        .arg(dir.path())
        .arg("--dbt")
        .arg(&dbt)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--env")
        .arg(format!("HERD_TEST_TAG={tag}"))
        .env("DBT_HERD_WORKER_PROGRAM", &program)
        .stdin(Stdio::null());
        Self { dir, cmd, tag }
    }
}

/// Runs two windows warm with a fake worker program; returns the run, the
/// summary and the state dir's first batch's stderr log.
fn run_fake_worker(name: &str, on_run: &str) -> (Finished, Value, String) {
    let program = FAKE_WORKER.replace("ON_RUN", on_run);
    let FakeWorkerRun { dir, cmd, tag: t } =
        FakeWorkerRun::new(name, &program, "2024-01-02..2024-01-04", "1");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let run = run_to_end(cmd);
    no_tagged_processes_now(&t, "after a run with a broken worker");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("internal failure"),
        "{}",
        run.both()
    );
    let s = summary(&state);
    let err =
        std::fs::read_to_string(attempt_log(&state, "2024-01-02", 1, "stderr")).unwrap_or_default();
    (run, s, err)
}

/// Each batch failed, with `words` in its summary error.
fn assert_batches_failed_saying(run: &Finished, s: &Value, stderr_log: &str, words: &str) {
    assert_eq!(s["mode"], "warm", "{s}");
    for day in ["2024-01-02", "2024-01-03"] {
        let b = batch(s, day);
        assert_eq!(
            b["status"],
            "failed",
            "a batch whose worker broke the protocol must fail: {b}\n{}\n--- attempt-1.stderr.log\n{stderr_log}",
            run.both()
        );
    }
    assert_eq!(run.code, Some(1), "{}", run.both());
    for day in ["2024-01-02", "2024-01-03"] {
        let b = batch(s, day);
        let error = b["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(words),
            "summary.json's error should say {words:?}, it says {error:?} \
             (the batch's stderr log says {stderr_log:?})"
        );
    }
}

#[test]
fn a_worker_that_stops_mid_message_with_status_0_fails_its_batches() {
    let (run, s, err) = run_fake_worker("warm-half-0", &half_done_then_exit(0));
    assert_batches_failed_saying(&run, &s, &err, "middle of a message");
}

#[test]
fn a_worker_that_stops_mid_message_with_status_1_fails_its_batches_saying_why() {
    let (run, s, err) = run_fake_worker("warm-half-1", &half_done_then_exit(1));
    assert_batches_failed_saying(&run, &s, &err, "middle of a message");
}

#[test]
fn a_protocol_line_over_8_mib_fails_its_batches_saying_why() {
    let (run, s, err) = run_fake_worker("warm-huge", HUGE_EVENT);
    assert_batches_failed_saying(&run, &s, &err, "over 8 MiB");
}

// ---------------------------------------------------------------------------
// 7. User code printing on stdout does not touch the protocol.

#[test]
fn a_python_model_printing_on_stdout_runs_warm_and_its_text_is_in_the_log() {
    let (_tmp, dirs, dbt) = demo();
    // It also prints what looks like a protocol line for the batch's job: if
    // stdout were the protocol, the batch would end there as failed.
    write_model(
        &dirs,
        "chatty.py",
        "def model(dbt, session):\n    print(\"hello from a python model\")\n    print('{\"t\":\"done\",\"job\":\"0:1\",\"ok\":false,\"exit_code\":1}', flush=True)\n    return session.sql(\"select 1 as x\")\n",
    );
    let t = tag("warm-print");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let run = run_to_end(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-03",
            "--workers",
            "1",
            "--select",
            "chatty",
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after the run");
    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    let b = batch(&s, "2024-01-02_chatty");
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["nodes"]["success"], 1, "{b}");
    let log =
        std::fs::read_to_string(attempt_log(&state, "2024-01-02_chatty", 1, "stdout")).unwrap();
    assert!(
        log.lines().any(|l| l == "hello from a python model"),
        "the model's print is not in the batch's stdout log:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// 8. Start-up: no more workers than batches that can run, none waited for.

#[test]
fn a_plan_of_one_batch_with_four_workers_starts_one_worker() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("warm-one-batch");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let run = run_to_end(demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--backfill",
            "2024-01-02..2024-01-03",
            "--workers",
            "4",
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after a one-batch warm run");
    let started: Vec<u64> = journal(&state)
        .iter()
        .filter(|r| r["record"] == "worker_started")
        .map(|r| r["worker"].as_u64().unwrap())
        .collect();
    assert_eq!(started, [1], "one batch needs one worker: {}", run.both());
    assert!(
        !state.join("workers").join("w2").exists(),
        "no other worker dir was made"
    );
}

/// A worker program whose parse is instant for worker 1 and never ends for the
/// others; each batch takes a moment and succeeds.
const SLOW_SECOND_WORKER: &str = r#"
import json, os, sys, time
fd_in, fd_out = (int(x) for x in os.environ["HERD_WORKER_FDS"].split(","))

def send(msg):
    data = memoryview((json.dumps(msg) + "\n").encode())
    while data:
        data = data[os.write(fd_out, data):]

send({"t": "hello", "proto": 1, "pid": os.getpid()})
with os.fdopen(fd_in, "rb") as requests:
    for raw in requests:
        req = json.loads(raw)
        if req["t"] == "parse":
            if os.environ.get("DBT_ENV_CUSTOM_ENV_HERD_WORKER") != "1":
                time.sleep(600)
            send({"t": "parsed", "ok": True, "elapsed_s": 0.01,
                  "digest": {} if req.get("digest") else None})
        elif req["t"] == "run":
            time.sleep(1)
            args, inv = req["args"], "inv-" + req["job"]
            line = {"info": {"name": "MainReportVersion", "level": "info", "msg": "Running",
                             "invocation_id": inv, "ts": "2024-01-01T00:00:00Z"}, "data": {}}
            send({"t": "event", "job": req["job"], "line": json.dumps(line)})
            target = args[args.index("--target-path") + 1]
            os.makedirs(target, exist_ok=True)
            with open(os.path.join(target, "run_results.json"), "w") as f:
                json.dump({"metadata": {"invocation_id": inv, "env": {}}, "elapsed_time": 1.0,
                           "args": {"which": args[0]},
                           "results": [{"unique_id": "model.fake.m", "status": "success",
                                        "execution_time": 1.0, "message": None, "failures": None,
                                        "timing": [], "thread_id": "Thread-1",
                                        "adapter_response": {}}]}, f)
            send({"t": "done", "job": req["job"], "ok": True, "exit_code": 0})
        elif req["t"] == "exit":
            break
"#;

#[test]
fn a_headless_run_ends_with_its_last_batch_while_another_worker_still_parses() {
    let FakeWorkerRun {
        dir,
        mut cmd,
        tag: t,
    } = FakeWorkerRun::new(
        "warm-slow-second",
        SLOW_SECOND_WORKER,
        "2024-01-02..2024-01-05",
        "2",
    );
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    // Workers that differ in more than their number: the parse check makes
    // its second parse with worker 1's environment, and worker 2 parses on
    // its own, slowly.
    cmd.args(["--env", "HERD_SLOT=w{worker}"]);
    // Before: every batch had ended, and the run waited for worker 2's parse
    // (ten minutes here) before it could end; `finish` gives up long before.
    let run = start(cmd).finish(Duration::from_secs(90));
    assert_eq!(run.code, Some(0), "{}", run.both());
    no_tagged_processes_now(&t, "after the last batch, with a worker parsing");
    let s = summary(&state);
    for day in ["2024-01-02", "2024-01-03", "2024-01-04"] {
        assert_eq!(status_of(&s, day), "succeeded", "{s}");
        let started = record(&state, "attempt_started", day, 1).unwrap();
        assert_eq!(
            started["worker"], 1,
            "every batch goes to the worker that is ready, none waits for the one parsing: {started}"
        );
    }
}
