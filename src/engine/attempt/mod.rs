//! One actor per attempt: it owns one dbt child (and its process group) from spawn
//! to "group empty", streams its output, watches its run_results.json, and obeys
//! the stop ladder. It reports to the engine only through `AttemptReport`s:
//! `Spawned` (or `SpawnFailed`) first, `Exited` last, after the child is reaped
//! and the group is gone.

pub(super) mod ladder;
pub(super) mod output;
mod watch;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dbt::run_results::{self, ReadError, RunResults};
use crate::engine::process;
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec, ExitInfo};
use ladder::Ladder;
use output::Pump;
use watch::ResultsWatch;

/// How long the output of a finished child may take to drain. A process that
/// escaped the group could hold a pipe open forever.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs the attempt to the end. Never panics on child misbehaviour.
pub(crate) async fn run(
    spec: AttemptSpec,
    mut ctl: mpsc::Receiver<AttemptCtl>,
    reports: mpsc::Sender<AttemptReport>,
) {
    let key = spec.key;
    for d in [&spec.target_dir, &spec.log_dir] {
        if let Err(e) = std::fs::create_dir_all(d) {
            let error = format!("cannot create {}: {e}", d.display());
            let _ = reports
                .send(AttemptReport::SpawnFailed { key, error })
                .await;
            return;
        }
    }
    if let Some(seed) = &spec.seed_parse {
        let own = spec.target_dir.join("partial_parse.msgpack");
        if !own.exists() {
            // A missing copy only costs dbt a full parse.
            let _ = std::fs::copy(seed, own);
        }
    }
    let started = SystemTime::now();
    let mut g = match process::spawn_in_group(&spec.invocation) {
        Ok(g) => g,
        Err(e) => {
            let error = format!("{}: {e}", spec.invocation.program.display());
            let _ = reports
                .send(AttemptReport::SpawnFailed { key, error })
                .await;
            return;
        }
    };
    let pgid = g.pgid;
    let _ = reports
        .send(AttemptReport::Spawned { key, pid: g.pid() })
        .await;

    let invocation = Arc::new(OnceLock::new());
    let pump = |stderr: bool| Pump {
        key,
        stderr,
        reports: reports.clone(),
        invocation: invocation.clone(),
    };
    let mut pumps = Vec::new();
    if let Some(out) = g.child.stdout.take() {
        let (p, file) = (pump(false), spec.stdout_file.clone());
        pumps.push(tokio::spawn(async move { p.run(out, &file).await }));
    }
    if let Some(err) = g.child.stderr.take() {
        let (p, file) = (pump(true), spec.stderr_file.clone());
        pumps.push(tokio::spawn(async move { p.run(err, &file).await }));
    }

    let results_path = spec.target_dir.join("run_results.json");
    let mut watch = ResultsWatch::start(&spec.target_dir);
    let mut ladder = Ladder::new(pgid, spec.grace_int, spec.grace_term);
    let mut ctl_open = true;
    let exit = loop {
        let due = ladder.deadline();
        tokio::select! {
            status = g.child.wait() => break exit_info(&status),
            () = watch.written() => {
                if let Some(inv) = invocation.get()
                    && let Ok(results) = run_results::read(&results_path, Some(inv))
                {
                    let _ = reports.send(AttemptReport::Results { key, results }).await;
                }
            }
            c = ctl.recv(), if ctl_open => match c {
                None => ctl_open = false,
                Some(AttemptCtl::Suspend) => process::signal_group(pgid, Signal::SIGSTOP),
                Some(AttemptCtl::Resume) => process::signal_group(pgid, Signal::SIGCONT),
                Some(AttemptCtl::Stop) => ladder.stop(),
                Some(AttemptCtl::Kill) => ladder.kill(),
            },
            () = sleep_until(due), if due.is_some() => ladder.escalate(),
        }
    };

    // The leader is reaped; members of its group may live on (a grandchild that
    // ignores SIGTERM, say). The attempt is over only when the group is empty.
    let group_clean = ladder::empty_group(pgid, spec.grace_term).await;
    process::unregister(pgid);

    // Let the pumps finish what the pipes still hold, then stop waiting.
    let drain_until = Instant::now() + DRAIN;
    for p in &mut pumps {
        if tokio::time::timeout_at(drain_until, &mut *p).await.is_err() {
            p.abort();
        }
    }

    let results = final_results(&results_path, invocation.get().map(String::as_str), started);
    let _ = reports
        .send(AttemptReport::Exited {
            key,
            exit,
            results,
            group_clean,
            broken: None,
        })
        .await;
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(super) fn exit_info(status: &std::io::Result<std::process::ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => ExitInfo {
            code: s.code(),
            signal: s.signal(),
        },
        Err(_) => ExitInfo {
            code: None,
            signal: None,
        },
    }
}

/// The authoritative read after exit. Without an invocation id from the events,
/// accept only a file written after the attempt started: an older one belongs to
/// an earlier attempt in the same target dir. dbt has exited, so a file that ends
/// early will never be finished.
pub(super) fn final_results(
    path: &std::path::Path,
    invocation_id: Option<&str>,
    started: SystemTime,
) -> Result<RunResults, ReadError> {
    if invocation_id.is_none() {
        let fresh = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started);
        if !fresh {
            return Err(ReadError::Missing);
        }
    }
    match run_results::read(path, invocation_id) {
        Err(ReadError::Incomplete) => Err(ReadError::Corrupt(
            "it ends early, and dbt has exited (truncated)".into(),
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests;
