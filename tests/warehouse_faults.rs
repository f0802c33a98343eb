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
        "2024-01-01..2024-01-09",
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
    assert!(pending >= 8 - 5, "the rest wait for a resume: {sm}");
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
