//! The engine's state machine: pure. Messages in, effects out; no processes, no
//! files, no clocks (time is passed in). The async shell in `run.rs` carries the
//! effects out. This is where the scheduling and budget rules live and are tested.
//!
//! The budget in use is never a counter: it is the sum of `threads` over the slots
//! that hold a live attempt, and a slot lets go of its attempt only when the attempt
//! actor reports the child reaped and its process group empty.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::dbt::argv::AttemptKind;
use crate::dbt::events::{self, DbtEvent, EventKind, Level};
use crate::dbt::run_results::{MergedResults, ReadError, RunResults};
use crate::engine::messages::{
    BatchStatus, BatchView, Command, Event, FailingNode, LogLine, RunInfo, WorkerView,
};
use crate::plan::Batch;

/// Identifies one attempt of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub batch: usize,
    pub attempt: u32,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("dbt exited with code {c}"),
            (None, Some(s)) => format!("dbt was killed by signal {s}"),
            _ => "dbt ended".into(),
        }
    }
}

/// Orders for a running attempt's actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCtl {
    /// The stop ladder: SIGINT, then SIGTERM, then SIGKILL to the group.
    Stop,
    /// Straight to SIGKILL.
    Kill,
    Suspend,
    Resume,
}

/// Why we stopped an attempt ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancel,
    Shutdown,
}

/// What an attempt actor reports.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptMsg {
    Spawned {
        key: AttemptKey,
        pid: u32,
    },
    /// The child could not be started; no process exists.
    SpawnFailed {
        key: AttemptKey,
        error: String,
    },
    Line {
        key: AttemptKey,
        stderr: bool,
        text: String,
        event: Option<DbtEvent>,
    },
    /// run_results.json seen complete while the child still runs.
    Results {
        key: AttemptKey,
        results: RunResults,
    },
    /// The child is reaped and its process group is empty.
    Exited {
        key: AttemptKey,
        exit: ExitInfo,
        results: Result<RunResults, ReadError>,
        /// False if group members outlived even SIGKILL (uninterruptible sleep).
        group_clean: bool,
    },
}

/// Side effects for the shell to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Launch {
        key: AttemptKey,
        worker: usize,
        kind: AttemptKind,
    },
    Control {
        key: AttemptKey,
        ctl: AttemptCtl,
    },
    Emit(Event),
    Journal(JournalEntry),
    WriteSummary,
    /// Run `dbt ls` for the batch's selection; answer with `on_listed`.
    ListModels {
        batch: usize,
    },
}

/// What the journal records (the shell adds timestamps and writes it durably).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum JournalEntry {
    AttemptStarted {
        batch: String,
        attempt: u32,
        kind: AttemptKind,
        worker: usize,
    },
    AttemptSpawned {
        batch: String,
        attempt: u32,
        pid: u32,
    },
    AttemptFinished {
        batch: String,
        attempt: u32,
        exit: Option<ExitInfo>,
        status: BatchStatus,
        invocation_id: Option<String>,
    },
    BatchStatus {
        batch: String,
        status: BatchStatus,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub number: u32,
    pub kind: AttemptKind,
    pub worker: usize,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub pid: Option<u32>,
    pub invocation_id: Option<String>,
    pub exit: Option<ExitInfo>,
    /// This attempt's own run_results.json was read and matched its invocation.
    pub wrote_results: bool,
    pub stopped: Option<StopReason>,
    pub nothing_to_do: bool,
    /// run_results.json was there but unusable (stale, truncated, corrupt).
    pub results_problem: Option<String>,
    /// Nodes the events reported as error/fail: the fallback when no results file.
    pub event_failures: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchState {
    pub batch: Batch,
    pub status: BatchStatus,
    pub attempts: Vec<AttemptRecord>,
    pub results: MergedResults,
    pub nothing_selected: bool,
    pub error: Option<String>,
    pub last_error_line: Option<String>,
    pub nodes_done: u32,
    pub nodes_total: Option<u32>,
    pub executing: BTreeSet<String>,
    /// node unique_id → node path, for compiled SQL locations.
    pub node_paths: std::collections::BTreeMap<String, String>,
    pub auto_retries_left: u32,
    /// The next attempt must run in full (dbt retry had nothing to do, or was unsafe).
    pub force_full: bool,
    /// Set when the batch was carried over as succeeded from a resumed run.
    pub resumed_done: bool,
    /// A `dbt ls` for splitting it is under way.
    pub splitting: bool,
}

impl BatchState {
    /// Progress bookkeeping shared by a node's start, finish and skip: whether it
    /// executes now, where its SQL is, and how many nodes are done of how many.
    fn note_node(&mut self, node: &events::NodeRef, pos: events::Position, ended: bool) {
        if ended {
            self.executing.remove(&node.unique_id);
            self.nodes_done += 1;
        } else {
            self.executing.insert(node.unique_id.clone());
        }
        if let Some(p) = &node.path {
            self.node_paths.insert(node.unique_id.clone(), p.clone());
        }
        if self.nodes_total.is_none() {
            self.nodes_total = pos.total;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub key: AttemptKey,
    pub threads: u32,
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub number: usize,
    pub paused: bool,
    pub retiring: bool,
    pub running: Option<Running>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    pub threads: u32,
    pub budget: u32,
    pub retries: u32,
    pub workers: usize,
    pub state_dir: String,
    pub command: String,
    /// `<target>/compiled/<project name>` root, to point at compiled SQL.
    pub compiled_root_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineCore {
    pub cfg: CoreConfig,
    pub batches: Vec<BatchState>,
    pub queue: VecDeque<usize>,
    pub slots: Vec<Slot>,
    pub queue_paused: bool,
    pub shutting_down: bool,
    idle_reported: bool,
}

impl EngineCore {
    /// `prior` holds what a resumed run's journal says about batches (by id).
    pub fn new(cfg: CoreConfig, plan: Vec<Batch>, prior: &BTreeMap<String, Prior>) -> Self {
        let mut queue = VecDeque::new();
        let batches = plan
            .into_iter()
            .enumerate()
            .map(|(i, batch)| {
                let past = prior.get(&batch.id);
                let resumed_done = past.is_some_and(|p| p.succeeded);
                if !resumed_done {
                    queue.push_back(i);
                }
                let mut st = BatchState::new(batch, cfg.retries);
                if resumed_done {
                    st.status = BatchStatus::Succeeded;
                    st.resumed_done = true;
                }
                if let Some(p) = past {
                    st.carry_over(p);
                }
                st
            })
            .collect();
        let slots = (1..=cfg.workers)
            .map(|number| Slot {
                number,
                paused: false,
                retiring: false,
                running: None,
            })
            .collect();
        Self {
            cfg,
            batches,
            queue,
            slots,
            queue_paused: false,
            shutting_down: false,
            idle_reported: false,
        }
    }

    /// Connections held: the threads of every slot whose child is not yet reaped.
    pub fn budget_in_use(&self) -> u32 {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .map(|r| r.threads)
            .sum()
    }

    /// (batch, process group) of every attempt whose child has started.
    pub fn live_groups(&self) -> Vec<(usize, i32)> {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .filter_map(|r| {
                let pid = self.batches[r.key.batch]
                    .attempts
                    .get(r.key.attempt as usize - 1)?
                    .pid?;
                Some((r.key.batch, pid as i32))
            })
            .collect()
    }

    pub fn running_count(&self) -> usize {
        self.slots.iter().filter(|s| s.running.is_some()).count()
    }

    fn slot_of(&self, key: AttemptKey) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|r| r.key == key))
    }

    /// The first effects: announce the plan and start what fits.
    pub fn start(&mut self, now: f64) -> Vec<Effect> {
        let mut fx = vec![Effect::Emit(Event::Started {
            info: self.run_info(),
            batches: (0..self.batches.len()).map(|i| self.view(i, now)).collect(),
            workers: self.worker_views(),
        })];
        fx.extend(self.dispatch(now));
        fx.push(Effect::WriteSummary);
        fx
    }

    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            workers: self.slots.iter().filter(|s| !s.retiring).count(),
            threads: self.cfg.threads,
            budget: self.cfg.budget,
            retries: self.cfg.retries,
            state_dir: self.cfg.state_dir.clone(),
            command: self.cfg.command.clone(),
        }
    }

    /// Picks the next (batch, slot) that may start now, if any.
    pub fn next_dispatch(&self) -> Option<(usize, usize)> {
        if self.queue_paused || self.shutting_down {
            return None;
        }
        let slot = self
            .slots
            .iter()
            .position(|s| !s.paused && !s.retiring && s.running.is_none())?;
        let batch = *self.queue.front()?;
        (self.budget_in_use() + self.cfg.threads <= self.cfg.budget).then_some((batch, slot))
    }

    /// The kind of the batch's next attempt. `dbt retry` only when the previous
    /// attempt wrote its own results and they hold something to retry; after an
    /// interrupt, a kill or a missing file it would silently skip the nodes that
    /// never ran, so the batch runs in full.
    pub fn next_kind(&self, b: usize) -> AttemptKind {
        let st = &self.batches[b];
        match st.attempts.last() {
            Some(last)
                if !st.force_full
                    && last.wrote_results
                    && last.stopped.is_none()
                    && st.results.counts().has_failures() =>
            {
                AttemptKind::Retry
            }
            _ => AttemptKind::Full,
        }
    }

    fn dispatch(&mut self, now: f64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut dispatched = false;
        while let Some((b, s)) = self.next_dispatch() {
            self.queue.pop_front();
            let kind = self.next_kind(b);
            let worker = self.slots[s].number;
            let st = &mut self.batches[b];
            let number = st.attempts.len() as u32 + 1;
            st.attempts.push(AttemptRecord {
                number,
                kind,
                worker,
                started_at: now,
                finished_at: None,
                pid: None,
                invocation_id: None,
                exit: None,
                wrote_results: false,
                stopped: None,
                nothing_to_do: false,
                results_problem: None,
                event_failures: 0,
            });
            st.status = BatchStatus::Running;
            st.force_full = false;
            // The previous attempt's error was shown while the batch waited; this
            // attempt's own will replace it if it fails too.
            st.error = None;
            st.last_error_line = None;
            st.nodes_done = 0;
            st.nodes_total = None;
            st.executing.clear();
            let key = AttemptKey {
                batch: b,
                attempt: number,
            };
            self.slots[s].running = Some(Running {
                key,
                threads: self.cfg.threads,
                suspended: false,
            });
            fx.push(Effect::Journal(JournalEntry::AttemptStarted {
                batch: st.batch.id.clone(),
                attempt: number,
                kind,
                worker,
            }));
            fx.push(Effect::Launch { key, worker, kind });
            fx.push(Effect::Emit(Event::BatchChanged(self.view(b, now))));
            dispatched = true;
        }
        if dispatched {
            self.idle_reported = false;
            fx.push(Effect::Emit(Event::WorkersChanged(self.worker_views())));
            fx.push(Effect::Emit(Event::QueueChanged(
                self.queue.iter().copied().collect(),
            )));
            fx.push(Effect::WriteSummary);
        }
        fx.extend(self.check_idle());
        fx
    }

    /// Nothing runs and nothing can start without a command.
    pub fn is_idle(&self) -> bool {
        self.running_count() == 0
            && (self.queue.is_empty()
                || self.queue_paused
                || self.shutting_down
                || self.no_usable_slot())
    }

    fn no_usable_slot(&self) -> bool {
        self.slots.iter().all(|s| s.paused || s.retiring)
    }

    fn check_idle(&mut self) -> Vec<Effect> {
        if self.is_idle() && !self.idle_reported && !self.shutting_down {
            self.idle_reported = true;
            return vec![Effect::Emit(Event::Idle)];
        }
        Vec::new()
    }

    pub fn on_command(&mut self, cmd: Command, now: f64) -> Vec<Effect> {
        let mut fx = Vec::new();
        match cmd {
            Command::PauseWorker(n) | Command::ResumeWorker(n) => {
                let pause = matches!(cmd, Command::PauseWorker(_));
                if let Some(slot) = self.slots.iter_mut().find(|s| s.number == n) {
                    slot.paused = pause;
                    if let Some(r) = slot.running.as_mut() {
                        r.suspended = pause;
                        let ctl = if pause {
                            AttemptCtl::Suspend
                        } else {
                            AttemptCtl::Resume
                        };
                        let (key, b) = (r.key, r.key.batch);
                        fx.push(Effect::Control { key, ctl });
                        fx.push(Effect::Emit(Event::BatchChanged(self.view(b, now))));
                    }
                    fx.push(Effect::Emit(Event::WorkersChanged(self.worker_views())));
                    if !pause {
                        self.idle_reported = false;
                    }
                }
            }
            Command::PauseQueue | Command::ResumeQueue => {
                self.queue_paused = matches!(cmd, Command::PauseQueue);
                if !self.queue_paused {
                    self.idle_reported = false;
                }
                fx.push(Effect::Emit(Event::QueuePaused(self.queue_paused)));
            }
            Command::Cancel(b) if b < self.batches.len() => match self.batches[b].status {
                BatchStatus::Running => {
                    if let Some(s) = self.slot_of_batch(b) {
                        let key = self.slots[s].running.as_ref().map(|r| r.key);
                        if let Some(key) = key {
                            self.mark_stopped(key, StopReason::Cancel);
                            fx.push(Effect::Control {
                                key,
                                ctl: AttemptCtl::Stop,
                            });
                        }
                    }
                }
                BatchStatus::Pending => {
                    self.queue.retain(|&q| q != b);
                    fx.extend(self.set_status(b, BatchStatus::Cancelled, now));
                    fx.push(Effect::Emit(Event::QueueChanged(
                        self.queue.iter().copied().collect(),
                    )));
                }
                _ => {}
            },
            Command::Retry(b) if b < self.batches.len() => fx.extend(self.requeue(b, now)),
            Command::RetryAllFailed => {
                for b in 0..self.batches.len() {
                    if self.batches[b].status == BatchStatus::Failed {
                        fx.extend(self.requeue(b, now));
                    }
                }
            }
            Command::SetWorkers(n) if n >= 1 => fx.extend(self.set_workers(n)),
            Command::SetBudget(n) => {
                if n < self.cfg.threads {
                    fx.push(Effect::Emit(Event::Notice {
                        level: Level::Warn,
                        text: format!(
                            "budget {n} is below one batch's {} threads; kept {}",
                            self.cfg.threads, self.cfg.budget
                        ),
                    }));
                } else {
                    self.cfg.budget = n;
                    self.idle_reported = false;
                    fx.push(Effect::Emit(Event::BudgetChanged(n)));
                }
            }
            Command::MoveBatch { batch, up } => {
                if let Some(pos) = self.queue.iter().position(|&q| q == batch) {
                    let to = if up {
                        pos.checked_sub(1)
                    } else {
                        Some(pos + 1).filter(|&p| p < self.queue.len())
                    };
                    if let Some(to) = to {
                        self.queue.swap(pos, to);
                        fx.push(Effect::Emit(Event::QueueChanged(
                            self.queue.iter().copied().collect(),
                        )));
                    }
                }
            }
            Command::Shutdown { force } => {
                self.shutting_down = true;
                let keys: Vec<AttemptKey> = self
                    .slots
                    .iter()
                    .filter_map(|s| s.running.as_ref().map(|r| r.key))
                    .collect();
                for key in keys {
                    self.mark_stopped(key, StopReason::Shutdown);
                    let ctl = if force {
                        AttemptCtl::Kill
                    } else {
                        AttemptCtl::Stop
                    };
                    fx.push(Effect::Control { key, ctl });
                }
            }
            Command::EditBatch {
                batch,
                select,
                vars,
            } if batch < self.batches.len() => {
                fx.extend(self.edit_batch(batch, select, &vars, now));
            }
            Command::SplitBatch(b) if b < self.batches.len() => {
                if self.editable(b) && !self.batches[b].splitting {
                    self.batches[b].splitting = true;
                    fx.push(Effect::ListModels { batch: b });
                    fx.push(self.notice(
                        Level::Info,
                        format!(
                            "listing the models of {} (dbt ls)",
                            self.batches[b].batch.label
                        ),
                    ));
                } else {
                    fx.push(self.notice(
                        Level::Warn,
                        "only a pending, failed or cancelled batch can be split".into(),
                    ));
                }
            }
            Command::Cancel(_)
            | Command::Retry(_)
            | Command::SetWorkers(_)
            | Command::EditBatch { .. }
            | Command::SplitBatch(_) => {}
        }
        fx.extend(self.dispatch(now));
        fx
    }

    fn notice(&self, level: Level, text: String) -> Effect {
        Effect::Emit(Event::Notice { level, text })
    }

    /// Only a batch that is not running (and not done) may be edited or split.
    fn editable(&self, b: usize) -> bool {
        matches!(
            self.batches[b].status,
            BatchStatus::Pending | BatchStatus::Failed | BatchStatus::Cancelled
        )
    }

    fn edit_batch(
        &mut self,
        b: usize,
        select: Option<String>,
        vars: &str,
        now: f64,
    ) -> Vec<Effect> {
        if !self.editable(b) {
            return vec![self.notice(
                Level::Warn,
                "only a pending, failed or cancelled batch can be edited".into(),
            )];
        }
        let vars = match crate::plan::parse_vars(vars) {
            Ok(v) => v,
            Err(e) => return vec![self.notice(Level::Error, e.0)],
        };
        let st = &mut self.batches[b];
        st.batch.select = select.filter(|s| !s.trim().is_empty());
        st.batch.vars = vars;
        st.batch.label =
            crate::plan::label_for(st.batch.window.as_ref(), st.batch.select.as_deref());
        // Results of the old selection say nothing about the new one.
        st.results = MergedResults::default();
        st.force_full = true;
        st.nothing_selected = false;
        let mut fx = Vec::new();
        if st.status == BatchStatus::Pending {
            fx.push(Effect::Emit(Event::BatchChanged(self.view(b, now))));
        } else {
            fx.extend(self.requeue(b, now));
        }
        fx.push(Effect::WriteSummary);
        fx
    }

    /// The answer to `Effect::ListModels`: replace the batch by one batch per model,
    /// queued where it stood.
    pub fn on_listed(
        &mut self,
        b: usize,
        models: Result<Vec<String>, String>,
        now: f64,
    ) -> Vec<Effect> {
        self.batches[b].splitting = false;
        let models = match models {
            Ok(m) if m.len() >= 2 && self.editable(b) => m,
            Ok(m) if m.len() < 2 => {
                return vec![self.notice(
                    Level::Warn,
                    format!(
                        "{} has {} model(s): nothing to split",
                        self.batches[b].batch.label,
                        m.len()
                    ),
                )];
            }
            Ok(_) => {
                return vec![
                    self.notice(Level::Warn, "the batch started meanwhile; not split".into()),
                ];
            }
            Err(e) => return vec![self.notice(Level::Error, format!("dbt ls failed: {e}"))],
        };
        let parent = self.batches[b].batch.clone();
        let at = self.queue.iter().position(|&q| q == b);
        self.queue.retain(|&q| q != b);
        let first = self.batches.len();
        let taken: std::collections::HashSet<String> =
            self.batches.iter().map(|s| s.batch.id.clone()).collect();
        for model in &models {
            let mut id = format!("{}-{}", parent.id, crate::plan::slug(model));
            let mut n = 2;
            while taken.contains(&id) {
                id = format!("{}-{}-{n}", parent.id, crate::plan::slug(model));
                n += 1;
            }
            let batch = Batch {
                id,
                label: crate::plan::label_for(parent.window.as_ref(), Some(model)),
                select: Some(model.clone()),
                window: parent.window,
                vars: parent.vars.clone(),
            };
            self.batches.push(BatchState::new(batch, self.cfg.retries));
        }
        let new: Vec<usize> = (first..self.batches.len()).collect();
        match at {
            Some(pos) => {
                for (k, &i) in new.iter().enumerate() {
                    self.queue.insert(pos + k, i);
                }
            }
            None => self.queue.extend(new.iter().copied()),
        }
        self.idle_reported = false;
        let mut fx = self.set_status(b, BatchStatus::Split, now);
        fx.push(Effect::Emit(Event::BatchesAdded(
            new.iter().map(|&i| self.view(i, now)).collect(),
        )));
        fx.push(Effect::Emit(Event::QueueChanged(
            self.queue.iter().copied().collect(),
        )));
        fx.push(self.notice(
            Level::Info,
            format!(
                "{} split into {} batches, one per model",
                parent.label,
                models.len()
            ),
        ));
        fx.extend(self.dispatch(now));
        fx
    }

    fn slot_of_batch(&self, b: usize) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|r| r.key.batch == b))
    }

    fn mark_stopped(&mut self, key: AttemptKey, why: StopReason) {
        if let Some(a) = self.batches[key.batch]
            .attempts
            .get_mut(key.attempt as usize - 1)
        {
            // A cancel followed by a shutdown is still a cancel.
            a.stopped.get_or_insert(why);
        }
    }

    fn requeue(&mut self, b: usize, now: f64) -> Vec<Effect> {
        if !matches!(
            self.batches[b].status,
            BatchStatus::Failed | BatchStatus::Cancelled
        ) {
            return Vec::new();
        }
        self.queue.push_back(b);
        self.idle_reported = false;
        let mut fx = self.set_status(b, BatchStatus::Pending, now);
        fx.push(Effect::Emit(Event::QueueChanged(
            self.queue.iter().copied().collect(),
        )));
        fx
    }

    fn set_workers(&mut self, n: usize) -> Vec<Effect> {
        let active: Vec<usize> = (0..self.slots.len())
            .filter(|&i| !self.slots[i].retiring)
            .collect();
        if n > active.len() {
            // Un-retire first, then add new slots with fresh numbers.
            let mut need = n - active.len();
            for s in self.slots.iter_mut().filter(|s| s.retiring) {
                if need == 0 {
                    break;
                }
                s.retiring = false;
                need -= 1;
            }
            let first = self.slots.iter().map(|s| s.number).max().unwrap_or(0) + 1;
            self.slots.extend((first..first + need).map(|number| Slot {
                number,
                paused: false,
                retiring: false,
                running: None,
            }));
        } else {
            // Remove from the highest numbers down: idle slots go now, busy ones retire.
            let mut excess = active.len() - n;
            for i in active.into_iter().rev() {
                if excess == 0 {
                    break;
                }
                self.slots[i].retiring = true;
                excess -= 1;
            }
            self.slots.retain(|s| !(s.retiring && s.running.is_none()));
        }
        self.slots.sort_by_key(|s| s.number);
        self.idle_reported = false;
        vec![Effect::Emit(Event::WorkersChanged(self.worker_views()))]
    }

    fn set_status(&mut self, b: usize, status: BatchStatus, now: f64) -> Vec<Effect> {
        self.batches[b].status = status;
        vec![
            Effect::Journal(JournalEntry::BatchStatus {
                batch: self.batches[b].batch.id.clone(),
                status,
            }),
            Effect::Emit(Event::BatchChanged(self.view(b, now))),
            Effect::WriteSummary,
        ]
    }

    fn attempt_mut(&mut self, key: AttemptKey) -> Option<&mut AttemptRecord> {
        self.batches
            .get_mut(key.batch)?
            .attempts
            .get_mut(key.attempt.checked_sub(1)? as usize)
    }

    pub fn on_attempt(&mut self, msg: AttemptMsg, now: f64) -> Vec<Effect> {
        match msg {
            AttemptMsg::Spawned { key, pid } => {
                let Some(a) = self.attempt_mut(key) else {
                    return Vec::new();
                };
                a.pid = Some(pid);
                let id = self.batches[key.batch].batch.id.clone();
                vec![
                    Effect::Journal(JournalEntry::AttemptSpawned {
                        batch: id,
                        attempt: key.attempt,
                        pid,
                    }),
                    Effect::Emit(Event::BatchChanged(self.view(key.batch, now))),
                ]
            }
            AttemptMsg::Line {
                key,
                stderr,
                text,
                event,
            } => self.on_line(key, stderr, text, event, now),
            AttemptMsg::Results { key, results } => {
                if let Some(a) = self.attempt_mut(key) {
                    a.wrote_results = true;
                }
                self.batches[key.batch].results.merge(&results, key.attempt);
                vec![Effect::Emit(Event::BatchChanged(self.view(key.batch, now)))]
            }
            AttemptMsg::SpawnFailed { key, error } => {
                let mut fx = self.release(key, now);
                let st = &mut self.batches[key.batch];
                st.error = Some(format!("could not start dbt: {error}"));
                // Without a process there is nothing a retry would do differently;
                // pausing the queue avoids burning through every batch the same way.
                st.auto_retries_left = 0;
                self.queue_paused = true;
                fx.push(Effect::Emit(Event::Notice {
                    level: Level::Error,
                    text: format!("could not start dbt ({error}); the queue is paused"),
                }));
                fx.push(Effect::Emit(Event::QueuePaused(true)));
                fx.extend(self.finish(key, None, BatchStatus::Failed, now));
                fx
            }
            AttemptMsg::Exited {
                key,
                exit,
                results,
                group_clean,
            } => {
                let mut fx = self.release(key, now);
                if !group_clean {
                    fx.push(Effect::Emit(Event::Notice {
                        level: Level::Error,
                        text: format!(
                            "batch {}: processes of its dbt group survived SIGKILL",
                            self.batches[key.batch].batch.id
                        ),
                    }));
                }
                match results {
                    Ok(rr) => {
                        if let Some(a) = self.attempt_mut(key) {
                            a.wrote_results = true;
                        }
                        self.batches[key.batch].results.merge(&rr, key.attempt);
                    }
                    Err(ReadError::Missing) => {}
                    Err(e) => {
                        // Never counted as success: a stale or broken file says
                        // nothing about what this attempt did.
                        if let Some(a) = self.attempt_mut(key) {
                            a.results_problem = Some(e.to_string());
                        }
                        fx.push(Effect::Emit(Event::Notice {
                            level: Level::Warn,
                            text: format!("batch {}: {e}", self.batches[key.batch].batch.id),
                        }));
                    }
                }
                let status = self.verdict(key, exit);
                fx.extend(self.finish(key, Some(exit), status, now));
                fx
            }
        }
    }

    fn on_line(
        &mut self,
        key: AttemptKey,
        stderr: bool,
        text: String,
        event: Option<DbtEvent>,
        now: f64,
    ) -> Vec<Effect> {
        let worker = self.attempts_worker(key);
        let st = &mut self.batches[key.batch];
        let mut changed = false;
        let line = match &event {
            None => {
                if text.trim().is_empty() {
                    return Vec::new();
                }
                Some(LogLine {
                    level: if stderr { Level::Warn } else { Level::Info },
                    class: None,
                    text,
                    plain: true,
                })
            }
            Some(ev) => {
                if let Some(inv) = &ev.invocation_id
                    && let Some(a) = st.attempts.get_mut(key.attempt as usize - 1)
                    && a.invocation_id.is_none()
                {
                    a.invocation_id = Some(inv.clone());
                }
                match &ev.kind {
                    EventKind::Concurrency { nodes, .. } => {
                        st.nodes_total = Some(*nodes);
                        changed = true;
                    }
                    EventKind::NodeStarted { node, pos } => {
                        st.note_node(node, *pos, false);
                        changed = true;
                    }
                    EventKind::NodeFinished {
                        node, pos, status, ..
                    } => {
                        st.note_node(node, *pos, true);
                        if events::status_class(status) == events::StatusClass::Bad
                            && let Some(a) = st.attempts.get_mut(key.attempt as usize - 1)
                        {
                            a.event_failures += 1;
                        }
                        changed = true;
                    }
                    EventKind::NodeSkipped { node, pos } => {
                        st.note_node(node, *pos, true);
                        changed = true;
                    }
                    EventKind::NothingSelected => {
                        st.nothing_selected = true;
                        changed = true;
                    }
                    EventKind::NothingToDo => {
                        if let Some(a) = st.attempts.get_mut(key.attempt as usize - 1) {
                            a.nothing_to_do = true;
                        }
                    }
                    _ => {}
                }
                if ev.level == Level::Error && !ev.msg.trim().is_empty() {
                    st.last_error_line = Some(ev.msg.clone());
                }
                events::render(ev).map(|text| LogLine {
                    level: ev.level,
                    class: match &ev.kind {
                        EventKind::NodeFinished { status, .. } => {
                            Some(events::status_class(status))
                        }
                        EventKind::NodeSkipped { .. } => Some(events::StatusClass::Skipped),
                        _ => None,
                    },
                    text,
                    plain: false,
                })
            }
        };
        let mut fx = Vec::new();
        if let Some(line) = line {
            fx.push(Effect::Emit(Event::Log {
                batch: key.batch,
                worker,
                line,
            }));
        }
        if changed {
            fx.push(Effect::Emit(Event::BatchChanged(self.view(key.batch, now))));
        }
        fx
    }

    fn attempts_worker(&self, key: AttemptKey) -> usize {
        self.batches[key.batch]
            .attempts
            .get(key.attempt as usize - 1)
            .map_or(0, |a| a.worker)
    }

    /// Frees the slot that held the attempt: only ever on spawn failure or reaped exit.
    fn release(&mut self, key: AttemptKey, _now: f64) -> Vec<Effect> {
        if let Some(s) = self.slot_of(key) {
            self.slots[s].running = None;
            if self.slots[s].retiring {
                self.slots.remove(s);
            }
        }
        vec![Effect::Emit(Event::WorkersChanged(self.worker_views()))]
    }

    /// The batch's status after an attempt exits.
    pub fn verdict(&self, key: AttemptKey, exit: ExitInfo) -> BatchStatus {
        let st = &self.batches[key.batch];
        let Some(a) = st.attempts.get(key.attempt as usize - 1) else {
            return BatchStatus::Failed;
        };
        let clean = exit.code == Some(0)
            && !st.results.counts().has_failures()
            && a.results_problem.is_none()
            && (a.wrote_results || a.event_failures == 0);
        if clean && !(a.nothing_to_do && a.kind == AttemptKind::Retry && !st.complete_enough()) {
            return BatchStatus::Succeeded;
        }
        if a.stopped.is_some() {
            return BatchStatus::Cancelled;
        }
        BatchStatus::Failed
    }

    fn finish(
        &mut self,
        key: AttemptKey,
        exit: Option<ExitInfo>,
        status: BatchStatus,
        now: f64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let st = &mut self.batches[key.batch];
        let idx = key.attempt as usize - 1;
        let (kind, nothing_to_do, invocation_id) = match st.attempts.get_mut(idx) {
            Some(a) => {
                a.finished_at = Some(now);
                a.exit = exit;
                (a.kind, a.nothing_to_do, a.invocation_id.clone())
            }
            None => (AttemptKind::Full, false, None),
        };
        st.executing.clear();
        let mut status = status;
        let stopped = st.attempts.get(idx).and_then(|a| a.stopped);
        st.error = match (status, stopped) {
            (BatchStatus::Succeeded, _) => None,
            // What an interrupted dbt prints (a traceback, "cancelled") is noise: say who stopped it.
            (BatchStatus::Cancelled, Some(StopReason::Cancel)) => {
                Some("cancelled by the user".into())
            }
            (BatchStatus::Cancelled, Some(StopReason::Shutdown)) => {
                Some("stopped when the run was stopped".into())
            }
            _ => st
                .results
                .first_error()
                .or_else(|| st.attempts.get(idx).and_then(|a| a.results_problem.clone()))
                .or_else(|| st.last_error_line.clone())
                .or_else(|| st.error.clone())
                .or_else(|| exit.map(|e| e.describe())),
        };
        // dbt retry said "nothing to do" but the batch is not complete (its failing
        // nodes are unknown to dbt): run it again in full, without using up a retry.
        let retry_fell_short = kind == AttemptKind::Retry
            && nothing_to_do
            && exit.is_some_and(|e| e.code == Some(0))
            && !st.complete_enough();
        let mut requeue_front = false;
        let mut requeue_back = false;
        if retry_fell_short && !self.shutting_down {
            st.force_full = true;
            status = BatchStatus::Pending;
            requeue_front = true;
        } else if status == BatchStatus::Failed && st.auto_retries_left > 0 && !self.shutting_down {
            st.auto_retries_left -= 1;
            status = BatchStatus::Pending;
            // At the back: a transient cause (a late file, a busy warehouse) gets time to clear.
            requeue_back = true;
        }
        fx.push(Effect::Journal(JournalEntry::AttemptFinished {
            batch: st.batch.id.clone(),
            attempt: key.attempt,
            exit,
            status,
            invocation_id,
        }));
        if requeue_front {
            self.queue.push_front(key.batch);
        } else if requeue_back {
            self.queue.push_back(key.batch);
        }
        fx.extend(self.set_status(key.batch, status, now));
        if requeue_front || requeue_back {
            fx.push(Effect::Emit(Event::QueueChanged(
                self.queue.iter().copied().collect(),
            )));
        }
        fx.extend(self.dispatch(now));
        fx
    }

    pub fn worker_views(&self) -> Vec<WorkerView> {
        self.slots
            .iter()
            .map(|s| WorkerView {
                number: s.number,
                paused: s.paused,
                retiring: s.retiring,
                batch: s.running.as_ref().map(|r| r.key.batch),
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
            attempts: st.attempts.len() as u32,
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
            running_since: if running {
                current.map(|a| a.started_at)
            } else {
                None
            },
            nodes_done: st.nodes_done,
            nodes_total: st.nodes_total,
            executing: st.executing.len() as u32,
            counts: st.results.counts(),
            nothing_selected: st.nothing_selected,
            error: st.error.clone(),
            failing: st
                .results
                .failing()
                .map(|(id, n)| FailingNode {
                    unique_id: id.clone(),
                    status: n.status.clone(),
                    message: n.message.clone(),
                    compiled_path: self.compiled_path(b, id),
                })
                .collect(),
            auto_retries_left: st.auto_retries_left,
        }
    }

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
}

/// A batch's past in a resumed run, from the journal and its target dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prior {
    pub succeeded: bool,
    /// Attempts made so far (new attempts are numbered after them).
    pub attempts: u32,
    /// The last attempt's own run_results.json, if it is still there and matches.
    pub results: Option<RunResults>,
    /// The last attempt was stopped (its results lack the nodes that never ran).
    pub stopped: bool,
}

impl BatchState {
    fn new(batch: Batch, retries: u32) -> Self {
        Self {
            status: BatchStatus::Pending,
            batch,
            attempts: Vec::new(),
            results: MergedResults::default(),
            nothing_selected: false,
            error: None,
            last_error_line: None,
            nodes_done: 0,
            nodes_total: None,
            executing: BTreeSet::new(),
            node_paths: Default::default(),
            auto_retries_left: retries,
            force_full: false,
            resumed_done: false,
            splitting: false,
        }
    }

    /// Takes over a resumed batch's past, so that attempt numbers go on and a
    /// failed batch continues with `dbt retry` in its target dir.
    fn carry_over(&mut self, p: &Prior) {
        for number in 1..=p.attempts {
            let last = number == p.attempts;
            self.attempts.push(AttemptRecord {
                number,
                kind: AttemptKind::Full,
                worker: 0,
                started_at: 0.0,
                finished_at: Some(0.0),
                pid: None,
                invocation_id: None,
                exit: None,
                wrote_results: last && p.results.is_some(),
                stopped: (last && p.stopped).then_some(StopReason::Shutdown),
                nothing_to_do: false,
                results_problem: None,
                event_failures: 0,
            });
        }
        if let Some(rr) = &p.results {
            self.results.merge(rr, p.attempts);
        }
    }
    /// The merged results say every node is done and fine. Used only to judge a
    /// `dbt retry` that had nothing to do.
    fn complete_enough(&self) -> bool {
        let c = self.results.counts();
        c.total() > 0 && !c.has_failures()
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
