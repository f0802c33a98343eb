//! The plan's words that the command line, plan files and config files share:
//! which dbt command a batch runs, and how a backfill window reaches dbt.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How a backfill window reaches dbt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum WindowAs {
    /// As the vars named by --start-var and --end-var.
    #[default]
    Vars,
    /// As --event-time-start/--event-time-end, for microbatch models (a partial
    /// parse stays valid across windows).
    EventTime,
}

/// The dbt subcommand every batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DbtCommand {
    Build,
    Run,
    Test,
    Seed,
    Snapshot,
}

impl std::fmt::Display for DbtCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.to_possible_value();
        f.write_str(v.as_ref().map_or("build", |v| v.get_name()))
    }
}
