//! Rule 4: a (node, inputs) pair selected by several batches runs in the first
//! of them; readers run after the batch that builds what they read for them; a
//! test runs in the batch that builds its last parent; batches of one context
//! that would wait on each other are merged.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// `after[b]`: the batches `b` reads from, with the relations that make it so.
pub(super) type Edges = BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>>;

impl Work<'_> {
    /// Rule 4: a (node, inputs) pair runs in the first batch that selects it.
    pub(super) fn deduplicate(&mut self) {
        let mut claimed: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut dropped: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        for b in 0..self.batches.len() {
            for id in self.keep[b].clone() {
                let key = (self.key(b, &id), id.clone());
                match claimed.get(&key) {
                    Some(&first) => {
                        self.keep[b].remove(&id);
                        dropped.entry((first, b)).or_default().insert(id);
                    }
                    None => {
                        claimed.insert(key, b);
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

    /// Who builds each (inputs, node) pair.
    pub(super) fn builders(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for (b, keep) in self.keep.iter().enumerate() {
            for id in keep {
                out.entry((self.key(b, id), id.clone())).or_insert(b);
            }
        }
        out
    }

    /// The batches that write each relation: (relation → batches).
    pub(super) fn writers(&self) -> BTreeMap<&str, Vec<usize>> {
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

    /// The batches that build what node `id` of batch `b` reads, with the node
    /// read: the builder of the same (inputs, node) pair, else (a node no batch
    /// builds alike for `b`) the run-once batches and those of `b`'s own context
    /// that write the relation.
    fn read_from(
        &self,
        b: usize,
        id: &str,
        builders: &BTreeMap<(String, String), usize>,
        writers: &BTreeMap<&str, Vec<usize>>,
    ) -> Vec<(usize, String)> {
        let Some(n) = self.graph.nodes.get(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in read_nodes(self.graph, n) {
            let Some(rel) = self.graph.nodes.get(p).and_then(Node::writes) else {
                continue;
            };
            if let Some(&a) = builders.get(&(self.key(b, p), p.to_string())) {
                if a != b {
                    out.push((a, p.to_string()));
                }
                continue;
            }
            for &a in writers.get(rel).into_iter().flatten() {
                if a != b && self.related(a, b) {
                    out.push((a, p.to_string()));
                }
            }
        }
        out
    }

    /// Edges from reads and writes. `tests`: whether tests' reads count.
    pub(super) fn read_edges_of(&self, tests: bool) -> Edges {
        let (builders, writers) = (self.builders(), self.writers());
        let mut edges = Edges::new();
        for (b, keep) in self.keep.iter().enumerate() {
            for id in keep {
                if !tests && self.is_test(id) {
                    continue;
                }
                for (a, p) in self.read_from(b, id, &builders, &writers) {
                    edges
                        .entry(b)
                        .or_default()
                        .entry(a)
                        .or_default()
                        .insert(short(&p).to_string());
                }
            }
        }
        edges
    }

    pub(super) fn read_edges(&self) -> Edges {
        self.read_edges_of(true)
    }

    fn is_test(&self, id: &str) -> bool {
        self.graph
            .nodes
            .get(id)
            .is_some_and(|n| n.resource_type == "test" && n.writes().is_none())
    }

    /// Whether a relation-level edge between two batches can exist: the run-once
    /// batches are related to every batch; other batches only within their context.
    pub(super) fn related(&self, a: usize, b: usize) -> bool {
        let once = |i: usize| self.once.contains(&self.batches[i].id);
        once(a) || once(b) || self.ctx[a].key() == self.ctx[b].key()
    }

    /// Rule 4: a test whose parents other batches build runs in the batch that
    /// builds its last parent (after the others), not where it was selected, so
    /// that a test across two selections does not make them wait on each other.
    pub(super) fn place_tests(&mut self) {
        let order = topo_batches(self.batches.len(), &self.read_edges_of(false));
        let rank: BTreeMap<usize, usize> = order.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let mut moves: Vec<(usize, usize, String, Vec<usize>)> = Vec::new();
        let (builders, writers) = (self.builders(), self.writers());
        for b in 0..self.batches.len() {
            for id in &self.keep[b] {
                if !self.is_test(id) {
                    continue;
                }
                let mut from: Vec<usize> = self
                    .read_from(b, id, &builders, &writers)
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect();
                from.sort_unstable();
                from.dedup();
                if from.is_empty() {
                    continue;
                }
                // The latest builder, if it can take the test with the same inputs.
                let Some(&last) = from
                    .iter()
                    .max_by_key(|a| rank.get(a).copied().unwrap_or(0))
                else {
                    continue;
                };
                let reads_own = rank.get(&b) > rank.get(&last);
                if reads_own || self.key(last, id) != self.key(b, id) || !self.runs_tests(last) {
                    continue;
                }
                moves.push((b, last, id.clone(), from));
            }
        }
        // A moved test did not "run in the first batch only": say where it runs.
        let moved: BTreeSet<&str> = moves.iter().map(|m| m.2.as_str()).collect();
        let mut kept = Vec::new();
        for mut d in std::mem::take(&mut self.decisions) {
            if d.kind == DecisionKind::Deduplicated {
                d.nodes.retain(|n| !moved.contains(n.as_str()));
                if d.nodes.is_empty() {
                    continue;
                }
                let ids: BTreeSet<String> = d.nodes.iter().cloned().collect();
                d.text = format!(
                    "{} run in {} only, not again in {}",
                    names(&ids),
                    d.batches[0],
                    d.batches[1]
                );
            }
            kept.push(d);
        }
        self.decisions = kept;
        for (b, to, id, from) in moves {
            self.keep[b].remove(&id);
            self.keep[to].insert(id.clone());
            if !self.selected[to].contains(&id) {
                self.selected[to].insert(id.clone());
                self.adds[to].insert(id.clone());
            }
            let (bi, ti) = (self.batches[b].id.clone(), self.batches[to].id.clone());
            let others: BTreeSet<String> = from
                .iter()
                .filter(|&&a| a != to)
                .map(|&a| self.batches[a].id.clone())
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!(
                    ", after {}",
                    others.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            self.decide(
                DecisionKind::TestPlaced,
                format!(
                    "the test {} reads what {ti} builds: it runs in {ti}{also}, not in {bi}",
                    short(&id)
                ),
                vec![ti, bi],
                vec![id],
            );
        }
    }

    /// Whether batch `b`'s command runs tests.
    fn runs_tests(&self, b: usize) -> bool {
        matches!(self.ctx[b].command.as_str(), "build" | "test")
    }

    /// Rule 4: batches that would wait on each other run as one, with the
    /// threads of all of them. Only batches of one context can be one dbt
    /// invocation; a cycle across contexts cannot be run and is an error.
    pub(super) fn merge_cycles(&mut self) -> Result<(), String> {
        loop {
            let edges = self.read_edges();
            let Some(cycle) = find_cycle(self.batches.len(), &edges) else {
                return Ok(());
            };
            let first = cycle[0];
            let ids: Vec<String> = cycle.iter().map(|&b| self.batches[b].id.clone()).collect();
            if cycle
                .iter()
                .any(|&b| self.ctx[b].key() != self.ctx[first].key())
            {
                return Err(format!(
                    "batches {} read each other's relations but differ in vars, env or arguments,                      so they cannot run as one dbt invocation; split their selections so that                      one builds what the other reads",
                    ids.join(", ")
                ));
            }
            let mut threads = self.batches[first].own.threads.unwrap_or(self.threads);
            for &b in &cycle[1..] {
                let (sel, keep, adds) = (
                    self.selected[b].clone(),
                    self.keep[b].clone(),
                    self.adds[b].clone(),
                );
                self.selected[first].extend(sel);
                self.keep[first].extend(keep);
                self.adds[first].extend(adds);
                let other = self.batches[b].clone();
                threads += other.own.threads.unwrap_or(self.threads);
                let m = &mut self.batches[first];
                m.select = match (m.select.take(), other.select) {
                    (Some(a), Some(b)) => Some(format!("{a} {b}")),
                    // No selection is the whole project: the union is too.
                    _ => None,
                };
                m.label = format!("{} + {}", m.label, other.label);
                for a in other.after {
                    if !m.after.contains(&a) {
                        m.after.push(a);
                    }
                }
            }
            let threads = threads.min(self.budget.max(1));
            self.batches[first].own.threads = Some(threads);
            self.decide(
                DecisionKind::Merged,
                format!(
                    "{} read each other's relations: they run as one batch, {}, with {threads} threads",
                    ids.join(", "),
                    ids[0]
                ),
                ids.clone(),
                Vec::new(),
            );
            self.remove_batches(&cycle[1..]);
            // Whoever waited on a merged batch now waits on the merged one.
            for batch in &mut self.batches {
                for a in &mut batch.after {
                    if ids[1..].contains(a) {
                        a.clone_from(&ids[0]);
                    }
                }
                batch.after.sort();
                batch.after.dedup();
                let own = batch.id.clone();
                batch.after.retain(|a| *a != own);
            }
        }
    }
}

/// The batches in an order where each comes after those it reads from (a
/// cycle's back edges are ignored).
fn topo_batches(n: usize, edges: &Edges) -> Vec<usize> {
    fn visit(v: usize, edges: &Edges, seen: &mut [bool], out: &mut Vec<usize>) {
        if seen[v] {
            return;
        }
        seen[v] = true;
        for &w in edges.get(&v).map(|m| m.keys()).into_iter().flatten() {
            visit(w, edges, seen, out);
        }
        out.push(v);
    }
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for v in 0..n {
        visit(v, edges, &mut seen, &mut out);
    }
    out
}

/// One cycle among batches, as indices in first-seen order, if there is one.
pub(super) fn find_cycle(n: usize, edges: &Edges) -> Option<Vec<usize>> {
    // Depth-first search; the grey path from the repeated node is the cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    fn dfs(
        v: usize,
        edges: &Edges,
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
