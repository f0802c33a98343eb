//! The part of dbt's `manifest.json` a plan needs: each node's parents, macros,
//! materialization, relation and code, and each macro's code and calls.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Node {
    pub unique_id: String,
    /// model, seed, snapshot, test, source…
    pub resource_type: String,
    pub fqn: Vec<String>,
    /// The relation it is built into or read from (`"db"."schema"."name"`);
    /// none for ephemeral models and tests without `store_failures`.
    pub relation_name: Option<String>,
    pub materialized: Option<String>,
    /// `microbatch` for dbt's microbatch models (materialized `incremental`).
    pub incremental_strategy: Option<String>,
    pub store_failures: bool,
    /// `depends_on.nodes`: the nodes (and sources) it reads.
    pub parents: Vec<String>,
    /// `depends_on.macros`.
    pub macros: Vec<String>,
    pub raw_code: String,
}

impl Node {
    /// A selector for exactly this node, for `--select` / `--exclude` (a bare
    /// `fqn:` would also match what lies under a directory of that name).
    pub fn selector(&self) -> String {
        crate::dbt::argv::exact_selector(&self.fqn)
    }

    pub fn is_incremental(&self) -> bool {
        matches!(
            self.materialized.as_deref(),
            Some("incremental" | "microbatch")
        )
    }

    /// A microbatch model: dbt runs it window by window (`--event-time-start/end`).
    pub fn is_microbatch(&self) -> bool {
        self.incremental_strategy.as_deref() == Some("microbatch")
            || self.materialized.as_deref() == Some("microbatch")
    }

    pub fn is_ephemeral(&self) -> bool {
        self.materialized.as_deref() == Some("ephemeral")
    }

    /// The relation this node writes when it runs, if any.
    pub fn writes(&self) -> Option<&str> {
        let writes = match self.resource_type.as_str() {
            "model" => !self.is_ephemeral(),
            "seed" | "snapshot" => true,
            "test" => self.store_failures,
            _ => false,
        };
        if writes {
            self.relation_name.as_deref()
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Macro {
    pub sql: String,
    pub calls: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Graph {
    pub nodes: BTreeMap<String, Node>,
    pub macros: BTreeMap<String, Macro>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

fn node(id: &str, v: &Value) -> Node {
    let config = v.get("config").unwrap_or(&Value::Null);
    let depends = v.get("depends_on").unwrap_or(&Value::Null);
    Node {
        unique_id: id.to_string(),
        resource_type: text(v, "resource_type").unwrap_or_default(),
        fqn: strings(v.get("fqn")),
        relation_name: text(v, "relation_name"),
        materialized: text(config, "materialized"),
        incremental_strategy: text(config, "incremental_strategy"),
        store_failures: config
            .get("store_failures")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        parents: strings(depends.get("nodes")),
        macros: strings(depends.get("macros")),
        raw_code: text(v, "raw_code").unwrap_or_default(),
    }
}

impl Graph {
    /// Reads the nodes, sources and macros of a `manifest.json`.
    pub fn from_manifest(bytes: &[u8]) -> Result<Self, String> {
        let m: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest.json is not JSON: {e}"))?;
        let mut g = Graph::default();
        for section in ["nodes", "sources"] {
            let Some(entries) = m.get(section).and_then(Value::as_object) else {
                return Err(format!("manifest.json has no \"{section}\""));
            };
            for (id, v) in entries {
                g.nodes.insert(id.clone(), node(id, v));
            }
        }
        if let Some(macros) = m.get("macros").and_then(Value::as_object) {
            for (id, v) in macros {
                let calls = strings(v.get("depends_on").and_then(|d| d.get("macros")));
                let sql = text(v, "macro_sql").unwrap_or_default();
                g.macros.insert(id.clone(), Macro { sql, calls });
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nodes_sources_and_macros() {
        let m = serde_json::json!({
            "nodes": {
                "model.p.a": {"resource_type": "model", "fqn": ["p", "a"],
                    "relation_name": "\"db\".\"s\".\"a\"", "config": {"materialized": "table"},
                    "depends_on": {"nodes": ["source.p.raw.t"], "macros": ["macro.p.m"]},
                    "raw_code": "select 1"},
                "model.p.e": {"resource_type": "model", "fqn": ["p", "e"], "relation_name": null,
                    "config": {"materialized": "ephemeral"}, "depends_on": {"nodes": [], "macros": []}},
                "test.p.t": {"resource_type": "test", "fqn": ["p", "t"], "relation_name": "\"db\".\"audit\".\"t\"",
                    "config": {"store_failures": true}, "depends_on": {"nodes": ["model.p.a"]}}
            },
            "sources": {"source.p.raw.t": {"resource_type": "source", "fqn": ["p", "raw", "t"],
                "relation_name": "\"db\".\"raw\".\"t\""}},
            "macros": {"macro.p.m": {"macro_sql": "{{ var('x') }}", "depends_on": {"macros": ["macro.p.n"]}}}
        });
        let g = Graph::from_manifest(m.to_string().as_bytes()).unwrap();
        let a = &g.nodes["model.p.a"];
        assert_eq!(a.writes(), Some("\"db\".\"s\".\"a\""));
        assert_eq!(a.parents, ["source.p.raw.t"]);
        assert_eq!(a.selector(), "fqn:p.[a]");
        assert_eq!(g.nodes["model.p.e"].writes(), None);
        assert_eq!(g.nodes["test.p.t"].writes(), Some("\"db\".\"audit\".\"t\""));
        assert_eq!(g.nodes["source.p.raw.t"].writes(), None);
        assert_eq!(g.macros["macro.p.m"].calls, ["macro.p.n"]);
        assert!(Graph::from_manifest(b"{}").is_err());
    }
}
