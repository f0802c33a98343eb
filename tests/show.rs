//! `dbt-herd show STATE_DIR BATCH` on runs of the fake dbt: each attempt, the
//! command it ran (which, pasted into a shell, runs the same dbt again), the
//! failure detail, a run whose supervisor was killed, and the bad values.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn show(state: &Path, batch: &str) -> std::process::Output {
    let mut c = Command::new(bin());
    c.arg("show").arg(state).arg(batch);
    output(c)
}

/// The argv and env the fake dbt saw on each of its runs for `batch`.
fn invocations(state: &Path, batch: &str) -> Vec<(serde_json::Value, serde_json::Value)> {
    let path = state.join("batches").join(batch).join("invocations.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["argv"].clone(), v["env"].clone())
        })
        .collect()
}

/// The command printed under each attempt line.
fn commands(stdout: &str) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("attempt "))
        .map(|w| {
            assert!(w[1].starts_with("    "), "{stdout}");
            w[1].trim().to_string()
        })
        .collect()
}

#[test]
fn show_lists_each_attempt_and_a_command_that_runs_the_same_dbt() {
    let dir = fake_project();
    let t = tag("show");
    let _reaper = Reaper(t.clone());
    let out = output(fake_run(
        dir.path(),
        &t,
        &[
            "-s",
            "fail",
            "--retries",
            "1",
            "--vars",
            "{note: \"it's $HOME\"}",
            "--env",
            "HERD_DB=/w h/{batch}.db",
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let state = dir.path().join("state");

    let out = show(&state, "fail");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.starts_with("batch fail · failed\n"), "{stdout}");
    let attempts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("attempt "))
        .collect();
    assert_eq!(attempts.len(), 2, "{stdout}");
    assert!(
        attempts[0].starts_with("attempt 1 · run · worker 1 · started 20"),
        "{stdout}"
    );
    assert!(attempts[0].ends_with("s · failed"), "{stdout}");
    assert!(
        attempts[1].starts_with("attempt 2 · retry · worker "),
        "{stdout}"
    );
    assert!(attempts[1].ends_with("s · failed"), "{stdout}");
    assert!(
        stdout.contains("error: model.fake.m2: boom in m2\n"),
        "{stdout}"
    );
    let compiled = format!(
        "ERROR model.fake.m2\n  compiled SQL: {}/batches/fail/target/compiled/fake/models/m2.sql\n  boom in m2\n",
        state.display()
    );
    assert!(stdout.contains(&compiled), "{stdout}");

    let cmds = commands(&stdout);
    assert_eq!(cmds.len(), 2, "{stdout}");

    // summary.json has the same attempts with their commands.
    let s = summary(&state);
    let history = batch(&s, "fail")["history"].as_array().unwrap().clone();
    let words: Vec<(&str, &str)> = history
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(words, [("run", "failed"), ("retry", "failed")]);
    assert_eq!(history[0]["command"].as_str(), Some(cmds[0].as_str()));
    assert!(history[0]["duration_s"].as_f64().unwrap() > 0.0);

    // A resume reads the commands back from the journal.
    let mut resume = Command::new(bin());
    resume
        .args(["run", "--headless", "--retries", "0", "--resume"])
        .arg(&state);
    assert_eq!(output(resume).status.code(), Some(1));
    let s = summary(&state);
    let history = batch(&s, "fail")["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["command"].as_str(), Some(cmds[0].as_str()));
    assert_eq!(history[2]["kind"], "retry");

    // Without summary.json (a run that died before writing one), the journal
    // and the last run_results.json still tell it.
    std::fs::remove_file(state.join("summary.json")).unwrap();
    let out = show(&state, "fail");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(commands(&stdout).len(), 3, "{stdout}");
    assert_eq!(commands(&stdout)[..2], cmds[..], "{stdout}");
    assert!(
        stdout.contains("error: model.fake.m2: boom in m2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ERROR model.fake.m2\n  boom in m2\n"),
        "{stdout}"
    );

    // Pasted into a shell, each command runs the fake dbt as the run did (last:
    // the runs by hand leave their own run_results.json behind).
    let ran = invocations(&state, "fail");
    assert_eq!(ran.len(), 3, "two attempts and the resume's");
    for (i, cmd) in cmds.iter().enumerate() {
        let by_hand = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        assert_eq!(
            by_hand.status.code(),
            Some(1),
            "the fake dbt fails m2 again: {cmd}"
        );
        let again = invocations(&state, "fail");
        assert_eq!(again.len(), 4 + i, "{cmd}");
        assert_eq!(again.last().unwrap(), &ran[i], "{cmd}");
    }
    assert_eq!(ran[1].0[0], "retry");
    assert!(
        ran[0]
            .0
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == r#"{"note":"it's $HOME"}"#),
        "{:?}",
        ran[0]
    );
    assert_eq!(ran[0].1["HERD_DB"], "/w h/fail.db");
}

/// The supervisor killed mid-attempt: the journal alone shows the attempt and
/// its command, its end not on record.
#[test]
fn show_reads_a_killed_runs_journal() {
    let dir = fake_project();
    let t = tag("show-kill9");
    let _reaper = Reaper(t.clone());
    let mut cmd = fake_run(dir.path(), &t, &["-s", "sleepy"]);
    cmd.env("FAKE_SLEEP", "60")
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tagged_processes(&t)
        .iter()
        .any(|p| p.argv.iter().any(|a| a == "sleepy"))));
    child.kill().unwrap();
    child.wait().unwrap();
    let state = dir.path().join("state");
    std::fs::remove_file(state.join("summary.json")).unwrap();
    let out = show(&state, "sleepy");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.starts_with("batch sleepy · running\n"), "{stdout}");
    assert!(
        stdout.contains("attempt 1 · run · worker 1 · started ")
            && stdout.contains(" · - · unfinished\n"),
        "{stdout}"
    );
    let cmds = commands(&stdout);
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].contains(" build --select sleepy "), "{stdout}");
}

#[test]
fn show_with_a_bad_state_dir_or_batch_is_one_line_and_exit_2() {
    let dir = fake_project();
    let t = tag("show-bad");
    let _reaper = Reaper(t.clone());
    assert_eq!(
        output(fake_run(dir.path(), &t, &["-s", "ok"]))
            .status
            .code(),
        Some(0)
    );
    let state = dir.path().join("state");
    let missing = dir.path().join("no-such-dir");
    for (state, batch, named) in [
        (state.as_path(), "no-such-batch", "no-such-batch"),
        (missing.as_path(), "ok", "no-such-dir"),
        (dir.path(), "ok", "not a dbt-herd state dir"),
    ] {
        let out = show(state, batch);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{batch}: {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("dbt-herd: show: "), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
    }
    // A missing argument is a usage error too.
    let mut c = Command::new(bin());
    c.arg("show").arg(&state);
    assert_eq!(output(c).status.code(), Some(2));
}
