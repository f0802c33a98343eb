//! The preparation as part of the run: a run is handed to its faces the moment
//! it is launched, as an engine handle whose first events tell the preparation
//! (resolving the plan, choosing warm or cold, the shared parse) as it goes, and
//! whose commands can stop it there with the stop ladder. Once prepared, the
//! real engine starts behind the same handle.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::PreparedRun;
use crate::engine::summary::{PhaseTime, Preparation};
use crate::engine::{
    Command, EarlyEnd, EngineHandle, EngineOutcome, Event, PrepPhase, PrepView, process,
};
use crate::error::{UsageError, exit};

/// Commands and events between the faces and a preparing run.
const QUEUE: usize = 1024;
/// How often a preparing run looks at what it waits on.
const TICK: Duration = Duration::from_millis(250);

/// Times the preparation from the launch (`prepare`), phase by phase, and tells
/// the faces each change.
pub(super) struct PrepClock {
    launched: Instant,
    pub(super) preparation: Preparation,
    board: PrepBoard,
}

/// The preparation as the faces see it, shared with the task that watches it
/// while the work holds the run.
#[derive(Clone, Default)]
struct PrepBoard {
    view: Arc<Mutex<PrepView>>,
    events: Option<mpsc::Sender<Event>>,
}

impl PrepBoard {
    fn update(&self, change: impl FnOnce(&mut PrepView)) {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let before = view.clone();
        change(&mut view);
        if let Some(tx) = self.events.as_ref().filter(|_| *view != before) {
            // Each event carries the whole picture: one lost to a full queue
            // is made good by the next.
            let _ = tx.try_send(Event::Preparing(view.clone()));
        }
    }

    /// The phase under way, as a person says it ("resolving the plan").
    fn phase_words(&self) -> String {
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        view.current()
            .map_or_else(|| "preparing".into(), |p| p.doing.clone())
    }

    /// Preparation is over; told to the faces before the run starts or ends.
    async fn finish(&self) {
        let view = {
            let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
            view.done = true;
            view.waits_on.clear();
            view.clone()
        };
        if let Some(tx) = &self.events {
            let _ = tx.send(Event::Preparing(view)).await;
        }
    }
}

impl PrepClock {
    pub(super) fn new() -> Self {
        let board = PrepBoard::default();
        board.update(|v| v.launched_at = crate::clock::now_secs());
        Self {
            launched: Instant::now(),
            preparation: Preparation {
                launched_at: chrono::Utc::now().to_rfc3339(),
                phases: Vec::new(),
            },
            board,
        }
    }

    /// `phase` begins now, doing what `doing` says.
    pub(super) fn begin(&mut self, phase: &str, doing: impl Into<String>) {
        let began_s = (self.launched.elapsed().as_secs_f64() * 100.0).round() / 100.0;
        let doing = doing.into();
        self.board.update(|v| {
            v.phases.push(PrepPhase {
                phase: phase.to_string(),
                doing,
                began_s,
                seconds: None,
            });
        });
    }

    /// Ends `phase` now: its time is what passed since the last one ended.
    pub(super) fn done(&mut self, phase: &str) {
        let before: f64 = self.preparation.phases.iter().map(|p| p.seconds).sum();
        let seconds = (self.launched.elapsed().as_secs_f64() - before).max(0.0);
        let seconds = (seconds * 100.0).round() / 100.0;
        self.preparation.phases.push(PhaseTime {
            phase: phase.to_string(),
            seconds,
        });
        self.board.update(|v| {
            if let Some(p) = v
                .phases
                .iter_mut()
                .rfind(|p| p.phase == phase && p.seconds.is_none())
            {
                p.seconds = Some(seconds);
            }
            v.waits_on.clear();
        });
    }

    /// Forgets the phase under way: it had nothing to do.
    pub(super) fn skip(&mut self, phase: &str) {
        self.board
            .update(|v| v.phases.retain(|p| p.phase != phase || p.seconds.is_some()));
    }
}

/// The dbt processes the preparation waits on now, counted by kind.
fn waits_on() -> Vec<String> {
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for g in process::registered() {
        if process::group_alive(g) {
            *kinds.entry(process::describe(g)).or_insert(0) += 1;
        }
    }
    kinds
        .into_iter()
        .map(|(k, n)| if n > 1 { format!("{n} × {k}") } else { k })
        .collect()
}

/// The run, launched: a handle at once, the preparation behind it, then the
/// engine. `logs`: whether the face shows dbt's log lines.
pub(crate) fn launch(mut p: PreparedRun, logs: bool) -> EngineHandle {
    let (cmd_tx, mut commands) = mpsc::channel(QUEUE);
    let (ev_tx, events) = mpsc::channel(QUEUE);
    let dir = p.state.root.display().to_string();
    p.clock.board.update(|v| v.state_dir = dir);
    p.clock.board.events = Some(ev_tx.clone());
    // The first word the faces get: the run is launched.
    let _ = ev_tx.try_send(Event::Preparing(
        p.clock
            .board
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    ));
    let join = tokio::spawn(async move {
        let held = match prepare(&mut p, &mut commands).await {
            Ok(held) => held,
            Err(outcome) => {
                let _ = ev_tx.send(Event::Stopped).await;
                return Ok(outcome);
            }
        };
        p.clock.board.finish().await;
        p.clock.board.events = None;
        let engine = super::start(p, logs)?;
        for cmd in held {
            engine.send(cmd);
        }
        relay(engine, commands, ev_tx).await
    });
    EngineHandle::new(cmd_tx, events, join)
}

/// How the preparation ended.
enum Prepared {
    Ready,
    /// Stopped by a face while it was doing this (in words).
    Stopped(String),
    Failed(color_eyre::Report),
}

/// Resolves the plan and readies dbt, unless a face stops it first. `Ok`: the
/// commands that came meanwhile, for the engine; `Err`: how the run ended.
async fn prepare(
    p: &mut PreparedRun,
    commands: &mut mpsc::Receiver<Command>,
) -> Result<Vec<Command>, EngineOutcome> {
    let mut held = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    let mut stop: Option<StopLadder> = None;
    let board = p.clock.board.clone();
    let graces = (p.settings.grace_int, p.settings.grace_term);
    let prepared = {
        let work = p.ready_work();
        tokio::pin!(work);
        let mut work_over = false;
        loop {
            tokio::select! {
                r = &mut work, if !work_over => {
                    work_over = true;
                    match (r, &stop) {
                        (Ok(()), None) => break Prepared::Ready,
                        (Err(e), None) => break Prepared::Failed(e),
                        // Stopping: the work ended as its children did; the
                        // ladder still waits for every group to be gone.
                        (_, Some(_)) => {}
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { force }) => {
                        stop.get_or_insert_with(|| StopLadder::new(board.phase_words(), graces)).asked(force);
                    }
                    Some(other) => held.push(other),
                    // Every face let go: nobody is left to run it for.
                    None => {
                        stop.get_or_insert_with(|| StopLadder::new(board.phase_words(), graces)).asked(false);
                    }
                },
                _ = tick.tick() => {
                    if let Some(ladder) = stop.as_mut() {
                        if ladder.step() {
                            break Prepared::Stopped(ladder.phase.clone());
                        }
                    } else {
                        let now = waits_on();
                        board.update(|v| v.waits_on = now);
                    }
                }
            }
        }
    };
    match prepared {
        Prepared::Ready => Ok(held),
        Prepared::Stopped(phase) => {
            eprintln!("dbt-herd: interrupted while {phase}; no batch had started");
            board.finish().await;
            Err(p.ended_early(EarlyEnd::Stopped, None))
        }
        Prepared::Failed(e) => {
            board.finish().await;
            process::kill_all_registered();
            if e.downcast_ref::<UsageError>().is_some() {
                let line = e.to_string();
                Err(p.ended_early(EarlyEnd::Refused(line.clone()), Some(line)))
            } else {
                let mut outcome = p.ended_early(EarlyEnd::Stopped, Some(e.to_string()));
                outcome.early = None;
                outcome.fault = Some(format!("{e:?}"));
                Err(outcome)
            }
        }
    }
}

/// The stop ladder for everything the preparation started (`dbt ls`, parses,
/// workers starting), all at once: SIGINT, SIGTERM after the run's first grace,
/// SIGKILL after its second; a second stop asked with `force` kills at once.
struct StopLadder {
    phase: String,
    asked_at: Instant,
    grace_int: Duration,
    grace_term: Duration,
    rung: Option<Signal>,
    /// The groups that got the rung: one started after it gets it too, once.
    told: std::collections::BTreeSet<i32>,
}

impl StopLadder {
    fn new(phase: String, (grace_int, grace_term): (Duration, Duration)) -> Self {
        Self {
            phase,
            asked_at: Instant::now(),
            grace_int,
            grace_term,
            rung: None,
            told: Default::default(),
        }
    }

    fn asked(&mut self, force: bool) {
        if force {
            self.climb(Signal::SIGKILL);
        } else if self.rung.is_none() {
            self.climb(Signal::SIGINT);
        }
    }

    fn climb(&mut self, sig: Signal) {
        self.rung = Some(sig);
        self.told.clear();
        self.tell();
    }

    /// The rung to every group that has not had it.
    fn tell(&mut self) {
        let Some(sig) = self.rung else { return };
        for g in process::registered() {
            if self.told.insert(g) {
                process::signal_group(g, sig);
                if sig == Signal::SIGKILL {
                    process::signal_group(g, Signal::SIGCONT);
                }
            }
        }
    }

    /// One look: true once every group is gone; escalates when a grace is over.
    fn step(&mut self) -> bool {
        if !process::registered().into_iter().any(process::group_alive) {
            return true;
        }
        self.tell();
        let waited = self.asked_at.elapsed();
        match self.rung {
            Some(Signal::SIGINT) if waited >= self.grace_int => self.climb(Signal::SIGTERM),
            Some(Signal::SIGTERM) if waited >= self.grace_int + self.grace_term => {
                self.climb(Signal::SIGKILL);
            }
            _ => {}
        }
        false
    }
}

/// Events from the engine to the faces and their commands back, until it ends.
async fn relay(
    mut engine: EngineHandle,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) -> color_eyre::Result<EngineOutcome> {
    let mut open = true;
    loop {
        tokio::select! {
            ev = engine.next_event() => match ev {
                Some(ev) => {
                    let _ = events.send(ev).await;
                }
                None => break,
            },
            cmd = commands.recv(), if open => {
                // A face that let go stops the engine, as it would its own.
                open = cmd.is_some();
                engine.send(cmd.unwrap_or(Command::Shutdown { force: false }));
            }
        }
    }
    engine.finish().await
}

impl PreparedRun {
    /// How a run that ended while it prepared is told: summary.json written
    /// (every batch that was to run pending, `error` when there is one), and
    /// an outcome without an engine.
    fn ended_early(&self, early: EarlyEnd, error: Option<String>) -> EngineOutcome {
        let code = match &early {
            EarlyEnd::Stopped if error.is_some() => exit::INTERNAL,
            EarlyEnd::Stopped => exit::SIGNAL_BASE + libc::SIGINT,
            EarlyEnd::Refused(_) => exit::USAGE,
        };
        let (summary, written) = self.write_unstarted(error, code);
        EngineOutcome {
            summary,
            summary_path: written.then(|| self.state.summary_path()),
            fault: None,
            early: Some(early),
        }
    }
}
