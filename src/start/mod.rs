//! From validated options to a running engine: the state dir (new or resumed), the
//! plan, and which batches a resume can skip.

use std::collections::BTreeMap;

use crate::cli::RunArgs;
use crate::config::{self, RunSettings};
use crate::dbt::run_results;
use crate::engine::journal::{self, JournalState};
use crate::engine::parse::{SharedParse, shared_parse};
use crate::engine::protocol::Prior;
use crate::engine::warm::check::{self, Mode, ModeChoice, Runner};
use crate::engine::{self, BatchStatus, EngineHandle, EngineSetup};
use crate::graph::resolve::{self, PlanReport};
use crate::graph::reuse;
use crate::plan::{self, Batch};
use crate::state_dir::StateDir;
use crate::state_lock;
use crate::usage;

mod budget;
mod preparing;
use preparing::PrepClock;
pub(crate) use preparing::launch;

pub(crate) struct PreparedRun {
    pub settings: RunSettings,
    pub plan: Vec<Batch>,
    pub state: StateDir,
    /// The journal of the run being resumed, if it is one.
    past: Option<JournalState>,
    shared: crate::cli::SharedWarehouse,
    /// What resolving the plan decided (`resolve` fills it in).
    report: Option<PlanReport>,
    mode: crate::cli::ModeArg,
    recycle: u32,
    /// Warm workers or cold processes (`choose_mode` fills it in).
    runner: Option<Runner>,
    /// A cold run's one parse for the batches that share vars.
    shared_parse: Option<SharedParse>,
    /// The launch, and each phase of the preparation as it ends.
    clock: PrepClock,
}

/// Validates everything and sets up the state dir. Nothing is started yet.
pub(crate) fn prepare(given: &RunArgs) -> color_eyre::Result<PreparedRun> {
    let clock = PrepClock::new();
    if let Some(dir) = &given.resume {
        return prepare_resume(dir, given, clock);
    }
    let mut settings = RunSettings::from_args(given)?;
    say_which_dbt(given.dbt.is_none(), &settings);
    ask_for_budget(&mut settings)?;
    let plan = plan::build(&settings.plan);
    let root = config::absolute(
        &given
            .state_dir
            .clone()
            .unwrap_or_else(StateDir::default_path),
    );
    // The lock comes before anything in the dir is read: two runs started on
    // one dir at once cannot both see "no run.json" and both run the plan.
    StateDir::make_private(&root)?;
    state_lock::hold(&root)?;
    if root.join(crate::state_dir::RUN_FILE).exists() {
        return Err(usage!(
            "state dir '{}' already holds a run; continue it with --resume {}",
            root.display(),
            root.display()
        )
        .into());
    }
    let state = StateDir::new(root);
    state.create(&config::normalized_for_storage(given))?;
    Ok(PreparedRun {
        settings,
        plan,
        state,
        past: None,
        shared: given.shared_warehouse.unwrap_or_default(),
        report: None,
        mode: given.mode.unwrap_or_default(),
        recycle: given.recycle.unwrap_or(DEFAULT_RECYCLE),
        runner: None,
        shared_parse: None,
        clock,
    })
}

fn prepare_resume(
    dir: &std::path::Path,
    given: &RunArgs,
    clock: PrepClock,
) -> color_eyre::Result<PreparedRun> {
    if dir.join(crate::state_dir::RUN_FILE).is_file() {
        // Before anything is read: a live run's journal and processes are its own.
        state_lock::hold(dir)?;
        StateDir::make_private(dir)?;
    }
    let (state, stored) = StateDir::open_for_resume(dir)?;
    let mut merged = config::merge_resume(&stored.args, given);
    let changes = config::resume_changes(&stored.args, &merged);
    if !changes.is_empty() {
        eprintln!(
            "dbt-herd: resuming with these options changed from the stored run: {}",
            changes.join(", ")
        );
    }
    config::refill_secrets(&mut merged)?;
    let mut settings = RunSettings::from_args(&merged)?;
    say_which_dbt(merged.dbt.is_none(), &settings);
    ask_for_budget(&mut settings)?;
    let plan = plan::build(&settings.plan);
    let journal_path = state.journal_path();
    let past = journal::read(&journal_path).map_err(|e| usage!("--resume: {e}"))?;
    if past.torn_tail > 0 {
        // Cut before anything is appended: a record glued to the torn one would
        // make the journal unreadable for every later resume.
        journal::cut_torn_tail(&journal_path).map_err(|e| {
            color_eyre::eyre::eyre!("cannot repair the journal {}: {e}", journal_path.display())
        })?;
        eprintln!(
            "dbt-herd: the journal's last record was cut short ({} bytes, a crash mid-write); it was removed",
            past.torn_tail
        );
    }
    for what in engine::sweep::sweep(&past.unfinished, &past.workers, &state.root) {
        eprintln!("dbt-herd: killed {what} left running by the previous run");
    }
    state.store_run(&config::normalized_for_storage(&merged))?;
    Ok(PreparedRun {
        settings,
        plan,
        state,
        past: Some(past),
        shared: merged.shared_warehouse.unwrap_or_default(),
        report: None,
        mode: merged.mode.unwrap_or_default(),
        recycle: merged.recycle.unwrap_or(DEFAULT_RECYCLE),
        runner: None,
        shared_parse: None,
        clock,
    })
}

impl PreparedRun {
    /// Resolves the plan for the warehouse it runs on (`dbt ls` when batches
    /// share one), before anything starts.
    pub async fn resolve(&mut self) -> color_eyre::Result<&PlanReport> {
        // A copy: if resolving fails, summary.json still lists the plan.
        let plan = self.plan.clone();
        let work = self.state.root.join("plan");
        let fingerprint = reuse::fingerprint(&self.settings, &plan, self.shared, &self.state.root);
        if self.past.is_some()
            && let Some((plan, report)) = reuse::load(&work, &fingerprint)
        {
            self.clock.begin(
                "resolve",
                "the plan is resolved as before (nothing it was resolved from changed): no dbt ls",
            );
            self.plan = plan;
            self.clock.done("resolve");
            return Ok(self.report.insert(report));
        }
        self.clock.begin(
            "resolve",
            if self.shared == crate::cli::SharedWarehouse::No {
                "resolving the plan"
            } else {
                "resolving the plan against dbt's graph (dbt ls of each selection)"
            },
        );
        let (plan, report) = resolve::resolve(&self.settings, plan, &work, self.shared).await?;
        self.clock.done("resolve");
        reuse::store(
            &work,
            &fingerprint,
            report.env_read.as_deref(),
            &plan,
            &report,
        );
        self.plan = plan;
        Ok(self.report.insert(report))
    }

    /// Warm workers (started and parsed now) or cold processes; says why when
    /// `auto` chose cold.
    pub async fn choose_mode(&mut self) -> color_eyre::Result<&ModeChoice> {
        use crate::cli::ModeArg;
        self.clock.begin(
            "mode",
            match self.mode {
                ModeArg::Warm => {
                    "readying warm dbt workers (--mode warm): checking that batches parse alike"
                }
                ModeArg::Auto => "choosing warm or cold",
                ModeArg::Cold => "running cold (--mode cold): a new dbt process per batch",
            },
        );
        if self.nothing_left() {
            // A resume of a finished run: no worker to start or parse for.
            let runner = check::cold(Some("nothing is left to run".into()));
            self.clock.done("mode");
            return Ok(&self.runner.insert(runner).choice);
        }
        let made = self
            .report
            .as_ref()
            .map(|r| SharedParse::from_resolution(&r.parses))
            .unwrap_or_default();
        let runner = check::choose(
            &self.settings,
            &self.plan,
            &self.state.root,
            check::Choice {
                requested: self.mode,
                recycle: self.recycle,
                made: &made,
            },
        )
        .await?;
        self.clock.done("mode");
        if runner.choice.mode == Mode::Cold {
            if let Some(why) = &runner.choice.reason {
                // Said before any screen takes over: the header repeats it.
                eprintln!("dbt-herd: running cold: {why}");
            }
            self.clock.begin(
                "shared_parse",
                "parsing the project once for the batches that share vars (dbt parse)",
            );
            self.shared_parse = shared_parse(
                &self.settings,
                &self.plan,
                &self.state.root.join("parse"),
                &made,
            )
            .await;
            if self.shared_parse.is_some() {
                self.clock.done("shared_parse");
            } else {
                self.clock.skip("shared_parse");
            }
        }
        Ok(&self.runner.insert(runner).choice)
    }
}

impl PreparedRun {
    /// Resolves the plan and readies dbt: the preparation's work, which a
    /// face can stop (see `launch`).
    async fn ready_work(&mut self) -> color_eyre::Result<()> {
        self.resolve().await?;
        self.choose_mode().await?;
        Ok(())
    }

    /// Writes summary.json for a run that ended before any batch started: every
    /// batch that was to run pending (so `--resume` runs it), and a failure's
    /// line. Returns it, and whether it was written.
    fn write_unstarted(
        &self,
        error: Option<String>,
        code: i32,
    ) -> (crate::engine::summary::Summary, bool) {
        use crate::engine::summary::{Summary, SummaryStatus, record_exit_code};
        let status = |b: &Batch| match &self.past {
            Some(past)
                if past.last.get(&b.id).is_some_and(|p| {
                    p.status == BatchStatus::Succeeded
                        && p.fp.as_deref() == Some(engine::fingerprint(&self.settings, b).as_str())
                }) =>
            {
                SummaryStatus::Succeeded
            }
            _ => SummaryStatus::Pending,
        };
        let mut summary = Summary::unstarted(&self.plan, status, &self.settings, error);
        summary.plan.clone_from(&self.report);
        summary.preparation = Some(self.clock.preparation.clone());
        let path = self.state.summary_path();
        let written = serde_json::to_vec_pretty(&summary)
            .map_err(std::io::Error::other)
            .and_then(|json| crate::state_dir::write_atomic(&path, &json))
            .and_then(|()| record_exit_code(&path, code));
        if let Err(e) = &written {
            eprintln!("dbt-herd: cannot write {} ({e})", path.display());
        }
        (summary, written.is_ok())
    }
}

/// `--budget auto`: the budget the server has room for, said with its reasons.
fn ask_for_budget(settings: &mut RunSettings) -> color_eyre::Result<()> {
    if !settings.budget_auto {
        return Ok(());
    }
    let room = budget::ask(settings)?;
    eprintln!("dbt-herd: {}", room.line());
    settings.budget = room.budget();
    if settings.threads > settings.budget {
        return Err(usage!(
            "--budget auto: the server has room for {} connections, fewer than one batch's {} threads",
            settings.budget,
            settings.threads
        )
        .into());
    }
    Ok(())
}

/// Without `--dbt`, which dbt the run uses and where it was found.
fn say_which_dbt(defaulted: bool, settings: &RunSettings) {
    if defaulted {
        let how = config::default_dbt().map_or("on PATH", |(_, how)| how);
        eprintln!("dbt-herd: using {} ({how})", settings.dbt.display());
    }
}

impl PreparedRun {
    /// A resume whose every batch already succeeded, running what it runs now.
    fn nothing_left(&self) -> bool {
        let Some(past) = &self.past else {
            return false;
        };
        self.plan.iter().all(|b| {
            past.last.get(&b.id).is_some_and(|p| {
                p.status == BatchStatus::Succeeded
                    && p.fp.as_deref() == Some(engine::fingerprint(&self.settings, b).as_str())
            })
        })
    }
}

/// Batches a warm worker runs before a fresh process replaces it.
const DEFAULT_RECYCLE: u32 = 100;

/// What each batch of the plan carries over from the journal, and which batches
/// that succeeded changed since.
fn priors(
    settings: &RunSettings,
    plan: &[Batch],
    state: &StateDir,
    past: &JournalState,
) -> (BTreeMap<String, Prior>, Vec<String>) {
    let mut prior = BTreeMap::new();
    let mut changed = Vec::new();
    for b in plan {
        let Some(p) = past.last.get(&b.id) else {
            continue;
        };
        let same = p.fp.as_deref() == Some(engine::fingerprint(settings, b).as_str());
        if !same {
            // What it runs changed: start afresh (new attempts still numbered on).
            if p.status == BatchStatus::Succeeded {
                changed.push(b.id.clone());
            }
            prior.insert(
                b.id.clone(),
                Prior {
                    attempts: p.attempts,
                    stopped: true,
                    spent_s: p.spent_s,
                    history: past.history(&b.id),
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
        let history = past.history(&b.id);
        let succeeded = p.status == BatchStatus::Succeeded;
        let (committed, unknown) = if succeeded {
            (Vec::new(), None)
        } else {
            committed_before(
                state,
                b,
                &history,
                p.fp.as_deref(),
                results.is_some(),
                p.attempts,
            )
        };
        prior.insert(
            b.id.clone(),
            Prior {
                succeeded,
                attempts: p.attempts,
                results,
                stopped: matches!(p.status, BatchStatus::Cancelled | BatchStatus::Running),
                spent_s: p.spent_s,
                history,
                committed,
                unknown,
            },
        );
    }
    (prior, changed)
}

/// The nodes that ended for good in a batch's attempts since it last succeeded
/// (a batch that ran again after it succeeded was rerun on purpose), from each
/// attempt's captured output: dbt writes no run_results.json when it is killed
/// (SIGTERM, SIGKILL, a supervisor that died), but its JSON log lines, copied as
/// they came, say which nodes committed. Only attempts that ran what the batch
/// runs now (`fp`) count. Also says why that is unknown, when an attempt's
/// output is gone and no results of it are left.
fn committed_before(
    state: &StateDir,
    b: &Batch,
    history: &[crate::engine::history::PastAttempt],
    fp: Option<&str>,
    last_has_results: bool,
    last: u32,
) -> (Vec<crate::engine::protocol::PriorNode>, Option<String>) {
    use crate::engine::messages::AttemptOutcome;
    let from = history
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
        .map(|a| a.number)
        .max()
        .unwrap_or(0);
    let mut nodes: BTreeMap<String, crate::engine::protocol::PriorNode> = BTreeMap::new();
    let mut unknown = None;
    for a in history
        .iter()
        .filter(|a| a.number > from && a.spawned && a.fp.as_deref() == fp)
    {
        let path = state.attempt_output(&b.id, a.number, "stdout");
        match std::fs::read(&path) {
            Ok(bytes) => {
                for n in crate::dbt::events::committed_in(&String::from_utf8_lossy(&bytes)) {
                    nodes.insert(
                        n.unique_id.clone(),
                        crate::engine::protocol::PriorNode {
                            unique_id: n.unique_id,
                            status: n.status,
                            attempt: a.number,
                            execution_time: n.execution_time.unwrap_or(0.0),
                        },
                    );
                }
            }
            // Its own results say what it did.
            Err(_) if a.number == last && last_has_results => {}
            Err(e) => {
                unknown.get_or_insert_with(|| {
                    format!(
                        "the output of its attempt {} ({}) cannot be read ({e})",
                        a.number,
                        path.display()
                    )
                });
            }
        }
    }
    (nodes.into_values().collect(), unknown)
}

/// Starts the engine on a prepared run with real dbt processes. `logs`: whether
/// the face shows dbt's log lines.
fn start(p: PreparedRun, logs: bool) -> color_eyre::Result<EngineHandle> {
    // What a resume carries over, judged on the plan as resolved (a batch that
    // now leaves nodes to others runs something else than it did).
    let (prior, changed) = p
        .past
        .as_ref()
        .map(|past| priors(&p.settings, &p.plan, &p.state, past))
        .unwrap_or_default();
    for id in &changed {
        eprintln!("dbt-herd: batch {id} changed since it succeeded; it runs again");
    }
    let runner = p.runner.unwrap_or_else(|| check::cold(None));
    engine::spawn(EngineSetup {
        settings: p.settings,
        plan: p.plan,
        state: p.state,
        prior,
        launcher: runner.launcher,
        logs,
        report: p.report,
        mode: runner.choice,
        warm_status: runner.warm_status,
        shared_parse: p.shared_parse,
        preparation: Some(p.clock.preparation),
        pending: runner.pending,
    })
}
