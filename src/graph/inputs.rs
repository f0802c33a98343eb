//! What reaches a node's build from a batch, so that two batches share a node
//! only when its build is the same in both.
//!
//! A node reads the vars and env vars its code mentions, those of every macro it
//! calls (followed through the macros' own calls), those of the ephemeral models
//! inlined into it, and those of project-level config; a test also reads what
//! its parents' builds read. A name that is not a
//! literal (`var(name)`) reads every var: when the analysis cannot tell, it
//! assumes dependence.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::manifest::{Graph, Node};

/// The vars and env vars a piece of code reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reads {
    pub vars: BTreeSet<String>,
    pub env: BTreeSet<String>,
    /// A `var(...)` whose name is not a literal: it may read any var.
    pub any_var: bool,
    /// An `env_var(...)` whose name is not a literal.
    pub any_env: bool,
}

impl Reads {
    pub fn extend(&mut self, other: &Reads) {
        self.vars.extend(other.vars.iter().cloned());
        self.env.extend(other.env.iter().cloned());
        self.any_var |= other.any_var;
        self.any_env |= other.any_env;
    }

    /// Whether it reads the var `name`.
    pub fn reads_var(&self, name: &str) -> bool {
        self.any_var || self.vars.contains(name)
    }

    pub fn reads_env(&self, name: &str) -> bool {
        self.any_env || self.env.contains(name)
    }
}

/// The var and env var names `code` reads through `var(...)` and `env_var(...)`.
pub(crate) fn scan(code: &str) -> Reads {
    let mut out = Reads::default();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find("var(").map(|i| i + from) {
        from = i + 4;
        let env = i >= 4 && &code[i - 4..i] == "env_";
        let start = if env { i - 4 } else { i };
        // `var(` itself (or `env_var(`), not the end of another name.
        if start > 0 {
            let c = bytes[start - 1];
            if c.is_ascii_alphanumeric() || c == b'_' {
                continue;
            }
        }
        let args = code[from..].trim_start();
        let literal = args
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .and_then(|q| args[1..].find(q).map(|end| &args[1..=end]));
        match (literal, env) {
            (Some(name), true) => {
                out.env.insert(name.to_string());
            }
            (Some(name), false) => {
                out.vars.insert(name.to_string());
            }
            (None, true) => out.any_env = true,
            (None, false) => out.any_var = true,
        }
    }
    out
}

/// What every node of the graph reads. `project` is what project-level config
/// reads (dbt_project.yml and the project's YAML files), which reaches every node.
pub(crate) fn node_reads(g: &Graph, project: &Reads) -> BTreeMap<String, Reads> {
    // Macros: one reads what its code reads and what the macros it calls read;
    // grown to a fixed point, so calls in cycles are decided right.
    let mut macros: BTreeMap<&str, Reads> = g
        .macros
        .iter()
        .map(|(id, m)| (id.as_str(), scan(&m.sql)))
        .collect();
    loop {
        let mut changed = false;
        for (id, m) in &g.macros {
            let mut r = macros[id.as_str()].clone();
            for c in &m.calls {
                if let Some(cr) = macros.get(c.as_str()) {
                    r.extend(cr);
                }
            }
            if r != macros[id.as_str()] {
                macros.insert(id.as_str(), r);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let own = |n: &Node| {
        let mut r = scan(&n.raw_code);
        r.extend(project);
        for m in &n.macros {
            if let Some(mr) = macros.get(m.as_str()) {
                r.extend(mr);
            }
        }
        r
    };
    let mut out: BTreeMap<String, Reads> = g
        .nodes
        .values()
        .map(|n| (n.unique_id.clone(), own(n)))
        .collect();
    // An ephemeral model is inlined into its children: they read what it reads.
    loop {
        let mut changed = false;
        for n in g.nodes.values() {
            let mut r = out[&n.unique_id].clone();
            for p in &n.parents {
                if g.nodes.get(p).is_some_and(Node::is_ephemeral)
                    && let Some(pr) = out.get(p)
                {
                    r.extend(pr);
                }
            }
            if r != out[&n.unique_id] {
                out.insert(n.unique_id.clone(), r);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // A test checks a relation as its parent's build left it: it reads what
    // that build reads (a window's rows, say).
    for n in g.nodes.values().filter(|n| n.resource_type == "test") {
        let mut r = out[&n.unique_id].clone();
        for p in &n.parents {
            if let Some(pr) = out.get(p) {
                r.extend(&pr.clone());
            }
        }
        out.insert(n.unique_id.clone(), r);
    }
    out
}

/// Everything of a batch that can reach a node's build, apart from what it selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Context {
    /// The warehouse the batch writes to (see `warehouse`).
    pub group: String,
    pub command: String,
    pub target: Option<String>,
    /// Extra dbt arguments (the run's and the batch's own).
    pub args: Vec<String>,
    pub vars: Map<String, Value>,
    /// The environment dbt-herd gives the batch (templates filled).
    pub env: BTreeMap<String, String>,
    /// Node keys computed so far (a plan asks for each many times).
    #[serde(skip)]
    pub cache: KeyCache,
}

/// Memoized keys of one context: by node id (for one map of reads), and its own.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    nodes: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<str>>>,
    whole: std::sync::OnceLock<String>,
}

/// A copy starts empty: what it would hold is computed again when asked.
impl Clone for KeyCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// A cache is not part of what a context is.
impl PartialEq for KeyCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for KeyCache {}

impl Context {
    /// The inputs of a node that reads `reads`, as one comparable string: two
    /// batches build the node alike exactly when their keys are equal.
    pub fn node_key(&self, reads: Option<&Reads>) -> String {
        let all = Reads {
            any_var: true,
            any_env: true,
            ..Reads::default()
        };
        // A node the analysis knows nothing of reads everything.
        let reads = reads.unwrap_or(&all);
        let vars: Map<String, Value> = self
            .vars
            .iter()
            .filter(|(k, _)| reads.reads_var(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .filter(|(k, _)| reads.reads_env(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        digest(
            &serde_json::json!({
                "group": self.group,
                "command": self.command,
                "target": self.target,
                "args": self.args,
                "vars": vars,
                "env": env,
            })
            .to_string(),
        )
    }

    /// `node_key` of the node `id`, remembered: every call for one context
    /// must pass the same map of reads.
    pub fn node_key_of(&self, id: &str, reads: &BTreeMap<String, Reads>) -> std::sync::Arc<str> {
        let nodes = || {
            self.cache
                .nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(k) = nodes().get(id) {
            return k.clone();
        }
        let k: std::sync::Arc<str> = self.node_key(reads.get(id)).into();
        nodes().insert(id.to_string(), k.clone());
        k
    }

    /// The whole context as one string: batches with equal ones build every
    /// node alike.
    pub fn key(&self) -> String {
        self.cache
            .whole
            .get_or_init(|| digest(&serde_json::to_string(self).unwrap_or_default()))
            .clone()
    }
}

/// A short stand-in for a long key: 128 bits of two differently seeded hashes
/// (a plan compares keys many times; two inputs that differ collide with
/// odds of 2^-128).
pub(crate) fn digest(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        text.hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::manifest::Macro;

    #[test]
    fn var_and_env_var_mentions_are_told_apart_and_lookalikes_ignored() {
        let r = scan(
            "where d >= '{{ var(\"start_date\") }}' and {{ var( 'end_date' , '2024') }} \
             and {{ env_var('REGION') }} and {{ my_var('x') }} and start_date",
        );
        assert_eq!(
            r.vars,
            BTreeSet::from(["start_date".into(), "end_date".into()])
        );
        assert_eq!(r.env, BTreeSet::from(["REGION".into()]));
        assert!(!r.any_var && !r.any_env);
        let r = scan("{{ var(name) }} {{ env_var(key ~ '_X') }}");
        assert!(
            r.any_var && r.any_env,
            "a name that is not a literal reads anything"
        );
        assert!(r.reads_var("whatever"));
    }

    fn node(id: &str, materialized: &str, parents: &[&str], macros: &[&str], code: &str) -> Node {
        Node {
            unique_id: id.into(),
            resource_type: "model".into(),
            materialized: Some(materialized.into()),
            parents: parents.iter().map(ToString::to_string).collect(),
            macros: macros.iter().map(ToString::to_string).collect(),
            raw_code: code.into(),
            ..Node::default()
        }
    }

    #[test]
    fn reads_follow_macro_calls_ephemeral_parents_and_project_config() {
        let mut g = Graph::default();
        for n in [
            node(
                "model.p.direct",
                "table",
                &[],
                &[],
                "{{ var('start_date') }}",
            ),
            node("model.p.via_macro", "view", &[], &["macro.p.outer"], ""),
            node("model.p.eph", "ephemeral", &[], &["macro.p.inner"], ""),
            node("model.p.child_of_eph", "table", &["model.p.eph"], &[], ""),
            node(
                "model.p.child_of_table",
                "table",
                &["model.p.direct"],
                &[],
                "",
            ),
        ] {
            g.nodes.insert(n.unique_id.clone(), n);
        }
        let mac = |sql: &str, calls: &[&str]| Macro {
            sql: sql.into(),
            calls: calls.iter().map(ToString::to_string).collect(),
        };
        g.macros
            .insert("macro.p.outer".into(), mac("", &["macro.p.inner"]));
        g.macros.insert(
            "macro.p.inner".into(),
            mac("{{ env_var('REGION') }}", &["macro.p.outer"]),
        );
        let project = scan("+pre-hook: \"{{ var('hold') }}\"");
        let r = node_reads(&g, &project);
        assert!(r["model.p.direct"].reads_var("start_date"));
        assert!(r["model.p.via_macro"].reads_env("REGION"));
        assert!(r["model.p.child_of_eph"].reads_env("REGION"));
        assert!(
            !r["model.p.child_of_table"].reads_var("start_date"),
            "a table reading a var-dependent table does not itself read the var"
        );
        assert!(r.values().all(|x| x.reads_var("hold")));
    }

    #[test]
    fn a_node_key_holds_only_what_the_node_reads() {
        let ctx = |day: &str, region: &str| Context {
            group: "g".into(),
            command: "build".into(),
            target: None,
            args: vec![],
            vars: serde_json::from_str(&format!("{{\"day\": \"{day}\", \"other\": 1}}")).unwrap(),
            env: BTreeMap::from([("REGION".into(), region.into())]),
            cache: KeyCache::default(),
        };
        let reads_day = scan("{{ var('day') }}");
        assert_eq!(
            ctx("1", "eu").node_key(Some(&Reads::default())),
            ctx("2", "us").node_key(Some(&Reads::default()))
        );
        assert_ne!(
            ctx("1", "eu").node_key(Some(&reads_day)),
            ctx("2", "eu").node_key(Some(&reads_day))
        );
        assert_eq!(
            ctx("1", "eu").node_key(Some(&reads_day)),
            ctx("1", "us").node_key(Some(&reads_day))
        );
        assert_ne!(ctx("1", "eu").node_key(None), ctx("1", "us").node_key(None));
    }
}
