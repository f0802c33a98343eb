//! The real binary against a fake `dbt` that crashes, hangs, lies and floods on
//! demand: the faults real dbt won't produce when asked.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn mixed_outcomes_give_exit_1_and_an_honest_summary() {
    let dir = fake_project();
    let t = tag("mixed");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(
        dir.path(),
        &t,
        &[
            "-s", "ok", "-s", "fail", "-s", "empty", "-s", "norr", "-s", "crash", "-s", "stale",
        ],
    ));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let s = summary(&dir.path().join("state"));
    assert!(s["finished_at"].is_string());
    assert_eq!(s["workers"], 4);

    let ok = batch(&s, "ok");
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["nodes"]["success"], 3);
    assert_eq!(ok["attempts"], 1);

    let fail = batch(&s, "fail");
    assert_eq!(fail["status"], "failed");
    assert_eq!(
        (
            fail["nodes"]["success"].as_u64(),
            fail["nodes"]["error"].as_u64(),
            fail["nodes"]["skipped"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(fail["error"].as_str().unwrap().contains("boom in m2"));

    // A selection that matches nothing is a mistake, not a success.
    let empty = batch(&s, "empty");
    assert_eq!(empty["status"], "failed");
    assert_eq!(empty["nothing_selected"], true);
    assert_eq!(
        empty["error"],
        "selection 'empty' matched no node (pass --allow-empty to run it anyway)"
    );

    let norr = batch(&s, "norr");
    assert_eq!(norr["status"], "failed");
    assert!(
        norr["error"]
            .as_str()
            .unwrap()
            .contains("fake compile error"),
        "{norr}"
    );

    let crash = batch(&s, "crash");
    assert_eq!(crash["status"], "failed");
    assert!(
        crash["error"].as_str().unwrap().contains("signal 11"),
        "{crash}"
    );

    // Exit 0 but a run_results.json from another invocation: never a success.
    // The error shown is the attempt's own (its node failed, as its events
    // said); the stale file is said too, as what it is.
    let stale = batch(&s, "stale");
    assert_eq!(stale["status"], "failed", "{stale}");
    assert_eq!(stale["error"], "error m1", "{stale}");
    assert!(
        stdout.contains("batch stale: run_results.json") && stdout.contains("another invocation"),
        "{stdout}"
    );
    assert!(tagged_processes(&t).is_empty());
}

#[test]
fn all_succeeded_is_exit_0_and_children_get_env_and_paths() {
    let dir = fake_project();
    let t = tag("env");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(
        dir.path(),
        &t,
        &[
            "--backfill",
            "2024-03-04..2024-03-06",
            "-s",
            "ok",
            "--workers",
            "2",
            "--threads",
            "3",
            "--vars",
            "{region: eu}",
            "--env",
            "HERD_DB=/wh/{batch}-{worker}.duckdb",
            "--",
            "--full-refresh",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let state = dir.path().join("state");
    let id = "2024-03-04_ok";
    let inv =
        std::fs::read_to_string(state.join("batches").join(id).join("invocations.jsonl")).unwrap();
    let inv: serde_json::Value = serde_json::from_str(inv.lines().next().unwrap()).unwrap();
    let argv: Vec<&str> = inv["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&argv[..3], ["build", "--select", "ok"]);
    let vars = &argv[argv.iter().position(|a| *a == "--vars").unwrap() + 1];
    let vars: serde_json::Value = serde_json::from_str(vars).unwrap();
    assert_eq!(
        vars,
        serde_json::json!({"region": "eu", "start_date": "2024-03-04", "end_date": "2024-03-05"})
    );
    let target = argv[argv.iter().position(|a| *a == "--target-path").unwrap() + 1];
    assert_eq!(
        std::path::Path::new(target),
        state.join("batches").join(id).join("target")
    );
    assert!(argv.contains(&"--log-format") && argv.contains(&"json"));
    assert_eq!(
        threads_of(
            &argv
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
        ),
        Some(3)
    );
    assert_eq!(argv.last(), Some(&"--full-refresh"));
    assert_eq!(inv["env"]["DBT_ENV_CUSTOM_ENV_HERD_BATCH"], id);
    let db = inv["env"]["HERD_DB"].as_str().unwrap();
    assert!(
        db == format!("/wh/{id}-1.duckdb") || db == format!("/wh/{id}-2.duckdb"),
        "{db}"
    );
    // Each attempt's raw output is kept beside its target.
    assert!(
        state
            .join("batches")
            .join(id)
            .join("attempt-1.stdout.log")
            .metadata()
            .unwrap()
            .len()
            > 0
    );
    assert!(state.join("journal.jsonl").exists());
    let s = summary(&state);
    assert_eq!(
        (s["budget"].as_u64(), s["threads"].as_u64()),
        (Some(6), Some(3))
    );
    let labels: Vec<&str> = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["2024-03-04 ok", "2024-03-05 ok"]);
}

#[test]
fn automatic_retry_runs_dbt_retry_and_merges_results() {
    let dir = fake_project();
    let t = tag("flaky");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(dir.path(), &t, &["-s", "flaky", "--retries", "1"]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("attempt 2 (dbt retry)"), "{stdout}");
    let s = summary(&dir.path().join("state"));
    let b = batch(&s, "flaky");
    assert_eq!(b["attempts"], 2);
    // Node 1 from the first attempt, nodes 2 and 3 from the retry.
    assert_eq!(b["nodes"]["success"], 3);
    assert_eq!(b["nodes"]["error"], 0);
}

#[test]
fn a_leftover_grandchild_is_killed_before_the_batch_counts_as_done() {
    let dir = fake_project();
    let t = tag("orphan");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(dir.path(), &t, &["-s", "orphan"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        tagged_processes(&t).is_empty(),
        "the SIGTERM-ignoring grandchild must be gone"
    );
}

#[test]
fn garbage_output_is_bounded_and_inert() {
    let dir = fake_project();
    let t = tag("garbage");
    let _reaper = Reaper(t.clone());
    // Its run_results.json lists no node: allowed, so the garbage is the test.
    let out = output(fake_run(
        dir.path(),
        &t,
        &["-s", "garbage", "--allow-empty"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !out.stdout.contains(&0x1b),
        "no escape byte reaches the terminal"
    );
    // The raw log keeps every byte, including the 2 MB line.
    let raw = dir
        .path()
        .join("state/batches/garbage/attempt-1.stdout.log");
    assert!(raw.metadata().unwrap().len() > 2 * 1024 * 1024);
}

#[test]
fn budget_caps_concurrent_threads() {
    let dir = fake_project();
    let t = tag("budget");
    let _reaper = Reaper(t.clone());
    // 4 slots, but 2 threads each under a budget of 5: two at a time at most.
    let mut cmd = fake_run(
        dir.path(),
        &t,
        &[
            "-s",
            "sleepy",
            "-s",
            "sleepy",
            "-s",
            "sleepy",
            "-s",
            "sleepy",
            "-s",
            "sleepy",
            "--workers",
            "4",
            "--threads",
            "2",
            "--budget",
            "5",
        ],
    );
    cmd.env("FAKE_SLEEP", "1.5")
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut peak = 0;
    let mut samples = 0;
    loop {
        peak = peak.max(threads_in_use(&t));
        samples += 1;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(samples > 20);
    assert_eq!(peak, 4, "two batches of 2 threads ran at once, never three");
}

#[test]
fn ctrl_c_stops_every_group_with_the_ladder_and_exits_130() {
    let dir = fake_project();
    let t = tag("sigint");
    let _reaper = Reaper(t.clone());
    let mut cmd = fake_run(dir.path(), &t, &["-s", "hang", "-s", "sleepy", "-s", "ok"]);
    cmd.stdout(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    assert!(
        // Two batches (`--select`): the interrupt must find them running, not the
        // parse that comes before them.
        wait_for(Duration::from_secs(10), || {
            tagged_processes(&t)
                .iter()
                .filter(|p| p.argv.iter().any(|a| a == "--select"))
                .count()
                >= 2
        }),
        "children started"
    );
    unsafe { libc::kill(pid, libc::SIGINT) };
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    // `hang` ignores SIGINT and SIGTERM: 1 s + 1 s of grace, then SIGKILL.
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        tagged_processes(&t).is_empty(),
        "no dbt process survives dbt-herd"
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    let s = summary(&dir.path().join("state"));
    assert_eq!(batch(&s, "hang")["status"], "cancelled");
    assert_eq!(batch(&s, "sleepy")["status"], "cancelled");
    assert!(s["finished_at"].is_string());
}

#[test]
fn resume_reruns_only_what_did_not_succeed() {
    let dir = fake_project();
    let t = tag("resume");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(dir.path(), &t, &["-s", "ok", "-s", "flaky"]));
    assert_eq!(out.status.code(), Some(1));
    let state = dir.path().join("state");
    let mut resume = std::process::Command::new(bin());
    resume.args(["run", "--headless", "--resume"]).arg(&state);
    let out = output(resume);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("1 already succeeded"), "{stdout}");
    let s = summary(&state);
    assert_eq!(batch(&s, "ok")["status"], "succeeded");
    assert_eq!(batch(&s, "flaky")["status"], "succeeded");
    // `ok` ran once in all; `flaky` was retried with dbt retry in its old target dir.
    let ok_runs = std::fs::read_to_string(state.join("batches/ok/invocations.jsonl")).unwrap();
    assert_eq!(ok_runs.lines().count(), 1);
    let flaky_runs =
        std::fs::read_to_string(state.join("batches/flaky/invocations.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(flaky_runs.lines().last().unwrap()).unwrap();
    assert_eq!(last["argv"][0], "retry");
}

#[test]
fn resume_with_changed_vars_reruns_the_changed_batches() {
    let dir = fake_project();
    let t = tag("changed");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(dir.path(), &t, &["-s", "ok", "--vars", "{a: 1}"]));
    assert_eq!(out.status.code(), Some(0));
    let state = dir.path().join("state");
    let mut resume = std::process::Command::new(bin());
    resume
        .args(["run", "--headless", "--vars", "{a: 2}", "--resume"])
        .arg(&state);
    let out = output(resume);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("batch ok changed"),
        "{}",
        text(&out.stderr)
    );
    let runs = std::fs::read_to_string(state.join("batches/ok/invocations.jsonl")).unwrap();
    assert_eq!(runs.lines().count(), 2);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = fake_project();
    let fake = fake_dbt();
    let p = dir.path().to_str().unwrap();
    let f = fake.to_str().unwrap();
    let notexec = dir.path().join("dbt_project.yml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--project-dir", "/no/such/project", "--dbt", f],
            "/no/such/project",
        ),
        (
            vec!["--project-dir", p, "--dbt", "/no/such/dbt"],
            "/no/such/dbt",
        ),
        (
            vec!["--project-dir", p, "--dbt", notexec.to_str().unwrap()],
            "not an executable",
        ),
        (
            vec![
                "--project-dir",
                p,
                "--dbt",
                f,
                "--backfill",
                "2024-03-01..2024-02-01",
            ],
            "2024-03-01..2024-02-01",
        ),
        (
            vec![
                "--project-dir",
                p,
                "--dbt",
                f,
                "--backfill",
                "2024-02-30..2024-03-01",
            ],
            "2024-02-30",
        ),
        (
            vec![
                "--project-dir",
                p,
                "--dbt",
                f,
                "--backfill",
                "2024-01-01..2024-02-01",
                "--step",
                "0d",
            ],
            "'0d'",
        ),
        (
            vec![
                "--project-dir",
                p,
                "--dbt",
                f,
                "--backfill",
                "2024-01-01..2024-02-01",
                "--step",
                "3x",
            ],
            "'3x'",
        ),
        (
            vec!["--project-dir", p, "--dbt", f, "--workers", "0"],
            "--workers '0'",
        ),
        (
            vec![
                "--project-dir",
                p,
                "--dbt",
                f,
                "--threads",
                "8",
                "--budget",
                "4",
            ],
            "--threads 8",
        ),
        (
            vec!["--project-dir", p, "--dbt", f, "--vars", "a: b: c"],
            "a: b: c",
        ),
        (vec!["--resume", p], "not a dbt-herd state dir"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let mut c = std::process::Command::new(bin());
        c.arg("run")
            .arg("--headless")
            .args(&args)
            .current_dir(dir.path());
        let out = output(c);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line for {args:?}: {err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    // Nothing was started for any of them.
    assert!(!dir.path().join(".dbt-herd").exists());
}

#[test]
fn resume_after_the_supervisor_was_killed_sweeps_its_orphans_first() {
    let dir = fake_project();
    let t = tag("kill9");
    let _reaper = Reaper(t.clone());
    let mut cmd = fake_run(dir.path(), &t, &["-s", "sleepy", "-s", "ok"]);
    cmd.env("FAKE_SLEEP", "60")
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tagged_processes(&t)
        .iter()
        .any(|p| p.argv.iter().any(|a| a == "sleepy"))));
    // SIGKILL: no chance to stop anything. The dbt group lives on, orphaned.
    child.kill().unwrap();
    child.wait().unwrap();
    let orphans: Vec<i32> = tagged_processes(&t).iter().map(|p| p.pid).collect();
    assert!(!orphans.is_empty(), "the orphan survived its supervisor");
    let mut resume = std::process::Command::new(bin());
    resume
        .args(["run", "--headless", "--resume"])
        .arg(dir.path().join("state"))
        .env("FAKE_SLEEP", "0.1");
    let out = output(resume);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("batch sleepy left running by the previous run"),
        "{}",
        text(&out.stderr)
    );
    assert!(tagged_processes(&t).is_empty());
    let s = summary(&dir.path().join("state"));
    assert_eq!(batch(&s, "sleepy")["status"], "succeeded");
    assert_eq!(
        batch(&s, "sleepy")["attempts"],
        2,
        "attempt numbers go on after the crash"
    );
}

/// A crash mid-write leaves half a record at the journal's end. A resume cuts it
/// (and says so) before appending, so the journal stays readable for every later
/// resume.
#[test]
fn a_torn_journal_tail_is_cut_so_the_run_resumes_again_and_again() {
    let dir = fake_project();
    let t = tag("torn");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(dir.path(), &t, &["-s", "ok", "-s", "fail"]));
    assert_eq!(out.status.code(), Some(1));
    let state = dir.path().join("state");
    let journal = state.join("journal.jsonl");
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 40)
        .unwrap();
    for round in 1..=2 {
        let mut resume = std::process::Command::new(bin());
        resume.args(["run", "--headless", "--resume"]).arg(&state);
        let out = output(resume);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "round {round}: {err}");
        assert!(!err.contains("corrupt"), "round {round}: {err}");
        assert_eq!(
            err.contains("cut short"),
            round == 1,
            "said once, when it was cut: {err}"
        );
        let s = summary(&state);
        assert_eq!(batch(&s, "ok")["status"], "succeeded");
        assert_eq!(batch(&s, "fail")["status"], "failed");
    }
    assert!(std::fs::read(&journal).unwrap().ends_with(b"\n"));
}

/// A failure of dbt-herd itself is not a usage error: exit 3, with its cause.
#[test]
fn a_state_dir_that_cannot_be_created_exits_3_with_its_cause() {
    let dir = fake_project();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let mut c = std::process::Command::new(bin());
    c.args(["run", "--headless", "--dbt"])
        .arg(fake_dbt())
        .arg("--project-dir")
        .arg(dir.path())
        .arg("--state-dir")
        .arg(file.join("state"));
    let out = output(c);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot create the state dir"), "{err}");
    assert!(err.contains("Not a directory"), "the cause is shown: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A journal that cannot be written (a full disk): no dbt process starts without
/// its record, the run ends with exit 3, and the closing lines say why.
#[test]
fn a_journal_write_failure_starts_nothing_and_exits_3() {
    let dir = fake_project();
    let t = tag("journal-full");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::symlink("/dev/full", state.join("journal.jsonl")).unwrap();
    let out = output(fake_run(dir.path(), &t, &["-s", "ok", "-s", "fail"]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("dbt-herd failed: cannot write the journal"),
        "{stdout}"
    );
    assert!(
        !state.join("batches/ok/invocations.jsonl").exists(),
        "no dbt process was started"
    );
    let s = summary(&state);
    assert_eq!(batch(&s, "ok")["status"], "pending");
    assert!(stdout.contains("summary.json: "), "{stdout}");
}
