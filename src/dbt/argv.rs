//! The command line and environment of one dbt attempt.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::RunSettings;
use crate::plan::Batch;
use crate::plan::WindowAs;

/// How an attempt runs its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptKind {
    /// The batch's command with its selection and vars.
    Full,
    /// `dbt retry` in the batch's target dir: only the error, fail and skipped nodes.
    Retry,
}

/// A fully specified process launch: what the engine hands to a launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to (and overriding) the inherited environment.
    pub env: Vec<(String, String)>,
}

/// The env var dbt copies into every event's `info.extra` and into run_results
/// `metadata.env`, so every line can be traced to its batch.
pub const BATCH_ENV: &str = "DBT_ENV_CUSTOM_ENV_HERD_BATCH";

/// Builds the argv for one attempt. `target` and `logs` must be absolute: dbt
/// resolves relative ones against the project dir, not our working directory.
#[cfg(test)]
pub fn build_args(
    s: &RunSettings,
    batch: &Batch,
    kind: AttemptKind,
    target: &Path,
    logs: &Path,
) -> Vec<String> {
    build_args_narrowed(s, batch, kind, None, target, logs)
}

/// How a full attempt leaves out the nodes that committed in earlier attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrowing {
    /// Exactly these nodes (selectors from `exact_selector`), with
    /// `--indirect-selection empty`: what the batch selects, less what committed.
    /// (`--exclude` of a model also drops its tests, under every indirect
    /// selection but `empty`, so the rest is named instead.)
    Only(Vec<String>),
    /// The batch's own selection, and these selectors added to its `--exclude`:
    /// when the rest cannot be listed. The tests of the excluded nodes go with them.
    Without(Vec<String>),
    /// The batch's own selection, tests only (`--resource-type test`): a split
    /// part whose model committed.
    TestsOnly,
}

/// As `build_args`, for a full attempt that leaves out what committed earlier.
pub fn build_args_narrowed(
    s: &RunSettings,
    batch: &Batch,
    kind: AttemptKind,
    narrowing: Option<&Narrowing>,
    target: &Path,
    logs: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match kind {
        AttemptKind::Full => {
            a.push(batch.own.command.unwrap_or(s.command).to_string());
            match narrowing {
                None => a.extend(selection_args(s, batch)),
                Some(Narrowing::Only(nodes)) => {
                    a.extend(["--select".into(), nodes.join(" ")]);
                    a.extend(["--indirect-selection".into(), "empty".into()]);
                    a.extend(vars_args(batch));
                }
                Some(Narrowing::Without(nodes)) => {
                    a.extend(selection_args_excluding(s, batch, nodes));
                }
                Some(Narrowing::TestsOnly) => {
                    a.extend(selection_args(s, batch));
                    a.extend(["--resource-type".into(), "test".into()]);
                }
            }
            if let (WindowAs::EventTime, Some(w)) = (s.plan.window_as, batch.window) {
                // dbt reads these as timestamps: a day's window is [start, end).
                a.extend([
                    "--event-time-start".into(),
                    w.start.to_string(),
                    "--event-time-end".into(),
                    w.end.to_string(),
                ]);
            }
        }
        // dbt retry reuses the vars and selection stored in the target dir's
        // run_results.json; passing them again would force a full reparse.
        AttemptKind::Retry => a.push("retry".into()),
    }
    a.extend(["--log-format".into(), "json".into()]);
    a.extend(["--threads".into(), threads_of(s, batch).to_string()]);
    a.extend(location_args(s, target, logs));
    a.extend(s.extra_args.iter().cloned());
    a.extend(batch.own.args.iter().cloned());
    a
}

/// The batch's `--threads`: its own (from a plan file), else the run's.
pub fn threads_of(s: &RunSettings, batch: &Batch) -> u32 {
    batch.own.threads.unwrap_or(s.threads)
}

/// The environment added for one attempt: the user's templates plus the batch tag.
pub fn build_env(s: &RunSettings, batch: &Batch, worker: usize) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = s
        .env
        .iter()
        .map(|t| (t.key.clone(), t.render(&batch.id, worker)))
        .collect();
    // A plan file's entry env, templated alike, after (and over) the run's.
    env.extend(batch.own.env.iter().map(|(k, v)| {
        let t = crate::cli::EnvTemplate {
            key: k.clone(),
            value: v.clone(),
        };
        (t.key.clone(), t.render(&batch.id, worker))
    }));
    env.push((BATCH_ENV.into(), batch.id.clone()));
    env
}

/// `dbt ls` of the batch's models, one JSON object per line on stdout.
pub fn list_models_args(s: &RunSettings, batch: &Batch, target: &Path, logs: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["ls".into(), "--resource-type".into(), "model".into()];
    a.extend(selection_args(s, batch));
    a.extend([
        "--output".into(),
        "json".into(),
        // One argument, space-separated: dbt reads a repeated flag as nothing.
        "--output-keys".into(),
        "unique_id name relation_name depends_on".into(),
        "--quiet".into(),
    ]);
    a.extend(location_args(s, target, logs));
    a
}

/// `dbt ls` of every node the batch selects, one JSON object per line on stdout.
pub fn list_nodes_args(s: &RunSettings, batch: &Batch, target: &Path, logs: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["ls".into()];
    a.extend(selection_args(s, batch));
    a.extend([
        "--output".into(),
        "json".into(),
        "--output-keys".into(),
        "unique_id resource_type".into(),
        "--quiet".into(),
    ]);
    a.extend(location_args(s, target, logs));
    a
}

/// Node unique ids from `dbt ls --output json` lines; other lines are ignored.
pub fn parse_node_list(stdout: &str) -> std::collections::BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|v| v.get("unique_id")?.as_str().map(str::to_string))
        .collect()
}

/// What a batch selects: `--select`, `--exclude`, `--selector` and its `--vars`.
fn selection_args(s: &RunSettings, batch: &Batch) -> Vec<String> {
    selection_args_excluding(s, batch, &[])
}

/// `--vars` of the batch, if it has any.
fn vars_args(batch: &Batch) -> Vec<String> {
    if batch.vars.is_empty() {
        return Vec::new();
    }
    // JSON is valid YAML, and quoting keeps dates as strings
    // (an unquoted 2024-01-05 would reach dbt as a date).
    let vars = serde_json::Value::Object(batch.vars.clone()).to_string();
    vec!["--vars".into(), vars]
}

/// The batch's selection with `more` added to its `--exclude`.
fn selection_args_excluding(s: &RunSettings, batch: &Batch, more: &[String]) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(sel) = &batch.select {
        a.extend(["--select".into(), sel.clone()]);
    }
    // One union of selectors: the run's own exclusion, then the batch's.
    let exclude: Vec<&str> = s
        .exclude
        .iter()
        .chain(&batch.own.exclude)
        .map(String::as_str)
        .chain(batch.exclude.iter().map(String::as_str))
        .chain(more.iter().map(String::as_str))
        .collect();
    if !exclude.is_empty() {
        a.extend(["--exclude".into(), exclude.join(" ")]);
    }
    if let Some(name) = batch.own.selector.as_ref().or(s.selector.as_ref()) {
        a.extend(["--selector".into(), name.clone()]);
    }
    if let Some(how) = &batch.indirect_selection {
        a.extend(["--indirect-selection".into(), how.clone()]);
    }
    a.extend(vars_args(batch));
    a
}

/// `dbt ls` of every node the batch selects, with what an exact selector of each
/// needs: its unique id, resource type and fqn.
pub fn list_selected_args(
    s: &RunSettings,
    batch: &Batch,
    target: &Path,
    logs: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["ls".into()];
    a.extend(selection_args(s, batch));
    a.extend([
        "--output".into(),
        "json".into(),
        "--output-keys".into(),
        "unique_id resource_type fqn".into(),
        "--quiet".into(),
    ]);
    a.extend(location_args(s, target, logs));
    a
}

/// A node as `list_selected_args` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    pub unique_id: String,
    pub resource_type: String,
    pub fqn: Vec<String>,
}

/// Nodes from `dbt ls --output json` lines with `unique_id resource_type fqn`.
pub fn parse_listed_nodes(stdout: &str) -> Vec<ListedNode> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|v| {
            Some(ListedNode {
                unique_id: v.get("unique_id")?.as_str()?.to_string(),
                resource_type: v
                    .get("resource_type")
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_string(),
                fqn: v
                    .get("fqn")?
                    .as_array()?
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
            })
        })
        .filter(|n| !n.fqn.is_empty())
        .collect()
}

/// A selector for exactly one node, from its fqn. `fqn:a.b` also matches every
/// node under a directory `b` (`a.b.c`): dbt's fqn method matches prefixes. A
/// glob in the last part makes dbt match the rest of the fqn as a whole, so
/// `fqn:a.[b]` is `a.b` and nothing under it (measured with dbt 1.11).
pub fn exact_selector(fqn: &[String]) -> String {
    let mut parts: Vec<String> = fqn.to_vec();
    if let Some(last) = parts.last_mut()
        && let Some(c) = last.chars().last()
    {
        last.truncate(last.len() - c.len_utf8());
        last.push('[');
        last.push(c);
        last.push(']');
    }
    format!("fqn:{}", parts.join("."))
}

/// A selector for a node known only by its unique id (`model.pkg.name`): by its
/// name in its package, as a fallback when its fqn is unknown.
pub fn selector_of_unique_id(unique_id: &str) -> String {
    let mut parts = unique_id.split('.');
    let rt = parts.next().unwrap_or_default();
    let package = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    format!("package:{package},resource_type:{rt},fqn:{name}")
}

/// Whether `command` executes nodes of this resource type.
/// (`command` as dbt spells it: `build`, `run`, ...)
pub fn executes(command: &str, resource_type: &str) -> bool {
    match command {
        "run" => resource_type == "model",
        "test" => matches!(resource_type, "test" | "unit_test"),
        "seed" => resource_type == "seed",
        "snapshot" => resource_type == "snapshot",
        _ => matches!(
            resource_type,
            "model" | "seed" | "snapshot" | "test" | "unit_test" | "function"
        ),
    }
}

/// Where dbt reads and writes: the batch's target and log dirs, project and profile.
pub(crate) fn location_args(s: &RunSettings, target: &Path, logs: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--target-path".into(),
        target.display().to_string(),
        "--log-path".into(),
        logs.display().to_string(),
        "--project-dir".into(),
        s.project_dir.display().to_string(),
    ];
    if let Some(p) = &s.profiles_dir {
        a.extend(["--profiles-dir".into(), p.display().to_string()]);
    }
    if let Some(t) = &s.target {
        a.extend(["--target".into(), t.clone()]);
    }
    a
}

/// A model as `dbt ls` lists it for a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    pub unique_id: String,
    pub name: String,
    /// The relation it builds, when dbt says (not for ephemeral models).
    pub relation: Option<String>,
    /// The nodes it reads (`depends_on.nodes`).
    pub parents: Vec<String>,
}

/// Models from `dbt ls --output json` lines; other lines are ignored.
pub fn parse_model_list(stdout: &str) -> Vec<ListedModel> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|v| {
            Some(ListedModel {
                unique_id: v
                    .get("unique_id")
                    .and_then(|u| u.as_str())
                    .unwrap_or_default()
                    .to_string(),
                name: v.get("name")?.as_str()?.to_string(),
                relation: v
                    .get("relation_name")
                    .and_then(|r| r.as_str())
                    .map(str::to_string),
                parents: v
                    .pointer("/depends_on/nodes")
                    .and_then(|n| n.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub fn invocation(
    s: &RunSettings,
    batch: &Batch,
    kind: AttemptKind,
    worker: usize,
    target: &Path,
    logs: &Path,
) -> Invocation {
    invocation_narrowed(s, batch, kind, None, worker, target, logs)
}

/// As `invocation`, leaving out what committed earlier.
pub fn invocation_narrowed(
    s: &RunSettings,
    batch: &Batch,
    kind: AttemptKind,
    narrowing: Option<&Narrowing>,
    worker: usize,
    target: &Path,
    logs: &Path,
) -> Invocation {
    Invocation {
        program: s.dbt.clone(),
        args: build_args_narrowed(s, batch, kind, narrowing, target, logs),
        env: build_env(s, batch, worker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::EnvTemplate;
    use crate::plan::DbtCommand;
    use crate::plan::{PlanSpec, Step};
    use std::time::Duration;

    fn settings() -> RunSettings {
        RunSettings {
            project_dir: "/proj".into(),
            profiles_dir: Some("/profiles".into()),
            target: Some("ci".into()),
            dbt: "/venv/bin/dbt".into(),
            command: DbtCommand::Run,
            exclude: Some("tag:slow".into()),
            selector: None,
            extra_args: vec!["--full-refresh".into()],
            workers: 2,
            threads: 3,
            budget: 6,
            retries: 0,
            env: vec![EnvTemplate::parse("DUCKDB_PATH=/wh/{batch}.{worker}.duckdb").unwrap()],
            grace_int: Duration::from_secs(1),
            grace_term: Duration::from_secs(1),
            plan: PlanSpec {
                entries: Vec::new(),
                selects: vec![],
                backfill: None,
                step: Step::Days(1),
                start_var: "start_date".into(),
                end_var: "end_date".into(),
                base_vars: Default::default(),
                window_as: crate::plan::WindowAs::Vars,
            },
            allow_empty: false,
            breaker: None,
            budget_auto: false,
        }
    }

    fn batch() -> Batch {
        let mut vars = serde_json::Map::new();
        vars.insert("start_date".into(), "2024-01-05".into());
        Batch {
            id: "2024-01-05_tag-a".into(),
            label: "2024-01-05..2024-01-06 tag:a".into(),
            select: Some("tag:a".into()),
            window: None,
            vars,
            ..Batch::default()
        }
    }

    #[test]
    fn a_plan_file_entrys_own_options_replace_or_add_to_the_runs() {
        let s = settings();
        let b = Batch {
            id: "b1".into(),
            select: Some("tag:x".into()),
            own: crate::plan::BatchOptions {
                exclude: Some("tag:flaky".into()),
                selector: Some("nightly".into()),
                env: [("A".to_string(), "{batch}-{worker}".to_string())].into(),
                threads: Some(5),
                command: Some(DbtCommand::Test),
                args: vec!["--warn-error".into()],
            },
            ..Batch::default()
        };
        let inv = invocation(
            &s,
            &b,
            AttemptKind::Full,
            2,
            Path::new("/t"),
            Path::new("/l"),
        );
        let a = &inv.args;
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(a[0], "test", "the entry's command");
        assert_eq!(after("--threads"), "5");
        assert_eq!(after("--selector"), "nightly");
        assert_eq!(
            after("--exclude"),
            "tag:slow tag:flaky",
            "the run's, then the entry's"
        );
        assert_eq!(&a[a.len() - 2..], ["--full-refresh", "--warn-error"]);
        assert!(inv.env.contains(&("A".into(), "b1-2".into())));
    }

    #[test]
    fn full_attempt_argv() {
        let a = build_args(
            &settings(),
            &batch(),
            AttemptKind::Full,
            Path::new("/s/t"),
            Path::new("/s/l"),
        );
        assert_eq!(
            a.join(" "),
            "run --select tag:a --exclude tag:slow --vars {\"start_date\":\"2024-01-05\"} \
             --log-format json --threads 3 --target-path /s/t --log-path /s/l --project-dir /proj \
             --profiles-dir /profiles --target ci --full-refresh"
        );
    }

    #[test]
    fn retry_attempt_argv_has_no_selection_or_vars() {
        let a = build_args(
            &settings(),
            &batch(),
            AttemptKind::Retry,
            Path::new("/s/t"),
            Path::new("/s/l"),
        );
        assert_eq!(a[0], "retry");
        assert!(!a.contains(&"--select".to_string()));
        assert!(!a.contains(&"--vars".to_string()));
        let tp = a.iter().position(|x| x == "--target-path").unwrap();
        assert_eq!(a[tp + 1], "/s/t");
    }

    #[test]
    fn no_vars_flag_when_vars_are_empty() {
        let mut b = batch();
        b.vars.clear();
        let a = build_args(
            &settings(),
            &b,
            AttemptKind::Full,
            Path::new("/t"),
            Path::new("/l"),
        );
        assert!(!a.contains(&"--vars".to_string()));
    }

    #[test]
    fn model_list_parses_dbt_ls_json_lines() {
        let out = "{\"unique_id\": \"model.p.a\", \"name\": \"a\"}\nnoise\n{\"unique_id\": \"model.p.b\", \"name\": \"b\"}\n";
        let names: Vec<String> = parse_model_list(out).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b"]);
        let a = list_models_args(&settings(), &batch(), Path::new("/t"), Path::new("/l"));
        assert_eq!(
            &a[..5],
            ["ls", "--resource-type", "model", "--select", "tag:a"]
        );
        assert!(
            a.windows(2)
                .any(|w| w == ["--output-keys", "unique_id name relation_name depends_on"])
        );
    }

    #[test]
    fn env_has_templates_and_batch_tag() {
        let env = build_env(&settings(), &batch(), 2);
        assert!(env.contains(&("DUCKDB_PATH".into(), "/wh/2024-01-05_tag-a.2.duckdb".into())));
        assert!(env.contains(&(BATCH_ENV.into(), "2024-01-05_tag-a".into())));
    }
}
