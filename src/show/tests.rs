//! `show` on state dirs made by hand: a crashed run's journal alone, an old
//! journal without commands, a finished run's summary, and the bad values.

use std::collections::BTreeMap;

use super::*;
use crate::dbt::argv::AttemptKind;
use crate::engine::journal::Journal;
use crate::engine::messages::{AttemptOutcome, HistoryKind};
use crate::engine::protocol::{ExitInfo, JournalEntry};

fn started(batch: &str, attempt: u32, kind: AttemptKind) -> JournalEntry {
    JournalEntry::AttemptStarted {
        batch: batch.into(),
        attempt,
        kind,
        worker: 2,
    }
}

fn command(batch: &str, attempt: u32, argv: &[&str]) -> JournalEntry {
    JournalEntry::AttemptCommand {
        batch: batch.into(),
        attempt,
        argv: argv.iter().map(|a| (*a).to_string()).collect(),
        env: BTreeMap::from([("HERD_DB".to_string(), "/w h/\u{1b}]0;x\u{7}.db".to_string())]),
    }
}

fn finished(batch: &str, attempt: u32, status: BatchStatus) -> JournalEntry {
    JournalEntry::AttemptFinished {
        batch: batch.into(),
        attempt,
        exit: Some(ExitInfo {
            code: Some(1),
            signal: None,
        }),
        status,
        invocation_id: None,
        outcome: None,
    }
}

fn journal(dir: &Path, entries: Vec<JournalEntry>) {
    let mut j = Journal::open(&dir.join(JOURNAL_FILE)).unwrap();
    for e in entries {
        j.append(e, None).unwrap();
    }
}

fn usage_of(dir: &Path, batch: &str) -> String {
    read(dir, batch).unwrap_err().to_string()
}

/// A run that died with an attempt under way: the journal alone tells it.
#[test]
fn a_crashed_runs_journal_alone_shows_every_attempt_and_its_command() {
    let d = tempfile::tempdir().unwrap();
    journal(
        d.path(),
        vec![
            started("b", 1, AttemptKind::Full),
            command("b", 1, &["/venv/bin/dbt", "build", "--select", "tag:a b"]),
            finished("b", 1, BatchStatus::Pending),
            started("b", 2, AttemptKind::Retry),
            command("b", 2, &["/venv/bin/dbt", "retry"]),
        ],
    );
    let s = read(d.path(), "b").unwrap();
    assert_eq!(s.status, "running");
    let kinds: Vec<_> = s.history.iter().map(|a| (a.kind, a.outcome)).collect();
    assert_eq!(
        kinds,
        [
            (HistoryKind::Run, AttemptOutcome::Failed),
            (HistoryKind::Retry, AttemptOutcome::Unfinished)
        ]
    );
    let out = print::lines(&s).join("\n");
    assert!(out.starts_with("batch b · running\n"), "{out}");
    assert!(
        out.contains("attempt 1 · run · worker 2 · started "),
        "{out}"
    );
    assert!(out.contains(" · unfinished\n"), "{out}");
    assert!(
        out.contains("/venv/bin/dbt build --select 'tag:a b'"),
        "{out}"
    );
    // The escape in the env value is made inert before it is printed.
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("    HERD_DB='/w h/"), "{out}");
}

#[test]
fn an_old_journal_without_commands_still_shows_its_attempts() {
    let d = tempfile::tempdir().unwrap();
    journal(
        d.path(),
        vec![
            started("b", 1, AttemptKind::Full),
            finished("b", 1, BatchStatus::Failed),
            JournalEntry::BatchStatus {
                batch: "b".into(),
                status: BatchStatus::Failed,
            },
        ],
    );
    let s = read(d.path(), "b").unwrap();
    assert_eq!(s.status, "failed");
    assert_eq!(s.history.len(), 1);
    assert_eq!(s.history[0].command, None);
    let out = print::lines(&s).join("\n");
    assert!(out.contains("(no command on record"), "{out}");
}

/// A finished run's summary gives the failure detail; its id is the one asked for.
#[test]
fn the_summary_gives_the_error_and_failing_nodes() {
    let d = tempfile::tempdir().unwrap();
    journal(
        d.path(),
        vec![
            started("b", 1, AttemptKind::Full),
            finished("b", 1, BatchStatus::Failed),
        ],
    );
    let summary = serde_json::json!({
        "batches": [{"id": "b", "label": "2024-01-01 tag:a", "status": "failed", "attempts": 1,
                     "duration_s": 1.0, "nodes": {"success": 0, "error": 1, "skipped": 0, "pass": 0, "fail": 0, "warn": 0},
                     "error": "model.p.m: boom\nat line 3", "nothing_selected": false,
                     "failing": [{"unique_id": "model.p.m", "status": "error", "message": "boom\nat line 3",
                                  "compiled_path": "/s/batches/b/target/compiled/p/models/m.sql"}]},
                    {"id": "other", "label": "other", "status": "pending", "attempts": 0,
                     "duration_s": 0.0, "nodes": {"success": 0, "error": 0, "skipped": 0, "pass": 0, "fail": 0, "warn": 0},
                     "error": null, "nothing_selected": false}],
        "budget": 1, "workers": 1, "threads": 1, "started_at": "x", "finished_at": "y"
    });
    std::fs::write(d.path().join(SUMMARY_FILE), summary.to_string()).unwrap();
    let out = print::lines(&read(d.path(), "b").unwrap()).join("\n");
    assert!(out.contains("label: 2024-01-01 tag:a"), "{out}");
    assert!(out.contains("error: model.p.m: boom at line 3"), "{out}");
    assert!(
        out.contains(
            "ERROR model.p.m\n  compiled SQL: /s/batches/b/target/compiled/p/models/m.sql\n  boom at line 3"
        ),
        "{out}"
    );
    // Known to the summary only: never started.
    let other = read(d.path(), "other").unwrap();
    assert_eq!((other.status, other.history.len()), ("pending", 0));
    assert!(print::lines(&other).contains(&"no attempt on record".to_string()));
}

#[test]
fn bad_values_are_usage_errors_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    assert!(usage_of(&missing, "b").contains("no such state dir"));
    assert!(usage_of(&missing, "b").contains("nope"));
    assert!(usage_of(d.path(), "b").contains("not a dbt-herd state dir"));
    journal(d.path(), vec![started("b", 1, AttemptKind::Full)]);
    let e = usage_of(d.path(), "zz\u{1b}[2J");
    assert!(e.contains("no batch 'zz"), "{e}");
    assert!(!e.contains('\u{1b}'), "{e:?}");
    std::fs::write(d.path().join(SUMMARY_FILE), "{not json").unwrap();
    assert!(usage_of(d.path(), "b").contains("summary.json' is unreadable"));
    std::fs::remove_file(d.path().join(SUMMARY_FILE)).unwrap();
    std::fs::write(d.path().join(JOURNAL_FILE), "{garbage}\n{}\n").unwrap();
    assert!(usage_of(d.path(), "b").contains("journal line 1"));
}
