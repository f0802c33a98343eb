//! `summary.json`: every batch's outcome, kept current while the run goes on.

use serde::{Deserialize, Serialize};

use crate::dbt::run_results::NodeCounts;
use crate::engine::core::EngineCore;
use crate::engine::messages::{AttemptView, BatchStatus, FailingNode, wait_of};

/// A batch's status as summary.json says it: a batch still running when the run
/// ended did not finish, so it counts as pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SummaryStatus {
    Succeeded,
    Failed,
    Cancelled,
    Pending,
    /// Replaced by one batch per model; its parts carry on.
    Split,
}

impl From<BatchStatus> for SummaryStatus {
    fn from(s: BatchStatus) -> Self {
        match s {
            BatchStatus::Pending | BatchStatus::Running => Self::Pending,
            BatchStatus::Succeeded => Self::Succeeded,
            BatchStatus::Failed => Self::Failed,
            BatchStatus::Cancelled => Self::Cancelled,
            BatchStatus::Split => Self::Split,
        }
    }
}

impl SummaryStatus {
    /// Done as far as the exit status goes: it succeeded, or its parts stand for it.
    pub fn is_ok(self) -> bool {
        matches!(self, Self::Succeeded | Self::Split)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub batches: Vec<BatchSummary>,
    pub budget: u32,
    pub workers: usize,
    pub threads: u32,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// What the plan decided: the warehouse, run-once batches, orders, locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::graph::resolve::PlanReport>,
    /// Warm or cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::engine::warm::check::Mode>,
    /// Why the run is cold though warm was allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode_reason: Option<String>,
    /// Why the run ended before any batch started (a plan that does not
    /// resolve); absent when it started, or was interrupted before it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the queue was paused by itself: every recent attempt failed alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// What happened between the launch and `started_at`, phase by phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preparation: Option<Preparation>,
}

/// The run's preparation: from the launch to the engine's start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Preparation {
    /// When dbt-herd was launched (RFC 3339).
    pub launched_at: String,
    pub phases: Vec<PhaseTime>,
}

/// One phase of the preparation and its wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PhaseTime {
    /// `resolve` (dbt ls against the graph), `mode` (warm workers started and
    /// checked, or the reason to run cold), `shared_parse` (cold batches' one parse).
    pub phase: String,
    pub seconds: f64,
}

impl Preparation {
    /// For people: "prepared in 12.3s: resolve 5.8s · mode 6.5s".
    pub fn line(&self) -> Option<String> {
        if self.phases.is_empty() {
            return None;
        }
        let total: f64 = self.phases.iter().map(|p| p.seconds).sum();
        let each: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{} {:.1}s", p.phase, p.seconds))
            .collect();
        Some(format!("prepared in {total:.1}s: {}", each.join(" · ")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchSummary {
    pub id: String,
    pub label: String,
    pub status: SummaryStatus,
    pub attempts: u32,
    pub duration_s: f64,
    /// Wall time beyond what dbt itself counted: start-up, parse, supervision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_s: Option<f64>,
    pub nodes: NodeCounts,
    pub error: Option<String>,
    /// What kind of failure `error` is (`connection`, `lock`, `query`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    /// dbt matched no node for this batch's selection (it still exits 0).
    pub nothing_selected: bool,
    /// Ids of the batches that must succeed before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// A batch it waits on, if it is pending and cannot start yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// Its wait is on a prerequisite that failed or was cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// The nodes that failed, with their messages and compiled SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<FailingNode>,
    /// Each attempt: its kind, worker, times, outcome and command.
    #[serde(default)]
    pub history: Vec<AttemptView>,
}

/// Seconds to the millisecond: what a person or CI reads.
fn millis(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

impl Summary {
    pub fn of(core: &EngineCore, started_at: &str, finished: bool, now: f64) -> Self {
        let views: Vec<_> = (0..core.batch_count()).map(|i| core.view(i, now)).collect();
        let id = |i: usize| views.get(i).map(|v| v.id.clone()).unwrap_or_default();
        Self {
            batches: views
                .iter()
                .map(|v| {
                    let wait = wait_of(&views, v.index);
                    let v = v.clone();
                    BatchSummary {
                        id: v.id,
                        label: v.label,
                        status: v.status.into(),
                        attempts: v.attempts,
                        duration_s: (v.duration_s * 1000.0).round() / 1000.0,
                        overhead_s: (v.dbt_elapsed_s > 0.0).then(|| {
                            ((v.duration_s - v.dbt_elapsed_s).max(0.0) * 1000.0).round() / 1000.0
                        }),
                        nodes: v.counts,
                        error: v.error,
                        failure_class: v.failure_class,
                        nothing_selected: v.nothing_selected,
                        after: v.after.iter().map(|&a| id(a)).collect(),
                        waiting_on: wait.as_ref().map(|w| id(w.on)),
                        blocked: wait.is_some_and(|w| w.blocked),
                        failing: v.failing,
                        history: v
                            .history
                            .into_iter()
                            .map(|mut a| {
                                a.started_at = millis(a.started_at);
                                a.duration_s = a.duration_s.map(millis);
                                a
                            })
                            .collect(),
                    }
                })
                .collect(),
            budget: core.budget(),
            workers: core.active_workers(),
            threads: core.threads(),
            started_at: started_at.to_string(),
            finished_at: finished.then(|| chrono::Utc::now().to_rfc3339()),
            plan: None,
            mode: None,
            mode_reason: None,
            error: None,
            breaker: core.breaker_tripped(),
            preparation: None,
        }
    }

    /// The summary of a run that ended before its engine started: each batch
    /// as `status` says (pending, unless a resumed run had it succeed).
    pub fn unstarted(
        batches: &[crate::plan::Batch],
        status: impl Fn(&crate::plan::Batch) -> SummaryStatus,
        settings: &crate::config::RunSettings,
        error: Option<String>,
    ) -> Self {
        let now = chrono::Utc::now().to_rfc3339();
        Self {
            batches: batches
                .iter()
                .map(|b| BatchSummary {
                    id: b.id.clone(),
                    label: b.label.clone(),
                    status: status(b),
                    attempts: 0,
                    duration_s: 0.0,
                    overhead_s: None,
                    nodes: NodeCounts::default(),
                    error: None,
                    failure_class: None,
                    nothing_selected: false,
                    after: b.after.clone(),
                    waiting_on: None,
                    blocked: false,
                    failing: Vec::new(),
                    history: Vec::new(),
                })
                .collect(),
            budget: settings.budget,
            workers: settings.workers,
            threads: settings.threads,
            started_at: now.clone(),
            finished_at: Some(now),
            plan: None,
            mode: None,
            mode_reason: None,
            error,
            breaker: None,
            preparation: None,
        }
    }

    pub fn count(&self, status: SummaryStatus) -> usize {
        self.batches.iter().filter(|b| b.status == status).count()
    }

    pub fn all_ok(&self) -> bool {
        self.batches.iter().all(|b| b.status.is_ok())
    }
}

/// Adds the run's exit status to its summary.json (`"exit_code"`), once the run
/// has ended and its face has decided it. The file is replaced atomically.
pub(crate) fn record_exit_code(path: &std::path::Path, code: i32) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("exit_code".into(), code.into());
    }
    let text = serde_json::to_vec_pretty(&doc)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    crate::state_dir::write_atomic(path, &text)
}
