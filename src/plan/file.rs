//! `--plan FILE`: a list of batches in YAML or JSON, each with its own
//! selection, vars, env, threads, command, extra dbt args and `after` edges. A
//! pool script's plan (`[{"name", "args", "env"}]`) is read as it is. A bad plan
//! is one line naming the entry and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::DbtCommand;
use crate::error::UsageResult;
use crate::usage;

/// One entry of a plan, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub id: String,
    pub select: Option<String>,
    pub exclude: Option<String>,
    pub selector: Option<String>,
    pub vars: Map<String, Value>,
    /// Added to the environment; `{batch}` and `{worker}` are replaced.
    pub env: BTreeMap<String, String>,
    pub threads: Option<u32>,
    pub command: Option<DbtCommand>,
    /// Extra dbt args, after the run's own.
    pub args: Vec<String>,
    /// Ids of entries that must succeed first.
    pub after: Vec<String>,
}

/// An entry as written in dbt-herd's own format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    id: Option<String>,
    select: Option<String>,
    exclude: Option<String>,
    selector: Option<String>,
    vars: Option<Value>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    threads: Option<u32>,
    command: Option<DbtCommand>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
}

/// An entry of the pool script's plan: a name, dbt's argv after `dbt`, and env.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pooled {
    name: String,
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
}

/// Reads and checks a plan file.
pub fn load(path: &Path) -> UsageResult<Vec<PlanEntry>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage!("invalid --plan '{shown}': cannot read it ({e})"))?;
    parse(&text).map_err(|e| usage!("invalid --plan '{shown}': {}", e.0))
}

/// Parses a plan (YAML or JSON: JSON is YAML).
pub fn parse(text: &str) -> UsageResult<Vec<PlanEntry>> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let first = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid")
            .to_string();
        usage!("not valid YAML or JSON ({first})")
    })?;
    let Value::Array(items) = doc else {
        return Err(usage!("expected a list of batches"));
    };
    if items.is_empty() {
        return Err(usage!("the plan lists no batch"));
    }
    let mut entries = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        entries.push(entry(n + 1, item)?);
    }
    check_ids(&entries)?;
    Ok(entries)
}

/// "entry 3" or "entry 3 (id x)", for messages.
fn name(n: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("entry {n} (id {id})"),
        None => format!("entry {n}"),
    }
}

fn entry(n: usize, item: Value) -> UsageResult<PlanEntry> {
    let Value::Object(map) = &item else {
        return Err(usage!("entry {n}: expected a mapping of fields"));
    };
    let id_of = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    // The pool script's format: name + args (and no field of our own).
    if map.contains_key("name") && map.contains_key("args") && !map.contains_key("id") {
        let label = name(n, id_of("name").as_deref());
        let p: Pooled =
            serde_json::from_value(item).map_err(|e| usage!("{label}: {}", field_error(&e)))?;
        return pooled(n, p);
    }
    let label = name(n, id_of("id").as_deref());
    let w: Written =
        serde_json::from_value(item).map_err(|e| usage!("{label}: {}", field_error(&e)))?;
    let vars = match w.vars {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(usage!(
                "{label}: field vars must be a mapping like {{key: value}}, not {other}"
            ));
        }
    };
    if w.threads == Some(0) {
        return Err(usage!("{label}: field threads must be at least 1"));
    }
    let id = match w.id {
        Some(id) => checked_id(&label, id)?,
        None => derived_id(n, w.select.as_deref().or(w.selector.as_deref())),
    };
    Ok(PlanEntry {
        id,
        select: w.select,
        exclude: w.exclude,
        selector: w.selector,
        vars,
        env: env_of(&label, w.env)?,
        threads: w.threads,
        command: w.command,
        args: w.args,
        after: w.after,
    })
}

/// A pool script's entry: `args` is dbt's argv after `dbt` (its subcommand
/// first); selection and vars are taken out of it, the rest passed on.
fn pooled(n: usize, p: Pooled) -> UsageResult<PlanEntry> {
    let label = name(n, Some(&p.name));
    let id = checked_id(&label, p.name.clone())?;
    let mut args = p.args.into_iter();
    let mut e = PlanEntry {
        id,
        env: env_of(&label, p.env)?,
        ..PlanEntry::default()
    };
    let first = args.next().unwrap_or_default();
    e.command = Some(
        <DbtCommand as clap::ValueEnum>::from_str(&first, false).map_err(|_| {
            usage!("{label}: field args must start with a dbt command (build, run, test, seed or snapshot), not '{first}'")
        })?,
    );
    while let Some(a) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| usage!("{label}: field args: {flag} needs a value"))
        };
        match a.as_str() {
            "-s" | "--select" | "-m" | "--models" => e.select = Some(value(&a)?),
            "--exclude" => e.exclude = Some(value(&a)?),
            "--selector" => e.selector = Some(value(&a)?),
            "--vars" => {
                let v = value(&a)?;
                e.vars = super::parse_vars(&v)
                    .map_err(|err| usage!("{label}: field args: {}", err.0))?;
            }
            // dbt-herd sets these itself for every batch.
            "--threads" => {
                e.threads =
                    Some(value(&a)?.parse().map_err(|_| {
                        usage!("{label}: field args: --threads needs a whole number")
                    })?);
            }
            "--target-path" | "--log-path" | "--project-dir" | "--profiles-dir"
            | "--log-format" => {
                return Err(usage!(
                    "{label}: field args: {a} is set by dbt-herd for each batch; leave it out"
                ));
            }
            _ => e.args.push(a),
        }
    }
    Ok(e)
}

/// serde's words for a bad field, without its position in an intermediate value.
fn field_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.split(" at line").next().unwrap_or(&text).to_string()
}

fn checked_id(label: &str, id: String) -> UsageResult<String> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(id)
    } else {
        Err(usage!(
            "{label}: field id '{id}' must be letters, digits, '.', '_' or '-'"
        ))
    }
}

fn derived_id(n: usize, select: Option<&str>) -> String {
    select.map_or_else(|| format!("batch-{n}"), super::slug)
}

fn env_of(label: &str, env: BTreeMap<String, Value>) -> UsageResult<BTreeMap<String, String>> {
    env.into_iter()
        .map(|(k, v)| {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(usage!(
                    "{label}: field env: '{k}' is not a valid variable name"
                ));
            }
            let v = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(usage!(
                        "{label}: field env: {k} must be a string, not {other}"
                    ));
                }
            };
            Ok((k, v))
        })
        .collect()
}

/// Ids are unique, `after` names entries that exist, and no `after` chain loops.
fn check_ids(entries: &[PlanEntry]) -> UsageResult<()> {
    let mut index = HashMap::new();
    for (n, e) in entries.iter().enumerate() {
        if let Some(first) = index.insert(e.id.as_str(), n) {
            return Err(usage!(
                "{}: field id '{}' is also entry {}'s id",
                name(n + 1, Some(&e.id)),
                e.id,
                first + 1
            ));
        }
    }
    for (n, e) in entries.iter().enumerate() {
        for a in &e.after {
            if !index.contains_key(a.as_str()) {
                return Err(usage!(
                    "{}: field after names '{a}', which no entry has as its id",
                    name(n + 1, Some(&e.id))
                ));
            }
        }
    }
    let mut done = HashSet::new();
    for e in entries {
        if let Some(cycle) = visit(&e.id, entries, &index, &mut Vec::new(), &mut done) {
            let n = index[cycle[0]];
            return Err(usage!(
                "{}: field after makes a cycle: {}",
                name(n + 1, Some(cycle[0])),
                cycle.join(" → ")
            ));
        }
    }
    Ok(())
}

/// Depth-first search for an `after` cycle through `id`; the cycle, if any.
fn visit<'a>(
    id: &'a str,
    entries: &'a [PlanEntry],
    index: &HashMap<&'a str, usize>,
    on_path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Option<Vec<&'a str>> {
    if done.contains(id) {
        return None;
    }
    if let Some(at) = on_path.iter().position(|p| *p == id) {
        let mut cycle = on_path[at..].to_vec();
        cycle.push(id);
        return Some(cycle);
    }
    on_path.push(id);
    for a in &entries[index[id]].after {
        if let Some(c) = visit(a, entries, index, on_path, done) {
            return Some(c);
        }
    }
    on_path.pop();
    done.insert(id);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn entries_take_every_field_and_derive_ids() {
        let plan = parse(
            r#"
- id: finance
  select: tag:finance
  exclude: tag:slow
  vars: {region: eu}
  env: {DUCKDB_PATH: "/w/{worker}.duckdb", N: 3}
  threads: 2
  command: run
  args: [--full-refresh]
- select: tag:marketing
  after: [finance]
- {}
"#,
        )
        .unwrap();
        assert_eq!(plan.len(), 3);
        let f = &plan[0];
        assert_eq!(f.id, "finance");
        assert_eq!(f.select.as_deref(), Some("tag:finance"));
        assert_eq!(f.exclude.as_deref(), Some("tag:slow"));
        assert_eq!(f.vars["region"], "eu");
        assert_eq!(f.env["N"], "3");
        assert_eq!(f.threads, Some(2));
        assert_eq!(f.command, Some(DbtCommand::Run));
        assert_eq!(f.args, ["--full-refresh"]);
        assert_eq!(plan[1].id, "tag-marketing");
        assert_eq!(plan[1].after, ["finance"]);
        assert_eq!(plan[2].id, "batch-3");
    }

    #[test]
    fn a_pool_scripts_plan_is_read_as_it_is() {
        let plan = parse(
            r#"[{"name": "w01", "args": ["run", "--select", "tag:daily", "--vars", "{run_date: '2024-01-01'}", "--full-refresh"],
                 "env": {"DUCKDB_PATH": "wh/w01.duckdb"}},
                {"name": "w02", "args": ["build", "-s", "tag:daily"]}]"#,
        )
        .unwrap();
        assert_eq!(plan[0].id, "w01");
        assert_eq!(plan[0].command, Some(DbtCommand::Run));
        assert_eq!(plan[0].select.as_deref(), Some("tag:daily"));
        assert_eq!(plan[0].vars["run_date"], "2024-01-01");
        assert_eq!(plan[0].args, ["--full-refresh"]);
        assert_eq!(plan[0].env["DUCKDB_PATH"], "wh/w01.duckdb");
        assert_eq!(plan[1].command, Some(DbtCommand::Build));
    }

    #[test]
    fn bad_plans_name_the_entry_and_the_field() {
        assert!(
            err("- {id: a, colour: red}").starts_with("entry 1 (id a): unknown field `colour`")
        );
        assert_eq!(
            err("- {id: a}\n- {id: a}"),
            "entry 2 (id a): field id 'a' is also entry 1's id"
        );
        assert_eq!(
            err("- {id: a, after: [b]}"),
            "entry 1 (id a): field after names 'b', which no entry has as its id"
        );
        assert_eq!(
            err("- {id: a, after: [b]}\n- {id: b, after: [a]}"),
            "entry 1 (id a): field after makes a cycle: a → b → a"
        );
        assert!(
            err("- {id: a, vars: [1, 2]}")
                .starts_with("entry 1 (id a): field vars must be a mapping")
        );
        assert!(err("- {id: 'a b'}").contains("field id 'a b'"));
        assert!(err("- {id: a, threads: 0}").contains("field threads must be at least 1"));
        assert!(
            err("- {name: w1, args: [compile]}")
                .starts_with("entry 1 (id w1): field args must start with a dbt command")
        );
        assert!(
            err("- {name: w1, args: [run, --target-path, x]}")
                .contains("--target-path is set by dbt-herd")
        );
        assert_eq!(err("{a: 1}"), "expected a list of batches");
        assert_eq!(err("[]"), "the plan lists no batch");
    }
}
