//! Rules 1, 2, 3 and 5: the run-once batches, the order of windows that write
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

    pub(super) fn free_id(&self, want: &str) -> String {
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
    pub(super) fn add_shared(&mut self, before: &BTreeSet<String>, after: &BTreeSet<String>) {
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

    /// A batch left with nothing to run (everything moved to a run-once batch,
    /// or run by an earlier batch) is dropped.
    pub(super) fn drop_empty(&mut self) {
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
        }
    }
}
