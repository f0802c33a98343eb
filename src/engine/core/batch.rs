//! One batch's state in the core: its attempts, merged results and progress.

use std::collections::{BTreeMap, BTreeSet};

use crate::dbt::argv::{AttemptKind, ListedNode};
use crate::dbt::events::{NodeRef, Position};
use crate::dbt::run_results::MergedResults;
use crate::engine::history::{AttemptCommand, PastAttempt};
use crate::engine::messages::{AttemptOutcome, BatchStatus};
use crate::engine::protocol::{ExitInfo, Prior, StopReason};
use crate::plan::Batch;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptRecord {
    pub number: u32,
    pub kind: AttemptKind,
    pub worker: usize,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub pid: Option<u32>,
    pub invocation_id: Option<String>,
    pub exit: Option<ExitInfo>,
    /// This attempt's own run_results.json was read and matched its invocation.
    pub wrote_results: bool,
    pub stopped: Option<StopReason>,
    pub nothing_to_do: bool,
    /// run_results.json was there but unusable (stale, truncated, corrupt).
    pub results_problem: Option<String>,
    /// The process running the batch broke (a warm worker's protocol): the
    /// attempt failed and this is why.
    pub runner_problem: Option<String>,
    /// Nodes the events reported as error/fail: the fallback when no results file.
    pub event_failures: u32,
    /// What kind of failure it was, once it failed.
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    /// Seconds dbt itself counted for the invocation (run_results' `elapsed_time`).
    pub dbt_elapsed_s: f64,
    /// What it runs, as a line for a shell, once the shell has launched it.
    pub command: Option<String>,
    pub outcome: AttemptOutcome,
    /// False for an attempt a resumed journal only counts, with no record of
    /// its own: it has nothing to show in the history.
    pub on_record: bool,
    /// Dispatched, and waiting for the `dbt ls` that says what is left to run.
    pub awaiting_list: bool,
    /// Nodes it leaves out because they committed in earlier attempts.
    pub left_out: u32,
    /// Nodes its own run_results.json lists.
    pub result_count: usize,
    /// It selected no node at all, and that is not allowed (`--allow-empty`).
    pub empty_selection: Option<String>,
}

impl AttemptRecord {
    pub fn new(number: u32, kind: AttemptKind, worker: usize, started_at: f64) -> Self {
        Self {
            number,
            kind,
            worker,
            started_at,
            finished_at: None,
            pid: None,
            invocation_id: None,
            exit: None,
            wrote_results: false,
            stopped: None,
            nothing_to_do: false,
            results_problem: None,
            runner_problem: None,
            event_failures: 0,
            failure_class: None,
            dbt_elapsed_s: 0.0,
            command: None,
            outcome: AttemptOutcome::Running,
            on_record: true,
            awaiting_list: false,
            left_out: 0,
            result_count: 0,
            empty_selection: None,
        }
    }

    /// An attempt of a resumed run, as its journal recorded it.
    fn from_past(p: &PastAttempt) -> Self {
        let mut rec = Self::new(p.number, p.kind, p.worker, p.started_at);
        // One without its end on record took no time anyone can count.
        rec.finished_at = Some(p.finished_at.unwrap_or(p.started_at));
        rec.outcome = p.outcome.unwrap_or(AttemptOutcome::Unfinished);
        rec.command = p.command.as_ref().map(AttemptCommand::line);
        rec
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchState {
    pub batch: Batch,
    pub status: BatchStatus,
    pub attempts: Vec<AttemptRecord>,
    pub results: MergedResults,
    pub nothing_selected: bool,
    pub error: Option<String>,
    /// The kind of its last failure.
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    /// Retries of a transient fault it has left (they spend no `--retries`).
    pub transient_left: u32,
    pub last_error_line: Option<String>,
    /// The attempt's first error-level event: where dbt says what went wrong
    /// when its summary lines only say "ERROR".
    pub first_error_line: Option<String>,
    pub nodes_done: u32,
    pub nodes_total: Option<u32>,
    pub executing: BTreeSet<String>,
    /// node unique_id → node path, for compiled SQL locations.
    pub node_paths: BTreeMap<String, String>,
    pub auto_retries_left: u32,
    /// The next attempt must run in full (dbt retry had nothing to do, or was unsafe).
    pub force_full: bool,
    /// A `dbt ls` for splitting it is under way.
    pub splitting: bool,
    /// Batches (indices) that must succeed before this one starts.
    pub after: Vec<usize>,
    /// Only nodes that ended for good in this attempt or later count as
    /// committed (a deliberate rerun starts the count again).
    pub committed_since: u32,
    /// Every node the batch selects, once a `dbt ls` said (for leaving out what
    /// committed).
    pub listed: Option<Vec<ListedNode>>,
    /// Why what earlier attempts committed is unknown: said once, when it next runs.
    pub unknown_committed: Option<String>,
    /// A split part whose one model committed in the parent's attempts: only
    /// that model's tests are left, and no `dbt ls` is needed to know it.
    pub tests_left: bool,
}

impl BatchState {
    pub fn new(batch: Batch, retries: u32) -> Self {
        Self {
            status: BatchStatus::Pending,
            batch,
            attempts: Vec::new(),
            results: MergedResults::default(),
            nothing_selected: false,
            error: None,
            last_error_line: None,
            first_error_line: None,
            failure_class: None,
            transient_left: super::backoff::TRANSIENT_RETRIES,
            nodes_done: 0,
            nodes_total: None,
            executing: BTreeSet::new(),
            node_paths: BTreeMap::new(),
            auto_retries_left: retries,
            force_full: false,
            splitting: false,
            after: Vec::new(),
            committed_since: 1,
            listed: None,
            unknown_committed: None,
            tests_left: false,
        }
    }

    /// Attempt `number` (1-based), if it exists.
    pub fn attempt(&self, number: u32) -> Option<&AttemptRecord> {
        self.attempts.get(number.checked_sub(1)? as usize)
    }

    pub fn attempt_mut(&mut self, number: u32) -> Option<&mut AttemptRecord> {
        self.attempts.get_mut(number.checked_sub(1)? as usize)
    }

    /// Only a batch that is not running (and not done) may be edited or split.
    pub fn editable(&self) -> bool {
        matches!(
            self.status,
            BatchStatus::Pending | BatchStatus::Failed | BatchStatus::Cancelled
        )
    }

    /// Progress bookkeeping shared by a node's start, finish and skip: whether it
    /// executes now, where its SQL is, and how many nodes are done of how many.
    pub fn note_node(&mut self, node: &NodeRef, pos: Position, ended: bool) {
        if ended {
            self.executing.remove(&node.unique_id);
            self.nodes_done += 1;
        } else {
            self.executing.insert(node.unique_id.clone());
        }
        if let Some(p) = &node.path {
            self.node_paths.insert(node.unique_id.clone(), p.clone());
        }
        if self.nodes_total.is_none() {
            self.nodes_total = pos.total;
        }
    }

    /// A new attempt starts: what the last one showed gives way to what this one shows.
    pub fn begin_attempt(&mut self, record: AttemptRecord) {
        self.attempts.push(record);
        self.status = BatchStatus::Running;
        self.force_full = false;
        // The previous attempt's error was shown while the batch waited; this
        // attempt's own will replace it if it fails too.
        self.error = None;
        self.last_error_line = None;
        self.first_error_line = None;
        self.nothing_selected = false;
        self.nodes_done = 0;
        self.nodes_total = None;
        self.executing.clear();
    }

    /// Takes over a resumed batch's past, so that attempt numbers go on and a
    /// failed batch continues with `dbt retry` in its target dir.
    pub fn carry_over(&mut self, p: &Prior) {
        let recorded: f64 = p
            .history
            .iter()
            .filter_map(|a| a.finished_at.map(|f| (f - a.started_at).max(0.0)))
            .sum();
        // The time on record that no attempt's own record holds goes on the first
        // attempt without one: the batch's duration (and the ETA) count what really ran.
        let mut unplaced = (p.spent_s - recorded).max(0.0);
        for number in 1..=p.attempts {
            let last = number == p.attempts;
            let mut rec = if let Some(past) = p.history.iter().find(|a| a.number == number) {
                AttemptRecord::from_past(past)
            } else {
                let mut rec = AttemptRecord::new(number, AttemptKind::Full, 0, 0.0);
                rec.finished_at = Some(std::mem::take(&mut unplaced));
                rec.outcome = AttemptOutcome::Unfinished;
                rec.on_record = false;
                rec
            };
            rec.wrote_results = last && p.results.is_some();
            rec.stopped = (last && p.stopped).then_some(StopReason::Shutdown);
            self.attempts.push(rec);
        }
        // What the attempts' output says committed, then the last attempt's own
        // results (which agree with its output, and say more).
        for n in &p.committed {
            if self
                .results
                .nodes
                .get(&n.unique_id)
                .is_none_or(|o| o.attempt <= n.attempt)
            {
                self.results
                    .record(&n.unique_id, &n.status, n.attempt, n.execution_time);
            }
        }
        if let Some(rr) = &p.results {
            self.results.merge(rr, p.attempts);
        }
        self.unknown_committed.clone_from(&p.unknown);
        if p.succeeded {
            self.status = BatchStatus::Succeeded;
        }
    }

    /// Unique ids of the nodes that committed in earlier attempts (since the
    /// last deliberate rerun): a full attempt leaves them out.
    pub fn committed(&self) -> BTreeSet<String> {
        self.results
            .committed_since(self.committed_since)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The merged results say every node is done and fine. Used only to judge a
    /// `dbt retry` that had nothing to do.
    pub fn complete_enough(&self) -> bool {
        let c = self.results.counts();
        c.total() > 0 && !c.has_failures()
    }
}
