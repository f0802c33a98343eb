//! The arguments of the subcommands other than `run`.

use std::path::PathBuf;

use clap::Args;

use super::at_least_one;

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The run's state dir [default: the newest live run under .dbt-herd/].
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Watch only: keys that would change the run do nothing.
    #[arg(long)]
    pub read_only: bool,
    /// Print progress lines instead of the TUI, and exit with the run's exit code when it ends.
    #[arg(long)]
    pub headless: bool,
    /// Leave the mouse to the terminal (select and copy text as usual).
    #[arg(long)]
    pub no_mouse: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run's state dir (finished, or still going: a snapshot).
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,
    /// Where to write the report [default: STATE_DIR/report.html].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The run's state dir.
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Where the runs' state dirs are [default: .dbt-herd].
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// One JSON document for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Worker slots for the demo backfill.
    #[arg(short = 'w', long, default_value_t = 4, value_parser = at_least_one)]
    pub workers: u32,

    /// Number of one-day windows in the demo backfill.
    #[arg(long, default_value_t = 24, value_parser = at_least_one)]
    pub days: u32,

    /// First day of the demo backfill (the data covers 2024-01-01..2024-04-30).
    #[arg(long, default_value = "2024-01-01", value_name = "DATE", value_parser = crate::plan::parse_date)]
    pub start: chrono::NaiveDate,

    /// Where the demo keeps its project copy, source data and warehouse [default: the dbt-herd cache dir].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// No TUI: progress as lines on stdout.
    #[arg(long)]
    pub headless: bool,

    /// Leave the mouse to the terminal (its own text selection).
    #[arg(long)]
    pub no_mouse: bool,

    /// Only create the venv and the demo data, print the dbt path, and exit.
    #[arg(long)]
    pub prepare_only: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ShowArgs {
    /// The run's state dir (its --state-dir).
    #[arg(value_name = "STATE_DIR")]
    pub state_dir: PathBuf,

    /// The batch id, as the run shows it (e.g. 2024-01-13 or tag-finance).
    #[arg(value_name = "BATCH")]
    pub batch: String,
}
