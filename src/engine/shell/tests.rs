//! The async shell with a fake launcher: dispatch under the budget, the slot freed
//! only when the attempt is reaped, the summary from the first moment, a journal
//! that cannot be written, and a face that does not keep up.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::dbt::events::{DbtEvent, EventKind, NodeRef, Position};
use crate::dbt::run_results::{Metadata, ReadError, RunResults};
use crate::engine::protocol::{ExitInfo, OutputLine};
use crate::engine::{BatchStatus, SummaryStatus};
use crate::plan::DbtCommand;
use crate::plan::{PlanSpec, Step};

/// An attempt the fake launcher was asked for; the test plays the child.
struct Launched {
    spec: AttemptSpec,
    reports: mpsc::Sender<AttemptReport>,
    _ctl: mpsc::Receiver<AttemptCtl>,
}

impl Launched {
    async fn say(&self, m: AttemptReport) {
        self.reports.send(m).await.unwrap();
    }

    /// Exits with `code`; a clean exit wrote a run_results.json of one model,
    /// as dbt does (one of no node at all is an empty selection: a failure).
    async fn exit(&self, code: i32) {
        let results = if code == 0 {
            Ok(RunResults {
                metadata: Metadata {
                    invocation_id: format!(
                        "fake-{}-{}",
                        self.spec.key.batch, self.spec.key.attempt
                    ),
                    dbt_version: None,
                },
                results: vec![crate::dbt::run_results::NodeResult {
                    unique_id: "model.p.a".into(),
                    status: "success".into(),
                    execution_time: 0.05,
                    message: None,
                    failures: None,
                    relation_name: None,
                }],
                elapsed_time: 0.1,
            })
        } else {
            Err(ReadError::Missing)
        };
        self.say(AttemptReport::Exited {
            key: self.spec.key,
            exit: ExitInfo {
                code: Some(code),
                signal: None,
            },
            results,
            group_clean: true,
            broken: None,
        })
        .await;
    }
}

struct FakeLauncher(mpsc::UnboundedSender<Launched>);

impl Launcher for FakeLauncher {
    fn launch(
        &self,
        spec: AttemptSpec,
        ctl: mpsc::Receiver<AttemptCtl>,
        reports: mpsc::Sender<AttemptReport>,
    ) {
        let _ = self.0.send(Launched {
            spec,
            reports,
            _ctl: ctl,
        });
    }
}

fn settings(dir: &std::path::Path, workers: usize, threads: u32, budget: u32) -> RunSettings {
    RunSettings {
        project_dir: dir.to_path_buf(),
        profiles_dir: None,
        target: None,
        dbt: "/bin/false".into(),
        command: DbtCommand::Build,
        exclude: None,
        selector: None,
        extra_args: vec![],
        workers,
        threads,
        budget,
        retries: 0,
        env: vec![],
        grace_int: Duration::from_millis(100),
        grace_term: Duration::from_millis(100),
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

fn plan(n: usize) -> Vec<Batch> {
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

struct Rig {
    _dir: tempfile::TempDir,
    state: StateDir,
    handle: EngineHandle,
    launched: mpsc::UnboundedReceiver<Launched>,
}

fn rig(batches: usize, workers: usize, threads: u32, budget: u32, logs: bool) -> Rig {
    rig_with(batches, workers, threads, budget, logs, |_| {})
}

fn rig_with(
    batches: usize,
    workers: usize,
    threads: u32,
    budget: u32,
    logs: bool,
    prepare: impl FnOnce(&StateDir),
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    std::fs::create_dir_all(state.root.join("batches")).unwrap();
    prepare(&state);
    let (tx, launched) = mpsc::unbounded_channel();
    let handle = spawn(EngineSetup {
        settings: settings(dir.path(), workers, threads, budget),
        plan: plan(batches),
        state: state.clone(),
        prior: BTreeMap::new(),
        launcher: Arc::new(FakeLauncher(tx)),
        logs,
        report: None,
        mode: crate::engine::warm::check::ModeChoice {
            mode: crate::engine::warm::check::Mode::Cold,
            reason: None,
        },
        warm_status: None,
        shared_parse: None,
        preparation: None,
        pending: None,
    })
    .unwrap();
    Rig {
        _dir: dir,
        state,
        handle,
        launched,
    }
}

async fn next_launch(r: &mut Rig) -> Launched {
    tokio::time::timeout(Duration::from_secs(5), r.launched.recv())
        .await
        .expect("a launch within 5 s")
        .unwrap()
}

/// Reads events until one matches (within 10 s), returning everything read.
async fn events_until(r: &mut Rig, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, r.handle.next_event())
            .await
            .unwrap_or_else(|_| panic!("no such event within 10 s; saw {seen:?}"))
            .expect("the engine is still running");
        let last = done(&ev);
        seen.push(ev);
        if last {
            return seen;
        }
    }
}

#[tokio::test]
async fn the_summary_is_written_as_soon_as_the_run_starts() {
    let mut r = rig(2, 1, 1, 1, true);
    let _first = next_launch(&mut r).await;
    // Nothing ever ends here: only the start can have asked for the summary.
    let path = r.state.summary_path();
    let mut written = false;
    for _ in 0..100 {
        if path.exists() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written, "summary.json exists while the first batch runs");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(s["batches"].as_array().unwrap().len(), 2);
    r.handle.send(Command::Shutdown { force: true });
    _first.exit(137).await;
    r.handle.finish().await.unwrap();
}

#[tokio::test]
async fn dispatch_keeps_to_the_budget_and_a_reaped_attempt_frees_its_slot() {
    // Three slots, but a budget of two one-thread batches.
    let mut r = rig(3, 3, 1, 2, true);
    let a = next_launch(&mut r).await;
    let b = next_launch(&mut r).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        r.launched.try_recv().is_err(),
        "the third waits for the budget"
    );
    // Output and results do not free the slot; only the reaped exit does.
    a.say(AttemptReport::Spawned {
        key: a.spec.key,
        pid: 999_999,
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(r.launched.try_recv().is_err());
    a.exit(0).await;
    let c = next_launch(&mut r).await;
    assert_eq!(c.spec.key.batch, 2);
    b.exit(1).await;
    c.exit(0).await;
    events_until(&mut r, |e| matches!(e, Event::Idle)).await;
    r.handle.send(Command::Shutdown { force: false });
    let out = r.handle.finish().await.unwrap();
    let statuses: Vec<_> = out.summary.batches.iter().map(|b| b.status).collect();
    assert_eq!(
        statuses,
        [
            SummaryStatus::Succeeded,
            SummaryStatus::Failed,
            SummaryStatus::Succeeded
        ]
    );
    assert!(out.fault.is_none());
    assert_eq!(out.summary_path, Some(r.state.summary_path()));
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_starts_nothing_and_is_a_fault() {
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let mut r = rig_with(2, 2, 1, 2, true, |state| {
        std::os::unix::fs::symlink("/dev/full", state.journal_path()).unwrap();
    });
    let seen = events_until(&mut r, |e| matches!(e, Event::Idle)).await;
    assert!(
        seen.iter().any(
            |e| matches!(e, Event::Notice { text, .. } if text.contains("cannot write the journal"))
        ),
        "{seen:?}"
    );
    assert!(seen.contains(&Event::QueuePaused(true)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        r.launched.try_recv().is_err(),
        "no process starts without its journal record"
    );
    r.handle.send(Command::Shutdown { force: false });
    let out = r.handle.finish().await.unwrap();
    assert!(out.fault.unwrap().contains("cannot write the journal"));
    assert!(out.summary.batches.iter().all(|b| b.attempts == 0));
}

/// No process starts before the journal holds what it runs: the argv a cold
/// dbt gets and the variables dbt-herd adds (not the state dir tag, which only
/// marks the process as this run's).
#[tokio::test]
async fn an_attempts_command_is_journaled_before_it_is_launched() {
    let mut r = rig(1, 1, 1, 1, true);
    let a = next_launch(&mut r).await;
    let journal = std::fs::read_to_string(r.state.journal_path()).unwrap();
    let rec: serde_json::Value = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|v: &serde_json::Value| v["record"] == "attempt_command")
        .unwrap_or_else(|| panic!("no command record in {journal}"));
    assert_eq!(
        (rec["batch"].as_str(), rec["attempt"].as_u64()),
        (Some("b0"), Some(1))
    );
    let argv: Vec<String> = serde_json::from_value(rec["argv"].clone()).unwrap();
    assert_eq!(argv[0], "/bin/false");
    assert_eq!(argv[1..], a.spec.invocation.args[..]);
    let env: BTreeMap<String, String> = serde_json::from_value(rec["env"].clone()).unwrap();
    assert_eq!(env.get(argv::BATCH_ENV).map(String::as_str), Some("b0"));
    let state_tag = crate::engine::warm::launcher::STATE_ENV;
    assert!(!env.contains_key(state_tag), "{env:?}");
    assert!(a.spec.invocation.env.iter().any(|(k, _)| k == state_tag));
    // The faces see it too.
    events_until(&mut r, |e| {
        matches!(e, Event::BatchChanged(v) if v.history.first().is_some_and(|h| h.command.is_some()))
    })
    .await;
    r.handle.send(Command::Shutdown { force: true });
    a.exit(137).await;
    r.handle.finish().await.unwrap();
}

fn node_event(name: &str, kind: EventKind) -> OutputLine {
    OutputLine {
        stderr: false,
        text: String::new(),
        event: Some(DbtEvent {
            name: name.into(),
            level: crate::dbt::events::Level::Info,
            msg: String::new(),
            invocation_id: Some("inv".into()),
            kind,
        }),
    }
}

/// A face that does not read while 20,000 lines arrive: the engine goes on, the
/// queued events stay bounded, the node events and the end still arrive, and
/// the face is told how many lines it did not get.
#[tokio::test]
async fn a_face_that_does_not_keep_up_loses_log_lines_only() {
    let mut r = rig(1, 1, 1, 1, true);
    let a = next_launch(&mut r).await;
    let key = a.spec.key;
    let node = NodeRef {
        unique_id: "model.p.m1".into(),
        name: "m1".into(),
        resource_type: "model".into(),
        path: None,
    };
    let pos = Position {
        index: Some(1),
        total: Some(1),
    };
    a.say(AttemptReport::Line {
        key,
        line: node_event(
            "LogStartLine",
            EventKind::NodeStarted {
                node: node.clone(),
                pos,
            },
        ),
    })
    .await;
    for i in 0..20_000 {
        a.say(AttemptReport::Line {
            key,
            line: OutputLine {
                stderr: false,
                text: format!("line {i}"),
                event: None,
            },
        })
        .await;
    }
    a.say(AttemptReport::Line {
        key,
        line: node_event(
            "LogModelResult",
            EventKind::NodeFinished {
                node,
                status: "success".into(),
                execution_time: None,
                message: None,
                pos,
            },
        ),
    })
    .await;
    a.exit(0).await;
    // The face starts reading only once the engine has taken everything (the
    // summary says the batch succeeded).
    let path = r.state.summary_path();
    let done =
        || std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains("succeeded"));
    for _ in 0..200 {
        if done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done(), "the engine took every report");
    let seen = events_until(&mut r, |e| matches!(e, Event::Idle)).await;
    let logs = seen
        .iter()
        .filter(|e| matches!(e, Event::Log { .. }))
        .count();
    assert!(
        logs < 2 * EVENTS,
        "{logs} log events were queued for the face"
    );
    let word = seen
        .iter()
        .position(|e| matches!(e, Event::Log { line, .. } if line.text.contains("lines not shown")))
        .expect("the face is told lines were left out");
    let end = seen
        .iter()
        .position(|e| matches!(e, Event::BatchChanged(v) if v.status == BatchStatus::Succeeded))
        .unwrap();
    assert!(word < end, "the word comes before the batch's end");
    let last_view = seen
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::BatchChanged(v) => Some(v),
            _ => None,
        })
        .unwrap();
    assert_eq!(last_view.status, BatchStatus::Succeeded);
    assert_eq!(last_view.nodes_done, 1, "the node's end got through");
    r.handle.send(Command::Shutdown { force: false });
    r.handle.finish().await.unwrap();
}
