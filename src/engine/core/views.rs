//! What the core shows the faces: the run, the workers, each batch, and the
//! events that carry them.

use super::EngineCore;
use crate::dbt::events::Level;
use crate::engine::messages::{
    AttemptOutcome, AttemptView, BatchStatus, BatchView, Event, FailingNode, HistoryKind, RunInfo,
    WorkerView,
};
use crate::engine::protocol::Effect;

impl EngineCore {
    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            workers: self.active_workers(),
            threads: self.cfg.threads,
            budget: self.cfg.budget,
            retries: self.cfg.retries,
            state_dir: self.cfg.state_dir.clone(),
            command: self.cfg.command.clone(),
            plan: self.cfg.plan.clone(),
            mode: match self.cfg.mode.mode {
                crate::engine::warm::check::Mode::Warm => "warm",
                crate::engine::warm::check::Mode::Cold => "cold",
            }
            .into(),
            mode_reason: self.cfg.mode.reason.clone(),
        }
    }

    pub fn worker_views(&self) -> Vec<WorkerView> {
        self.slots
            .iter()
            .map(|s| WorkerView {
                number: s.number,
                paused: s.paused,
                retiring: s.retiring,
                batch: s.running.as_ref().map(|r| r.key.batch),
                warm: s.warm.clone(),
            })
            .collect()
    }

    pub fn view(&self, b: usize, now: f64) -> BatchView {
        let st = &self.batches[b];
        let current = st.attempts.last();
        let running = st.status == BatchStatus::Running;
        let duration_s = st
            .attempts
            .iter()
            .map(|a| {
                a.finished_at
                    .unwrap_or(if running { now } else { a.started_at })
                    - a.started_at
            })
            .sum::<f64>()
            .max(0.0);
        let slot = self.slot_of_batch(b).map(|s| &self.slots[s]);
        BatchView {
            index: b,
            id: st.batch.id.clone(),
            label: st.batch.label.clone(),
            select: st.batch.select.clone(),
            vars: crate::plan::vars_inline(&st.batch.vars),
            status: st.status,
            attempts: u32::try_from(st.attempts.len()).unwrap_or(u32::MAX),
            attempt_kind: current.map(|a| a.kind),
            worker: slot.map(|s| s.number),
            pid: if running {
                current.and_then(|a| a.pid)
            } else {
                None
            },
            suspended: slot
                .and_then(|s| s.running.as_ref())
                .is_some_and(|r| r.suspended),
            duration_s,
            dbt_elapsed_s: st.attempts.iter().map(|a| a.dbt_elapsed_s).sum(),
            running_since: if running {
                current.map(|a| a.started_at)
            } else {
                None
            },
            nodes_done: st.nodes_done,
            nodes_total: st.nodes_total,
            executing: u32::try_from(st.executing.len()).unwrap_or(u32::MAX),
            counts: shown_counts(st),
            // dbt warns "nothing selected" for one selector of several even when
            // others matched: only a batch that ran no node is empty.
            nothing_selected: st.nothing_selected
                && st.nodes_done == 0
                && st.results.counts().total() == 0,
            error: st.error.clone(),
            failure_class: st.failure_class,
            // An attempt that failed before it wrote results failed for its own
            // reason (its error): an earlier attempt's failing nodes are not it.
            failing: st
                .results
                .failing()
                .filter(|_| !failed_without_results(st))
                .map(|(id, n)| FailingNode {
                    unique_id: id.clone(),
                    status: n.status.clone(),
                    message: n.message.clone(),
                    compiled_path: self.compiled_path(b, id),
                })
                .collect(),
            auto_retries_left: st.auto_retries_left,
            after: st.after.clone(),
            locks: st.batch.locks.clone(),
            history: st
                .attempts
                .iter()
                .filter(|a| a.on_record)
                .map(|a| AttemptView {
                    number: a.number,
                    kind: HistoryKind::of(a.kind, a.number),
                    worker: a.worker,
                    started_at: a.started_at,
                    duration_s: match a.outcome {
                        AttemptOutcome::Running | AttemptOutcome::Unfinished => None,
                        _ => a.finished_at.map(|f| (f - a.started_at).max(0.0)),
                    },
                    outcome: a.outcome,
                    failure_class: a.failure_class,
                    command: a.command.clone(),
                })
                .collect(),
        }
    }

    /// Where dbt wrote a node's compiled SQL in the batch's target dir.
    fn compiled_path(&self, b: usize, unique_id: &str) -> Option<String> {
        let path = self.batches[b].node_paths.get(unique_id)?;
        let project = self.cfg.compiled_root_name.as_deref()?;
        let dir = match unique_id.split('.').next()? {
            "model" => "models",
            "seed" => "seeds",
            "snapshot" => "snapshots",
            "test" => "tests",
            _ => return None,
        };
        let id = &self.batches[b].batch.id;
        Some(format!(
            "{}/batches/{id}/target/compiled/{project}/{dir}/{path}",
            self.cfg.state_dir
        ))
    }

    /// Where the batch's raw output is kept in full.
    pub fn log_location(&self, b: usize) -> String {
        format!(
            "{}/batches/{}/",
            self.cfg.state_dir, self.batches[b].batch.id
        )
    }

    pub(super) fn batch_changed(&self, b: usize, now: f64) -> Effect {
        Effect::Emit(Event::BatchChanged(self.view(b, now)))
    }

    pub(super) fn workers_changed(&self) -> Effect {
        Effect::Emit(Event::WorkersChanged(self.worker_views()))
    }

    pub(super) fn queue_changed(&self) -> Effect {
        Effect::Emit(Event::QueueChanged(self.queue.iter().copied().collect()))
    }

    pub(super) fn notice(level: Level, text: impl Into<String>) -> Effect {
        Effect::Emit(Event::Notice {
            level,
            text: text.into(),
        })
    }
}

/// The node counts a face shows: merged across attempts (a retry runs only
/// what failed), unless the last attempt failed without results of its own;
/// then only what its own events said, never an earlier attempt's counts.
fn shown_counts(st: &super::batch::BatchState) -> crate::dbt::run_results::NodeCounts {
    match st.attempts.last() {
        Some(a) if failed_without_results(st) => crate::dbt::run_results::NodeCounts {
            error: a.event_failures,
            ..Default::default()
        },
        _ => st.results.counts(),
    }
}

/// The batch failed, and its last attempt wrote no results of its own.
fn failed_without_results(st: &super::batch::BatchState) -> bool {
    st.status == BatchStatus::Failed && st.attempts.last().is_some_and(|a| !a.wrote_results)
}
