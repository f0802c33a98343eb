//! The shared-warehouse rules on small graphs shaped like the projects that broke.

use super::*;
use crate::plan::parse_backfill;

struct G(Graph);

impl G {
    fn new() -> Self {
        G(Graph::default())
    }

    fn add(&mut self, kind: &str, name: &str, materialized: &str, parents: &[&str]) -> &mut Self {
        let id = format!("{kind}.p.{name}");
        let writes = kind != "test" && materialized != "ephemeral";
        self.0.nodes.insert(
            id.clone(),
            Node {
                unique_id: id,
                resource_type: kind.into(),
                fqn: vec!["p".into(), name.into()],
                relation_name: writes.then(|| format!("\"db\".\"s\".\"{name}\"")),
                materialized: Some(materialized.into()),
                parents: parents
                    .iter()
                    .map(|p| {
                        if p.contains('.') {
                            (*p).to_string()
                        } else {
                            format!("model.p.{p}")
                        }
                    })
                    .collect(),
                ..Node::default()
            },
        );
        self
    }
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| {
            if n.contains('.') {
                (*n).to_string()
            } else {
                format!("model.p.{n}")
            }
        })
        .collect()
}

fn windows(n: usize, select: &str) -> Vec<Batch> {
    let range = parse_backfill(&format!("2024-03-01..2024-03-{:02}", n + 1)).unwrap();
    crate::plan::windows(range, crate::plan::Step::Days(1))
        .into_iter()
        .map(|w| Batch {
            id: w.start.to_string(),
            label: w.start.to_string(),
            select: Some(select.into()),
            window: Some(w),
            vars: serde_json::from_value(serde_json::json!({
                "start_date": w.start.to_string(),
                "end_date": w.end.to_string(),
            }))
            .unwrap(),
            ..Batch::default()
        })
        .collect()
}

fn selectors(sels: &[&str]) -> Vec<Batch> {
    sels.iter()
        .map(|s| Batch {
            id: crate::plan::slug(s),
            label: (*s).into(),
            select: Some((*s).into()),
            ..Batch::default()
        })
        .collect()
}

/// Resolves `plan` on one warehouse where the nodes in `wd` read the window's
/// start var and no other node reads anything, and checks the invariant.
fn run(
    g: &Graph,
    plan: &[Batch],
    selected: Vec<BTreeSet<String>>,
    wd: &BTreeSet<String>,
) -> SharedPlan {
    let reads: BTreeMap<String, Reads> = g
        .nodes
        .keys()
        .map(|id| {
            let r = if wd.contains(id) {
                super::super::inputs::scan("{{ var('start_date') }}")
            } else {
                Reads::default()
            };
            (id.clone(), r)
        })
        .collect();
    let sel = Selections {
        graph: g,
        selected,
        contexts: plan.iter().map(|b| context("wh", &b.vars)).collect(),
        reads: &reads,
        threads: 4,
        budget: 8,
        taken: BTreeSet::new(),
    };
    let groups = Groups::default();
    let out = resolve(plan, &sel, &groups).expect("resolves");
    verify(&sel, &groups, &out).expect("the invariant holds");
    out
}

fn context(group: &str, vars: &serde_json::Map<String, serde_json::Value>) -> Context {
    Context {
        group: group.into(),
        command: "build".into(),
        target: None,
        args: Vec::new(),
        vars: vars.clone(),
        env: BTreeMap::new(),
        cache: super::super::inputs::KeyCache::default(),
    }
}

fn by_id<'a>(p: &'a SharedPlan, id: &str) -> &'a Batch {
    p.batches
        .iter()
        .find(|b| b.id == id)
        .unwrap_or_else(|| panic!("no batch {id} in {:?}", p.batches))
}

fn kinds(p: &SharedPlan) -> Vec<DecisionKind> {
    p.decisions.iter().map(|d| d.kind).collect()
}

/// The first reproduction: a table, a view on it and an incremental model, six
/// windows on one Postgres. Every window rebuilt the table and the view at once.
#[test]
fn table_and_view_run_once_and_the_first_window_creates_the_incremental() {
    let mut g = G::new();
    g.add("model", "a", "table", &[])
        .add("model", "b", "view", &["a"])
        .add("model", "daily", "incremental", &["b"])
        .add("test", "not_null_a", "test", &["a"])
        .add("test", "not_null_daily", "test", &["daily"]);
    let wd = ids(&["daily"]);
    let plan = windows(6, "tag:core");
    let sel = ids(&[
        "a",
        "b",
        "daily",
        "test.p.not_null_a",
        "test.p.not_null_daily",
    ]);
    let out = run(&g.0, &plan, vec![sel; 6], &wd);
    assert_eq!(out.batches.len(), 7);
    let shared = &out.batches[0];
    assert_eq!(shared.id, SHARED);
    assert_eq!(
        shared.select.as_deref(),
        Some("fqn:p.[a] fqn:p.[b] fqn:p.not_null_[a]")
    );
    assert_eq!(shared.indirect_selection.as_deref(), Some("empty"));
    assert_eq!(shared.locks, ["\"db\".\"s\".\"a\"", "\"db\".\"s\".\"b\""]);
    let first = by_id(&out, "2024-03-01");
    assert_eq!(first.after, [SHARED]);
    assert_eq!(
        first.exclude,
        ["fqn:p.[a]", "fqn:p.[b]", "fqn:p.not_null_[a]"]
    );
    assert!(
        first.locks.is_empty(),
        "an incremental relation takes no lock"
    );
    for day in 2..=6 {
        let b = by_id(&out, &format!("2024-03-{day:02}"));
        let mut after = b.after.clone();
        after.sort();
        assert_eq!(after, ["2024-03-01", SHARED], "{}", b.id);
    }
    assert_eq!(
        kinds(&out),
        [DecisionKind::RunOnce, DecisionKind::FirstWindowFirst]
    );
    assert!(out.decisions[1].text.contains("daily"));
}

/// The second reproduction: three selectors on a jaffle-shop shape; `customers`
/// is in all three and reads all three staging models.
#[test]
fn overlapping_selectors_run_each_node_once_after_what_it_reads() {
    let mut g = G::new();
    g.add("model", "stg_customers", "view", &[])
        .add("model", "stg_orders", "view", &[])
        .add("model", "stg_payments", "view", &[])
        .add(
            "model",
            "customers",
            "table",
            &["stg_customers", "stg_orders", "stg_payments"],
        )
        .add("model", "orders", "table", &["stg_orders", "stg_payments"]);
    let plan = selectors(&["stg_customers+", "stg_orders+", "stg_payments+"]);
    let out = run(
        &g.0,
        &plan,
        vec![
            ids(&["stg_customers", "customers"]),
            ids(&["stg_orders", "customers", "orders"]),
            ids(&["stg_payments", "customers", "orders"]),
        ],
        &BTreeSet::new(),
    );
    assert_eq!(out.batches.len(), 3, "no run-once batch without windows");
    let [c, o, p] = [
        by_id(&out, "stg_customers"),
        by_id(&out, "stg_orders"),
        by_id(&out, "stg_payments"),
    ];
    assert!(c.exclude.is_empty());
    assert_eq!(o.exclude, ["fqn:p.customer[s]"]);
    assert_eq!(p.exclude, ["fqn:p.customer[s]", "fqn:p.order[s]"]);
    let mut c_after = c.after.clone();
    c_after.sort();
    assert_eq!(c_after, ["stg_orders", "stg_payments"]);
    assert_eq!(o.after, ["stg_payments"]);
    assert!(p.after.is_empty());
    assert!(kinds(&out).contains(&DecisionKind::Deduplicated));
    assert!(kinds(&out).contains(&DecisionKind::Ordered));
}

#[test]
fn a_window_dependent_table_makes_its_windows_take_turns() {
    let mut g = G::new();
    g.add("model", "window_snapshot", "table", &[]);
    let wd = ids(&["window_snapshot"]);
    let out = run(
        &g.0,
        &windows(3, "window_snapshot"),
        vec![ids(&["window_snapshot"]); 3],
        &wd,
    );
    assert_eq!(out.batches.len(), 3);
    for b in &out.batches {
        assert_eq!(b.locks, ["\"db\".\"s\".\"window_snapshot\""]);
        assert!(b.after.is_empty(), "a lock, not an order");
    }
    let d = out
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::Serialized)
        .unwrap();
    assert!(d.text.contains("window_snapshot") && d.text.contains("incremental or ephemeral"));
}

#[test]
fn a_table_over_the_windows_runs_once_after_them() {
    let mut g = G::new();
    g.add("model", "daily", "incremental", &[])
        .add("model", "summary", "table", &["daily"])
        .add("test", "not_null_summary", "test", &["summary"]);
    let wd = ids(&["daily"]);
    let sel = ids(&["daily", "summary", "test.p.not_null_summary"]);
    let out = run(&g.0, &windows(3, "daily+"), vec![sel; 3], &wd);
    let after = by_id(&out, SHARED_AFTER);
    assert_eq!(
        after.select.as_deref(),
        Some("fqn:p.summar[y] fqn:p.not_null_summar[y]")
    );
    let mut waits = after.after.clone();
    waits.sort();
    assert_eq!(waits, ["2024-03-01", "2024-03-02", "2024-03-03"]);
    assert!(
        by_id(&out, "2024-03-02")
            .exclude
            .contains(&"fqn:p.summar[y]".to_string())
    );
    assert!(kinds(&out).contains(&DecisionKind::RunAfter));
}

#[test]
fn a_table_the_windows_read_stays_in_them_and_they_take_turns() {
    let mut g = G::new();
    g.add("model", "daily", "incremental", &[])
        .add("model", "rollup", "table", &["daily"])
        .add("model", "daily2", "incremental", &["rollup"]);
    let wd = ids(&["daily", "daily2"]);
    let out = run(
        &g.0,
        &windows(2, "daily+"),
        vec![ids(&["daily", "rollup", "daily2"]); 2],
        &wd,
    );
    assert_eq!(out.batches.len(), 2, "nothing can run once here");
    assert_eq!(out.batches[1].locks, ["\"db\".\"s\".\"rollup\""]);
    assert!(kinds(&out).contains(&DecisionKind::Serialized));
}

#[test]
fn batches_that_read_each_other_are_merged() {
    // z → y → x in dbt's graph; A builds x and z, B builds y.
    let mut g = G::new();
    g.add("model", "z", "table", &[])
        .add("model", "y", "table", &["z"])
        .add("model", "x", "table", &["y"]);
    let out = run(
        &g.0,
        &selectors(&["x z", "y"]),
        vec![ids(&["x", "z"]), ids(&["y"])],
        &BTreeSet::new(),
    );
    assert_eq!(out.batches.len(), 1);
    assert_eq!(out.batches[0].select.as_deref(), Some("x z y"));
    assert!(out.batches[0].after.is_empty());
    assert_eq!(kinds(&out), [DecisionKind::Merged]);
}

#[test]
fn windows_with_nothing_left_are_merged_into_the_batch_that_builds_it() {
    let mut g = G::new();
    g.add("model", "a", "table", &[]);
    let out = run(
        &g.0,
        &windows(3, "a"),
        vec![ids(&["a"]); 3],
        &BTreeSet::new(),
    );
    assert_eq!(out.batches.len(), 1);
    assert_eq!(out.batches[0].id, SHARED);
    assert_eq!(
        kinds(&out),
        [
            DecisionKind::RunOnce,
            DecisionKind::MergedInto,
            DecisionKind::MergedInto,
            DecisionKind::MergedInto
        ]
    );
}
