//! The engine: the batch queue, the connection budget, one actor per running dbt
//! attempt, the run_results watcher and the journal. It knows no terminal: it
//! takes `Command`s and emits `Event`s.

pub mod attempt;
pub mod core;
pub mod journal;
pub mod messages;
pub mod process;
pub mod run;
pub mod sampler;
pub mod sweep;

pub use messages::{
    BatchResources, BatchStatus, BatchView, Command, Event, FailingNode, LogLine, Resources,
    RunInfo, WorkerView,
};
pub use run::{EngineHandle, EngineMsg, EngineSetup, Launcher, ProcessLauncher};
