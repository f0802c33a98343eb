//! The engine's async shell: one task owns the `EngineCore`, feeds it commands,
//! attempt reports, `dbt ls` answers and resource samples, and carries out the
//! effects it returns (launch, signal, journal, summary, events).
//!
//! Every channel is bounded. Attempts shed display lines when the engine is
//! behind; the outbox sheds log lines when a face is behind. Nothing that moves a
//! batch forward is ever dropped, and nothing waits on a face.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use color_eyre::eyre::WrapErr;
use tokio::sync::{mpsc, watch};

use crate::clock::now_secs;
use crate::config::RunSettings;
use crate::dbt::argv::{self, AttemptKind, Narrowing};
use crate::dbt::events::Level;
use crate::engine::connections::ConnectionLog;
use crate::engine::core::{CoreConfig, EngineCore};
use crate::engine::fingerprint::fingerprint;
use crate::engine::handle::{EngineHandle, EngineOutcome};
use crate::engine::history::AttemptCommand;
use crate::engine::journal::Journal;
use crate::engine::launcher::Launcher;
use crate::engine::listing::{self, Listed, ListedNodes};
use crate::engine::messages::WarmView;
use crate::engine::messages::{Command, Event, Resources};
use crate::engine::outbox::Outbox;
use crate::engine::parse::SharedParse;
use crate::engine::protocol::{
    AttemptCtl, AttemptKey, AttemptReport, AttemptSpec, Effect, JournalEntry, Prior,
};
use crate::engine::sampler::{self, LiveGroups};
use crate::engine::summary::Summary;
use crate::engine::warm::check::{Mode, ModeChoice};
use crate::graph::resolve::PlanReport;
use crate::plan::Batch;
use crate::state_dir::{StateDir, write_atomic};

/// Attempt reports waiting for the engine (display lines beyond this are shed).
const REPORTS: usize = 1024;
/// Events waiting for a face (log lines beyond this are shed).
const EVENTS: usize = 1024;
const COMMANDS: usize = 64;
/// Orders for one attempt: a handful at most (stop, kill, suspend, resume).
const CONTROLS: usize = 16;
/// Reports handled before the summary and the faces catch up.
const REPORT_BATCH: usize = 256;

/// What the engine needs to start.
pub(crate) struct EngineSetup {
    pub settings: RunSettings,
    pub plan: Vec<Batch>,
    pub state: StateDir,
    /// What a resumed journal says about batches, by id.
    pub prior: BTreeMap<String, Prior>,
    pub launcher: Arc<dyn Launcher>,
    /// Whether the face shows dbt's log lines (the headless reporter does not).
    pub logs: bool,
    /// What resolving the plan decided, for the faces and summary.json.
    pub report: Option<PlanReport>,
    /// Warm or cold, and why.
    pub mode: ModeChoice,
    /// The warm workers' states, in warm mode.
    pub warm_status: Option<mpsc::Receiver<(usize, WarmView)>>,
    /// A cold run's shared partial parse.
    pub shared_parse: Option<SharedParse>,
    /// The launch and the phases before the engine, for summary.json.
    pub preparation: Option<crate::engine::summary::Preparation>,
    /// The parse check's verdict, if the first batch does not wait for it.
    pub pending: Option<crate::engine::warm::verdict::Pending>,
}

/// Starts the engine task.
pub(crate) fn spawn(setup: EngineSetup) -> color_eyre::Result<EngineHandle> {
    let EngineSetup {
        settings,
        plan,
        state,
        prior,
        launcher,
        logs,
        report,
        mode,
        warm_status,
        shared_parse,
        preparation,
        pending,
    } = setup;
    let journal_path = state.journal_path();
    let journal = Journal::open(&journal_path)
        .wrap_err_with(|| format!("cannot open the journal {}", journal_path.display()))?;
    let cfg = CoreConfig {
        threads: settings.threads,
        budget: settings.budget,
        retries: settings.retries,
        workers: settings.workers,
        state_dir: state.root.display().to_string(),
        command: settings.command.to_string(),
        compiled_root_name: project_name(&settings.project_dir),
        plan: preparation
            .as_ref()
            .and_then(crate::engine::summary::Preparation::line)
            .into_iter()
            .chain(report.as_ref().map(PlanReport::lines).unwrap_or_default())
            .collect(),
        mode: mode.clone(),
        allow_empty: settings.allow_empty,
        selector: settings.selector.clone(),
        first_only: pending.as_ref().map(|p| p.batch.clone()),
        breaker: settings.breaker,
    };
    let (commands_tx, commands) = mpsc::channel(COMMANDS);
    let (events_tx, events) = mpsc::channel(EVENTS);
    let (reports_tx, reports) = mpsc::channel(REPORTS);
    let (listed_tx, listed) = mpsc::channel(16);
    let (nodes_tx, nodes) = mpsc::channel(16);
    let (samples_tx, samples) = mpsc::channel(1);
    let (groups_tx, groups_rx) = watch::channel(Vec::new());
    let sampler_error = sampler::spawn(groups_rx, samples_tx).err();
    let state_root = state.root.clone();
    let shell = Shell {
        core: EngineCore::new(cfg, plan, &prior),
        settings,
        state,
        journal: Some(journal),
        fault: None,
        controls: HashMap::new(),
        launcher,
        reports: reports_tx,
        listed: listed_tx,
        nodes: nodes_tx,
        outbox: Outbox::new(events_tx, logs),
        summary_due: false,
        connections: ConnectionLog::open(&state_root),
        summary_written: false,
        started_at: chrono::Utc::now().to_rfc3339(),
        report,
        mode,
        slots: Vec::new(),
        shared_parse,
        last_parse: HashMap::new(),
        preparation,
    };
    let inputs = Inputs {
        commands,
        reports,
        listed,
        nodes,
        samples,
        groups: groups_tx,
        warm: warm_status.unwrap_or_else(|| mpsc::channel(1).1),
        verdict: pending.map(|p| p.verdict),
    };
    let join = tokio::spawn(async move { Ok(shell.run(inputs, sampler_error).await) });
    Ok(EngineHandle::new(commands_tx, events, join))
}

/// The dbt project's name, for locating compiled SQL under `target/compiled/<name>/`.
fn project_name(project_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(project_dir.join("dbt_project.yml")).ok()?;
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
    v.get("name")?.as_str().map(str::to_string)
}

struct Inputs {
    commands: mpsc::Receiver<Command>,
    reports: mpsc::Receiver<AttemptReport>,
    listed: mpsc::Receiver<Listed>,
    nodes: mpsc::Receiver<ListedNodes>,
    samples: mpsc::Receiver<Resources>,
    /// The process groups the sampler should measure.
    groups: watch::Sender<LiveGroups>,
    /// Warm workers' states (never anything in cold mode).
    warm: mpsc::Receiver<(usize, WarmView)>,
    /// The parse check's verdict, while it is still to come.
    verdict: Option<tokio::sync::oneshot::Receiver<crate::engine::warm::verdict::Verdict>>,
}

struct Shell {
    core: EngineCore,
    settings: RunSettings,
    state: StateDir,
    /// `None` after a write error: we stop trusting it and stop scheduling.
    journal: Option<Journal>,
    /// The first failure of dbt-herd itself, for the exit status.
    fault: Option<String>,
    controls: HashMap<AttemptKey, mpsc::Sender<AttemptCtl>>,
    launcher: Arc<dyn Launcher>,
    reports: mpsc::Sender<AttemptReport>,
    listed: mpsc::Sender<Listed>,
    nodes: mpsc::Sender<ListedNodes>,
    outbox: Outbox,
    summary_due: bool,
    /// The connections over time, for the run report.
    connections: ConnectionLog,
    /// The last write of summary.json succeeded.
    summary_written: bool,
    started_at: String,
    report: Option<PlanReport>,
    mode: ModeChoice,
    /// The slots the launcher was last told about.
    slots: Vec<usize>,
    shared_parse: Option<SharedParse>,
    /// Per worker slot, the partial parse of the last full run it made.
    last_parse: HashMap<usize, SharedParse>,
    preparation: Option<crate::engine::summary::Preparation>,
}

impl Shell {
    async fn run(
        mut self,
        mut inp: Inputs,
        sampler_error: Option<std::io::Error>,
    ) -> EngineOutcome {
        let fx = self.core.start(now_secs());
        self.apply(fx);
        if let Some(e) = sampler_error {
            self.outbox.push(Event::Notice {
                level: Level::Warn,
                text: format!("no CPU or memory figures: cannot start the sampler thread ({e})"),
            });
        }
        self.catch_up(&inp.groups);
        let events = self.outbox.sender();
        let mut batch = Vec::with_capacity(REPORT_BATCH);
        let mut commands_open = true;
        while !self.core.is_finished() {
            tokio::select! {
                // Commands first: a stop must not wait behind a flood of output.
                biased;
                c = inp.commands.recv(), if commands_open => {
                    let cmd = c.unwrap_or_else(|| {
                        // A face that let go of the engine without a word stops the run.
                        commands_open = false;
                        Command::Shutdown { force: false }
                    });
                    let fx = self.core.on_command(cmd, now_secs());
                    self.apply(fx);
                }
                n = inp.reports.recv_many(&mut batch, REPORT_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for m in batch.drain(..) {
                        self.on_report(m);
                    }
                }
                Some(l) = inp.listed.recv() => {
                    let fx = self.core.on_listed(l.batch, l.models, now_secs());
                    self.apply(fx);
                }
                Some(l) = inp.nodes.recv() => {
                    let fx = self.core.on_nodes_listed(l.key, l.nodes, now_secs());
                    self.apply(fx);
                }
                Some(r) = inp.samples.recv() => self.outbox.push(Event::Resources(r)),
                Some((worker, view)) = inp.warm.recv() => {
                    let fx = self.core.on_warm(worker, view, now_secs());
                    self.apply(fx);
                }
                v = verdict(&mut inp.verdict) => {
                    inp.verdict = None;
                    self.on_verdict(v);
                }
                // A batch held back after a transient fault is due.
                () = until(self.core.next_wake()) => {
                    let fx = self.core.on_tick(now_secs());
                    self.apply(fx);
                }
                // Room for what waits: `catch_up` below sends it.
                Ok(permit) = events.reserve(), if self.outbox.waiting() => drop(permit),
            }
            self.catch_up(&inp.groups);
        }
        // Warm workers go before the run is said to be over.
        self.launcher.close().await;
        self.write_summary(true);
        self.connections.note(now_secs(), 0, 0);
        self.connections.flush();
        let summary = self.summary(true);
        let outcome = EngineOutcome {
            summary,
            summary_path: self.summary_written.then(|| self.state.summary_path()),
            fault: self.fault.take(),
            early: None,
        };
        // A face reads until `Stopped`; one that stopped reading is not waited for long.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.outbox.close(Event::Stopped),
        )
        .await;
        outcome
    }

    /// After each round of messages: the summary, the sampler's view of the live
    /// groups, and word of log lines a face did not get.
    fn catch_up(&mut self, groups: &watch::Sender<LiveGroups>) {
        let slots = self.core.wanted_slots();
        if slots != self.slots {
            self.launcher.slots(&slots);
            self.slots = slots;
        }
        self.connections.note(
            now_secs(),
            self.core.budget_in_use(),
            self.core.connections_active(),
        );
        if std::mem::take(&mut self.summary_due) {
            self.write_summary(false);
            self.connections.flush();
        }
        let live = self.core.live_groups();
        groups.send_if_modified(|g| {
            let changed = *g != live;
            *g = live;
            changed
        });
        let shed = self.outbox.take_shed();
        for &(b, n) in shed.iter().rev() {
            if let Some(Effect::Emit(ev)) = self.core.shed_line(b, n) {
                self.outbox.push_first(ev);
            }
        }
        self.outbox.flush();
    }

    fn on_report(&mut self, m: AttemptReport) {
        if m.is_last() {
            self.controls.remove(&m.key());
        }
        let fx = self.core.on_attempt(m, now_secs());
        self.apply(fx);
    }

    /// Carries out effects in order.
    fn apply(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Launch {
                    key,
                    worker,
                    kind,
                    narrowing,
                } => self.launch(key, worker, kind, narrowing.as_ref()),
                Effect::ListNodes { key } => self.list_nodes(key),
                Effect::Control { key, ctl } => self.control(key, ctl),
                Effect::Emit(ev) => self.outbox.push(ev),
                Effect::Journal(entry) => self.journal(entry),
                Effect::WriteSummary => self.summary_due = true,
                Effect::ListModels { batch } => self.list_models(batch),
            }
        }
    }

    fn control(&mut self, key: AttemptKey, ctl: AttemptCtl) {
        let Some(tx) = self.controls.get(&key) else {
            return;
        };
        if tx.try_send(ctl).is_err() {
            // Only an actor that has stopped reading its orders gets here.
            self.outbox.push(Event::Notice {
                level: Level::Error,
                text: format!(
                    "batch {}: its attempt did not take the order {ctl:?}",
                    self.core.batch(key.batch).id
                ),
            });
        }
    }

    fn journal(&mut self, entry: JournalEntry) {
        // Computed now, not at start: an edit changes what the batch runs.
        let fp = self
            .core
            .find_batch(entry.batch())
            .map(|b| fingerprint(&self.settings, b));
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = j.append(entry, fp) {
            // A journal we cannot write is a run we cannot resume: start nothing
            // more and say so; never retry the fsync.
            self.journal = None;
            let text = format!(
                "cannot write the journal {} ({e}); no new batch will start",
                self.state.journal_path().display()
            );
            self.fault.get_or_insert_with(|| text.clone());
            let fx = self.core.on_command(Command::PauseQueue, now_secs());
            self.apply(fx);
            self.outbox.push(Event::Notice {
                level: Level::Error,
                text,
            });
        }
    }

    fn launch(
        &mut self,
        key: AttemptKey,
        worker: usize,
        kind: AttemptKind,
        narrowing: Option<&Narrowing>,
    ) {
        if self.journal.is_none() {
            // No process may start without its journal record on disk: a crash
            // would leave it where the next resume cannot find it.
            let fx = self
                .core
                .not_started(key, "the journal cannot be written", now_secs());
            self.apply(fx);
            return;
        }
        let batch = self.core.batch(key.batch);
        let target_dir = self.state.target_dir(&batch.id);
        let log_dir = self.state.log_dir(&batch.id);
        let invocation = argv::invocation_narrowed(
            &self.settings,
            batch,
            kind,
            narrowing,
            worker,
            &target_dir,
            &log_dir,
        );
        // What a person would run by hand: warm or cold, it is the argv a cold
        // dbt gets. (The state dir tag added below only marks the process as
        // this run's for a resume's sweep: a copy run by hand must not carry it.)
        let fx = self
            .core
            .attempt_command(key, &AttemptCommand::of(&invocation), now_secs());
        self.apply(fx);
        if self.journal.is_none() {
            let fx = self
                .core
                .not_started(key, "the journal cannot be written", now_secs());
            self.apply(fx);
            return;
        }
        let batch = self.core.batch(key.batch);
        let mut spec = AttemptSpec {
            key,
            worker,
            invocation,
            stdout_file: self.state.attempt_output(&batch.id, key.attempt, "stdout"),
            stderr_file: self.state.attempt_output(&batch.id, key.attempt, "stderr"),
            target_dir,
            log_dir,
            grace_int: self.settings.grace_int,
            grace_term: self.settings.grace_term,
            // dbt retry always parses anew: only a full run starts from it.
            seed_parse: (kind == AttemptKind::Full && self.mode.mode == Mode::Cold)
                .then(|| {
                    self.last_parse
                        .get(&worker)
                        .and_then(|p| p.for_batch(batch))
                        .or_else(|| self.shared_parse.as_ref().and_then(|p| p.for_batch(batch)))
                        .map(Path::to_path_buf)
                })
                .flatten(),
        };
        if kind == AttemptKind::Full {
            // The next batch with these vars on this worker starts from this one's.
            self.last_parse.insert(
                worker,
                SharedParse {
                    file: spec.target_dir.join("partial_parse.msgpack"),
                    vars: batch.vars.clone(),
                },
            );
        }
        // Tagged with the state dir: a resume after a crash finds it by that.
        spec.invocation.env.push((
            crate::engine::warm::launcher::STATE_ENV.into(),
            self.state.root.display().to_string(),
        ));
        let (tx, rx) = mpsc::channel(CONTROLS);
        self.controls.insert(key, tx);
        self.launcher.launch(spec, rx, self.reports.clone());
    }

    /// The parse check's verdict: the launcher learns it first (cold from now
    /// on, or a worker for the slot it kept), then the core dispatches.
    fn on_verdict(&mut self, v: crate::engine::warm::verdict::Verdict) {
        self.launcher.verdict(v.is_ok());
        if let Err(why) = &v {
            self.mode = ModeChoice {
                mode: Mode::Cold,
                reason: Some(why.clone()),
            };
        }
        // The slot the check kept a worker for is the launcher's to fill now.
        self.slots.clear();
        let fx = self.core.on_verdict(v, now_secs());
        self.apply(fx);
        self.summary_due = true;
    }

    /// `dbt ls` of every node an attempt's batch selects, before it launches.
    fn list_nodes(&self, key: AttemptKey) {
        let batch = self.core.batch(key.batch);
        let dir = self.state.batch_dir(&batch.id).join("ls");
        let inv = argv::Invocation {
            program: self.settings.dbt.clone(),
            args: argv::list_selected_args(
                &self.settings,
                batch,
                &dir.join("target"),
                &dir.join("logs"),
            ),
            env: argv::build_env(&self.settings, batch, 0),
        };
        listing::spawn_nodes(key, inv, self.nodes.clone());
    }

    fn list_models(&self, b: usize) {
        let batch = self.core.batch(b);
        let dir = self.state.batch_dir(&batch.id).join("ls");
        let inv = argv::Invocation {
            program: self.settings.dbt.clone(),
            args: argv::list_models_args(
                &self.settings,
                batch,
                &dir.join("target"),
                &dir.join("logs"),
            ),
            env: argv::build_env(&self.settings, batch, 0),
        };
        listing::spawn(b, inv, self.listed.clone());
    }

    fn summary(&self, finished: bool) -> Summary {
        let mut s = Summary::of(&self.core, &self.started_at, finished, now_secs());
        s.plan.clone_from(&self.report);
        s.mode = Some(self.mode.mode);
        s.mode_reason.clone_from(&self.mode.reason);
        s.preparation.clone_from(&self.preparation);
        s
    }

    fn write_summary(&mut self, finished: bool) {
        let s = self.summary(finished);
        let path = self.state.summary_path();
        let written = serde_json::to_vec_pretty(&s)
            .map_err(std::io::Error::other)
            .and_then(|json| write_atomic(&path, &json));
        match written {
            Ok(()) => self.summary_written = true,
            Err(e) => {
                self.summary_written = false;
                let text = format!("cannot write {} ({e})", path.display());
                if self.fault.is_none() {
                    self.outbox.push(Event::Notice {
                        level: Level::Error,
                        text: text.clone(),
                    });
                }
                self.fault.get_or_insert(text);
            }
        }
    }
}

/// Resolves at `due` (Unix seconds); never when there is nothing due.
async fn until(due: Option<f64>) {
    match due {
        Some(due) => {
            let wait = (due - now_secs()).max(0.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// The verdict once it comes; never, when none is awaited.
async fn verdict(
    rx: &mut Option<tokio::sync::oneshot::Receiver<crate::engine::warm::verdict::Verdict>>,
) -> crate::engine::warm::verdict::Verdict {
    match rx {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err("the parse check ended without a verdict".into())),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
