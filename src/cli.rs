//! Command-line definitions only (clap derive). Validation lives in `config`.
//!
//! Every run option is an `Option` so that `--resume` can tell an option the user
//! gave (which overrides the stored run) from one left at its default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "dbt-herd",
    version,
    about = "Run many dbt batches (backfill windows or selectors) in parallel under a warehouse connection budget",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plan of batches: one dbt process per batch, N at a time.
    Run(Box<RunArgs>),
    /// Run the bundled demo backfill (creates a private venv with pinned dbt on first use).
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct RunArgs {
    /// dbt project directory.
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Directory holding profiles.yml (passed to dbt as --profiles-dir).
    #[arg(long, value_name = "DIR")]
    pub profiles_dir: Option<PathBuf>,

    /// dbt target (passed to dbt as --target).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,

    /// The dbt executable [default: `dbt` on PATH].
    #[arg(long, value_name = "PATH")]
    pub dbt: Option<PathBuf>,

    /// dbt subcommand of every batch: build, run, test, seed or snapshot [default: build].
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,

    /// A dbt selector; one batch per occurrence (repeatable).
    #[arg(short = 's', long = "select", value_name = "SELECTOR")]
    pub select: Vec<String>,

    /// Passed to every batch as dbt --exclude.
    #[arg(long, value_name = "SELECTOR")]
    pub exclude: Option<String>,

    /// A YAML selector name, passed to every batch as dbt --selector.
    #[arg(long, value_name = "NAME")]
    pub selector: Option<String>,

    /// Backfill FROM..TO (ISO dates, TO exclusive): one batch per window.
    #[arg(long, value_name = "FROM..TO")]
    pub backfill: Option<String>,

    /// Window length for --backfill: Nd, Nw or Nmo [default: 1d].
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,

    /// Name of the var holding a window's start date [default: start_date].
    #[arg(long, value_name = "NAME")]
    pub start_var: Option<String>,

    /// Name of the var holding a window's (exclusive) end date [default: end_date].
    #[arg(long, value_name = "NAME")]
    pub end_var: Option<String>,

    /// Base vars for every batch, as YAML or JSON.
    #[arg(long, value_name = "YAML_OR_JSON")]
    pub vars: Option<String>,

    /// dbt processes at once [default: 4].
    #[arg(short = 'w', long, value_name = "N")]
    pub workers: Option<String>,

    /// --threads given to each dbt process [default: budget / workers, at least 1].
    #[arg(long, value_name = "N")]
    pub threads: Option<String>,

    /// Warehouse connections: running batches' threads never exceed it [default: workers × threads].
    #[arg(long, value_name = "N")]
    pub budget: Option<String>,

    /// Automatic retries of a failed batch (dbt retry, or a full rerun when retry has nothing to do) [default: 0].
    #[arg(long, value_name = "N")]
    pub retries: Option<String>,

    /// KEY=VALUE for every dbt process; {batch} and {worker} in VALUE are replaced (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Where the journal, summary and per-batch target/logs go [default: .dbt-herd/<run id>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Continue the run recorded in this state dir; succeeded batches are not run again.
    #[arg(long, value_name = "DIR", conflicts_with = "state_dir")]
    pub resume: Option<PathBuf>,

    /// No TUI: progress as lines on stdout (also the case when stdout is not a terminal).
    #[arg(long)]
    #[serde(skip)]
    pub headless: bool,

    /// Seconds between SIGINT and SIGTERM when stopping a batch [default: 10].
    #[arg(long, value_name = "SECS", hide = true)]
    pub grace_int: Option<String>,

    /// Seconds between SIGTERM and SIGKILL when stopping a batch [default: 5].
    #[arg(long, value_name = "SECS", hide = true)]
    pub grace_term: Option<String>,

    /// Arguments after `--` are appended to every dbt invocation.
    #[arg(last = true, value_name = "EXTRA_DBT_ARGS")]
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Worker slots for the demo backfill.
    #[arg(short = 'w', long, default_value_t = 4)]
    pub workers: usize,

    /// Number of one-day windows in the demo backfill.
    #[arg(long, default_value_t = 24)]
    pub days: u32,

    /// First day of the demo backfill (the data covers 2024-01-01..2024-03-31).
    #[arg(long, default_value = "2024-01-01", value_name = "DATE")]
    pub start: String,

    /// Where the demo keeps its project copy, source data and warehouse [default: the dbt-herd cache dir].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// No TUI: progress as lines on stdout.
    #[arg(long)]
    pub headless: bool,

    /// Only create the venv and the demo data, print the dbt path, and exit.
    #[arg(long)]
    pub prepare_only: bool,
}
