//! The engine's async shell: one task owns the `EngineCore`, feeds it commands and
//! attempt reports, and carries out the effects it returns (launch, signal,
//! journal, summary, events). Faces talk to it through an `EngineHandle`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::RunSettings;
use crate::dbt::argv::{self, AttemptKind};
use crate::dbt::events::Level;
use crate::engine::attempt::{self, AttemptSpec};
use crate::engine::core::{
    AttemptCtl, AttemptKey, AttemptMsg, CoreConfig, Effect, EngineCore, Prior,
};
use crate::engine::journal::Journal;
use crate::engine::messages::{Command, Event};
use crate::plan::Batch;
use crate::state_dir::{BatchSummary, StateDir, Summary, write_atomic};

/// Everything that reaches the engine task. (Log lines dominate its size; boxing
/// them would cost an allocation per line for nothing: each is moved once.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum EngineMsg {
    Command(Command),
    Attempt(AttemptMsg),
    /// The models of a batch, from `dbt ls`, for a split.
    Listed {
        batch: usize,
        models: Result<Vec<String>, String>,
    },
    /// From the sampler; passed straight to the faces.
    Resources(Box<crate::engine::messages::Resources>),
}

/// How an attempt is carried out: a cold `dbt` subprocess today; a warm worker
/// process later. The engine sees only this.
pub trait Launcher: Send + Sync + 'static {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::UnboundedReceiver<AttemptCtl>,
        to_engine: mpsc::UnboundedSender<EngineMsg>,
    );
}

/// One `dbt` process per attempt, in its own process group.
pub struct ProcessLauncher;

impl Launcher for ProcessLauncher {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::UnboundedReceiver<AttemptCtl>,
        to_engine: mpsc::UnboundedSender<EngineMsg>,
    ) {
        tokio::spawn(attempt::run(spec, ctl, to_engine));
    }
}

/// A face's grip on a running engine.
pub struct EngineHandle {
    pub commands: mpsc::UnboundedSender<EngineMsg>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub join: tokio::task::JoinHandle<Summary>,
}

impl EngineHandle {
    pub fn send(&self, cmd: Command) {
        let _ = self.commands.send(EngineMsg::Command(cmd));
    }
}

/// What the engine needs to start.
pub struct EngineSetup {
    pub settings: RunSettings,
    pub plan: Vec<Batch>,
    pub state: StateDir,
    /// What a resumed journal says about batches, by id.
    pub prior: BTreeMap<String, Prior>,
    pub launcher: Arc<dyn Launcher>,
}

/// A stable fingerprint of what a batch runs, to tell on resume whether it changed.
pub fn fingerprint(s: &RunSettings, b: &Batch) -> String {
    let text = serde_json::json!({
        "command": s.command.to_string(),
        "select": b.select,
        "exclude": s.exclude,
        "selector": s.selector,
        "vars": b.vars,
        "project": s.project_dir,
        "target": s.target,
        "extra": s.extra_args,
    })
    .to_string();
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The dbt project's name, for locating compiled SQL under `target/compiled/<name>/`.
fn project_name(project_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(project_dir.join("dbt_project.yml")).ok()?;
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
    v.get("name")?.as_str().map(str::to_string)
}

/// Starts the engine task.
pub fn spawn(setup: EngineSetup) -> std::io::Result<EngineHandle> {
    let EngineSetup {
        settings,
        plan,
        state,
        prior,
        launcher,
    } = setup;
    let journal = Journal::open(&state.journal_path())?;
    let cfg = CoreConfig {
        threads: settings.threads,
        budget: settings.budget,
        retries: settings.retries,
        workers: settings.workers,
        state_dir: state.root.display().to_string(),
        command: settings.command.to_string(),
        compiled_root_name: project_name(&settings.project_dir),
    };
    let core = EngineCore::new(cfg, plan, &prior);
    let (msg_tx, msg_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let shell = Shell {
        core,
        settings,
        state,
        journal: Some(journal),
        controls: HashMap::new(),
        launcher,
        msg_tx: msg_tx.clone(),
        events: ev_tx,
        started_at: chrono::Utc::now(),
    };
    let (groups_tx, groups_rx) = tokio::sync::watch::channel(Vec::new());
    crate::engine::sampler::spawn(groups_rx, msg_tx.clone());
    let join = tokio::spawn(shell.run(msg_rx, groups_tx));
    Ok(EngineHandle {
        commands: msg_tx,
        events: ev_rx,
        join,
    })
}

struct Shell {
    core: EngineCore,
    settings: RunSettings,
    state: StateDir,
    /// `None` after a write error: we stop trusting it and stop scheduling.
    journal: Option<Journal>,
    controls: HashMap<AttemptKey, mpsc::UnboundedSender<AttemptCtl>>,
    launcher: Arc<dyn Launcher>,
    msg_tx: mpsc::UnboundedSender<EngineMsg>,
    events: mpsc::UnboundedSender<Event>,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl Shell {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<EngineMsg>,
        groups: tokio::sync::watch::Sender<crate::engine::sampler::LiveGroups>,
    ) -> Summary {
        let fx = self.core.start(now_secs());
        self.apply(fx);
        let mut batch = Vec::with_capacity(64);
        loop {
            if self.core.shutting_down && self.core.running_count() == 0 {
                break;
            }
            // Take everything queued, then write the summary once.
            if inbox.recv_many(&mut batch, 256).await == 0 {
                break;
            }
            let mut write_summary = false;
            for msg in batch.drain(..) {
                let now = now_secs();
                let fx = match msg {
                    EngineMsg::Command(c) => self.core.on_command(c, now),
                    EngineMsg::Listed { batch, models } => self.core.on_listed(batch, models, now),
                    EngineMsg::Resources(r) => {
                        let _ = self.events.send(Event::Resources(*r));
                        continue;
                    }
                    EngineMsg::Attempt(m) => {
                        if let AttemptMsg::Exited { key, .. }
                        | AttemptMsg::SpawnFailed { key, .. } = &m
                        {
                            self.controls.remove(key);
                        }
                        self.core.on_attempt(m, now)
                    }
                };
                write_summary |= self.apply(fx);
            }
            if write_summary {
                self.write_summary(false);
            }
            let live = self.core.live_groups();
            groups.send_if_modified(|g| {
                let changed = *g != live;
                *g = live;
                changed
            });
        }
        let summary = self.write_summary(true);
        let _ = self.events.send(Event::Stopped);
        summary
    }

    /// Carries out effects; returns whether the summary should be rewritten.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let mut summary = false;
        for e in fx {
            match e {
                Effect::Launch { key, worker, kind } => self.launch(key, worker, kind),
                Effect::Control { key, ctl } => {
                    if let Some(tx) = self.controls.get(&key) {
                        let _ = tx.send(ctl);
                    }
                }
                Effect::Emit(ev) => {
                    let _ = self.events.send(ev);
                }
                Effect::Journal(entry) => self.journal(entry),
                Effect::WriteSummary => summary = true,
                Effect::ListModels { batch } => self.list_models(batch),
            }
        }
        summary
    }

    fn journal(&mut self, entry: crate::engine::core::JournalEntry) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        let batch = match &entry {
            crate::engine::core::JournalEntry::AttemptStarted { batch, .. }
            | crate::engine::core::JournalEntry::AttemptSpawned { batch, .. }
            | crate::engine::core::JournalEntry::AttemptFinished { batch, .. }
            | crate::engine::core::JournalEntry::BatchStatus { batch, .. } => batch.clone(),
        };
        // Computed now, not at start: an edit changes what the batch runs.
        let fp = self
            .core
            .batches
            .iter()
            .find(|b| b.batch.id == batch)
            .map(|b| fingerprint(&self.settings, &b.batch));
        if let Err(e) = j.append(entry, fp) {
            // A journal we cannot write is a run we cannot resume: stop starting
            // batches and say so; never retry the fsync.
            self.journal = None;
            let fx = self.core.on_command(Command::PauseQueue, now_secs());
            self.apply(fx);
            let _ = self.events.send(Event::Notice {
                level: Level::Error,
                text: format!("cannot write the journal ({e}); no new batch will start"),
            });
        }
    }

    fn launch(&mut self, key: AttemptKey, worker: usize, kind: AttemptKind) {
        let batch = &self.core.batches[key.batch].batch;
        let target_dir = self.state.target_dir(&batch.id);
        let log_dir = self.state.log_dir(&batch.id);
        let spec = AttemptSpec {
            key,
            invocation: argv::invocation(
                &self.settings,
                batch,
                kind,
                worker,
                &target_dir,
                &log_dir,
            ),
            stdout_file: self.state.attempt_output(&batch.id, key.attempt, "stdout"),
            stderr_file: self.state.attempt_output(&batch.id, key.attempt, "stderr"),
            target_dir,
            log_dir,
            grace_int: self.settings.grace_int,
            grace_term: self.settings.grace_term,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.controls.insert(key, tx);
        self.launcher.launch(spec, rx, self.msg_tx.clone());
    }

    /// Runs `dbt ls` for a batch in the background (in its own process group, so
    /// shutdown and the exit path can reach it like any other child).
    fn list_models(&self, b: usize) {
        let batch = &self.core.batches[b].batch;
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
        let tx = self.msg_tx.clone();
        tokio::spawn(async move {
            let models = async {
                let child =
                    crate::engine::process::spawn_in_group(&inv).map_err(|e| e.to_string())?;
                let pgid = child.id().unwrap_or(0) as i32;
                let out = child.wait_with_output().await;
                crate::engine::process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                crate::engine::process::unregister(pgid);
                let out = out.map_err(|e| e.to_string())?;
                if !out.status.success() {
                    let text =
                        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
                    return Err(text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("failed")
                        .trim()
                        .to_string());
                }
                Ok(argv::parse_model_list(&String::from_utf8_lossy(
                    &out.stdout,
                )))
            }
            .await;
            let _ = tx.send(EngineMsg::Listed { batch: b, models });
        });
    }

    fn summary(&self, finished: bool) -> Summary {
        let now = now_secs();
        Summary {
            batches: (0..self.core.batches.len())
                .map(|i| {
                    let v = self.core.view(i, now);
                    BatchSummary {
                        id: v.id,
                        label: v.label,
                        status: v.status.summary_word().to_string(),
                        attempts: v.attempts,
                        duration_s: (v.duration_s * 1000.0).round() / 1000.0,
                        nodes: v.counts,
                        error: v.error,
                        nothing_selected: v.nothing_selected,
                    }
                })
                .collect(),
            budget: self.core.cfg.budget,
            workers: self.core.slots.iter().filter(|s| !s.retiring).count(),
            threads: self.core.cfg.threads,
            started_at: self.started_at.to_rfc3339(),
            finished_at: finished.then(|| chrono::Utc::now().to_rfc3339()),
        }
    }

    fn write_summary(&self, finished: bool) -> Summary {
        let s = self.summary(finished);
        if let Ok(json) = serde_json::to_vec_pretty(&s)
            && let Err(e) = write_atomic(&self.state.summary_path(), &json)
        {
            let _ = self.events.send(Event::Notice {
                level: Level::Warn,
                text: format!("cannot write summary.json: {e}"),
            });
        }
        s
    }
}
