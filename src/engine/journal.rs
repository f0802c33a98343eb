//! The journal: an append-only JSONL record of every attempt, one `write()` and one
//! `fdatasync` per record, so a crash loses at most the record being written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::core::JournalEntry;
use crate::engine::messages::BatchStatus;

#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub ts: String,
    /// Fingerprint of what the batch runs, so a resume with a changed plan reruns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    #[serde(flatten)]
    pub entry: JournalEntry,
}

pub struct Journal {
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
pub struct BatchPast {
    pub status: BatchStatus,
    /// The fingerprint it last ran with.
    pub fp: Option<String>,
    /// The highest attempt number started.
    pub attempts: u32,
    /// The invocation id of the last finished attempt, when dbt reported one.
    pub last_invocation: Option<String>,
}

/// What a journal says about each batch.
#[derive(Debug, Default, PartialEq)]
pub struct JournalState {
    pub last: BTreeMap<String, BatchPast>,
    /// A torn last line (a crash mid-write) that was ignored.
    pub torn_tail: bool,
    /// (batch, attempt, pid) of children spawned but never recorded as finished:
    /// a supervisor that died may have left them running.
    pub unfinished: Vec<(String, u32, u32)>,
}

/// Reads a journal. A torn last line is ignored (and reported); a corrupt line in
/// the middle is an error, because silently skipping it could rerun or skip work.
pub fn read(path: &Path) -> Result<JournalState, String> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalState::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
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
                st.torn_tail = true;
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "{} line {}: corrupt record ({e})",
                    path.display(),
                    i + 1
                ));
            }
        };
        if let JournalEntry::AttemptFinished { batch, attempt, .. } = &rec.entry {
            st.unfinished
                .retain(|(b, a, _)| !(b == batch && a == attempt));
        }
        let (batch, status, attempt, invocation) = match rec.entry {
            JournalEntry::AttemptFinished {
                batch,
                status,
                attempt,
                invocation_id,
                ..
            } => (batch, status, attempt, Some(invocation_id)),
            JournalEntry::BatchStatus { batch, status } => (batch, status, 0, None),
            JournalEntry::AttemptStarted { batch, attempt, .. } => {
                (batch, BatchStatus::Running, attempt, None)
            }
            JournalEntry::AttemptSpawned {
                batch,
                attempt,
                pid,
            } => {
                st.unfinished.push((batch, attempt, pid));
                continue;
            }
        };

        let past = st.last.entry(batch).or_insert(BatchPast {
            status,
            fp: None,
            attempts: 0,
            last_invocation: None,
        });
        past.status = status;
        past.fp = rec.fp;
        past.attempts = past.attempts.max(attempt);
        if let Some(inv) = invocation {
            past.last_invocation = inv;
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::argv::AttemptKind;

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
        j.append(
            JournalEntry::BatchStatus {
                batch: "a".into(),
                status: BatchStatus::Succeeded,
            },
            Some("f1".into()),
        )
        .unwrap();
        j.append(
            JournalEntry::BatchStatus {
                batch: "b".into(),
                status: BatchStatus::Failed,
            },
            Some("f2".into()),
        )
        .unwrap();
        let st = read(&p).unwrap();
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
        assert_eq!(st.last["a"].fp.as_deref(), Some("f1"));
        assert_eq!(st.last["a"].attempts, 1);
        assert_eq!(st.last["b"].status, BatchStatus::Failed);
        assert!(!st.torn_tail);
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
            vec![("b".to_string(), 2, 4242)]
        );
        // A crash mid-write leaves half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"ts":"x","record":"batch_sta"#).unwrap();
        let st = read(&p).unwrap();
        assert!(st.torn_tail);
        assert_eq!(st.last["a"].status, BatchStatus::Succeeded);
    }

    #[test]
    fn corrupt_middle_line_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(&p, "{garbage}\n{\"ts\":\"x\",\"record\":\"batch_status\",\"batch\":\"a\",\"status\":\"failed\"}\n").unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
