//! Resolving a plan against dbt's graph before anything runs: each batch's
//! context (everything of it that can reach a node's build) and warehouse, one
//! `dbt ls` per distinct selection identity (in parallel, each in its own
//! process group), dbt's manifest.json for parents, materializations, code and
//! macros, then the shared-warehouse rules per warehouse, checked against the
//! invariant before the run may start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::inputs::{self, Context, Reads};
use super::manifest::{Graph, Node};
use super::shared::{self, Decision, Groups, Selections};
use super::warehouse::{self, PER_WORKER};
use crate::cli::SharedWarehouse;
use crate::config::RunSettings;
use crate::dbt::argv::{self, BATCH_ENV, Invocation};
use crate::engine::process;
use crate::plan::Batch;
use crate::plan::WindowAs;
use crate::usage;

/// How the plan treats the warehouse, for people and summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Warehouse {
    /// Some batches share a warehouse: the plan knows who writes what.
    Shared,
    /// Every batch has a warehouse of its own.
    Separate,
    /// One batch: nothing to share.
    #[default]
    SingleBatch,
}

/// One warehouse of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupReport {
    pub label: String,
    /// The batches (of the resolved plan) that write to it.
    pub batches: Vec<String>,
    /// It admits one writing dbt process at a time (a DuckDB file).
    pub one_writer: bool,
}

/// What the plan decided, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanReport {
    pub warehouse: Warehouse,
    /// Why the warehouse is taken to be what it is.
    pub reason: String,
    /// Seconds spent resolving the plan against dbt's graph, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_in_s: Option<f64>,
    pub decisions: Vec<Decision>,
    /// The warehouses the batches write to.
    #[serde(default)]
    pub groups: Vec<GroupReport>,
    /// Per batch of the plan as given, the batches that build its nodes.
    #[serde(default)]
    pub built_by: BTreeMap<String, Vec<String>>,
    /// Per batch of the resolved plan, the nodes it builds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub builds: BTreeMap<String, Vec<String>>,
    /// The environment variables the project reads (`None`: it may read any,
    /// or the plan was not resolved); for `reuse`, not for people.
    #[serde(skip)]
    pub env_read: Option<Vec<String>>,
    /// The partial parse files `dbt ls` left, with the vars each was made
    /// with: a later parse with those vars starts from one (dbt checks the
    /// rest: profile, target, env vars, files) instead of from nothing.
    #[serde(skip)]
    pub parses: Vec<(PathBuf, serde_json::Map<String, serde_json::Value>)>,
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

    fn unresolved(warehouse: Warehouse, reason: String) -> Self {
        PlanReport {
            warehouse,
            reason,
            resolved_in_s: None,
            decisions: Vec::new(),
            groups: Vec::new(),
            built_by: BTreeMap::new(),
            builds: BTreeMap::new(),
            env_read: None,
            parses: Vec::new(),
        }
    }
}

/// The resource types a command runs (and so may write).
fn runs(command: &str, resource_type: &str) -> bool {
    argv::executes(command, resource_type) && resource_type != "unit_test"
}

/// Resolves `plan` for the warehouses it runs on. `work` is a directory for the
/// `dbt ls` target and log dirs.
pub(crate) async fn resolve(
    settings: &RunSettings,
    plan: Vec<Batch>,
    work: &Path,
    mode: SharedWarehouse,
) -> color_eyre::Result<(Vec<Batch>, PlanReport)> {
    if mode == SharedWarehouse::No {
        let report = PlanReport::unresolved(
            if plan.len() < 2 {
                Warehouse::SingleBatch
            } else {
                Warehouse::Separate
            },
            "batches share no relation (--shared-warehouse no): no ordering between them, \
             and selections are not checked before they run"
                .into(),
        );
        return Ok((plan, report));
    }
    let started = Instant::now();
    let profile = warehouse::load_profile(settings);
    let project = project_reads(&settings.project_dir);
    let mut groups = Groups::default();
    let contexts: Vec<Context> = plan
        .iter()
        .map(|b| {
            let env = batch_env(settings, b);
            let wh = warehouse::of(settings, profile.as_ref(), &env, &b.id, mode);
            groups.labels.insert(wh.key.clone(), wh.label.clone());
            if wh.one_writer {
                groups.one_writer.insert(wh.key.clone());
            }
            context(settings, b, wh.key, env)
        })
        .collect();
    let (graph, selected, parses) = load(settings, &plan, &contexts, &project, work).await?;
    refuse_empty(settings, &plan, &selected)?;
    if settings.plan.window_as == WindowAs::EventTime {
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
    let reads = inputs::node_reads(&graph, &project);
    let sel = Selections {
        graph: &graph,
        selected,
        contexts,
        reads: &reads,
        threads: settings.threads,
        budget: settings.budget,
        taken: BTreeSet::new(),
    };
    let out = shared::resolve(&plan, &sel, &groups)
        .map_err(|e| usage!("cannot resolve the plan: {e}"))?;
    shared::verify(&sel, &groups, &out).map_err(|e| {
        usage!("the resolved plan would not build every node of the plan exactly once: {e}; refusing to start")
    })?;
    let mut report = report_of(&out, &groups, plan.len());
    report.env_read = env_read(&reads, &project, profile.as_ref());
    report.parses = parses;
    report.resolved_in_s = Some((started.elapsed().as_secs_f64() * 100.0).round() / 100.0);
    Ok((out.batches, report))
}

/// The environment dbt-herd gives a batch, templates filled; a value that
/// depends on the worker (`{worker}`) is `PER_WORKER`. The batch tag, which no
/// node reads, is left out.
fn batch_env(s: &RunSettings, b: &Batch) -> BTreeMap<String, String> {
    let two: BTreeMap<String, String> = argv::build_env(s, b, 2).into_iter().collect();
    argv::build_env(s, b, 1)
        .into_iter()
        .filter(|(k, _)| k != BATCH_ENV)
        .map(|(k, v)| {
            let v = if two.get(&k) == Some(&v) {
                v
            } else {
                PER_WORKER.to_string()
            };
            (k, v)
        })
        .collect()
}

fn context(s: &RunSettings, b: &Batch, group: String, env: BTreeMap<String, String>) -> Context {
    let mut args: Vec<String> = s.extra_args.iter().chain(&b.own.args).cloned().collect();
    if let (WindowAs::EventTime, Some(w)) = (s.plan.window_as, b.window) {
        args.extend([
            "--event-time".into(),
            w.start.to_string(),
            w.end.to_string(),
        ]);
    }
    Context {
        group,
        command: b.own.command.unwrap_or(s.command).to_string(),
        target: s.target.clone(),
        args,
        vars: b.vars.clone(),
        env,
        cache: inputs::KeyCache::default(),
    }
}

/// What the project's own config reads: dbt_project.yml and the YAML files of
/// the project (properties, selectors), not of its installed packages or output.
fn project_reads(dir: &Path) -> Reads {
    let skip = ["target", "logs", "dbt_packages", "dbt_modules"];
    let mut out = Reads::default();
    for p in super::project_files::files(dir, |_, name| skip.contains(&name)) {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        let yaml = name
            .as_deref()
            .is_some_and(|n| (n.ends_with(".yml") || n.ends_with(".yaml")) && n != "profiles.yml");
        if yaml && let Ok(text) = std::fs::read_to_string(&p) {
            out.extend(&inputs::scan(&text));
        }
    }
    out
}

/// A selection that picks nothing is a mistake, unless `--allow-empty` says not.
fn refuse_empty(
    s: &RunSettings,
    plan: &[Batch],
    selected: &[BTreeSet<String>],
) -> color_eyre::Result<()> {
    if s.allow_empty {
        return Ok(());
    }
    if let Some((b, _)) = plan.iter().zip(selected).find(|(_, ids)| ids.is_empty()) {
        return Err(usage!(
            "batch {}: selection '{}' matched no node (pass --allow-empty to run it anyway)",
            b.id,
            what(s, b)
        )
        .into());
    }
    Ok(())
}

/// A batch's selection as its flags.
fn what(s: &RunSettings, b: &Batch) -> String {
    let mut parts = Vec::new();
    if let Some(sel) = &b.select {
        parts.push(format!("--select {sel}"));
    }
    if let Some(x) = s.exclude.as_ref().or(b.own.exclude.as_ref()) {
        parts.push(format!("--exclude {x}"));
    }
    if let Some(x) = b.own.selector.as_ref().or(s.selector.as_ref()) {
        parts.push(format!("--selector {x}"));
    }
    match (parts.len(), &b.select) {
        (0, _) => "the whole project".into(),
        (1, Some(sel)) => sel.clone(),
        _ => parts.join(" "),
    }
}

/// What makes two batches' `dbt ls` the same: their selection, what can change
/// what it picks (environment, target, the vars project config reads) — not the
/// vars only their nodes' SQL reads, which is every window of a backfill.
fn list_identity(b: &Batch, ctx: &Context, project: &Reads) -> String {
    let vars: serde_json::Map<String, serde_json::Value> = b
        .vars
        .iter()
        .filter(|(k, _)| project.reads_var(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::json!({
        "select": b.select,
        "exclude": b.own.exclude,
        "selector": b.own.selector,
        "env": ctx.env,
        "target": ctx.target,
        "vars": vars,
    })
    .to_string()
}

/// dbt's graph, and what each batch selects in it (only the resource types
/// its command runs): one `dbt ls` per distinct selection identity, in parallel.
async fn load(
    settings: &RunSettings,
    plan: &[Batch],
    contexts: &[Context],
    project: &Reads,
    work: &Path,
) -> color_eyre::Result<(Graph, Vec<BTreeSet<String>>, Vec<Seed>)> {
    let mut firsts: BTreeMap<String, usize> = BTreeMap::new();
    let identity: Vec<String> = plan
        .iter()
        .zip(contexts)
        .map(|(b, c)| list_identity(b, c, project))
        .collect();
    for (i, id) in identity.iter().enumerate() {
        firsts.entry(id.clone()).or_insert(i);
    }
    let mut jobs: Vec<(usize, Invocation, PathBuf)> = firsts
        .values()
        .map(|&i| {
            let dir = work.join(format!("ls-{}", jobs_dir_name(i)));
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
    jobs.sort_by_key(|j| j.0);
    let manifests: Vec<PathBuf> = jobs
        .iter()
        .map(|j| j.2.join("target").join("manifest.json"))
        .collect();
    let seeds: Vec<Seed> = jobs
        .iter()
        .map(|j| {
            (
                j.2.join("target").join("partial_parse.msgpack"),
                plan[j.0].vars.clone(),
            )
        })
        .collect();
    if jobs.is_empty() {
        return Ok((Graph::default(), Vec::new(), Vec::new()));
    }
    let listed: Vec<(usize, Result<BTreeSet<String>, String>)> = futures::stream::iter(
        jobs.into_iter()
            .map(|(i, inv, _)| async move { (i, list(&inv).await) }),
    )
    .buffer_unordered(settings.workers.max(1))
    .collect()
    .await;
    let mut by_identity: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (i, result) in listed {
        let ids = result.map_err(|e| {
            // "your profiles.yml": which one, of the places dbt looks.
            let file = warehouse::profiles_file(settings)
                .filter(|_| e.contains("profiles.yml"))
                .map_or_else(String::new, |f| format!(" ({})", f.display()));
            usage!(
                "cannot resolve the plan: dbt ls of {} failed: {e}{file}",
                what(settings, &plan[i])
            )
        })?;
        by_identity.insert(&identity[i], ids);
    }
    let all: BTreeSet<&String> = by_identity.values().flatten().collect();
    // The first manifest has every node unless an environment or a var enables
    // others; then the next ones fill in what it lacks.
    let mut graph = Graph::default();
    for m in &manifests {
        let bytes = std::fs::read(m).map_err(|e| {
            usage!(
                "cannot resolve the plan: dbt ls wrote no {} ({e})",
                m.display()
            )
        })?;
        let g = Graph::from_manifest(&bytes).map_err(|e| usage!("cannot resolve the plan: {e}"))?;
        for (id, n) in g.nodes {
            graph.nodes.entry(id).or_insert(n);
        }
        for (id, n) in g.macros {
            graph.macros.entry(id).or_insert(n);
        }
        if all.iter().all(|id| graph.nodes.contains_key(*id)) {
            break;
        }
    }
    let selected = plan
        .iter()
        .zip(contexts)
        .enumerate()
        .map(|(i, (_, ctx))| {
            by_identity
                .get(identity[i].as_str())
                .into_iter()
                .flatten()
                .filter(|id| {
                    graph
                        .nodes
                        .get(*id)
                        .is_some_and(|n| runs(&ctx.command, &n.resource_type))
                })
                .cloned()
                .collect()
        })
        .collect();
    let parses = seeds
        .into_iter()
        .filter(|(file, _)| file.is_file())
        .collect();
    Ok((graph, selected, parses))
}

/// A partial parse file and the vars it was made with.
type Seed = (PathBuf, serde_json::Map<String, serde_json::Value>);

fn jobs_dir_name(i: usize) -> String {
    format!("{:04}", i + 1)
}

/// The summary of a resolved plan.
fn report_of(out: &shared::SharedPlan, groups: &Groups, planned: usize) -> PlanReport {
    let mut by_group: Vec<(String, GroupReport)> = Vec::new();
    for (b, ctx) in out.batches.iter().zip(&out.contexts) {
        match by_group.iter_mut().find(|(k, _)| *k == ctx.group) {
            Some((_, g)) => g.batches.push(b.id.clone()),
            None => by_group.push((
                ctx.group.clone(),
                GroupReport {
                    label: groups.label(&ctx.group).to_string(),
                    batches: vec![b.id.clone()],
                    one_writer: groups.one_writer.contains(&ctx.group),
                },
            )),
        }
    }
    let shared_any = by_group.iter().any(|(_, g)| g.batches.len() > 1);
    let (warehouse, reason) = if planned < 2 {
        (
            Warehouse::SingleBatch,
            "one batch: nothing to order".to_string(),
        )
    } else if !shared_any {
        (
            Warehouse::Separate,
            "every batch writes to a warehouse of its own: none waits on another".to_string(),
        )
    } else if by_group.len() == 1 {
        (
            Warehouse::Shared,
            format!(
                "one shared warehouse ({}): batches are ordered so that none breaks another",
                by_group[0].1.label
            ),
        )
    } else {
        (
            Warehouse::Shared,
            format!(
                "{} warehouses: batches that share one are ordered so that none breaks another; \
                 batches of different ones never wait on each other",
                by_group.len()
            ),
        )
    };
    PlanReport {
        warehouse,
        reason,
        resolved_in_s: None,
        decisions: out.decisions.clone(),
        groups: by_group.into_iter().map(|(_, g)| g).collect(),
        built_by: out.built_by.clone(),
        builds: out
            .batches
            .iter()
            .zip(&out.builds)
            .map(|(b, ids)| (b.id.clone(), ids.iter().cloned().collect()))
            .collect(),
        env_read: None,
        parses: Vec::new(),
    }
}

/// Every environment variable the project (its nodes, its config, its
/// profile) reads, or `None` when one is named by an expression.
fn env_read(
    reads: &BTreeMap<String, Reads>,
    project: &Reads,
    profile: Option<&warehouse::ProfileTarget>,
) -> Option<Vec<String>> {
    let mut all = project.clone();
    for r in reads.values() {
        all.extend(r);
    }
    for v in profile.iter().flat_map(|p| p.fields.values()) {
        all.extend(&inputs::scan(v));
    }
    (!all.any_env).then(|| all.env.into_iter().collect())
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
        // dbt's message, not its last line (`- dev` after a list of targets).
        return Err(
            crate::dbt::failure::error_message(&text).unwrap_or_else(|| {
                text.lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or("failed")
                    .to_string()
            }),
        );
    }
    Ok(argv::parse_node_list(&stdout))
}
