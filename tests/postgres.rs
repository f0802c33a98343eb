//! Real dbt-postgres against a private PostgreSQL server (tests/common/postgres.rs),
//! on the projects in tests/fixtures/pg_projects. The first test to run installs the
//! pinned venv (shared with `dbt-herd demo`).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output, Stdio};

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
