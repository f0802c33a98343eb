//! What keys do outside the editors and the zoomed log: the grid, the table,
//! and the actions on batches and workers.

use crossterm::event::{KeyCode, KeyEvent};

use super::{App, Effect, Input, Overlay, Purpose, Screen, Zoom, editor::Field};
use crate::dbt::events::Level;
use crate::engine::{BatchStatus, Command};
use crate::tui::keymap::{Action, action_for};
use crate::tui::layout::{body_area, grid_shape};

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let action = action_for(&key);
        // Ctrl-C and Ctrl-Z work everywhere, even in an editor.
        match action {
            Some(Action::Interrupt) => return self.interrupt(libc::SIGINT),
            Some(Action::Suspend) => return vec![Effect::Suspend],
            _ => {}
        }
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            Overlay::Input(input) => return self.on_input_key(input, key),
            Overlay::ConfirmQuit => {
                return match key.code {
                    KeyCode::Char('y' | 'Y') => self.quit_now(),
                    KeyCode::Char('d' | 'D') => self.detach(),
                    _ => Vec::new(),
                };
            }
            Overlay::Confirm(c) => {
                if let KeyCode::Char('y' | 'Y') = key.code {
                    return self.confirmed(c);
                }
                self.say(Level::Info, "nothing done");
                return Vec::new();
            }
            Overlay::Help(scroll) => {
                // Scrolling keys scroll; the closing keys close; others keep it open.
                let scroll = match action {
                    Some(Action::Back | Action::Help | Action::Quit) => return Vec::new(),
                    Some(Action::Up) => scroll.saturating_sub(1),
                    Some(Action::Down) => scroll.saturating_add(1),
                    Some(Action::PageUp) => scroll.saturating_sub(10),
                    Some(Action::PageDown) => scroll.saturating_add(10),
                    Some(Action::Top) => 0,
                    Some(Action::Bottom) => u16::MAX,
                    _ => scroll,
                };
                self.overlay = Overlay::Help(scroll);
                return Vec::new();
            }
            Overlay::Command { batch, attempt } => {
                // ← → step through the batch's attempts; any other key closes.
                let last = self
                    .batches
                    .get(batch)
                    .map_or(0, |v| v.history.len().saturating_sub(1));
                let attempt = match action {
                    Some(Action::Left) => attempt.saturating_sub(1),
                    Some(Action::Right) => (attempt + 1).min(last),
                    _ => return Vec::new(),
                };
                self.overlay = Overlay::Command { batch, attempt };
                return Vec::new();
            }
            Overlay::None => {}
        }
        let Some(action) = action else {
            return Vec::new();
        };
        if self.zoom.is_some()
            && let Some(fx) = self.on_zoom_key(action)
        {
            return fx;
        }
        self.on_action(action)
    }

    pub(super) fn quit_now(&mut self) -> Vec<Effect> {
        if self.stopping {
            return Vec::new();
        }
        self.stopping = true;
        let running = self.running();
        if running > 0 {
            self.say(
                Level::Warn,
                format!(
                    "{} being stopped before quitting…",
                    super::plural(running, "running batch is", "running batches are")
                ),
            );
        }
        vec![Effect::Send(Command::Shutdown { force: false })]
    }

    /// Leaves the run going, if it lives in another process.
    pub(super) fn detach(&mut self) -> Vec<Effect> {
        if self.detachable {
            return vec![Effect::Detach];
        }
        self.say(
            Level::Warn,
            "this run lives in this terminal and cannot detach (dbt-herd run can)",
        );
        Vec::new()
    }

    pub(super) fn on_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Detach => return self.detach(),
            Action::Quit if self.read_only => return vec![Effect::Detach],
            Action::Quit => {
                if self.stopping {
                    return Vec::new();
                }
                if self.running() > 0 {
                    self.overlay = Overlay::ConfirmQuit;
                    return Vec::new();
                }
                return self.quit_now();
            }
            Action::Help => self.overlay = Overlay::Help(0),
            Action::Back if self.screen == Screen::Table => self.table_back(),
            Action::Back if self.screen == Screen::Timeline => self.screen = Screen::Grid,
            Action::Back => self.notice = None,
            Action::Up | Action::Down | Action::Left | Action::Right => self.move_focus(action),
            Action::PageUp | Action::PageDown if self.screen == Screen::Table => {
                let page = isize::try_from(crate::tui::layout::table_rows(self.size))
                    .unwrap_or(1)
                    .max(1);
                self.move_selection(if action == Action::PageUp {
                    -page
                } else {
                    page
                });
            }
            Action::Top if self.screen == Screen::Table => self.select_edge(false),
            Action::Bottom if self.screen == Screen::Table => self.select_edge(true),
            Action::Search if self.screen == Screen::Table => {
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::Filter,
                    fields: vec![Field::new(
                        "filter",
                        self.table.filter.clone().unwrap_or_default(),
                    )],
                    active: 0,
                });
            }
            Action::Sort if self.screen == Screen::Table => {
                self.table.sort = self.table.sort.next();
                self.say(
                    Level::Info,
                    format!("sorted by {} (o: next)", self.table.sort.word()),
                );
            }
            Action::Mark if self.screen == Screen::Table => self.toggle_mark(),
            Action::MarkVisible if self.screen == Screen::Table => {
                let n = self.mark_visible();
                let text = if n == 0 {
                    "unmarked the rows shown".to_string()
                } else {
                    format!(
                        "{} marked: r c e s K J act on them, Esc unmarks",
                        super::plural(self.table.marks.len(), "row", "rows")
                    )
                };
                self.say(Level::Info, text);
            }
            Action::Mark | Action::MarkVisible | Action::Sort => {
                self.say(
                    Level::Info,
                    "Tab opens the batch table, where rows can be marked and sorted",
                );
            }
            Action::NextFailed | Action::PrevFailed => {
                self.jump_to_failed(action == Action::NextFailed);
            }
            Action::ShowCommand => self.show_command(),
            Action::OpenLog => return self.open_log(),
            Action::OpenSql => return self.open_sql(),
            Action::Zoom => match self.target_batch() {
                Some(batch) => {
                    self.zoom = Some(Zoom::new(batch));
                }
                None => self.say(Level::Info, "this worker has not run a batch yet"),
            },
            Action::Timeline => {
                self.screen = if self.screen == Screen::Timeline {
                    Screen::Grid
                } else {
                    Screen::Timeline
                };
            }
            Action::ToggleTable => {
                self.screen = match self.screen {
                    Screen::Grid | Screen::Timeline => {
                        if let Some(b) = self.pane_batch(self.focus) {
                            self.selected = b;
                        }
                        Screen::Table
                    }
                    Screen::Table => Screen::Grid,
                };
            }
            Action::PauseWorker => return self.toggle_worker_pause(),
            Action::PauseQueue => {
                return vec![Effect::Send(if self.queue_paused {
                    Command::ResumeQueue
                } else {
                    Command::PauseQueue
                })];
            }
            Action::Cancel
            | Action::Retry
            | Action::EditBatch
            | Action::Split
            | Action::MoveUp
            | Action::MoveDown => {
                if self.screen == Screen::Table && !self.table.marks.is_empty() {
                    return self.on_marked(action);
                }
                return self.on_batch(action);
            }
            Action::RetryAllFailed => {
                let failed = self
                    .batches
                    .iter()
                    .filter(|b| matches!(b.status, BatchStatus::Failed))
                    .count();
                if failed == 0 {
                    self.say(Level::Info, "no failed batch to retry");
                    return Vec::new();
                }
                self.say(Level::Info, format!("retrying {failed} failed batches"));
                return vec![Effect::Send(Command::RetryAllFailed)];
            }
            Action::MoreWorkers => {
                return vec![Effect::Send(Command::ChangeWorkers { by: 1 })];
            }
            Action::FewerWorkers => {
                let n = self.active_workers();
                if n <= 1 {
                    self.say(Level::Info, "one worker is the minimum; P pauses the queue");
                    return Vec::new();
                }
                return vec![Effect::Send(Command::ChangeWorkers { by: -1 })];
            }
            Action::EditBudget => {
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::Budget,
                    fields: vec![Field::new("budget", self.budget.to_string())],
                    active: 0,
                });
            }
            _ => {}
        }
        Vec::new()
    }

    pub(super) fn toggle_worker_pause(&mut self) -> Vec<Effect> {
        let pane = match self.screen {
            Screen::Grid if self.zoom.is_none() => Some(self.focus),
            _ => self.target_batch().and_then(|b| {
                let w = self.batches.get(b)?.worker?;
                self.workers.iter().position(|x| x.number == w)
            }),
        };
        let Some(w) = pane.and_then(|p| self.workers.get(p)) else {
            self.say(Level::Info, "p pauses a worker: select a running batch");
            return Vec::new();
        };
        vec![Effect::Send(if w.paused {
            Command::ResumeWorker(w.number)
        } else {
            Command::PauseWorker(w.number)
        })]
    }

    /// Actions on one batch, checked here so the user hears why one does not apply.
    pub(super) fn on_batch(&mut self, action: Action) -> Vec<Effect> {
        let Some(b) = self.target_batch() else {
            self.say(Level::Info, "no batch selected");
            return Vec::new();
        };
        let Some(view) = self.batches.get(b) else {
            return Vec::new();
        };
        let status = view.status;
        let label = self.label(b);
        let editable = matches!(
            status,
            BatchStatus::Pending | BatchStatus::Failed | BatchStatus::Cancelled
        );
        match action {
            Action::Cancel if status == BatchStatus::Running => {
                self.ask(
                    format!("cancel {label}, which is running? (y / n)"),
                    vec![Command::Cancel(b)],
                    format!("cancelling {label}"),
                );
                Vec::new()
            }
            Action::Cancel if status == BatchStatus::Pending => {
                self.say(
                    Level::Info,
                    format!("{label} will not run (r queues it again)"),
                );
                vec![Effect::Send(Command::Cancel(b))]
            }
            Action::Cancel => {
                self.say(Level::Info, format!("{label} is not running or pending"));
                Vec::new()
            }
            Action::Retry if matches!(status, BatchStatus::Failed | BatchStatus::Cancelled) => {
                self.say(
                    Level::Info,
                    format!("{label} is queued again (dbt retry, or a full run if that has nothing to do)"),
                );
                vec![Effect::Send(Command::Retry(b))]
            }
            Action::Retry if status == BatchStatus::Succeeded => {
                self.ask(
                    format!("rerun {label}, which succeeded? (y / n)"),
                    vec![Command::Rerun(b)],
                    format!("{label} is queued to run again in full"),
                );
                Vec::new()
            }
            Action::Retry => {
                self.say(
                    Level::Info,
                    format!("{label} has not failed: nothing to retry"),
                );
                Vec::new()
            }
            Action::EditBatch if editable => {
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::EditBatch(b),
                    fields: vec![
                        Field::new("select", view.select.clone().unwrap_or_default()),
                        Field::new("vars", view.vars.clone()),
                    ],
                    active: 0,
                });
                Vec::new()
            }
            Action::Split if editable => {
                self.say(Level::Info, format!("listing the models of {label}…"));
                vec![Effect::Send(Command::SplitBatch(b))]
            }
            Action::EditBatch | Action::Split => {
                self.say(
                    Level::Info,
                    format!("only a pending or failed batch can be changed; {label} is not"),
                );
                Vec::new()
            }
            Action::MoveUp | Action::MoveDown if status == BatchStatus::Pending => {
                vec![Effect::Send(Command::MoveBatch {
                    batch: b,
                    up: action == Action::MoveUp,
                })]
            }
            Action::MoveUp | Action::MoveDown => {
                self.say(
                    Level::Info,
                    format!("only a pending batch can move in the queue; {label} is not"),
                );
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn move_focus(&mut self, action: Action) {
        match self.screen {
            Screen::Table => match action {
                Action::Up => self.move_selection(-1),
                Action::Down => self.move_selection(1),
                _ => {}
            },
            // The timeline has nothing to move through.
            Screen::Timeline => {}
            Screen::Grid => {
                let n = self.workers.len();
                if n == 0 {
                    return;
                }
                let shape = grid_shape(n, body_area(self.size.0, self.size.1));
                let (i, cols) = (self.focus, shape.cols);
                self.focus = match action {
                    Action::Left if i % cols > 0 => i - 1,
                    Action::Right if i % cols + 1 < cols && i + 1 < n => i + 1,
                    Action::Up if i >= cols => i - cols,
                    Action::Down if i + cols < n => i + cols,
                    _ => i,
                };
            }
        }
    }
}
