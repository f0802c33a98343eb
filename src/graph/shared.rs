//! The rules for one shared warehouse: which batch builds which node, in what
//! order, and which batches may not run at the same time. Pure: a graph, the
//! plan's batches and what each selects in; the new batches and the decisions
//! (for people to read) out.
//!
//! 1. A node that does not depend on the window and is not incremental is built
//!    once, in a batch of its own (`shared`) that runs before the windows; the
//!    windows exclude it. If it reads what the windows build, it is built once
//!    after them (`shared-after`) instead.
//! 2. An incremental model: the first window that writes it runs before the
//!    other windows that write it (it creates the relation); then they run in
//!    parallel.
//! 3. A window-dependent model that is not incremental is written by every
//!    window: those windows run one at a time (a lock on the relation), and the
//!    plan says so.
//! 4. Batches of one window (or of no window) that select the same node: it runs
//!    in the first of them only; a batch that reads a relation another batch of
//!    its window writes runs after it; batches that would wait on each other are
//!    merged into one.
//! 5. Every batch holds a lock on each relation it writes (other than
//!    incremental ones) while it runs, so no two batches write one at once
//!    whatever the rules above missed.
//!
//! This file holds the types and the order of the steps; `same_window` has
//! rule 4's, `placement` the others'.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::manifest::{Graph, Node};
use crate::plan::{Batch, Window};

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
    /// A batch left with nothing to run is dropped.
    Dropped,
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
    /// Nodes whose result depends on the window's vars.
    pub window_dependent: &'a BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedPlan {
    pub batches: Vec<Batch>,
    pub decisions: Vec<Decision>,
}

/// Where a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Before,
    Window,
    After,
}

/// A group of batches that may depend on each other: those of one window (or
/// of no window).
type Group = Option<Window>;

struct Work<'a> {
    graph: &'a Graph,
    batches: Vec<Batch>,
    /// Per batch: what its selection picks, and what it keeps after the rules.
    selected: Vec<BTreeSet<String>>,
    keep: Vec<BTreeSet<String>>,
    /// Ids of the run-once batches, which may relate to any batch.
    once: BTreeSet<String>,
    decisions: Vec<Decision>,
}

/// Applies the rules to `plan`.
pub(crate) fn resolve(plan: &[Batch], sel: &Selections<'_>) -> SharedPlan {
    let windows = plan.iter().any(|b| b.window.is_some());
    let union: BTreeSet<&str> = sel
        .selected
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|id| sel.graph.nodes.contains_key(*id))
        .collect();
    let places = placements(sel.graph, &union, sel.window_dependent, windows);
    let mut w = Work {
        graph: sel.graph,
        batches: plan.to_vec(),
        selected: sel.selected.clone(),
        keep: Vec::new(),
        once: BTreeSet::new(),
        decisions: Vec::new(),
    };
    let in_place = |p: Place| -> BTreeSet<String> {
        places
            .iter()
            .filter(|(_, q)| **q == p)
            .map(|(id, _)| (*id).to_string())
            .collect()
    };
    let (before, after) = (in_place(Place::Before), in_place(Place::After));
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
    w.merge_cycles();
    w.drop_empty();
    w.order();
    w.lock();
    w.finish_exclusions();
    SharedPlan {
        batches: w.batches,
        decisions: w.decisions,
    }
}

/// Where each selected node runs (see the module's rules).
fn placements<'a>(
    g: &'a Graph,
    union: &BTreeSet<&'a str>,
    window_dependent: &BTreeSet<String>,
    windows: bool,
) -> BTreeMap<&'a str, Place> {
    let mut places: BTreeMap<&str, Place> = BTreeMap::new();
    if !windows {
        return union.iter().map(|id| (*id, Place::Window)).collect();
    }
    // Parents before children; a cycle cannot happen in dbt's graph, and an
    // unknown parent is simply not selected.
    for id in topo_order(g, union) {
        let n = &g.nodes[id];
        let place = if n.is_incremental() || window_dependent.contains(id) {
            Place::Window
        } else {
            let upstream = selected_parents(g, n, union)
                .filter_map(|p| places.get(p).copied())
                .max()
                .unwrap_or(Place::Before);
            match (n.writes().is_some(), upstream) {
                (true, Place::Before) => Place::Before,
                (true, _) => Place::After,
                (false, p) => p,
            }
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

fn short(id: &str) -> &str {
    id.rsplit('.').next().unwrap_or(id)
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

mod placement;
mod same_window;

#[cfg(test)]
mod tests;
