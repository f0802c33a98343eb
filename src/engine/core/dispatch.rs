//! Slots, the queue and the budget: which batch starts where, and when a slot is
//! free again.

use std::collections::BTreeSet;

use super::batch::AttemptRecord;
use super::{EngineCore, Running, Slot};
use crate::dbt::argv::{self, AttemptKind, ListedNode, Narrowing};
use crate::dbt::events::Level;
use crate::engine::history::AttemptCommand;
use crate::engine::messages::{BatchStatus, Event, LogLine};
use crate::engine::protocol::{AttemptKey, Effect, JournalEntry};

impl EngineCore {
    /// Picks the next (batch, slot) that may start now, if any: a free slot, room
    /// in the budget, and the first queued batch whose prerequisites have all
    /// succeeded and whose relations no running batch writes.
    pub fn next_dispatch(&self) -> Option<(usize, usize)> {
        self.pick(true)
    }

    /// As `next_dispatch`; `need_ready: false` also counts slots whose warm
    /// worker is still on its way, and batches that wait for the parse check's
    /// verdict (the run is then waiting, not idle).
    fn pick(&self, need_ready: bool) -> Option<(usize, usize)> {
        if self.queue_paused || self.shutting_down {
            return None;
        }
        if self.cap.is_some_and(|c| self.running_count() >= c) {
            return None;
        }
        let slot = self.slots.iter().position(|s| {
            !s.paused
                && !s.retiring
                && s.running.is_none()
                && (!need_ready || self.ready(s))
                && (!need_ready || self.cfg.first_only.is_none() || s.number == 1)
        })?;
        let held: BTreeSet<&str> = self
            .slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .flat_map(|r| {
                self.batches[r.key.batch]
                    .batch
                    .locks
                    .iter()
                    .map(String::as_str)
            })
            .collect();
        let batch = self.queue.iter().copied().find(|&b| {
            let st = &self.batches[b];
            (!need_ready
                || self
                    .cfg
                    .first_only
                    .as_ref()
                    .is_none_or(|id| *id == st.batch.id))
                && st
                    .after
                    .iter()
                    .all(|&p| self.batches[p].status == BatchStatus::Succeeded)
                && !st.batch.locks.iter().any(|l| held.contains(l.as_str()))
        })?;
        // The first batch that may start waits for room in the budget: the
        // queue's order holds (a smaller batch behind it does not jump it).
        if self.budget_in_use() + self.threads_of(batch) > self.cfg.budget {
            return None;
        }
        Some((batch, slot))
    }

    /// Whether a batch may go to this slot now. In warm mode only to a worker
    /// that has parsed: a batch given to one still parsing would wait for it and
    /// be charged its parse, while another worker may be ready sooner. A worker
    /// that failed to start takes the batch (it tries again and says why when
    /// it cannot); a slot with no worker gets one from `wanted_slots`.
    fn ready(&self, s: &Slot) -> bool {
        use crate::engine::messages::WarmState;
        if self.cfg.mode.mode != crate::engine::warm::check::Mode::Warm {
            return true;
        }
        s.warm
            .as_ref()
            .is_some_and(|w| matches!(w.state, WarmState::Idle | WarmState::Failed))
    }

    /// The slots worth a worker now: those running a batch, then as many free
    /// ones as queued batches could run beside them. A warm worker parses for
    /// seconds to minutes on a big project and holds memory; one merged batch,
    /// or windows that take turns on one DuckDB file, need one worker, not all.
    /// Batches that wait on prerequisites still count (their workers should be
    /// warm when they may start); those a failed prerequisite blocks do not.
    pub fn wanted_slots(&self) -> Vec<usize> {
        let mut held: BTreeSet<&str> = BTreeSet::new();
        let mut wanted: Vec<usize> = Vec::new();
        for s in &self.slots {
            if let Some(r) = &s.running {
                wanted.push(s.number);
                held.extend(
                    self.batches[r.key.batch]
                        .batch
                        .locks
                        .iter()
                        .map(String::as_str),
                );
            }
        }
        let mut could_run = 0usize;
        for &b in self.queue.iter().filter(|_| !self.shutting_down) {
            let st = &self.batches[b];
            let blocked = st.after.iter().any(|&p| {
                let s = self.batches[p].status;
                s.is_terminal() && s != BatchStatus::Succeeded
            });
            if blocked || st.batch.locks.iter().any(|l| held.contains(l.as_str())) {
                continue;
            }
            held.extend(st.batch.locks.iter().map(String::as_str));
            could_run += 1;
        }
        let free = self
            .slots
            .iter()
            .filter(|s| s.running.is_none() && !s.retiring && !s.paused)
            .map(|s| s.number)
            .take(could_run);
        wanted.extend(free);
        wanted.sort_unstable();
        wanted
    }

    /// A batch's connections while it runs: its own threads, else the run's.
    pub fn threads_of(&self, b: usize) -> u32 {
        self.batches[b]
            .batch
            .own
            .threads
            .unwrap_or(self.cfg.threads)
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

    /// Starts every batch that may start now.
    pub(super) fn dispatch(&mut self, now: f64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut dispatched = false;
        while let Some((b, s)) = self.next_dispatch() {
            self.queue.retain(|&q| q != b);
            let kind = self.next_kind(b);
            let worker = self.slots[s].number;
            let threads = self.threads_of(b);
            let st = &mut self.batches[b];
            let number = u32::try_from(st.attempts.len()).unwrap_or(u32::MAX - 1) + 1;
            st.begin_attempt(AttemptRecord::new(number, kind, worker, now));
            let key = AttemptKey {
                batch: b,
                attempt: number,
            };
            self.slots[s].running = Some(Running {
                key,
                threads,
                suspended: false,
            });
            fx.push(Effect::Journal(JournalEntry::AttemptStarted {
                batch: st.batch.id.clone(),
                attempt: number,
                kind,
                worker,
            }));
            if let Some(why) = st.unknown_committed.take() {
                fx.push(Self::notice(
                    Level::Warn,
                    format!(
                        "batch {}: {why}; what it committed is unknown, so it runs again in full",
                        st.batch.id
                    ),
                ));
            }
            let committed = if kind == AttemptKind::Full {
                st.committed()
            } else {
                // dbt retry runs only what failed or was skipped.
                BTreeSet::new()
            };
            // The view before the launch: a launch that cannot start the attempt
            // changes the batch again, and that change must come after this one.
            fx.push(self.batch_changed(b, now));
            if committed.is_empty() {
                fx.push(Effect::Launch {
                    key,
                    worker,
                    kind,
                    narrowing: None,
                });
            } else if self.batches[b].listed.is_some() {
                fx.extend(self.launch_rest(key, worker, None, now));
            } else if self.batches[b].tests_left {
                fx.extend(self.launch_tests_only(key, worker, now));
            } else {
                // What is left is what the batch selects less what committed:
                // that takes a list of what it selects.
                if let Some(a) = self.attempt_mut(key) {
                    a.awaiting_list = true;
                }
                fx.push(Self::notice(
                    Level::Info,
                    format!(
                        "batch {}: {} node(s) committed in earlier attempts; listing the rest (dbt ls)",
                        self.batches[b].batch.id,
                        committed.len()
                    ),
                ));
                fx.push(Effect::ListNodes { key });
            }
            dispatched = true;
        }
        if dispatched {
            self.idle_reported = false;
            fx.push(self.workers_changed());
            fx.push(self.queue_changed());
            fx.push(Effect::WriteSummary);
        }
        fx.extend(self.check_idle());
        fx
    }

    /// The answer to `Effect::ListNodes`: the attempt starts with what is left,
    /// or, when dbt ls failed, with the committed nodes excluded.
    pub fn on_nodes_listed(
        &mut self,
        key: AttemptKey,
        nodes: Result<Vec<ListedNode>, String>,
        now: f64,
    ) -> Vec<Effect> {
        let waiting = self.slot_of(key).is_some()
            && self
                .attempt_mut(key)
                .is_some_and(|a| std::mem::take(&mut a.awaiting_list));
        if !waiting {
            // Cancelled or stopped meanwhile: it already ended.
            return Vec::new();
        }
        let worker = self.batches[key.batch]
            .attempt(key.attempt)
            .map_or(0, |a| a.worker);
        match nodes {
            Ok(n) => {
                self.batches[key.batch].listed = Some(n);
                self.launch_rest(key, worker, None, now)
            }
            Err(e) => self.launch_rest(key, worker, Some(&e), now),
        }
    }

    /// Launches a full attempt without the nodes that committed earlier; when
    /// none is left, the attempt ends at once, succeeded, with no dbt at all.
    /// `list_failed`: why the batch's nodes could not be listed (the committed
    /// ones are then excluded, and their tests go with them).
    pub(super) fn launch_rest(
        &mut self,
        key: AttemptKey,
        worker: usize,
        list_failed: Option<&str>,
        now: f64,
    ) -> Vec<Effect> {
        let st = &self.batches[key.batch];
        let committed = st.committed();
        let id = st.batch.id.clone();
        let command = st
            .batch
            .own
            .command
            .map_or_else(|| self.cfg.command.clone(), |c| c.to_string());
        let mut fx = Vec::new();
        let listed = st.listed.as_ref().filter(|_| list_failed.is_none());
        let (narrowing, left_out) = if let Some(listed) = listed {
            let runs = |n: &&ListedNode| argv::executes(&command, &n.resource_type);
            let left_out = listed
                .iter()
                .filter(runs)
                .filter(|n| committed.contains(&n.unique_id))
                .count();
            let rest: Vec<String> = listed
                .iter()
                .filter(runs)
                .filter(|n| !committed.contains(&n.unique_id))
                .map(|n| argv::exact_selector(&n.fqn))
                .collect();
            if rest.is_empty() {
                return self.nothing_left(key, left_out, now);
            }
            (Narrowing::Only(rest), left_out)
        } else {
            fx.push(Self::notice(
                    Level::Warn,
                    format!(
                        "batch {id}: cannot list its nodes ({}); the {} that committed earlier are excluded, and the tests on them with them",
                        list_failed.unwrap_or("no list"),
                        committed.len()
                    ),
                ));
            let without = committed
                .iter()
                .map(|u| argv::selector_of_unique_id(u))
                .collect();
            (Narrowing::Without(without), committed.len())
        };
        if let Some(a) = self.attempt_mut(key) {
            a.left_out = u32::try_from(left_out).unwrap_or(u32::MAX);
        }
        fx.push(Effect::Emit(Event::Log {
            batch: key.batch,
            worker,
            line: LogLine {
                level: Level::Info,
                class: None,
                text: format!(
                    "leaving out {left_out} node(s) that committed in earlier attempts: {}",
                    committed.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                plain: true,
            },
        }));
        fx.push(Effect::Launch {
            key,
            worker,
            kind: AttemptKind::Full,
            narrowing: Some(narrowing),
        });
        fx
    }

    /// A split part whose model committed: its tests run (`--resource-type
    /// test`; a test that passed before runs again, which changes nothing), the
    /// model does not. A command that runs no test has nothing left.
    fn launch_tests_only(&mut self, key: AttemptKey, worker: usize, now: f64) -> Vec<Effect> {
        let st = &self.batches[key.batch];
        let command = st
            .batch
            .own
            .command
            .map_or_else(|| self.cfg.command.clone(), |c| c.to_string());
        let models = st.committed().len();
        if !argv::executes(&command, "test") {
            return self.nothing_left(key, models, now);
        }
        if let Some(a) = self.attempt_mut(key) {
            a.left_out = u32::try_from(models).unwrap_or(u32::MAX);
        }
        vec![
            Effect::Emit(Event::Log {
                batch: key.batch,
                worker,
                line: LogLine {
                    level: Level::Info,
                    class: None,
                    text: "its model committed in the split batch's attempt: only its tests run"
                        .into(),
                    plain: true,
                },
            }),
            Effect::Launch {
                key,
                worker,
                kind: AttemptKind::Full,
                narrowing: Some(Narrowing::TestsOnly),
            },
        ]
    }

    /// Every node the batch selects committed in earlier attempts: the attempt
    /// succeeds without running dbt.
    fn nothing_left(&mut self, key: AttemptKey, left_out: usize, now: f64) -> Vec<Effect> {
        let id = self.batches[key.batch].batch.id.clone();
        if let Some(a) = self.attempt_mut(key) {
            a.left_out = u32::try_from(left_out).unwrap_or(u32::MAX);
        }
        let mut fx = vec![
            self.release(key),
            Self::notice(
                Level::Info,
                format!(
                    "batch {id}: all its {left_out} node(s) committed in earlier attempts; nothing left to run"
                ),
            ),
        ];
        fx.extend(self.finish(key, None, BatchStatus::Succeeded, now));
        fx
    }

    /// The shell is about to start an attempt with `command`: it is kept for the
    /// history and journaled first (no process starts without its record).
    pub fn attempt_command(
        &mut self,
        key: AttemptKey,
        command: &AttemptCommand,
        now: f64,
    ) -> Vec<Effect> {
        let Some(a) = self.attempt_mut(key) else {
            return Vec::new();
        };
        a.command = Some(command.line());
        vec![
            Effect::Journal(JournalEntry::AttemptCommand {
                batch: self.batches[key.batch].batch.id.clone(),
                attempt: key.attempt,
                argv: command.argv.clone(),
                env: command.env.clone(),
            }),
            self.batch_changed(key.batch, now),
        ]
    }

    /// Nothing runs and nothing can start without a command (the queue is
    /// empty, paused, or holds only batches whose prerequisites failed).
    pub fn is_idle(&self) -> bool {
        self.running_count() == 0 && self.pick(false).is_none() && self.backoff.is_empty()
    }

    fn check_idle(&mut self) -> Vec<Effect> {
        if self.is_idle() && !self.idle_reported && !self.shutting_down {
            self.idle_reported = true;
            return vec![Effect::Emit(Event::Idle)];
        }
        Vec::new()
    }

    /// Something changed that may let a batch start: say "idle" again when it is.
    pub(super) fn wake(&mut self) {
        self.idle_reported = false;
    }

    /// Frees the slot that held the attempt: only ever when its child is gone (or
    /// was never started).
    pub(super) fn release(&mut self, key: AttemptKey) -> Effect {
        if let Some(s) = self.slot_of(key) {
            self.slots[s].running = None;
            if self.slots[s].retiring {
                self.slots.remove(s);
            }
        }
        self.workers_changed()
    }

    pub(super) fn set_workers(&mut self, n: usize) -> Vec<Effect> {
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
            self.slots.extend((first..first + need).map(Slot::new));
        } else {
            // Remove from the highest numbers down: idle slots go now, busy ones retire.
            for &i in active.iter().rev().take(active.len() - n) {
                self.slots[i].retiring = true;
            }
            self.slots.retain(|s| !(s.retiring && s.running.is_none()));
        }
        self.slots.sort_by_key(|s| s.number);
        self.wake();
        vec![self.workers_changed()]
    }

    pub(super) fn set_status(&mut self, b: usize, status: BatchStatus, now: f64) -> Vec<Effect> {
        self.batches[b].status = status;
        vec![
            Effect::Journal(JournalEntry::BatchStatus {
                batch: self.batches[b].batch.id.clone(),
                status,
            }),
            self.batch_changed(b, now),
            Effect::WriteSummary,
        ]
    }
}
