//! dbt-herd: a supervisor for parallel dbt runs.
//!
//! The crate is one engine with two faces. `plan`, `dbt` and `engine` know nothing
//! about terminals; `report` (headless lines) and, later, the TUI only consume
//! engine events and send it commands.

pub mod cli;
pub mod config;
pub mod dbt;
pub mod demo;
pub mod engine;
pub mod error;
pub mod plan;
pub mod progress;
pub mod report;
pub mod start;
pub mod state_dir;
pub mod text;
pub mod tui;
pub mod venv;
