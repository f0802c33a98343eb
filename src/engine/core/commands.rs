//! What the faces ask for: pause, cancel, retry, rebalance, stop.

use super::EngineCore;
use crate::dbt::events::Level;
use crate::engine::messages::{BatchStatus, Command, Event};
use crate::engine::protocol::{AttemptCtl, AttemptKey, Effect, StopReason};

impl EngineCore {
    pub fn on_command(&mut self, cmd: Command, now: f64) -> Vec<Effect> {
        let mut fx = match cmd {
            Command::PauseWorker(n) => self.pause_worker(n, true, now),
            Command::ResumeWorker(n) => self.pause_worker(n, false, now),
            Command::PauseQueue => self.pause_queue(true),
            Command::ResumeQueue => self.pause_queue(false),
            Command::Cancel(b) if b < self.batches.len() => self.cancel(b, now),
            Command::Retry(b) if b < self.batches.len() => self.requeue(b, now),
            Command::Rerun(b) if b < self.batches.len() => self.rerun(b, now),
            Command::RetryAllFailed => (0..self.batches.len())
                .filter(|&b| self.batches[b].status == BatchStatus::Failed)
                .collect::<Vec<_>>()
                .into_iter()
                .flat_map(|b| self.requeue(b, now))
                .collect(),
            Command::SetWorkers(n) if n >= 1 => self.set_workers(n),
            Command::ChangeWorkers { by } => {
                let n = self.active_workers().saturating_add_signed(by as isize);
                if n == 0 {
                    vec![Self::notice(
                        Level::Info,
                        "one worker is the minimum; P pauses the queue",
                    )]
                } else {
                    self.set_workers(n)
                }
            }
            Command::SetBudget(n) => self.set_budget(n),
            Command::MoveBatch { batch, up } => self.move_batch(batch, up),
            Command::Shutdown { force } => self.shutdown(force, now),
            Command::EditBatch {
                batch,
                select,
                vars,
            } if batch < self.batches.len() => self.edit_batch(batch, select, &vars, now),
            Command::SplitBatch(b) if b < self.batches.len() => self.request_split(b),
            Command::Cancel(_)
            | Command::Retry(_)
            | Command::Rerun(_)
            | Command::SetWorkers(_)
            | Command::EditBatch { .. }
            | Command::SplitBatch(_) => Vec::new(),
        };
        fx.extend(self.dispatch(now));
        fx
    }

    fn pause_worker(&mut self, n: usize, pause: bool, now: f64) -> Vec<Effect> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.number == n) else {
            return Vec::new();
        };
        slot.paused = pause;
        let mut fx = Vec::new();
        if let Some(r) = slot.running.as_mut() {
            r.suspended = pause;
            let ctl = if pause {
                AttemptCtl::Suspend
            } else {
                AttemptCtl::Resume
            };
            let key = r.key;
            fx.push(Effect::Control { key, ctl });
            fx.push(self.batch_changed(key.batch, now));
        }
        fx.push(self.workers_changed());
        if !pause {
            self.wake();
        }
        fx
    }

    fn pause_queue(&mut self, pause: bool) -> Vec<Effect> {
        self.queue_paused = pause;
        if !pause {
            // Resumed by hand: the cause is taken to be fixed.
            self.breaker.reset();
            self.wake();
        }
        vec![Effect::Emit(Event::QueuePaused(pause))]
    }

    fn cancel(&mut self, b: usize, now: f64) -> Vec<Effect> {
        match self.batches[b].status {
            BatchStatus::Running => {
                let key = self
                    .slot_of_batch(b)
                    .and_then(|s| self.slots[s].running.as_ref())
                    .map(|r| r.key);
                key.map(|key| {
                    self.mark_stopped(key, StopReason::Cancel);
                    if let Some(fx) = self.end_unlaunched(key, now) {
                        return fx;
                    }
                    vec![Effect::Control {
                        key,
                        ctl: AttemptCtl::Stop,
                    }]
                })
                .unwrap_or_default()
            }
            BatchStatus::Pending => {
                self.queue.retain(|&q| q != b);
                let mut fx = self.set_status(b, BatchStatus::Cancelled, now);
                fx.push(self.queue_changed());
                fx
            }
            _ => Vec::new(),
        }
    }

    /// Queues a failed or cancelled batch again, at the back.
    pub(super) fn requeue(&mut self, b: usize, now: f64) -> Vec<Effect> {
        if !matches!(
            self.batches[b].status,
            BatchStatus::Failed | BatchStatus::Cancelled
        ) {
            return Vec::new();
        }
        self.queue.push_back(b);
        self.wake();
        let mut fx = self.set_status(b, BatchStatus::Pending, now);
        fx.push(self.queue_changed());
        fx
    }

    /// A succeeded batch runs again in full, every node of it (the user's
    /// deliberate rerun): dbt retry would find nothing to do.
    fn rerun(&mut self, b: usize, now: f64) -> Vec<Effect> {
        if self.batches[b].status != BatchStatus::Succeeded {
            return Vec::new();
        }
        let st = &mut self.batches[b];
        st.force_full = true;
        // The user's choice: nothing it committed before is left out.
        st.committed_since = u32::try_from(st.attempts.len()).unwrap_or(u32::MAX - 1) + 1;
        self.queue.push_back(b);
        self.wake();
        let mut fx = self.set_status(b, BatchStatus::Pending, now);
        fx.push(self.queue_changed());
        fx
    }

    fn set_budget(&mut self, n: u32) -> Vec<Effect> {
        // Below the largest batch's threads, that batch could never start.
        let most = (0..self.batches.len())
            .map(|b| self.threads_of(b))
            .max()
            .unwrap_or(self.cfg.threads)
            .max(self.cfg.threads);
        if n < most {
            return vec![Self::notice(
                Level::Warn,
                format!(
                    "budget {n} is below one batch's {most} threads; kept {}",
                    self.cfg.budget
                ),
            )];
        }
        self.cfg.budget = n;
        self.wake();
        vec![Effect::Emit(Event::BudgetChanged(n))]
    }

    fn move_batch(&mut self, batch: usize, up: bool) -> Vec<Effect> {
        let Some(pos) = self.queue.iter().position(|&q| q == batch) else {
            return Vec::new();
        };
        let to = if up {
            pos.checked_sub(1)
        } else {
            Some(pos + 1).filter(|&p| p < self.queue.len())
        };
        match to {
            Some(to) => {
                self.queue.swap(pos, to);
                vec![self.queue_changed()]
            }
            None => Vec::new(),
        }
    }

    /// An attempt stopped while it waits for its `dbt ls` has no process to
    /// stop: it ends now, cancelled (the list, when it comes, is dropped).
    fn end_unlaunched(&mut self, key: AttemptKey, now: f64) -> Option<Vec<Effect>> {
        let a = self.attempt_mut(key)?;
        if !std::mem::take(&mut a.awaiting_list) {
            return None;
        }
        let mut fx = vec![self.release(key)];
        fx.extend(self.finish(key, None, BatchStatus::Cancelled, now));
        Some(fx)
    }

    fn shutdown(&mut self, force: bool, now: f64) -> Vec<Effect> {
        self.shutting_down = true;
        let keys: Vec<AttemptKey> = self
            .slots
            .iter()
            .filter_map(|s| s.running.as_ref().map(|r| r.key))
            .collect();
        let ctl = if force {
            AttemptCtl::Kill
        } else {
            AttemptCtl::Stop
        };
        keys.into_iter()
            .flat_map(|key| {
                self.mark_stopped(key, StopReason::Shutdown);
                self.end_unlaunched(key, now)
                    .unwrap_or_else(|| vec![Effect::Control { key, ctl }])
            })
            .collect()
    }

    fn mark_stopped(&mut self, key: AttemptKey, why: StopReason) {
        if let Some(a) = self.attempt_mut(key) {
            // A cancel followed by a shutdown is still a cancel.
            a.stopped.get_or_insert(why);
        }
    }
}
