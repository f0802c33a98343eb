//! Chaos: dbt-herd killed with SIGKILL at random moments and resumed, over and
//! over, on real dbt-core 1.11 + dbt-duckdb (the demo project, a DuckDB file per
//! worker). Whatever the moment of the kill, the resumes together must run every
//! batch to success exactly once, land every window exactly once, and leave no
//! process behind.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::demo::*;
use common::running::{Finished, Rng, journal, start};
use common::*;
use serde_json::Value;

/// Rounds of start (or resume), random wait, SIGKILL.
const ROUNDS: usize = 20;
/// The backfill: 12 daily windows (none of them the demo's late day).
const FROM: &str = "2024-01-15";
const TO: &str = "2024-01-27";
const DAYS: usize = 12;

/// `dbt-herd run --headless --resume STATE`: the stored options (the tag in
/// `--env` among them) come from the state dir.
fn resume(state: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--resume"]).arg(state);
    c
}

/// How many `attempt_started` records the journal holds.
fn attempts_started(state: &Path) -> usize {
    journal(state)
        .iter()
        .filter(|r| r["record"] == "attempt_started")
        .count()
}

/// Per worker DuckDB file: per day, fct_orders' (rows, distinct order ids) and
/// fct_daily_revenue's (rows, order_count); and the source's orders per day.
const QUERY_WAREHOUSE: &str = r#"
import duckdb, glob, json, os, sys
warehouse, source = sys.argv[1], sys.argv[2]
files = {}
for path in sorted(glob.glob(os.path.join(warehouse, "worker*.duckdb"))):
    con = duckdb.connect(path, read_only=True)
    got = {"orders": {}, "revenue": {}}
    try:
        for day, n, ids in con.sql(
            "select strftime(order_date, '%Y-%m-%d'), count(*), count(distinct order_id) "
            "from fct_orders group by 1"
        ).fetchall():
            got["orders"][day] = [n, ids]
    except duckdb.CatalogException:
        pass
    try:
        for day, n, orders in con.sql(
            "select strftime(revenue_date, '%Y-%m-%d'), count(*), sum(order_count) "
            "from fct_daily_revenue group by 1"
        ).fetchall():
            got["revenue"][day] = [n, int(orders)]
    except duckdb.CatalogException:
        pass
    con.close()
    files[os.path.basename(path)] = got
con = duckdb.connect(source, read_only=True)
orders = dict(con.sql(
    "select strftime(order_date, '%Y-%m-%d'), count(*) from orders group by 1"
).fetchall())
print(json.dumps({"files": files, "orders": orders}))
"#;

#[test]
fn kill_nine_and_resume_twenty_rounds_runs_every_batch_exactly_once() {
    let test_started = Instant::now();
    let (_tmp, dirs, dbt) = demo();
    let t = tag("chaos");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let mut rng = Rng::from_env_or_time("chaos");
    let days: Vec<String> = (0..DAYS)
        .map(|i| {
            (chrono::NaiveDate::parse_from_str(FROM, "%Y-%m-%d").unwrap()
                + chrono::Days::new(u64::try_from(i).unwrap()))
            .to_string()
        })
        .collect();
    assert_eq!(days.last().unwrap().as_str(), "2024-01-26");
    assert!(TO > days.last().unwrap().as_str());

    // Rounds that ended on their own, and how.
    let mut exited: Vec<(usize, Finished)> = Vec::new();
    let mut killed = 0;
    for round in 1..=ROUNDS {
        let fresh = !state.join("run.json").exists();
        let cmd = if fresh {
            let backfill = format!("{FROM}..{TO}");
            demo_run(
                &dirs,
                &dbt,
                &state,
                &t,
                &["--backfill", &backfill, "--workers", "2"],
            )
        } else {
            resume(&state)
        };
        let before = attempts_started(&state);
        let round_started = Instant::now();
        let mut running = start(cmd);
        // Half the rounds count the delay from the start (kills land in start-up:
        // the sweep, the journal, the plan, the workers' parse), half from this
        // round's first batch start (kills land mid-batch).
        let delay = Duration::from_millis(rng.range(300, 4000));
        let from_batch = rng.next().is_multiple_of(2);
        let mut anchor = "start";
        if from_batch {
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end && !running.exited_within(Duration::ZERO) {
                if attempts_started(&state) > before {
                    anchor = "first batch start";
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let anchored_after = round_started.elapsed();
        let outcome = if running.exited_within(delay) {
            let run = running.finish(Duration::from_secs(5));
            let line = format!("exited by itself with {:?}", run.code);
            exited.push((round, run));
            line
        } else {
            let groups: BTreeSet<i32> = tagged_processes(&t).iter().map(|p| p.pgid).collect();
            running.signal(libc::SIGKILL);
            let run = running.finish(Duration::from_secs(10));
            assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.both());
            killed += 1;
            // What outlived it (the next resume's sweep is for them).
            let left = tagged_processes(&t);
            let workers = left
                .iter()
                .filter(|p| p.argv.iter().any(|a| a.contains("herd_worker")))
                .count();
            let swept = run
                .stderr
                .lines()
                .filter(|l| l.contains("left running by the previous run"))
                .count();
            format!(
                "SIGKILL after {:?} ({} dbt process groups running; {} processes outlived it, \
                 {workers} of them warm workers; it swept {swept} leftovers at its start)",
                round_started.elapsed(),
                groups.len(),
                left.len()
            )
        };
        eprintln!(
            "round {round:2}: {} · delay {delay:?} from {anchor} (at {anchored_after:?}) · {outcome} · attempts started so far: {}",
            if fresh { "run" } else { "resume" },
            attempts_started(&state)
        );
    }

    // The last resume is left to finish.
    let last = start(resume(&state)).finish(Duration::from_secs(300));
    eprintln!(
        "final resume: exit {:?}\n{}",
        last.code,
        last.stdout.lines().take(6).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(last.code, Some(0), "{}", last.both());
    eprintln!(
        "{killed} of {ROUNDS} rounds killed; {} exited by themselves; {:?} in all",
        exited.len(),
        test_started.elapsed()
    );
    for (round, run) in &exited {
        assert_eq!(
            run.code,
            Some(0),
            "round {round} ended by itself but not with success\n{}",
            run.both()
        );
    }

    // (a) Per the journal: each batch succeeded exactly once, no attempt ran
    // after its success, and no attempt failed (a leftover of a killed run that
    // was not swept would collide with the rerun over its worker's DuckDB file).
    let j = journal(&state);
    let mut successes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut started: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut worker_of: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in &j {
        let (Some(b), Some(a)) = (r["batch"].as_str(), r["attempt"].as_u64()) else {
            continue;
        };
        match r["record"].as_str().unwrap() {
            "attempt_started" => {
                assert!(
                    !successes.contains_key(b),
                    "{b} attempt {a} started after the batch had succeeded: {r}"
                );
                started.entry(b.to_string()).or_default().push(a);
                worker_of.insert((b.to_string(), a), r["worker"].as_u64().unwrap());
            }
            "attempt_finished" => {
                let outcome = r["outcome"].as_str().unwrap_or("");
                assert!(
                    outcome == "succeeded" || outcome == "cancelled",
                    "{b} attempt {a} ended {outcome}: {r}\n{}",
                    std::fs::read_to_string(
                        state
                            .join("batches")
                            .join(b)
                            .join(format!("attempt-{a}.stdout.log"))
                    )
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
                );
                if outcome == "succeeded" {
                    successes.entry(b.to_string()).or_default().push(a);
                }
            }
            _ => {}
        }
    }
    let ids: BTreeSet<String> = days.iter().cloned().collect();
    assert_eq!(
        successes.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "{successes:?}"
    );
    for (b, ok) in &successes {
        assert_eq!(ok.len(), 1, "{b} succeeded more than once: attempts {ok:?}");
    }
    let s = summary(&state);
    for day in &days {
        assert_eq!(batch(&s, day)["status"], "succeeded", "{s}");
    }
    let reruns: usize = started.values().map(|a| a.len() - 1).sum();
    eprintln!(
        "mode {}; {} attempts in all, {reruns} beyond the first of each batch",
        s["mode"],
        started.values().map(Vec::len).sum::<usize>()
    );

    // (b) The warehouse: the file of the worker that ran a window's successful
    // attempt holds that day's orders exactly once and its revenue row once;
    // no file holds a day twice or a day outside the backfill (a killed
    // attempt's file may hold part of its window, never more than once).
    let out = Command::new(dbt.with_file_name("python"))
        .arg("-c")
        .arg(QUERY_WAREHOUSE)
        .arg(&dirs.warehouse)
        .arg(dirs.data.join("source.duckdb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (b, ok) in &successes {
        let worker = worker_of[&(b.clone(), ok[0])];
        let file = &got["files"][format!("worker{worker}.duckdb")];
        let want = got["orders"][b].as_u64().unwrap();
        assert!(want > 0, "no source orders on {b}");
        assert_eq!(
            file["orders"][b],
            serde_json::json!([want, want]),
            "fct_orders of {b} in worker{worker}.duckdb: {got}"
        );
        assert_eq!(
            file["revenue"][b],
            serde_json::json!([1, want]),
            "fct_daily_revenue of {b} in worker{worker}.duckdb: {got}"
        );
    }
    for (name, file) in got["files"].as_object().unwrap() {
        for (day, v) in file["orders"].as_object().unwrap() {
            assert!(ids.contains(day), "{name} holds orders of {day}: {got}");
            let want = got["orders"][day].as_u64().unwrap();
            let (n, distinct) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
            assert!(
                n == distinct && n <= want,
                "{name}: fct_orders of {day} has {n} rows, {distinct} orders, the source {want}: {got}"
            );
        }
        for (day, v) in file["revenue"].as_object().unwrap() {
            assert!(ids.contains(day), "{name} holds revenue of {day}: {got}");
            assert_eq!(v[0], 1, "{name}: fct_daily_revenue of {day}: {got}");
        }
    }

    // (c) Nothing left running.
    assert!(
        wait_for(Duration::from_secs(5), || tagged_processes(&t).is_empty()),
        "processes left: {:?}",
        tagged_processes(&t)
    );
}
