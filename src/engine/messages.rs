//! The engine's boundary: commands in, events out. Both faces (TUI, headless) and a
//! future socket client speak only these types.

use serde::{Deserialize, Serialize};

use crate::dbt::argv::AttemptKind;
use crate::dbt::events::{Level, StatusClass};
use crate::dbt::run_results::NodeCounts;

/// What a face asks the engine to do. Batches are named by their index in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Toggle a worker slot (1-based): it takes no new batch and its running dbt
    /// process group is suspended (SIGSTOP) until resumed (SIGCONT).
    PauseWorker(usize),
    ResumeWorker(usize),
    /// Stop / restart dispatching from the queue; running batches go on.
    PauseQueue,
    ResumeQueue,
    /// Stop a running batch with the stop ladder, or drop a pending one.
    Cancel(usize),
    /// Queue a failed or cancelled batch again (dbt retry, or a full rerun).
    Retry(usize),
    /// Queue a batch that succeeded again, in full (its upstream data was
    /// restated): the face asks the user first.
    Rerun(usize),
    RetryAllFailed,
    /// Change the number of worker slots; a removed busy slot finishes its batch first.
    SetWorkers(usize),
    /// One worker slot more (`by` > 0) or fewer, counted from what the engine
    /// has, so that keys pressed faster than the screen updates all count.
    ChangeWorkers {
        by: i32,
    },
    /// Change the connection budget (never below one batch's threads).
    SetBudget(u32),
    /// Move a pending batch one place up (towards the front) or down the queue.
    MoveBatch {
        batch: usize,
        up: bool,
    },
    /// Replace a pending or failed batch's selector and vars (vars as YAML/JSON).
    EditBatch {
        batch: usize,
        select: Option<String>,
        vars: String,
    },
    /// Split a pending or failed batch into one batch per model (`dbt ls`).
    SplitBatch(usize),
    /// Stop everything with the stop ladder and end the engine. `force` skips to SIGKILL.
    Shutdown {
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Replaced by one batch per model (`SplitBatch`); its parts carry on.
    Split,
}

impl BatchStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Succeeded
                | BatchStatus::Failed
                | BatchStatus::Cancelled
                | BatchStatus::Split
        )
    }
}

/// A node that failed, for a person to act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingNode {
    pub unique_id: String,
    pub status: String,
    pub message: Option<String>,
    /// Where dbt wrote the node's compiled SQL, when known.
    pub compiled_path: Option<String>,
}

/// Everything a face shows about one batch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchView {
    pub index: usize,
    pub id: String,
    pub label: String,
    /// The batch's `--select`, if any, and its vars as one-line YAML (for editing).
    pub select: Option<String>,
    pub vars: String,
    pub status: BatchStatus,
    pub attempts: u32,
    pub attempt_kind: Option<AttemptKind>,
    pub worker: Option<usize>,
    pub pid: Option<u32>,
    pub suspended: bool,
    /// Seconds spent running, summed over attempts (a running attempt counts so far).
    pub duration_s: f64,
    /// Of those, the seconds dbt itself counted (run_results' `elapsed_time`).
    #[serde(default)]
    pub dbt_elapsed_s: f64,
    /// Unix seconds when the current attempt started, if running.
    pub running_since: Option<f64>,
    pub nodes_done: u32,
    pub nodes_total: Option<u32>,
    /// Nodes executing now: an estimate of the connections in use.
    pub executing: u32,
    pub counts: NodeCounts,
    pub nothing_selected: bool,
    pub error: Option<String>,
    /// What kind of failure `error` is, when the batch failed.
    #[serde(default)]
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    pub failing: Vec<FailingNode>,
    pub auto_retries_left: u32,
    /// Batches (indices) that must succeed before this one starts.
    pub after: Vec<usize>,
    /// Relations it writes that no other batch may write at the same time.
    pub locks: Vec<String>,
    /// Every attempt so far, first first (a resumed run's from its journal).
    #[serde(default)]
    pub history: Vec<AttemptView>,
}

/// One attempt of a batch, as a person reads its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    /// 1-based.
    pub number: u32,
    pub kind: HistoryKind,
    /// The worker slot it ran on.
    pub worker: usize,
    /// Unix seconds.
    pub started_at: f64,
    /// `None` while it runs, or when its end is not on record.
    pub duration_s: Option<f64>,
    pub outcome: AttemptOutcome,
    /// What kind of failure it was, when it failed (`connection`, `query`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    /// What it ran, as one line to paste into a shell (`NAME=value … dbt …`);
    /// `None` when the journal that recorded it predates commands.
    pub command: Option<String>,
}

/// What an attempt did to its batch, in the word a person reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryKind {
    /// The batch's first attempt: its command in full.
    Run,
    /// `dbt retry` of the attempt before.
    Retry,
    /// The command in full again, after an earlier attempt (after an edit, an
    /// interrupt, a `dbt retry` that had nothing to do, or a change since it succeeded).
    Rerun,
}

impl HistoryKind {
    pub fn of(kind: AttemptKind, number: u32) -> Self {
        match kind {
            AttemptKind::Retry => Self::Retry,
            AttemptKind::Full if number <= 1 => Self::Run,
            AttemptKind::Full => Self::Rerun,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Retry => "retry",
            Self::Rerun => "rerun",
        }
    }
}

/// How one attempt ended (not its batch: a failed attempt may be retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Its start is on record but not its end: the run stopped before it did
    /// (or, read from a live run's journal, it still runs).
    Unfinished,
}

impl AttemptOutcome {
    /// An attempt's outcome from its batch's status after it (as journals
    /// without an outcome of their own record it): `pending` there is an
    /// attempt that failed and was queued again.
    pub fn of(status: BatchStatus) -> Self {
        match status {
            BatchStatus::Succeeded => Self::Succeeded,
            BatchStatus::Cancelled => Self::Cancelled,
            BatchStatus::Running => Self::Running,
            BatchStatus::Pending | BatchStatus::Failed | BatchStatus::Split => Self::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unfinished => "unfinished",
        }
    }
}

/// Why a pending batch does not start yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wait {
    /// The batch it waits on: a prerequisite, or the holder of a relation it
    /// writes too. When blocked, the prerequisite that failed.
    pub on: usize,
    /// A prerequisite failed or was cancelled: it starts only after that one is
    /// retried and succeeds.
    pub blocked: bool,
    /// The relation a running batch holds, when that is the reason.
    pub relation: Option<String>,
}

/// Why batch `b` waits, from the views of all batches. `None` if it is not
/// pending or could start as far as its prerequisites and locks go.
pub(crate) fn wait_of(views: &[BatchView], b: usize) -> Option<Wait> {
    wait_within(views, b, views.len())
}

fn wait_within(views: &[BatchView], b: usize, depth: usize) -> Option<Wait> {
    let v = views.get(b)?;
    if v.status != BatchStatus::Pending || depth == 0 {
        return None;
    }
    for &p in &v.after {
        let Some(pv) = views.get(p) else { continue };
        match pv.status {
            BatchStatus::Succeeded => {}
            BatchStatus::Failed | BatchStatus::Cancelled => {
                return Some(Wait {
                    on: p,
                    blocked: true,
                    relation: None,
                });
            }
            _ => {
                // Name the failure at the root of a chain of blocked batches.
                return Some(match wait_within(views, p, depth - 1) {
                    Some(w) if w.blocked => w,
                    _ => Wait {
                        on: p,
                        blocked: false,
                        relation: None,
                    },
                });
            }
        }
    }
    views
        .iter()
        .filter(|r| r.status == BatchStatus::Running && r.index != b)
        .find_map(|r| {
            let rel = v.locks.iter().find(|l| r.locks.contains(l))?;
            Some(Wait {
                on: r.index,
                blocked: false,
                relation: Some(rel.clone()),
            })
        })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// 1-based slot number (the `{worker}` of `--env`).
    pub number: usize,
    pub paused: bool,
    /// Removed by `SetWorkers`; goes away when its batch ends.
    pub retiring: bool,
    pub batch: Option<usize>,
    /// The slot's warm dbt process, in warm mode.
    #[serde(default)]
    pub warm: Option<WarmView>,
}

/// Where a slot's warm dbt process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmState {
    /// Importing dbt.
    Starting,
    Parsing,
    /// Parsed, waiting for a batch.
    Idle,
    Busy,
    /// Could not start or parse; the next batch tries again.
    Failed,
    /// No process: nothing queued could run on this slot, so its worker left
    /// (a batch for it starts a fresh one).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmView {
    pub state: WarmState,
    /// Seconds its parse took, once parsed.
    pub parse_s: Option<f64>,
    /// Batches it has run since it started.
    pub runs: u32,
    /// Its process, once started.
    #[serde(default)]
    pub pid: Option<u32>,
    /// When its process started (Unix seconds); its parse ends `parse_s` later.
    #[serde(default)]
    pub since: Option<f64>,
}

/// One line of a batch's output, ready to be sanitised and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: Level,
    pub class: Option<StatusClass>,
    /// Untrusted: may hold escape sequences. Faces sanitise it.
    pub text: String,
    /// From stderr, or plain (non-JSON) stdout.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub workers: usize,
    pub threads: u32,
    pub budget: u32,
    pub retries: u32,
    pub state_dir: String,
    pub command: String,
    /// What the plan decided (the warehouse, run-once batches, orders), one line each.
    #[serde(default)]
    pub plan: Vec<String>,
    /// "warm" (a long-lived dbt process per worker) or "cold" (one per batch).
    #[serde(default)]
    pub mode: String,
    /// Why the run is cold when warm was possible.
    #[serde(default)]
    pub mode_reason: Option<String>,
}

impl RunInfo {
    /// How batches run, for people: warm or cold, and why cold when it is.
    pub fn mode_line(&self) -> String {
        let what = match self.mode.as_str() {
            "warm" => "warm: one long-lived dbt process per worker, parsed once",
            _ => "cold: a new dbt process per batch",
        };
        match &self.mode_reason {
            Some(why) => format!("mode: {what} ({why})"),
            None => format!("mode: {what}"),
        }
    }
}

/// The run's preparation as it goes: from the launch to the first batch's
/// dispatch, phase by phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepView {
    /// Unix seconds at the launch: elapsed time counts from here.
    pub launched_at: f64,
    /// The run's state dir.
    #[serde(default)]
    pub state_dir: String,
    /// The phases so far, first first; the last is the current one while `done` is false.
    pub phases: Vec<PrepPhase>,
    /// The dbt processes the current phase waits on, for people
    /// (`2 × dbt ls`, `dbt parse`); empty when it waits on none.
    #[serde(default)]
    pub waits_on: Vec<String>,
    /// Preparation is over: the engine has started, or the run ended before it.
    pub done: bool,
}

/// One phase of the preparation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepPhase {
    /// `resolve`, `mode` or `shared_parse` (as in summary.json's `preparation`).
    pub phase: String,
    /// What it does, for people.
    pub doing: String,
    /// Seconds from the launch to its beginning.
    pub began_s: f64,
    /// Its wall time once it has ended.
    pub seconds: Option<f64>,
}

impl PrepView {
    /// The phase under way, if preparation is not over.
    pub fn current(&self) -> Option<&PrepPhase> {
        self.phases
            .last()
            .filter(|p| p.seconds.is_none() && !self.done)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Before `Started`, and again each time it changes: the preparation.
    Preparing(PrepView),
    /// The whole plan, once it is prepared.
    Started {
        info: RunInfo,
        batches: Vec<BatchView>,
        workers: Vec<WorkerView>,
    },
    BatchChanged(BatchView),
    Log {
        batch: usize,
        worker: usize,
        line: LogLine,
    },
    WorkersChanged(Vec<WorkerView>),
    /// Indices of the pending batches in dispatch order.
    QueueChanged(Vec<usize>),
    BudgetChanged(u32),
    /// The circuit breaker paused the queue: the one diagnosis, for as long
    /// as the queue stays paused.
    BreakerTripped(String),
    /// How many batches may run at once, as the warehouse allows after it
    /// refused connections; `None`: as many as there are workers.
    AtOnce(Option<usize>),
    /// The run turned cold after it started (the parse check found batches
    /// that parse differently): what `RunInfo` says of the mode, now.
    ModeChanged {
        mode: String,
        reason: Option<String>,
    },
    QueuePaused(bool),
    /// Something a person should know that is not a batch's own output.
    Notice {
        level: Level,
        text: String,
    },
    /// A node of a batch's attempt finished (or was skipped), as dbt reported it.
    NodeFinished {
        batch: usize,
        attempt: u32,
        /// dbt's unique id (`model.shop.fct_orders`). Untrusted.
        node: String,
        /// dbt's status word (`success`, `error`, `pass`, `fail`, `warn`, `skipped`, …).
        status: String,
        execution_time_s: Option<f64>,
    },
    /// Batches added to the plan (by a split), already queued.
    BatchesAdded(Vec<BatchView>),
    /// About once a second while anything runs: the machine and each running dbt process tree.
    Resources(Resources),
    /// Nothing runs and nothing more will start without a command (all done, or the queue is paused).
    Idle,
    /// The engine has stopped every child and ended.
    Stopped,
}

/// CPU and memory, sampled by the engine (faces touch no /proc themselves).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Whole machine, percent of all cores (0–100).
    pub cpu_percent: f32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub batches: Vec<BatchResources>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchResources {
    pub batch: usize,
    /// Sum over the batch's process group, percent of one core (may exceed 100).
    pub cpu_percent: f32,
    pub rss_bytes: u64,
}
