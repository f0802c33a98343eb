//! The parse-invariance check's second parse, and its verdict. Worker 1 parses
//! with the first batch's inputs, so that batch may run on it at once: what it
//! runs on is exactly the parse a cold dbt would make for it. The second parse
//! (the last batch's inputs) runs beside it; only the other batches wait for
//! the verdict, and a difference turns the rest of the run cold.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::check::first_difference;
use super::slot::{self, Leave, SlotConfig, Started, Warm};
use crate::config::RunSettings;

/// The answer: `Ok` when the batches parse alike, else why not.
pub(crate) type Verdict = Result<(), String>;

/// The second parse, started.
pub(crate) struct Second {
    task: JoinHandle<Result<Started, String>>,
    /// Dropped: the second parse stops at once (the run ended, or worker 1
    /// could not start).
    leave: Option<oneshot::Sender<()>>,
}

impl Second {
    pub fn start(cfg: SlotConfig) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move { cfg.start(true, &mut Leave::on(rx)).await });
        Self {
            task,
            leave: Some(tx),
        }
    }

    /// The handle whose drop stops the parse, for whoever outlives this.
    pub fn take_leave(&mut self) -> Option<oneshot::Sender<()>> {
        self.leave.take()
    }

    /// Stops it and makes sure its worker is gone.
    pub async fn abandon(mut self, grace: Duration) {
        drop(self.leave.take());
        if let Ok(Ok((w, _))) = self.task.await {
            slot::retire(w, grace).await;
        }
    }

    /// Waits for the parse and compares it with the first. Alike: its worker
    /// when `keep` (it serves a slot of its own), else it is retired.
    pub async fn judge(self, judge: Judge, keep: bool) -> (Verdict, Option<Warm>) {
        let Second { task, leave } = self;
        let started = task.await;
        drop(leave);
        let (w, digest) = match started {
            Ok(Ok((w, d))) => (w, d.unwrap_or_default()),
            Ok(Err(e)) => return (Err(format!("the warm worker could not start: {e}")), None),
            Err(e) => return (Err(format!("the parse check failed: {e}")), None),
        };
        match first_difference(&judge.digest, &digest) {
            None if keep => (Ok(()), Some(w)),
            None => {
                slot::retire(w, judge.grace).await;
                (Ok(()), None)
            }
            Some(diff) => {
                slot::retire(w, judge.grace).await;
                (
                    Err(format!(
                        "batches parse differently ({diff} with {} and with {}): {}",
                        judge.first, judge.last, judge.hint
                    )),
                    None,
                )
            }
        }
    }
}

/// What the second parse is compared with, and how to say a difference.
pub(crate) struct Judge {
    pub digest: Map<String, Value>,
    pub first: String,
    pub last: String,
    pub hint: String,
    pub grace: Duration,
}

/// What to do about a difference.
pub(crate) fn hint(settings: &RunSettings) -> String {
    settings
        .env
        .iter()
        .find(|t| t.value.contains("{batch}"))
        .map_or_else(
            || {
                "a var or env_var is rendered at parse time (in config(), enabled= or \
                 sources.yml); run cold, or keep parse-time values the same for every batch"
                    .to_string()
            },
            |t| format!("{} uses {{batch}}; use {{worker}} for warm workers", t.key),
        )
}

/// A verdict still to come, for the engine: until it does, only `batch` may
/// run, and only on worker 1.
pub(crate) struct Pending {
    pub batch: String,
    pub verdict: oneshot::Receiver<Verdict>,
}
