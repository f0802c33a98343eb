//! Batches on one shared PostgreSQL warehouse: the plan knows which batch writes
//! which relation, so none breaks another. Real dbt-postgres, a private server
//! started by the tests (tests/common/postgres.rs), the projects in
//! tests/fixtures/pg_projects.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::postgres::{Postgres, SCHEMA, pg_project};
use common::tmux::{Tmux, shell_line};
use common::*;

/// A project on a fresh server, seeded or not.
struct Setup {
    pg: Postgres,
    work: tempfile::TempDir,
    project: PathBuf,
    dbt: PathBuf,
    tag: String,
    _reaper: Reaper,
}

impl Setup {
    fn new(name: &str, profile: &str, seed: bool) -> Self {
        let pg = Postgres::start();
        let dbt = dbt_herd::venv::ensure(&mut std::io::stderr())
            .unwrap_or_else(|e| panic!("dbt venv: {e}"));
        let (work, project) = pg_project(name);
        pg.write_profiles(work.path(), profile, 1);
        let t = tag(name);
        let s = Setup {
            pg,
            work,
            project,
            dbt,
            _reaper: Reaper(t.clone()),
            tag: t,
        };
        if seed {
            s.seed();
        }
        s
    }

    fn seed(&self) {
        let out = Command::new(&self.dbt)
            .args(["seed", "--no-use-colors", "--project-dir"])
            .arg(&self.project)
            .arg("--profiles-dir")
            .arg(self.work.path())
            .arg("--target-path")
            .arg(self.work.path().join("seed-target"))
            .arg("--log-path")
            .arg(self.work.path().join("seed-logs"))
            .env("HERD_TEST_TAG", &self.tag)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "dbt seed: {}", text(&out.stdout));
    }

    fn state(&self) -> PathBuf {
        self.work.path().join("state")
    }

    fn herd_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["run".into()];
        for (k, v) in [
            ("--project-dir", self.project.as_os_str()),
            ("--profiles-dir", self.work.path().as_os_str()),
            ("--dbt", self.dbt.as_os_str()),
        ] {
            a.push(k.into());
            a.push(v.into());
        }
        a.push("--state-dir".into());
        a.push(self.state().into());
        a.push("--env".into());
        a.push(format!("HERD_TEST_TAG={}", self.tag).into());
        a
    }

    fn herd(&self, extra: &[&str]) -> Output {
        let out = Command::new(bin())
            .args(self.herd_args())
            .arg("--headless")
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            tagged_processes(&self.tag).is_empty(),
            "no dbt process outlives dbt-herd"
        );
        out
    }
}

fn ok(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

/// Each batch's attempts as (start, end) times, from the journal.
fn spans(state: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    let mut open: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in journal.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        // Other records (a warm worker starting, say) name no batch.
        let Some(batch) = r["batch"].as_str().map(str::to_string) else {
            continue;
        };
        let attempt = r["attempt"].as_u64().unwrap_or(0);
        let ts = r["ts"].as_str().unwrap().to_string();
        match r["record"].as_str().unwrap() {
            "attempt_started" => {
                open.insert((batch, attempt), ts);
            }
            "attempt_finished" => {
                let start = open.remove(&(batch.clone(), attempt)).unwrap();
                out.entry(batch).or_default().push((start, ts));
            }
            _ => {}
        }
    }
    out
}

fn decisions(s: &serde_json::Value) -> Vec<(String, String)> {
    s["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The first reproduction: six windows of a project with a table, a view on it
/// and an incremental model. Before, most windows failed with "relation already
/// exists"; now the table and view are built once, the first window creates the
/// incremental table, and every day lands once.
#[test]
fn a_backfill_builds_shared_models_once_and_every_day_lands_once() {
    let s = Setup::new("windows", "herd_windows", true);
    let stdout = ok(&s.herd(&[
        "--backfill",
        "2024-03-01..2024-03-07",
        "--workers",
        "3",
        "-s",
        "tag:core",
    ]));
    assert!(stdout.contains("plan: one shared warehouse"), "{stdout}");
    assert!(stdout.contains("built once in shared"), "{stdout}");
    let summary = summary(&s.state());
    let kinds: Vec<String> = decisions(&summary).into_iter().map(|d| d.0).collect();
    assert_eq!(kinds, ["run_once", "first_window_first"], "{summary}");
    assert_eq!(batch(&summary, "shared")["status"], "succeeded");
    for day in 1..=6 {
        let b = batch(&summary, &format!("2024-03-{day:02}_tag-core"));
        assert_eq!(b["status"], "succeeded", "{b}");
    }
    // The order the plan promised, from the journal.
    let spans = spans(&s.state());
    let shared_end = &spans["shared"][0].1;
    let first_end = &spans["2024-03-01_tag-core"][0].1;
    for day in 1..=6 {
        let start = &spans[&format!("2024-03-{day:02}_tag-core")][0].0;
        assert!(start >= shared_end, "day {day} started before shared ended");
        if day > 1 {
            assert!(
                start >= first_end,
                "day {day} started before the first window ended"
            );
        }
    }
    // Every day of the seed landed exactly once.
    let rows = s.pg.sql(&format!(
        "select event_date::text, count(*), count(distinct event_id) from {SCHEMA}.daily \
         group by event_date order by event_date"
    ));
    let seed = std::fs::read_to_string(s.project.join("seeds/raw_events.csv")).unwrap();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for line in seed.lines().skip(1) {
        let date = line.split(',').nth(1).unwrap().to_string();
        if ("2024-03-01".."2024-03-07").contains(&date.as_str()) {
            *expected.entry(date).or_default() += 1;
        }
    }
    let got: Vec<(String, usize, usize)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect();
    let want: Vec<(String, usize, usize)> = expected.into_iter().map(|(d, n)| (d, n, n)).collect();
    assert_eq!(got, want);
}

/// The second reproduction: three overlapping selectors of a jaffle-shop shape.
/// Before, `customers` ran before the batch that builds its parent; now each
/// model is built once, after the batches it reads.
#[test]
fn overlapping_selectors_build_each_model_once_after_its_parents() {
    let s = Setup::new("shop", "herd_shop", true);
    let stdout = ok(&s.herd(&[
        "-s",
        "stg_customers+",
        "-s",
        "stg_orders+",
        "-s",
        "stg_payments+",
        "--workers",
        "3",
    ]));
    assert!(stdout.contains("run in stg_customers only"), "{stdout}");
    // Each mart in the run_results of exactly one batch.
    for model in ["customers", "orders"] {
        let id = format!("model.herd_shop.{model}");
        let builders: Vec<&str> = ["stg_customers", "stg_orders", "stg_payments"]
            .into_iter()
            .filter(|b| {
                let rr = s
                    .state()
                    .join("batches")
                    .join(b)
                    .join("target/run_results.json");
                std::fs::read_to_string(rr).unwrap().contains(&id)
            })
            .collect();
        assert_eq!(builders.len(), 1, "{model} built by {builders:?}");
    }
    let spans = spans(&s.state());
    let start = |b: &str| spans[b][0].0.clone();
    let end = |b: &str| spans[b][0].1.clone();
    assert!(start("stg_customers") >= end("stg_orders"));
    assert!(start("stg_customers") >= end("stg_payments"));
    assert!(start("stg_orders") >= end("stg_payments"));
    let rows =
        s.pg.sql(&format!("select count(*) from {SCHEMA}.customers"));
    assert_ne!(rows[0][0], "0");
}

/// A window-dependent table is rewritten by every window: those windows take
/// turns, and the plan says so, naming the model and the fix.
#[test]
fn windows_that_rewrite_one_table_take_turns_and_the_plan_says_why() {
    let s = Setup::new("windows", "herd_windows", true);
    let stdout = ok(&s.herd(&[
        "--backfill",
        "2024-03-01..2024-03-04",
        "--workers",
        "3",
        "-s",
        "+window_snapshot",
    ]));
    assert!(
        stdout.contains("window_snapshot depends on the window but is not incremental"),
        "{stdout}"
    );
    let summary = summary(&s.state());
    assert!(
        decisions(&summary)
            .iter()
            .any(|(k, t)| k == "serialized" && t.contains("window_snapshot")),
        "{summary}"
    );
    // One at a time: no two windows' attempts overlap (and the table and view
    // they read were built once, before them).
    let mut all: Vec<(String, String)> = spans(&s.state()).into_values().flatten().collect();
    all.sort();
    for pair in all.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlapping batches: {pair:?}");
    }
    assert_eq!(all.len(), 4, "shared and three windows");
}

/// The run-once batch fails (the seed is not there yet): every window waits on
/// it, BLOCKED; once the cause is fixed, `r` on it lets them all run.
#[test]
fn a_failed_run_once_batch_blocks_the_windows_until_r_retries_it() {
    let s = Setup::new("windows", "herd_windows", false);
    let mut args = s.herd_args();
    for a in [
        "--backfill",
        "2024-03-01..2024-03-04",
        "--workers",
        "2",
        "-s",
        "tag:core",
    ] {
        args.push(a.into());
    }
    let line = shell_line(std::iter::once(bin().into_os_string()).chain(args));
    let term = Tmux::start("pg-blocked", &line, 120, 30, "");
    term.wait(
        "the shared batch to fail without its seed",
        Duration::from_secs(120),
        |screen| screen.contains("FAILED"),
    );
    term.keys(&["Tab"]);
    let table = term.wait("each window BLOCKED", Duration::from_secs(10), |screen| {
        screen.matches("BLOCKED").count() == 3
    });
    assert!(table.contains("on shared"), "{table}");
    // The upstream data arrives; retry the failed batch (the table's first row).
    s.seed();
    term.keys(&["g", "r"]);
    term.wait(
        "all four to succeed after the retry",
        Duration::from_secs(180),
        |screen| screen.contains("4 ok · 0 running · 0 pending"),
    );
    term.keys(&["q"]);
    term.wait("a clean exit", Duration::from_secs(20), |screen| {
        screen.contains("EXIT=0")
    });
    let summary = summary(&s.state());
    assert_eq!(batch(&summary, "shared")["attempts"], 2);
    let rows = s.pg.sql(&format!("select count(*) from {SCHEMA}.daily"));
    assert_ne!(rows[0][0], "0");
}
