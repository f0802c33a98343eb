//! The journal: an append-only JSONL record of every attempt, one `write()` and one
//! `fdatasync` per record, so a crash loses at most the record being written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::history::{AttemptCommand, PastAttempt};
use crate::engine::messages::{AttemptOutcome, BatchStatus};
use crate::engine::protocol::JournalEntry;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    ts: String,
    /// Fingerprint of what the batch runs, so a resume with a changed plan reruns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fp: Option<String>,
    #[serde(flatten)]
    entry: JournalEntry,
}

pub(crate) struct Journal {
    file: File,
}

impl Journal {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    pub fn append(&mut self, entry: JournalEntry, fp: Option<String>) -> std::io::Result<()> {
        let rec = Record {
            ts: chrono::Utc::now().to_rfc3339(),
            fp,
            entry,
        };
        let mut line = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write per record: with O_APPEND a record is never interleaved.
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// What a journal says about one batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchPast {
    pub status: BatchStatus,
    /// The fingerprint it last ran with.
    pub fp: Option<String>,
    /// The highest attempt number started.
    pub attempts: u32,
    /// The invocation id of the last finished attempt, when dbt reported one.
    pub last_invocation: Option<String>,
    /// Seconds its finished attempts took, from the records' times.
    pub spent_s: f64,
}

/// A child spawned but never recorded as finished: a supervisor that died may
/// have left it running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnfinishedChild {
    pub batch: String,
    pub attempt: u32,
    pub pid: u32,
}

/// What a journal says about each batch.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct JournalState {
    pub last: BTreeMap<String, BatchPast>,
    /// Bytes of a torn last line (a crash mid-write), ignored; 0 if none.
    pub torn_tail: usize,
    pub unfinished: Vec<UnfinishedChild>,
    /// Warm worker processes the run started (any may be left if it died).
    pub workers: Vec<u32>,
    /// When each attempt started, until it finishes: (batch, attempt) → time.
    started: BTreeMap<(String, u32), f64>,
    /// Every attempt on record: (batch, attempt) → what it was and how it ended.
    attempts: BTreeMap<(String, u32), PastAttempt>,
}

#[derive(Debug)]
pub(crate) enum JournalError {
    Read(std::io::Error),
    /// A line in the middle that is not a record: skipping it could rerun or skip work.
    Corrupt {
        line: usize,
        reason: String,
    },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Read(e) => write!(f, "cannot read the journal: {e}"),
            JournalError::Corrupt { line, reason } => {
                write!(f, "journal line {line}: corrupt record ({reason})")
            }
        }
    }
}

/// Reads a journal. A torn last line is ignored and reported in `torn_tail`; a
/// corrupt line in the middle is an error.
pub(crate) fn read(path: &Path) -> Result<JournalState, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalState::default()),
        Err(e) => return Err(JournalError::Read(e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut st = JournalState::default();
    let lines: Vec<&str> = text.split('\n').collect();
    let last_index = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            // The final line without its newline is a write cut short by a crash.
            Err(_) if i == last_index => {
                st.torn_tail = line.len();
                continue;
            }
            Err(e) => {
                return Err(JournalError::Corrupt {
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        };
        st.take(rec);
    }
    Ok(st)
}

impl JournalState {
    /// A batch's attempts as the journal records them, first first.
    pub fn history(&self, batch: &str) -> Vec<PastAttempt> {
        let from = (batch.to_string(), 0);
        let to = (batch.to_string(), u32::MAX);
        self.attempts
            .range(from..=to)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Keeps what a record says about one attempt.
    fn note_attempt(&mut self, entry: &JournalEntry, ts: Option<f64>, fp: Option<&String>) {
        match entry {
            JournalEntry::AttemptStarted {
                batch,
                attempt,
                kind,
                worker,
            } => {
                // A number used again (an attempt that never started) starts afresh.
                self.attempts.insert(
                    (batch.clone(), *attempt),
                    PastAttempt {
                        number: *attempt,
                        kind: *kind,
                        worker: *worker,
                        started_at: ts.unwrap_or(0.0),
                        finished_at: None,
                        outcome: None,
                        command: None,
                        fp: fp.cloned(),
                        spawned: false,
                    },
                );
            }
            JournalEntry::AttemptSpawned { batch, attempt, .. } => {
                if let Some(a) = self.attempts.get_mut(&(batch.clone(), *attempt)) {
                    a.spawned = true;
                }
            }
            JournalEntry::AttemptCommand {
                batch,
                attempt,
                argv,
                env,
            } => {
                if let Some(a) = self.attempts.get_mut(&(batch.clone(), *attempt)) {
                    a.command = Some(AttemptCommand {
                        argv: argv.clone(),
                        env: env.clone(),
                    });
                }
            }
            JournalEntry::AttemptFinished {
                batch,
                attempt,
                status,
                outcome,
                ..
            } => {
                if let Some(a) = self.attempts.get_mut(&(batch.clone(), *attempt)) {
                    a.finished_at = ts.or(Some(a.started_at));
                    a.outcome = Some(outcome.unwrap_or_else(|| AttemptOutcome::of(*status)));
                }
            }
            _ => {}
        }
    }

    fn take(&mut self, rec: Record) {
        let ts = chrono::DateTime::parse_from_rfc3339(&rec.ts)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .ok();
        self.note_attempt(&rec.entry, ts, rec.fp.as_ref());
        let mut spent = 0.0;
        match &rec.entry {
            JournalEntry::AttemptStarted { batch, attempt, .. } => {
                if let Some(t) = ts {
                    self.started.insert((batch.clone(), *attempt), t);
                }
            }
            JournalEntry::AttemptFinished { batch, attempt, .. } => {
                if let (Some(end), Some(start)) =
                    (ts, self.started.remove(&(batch.clone(), *attempt)))
                {
                    spent = (end - start).max(0.0);
                }
            }
            _ => {}
        }
        let (batch, status, attempt, invocation) = match rec.entry {
            JournalEntry::AttemptFinished {
                batch,
                status,
                attempt,
                invocation_id,
                ..
            } => {
                self.unfinished
                    .retain(|u| !(u.batch == batch && u.attempt == attempt));
                (batch, status, attempt, Some(invocation_id))
            }
            JournalEntry::BatchStatus { batch, status } => (batch, status, 0, None),
            JournalEntry::AttemptStarted { batch, attempt, .. } => {
                (batch, BatchStatus::Running, attempt, None)
            }
            JournalEntry::WorkerStarted { pid, .. } => {
                self.workers.push(pid);
                return;
            }
            JournalEntry::AttemptCommand { .. } => return,
            JournalEntry::AttemptSpawned {
                batch,
                attempt,
                pid,
            } => {
                self.unfinished.push(UnfinishedChild {
                    batch,
                    attempt,
                    pid,
                });
                return;
            }
        };
        let past = self.last.entry(batch).or_insert(BatchPast {
            status,
            fp: None,
            attempts: 0,
            last_invocation: None,
            spent_s: 0.0,
        });
        past.spent_s += spent;
        past.status = status;
        past.fp = rec.fp;
        past.attempts = past.attempts.max(attempt);
        if let Some(inv) = invocation {
            past.last_invocation = inv;
        }
    }
}

/// Cuts a torn last line, so that the next record starts on a line of its own
/// (appending to it would glue two records into one corrupt line). Returns the
/// bytes cut.
pub(crate) fn cut_torn_tail(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    if bytes.last().is_none_or(|&b| b == b'\n') {
        return Ok(0);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(keep as u64)?;
    file.sync_all()?;
    Ok((bytes.len() - keep) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::argv::AttemptKind;

    fn status(batch: &str, status: BatchStatus) -> JournalEntry {
        JournalEntry::BatchStatus {
            batch: batch.into(),
            status,
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(
            JournalEntry::AttemptStarted {
                batch: "a".into(),
                attempt: 1,
                kind: AttemptKind::Full,
                worker: 1,
            },
            Some("f1".into()),
        )
        .unwrap();
        j.append(status("a", BatchStatus::Succeeded), Some("f1".into()))
            .unwrap();
        j.append(status("b", BatchStatus::Failed), Some("f2".into()))
            .unwrap();
        let st = read(&p).unwrap();
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
        assert_eq!(st.last["a"].fp.as_deref(), Some("f1"));
        assert_eq!(st.last["a"].attempts, 1);
        assert_eq!(st.last["b"].status, BatchStatus::Failed);
        assert_eq!(st.torn_tail, 0);
        assert!(st.unfinished.is_empty());
        j.append(
            JournalEntry::AttemptSpawned {
                batch: "b".into(),
                attempt: 2,
                pid: 4242,
            },
            None,
        )
        .unwrap();
        assert_eq!(
            read(&p).unwrap().unfinished,
            vec![UnfinishedChild {
                batch: "b".into(),
                attempt: 2,
                pid: 4242
            }]
        );
        // A crash mid-write leaves half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"ts":"x","record":"batch_sta"#).unwrap();
        let st = read(&p).unwrap();
        assert!(st.torn_tail > 0);
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
    }

    /// A torn tail is cut before anything is appended, so the journal stays
    /// readable after any number of resumes.
    #[test]
    fn a_cut_tail_keeps_the_journal_readable_across_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(status("a", BatchStatus::Succeeded), None).unwrap();
        j.append(status("b", BatchStatus::Failed), None).unwrap();
        drop(j);
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        assert!(read(&p).unwrap().torn_tail > 0);
        assert!(cut_torn_tail(&p).unwrap() > 0);
        assert_eq!(cut_torn_tail(&p).unwrap(), 0, "nothing more to cut");
        let mut j = Journal::open(&p).unwrap();
        j.append(status("b", BatchStatus::Succeeded), None).unwrap();
        j.append(status("c", BatchStatus::Failed), None).unwrap();
        let st = read(&p).unwrap();
        assert_eq!(st.torn_tail, 0);
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
        assert_eq!(st.last["b"].status, BatchStatus::Succeeded);
        assert_eq!(st.last["c"].status, BatchStatus::Failed);
    }

    /// Each attempt's kind, worker, times, outcome and command come back from
    /// the journal, in order, a number used again starting afresh.
    #[test]
    fn attempts_and_their_commands_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        let started = |attempt, kind| JournalEntry::AttemptStarted {
            batch: "a".into(),
            attempt,
            kind,
            worker: 3,
        };
        let command = |attempt, first: &str| JournalEntry::AttemptCommand {
            batch: "a".into(),
            attempt,
            argv: vec!["/bin/dbt".into(), first.into(), "it's".into()],
            env: [("HERD_DB".to_string(), "/w/a 1.db".to_string())].into(),
        };
        let finished = |attempt, status, outcome| JournalEntry::AttemptFinished {
            batch: "a".into(),
            attempt,
            exit: None,
            status,
            invocation_id: None,
            outcome,
        };
        for e in [
            // Attempt 1 never started (the journal failed after its record)…
            started(1, AttemptKind::Full),
            command(1, "never"),
            // …and ran under the same number.
            started(1, AttemptKind::Full),
            command(1, "build"),
            finished(1, BatchStatus::Pending, Some(AttemptOutcome::Failed)),
            started(2, AttemptKind::Retry),
            command(2, "retry"),
            finished(2, BatchStatus::Succeeded, Some(AttemptOutcome::Succeeded)),
        ] {
            j.append(e, None).unwrap();
        }
        let st = read(&p).unwrap();
        let h = st.history("a");
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].number, h[0].kind, h[0].worker),
            (1, AttemptKind::Full, 3)
        );
        assert_eq!(h[1].kind, AttemptKind::Retry);
        assert_eq!(
            h.iter().map(|a| a.outcome).collect::<Vec<_>>(),
            [
                Some(AttemptOutcome::Failed),
                Some(AttemptOutcome::Succeeded)
            ]
        );
        let c = h[0].command.as_ref().unwrap();
        assert_eq!(c.argv, ["/bin/dbt", "build", "it's"]);
        assert_eq!(c.env["HERD_DB"], "/w/a 1.db");
        assert!(h.iter().all(|a| a.finished_at >= Some(a.started_at)));
        // The command record moves no batch: its status is the attempts'.
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
        assert_eq!(st.last["a"].attempts, 2);
        assert!(st.history("other").is_empty());
        let line = std::fs::read_to_string(&p).unwrap();
        assert!(
            line.contains(r#""record":"attempt_command","batch":"a","attempt":1,"argv":["/bin/dbt","build","it's"],"env":{"HERD_DB":"/w/a 1.db"}"#),
            "{line}"
        );
    }

    /// A journal written before attempts had commands or outcomes of their
    /// own still reads: no command, the outcome from the batch's status.
    #[test]
    fn an_old_journal_without_commands_or_outcomes_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"ts":"2026-01-01T10:00:00+00:00","fp":"f","record":"attempt_started","batch":"a","attempt":1,"kind":"full","worker":1}"#,
                "\n",
                r#"{"ts":"2026-01-01T10:00:00+00:00","record":"attempt_spawned","batch":"a","attempt":1,"pid":4242}"#,
                "\n",
                r#"{"ts":"2026-01-01T10:00:04.5+00:00","fp":"f","record":"attempt_finished","batch":"a","attempt":1,"exit":{"code":1,"signal":null},"status":"pending","invocation_id":"i1"}"#,
                "\n",
                r#"{"ts":"2026-01-01T10:00:05+00:00","fp":"f","record":"attempt_started","batch":"a","attempt":2,"kind":"retry","worker":2}"#,
                "\n",
            ),
        )
        .unwrap();
        let st = read(&p).unwrap();
        let h = st.history("a");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].command, None);
        assert_eq!(
            h[0].outcome,
            Some(AttemptOutcome::Failed),
            "pending: failed and queued again"
        );
        assert_eq!(h[0].view().duration_s, Some(4.5));
        assert_eq!(h[1].outcome, None, "no end on record");
        assert_eq!(st.last["a"].spent_s, 4.5);
        assert_eq!(st.last["a"].last_invocation.as_deref(), Some("i1"));
    }

    #[test]
    fn corrupt_middle_line_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(&p, "{garbage}\n{\"ts\":\"x\",\"record\":\"batch_status\",\"batch\":\"a\",\"status\":\"failed\"}\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
