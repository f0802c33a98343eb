//! The rules for one shared warehouse: which batch builds which node, in what
//! order, and which batches may not run at the same time. Pure: a graph, the
//! plan's batches, what each selects and what reaches each node's build from
//! each batch (its inputs) in; the new batches and the decisions (for people to
//! read) out.
//!
//! Two batches build a node alike only when they agree on all of its inputs
//! (`inputs::Context::node_key`); every rule below works on (node, inputs)
//! pairs, never on a node alone.
//!
//! 1. A node that several batches of different contexts (vars, env, target,
//!    arguments) build alike is built once, in a batch of its own (`shared`)
//!    that runs before them; they leave it out. If it reads what the batches
//!    build, it is built once after them (`shared-after`) instead.
//! 2. An incremental model whose batches build it differently (a window each):
//!    the first batch that writes it runs before the others (it creates the
//!    relation); then they run in parallel.
//! 3. A model that is not incremental but is built differently by several
//!    batches rewrites one relation: those batches run one at a time (a lock on
//!    the relation), and the plan says so.
//! 4. Otherwise a (node, inputs) pair selected by several batches runs in the
//!    first of them only; a batch that reads a relation another batch builds
//!    for it runs after that batch; a test runs in the batch that builds its last
//!    parent; batches of one context that would wait on each other are merged.
//! 5. Every batch holds a lock on each relation it writes (other than
//!    incremental ones) while it runs, so no two batches write one at once
//!    whatever the rules above missed.
//!
//! This file holds the types and the order of the steps; `claims` has rule 4's,
//! `placement` the others'.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::inputs::{Context, Reads};
use super::manifest::{Graph, Node};
use crate::plan::Batch;

/// The id of the batch that builds the run-once nodes before the windows.
pub(crate) const SHARED: &str = "shared";
/// The id of the batch that builds the run-once nodes that read what windows build.
pub(crate) const SHARED_AFTER: &str = "shared-after";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DecisionKind {
    /// Nodes built once, before the windows.
    RunOnce,
    /// Nodes built once, after the windows.
    RunAfter,
    /// An incremental model's first window runs before the others.
    FirstWindowFirst,
    /// A window-dependent table: its windows run one at a time.
    Serialized,
    /// A node selected by several batches runs in the first only.
    Deduplicated,
    /// A batch runs after another whose relations it reads.
    Ordered,
    /// Batches that would wait on each other run as one.
    Merged,
    /// A test runs in the batch that builds its last parent.
    TestPlaced,
    /// A batch whose every node another batch builds alike runs as part of it.
    MergedInto,
    /// Batches that share one DuckDB file take turns on it.
    OneWriter,
}

/// One thing the plan decided, for the faces and summary.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub kind: DecisionKind,
    pub text: String,
    /// Batch ids it is about.
    pub batches: Vec<String>,
    /// Node unique ids it is about.
    pub nodes: Vec<String>,
}

/// What each batch of a plan would run, as dbt resolved its selection.
pub(crate) struct Selections<'a> {
    pub graph: &'a Graph,
    /// Per batch of the plan, the unique ids of the nodes it selects (only the
    /// resource types its command runs).
    pub selected: Vec<BTreeSet<String>>,
    /// Per batch of the plan, what of it can reach a node's build.
    pub contexts: Vec<Context>,
    /// What each node reads (vars, env vars).
    pub reads: &'a BTreeMap<String, Reads>,
    /// A batch's threads when it sets none, and the most a merged batch gets.
    pub threads: u32,
    pub budget: u32,
    /// Batch ids already in use (by other warehouses' batches): new batches
    /// get other ids.
    pub taken: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedPlan {
    pub batches: Vec<Batch>,
    pub decisions: Vec<Decision>,
    /// Per batch of the result, the nodes it builds.
    pub builds: Vec<BTreeSet<String>>,
    /// Per batch of the result, its context.
    pub contexts: Vec<Context>,
    /// Nodes built alike by several contexts that are still built once per
    /// context, because the batches read them between their own nodes (rule 3).
    /// (group, node id).
    pub rebuilt: BTreeSet<(String, String)>,
    /// Per batch of the plan (by id), the batches of the result that build its
    /// nodes.
    pub built_by: BTreeMap<String, Vec<String>>,
}

/// Where a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Before,
    Window,
    After,
}

struct Work<'a> {
    graph: &'a Graph,
    reads: &'a BTreeMap<String, Reads>,
    batches: Vec<Batch>,
    /// Per batch, its context (what reaches its nodes' builds).
    ctx: Vec<Context>,
    /// Per batch: what its selection picks, and what it keeps after the rules.
    selected: Vec<BTreeSet<String>>,
    keep: Vec<BTreeSet<String>>,
    /// Per batch: tests placed in it that its selection does not pick.
    adds: Vec<BTreeSet<String>>,
    threads: u32,
    budget: u32,
    /// Ids of the run-once batches, which may relate to any batch.
    once: BTreeSet<String>,
    /// Ids used elsewhere in the plan.
    taken: BTreeSet<String>,
    /// See `SharedPlan::rebuilt`.
    rebuilt: BTreeSet<(String, String)>,
    decisions: Vec<Decision>,
}

/// Applies the rules to `plan`, whose batches all write to one warehouse.
pub(crate) fn resolve_group(plan: &[Batch], sel: &Selections<'_>) -> Result<SharedPlan, String> {
    let union: BTreeSet<&str> = sel
        .selected
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|id| sel.graph.nodes.contains_key(*id))
        .collect();
    let mut w = Work {
        graph: sel.graph,
        reads: sel.reads,
        batches: plan.to_vec(),
        ctx: sel.contexts.clone(),
        selected: sel.selected.clone(),
        keep: Vec::new(),
        adds: vec![BTreeSet::new(); plan.len()],
        once: BTreeSet::new(),
        taken: sel.taken.clone(),
        rebuilt: BTreeSet::new(),
        decisions: Vec::new(),
        threads: sel.threads,
        budget: sel.budget,
    };
    let alike = w.built_alike(&union);
    let places = placements(sel.graph, &union, &alike);
    let in_place = |p: Place| -> BTreeSet<String> {
        places
            .iter()
            .filter(|(_, q)| **q == p)
            .map(|(id, _)| (*id).to_string())
            .collect()
    };
    let (before, after) = (in_place(Place::Before), in_place(Place::After));
    let group = sel
        .contexts
        .first()
        .map(|c| c.group.clone())
        .unwrap_or_default();
    w.rebuilt = alike
        .iter()
        .filter(|id| places.get(*id) == Some(&Place::Window))
        .map(|id| (group.clone(), (*id).to_string()))
        .collect();
    w.keep = w
        .selected
        .iter()
        .map(|s| {
            s.iter()
                .filter(|id| !before.contains(*id) && !after.contains(*id))
                .cloned()
                .collect()
        })
        .collect();
    w.deduplicate();
    w.add_shared(&before, &after);
    w.place_tests();
    w.merge_cycles()?;
    w.drop_empty();
    w.order();
    w.lock();
    w.finish_exclusions();
    let built_by = w.built_by(plan, sel);
    Ok(SharedPlan {
        builds: w.keep,
        contexts: w.ctx,
        rebuilt: w.rebuilt,
        batches: w.batches,
        decisions: w.decisions,
        built_by,
    })
}

impl Work<'_> {
    /// The inputs of node `id` in batch `b`.
    fn key(&self, b: usize, id: &str) -> String {
        pair_key(&self.ctx[b], self.reads, &self.rebuilt, id)
    }

    /// The nodes that batches of two or more contexts select and would all
    /// build alike: those can be built once for all of them.
    fn built_alike<'a>(&self, union: &BTreeSet<&'a str>) -> BTreeSet<&'a str> {
        union
            .iter()
            .copied()
            .filter(|id| {
                let by: Vec<usize> = (0..self.batches.len())
                    .filter(|&b| self.selected[b].contains(*id))
                    .collect();
                let keys: BTreeSet<String> = by.iter().map(|&b| self.key(b, id)).collect();
                let contexts: BTreeSet<String> = by.iter().map(|&b| self.ctx[b].key()).collect();
                keys.len() == 1 && contexts.len() > 1
            })
            .collect()
    }

    /// Per batch of the plan, the batches that build its nodes now.
    fn built_by(&self, plan: &[Batch], sel: &Selections<'_>) -> BTreeMap<String, Vec<String>> {
        let builders = self.builders();
        let mut out = BTreeMap::new();
        for (o, batch) in plan.iter().enumerate() {
            let mut ids: BTreeSet<String> = BTreeSet::new();
            for n in &sel.selected[o] {
                let key = pair_key(&sel.contexts[o], self.reads, &self.rebuilt, n);
                if let Some(&r) = builders.get(&(key, n.clone())) {
                    ids.insert(self.batches[r].id.clone());
                }
            }
            out.insert(batch.id.clone(), ids.into_iter().collect());
        }
        out
    }
}

/// The inputs of node `id` built in context `ctx`: what it reads of the
/// context, or (a node in `rebuilt`) the whole context.
pub(crate) fn pair_key(
    ctx: &Context,
    reads: &BTreeMap<String, Reads>,
    rebuilt: &BTreeSet<(String, String)>,
    id: &str,
) -> String {
    if !rebuilt.is_empty() && rebuilt.contains(&(ctx.group.clone(), id.to_string())) {
        ctx.key()
    } else {
        ctx.node_key_of(id, reads).to_string()
    }
}

/// Where each selected node runs (see the module's rules): `alike` are the
/// nodes that can be built once for several contexts.
fn placements<'a>(
    g: &'a Graph,
    union: &BTreeSet<&'a str>,
    alike: &BTreeSet<&'a str>,
) -> BTreeMap<&'a str, Place> {
    let mut places: BTreeMap<&str, Place> = BTreeMap::new();
    // Parents before children; a cycle cannot happen in dbt's graph, and an
    // unknown parent is simply not selected.
    for id in topo_order(g, union) {
        let n = &g.nodes[id];
        let place = if alike.contains(id) {
            let upstream = selected_parents(g, n, union)
                .filter_map(|p| places.get(p).copied())
                .max()
                .unwrap_or(Place::Before);
            match (n.writes().is_some(), upstream) {
                (true, Place::Before) => Place::Before,
                (true, _) => Place::After,
                (false, p) => p,
            }
        } else {
            Place::Window
        };
        places.insert(id, place);
    }
    // A node the windows read cannot wait until after them: it stays in the
    // windows (and rule 3 applies to it), and so do its own parents.
    loop {
        let pulled: Vec<&str> = places
            .iter()
            .filter(|(_, p)| **p == Place::Window)
            .flat_map(|(id, _)| selected_parents(g, &g.nodes[*id], union))
            .filter(|p| places.get(p) == Some(&Place::After))
            .collect();
        if pulled.is_empty() {
            break;
        }
        for p in pulled {
            places.insert(p, Place::Window);
        }
    }
    places
}

/// Parents of `n` among the selected nodes, looking through ephemeral models
/// (inlined, so their own parents are what `n` reads).
fn selected_parents<'a>(
    g: &'a Graph,
    n: &'a Node,
    union: &BTreeSet<&'a str>,
) -> impl Iterator<Item = &'a str> {
    read_nodes(g, n)
        .into_iter()
        .filter(move |p| union.contains(p))
}

/// The nodes whose relations `n` reads: its parents, through ephemeral models.
fn read_nodes<'a>(g: &'a Graph, n: &'a Node) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<&str> = n.parents.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        out.insert(p);
        if let Some(pn) = g.nodes.get(p)
            && pn.is_ephemeral()
        {
            stack.extend(pn.parents.iter().map(String::as_str));
        }
    }
    out
}

fn topo_order<'a>(g: &'a Graph, union: &BTreeSet<&'a str>) -> Vec<&'a str> {
    fn visit<'a>(
        g: &'a Graph,
        id: &'a str,
        union: &BTreeSet<&'a str>,
        seen: &mut BTreeSet<&'a str>,
        out: &mut Vec<&'a str>,
    ) {
        if !seen.insert(id) {
            return;
        }
        if let Some(n) = g.nodes.get(id) {
            for p in selected_parents(g, n, union) {
                visit(g, p, union, seen, out);
            }
        }
        out.push(id);
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for id in union {
        visit(g, id, union, &mut seen, &mut out);
    }
    out
}

/// A node's name for people: the last part of its id, but a test's name, not
/// the hash dbt ends its id with.
pub(crate) fn short(id: &str) -> &str {
    let mut parts = id.rsplit('.');
    let last = parts.next().unwrap_or(id);
    match parts.next() {
        Some(name)
            if id.starts_with("test.")
                && last.len() == 10
                && last.bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            name
        }
        _ => last,
    }
}

fn names(ids: &BTreeSet<String>) -> String {
    let mut v: Vec<&str> = ids.iter().map(|i| short(i)).collect();
    let more = v.len().saturating_sub(8);
    v.truncate(8);
    let mut s = v.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

mod claims;
mod groups;
mod placement;
#[cfg(test)]
mod property;
mod verify;

pub(crate) use groups::{Groups, resolve};
pub(crate) use verify::verify;

#[cfg(test)]
mod tests;
