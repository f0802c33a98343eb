//! From validated options to a running engine: the state dir (new or resumed), the
//! plan, and which batches a resume can skip.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cli::RunArgs;
use crate::config::{self, RunSettings};
use crate::dbt::run_results;
use crate::engine::core::Prior;
use crate::engine::{self, EngineHandle, EngineSetup, journal};
use crate::error::UsageResult;
use crate::plan::{self, Batch};
use crate::state_dir::StateDir;
use crate::usage;

pub struct PreparedRun {
    pub settings: RunSettings,
    pub plan: Vec<Batch>,
    pub state: StateDir,
    /// What a resumed journal says about batches, by id.
    pub prior: BTreeMap<String, Prior>,
    /// Batches a resume reruns because what they run changed.
    pub changed: Vec<String>,
}

/// Validates everything and sets up the state dir. Nothing is started yet.
pub fn prepare(given: &RunArgs) -> UsageResult<PreparedRun> {
    if let Some(dir) = &given.resume {
        let (state, stored) = StateDir::open_for_resume(dir)?;
        let merged = config::merge_resume(&stored.args, given);
        let settings = RunSettings::from_args(&merged)?;
        let plan = plan::build(&settings.plan);
        let past = journal::read(&state.journal_path()).map_err(|e| usage!("--resume: {e}"))?;
        for batch in engine::sweep::sweep(&past.unfinished) {
            eprintln!(
                "dbt-herd: killed a dbt process of batch {batch} left running by the previous run"
            );
        }
        let mut prior = BTreeMap::new();
        let mut changed = Vec::new();
        for b in &plan {
            let Some(p) = past.last.get(&b.id) else {
                continue;
            };
            let same = p.fp.as_deref() == Some(engine::run::fingerprint(&settings, b).as_str());
            if !same {
                // What it runs changed: start afresh (new attempts still numbered on).
                if p.status == engine::BatchStatus::Succeeded {
                    changed.push(b.id.clone());
                }
                prior.insert(
                    b.id.clone(),
                    Prior {
                        attempts: p.attempts,
                        stopped: true,
                        ..Default::default()
                    },
                );
                continue;
            }
            // The last attempt's own results, if its target dir still holds them,
            // let a failed batch go on with `dbt retry`.
            let results = p.last_invocation.as_deref().and_then(|inv| {
                run_results::read(&state.target_dir(&b.id).join("run_results.json"), Some(inv)).ok()
            });
            prior.insert(
                b.id.clone(),
                Prior {
                    succeeded: p.status == engine::BatchStatus::Succeeded,
                    attempts: p.attempts,
                    results,
                    stopped: matches!(
                        p.status,
                        engine::BatchStatus::Cancelled | engine::BatchStatus::Running
                    ),
                },
            );
        }
        state.store_run(&config::normalized_for_storage(&merged))?;
        return Ok(PreparedRun {
            settings,
            plan,
            state,
            prior,
            changed,
        });
    }
    let settings = RunSettings::from_args(given)?;
    let plan = plan::build(&settings.plan);
    let root = config::absolute(
        &given
            .state_dir
            .clone()
            .unwrap_or_else(StateDir::default_path),
    );
    if root.join(crate::state_dir::RUN_FILE).exists() {
        return Err(usage!(
            "state dir '{}' already holds a run; continue it with --resume {}",
            root.display(),
            root.display()
        ));
    }
    let state = StateDir::new(root);
    state.create(&config::normalized_for_storage(given))?;
    Ok(PreparedRun {
        settings,
        plan,
        state,
        prior: BTreeMap::new(),
        changed: Vec::new(),
    })
}

/// Starts the engine on a prepared run with real dbt processes.
pub fn start(p: PreparedRun) -> std::io::Result<EngineHandle> {
    engine::run::spawn(EngineSetup {
        settings: p.settings,
        plan: p.plan,
        state: p.state,
        prior: p.prior,
        launcher: Arc::new(engine::ProcessLauncher),
    })
}
