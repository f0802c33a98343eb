//! The TUI's state and its one pure transition: `update(msg)` turns keys,
//! clicks, engine events and clock ticks into a new state plus effects (engine
//! commands, suspend, a pager or editor to open, exit). Nothing here draws,
//! spawns or touches a file, so all of it is unit-tested.
//!
//! Split by concern: `events` (what engine events do), `keys` (what keys do in
//! the grid and the table), `table` (its filter, sort and marks), `bulk`
//! (actions on marked rows and the y/n questions), `mouse`, `zoom` (the zoomed
//! log and its search), `editor` (the one-line editors), `open` (a batch's
//! command, log and SQL); this file holds the state.

mod bulk;
mod editor;
mod events;
mod keys;
mod mouse;
mod open;
mod table;
mod zoom;

use std::collections::BTreeMap;

use std::path::PathBuf;

use crossterm::event::{KeyEvent, KeyEventKind, MouseEvent};

pub(crate) use bulk::Confirm;
pub(crate) use editor::{Input, Purpose};
pub(crate) use table::{SortKey, TableView};
pub(crate) use zoom::Zoom;

use crate::dbt::events::Level;
use crate::engine::messages::{Wait, wait_of};
use crate::engine::{
    BatchStatus, BatchView, Command, Event, PrepView, Resources, RunInfo, WorkerView,
};
use crate::text::sanitize::sanitize_plain;
use crate::tui::logbuf::LogBuffer;

/// Longest notice kept for the footer.
const MAX_NOTICE: usize = 300;

// Engine events dominate the size; a Msg lives for one `update` call, so boxing
// would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    /// A click or wheel turn, and when (to tell a double click).
    Mouse {
        event: MouseEvent,
        at: f64,
    },
    Engine(Event),
    /// The wall clock, in Unix seconds (time only moves through this message).
    Tick(f64),
    Resize(u16, u16),
    /// SIGINT, SIGTERM or SIGHUP from outside, or the terminal went away (SIGHUP).
    Signal(i32),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(Command),
    /// Give the terminal back and stop the process until `fg` (Ctrl-Z).
    Suspend,
    /// Give the terminal to the user's pager on these files, then take it back.
    Page(Vec<PathBuf>),
    /// Give the terminal to the user's editor on this file, then take it back.
    Edit(PathBuf),
    /// The engine has stopped: leave the TUI.
    Exit,
    /// Leave the TUI; the run goes on (a run served to this TUI over its socket).
    Detach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Grid,
    Table,
    /// The run so far in time: a lane per worker, a bar per attempt.
    Timeline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    /// Help, scrolled down this many lines.
    Help(u16),
    ConfirmQuit,
    /// A y/n question before an action that is hard to undo.
    Confirm(Confirm),
    Input(Input),
    /// A batch's attempt's command, to read or copy (index into its history).
    Command {
        batch: usize,
        attempt: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
    /// When it was said: it goes away after a while, errors last longer.
    pub at: f64,
}

impl Notice {
    fn lasts(&self) -> f64 {
        match self.level {
            Level::Error => 30.0,
            Level::Warn => 15.0,
            _ => 8.0,
        }
    }
}

pub(crate) use crate::text::plural::plural;

/// The line that separates one attempt's output from the next in a batch's log.
fn attempt_banner(v: &BatchView) -> String {
    let how = match v.attempt_kind {
        Some(crate::dbt::argv::AttemptKind::Retry) => "dbt retry",
        _ => "full run",
    };
    let worker = v
        .worker
        .map_or_else(String::new, |w| format!(" on worker {w}"));
    format!("── attempt {} ({how}){worker} ──", v.attempts)
}

#[derive(Debug, Clone)]
pub struct App {
    pub info: Option<RunInfo>,
    pub batches: Vec<BatchView>,
    pub workers: Vec<WorkerView>,
    /// Pending batches in dispatch order.
    pub queue: Vec<usize>,
    pub queue_paused: bool,
    pub budget: u32,
    pub resources: Resources,
    pub logs: Vec<LogBuffer>,
    /// The batch a worker ran last, so an idle pane still shows what just ended.
    pub last_batch: BTreeMap<usize, usize>,
    pub notice: Option<Notice>,
    pub screen: Screen,
    pub overlay: Overlay,
    pub zoom: Option<Zoom>,
    /// Focused pane (index into `workers`).
    pub focus: usize,
    /// Selected row of the batch table (a batch index).
    pub selected: usize,
    /// The table's filter, sort and marks.
    pub table: TableView,
    /// When and where the last mouse click was, to tell a double click.
    pub last_click: Option<(f64, u16, u16)>,
    pub now: f64,
    pub started_at: f64,
    pub size: (u16, u16),
    /// Nothing runs and nothing will start without a command.
    pub idle: bool,
    /// A shutdown was asked for (quit, Ctrl-C or a signal); waiting for the engine.
    pub stopping: bool,
    /// The signal that ended the run, for the exit status.
    pub interrupted: Option<i32>,
    /// The run lives in another process, so leaving the TUI can leave it running.
    pub detachable: bool,
    /// Only watching: `q` leaves at once, and no key changes the run.
    pub read_only: bool,
    /// When the last batch ended, if every batch has: the elapsed clock stops.
    pub done_at: Option<f64>,
    /// The run's preparation, as last told.
    pub preparing: Option<PrepView>,
    /// Batches at once the warehouse allows, when it refused more.
    pub at_once: Option<usize>,
    /// Why the circuit breaker paused the queue, while it stays paused.
    pub breaker: Option<String>,
}

impl App {
    pub fn new(now: f64, size: (u16, u16)) -> Self {
        Self {
            info: None,
            batches: Vec::new(),
            workers: Vec::new(),
            queue: Vec::new(),
            queue_paused: false,
            budget: 0,
            resources: Resources::default(),
            logs: Vec::new(),
            last_batch: BTreeMap::new(),
            notice: None,
            screen: Screen::Grid,
            overlay: Overlay::None,
            zoom: None,
            focus: 0,
            selected: 0,
            table: TableView::default(),
            last_click: None,
            now,
            started_at: now,
            size,
            idle: false,
            stopping: false,
            interrupted: None,
            detachable: false,
            read_only: false,
            done_at: None,
            preparing: None,
            at_once: None,
            breaker: None,
        }
    }

    /// The batch a pane shows: the worker's current one, else the one it ran last.
    pub fn pane_batch(&self, pane: usize) -> Option<usize> {
        let w = self.workers.get(pane)?;
        w.batch.or_else(|| {
            // Not a batch that another worker has taken since.
            self.last_batch.get(&w.number).copied().filter(|&b| {
                self.batches
                    .get(b)
                    .and_then(|v| v.worker)
                    .is_none_or(|other| other == w.number)
            })
        })
    }

    /// The batch keys act on: the zoomed one, the table's selection, or the focused pane's.
    pub fn target_batch(&self) -> Option<usize> {
        if let Some(z) = &self.zoom {
            return Some(z.batch);
        }
        match self.screen {
            Screen::Table => self.selected_row(),
            Screen::Grid | Screen::Timeline => self.pane_batch(self.focus),
        }
    }

    pub fn running(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.status == BatchStatus::Running)
            .count()
    }

    /// Worker slots that take batches (a retiring slot only finishes its batch).
    pub fn active_workers(&self) -> usize {
        self.workers.iter().filter(|w| !w.retiring).count()
    }

    /// How many batches can run at once: the workers taking batches, as far as
    /// the budget lets them.
    pub fn parallelism(&self) -> usize {
        let threads = self.info.as_ref().map_or(1, |i| i.threads).max(1);
        let by_budget = usize::try_from(self.budget / threads).unwrap_or(usize::MAX);
        let free = self
            .workers
            .iter()
            .filter(|w| !w.retiring && !w.paused)
            .count();
        free.min(by_budget).max(1)
    }

    /// Connections reserved: the threads of running batches.
    pub fn reserved(&self) -> u32 {
        let threads = self.info.as_ref().map_or(1, |i| i.threads);
        u32::try_from(self.running())
            .unwrap_or(u32::MAX)
            .saturating_mul(threads)
    }

    /// Idle workers that would take a batch now but for the budget: the
    /// budget has no room for one more batch's threads while batches that
    /// could start wait.
    pub fn held_by_budget(&self) -> usize {
        let threads = self.info.as_ref().map_or(1, |i| i.threads);
        if self.queue_paused || self.reserved().saturating_add(threads) <= self.budget {
            return 0;
        }
        let idle = self
            .workers
            .iter()
            .filter(|w| !w.paused && !w.retiring && w.batch.is_none())
            .count();
        let startable = self
            .queue
            .iter()
            .filter(|&&b| self.wait(b).is_none())
            .count();
        idle.min(startable)
    }

    /// Why a pending batch cannot start yet, if it cannot.
    pub fn wait(&self, b: usize) -> Option<Wait> {
        wait_of(&self.batches, b)
    }

    /// "on shared" / "on 2024-03-01 (writes \"db\".\"s\".\"t\")", for people.
    pub fn wait_text(&self, w: &Wait) -> String {
        let mut text = format!("on {}", self.label(w.on));
        if w.blocked {
            text.push_str(", which failed: retry it");
        }
        if let Some(rel) = &w.relation {
            text.push_str(&format!(" (both write {})", sanitize_plain(rel, 80)));
        }
        text
    }

    /// Connections in use now: nodes executing, per dbt's events.
    pub fn active_connections(&self) -> u32 {
        self.batches
            .iter()
            .filter(|b| b.status == BatchStatus::Running)
            .map(|b| b.executing)
            .sum()
    }

    fn say(&mut self, level: Level, text: impl AsRef<str>) {
        self.notice = Some(Notice {
            level,
            text: sanitize_plain(text.as_ref(), MAX_NOTICE),
            at: self.now,
        });
    }

    fn label(&self, b: usize) -> String {
        self.batches
            .get(b)
            .map(|v| sanitize_plain(&v.label, 80))
            .unwrap_or_default()
    }

    /// Lines a page scroll moves in the zoomed log: about what the view shows.
    fn page(&self) -> usize {
        let pinned = self
            .zoom
            .as_ref()
            .and_then(|z| self.batches.get(z.batch))
            .map_or(0, crate::tui::layout::pinned_lines);
        crate::tui::layout::zoom_log_rows(self.size, pinned)
    }

    /// The furthest the zoomed log can scroll back while the view stays full:
    /// its first line at the top of the rows the log has (below the pinned
    /// failure of a failed batch).
    fn max_offset(&self, batch: usize) -> usize {
        let len = self.logs.get(batch).map_or(0, LogBuffer::len);
        len.saturating_sub(self.page())
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        let moves_rows = !matches!(msg, Msg::Engine(_));
        let fx = self.step(msg);
        if moves_rows {
            self.keep_selection_in_view();
        }
        fx
    }

    fn step(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            Msg::Key(_) => Vec::new(),
            Msg::Mouse { event, at } => self.on_mouse(event, at),
            Msg::Engine(ev) => self.on_event(ev),
            Msg::Tick(now) => {
                self.now = now;
                if self
                    .notice
                    .as_ref()
                    .is_some_and(|n| now - n.at >= n.lasts())
                {
                    self.notice = None;
                }
                Vec::new()
            }
            Msg::Resize(w, h) => {
                self.size = (w, h);
                self.clamp_focus();
                Vec::new()
            }
            Msg::Signal(sig) => self.interrupt(sig),
        }
    }

    /// Stop everything: first with the stop ladder, a second time with SIGKILL.
    /// A hang-up never escalates: dbt must get its SIGINT to cancel warehouse
    /// queries, and a lost terminal is often reported more than once.
    fn interrupt(&mut self, sig: i32) -> Vec<Effect> {
        if sig == libc::SIGHUP && self.stopping {
            self.interrupted.get_or_insert(sig);
            return Vec::new();
        }
        let force = self.stopping;
        self.interrupted.get_or_insert(sig);
        self.stopping = true;
        self.overlay = Overlay::None;
        if force {
            self.say(Level::Warn, "killing every dbt process group now");
        } else {
            self.say(
                Level::Warn,
                format!(
                    "{} get SIGINT, then SIGTERM, then SIGKILL; Ctrl-C again kills now",
                    plural(self.running(), "running batch", "running batches")
                ),
            );
        }
        vec![Effect::Send(Command::Shutdown { force })]
    }

    pub(super) fn clamp_focus(&mut self) {
        self.focus = self.focus.min(self.workers.len().saturating_sub(1));
        self.selected = self.selected.min(self.batches.len().saturating_sub(1));
    }
}

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
