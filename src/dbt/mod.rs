//! Everything dbt-specific: the argv and environment of one attempt, the JSON log
//! events dbt prints, and the run_results.json artifact.

pub mod argv;
pub mod class;
pub mod events;
pub mod failure;
pub mod run_results;
