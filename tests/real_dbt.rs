//! The real binary against real dbt-core 1.11 + dbt-duckdb on the demo project.
//! Few and purposeful: each costs a few cold dbt processes (about 5 s each).
//! The first test to run installs the pinned venv (shared with `dbt-herd demo`).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::demo::*;
use common::*;
use dbt_herd::demo::LATE_DAY;

#[test]
fn late_window_fails_then_resume_retries_only_it_within_the_budget() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("real-backfill");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    // Three worker slots but a budget of 2 one-thread batches: two at a time.
    // Cold, so that each batch is a dbt process whose --threads can be sampled.
    let mut cmd = demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "cold",
            "--backfill",
            "2024-01-11..2024-01-15",
            "--workers",
            "3",
            "--threads",
            "1",
            "--budget",
            "2",
        ],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Sample the live dbt processes while it runs: the sum of their --threads.
    let peak = std::sync::Arc::new(AtomicU32::new(0));
    let sampler = {
        let (peak, t) = (peak.clone(), t.clone());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let h = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                peak.fetch_max(threads_in_use(&t), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        (h, done)
    };
    let out = child.wait_with_output().unwrap();
    sampler.1.store(true, Ordering::Relaxed);
    sampler.0.join().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        peak.load(Ordering::Relaxed),
        2,
        "the budget was used and never exceeded"
    );

    let s = summary(&state);
    let late = batch(&s, LATE_DAY);
    assert_eq!(late["status"], "failed");
    assert!(
        late["error"].as_str().unwrap().contains("have not landed"),
        "{late}"
    );
    assert!(
        late["nodes"]["skipped"].as_u64().unwrap() > 0,
        "downstream of the failure is skipped: {late}"
    );
    let good = batch(&s, "2024-01-11");
    assert_eq!(good["status"], "succeeded");
    let models = good["nodes"]["success"].as_u64().unwrap();
    let tests = good["nodes"]["pass"].as_u64().unwrap();
    assert!(models >= 10 && tests >= 8, "{good}");
    for id in ["2024-01-12", "2024-01-14"] {
        assert_eq!(batch(&s, id)["status"], "succeeded");
    }

    // The upstream file lands; resume runs dbt retry for the late window only.
    assert!(dirs.deliver_late(LATE_DAY).unwrap());
    let mut resume = Command::new(bin());
    resume
        .args(["run", "--headless", "--resume"])
        .arg(&state)
        .stdin(Stdio::null());
    let out = output(resume);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("3 already succeeded"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "start     {LATE_DAY} · worker 1 · attempt 2 (dbt retry)"
        )),
        "{stdout}"
    );
    let s = summary(&state);
    let late = batch(&s, LATE_DAY);
    assert_eq!(late["status"], "succeeded");
    assert_eq!(late["attempts"], 2);
    // Merged across attempts: the same nodes as a window that succeeded at once.
    assert_eq!(late["nodes"]["success"].as_u64(), Some(models));
    assert_eq!(late["nodes"]["pass"].as_u64(), Some(tests));
    assert_eq!(
        (
            late["nodes"]["error"].as_u64(),
            late["nodes"]["skipped"].as_u64()
        ),
        (Some(0), Some(0))
    );
    for id in ["2024-01-11", "2024-01-12", "2024-01-14"] {
        assert!(
            !state
                .join("batches")
                .join(id)
                .join("attempt-2.stdout.log")
                .exists(),
            "{id} ran again"
        );
    }
    assert!(tagged_processes(&t).is_empty());
}

#[test]
fn demo_delivers_the_late_file_and_the_automatic_retry_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "demo",
        "--headless",
        "--start",
        "2024-01-12",
        "--days",
        "2",
        "--workers",
        "2",
        "--dir",
    ])
    .arg(tmp.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push(line.unwrap());
    }
    let status = child.wait().unwrap();
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} in\n{all}"))
    };
    let failed = pos(&format!("retrying  {LATE_DAY}"));
    let landed = pos("has now landed");
    let retried = pos("attempt 2 (dbt retry)");
    let ok = pos(&format!("ok        {LATE_DAY}"));
    assert!(failed < landed && landed < ok && retried < ok, "{all}");
    assert!(all.contains("all batches succeeded"), "{all}");
}

/// Cold batches with the same vars on one worker: the second and third start
/// from the first one's partial parse, and dbt says it skipped parsing.
#[test]
fn cold_batches_on_a_worker_reuse_its_partial_parse() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("partial-parse");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let out = demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "cold",
            "--command",
            "run",
            "--workers",
            "1",
            "-s",
            "stg_customers",
            "-s",
            "stg_products",
            "-s",
            "stg_payments",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let skipped = |b: &str| {
        std::fs::read_to_string(state.join(format!("batches/{b}/logs/dbt.log")))
            .unwrap()
            .contains("Partial parsing enabled, no changes found, skipping parsing")
    };
    assert!(!skipped("stg_customers"), "the first batch parses");
    assert!(
        skipped("stg_products"),
        "the second starts from the first's parse"
    );
    assert!(skipped("stg_payments"));
}

/// `--recycle 1`: a warm worker serves one batch, then a fresh process takes its
/// slot; the journal records each worker process, and every batch succeeds.
#[test]
fn a_recycled_warm_worker_is_replaced_after_its_batches() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("recycle");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let out = demo_run(
        &dirs,
        &dbt,
        &state,
        &t,
        &[
            "--mode",
            "warm",
            "--recycle",
            "1",
            "--workers",
            "1",
            "--backfill",
            "2024-01-02..2024-01-05",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let workers: std::collections::BTreeSet<u64> = records
        .iter()
        .filter(|r| r["record"] == "worker_started")
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    let spawned: Vec<u64> = records
        .iter()
        .filter(|r| r["record"] == "attempt_spawned")
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(spawned.len(), 3);
    let distinct: std::collections::BTreeSet<&u64> = spawned.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each batch on a fresh worker: {spawned:?}"
    );
    assert!(
        spawned.iter().all(|p| workers.contains(p)),
        "the journal knows every worker: {workers:?} {spawned:?}"
    );
    assert_eq!(summary(&state)["mode"], "warm");
    assert!(tagged_processes(&t).is_empty());
}
