//! How an attempt is carried out. The shell hands a launcher an `AttemptSpec`, a
//! control channel and a report channel; today's launcher starts one cold `dbt`
//! process per attempt. The engine sees only this trait, so tests put a fake in.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::dbt::argv::Invocation;
use crate::engine::attempt;
use crate::engine::protocol::{AttemptCtl, AttemptKey, AttemptReport};

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub(crate) struct AttemptSpec {
    pub key: AttemptKey,
    pub invocation: Invocation,
    pub target_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Raw copies of everything the child writes.
    pub stdout_file: PathBuf,
    pub stderr_file: PathBuf,
    pub grace_int: Duration,
    pub grace_term: Duration,
}

pub(crate) trait Launcher: Send + Sync + 'static {
    /// Starts the attempt. The launcher reports on `reports`, `Spawned` (or
    /// `SpawnFailed`) first and `Exited` last, and obeys `ctl` in between.
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    );
}

/// One `dbt` process per attempt, in its own process group.
pub(crate) struct ProcessLauncher;

impl Launcher for ProcessLauncher {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    ) {
        tokio::spawn(attempt::run(spec, ctl, reports));
    }
}
