//! The commands around a run: `--dry-run` (text and JSON), shell completions
//! and the man page. No dbt is started by any of them.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn herd(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[test]
fn a_dry_run_shows_every_batch_and_the_budget_and_starts_nothing() {
    let dir = fake_project();
    let state = dir.path().join("state");
    let fake = fake_dbt();
    // The fake dbt has no graph to list: the plan is shown unresolved.
    let common = [
        "run",
        "--dry-run",
        "--shared-warehouse",
        "no",
        "--dbt",
        fake.to_str().unwrap(),
        "--project-dir",
        dir.path().to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "-s",
        "ok",
        "-s",
        "tag:nightly",
        "--backfill",
        "2024-03-01..2024-03-03",
        "--workers",
        "3",
        "--threads",
        "2",
        "--budget",
        "5",
        "--env",
        "DB_PASSWORD=hunter2",
        "--env",
        "DUCKDB_PATH=/w/{worker}.duckdb",
    ];
    let out = herd(&common);
    let text = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        common::text(&out.stderr)
    );
    assert!(!state.exists(), "a dry run writes no state dir");
    assert!(text.contains("4 batches"), "{text}");
    assert!(
        text.contains(
            "3 workers × 2 threads = 6 connections > budget 5: at most 2 batches run at once"
        ),
        "{text}"
    );
    for id in [
        "2024-03-01_ok",
        "2024-03-01_tag-nightly",
        "2024-03-02_ok",
        "2024-03-02_tag-nightly",
    ] {
        assert!(text.contains(&format!("\n{id}  ")), "{id} missing:\n{text}");
        assert!(
            text.contains(&format!("DBT_ENV_CUSTOM_ENV_HERD_BATCH={id} ")),
            "{text}"
        );
    }
    assert!(text.contains("DB_PASSWORD='***'"), "{text}");
    assert!(!text.contains("hunter2"), "a secret was printed:\n{text}");
    assert!(text.contains("DUCKDB_PATH=/w/1.duckdb"), "{text}");

    let mut json_args = common.to_vec();
    json_args.push("--json");
    let out = herd(&json_args);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["at_once"], 2);
    let batches = doc["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 4);
    let first = &batches[0];
    assert_eq!(first["argv"][0], fake.to_str().unwrap());
    assert_eq!(first["env"]["DB_PASSWORD"], "***");
    let argv: Vec<&str> = first["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = |flag: &str| argv[argv.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(at("--select"), "ok");
    assert_eq!(at("--threads"), "2");
    assert!(at("--target-path").starts_with(state.to_str().unwrap()));
    assert!(!out.stdout.windows(7).any(|w| w == b"hunter2"));
    assert!(!state.exists());
}

#[test]
fn a_dry_run_with_bad_options_is_one_line_and_exit_2() {
    let out = herd(&["run", "--dry-run", "--workers", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "_dbt__herd()"),
        ("zsh", "#compdef dbt-herd"),
        ("fish", "complete -c dbt-herd"),
    ] {
        let out = herd(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("backfill"),
            "{shell} completes run's options"
        );
        assert!(
            script.contains("attach"),
            "{shell} completes the subcommands"
        );
    }
    let out = herd(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcsh"));

    let out = herd(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = text(&out.stdout);
    assert!(page.contains(".TH dbt-herd 1"), "{page}");
    assert!(page.contains("parallel"), "{page}");
    // Each subcommand's options are in it too.
    assert!(page.contains("DBT-HERD RUN"), "{page}");
    assert!(page.contains("\\-\\-backfill"), "{page}");
    assert!(page.contains("\\-\\-read\\-only"), "{page}");
}

/// The README's table of JSON events: kind → its fields.
fn documented_events() -> std::collections::BTreeMap<String, Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("### JSON events")
        .nth(1)
        .expect("the README documents the JSON events");
    table
        .lines()
        .skip_while(|l| !l.starts_with("| event |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let names = |c: &str| -> Vec<String> {
                c.split(',')
                    .map(|f| f.trim().trim_matches('`').to_string())
                    .filter(|f| !f.is_empty())
                    .collect()
            };
            (names(cells[1]).remove(0), names(cells[2]))
        })
        .collect()
}

#[test]
fn json_events_are_the_ones_the_readme_documents_with_their_fields() {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let documented = documented_events();
    assert_eq!(documented.len(), 8, "{documented:?}");

    let dir = fake_project();
    let t = tag("json-events");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    // ok, a failing batch, a flaky one retried (queued again), and a sleepy one
    // kept running while the budget is changed over the control socket.
    let mut child = fake_run(
        dir.path(),
        &t,
        &[
            "--json",
            "-s",
            "ok",
            "-s",
            "fail",
            "-s",
            "flaky",
            "-s",
            "sleepy",
            "--retries",
            "1",
            "--workers",
            "4",
        ],
    )
    .env("FAKE_SLEEP", "3")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let sock = state.join("control.sock");
    assert!(wait_for(std::time::Duration::from_secs(20), || sock.exists()));
    let d = std::fs::File::open(&state).unwrap();
    let short = format!("/proc/self/fd/{}/control.sock", d.as_raw_fd());
    let mut client = std::os::unix::net::UnixStream::connect(&short).unwrap();
    writeln!(
        client,
        r#"{{"type":"hello","protocol":1,"read_only":false}}"#
    )
    .unwrap();
    writeln!(
        client,
        r#"{{"type":"command","command":{{"SetBudget":6}}}}"#
    )
    .unwrap();
    // Gone once it has spoken: a client that can steer keeps an idle run alive.
    client.flush().unwrap();
    drop(client);

    let mut seen = std::collections::BTreeSet::new();
    let mut last = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let obj = v.as_object().unwrap();
        assert_eq!(v["schema_version"], 1, "{line}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).is_ok(),
            "{line}"
        );
        let kind = v["event"].as_str().unwrap().to_string();
        let fields = documented
            .get(&kind)
            .unwrap_or_else(|| panic!("{kind} is not in the README: {line}"));
        let mut have: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !["schema_version", "ts", "event"].contains(k))
            .collect();
        have.sort_unstable();
        let mut want: Vec<&str> = fields.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(have, want, "{kind}'s fields differ from the README: {line}");
        seen.insert(kind);
        last = Some(v);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "one batch fails");
    let kinds: std::collections::BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(seen, kinds, "every documented kind was produced");
    let last = last.unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["exit_code"], 1);
    assert_eq!(last["succeeded"], 3);
    assert_eq!(last["failed"], 1);
}

#[test]
fn a_pool_scripts_plan_runs_unchanged_and_a_plan_files_after_edges_hold() {
    let dir = fake_project();
    let t = tag("plan-file");
    let _reaper = Reaper(t.clone());
    // The pool script's format, as it is.
    let pooled = dir.path().join("plan.json");
    std::fs::write(
        &pooled,
        r#"[{"name": "w01", "args": ["run", "--select", "ok", "--vars", "{run_date: '2024-01-01'}"], "env": {"HERD_PLAN_ENV": "one"}},
            {"name": "w02", "args": ["build", "-s", "ok", "--full-refresh"]}]"#,
    )
    .unwrap();
    let out = output(fake_run(
        dir.path(),
        &t,
        &["--plan", pooled.to_str().unwrap()],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = summary(&dir.path().join("state"));
    let ids: Vec<&str> = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["w01", "w02"]);
    let cmd = |id: &str| {
        batch(&s, id)["history"][0]["command"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        cmd("w01").contains(" run --select ok --vars "),
        "{}",
        cmd("w01")
    );
    assert!(cmd("w01").contains("HERD_PLAN_ENV=one"), "{}", cmd("w01"));
    assert!(cmd("w02").contains(" build --select ok "), "{}", cmd("w02"));
    assert!(cmd("w02").ends_with("--full-refresh"), "{}", cmd("w02"));

    // dbt-herd's own format with --backfill: report waits on load, window by window.
    let dir = fake_project();
    let plan = dir.path().join("plan.yml");
    std::fs::write(
        &plan,
        "- {id: load, select: sleepy}\n- {id: report, select: ok, after: [load], threads: 1}\n",
    )
    .unwrap();
    let mut run = fake_run(
        dir.path(),
        &t,
        &[
            "--plan",
            plan.to_str().unwrap(),
            "--backfill",
            "2024-03-01..2024-03-03",
            "--workers",
            "4",
        ],
    );
    run.env("FAKE_SLEEP", "1");
    let out = output(run);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let journal = std::fs::read_to_string(dir.path().join("state/journal.jsonl")).unwrap();
    let at = |record: &str, batch: &str| {
        journal
            .lines()
            .position(|l| l.contains(&format!(r#""record":"{record}","batch":"{batch}""#)))
            .unwrap_or_else(|| panic!("no {record} of {batch}:\n{journal}"))
    };
    for day in ["2024-03-01", "2024-03-02"] {
        assert!(
            at("attempt_finished", &format!("{day}_load"))
                < at("attempt_started", &format!("{day}_report")),
            "{day}: report started before load finished:\n{journal}"
        );
    }

    // A bad plan: one line naming the entry and the field, exit 2.
    std::fs::write(&plan, "- {id: a, after: [b]}\n- {id: b, after: [a]}\n").unwrap();
    let out = output(fake_run(
        dir.path(),
        &t,
        &["--plan", plan.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("entry 1 (id a): field after makes a cycle: a → b → a"),
        "{err}"
    );
}

#[test]
fn dbt_herd_toml_gives_defaults_that_flags_override() {
    let dir = fake_project();
    std::fs::write(
        dir.path().join("dbt-herd.toml"),
        "workers = 2\nthreads = 3\nbudget = 6\nenv = [\"FROM_FILE=yes\"]\n",
    )
    .unwrap();
    let fake = fake_dbt();
    let base = [
        "run",
        "--shared-warehouse",
        "no",
        "--dbt",
        fake.to_str().unwrap(),
        "--project-dir",
        dir.path().to_str().unwrap(),
        "-s",
        "ok",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        herd(&a)
    };
    let out = with(&["--dry-run", "--json", "--workers", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["workers"], 1, "the flag wins");
    assert_eq!(doc["threads"], 3, "from the file");
    assert_eq!(doc["budget"], 6);
    assert_eq!(doc["batches"][0]["env"]["FROM_FILE"], "yes");

    let out = with(&["--print-config", "--workers", "1"]);
    let printed = text(&out.stdout);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("workers ") && l.ends_with("# command line")),
        "{printed}"
    );
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("threads ") && l.ends_with("# config file")),
        "{printed}"
    );

    // --config names another file; an unknown key there is one line and exit 2.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "wrokers = 3\n").unwrap();
    let out = with(&["--dry-run", "--config", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown key 'wrokers'"), "{err}");
}

#[test]
fn a_report_of_a_run_shows_its_lanes_attempts_and_failures_in_one_file() {
    let dir = fake_project();
    let t = tag("report");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(
        dir.path(),
        &t,
        &[
            "-s",
            "ok",
            "-s",
            "fail",
            "-s",
            "flaky",
            "--retries",
            "1",
            "--workers",
            "2",
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    let state = dir.path().join("state");
    let dest = dir.path().join("r.html");
    let out = herd(&[
        "report",
        state.to_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), dest.to_str().unwrap());
    let html = std::fs::read_to_string(&dest).unwrap();
    // Two lanes; ok 1 attempt, fail 2, flaky 2 (its retry succeeds).
    assert_eq!(html.matches(r#"<g class="lane""#).count(), 2);
    assert_eq!(html.matches(r#"<rect class="bar"#).count(), 5, "{html}");
    assert_eq!(html.matches(r#"<rect class="bar failed""#).count(), 3);
    assert!(html.contains("Failures (1)"));
    assert!(html.contains("model.fake.m2"), "the failing node");
    assert!(html.contains("finished, exit 1"));
    assert!(!html.contains("https://"), "self-contained");
    // The run logged its connections: reserved and active are both drawn.
    assert!(state.join("connections.jsonl").is_file());
    assert!(html.contains(r#"<polyline class="active""#), "{html}");

    // Without -o it goes in the state dir; a dir that is not one is exit 2.
    let out = herd(&["report", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(state.join("report.html").is_file());
    let out = herd(&["report", dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim().lines().count(), 1);
}

/// A run that cannot be prepared (here: the fake dbt lists nothing, and the
/// batches share a warehouse) still tells a script its preparation and its
/// end: `preparing`, then `run_finished` with exit 2; the reason is the last
/// line on stderr.
#[test]
fn json_events_tell_the_preparation_and_end_with_run_finished_when_it_fails() {
    let dir = fake_project();
    let t = tag("json-refused");
    let _reaper = Reaper(t.clone());
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--json", "--shared-warehouse", "yes"])
        .args(["--mode", "cold", "--project-dir"])
        .arg(dir.path())
        .arg("--dbt")
        .arg(fake_dbt())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--env", &format!("HERD_TEST_TAG={t}"), "-s", "ok"])
        .stdin(std::process::Stdio::null());
    let out = output(c);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = events.first().expect("some events");
    assert_eq!(first["event"], "preparing", "{events:?}");
    assert_eq!(first["phase"], "resolve", "{events:?}");
    assert!(first["seconds"].is_null(), "{first}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished", "{events:?}");
    assert_eq!(last["exit_code"], 2, "{last}");
    assert_eq!(last["not_run"], 1, "{last}");
    assert!(
        !events.iter().any(|e| e["event"] == "run_started"),
        "{events:?}"
    );
    let why = stderr.trim().lines().last().unwrap_or_default();
    assert!(why.contains("cannot resolve the plan"), "{stderr}");
}
