//! `dbt-herd run --dry-run`: what a run would do, without starting dbt or
//! creating its state dir: each batch with the exact command and the
//! environment dbt-herd adds, the `after` edges, the budget arithmetic and the
//! mode. `--json` gives the same as one document.

use std::io::Write;

use serde::Serialize;

use crate::cli::{ModeArg, RunArgs, SharedWarehouse};
use crate::config::{self, RunSettings};
use crate::dbt::argv::{self, AttemptKind};
use crate::engine::history::AttemptCommand;
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
        _ => "shared: at start the plan is resolved against dbt's graph (dbt ls per selection): models that do not depend on the window run once first, and batches that write one relation are ordered; the batches below are before that".into(),
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
    for b in &d.batches {
        writeln!(out)?;
        writeln!(out, "{}  {}", clean(&b.id), clean(&b.label))?;
        writeln!(out, "  $ {}", clean(&b.command))?;
        if !b.after.is_empty() {
            writeln!(out, "  after: {}", clean(&b.after.join(", ")))?;
        }
    }
    Ok(())
}
