//! Backfill windows given as event time (`--window-as event-time`) to a dbt
//! microbatch model, on real dbt-duckdb (tests/fixtures/micro).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn project(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/micro");
    for sub in ["", "models", "seeds"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap().flatten() {
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

fn herd(dir: &Path, dbt: &Path, t: &str, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["run", "--headless", "--project-dir"])
        .arg(dir)
        .arg("--profiles-dir")
        .arg(dir)
        .arg("--dbt")
        .arg(dbt)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--env")
        .arg(format!("DUCKDB_PATH={}/w{{worker}}.duckdb", dir.display()))
        .arg("--env")
        .arg(format!("HERD_TEST_TAG={t}"))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn each_window_reaches_the_microbatch_model_as_event_time() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir);
    let t = tag("event-time");
    let _reaper = Reaper(t.clone());
    let out = herd(
        dir,
        &dbt,
        &t,
        &[
            "--backfill",
            "2024-01-01..2024-01-05",
            "--window-as",
            "event-time",
            "-s",
            "+daily_totals",
            "--workers",
            "2",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    // Each window's own day, and only it, was built: dbt got the window as event time.
    let mut days = Vec::new();
    for b in ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] {
        let rr: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!(
                "state/batches/{b}_daily_totals/target/run_results.json"
            )))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            rr["args"]["event_time_start"],
            format!("{b}T00:00:00"),
            "{rr}"
        );
        assert!(
            rr["args"]["vars"]
                .as_object()
                .is_none_or(serde_json::Map::is_empty),
            "no window vars"
        );
        let model = rr["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == "model.herd_micro.daily_totals")
            .unwrap();
        let batches = model["batch_results"]["successful"].as_array().unwrap();
        assert_eq!(batches.len(), 1, "one microbatch per window: {model}");
        days.push(batches[0][0].as_str().unwrap()[..10].to_string());
    }
    assert_eq!(
        days,
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    );
    assert!(tagged_processes(&t).is_empty());
}

#[test]
fn event_time_windows_without_a_microbatch_model_are_refused() {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir);
    let t = tag("event-time-refused");
    let _reaper = Reaper(t.clone());
    let out = herd(
        dir,
        &dbt,
        &t,
        &[
            "--backfill",
            "2024-01-01..2024-01-03",
            "--window-as",
            "event-time",
            "-s",
            "events",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no selected model is a microbatch model"),
        "{err}"
    );
    assert!(
        !dir.join("state/batches/2024-01-01_events").exists(),
        "nothing ran"
    );
}
