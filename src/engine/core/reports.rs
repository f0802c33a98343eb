//! What attempts report (spawn, output, results, exit) and the verdict on each
//! attempt: succeeded, failed, cancelled, or queued again.

use super::EngineCore;
use crate::dbt::argv::AttemptKind;
use crate::dbt::events::{self, DbtEvent, EventKind, Level, StatusClass};
use crate::dbt::run_results::{ReadError, RunResults};
use crate::engine::messages::{AttemptOutcome, BatchStatus, Event, LogLine};
use crate::engine::protocol::{
    AttemptKey, AttemptReport, Effect, ExitInfo, JournalEntry, OutputLine, StopReason,
};

impl EngineCore {
    pub fn on_attempt(&mut self, msg: AttemptReport, now: f64) -> Vec<Effect> {
        match msg {
            AttemptReport::Spawned { key, pid } => {
                let Some(a) = self.attempt_mut(key) else {
                    return Vec::new();
                };
                a.pid = Some(pid);
                vec![
                    Effect::Journal(JournalEntry::AttemptSpawned {
                        batch: self.batches[key.batch].batch.id.clone(),
                        attempt: key.attempt,
                        pid,
                    }),
                    self.batch_changed(key.batch, now),
                ]
            }
            AttemptReport::Line { key, line } => self.on_line(key, line, now),
            AttemptReport::Shed { key, lines } => {
                self.shed_line(key.batch, lines).into_iter().collect()
            }
            AttemptReport::Results { key, results } => {
                self.take_results(key, &results);
                vec![self.batch_changed(key.batch, now)]
            }
            AttemptReport::SpawnFailed { key, error } => {
                let mut fx = vec![self.release(key)];
                let st = &mut self.batches[key.batch];
                st.error = Some(format!("could not start dbt: {error}"));
                // Without a process there is nothing a retry would do differently;
                // pausing the queue avoids burning through every batch the same way.
                st.auto_retries_left = 0;
                self.queue_paused = true;
                fx.push(Self::notice(
                    Level::Error,
                    format!("could not start dbt ({error}); the queue is paused"),
                ));
                fx.push(Effect::Emit(Event::QueuePaused(true)));
                fx.extend(self.finish(key, None, BatchStatus::Failed, now));
                fx
            }
            AttemptReport::Exited {
                key,
                exit,
                results,
                group_clean,
                broken,
            } => {
                let mut fx = vec![self.release(key)];
                if let Some(a) = self.attempt_mut(key) {
                    a.runner_problem = broken;
                }
                let id = self.batches[key.batch].batch.id.clone();
                if !group_clean {
                    fx.push(Self::notice(
                        Level::Error,
                        format!("batch {id}: processes of its dbt group survived SIGKILL"),
                    ));
                }
                match results {
                    Ok(rr) => self.take_results(key, &rr),
                    Err(ReadError::Missing) => {
                        // For the commands dbt-herd runs, dbt writes run_results.json
                        // whenever it ran (nothing to do included): exit 0 without it
                        // is not dbt succeeding (a wrong --dbt, a wrapper that lost it).
                        if let Some(a) = self.attempt_mut(key)
                            && exit.code == Some(0)
                            && !a.nothing_to_do
                            && a.runner_problem.is_none()
                        {
                            a.results_problem =
                                Some("dbt exited 0 but wrote no run_results.json".into());
                        }
                    }
                    Err(e) => {
                        // Never counted as success: a stale or broken file says
                        // nothing about what this attempt did.
                        if let Some(a) = self.attempt_mut(key) {
                            a.results_problem = Some(e.to_string());
                        }
                        fx.push(Self::notice(Level::Warn, format!("batch {id}: {e}")));
                    }
                }
                if let Some(why) = self.empty_selection(key, exit) {
                    let st = &mut self.batches[key.batch];
                    // Running it again selects nothing again.
                    st.auto_retries_left = 0;
                    if let Some(a) = st.attempt_mut(key.attempt) {
                        a.empty_selection = Some(why);
                    }
                }
                let status = self.verdict(key, exit);
                fx.extend(self.finish(key, Some(exit), status, now));
                fx
            }
        }
    }

    /// The shell could not start an attempt it was asked to launch (the journal
    /// cannot record it): the slot is freed and the batch waits at the front of
    /// the queue, as if it had never been dispatched.
    pub fn not_started(&mut self, key: AttemptKey, reason: &str, now: f64) -> Vec<Effect> {
        let mut fx = vec![self.release(key)];
        let st = &mut self.batches[key.batch];
        if st.attempts.len() == key.attempt as usize {
            st.attempts.pop();
        }
        st.error = Some(format!("not started: {reason}"));
        self.queue.push_front(key.batch);
        fx.extend(self.set_status(key.batch, BatchStatus::Pending, now));
        fx.push(self.queue_changed());
        fx.extend(self.dispatch(now));
        fx
    }

    fn take_results(&mut self, key: AttemptKey, rr: &RunResults) {
        if let Some(a) = self.attempt_mut(key) {
            a.wrote_results = true;
            a.dbt_elapsed_s = rr.elapsed_time;
            a.result_count = rr.results.len();
        }
        self.batches[key.batch].results.merge(rr, key.attempt);
    }

    /// A log line saying how many lines were not shown, and where they are.
    pub fn shed_line(&self, b: usize, lines: u64) -> Option<Effect> {
        let worker = self.batches.get(b)?.attempts.last().map_or(0, |a| a.worker);
        Some(Effect::Emit(Event::Log {
            batch: b,
            worker,
            line: LogLine {
                level: Level::Warn,
                class: None,
                text: format!(
                    "… {lines} lines not shown here; the full log is in {}",
                    self.log_location(b)
                ),
                plain: true,
            },
        }))
    }

    fn on_line(&mut self, key: AttemptKey, line: OutputLine, now: f64) -> Vec<Effect> {
        let mut finished_node = None;
        let st = &mut self.batches[key.batch];
        let worker = st.attempt(key.attempt).map_or(0, |a| a.worker);
        let (shown, changed) = match line.event {
            None if line.text.trim().is_empty() => return Vec::new(),
            None => (
                Some(LogLine {
                    level: if line.stderr {
                        Level::Warn
                    } else {
                        Level::Info
                    },
                    class: None,
                    text: line.text,
                    plain: true,
                }),
                false,
            ),
            Some(ev) => {
                let changed = self.note_event(key, &ev);
                if let Some(done) = node_finished(key, &ev) {
                    finished_node = Some(done);
                }
                let shown = events::render(&ev).map(|text| LogLine {
                    level: ev.level,
                    class: match &ev.kind {
                        EventKind::NodeFinished { status, .. } => {
                            Some(events::status_class(status))
                        }
                        EventKind::NodeSkipped { .. } => Some(StatusClass::Skipped),
                        _ => None,
                    },
                    text,
                    plain: false,
                });
                (shown, changed)
            }
        };
        let mut fx: Vec<Effect> = finished_node.map(Effect::Emit).into_iter().collect();
        if let Some(line) = shown {
            fx.push(Effect::Emit(Event::Log {
                batch: key.batch,
                worker,
                line,
            }));
        }
        if changed {
            fx.push(self.batch_changed(key.batch, now));
        }
        fx
    }

    /// Takes what a dbt event says about the batch's progress; true if the batch
    /// view changed.
    fn note_event(&mut self, key: AttemptKey, ev: &DbtEvent) -> bool {
        let st = &mut self.batches[key.batch];
        if ev.level == Level::Error && !ev.msg.trim().is_empty() {
            st.last_error_line = Some(ev.msg.clone());
            st.first_error_line.get_or_insert_with(|| ev.msg.clone());
        }
        let attempt = st.attempt_mut(key.attempt);
        if let (Some(a), Some(inv)) = (attempt, &ev.invocation_id)
            && a.invocation_id.is_none()
        {
            a.invocation_id = Some(inv.clone());
        }
        match &ev.kind {
            EventKind::Concurrency { nodes, .. } => st.nodes_total = Some(*nodes),
            EventKind::NodeStarted { node, pos } => st.note_node(node, *pos, false),
            EventKind::NodeFinished {
                node,
                pos,
                status,
                execution_time,
                ..
            } => {
                st.note_node(node, *pos, true);
                // Committed now, whatever happens to the rest of the attempt: a
                // later attempt must not build it again.
                if events::is_committed(status) {
                    st.results.record(
                        &node.unique_id,
                        status,
                        key.attempt,
                        execution_time.unwrap_or(0.0),
                    );
                }
                if events::status_class(status) == StatusClass::Bad
                    && let Some(a) = st.attempt_mut(key.attempt)
                {
                    a.event_failures += 1;
                }
            }
            EventKind::NodeSkipped { node, pos } => st.note_node(node, *pos, true),
            EventKind::NothingSelected => st.nothing_selected = true,
            EventKind::NothingToDo => {
                if let Some(a) = st.attempt_mut(key.attempt) {
                    a.nothing_to_do = true;
                }
                return false;
            }
            _ => return false,
        }
        true
    }

    /// What the batch selects, as a person would name it.
    fn selection_text(&self, b: usize) -> String {
        let batch = &self.batches[b].batch;
        match (
            &batch.select,
            batch.own.selector.as_ref().or(self.cfg.selector.as_ref()),
        ) {
            (Some(s), _) => s.clone(),
            (None, Some(name)) => format!("--selector {name}"),
            (None, None) => "*".into(),
        }
    }

    /// A full attempt that left nothing out, exited 0 and ran no node at all:
    /// its selection matched nothing. Unless `--allow-empty`, that is a failure
    /// (a typo in a selector must not pass for a backfill that ran).
    fn empty_selection(&self, key: AttemptKey, exit: ExitInfo) -> Option<String> {
        let st = &self.batches[key.batch];
        let a = st.attempt(key.attempt)?;
        let ran_nothing = exit.code == Some(0)
            && a.kind == AttemptKind::Full
            && a.left_out == 0
            && a.stopped.is_none()
            && a.result_count == 0
            && st.nodes_done == 0
            && a.runner_problem.is_none()
            && (a.wrote_results || st.nothing_selected || a.nothing_to_do);
        (ran_nothing && !self.cfg.allow_empty).then(|| {
            format!(
                "selection '{}' matched no node (pass --allow-empty to run it anyway)",
                self.selection_text(key.batch)
            )
        })
    }

    /// The batch's status after an attempt exits.
    pub fn verdict(&self, key: AttemptKey, exit: ExitInfo) -> BatchStatus {
        let st = &self.batches[key.batch];
        let Some(a) = st.attempt(key.attempt) else {
            return BatchStatus::Failed;
        };
        let clean = exit.code == Some(0)
            && !st.results.counts().has_failures()
            && a.results_problem.is_none()
            && a.runner_problem.is_none()
            && a.empty_selection.is_none()
            && (a.wrote_results || a.event_failures == 0);
        if clean && !(a.nothing_to_do && a.kind == AttemptKind::Retry && !st.complete_enough()) {
            return BatchStatus::Succeeded;
        }
        if a.stopped.is_some() {
            return BatchStatus::Cancelled;
        }
        BatchStatus::Failed
    }

    pub(super) fn finish(
        &mut self,
        key: AttemptKey,
        exit: Option<ExitInfo>,
        status: BatchStatus,
        now: f64,
    ) -> Vec<Effect> {
        let shutting_down = self.shutting_down;
        // One at a time and still refused: the refusal is a failure like any.
        let at_floor = self.cap == Some(1);
        let st = &mut self.batches[key.batch];
        // The attempt's own verdict, before a requeue makes its batch pending.
        let outcome = AttemptOutcome::of(status);
        let (kind, nothing_to_do, invocation_id, stopped) = match st.attempt_mut(key.attempt) {
            Some(a) => {
                a.finished_at = Some(now);
                a.exit = exit;
                a.outcome = outcome;
                (a.kind, a.nothing_to_do, a.invocation_id.clone(), a.stopped)
            }
            None => (AttemptKind::Full, false, None, None),
        };
        st.executing.clear();
        st.error = match (status, stopped) {
            (BatchStatus::Succeeded, _) => None,
            // What an interrupted dbt prints (a traceback, "cancelled") is noise: say who stopped it.
            (BatchStatus::Cancelled, Some(StopReason::Cancel)) => {
                Some("cancelled by the user".into())
            }
            (BatchStatus::Cancelled, Some(StopReason::Shutdown)) => {
                Some("stopped when the run was stopped".into())
            }
            _ if st
                .attempt(key.attempt)
                .is_some_and(|a| a.empty_selection.is_some()) =>
            {
                st.attempt(key.attempt)
                    .and_then(|a| a.empty_selection.clone())
            }
            // A broken worker is the cause, whatever dbt managed to say before.
            _ if st
                .attempt(key.attempt)
                .is_some_and(|a| a.runner_problem.is_some()) =>
            {
                st.attempt(key.attempt)
                    .and_then(|a| a.runner_problem.clone())
            }
            // A message that only repeats the status ("ERROR", as a microbatch
            // model's does) gives way to the error dbt logged.
            _ if st.results.first_error_is_bare() && st.first_error_line.is_some() => st
                .results
                .failing()
                .next()
                .map(|(id, _)| id.clone())
                .zip(st.first_error_line.clone())
                .map(|(id, line)| format!("{id}: {line}")),
            // The attempt's own words first: its results, then what it logged
            // as an error, and only then what is wrong with its results file
            // (one that wrote none failed before it could, and said why).
            _ => st
                .attempt(key.attempt)
                .filter(|a| a.wrote_results)
                .and_then(|_| st.results.first_error())
                .or_else(|| st.last_error_line.clone())
                .or_else(|| {
                    st.attempt(key.attempt)
                        .and_then(|a| a.results_problem.clone())
                })
                .or_else(|| st.error.clone())
                .or_else(|| exit.map(|e| e.describe())),
        }
        .map(|e| crate::dbt::failure::cause(&e));
        st.failure_class = (outcome == AttemptOutcome::Failed).then(|| {
            let counts = st.results.counts();
            crate::dbt::class::classify(
                st.error.as_deref().unwrap_or_default(),
                counts.fail > 0 && counts.error == 0,
            )
        });
        let class = st.failure_class;
        if let Some(a) = st.attempt_mut(key.attempt) {
            a.failure_class = class;
        }
        // dbt retry said "nothing to do" but the batch is not complete (its failing
        // nodes are unknown to dbt): run it again in full, without using up a retry.
        let retry_fell_short = kind == AttemptKind::Retry
            && nothing_to_do
            && exit.is_some_and(|e| e.code == Some(0))
            && !st.complete_enough();
        // Refused for want of connections: back-pressure, not a failure. It
        // goes first again, without using up a retry, and fewer run at once.
        let pushed_back = outcome == AttemptOutcome::Failed
            && st.failure_class == Some(crate::dbt::class::FailureClass::ConnectionLimit)
            && !shutting_down
            && !at_floor;
        // A broken or refused connection (a restart, a network blip): it
        // waits and runs again, spending no retry.
        let transient = outcome == AttemptOutcome::Failed
            && st
                .failure_class
                .is_some_and(crate::dbt::class::FailureClass::retries_itself)
            && st.transient_left > 0
            && !shutting_down;
        let mut status = status;
        let requeue = if pushed_back {
            status = BatchStatus::Pending;
            Some(true)
        } else if transient {
            st.transient_left -= 1;
            status = BatchStatus::Pending;
            None
        } else if retry_fell_short && !shutting_down {
            st.force_full = true;
            status = BatchStatus::Pending;
            Some(true)
        } else if status == BatchStatus::Failed && st.auto_retries_left > 0 && !shutting_down {
            st.auto_retries_left -= 1;
            status = BatchStatus::Pending;
            // At the back: a transient cause (a late file, a busy warehouse) gets time to clear.
            Some(false)
        } else {
            None
        };
        let mut fx = vec![Effect::Journal(JournalEntry::AttemptFinished {
            batch: st.batch.id.clone(),
            attempt: key.attempt,
            exit,
            status,
            invocation_id,
            outcome: Some(outcome),
        })];
        // An interrupted dbt ends its log in a traceback: the last line says who stopped it.
        if let (BatchStatus::Cancelled, Some(why)) = (status, st.error.clone()) {
            let worker = st.attempt(key.attempt).map_or(0, |a| a.worker);
            fx.push(Effect::Emit(Event::Log {
                batch: key.batch,
                worker,
                line: LogLine {
                    level: Level::Warn,
                    class: None,
                    text: why,
                    plain: true,
                },
            }));
        }
        match requeue {
            Some(true) => self.queue.push_front(key.batch),
            Some(false) => self.queue.push_back(key.batch),
            None => {}
        }
        fx.extend(self.set_status(key.batch, status, now));
        if requeue.is_some() {
            fx.push(self.queue_changed());
        }
        if pushed_back {
            fx.extend(self.lower_cap());
        } else {
            let broke = self.batches[key.batch].failure_class
                == Some(crate::dbt::class::FailureClass::Transient);
            if transient {
                fx.push(self.hold_back(key.batch, now));
                if !broke {
                    // Refused: do not hammer a warehouse that is not there;
                    // fewer at once until it answers again.
                    fx.extend(self.lower_cap());
                }
            }
            // A connection that broke mid-way is not a sign that none can be
            // made; a refused one counts, so that a warehouse down for the
            // run stops it after K attempts, retries or not.
            if !(transient && broke) {
                fx.extend(self.count_for_breaker(key.batch, outcome));
            }
        }
        fx.extend(self.dispatch(now));
        fx
    }

    /// The attempt's end, counted by the circuit breaker (a failure gets its
    /// class first); when it trips, the queue pauses and the diagnosis is said.
    fn count_for_breaker(&mut self, b: usize, outcome: AttemptOutcome) -> Vec<Effect> {
        let st = &self.batches[b];
        let mut fx = Vec::new();
        let failed = match (outcome, st.failure_class) {
            (AttemptOutcome::Succeeded, _) => {
                fx.extend(self.raise_cap());
                None
            }
            (AttemptOutcome::Failed, Some(class)) => {
                Some((class, st.error.clone().unwrap_or_default()))
            }
            _ => return fx,
        };
        let tripped = self
            .breaker
            .note(failed.as_ref().map(|(c, e)| (*c, e.as_str())));
        if let Some(why) = tripped
            && !self.queue_paused
        {
            self.queue_paused = true;
            fx.push(Effect::Emit(Event::BreakerTripped(why.clone())));
            // What waits to retry waits for the resume like the rest.
            for (_, b) in std::mem::take(&mut self.backoff) {
                if !self.queue.contains(&b) {
                    self.queue.push_front(b);
                }
            }
            fx.push(Effect::Emit(Event::QueuePaused(true)));
            fx.push(Self::notice(
                Level::Error,
                format!(
                    "{why} (fix the cause, then resume the queue: P, or dbt-herd run --resume)"
                ),
            ));
        }
        fx
    }

    /// The warehouse refused a connection: as many batches at once as run now
    /// (at least one), said with what it was.
    fn lower_cap(&mut self) -> Vec<Effect> {
        let running = self.running_count();
        let was = self.cap.unwrap_or(running + 1);
        let now = running.clamp(1, was.saturating_sub(1).max(1));
        self.cap = Some(now);
        self.cap_successes = 0;
        vec![
            Effect::Emit(Event::AtOnce(self.cap)),
            Self::notice(
                Level::Warn,
                format!(
                    "the warehouse refused connections: {now} at once (was {was}); the refused batch runs again"
                ),
            ),
        ]
    }

    /// A success under a lowered cap: after twice the cap of them, one more at once.
    fn raise_cap(&mut self) -> Vec<Effect> {
        let Some(cap) = self.cap else {
            return Vec::new();
        };
        self.cap_successes += 1;
        if self.cap_successes < 2 * cap {
            return Vec::new();
        }
        self.cap_successes = 0;
        let workers = self.active_workers();
        self.cap = (cap + 1 < workers).then_some(cap + 1);
        self.wake();
        vec![
            Effect::Emit(Event::AtOnce(self.cap)),
            Self::notice(
                Level::Info,
                format!(
                    "the warehouse keeps up: {} at once (was {cap})",
                    self.cap.unwrap_or(workers)
                ),
            ),
        ]
    }

    /// Why the circuit breaker paused the queue, if it did.
    pub fn breaker_tripped(&self) -> Option<String> {
        self.breaker.tripped.clone()
    }
}

/// A node's end as an event for the faces (the JSON event stream reports each).
fn node_finished(key: AttemptKey, ev: &DbtEvent) -> Option<Event> {
    let (node, status, execution_time_s) = match &ev.kind {
        EventKind::NodeFinished {
            node,
            status,
            execution_time,
            ..
        } => (node, status.clone(), *execution_time),
        EventKind::NodeSkipped { node, .. } => (node, "skipped".to_string(), None),
        _ => return None,
    };
    Some(Event::NodeFinished {
        batch: key.batch,
        attempt: key.attempt,
        node: node.unique_id.clone(),
        status,
        execution_time_s,
    })
}
