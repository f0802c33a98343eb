//! Command-line definitions (clap derive), with each value parsed into its type
//! where it is read, so a bad value is reported naming its flag. Checks that span
//! several options live in `config`.
//!
//! Every run option is an `Option` so that `--resume` can tell an option the user
//! gave (which overrides the stored run) from one left at its default. The same
//! struct is stored in the state dir's run.json.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::{UsageError, UsageResult};
use crate::plan::{DbtCommand, Step, Window, WindowAs};
use crate::usage;

mod subcommands;
pub(crate) use subcommands::{
    AttachArgs, CompletionsArgs, DemoArgs, LsArgs, ReportArgs, ShowArgs, StopArgs,
};

#[derive(Debug, Parser)]
#[command(
    name = "dbt-herd",
    version,
    about = "Run many dbt batches (backfill windows or selectors) in parallel under a warehouse connection budget",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a plan of batches: one dbt process per batch, N at a time.
    Run(Box<RunArgs>),
    /// Run the bundled demo backfill (creates a private venv with pinned dbt on first use).
    Demo(DemoArgs),
    /// Show one batch of a run: its attempts, the command each ran, and why it failed.
    Show(ShowArgs),
    /// Open the TUI on a running run (default: the newest live run under .dbt-herd/).
    Attach(AttachArgs),
    /// Stop a running run (its batches get the stop ladder); exits with the run's exit code.
    Stop(StopArgs),
    /// List the runs under .dbt-herd/ (or DIR): live or finished, and their batches.
    Ls(LsArgs),
    /// Write one self-contained HTML report of a run: a timeline per worker, the
    /// connections over time, the batch table and every failure.
    Report(ReportArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `dbt-herd man > dbt-herd.1`.
    Man,
    /// The engine of a detached run (started by `run`; reads its options on stdin).
    #[command(hide = true)]
    Serve,
}

/// What a served run does when the terminal of its TUI goes away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnHangup {
    /// The run goes on; `dbt-herd attach` comes back to it.
    #[default]
    Detach,
    /// The run stops, every batch with the stop ladder (exit 129).
    Stop,
}

/// Whether the batches share one warehouse (and so must be ordered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SharedWarehouse {
    /// Shared unless `--env` gives each worker or batch its own ({worker} or {batch}).
    #[default]
    Auto,
    Yes,
    No,
}

/// How batches run: warm (a long-lived dbt process per worker, parsed once) or
/// cold (a new dbt process per batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModeArg {
    /// Warm when batches parse alike, else cold (and the run says why).
    #[default]
    Auto,
    Warm,
    Cold,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunArgs {
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

    /// dbt subcommand of every batch [default: build].
    #[arg(long, value_name = "CMD")]
    pub command: Option<DbtCommand>,

    /// A plan file (YAML or JSON): a list of batches, each with its own select,
    /// exclude, selector, vars, env, threads, command, args and after; a pool
    /// script's `[{"name", "args", "env"}]` too. Combines with --backfill.
    #[arg(long, value_name = "FILE", conflicts_with = "select")]
    pub plan: Option<PathBuf>,

    /// A dbt selector; one batch per occurrence (repeatable).
    #[arg(short = 's', long = "select", value_name = "SELECTOR", value_parser = non_empty)]
    pub select: Vec<String>,

    /// Passed to every batch as dbt --exclude.
    #[arg(long, value_name = "SELECTOR")]
    pub exclude: Option<String>,

    /// A YAML selector name, passed to every batch as dbt --selector.
    #[arg(long, value_name = "NAME")]
    pub selector: Option<String>,

    /// Backfill FROM..TO (ISO dates, TO exclusive): one batch per window.
    #[arg(long, value_name = "FROM..TO", value_parser = crate::plan::parse_backfill)]
    #[serde(with = "as_text")]
    pub backfill: Option<Window>,

    /// Window length for --backfill: Nd, Nw or Nmo [default: 1d].
    #[arg(long, value_name = "STEP", value_parser = crate::plan::parse_step)]
    #[serde(with = "as_text")]
    pub step: Option<Step>,

    /// How a window reaches dbt: vars (--start-var/--end-var) or event-time
    /// (--event-time-start/--event-time-end, for microbatch models) [default: vars].
    #[arg(long, value_name = "HOW")]
    pub window_as: Option<WindowAs>,

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
    #[arg(short = 'w', long, value_name = "N", value_parser = at_least_one)]
    #[serde(deserialize_with = "number_or_text")]
    pub workers: Option<u32>,

    /// --threads given to each dbt process [default: budget / workers, at least 1].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    #[serde(deserialize_with = "number_or_text")]
    pub threads: Option<u32>,

    /// Warehouse connections: running batches' threads never exceed it; `auto`
    /// asks a PostgreSQL server what it has room for [default: workers × threads].
    #[arg(long, value_name = "N|auto", value_parser = budget_value)]
    #[serde(default, deserialize_with = "budget_in_file")]
    pub budget: Option<u32>,

    /// Automatic retries of a failed batch (dbt retry, or a full rerun when retry has nothing to do) [default: 0].
    #[arg(long, value_name = "N", value_parser = whole_number)]
    #[serde(deserialize_with = "number_or_text")]
    pub retries: Option<u32>,

    /// Pause the queue once the last K finished attempts all failed with one
    /// systemic cause (the warehouse down, a lock held, a broken profile); `off`
    /// never does [default: 3].
    #[arg(long, value_name = "K|off", value_parser = breaker_count)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "breaker_in_file"
    )]
    pub breaker: Option<u32>,

    /// KEY=VALUE for every dbt process; {batch} and {worker} in VALUE are replaced (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = EnvTemplate::parse)]
    pub env: Vec<EnvTemplate>,

    /// Whether the batches share one warehouse: auto (shared unless --env gives each worker or
    /// batch its own, with {worker} or {batch}), yes or no. On a shared one the plan is resolved
    /// against dbt's graph so that no two batches write one relation at once [default: auto].
    #[arg(long, value_name = "WHEN")]
    pub shared_warehouse: Option<SharedWarehouse>,

    /// auto (warm when batches parse alike), warm (a long-lived dbt process per worker that
    /// parses once) or cold (a new dbt process per batch) [default: auto].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<ModeArg>,

    /// A warm worker is replaced by a fresh process after this many batches [default: 100].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    #[serde(deserialize_with = "number_or_text")]
    pub recycle: Option<u32>,

    /// Run a batch whose selection matches no node (dbt does nothing and exits 0)
    /// instead of refusing the plan before anything runs.
    #[arg(long)]
    #[serde(default)]
    pub allow_empty: bool,

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

    /// Leave the mouse to the terminal (its own text selection) instead of
    /// clicking panes and rows.
    #[arg(long)]
    #[serde(skip)]
    pub no_mouse: bool,

    /// Defaults for run options from this TOML file [default: dbt-herd.toml in the
    /// project dir, if there]; flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the merged options and where each came from (flag, config file,
    /// default), and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Start the run in the background and return: prints its state dir (attach,
    /// stop and ls find it there).
    #[arg(long, conflicts_with = "headless")]
    #[serde(skip)]
    pub detach: bool,

    /// Print the plan (each batch's dbt command, the env dbt-herd adds, `after`
    /// edges), the budget arithmetic and the mode, and exit without starting dbt.
    #[arg(long)]
    #[serde(skip)]
    pub dry_run: bool,

    /// Machine-readable output: with --dry-run one JSON document; with --headless
    /// one JSON event per line on stdout (human lines go to stderr).
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,

    /// When the TUI's terminal goes away (an SSH drop): detach (the run goes on) or
    /// stop the run [default: detach].
    #[arg(long, value_name = "WHAT")]
    #[serde(skip)]
    pub on_hangup: Option<OnHangup>,

    /// Seconds between SIGINT and SIGTERM when stopping a batch [default: 10].
    #[arg(long, value_name = "SECS", hide = true, value_parser = seconds)]
    #[serde(deserialize_with = "number_or_text")]
    pub grace_int: Option<f64>,

    /// Seconds between SIGTERM and SIGKILL when stopping a batch [default: 5].
    #[arg(long, value_name = "SECS", hide = true, value_parser = seconds)]
    #[serde(deserialize_with = "number_or_text")]
    pub grace_term: Option<f64>,

    /// Arguments after `--` are appended to every dbt invocation.
    #[arg(last = true, value_name = "EXTRA_DBT_ARGS")]
    pub extra: Vec<String>,
}

impl RunArgs {
    /// Takes the options that are never stored (how this invocation runs, not
    /// what the run is) from `from`.
    pub fn copy_unstored(&mut self, from: &RunArgs) {
        self.no_mouse = from.no_mouse;
        self.config.clone_from(&from.config);
        self.print_config = from.print_config;
        self.detach = from.detach;
        self.dry_run = from.dry_run;
        self.json = from.json;
        self.on_hangup = from.on_hangup;
    }
}

/// `--env KEY=VALUE`, where VALUE may hold `{batch}` and `{worker}`. Stored in
/// run.json as it was typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct EnvTemplate {
    pub key: String,
    pub value: String,
}

impl EnvTemplate {
    pub fn parse(s: &str) -> UsageResult<Self> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| usage!("invalid --env '{s}': expected KEY=VALUE"))?;
        let valid_key = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(usage!(
                "invalid --env '{s}': '{key}' is not a valid variable name"
            ));
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// The value for one batch on one worker slot.
    pub fn render(&self, batch_id: &str, worker: usize) -> String {
        self.value
            .replace("{batch}", batch_id)
            .replace("{worker}", &worker.to_string())
    }
}

impl TryFrom<String> for EnvTemplate {
    type Error = UsageError;
    fn try_from(s: String) -> UsageResult<Self> {
        Self::parse(&s)
    }
}

impl From<EnvTemplate> for String {
    fn from(t: EnvTemplate) -> String {
        format!("{}={}", t.key, t.value)
    }
}

/// A whole number, with a reason a person can act on when it is not one.
fn whole_number(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number".into());
    }
    t.parse()
        .map_err(|_| format!("too large (at most {})", u32::MAX))
}

/// `--budget`: a count of at least 1, or `auto` (stored as 0).
fn budget_value(s: &str) -> Result<u32, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(0);
    }
    number_or(s, "auto")
}

/// `--breaker`: a count of at least 1, or `off` (stored as 0).
fn breaker_count(s: &str) -> Result<u32, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    number_or(s, "off")
}

/// A count of at least 1; text that is no number is told it could be `word`.
fn number_or(s: &str, word: &str) -> Result<u32, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number or {word}"));
    }
    at_least_one(t)
}

fn at_least_one(s: &str) -> Result<u32, String> {
    match whole_number(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .ok_or_else(|| "expected seconds, e.g. 5 or 0.5".into())
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("empty selector".into());
    }
    Ok(s.to_string())
}

/// Numbers in run.json; written as text by earlier versions, so read either.
fn number_or_text<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + serde::Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Number(T),
        Text(String),
    }
    match Option::<Either<T>>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("not a number: '{t}'"))),
    }
}

/// `budget = 12` or `budget = "auto"` in a config file (or run.json).
fn budget_in_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    word_or_number(d, budget_value)
}

/// `breaker = 5` or `breaker = "off"`.
fn breaker_in_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    word_or_number(d, breaker_count)
}

/// A number, or text that `parse` reads as the flag would.
fn word_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> Result<u32, String>,
) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u32),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) => parse(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Values stored in run.json in the form they are typed on the command line.
mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` hands over `&Option<T>`; the signature is not ours to choose.
    #[allow(clippy::ref_option)]
    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dbt-herd").chain(args.iter().copied()))
    }

    #[test]
    fn numbers_are_typed_and_checked_where_read() {
        let Command::Run(a) = parse(&["run", "-w", "3", "--budget", "10"])
            .unwrap()
            .command
        else {
            panic!("not run");
        };
        assert_eq!((a.workers, a.budget, a.threads), (Some(3), Some(10), None));
        for (args, reason) in [
            (["run", "--workers", "0"], "must be at least 1"),
            (["run", "--workers", "four"], "expected a whole number"),
            (["run", "--budget", "999999999999999999999"], "too large"),
            (["run", "--retries", "1.5"], "expected a whole number"),
            (["run", "--command", "compile"], "compile"),
            (["run", "--step", "0d"], "0d"),
        ] {
            let e = parse(&args).unwrap_err().to_string();
            assert!(e.contains(reason), "{args:?}: {e}");
        }
    }

    #[test]
    fn stored_args_round_trip_and_old_text_numbers_still_read() {
        let Command::Run(a) = parse(&[
            "run",
            "--backfill",
            "2024-01-01..2024-02-01",
            "--step",
            "1w",
            "-w",
            "2",
            "--command",
            "run",
        ])
        .unwrap()
        .command
        else {
            panic!("not run");
        };
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            json.contains(r#""backfill":"2024-01-01..2024-02-01""#),
            "{json}"
        );
        let back: RunArgs = serde_json::from_str(&json).unwrap();
        assert_eq!(back.step, a.step);
        assert_eq!(back.workers, Some(2));
        assert_eq!(back.command, Some(DbtCommand::Run));
        let old: RunArgs =
            serde_json::from_str(r#"{"workers": "4", "retries": "1", "grace_int": "0.5"}"#)
                .unwrap();
        assert_eq!(
            (old.workers, old.retries, old.grace_int),
            (Some(4), Some(1), Some(0.5))
        );
    }
}
