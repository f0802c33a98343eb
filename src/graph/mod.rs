//! dbt's graph as a plan needs it: which batch writes which relation and reads
//! which, so that batches sharing one warehouse never break each other.
//!
//! - `manifest`: nodes, sources and macros from dbt's manifest.json;
//! - `inputs`: what reaches a node's build from a batch (vars, env, arguments);
//! - `warehouse`: which warehouse a batch writes to, from its profile;
//! - `shared`: the rules for a shared warehouse, and the invariant (pure);
//! - `resolve`: runs `dbt ls` for the plan's selections and applies the rules.

pub(crate) mod inputs;
pub(crate) mod manifest;
pub(crate) mod project_files;
pub(crate) mod resolve;
pub(crate) mod reuse;
pub(crate) mod shared;
pub(crate) mod warehouse;
