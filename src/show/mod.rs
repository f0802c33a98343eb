//! `dbt-herd show STATE_DIR BATCH`: one batch of a run, read from its state dir
//! after the fact — its attempts, the command each ran, and why it failed.
//!
//! The journal is the record of every attempt (it is written before each
//! process starts, so a run that crashed has it too); summary.json, when there
//! is one, adds the failure detail the engine saw.

mod print;

use std::io::Write;
use std::path::Path;

use crate::cli::ShowArgs;
use crate::dbt::run_results::{self, MergedResults};
use crate::engine::history::PastAttempt;
use crate::engine::journal::{self, JournalState};
use crate::engine::messages::{AttemptView, BatchStatus, FailingNode};
use crate::engine::summary::{Summary, SummaryStatus};
use crate::error::{UsageResult, exit};
use crate::state_dir::{JOURNAL_FILE, SUMMARY_FILE, StateDir};
use crate::text::sanitize::sanitize_plain;
use crate::usage;

/// What the state dir says about one batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shown {
    pub id: String,
    pub label: String,
    /// As the run would say it: succeeded, failed, running, pending, …
    pub status: &'static str,
    pub history: Vec<AttemptView>,
    pub error: Option<String>,
    pub failing: Vec<FailingNode>,
}

/// Prints the batch; a state dir or batch that is not there is a usage error.
pub(crate) fn run(args: &ShowArgs, out: &mut impl Write) -> color_eyre::Result<i32> {
    let shown = read(&args.state_dir, &args.batch)?;
    let written = print::lines(&shown)
        .iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match written {
        // A reader that had enough (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(exit::OK),
    }
}

/// The bad value, fit for the one line on stderr.
fn named(s: &str) -> String {
    sanitize_plain(s, 200)
}

pub(crate) fn read(dir: &Path, batch: &str) -> UsageResult<Shown> {
    let state = StateDir::new(dir.to_path_buf());
    if !dir.is_dir() {
        return Err(usage!(
            "show: no such state dir '{}'",
            named(&dir.display().to_string())
        ));
    }
    let summary = read_summary(&state)?;
    let journal_path = state.journal_path();
    if summary.is_none() && !journal_path.exists() {
        return Err(usage!(
            "show: '{}' is not a dbt-herd state dir (no {JOURNAL_FILE} or {SUMMARY_FILE})",
            named(&dir.display().to_string())
        ));
    }
    let past = journal::read(&journal_path).map_err(|e| usage!("show: {e}"))?;
    let in_summary = summary
        .as_ref()
        .and_then(|s| s.batches.iter().find(|b| b.id == batch));
    let in_journal = past.last.get(batch);
    if in_summary.is_none() && in_journal.is_none() {
        return Err(usage!(
            "show: no batch '{}' in state dir '{}'",
            named(batch),
            named(&dir.display().to_string())
        ));
    }
    // The journal is fsynced record by record: it is the newer word on status.
    let status = match (in_journal, in_summary) {
        (Some(p), _) => status_word(p.status),
        (None, Some(b)) => summary_word(b.status),
        (None, None) => "pending",
    };
    let mut history: Vec<AttemptView> = past.history(batch).iter().map(PastAttempt::view).collect();
    if history.is_empty() {
        history = in_summary.map(|b| b.history.clone()).unwrap_or_default();
    }
    let (error, failing) = match in_summary {
        Some(b) => (b.error.clone(), b.failing.clone()),
        None => failure_from_results(&state, batch, &past),
    };
    Ok(Shown {
        id: batch.to_string(),
        label: in_summary.map_or_else(|| batch.to_string(), |b| b.label.clone()),
        status,
        history,
        error,
        failing,
    })
}

fn read_summary(state: &StateDir) -> UsageResult<Option<Summary>> {
    let path = state.summary_path();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(usage!(
                "show: cannot read '{}' ({e})",
                named(&path.display().to_string())
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        usage!(
            "show: '{}' is unreadable ({e})",
            named(&path.display().to_string())
        )
    })
}

/// Without a summary (a run that died before writing one), the failing nodes
/// of the batch's last run_results.json, if it is the last attempt's own.
fn failure_from_results(
    state: &StateDir,
    batch: &str,
    past: &JournalState,
) -> (Option<String>, Vec<FailingNode>) {
    let Some(p) = past.last.get(batch) else {
        return (None, Vec::new());
    };
    let Some(inv) = p.last_invocation.as_deref() else {
        return (None, Vec::new());
    };
    let path = state.target_dir(batch).join("run_results.json");
    let Ok(rr) = run_results::read(&path, Some(inv)) else {
        return (None, Vec::new());
    };
    let mut merged = MergedResults::default();
    merged.merge(&rr, p.attempts);
    let failing = merged
        .failing()
        .map(|(id, n)| FailingNode {
            unique_id: id.clone(),
            status: n.status.clone(),
            message: n.message.clone(),
            compiled_path: None,
        })
        .collect();
    (merged.first_error(), failing)
}

fn status_word(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Pending => "pending",
        BatchStatus::Running => "running",
        BatchStatus::Succeeded => "succeeded",
        BatchStatus::Failed => "failed",
        BatchStatus::Cancelled => "cancelled",
        BatchStatus::Split => "split",
    }
}

fn summary_word(s: SummaryStatus) -> &'static str {
    match s {
        SummaryStatus::Pending => "pending",
        SummaryStatus::Succeeded => "succeeded",
        SummaryStatus::Failed => "failed",
        SummaryStatus::Cancelled => "cancelled",
        SummaryStatus::Split => "split",
    }
}

#[cfg(test)]
mod tests;
