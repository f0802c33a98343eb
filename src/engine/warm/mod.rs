//! Warm workers: one long-lived dbt process per worker slot that imports dbt and
//! parses once, then runs each batch with `dbtRunner` on the kept manifest.
//!
//! - `protocol`: the line-JSON protocol with the worker program
//!   (`assets/worker/herd_worker.py`), over pipes of its own;
//! - `process`: starting a worker process with those pipes;
//! - `slot`: one slot's actor (its worker's start and parse, a batch at a time,
//!   replacement);
//! - `batch`: one batch on a worker (its logs, reports and the stop ladder);
//! - `launcher`: the `Launcher` that hands batches to slots;
//! - `check`: warm or cold (do batches parse alike?);
//! - `verdict`: the check's second parse, which the first batch need not wait for.

mod batch;
pub(crate) mod check;
pub(crate) mod launcher;
pub(crate) mod process;
mod protocol;
mod slot;
pub(crate) mod verdict;
