//! `--headless --json`: one JSON object per line on stdout for each thing a
//! script needs to follow a run. Every object has `schema_version`, `ts` (RFC
//! 3339) and `event`; the README's table documents each kind's fields, and a
//! test holds this code to that table.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Value, json};

use crate::engine::{BatchStatus, BatchView, Event, PrepView};
use crate::text::sanitize::sanitize_plain;

/// Bumped when a field changes meaning or goes away (new fields do not bump it).
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Untrusted text, made inert and bounded (a script may print it).
fn text(s: &str) -> String {
    sanitize_plain(s, 4096)
}

/// Turns engine events into JSON lines.
pub(crate) struct JsonEvents<W: Write> {
    out: W,
    /// Each batch's id and last status, by index.
    batches: HashMap<usize, (String, BatchStatus)>,
    /// Preparation phases told as begun, and as ended.
    phases: (usize, usize),
}

impl<W: Write> JsonEvents<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            batches: HashMap::new(),
            phases: (0, 0),
        }
    }

    fn emit(&mut self, event: &str, mut fields: Value) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("schema_version".into(), SCHEMA_VERSION.into());
            map.insert("ts".into(), chrono::Utc::now().to_rfc3339().into());
            map.insert("event".into(), event.into());
        }
        let _ = writeln!(self.out, "{fields}");
        let _ = self.out.flush();
    }

    fn id(&self, batch: usize) -> String {
        self.batches
            .get(&batch)
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Preparing(prep) => self.preparing(prep),
            Event::Started { info, batches, .. } => {
                self.emit(
                    "run_started",
                    json!({
                        "state_dir": text(&info.state_dir),
                        "command": info.command,
                        "workers": info.workers,
                        "threads": info.threads,
                        "budget": info.budget,
                        "mode": info.mode,
                        "batches": batches.iter().map(|b| json!({
                            "batch": text(&b.id), "label": text(&b.label),
                            "after": b.after.iter().filter_map(|&i| batches.get(i)).map(|a| text(&a.id)).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    }),
                );
                for b in batches {
                    self.batches.insert(b.index, (b.id.clone(), b.status));
                    if b.status == BatchStatus::Pending {
                        self.queued(b);
                    }
                }
            }
            Event::BatchesAdded(added) => {
                for b in added {
                    self.batches.insert(b.index, (b.id.clone(), b.status));
                    self.queued(b);
                }
            }
            Event::BatchChanged(b) => self.changed(b),
            Event::NodeFinished {
                batch,
                attempt,
                node,
                status,
                execution_time_s,
            } => {
                let id = self.id(*batch);
                self.emit(
                    "node_finished",
                    json!({
                        "batch": text(&id), "attempt": attempt, "node": text(node),
                        "status": text(status), "execution_time_s": execution_time_s,
                    }),
                );
            }
            Event::BudgetChanged(budget) => {
                self.emit("budget_changed", json!({ "budget": budget }));
            }
            _ => {}
        }
    }

    /// A `preparing` line when a phase begins, and again when it ends (with its `seconds`).
    fn preparing(&mut self, prep: &PrepView) {
        for (i, p) in prep.phases.iter().enumerate() {
            let begun = i < self.phases.0;
            let ended = i < self.phases.1;
            if begun && (ended || p.seconds.is_none()) {
                continue;
            }
            self.emit(
                "preparing",
                json!({
                    "phase": p.phase, "doing": text(&p.doing),
                    "began_s": p.began_s, "seconds": p.seconds,
                }),
            );
            self.phases.0 = self.phases.0.max(i + 1);
            if p.seconds.is_some() {
                self.phases.1 = self.phases.1.max(i + 1);
            }
        }
    }

    fn queued(&mut self, b: &BatchView) {
        self.emit(
            "batch_queued",
            json!({ "batch": text(&b.id), "label": text(&b.label), "attempts": b.attempts }),
        );
    }

    fn changed(&mut self, b: &BatchView) {
        let before = self
            .batches
            .insert(b.index, (b.id.clone(), b.status))
            .map(|(_, s)| s);
        if before == Some(b.status) {
            return;
        }
        match b.status {
            BatchStatus::Pending => self.queued(b),
            BatchStatus::Running => self.emit(
                "batch_started",
                json!({
                    "batch": text(&b.id), "attempt": b.attempts, "worker": b.worker,
                    "kind": b.attempt_kind.map(|k| format!("{k:?}").to_lowercase()),
                }),
            ),
            BatchStatus::Succeeded
            | BatchStatus::Failed
            | BatchStatus::Cancelled
            | BatchStatus::Split => self.emit(
                "batch_finished",
                json!({
                    "batch": text(&b.id),
                    "status": crate::engine::SummaryStatus::from(b.status),
                    "attempt": b.attempts,
                    "duration_s": (b.duration_s * 1000.0).round() / 1000.0,
                    "nodes": b.counts,
                    "error": b.error.as_deref().map(text),
                }),
            ),
        }
    }

    /// The last line: the run's exit status and its batches by outcome.
    pub fn finished(
        &mut self,
        exit_code: i32,
        summary: &crate::engine::summary::Summary,
        path: Option<&std::path::Path>,
    ) {
        use crate::engine::SummaryStatus as S;
        self.emit(
            "run_finished",
            json!({
                "exit_code": exit_code,
                "succeeded": summary.count(S::Succeeded),
                "failed": summary.count(S::Failed),
                "cancelled": summary.count(S::Cancelled),
                "not_run": summary.count(S::Pending),
                "summary": path.map(|p| text(&p.display().to_string())),
            }),
        );
    }
}
