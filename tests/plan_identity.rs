//! A batch's identity is its whole input, against real dbt-core 1.11 +
//! dbt-duckdb: a pool script's plan whose entries differ only in vars and env
//! builds every entry (a file each, or one file in turns); entries that differ
//! only in a var build once what does not read it; a test across two selections
//! runs after both without merging them; a selection that matches nothing is
//! refused before anything runs; Ctrl-C while preparing leaves a summary that
//! `--resume` carries on from.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fixture::{copy_fixture, duckdb_rows};
use common::running::{Finished, start};
use common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(300);

struct Setup {
    tmp: tempfile::TempDir,
    dbt: PathBuf,
    project: PathBuf,
    state: PathBuf,
    tag: String,
}

fn setup(name: &str, fixture: &str) -> Setup {
    let dbt = dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let project = copy_fixture(fixture, tmp.path());
    Setup {
        dbt,
        state: tmp.path().join("state"),
        project,
        tag: tag(name),
        tmp,
    }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `dbt-herd run --headless` on the fixture, with the test's tag.
    fn herd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(["run", "--headless", "--grace-int", "1", "--grace-term", "1"])
            .arg("--project-dir")
            .arg(&self.project)
            .arg("--profiles-dir")
            .arg(&self.project)
            .arg("--dbt")
            .arg(&self.dbt)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--env")
            .arg(format!("HERD_TEST_TAG={}", self.tag))
            .args(extra)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, extra: &[&str]) -> Finished {
        start(self.herd(extra)).finish(LONG)
    }

    /// Writes a plan file into the test's dir.
    fn plan(&self, name: &str, doc: &Value) -> String {
        let p = self.path(name);
        std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        p.display().to_string()
    }

    /// How many times each node succeeded or passed, over every batch's
    /// run_results.json (what dbt itself says it built).
    fn built(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for b in std::fs::read_dir(self.state.join("batches")).unwrap() {
            let rr = b.unwrap().path().join("target/run_results.json");
            let Ok(bytes) = std::fs::read(&rr) else {
                continue;
            };
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            for r in doc["results"].as_array().unwrap() {
                if matches!(r["status"].as_str(), Some("success" | "pass")) {
                    *out.entry(r["unique_id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
        }
        out
    }

    /// The unique ids in one batch's run_results.json.
    fn results_of(&self, batch: &str) -> Vec<String> {
        let rr = self
            .state
            .join("batches")
            .join(batch)
            .join("target/run_results.json");
        let doc: Value = serde_json::from_slice(&std::fs::read(rr).unwrap()).unwrap();
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["unique_id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn rows_per_day(dbt: &Path, db: &Path) -> Vec<(String, String)> {
    let sql = "select cast(day as varchar), count(*) from main.days group by 1 order by 1";
    duckdb_rows(dbt, db, sql)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

fn day(i: u32) -> String {
    format!("2024-01-{i:02}")
}

/// A pool script's plan: four entries, the same `build`, a day of vars each.
fn pool_plan(env: impl Fn(u32) -> Option<String>) -> Value {
    let entries: Vec<Value> = (1..=4)
        .map(|i| {
            let vars = json!({"start_date": day(i), "end_date": day(i + 1)}).to_string();
            let mut e = json!({"name": format!("day{i}"), "args": ["build", "--vars", vars]});
            if let Some(path) = env(i) {
                e["env"] = json!({ "DUCKDB_PATH": path });
            }
            e
        })
        .collect();
    Value::Array(entries)
}

fn assert_all_succeeded(out: &Finished, state: &Path, n: usize) -> Value {
    assert_eq!(out.code, Some(0), "{}", out.both());
    let s = summary(state);
    let batches = s["batches"].as_array().unwrap();
    assert_eq!(batches.len(), n, "{s}");
    assert!(batches.iter().all(|b| b["status"] == "succeeded"), "{s}");
    s
}

#[test]
fn a_pool_plan_with_a_file_per_entry_lands_each_day_in_its_own_file() {
    let s = setup("pi-files", "exactly_once");
    let _reaper = Reaper(s.tag.clone());
    let file = |i: u32| s.path(&format!("day{i}.duckdb"));
    let plan = s.plan(
        "plan.json",
        &pool_plan(|i| Some(file(i).display().to_string())),
    );
    // Cold: a file per entry is a parse per entry (warm workers would find so).
    let out = s.run(&[
        "--plan",
        &plan,
        "--workers",
        "4",
        "--mode",
        "cold",
        "--env",
        "EO_SLOW_ROWS=10",
    ]);
    let sm = assert_all_succeeded(&out, &s.state, 4);
    assert_eq!(
        sm["plan"]["groups"].as_array().unwrap().len(),
        4,
        "a warehouse per entry: {}",
        sm["plan"]
    );
    for i in 1..=4 {
        assert_eq!(
            rows_per_day(&s.dbt, &file(i)),
            [(day(i), "16".to_string())],
            "day{i}'s file"
        );
    }
}

#[test]
fn a_pool_plan_on_one_file_lands_every_day_with_batches_taking_turns() {
    let s = setup("pi-one-file", "exactly_once");
    let _reaper = Reaper(s.tag.clone());
    let db = s.path("one.duckdb");
    let plan = s.plan("plan.json", &pool_plan(|_| None));
    let out = s.run(&[
        "--plan",
        &plan,
        "--workers",
        "4",
        "--env",
        "EO_SLOW_ROWS=10",
        "--env",
        &format!("DUCKDB_PATH={}", db.display()),
    ]);
    let sm = assert_all_succeeded(&out, &s.state, 4);
    let days: Vec<(String, String)> = (1..=4).map(|i| (day(i), "16".to_string())).collect();
    assert_eq!(rows_per_day(&s.dbt, &db), days);
    let decisions = sm["plan"]["decisions"].as_array().unwrap();
    let turns = decisions
        .iter()
        .find(|d| d["kind"] == "one_writer")
        .unwrap_or_else(|| panic!("no one_writer decision: {}", sm["plan"]));
    assert!(
        turns["text"].as_str().unwrap().contains("{worker}"),
        "{turns}"
    );
    // No two attempts on the file overlapped in time.
    let mut spans: Vec<(f64, f64)> = sm["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["history"].as_array().unwrap().clone())
        .map(|a| {
            let start = a["started_at"].as_f64().unwrap();
            (start, start + a["duration_s"].as_f64().unwrap())
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        // (Times are kept to the millisecond.)
        assert!(w[1].0 + 0.002 >= w[0].1, "attempts overlapped: {spans:?}");
    }
}

#[test]
fn entries_that_differ_only_in_a_var_build_once_what_does_not_read_it() {
    let s = setup("pi-vars", "layers");
    let _reaper = Reaper(s.tag.clone());
    let db = s.path("wh.duckdb");
    let entries: Vec<Value> = ["eu", "us", "apac"]
        .iter()
        .map(|r| json!({"id": r, "select": "+marts", "vars": {"region": r}}))
        .collect();
    let plan = s.plan("plan.json", &Value::Array(entries));
    let out = s.run(&[
        "--plan",
        &plan,
        "--workers",
        "3",
        "--env",
        &format!("DUCKDB_PATH={}", db.display()),
    ]);
    let sm = assert_all_succeeded(&out, &s.state, 4);
    let built = s.built();
    assert_eq!(built.get("model.layers.by_region"), Some(&3), "{built:?}");
    assert_eq!(built.get("model.layers.orders"), Some(&1), "{built:?}");
    assert_eq!(built.get("model.layers.customers"), Some(&1), "{built:?}");
    assert_eq!(built.get("model.layers.stg_orders"), Some(&1), "{built:?}");
    let regions = duckdb_rows(&s.dbt, &db, "select region from main.by_region");
    assert_eq!(regions.len(), 1, "a table: the last region's build stands");
    // summary.json says who built each entry's nodes: the entry and the shared batch.
    for r in ["eu", "us", "apac"] {
        let r: &str = r;
        let by: Vec<&str> = sm["plan"]["built_by"][r]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut want = vec![r, "shared"];
        want.sort_unstable();
        assert_eq!(by, want, "{}", sm["plan"]);
    }
}

#[test]
fn a_test_across_staging_and_marts_runs_after_both_without_merging_them() {
    let s = setup("pi-layers", "layers");
    let _reaper = Reaper(s.tag.clone());
    let db = s.path("wh.duckdb");
    let out = s.run(&[
        "-s",
        "staging",
        "-s",
        "marts",
        "--env",
        &format!("DUCKDB_PATH={}", db.display()),
    ]);
    let sm = assert_all_succeeded(&out, &s.state, 2);
    assert_eq!(batch(&sm, "marts")["after"], json!(["staging"]));
    let test = "test.layers.relationships_orders_customer_id__customer_id__ref_stg_customers_";
    let in_marts = s.results_of("marts");
    assert!(
        in_marts.iter().any(|id| id.starts_with(test)),
        "{in_marts:?}"
    );
    assert!(
        !s.results_of("staging")
            .iter()
            .any(|id| id.starts_with(test)),
        "the cross-layer test ran in staging"
    );
    let decisions = sm["plan"]["decisions"].as_array().unwrap();
    assert!(
        !decisions.iter().any(|d| d["kind"] == "merged"),
        "{decisions:?}"
    );
    let placed = decisions
        .iter()
        .find(|d| d["kind"] == "test_placed")
        .unwrap();
    let text = placed["text"].as_str().unwrap();
    assert!(
        text.starts_with("the test relationships_orders_customer_id")
            && text.contains("runs in marts"),
        "a test by its name, not its hash: {text}"
    );
    assert!(
        s.built().values().all(|&n| n == 1),
        "every node once: {:?}",
        s.built()
    );
}

#[test]
fn a_typo_selector_is_refused_before_anything_runs() {
    let s = setup("pi-typo", "layers");
    let _reaper = Reaper(s.tag.clone());
    let db = s.path("wh.duckdb");
    let out = s.run(&[
        "-s",
        "stagin",
        "-s",
        "marts",
        "--env",
        &format!("DUCKDB_PATH={}", db.display()),
    ]);
    assert_eq!(out.code, Some(2), "{}", out.both());
    let last = out.stderr.trim().lines().last().unwrap();
    assert_eq!(
        last,
        "dbt-herd: batch stagin: selection 'stagin' matched no node (pass --allow-empty to run it anyway)"
    );
    assert!(!db.exists(), "nothing reached the warehouse");
    let sm = summary(&s.state);
    assert_eq!(sm["exit_code"], 2);
    assert!(sm["error"].as_str().unwrap().contains("'stagin'"));
    let batches = sm["batches"].as_array().unwrap();
    assert!(batches.iter().all(|b| b["status"] == "pending"), "{sm}");
}

/// How a test stops a preparing run.
#[derive(Clone, Copy, PartialEq)]
enum StopBy {
    /// Ctrl-C to a headless run in the foreground.
    CtrlC,
    /// `dbt-herd stop` on a run started with `--detach`.
    StopCommand,
}

/// Stops the run once it says it is `at` a phase of its preparation: exit 130
/// at once, no dbt left, every batch pending in summary.json; then `--resume`
/// runs them, each day's rows once, and records its preparation.
fn stopped_while(name: &str, at: &str, mode: &str, by: StopBy) {
    let s = setup(name, "exactly_once");
    let _reaper = Reaper(s.tag.clone());
    let db = s.path("wh.duckdb");
    let wh = format!("DUCKDB_PATH={}", db.display());
    let args = [
        "--backfill",
        "2024-01-01..2024-01-03",
        "--env",
        &wh,
        "--env",
        "EO_SLOW_ROWS=10",
        "--mode",
        mode,
    ];
    // Each phase is a line of the headless face as it begins (a detached
    // run's face writes to its log).
    let said = format!("prepare   {at}");
    let out = if by == StopBy::CtrlC {
        let r = start(s.herd(&args));
        assert!(
            wait_for(LONG, || r.stdout().contains(&said)),
            "{}",
            r.stdout()
        );
        r.signal(libc::SIGINT);
        let out = r.finish(LONG);
        assert!(out.stderr.contains("interrupted while"), "{}", out.both());
        out
    } else {
        let mut c = s.herd(&args);
        let c = detached(&mut c);
        let launched = std::time::Instant::now();
        let out = start(c).finish(LONG);
        let took = launched.elapsed();
        assert_eq!(out.code, Some(0), "{}", out.both());
        assert_eq!(out.stdout.trim(), s.state.display().to_string());
        // Returned before the plan was resolved: the run prepares on its own.
        assert!(!s.state.join("summary.json").exists(), "{}", out.both());
        let log = s.state.join("herd.log");
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(wait_for(LONG, || logged().contains(&said)), "{}", logged());
        let ls = herd_cmd(&["ls", s.tmp.path().to_str().unwrap(), "--json"]);
        let listed: Value = serde_json::from_str(&ls.stdout).unwrap();
        assert_eq!(listed["runs"][0]["preparing"], true, "{listed} ({took:?})");
        let stop = herd_cmd(&["stop", s.state.to_str().unwrap()]);
        assert!(
            stop.stdout.contains("summary: interrupted"),
            "{}",
            stop.both()
        );
        stop
    };
    assert_eq!(out.code, Some(130), "{}", out.both());
    let sm = summary(&s.state);
    assert_eq!(sm["exit_code"], 130);
    let ids: Vec<&str> = sm["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["status"], "pending", "{sm}");
            b["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, ["2024-01-01", "2024-01-02"]);
    assert!(
        tagged_processes(&s.tag).is_empty(),
        "dbt left running after a stop while {at}"
    );

    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--resume"])
        .arg(&s.state)
        .args(["--env", &wh, "--env", "EO_SLOW_ROWS=10"])
        .args(["--env", &format!("HERD_TEST_TAG={}", s.tag)]);
    let out = start(c).finish(LONG);
    let sm = assert_all_succeeded(&out, &s.state, 2);
    assert_eq!(
        rows_per_day(&s.dbt, &db),
        [(day(1), "16".to_string()), (day(2), "16".to_string())]
    );
    // The resumed run's preparation is in its summary, phase by phase, and
    // counts from its launch.
    let prep = &sm["preparation"];
    let phases: Vec<&str> = prep["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["seconds"].as_f64().unwrap() >= 0.0, "{prep}");
            p["phase"].as_str().unwrap()
        })
        .collect();
    assert_eq!(&phases[..2], ["resolve", "mode"], "{prep}");
    let launched = prep["launched_at"].as_str().unwrap();
    let started = sm["started_at"].as_str().unwrap();
    assert!(launched <= started, "{launched} is after {started}");
}

/// The same run in the background: `--detach` for `--headless`.
fn detached(c: &mut Command) -> Command {
    let mut d = Command::new(c.get_program());
    d.args(c.get_args().map(|a| {
        if a == "--headless" {
            "--detach".as_ref()
        } else {
            a
        }
    }));
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            d.env(k, v);
        }
    }
    d.stdin(Stdio::null());
    d
}

/// A short dbt-herd command, run to its end.
fn herd_cmd(args: &[&str]) -> Finished {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null());
    start(c).finish(Duration::from_secs(60))
}

#[test]
fn stop_while_resolving_a_detached_run_leaves_every_batch_pending_and_resume_runs_them() {
    stopped_while(
        "pi-prep-stop",
        "resolving the plan",
        "auto",
        StopBy::StopCommand,
    );
}

#[test]
fn ctrl_c_while_resolving_leaves_every_batch_pending_and_resume_runs_them() {
    stopped_while("pi-prep", "resolving the plan", "auto", StopBy::CtrlC);
}

#[test]
fn ctrl_c_while_warm_workers_parse_leaves_every_batch_pending_and_resume_runs_them() {
    stopped_while(
        "pi-prep-warm",
        "readying warm dbt workers",
        "warm",
        StopBy::CtrlC,
    );
}

/// A run that cannot prepare: exit 2 and one line on stderr with dbt's own
/// message (not its last line), and nothing else said after it.
fn refused_while_preparing(s: &Setup, extra: &[&str]) -> String {
    let db = s.path("wh.duckdb");
    let wh = format!("DUCKDB_PATH={}", db.display());
    let mut args = vec!["--backfill", "2024-01-01..2024-01-03", "--env", &wh];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    assert_eq!(out.code, Some(2), "{}", out.both());
    assert!(!out.stderr.contains("panicked"), "{}", out.both());
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot resolve the plan"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.both());
    assert_eq!(
        out.stderr.trim().lines().last(),
        Some(errors[0]),
        "the error is the last word: {}",
        out.both()
    );
    assert!(!db.exists(), "nothing reached the warehouse");
    errors[0].to_string()
}

#[test]
fn a_wrong_target_is_refused_with_dbts_own_message() {
    let s = setup("pi-target", "exactly_once");
    let _reaper = Reaper(s.tag.clone());
    let line = refused_while_preparing(&s, &["--target", "nope"]);
    assert!(
        line.contains("does not have a target named 'nope'") && line.contains("- dev"),
        "{line}"
    );
}

#[test]
fn a_broken_profiles_yml_is_refused_naming_the_file_and_the_problem() {
    let s = setup("pi-yaml", "exactly_once");
    let _reaper = Reaper(s.tag.clone());
    let profiles = s.project.join("profiles.yml");
    std::fs::write(
        &profiles,
        "exactly_once:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n     path: x\n",
    )
    .unwrap();
    let line = refused_while_preparing(&s, &[]);
    assert!(line.contains("profiles.yml"), "{line}");
    assert!(
        line.contains(&profiles.display().to_string()),
        "names the file: {line}"
    );
    assert!(
        line.contains("did not find expected key"),
        "dbt's problem: {line}"
    );
}
