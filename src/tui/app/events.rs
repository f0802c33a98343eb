//! What engine events do to the TUI's state.

use super::{App, Effect, attempt_banner};
use crate::dbt::events::Level;
use crate::engine::{BatchStatus, BatchView, Event};
use crate::tui::logbuf::{LogBuffer, ShownLine};

impl App {
    pub(super) fn on_event(&mut self, ev: Event) -> Vec<Effect> {
        match ev {
            Event::Preparing(prep) => {
                // Elapsed time counts from the launch, wherever the face joined.
                self.started_at = prep.launched_at;
                self.preparing = Some(prep);
            }
            Event::Started {
                info,
                batches,
                workers,
            } => {
                self.budget = info.budget;
                if info.plan.len() > 1 {
                    self.say(
                        Level::Info,
                        format!(
                            "the plan made {} decisions for a shared warehouse: ? shows them",
                            info.plan.len() - 1
                        ),
                    );
                }
                self.info = Some(info);
                self.logs = vec![LogBuffer::default(); batches.len()];
                self.batches = batches;
                self.workers = workers;
                self.clamp_focus();
            }
            Event::BatchChanged(v) => {
                if let Some(w) = v.worker {
                    self.last_batch.insert(w, v.index);
                }
                if v.status == BatchStatus::Running {
                    self.idle = false;
                    self.done_at = None;
                    let new_attempt = self
                        .batches
                        .get(v.index)
                        .is_some_and(|old| old.attempts != v.attempts && v.attempts > 1);
                    if new_attempt && let Some(buf) = self.logs.get_mut(v.index) {
                        buf.push(ShownLine::separator(&attempt_banner(&v)));
                    }
                }
                if let Some(slot) = self.batches.get_mut(v.index) {
                    *slot = v;
                }
            }
            Event::Log { batch, line, .. } => {
                let mut added = 0;
                if let Some(buf) = self.logs.get_mut(batch) {
                    for shown in ShownLine::split(&line) {
                        buf.push(shown);
                        added += 1;
                    }
                }
                let max = self.max_offset(batch);
                if let Some(z) = self.zoom.as_mut().filter(|z| z.batch == batch && !z.follow) {
                    // Keep the view still while reading back (until the lines
                    // being read fall out of the scrollback).
                    z.offset = (z.offset + added).min(max);
                }
            }
            Event::WorkersChanged(w) => {
                self.workers = w;
                self.clamp_focus();
            }
            Event::QueueChanged(q) => self.queue = q,
            Event::BudgetChanged(b) => {
                self.budget = b;
                if let Some(i) = self.info.as_mut() {
                    i.budget = b;
                }
                // Replaces whatever an earlier attempt at it said.
                self.say(Level::Info, format!("the budget is now {b} connections"));
            }
            Event::AtOnce(n) => self.at_once = n,
            Event::ModeChanged { mode, reason } => {
                if let Some(i) = self.info.as_mut() {
                    i.mode = mode;
                    i.mode_reason = reason;
                }
            }
            Event::QueuePaused(p) => {
                self.queue_paused = p;
                if !p {
                    self.idle = false;
                    self.breaker = None;
                }
            }
            Event::BreakerTripped(why) => {
                // Untrusted: it quotes dbt's error.
                self.breaker = Some(crate::text::sanitize::sanitize_plain(&why, 400));
            }
            Event::Notice { level, text } => self.say(level, text),
            Event::BatchesAdded(views) => {
                for v in views {
                    if v.index >= self.logs.len() {
                        self.logs.resize(v.index + 1, LogBuffer::default());
                    }
                    if v.index >= self.batches.len() {
                        self.batches.resize(v.index + 1, BatchView::default());
                    }
                    let i = v.index;
                    self.batches[i] = v;
                }
            }
            Event::Resources(r) => self.resources = r,
            Event::Idle => {
                self.idle = true;
                let t = crate::progress::Totals::of(&self.batches);
                if t.running + t.pending == 0 {
                    self.done_at.get_or_insert(self.now);
                }
            }
            Event::Stopped => return vec![Effect::Exit],
            // The pane shows the node's log line; the counts come with the batch.
            Event::NodeFinished { .. } => {}
        }
        Vec::new()
    }
}
