//! dbt's graph as a plan needs it: which batch writes which relation and reads
//! which, so that batches sharing one warehouse never break each other.
//!
//! - `manifest`: nodes, sources and macros from dbt's manifest.json;
//! - `window`: which nodes depend on the backfill window;
//! - `shared`: the rules for a shared warehouse (pure);
//! - `resolve`: runs `dbt ls` for the plan's selections and applies the rules.

pub(crate) mod manifest;
pub(crate) mod resolve;
pub(crate) mod shared;
pub(crate) mod window;
