//! A plan over several warehouses: each warehouse's batches are resolved on
//! their own (never deduplicated or ordered against another warehouse's), relation
//! locks are named per warehouse, and the batches that share one DuckDB file take
//! turns on it.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// What the plan knows of each warehouse, by the group key of `Context::group`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Groups {
    /// For people: "the DuckDB file /w/wh.duckdb".
    pub labels: BTreeMap<String, String>,
    /// The warehouses that admit one writing dbt process at a time.
    pub one_writer: BTreeSet<String>,
}

impl Groups {
    pub fn label<'a>(&'a self, key: &'a str) -> &'a str {
        self.labels.get(key).map_or(key, String::as_str)
    }
}

/// The lock every batch of a one-writer warehouse holds while it runs.
pub(crate) fn one_writer_lock(label: &str) -> String {
    format!("one writer: {label}")
}

/// Applies the rules to every warehouse of `plan` (`sel.contexts[b].group`).
pub(crate) fn resolve(
    plan: &[Batch],
    sel: &Selections<'_>,
    groups: &Groups,
) -> Result<SharedPlan, String> {
    let mut order: Vec<&str> = Vec::new();
    for c in &sel.contexts {
        if !order.contains(&c.group.as_str()) {
            order.push(&c.group);
        }
    }
    let mut taken: BTreeSet<String> = sel.taken.clone();
    taken.extend(plan.iter().map(|b| b.id.clone()));
    let mut out = SharedPlan {
        batches: Vec::new(),
        decisions: Vec::new(),
        builds: Vec::new(),
        contexts: Vec::new(),
        rebuilt: BTreeSet::new(),
        built_by: BTreeMap::new(),
    };
    let many = order.len() > 1;
    for (gi, group) in order.iter().enumerate() {
        let idx: Vec<usize> = (0..plan.len())
            .filter(|&b| sel.contexts[b].group == *group)
            .collect();
        let sub_plan: Vec<Batch> = idx.iter().map(|&b| plan[b].clone()).collect();
        let sub = Selections {
            graph: sel.graph,
            selected: idx.iter().map(|&b| sel.selected[b].clone()).collect(),
            contexts: idx.iter().map(|&b| sel.contexts[b].clone()).collect(),
            reads: sel.reads,
            threads: sel.threads,
            budget: sel.budget,
            taken: taken.clone(),
        };
        let mut r = resolve_group(&sub_plan, &sub)?;
        taken.extend(r.batches.iter().map(|b| b.id.clone()));
        if r.batches.len() < 2 {
            // Alone in its warehouse: no other batch writes what it writes.
            for b in &mut r.batches {
                b.locks.clear();
            }
        } else if many {
            // One relation name in two warehouses is two relations.
            for b in &mut r.batches {
                for l in &mut b.locks {
                    *l = format!("{}:{l}", gi + 1);
                }
            }
        }
        if groups.one_writer.contains(*group) && r.batches.len() > 1 {
            let label = groups.label(group);
            let lock = one_writer_lock(label);
            for b in &mut r.batches {
                b.locks.push(lock.clone());
            }
            r.decisions.push(Decision {
                kind: DecisionKind::OneWriter,
                text: format!(
                    "{} batches write {label}, which admits one writing dbt process at a time: \
                     they take turns on it. To run them in parallel, give each worker a file of \
                     its own with {{worker}} in the path (e.g. --env DUCKDB_PATH=wh-{{worker}}.duckdb)",
                    r.batches.len()
                ),
                batches: r.batches.iter().map(|b| b.id.clone()).collect(),
                nodes: Vec::new(),
            });
        }
        out.batches.extend(r.batches);
        out.decisions.extend(r.decisions);
        out.builds.extend(r.builds);
        out.contexts.extend(r.contexts);
        out.rebuilt.extend(r.rebuilt);
        out.built_by.extend(r.built_by);
    }
    Ok(out)
}
