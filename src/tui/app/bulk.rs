//! Actions on every marked row of the table, and the y/n questions asked before
//! the actions that are hard to undo (cancelling a running batch, rerunning one
//! that succeeded).

use super::editor::Field;
use super::{App, Effect, Input, Overlay, Purpose, Screen, plural};
use crate::dbt::events::Level;
use crate::engine::{BatchStatus, Command};
use crate::tui::keymap::Action;

/// A question waiting for y or n, and what y does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    pub then: Vec<Command>,
    /// What the footer says once it is done.
    pub done: String,
}

impl App {
    pub(super) fn ask(&mut self, question: String, then: Vec<Command>, done: String) {
        self.overlay = Overlay::Confirm(Confirm {
            question,
            then,
            done,
        });
    }

    pub(super) fn confirmed(&mut self, c: Confirm) -> Vec<Effect> {
        self.say(Level::Info, c.done);
        c.then.into_iter().map(Effect::Send).collect()
    }

    /// Esc in the table: clears the filter, then the marks, then goes back to the grid.
    pub(super) fn table_back(&mut self) {
        if self.table.filter.take().is_some() {
            self.say(Level::Info, "filter cleared");
        } else if !self.table.marks.is_empty() {
            self.table.marks.clear();
            self.say(Level::Info, "marks cleared");
        } else {
            self.screen = Screen::Grid;
        }
    }

    /// `]` / `[`: the next or previous failed batch. The table selects it; the
    /// grid focuses a pane showing one, else opens the table on it.
    pub(super) fn jump_to_failed(&mut self, forward: bool) {
        if self.screen == Screen::Grid && self.zoom.is_none() {
            let n = self.workers.len();
            let failed_pane = (1..=n)
                .map(|step| {
                    if forward {
                        (self.focus + step) % n
                    } else {
                        (self.focus + n - step % n) % n
                    }
                })
                .find(|&p| {
                    self.pane_batch(p)
                        .and_then(|b| self.batches.get(b))
                        .is_some_and(|v| v.status == BatchStatus::Failed)
                });
            if let Some(p) = failed_pane {
                self.focus = p;
                return;
            }
        }
        if self.table.filter.is_some() && self.next_failed_row(forward).is_none() {
            // The failure may be hidden by the filter: look among every row.
            self.table.filter = None;
        }
        match self.next_failed_row(forward) {
            Some(b) => {
                self.selected = b;
                if self.zoom.is_none() {
                    self.screen = Screen::Table;
                }
            }
            None => self.say(Level::Info, "no batch has failed"),
        }
    }

    /// r, c, e, s, K, J on every marked row: each row the action applies to
    /// gets it, the others are counted and named in the footer.
    pub(super) fn on_marked(&mut self, action: Action) -> Vec<Effect> {
        let marked: Vec<usize> = self
            .table
            .marks
            .iter()
            .copied()
            .filter(|&b| b < self.batches.len())
            .collect();
        let status = |b: usize| self.batches[b].status;
        let total = marked.len();
        let of = |n: usize, verb: &str| {
            let skipped = total - n;
            let rest = if skipped == 0 {
                String::new()
            } else {
                format!(" ({skipped} did not apply)")
            };
            format!("{verb} {n} of {total} marked{rest}")
        };
        let editable = |s: BatchStatus| {
            matches!(
                s,
                BatchStatus::Pending | BatchStatus::Failed | BatchStatus::Cancelled
            )
        };
        let (commands, done): (Vec<Command>, String) = match action {
            Action::Retry => {
                let retry: Vec<usize> = marked
                    .iter()
                    .copied()
                    .filter(|&b| matches!(status(b), BatchStatus::Failed | BatchStatus::Cancelled))
                    .collect();
                let rerun: Vec<usize> = marked
                    .iter()
                    .copied()
                    .filter(|&b| status(b) == BatchStatus::Succeeded)
                    .collect();
                let n = retry.len() + rerun.len();
                let commands: Vec<Command> = retry
                    .iter()
                    .map(|&b| Command::Retry(b))
                    .chain(rerun.iter().map(|&b| Command::Rerun(b)))
                    .collect();
                if !rerun.is_empty() {
                    self.ask(
                        format!(
                            "retry {} and rerun {} that succeeded? (y / n)",
                            plural(retry.len(), "failed batch", "failed batches"),
                            rerun.len()
                        ),
                        commands,
                        of(n, "queued"),
                    );
                    self.table.marks.clear();
                    return Vec::new();
                }
                (commands, of(n, "retrying"))
            }
            Action::Cancel => {
                let targets: Vec<usize> = marked
                    .iter()
                    .copied()
                    .filter(|&b| matches!(status(b), BatchStatus::Running | BatchStatus::Pending))
                    .collect();
                let running = targets
                    .iter()
                    .filter(|&&b| status(b) == BatchStatus::Running)
                    .count();
                let commands: Vec<Command> = targets.iter().map(|&b| Command::Cancel(b)).collect();
                if running > 0 {
                    self.ask(
                        format!(
                            "cancel {} ({running} running)? (y / n)",
                            plural(targets.len(), "marked batch", "marked batches")
                        ),
                        commands,
                        of(targets.len(), "cancelling"),
                    );
                    self.table.marks.clear();
                    return Vec::new();
                }
                (commands, of(targets.len(), "cancelled"))
            }
            Action::Split => {
                let targets: Vec<usize> = marked
                    .iter()
                    .copied()
                    .filter(|&b| editable(status(b)))
                    .collect();
                let n = targets.len();
                (
                    targets.into_iter().map(Command::SplitBatch).collect(),
                    of(n, "splitting"),
                )
            }
            Action::MoveUp | Action::MoveDown => {
                let up = action == Action::MoveUp;
                // In queue order, the front one first when moving up (so that
                // neighbours do not swap with each other), the back one first
                // when moving down.
                let mut targets: Vec<usize> = self
                    .queue
                    .iter()
                    .copied()
                    .filter(|b| marked.contains(b))
                    .collect();
                if !up {
                    targets.reverse();
                }
                let n = targets.len();
                (
                    targets
                        .into_iter()
                        .map(|batch| Command::MoveBatch { batch, up })
                        .collect(),
                    of(n, if up { "moved up" } else { "moved down" }),
                )
            }
            Action::EditBatch => {
                let targets: Vec<usize> = marked
                    .iter()
                    .copied()
                    .filter(|&b| editable(status(b)))
                    .collect();
                let Some(&first) = targets
                    .iter()
                    .find(|&&b| b == self.selected)
                    .or(targets.first())
                else {
                    self.say(Level::Info, of(0, "editing"));
                    return Vec::new();
                };
                let v = &self.batches[first];
                let select = v.select.clone().unwrap_or_default();
                let vars = v.vars.clone();
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::EditMarked {
                        batches: targets,
                        select: select.clone(),
                        vars: vars.clone(),
                    },
                    fields: vec![Field::new("select", select), Field::new("vars", vars)],
                    active: 0,
                });
                return Vec::new();
            }
            _ => return Vec::new(),
        };
        self.table.marks.clear();
        self.say(Level::Info, done);
        commands.into_iter().map(Effect::Send).collect()
    }
}
