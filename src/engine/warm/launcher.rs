//! The warm launcher: one long-lived dbt process per worker slot, each serving
//! the batches its slot is given. The engine sees the same `Launcher` as for
//! cold batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::slot::{self, Job, Leave, SlotConfig, Warm};
use super::verdict::{Judge, Second, Verdict};
use crate::config::RunSettings;
use crate::dbt::argv;
use crate::engine::launcher::{Closing, Launcher, ProcessLauncher};
use crate::engine::messages::{WarmState, WarmView};
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec};
use crate::plan::Batch;
use tokio::sync::oneshot;

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
    /// Partial parse files to start a worker's parse from.
    pub seeds: Vec<crate::engine::parse::SharedParse>,
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
            seed: self.seeds.iter().find(|p| p.vars == batch.vars).cloned(),
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

/// A slot's job queue, and the word whose drop lets its worker go.
type SlotHandle = (mpsc::Sender<Job>, oneshot::Sender<()>);
/// The parse check's verdict task, and the word whose drop stops its parse.
type SecondHandle = (tokio::task::JoinHandle<()>, Option<oneshot::Sender<()>>);

pub(crate) struct WarmLauncher {
    setup: WarmSetup,
    /// Each slot's job queue, and the word that lets its worker go (dropped
    /// with the entry).
    slots: Mutex<BTreeMap<usize, SlotHandle>>,
    /// Every slot actor ever started, to wait for at the end.
    actors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Workers already parsed (by the mode check), by slot.
    ready: Arc<Mutex<BTreeMap<usize, Warm>>>,
    /// The slot whose worker the parse check is still making (no other
    /// worker starts for it meanwhile).
    reserved: Arc<Mutex<Option<usize>>>,
    /// The check's verdict task, and the handle whose drop stops its parse.
    second: Mutex<Option<SecondHandle>>,
    /// Batches parse differently: every batch from now on runs cold.
    cold: AtomicBool,
}

impl WarmLauncher {
    pub fn new(setup: WarmSetup, ready: BTreeMap<usize, Warm>) -> Self {
        Self {
            setup,
            slots: Mutex::new(BTreeMap::new()),
            actors: Mutex::new(Vec::new()),
            ready: Arc::new(Mutex::new(ready)),
            reserved: Arc::new(Mutex::new(None)),
            second: Mutex::new(None),
            cold: AtomicBool::new(false),
        }
    }

    /// Lets the parse check finish beside the first batch; its verdict goes to
    /// `tx`. With `slot`, a worker that parsed alike serves that slot.
    pub fn await_second(
        &self,
        mut second: Second,
        judge: Judge,
        slot: Option<usize>,
        tx: oneshot::Sender<Verdict>,
    ) {
        *lock(&self.reserved) = slot;
        let leave = second.take_leave();
        let (ready, reserved) = (self.ready.clone(), self.reserved.clone());
        let task = tokio::spawn(async move {
            let (verdict, worker) = second.judge(judge, slot.is_some()).await;
            if let (Some(n), Some(w)) = (slot, worker) {
                lock(&ready).insert(n, w);
            }
            *lock(&reserved) = None;
            let _ = tx.send(verdict);
        });
        *lock(&self.second) = Some((task, leave));
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
                let (leave_tx, leave_rx) = tokio::sync::oneshot::channel();
                let cfg = self.setup.slot(worker, &self.setup.parse_batch);
                let warm = self
                    .ready
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&worker);
                let actor = tokio::spawn(slot::serve(cfg, rx, warm, Leave::on(leave_rx)));
                self.actors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(actor);
                (tx, leave_tx)
            })
            .0
            .clone()
    }
}

impl WarmLauncher {
    /// Retires the workers the mode check parsed for slots not in `keep`.
    fn retire_ready(&self, keep: &[usize]) {
        let unwanted: Vec<(usize, Warm)> = {
            let mut ready = lock(&self.ready);
            let gone: Vec<usize> = ready
                .keys()
                .copied()
                .filter(|n| !keep.contains(n))
                .collect();
            gone.into_iter()
                .filter_map(|n| ready.remove(&n).map(|w| (n, w)))
                .collect()
        };
        let grace = self.setup.settings.grace_term;
        for (worker, w) in unwanted {
            let status = self.setup.status.clone();
            let actor = tokio::spawn(async move {
                slot::retire(w, grace).await;
                let stopped = WarmView {
                    state: WarmState::Stopped,
                    parse_s: None,
                    runs: 0,
                    pid: None,
                    since: None,
                };
                let _ = status.try_send((worker, stopped));
            });
            lock(&self.actors).push(actor);
        }
    }
}

impl Launcher for WarmLauncher {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    ) {
        if self.cold.load(Ordering::SeqCst) {
            ProcessLauncher.launch(spec, ctl, reports);
            return;
        }
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
        if self.cold.load(Ordering::SeqCst) {
            return;
        }
        // New slots start their workers now, so they are warm by their first batch;
        // a slot that is gone lets its worker go (its actor sees the queue close).
        let reserved = *lock(&self.reserved);
        for &n in numbers {
            if Some(n) != reserved {
                self.slot(n);
            }
        }
        lock(&self.slots).retain(|n, _| numbers.contains(n));
        self.retire_ready(numbers);
    }

    fn verdict(&self, alike: bool) {
        if alike {
            return;
        }
        // Cold from now on: each worker goes once its batch (if any) is done.
        self.cold.store(true, Ordering::SeqCst);
        lock(&self.slots).clear();
        self.retire_ready(&[]);
    }

    fn close(&self) -> Closing {
        // Closing every queue makes each actor retire its worker and end.
        lock(&self.slots).clear();
        let second = lock(&self.second).take();
        let ready = self.ready.clone();
        let actors = std::mem::take(&mut *lock(&self.actors));
        let grace = self.setup.settings.grace_term;
        Box::pin(async move {
            if let Some((task, leave)) = second {
                // A parse check still going: stopped, and its worker with it.
                drop(leave);
                let _ = task.await;
            }
            let ready = std::mem::take(&mut *lock(&ready));
            for w in ready.into_values() {
                slot::retire(w, grace).await;
            }
            for a in actors {
                let _ = a.await;
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The worker program's home in the state dir.
pub(crate) fn workers_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("workers")
}
