//! From validated options to a running engine: the state dir (new or resumed), the
//! plan, and which batches a resume can skip.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::cli::RunArgs;
use crate::config::{self, RunSettings};
use crate::engine::{self, EngineHandle, EngineSetup, journal};
use crate::error::UsageResult;
use crate::plan::{self, Batch};
use crate::state_dir::StateDir;
use crate::usage;

pub struct PreparedRun {
    pub settings: RunSettings,
    pub plan: Vec<Batch>,
    pub state: StateDir,
    pub done: BTreeSet<String>,
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
        let mut done = BTreeSet::new();
        let mut changed = Vec::new();
        for b in &plan {
            if let Some((status, fp)) = past.last.get(&b.id)
                && *status == engine::BatchStatus::Succeeded
            {
                if fp.as_deref() == Some(engine::run::fingerprint(&settings, b).as_str()) {
                    done.insert(b.id.clone());
                } else {
                    changed.push(b.id.clone());
                }
            }
        }
        state.store_run(&config::normalized_for_storage(&merged))?;
        return Ok(PreparedRun {
            settings,
            plan,
            state,
            done,
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
        done: BTreeSet::new(),
        changed: Vec::new(),
    })
}

/// Starts the engine on a prepared run with real dbt processes.
pub fn start(p: PreparedRun) -> std::io::Result<EngineHandle> {
    engine::run::spawn(EngineSetup {
        settings: p.settings,
        plan: p.plan,
        state: p.state,
        done: p.done,
        launcher: Arc::new(engine::ProcessLauncher),
    })
}
