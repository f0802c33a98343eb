//! `dbt-herd.toml` in the project dir (or `--config FILE`): defaults for run
//! options, under the command line (a flag given wins). Keys are the long flag
//! names (`workers`, `shared-warehouse`, `env = ["K=V"]`); an unknown key exits 2.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::cli::RunArgs;
use crate::error::UsageResult;
use crate::usage;

pub(crate) const FILE: &str = "dbt-herd.toml";

/// Options a file may not set: they name this run, not a default for runs.
const NOT_IN_FILE: [&str; 3] = ["project_dir", "state_dir", "resume"];

/// Where each option's value came from.
pub(crate) type Sources = BTreeMap<String, &'static str>;

/// The file to read: `--config`, else `dbt-herd.toml` in the project dir if there.
fn file_for(args: &RunArgs) -> Option<PathBuf> {
    if let Some(f) = &args.config {
        return Some(f.clone());
    }
    let dir = args
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    Some(dir.join(FILE)).filter(|p| p.is_file())
}

/// The run's options with the file's defaults under the command line's, and
/// where each came from.
pub(crate) fn merged(args: &RunArgs) -> UsageResult<(RunArgs, Sources, Option<PathBuf>)> {
    let given = as_map(args)?;
    let mut sources: Sources = given
        .iter()
        .filter(|(_, v)| is_set(v))
        .map(|(k, _)| (k.clone(), "command line"))
        .collect();
    let Some(path) = file_for(args) else {
        return Ok((args.clone(), sources, None));
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage!("cannot read the config file {shown}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| usage!("invalid config file {shown}: {}", e.message()))?;
    let mut merged = given;
    for (key, value) in table {
        let field = key.replace('-', "_");
        if NOT_IN_FILE.contains(&field.as_str()) {
            return Err(usage!(
                "invalid config file {shown}: '{key}' names one run; give it on the command line"
            ));
        }
        let Some(slot) = merged.get_mut(&field) else {
            return Err(usage!("invalid config file {shown}: unknown key '{key}'"));
        };
        if is_set(slot) {
            continue;
        }
        *slot = serde_json::to_value(&value)
            .map_err(|e| usage!("invalid config file {shown}: {key}: {e}"))?;
        sources.insert(field, "config file");
    }
    let mut out: RunArgs = serde_json::from_value(Value::Object(merged))
        .map_err(|e| usage!("invalid config file {shown}: {e}"))?;
    // What serde leaves out of a stored run comes from the command line as it was.
    out.copy_unstored(args);
    Ok((out, sources, Some(path)))
}

fn as_map(args: &RunArgs) -> UsageResult<Map<String, Value>> {
    match serde_json::to_value(args) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(usage!("cannot read the run's options")),
    }
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Bool(b) => *b,
        _ => true,
    }
}

/// `dbt-herd run --print-config`: each option, its value, and where it came from.
pub(crate) fn print(args: &RunArgs, out: &mut dyn std::io::Write) -> color_eyre::Result<i32> {
    let (merged, sources, file) = merged(args)?;
    match &file {
        Some(f) => writeln!(out, "# config file: {}", f.display())?,
        None => writeln!(
            out,
            "# no config file ({FILE} in the project dir, or --config FILE)"
        )?,
    }
    let map = as_map(&merged)?;
    for (key, value) in &map {
        let flag = key.replace('_', "-");
        let from = sources.get(key).copied().unwrap_or("default");
        let shown = if is_set(value) {
            toml_value(value)
        } else {
            "(not set)".to_string()
        };
        writeln!(out, "{flag:<18} = {shown:<40} # {from}")?;
    }
    Ok(crate::error::exit::OK)
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::path::Path;

    fn args(dir: &Path, extra: &[&str]) -> RunArgs {
        let mut argv = vec!["dbt-herd", "run", "--project-dir", dir.to_str().unwrap()];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_file_gives_defaults_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "workers = 6\nthreads = 2\nshared-warehouse = \"no\"\nenv = [\"DUCKDB_PATH=/w/{worker}.db\"]\nretries = 1\n",
        )
        .unwrap();
        let (m, sources, file) = merged(&args(dir.path(), &["--workers", "3"])).unwrap();
        assert!(file.is_some());
        assert_eq!(m.workers, Some(3), "the flag wins");
        assert_eq!(m.threads, Some(2));
        assert_eq!(m.retries, Some(1));
        assert_eq!(m.shared_warehouse, Some(crate::cli::SharedWarehouse::No));
        assert_eq!(m.env[0].value, "/w/{worker}.db");
        assert_eq!(sources["workers"], "command line");
        assert_eq!(sources["threads"], "config file");
        let mut out = Vec::new();
        print(&args(dir.path(), &["--workers", "3"]), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("workers            = 3"), "{text}");
        assert!(
            text.contains("# config file\n") || text.contains("# config file"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("threads") && l.ends_with("# config file")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("budget") && l.ends_with("# default")),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_per_run_keys_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "wokers = 6\n").unwrap();
        let e = merged(&args(dir.path(), &[])).unwrap_err().0;
        assert!(e.ends_with("unknown key 'wokers'"), "{e}");
        std::fs::write(dir.path().join(FILE), "state-dir = \"/x\"\n").unwrap();
        let e = merged(&args(dir.path(), &[])).unwrap_err().0;
        assert!(e.contains("'state-dir' names one run"), "{e}");
        std::fs::write(dir.path().join(FILE), "workers = \"many\"\n").unwrap();
        let e = merged(&args(dir.path(), &[])).unwrap_err().0;
        assert!(e.contains("invalid config file"), "{e}");
    }
}
