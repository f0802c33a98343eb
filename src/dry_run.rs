//! `dbt-herd run --dry-run`: what a run would do, without running a batch or
//! creating its state dir. The plan is resolved as a real run resolves it (`dbt
//! ls` of each selection, in a temporary dir: it reads the project and writes
//! nothing to the warehouse), then each batch is shown with the exact command
//! and the environment dbt-herd adds, its nodes, warehouse, locks and `after`
//! edges, with the plan's decisions, the budget arithmetic and the mode. `--json`
//! gives the same as one document.

use std::io::Write;

use serde::Serialize;

use crate::cli::{ModeArg, RunArgs, SharedWarehouse};
use crate::config::{self, RunSettings};
use crate::dbt::argv::{self, AttemptKind};
use crate::engine::history::AttemptCommand;
use crate::graph::resolve::PlanReport;
use crate::plan;
use crate::state_dir::StateDir;
use crate::text::sanitize::sanitize_plain;

/// Bumped when a field changes meaning.
const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct DryRun {
    schema_version: u32,
    state_dir: String,
    dbt: String,
    workers: usize,
    threads: u32,
    budget: u32,
    /// Batches that can run at once: the workers, unless the budget allows fewer.
    at_once: usize,
    budget_line: String,
    mode: String,
    shared_warehouse: String,
    /// What resolving the plan decided (absent with `--shared-warehouse no`).
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<PlanReport>,
    batches: Vec<DryBatch>,
}

#[derive(Serialize)]
struct DryBatch {
    id: String,
    label: String,
    /// The command as one line for a POSIX shell (secrets as `***`).
    command: String,
    argv: Vec<String>,
    /// What dbt-herd adds to the environment dbt inherits (worker 1's values).
    env: std::collections::BTreeMap<String, String>,
    after: Vec<String>,
    /// The nodes it builds, as resolved (unique ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<String>>,
    /// The warehouse it writes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    warehouse: Option<String>,
    /// What it holds while it runs, so that no other batch writes the same at once.
    locks: Vec<String>,
}

/// Prints the dry run of `args` (a new run, or the resume of a state dir).
pub(crate) fn run(args: &RunArgs, json: bool, out: &mut dyn Write) -> color_eyre::Result<i32> {
    let (args, state_dir) = match &args.resume {
        Some(dir) => {
            let (_, stored) = StateDir::open_for_resume(dir)?;
            let mut merged = config::merge_resume(&stored.args, args);
            config::refill_secrets(&mut merged)?;
            (merged, config::absolute(dir))
        }
        None => (
            args.clone(),
            config::absolute(
                &args
                    .state_dir
                    .clone()
                    .unwrap_or_else(StateDir::default_path),
            ),
        ),
    };
    let settings = RunSettings::from_args(&args)?;
    let batches = plan::build(&settings.plan);
    let (batches, report) = resolved(
        &settings,
        batches,
        args.shared_warehouse.unwrap_or_default(),
    )?;
    let state = StateDir::new(state_dir.clone());
    let doc = DryRun {
        schema_version: SCHEMA_VERSION,
        state_dir: state_dir.display().to_string(),
        dbt: settings.dbt.display().to_string(),
        workers: settings.workers,
        threads: settings.threads,
        budget: settings.budget,
        at_once: at_once(&settings),
        budget_line: budget_line(&settings),
        mode: mode_line(&args, &settings),
        shared_warehouse: shared_line(&args, &settings),
        plan: report.clone(),
        batches: batches
            .iter()
            .map(|b| {
                let inv = argv::invocation(
                    &settings,
                    b,
                    AttemptKind::Full,
                    1,
                    &state.target_dir(&b.id),
                    &state.log_dir(&b.id),
                );
                let cmd = AttemptCommand::of(&inv);
                DryBatch {
                    id: b.id.clone(),
                    label: b.label.clone(),
                    command: cmd.line(),
                    argv: cmd.argv,
                    env: cmd.env,
                    after: b.after.clone(),
                    nodes: report.as_ref().and_then(|r| r.builds.get(&b.id).cloned()),
                    warehouse: report.as_ref().and_then(|r| {
                        r.groups
                            .iter()
                            .find(|g| g.batches.contains(&b.id))
                            .map(|g| g.label.clone())
                    }),
                    locks: b.locks.clone(),
                }
            })
            .collect(),
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)?;
    } else {
        print_text(&doc, out)?;
    }
    Ok(crate::error::exit::OK)
}

/// The plan as a real run would resolve it, in a temporary dir.
fn resolved(
    settings: &RunSettings,
    batches: Vec<plan::Batch>,
    shared: SharedWarehouse,
) -> color_eyre::Result<(Vec<plan::Batch>, Option<PlanReport>)> {
    if shared == SharedWarehouse::No {
        return Ok((batches, None));
    }
    let work = tempfile::Builder::new()
        .prefix("dbt-herd-dry-run-")
        .tempdir()
        .map_err(|e| color_eyre::eyre::eyre!("cannot make a temporary dir for dbt ls: {e}"))?;
    let (batches, report) = crate::entry::runtime()?.block_on(crate::graph::resolve::resolve(
        settings,
        batches,
        work.path(),
        shared,
    ))?;
    Ok((batches, Some(report)))
}

fn at_once(s: &RunSettings) -> usize {
    let by_budget = usize::try_from(s.budget / s.threads.max(1)).unwrap_or(usize::MAX);
    s.workers.min(by_budget).max(1)
}

fn budget_line(s: &RunSettings) -> String {
    let wanted = u64::try_from(s.workers).unwrap_or(u64::MAX) * u64::from(s.threads);
    let held = at_once(s);
    if wanted <= u64::from(s.budget) {
        format!(
            "{} workers × {} threads = {wanted} connections ≤ budget {}: all {} workers run at once",
            s.workers, s.threads, s.budget, s.workers
        )
    } else {
        format!(
            "{} workers × {} threads = {wanted} connections > budget {}: at most {held} batches run at once",
            s.workers, s.threads, s.budget
        )
    }
}

fn mode_line(args: &RunArgs, s: &RunSettings) -> String {
    let per_batch = s.env.iter().find(|t| t.value.contains("{batch}"));
    match (args.mode.unwrap_or_default(), per_batch) {
        (ModeArg::Cold, _) => "cold: a new dbt process per batch (--mode cold)".into(),
        (ModeArg::Auto, Some(t)) => format!(
            "cold: {} uses {{batch}} (a warm worker parses once per worker; use {{worker}} for warm)",
            t.key
        ),
        (ModeArg::Warm, Some(t)) => format!(
            "refused: --mode warm, but {} uses {{batch}}; use {{worker}} for warm workers",
            t.key
        ),
        (ModeArg::Auto, None) => "auto: warm (a dbt process per worker, parsed once) if the first and last batches parse alike, checked at start; else cold, saying why".into(),
        (ModeArg::Warm, None) => "warm: a dbt process per worker, parsed once (the start checks that batches parse alike, and exits 2 if not)".into(),
    }
}

fn shared_line(args: &RunArgs, s: &RunSettings) -> String {
    let own = s
        .env
        .iter()
        .any(|t| t.value.contains("{worker}") || t.value.contains("{batch}"));
    match (args.shared_warehouse.unwrap_or_default(), own) {
        (SharedWarehouse::No, _) | (SharedWarehouse::Auto, true) => {
            "not shared: batches run as listed, no ordering between them".into()
        }
        _ => "resolved against dbt's graph (dbt ls of each selection), as a run resolves it: the batches below are the plan that would run".into(),
    }
}

/// Untrusted text for a terminal, whole (a command line can be long).
fn clean(s: &str) -> String {
    sanitize_plain(s, 1 << 20)
}

fn print_text(d: &DryRun, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "dry run: {} · nothing is started, nothing is written",
        crate::text::plural::plural(d.batches.len(), "batch", "batches")
    )?;
    writeln!(out, "state dir: {}", clean(&d.state_dir))?;
    writeln!(out, "dbt: {}", clean(&d.dbt))?;
    writeln!(out, "budget: {}", d.budget_line)?;
    writeln!(out, "mode: {}", d.mode)?;
    writeln!(out, "warehouse: {}", d.shared_warehouse)?;
    for line in d.plan.iter().flat_map(PlanReport::lines) {
        writeln!(out, "{}", clean(&line))?;
    }
    for b in &d.batches {
        writeln!(out)?;
        writeln!(out, "{}  {}", clean(&b.id), clean(&b.label))?;
        writeln!(out, "  $ {}", clean(&b.command))?;
        if let Some(nodes) = &b.nodes {
            writeln!(out, "  builds: {}", clean(&node_names(nodes)))?;
        }
        if let Some(w) = &b.warehouse {
            writeln!(out, "  writes to: {}", clean(w))?;
        }
        if !b.after.is_empty() {
            writeln!(out, "  after: {}", clean(&b.after.join(", ")))?;
        }
        if !b.locks.is_empty() {
            writeln!(out, "  locks: {}", clean(&b.locks.join(", ")))?;
        }
    }
    Ok(())
}

/// Node ids for people (`orders`, a test by its name), at most 12 of them.
fn node_names(ids: &[String]) -> String {
    if ids.is_empty() {
        return "nothing".into();
    }
    let names: Vec<&str> = ids
        .iter()
        .take(12)
        .map(|id| crate::graph::shared::short(id))
        .collect();
    let more = ids.len() - names.len();
    let mut s = names.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}
