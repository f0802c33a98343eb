//! Which nodes depend on the backfill window: their code, a macro they call
//! (followed through the macros' own calls), or an ephemeral model inlined into
//! them reads one of the window's vars.

use std::collections::BTreeSet;

use super::manifest::{Graph, Node};

/// Whether `code` reads one of `vars` through `var('name')` (any quotes and spacing).
pub(crate) fn mentions_var(code: &str, vars: &[&str]) -> bool {
    let mut rest = code;
    while let Some(i) = rest.find("var(") {
        // `var(` itself, not the end of another name such as `env_var(`.
        let before_ok = i == 0 || {
            let c = rest.as_bytes()[i - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let args = rest[i + 4..].trim_start();
        if before_ok && let Some(quote) = args.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let name = &args[1..];
            if let Some(end) = name.find(quote)
                && vars.contains(&&name[..end])
            {
                return true;
            }
        }
        rest = &rest[i + 4..];
    }
    false
}

/// The unique ids of every node whose result depends on the window's vars.
pub(crate) fn window_dependent(g: &Graph, vars: &[&str]) -> BTreeSet<String> {
    // Macros: one reads the window if its code does, or if it calls one that
    // does. Grown to a fixed point, so calls in cycles are decided right.
    let mut macros: BTreeSet<&str> = g
        .macros
        .iter()
        .filter(|(_, m)| mentions_var(&m.sql, vars))
        .map(|(id, _)| id.as_str())
        .collect();
    grow(&mut macros, |set| {
        g.macros
            .iter()
            .filter(|(_, m)| m.calls.iter().any(|c| set.contains(c.as_str())))
            .map(|(id, _)| id.as_str())
            .collect()
    });
    let mut nodes: BTreeSet<&str> = g
        .nodes
        .values()
        .filter(|n| {
            mentions_var(&n.raw_code, vars) || n.macros.iter().any(|m| macros.contains(m.as_str()))
        })
        .map(|n| n.unique_id.as_str())
        .collect();
    // An ephemeral model is inlined into its children: they read what it reads.
    grow(&mut nodes, |set| {
        g.nodes
            .values()
            .filter(|n| {
                n.parents.iter().any(|p| {
                    set.contains(p.as_str()) && g.nodes.get(p).is_some_and(Node::is_ephemeral)
                })
            })
            .map(|n| n.unique_id.as_str())
            .collect()
    });
    nodes.into_iter().map(str::to_string).collect()
}

/// Adds what `more` finds until it finds nothing new.
fn grow<'g>(set: &mut BTreeSet<&'g str>, more: impl Fn(&BTreeSet<&'g str>) -> Vec<&'g str>) {
    loop {
        let before = set.len();
        set.extend(more(set));
        if set.len() == before {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::manifest::Macro;

    #[test]
    fn var_mentions_are_found_and_lookalikes_are_not() {
        let vars = ["start_date", "end_date"];
        assert!(mentions_var(
            "where d >= '{{ var(\"start_date\") }}'",
            &vars
        ));
        assert!(mentions_var("{{ var( 'end_date' , '2024') }}", &vars));
        assert!(!mentions_var("{{ env_var('start_date') }}", &vars));
        assert!(!mentions_var("{{ var('region') }}", &vars));
        assert!(!mentions_var("start_date", &vars));
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
    fn dependence_follows_macro_calls_and_ephemeral_parents() {
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
            node("model.p.plain", "view", &[], &["macro.p.other"], "select 1"),
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
            mac("{{ var('end_date') }}", &["macro.p.outer"]),
        );
        g.macros
            .insert("macro.p.other".into(), mac("{{ var('x') }}", &[]));
        let wd = window_dependent(&g, &["start_date", "end_date"]);
        let ids: Vec<&str> = wd.iter().map(String::as_str).collect();
        assert_eq!(
            ids,
            [
                "model.p.child_of_eph",
                "model.p.direct",
                "model.p.eph",
                "model.p.via_macro"
            ],
            "a table reading a window-dependent table is not itself window-dependent"
        );
    }
}
