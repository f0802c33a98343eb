//! The engine: the batch queue, the connection budget, one actor per running dbt
//! attempt, the run_results watcher and the journal. It knows no terminal: a face
//! sends it `Command`s and reads its `Event`s through an `EngineHandle`.
//!
//! - `messages`: the faces' protocol (commands, events, views); `protocol`: the
//!   engine's inner one (attempt reports, effects, journal records).
//! - `core`: the pure state machine; `shell`: the async task that runs it.
//! - `launcher` and `attempt`: one child per attempt, its output, the stop ladder.
//! - `journal`, `sweep`: durability and resume; `history`: each attempt's past and
//!   command; `outbox`: bounded delivery to faces.

mod attempt;
pub(crate) mod connections;
mod core;
mod fingerprint;
mod handle;
pub(crate) mod history;
pub(crate) mod journal;
mod launcher;
mod listing;
pub(crate) mod messages;
mod outbox;
pub(crate) mod parse;
pub(crate) mod process;
pub(crate) mod protocol;
mod sampler;
mod shell;
pub(crate) mod summary;
pub(crate) mod sweep;
pub(crate) mod warm;

pub(crate) use fingerprint::fingerprint;
pub(crate) use handle::{EarlyEnd, EngineHandle, EngineOutcome};
pub(crate) use messages::{
    BatchStatus, BatchView, Command, Event, LogLine, PrepPhase, PrepView, Resources, RunInfo,
    WorkerView,
};
pub(crate) use shell::{EngineSetup, spawn};
pub(crate) use summary::SummaryStatus;
/// Attempts failing alike that pause the queue when `--breaker` is not given.
pub(crate) const BREAKER_DEFAULT: usize = core::BREAKER_K;
