//! The warm launcher: one long-lived dbt process per worker slot, each serving
//! the batches its slot is given. The engine sees the same `Launcher` as for
//! cold batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::slot::{self, Job, SlotConfig, Warm};
use crate::config::RunSettings;
use crate::dbt::argv;
use crate::engine::launcher::{Closing, Launcher};
use crate::engine::messages::WarmView;
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec};
use crate::plan::Batch;

/// The env var that tags every process dbt-herd starts with its state dir, so
/// that a resume can find what a dead run left.
pub(crate) const STATE_ENV: &str = "DBT_HERD_STATE";
/// The slot a warm worker serves, as dbt sees it (in every event's `info.extra`).
pub(crate) const WORKER_ENV: &str = "DBT_ENV_CUSTOM_ENV_HERD_WORKER";

/// What every slot's config is made from.
#[derive(Clone)]
pub(crate) struct WarmSetup {
    pub settings: RunSettings,
    pub interpreter: Vec<String>,
    pub program: PathBuf,
    /// `<state dir>/workers`.
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    /// The batch whose vars and `{batch}` values each worker parses with.
    pub parse_batch: Batch,
    pub recycle: u32,
    pub status: mpsc::Sender<(usize, WarmView)>,
}

impl WarmSetup {
    /// The config of slot `worker`: its environment, and its parse with `batch`.
    pub fn slot(&self, worker: usize, batch: &Batch) -> SlotConfig {
        self.slot_in(worker, batch, self.dir.join(format!("w{worker}")))
    }

    /// As `slot`, with its parse's target and logs (and its own log) in `dir`.
    pub fn slot_in(&self, worker: usize, batch: &Batch, dir: PathBuf) -> SlotConfig {
        let s = &self.settings;
        // The process gets the run-wide values; `{batch}` ones are set per batch.
        let mut env: Vec<(String, String)> = s
            .env
            .iter()
            .filter(|t| !t.value.contains("{batch}"))
            .map(|t| (t.key.clone(), t.render("", worker)))
            .collect();
        env.push((WORKER_ENV.into(), worker.to_string()));
        env.push((STATE_ENV.into(), self.state_dir.display().to_string()));
        let mut parse_args = vec!["parse".to_string()];
        if !batch.vars.is_empty() {
            parse_args.push("--vars".into());
            parse_args.push(serde_json::Value::Object(batch.vars.clone()).to_string());
        }
        parse_args.extend(argv::location_args(
            s,
            &dir.join("target"),
            &dir.join("logs"),
        ));
        SlotConfig {
            worker,
            interpreter: self.interpreter.clone(),
            program: self.program.clone(),
            project_dir: s.project_dir.clone(),
            env,
            parse_args,
            parse_env: job_env(s, batch, worker),
            log_dir: dir,
            recycle: self.recycle,
            grace_term: s.grace_term,
            status: self.status.clone(),
        }
    }
}

/// The environment a batch gets on top of its worker's: every `--env` value
/// for this batch and worker, and the batch tag.
pub(crate) fn job_env(
    s: &RunSettings,
    batch: &Batch,
    worker: usize,
) -> BTreeMap<String, Option<String>> {
    argv::build_env(s, batch, worker)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect()
}

pub(crate) struct WarmLauncher {
    setup: WarmSetup,
    slots: Mutex<BTreeMap<usize, mpsc::Sender<Job>>>,
    /// Every slot actor ever started, to wait for at the end.
    actors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A worker already parsed (by the mode check) for slot 1.
    first: Mutex<Option<Warm>>,
}

impl WarmLauncher {
    pub fn new(setup: WarmSetup, first: Option<Warm>) -> Self {
        Self {
            setup,
            slots: Mutex::new(BTreeMap::new()),
            actors: Mutex::new(Vec::new()),
            first: Mutex::new(first),
        }
    }

    /// The slot's job queue, starting its actor (and worker) the first time.
    fn slot(&self, worker: usize) -> mpsc::Sender<Job> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry(worker)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(4);
                let cfg = self.setup.slot(worker, &self.setup.parse_batch);
                let warm = if worker == 1 {
                    self.first
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                } else {
                    None
                };
                let actor = tokio::spawn(slot::serve(cfg, rx, warm));
                self.actors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(actor);
                tx
            })
            .clone()
    }
}

impl Launcher for WarmLauncher {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    ) {
        let batch_env = spec
            .invocation
            .env
            .iter()
            .cloned()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let key = spec.key;
        let tx = self.slot(spec.worker);
        let job = Job {
            spec,
            env: batch_env,
            ctl,
            reports: reports.clone(),
        };
        if tx.try_send(job).is_err() {
            let error = "its warm worker is gone".to_string();
            tokio::spawn(async move {
                let _ = reports
                    .send(AttemptReport::SpawnFailed { key, error })
                    .await;
            });
        }
    }

    fn slots(&self, numbers: &[usize]) {
        // New slots start their workers now, so they are warm by their first batch;
        // a slot that is gone lets its worker go (its actor sees the queue close).
        for &n in numbers {
            self.slot(n);
        }
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n, _| numbers.contains(n));
    }

    fn close(&self) -> Closing {
        // Closing every queue makes each actor retire its worker and end.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let actors = std::mem::take(
            &mut *self
                .actors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let first = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let grace = self.setup.settings.grace_term;
        Box::pin(async move {
            if let Some(w) = first {
                slot::retire(w, grace).await;
            }
            for a in actors {
                let _ = a.await;
            }
        })
    }
}

/// The worker program's home in the state dir.
pub(crate) fn workers_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("workers")
}
