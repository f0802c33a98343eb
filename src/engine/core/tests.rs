//! Unit tests of the pure engine core: admission under the budget, retries,
//! cancel, shutdown and worker changes, each attempt's history, with plain values.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::dbt::argv::AttemptKind;
use crate::dbt::events::{EventKind, Level};
use crate::dbt::run_results::{Metadata, NodeResult, ReadError, RunResults};
use crate::engine::messages::{AttemptOutcome, BatchStatus, Command, Event, HistoryKind};
use crate::engine::protocol::{
    AttemptCtl, AttemptKey, AttemptReport, Effect, ExitInfo, JournalEntry, OutputLine, Prior,
};
use crate::plan::Batch;

fn batches(n: usize) -> Vec<Batch> {
    (0..n)
        .map(|i| Batch {
            id: format!("b{i}"),
            label: format!("batch {i}"),
            select: None,
            window: None,
            vars: Default::default(),
            ..Batch::default()
        })
        .collect()
}

fn core(n: usize, workers: usize, threads: u32, budget: u32, retries: u32) -> EngineCore {
    core_of(batches(n), workers, threads, budget, retries)
}

fn core_of(
    plan: Vec<Batch>,
    workers: usize,
    threads: u32,
    budget: u32,
    retries: u32,
) -> EngineCore {
    let cfg = CoreConfig {
        threads,
        budget,
        retries,
        workers,
        state_dir: "/state".into(),
        command: "build".into(),
        compiled_root_name: Some("proj".into()),
        plan: Vec::new(),
        mode: crate::engine::warm::check::ModeChoice {
            mode: crate::engine::warm::check::Mode::Cold,
            reason: None,
        },
        allow_empty: false,
        selector: None,
        first_only: None,
        breaker: None,
    };
    EngineCore::new(cfg, plan, &BTreeMap::new())
}

fn lm(name: &str, relation: Option<&str>) -> crate::dbt::argv::ListedModel {
    lm_reading(name, relation, &[])
}

fn lm_reading(
    name: &str,
    relation: Option<&str>,
    parents: &[&str],
) -> crate::dbt::argv::ListedModel {
    crate::dbt::argv::ListedModel {
        unique_id: format!("model.p.{name}"),
        name: name.into(),
        relation: relation.map(str::to_string),
        parents: parents.iter().map(|p| format!("model.p.{p}")).collect(),
    }
}

/// Batches `b0…` with the given prerequisites (by index) and locks.
fn linked(spec: &[(&[usize], &[&str])]) -> Vec<Batch> {
    let mut plan = batches(spec.len());
    for (b, (after, locks)) in plan.iter_mut().zip(spec) {
        b.after = after.iter().map(|i| format!("b{i}")).collect();
        b.locks = locks.iter().map(|l| (*l).to_string()).collect();
    }
    plan
}

fn views(c: &EngineCore, now: f64) -> Vec<crate::engine::BatchView> {
    (0..c.batch_count()).map(|b| c.view(b, now)).collect()
}

fn launches(fx: &[Effect]) -> Vec<(AttemptKey, usize, AttemptKind)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch {
                key, worker, kind, ..
            } => Some((*key, *worker, *kind)),
            _ => None,
        })
        .collect()
}

fn rr(inv: &str, results: &[(&str, &str)]) -> RunResults {
    RunResults {
        metadata: Metadata {
            invocation_id: inv.into(),
            dbt_version: None,
        },
        results: results
            .iter()
            .map(|(id, st)| NodeResult {
                unique_id: id.to_string(),
                status: st.to_string(),
                execution_time: 0.1,
                message: Some(format!("{id} {st}")),
                failures: None,
                relation_name: None,
            })
            .collect(),
        elapsed_time: 1.0,
    }
}

fn exit(code: i32) -> ExitInfo {
    ExitInfo {
        code: Some(code),
        signal: None,
    }
}

fn exited(key: AttemptKey, code: i32, results: Result<RunResults, ReadError>) -> AttemptReport {
    AttemptReport::Exited {
        key,
        exit: exit(code),
        results,
        group_clean: true,
        broken: None,
    }
}

fn key(batch: usize, attempt: u32) -> AttemptKey {
    AttemptKey { batch, attempt }
}

#[test]
fn budget_limits_how_many_start() {
    // 4 worker slots but a budget of 5 connections with 2 threads each: only 2 fit.
    let mut c = core(6, 4, 2, 5, 0);
    let fx = c.start(0.0);
    let l = launches(&fx);
    assert_eq!(l.len(), 2);
    assert_eq!(c.budget_in_use(), 4);
    assert_eq!((l[0].1, l[1].1), (1, 2), "lowest free slots first");
    // One exits: exactly one more starts, the budget never goes over.
    let fx = c.on_attempt(
        exited(l[0].0, 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    );
    assert_eq!(launches(&fx).len(), 1);
    assert_eq!(c.budget_in_use(), 4);
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
}

#[test]
fn a_batch_with_its_own_threads_counts_them_and_waits_its_turn_for_the_budget() {
    // Budget 4, 3 workers: b0 takes 1 thread, b1 wants 3 (a plan file's), b2 1.
    let mut plan = batches(3);
    plan[1].own.threads = Some(3);
    let mut c = core_of(plan, 3, 1, 4, 0);
    let l = launches(&c.start(0.0));
    assert_eq!(l.len(), 2, "b0 and b1 fit: 1 + 3");
    assert_eq!(c.budget_in_use(), 4);
    // b2 waits although a slot is free: the budget is full.
    assert!(c.next_dispatch().is_none());
    // b1 ends: its 3 connections come back and b2 starts with 1.
    let fx = c.on_attempt(
        exited(l[1].0, 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    );
    assert_eq!(launches(&fx).len(), 1);
    assert_eq!(c.budget_in_use(), 2);
    // A budget below the largest batch's threads is refused.
    let fx = c.on_command(Command::SetBudget(2), 2.0);
    assert!(fx.iter().any(
        |e| matches!(e, Effect::Emit(Event::Notice { text, .. }) if text.contains("3 threads"))
    ));
    assert_eq!(c.cfg.budget, 4);
}

#[test]
fn a_batchs_running_view_goes_out_before_its_launch() {
    // A launch may change the batch at once (not started: the journal cannot be
    // written); the faces must see that after the running view, not before.
    let mut c = core(1, 1, 1, 1, 0);
    let fx = c.start(0.0);
    let running = fx
        .iter()
        .position(|e| matches!(e, Effect::Emit(Event::BatchChanged(v)) if v.status == BatchStatus::Running))
        .unwrap();
    let launch = fx
        .iter()
        .position(|e| matches!(e, Effect::Launch { .. }))
        .unwrap();
    assert!(running < launch, "{fx:?}");
}

#[test]
fn raising_the_budget_starts_more() {
    let mut c = core(6, 4, 2, 4, 0);
    assert_eq!(launches(&c.start(0.0)).len(), 2);
    let fx = c.on_command(Command::SetBudget(8), 1.0);
    assert_eq!(launches(&fx).len(), 2);
    assert_eq!(c.budget_in_use(), 8);
    // Below one batch's threads is refused.
    let fx = c.on_command(Command::SetBudget(1), 1.0);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::Notice { .. })))
    );
    assert_eq!(c.cfg.budget, 8);
}

#[test]
fn spawned_but_not_exited_keeps_its_connections() {
    let mut c = core(2, 2, 3, 3, 0);
    let l = launches(&c.start(0.0));
    assert_eq!(l.len(), 1);
    c.on_attempt(
        AttemptReport::Spawned {
            key: l[0].0,
            pid: 42,
        },
        0.1,
    );
    // Output, results, anything but Exited: the slot stays held.
    c.on_attempt(
        AttemptReport::Results {
            key: l[0].0,
            results: rr("i", &[("model.a", "success")]),
        },
        0.2,
    );
    assert_eq!(c.budget_in_use(), 3);
    assert!(c.next_dispatch().is_none());
}

#[test]
fn failure_then_auto_retry_uses_dbt_retry_and_merges() {
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    assert_eq!(l[0].2, AttemptKind::Full);
    let failed = rr(
        "inv1",
        &[
            ("model.a", "success"),
            ("model.b", "error"),
            ("model.c", "skipped"),
        ],
    );
    let fx = c.on_attempt(exited(l[0].0, 1, Ok(failed)), 1.0);
    let l2 = launches(&fx);
    assert_eq!(l2.len(), 1, "auto retry dispatched");
    assert_eq!(l2[0].0, key(0, 2));
    assert_eq!(l2[0].2, AttemptKind::Retry);
    assert_eq!(c.batches[0].auto_retries_left, 0);
    c.on_attempt(
        exited(
            l2[0].0,
            0,
            Ok(rr(
                "inv2",
                &[("model.b", "success"), ("model.c", "success")],
            )),
        ),
        2.0,
    );
    let b = &c.batches[0];
    assert_eq!(b.status, BatchStatus::Succeeded);
    assert_eq!(b.results.counts().success, 3);
    assert_eq!(b.error, None);
    assert!(c.is_idle());
}

#[test]
fn failure_without_retries_reports_first_error() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    let fx = c.on_attempt(exited(l[0].0, 1, Ok(rr("i", &[("model.b", "error")]))), 1.0);
    assert_eq!(c.batches[0].status, BatchStatus::Failed);
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("model.b: model.b error")
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Idle))));
    let v = c.view(0, 1.0);
    assert_eq!(v.failing.len(), 1);
}

#[test]
fn killed_attempt_without_results_reruns_in_full() {
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    let msg = AttemptReport::Exited {
        key: l[0].0,
        exit: ExitInfo {
            code: None,
            signal: Some(9),
        },
        results: Err(ReadError::Missing),
        group_clean: true,
        broken: None,
    };
    let fx = c.on_attempt(msg, 1.0);
    let l2 = launches(&fx);
    assert_eq!(l2[0].2, AttemptKind::Full);
    assert_eq!(c.batches[0].error, None, "cleared while pending again");
    c.on_attempt(exited(l2[0].0, 1, Err(ReadError::Missing)), 2.0);
    assert_eq!(c.batches[0].status, BatchStatus::Failed);
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("dbt exited with code 1")
    );
}

#[test]
fn retry_with_nothing_to_do_on_incomplete_batch_falls_back_to_full() {
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    c.on_attempt(
        exited(l[0].0, 1, Ok(rr("i1", &[("model.b", "error")]))),
        1.0,
    );
    let k2 = key(0, 2);
    assert_eq!(c.batches[0].attempts[1].kind, AttemptKind::Retry);
    let nothing = crate::dbt::events::DbtEvent {
        name: "NothingToDo".into(),
        level: Level::Warn,
        msg: "Nothing to do".into(),
        invocation_id: Some("i2".into()),
        kind: EventKind::NothingToDo,
    };
    c.on_attempt(
        AttemptReport::Line {
            key: k2,
            line: OutputLine {
                stderr: false,
                text: String::new(),
                event: Some(nothing),
            },
        },
        1.5,
    );
    let fx = c.on_attempt(exited(k2, 0, Ok(rr("i2", &[]))), 2.0);
    let l3 = launches(&fx);
    assert_eq!(l3.len(), 1);
    assert_eq!(
        l3[0].2,
        AttemptKind::Full,
        "full rerun after an empty retry"
    );
    assert_eq!(
        c.batches[0].auto_retries_left, 0,
        "the fallback did not use another retry"
    );
}

#[test]
fn cancel_running_and_pending() {
    let mut c = core(3, 1, 1, 1, 2);
    let l = launches(&c.start(0.0));
    let fx = c.on_command(Command::Cancel(0), 1.0);
    assert!(fx.contains(&Effect::Control {
        key: l[0].0,
        ctl: AttemptCtl::Stop
    }));
    assert_eq!(c.budget_in_use(), 1, "held until the child is gone");
    c.on_command(Command::Cancel(2), 1.0);
    assert_eq!(c.batches[2].status, BatchStatus::Cancelled);
    let fx = c.on_attempt(
        exited(l[0].0, 2, Ok(rr("i", &[("model.a", "success")]))),
        2.0,
    );
    assert_eq!(
        c.batches[0].status,
        BatchStatus::Cancelled,
        "no auto retry after a cancel"
    );
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("cancelled by the user"),
        "an interrupted dbt's traceback is not the reason"
    );
    // The log ends saying so, after whatever the interrupted dbt printed.
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Emit(Event::Log { batch: 0, line, .. }) if line.text == "cancelled by the user"
    )));
    // Batch 1 starts; batch 2 stays cancelled.
    assert_eq!(launches(&fx)[0].0.batch, 1);
    // A cancelled batch can be retried by hand, and runs in full, less what
    // committed before the cancel (listed first).
    c.on_attempt(
        exited(key(1, 1), 0, Ok(rr("j", &[("model.a", "success")]))),
        3.0,
    );
    let fx = c.on_command(Command::Retry(0), 4.0);
    assert!(launches(&fx).is_empty(), "{fx:?}");
    assert!(fx.contains(&Effect::ListNodes { key: key(0, 2) }));
    assert_eq!(c.batches[0].attempt(2).unwrap().kind, AttemptKind::Full);
}

#[test]
fn shutdown_stops_everything_and_starts_nothing() {
    let mut c = core(5, 2, 1, 2, 3);
    let l = launches(&c.start(0.0));
    let fx = c.on_command(Command::Shutdown { force: false }, 1.0);
    let stops = fx
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Control {
                    ctl: AttemptCtl::Stop,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stops, 2);
    let fx = c.on_attempt(exited(l[0].0, 2, Err(ReadError::Missing)), 2.0);
    assert!(launches(&fx).is_empty());
    c.on_attempt(exited(l[1].0, 2, Err(ReadError::Missing)), 2.0);
    assert_eq!(c.budget_in_use(), 0);
    assert!(c.is_idle());
    assert_eq!(c.batches[0].status, BatchStatus::Cancelled);
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("stopped when the run was stopped")
    );
    assert_eq!(c.batches[4].status, BatchStatus::Pending);
}

#[test]
fn paused_worker_suspends_its_child_and_takes_no_batch() {
    let mut c = core(4, 2, 1, 2, 0);
    let l = launches(&c.start(0.0));
    let fx = c.on_command(Command::PauseWorker(1), 1.0);
    assert!(fx.contains(&Effect::Control {
        key: l[0].0,
        ctl: AttemptCtl::Suspend
    }));
    assert!(c.view(0, 1.0).suspended);
    let fx = c.on_attempt(exited(l[0].0, 0, Ok(rr("i", &[]))), 2.0);
    assert!(launches(&fx).is_empty(), "slot 1 is paused");
    let fx = c.on_command(Command::ResumeWorker(1), 3.0);
    assert_eq!(launches(&fx)[0].1, 1);
}

#[test]
fn paused_queue_goes_idle_and_resumes() {
    let mut c = core(3, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    c.on_command(Command::PauseQueue, 0.5);
    let fx = c.on_attempt(exited(l[0].0, 0, Ok(rr("i", &[]))), 1.0);
    assert!(launches(&fx).is_empty());
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Idle))));
    let fx = c.on_command(Command::ResumeQueue, 2.0);
    assert_eq!(launches(&fx).len(), 1);
}

#[test]
fn shrinking_workers_retires_busy_slots_after_their_batch() {
    let mut c = core(6, 3, 1, 3, 0);
    let l = launches(&c.start(0.0));
    assert_eq!(l.len(), 3);
    c.on_command(Command::SetWorkers(1), 1.0);
    assert_eq!(c.slots.len(), 3, "busy slots stay until their batch ends");
    assert_eq!(c.slots.iter().filter(|s| s.retiring).count(), 2);
    let fx = c.on_attempt(exited(l[2].0, 0, Ok(rr("i", &[]))), 2.0);
    assert!(launches(&fx).is_empty(), "a retiring slot takes nothing");
    assert_eq!(c.slots.len(), 2);
    let fx = c.on_attempt(exited(l[0].0, 0, Ok(rr("i", &[]))), 2.0);
    assert_eq!(launches(&fx)[0].1, 1, "slot 1 goes on");
    let fx = c.on_command(Command::SetWorkers(3), 3.0);
    assert_eq!(
        launches(&fx).len(),
        1,
        "budget 3 allows one more next to the two running"
    );
    assert_eq!(c.slots.iter().filter(|s| !s.retiring).count(), 3);
}

#[test]
fn queue_order_can_be_changed() {
    let mut c = core(4, 1, 1, 1, 0);
    c.start(0.0);
    assert_eq!(Vec::from(c.queue.clone()), vec![1, 2, 3]);
    c.on_command(Command::MoveBatch { batch: 3, up: true }, 1.0);
    assert_eq!(Vec::from(c.queue.clone()), vec![1, 3, 2]);
    c.on_command(Command::MoveBatch { batch: 1, up: true }, 1.0);
    assert_eq!(Vec::from(c.queue.clone()), vec![1, 3, 2], "already first");
    c.on_command(
        Command::MoveBatch {
            batch: 1,
            up: false,
        },
        1.0,
    );
    assert_eq!(Vec::from(c.queue.clone()), vec![3, 1, 2]);
}

#[test]
fn nothing_selected_is_flagged() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    let ev = crate::dbt::events::DbtEvent {
        name: "NoNodesForSelectionCriteria".into(),
        level: Level::Warn,
        msg: "The selection criterion 'x' does not match any enabled nodes".into(),
        invocation_id: Some("i".into()),
        kind: EventKind::NothingSelected,
    };
    let fx = c.on_attempt(
        AttemptReport::Line {
            key: l[0].0,
            line: OutputLine {
                stderr: false,
                text: String::new(),
                event: Some(ev),
            },
        },
        0.5,
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Log { line, .. }) if line.text.starts_with("NOTHING SELECTED"))));
    c.on_attempt(exited(l[0].0, 0, Ok(rr("i", &[]))), 1.0);
    let v = c.view(0, 1.0);
    assert_eq!(v.status, BatchStatus::Failed, "nothing faked: no node ran");
    assert!(v.nothing_selected);
    assert_eq!(
        v.error.as_deref(),
        Some("selection '*' matched no node (pass --allow-empty to run it anyway)")
    );
}

#[test]
fn resumed_succeeded_batches_are_not_queued() {
    let cfg = core(1, 1, 1, 1, 0).cfg;
    let done: BTreeMap<String, Prior> = [(
        "b1".to_string(),
        Prior {
            succeeded: true,
            attempts: 1,
            ..Default::default()
        },
    )]
    .into();
    let mut c = EngineCore::new(cfg, batches(3), &done);
    let fx = c.start(0.0);
    assert_eq!(c.batches[1].status, BatchStatus::Succeeded);
    assert_eq!(launches(&fx)[0].0.batch, 0);
    assert_eq!(Vec::from(c.queue.clone()), vec![2]);
}

#[test]
fn spawn_failure_pauses_the_queue_instead_of_failing_everything() {
    let mut c = core(5, 2, 1, 2, 3);
    let l = launches(&c.start(0.0));
    let fx = c.on_attempt(
        AttemptReport::SpawnFailed {
            key: l[0].0,
            error: "No such file".into(),
        },
        1.0,
    );
    assert!(launches(&fx).is_empty());
    assert!(c.queue_paused);
    assert_eq!(c.batches[0].status, BatchStatus::Failed);
    assert_eq!(c.budget_in_use(), 1, "the other batch still runs");
}

/// Fault case: a thousand random exits, kills and commands. Held connections must
/// always equal the threads of the attempts the test itself saw launched and has
/// not yet ended, never exceed the budget, and be zero when everything is over.
#[test]
fn random_events_never_leak_or_exceed_the_budget() {
    const THREADS: u32 = 2;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from((seed >> 33) % n as u64).unwrap()
    };
    let mut c = core(200, 4, THREADS, 7, 2);
    // The attempts this test knows are live: launched by the core, not yet ended
    // by the test. Kept from the effects alone, never from the core's own state.
    let mut live: BTreeSet<AttemptKey> = BTreeSet::new();
    let track = |live: &mut BTreeSet<AttemptKey>, fx: Vec<Effect>| {
        for (k, _, _) in launches(&fx) {
            assert!(live.insert(k), "{k:?} launched twice");
        }
    };
    let fx = c.start(0.0);
    track(&mut live, fx);
    let mut t = 0.0;
    for _ in 0..1000 {
        t += 1.0;
        let keys: Vec<AttemptKey> = live.iter().copied().collect();
        let fx = match rand(10) {
            0..=5 if !keys.is_empty() => {
                let k = keys[rand(keys.len())];
                let (code, signal, results) = match rand(4) {
                    0 => (Some(0), None, Ok(rr("i", &[("model.a", "success")]))),
                    1 => (Some(1), None, Ok(rr("i", &[("model.a", "error")]))),
                    2 => (None, Some(9), Err(ReadError::Missing)),
                    _ => (Some(2), None, Err(ReadError::Corrupt("x".into()))),
                };
                live.remove(&k);
                c.on_attempt(
                    AttemptReport::Exited {
                        key: k,
                        exit: ExitInfo { code, signal },
                        results,
                        group_clean: true,
                        broken: None,
                    },
                    t,
                )
            }
            6 if !keys.is_empty() => {
                let k = keys[rand(keys.len())];
                live.remove(&k);
                let mut fx = c.on_attempt(
                    AttemptReport::SpawnFailed {
                        key: k,
                        error: "x".into(),
                    },
                    t,
                );
                fx.extend(c.on_command(Command::ResumeQueue, t));
                fx
            }
            7 => c.on_command(Command::SetWorkers(1 + rand(6)), t),
            8 => c.on_command(Command::Cancel(rand(200)), t),
            _ => c.on_command(Command::RetryAllFailed, t),
        };
        track(&mut live, fx);
        assert_eq!(
            c.budget_in_use(),
            u32::try_from(live.len()).unwrap() * THREADS
        );
        assert!(c.budget_in_use() <= c.budget());
        let running = (0..c.batch_count())
            .filter(|&b| c.view(b, t).status == BatchStatus::Running)
            .count();
        assert_eq!(
            running,
            live.len(),
            "a running batch is exactly a live attempt"
        );
    }
    c.on_command(Command::Shutdown { force: true }, t);
    for k in std::mem::take(&mut live) {
        let fx = c.on_attempt(
            AttemptReport::Exited {
                key: k,
                exit: ExitInfo {
                    code: None,
                    signal: Some(9),
                },
                results: Err(ReadError::Missing),
                group_clean: true,
                broken: None,
            },
            t + 1.0,
        );
        assert!(
            launches(&fx).is_empty(),
            "nothing starts while shutting down"
        );
    }
    assert_eq!(c.budget_in_use(), 0);
    assert!(c.is_idle());
}

#[test]
fn resumed_failed_batch_continues_with_dbt_retry_and_numbering() {
    let cfg = core(1, 1, 1, 1, 0).cfg;
    let prior: BTreeMap<String, Prior> = [(
        "b0".to_string(),
        Prior {
            succeeded: false,
            attempts: 2,
            results: Some(rr("old", &[("model.a", "success"), ("model.b", "error")])),
            stopped: false,
            spent_s: 12.5,
            history: Vec::new(),
            ..Prior::default()
        },
    )]
    .into();
    let mut c = EngineCore::new(cfg.clone(), batches(1), &prior);
    assert_eq!(
        c.view(0, 0.0).duration_s,
        12.5,
        "the time on record carries over"
    );
    let l = launches(&c.start(0.0));
    assert_eq!(l, vec![(key(0, 3), 1, AttemptKind::Retry)]);
    // A stopped last attempt runs in full instead.
    let mut p = prior.clone();
    p.get_mut("b0").unwrap().stopped = true;
    let mut c = EngineCore::new(cfg, batches(1), &p);
    let fx = c.start(0.0);
    assert!(
        launches(&fx).is_empty(),
        "model.a committed: the rest is listed"
    );
    assert!(fx.contains(&Effect::ListNodes { key: key(0, 3) }));
    assert_eq!(c.batches[0].attempt(3).unwrap().kind, AttemptKind::Full);
}

#[test]
fn edit_changes_what_a_failed_batch_runs_and_requeues_it_in_full() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    c.on_attempt(exited(l[0].0, 1, Ok(rr("i", &[("model.b", "error")]))), 1.0);
    let fx = c.on_command(
        Command::EditBatch {
            batch: 0,
            select: Some("tag:x".into()),
            vars: "{day: 3}".into(),
        },
        2.0,
    );
    let l2 = launches(&fx);
    assert_eq!(
        l2,
        vec![(key(0, 2), 1, AttemptKind::Full)],
        "a new selection never uses dbt retry"
    );
    let b = &c.batches[0].batch;
    assert_eq!(b.select.as_deref(), Some("tag:x"));
    assert_eq!(b.vars["day"], 3);
    assert_eq!(b.label, "tag:x");
    assert_eq!(c.batches[0].results.counts().total(), 0);
    // Bad vars are refused with a notice, the batch unchanged; running batches can't be edited.
    let fx = c.on_command(
        Command::EditBatch {
            batch: 0,
            select: None,
            vars: "{a: [".into(),
        },
        3.0,
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::Notice { .. })))
    );
    assert_eq!(c.batches[0].batch.select.as_deref(), Some("tag:x"));
}

#[test]
fn split_replaces_a_pending_batch_by_one_per_model_in_its_queue_place() {
    let mut c = core(3, 1, 1, 1, 0);
    c.start(0.0);
    assert_eq!(Vec::from(c.queue.clone()), vec![1, 2]);
    let fx = c.on_command(Command::SplitBatch(1), 1.0);
    assert!(fx.contains(&Effect::ListModels { batch: 1 }));
    let fx = c.on_listed(1, Ok(vec![lm("stg_a", None), lm("fct_b", None)]), 2.0);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::BatchesAdded(v)) if v.len() == 2))
    );
    assert_eq!(c.batches[1].status, BatchStatus::Split);
    assert_eq!(
        Vec::from(c.queue.clone()),
        vec![3, 4, 2],
        "the parts stand where the batch stood"
    );
    assert_eq!(c.batches[3].batch.id, "b1-stg_a");
    assert_eq!(c.batches[4].batch.select.as_deref(), Some("fct_b"));
    // One model is nothing to split; a failing dbt ls is reported.
    let fx = c.on_listed(2, Ok(vec![lm("only", None)]), 3.0);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::Notice { .. })))
    );
    assert_eq!(c.batches[2].status, BatchStatus::Pending);
    // A running batch cannot be split.
    let fx = c.on_command(Command::SplitBatch(0), 4.0);
    assert!(!fx.contains(&Effect::ListModels { batch: 0 }));
}

#[test]
fn a_batch_starts_only_after_its_prerequisites_succeed() {
    let mut c = core_of(linked(&[(&[], &[]), (&[0], &[]), (&[0], &[])]), 3, 1, 3, 0);
    let first = launches(&c.start(0.0));
    assert_eq!(first.len(), 1, "the windows wait for the shared batch");
    let v = views(&c, 0.0);
    let w = crate::engine::messages::wait_of(&v, 1).unwrap();
    assert_eq!((w.on, w.blocked), (0, false));
    let next = launches(&c.on_attempt(
        exited(first[0].0, 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    ));
    let started: Vec<usize> = next.iter().map(|l| l.0.batch).collect();
    assert_eq!(started, [1, 2]);
}

#[test]
fn a_failed_prerequisite_blocks_its_dependants_until_it_is_retried_and_succeeds() {
    let mut c = core_of(linked(&[(&[], &[]), (&[0], &[]), (&[1], &[])]), 2, 1, 2, 0);
    let first = launches(&c.start(0.0));
    let fx = c.on_attempt(
        exited(first[0].0, 1, Ok(rr("i", &[("model.a", "error")]))),
        1.0,
    );
    assert!(launches(&fx).is_empty());
    assert!(c.is_idle(), "nothing can start without a command");
    assert!(fx.contains(&Effect::Emit(Event::Idle)));
    let v = views(&c, 1.0);
    for b in [1, 2] {
        let w = crate::engine::messages::wait_of(&v, b).unwrap();
        assert_eq!(
            (w.on, w.blocked),
            (0, true),
            "batch {b} names the failed root"
        );
    }
    let retry = launches(&c.on_command(Command::Retry(0), 2.0));
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].0.batch, 0);
    let fx = c.on_attempt(
        exited(retry[0].0, 0, Ok(rr("j", &[("model.a", "success")]))),
        3.0,
    );
    assert_eq!(launches(&fx)[0].0.batch, 1);
}

#[test]
fn batches_writing_one_relation_never_run_at_once() {
    let mut c = core_of(
        linked(&[(&[], &["r"]), (&[], &["r"]), (&[], &["other"])]),
        3,
        1,
        3,
        0,
    );
    let started: Vec<usize> = launches(&c.start(0.0)).iter().map(|l| l.0.batch).collect();
    assert_eq!(
        started,
        [0, 2],
        "the second writer of r waits, the third goes ahead"
    );
    let v = views(&c, 0.0);
    let w = crate::engine::messages::wait_of(&v, 1).unwrap();
    assert_eq!((w.on, w.relation.as_deref()), (0, Some("r")));
    let fx = c.on_attempt(
        exited(key(0, 1), 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    );
    assert_eq!(launches(&fx)[0].0.batch, 1);
}

/// Fault case with a plan of prerequisites and locks: a thousand random exits
/// and commands. No batch ever starts before its prerequisites have succeeded,
/// no two running batches hold one relation, and a failed prerequisite leaves
/// its dependants waiting.
#[test]
fn random_runs_keep_every_prerequisite_and_lock() {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).unwrap()
    };
    let n = 60;
    let names = ["r1", "r2", "r3"];
    let spec: Vec<(Vec<usize>, Vec<&str>)> = (0..n)
        .map(|b| {
            let after = (0..b).filter(|_| rand(12) == 0).collect();
            let locks = names.iter().copied().filter(|_| rand(4) == 0).collect();
            (after, locks)
        })
        .collect();
    let borrowed: Vec<(&[usize], &[&str])> = spec
        .iter()
        .map(|(a, l)| (a.as_slice(), l.as_slice()))
        .collect();
    let plan = linked(&borrowed);
    let mut c = core_of(plan.clone(), 4, 1, 3, 1);
    let mut live: BTreeSet<AttemptKey> = BTreeSet::new();
    let check = |c: &EngineCore, live: &mut BTreeSet<AttemptKey>, fx: &[Effect], t: f64| {
        let v = views(c, t);
        for (k, _, _) in launches(fx) {
            for &p in &spec[k.batch].0 {
                assert_eq!(
                    v[p].status,
                    BatchStatus::Succeeded,
                    "batch {} started before its prerequisite {p}",
                    k.batch
                );
            }
            live.insert(k);
        }
        let mut held = BTreeSet::new();
        for k in live.iter() {
            for l in &plan[k.batch].locks {
                assert!(held.insert(l.clone()), "two running batches hold {l}");
            }
        }
    };
    let fx = c.start(0.0);
    check(&c, &mut live, &fx, 0.0);
    let mut t = 0.0;
    for _ in 0..1000 {
        t += 1.0;
        let keys: Vec<AttemptKey> = live.iter().copied().collect();
        let fx = match rand(8) {
            0..=5 if !keys.is_empty() => {
                let k = keys[rand(keys.len())];
                live.remove(&k);
                let ok = rand(3) > 0;
                let results = rr("i", &[("model.a", if ok { "success" } else { "error" })]);
                c.on_attempt(exited(k, i32::from(!ok), Ok(results)), t)
            }
            6 => c.on_command(Command::RetryAllFailed, t),
            _ => c.on_command(Command::Cancel(rand(n)), t),
        };
        check(&c, &mut live, &fx, t);
        if live.is_empty() {
            assert!(c.is_idle(), "nothing runs, so nothing could start");
            let v = views(&c, t);
            for b in (0..n).filter(|&b| v[b].status == BatchStatus::Pending) {
                let w = crate::engine::messages::wait_of(&v, b);
                assert!(
                    w.is_some_and(|w| w.blocked),
                    "pending batch {b} is waiting on a failure"
                );
            }
        }
    }
}

#[test]
fn split_parts_keep_the_prerequisites_and_each_its_own_lock() {
    // b1 waits on b0 and locks two relations; b2 waits on b1.
    let mut c = core_of(
        linked(&[(&[], &[]), (&[0], &["r_a", "r_b"]), (&[1], &[])]),
        1,
        1,
        1,
        0,
    );
    c.start(0.0);
    c.on_command(Command::SplitBatch(1), 1.0);
    c.on_listed(
        1,
        Ok(vec![
            lm("a", Some("r_a")),
            lm("b", Some("r_b")),
            lm("e", None),
        ]),
        2.0,
    );
    let v = views(&c, 2.0);
    let parts: Vec<&crate::engine::BatchView> = v[3..].iter().collect();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert_eq!(p.after, [0], "{} keeps the parent's prerequisite", p.id);
    }
    assert_eq!(parts[0].locks, ["r_a"]);
    assert_eq!(parts[1].locks, ["r_b"]);
    assert!(parts[2].locks.is_empty());
    assert_eq!(
        v[2].after,
        [3, 4, 5],
        "a dependant of the split waits on every part"
    );
}

/// A microbatch model's result says only "ERROR"; the error dbt logged first
/// says what went wrong, and that is what the batch shows.
#[test]
fn a_bare_error_status_gives_way_to_the_first_logged_error() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    let error_event = |msg: &str| crate::dbt::events::DbtEvent {
        name: "RunResultError".into(),
        level: Level::Error,
        msg: msg.into(),
        invocation_id: Some("i".into()),
        kind: EventKind::Error,
    };
    for msg in [
        "Catalog Error: Table with name events does not exist!",
        "ERROR",
    ] {
        let ev = error_event(msg);
        c.on_attempt(
            AttemptReport::Line {
                key: l[0].0,
                line: OutputLine {
                    stderr: false,
                    text: String::new(),
                    event: Some(ev),
                },
            },
            0.5,
        );
    }
    let mut results = rr("i", &[("model.p.daily", "error")]);
    results.results[0].message = Some("ERROR".into());
    c.on_attempt(exited(l[0].0, 1, Ok(results)), 1.0);
    let error = c.view(0, 1.0).error.unwrap();
    assert_eq!(
        error,
        "model.p.daily: Catalog Error: Table with name events does not exist!"
    );
}

#[test]
fn more_and_fewer_workers_count_from_the_engine_and_stop_at_one() {
    let mut c = core(4, 2, 1, 8, 0);
    c.start(0.0);
    for _ in 0..3 {
        c.on_command(Command::ChangeWorkers { by: 1 }, 1.0);
    }
    assert_eq!(c.active_workers(), 5);
    for _ in 0..6 {
        c.on_command(Command::ChangeWorkers { by: -1 }, 2.0);
    }
    assert_eq!(c.active_workers(), 1);
}

/// dbt warned "nothing selected" about one selector but ran nodes of another:
/// the batch is not empty.
#[test]
fn a_batch_that_ran_nodes_is_not_empty_whatever_dbt_warned() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    let nothing = crate::dbt::events::DbtEvent {
        name: "NoNodesForSelectionCriteria".into(),
        level: Level::Warn,
        msg: "The selection criterion 'bogus_model_xyz' does not match any enabled nodes".into(),
        invocation_id: Some("i".into()),
        kind: EventKind::NothingSelected,
    };
    c.on_attempt(
        AttemptReport::Line {
            key: l[0].0,
            line: OutputLine {
                stderr: false,
                text: String::new(),
                event: Some(nothing),
            },
        },
        0.5,
    );
    let ok = rr(
        "i",
        &[
            ("model.a", "success"),
            ("model.b", "success"),
            ("model.c", "success"),
        ],
    );
    c.on_attempt(exited(l[0].0, 0, Ok(ok)), 1.0);
    assert!(!c.view(0, 1.0).nothing_selected);
}

/// A split keeps dbt's order: a part runs only after the parts it reads have
/// succeeded; when one fails, those after it are BLOCKED until it is retried.
#[test]
fn split_parts_run_in_dbt_order_and_wait_on_a_failed_parent() {
    let mut c = core(1, 4, 1, 4, 0);
    let l = launches(&c.start(0.0));
    c.on_attempt(
        exited(l[0].0, 1, Ok(rr("i", &[("model.p.stg", "error")]))),
        1.0,
    );
    c.on_command(Command::SplitBatch(0), 2.0);
    let fx = c.on_listed(
        0,
        Ok(vec![
            lm_reading("fct", None, &["stg", "dim"]),
            lm_reading("dim", None, &[]),
            lm_reading("stg", None, &[]),
        ]),
        3.0,
    );
    // fct (1) reads stg (3) and dim (2): only dim and stg start.
    let started: Vec<usize> = launches(&fx).iter().map(|l| l.0.batch).collect();
    assert_eq!(started, [2, 3]);
    let v = views(&c, 3.0);
    assert_eq!(v[1].after, [3, 2]);
    c.on_attempt(
        exited(key(2, 1), 0, Ok(rr("d", &[("model.p.dim", "success")]))),
        4.0,
    );
    c.on_attempt(
        exited(key(3, 1), 1, Ok(rr("s", &[("model.p.stg", "error")]))),
        4.0,
    );
    let v = views(&c, 4.0);
    let w = crate::engine::messages::wait_of(&v, 1).unwrap();
    assert_eq!((w.on, w.blocked), (3, true), "fct is BLOCKED on stg");
    let fx = c.on_command(Command::Retry(3), 5.0);
    assert_eq!(launches(&fx)[0].0.batch, 3);
    let fx = c.on_attempt(
        exited(key(3, 2), 0, Ok(rr("t", &[("model.p.stg", "success")]))),
        6.0,
    );
    assert_eq!(launches(&fx)[0].0.batch, 1, "fct runs once stg succeeded");
}

#[test]
fn a_broken_worker_fails_its_batch_whatever_its_exit_status_and_says_why() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    // Exit 0 and no results file would pass as clean: the break decides.
    c.on_attempt(
        AttemptReport::Exited {
            key: l[0].0,
            exit: exit(0),
            results: Err(ReadError::Missing),
            group_clean: true,
            broken: Some(
                "the warm worker broke its protocol: it ended in the middle of a message".into(),
            ),
        },
        1.0,
    );
    assert_eq!(c.batches[0].status, BatchStatus::Failed);
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("the warm worker broke its protocol: it ended in the middle of a message")
    );
}

#[test]
fn a_succeeded_batch_reruns_in_full_only_when_asked() {
    let mut c = core(2, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    c.on_attempt(
        exited(l[0].0, 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    );
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    // Retry is for failures: a succeeded batch stays as it is.
    assert!(launches(&c.on_command(Command::Retry(0), 1.5)).is_empty());
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    c.on_attempt(
        exited(key(1, 1), 0, Ok(rr("j", &[("model.a", "success")]))),
        2.0,
    );
    let fx = c.on_command(Command::Rerun(0), 3.0);
    assert_eq!(launches(&fx), vec![(key(0, 2), 1, AttemptKind::Full)]);
    // A batch that has not succeeded (it runs now) is not queued twice.
    assert!(launches(&c.on_command(Command::Rerun(0), 3.5)).is_empty());
    assert_eq!(c.batches[0].status, BatchStatus::Running);
    assert!(c.queue.is_empty());
}

fn kinds(c: &EngineCore, b: usize) -> Vec<(u32, HistoryKind, AttemptOutcome)> {
    c.view(b, 10.0)
        .history
        .iter()
        .map(|a| (a.number, a.kind, a.outcome))
        .collect()
}

#[test]
fn history_tells_a_run_from_its_dbt_retry() {
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    let fx = c.on_attempt(
        exited(l[0].0, 1, Ok(rr("i1", &[("model.b", "error")]))),
        1.5,
    );
    let l2 = launches(&fx);
    let h = c.view(0, 2.0).history;
    assert_eq!(
        (h[0].kind, h[0].outcome, h[0].duration_s, h[0].worker),
        (HistoryKind::Run, AttemptOutcome::Failed, Some(1.5), 1),
        "the attempt failed though its batch is queued again"
    );
    assert_eq!(
        (h[1].kind, h[1].outcome, h[1].duration_s),
        (HistoryKind::Retry, AttemptOutcome::Running, None)
    );
    c.on_attempt(
        exited(l2[0].0, 0, Ok(rr("i2", &[("model.b", "success")]))),
        4.0,
    );
    let h = c.view(0, 5.0).history;
    assert_eq!(
        (h[1].outcome, h[1].started_at, h[1].duration_s),
        (AttemptOutcome::Succeeded, 1.5, Some(2.5))
    );
}

#[test]
fn history_calls_a_full_run_after_an_earlier_attempt_a_rerun() {
    // After a kill (dbt retry would skip what never ran).
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    c.on_attempt(exited(l[0].0, 1, Err(ReadError::Missing)), 1.0);
    assert_eq!(
        kinds(&c, 0),
        [
            (1, HistoryKind::Run, AttemptOutcome::Failed),
            (2, HistoryKind::Rerun, AttemptOutcome::Running)
        ]
    );
    // After a dbt retry that had nothing to do.
    let mut c = core(1, 1, 1, 1, 1);
    let l = launches(&c.start(0.0));
    c.on_attempt(
        exited(l[0].0, 1, Ok(rr("i1", &[("model.b", "error")]))),
        1.0,
    );
    let nothing = crate::dbt::events::DbtEvent {
        name: "NothingToDo".into(),
        level: Level::Warn,
        msg: "Nothing to do".into(),
        invocation_id: Some("i2".into()),
        kind: EventKind::NothingToDo,
    };
    c.on_attempt(
        AttemptReport::Line {
            key: key(0, 2),
            line: OutputLine {
                stderr: false,
                text: String::new(),
                event: Some(nothing),
            },
        },
        1.5,
    );
    c.on_attempt(exited(key(0, 2), 0, Ok(rr("i2", &[]))), 2.0);
    assert_eq!(
        kinds(&c, 0),
        [
            (1, HistoryKind::Run, AttemptOutcome::Failed),
            (2, HistoryKind::Retry, AttemptOutcome::Failed),
            (3, HistoryKind::Rerun, AttemptOutcome::Running)
        ]
    );
    // After an edit, and a cancel.
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    c.on_attempt(exited(l[0].0, 1, Ok(rr("i", &[("model.b", "error")]))), 1.0);
    let fx = c.on_command(
        Command::EditBatch {
            batch: 0,
            select: Some("tag:x".into()),
            vars: "{}".into(),
        },
        2.0,
    );
    let l2 = launches(&fx);
    c.on_command(Command::Cancel(0), 3.0);
    c.on_attempt(
        AttemptReport::Exited {
            key: l2[0].0,
            exit: ExitInfo {
                code: None,
                signal: Some(2),
            },
            results: Err(ReadError::Missing),
            group_clean: true,
            broken: None,
        },
        4.0,
    );
    assert_eq!(
        kinds(&c, 0),
        [
            (1, HistoryKind::Run, AttemptOutcome::Failed),
            (2, HistoryKind::Rerun, AttemptOutcome::Cancelled)
        ]
    );
}

/// The shell's word on what an attempt runs is kept for the history and
/// journaled, before the process starts.
#[test]
fn an_attempts_command_is_kept_and_journaled() {
    let mut c = core(1, 1, 1, 1, 0);
    let l = launches(&c.start(0.0));
    let cmd = crate::engine::history::AttemptCommand {
        argv: vec![
            "/bin/dbt".into(),
            "build".into(),
            "--vars".into(),
            "{a: 1}".into(),
        ],
        env: [("DB".to_string(), "/w h".to_string())].into(),
    };
    let fx = c.attempt_command(l[0].0, &cmd, 0.1);
    assert!(
        fx.contains(&Effect::Journal(JournalEntry::AttemptCommand {
            batch: "b0".into(),
            attempt: 1,
            argv: cmd.argv.clone(),
            env: cmd.env.clone(),
        })),
        "{fx:?}"
    );
    let shown = fx.iter().find_map(|e| match e {
        Effect::Emit(Event::BatchChanged(v)) => v.history[0].command.clone(),
        _ => None,
    });
    assert_eq!(
        shown.as_deref(),
        Some("DB='/w h' /bin/dbt build --vars '{a: 1}'")
    );
    // An attempt that is gone (never started) is left alone.
    assert!(c.attempt_command(key(0, 9), &cmd, 0.2).is_empty());
}

/// A resumed batch shows the attempts its journal recorded, and goes on
/// numbering after them; an attempt whose end is not on record took no time.
#[test]
fn a_resumed_batch_shows_its_journal_history() {
    use crate::engine::history::{AttemptCommand, PastAttempt};
    let past = |number, kind, finished_at, outcome, command: Option<&str>| PastAttempt {
        number,
        kind,
        worker: 2,
        started_at: 1000.0 + f64::from(number) * 100.0,
        finished_at,
        outcome,
        command: command.map(|c| AttemptCommand {
            argv: vec!["/bin/dbt".into(), c.into()],
            env: BTreeMap::new(),
        }),
        fp: None,
        spawned: true,
    };
    let prior: BTreeMap<String, Prior> = [(
        "b0".to_string(),
        Prior {
            attempts: 2,
            stopped: true,
            spent_s: 7.0,
            history: vec![
                past(
                    1,
                    AttemptKind::Full,
                    Some(1107.0),
                    Some(AttemptOutcome::Failed),
                    None,
                ),
                past(2, AttemptKind::Retry, None, None, Some("retry")),
            ],
            ..Default::default()
        },
    )]
    .into();
    let mut c = EngineCore::new(core(1, 1, 1, 1, 0).cfg, batches(1), &prior);
    let l = launches(&c.start(5000.0));
    assert_eq!(l, vec![(key(0, 3), 1, AttemptKind::Full)]);
    let v = c.view(0, 5004.0);
    assert_eq!(v.duration_s, 11.0, "7 s on record and 4 s running now");
    let h = &v.history;
    assert_eq!(
        h.iter()
            .map(|a| (a.number, a.kind, a.outcome, a.duration_s))
            .collect::<Vec<_>>(),
        [
            (1, HistoryKind::Run, AttemptOutcome::Failed, Some(7.0)),
            (2, HistoryKind::Retry, AttemptOutcome::Unfinished, None),
            (3, HistoryKind::Rerun, AttemptOutcome::Running, None),
        ]
    );
    assert_eq!(h[0].command, None, "an old journal has no command");
    assert_eq!(h[1].command.as_deref(), Some("/bin/dbt retry"));
    assert_eq!((h[1].worker, h[1].started_at), (2, 1200.0));
    // Attempts only counted (a journal with no record of them) show nothing.
    let counted: BTreeMap<String, Prior> = [(
        "b0".to_string(),
        Prior {
            attempts: 2,
            spent_s: 3.0,
            ..Default::default()
        },
    )]
    .into();
    let c = EngineCore::new(core(1, 1, 1, 1, 0).cfg, batches(1), &counted);
    let v = c.view(0, 0.0);
    assert!(v.history.is_empty());
    assert_eq!(v.duration_s, 3.0);
}

// ---- exactly once: what committed in earlier attempts is not built again ----

/// dbt's JSON line for a node's end, as `--log-format json` prints it.
fn node_line(unique_id: &str, resource_type: &str, status: &str) -> OutputLine {
    let name = unique_id.split('.').nth(2).unwrap_or_default();
    let event = match resource_type {
        "test" => "LogTestResult",
        _ => "LogModelResult",
    };
    let text = format!(
        r#"{{"info":{{"name":"{event}","level":"info","msg":"m","invocation_id":"inv"}},"data":{{"status":"{status}","node_info":{{"unique_id":"{unique_id}","node_name":"{name}","resource_type":"{resource_type}","node_status":"{status}"}}}}}}"#
    );
    OutputLine {
        stderr: false,
        event: crate::dbt::events::parse_line(&text),
        text,
    }
}

fn listed(nodes: &[(&str, &str, &[&str])]) -> Vec<crate::dbt::argv::ListedNode> {
    nodes
        .iter()
        .map(|(id, rt, fqn)| crate::dbt::argv::ListedNode {
            unique_id: (*id).into(),
            resource_type: (*rt).into(),
            fqn: fqn.iter().map(|p| (*p).to_string()).collect(),
        })
        .collect()
}

/// model.p.a (in a dir `a`, with model.p.a_child under it), its test, and model.p.b.
fn project_nodes() -> Vec<crate::dbt::argv::ListedNode> {
    listed(&[
        ("model.p.a", "model", &["p", "a"]),
        ("model.p.inner", "model", &["p", "a", "inner"]),
        ("test.p.not_null_a_id.1234", "test", &["p", "not_null_a_id"]),
        ("model.p.b", "model", &["p", "b"]),
        ("source.p.raw.t", "source", &["p", "raw", "t"]),
    ])
}

fn narrowing_of(fx: &[Effect]) -> Option<Option<crate::dbt::argv::Narrowing>> {
    fx.iter().find_map(|e| match e {
        Effect::Launch { narrowing, .. } => Some(narrowing.clone()),
        _ => None,
    })
}

fn signalled(key: AttemptKey, signal: i32) -> AttemptReport {
    AttemptReport::Exited {
        key,
        exit: ExitInfo {
            code: None,
            signal: Some(signal),
        },
        results: Err(ReadError::Missing),
        group_clean: true,
        broken: None,
    }
}

#[test]
fn a_node_that_committed_before_an_interrupt_is_left_out_of_the_next_attempt() {
    use crate::dbt::argv::Narrowing;
    let mut c = core(1, 1, 1, 1, 0);
    let k1 = launches(&c.start(0.0))[0].0;
    // model.a commits; its slow test is running when the run is cancelled; dbt
    // dies on SIGTERM and writes no run_results.json.
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("model.p.a", "model", "success"),
        },
        1.0,
    );
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("model.p.b", "model", "error"),
        },
        1.1,
    );
    assert_eq!(
        c.batches[0].committed(),
        BTreeSet::from(["model.p.a".to_string()])
    );
    c.on_command(Command::Cancel(0), 2.0);
    c.on_attempt(signalled(k1, 15), 3.0);
    assert_eq!(c.batches[0].status, BatchStatus::Cancelled);
    assert_eq!(
        c.view(0, 3.0).counts.success,
        1,
        "what committed is counted"
    );

    // Retried: no dbt retry (it would skip what never ran); a full attempt,
    // after a list of what the batch selects.
    let fx = c.on_command(Command::Retry(0), 4.0);
    let k2 = key(0, 2);
    assert!(launches(&fx).is_empty());
    assert!(fx.contains(&Effect::ListNodes { key: k2 }));
    assert_eq!(c.budget_in_use(), 1, "the slot is held while it lists");
    let fx = c.on_nodes_listed(k2, Ok(project_nodes()), 5.0);
    assert_eq!(launches(&fx), vec![(k2, 1, AttemptKind::Full)]);
    // The rest, each node exactly (model.p.inner is not taken for model.p.a's
    // prefix), the test of the committed model kept, the source not selected.
    assert_eq!(
        narrowing_of(&fx),
        Some(Some(Narrowing::Only(vec![
            "fqn:p.a.inne[r]".into(),
            "fqn:p.not_null_a_i[d]".into(),
            "fqn:p.[b]".into(),
        ])))
    );
    assert_eq!(c.batches[0].attempt(2).unwrap().left_out, 1);
    // The rest succeeds: the batch does, model.a counted as attempt 1's.
    c.on_attempt(
        exited(
            k2,
            0,
            Ok(rr(
                "i2",
                &[
                    ("model.p.inner", "success"),
                    ("test.p.not_null_a_id.1234", "pass"),
                    ("model.p.b", "success"),
                ],
            )),
        ),
        6.0,
    );
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    let n = &c.batches[0].results.nodes;
    assert_eq!(
        (n["model.p.a"].status.as_str(), n["model.p.a"].attempt),
        ("success", 1)
    );
    assert_eq!(
        (n["model.p.b"].status.as_str(), n["model.p.b"].attempt),
        ("success", 2)
    );
    let s = crate::engine::summary::Summary::of(&c, "t", true, 7.0);
    assert_eq!(
        (s.batches[0].nodes.success, s.batches[0].nodes.pass),
        (3, 1)
    );
}

#[test]
fn a_later_interrupt_keeps_the_list_and_adds_what_committed_since() {
    use crate::dbt::argv::Narrowing;
    let mut c = committed_a_then_retried(9);
    let k2 = key(0, 2);
    c.on_nodes_listed(k2, Ok(project_nodes()), 5.0);
    c.on_attempt(
        AttemptReport::Line {
            key: k2,
            line: node_line("model.p.inner", "model", "success"),
        },
        6.0,
    );
    c.on_command(Command::Cancel(0), 7.0);
    c.on_attempt(signalled(k2, 15), 8.0);
    // The third attempt needs no new list: the batch's nodes are known.
    let fx = c.on_command(Command::Retry(0), 9.0);
    assert_eq!(
        narrowing_of(&fx),
        Some(Some(Narrowing::Only(vec![
            "fqn:p.not_null_a_i[d]".into(),
            "fqn:p.[b]".into()
        ])))
    );
}

#[test]
fn a_resumed_batch_leaves_out_what_its_attempts_output_says_committed() {
    use crate::dbt::argv::Narrowing;
    let cfg = core(1, 1, 1, 1, 0).cfg;
    // A supervisor killed with -9: attempt 1 has no end on record and no
    // results; its captured output said model.p.a committed.
    let prior: BTreeMap<String, Prior> = [(
        "b0".to_string(),
        Prior {
            attempts: 1,
            stopped: true,
            committed: vec![crate::engine::protocol::PriorNode {
                unique_id: "model.p.a".into(),
                status: "success".into(),
                attempt: 1,
                execution_time: 0.5,
            }],
            ..Prior::default()
        },
    )]
    .into();
    let mut c = EngineCore::new(cfg, batches(1), &prior);
    assert_eq!(c.view(0, 0.0).counts.success, 1);
    let fx = c.start(0.0);
    assert!(fx.contains(&Effect::ListNodes { key: key(0, 2) }));
    let fx = c.on_nodes_listed(key(0, 2), Ok(project_nodes()), 1.0);
    let Some(Some(Narrowing::Only(rest))) = narrowing_of(&fx) else {
        panic!("no narrowed launch in {fx:?}");
    };
    assert!(!rest.contains(&"fqn:p.[a]".to_string()), "{rest:?}");
    assert_eq!(rest.len(), 3);
}

#[test]
fn a_batch_whose_every_node_committed_succeeds_without_running_dbt() {
    let mut c = core(2, 1, 1, 1, 0);
    let k1 = launches(&c.start(0.0))[0].0;
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("model.p.a", "model", "success"),
        },
        1.0,
    );
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("test.p.t.1", "test", "pass"),
        },
        1.5,
    );
    c.on_command(Command::Cancel(0), 2.0);
    c.on_attempt(signalled(k1, 15), 3.0);
    // Batch 1 ran meanwhile.
    c.on_attempt(
        exited(key(1, 1), 0, Ok(rr("j", &[("model.p.z", "success")]))),
        3.5,
    );
    c.on_command(Command::Retry(0), 4.0);
    let fx = c.on_nodes_listed(
        key(0, 2),
        Ok(listed(&[
            ("model.p.a", "model", &["p", "a"]),
            ("test.p.t.1", "test", &["p", "t"]),
        ])),
        5.0,
    );
    assert!(launches(&fx).is_empty(), "no dbt for nothing: {fx:?}");
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    assert_eq!(
        c.batches[0].attempt(2).unwrap().outcome,
        AttemptOutcome::Succeeded
    );
    assert_eq!(c.budget_in_use(), 0);
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Notice { text, .. }) if text.contains("nothing left to run"))));
}

#[test]
fn a_deliberate_rerun_of_a_succeeded_batch_runs_every_node() {
    let mut c = core(1, 1, 1, 1, 0);
    let k1 = launches(&c.start(0.0))[0].0;
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("model.p.a", "model", "success"),
        },
        1.0,
    );
    c.on_attempt(exited(k1, 0, Ok(rr("i", &[("model.p.a", "success")]))), 2.0);
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    let fx = c.on_command(Command::Rerun(0), 3.0);
    assert_eq!(launches(&fx), vec![(key(0, 2), 1, AttemptKind::Full)]);
    assert_eq!(narrowing_of(&fx), Some(None), "nothing left out");
    // Interrupted before it got to model.a: a resume would build it again too.
    c.on_command(Command::Cancel(0), 4.0);
    c.on_attempt(signalled(key(0, 2), 15), 5.0);
    let fx = c.on_command(Command::Retry(0), 6.0);
    assert_eq!(narrowing_of(&fx), Some(None));
}

#[test]
fn when_dbt_ls_fails_the_committed_nodes_are_excluded_and_it_says_so() {
    use crate::dbt::argv::Narrowing;
    let mut c = committed_a_then_retried(15);
    let fx = c.on_nodes_listed(key(0, 2), Err("profile not found".into()), 5.0);
    assert_eq!(
        narrowing_of(&fx),
        Some(Some(Narrowing::Without(vec![
            "package:p,resource_type:model,fqn:a".into()
        ])))
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Notice { text, .. }) if text.contains("profile not found") && text.contains("tests"))));
}

#[test]
fn a_cancel_while_it_lists_ends_the_attempt_at_once() {
    let mut c = committed_a_then_retried(15);
    let fx = c.on_command(Command::Cancel(0), 4.5);
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Control { .. })),
        "no process to signal"
    );
    assert_eq!(c.batches[0].status, BatchStatus::Cancelled);
    assert_eq!(c.budget_in_use(), 0);
    // The list that comes afterwards starts nothing.
    let fx = c.on_nodes_listed(key(0, 2), Ok(project_nodes()), 5.0);
    assert!(fx.is_empty());
}

#[test]
fn an_unknown_past_is_said_before_the_batch_reruns_in_full() {
    let cfg = core(1, 1, 1, 1, 0).cfg;
    let prior: BTreeMap<String, Prior> = [(
        "b0".to_string(),
        Prior {
            attempts: 1,
            stopped: true,
            unknown: Some(
                "the output of its attempt 1 (/s/attempt-1.stdout.log) cannot be read".into(),
            ),
            ..Prior::default()
        },
    )]
    .into();
    let mut c = EngineCore::new(cfg, batches(1), &prior);
    let fx = c.start(0.0);
    let notice = fx
        .iter()
        .position(|e| matches!(e, Effect::Emit(Event::Notice { level: Level::Warn, text }) if text.starts_with("batch b0: the output of its attempt 1") && text.ends_with("it runs again in full")))
        .expect("a notice naming the batch");
    let launch = fx
        .iter()
        .position(|e| matches!(e, Effect::Launch { .. }))
        .unwrap();
    assert!(notice < launch);
    assert_eq!(narrowing_of(&fx), Some(None));
}

#[test]
fn an_empty_selection_fails_unless_allowed() {
    let mut plan = batches(1);
    plan[0].select = Some("does_not_exist".into());
    let mut c = core_of(plan.clone(), 1, 1, 1, 2);
    let k = launches(&c.start(0.0))[0].0;
    let fx = c.on_attempt(exited(k, 0, Ok(rr("i", &[]))), 1.0);
    assert_eq!(c.batches[0].status, BatchStatus::Failed);
    assert!(
        launches(&fx).is_empty(),
        "no auto retry: it would select nothing again"
    );
    assert_eq!(
        c.batches[0].error.as_deref(),
        Some("selection 'does_not_exist' matched no node (pass --allow-empty to run it anyway)")
    );
    // With --allow-empty it is what it was: a success that ran nothing.
    let mut c = core_of(plan, 1, 1, 1, 0);
    c.cfg.allow_empty = true;
    let k = launches(&c.start(0.0))[0].0;
    c.on_attempt(exited(k, 0, Ok(rr("i", &[]))), 1.0);
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
    // A dbt retry with nothing to do is not an empty selection.
    let mut c = core(1, 1, 1, 1, 0);
    let k = launches(&c.start(0.0))[0].0;
    c.on_attempt(
        exited(
            k,
            1,
            Ok(rr("i", &[("model.a", "success"), ("model.b", "error")])),
        ),
        1.0,
    );
    let fx = c.on_command(Command::Retry(0), 2.0);
    assert_eq!(launches(&fx)[0].2, AttemptKind::Retry);
    c.on_attempt(
        exited(key(0, 2), 0, Ok(rr("j", &[("model.b", "success")]))),
        3.0,
    );
    assert_eq!(c.batches[0].status, BatchStatus::Succeeded);
}

#[test]
fn a_split_part_whose_model_committed_runs_only_its_tests_without_listing() {
    let mut c = core(1, 4, 1, 4, 0);
    let l = launches(&c.start(0.0));
    c.on_attempt(
        exited(
            l[0].0,
            1,
            Ok(rr(
                "i",
                &[("model.p.dim", "success"), ("model.p.stg", "error")],
            )),
        ),
        1.0,
    );
    c.on_command(Command::SplitBatch(0), 2.0);
    let fx = c.on_listed(
        0,
        Ok(vec![
            lm_reading("dim", None, &[]),
            lm_reading("stg", None, &[]),
        ]),
        3.0,
    );
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::ListNodes { .. })),
        "no dbt ls per part: {fx:?}"
    );
    let narrowed: Vec<(usize, Option<crate::dbt::argv::Narrowing>)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Launch { key, narrowing, .. } => Some((key.batch, narrowing.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        narrowed,
        [(1, Some(crate::dbt::argv::Narrowing::TestsOnly)), (2, None)],
        "dim committed: only its tests; stg did not: all of it"
    );
}

/// One batch whose attempt 1 committed model.p.a, was stopped by `signal`, and
/// is retried (attempt 2 waits for its nodes to be listed).
fn committed_a_then_retried(signal: i32) -> EngineCore {
    let mut c = core(1, 1, 1, 1, 0);
    let k1 = launches(&c.start(0.0))[0].0;
    c.on_attempt(
        AttemptReport::Line {
            key: k1,
            line: node_line("model.p.a", "model", "success"),
        },
        1.0,
    );
    c.on_command(Command::Cancel(0), 2.0);
    c.on_attempt(signalled(k1, signal), 3.0);
    c.on_command(Command::Retry(0), 4.0);
    c
}

fn warm_core(plan: Vec<Batch>, workers: usize) -> EngineCore {
    let mut c = core_of(plan, workers, 1, 100, 0);
    c.cfg.mode.mode = crate::engine::warm::check::Mode::Warm;
    c
}

fn warm(state: crate::engine::messages::WarmState) -> WarmView {
    WarmView {
        state,
        parse_s: None,
        runs: 0,
        pid: Some(7),
        since: None,
    }
}

#[test]
fn workers_are_wanted_only_for_batches_that_could_run_beside_each_other() {
    // One batch, four slots: one worker.
    let mut c = core(1, 4, 1, 100, 0);
    assert_eq!(c.wanted_slots(), [1]);
    c.start(0.0);
    assert_eq!(c.wanted_slots(), [1], "the running slot, nothing more");
    // Windows taking turns on one DuckDB file: one worker, whatever --workers says.
    let c = core_of(
        linked(&[(&[], &["f"]), (&[], &["f"]), (&[], &["f"])]),
        4,
        1,
        100,
        0,
    );
    assert_eq!(c.wanted_slots(), [1]);
    // Two that may run at once, one waiting on a prerequisite: three.
    let c = core_of(linked(&[(&[], &[]), (&[], &[]), (&[0], &[])]), 4, 1, 100, 0);
    assert_eq!(c.wanted_slots(), [1, 2, 3]);
    // The last batch finished: no worker is wanted any more.
    let mut c = core(1, 2, 1, 100, 0);
    c.start(0.0);
    c.on_attempt(
        exited(key(0, 1), 0, Ok(rr("i", &[("model.a", "success")]))),
        1.0,
    );
    assert!(c.wanted_slots().is_empty(), "{:?}", c.wanted_slots());
}

#[test]
fn a_warm_batch_waits_for_a_parsed_worker_and_the_run_is_not_idle_meanwhile() {
    use crate::engine::messages::WarmState;
    let mut c = warm_core(batches(2), 2);
    let fx = c.start(0.0);
    assert!(launches(&fx).is_empty(), "no worker is parsed yet: {fx:?}");
    assert!(
        !c.is_idle(),
        "batches wait for workers: the run is not idle"
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::Emit(Event::Idle))));
    c.on_warm(1, warm(WarmState::Parsing), 1.0);
    let fx = c.on_warm(2, warm(WarmState::Idle), 2.0);
    assert_eq!(
        launches(&fx)
            .iter()
            .map(|l| (l.0.batch, l.1))
            .collect::<Vec<_>>(),
        [(0, 2)],
        "the first batch goes to the worker that is ready, not to the one parsing"
    );
    let fx = c.on_attempt(
        exited(key(0, 1), 0, Ok(rr("i", &[("model.a", "success")]))),
        3.0,
    );
    assert_eq!(
        launches(&fx)
            .iter()
            .map(|l| (l.0.batch, l.1))
            .collect::<Vec<_>>(),
        [(1, 2)],
        "worker 2, ready again, takes the second batch"
    );
    assert_eq!(c.wanted_slots(), [2], "worker 1, still parsing, is let go");
    // A worker that could not start takes batches (and says why it fails).
    let mut c = warm_core(batches(1), 1);
    c.start(0.0);
    let fx = c.on_warm(1, warm(WarmState::Failed), 1.0);
    assert_eq!(launches(&fx).len(), 1);
}

#[test]
fn before_the_parse_verdict_only_the_first_batch_runs_and_only_on_worker_1() {
    use crate::engine::messages::WarmState;
    let mut c = warm_core(batches(3), 2);
    c.cfg.first_only = Some("b0".into());
    c.start(0.0);
    c.on_warm(2, warm(WarmState::Idle), 0.5);
    let fx = c.on_warm(1, warm(WarmState::Idle), 1.0);
    assert_eq!(
        launches(&fx)
            .iter()
            .map(|l| (l.0.batch, l.1))
            .collect::<Vec<_>>(),
        [(0, 1)],
        "worker 1 parsed with b0's inputs: b0 runs on it, nothing else yet"
    );
    let fx = c.on_attempt(
        exited(key(0, 1), 0, Ok(rr("i", &[("model.a", "success")]))),
        2.0,
    );
    assert!(launches(&fx).is_empty(), "{fx:?}");
    assert!(!c.is_idle(), "waiting for the verdict is not idle");
    let fx = c.on_verdict(Ok(()), 3.0);
    assert_eq!(launches(&fx).len(), 2, "alike: the rest run warm: {fx:?}");
    assert_eq!(c.run_info().mode, "warm");

    // A difference: the rest run cold, at once, and it is said.
    let mut c = warm_core(batches(2), 1);
    c.cfg.first_only = Some("b0".into());
    c.start(0.0);
    c.on_warm(1, warm(WarmState::Parsing), 0.5);
    let fx = c.on_verdict(Err("batches parse differently".into()), 1.0);
    assert_eq!(
        launches(&fx).len(),
        1,
        "cold needs no parsed worker: {fx:?}"
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Notice { text, .. }) if text.contains("running cold from now on"))));
    // The faces' header follows: the mode is told, not only said.
    assert!(
        fx.iter().any(
            |e| matches!(e, Effect::Emit(Event::ModeChanged { mode, reason })
            if mode == "cold" && reason.as_deref() == Some("batches parse differently"))
        ),
        "{fx:?}"
    );
    assert_eq!(c.run_info().mode, "cold");
    assert_eq!(
        c.run_info().mode_reason.as_deref(),
        Some("batches parse differently")
    );
}

/// A run_results.json whose one node failed with `message`.
fn failed_with(inv: &str, node: &str, message: &str) -> RunResults {
    let mut r = rr(inv, &[(node, "error")]);
    r.results[0].message = Some(message.into());
    r
}

#[test]
fn attempts_failing_alike_on_a_down_warehouse_pause_the_queue_with_one_diagnosis() {
    let mut c = core(6, 2, 1, 2, 0);
    c.breaker = breaker::Breaker::new(Some(3));
    let down = "Database Error\n  connection to server at \"localhost\", port 5433 failed: Connection refused";
    let mut running: Vec<AttemptKey> = launches(&c.start(0.0)).iter().map(|l| l.0).collect();
    let mut fx = Vec::new();
    for i in 0..3 {
        let k = running.remove(0);
        let node = format!("model.m{i}");
        fx = c.on_attempt(
            exited(k, 1, Ok(failed_with("i", &node, down))),
            1.0 + f64::from(i),
        );
        running.extend(launches(&fx).iter().map(|l| l.0));
        let v = c.view(k.batch, 2.0);
        assert_eq!(
            v.failure_class,
            Some(crate::dbt::class::FailureClass::Connection),
            "{v:?}"
        );
    }
    assert!(launches(&fx).is_empty(), "nothing new starts: {fx:?}");
    assert!(
        fx.contains(&Effect::Emit(Event::QueuePaused(true))),
        "{fx:?}"
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::BreakerTripped(why))
            if why.contains("Connection refused"))),
        "the faces keep the diagnosis: {fx:?}"
    );
    let said: Vec<&String> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(Event::Notice {
                level: Level::Error,
                text,
            }) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{fx:?}");
    assert!(said[0].contains("Connection refused"), "{}", said[0]);
    assert!(c.breaker_tripped().is_some());
    // A refused connection also lowered how many run at once: one, and that
    // one has failed too, so nothing runs.
    assert!(running.is_empty(), "{running:?}");
    assert_eq!(c.cap, Some(1));
    // Refused connections wait to retry, so every batch is still pending:
    // the ones tried, and the ones never started.
    let pending = (0..6)
        .filter(|&b| c.batches[b].status == BatchStatus::Pending)
        .count();
    assert_eq!(pending, 6, "every batch waits for a resume");
    assert!(
        launches(&c.on_tick(100.0)).is_empty(),
        "paused: nothing starts"
    );
    // Resumed by hand: it runs again, and counts afresh.
    let fx = c.on_command(Command::ResumeQueue, 6.0);
    assert!(!launches(&fx).is_empty(), "{fx:?}");
    assert!(c.breaker_tripped().is_none());
}

#[test]
fn failures_of_the_data_do_not_pause_the_queue() {
    let mut c = core(5, 1, 1, 1, 0);
    c.breaker = breaker::Breaker::new(Some(2));
    let mut k = launches(&c.start(0.0))[0].0;
    for i in 0..4 {
        let fx = c.on_attempt(
            exited(k, 1, Ok(failed_with("i", "model.m", "division by zero"))),
            1.0 + f64::from(i),
        );
        assert!(
            !fx.contains(&Effect::Emit(Event::QueuePaused(true))),
            "{fx:?}"
        );
        k = launches(&fx)[0].0;
    }
    assert!(c.breaker_tripped().is_none());
}

#[test]
fn a_refused_connection_requeues_the_batch_without_a_retry_and_fewer_run_at_once() {
    let mut c = core(10, 4, 2, 100, 0);
    c.breaker = breaker::Breaker::new(Some(3));
    let limit = "Database Error\n  connection to server on socket \"/tmp/.s.PGSQL.5433\" failed: FATAL:  sorry, too many clients already";
    let mut running: Vec<AttemptKey> = launches(&c.start(0.0)).iter().map(|l| l.0).collect();
    assert_eq!(running.len(), 4);
    let refused = running.remove(0);
    let fx = c.on_attempt(
        exited(refused, 1, Ok(failed_with("i", "model.m", limit))),
        1.0,
    );
    let st = &c.batches[refused.batch];
    assert_eq!(st.status, BatchStatus::Pending, "back in the queue");
    assert_eq!(c.queue.front(), Some(&refused.batch), "first in line");
    assert!(launches(&fx).is_empty(), "3 at once now: {fx:?}");
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Emit(Event::Notice { text, .. })
            if text.contains("3 at once (was 4)"))),
        "{fx:?}"
    );
    assert_eq!(c.cap, Some(3));
    assert!(
        fx.contains(&Effect::Emit(Event::AtOnce(Some(3)))),
        "the faces' header says it: {fx:?}"
    );
    // Each success lets the next one start, three at a time; after six, four again.
    for i in 0..6 {
        let k = running.remove(0);
        let fx = c.on_attempt(
            exited(k, 0, Ok(rr("i", &[("model.m", "success")]))),
            2.0 + f64::from(i),
        );
        running.extend(launches(&fx).iter().map(|l| l.0));
        assert!(
            c.running_count() <= 3 || c.cap.is_none(),
            "{i}: {}",
            c.running_count()
        );
    }
    assert_eq!(c.cap, None, "the warehouse kept up: as many as workers");
    assert!(
        c.breaker_tripped().is_none(),
        "back-pressure is not a failure"
    );
    assert!(
        c.batches[refused.batch].status != BatchStatus::Failed,
        "the refused batch ran again"
    );
}

#[test]
fn a_transient_fault_waits_then_runs_again_without_spending_a_retry() {
    let mut c = core(2, 1, 1, 1, 0);
    c.breaker = breaker::Breaker::new(Some(1));
    let closed = "Database Error in model m (models/m.sql)\n  server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally";
    let k = launches(&c.start(0.0))[0].0;
    let fx = c.on_attempt(exited(k, 1, Ok(failed_with("i", "model.m", closed))), 10.0);
    assert_eq!(c.batches[k.batch].status, BatchStatus::Pending);
    assert_eq!(
        c.batches[k.batch].auto_retries_left, 0,
        "no --retries to spend"
    );
    assert!(
        c.breaker_tripped().is_none(),
        "a retried fault is not counted"
    );
    // The other batch runs meanwhile; this one waits for its time.
    let other = launches(&fx);
    assert_eq!(other.len(), 1, "{fx:?}");
    assert_ne!(other[0].0.batch, k.batch);
    let due = c.next_wake().expect("a wake-up");
    assert!(due > 10.0 + 1.0 && due < 10.0 + 3.0, "{due}");
    assert!(!c.is_idle(), "waiting is not idle");
    let fx = c.on_attempt(
        exited(other[0].0, 0, Ok(rr("j", &[("model.o", "success")]))),
        11.0,
    );
    assert!(launches(&fx).is_empty(), "not before its time: {fx:?}");
    assert!(c.on_tick(due - 0.1).is_empty());
    let fx = c.on_tick(due);
    let again = launches(&fx);
    assert_eq!(again.len(), 1, "{fx:?}");
    assert_eq!(again[0].0.batch, k.batch);
    assert_eq!(
        again[0].2,
        AttemptKind::Retry,
        "dbt retry: it has results to go on"
    );
    // Twice at most; the third time it fails as any failure does.
    let fx = c.on_attempt(
        exited(again[0].0, 1, Ok(failed_with("k", "model.m", closed))),
        20.0,
    );
    assert!(c.next_wake().is_some(), "{fx:?}");
    let fx = c.on_tick(c.next_wake().unwrap());
    let third = launches(&fx)[0].0;
    c.on_attempt(
        exited(third, 1, Ok(failed_with("l", "model.m", closed))),
        40.0,
    );
    assert_eq!(c.batches[k.batch].status, BatchStatus::Failed);
    assert!(c.next_wake().is_none());
}

#[test]
fn a_failed_attempt_without_results_shows_its_own_error_and_counts_not_the_last_ones() {
    let mut c = core(1, 1, 1, 1, 1);
    let k = launches(&c.start(0.0))[0].0;
    let fx = c.on_attempt(
        exited(
            k,
            1,
            Ok(rr("i1", &[("model.a", "success"), ("model.b", "error")])),
        ),
        1.0,
    );
    let again = launches(&fx)[0].0;
    // The second attempt dies before dbt wrote anything, after saying why.
    c.on_attempt(
        AttemptReport::Line {
            key: again,
            line: OutputLine {
                stderr: false,
                text: String::new(),
                event: Some(crate::dbt::events::DbtEvent {
                    name: "MainEncounteredError".into(),
                    level: Level::Error,
                    msg: "Env var required but not provided: 'DUCKDB_PATH'".into(),
                    invocation_id: Some("i2".into()),
                    kind: EventKind::Error,
                }),
            },
        },
        2.0,
    );
    c.on_attempt(exited(again, 2, Err(ReadError::Missing)), 3.0);
    let v = c.view(0, 3.0);
    assert_eq!(v.status, BatchStatus::Failed);
    assert_eq!(
        v.error.as_deref(),
        Some("Env var required but not provided: 'DUCKDB_PATH'")
    );
    assert_eq!(
        v.counts,
        crate::dbt::run_results::NodeCounts::default(),
        "not attempt 1's"
    );
    assert!(
        v.failing.is_empty(),
        "attempt 1's failing node is not this failure"
    );
    assert_eq!(
        v.failure_class,
        Some(crate::dbt::class::FailureClass::Project)
    );
}
