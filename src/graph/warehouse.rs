//! Which warehouse a batch writes to, from what its profile reads: the target's
//! connection fields with `env_var()` filled from the batch's environment (an
//! entry's own `DUCKDB_PATH`, say). Batches of different warehouses never share
//! or wait on each other's nodes; each warehouse knows what its adapter admits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::cli::SharedWarehouse;
use crate::config::RunSettings;

/// The target of the profile the project uses, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProfileTarget {
    pub name: String,
    pub adapter: String,
    /// Scalar connection fields as written (templates unrendered).
    pub fields: BTreeMap<String, String>,
}

/// The warehouse of one batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Warehouse {
    /// Equal for batches that write to one warehouse.
    pub key: String,
    /// For people: "duckdb file /x/wh.duckdb", "postgres herd@localhost:5432/db".
    pub label: String,
    /// A DuckDB file admits one writing process at a time.
    pub one_writer: bool,
}

/// Fields that say nothing about where a batch writes.
fn ignored(field: &str) -> bool {
    let f = field.to_ascii_lowercase();
    f == "threads"
        || f.contains("password")
        || f.contains("secret")
        || f.contains("token")
        || f.contains("private_key")
        || f.contains("keepalive")
        || f.contains("timeout")
        || f.contains("retries")
}

/// An `--env` key whose value holds `{batch}` and that the profile's
/// connection fields read: every batch then connects to its own warehouse (a
/// DuckDB file, a schema), which one parse per worker cannot follow.
pub(crate) fn batch_env_in_profile(s: &RunSettings) -> Option<String> {
    let batch_keys: Vec<&str> = s
        .env
        .iter()
        .filter(|t| t.value.contains("{batch}"))
        .map(|t| t.key.as_str())
        .collect();
    if batch_keys.is_empty() {
        return None;
    }
    let profile = load_profile(s)?;
    let mut reads = super::inputs::Reads::default();
    for (field, text) in &profile.fields {
        if !ignored(field) {
            reads.extend(&super::inputs::scan(text));
        }
    }
    batch_keys
        .into_iter()
        .find(|k| reads.env.contains(*k))
        .map(str::to_string)
}

/// Reads the project's profile target, if it can be found and read.
pub(crate) fn load_profile(s: &RunSettings) -> Option<ProfileTarget> {
    let project: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(s.project_dir.join("dbt_project.yml")).ok()?,
    )
    .ok()?;
    let profile = project.get("profile")?.as_str()?.to_string();
    let path = profiles_file(s)?;
    let profiles: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let p = profiles.get(profile.as_str())?;
    let name = match &s.target {
        Some(t) => t.clone(),
        None => render(p.get("target")?.as_str()?, &BTreeMap::new()),
    };
    let out = p.get("outputs")?.get(name.as_str())?.as_mapping()?;
    let mut fields = BTreeMap::new();
    for (k, v) in out {
        let Some(k) = k.as_str() else { continue };
        let text = match v {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        fields.insert(k.to_string(), text);
    }
    Some(ProfileTarget {
        name,
        adapter: fields.get("type")?.clone(),
        fields,
    })
}

/// Where dbt finds profiles.yml: `--profiles-dir`, `DBT_PROFILES_DIR`, the
/// project dir, then `~/.dbt`.
pub(crate) fn profiles_file(s: &RunSettings) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = &s.profiles_dir {
        dirs.push(d.clone());
    } else {
        if let Some(d) = std::env::var_os("DBT_PROFILES_DIR") {
            dirs.push(d.into());
        }
        dirs.push(s.project_dir.clone());
        if let Some(h) = std::env::var_os("HOME") {
            dirs.push(Path::new(&h).join(".dbt"));
        }
    }
    dirs.into_iter()
        .map(|d| d.join("profiles.yml"))
        .find(|p| p.is_file())
}

/// Fills `{{ env_var('X') }}` and `{{ env_var('X', 'default') }}` from `env`
/// (the batch's own), then the process environment. Other templates stay as
/// written: equal text renders alike in every batch.
pub(crate) fn render(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = rest[i + 2..i + j].trim();
        match env_call(inner) {
            Some((name, default)) => {
                let v = env
                    .get(&name)
                    .cloned()
                    .or_else(|| std::env::var(&name).ok())
                    .or(default)
                    .unwrap_or_default();
                out.push_str(&v);
            }
            None => out.push_str(&rest[i..i + j + 2]),
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

/// `env_var('NAME')` or `env_var('NAME', 'default')`: the name and default.
fn env_call(inner: &str) -> Option<(String, Option<String>)> {
    let args = inner.strip_prefix("env_var(")?.strip_suffix(')')?;
    let mut parts = Vec::new();
    for part in args.split(',') {
        let p = part.trim();
        let q = p.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        parts.push(p.strip_prefix(q)?.strip_suffix(q)?.to_string());
    }
    match parts.as_slice() {
        [name] => Some((name.clone(), None)),
        [name, default] => Some((name.clone(), Some(default.clone()))),
        _ => None,
    }
}

/// A marker for an env value that depends on the worker (`{worker}`).
pub(crate) const PER_WORKER: &str = "\u{0}per-worker";

/// The warehouse of a batch whose environment is `env` (templates filled, a
/// `{worker}` value as `PER_WORKER`). `batch` names it when the warehouse is its
/// own (a `{worker}` file, `:memory:`, `--shared-warehouse no`).
pub(crate) fn of(
    s: &RunSettings,
    profile: Option<&ProfileTarget>,
    env: &BTreeMap<String, String>,
    batch: &str,
    mode: SharedWarehouse,
) -> Warehouse {
    let own = |why: &str| Warehouse {
        key: format!("own:{batch}"),
        label: format!("its own ({why})"),
        one_writer: false,
    };
    match mode {
        SharedWarehouse::No => return own("--shared-warehouse no"),
        SharedWarehouse::Yes if profile.is_none() => {
            return Warehouse {
                key: "shared".into(),
                label: "one shared warehouse (--shared-warehouse yes)".into(),
                one_writer: false,
            };
        }
        _ => {}
    }
    let Some(p) = profile else {
        // The profile cannot be read: batches whose environments differ in
        // anything are taken to write to different warehouses.
        let key = serde_json::json!({"target": s.target, "profiles": s.profiles_dir, "env": env});
        return Warehouse {
            key: key.to_string(),
            label: "the profile's (unread)".into(),
            one_writer: false,
        };
    };
    let fields: BTreeMap<&str, String> = p
        .fields
        .iter()
        .filter(|(k, _)| !ignored(k))
        .map(|(k, v)| (k.as_str(), render(v, env)))
        .collect();
    if fields.values().any(|v| v.contains(PER_WORKER)) && mode != SharedWarehouse::Yes {
        return own("one per worker");
    }
    if p.adapter == "duckdb" {
        let path = fields.get("path").map_or("", String::as_str);
        if path.is_empty() || path == ":memory:" || path.starts_with(":memory:") {
            return own("an in-memory DuckDB");
        }
        let file = crate::config::absolute(Path::new(path));
        return Warehouse {
            key: format!("duckdb:{}", file.display()),
            label: format!("the DuckDB file {}", file.display()),
            one_writer: true,
        };
    }
    let key = serde_json::json!({"target": p.name, "fields": fields});
    let at = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let db = if fields.contains_key("dbname") {
        at("dbname")
    } else {
        at("database")
    };
    Warehouse {
        key: key.to_string(),
        label: format!(
            "{} {}{}{} (target {})",
            p.adapter,
            at("host"),
            if db.is_empty() { "" } else { "/" },
            db,
            p.name
        ),
        one_writer: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_templates_fill_from_the_batch_then_the_default() {
        let env = BTreeMap::from([("DUCKDB_PATH".to_string(), "/w/a.duckdb".to_string())]);
        assert_eq!(render("{{ env_var('DUCKDB_PATH') }}", &env), "/w/a.duckdb");
        assert_eq!(
            render("x{{env_var(\"HERD_UNSET_FOR_TEST\", 'd')}}y", &env),
            "xdy"
        );
        assert_eq!(
            render("{{ target.name }}", &env),
            "{{ target.name }}",
            "other templates stay as written"
        );
    }

    fn settings(dir: &Path) -> RunSettings {
        let a = crate::cli::RunArgs {
            project_dir: Some(dir.to_path_buf()),
            profiles_dir: Some(dir.to_path_buf()),
            dbt: Some("/bin/sh".into()),
            ..Default::default()
        };
        RunSettings::from_args(&a).unwrap()
    }

    #[test]
    fn duckdb_files_postgres_schemas_and_worker_files_make_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbt_project.yml"), "name: p\nprofile: p\n").unwrap();
        std::fs::write(
            dir.path().join("profiles.yml"),
            "p:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: \"{{ env_var('DUCKDB_PATH') }}\"\n      threads: 4\n    pg:\n      type: postgres\n      host: localhost\n      dbname: wh\n      schema: \"{{ env_var('SCHEMA', 'herd') }}\"\n      password: \"{{ env_var('PW') }}\"\n",
        )
        .unwrap();
        let mut s = settings(dir.path());
        let p = load_profile(&s).unwrap();
        assert_eq!((p.name.as_str(), p.adapter.as_str()), ("dev", "duckdb"));
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let auto = SharedWarehouse::Auto;
        let a = of(&s, Some(&p), &env("DUCKDB_PATH", "/w/a.duckdb"), "a", auto);
        let a2 = of(&s, Some(&p), &env("DUCKDB_PATH", "/w/a.duckdb"), "b", auto);
        let b = of(&s, Some(&p), &env("DUCKDB_PATH", "/w/b.duckdb"), "c", auto);
        assert_eq!(a, a2);
        assert_ne!(a.key, b.key);
        assert!(a.one_writer);
        let w = of(&s, Some(&p), &env("DUCKDB_PATH", PER_WORKER), "a", auto);
        let w2 = of(&s, Some(&p), &env("DUCKDB_PATH", PER_WORKER), "b", auto);
        assert_ne!(w.key, w2.key, "a file per worker: no batch shares it");
        s.target = Some("pg".into());
        let p = load_profile(&s).unwrap();
        let x = of(&s, Some(&p), &env("PW", "one"), "a", auto);
        let y = of(&s, Some(&p), &env("PW", "two"), "b", auto);
        let z = of(&s, Some(&p), &env("SCHEMA", "other"), "c", auto);
        assert_eq!(x, y, "a password is not where a batch writes");
        assert_ne!(x.key, z.key);
        assert!(!x.one_writer);
        assert_eq!(x.label, "postgres localhost/wh (target pg)");
    }
}
