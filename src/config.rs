//! From typed command-line options to validated run settings: the checks that
//! span several options or need the file system (the project, the dbt
//! executable, threads against the budget). Every bad value becomes a
//! `UsageError` naming it (exit 2); nothing here spawns a process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{EnvTemplate, RunArgs};
use crate::error::UsageResult;
use crate::plan::DbtCommand;
use crate::plan::{self, PlanSpec, Step};
use crate::secret;
use crate::usage;

/// Everything an engine needs to run a plan, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSettings {
    pub project_dir: PathBuf,
    pub profiles_dir: Option<PathBuf>,
    pub target: Option<String>,
    pub dbt: PathBuf,
    pub command: DbtCommand,
    pub exclude: Option<String>,
    pub selector: Option<String>,
    pub extra_args: Vec<String>,
    pub workers: usize,
    pub threads: u32,
    pub budget: u32,
    pub retries: u32,
    pub env: Vec<EnvTemplate>,
    pub grace_int: Duration,
    pub grace_term: Duration,
    pub plan: PlanSpec,
    /// Batches whose selection matches no node run anyway (else the plan is refused).
    pub allow_empty: bool,
    /// Attempts failing alike that pause the queue; `None`: never.
    pub breaker: Option<usize>,
    /// `--budget auto`: `budget` is to be asked of the server before the run.
    pub budget_auto: bool,
}

/// An absolute version of `p` (relative to the current directory), without requiring it to exist.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Finds the dbt executable: a path is checked as given, a bare name is looked up on PATH.
pub(crate) fn resolve_executable(p: &Path) -> UsageResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |c: &Path| {
        c.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let shown = p.display();
    if p.components().count() > 1 || p.is_absolute() {
        if !p.exists() {
            return Err(usage!("dbt executable '{shown}' does not exist"));
        }
        if !is_exec(p) {
            return Err(usage!("dbt executable '{shown}' is not an executable file"));
        }
        return Ok(absolute(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(p))
        .find(|c| is_exec(c))
        .ok_or_else(|| {
            usage!("dbt executable '{shown}' not found on PATH (give its location with --dbt PATH)")
        })
}

/// The dbt to use when `--dbt` is not given, and where it was found: beside
/// dbt-herd's own executable first (a `pip install dbt-herd` puts both in one
/// venv's bin), then on PATH.
pub(crate) fn default_dbt() -> UsageResult<(PathBuf, &'static str)> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("dbt")))
        .filter(|c| resolve_executable(c).is_ok());
    match beside {
        Some(dbt) => Ok((dbt, "beside dbt-herd")),
        None => Ok((resolve_executable(Path::new("dbt"))?, "on PATH")),
    }
}

/// Threads per batch and the budget, each derived from the other when not given.
fn threads_and_budget(
    workers: u32,
    threads: Option<u32>,
    budget: Option<u32>,
) -> UsageResult<(u32, u32)> {
    let (threads, budget) = match (threads, budget) {
        (Some(t), Some(b)) => (t, b),
        (Some(t), None) => (
            t,
            t.checked_mul(workers)
                .ok_or_else(|| usage!("invalid --threads {t}: threads × workers is too large"))?,
        ),
        (None, Some(b)) => ((b / workers).max(1), b),
        (None, None) => (1, workers),
    };
    if threads > budget {
        return Err(usage!(
            "invalid --threads {threads}: above --budget {budget}, so no batch could ever start"
        ));
    }
    Ok((threads, budget))
}

fn grace(secs: Option<f64>, default: u64) -> Duration {
    secs.map_or(Duration::from_secs(default), Duration::from_secs_f64)
}

impl RunSettings {
    /// Validates options into settings. Checks the file system for the project
    /// and the dbt executable, so that mistakes surface before any batch runs.
    pub fn from_args(a: &RunArgs) -> UsageResult<Self> {
        let project_dir = absolute(a.project_dir.as_deref().unwrap_or(Path::new(".")));
        if !project_dir.is_dir() {
            return Err(usage!(
                "project dir '{}' does not exist or is not a directory",
                project_dir.display()
            ));
        }
        if !project_dir.join("dbt_project.yml").is_file() {
            return Err(usage!(
                "project dir '{}' has no dbt_project.yml",
                project_dir.display()
            ));
        }
        let profiles_dir = match &a.profiles_dir {
            Some(p) if !p.is_dir() => {
                return Err(usage!("profiles dir '{}' does not exist", p.display()));
            }
            Some(p) => Some(absolute(p)),
            None => None,
        };
        let dbt = match a.dbt.as_deref() {
            Some(p) => resolve_executable(p)?,
            None => default_dbt()?.0,
        };
        let workers = a.workers.unwrap_or(4);
        let budget_auto = a.budget == Some(0);
        let asked = a.budget.filter(|&b| b > 0);
        let (threads, budget) = threads_and_budget(workers, a.threads, asked)?;
        let entries = match &a.plan {
            Some(path) => crate::plan::file::load(path)?,
            None => Vec::new(),
        };
        if let Some(e) = entries
            .iter()
            .find(|e| e.threads.is_some_and(|t| t > budget))
        {
            return Err(usage!(
                "invalid --plan: entry {} wants {} threads, more than the budget of {budget} connections",
                e.id,
                e.threads.unwrap_or_default()
            ));
        }
        if let (Some(step), None) = (a.step, a.backfill) {
            return Err(usage!("--step '{step}' needs --backfill FROM..TO"));
        }
        if a.window_as == Some(crate::plan::WindowAs::EventTime) && a.backfill.is_none() {
            return Err(usage!("--window-as event-time needs --backfill FROM..TO"));
        }
        let base_vars = plan::parse_vars(a.vars.as_deref().unwrap_or(""))?;
        Ok(Self {
            project_dir,
            profiles_dir,
            target: a.target.clone(),
            dbt,
            command: a.command.unwrap_or(DbtCommand::Build),
            exclude: a.exclude.clone(),
            selector: a.selector.clone(),
            extra_args: a.extra.clone(),
            workers: workers as usize,
            threads,
            budget,
            retries: a.retries.unwrap_or(0),
            env: a.env.clone(),
            grace_int: grace(a.grace_int, 10),
            grace_term: grace(a.grace_term, 5),
            plan: PlanSpec {
                entries,
                selects: a.select.clone(),
                backfill: a.backfill,
                step: a.step.unwrap_or(Step::Days(1)),
                start_var: a.start_var.clone().unwrap_or_else(|| "start_date".into()),
                end_var: a.end_var.clone().unwrap_or_else(|| "end_date".into()),
                base_vars,
                window_as: a.window_as.unwrap_or_default(),
            },
            allow_empty: a.allow_empty,
            budget_auto,
            breaker: match a.breaker {
                Some(0) => None,
                Some(k) => Some(k as usize),
                None => Some(crate::engine::BREAKER_DEFAULT),
            },
        })
    }
}

/// The run's options as stored in the state dir, so `--resume` can rebuild the same
/// run; paths are made absolute first so the stored run works from any directory.
pub(crate) fn normalized_for_storage(a: &RunArgs) -> RunArgs {
    let mut s = a.clone();
    s.project_dir = Some(absolute(a.project_dir.as_deref().unwrap_or(Path::new("."))));
    s.profiles_dir = a.profiles_dir.as_deref().map(absolute);
    s.plan = a.plan.as_deref().map(absolute);
    s.dbt = a.dbt.as_ref().map(|p| {
        if p.components().count() > 1 {
            absolute(p)
        } else {
            p.clone()
        }
    });
    s.state_dir = None;
    s.resume = None;
    s.headless = false;
    // A secret's value never reaches the state dir: a resume takes it from its
    // own environment again (`refill_secrets`).
    for e in &mut s.env {
        if secret::is_secret_key(&e.key) {
            e.value = secret::MASK.to_string();
        }
    }
    s
}

/// The secrets a resumed run's stored options hold as masks, taken from the
/// resuming process's environment. A missing one is a usage error naming it.
pub(crate) fn refill_secrets(args: &mut RunArgs) -> UsageResult<()> {
    for e in &mut args.env {
        if secret::is_secret_key(&e.key) && e.value == secret::MASK {
            e.value = std::env::var(&e.key).map_err(|_| {
                usage!(
                    "--resume: the secret --env {} is not stored in the state dir; set {} in the environment (or pass --env {}=...)",
                    e.key,
                    e.key,
                    e.key
                )
            })?;
        }
    }
    Ok(())
}

/// The stored `--env` with each given one put in its key's place (or added):
/// `--resume DIR --env KEY=VALUE` changes that key and keeps the rest.
fn merge_env(stored: &[EnvTemplate], given: &[EnvTemplate]) -> Vec<EnvTemplate> {
    let mut out = stored.to_vec();
    for g in given {
        match out.iter_mut().find(|e| e.key == g.key) {
            Some(e) => e.clone_from(g),
            None => out.push(g.clone()),
        }
    }
    out
}

/// What a resume changes of the stored options, one phrase each (`--workers
/// 4 → 2`, `--env DUCKDB_PATH`): values of `--env` are not repeated (they may
/// be secrets), nor the options that only say how this invocation runs.
pub(crate) fn resume_changes(stored: &RunArgs, merged: &RunArgs) -> Vec<String> {
    const NOT_STORED: &[&str] = &[
        "state_dir",
        "resume",
        "headless",
        "no_mouse",
        "detach",
        "config",
        "print_config",
        "dry_run",
        "json",
        "on_hangup",
        "env",
    ];
    let (Ok(serde_json::Value::Object(before)), Ok(serde_json::Value::Object(after))) =
        (serde_json::to_value(stored), serde_json::to_value(merged))
    else {
        return Vec::new();
    };
    let shown = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "(not set)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut changes: Vec<String> = after
        .iter()
        .filter(|(k, v)| !NOT_STORED.contains(&k.as_str()) && before.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "--{} {} → {}",
                k.replace('_', "-"),
                shown(before.get(k)),
                shown(Some(v))
            )
        })
        .collect();
    for e in &merged.env {
        match stored.env.iter().find(|s| s.key == e.key) {
            Some(s) if s.value == e.value => {}
            Some(_) => changes.push(format!("--env {} (changed)", e.key)),
            None => changes.push(format!("--env {} (added)", e.key)),
        }
    }
    changes
}

/// Options given with `--resume` override the stored ones, field by field
/// (`--env` key by key).
pub(crate) fn merge_resume(stored: &RunArgs, given: &RunArgs) -> RunArgs {
    fn pick<T: Clone>(given: Option<&T>, stored: Option<&T>) -> Option<T> {
        given.or(stored).cloned()
    }
    fn pick_vec<T: Clone>(given: &[T], stored: &[T]) -> Vec<T> {
        if given.is_empty() {
            stored.to_vec()
        } else {
            given.to_vec()
        }
    }
    RunArgs {
        project_dir: pick(given.project_dir.as_ref(), stored.project_dir.as_ref()),
        profiles_dir: pick(given.profiles_dir.as_ref(), stored.profiles_dir.as_ref()),
        target: pick(given.target.as_ref(), stored.target.as_ref()),
        dbt: pick(given.dbt.as_ref(), stored.dbt.as_ref()),
        command: given.command.or(stored.command),
        select: pick_vec(&given.select, &stored.select),
        exclude: pick(given.exclude.as_ref(), stored.exclude.as_ref()),
        selector: pick(given.selector.as_ref(), stored.selector.as_ref()),
        backfill: given.backfill.or(stored.backfill),
        step: given.step.or(stored.step),
        start_var: pick(given.start_var.as_ref(), stored.start_var.as_ref()),
        end_var: pick(given.end_var.as_ref(), stored.end_var.as_ref()),
        vars: pick(given.vars.as_ref(), stored.vars.as_ref()),
        workers: given.workers.or(stored.workers),
        threads: given.threads.or(stored.threads),
        budget: given.budget.or(stored.budget),
        retries: given.retries.or(stored.retries),
        breaker: given.breaker.or(stored.breaker),
        env: merge_env(&stored.env, &given.env),
        shared_warehouse: given.shared_warehouse.or(stored.shared_warehouse),
        mode: given.mode.or(stored.mode),
        window_as: given.window_as.or(stored.window_as),
        recycle: given.recycle.or(stored.recycle),
        allow_empty: given.allow_empty || stored.allow_empty,
        state_dir: None,
        resume: given.resume.clone(),
        headless: given.headless,
        no_mouse: given.no_mouse,
        plan: pick(given.plan.as_ref(), stored.plan.as_ref()),
        detach: given.detach,
        config: given.config.clone(),
        print_config: given.print_config,
        dry_run: given.dry_run,
        json: given.json,
        on_hangup: given.on_hangup,
        grace_int: given.grace_int.or(stored.grace_int),
        grace_term: given.grace_term.or(stored.grace_term),
        extra: pick_vec(&given.extra, &stored.extra),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// A project dir and an executable "dbt" that validation accepts.
    fn fixture() -> (tempfile::TempDir, RunArgs) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbt_project.yml"), "name: x\n").unwrap();
        let dbt = dir.path().join("dbt");
        std::fs::write(&dbt, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&dbt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args = RunArgs {
            project_dir: Some(dir.path().to_path_buf()),
            dbt: Some(dbt),
            ..Default::default()
        };
        (dir, args)
    }

    fn err(a: &RunArgs) -> String {
        RunSettings::from_args(a).unwrap_err().0
    }

    /// The one-line error for a `run` command line: from the command-line parser,
    /// or else from validation, as `main` prints them.
    fn err_of(fixture: &RunArgs, args: &[&str]) -> String {
        let project = fixture.project_dir.as_ref().unwrap().display().to_string();
        let dbt = fixture.dbt.as_ref().unwrap().display().to_string();
        let mut argv = vec!["dbt-herd", "run"];
        if !args.contains(&"--project-dir") {
            argv.extend(["--project-dir", &project]);
        }
        if !args.contains(&"--dbt") {
            argv.extend(["--dbt", &dbt]);
        }
        argv.extend(args);
        match Cli::try_parse_from(argv) {
            Err(e) => crate::entry::usage_line(&e),
            Ok(Cli {
                command: Command::Run(a),
            }) => err(&a),
            Ok(_) => panic!("not a run"),
        }
    }

    #[test]
    fn defaults() {
        let (_d, a) = fixture();
        let s = RunSettings::from_args(&a).unwrap();
        assert_eq!((s.workers, s.threads, s.budget, s.retries), (4, 1, 4, 0));
        assert_eq!(s.command, DbtCommand::Build);
        assert_eq!(s.plan.start_var, "start_date");
    }

    #[test]
    fn threads_derive_from_budget_and_budget_from_threads() {
        let (_d, mut a) = fixture();
        a.workers = Some(3);
        a.budget = Some(10);
        let s = RunSettings::from_args(&a).unwrap();
        assert_eq!((s.threads, s.budget), (3, 10));
        a.budget = None;
        a.threads = Some(2);
        let s = RunSettings::from_args(&a).unwrap();
        assert_eq!((s.threads, s.budget), (2, 6));
        a.workers = Some(8);
        a.threads = None;
        a.budget = Some(4);
        assert_eq!(RunSettings::from_args(&a).unwrap().threads, 1);
    }

    #[test]
    fn bad_values_name_themselves() {
        let (_d, a) = fixture();
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--workers", "0"], "--workers '0'"),
            (vec!["--workers", "four"], "--workers 'four'"),
            (vec!["--threads", "5", "--budget", "4"], "--threads 5"),
            (
                vec!["--step", "0d", "--backfill", "2024-01-01..2024-01-02"],
                "'0d'",
            ),
            (
                vec!["--backfill", "2024-02-01..2024-01-01"],
                "2024-02-01..2024-01-01",
            ),
            (vec!["--vars", "{a: ["], "{a: ["),
            (vec!["--command", "compile"], "'compile'"),
            (vec!["--env", "NOEQUALS"], "'NOEQUALS'"),
            (vec!["--project-dir", "/no/such/dir"], "/no/such/dir"),
            (vec!["--dbt", "/no/such/dbt"], "/no/such/dbt"),
            (vec!["--dbt", "no-such-dbt-on-path"], "no-such-dbt-on-path"),
        ];
        for (args, needle) in cases {
            let e = err_of(&a, &args);
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn non_executable_dbt_is_rejected() {
        let (d, mut a) = fixture();
        let f = d.path().join("not-exec");
        std::fs::write(&f, "x").unwrap();
        a.dbt = Some(f);
        assert!(err(&a).contains("not an executable"));
    }

    #[test]
    fn env_templates_render_batch_and_worker() {
        let t = EnvTemplate::parse("DUCKDB_PATH=/wh/{batch}-{worker}.duckdb").unwrap();
        assert_eq!(t.render("2024-01-01", 3), "/wh/2024-01-01-3.duckdb");
        assert!(EnvTemplate::parse("1X=y").is_err());
        assert_eq!(EnvTemplate::parse("A=b=c").unwrap().value, "b=c");
    }

    #[test]
    fn resume_overrides_only_given_options() {
        let window = crate::plan::parse_backfill("2024-01-01..2024-01-05").unwrap();
        let stored = RunArgs {
            workers: Some(4),
            backfill: Some(window),
            select: vec!["tag:a".into()],
            ..Default::default()
        };
        let given = RunArgs {
            workers: Some(2),
            ..Default::default()
        };
        let m = merge_resume(&stored, &given);
        assert_eq!(m.workers, Some(2));
        assert_eq!(m.backfill, Some(window));
        assert_eq!(m.select, ["tag:a"]);
    }

    fn env(kv: &str) -> EnvTemplate {
        EnvTemplate::parse(kv).unwrap()
    }

    #[test]
    fn a_resume_env_overrides_its_key_and_keeps_the_others_and_says_what_changed() {
        let stored = RunArgs {
            workers: Some(4),
            env: vec![env("DUCKDB_PATH=/wh/{worker}.duckdb"), env("SLOW=1")],
            ..Default::default()
        };
        let given = RunArgs {
            workers: Some(2),
            env: vec![env("SLOW=5"), env("EXTRA=x")],
            ..Default::default()
        };
        let m = merge_resume(&stored, &given);
        let kv: Vec<String> = m
            .env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect();
        assert_eq!(kv, ["DUCKDB_PATH=/wh/{worker}.duckdb", "SLOW=5", "EXTRA=x"]);
        let changes = resume_changes(&stored, &m);
        assert_eq!(
            changes,
            [
                "--workers 4 → 2",
                "--env SLOW (changed)",
                "--env EXTRA (added)"
            ]
        );
        assert!(
            resume_changes(&stored, &merge_resume(&stored, &RunArgs::default())).is_empty(),
            "nothing given, nothing changed"
        );
    }
}
