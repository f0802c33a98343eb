//! How an attempt is carried out. The shell hands a launcher an `AttemptSpec`, a
//! control channel and a report channel; today's launcher starts one cold `dbt`
//! process per attempt. The engine sees only this trait, so tests put a fake in.

use tokio::sync::mpsc;

use crate::engine::attempt;
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec};

pub(crate) trait Launcher: Send + Sync + 'static {
    /// Starts the attempt. The launcher reports on `reports`, `Spawned` (or
    /// `SpawnFailed`) first and `Exited` last, and obeys `ctl` in between.
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    );

    /// The worker slots that exist now (at the start, and after each change):
    /// a launcher that keeps a process per slot starts and stops them.
    fn slots(&self, _numbers: &[usize]) {}

    /// The parse check's verdict came after the first batch started: `false`
    /// (batches parse differently) means every later batch runs cold.
    fn verdict(&self, _alike: bool) {}

    /// The engine is ending: the returned future is done when every process
    /// the launcher keeps between attempts is gone.
    fn close(&self) -> Closing {
        Box::pin(async {})
    }
}

/// What `Launcher::close` returns.
pub(crate) type Closing = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

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
