//! The invariant as a property: for random graphs and random plans (selections,
//! vars, env, windows, warehouses, overlapping selectors), the resolved plan
//! builds every (node, inputs) pair that a batch of the plan selects exactly
//! once, with the same inputs, in the same warehouse; readers run after what
//! they read; the batches that share a DuckDB file take turns.

use proptest::prelude::*;

use super::*;
use crate::graph::inputs::{self, KeyCache};

/// What a generated node reads.
const READS: [&str; 5] = [
    "",
    "{{ var('day') }}",
    "{{ var('region') }}",
    "{{ env_var('REGION') }}",
    "{{ var('day') }} {{ env_var('REGION') }}",
];
const MATERIALIZED: [&str; 4] = ["table", "view", "incremental", "ephemeral"];

#[derive(Debug, Clone)]
struct GenNode {
    materialized: usize,
    reads: usize,
    /// Indices of earlier nodes (taken modulo the index).
    parents: Vec<usize>,
    /// A test on this node, and on a second parent if set.
    test: Option<Option<usize>>,
}

#[derive(Debug, Clone)]
struct GenBatch {
    /// Bit i: node i selected.
    select: u32,
    day: Option<u8>,
    region: Option<u8>,
    env_region: Option<u8>,
    group: u8,
    window: Option<u8>,
}

fn node() -> impl Strategy<Value = GenNode> {
    (
        0..MATERIALIZED.len(),
        0..READS.len(),
        prop::collection::vec(0..8usize, 0..3),
        prop::option::of(prop::option::of(0..8usize)),
    )
        .prop_map(|(materialized, reads, parents, test)| GenNode {
            materialized,
            reads,
            parents,
            test,
        })
}

fn batch() -> impl Strategy<Value = GenBatch> {
    (
        any::<u32>(),
        prop::option::of(0..3u8),
        prop::option::of(0..2u8),
        prop::option::of(0..2u8),
        0..2u8,
        prop::option::of(0..3u8),
    )
        .prop_map(
            |(select, day, region, env_region, group, window)| GenBatch {
                select,
                day,
                region,
                env_region,
                group,
                window,
            },
        )
}

fn graph(nodes: &[GenNode]) -> Graph {
    let mut g = Graph::default();
    for (i, n) in nodes.iter().enumerate() {
        let name = format!("m{i}");
        let materialized = MATERIALIZED[n.materialized];
        let mut parents: Vec<String> = if i == 0 {
            Vec::new()
        } else {
            n.parents
                .iter()
                .map(|p| format!("model.p.m{}", p % i))
                .collect()
        };
        parents.sort();
        parents.dedup();
        g.nodes.insert(
            format!("model.p.{name}"),
            Node {
                unique_id: format!("model.p.{name}"),
                resource_type: "model".into(),
                fqn: vec!["p".into(), name.clone()],
                relation_name: (materialized != "ephemeral")
                    .then(|| format!("\"db\".\"s\".\"{name}\"")),
                materialized: Some(materialized.into()),
                parents,
                raw_code: READS[n.reads].into(),
                ..Node::default()
            },
        );
        if let Some(second) = n.test {
            let mut parents = vec![format!("model.p.{name}")];
            if let Some(s) = second.filter(|_| i > 0) {
                parents.push(format!("model.p.m{}", s % i));
            }
            parents.dedup();
            let t = format!("test.p.t{i}");
            g.nodes.insert(
                t.clone(),
                Node {
                    unique_id: t,
                    resource_type: "test".into(),
                    fqn: vec!["p".into(), format!("t{i}")],
                    materialized: Some("test".into()),
                    parents,
                    ..Node::default()
                },
            );
        }
    }
    g
}

/// What a batch selects, as dbt would: the chosen models that are not
/// ephemeral, and (eager indirect selection) every test with a chosen parent.
fn selection(g: &Graph, mask: u32) -> BTreeSet<String> {
    let chosen: BTreeSet<String> = g
        .nodes
        .values()
        .filter(|n| n.resource_type == "model" && !n.is_ephemeral())
        .filter(|n| {
            let i: u32 = n.fqn[1][1..].parse().unwrap_or(0);
            mask & (1 << i) != 0
        })
        .map(|n| n.unique_id.clone())
        .collect();
    let tests: Vec<String> = g
        .nodes
        .values()
        .filter(|n| n.resource_type == "test" && n.parents.iter().any(|p| chosen.contains(p)))
        .map(|n| n.unique_id.clone())
        .collect();
    chosen.into_iter().chain(tests).collect()
}

fn plan(specs: &[GenBatch]) -> (Vec<Batch>, Vec<Context>) {
    let range = crate::plan::parse_backfill("2024-03-01..2024-03-04").unwrap();
    let days = crate::plan::windows(range, crate::plan::Step::Days(1));
    let mut batches = Vec::new();
    let mut contexts = Vec::new();
    for (i, b) in specs.iter().enumerate() {
        let mut vars = serde_json::Map::new();
        if let Some(d) = b.day {
            vars.insert("day".into(), d.into());
        }
        if let Some(r) = b.region {
            vars.insert("region".into(), r.into());
        }
        let env: BTreeMap<String, String> = b
            .env_region
            .map(|r| ("REGION".to_string(), r.to_string()))
            .into_iter()
            .collect();
        batches.push(Batch {
            id: format!("b{i}"),
            label: format!("b{i}"),
            select: Some(format!("sel{i}")),
            window: b.window.map(|w| days[w as usize]),
            vars: vars.clone(),
            ..Batch::default()
        });
        contexts.push(Context {
            group: format!("wh{}", b.group),
            command: "build".into(),
            target: None,
            args: Vec::new(),
            vars,
            env,
            cache: KeyCache::default(),
        });
    }
    (batches, contexts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_selected_node_and_inputs_pair_is_built_exactly_once(
        nodes in prop::collection::vec(node(), 1..8),
        specs in prop::collection::vec(batch(), 1..6),
        duckdb_first in any::<bool>(),
    ) {
        let g = graph(&nodes);
        let reads = inputs::node_reads(&g, &inputs::Reads::default());
        let (batches, contexts) = plan(&specs);
        let selected: Vec<BTreeSet<String>> =
            specs.iter().map(|b| selection(&g, b.select)).collect();
        let mut groups = Groups::default();
        if duckdb_first {
            groups.one_writer.insert("wh0".into());
            groups.labels.insert("wh0".into(), "the DuckDB file wh0.duckdb".into());
        }
        let sel = Selections {
            graph: &g,
            selected,
            contexts,
            reads: &reads,
            threads: 4,
            budget: 8,
            taken: BTreeSet::new(),
        };
        match resolve(&batches, &sel, &groups) {
            Ok(out) => {
                if let Err(e) = verify(&sel, &groups, &out) {
                    return Err(TestCaseError::fail(format!("{e}\n{:#?}", out.batches)));
                }
                let ids: BTreeSet<&str> = out.batches.iter().map(|b| b.id.as_str()).collect();
                prop_assert_eq!(ids.len(), out.batches.len(), "batch ids are unique");
                for b in &out.batches {
                    for a in &b.after {
                        prop_assert!(ids.contains(a.as_str()), "{} waits on a missing {}", b.id, a);
                    }
                }
            }
            // Only a real cycle across contexts is refused, and it says so.
            Err(e) => prop_assert!(e.contains("read each other's relations"), "{e}"),
        }
    }
}
