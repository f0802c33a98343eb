//! Resolving a plan against dbt's graph before anything runs: one `dbt ls` per
//! distinct selection (in parallel, each in its own process group), dbt's
//! manifest.json for parents, materializations and macros, and then the
//! shared-warehouse rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::manifest::{Graph, Node};
use super::shared::{self, Decision, Selections};
use super::window;
use crate::cli::{DbtCommand, SharedWarehouse, WindowAs};
use crate::config::RunSettings;
use crate::dbt::argv::{self, Invocation};
use crate::engine::process;
use crate::plan::Batch;
use crate::usage;

/// How the plan treats the warehouse, for people and summary.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Warehouse {
    /// One warehouse for every batch: the plan knows who writes what.
    Shared,
    /// Each worker or batch has its own (a `{worker}` or `{batch}` in `--env`).
    Separate,
    /// One batch: nothing to share.
    SingleBatch,
}

/// What the plan decided, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanReport {
    pub warehouse: Warehouse,
    /// Why the warehouse is taken to be what it is.
    pub reason: String,
    /// Seconds spent resolving the plan against dbt's graph, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_in_s: Option<f64>,
    pub decisions: Vec<Decision>,
}

impl PlanReport {
    /// One line per thing a person should know before the run starts.
    pub fn lines(&self) -> Vec<String> {
        let took = self.resolved_in_s.map_or_else(String::new, |s| {
            format!(" (resolved against dbt's graph in {s:.1}s)")
        });
        let mut out = vec![format!("plan: {}{took}", self.reason)];
        out.extend(self.decisions.iter().map(|d| format!("plan: {}", d.text)));
        out
    }
}

/// Whether the batches share one warehouse, from `--shared-warehouse` and the
/// environment templates.
fn warehouse(settings: &RunSettings, batches: usize, mode: SharedWarehouse) -> (Warehouse, String) {
    let per = settings
        .env
        .iter()
        .find(|t| t.value.contains("{worker}") || t.value.contains("{batch}"));
    match (mode, per) {
        (SharedWarehouse::No, _) => (
            Warehouse::Separate,
            "batches share no relation (--shared-warehouse no): no ordering between them".into(),
        ),
        (SharedWarehouse::Auto, Some(t)) => (
            Warehouse::Separate,
            format!(
                "a warehouse per worker or batch ({} uses {{worker}} or {{batch}}): batches share no relation, so none waits on another",
                t.key
            ),
        ),
        _ if batches < 2 => (Warehouse::SingleBatch, "one batch: nothing to order".into()),
        (SharedWarehouse::Yes, _) => (
            Warehouse::Shared,
            "one shared warehouse (--shared-warehouse yes): batches are ordered so that none breaks another".into(),
        ),
        (SharedWarehouse::Auto, None) => (
            Warehouse::Shared,
            "one shared warehouse: batches are ordered so that none breaks another".into(),
        ),
    }
}

/// The resource types a command runs (and so may write).
fn runs(command: DbtCommand, resource_type: &str) -> bool {
    match command {
        DbtCommand::Build => matches!(resource_type, "model" | "seed" | "snapshot" | "test"),
        DbtCommand::Run => resource_type == "model",
        DbtCommand::Test => resource_type == "test",
        DbtCommand::Seed => resource_type == "seed",
        DbtCommand::Snapshot => resource_type == "snapshot",
    }
}

/// Resolves `plan` for the warehouse it runs on. `work` is a directory for the
/// `dbt ls` target and log dirs. With event-time windows, checks that they reach
/// a microbatch model.
pub(crate) async fn resolve(
    settings: &RunSettings,
    plan: Vec<Batch>,
    work: &Path,
    mode: SharedWarehouse,
) -> color_eyre::Result<(Vec<Batch>, PlanReport)> {
    let (kind, reason) = warehouse(settings, plan.len(), mode);
    let mut report = PlanReport {
        warehouse: kind,
        reason,
        resolved_in_s: None,
        decisions: Vec::new(),
    };
    let event_time = settings.plan.window_as == WindowAs::EventTime;
    if kind != Warehouse::Shared && !event_time {
        return Ok((plan, report));
    }
    let started = Instant::now();
    eprintln!("dbt-herd: resolving the plan against dbt's graph (dbt ls)…");
    let (graph, selected) = load(settings, &plan, work).await?;
    if event_time {
        let microbatch = selected
            .iter()
            .flatten()
            .any(|id| graph.nodes.get(id).is_some_and(Node::is_microbatch));
        if !microbatch {
            return Err(usage!(
                "--window-as event-time: no selected model is a microbatch model, and only those \
                 read --event-time-start/--event-time-end; use --window-as vars"
            )
            .into());
        }
    }
    if kind != Warehouse::Shared {
        return Ok((plan, report));
    }
    let vars = [
        settings.plan.start_var.as_str(),
        settings.plan.end_var.as_str(),
    ];
    let window_dependent = if settings.plan.backfill.is_some() {
        window::window_dependent(&graph, &vars)
    } else {
        BTreeSet::new()
    };
    let out = shared::resolve(
        &plan,
        &Selections {
            graph: &graph,
            selected,
            window_dependent: &window_dependent,
        },
    );
    report.decisions = out.decisions;
    report.resolved_in_s = Some((started.elapsed().as_secs_f64() * 100.0).round() / 100.0);
    Ok((out.batches, report))
}

/// dbt's graph, and what each batch selects in it (only the resource types
/// its command runs): one `dbt ls` per distinct selection, in parallel, with the
/// vars of the first batch (the first window) that has it.
async fn load(
    settings: &RunSettings,
    plan: &[Batch],
    work: &Path,
) -> color_eyre::Result<(Graph, Vec<BTreeSet<String>>)> {
    let mut firsts: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for (i, b) in plan.iter().enumerate() {
        firsts.entry(b.select.as_deref()).or_insert(i);
    }
    let jobs: Vec<(usize, Invocation, PathBuf)> = firsts
        .values()
        .enumerate()
        .map(|(n, &i)| {
            let dir = work.join(format!("ls-{n}"));
            let inv = Invocation {
                program: settings.dbt.clone(),
                args: argv::list_nodes_args(
                    settings,
                    &plan[i],
                    &dir.join("target"),
                    &dir.join("logs"),
                ),
                env: argv::build_env(settings, &plan[i], 1),
            };
            (i, inv, dir)
        })
        .collect();
    let Some(manifest) = jobs
        .first()
        .map(|j| j.2.join("target").join("manifest.json"))
    else {
        return Ok((Graph::default(), Vec::new()));
    };
    let listed: Vec<(usize, Result<BTreeSet<String>, String>)> = futures::stream::iter(
        jobs.into_iter()
            .map(|(i, inv, _)| async move { (i, list(&inv).await) }),
    )
    .buffer_unordered(settings.workers.max(1))
    .collect()
    .await;
    let mut by_select: BTreeMap<Option<&str>, BTreeSet<String>> = BTreeMap::new();
    for (i, result) in listed {
        let what = plan[i].select.as_deref().unwrap_or("the whole project");
        let ids =
            result.map_err(|e| usage!("cannot resolve the plan: dbt ls of {what} failed: {e}"))?;
        by_select.insert(plan[i].select.as_deref(), ids);
    }
    let bytes = std::fs::read(&manifest).map_err(|e| {
        usage!(
            "cannot resolve the plan: dbt ls wrote no {} ({e})",
            manifest.display()
        )
    })?;
    let graph = Graph::from_manifest(&bytes).map_err(|e| usage!("cannot resolve the plan: {e}"))?;
    let selected = plan
        .iter()
        .map(|b| {
            by_select
                .get(&b.select.as_deref())
                .into_iter()
                .flatten()
                .filter(|id| {
                    graph
                        .nodes
                        .get(*id)
                        .is_some_and(|n| runs(settings.command, &n.resource_type))
                })
                .cloned()
                .collect()
        })
        .collect();
    Ok((graph, selected))
}

/// The unique ids `dbt ls` prints for one selection.
async fn list(inv: &Invocation) -> Result<BTreeSet<String>, String> {
    let g = process::spawn_in_group(inv).map_err(|e| format!("{}: {e}", inv.program.display()))?;
    let pgid = g.pgid;
    let out = g.child.wait_with_output().await;
    process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
    process::unregister(pgid);
    let out = out.map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let text = stdout + String::from_utf8_lossy(&out.stderr);
        return Err(text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("failed")
            .to_string());
    }
    Ok(argv::parse_node_list(&stdout))
}
