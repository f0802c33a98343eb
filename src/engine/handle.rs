//! A face's grip on a running engine: commands in, events out, and the outcome
//! when it ends. Nothing else of the engine is reachable from a face.

use std::path::PathBuf;

use color_eyre::eyre::WrapErr;
use tokio::sync::mpsc;

use crate::engine::messages::{Command, Event};
use crate::engine::summary::Summary;

/// How the engine ended.
#[derive(Debug)]
pub(crate) struct EngineOutcome {
    pub summary: Summary,
    /// Where summary.json is, if its last write succeeded.
    pub summary_path: Option<PathBuf>,
    /// A failure of dbt-herd itself (journal or summary not written), if any.
    pub fault: Option<String>,
    /// The run ended before its engine started, and why.
    pub early: Option<EarlyEnd>,
}

/// Why a run ended while it prepared, before any batch could start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EarlyEnd {
    /// A face asked it to stop (Ctrl-C, `q`, `dbt-herd stop`).
    Stopped,
    /// It cannot run as asked (a plan that does not resolve, a missing
    /// profile): the one line that says why.
    Refused(String),
}

/// A face's grip on a running engine: commands in, events out.
pub(crate) struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    join: tokio::task::JoinHandle<color_eyre::Result<EngineOutcome>>,
}

impl EngineHandle {
    /// A grip on the task that ends with the engine's outcome: the engine's own,
    /// or the control server's that stands between the engine and a face.
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        events: mpsc::Receiver<Event>,
        join: tokio::task::JoinHandle<color_eyre::Result<EngineOutcome>>,
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
        join.await.wrap_err("the engine task failed")?
    }
}
