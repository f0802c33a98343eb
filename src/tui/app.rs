//! The TUI's state and its one pure transition: `update(msg)` turns keys, engine
//! events and clock ticks into a new state plus effects (engine commands, suspend,
//! exit). Nothing here draws, spawns or touches a file, so all of it is unit-tested.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::keymap::{Action, action_for};
use super::layout::{body_area, grid_shape};
use super::logbuf::{LogBuffer, ShownLine};
use crate::dbt::events::Level;
use crate::engine::{BatchStatus, BatchView, Command, Event, Resources, RunInfo, WorkerView};
use crate::text::sanitize::sanitize_plain;

/// Longest notice kept for the footer.
const MAX_NOTICE: usize = 300;

// Engine events dominate the size; a Msg lives for one `update` call, so boxing
// would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
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
    /// The engine has stopped: leave the TUI.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Grid,
    Table,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Budget,
    EditBatch(usize),
    Search,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Cursor position in chars.
    pub cursor: usize,
}

impl Field {
    fn new(label: &'static str, value: String) -> Self {
        let cursor = value.chars().count();
        Self {
            label,
            value,
            cursor,
        }
    }

    fn byte_at(&self, char_pos: usize) -> usize {
        self.value
            .char_indices()
            .nth(char_pos)
            .map_or(self.value.len(), |(i, _)| i)
    }

    fn edit(&mut self, key: &KeyEvent) {
        let len = self.value.chars().count();
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                let at = self.byte_at(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Char('u') => {
                self.value.clear();
                self.cursor = 0;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.value.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => {}
        }
    }
}

/// A one-line editor with one or more fields (Tab moves between them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub purpose: Purpose,
    pub fields: Vec<Field>,
    pub active: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
    Input(Input),
}

/// A batch's log on the whole screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zoom {
    pub batch: usize,
    /// Lines between the newest line and the bottom of the view.
    pub offset: usize,
    /// Stick to the newest line as output arrives.
    pub follow: bool,
    /// Lower-cased search text.
    pub query: Option<String>,
    /// Sequence number of the current match.
    pub matched: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

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
    pub now: f64,
    pub started_at: f64,
    pub size: (u16, u16),
    /// Nothing runs and nothing will start without a command.
    pub idle: bool,
    /// A shutdown was asked for (quit, Ctrl-C or a signal); waiting for the engine.
    pub stopping: bool,
    /// The signal that ended the run, for the exit status.
    pub interrupted: Option<i32>,
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
            now,
            started_at: now,
            size,
            idle: false,
            stopping: false,
            interrupted: None,
        }
    }

    /// The batch a pane shows: the worker's current one, else the one it ran last.
    pub fn pane_batch(&self, pane: usize) -> Option<usize> {
        let w = self.workers.get(pane)?;
        w.batch.or_else(|| self.last_batch.get(&w.number).copied())
    }

    /// The batch keys act on: the zoomed one, the table's selection, or the focused pane's.
    pub fn target_batch(&self) -> Option<usize> {
        if let Some(z) = &self.zoom {
            return Some(z.batch);
        }
        match self.screen {
            Screen::Table => (self.selected < self.batches.len()).then_some(self.selected),
            Screen::Grid => self.pane_batch(self.focus),
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

    /// Connections reserved: the threads of running batches.
    pub fn reserved(&self) -> u32 {
        let threads = self.info.as_ref().map_or(1, |i| i.threads);
        self.running() as u32 * threads
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
        usize::from(self.size.1.saturating_sub(6)).max(1)
    }

    /// The furthest the zoomed log can scroll back while the view stays full.
    fn max_offset(&self, batch: usize) -> usize {
        let len = self.logs.get(batch).map_or(0, LogBuffer::len);
        len.saturating_sub(self.page())
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            Msg::Key(_) => Vec::new(),
            Msg::Engine(ev) => self.on_event(ev),
            Msg::Tick(now) => {
                self.now = now;
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
                    "stopping {} running batches (SIGINT, SIGTERM, then SIGKILL); Ctrl-C again kills now",
                    self.running()
                ),
            );
        }
        vec![Effect::Send(Command::Shutdown { force })]
    }

    fn on_event(&mut self, ev: Event) -> Vec<Effect> {
        match ev {
            Event::Started {
                info,
                batches,
                workers,
            } => {
                self.budget = info.budget;
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
            }
            Event::QueuePaused(p) => {
                self.queue_paused = p;
                if !p {
                    self.idle = false;
                }
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
            Event::Idle => self.idle = true,
            Event::Stopped => return vec![Effect::Exit],
        }
        Vec::new()
    }

    fn clamp_focus(&mut self) {
        self.focus = self.focus.min(self.workers.len().saturating_sub(1));
        self.selected = self.selected.min(self.batches.len().saturating_sub(1));
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
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
                    KeyCode::Char('y') | KeyCode::Char('Y') => self.quit_now(),
                    _ => Vec::new(),
                };
            }
            Overlay::Help => {
                // Any of the closing keys only closes help.
                if !matches!(action, Some(Action::Back | Action::Help | Action::Quit)) {
                    self.overlay = Overlay::Help;
                }
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

    fn quit_now(&mut self) -> Vec<Effect> {
        if self.stopping {
            return Vec::new();
        }
        self.stopping = true;
        let running = self.running();
        if running > 0 {
            self.say(
                Level::Warn,
                format!("stopping {running} running batches before quitting…"),
            );
        }
        vec![Effect::Send(Command::Shutdown { force: false })]
    }

    /// Keys with a meaning of their own in the zoomed log. `None`: not handled here.
    fn on_zoom_key(&mut self, action: Action) -> Option<Vec<Effect>> {
        let page = self.page();
        let max_offset = self.max_offset(self.zoom.as_ref()?.batch);
        let z = self.zoom.as_mut()?;
        match action {
            Action::Back => self.zoom = None,
            Action::Up => {
                z.offset = (z.offset + 1).min(max_offset);
                z.follow = false;
            }
            Action::Down => z.offset = z.offset.saturating_sub(1),
            Action::PageUp => {
                z.offset = (z.offset + page).min(max_offset);
                z.follow = false;
            }
            Action::PageDown => z.offset = z.offset.saturating_sub(page),
            Action::Top => {
                z.offset = max_offset;
                z.follow = false;
            }
            Action::Bottom => {
                z.offset = 0;
                z.follow = true;
            }
            Action::Follow => {
                z.follow = !z.follow;
                if z.follow {
                    z.offset = 0;
                }
            }
            Action::Search => {
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::Search,
                    fields: vec![Field::new("search", z.query.clone().unwrap_or_default())],
                    active: 0,
                });
            }
            Action::NextMatch => self.jump_to_match(true),
            Action::PrevMatch => self.jump_to_match(false),
            Action::Left | Action::Right | Action::Zoom | Action::ToggleTable => {}
            _ => return None,
        }
        Some(Vec::new())
    }

    fn jump_to_match(&mut self, forward: bool) {
        let page = self.page();
        let Some(z) = self.zoom.as_mut() else { return };
        let Some(query) = z.query.clone() else {
            self.say(Level::Info, "no search yet: press / to search");
            return;
        };
        let Some(buf) = self.logs.get(z.batch) else {
            return;
        };
        // Search from the current match, or from the bottom of the view.
        let from = z.matched.unwrap_or_else(|| {
            let bottom = buf.end_seq().saturating_sub(1 + z.offset as u64);
            if forward {
                bottom.saturating_sub(page as u64)
            } else {
                bottom + 1
            }
        });
        match buf.find(&query, from, forward) {
            Some(seq) => {
                z.matched = Some(seq);
                z.follow = false;
                // Put the match in the middle of the view.
                let from_end = (buf.end_seq() - 1 - seq) as usize;
                z.offset = from_end
                    .saturating_sub(page / 2)
                    .min(buf.len().saturating_sub(page));
            }
            None => {
                let q = query.clone();
                z.matched = None;
                self.say(Level::Info, format!("not found: {q}"));
            }
        }
    }

    fn on_input_key(&mut self, mut input: Input, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter => self.submit(input),
            KeyCode::Tab | KeyCode::BackTab => {
                input.active = (input.active + 1) % input.fields.len().max(1);
                self.overlay = Overlay::Input(input);
                Vec::new()
            }
            _ => {
                if let Some(f) = input.fields.get_mut(input.active) {
                    f.edit(&key);
                }
                self.overlay = Overlay::Input(input);
                Vec::new()
            }
        }
    }

    fn submit(&mut self, input: Input) -> Vec<Effect> {
        let value = |i: usize| input.fields.get(i).map_or("", |f| f.value.trim());
        match input.purpose {
            Purpose::Budget => match value(0).parse::<u32>() {
                Ok(n) if n >= 1 => vec![Effect::Send(Command::SetBudget(n))],
                _ => {
                    self.say(
                        Level::Error,
                        format!(
                            "invalid budget '{}': expected a whole number of connections, at least 1",
                            value(0)
                        ),
                    );
                    Vec::new()
                }
            },
            Purpose::EditBatch(batch) => {
                let vars = value(1).to_string();
                if let Err(e) = crate::plan::parse_vars(&vars) {
                    self.say(Level::Error, e.0);
                    // Keep the text so it can be fixed.
                    self.overlay = Overlay::Input(input);
                    return Vec::new();
                }
                let select = Some(value(0).to_string()).filter(|s| !s.is_empty());
                vec![Effect::Send(Command::EditBatch {
                    batch,
                    select,
                    vars,
                })]
            }
            Purpose::Search => {
                let q = value(0).to_lowercase();
                if let Some(z) = self.zoom.as_mut() {
                    z.query = Some(q).filter(|q| !q.is_empty());
                    z.matched = None;
                }
                self.jump_to_match(false);
                Vec::new()
            }
        }
    }

    fn on_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
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
            Action::Help => self.overlay = Overlay::Help,
            Action::Back if self.screen == Screen::Table => self.screen = Screen::Grid,
            Action::Back => self.notice = None,
            Action::Up | Action::Down | Action::Left | Action::Right => self.move_focus(action),
            Action::PageUp | Action::PageDown if self.screen == Screen::Table => {
                let page = self.page();
                self.selected = if action == Action::PageUp {
                    self.selected.saturating_sub(page)
                } else {
                    self.selected + page
                };
                self.clamp_focus();
            }
            Action::Top if self.screen == Screen::Table => self.selected = 0,
            Action::Bottom if self.screen == Screen::Table => {
                self.selected = self.batches.len().saturating_sub(1)
            }
            Action::Zoom => match self.target_batch() {
                Some(batch) => {
                    self.zoom = Some(Zoom {
                        batch,
                        offset: 0,
                        follow: true,
                        query: None,
                        matched: None,
                    })
                }
                None => self.say(Level::Info, "this worker has not run a batch yet"),
            },
            Action::ToggleTable => {
                self.screen = match self.screen {
                    Screen::Grid => {
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
            Action::Cancel => return self.on_batch(action),
            Action::Retry | Action::EditBatch | Action::Split => return self.on_batch(action),
            Action::MoveUp | Action::MoveDown => return self.on_batch(action),
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
                return vec![Effect::Send(Command::SetWorkers(self.active_workers() + 1))];
            }
            Action::FewerWorkers => {
                let n = self.active_workers();
                if n <= 1 {
                    self.say(Level::Info, "one worker is the minimum; P pauses the queue");
                    return Vec::new();
                }
                return vec![Effect::Send(Command::SetWorkers(n - 1))];
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

    fn toggle_worker_pause(&mut self) -> Vec<Effect> {
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
    fn on_batch(&mut self, action: Action) -> Vec<Effect> {
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
            Action::Cancel if matches!(status, BatchStatus::Running | BatchStatus::Pending) => {
                vec![Effect::Send(Command::Cancel(b))]
            }
            Action::Cancel => {
                self.say(Level::Info, format!("{label} is not running or pending"));
                Vec::new()
            }
            Action::Retry if matches!(status, BatchStatus::Failed | BatchStatus::Cancelled) => {
                vec![Effect::Send(Command::Retry(b))]
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

    fn move_focus(&mut self, action: Action) {
        match self.screen {
            Screen::Table => match action {
                Action::Up => self.selected = self.selected.saturating_sub(1),
                Action::Down => {
                    self.selected = (self.selected + 1).min(self.batches.len().saturating_sub(1))
                }
                _ => {}
            },
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

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
