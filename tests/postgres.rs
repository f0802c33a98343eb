//! Real dbt-postgres against a private PostgreSQL server (tests/common/postgres.rs),
//! on the projects in tests/fixtures/pg_projects. The first test to run installs the
//! pinned venv (shared with `dbt-herd demo`).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::postgres::{Postgres, SCHEMA, Who, pg_project};
use common::*;

const THREADS: u32 = 2;

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn one_window_builds_on_postgres_within_its_threads() {
    let pg = Postgres::start();
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = pg_project("windows");
    pg.write_profiles(work.path(), "herd_windows", THREADS);
    let t = tag("pg-smoke");
    let _reaper = Reaper(t.clone());
    let run = |args: &[&str]| {
        Command::new(&dbt)
            .args(args)
            .arg("--no-use-colors")
            .arg("--project-dir")
            .arg(&project)
            .arg("--profiles-dir")
            .arg(work.path())
            .current_dir(&project)
            .env("HERD_TEST_TAG", &t)
            .stdin(Stdio::null())
            .output()
            .expect("run dbt")
    };

    check("dbt seed", &run(&["seed"]));
    let sampler = pg.sample_connections(Who::DbtRole);
    let build = run(&[
        "build",
        "--select",
        "tag:core",
        "--vars",
        // Each model holds its connection for a while, for the sampler to see.
        r#"{start_date: "2024-03-01", end_date: "2024-03-02", hold_seconds: 0.25}"#,
    ]);
    let peak = sampler.stop();
    check("dbt build", &build);
    assert!(
        (1..=THREADS).contains(&peak),
        "peak of {peak} dbt connections with --threads {THREADS}"
    );

    // Exactly the seed's rows of that day.
    let seed = std::fs::read_to_string(project.join("seeds/raw_events.csv")).unwrap();
    let expected: Vec<Vec<String>> = seed
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r[1] == "2024-03-01")
        .collect();
    assert_eq!(expected.len(), 3);
    let rows = pg.sql(&format!(
        "select event_id, event_date from {SCHEMA}.daily order by event_id"
    ));
    assert_eq!(rows, expected);
    assert!(tagged_processes(&t).is_empty());
}

// ---------------------------------------------------------------------------
// dbt-herd itself on Postgres: the budget, stopping, and idle warm workers.

/// A second window-dependent incremental model beside `daily`: both read `b`
/// only, so a window's batch runs them side by side and, with `hold_seconds`,
/// holds two connections at once with `--threads 2`.
const DAILY_USERS: &str = "\
{{ config(materialized='incremental', incremental_strategy='delete+insert',
          unique_key='event_id', tags=['core']) }}
select e.event_id, e.event_date, e.user_id
from {{ ref('b') }} as e
where e.event_date >= '{{ var(\"start_date\") }}'::date
  and e.event_date < '{{ var(\"end_date\") }}'::date
";

/// A model whose query runs for a minute in the warehouse (unless cancelled).
const SLOW_SLEEP: &str = "\
{{ config(materialized='table', tags=['slow']) }}
select 1 as x from pg_sleep(60)
";

/// A model whose query runs until the harness says so (`release`), two minutes
/// at most.
const SLOW_UNTIL_RELEASED: &str = "\
{{ config(materialized='table') }}
select public.herd_wait_release() as released
";

const QUICK: &str = "{{ config(materialized='table') }}\nselect 1 as x\n";
/// A table that reads the slow one: its batch runs after it.
const AFTER_SLOW: &str = "{{ config(materialized='table') }}\nselect * from {{ ref('slow') }}\n";

/// The windows project, copied, with these extra models.
fn windows_project_with(models: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let (work, project) = pg_project("windows");
    for (file, sql) in models {
        std::fs::write(project.join("models").join(file), sql).unwrap();
    }
    (work, project)
}

/// `dbt seed` of the windows project, its processes tagged.
fn seed(dbt: &Path, work: &Path, project: &Path, tag: &str) {
    let out = Command::new(dbt)
        .args(["seed", "--no-use-colors", "--project-dir"])
        .arg(project)
        .arg("--profiles-dir")
        .arg(work)
        .arg("--target-path")
        .arg(work.join("seed-target"))
        .arg("--log-path")
        .arg(work.join("seed-logs"))
        .env("HERD_TEST_TAG", tag)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check("dbt seed", &out);
}

/// `dbt-herd run --headless` on `project` with the profiles in `work`, its state
/// dir `state`, every dbt process tagged.
fn herd(
    dbt: &Path,
    work: &Path,
    project: &Path,
    state: &Path,
    tag: &str,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--project-dir"])
        .arg(project)
        .arg("--profiles-dir")
        .arg(work)
        .arg("--dbt")
        .arg(dbt)
        .arg("--state-dir")
        .arg(state)
        .arg("--env")
        .arg(format!("HERD_TEST_TAG={tag}"))
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// The dbt role's client connections now: pid, state and the start of the query.
fn dbt_backends(pg: &Postgres) -> Vec<Vec<String>> {
    pg.sql(
        "select pid, state, left(regexp_replace(query, '\\s+', ' ', 'g'), 300) \
         from pg_stat_activity where backend_type = 'client backend' and usename = 'dbt' \
         order by pid",
    )
}

/// Whether a dbt connection is running a query that contains `text` now.
fn dbt_query_active(pg: &Postgres, text: &str) -> bool {
    let rows = pg.sql(&format!(
        "select count(*) from pg_stat_activity where backend_type = 'client backend' \
         and usename = 'dbt' and state = 'active' and strpos(query, '{}') > 0",
        text.replace('\'', "''")
    ));
    rows[0][0] != "0"
}

/// The most attempts that ran at one time, from the journal's start and finish
/// records (an attempt without a finish counts until the end).
fn most_at_once(journal: &[serde_json::Value]) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for r in journal {
        match r["record"].as_str() {
            Some("attempt_started") => {
                now += 1;
                most = most.max(now);
            }
            Some("attempt_finished") => now = now.saturating_sub(1),
            _ => {}
        }
    }
    most
}

/// Rows per day of a table with `event_id` and `event_date`: (day, rows, distinct ids).
fn rows_per_day(pg: &Postgres, table: &str) -> Vec<(String, usize, usize)> {
    pg.sql(&format!(
        "select event_date::text, count(*), count(distinct event_id) from {SCHEMA}.{table} \
         group by event_date order by event_date"
    ))
    .iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap()))
    .collect()
}

/// Three worker slots of two threads each, but a budget of five connections: two
/// batches at a time (a third would need six). Sampled in `pg_stat_activity` every
/// 50 ms, the dbt role's connections reach 4 and never pass 5; every window lands
/// once in both incremental tables.
#[test]
fn the_budget_holds_on_postgres_and_every_window_lands_once() {
    let pg = Postgres::start();
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[("daily_users.sql", DAILY_USERS)]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    let t = tag("pg-budget");
    let _reaper = Reaper(t.clone());
    seed(&dbt, work.path(), &project, &t);
    let state = work.path().join("state");

    let sampler = pg.sample_connections(Who::DbtRole);
    let out = herd(
        &dbt,
        work.path(),
        &project,
        &state,
        &t,
        &[
            "--backfill",
            "2024-03-01..2024-03-08",
            "-s",
            "tag:core",
            "--workers",
            "3",
            "--threads",
            "2",
            "--budget",
            "5",
            // Every model holds its connection a while, so that batches overlap
            // in the samples.
            "--vars",
            "{hold_seconds: 1.5}",
        ],
    )
    .output()
    .unwrap();
    let samples = sampler.samples();
    let peak = sampler.stop();
    check("dbt-herd run", &out);
    let stdout = text(&out.stdout);
    eprintln!("peak of {peak} dbt connections in {samples} samples");
    assert!(
        peak <= 5,
        "{peak} dbt connections with a budget of 5\n{stdout}"
    );
    assert!(
        peak >= 4,
        "two batches of 2 threads never held 4 connections at once (peak {peak})\n{stdout}"
    );

    let s = summary(&state);
    eprintln!("mode {}", s["mode"]);
    assert_eq!(s["budget"], 5, "{s}");
    assert_eq!(s["threads"], 2, "{s}");
    for day in 1..=7 {
        let b = batch(&s, &format!("2024-03-{day:02}_tag-core"));
        assert_eq!(b["status"], "succeeded", "{b}");
    }
    // The scheduler's side of it: never three batches at once, but two.
    let j = common::running::journal(&state);
    assert_eq!(most_at_once(&j), 2, "{stdout}");

    // Each day of the seed in the window, exactly once, in both tables.
    let want: Vec<(String, usize, usize)> =
        (1..=7).map(|d| (format!("2024-03-{d:02}"), 3, 3)).collect();
    assert_eq!(rows_per_day(&pg, "daily"), want);
    assert_eq!(rows_per_day(&pg, "daily_users"), want);
    assert!(tagged_processes(&t).is_empty());
}

/// SIGTERM and SIGINT to a headless dbt-herd while a batch's query runs in the
/// warehouse, in warm and in cold mode: dbt-herd exits 143 / 130, and within 2 s
/// of its exit the dbt role has no connection left on the server (the query was
/// cancelled, not left to run to its end).
#[test]
fn sigterm_and_ctrl_c_leave_no_query_running_on_postgres() {
    let pg = Postgres::start();
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[("slow.sql", SLOW_SLEEP)]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    let t = tag("pg-stop");
    let _reaper = Reaper(t.clone());

    for (mode, signal, name, code) in [
        ("auto", libc::SIGTERM, "SIGTERM", 143),
        ("auto", libc::SIGINT, "SIGINT", 130),
        ("cold", libc::SIGTERM, "SIGTERM", 143),
        ("cold", libc::SIGINT, "SIGINT", 130),
    ] {
        let what = format!("{name} in --mode {mode}");
        let started = std::time::Instant::now();
        let state = work.path().join(format!("state-{mode}-{name}"));
        let running = common::running::start(herd(
            &dbt,
            work.path(),
            &project,
            &state,
            &t,
            &["-s", "slow", "--mode", mode],
        ));
        assert!(
            wait_for(Duration::from_secs(120), || dbt_query_active(
                &pg,
                "pg_sleep(60)"
            )),
            "{what}: the slow query never ran\n{}\n{}",
            running.stdout(),
            running.stderr()
        );
        let query_seen = started.elapsed();
        running.signal(signal);
        let signalled = std::time::Instant::now();
        let run = running.finish(Duration::from_secs(60));
        eprintln!(
            "{what}: query seen after {query_seen:?}, dbt-herd exited {:?} after the signal",
            signalled.elapsed()
        );
        assert_eq!(run.code, Some(code), "{what}\n{}", run.both());
        let clean = wait_for(Duration::from_secs(2), || dbt_backends(&pg).is_empty());
        assert!(
            clean,
            "{what}: 2 s after dbt-herd exited, the dbt role still has connections: {:?}\n{}",
            dbt_backends(&pg),
            run.both()
        );
        assert!(
            wait_for(Duration::from_secs(5), || tagged_processes(&t).is_empty()),
            "{what}: processes left: {:?}",
            tagged_processes(&t)
        );
        let s = summary(&state);
        let want_mode = if mode == "auto" { "warm" } else { "cold" };
        assert_eq!(s["mode"], want_mode, "{what}: {s}");
        assert_eq!(batch(&s, "slow")["status"], "cancelled", "{what}: {s}");
        eprintln!(
            "{what}: exit {code}, no dbt connection left ({:?})",
            started.elapsed()
        );
    }
}

/// Three warm workers each run a batch; two finish theirs and sit idle, warm,
/// while the third batch holds its query open. Meanwhile the dbt role has exactly
/// one connection: idle warm workers hold none (a worker that kept the
/// connections of the batch it ran would show here).
#[test]
fn an_idle_warm_worker_holds_no_postgres_connection() {
    let pg = Postgres::start();
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[
        ("slow.sql", SLOW_UNTIL_RELEASED),
        ("quick1.sql", QUICK),
        ("quick2.sql", QUICK),
        // Batches that wait for the slow one keep two workers warm while it
        // runs: with nothing left to run, an idle worker would be let go.
        ("after_slow1.sql", AFTER_SLOW),
        ("after_slow2.sql", AFTER_SLOW),
    ]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    pg.sql(
        "create table public.herd_release (x int); \
         grant select on public.herd_release to dbt; \
         create function public.herd_wait_release() returns int language plpgsql as $$ \
         begin \
           for i in 1..1200 loop \
             if exists (select 1 from public.herd_release) then return 1; end if; \
             perform pg_sleep(0.1); \
           end loop; \
           return 0; \
         end $$",
    );
    let t = tag("pg-idle-warm");
    let _reaper = Reaper(t.clone());
    let state = work.path().join("state");

    let whole = pg.sample_connections(Who::DbtRole);
    let running = common::running::start(herd(
        &dbt,
        work.path(),
        &project,
        &state,
        &t,
        &[
            "-s",
            "slow",
            "-s",
            "quick1",
            "-s",
            "quick2",
            "-s",
            "after_slow1",
            "-s",
            "after_slow2",
            "--workers",
            "3",
            "--threads",
            "1",
            "--mode",
            "warm",
            // Each model holds its connection a while, so the samples see them.
            "--vars",
            "{hold_seconds: 0.5}",
        ],
    ));
    let finished = |b: &str| common::running::has_record(&state, "attempt_finished", b);
    assert!(
        wait_for(Duration::from_secs(150), || finished("quick1")
            && finished("quick2")),
        "the quick batches never finished\n{}\n{}",
        running.stdout(),
        running.stderr()
    );
    assert!(
        dbt_query_active(&pg, "herd_wait_release"),
        "the slow batch's query is not running: {:?}\n{}",
        dbt_backends(&pg),
        running.stdout()
    );
    // Three warm workers alive: the slow batch's and two idle ones.
    let workers: std::collections::BTreeSet<i32> = tagged_processes(&t)
        .into_iter()
        .filter(|p| p.argv.iter().any(|a| a.contains("herd_worker")))
        .map(|p| p.pgid)
        .collect();
    assert_eq!(workers.len(), 3, "{:?}", tagged_processes(&t));

    let idle = pg.sample_connections(Who::DbtRole);
    std::thread::sleep(Duration::from_secs(3));
    let idle_samples = idle.samples();
    let idle_peak = idle.stop();
    // All that time only the slow batch ran.
    assert!(!finished("slow"), "{}", running.stdout());
    assert!(dbt_query_active(&pg, "herd_wait_release"));
    assert_eq!(
        idle_peak, 1,
        "with one batch of 1 thread running and two warm workers idle, the dbt role \
         held {idle_peak} connections ({idle_samples} samples)"
    );

    pg.sql("insert into public.herd_release values (1)");
    let run = running.finish(Duration::from_secs(60));
    let peak = whole.stop();
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(
        (1..=3).contains(&peak),
        "peak of {peak} connections with 3 batches of 1 thread"
    );
    let s = summary(&state);
    assert_eq!(s["mode"], "warm", "{s}");
    for b in ["slow", "quick1", "quick2", "after_slow1", "after_slow2"] {
        assert_eq!(batch(&s, b)["status"], "succeeded", "{s}");
    }
    // The quick batches ran beside the slow one, on other workers.
    let j = common::running::journal(&state);
    let ran_on: std::collections::BTreeSet<u64> = j
        .iter()
        .filter(|r| r["record"] == "attempt_started")
        .map(|r| r["worker"].as_u64().unwrap())
        .collect();
    assert!(ran_on.len() >= 2, "{j:?}");
    assert!(
        wait_for(Duration::from_secs(5), || tagged_processes(&t).is_empty()),
        "processes left: {:?}",
        tagged_processes(&t)
    );
}

/// A server with fewer connections than the budget (`max_connections` 6, 3 of
/// them kept for superusers, against `--budget 10` and 4 workers × 2 threads):
/// the refused batches are requeued without failing (no retry spent), fewer
/// run at once and the run says so, and every window lands once.
#[test]
fn a_connection_limit_below_the_workers_is_back_pressure_and_every_window_lands() {
    let pg = Postgres::start_with(common::postgres::PgOptions { max_connections: 6 });
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[("daily_users.sql", DAILY_USERS)]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    let t = tag("pg-limit");
    let _reaper = Reaper(t.clone());
    seed(&dbt, work.path(), &project, &t);
    let state = work.path().join("state");
    let out = herd(
        &dbt,
        work.path(),
        &project,
        &state,
        &t,
        &[
            "--backfill",
            "2024-03-01..2024-03-06",
            "-s",
            "tag:core",
            "--workers",
            "4",
            "--threads",
            "2",
            "--budget",
            "10",
            "--mode",
            "cold",
            "--vars",
            "{hold_seconds: 0.75}",
        ],
    )
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    check("dbt-herd run", &out);
    assert!(
        stdout.contains("the warehouse refused connections:") && stdout.contains("at once (was"),
        "{stdout}"
    );
    let s = summary(&state);
    for day in 1..=5 {
        let b = batch(&s, &format!("2024-03-{day:02}_tag-core"));
        assert_eq!(b["status"], "succeeded", "{b}");
    }
    assert!(s.get("breaker").is_none(), "{s}");
    let want: Vec<(String, usize, usize)> =
        (1..=5).map(|d| (format!("2024-03-{d:02}"), 3, 3)).collect();
    assert_eq!(rows_per_day(&pg, "daily"), want);
    assert!(tagged_processes(&t).is_empty());
}

/// `pg_ctl restart -m fast` while batches run: the batches it cuts off fail
/// with "server closed the connection" (or are refused while it is down),
/// wait and run again by themselves (no `--retries` given), and every window
/// lands once.
#[test]
fn a_postgres_restart_mid_run_is_retried_by_itself_and_every_window_lands() {
    let mut pg = Postgres::start();
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[("daily_users.sql", DAILY_USERS)]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    let t = tag("pg-restart");
    let _reaper = Reaper(t.clone());
    seed(&dbt, work.path(), &project, &t);
    let state = work.path().join("state");
    let run = common::running::start(herd(
        &dbt,
        work.path(),
        &project,
        &state,
        &t,
        &[
            "--backfill",
            "2024-03-01..2024-03-05",
            "-s",
            "tag:core",
            "--workers",
            "2",
            "--threads",
            "1",
            "--mode",
            "cold",
            "--vars",
            "{hold_seconds: 1.5}",
        ],
    ));
    // Both workers' batches are in the warehouse when it restarts.
    assert!(
        wait_for(Duration::from_secs(120), || dbt_query_active(
            &pg, "pg_sleep"
        )),
        "no batch reached the warehouse: {}",
        run.stdout()
    );
    pg.restart();
    let out = run.finish(Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stdout.contains("a transient fault"), "{}", out.stdout);
    let s = summary(&state);
    for day in 1..=4 {
        let b = batch(&s, &format!("2024-03-{day:02}_tag-core"));
        assert_eq!(b["status"], "succeeded", "{b}");
    }
    // Whichever batches it cut off (the shared one, or windows) ran again.
    let retried = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried >= 1, "the restart hit no batch: {s}");
    let want: Vec<(String, usize, usize)> =
        (1..=4).map(|d| (format!("2024-03-{d:02}"), 3, 3)).collect();
    assert_eq!(rows_per_day(&pg, "daily"), want);
    assert_eq!(rows_per_day(&pg, "daily_users"), want);
    assert!(tagged_processes(&t).is_empty());
}

/// `--budget auto` asks the server: its `max_connections`, less what it keeps
/// for superusers and what is in use, or the role's own limit when tighter.
#[test]
fn budget_auto_takes_what_the_server_has_room_for_and_says_so() {
    let pg = Postgres::start_with(common::postgres::PgOptions {
        max_connections: 20,
    });
    let dbt =
        dbt_herd::venv::ensure(&mut std::io::stderr()).unwrap_or_else(|e| panic!("dbt venv: {e}"));
    let (work, project) = windows_project_with(&[("daily_users.sql", DAILY_USERS)]);
    pg.write_profiles(work.path(), "herd_windows", 1);
    let t = tag("pg-auto");
    let _reaper = Reaper(t.clone());
    seed(&dbt, work.path(), &project, &t);
    let run = |state: &Path| {
        herd(
            &dbt,
            work.path(),
            &project,
            state,
            &t,
            &[
                "--backfill",
                "2024-03-01..2024-03-03",
                "-s",
                "tag:core",
                "--budget",
                "auto",
            ],
        )
        .output()
        .unwrap()
    };
    let state = work.path().join("state");
    let out = run(&state);
    check("dbt-herd run --budget auto", &out);
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("--budget auto:"))
        .unwrap_or_else(|| panic!("no word on the budget: {stderr}"));
    assert!(
        line.contains("max_connections 20, 3 reserved for superusers"),
        "{line}"
    );
    let budget = summary(&state)["budget"].as_u64().unwrap();
    assert!((10..=17).contains(&budget), "{budget}: {line}");
    assert!(line.contains(&format!("{budget} connections")), "{line}");

    // A role limit tighter than the server's is the budget.
    pg.sql("alter role dbt connection limit 3");
    let state = work.path().join("state2");
    let out = run(&state);
    check("dbt-herd run --budget auto (role limit)", &out);
    assert_eq!(summary(&state)["budget"], 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the role's connection limit 3"));
}
