//! The TUI end to end: the real binary in a real terminal (tmux) against real
//! dbt-core 1.11 + dbt-duckdb on the demo project, driven by its documented keys.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::demo::*;
use common::tmux::{Tmux, shell_line};
use common::*;
use dbt_herd::demo::LATE_DAY;

const LONG: Duration = Duration::from_secs(120);

/// The TUI on the demo project, inside tmux, with extra `run` options.
fn tui(
    name: &str,
    dirs: &dbt_herd::demo::DemoDirs,
    dbt: &std::path::Path,
    tag: &str,
    extra: &[&str],
    tmux_conf: &str,
) -> Tmux {
    let state = dirs.root.join("state");
    let mut words: Vec<std::ffi::OsString> = vec![bin().into(), "run".into()];
    words.extend(demo_args(dirs, dbt, &state, tag));
    words.extend(extra.iter().map(Into::into));
    Tmux::start(name, &shell_line(words), 120, 36, tmux_conf)
}

fn header(screen: &str) -> &str {
    screen.lines().next().unwrap_or("")
}

#[test]
fn a_failed_window_succeeds_after_its_cause_is_fixed_and_r_is_pressed() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-retry");
    let _reaper = Reaper(t.clone());
    let window = format!("{LATE_DAY}..2024-01-14");
    let tmux = tui(
        "retry",
        &dirs,
        &dbt,
        &t,
        &["--backfill", &window, "-w", "1"],
        "",
    );

    let failed = tmux.wait("the late window to fail", LONG, |s| {
        header(s).contains("1 FAILED") && s.contains("IDLE")
    });
    assert!(header(&failed).contains("0 ok"), "{failed}");
    // The pane says why: the failing model and its message.
    assert!(failed.contains("stg_shipments"), "{failed}");

    assert!(
        dirs.deliver_late(LATE_DAY).unwrap(),
        "the late file was there"
    );
    tmux.keys(&["R"]);
    let done = tmux.wait("the retry to succeed", LONG, |s| {
        header(s).contains("1 ok") && s.contains("DONE")
    });
    assert!(!header(&done).contains("FAILED"), "{done}");
    // The retry was `dbt retry`: only the failed and skipped nodes ran again.
    tmux.keys(&["Enter"]);
    tmux.wait("the zoomed log to mark the second attempt", LONG, |s| {
        s.contains("attempt 2 (dbt retry)")
    });

    // Back to the grid (Escape alone: followed at once by a key it reads as Alt).
    tmux.keys(&["Escape"]);
    tmux.wait("the zoom to close", LONG, |s| !s.contains("Esc back ·"));
    // Nothing runs: q quits without asking, and the exit status is 0.
    tmux.keys(&["q"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(
        end.contains("summary: all batches succeeded"),
        "the summary is printed on the normal screen:\n{end}"
    );
}

/// Whether every tagged dbt process is in state `T` (stopped) or none is.
fn stopped_states(tag: &str) -> Vec<String> {
    tagged_processes(tag).into_iter().map(|p| p.state).collect()
}

#[test]
fn p_suspends_a_worker_and_q_then_y_leaves_no_dbt_process() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-pause");
    let _reaper = Reaper(t.clone());
    let tmux = tui(
        "pause",
        &dirs,
        &dbt,
        &t,
        &["--backfill", "2024-01-02..2024-01-06", "-w", "1"],
        "",
    );
    tmux.wait("a batch to run", LONG, |s| s.contains("RUNNING"));
    assert!(wait_for(Duration::from_secs(30), || !tagged_processes(&t).is_empty()));

    // Worker 1 is focused: p suspends its dbt process group.
    tmux.keys(&["p"]);
    let paused = tmux.wait("the pane to say PAUSED", LONG, |s| s.contains("PAUSED"));
    assert!(header(&paused).contains("1 running"), "{paused}");
    assert!(
        wait_for(Duration::from_secs(10), || {
            let states = stopped_states(&t);
            !states.is_empty() && states.iter().all(|s| s == "T")
        }),
        "dbt should be stopped (T): {:?}",
        tagged_processes(&t)
    );

    // p again resumes it.
    tmux.keys(&["p"]);
    tmux.wait("the pane to run again", LONG, |s| {
        !s.contains("PAUSED") && s.contains("RUNNING")
    });
    assert!(
        wait_for(Duration::from_secs(10), || {
            stopped_states(&t).iter().all(|s| s != "T")
        }),
        "dbt should run again: {:?}",
        tagged_processes(&t)
    );

    // Pause once more, then quit mid-run: the stop ladder must reach a stopped group.
    tmux.keys(&["p"]);
    tmux.wait("PAUSED again", LONG, |s| s.contains("PAUSED"));
    tmux.keys(&["q"]);
    tmux.wait("the quit question", LONG, |s| {
        s.contains("Stop the run (y), detach (d), or go back (n)?")
    });
    tmux.keys(&["y"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(
        end.contains("EXIT=1"),
        "quitting before the end is not success:\n{end}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || tagged_processes(&t).is_empty()),
        "dbt processes left behind: {:?}",
        tagged_processes(&t)
    );
}

const OSC_TITLE: &str = "\x1b]0;pwned\x07";
const OSC_CLIPBOARD: &str = "\x1b]52;c;cHduZWQ=\x07";

#[test]
fn osc_title_and_clipboard_sequences_in_dbt_output_are_shown_inert() {
    let conf = "set -g set-clipboard on\nset -g allow-rename on";
    // Control: in this tmux, the raw sequences do set the title and a buffer, so
    // the checks below can fail.
    let control = Tmux::start(
        "osc-control",
        &format!(
            "printf '{}{}'",
            OSC_TITLE.replace('\x1b', r"\033").replace('\x07', r"\007"),
            OSC_CLIPBOARD
                .replace('\x1b', r"\033")
                .replace('\x07', r"\007")
        ),
        80,
        10,
        conf,
    );
    control.wait("the control to print", Duration::from_secs(10), |s| {
        s.contains("EXIT=")
    });
    assert_eq!(
        control.pane_title("main"),
        "pwned",
        "control: OSC 0 sets the title"
    );
    assert!(
        control.buffers().contains("pwned"),
        "control: OSC 52 fills a buffer: {:?}",
        control.buffers()
    );
    drop(control);

    let (_tmp, dirs, dbt) = demo();
    // A model that logs the sequences through dbt's own log() (a JinjaLogInfo event).
    std::fs::write(
        dirs.project.join("models").join("loud.sql"),
        "{{ log(var('loud', 'quiet') ~ ' loud-marker', info=True) }}\nselect 1 as x\n",
    )
    .unwrap();
    let vars = format!(
        "{{loud: \"{}\"}}",
        format!("{OSC_TITLE}{OSC_CLIPBOARD}")
            .replace('\x1b', r"\e")
            .replace('\x07', r"\a")
    );
    let t = tag("tui-osc");
    let _reaper = Reaper(t.clone());
    let tmux = tui(
        "osc",
        &dirs,
        &dbt,
        &t,
        &["--select", "loud", "--vars", &vars, "-w", "1"],
        conf,
    );
    tmux.wait("the log line to show", LONG, |s| s.contains("loud-marker"));
    tmux.wait("the batch to finish", LONG, |s| s.contains("DONE"));
    assert_ne!(
        tmux.pane_title("main"),
        "pwned",
        "OSC 0 reached the terminal"
    );
    assert!(
        !tmux.buffers().contains("pwned"),
        "OSC 52 reached the clipboard: {}",
        tmux.buffers()
    );
    // dbt really emitted the sequences: they are in the batch's raw output.
    let raw =
        std::fs::read_to_string(dirs.root.join("state/batches/loud/attempt-1.stdout.log")).unwrap();
    assert!(
        raw.contains(r"\u001b]52;c;cHduZWQ=") && raw.contains(r"\u001b]0;pwned"),
        "the model's log() line should carry the raw sequences"
    );
    tmux.keys(&["q"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
}

/// The run lives in a process of its own: an SSH drop (the terminal and its
/// tmux server gone) leaves it running; a second terminal attaches to it, `d`
/// leaves it again, and `dbt-herd stop` ends it.
#[test]
fn losing_the_terminal_leaves_the_run_going_and_attach_comes_back() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-hangup");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let tmux = tui(
        "hangup",
        &dirs,
        &dbt,
        &t,
        // Cold and slow enough that batches still run when the terminal goes.
        &[
            "--mode",
            "cold",
            "--backfill",
            "2024-01-02..2024-01-10",
            "-w",
            "2",
        ],
        "",
    );
    tmux.wait("batches to run", LONG, |s| header(s).contains("2 running"));
    drop(tmux);
    // The run goes on: its socket answers and its batches keep finishing.
    let listed = |state: &std::path::Path| {
        let out = output({
            let mut c = Command::new(bin());
            c.arg("ls").arg(state.parent().unwrap()).arg("--json");
            c
        });
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        listed(&state)["runs"][0]["live"],
        true,
        "{}",
        listed(&state)
    );
    assert!(
        wait_for(LONG, || summary(&state)["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["status"] == "succeeded")),
        "no batch finished after the terminal went: {}",
        summary(&state)
    );

    let again = Tmux::start(
        "hangup-attach",
        &shell_line([bin().as_os_str(), "attach".as_ref(), state.as_os_str()]),
        120,
        36,
        "",
    );
    again.wait("the attached TUI", LONG, |s| header(s).contains("done"));
    again.keys(&["d"]);
    let left = again.wait("the TUI to detach", LONG, |s| s.contains("EXIT="));
    assert!(left.contains("detached: the run goes on"), "{left}");
    assert!(left.contains("EXIT=0"), "{left}");
    assert!(!tagged_processes(&t).is_empty() || summary(&state)["finished_at"].is_string());

    let stop = output({
        let mut c = Command::new(bin());
        c.arg("stop").arg(&state);
        c
    });
    let code = stop.status.code();
    assert!(matches!(code, Some(0 | 1)), "stop: {stop:?}");
    assert_eq!(
        summary(&state)["exit_code"],
        code.unwrap(),
        "{}",
        summary(&state)
    );
    assert!(
        wait_for(Duration::from_secs(30), || tagged_processes(&t).is_empty()),
        "dbt processes outlived the stop: {:?}",
        tagged_processes(&t)
    );
    assert_eq!(listed(&state)["runs"][0]["live"], false);
}

#[test]
fn with_on_hangup_stop_losing_the_terminal_stops_every_dbt_process() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-hangup-stop");
    let _reaper = Reaper(t.clone());
    let tmux = tui(
        "hangup-stop",
        &dirs,
        &dbt,
        &t,
        // Cold, so that the batches are still running when the terminal goes
        // (a warm batch can be over in a second).
        &[
            "--mode",
            "cold",
            "--on-hangup",
            "stop",
            "--backfill",
            "2024-01-02..2024-01-04",
            "-w",
            "2",
        ],
        "",
    );
    tmux.wait("batches to run", LONG, |s| header(s).contains("2 running"));
    assert!(wait_for(Duration::from_secs(30), || !tagged_processes(&t).is_empty()));
    // As when an SSH session drops: the terminal and its server go away.
    drop(tmux);
    assert!(
        wait_for(Duration::from_secs(30), || tagged_processes(&t).is_empty()),
        "dbt processes outlived the terminal: {:?}",
        tagged_processes(&t)
    );
    // The run was ended cleanly: the summary is final and says the running
    // batches were stopped, so `--resume` will run them again.
    let state = dirs.root.join("state");
    assert!(
        wait_for(Duration::from_secs(30), || summary(&state)["finished_at"]
            .is_string()),
        "the run was not ended cleanly: {}",
        summary(&state)
    );
    let s = summary(&state);
    let statuses: Vec<&str> = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "cancelled"], "{s}");
    assert!(
        wait_for(Duration::from_secs(10), || s["exit_code"] == 129
            || summary(&state)["exit_code"] == 129),
        "a hang-up is exit 129: {}",
        summary(&state)
    );
}

/// `s` splits the failed late window into one batch per model in dbt's order:
/// the shipments staging model fails again (its file has not landed), the mart
/// that reads it stays BLOCKED on it, and `r` on it, once the file is there,
/// lets the mart run.
#[test]
fn a_split_keeps_dbt_order_and_a_part_waits_on_its_failed_parent() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-split");
    let _reaper = Reaper(t.clone());
    let window = format!("{LATE_DAY}..2024-01-14");
    let tmux = tui(
        "split",
        &dirs,
        &dbt,
        &t,
        // One worker: every part writes the same DuckDB file.
        &["--backfill", &window, "-w", "1"],
        "",
    );
    tmux.wait("the late window to fail", LONG, |s| {
        header(s).contains("1 FAILED") && s.contains("IDLE")
    });
    tmux.keys(&["Tab", "s"]);
    let blocked = tmux.wait("the parts to run, and the mart to wait", LONG, |s| {
        s.contains("BLOCKED") && header(s).contains("0 running")
    });
    assert!(
        blocked.contains("on 2024-01-13 stg_shipments"),
        "the mart says which part it waits on:\n{blocked}"
    );
    let state = dirs.root.join("state");
    let s = summary(&state);
    let mart = batch(&s, "2024-01-13-fct_shipments_daily");
    assert_eq!(mart["status"], "pending");
    assert_eq!(mart["blocked"], true, "{mart}");
    assert_eq!(mart["attempts"], 0, "it never ran before its parent");
    assert!(
        mart["after"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("2024-01-13-stg_shipments")),
        "{mart}"
    );
    assert!(dirs.deliver_late(LATE_DAY).unwrap());
    // stg_shipments is the last part (dbt ls lists them by name).
    tmux.keys(&["G", "r"]);
    tmux.wait(
        "the parent's retry and then the mart to succeed",
        LONG,
        |s| header(s).contains("0 running · 0 pending") && !header(s).contains("FAILED"),
    );
    let s = summary(&state);
    assert_eq!(
        batch(&s, "2024-01-13-fct_shipments_daily")["status"],
        "succeeded"
    );
    tmux.keys(&["q"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
}

/// A 300-window backfill (the fake dbt) with three windows failing: `/fail`
/// finds them in the table, `]` jumps from one to the next, `V` marks the rows
/// the filter shows and `r` retries all three at once.
#[test]
fn three_hundred_windows_filter_jump_and_retry_the_marked_failures() {
    let dir = fake_project();
    let t = tag("tui-300");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let mut words: Vec<std::ffi::OsString> = vec![
        "env".into(),
        "FAKE_FLAKY_WINDOWS=2024-03-01,2024-06-15,2024-09-30".into(),
        bin().into(),
    ];
    words.extend(
        [
            "run",
            "--mode",
            "cold",
            "--shared-warehouse",
            "no",
            "--retries",
            "0",
            "-w",
            "4",
            "--backfill",
            "2024-01-01..2024-10-27",
            "--env",
        ]
        .map(Into::into),
    );
    words.push(format!("HERD_TEST_TAG={t}").into());
    words.extend(["--project-dir".into(), dir.path().into()]);
    words.extend(["--dbt".into(), fake_dbt().into()]);
    words.extend(["--state-dir".into(), state.clone().into()]);
    let tmux = Tmux::start("t300", &shell_line(words), 100, 30, "");
    let idle = tmux.wait("300 windows to run, three of them failing", LONG, |s| {
        header(s).contains("300/300 done") && s.contains("IDLE")
    });
    assert!(header(&idle).contains("297 ok · 3 FAILED"), "{idle}");

    // The failures, found by filtering the table.
    tmux.keys(&["Tab", "/", "f", "a", "i", "l", "Enter"]);
    let filtered = tmux.wait("the filter to leave three rows", LONG, |s| {
        s.contains("batches 3/300")
    });
    for day in ["2024-03-01", "2024-06-15", "2024-09-30"] {
        assert!(filtered.contains(day), "{day} is shown:\n{filtered}");
    }
    assert!(!filtered.contains("2024-03-02"), "{filtered}");

    // Without the filter, ] walks from one failure to the next.
    tmux.keys(&["Escape"]);
    tmux.wait("the filter to clear", LONG, |s| s.contains("batches (300)"));
    tmux.keys(&["g", "]"]);
    let selected = |s: &str| {
        s.lines()
            .find(|l| l.contains('▶'))
            .unwrap_or_default()
            .to_string()
    };
    let first = tmux.wait("the first failure to be selected", LONG, |s| {
        selected(s).contains("2024-03-01")
    });
    assert!(selected(&first).contains("FAILED"), "{first}");
    tmux.keys(&["]"]);
    tmux.wait("the next failure", LONG, |s| {
        selected(s).contains("2024-06-15")
    });

    // Mark what the filter shows, retry them together.
    tmux.keys(&["/", "f", "a", "i", "l", "Enter", "V"]);
    tmux.wait("three rows to be marked", LONG, |s| s.contains("3 marked"));
    tmux.keys(&["r"]);
    let retried = tmux.wait("the three retries to succeed", LONG, |s| {
        header(s).contains("300 ok") && s.contains("DONE")
    });
    assert!(!header(&retried).contains("FAILED"), "{retried}");
    let s = summary(&state);
    for day in ["2024-03-01", "2024-06-15", "2024-09-30"] {
        let b = batch(&s, day);
        assert_eq!(b["status"], "succeeded", "{b}");
        assert_eq!(b["attempts"], 2, "{b}");
    }
    assert_eq!(batch(&s, "2024-03-02")["attempts"], 1);
    tmux.keys(&["q"]);
    let end = tmux.wait("dbt-herd to exit", LONG, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
}

/// The TUI opens at once, on the preparation (the run lives in its own
/// process from its first second); a terminal lost while it prepares does not
/// stop the run, which goes on to its end.
#[test]
fn the_tui_shows_the_preparation_and_losing_the_terminal_then_does_not_stop_the_run() {
    let (_tmp, dirs, dbt) = demo();
    let t = tag("tui-prep");
    let _reaper = Reaper(t.clone());
    let state = dirs.root.join("state");
    let tmux = tui(
        "prep",
        &dirs,
        &dbt,
        &t,
        &["--backfill", "2024-01-02..2024-01-04", "-w", "2"],
        "",
    );
    let screen = tmux.wait("the preparation on screen", LONG, |s| {
        s.contains("preparing the run")
    });
    assert!(header(&screen).contains("preparing"), "{screen}");
    assert!(screen.contains("now "), "the phase under way: {screen}");
    assert!(
        !state.join("summary.json").exists(),
        "still preparing when the screen said so"
    );
    drop(tmux);
    let ended = || {
        std::fs::read(state.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|s| s["exit_code"].is_i64())
    };
    assert!(
        wait_for(Duration::from_secs(240), ended),
        "the run did not end after its terminal went"
    );
    let s = summary(&state);
    assert_eq!(s["exit_code"], 0, "{s}");
    let ok = s["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "succeeded")
        .count();
    assert_eq!(ok, 2, "{s}");
    assert!(
        wait_for(Duration::from_secs(30), || tagged_processes(&t).is_empty()),
        "left behind: {:?}",
        tagged_processes(&t)
    );
}
