//! Slots, the queue and the budget: which batch starts where, and when a slot is
//! free again.

use std::collections::BTreeSet;

use super::batch::AttemptRecord;
use super::{EngineCore, Running, Slot};
use crate::dbt::argv::AttemptKind;
use crate::engine::history::AttemptCommand;
use crate::engine::messages::{BatchStatus, Event};
use crate::engine::protocol::{AttemptKey, Effect, JournalEntry};

impl EngineCore {
    /// Picks the next (batch, slot) that may start now, if any: a free slot, room
    /// in the budget, and the first queued batch whose prerequisites have all
    /// succeeded and whose relations no running batch writes.
    pub fn next_dispatch(&self) -> Option<(usize, usize)> {
        if self.queue_paused || self.shutting_down {
            return None;
        }
        let slot = self
            .slots
            .iter()
            .position(|s| !s.paused && !s.retiring && s.running.is_none())?;
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
            st.after
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
            // The view before the launch: a launch that cannot start the attempt
            // changes the batch again, and that change must come after this one.
            fx.push(self.batch_changed(b, now));
            fx.push(Effect::Launch { key, worker, kind });
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
        self.running_count() == 0 && self.next_dispatch().is_none()
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
