//! The engine: the batch queue, the connection budget, one actor per running dbt
//! attempt, the run_results watcher and the journal. It knows no terminal: a face
//! sends it `Command`s and reads its `Event`s through an `EngineHandle`.
//!
//! - `messages`: the faces' protocol (commands, events, views); `protocol`: the
//!   engine's inner one (attempt reports, effects, journal records).
//! - `core`: the pure state machine; `shell`: the async task that runs it.
//! - `launcher` and `attempt`: one child per attempt, its output, the stop ladder.
//! - `journal`, `sweep`: durability and resume; `outbox`: bounded delivery to faces.

mod attempt;
mod core;
mod fingerprint;
pub(crate) mod journal;
mod launcher;
mod listing;
pub(crate) mod messages;
mod outbox;
pub(crate) mod process;
pub(crate) mod protocol;
mod sampler;
mod shell;
mod summary;
pub(crate) mod sweep;

use std::path::PathBuf;

use color_eyre::eyre::WrapErr;
use tokio::sync::mpsc;

pub(crate) use fingerprint::fingerprint;
pub(crate) use launcher::ProcessLauncher;
pub(crate) use messages::{
    BatchStatus, BatchView, Command, Event, LogLine, Resources, RunInfo, WorkerView,
};
pub(crate) use shell::{EngineSetup, spawn};
pub(crate) use summary::{Summary, SummaryStatus};

/// How the engine ended.
#[derive(Debug)]
pub(crate) struct EngineOutcome {
    pub summary: Summary,
    /// Where summary.json is, if its last write succeeded.
    pub summary_path: Option<PathBuf>,
    /// A failure of dbt-herd itself (journal or summary not written), if any.
    pub fault: Option<String>,
}

/// A face's grip on a running engine: commands in, events out.
pub(crate) struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    join: tokio::task::JoinHandle<EngineOutcome>,
}

impl EngineHandle {
    fn new(
        commands: mpsc::Sender<Command>,
        events: mpsc::Receiver<Event>,
        join: tokio::task::JoinHandle<EngineOutcome>,
    ) -> Self {
        Self {
            commands,
            events,
            join,
        }
    }

    /// Sends a command; false if the engine is gone or has too many queued.
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.try_send(cmd).is_ok()
    }

    /// The next event; `None` once the engine has ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// An event already waiting, if any.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Waits for the engine to end. Events not yet read are dropped, so the engine
    /// never waits on a face that has stopped reading.
    pub async fn finish(self) -> color_eyre::Result<EngineOutcome> {
        let Self {
            commands,
            events,
            join,
        } = self;
        // Dropping the command sender also stops an engine nobody told to stop.
        drop(commands);
        drop(events);
        join.await.wrap_err("the engine task failed")
    }
}
