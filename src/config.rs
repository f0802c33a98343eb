//! From command-line words to validated run settings. Every bad value becomes a
//! `UsageError` naming it (exit 2); nothing here spawns a process.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;
use crate::error::{UsageError, UsageResult};
use crate::plan::{self, PlanSpec, Step};
use crate::usage;

/// The dbt subcommand every batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbtCommand {
    Build,
    Run,
    Test,
    Seed,
    Snapshot,
}

impl FromStr for DbtCommand {
    type Err = UsageError;
    fn from_str(s: &str) -> UsageResult<Self> {
        match s {
            "build" => Ok(Self::Build),
            "run" => Ok(Self::Run),
            "test" => Ok(Self::Test),
            "seed" => Ok(Self::Seed),
            "snapshot" => Ok(Self::Snapshot),
            _ => Err(usage!(
                "invalid --command '{s}': expected build, run, test, seed or snapshot"
            )),
        }
    }
}

impl fmt::Display for DbtCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Build => "build",
            Self::Run => "run",
            Self::Test => "test",
            Self::Seed => "seed",
            Self::Snapshot => "snapshot",
        })
    }
}

/// `--env KEY=VALUE`, where VALUE may hold `{batch}` and `{worker}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvTemplate {
    pub key: String,
    pub value: String,
}

impl EnvTemplate {
    pub fn parse(s: &str) -> UsageResult<Self> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| usage!("invalid --env '{s}': expected KEY=VALUE"))?;
        let valid_key = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(usage!(
                "invalid --env '{s}': '{key}' is not a valid variable name"
            ));
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// The value for one batch on one worker slot.
    pub fn render(&self, batch_id: &str, worker: usize) -> String {
        self.value
            .replace("{batch}", batch_id)
            .replace("{worker}", &worker.to_string())
    }
}

/// Everything an engine needs to run a plan, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
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
}

fn parse_count(flag: &str, s: &str, min: u64) -> UsageResult<u64> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| usage!("invalid {flag} '{s}': expected a whole number"))?;
    if n < min {
        return Err(usage!("invalid {flag} '{s}': must be at least {min}"));
    }
    Ok(n)
}

fn parse_secs(flag: &str, s: &str) -> UsageResult<Duration> {
    let secs: f64 = s
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| usage!("invalid {flag} '{s}': expected seconds, e.g. 5 or 0.5"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// An absolute version of `p` (relative to the current directory), without requiring it to exist.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Finds the dbt executable: a path is checked as given, a bare name is looked up on PATH.
pub fn resolve_executable(p: &Path) -> UsageResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |c: &Path| {
        c.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
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

impl RunSettings {
    /// Validates command-line words into settings. Checks the file system for the
    /// project and the dbt executable, so that mistakes surface before any batch runs.
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
        let dbt = resolve_executable(a.dbt.as_deref().unwrap_or(Path::new("dbt")))?;
        let command = a.command.as_deref().unwrap_or("build").parse()?;

        let workers = a
            .workers
            .as_deref()
            .map(|s| parse_count("--workers", s, 1))
            .transpose()?
            .unwrap_or(4) as usize;
        let threads_given = a
            .threads
            .as_deref()
            .map(|s| parse_count("--threads", s, 1))
            .transpose()?;
        let budget_given = a
            .budget
            .as_deref()
            .map(|s| parse_count("--budget", s, 1))
            .transpose()?;
        let (threads, budget) = match (threads_given, budget_given) {
            (Some(t), Some(b)) => (t, b),
            (Some(t), None) => (t, t * workers as u64),
            (None, Some(b)) => ((b / workers as u64).max(1), b),
            (None, None) => (1, workers as u64),
        };
        if threads > budget {
            return Err(usage!(
                "invalid --threads {threads}: above --budget {budget}, so no batch could ever start"
            ));
        }
        let to_u32 = |flag: &str, n: u64| {
            u32::try_from(n).map_err(|_| usage!("invalid {flag} '{n}': too large"))
        };
        let retries = a
            .retries
            .as_deref()
            .map(|s| parse_count("--retries", s, 0))
            .transpose()?
            .unwrap_or(0);

        let backfill = a
            .backfill
            .as_deref()
            .map(plan::parse_backfill)
            .transpose()?;
        let step: Step = a.step.as_deref().unwrap_or("1d").parse()?;
        if a.step.is_some() && backfill.is_none() {
            return Err(usage!(
                "--step '{}' needs --backfill FROM..TO",
                a.step.as_deref().unwrap_or("")
            ));
        }
        let base_vars = plan::parse_vars(a.vars.as_deref().unwrap_or(""))?;
        for s in &a.select {
            if s.trim().is_empty() {
                return Err(usage!("invalid --select '{s}': empty selector"));
            }
        }
        let env = a
            .env
            .iter()
            .map(|e| EnvTemplate::parse(e))
            .collect::<Result<_, _>>()?;

        Ok(Self {
            project_dir,
            profiles_dir,
            target: a.target.clone(),
            dbt,
            command,
            exclude: a.exclude.clone(),
            selector: a.selector.clone(),
            extra_args: a.extra.clone(),
            workers,
            threads: to_u32("--threads", threads)?,
            budget: to_u32("--budget", budget)?,
            retries: to_u32("--retries", retries)?,
            env,
            grace_int: a
                .grace_int
                .as_deref()
                .map(|s| parse_secs("--grace-int", s))
                .transpose()?
                .unwrap_or(Duration::from_secs(10)),
            grace_term: a
                .grace_term
                .as_deref()
                .map(|s| parse_secs("--grace-term", s))
                .transpose()?
                .unwrap_or(Duration::from_secs(5)),
            plan: PlanSpec {
                selects: a.select.clone(),
                backfill,
                step,
                start_var: a.start_var.clone().unwrap_or_else(|| "start_date".into()),
                end_var: a.end_var.clone().unwrap_or_else(|| "end_date".into()),
                base_vars,
            },
        })
    }
}

/// The run's options as stored in the state dir, so `--resume` can rebuild the same
/// run; paths are made absolute first so the stored run works from any directory.
pub fn normalized_for_storage(a: &RunArgs) -> RunArgs {
    let mut s = a.clone();
    s.project_dir = Some(absolute(a.project_dir.as_deref().unwrap_or(Path::new("."))));
    s.profiles_dir = a.profiles_dir.as_deref().map(absolute);
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
    s
}

/// Options given with `--resume` override the stored ones, field by field.
pub fn merge_resume(stored: &RunArgs, given: &RunArgs) -> RunArgs {
    fn pick<T: Clone>(given: &Option<T>, stored: &Option<T>) -> Option<T> {
        given.clone().or_else(|| stored.clone())
    }
    fn pick_vec(given: &[String], stored: &[String]) -> Vec<String> {
        if given.is_empty() {
            stored.to_vec()
        } else {
            given.to_vec()
        }
    }
    RunArgs {
        project_dir: pick(&given.project_dir, &stored.project_dir),
        profiles_dir: pick(&given.profiles_dir, &stored.profiles_dir),
        target: pick(&given.target, &stored.target),
        dbt: pick(&given.dbt, &stored.dbt),
        command: pick(&given.command, &stored.command),
        select: pick_vec(&given.select, &stored.select),
        exclude: pick(&given.exclude, &stored.exclude),
        selector: pick(&given.selector, &stored.selector),
        backfill: pick(&given.backfill, &stored.backfill),
        step: pick(&given.step, &stored.step),
        start_var: pick(&given.start_var, &stored.start_var),
        end_var: pick(&given.end_var, &stored.end_var),
        vars: pick(&given.vars, &stored.vars),
        workers: pick(&given.workers, &stored.workers),
        threads: pick(&given.threads, &stored.threads),
        budget: pick(&given.budget, &stored.budget),
        retries: pick(&given.retries, &stored.retries),
        env: pick_vec(&given.env, &stored.env),
        state_dir: None,
        resume: given.resume.clone(),
        headless: given.headless,
        grace_int: pick(&given.grace_int, &stored.grace_int),
        grace_term: pick(&given.grace_term, &stored.grace_term),
        extra: pick_vec(&given.extra, &stored.extra),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        a.workers = Some("3".into());
        a.budget = Some("10".into());
        let s = RunSettings::from_args(&a).unwrap();
        assert_eq!((s.threads, s.budget), (3, 10));
        a.budget = None;
        a.threads = Some("2".into());
        let s = RunSettings::from_args(&a).unwrap();
        assert_eq!((s.threads, s.budget), (2, 6));
        a.workers = Some("8".into());
        a.threads = None;
        a.budget = Some("4".into());
        assert_eq!(RunSettings::from_args(&a).unwrap().threads, 1);
    }

    #[test]
    fn bad_values_name_themselves() {
        let (_d, a) = fixture();
        let cases: Vec<(RunArgs, &str)> = vec![
            (
                RunArgs {
                    workers: Some("0".into()),
                    ..a.clone()
                },
                "--workers '0'",
            ),
            (
                RunArgs {
                    workers: Some("four".into()),
                    ..a.clone()
                },
                "--workers 'four'",
            ),
            (
                RunArgs {
                    threads: Some("5".into()),
                    budget: Some("4".into()),
                    ..a.clone()
                },
                "--threads 5",
            ),
            (
                RunArgs {
                    step: Some("0d".into()),
                    backfill: Some("2024-01-01..2024-01-02".into()),
                    ..a.clone()
                },
                "'0d'",
            ),
            (
                RunArgs {
                    backfill: Some("2024-02-01..2024-01-01".into()),
                    ..a.clone()
                },
                "2024-02-01..2024-01-01",
            ),
            (
                RunArgs {
                    vars: Some("{a: [".into()),
                    ..a.clone()
                },
                "{a: [",
            ),
            (
                RunArgs {
                    command: Some("compile".into()),
                    ..a.clone()
                },
                "'compile'",
            ),
            (
                RunArgs {
                    env: vec!["NOEQUALS".into()],
                    ..a.clone()
                },
                "'NOEQUALS'",
            ),
            (
                RunArgs {
                    project_dir: Some("/no/such/dir".into()),
                    ..a.clone()
                },
                "/no/such/dir",
            ),
            (
                RunArgs {
                    dbt: Some("/no/such/dbt".into()),
                    ..a.clone()
                },
                "/no/such/dbt",
            ),
            (
                RunArgs {
                    dbt: Some("no-such-dbt-on-path".into()),
                    ..a.clone()
                },
                "no-such-dbt-on-path",
            ),
        ];
        for (args, needle) in cases {
            let e = err(&args);
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
        let stored = RunArgs {
            workers: Some("4".into()),
            backfill: Some("2024-01-01..2024-01-05".into()),
            select: vec!["tag:a".into()],
            ..Default::default()
        };
        let given = RunArgs {
            workers: Some("2".into()),
            ..Default::default()
        };
        let m = merge_resume(&stored, &given);
        assert_eq!(m.workers.as_deref(), Some("2"));
        assert_eq!(m.backfill.as_deref(), Some("2024-01-01..2024-01-05"));
        assert_eq!(m.select, ["tag:a"]);
    }
}
