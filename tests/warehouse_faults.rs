//! When the warehouse fights back, against real dbt-core 1.11 + dbt-duckdb: a
//! systemic failure (the warehouse's directory missing) pauses the queue after
//! `--breaker` attempts with one diagnosis that names the real cause, leaves
//! the rest pending for `--resume`, and a resume after the fix lands every
//! window; `--resume --env` changes only the key it names.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::fixture::copy_fixture;
use common::running::start;
use common::*;

const LONG: Duration = Duration::from_secs(300);

#[test]
fn a_missing_warehouse_directory_stops_the_run_after_k_attempts_with_one_diagnosis() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let project = copy_fixture("exactly_once", tmp.path());
    let t = tag("wf-breaker");
    let _reaper = Reaper(t.clone());
    let state = tmp.path().join("state");
    let missing = tmp.path().join("not-made-yet");
    let herd = |extra: &[&str]| {
        let mut c = Command::new(bin());
        c.args(["run", "--headless", "--grace-int", "1", "--grace-term", "1"])
            .arg("--project-dir")
            .arg(&project)
            .arg("--profiles-dir")
            .arg(&project)
            .arg("--dbt")
            .arg(&dbt)
            .args(["--env", &format!("HERD_TEST_TAG={t}")])
            .args(extra)
            .stdin(Stdio::null());
        c
    };
    let wh = format!("DUCKDB_PATH={}/{{worker}}.duckdb", missing.display());
    let mut c = herd(&[
        "--backfill",
        "2024-01-01..2024-01-07",
        "--workers",
        "2",
        "--mode",
        "cold",
        "--env",
        &wh,
        "--env",
        "EO_SLOW_ROWS=10",
    ]);
    c.arg("--state-dir").arg(&state);
    let out = start(c).finish(LONG);
    assert_eq!(out.code, Some(1), "{}", out.both());
    let sm = summary(&state);
    let batches = sm["batches"].as_array().unwrap();
    let attempts: u64 = batches
        .iter()
        .map(|b| b["attempts"].as_u64().unwrap())
        .sum();
    assert!(
        attempts <= 3 + 2,
        "a systemic failure costs at most K + workers attempts, not {attempts}: {sm}"
    );
    let pending = batches.iter().filter(|b| b["status"] == "pending").count();
    assert!(pending >= 6 - 5, "the rest wait for a resume: {sm}");
    let why = sm["breaker"]
        .as_str()
        .unwrap_or_else(|| panic!("no diagnosis: {sm}"));
    assert!(why.contains("No such file or directory"), "{why}");
    for b in batches.iter().filter(|b| b["status"] == "failed") {
        assert_eq!(b["failure_class"], "connection", "{b}");
        let error = b["error"].as_str().unwrap();
        assert!(
            !error.contains("Traceback"),
            "the cause, not a traceback: {error}"
        );
    }
    // The first line after the run's lines says what went wrong, once.
    let closing: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.is_empty())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        closing[0].starts_with("stopped early:") && closing[0].contains("No such file"),
        "{}",
        out.stdout
    );
    assert!(tagged_processes(&t).is_empty(), "dbt left running");

    // Fixed; the resume changes the one key and keeps the rest of --env.
    std::fs::create_dir_all(&missing).unwrap();
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--resume"])
        .arg(&state)
        .args(["--env", "EO_SLOW_ROWS=20"])
        .stdin(Stdio::null());
    let out = start(c).finish(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(
        out.stderr.contains("--env EO_SLOW_ROWS (changed)"),
        "the resume says what it changed: {}",
        out.both()
    );
    let sm = summary(&state);
    assert!(
        sm["batches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] == "succeeded"),
        "{sm}"
    );
    assert!(
        missing.join("1.duckdb").exists(),
        "DUCKDB_PATH was kept from the stored run"
    );
}

/// `dbt-herd run --headless` of `project` (profiles beside it), tagged.
fn herd_in(dbt: &std::path::Path, project: &std::path::Path, tag: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--grace-int", "1", "--grace-term", "1"])
        .arg("--project-dir")
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .arg("--dbt")
        .arg(dbt)
        .args(["--env", &format!("HERD_TEST_TAG={tag}")])
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// What every failed batch of a run that the breaker stopped says, and how
/// many attempts it spent.
fn stopped_by_the_breaker(sm: &serde_json::Value, class: &str, cause: &str) -> u64 {
    let why = sm["breaker"]
        .as_str()
        .unwrap_or_else(|| panic!("no diagnosis: {sm}"));
    assert!(why.contains(cause), "{why}");
    let batches = sm["batches"].as_array().unwrap();
    for b in batches.iter().filter(|b| b["status"] == "failed") {
        assert_eq!(b["failure_class"], class, "{b}");
        assert!(b["error"].as_str().unwrap().contains(cause), "{b}");
    }
    batches
        .iter()
        .map(|b| b["attempts"].as_u64().unwrap())
        .sum()
}

#[test]
fn postgres_down_for_the_whole_run_costs_at_most_k_plus_workers_attempts() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let (work, project) = common::postgres::pg_project("windows");
    // A port nothing listens on: the server is down for the whole run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        project.join("profiles.yml"),
        format!(
            "herd_windows:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: 127.0.0.1\n      port: {port}\n      user: dbt\n      password: \"\"\n      dbname: dbt\n      schema: herd\n      threads: 1\n      connect_timeout: 2\n"
        ),
    )
    .unwrap();
    let t = tag("wf-pg-down");
    let _reaper = Reaper(t.clone());
    let state = work.path().join("state");
    let mut c = herd_in(
        &dbt,
        &project,
        &t,
        &[
            "--backfill",
            "2024-03-01..2024-03-17",
            "-s",
            "daily",
            "--workers",
            "2",
            "--mode",
            "cold",
            "--shared-warehouse",
            "no",
        ],
    );
    c.arg("--state-dir").arg(&state);
    let out = start(c).finish(LONG);
    assert_eq!(out.code, Some(1), "{}", out.both());
    let sm = summary(&state);
    let attempts = stopped_by_the_breaker(&sm, "connection", "Connection refused");
    assert!(
        attempts <= 3 + 2,
        "{attempts} attempts for 16 windows: {sm}"
    );
    let first = out
        .stdout
        .lines()
        .skip_while(|l| !l.is_empty())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    assert!(first.starts_with("stopped early:"), "{}", out.stdout);
    assert!(tagged_processes(&t).is_empty(), "dbt left running");
}

#[test]
fn a_duckdb_file_locked_by_another_process_is_a_lock_failure_and_stops_the_run() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let project = copy_fixture("exactly_once", tmp.path());
    let db = tmp.path().join("held.duckdb");
    // Another process holds the file's write lock for the whole run.
    let python = dbt.with_file_name("python");
    let ready = tmp.path().join("holding");
    let mut holder = Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import duckdb, pathlib, time\nc = duckdb.connect({db:?})\npathlib.Path({ready:?}).touch()\ntime.sleep(300)\n",
            db = db.display().to_string(),
            ready = ready.display().to_string(),
        ))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || ready.exists()),
        "the holder never took the lock"
    );
    let t = tag("wf-lock");
    let _reaper = Reaper(t.clone());
    let state = tmp.path().join("state");
    let wh = format!("DUCKDB_PATH={}", db.display());
    let mut c = herd_in(
        &dbt,
        &project,
        &t,
        &[
            "--backfill",
            "2024-01-01..2024-01-07",
            "--mode",
            "cold",
            // One after another, with no order between them: each meets the lock.
            "--shared-warehouse",
            "no",
            "--workers",
            "1",
            "--env",
            &wh,
            "--env",
            "EO_SLOW_ROWS=10",
        ],
    );
    c.arg("--state-dir").arg(&state);
    let out = start(c).finish(LONG);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.code, Some(1), "{}", out.both());
    let sm = summary(&state);
    let attempts = stopped_by_the_breaker(&sm, "lock", "Could not set lock on file");
    assert!(attempts <= 3 + 1, "{attempts}: {sm}");
    assert!(tagged_processes(&t).is_empty(), "dbt left running");
}

/// In warm mode the parsed project is shared by a worker's batches: a model
/// that fails to compile in one window (its SQL raises for that day only)
/// must not be reported with the path where the previous batch compiled it,
/// whose SQL has that batch's dates.
#[test]
fn a_warm_failure_names_no_other_batchs_files() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let project = copy_fixture("exactly_once", tmp.path());
    // The middle window fails; the first and the last (which the parse check
    // parses with) do not, so the run stays warm.
    std::fs::write(
        project.join("models").join("hooked.sql"),
        "{% if var('start_date') == '2024-01-02' %}{{ exceptions.raise_compiler_error('no data for this day') }}{% endif %}\n{{ config(materialized='table') }}\nselect 1 as x\n",
    )
    .unwrap();
    let t = tag("wf-warm-path");
    let _reaper = Reaper(t.clone());
    let state = tmp.path().join("state");
    let wh = format!("DUCKDB_PATH={}", tmp.path().join("wh.duckdb").display());
    let mut c = herd_in(
        &dbt,
        &project,
        &t,
        &[
            "--backfill",
            "2024-01-01..2024-01-04",
            "-s",
            "hooked",
            "--workers",
            "1",
            "--mode",
            "warm",
            "--shared-warehouse",
            "no",
            "--env",
            &wh,
        ],
    );
    c.arg("--state-dir").arg(&state);
    let out = start(c).finish(LONG);
    assert_eq!(out.code, Some(1), "{}", out.both());
    let sm = summary(&state);
    assert_eq!(sm["mode"], "warm", "{sm}");
    let failed = batch(&sm, "2024-01-02_hooked");
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("no data for this day"), "{error}");
    assert_eq!(batch(&sm, "2024-01-03_hooked")["status"], "succeeded");
    // What dbt printed for the failed batch (its captured output).
    let printed = std::fs::read_to_string(
        state
            .join("batches")
            .join("2024-01-02_hooked")
            .join("attempt-1.stdout.log"),
    )
    .unwrap();
    assert!(printed.contains("no data for this day"), "{printed}");
    assert!(
        !printed.contains("2024-01-01_hooked/target"),
        "dbt's output names the previous batch's files:\n{printed}"
    );
    assert!(tagged_processes(&t).is_empty(), "dbt left running");
}
