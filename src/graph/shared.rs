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

impl Work<'_> {
    fn decide(
        &mut self,
        kind: DecisionKind,
        text: String,
        batches: Vec<String>,
        nodes: Vec<String>,
    ) {
        self.decisions.push(Decision {
            kind,
            text,
            batches,
            nodes,
        });
    }

    /// Rule 4: within a window (or among batches of no window), a node runs in
    /// the first batch that selects it.
    fn deduplicate(&mut self) {
        let mut claimed: BTreeMap<(Group, String), usize> = BTreeMap::new();
        let mut dropped: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        for b in 0..self.batches.len() {
            let group = self.batches[b].window;
            for id in self.keep[b].clone() {
                match claimed.get(&(group, id.clone())) {
                    Some(&first) => {
                        self.keep[b].remove(&id);
                        dropped.entry((first, b)).or_default().insert(id);
                    }
                    None => {
                        claimed.insert((group, id), b);
                    }
                }
            }
        }
        for ((first, b), ids) in dropped {
            let (a, z) = (self.batches[first].id.clone(), self.batches[b].id.clone());
            self.decide(
                DecisionKind::Deduplicated,
                format!("{} run in {a} only, not again in {z}", names(&ids)),
                vec![a, z],
                ids.into_iter().collect(),
            );
        }
    }

    fn free_id(&self, want: &str) -> String {
        let taken: BTreeSet<&str> = self.batches.iter().map(|b| b.id.as_str()).collect();
        let mut id = want.to_string();
        let mut n = 2;
        while taken.contains(id.as_str()) {
            id = format!("{want}-{n}");
            n += 1;
        }
        id
    }

    /// Rule 1: the run-once batches, first and last in the plan.
    fn add_shared(&mut self, before: &BTreeSet<String>, after: &BTreeSet<String>) {
        // The run-once nodes do not depend on the window; they still get the
        // first window's vars, as dbt ls resolved them.
        let vars = self
            .batches
            .first()
            .map(|b| b.vars.clone())
            .unwrap_or_default();
        let once = |id: String, label: &str, nodes: &BTreeSet<String>, g: &Graph| Batch {
            id,
            label: label.to_string(),
            select: Some(
                nodes
                    .iter()
                    .filter_map(|n| g.nodes.get(n).map(Node::selector))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            // Exactly the nodes listed: no test pulled in by a listed parent.
            indirect_selection: Some("empty".into()),
            vars: vars.clone(),
            ..Batch::default()
        };
        if !after.is_empty() {
            let id = self.free_id(SHARED_AFTER);
            let users: Vec<String> = (0..self.batches.len())
                .filter(|&b| !self.selected[b].is_disjoint(after))
                .map(|b| self.batches[b].id.clone())
                .collect();
            let mut batch = once(id.clone(), "shared, after the windows", after, self.graph);
            batch.after.clone_from(&users);
            self.decide(
                DecisionKind::RunAfter,
                format!(
                    "{} read what the windows build: built once in {id}, after the windows",
                    names(after)
                ),
                std::iter::once(id).chain(users).collect(),
                after.iter().cloned().collect(),
            );
            self.once.insert(batch.id.clone());
            self.batches.push(batch);
            self.selected.push(after.clone());
            self.keep.push(after.clone());
        }
        if !before.is_empty() {
            let id = self.free_id(SHARED);
            let users: Vec<String> = (0..self.batches.len())
                .filter(|&b| !self.selected[b].is_disjoint(before))
                .map(|b| self.batches[b].id.clone())
                .collect();
            self.decide(
                DecisionKind::RunOnce,
                format!(
                    "{} do not depend on the window: built once in {id}, before the windows, which leave them out",
                    names(before)
                ),
                std::iter::once(id.clone()).chain(users).collect(),
                before.iter().cloned().collect(),
            );
            self.once.insert(id.clone());
            self.batches.insert(
                0,
                once(id, "shared, before the windows", before, self.graph),
            );
            self.selected.insert(0, before.clone());
            self.keep.insert(0, before.clone());
        }
    }

    /// The batch that writes each relation: (relation → batches).
    fn writers(&self) -> BTreeMap<&str, Vec<usize>> {
        let mut w: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (b, keep) in self.keep.iter().enumerate() {
            for id in keep {
                if let Some(rel) = self.graph.nodes.get(id).and_then(Node::writes) {
                    w.entry(rel).or_default().push(b);
                }
            }
        }
        w
    }

    /// Edges within a window group from reads and writes: `after[b]` holds the
    /// batches `b` reads from, with the relations that make it so.
    fn read_edges(&self) -> BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>> {
        let writers = self.writers();
        let mut edges: BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>> = BTreeMap::new();
        for (b, keep) in self.keep.iter().enumerate() {
            for id in keep {
                let Some(n) = self.graph.nodes.get(id) else {
                    continue;
                };
                for p in read_nodes(self.graph, n) {
                    let Some(rel) = self.graph.nodes.get(p).and_then(Node::writes) else {
                        continue;
                    };
                    for &a in writers.get(rel).into_iter().flatten() {
                        if a != b && self.related(a, b) {
                            edges
                                .entry(b)
                                .or_default()
                                .entry(a)
                                .or_default()
                                .insert(short(p).to_string());
                        }
                    }
                }
            }
        }
        edges
    }

    /// Whether an edge between two batches can exist: the run-once batches are
    /// related to every batch; other batches only within their window.
    fn related(&self, a: usize, b: usize) -> bool {
        let once = |i: usize| self.once.contains(&self.batches[i].id);
        once(a) || once(b) || self.batches[a].window == self.batches[b].window
    }

    /// Rule 4: batches that would wait on each other run as one.
    fn merge_cycles(&mut self) {
        loop {
            let edges = self.read_edges();
            let Some(cycle) = find_cycle(self.batches.len(), &edges) else {
                return;
            };
            let first = cycle[0];
            let ids: Vec<String> = cycle.iter().map(|&b| self.batches[b].id.clone()).collect();
            for &b in &cycle[1..] {
                let (sel, keep) = (self.selected[b].clone(), self.keep[b].clone());
                self.selected[first].extend(sel);
                self.keep[first].extend(keep);
                let other = self.batches[b].clone();
                let m = &mut self.batches[first];
                m.select = match (m.select.take(), other.select) {
                    (Some(a), Some(b)) => Some(format!("{a} {b}")),
                    (a, b) => a.or(b),
                };
                m.label = format!("{} + {}", m.label, other.label);
            }
            self.decide(
                DecisionKind::Merged,
                format!(
                    "{} read each other's relations: they run as one batch, {}",
                    ids.join(", "),
                    ids[0]
                ),
                ids.clone(),
                Vec::new(),
            );
            let mut gone: Vec<usize> = cycle[1..].to_vec();
            gone.sort_unstable();
            for b in gone.into_iter().rev() {
                self.batches.remove(b);
                self.selected.remove(b);
                self.keep.remove(b);
            }
            // Whoever waited on a merged batch now waits on the merged one.
            for batch in &mut self.batches {
                for a in &mut batch.after {
                    if ids[1..].contains(a) {
                        a.clone_from(&ids[0]);
                    }
                }
                batch.after.dedup();
            }
        }
    }

    /// A batch left with nothing to run (everything moved to a run-once batch,
    /// or run by an earlier batch) is dropped.
    fn drop_empty(&mut self) {
        let empty: Vec<usize> = (0..self.batches.len())
            .filter(|&b| self.keep[b].is_empty() && !self.selected[b].is_empty())
            .collect();
        if empty.is_empty() {
            return;
        }
        let ids: Vec<String> = empty.iter().map(|&b| self.batches[b].id.clone()).collect();
        self.decide(
            DecisionKind::Dropped,
            format!(
                "{} left nothing to run (other batches build all it selects): not run",
                ids.join(", ")
            ),
            ids.clone(),
            Vec::new(),
        );
        for b in empty.into_iter().rev() {
            self.batches.remove(b);
            self.selected.remove(b);
            self.keep.remove(b);
        }
        for batch in &mut self.batches {
            batch.after.retain(|a| !ids.contains(a));
        }
    }

    /// Edges: reads within a window group, the run-once batches, and rule 2.
    fn order(&mut self) {
        let mut after: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.batches.len()];
        for (b, from) in self.read_edges() {
            for (a, rels) in from {
                after[b].insert(a);
                let (ai, bi) = (self.batches[a].id.clone(), self.batches[b].id.clone());
                if !self.once.contains(&ai) && !self.once.contains(&bi) {
                    let rels: BTreeSet<String> = rels;
                    self.decide(
                        DecisionKind::Ordered,
                        format!("{bi} runs after {ai}: it reads {}", names(&rels)),
                        vec![bi, ai],
                        Vec::new(),
                    );
                }
            }
        }
        // Rule 2: an incremental relation is created by the earliest window
        // that writes it; the others follow it.
        let mut incremental: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (b, keep) in self.keep.iter().enumerate() {
            for id in keep {
                if let Some(n) = self.graph.nodes.get(id)
                    && n.is_incremental()
                    && let Some(rel) = n.writes()
                {
                    incremental.entry(rel.to_string()).or_default().push(b);
                }
            }
        }
        let mut firsts: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for (rel, mut writers) in incremental {
            if writers.len() < 2 {
                continue;
            }
            writers.sort_by_key(|&b| (self.batches[b].window.map(|w| w.start), b));
            let first = writers[0];
            for &b in &writers[1..] {
                after[b].insert(first);
            }
            firsts.entry(first).or_default().insert(rel);
        }
        for (first, rels) in firsts {
            let id = self.batches[first].id.clone();
            let models: BTreeSet<String> = rels
                .iter()
                .map(|r| {
                    r.rsplit('.')
                        .next()
                        .unwrap_or(r)
                        .trim_matches('"')
                        .to_string()
                })
                .collect();
            self.decide(
                DecisionKind::FirstWindowFirst,
                format!(
                    "{id} runs before the other windows: it creates the incremental {}",
                    names(&models)
                ),
                vec![id],
                Vec::new(),
            );
        }
        for (b, from) in after.into_iter().enumerate() {
            for a in from {
                let id = self.batches[a].id.clone();
                if !self.batches[b].after.contains(&id) {
                    self.batches[b].after.push(id);
                }
            }
        }
    }

    /// Rules 3 and 5: every batch locks what it writes, incremental relations
    /// aside; a non-incremental relation written by several windows is named.
    fn lock(&mut self) {
        let mut shared_writes: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for b in 0..self.batches.len() {
            let mut locks = BTreeSet::new();
            for id in &self.keep[b] {
                let Some(n) = self.graph.nodes.get(id) else {
                    continue;
                };
                if let Some(rel) = n.writes()
                    && !n.is_incremental()
                {
                    locks.insert(rel.to_string());
                    let e = shared_writes
                        .entry(rel.to_string())
                        .or_insert_with(|| (id.clone(), Vec::new()));
                    e.1.push(self.batches[b].id.clone());
                }
            }
            self.batches[b].locks = locks.into_iter().collect();
        }
        for (_, (node, batches)) in shared_writes {
            if batches.len() < 2 {
                continue;
            }
            let model = short(&node).to_string();
            self.decide(
                DecisionKind::Serialized,
                format!(
                    "{model} depends on the window but is not incremental, so every window rewrites it: \
                     those {} windows run one at a time. To run them in parallel, make {model} \
                     incremental or ephemeral, or give it an alias per window",
                    batches.len()
                ),
                batches,
                vec![node],
            );
        }
    }

    /// Each batch leaves out what its selection picks but other batches run.
    fn finish_exclusions(&mut self) {
        for b in 0..self.batches.len() {
            if self.once.contains(&self.batches[b].id) {
                continue; // it lists exactly what it runs
            }
            let mut out: Vec<String> = self.selected[b]
                .difference(&self.keep[b])
                .filter_map(|id| self.graph.nodes.get(id).map(Node::selector))
                .collect();
            out.sort();
            self.batches[b].exclude = out;
        }
    }
}

/// One cycle among batches, as indices in first-seen order, if there is one.
fn find_cycle(
    n: usize,
    edges: &BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>>,
) -> Option<Vec<usize>> {
    // Depth-first search; the grey path from the repeated node is the cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    fn dfs(
        v: usize,
        edges: &BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>>,
        mark: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[v] = Mark::Grey;
        path.push(v);
        for &w in edges.get(&v).map(|m| m.keys()).into_iter().flatten() {
            match mark[w] {
                Mark::Grey => {
                    let start = path.iter().position(|&x| x == w).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.sort_unstable();
                    return Some(cycle);
                }
                Mark::White => {
                    if let Some(c) = dfs(w, edges, mark, path) {
                        return Some(c);
                    }
                }
                Mark::Black => {}
            }
        }
        path.pop();
        mark[v] = Mark::Black;
        None
    }
    let mut mark = vec![Mark::White; n];
    for v in 0..n {
        if mark[v] == Mark::White
            && let Some(c) = dfs(v, edges, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests;
