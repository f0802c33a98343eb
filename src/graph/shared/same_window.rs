//! Rule 4: batches of one window (or of no window) that select the same node
//! or read what another writes: each node runs in the first of them, readers
//! run after writers, and batches that would wait on each other are merged.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl Work<'_> {
    /// Rule 4: within a window (or among batches of no window), a node runs in
    /// the first batch that selects it.
    pub(super) fn deduplicate(&mut self) {
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

    /// The batch that writes each relation: (relation → batches).
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

    /// Edges within a window group from reads and writes: `after[b]` holds the
    /// batches `b` reads from, with the relations that make it so.
    pub(super) fn read_edges(&self) -> BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>> {
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
    pub(super) fn related(&self, a: usize, b: usize) -> bool {
        let once = |i: usize| self.once.contains(&self.batches[i].id);
        once(a) || once(b) || self.batches[a].window == self.batches[b].window
    }

    /// Rule 4: batches that would wait on each other run as one.
    pub(super) fn merge_cycles(&mut self) {
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
}

/// One cycle among batches, as indices in first-seen order, if there is one.
pub(super) fn find_cycle(
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
