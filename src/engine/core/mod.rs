//! The engine's state machine: pure. Commands and attempt reports in, effects out;
//! no processes, no files, no clocks (time is passed in). The async shell carries
//! the effects out. This is where the scheduling and budget rules live and are
//! tested.
//!
//! The budget in use is never a counter: it is the sum of `threads` over the slots
//! that hold a live attempt, and a slot lets go of its attempt only when the attempt
//! actor reports the child reaped and its process group empty.
//!
//! The state machine is split by concern: `batch` (one batch's state), `dispatch`
//! (slots, the queue and the budget), `commands` (what faces ask for), `reports`
//! (what attempts say, and the verdict), `split` (edit and split), `views` (what
//! the faces are shown).

mod backoff;
mod batch;
mod breaker;
pub(crate) use breaker::DEFAULT_K as BREAKER_K;
mod commands;
mod dispatch;
mod reports;
mod split;
mod views;

use std::collections::{BTreeMap, VecDeque};

use crate::engine::messages::{BatchStatus, Event, WarmView};
use crate::engine::protocol::{AttemptKey, Effect, JournalEntry, Prior};
use crate::plan::Batch;

use batch::BatchState;

/// A slot's hold on a live attempt: the connections it reserves.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    key: AttemptKey,
    threads: u32,
    suspended: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Slot {
    /// 1-based, the `{worker}` of `--env`.
    number: usize,
    paused: bool,
    /// Removed by `SetWorkers`; goes away when its batch ends.
    retiring: bool,
    running: Option<Running>,
    /// Its warm dbt process, in warm mode.
    warm: Option<WarmView>,
}

impl Slot {
    fn new(number: usize) -> Self {
        Self {
            number,
            paused: false,
            retiring: false,
            running: None,
            warm: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CoreConfig {
    pub threads: u32,
    pub budget: u32,
    pub retries: u32,
    pub workers: usize,
    pub state_dir: String,
    pub command: String,
    /// `<target>/compiled/<project name>` root, to point at compiled SQL.
    pub compiled_root_name: Option<String>,
    /// What the plan decided, one line each, for the faces.
    pub plan: Vec<String>,
    /// Warm or cold, and why.
    pub mode: crate::engine::warm::check::ModeChoice,
    /// A batch whose selection matches no node succeeds (`--allow-empty`)
    /// instead of failing.
    pub allow_empty: bool,
    /// The run's `--selector`, to name what a batch selects.
    pub selector: Option<String>,
    /// While the parse check's verdict is still to come: the one batch that
    /// may run before it (on worker 1, which parsed with its inputs).
    pub first_only: Option<String>,
    /// Attempts failing alike that pause the queue (`--breaker`); `None`: off.
    pub breaker: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineCore {
    cfg: CoreConfig,
    batches: Vec<BatchState>,
    /// Pending batches in dispatch order.
    queue: VecDeque<usize>,
    slots: Vec<Slot>,
    queue_paused: bool,
    shutting_down: bool,
    idle_reported: bool,
    breaker: breaker::Breaker,
    /// Batches at once the warehouse allows, learned from its refusals;
    /// `None`: as many as there are workers.
    cap: Option<usize>,
    /// Successes since the cap last changed.
    cap_successes: usize,
    /// Batches held back after a transient fault: when each is due (Unix seconds).
    backoff: Vec<(f64, usize)>,
}

impl EngineCore {
    /// `prior` holds what a resumed run's journal says about batches (by id).
    pub fn new(cfg: CoreConfig, plan: Vec<Batch>, prior: &BTreeMap<String, Prior>) -> Self {
        let mut queue = VecDeque::new();
        let batches = plan
            .into_iter()
            .enumerate()
            .map(|(i, batch)| {
                let mut st = BatchState::new(batch, cfg.retries);
                if let Some(p) = prior.get(&st.batch.id) {
                    st.carry_over(p);
                }
                if st.status != BatchStatus::Succeeded {
                    queue.push_back(i);
                }
                st
            })
            .collect();
        let slots = (1..=cfg.workers).map(Slot::new).collect();
        let breaker = breaker::Breaker::new(cfg.breaker);
        let mut core = Self {
            cfg,
            batches,
            queue,
            slots,
            queue_paused: false,
            shutting_down: false,
            idle_reported: false,
            breaker,
            cap: None,
            cap_successes: 0,
            backoff: Vec::new(),
        };
        core.link_prerequisites();
        core
    }

    /// Turns each batch's `after` ids into indices (an unknown id is ignored:
    /// the plan that named it did not keep it).
    fn link_prerequisites(&mut self) {
        let index: BTreeMap<String, usize> = self
            .batches
            .iter()
            .enumerate()
            .map(|(i, b)| (b.batch.id.clone(), i))
            .collect();
        for st in &mut self.batches {
            st.after = st
                .batch
                .after
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect();
        }
    }

    /// The first effects: announce the plan, start what fits, write the summary.
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

    /// Connections held: the threads of every slot whose child is not yet reaped.
    pub fn budget_in_use(&self) -> u32 {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .map(|r| r.threads)
            .sum()
    }

    /// Connections in use now: the nodes executing in running attempts (per
    /// dbt's events), at most each attempt's threads.
    pub fn connections_active(&self) -> u32 {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .map(|r| {
                let executing = self.batches[r.key.batch].executing.len();
                u32::try_from(executing).unwrap_or(u32::MAX).min(r.threads)
            })
            .sum()
    }

    /// (batch, process group) of every attempt whose child has started.
    pub fn live_groups(&self) -> Vec<(usize, i32)> {
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .filter_map(|r| {
                let pid = self.batches[r.key.batch].attempt(r.key.attempt)?.pid?;
                Some((r.key.batch, i32::try_from(pid).ok()?))
            })
            .collect()
    }

    /// The parse check's verdict, after the first batch may have started:
    /// alike lets every batch run warm; a difference runs the rest cold.
    pub fn on_verdict(&mut self, verdict: Result<(), String>, now: f64) -> Vec<Effect> {
        use crate::engine::warm::check::{Mode, ModeChoice};
        self.cfg.first_only = None;
        let mut fx = Vec::new();
        if let Err(why) = verdict {
            fx.push(Self::notice(
                crate::dbt::events::Level::Warn,
                format!("running cold from now on: {why}"),
            ));
            self.cfg.mode = ModeChoice {
                mode: Mode::Cold,
                reason: Some(why),
            };
            let info = self.run_info();
            fx.push(Effect::Emit(Event::ModeChanged {
                mode: info.mode,
                reason: info.mode_reason,
            }));
        }
        self.wake();
        fx.extend(self.dispatch(now));
        fx
    }

    /// A slot's warm process changed state; one that is ready may take a batch.
    pub fn on_warm(&mut self, worker: usize, view: WarmView, now: f64) -> Vec<Effect> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.number == worker) else {
            return Vec::new();
        };
        if slot.warm.as_ref() == Some(&view) {
            return Vec::new();
        }
        let new_pid = view
            .pid
            .filter(|p| slot.warm.as_ref().and_then(|w| w.pid) != Some(*p));
        slot.warm = Some(view);
        let mut fx = Vec::new();
        if let Some(pid) = new_pid {
            fx.push(Effect::Journal(JournalEntry::WorkerStarted { worker, pid }));
        }
        fx.push(self.workers_changed());
        fx.extend(self.dispatch(now));
        fx
    }

    pub fn running_count(&self) -> usize {
        self.slots.iter().filter(|s| s.running.is_some()).count()
    }

    /// Shutting down, and every child is gone: the engine may end.
    pub fn is_finished(&self) -> bool {
        self.shutting_down && self.running_count() == 0
    }

    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    pub fn batch(&self, b: usize) -> &Batch {
        &self.batches[b].batch
    }

    pub fn find_batch(&self, id: &str) -> Option<&Batch> {
        self.batches.iter().map(|b| &b.batch).find(|b| b.id == id)
    }

    pub fn budget(&self) -> u32 {
        self.cfg.budget
    }

    pub fn threads(&self) -> u32 {
        self.cfg.threads
    }

    /// Worker slots that take batches (a retiring slot only finishes its batch).
    pub fn active_workers(&self) -> usize {
        self.slots.iter().filter(|s| !s.retiring).count()
    }

    fn slot_of(&self, key: AttemptKey) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|r| r.key == key))
    }

    fn slot_of_batch(&self, b: usize) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|r| r.key.batch == b))
    }

    fn attempt_mut(&mut self, key: AttemptKey) -> Option<&mut batch::AttemptRecord> {
        self.batches.get_mut(key.batch)?.attempt_mut(key.attempt)
    }
}

#[cfg(test)]
mod tests;
