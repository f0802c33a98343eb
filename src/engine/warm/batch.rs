//! One batch on a warm worker: the request, the worker's events and printed
//! lines into the batch's logs and the engine's reports, the stop ladder on
//! the worker's group, and the verdict on the worker (sound, or to be
//! replaced) when the batch ends.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::protocol::{Reply, Request};
use super::slot::{Job, SlotConfig, Warm};
use crate::engine::attempt::ladder::{self, Ladder};
use crate::engine::attempt::output::Lines;
use crate::engine::attempt::{exit_info, final_results};
use crate::engine::process;
use crate::engine::protocol::{AttemptCtl, AttemptReport, ExitInfo};

/// Runs one batch. Returns the worker if it is still sound.
pub(super) async fn run(cfg: &SlotConfig, mut w: Warm, job: Job) -> Option<Warm> {
    let Job {
        spec,
        env,
        mut ctl,
        reports,
    } = job;
    let key = spec.key;
    let id = format!("{}:{}", key.batch, key.attempt);
    for d in [&spec.target_dir, &spec.log_dir] {
        if let Err(e) = std::fs::create_dir_all(d) {
            let error = format!("cannot create {}: {e}", d.display());
            let _ = reports
                .send(AttemptReport::SpawnFailed { key, error })
                .await;
            return Some(w);
        }
    }
    // Stopped before it began (a stop while the worker was still parsing, say):
    // it never runs.
    while let Ok(c) = ctl.try_recv() {
        if matches!(c, AttemptCtl::Stop | AttemptCtl::Kill) {
            let _ = reports
                .send(AttemptReport::Exited {
                    key,
                    exit: ExitInfo {
                        code: None,
                        signal: Some(libc::SIGINT),
                    },
                    results: Err(crate::dbt::run_results::ReadError::Missing),
                    group_clean: true,
                    broken: None,
                })
                .await;
            return Some(w);
        }
    }
    let mut out = RawLog::create(&spec.stdout_file);
    let mut err = RawLog::create(&spec.stderr_file);
    let invocation = Arc::new(OnceLock::new());
    let mut lines = Lines::new(key, reports.clone(), invocation.clone());
    let _ = reports
        .send(AttemptReport::Spawned { key, pid: w.pid() })
        .await;
    let started = SystemTime::now();
    let pgid = w.proc.pgid();
    let request = Request::Run {
        job: id.clone(),
        args: spec.invocation.args.clone(),
        env,
    };
    let mut ladder = Ladder::new(pgid, spec.grace_int, spec.grace_term);
    let mut sound = w.proc.send(&request).is_ok();
    let mut problem: Option<String> =
        (!sound).then(|| "cannot send the batch to the worker".into());
    let mut ctl_open = true;
    let mut exit = ExitInfo {
        code: None,
        signal: None,
    };
    // The worker ignores SIGINT until it has taken the batch (its first event):
    // a stop before that waits for it, or for the grace to pass.
    let mut begun = false;
    let mut stop_when_begun: Option<tokio::time::Instant> = None;
    while sound {
        let due = match (ladder.deadline(), stop_when_begun) {
            (Some(d), _) | (None, Some(d)) => Some(d),
            (None, None) => None,
        };
        tokio::select! {
            r = w.proc.replies.recv() => match r {
                Some(Ok(Reply::Event { job: Some(j), line, cut })) if j == id => {
                    begun = true;
                    if stop_when_begun.take().is_some() {
                        ladder.stop();
                    }
                    out.line(&line);
                    let text = if cut { format!("{line} …[line cut]") } else { line };
                    let _ = lines.report(false, text).await;
                }
                Some(Ok(Reply::Done { job, exit_code, error, .. })) if job == id => {
                    exit.code = Some(exit_code);
                    if let (2, Some(e)) = (exit_code, error) {
                        // An exception, not failing nodes: dbt's own words on it.
                        err.line(&e);
                        let _ = lines.report(true, format!("dbt: {e}")).await;
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    problem = Some(format!("the warm worker broke its protocol: {e}"));
                    sound = false;
                }
                None => sound = false,
            },
            Some((stderr, line)) = w.printed.recv() => {
                if stderr {
            err.line(&line);
        } else {
            out.line(&line);
        }
                let _ = lines.report(stderr, line).await;
            }
            status = w.proc.group.child.wait() => {
                exit = exit_info(&status);
                sound = false;
            }
            c = ctl.recv(), if ctl_open => match c {
                None => ctl_open = false,
                Some(AttemptCtl::Suspend) => process::signal_group(pgid, Signal::SIGSTOP),
                Some(AttemptCtl::Resume) => process::signal_group(pgid, Signal::SIGCONT),
                Some(AttemptCtl::Stop) if begun => ladder.stop(),
                Some(AttemptCtl::Stop) => {
                    stop_when_begun.get_or_insert(tokio::time::Instant::now() + spec.grace_int);
                }
                Some(AttemptCtl::Kill) => ladder.kill(),
            },
            () = sleep_until(due), if due.is_some() => {
                if stop_when_begun.take().is_some() {
                    ladder.stop();
                } else {
                    ladder.escalate();
                }
            }
        }
    }
    let mut group_clean = true;
    if !sound {
        // Dead or broken: nothing of it may live on.
        process::signal_group(pgid, Signal::SIGKILL);
        if exit.code.is_none() && exit.signal.is_none() {
            exit = exit_info(&w.proc.group.child.wait().await);
        }
        group_clean = ladder::empty_group(pgid, cfg.grace_term).await;
        process::unregister(pgid);
        // Its exit can be seen before the last of what it wrote: read that too,
        // so a broken message or a late `done` is not lost.
        let (late_exit, late_problem) = drain_replies(&mut w.proc.replies, &id).await;
        if let Some(code) = late_exit {
            exit.code = Some(code);
        }
        problem = problem.or(late_problem);
        if late_exit.is_none() && problem.is_none() {
            problem = Some(format!(
                "the warm worker ended in the middle of the batch ({})",
                exit.describe().trim_start_matches("dbt ")
            ));
        }
        if let Some(p) = &problem {
            err.line(p);
            let _ = lines.report(true, p.clone()).await;
        }
    }
    // What the worker printed up to now belongs to this batch.
    while let Ok((stderr, line)) = w.printed.try_recv() {
        if stderr {
            err.line(&line);
        } else {
            out.line(&line);
        }
        let _ = lines.report(stderr, line).await;
    }
    let _ = lines.flush().await;
    let results = final_results(
        &spec.target_dir.join("run_results.json"),
        invocation.get().map(String::as_str),
        started,
    );
    let _ = reports
        .send(AttemptReport::Exited {
            key,
            exit,
            results,
            group_clean,
            broken: problem,
        })
        .await;
    w.runs += 1;
    sound.then_some(w)
}

/// What a dead worker still had in its reply pipe: the exit code of a `done`
/// for this job, and any break in the protocol. Bounded: the pipe closes when
/// the group is gone, but a wedged reader must not hold the slot.
async fn drain_replies(
    replies: &mut mpsc::Receiver<Result<Reply, String>>,
    id: &str,
) -> (Option<i32>, Option<String>) {
    let mut done = None;
    let mut problem = None;
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(1), replies.recv()).await {
        match r {
            Ok(Reply::Done { job, exit_code, .. }) if job == id => done = Some(exit_code),
            Ok(_) => {}
            Err(e) => problem = Some(format!("the warm worker broke its protocol: {e}")),
        }
    }
    (done, problem)
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A batch's raw output file (writes that fail are dropped: a full disk must not
/// stop the batch).
pub(super) struct RawLog(pub(super) Option<std::fs::File>);

impl RawLog {
    pub(super) fn create(path: &std::path::Path) -> Self {
        Self(std::fs::File::create(path).ok())
    }

    pub(super) fn line(&mut self, text: &str) {
        if let Some(f) = self.0.as_mut()
            && writeln!(f, "{text}").is_err()
        {
            self.0 = None;
        }
    }
}
