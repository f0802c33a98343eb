//! `dbt-herd report STATE_DIR [-o report.html]`: one self-contained HTML file of
//! a run (finished, or a snapshot of one still going): a timeline with a lane per
//! worker and a bar per attempt, the connections reserved over time, the batch
//! table (sortable, filterable) and each failure. No network, no script from
//! elsewhere; every text from the run is escaped.

mod page;
mod timeline;

use std::path::{Path, PathBuf};

use color_eyre::eyre::WrapErr;
use serde::Deserialize;

use crate::engine::messages::{AttemptView, FailingNode};
use crate::state_dir::SUMMARY_FILE;
use crate::usage;

/// What the report reads of summary.json.
#[derive(Debug, Deserialize)]
pub(crate) struct Run {
    pub batches: Vec<Batch>,
    pub budget: u32,
    pub workers: usize,
    pub threads: u32,
    pub started_at: String,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub mode: Option<String>,
    /// From the launch to the engine's start, phase by phase.
    #[serde(default)]
    pub preparation: Option<crate::engine::summary::Preparation>,
    /// Why the queue paused by itself, if it did.
    #[serde(default)]
    pub breaker: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Batch {
    pub id: String,
    pub label: String,
    pub status: String,
    pub attempts: u32,
    pub duration_s: f64,
    #[serde(default)]
    pub nodes: crate::dbt::run_results::NodeCounts,
    pub error: Option<String>,
    #[serde(default)]
    pub failure_class: Option<crate::dbt::class::FailureClass>,
    #[serde(default)]
    pub failing: Vec<FailingNode>,
    #[serde(default)]
    pub history: Vec<AttemptView>,
}

/// Writes the report of the run in `state_dir`; returns where.
pub(crate) fn write(state_dir: &Path, out: Option<&Path>) -> color_eyre::Result<PathBuf> {
    let path = state_dir.join(SUMMARY_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        usage!(
            "'{}' is not a dbt-herd state dir with a summary ({e})",
            state_dir.display()
        )
    })?;
    let run: Run = serde_json::from_slice(&bytes)
        .map_err(|e| usage!("{} is unreadable ({e})", path.display()))?;
    let points = connections(state_dir);
    let html = render(
        &run,
        &state_dir.display().to_string(),
        crate::clock::now_secs(),
        &points,
    );
    let dest = out.map_or_else(|| state_dir.join("report.html"), Path::to_path_buf);
    std::fs::write(&dest, html).wrap_err_with(|| format!("cannot write {}", dest.display()))?;
    Ok(dest)
}

/// The connections at one moment, as the run logged them.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct Point {
    pub t: f64,
    pub reserved: u32,
    pub active: u32,
}

/// The run's connection log; empty when it has none (runs before it existed).
/// A torn last line (the run was killed) is left out.
fn connections(state_dir: &Path) -> Vec<Point> {
    std::fs::read_to_string(state_dir.join(crate::engine::connections::FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The whole page. `now` ends the bars of attempts still running; `points` is
/// the run's connection log (without one, the reserved connections are
/// derived from the attempts).
pub(crate) fn render(run: &Run, state_dir: &str, now: f64, points: &[Point]) -> String {
    let timeline = timeline::Timeline::of(run, now);
    page::page(run, state_dir, &timeline, points)
}

/// Text from the run, safe in HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
