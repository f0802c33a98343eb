//! dbt-herd: a supervisor for parallel dbt runs.
//!
//! One engine with two faces. `plan`, `dbt` and `engine` know nothing about
//! terminals; `report` (headless lines) and `tui` only consume engine events and
//! send it commands. The binary calls `entry::main`; the few other public items
//! are what the integration tests use.

mod cli;
mod clock;
mod config;
mod config_file;
mod dbt;
pub mod demo;
mod dry_run;
mod engine;
pub mod entry;
pub mod error;
mod graph;
mod html_report;
mod plan;
#[doc(hidden)]
pub mod procfs;
mod progress;
mod report;
mod runs;
mod secret;
mod server;
mod show;
mod start;
mod state_dir;
mod state_lock;
mod text;
mod tui;
pub mod venv;
