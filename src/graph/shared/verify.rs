//! The invariant of a resolved plan, checked before anything runs (and by the
//! property tests): every (node, inputs) pair that a batch of the original plan
//! selects is built by exactly one batch of the result, with the same inputs in
//! the same warehouse; the result builds nothing else; a batch runs after the
//! batch that builds what it reads for it; and the batches that share a
//! one-writer warehouse never run at once.

use std::collections::{BTreeMap, BTreeSet};

use super::groups::one_writer_lock;
use super::*;

/// `Err` names the first broken promise.
pub(crate) fn verify(
    sel: &Selections<'_>,
    groups: &Groups,
    out: &SharedPlan,
) -> Result<(), String> {
    // Inputs as the resolution keys them; a rebuilt node's are its whole context
    // (it is built once per context, not once for all).
    let key = |ctx: &Context, id: &str| pair_key(ctx, sel.reads, &out.rebuilt, id);
    let mut wanted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (o, ids) in sel.selected.iter().enumerate() {
        for id in ids {
            wanted
                .entry((key(&sel.contexts[o], id), id.clone()))
                .or_insert(o);
        }
    }
    let mut built: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (r, ids) in out.builds.iter().enumerate() {
        for id in ids {
            built
                .entry((key(&out.contexts[r], id), id.clone()))
                .or_default()
                .push(r);
        }
    }
    let name = |r: usize| out.batches[r].id.as_str();
    for ((k, id), o) in &wanted {
        match built.get(&(k.clone(), id.clone())).map(Vec::as_slice) {
            None | Some([]) => {
                return Err(format!(
                    "{} as batch {} of the plan builds it is built by no batch",
                    short(id),
                    o + 1
                ));
            }
            Some([_]) => {}
            Some(many) => {
                let by: Vec<&str> = many.iter().map(|&r| name(r)).collect();
                return Err(format!(
                    "{} is built twice alike, by {}",
                    short(id),
                    by.join(" and ")
                ));
            }
        }
    }
    if let Some(((_, id), by)) = built.iter().find(|(p, _)| !wanted.contains_key(*p)) {
        return Err(format!(
            "{} is built by {} with inputs no batch of the plan gives it",
            short(id),
            name(by[0])
        ));
    }
    check_order(sel, out, &built)?;
    check_one_writer(groups, out)
}

/// Each batch runs after the batches that build what its nodes read for it.
fn check_order(
    sel: &Selections<'_>,
    out: &SharedPlan,
    built: &BTreeMap<(String, String), Vec<usize>>,
) -> Result<(), String> {
    let index: BTreeMap<&str, usize> = out
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.as_str(), i))
        .collect();
    let ancestors = |r: usize| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![r];
        while let Some(v) = stack.pop() {
            for a in &out.batches[v].after {
                if let Some(&ai) = index.get(a.as_str())
                    && seen.insert(ai)
                {
                    stack.push(ai);
                }
            }
        }
        seen
    };
    for (r, ids) in out.builds.iter().enumerate() {
        let before = ancestors(r);
        for id in ids {
            let Some(n) = sel.graph.nodes.get(id) else {
                continue;
            };
            for p in read_nodes(sel.graph, n) {
                let k = pair_key(&out.contexts[r], sel.reads, &out.rebuilt, p);
                for &a in built.get(&(k, p.to_string())).into_iter().flatten() {
                    if a != r && !before.contains(&a) {
                        return Err(format!(
                            "{} in {} reads {}, which {} builds, but does not run after it",
                            short(id),
                            out.batches[r].id,
                            short(p),
                            out.batches[a].id
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The batches of a one-writer warehouse hold one lock in common.
fn check_one_writer(groups: &Groups, out: &SharedPlan) -> Result<(), String> {
    for g in &groups.one_writer {
        let lock = one_writer_lock(groups.label(g));
        let of: Vec<&Batch> = (0..out.batches.len())
            .filter(|&r| out.contexts[r].group == *g)
            .map(|r| &out.batches[r])
            .collect();
        if of.len() > 1
            && let Some(b) = of.iter().find(|b| !b.locks.contains(&lock))
        {
            return Err(format!(
                "{} writes {} without taking its turn",
                b.id,
                groups.label(g)
            ));
        }
    }
    Ok(())
}
