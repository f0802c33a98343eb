//! Parsing less on the cold path. Each batch has its own target dir, so each
//! would parse the project from nothing; dbt accepts a partial parse file made
//! elsewhere when the vars, profile and target match. So a batch's target dir
//! starts from a copy of one that matches: the partial parse of the last batch
//! its worker ran with the same vars (the profile is the worker's: `{worker}`
//! in `--env` changes it), or, when every worker has the same profile, one
//! `dbt parse` made before the first batch.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::RunSettings;
use crate::dbt::argv::{self, Invocation};
use crate::engine::process;
use crate::plan::Batch;

/// A partial parse file, and the vars it was made with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedParse {
    pub file: PathBuf,
    pub vars: Map<String, Value>,
}

impl SharedParse {
    /// The partial parse files resolving the plan left (see `PlanReport::parses`).
    pub fn from_resolution(parses: &[(PathBuf, Map<String, Value>)]) -> Vec<SharedParse> {
        parses
            .iter()
            .map(|(file, vars)| SharedParse {
                file: file.clone(),
                vars: vars.clone(),
            })
            .collect()
    }

    /// Starts `target` (a dbt target dir) from the file, unless it has a
    /// partial parse of its own already (a worker's earlier parse).
    pub fn seed(&self, target: &Path) {
        let dest = target.join("partial_parse.msgpack");
        if !dest.exists() {
            let _ = std::fs::create_dir_all(target).and_then(|()| std::fs::copy(&self.file, &dest));
        }
    }

    /// The file to start `batch`'s target dir from, if it fits the batch.
    pub fn for_batch(&self, batch: &Batch) -> Option<&Path> {
        (batch.vars == self.vars).then_some(self.file.as_path())
    }
}

/// Parses once with the first batch's vars, when at least two batches share
/// them and every worker has the same profile.
pub(crate) async fn shared_parse(
    settings: &RunSettings,
    plan: &[Batch],
    dir: &Path,
    made: &[SharedParse],
) -> Option<SharedParse> {
    let first = plan.first()?;
    let uniform = !settings
        .env
        .iter()
        .any(|t| t.value.contains("{worker}") || t.value.contains("{batch}"));
    if !uniform || plan.iter().filter(|b| b.vars == first.vars).count() < 2 {
        return None;
    }
    let target = dir.join("target");
    let file = target.join("partial_parse.msgpack");
    if let Some(seed) = made.iter().find(|p| p.vars == first.vars) {
        // Resolving the plan already parsed with these vars and this profile
        // (`dbt ls`): its file is the one this parse would make.
        let copied =
            std::fs::create_dir_all(&target).and_then(|()| std::fs::copy(&seed.file, &file));
        if copied.is_ok() {
            return Some(SharedParse {
                file,
                vars: first.vars.clone(),
            });
        }
    }
    let mut args = vec!["parse".to_string()];
    if !first.vars.is_empty() {
        args.extend([
            "--vars".to_string(),
            Value::Object(first.vars.clone()).to_string(),
        ]);
    }
    args.extend(argv::location_args(settings, &target, &dir.join("logs")));
    let inv = Invocation {
        program: settings.dbt.clone(),
        args,
        env: argv::build_env(settings, first, 1),
    };
    let g = process::spawn_in_group(&inv).ok()?;
    let pgid = g.pgid;
    let out = g.child.wait_with_output().await;
    process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
    process::unregister(pgid);
    match out {
        Ok(o) if o.status.success() && file.is_file() => Some(SharedParse {
            file,
            vars: first.vars.clone(),
        }),
        _ => {
            eprintln!("dbt-herd: the shared parse failed; each batch parses on its own");
            None
        }
    }
}
