//! Rules 1, 2, 3 and 5: the run-once batches, the batches merged into others, the order of windows that write
//! one relation, the locks, and what each batch leaves out; and the decisions
//! that say so.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl Work<'_> {
    pub(super) fn decide(
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

    /// Takes batches out of the plan (and of every per-batch list).
    pub(super) fn remove_batches(&mut self, gone: &[usize]) {
        let mut gone = gone.to_vec();
        gone.sort_unstable();
        gone.dedup();
        for b in gone.into_iter().rev() {
            self.batches.remove(b);
            self.ctx.remove(b);
            self.selected.remove(b);
            self.keep.remove(b);
            self.adds.remove(b);
        }
    }

    pub(super) fn free_id(&self, want: &str) -> String {
        let taken: BTreeSet<&str> = self
            .batches
            .iter()
            .map(|b| b.id.as_str())
            .chain(self.taken.iter().map(String::as_str))
            .collect();
        let mut id = want.to_string();
        let mut n = 2;
        while taken.contains(id.as_str()) {
            id = format!("{want}-{n}");
            n += 1;
        }
        id
    }

    /// Rule 1: the run-once batches, first and last in the plan. Each takes the
    /// context of the first batch that selects its nodes (every batch that
    /// selects them builds them alike, so any would do); nodes whose first
    /// batches differ in context go to run-once batches of their own.
    pub(super) fn add_shared(&mut self, before: &BTreeSet<String>, after: &BTreeSet<String>) {
        let by_context = |w: &Work<'_>, nodes: &BTreeSet<String>| {
            let mut out: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
            for n in nodes {
                let Some(first) = (0..w.batches.len()).find(|&b| w.selected[b].contains(n)) else {
                    continue;
                };
                out.entry(w.ctx[first].key())
                    .or_insert_with(|| (first, BTreeSet::new()))
                    .1
                    .insert(n.clone());
            }
            let mut v: Vec<(usize, BTreeSet<String>)> = out.into_values().collect();
            v.sort_by_key(|(b, _)| *b);
            v
        };
        let once =
            |w: &Work<'_>, id: String, label: &str, from: usize, nodes: &BTreeSet<String>| {
                let like = &w.batches[from];
                Batch {
                    id,
                    label: label.to_string(),
                    select: Some(
                        nodes
                            .iter()
                            .filter_map(|n| w.graph.nodes.get(n).map(Node::selector))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    // Exactly the nodes listed: no test pulled in by a listed parent.
                    indirect_selection: Some("empty".into()),
                    window: like.window,
                    vars: like.vars.clone(),
                    own: crate::plan::BatchOptions {
                        exclude: None,
                        selector: None,
                        ..like.own.clone()
                    },
                    ..Batch::default()
                }
            };
        for (from, nodes) in by_context(self, after) {
            let id = self.free_id(SHARED_AFTER);
            let users: Vec<String> = (0..self.batches.len())
                .filter(|&b| !self.selected[b].is_disjoint(&nodes))
                .map(|b| self.batches[b].id.clone())
                .collect();
            let mut batch = once(self, id.clone(), "shared, after the windows", from, &nodes);
            batch.after.clone_from(&users);
            self.decide(
                DecisionKind::RunAfter,
                format!(
                    "{} read what the other batches build: built once in {id}, after them",
                    names(&nodes)
                ),
                std::iter::once(id).chain(users).collect(),
                nodes.iter().cloned().collect(),
            );
            self.once.insert(batch.id.clone());
            let ctx = self.ctx[from].clone();
            self.batches.push(batch);
            self.ctx.push(ctx);
            self.selected.push(nodes.clone());
            self.keep.push(nodes);
            self.adds.push(BTreeSet::new());
        }
        for (at, (from, nodes)) in by_context(self, before).into_iter().enumerate() {
            let from = from + at; // earlier run-once batches went in front of it
            let id = self.free_id(SHARED);
            let users: Vec<String> = (0..self.batches.len())
                .filter(|&b| !self.selected[b].is_disjoint(&nodes))
                .map(|b| self.batches[b].id.clone())
                .collect();
            self.decide(
                DecisionKind::RunOnce,
                format!(
                    "{} are built alike by every batch that selects them: built once in {id}, \
                     before those batches, which leave them out",
                    names(&nodes)
                ),
                std::iter::once(id.clone()).chain(users).collect(),
                nodes.iter().cloned().collect(),
            );
            self.once.insert(id.clone());
            let batch = once(self, id, "shared, before the windows", from, &nodes);
            let ctx = self.ctx[from].clone();
            self.batches.insert(at, batch);
            self.ctx.insert(at, ctx);
            self.selected.insert(at, nodes.clone());
            self.keep.insert(at, nodes);
            self.adds.insert(at, BTreeSet::new());
        }
    }

    /// A batch left with nothing to run (everything it selects is built alike
    /// by others) is merged into those batches: it does not run, and whoever
    /// waited on it waits on them.
    pub(super) fn drop_empty(&mut self) {
        let empty: Vec<usize> = (0..self.batches.len())
            .filter(|&b| self.keep[b].is_empty() && !self.selected[b].is_empty())
            .collect();
        if empty.is_empty() {
            return;
        }
        let builders = self.builders();
        let mut into: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for &b in &empty {
            let mut ids: BTreeSet<String> = BTreeSet::new();
            for n in &self.selected[b] {
                if let Some(&r) = builders.get(&(self.key(b, n), n.clone())) {
                    ids.insert(self.batches[r].id.clone());
                }
            }
            let id = self.batches[b].id.clone();
            let ids: Vec<String> = ids.into_iter().collect();
            self.decide(
                DecisionKind::MergedInto,
                format!(
                    "{id}: everything it selects is built alike by {}: merged into {}",
                    ids.join(", "),
                    if ids.len() == 1 { "it" } else { "them" }
                ),
                std::iter::once(id.clone())
                    .chain(ids.iter().cloned())
                    .collect(),
                Vec::new(),
            );
            into.insert(id, ids);
        }
        self.remove_batches(&empty);
        for batch in &mut self.batches {
            let mut after: Vec<String> = Vec::new();
            for a in std::mem::take(&mut batch.after) {
                match into.get(&a) {
                    Some(ids) => after.extend(ids.iter().cloned()),
                    None => after.push(a),
                }
            }
            after.sort();
            after.dedup();
            let own = batch.id.clone();
            after.retain(|a| *a != own);
            batch.after = after;
        }
    }

    /// Edges: reads within a window group, the run-once batches, and rule 2.
    pub(super) fn order(&mut self) {
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
    pub(super) fn lock(&mut self) {
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
            let windows = batches.iter().all(|id| {
                self.batches
                    .iter()
                    .any(|b| b.id == *id && b.window.is_some())
            });
            let text = if windows {
                format!(
                    "{model} depends on the window but is not incremental, so every window rewrites it: \
                     those {} windows run one at a time. To run them in parallel, make {model} \
                     incremental or ephemeral, or give it an alias per window",
                    batches.len()
                )
            } else {
                format!(
                    "{model} is built differently by {} batches (it reads what differs between them) \
                     but is not incremental, so each rewrites it: those batches run one at a time. \
                     To run them in parallel, make {model} incremental or ephemeral, or give it an \
                     alias per batch",
                    batches.len()
                )
            };
            self.decide(DecisionKind::Serialized, text, batches, vec![node]);
        }
    }

    /// Each batch leaves out what its selection picks but other batches run.
    pub(super) fn finish_exclusions(&mut self) {
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
            // Tests placed here that its own selection does not pick.
            let adds: Vec<String> = self.adds[b]
                .iter()
                .filter_map(|id| self.graph.nodes.get(id).map(Node::selector))
                .collect();
            if let (Some(sel), false) = (self.batches[b].select.as_mut(), adds.is_empty()) {
                sel.push(' ');
                sel.push_str(&adds.join(" "));
            }
        }
    }
}
