//! The engine's inner protocol: what the pure core, the async shell and the
//! attempt actors say to each other. A leaf module: it imports the faces'
//! protocol (`messages`) and dbt's types, and nothing of the modules that use it,
//! so no sender drags its receiver's module into an import cycle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dbt::argv::{AttemptKind, Invocation, Narrowing};
use crate::dbt::events::{DbtEvent, EventKind, Level};
use crate::dbt::run_results::{ReadError, RunResults};
use crate::engine::history::PastAttempt;
use crate::engine::messages::{AttemptOutcome, BatchStatus, Event};

/// Identifies one attempt of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AttemptKey {
    pub batch: usize,
    /// 1-based.
    pub attempt: u32,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("dbt exited with code {c}"),
            (None, Some(s)) => format!("dbt was killed by signal {s}"),
            _ => "dbt ended".into(),
        }
    }
}

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub(crate) struct AttemptSpec {
    pub key: AttemptKey,
    /// The worker slot (1-based) it runs on.
    pub worker: usize,
    pub invocation: Invocation,
    pub target_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Raw copies of everything the child writes.
    pub stdout_file: PathBuf,
    pub stderr_file: PathBuf,
    pub grace_int: Duration,
    pub grace_term: Duration,
    /// A partial parse file to start the target dir from, if it has none.
    pub seed_parse: Option<PathBuf>,
}

/// Orders for a running attempt's actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptCtl {
    /// The stop ladder: SIGINT, then SIGTERM, then SIGKILL to the group.
    Stop,
    /// Straight to SIGKILL.
    Kill,
    Suspend,
    Resume,
}

/// Why dbt-herd stopped an attempt itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancel,
    Shutdown,
}

/// One line of a child's output, cut and parsed by the attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputLine {
    pub stderr: bool,
    /// Untrusted: may hold escape sequences. Faces sanitise it.
    pub text: String,
    /// The dbt event, when the line is one of dbt's JSON log lines.
    pub event: Option<DbtEvent>,
}

impl OutputLine {
    /// Whether the engine must see this line whatever the load: it moves a node
    /// or the batch forward, or reports an error. Every other line is only for
    /// display, and may be shed (coalesced into a count) when the engine is behind;
    /// the attempt's log file always has it in full.
    pub fn is_essential(&self) -> bool {
        match &self.event {
            None => false,
            Some(ev) => ev.level == Level::Error || !matches!(ev.kind, EventKind::Other),
        }
    }
}

/// What an attempt actor reports to the engine. `Exited` is always its last message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptReport {
    Spawned {
        key: AttemptKey,
        pid: u32,
    },
    /// The child could not be started; no process exists.
    SpawnFailed {
        key: AttemptKey,
        error: String,
    },
    Line {
        key: AttemptKey,
        line: OutputLine,
    },
    /// Display lines dropped because the engine was behind (they are in the log file).
    Shed {
        key: AttemptKey,
        lines: u64,
    },
    /// run_results.json seen complete while the child still runs.
    Results {
        key: AttemptKey,
        results: RunResults,
    },
    /// The child is reaped and its process group is empty.
    Exited {
        key: AttemptKey,
        exit: ExitInfo,
        results: Result<RunResults, ReadError>,
        /// False if group members outlived even SIGKILL (uninterruptible sleep).
        group_clean: bool,
        /// What broke the process running the batch (a warm worker that died
        /// mid-batch or broke its protocol): the attempt failed, whatever its
        /// exit status says.
        broken: Option<String>,
    },
}

impl AttemptReport {
    pub fn key(&self) -> AttemptKey {
        match self {
            AttemptReport::Spawned { key, .. }
            | AttemptReport::SpawnFailed { key, .. }
            | AttemptReport::Line { key, .. }
            | AttemptReport::Shed { key, .. }
            | AttemptReport::Results { key, .. }
            | AttemptReport::Exited { key, .. } => *key,
        }
    }

    /// The attempt's actor is done: nothing more will come from it.
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            AttemptReport::SpawnFailed { .. } | AttemptReport::Exited { .. }
        )
    }
}

/// Side effects for the shell to carry out, in order. (Events dominate the size;
/// each effect is moved once, so boxing would only add an allocation.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    Launch {
        key: AttemptKey,
        worker: usize,
        kind: AttemptKind,
        /// What a full attempt leaves out because it committed earlier.
        narrowing: Option<Narrowing>,
    },
    /// Run `dbt ls` of every node the attempt's batch selects, before it is
    /// launched; answer with `EngineCore::on_nodes_listed`.
    ListNodes {
        key: AttemptKey,
    },
    Control {
        key: AttemptKey,
        ctl: AttemptCtl,
    },
    Emit(Event),
    Journal(JournalEntry),
    WriteSummary,
    /// Run `dbt ls` for the batch's selection; answer with `EngineCore::on_listed`.
    ListModels {
        batch: usize,
    },
}

/// What the journal records (the shell adds a timestamp and the batch's
/// fingerprint, and writes it durably).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub(crate) enum JournalEntry {
    AttemptStarted {
        batch: String,
        attempt: u32,
        kind: AttemptKind,
        worker: usize,
    },
    /// What the attempt runs, written before its process starts: the argv
    /// (program first) and the variables dbt-herd adds to the environment it
    /// inherits.
    AttemptCommand {
        batch: String,
        attempt: u32,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
    },
    AttemptSpawned {
        batch: String,
        attempt: u32,
        pid: u32,
    },
    AttemptFinished {
        batch: String,
        attempt: u32,
        exit: Option<ExitInfo>,
        status: BatchStatus,
        invocation_id: Option<String>,
        /// How the attempt itself ended (`status` is its batch's, which is
        /// `pending` when a failed attempt is queued again). Older journals lack it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<AttemptOutcome>,
    },
    BatchStatus {
        batch: String,
        status: BatchStatus,
    },
    /// A warm worker process started for a slot (a resume sweeps it if it is left).
    WorkerStarted {
        worker: usize,
        pid: u32,
    },
}

impl JournalEntry {
    pub fn batch(&self) -> &str {
        match self {
            JournalEntry::AttemptStarted { batch, .. }
            | JournalEntry::AttemptCommand { batch, .. }
            | JournalEntry::AttemptSpawned { batch, .. }
            | JournalEntry::AttemptFinished { batch, .. }
            | JournalEntry::BatchStatus { batch, .. } => batch,
            JournalEntry::WorkerStarted { .. } => "",
        }
    }
}

/// A batch's past in a resumed run, from the journal and its target dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Prior {
    pub succeeded: bool,
    /// Attempts made so far (new attempts are numbered after them).
    pub attempts: u32,
    /// The last attempt's own run_results.json, if it is still there and matches.
    pub results: Option<RunResults>,
    /// The last attempt was stopped (its results lack the nodes that never ran).
    pub stopped: bool,
    /// Seconds its attempts took, per the journal.
    pub spent_s: f64,
    /// Its attempts as the journal records them, first first.
    pub history: Vec<PastAttempt>,
    /// The nodes that ended for good in its attempts since it last succeeded
    /// (from each attempt's captured output and its results): the next attempt
    /// leaves them out.
    pub committed: Vec<PriorNode>,
    /// Why what its earlier attempts committed cannot be known (their output is
    /// gone or unreadable): it runs again in full, and says so.
    pub unknown: Option<String>,
}

/// A node that committed in an earlier attempt, as a resume found it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PriorNode {
    pub unique_id: String,
    pub status: String,
    pub attempt: u32,
    pub execution_time: f64,
}
