//! One actor per attempt: it owns one dbt child (and its process group) from spawn
//! to "group empty", streams its output, watches its run_results.json, and obeys
//! the stop ladder. It reports to the engine only through `AttemptMsg`s, and it
//! sends `Exited` last, after the child is reaped and the group is gone.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use notify::{EventKind as FsKind, RecursiveMode, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dbt::argv::Invocation;
use crate::dbt::events;
use crate::dbt::run_results::{self, ReadError, RunResults};
use crate::engine::core::{AttemptCtl, AttemptKey, AttemptMsg, ExitInfo};
use crate::engine::process;
use crate::text::lines::LineSplitter;

/// A line longer than this is cut (the full bytes are still in the attempt's log file).
pub const MAX_LINE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct AttemptSpec {
    pub key: AttemptKey,
    pub invocation: Invocation,
    pub target_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Raw copies of everything the child writes.
    pub stdout_file: PathBuf,
    pub stderr_file: PathBuf,
    pub grace_int: Duration,
    pub grace_term: Duration,
}

enum Pipe {
    Line { stderr: bool, text: String },
    Closed,
}

/// Where the stop ladder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ladder {
    Idle,
    SentInt,
    SentTerm,
    SentKill,
}

/// Runs the attempt to the end. Never panics on child misbehaviour.
pub async fn run(
    spec: AttemptSpec,
    mut ctl: mpsc::UnboundedReceiver<AttemptCtl>,
    to_engine: mpsc::UnboundedSender<crate::engine::run::EngineMsg>,
) {
    let key = spec.key;
    let send = |m: AttemptMsg| {
        let _ = to_engine.send(crate::engine::run::EngineMsg::Attempt(m));
    };
    for d in [&spec.target_dir, &spec.log_dir] {
        if let Err(e) = tokio::fs::create_dir_all(d).await {
            send(AttemptMsg::SpawnFailed {
                key,
                error: format!("cannot create {}: {e}", d.display()),
            });
            return;
        }
    }
    let started = SystemTime::now();
    let mut child = match process::spawn_in_group(&spec.invocation) {
        Ok(c) => c,
        Err(e) => {
            send(AttemptMsg::SpawnFailed {
                key,
                error: format!("{}: {e}", spec.invocation.program.display()),
            });
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    let pgid = pid as i32;
    send(AttemptMsg::Spawned { key, pid });

    let (pipe_tx, mut pipe_rx) = mpsc::unbounded_channel();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, false, spec.stdout_file.clone(), pipe_tx.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, true, spec.stderr_file.clone(), pipe_tx.clone()))),
    ];
    drop(pipe_tx);

    // notify runs its callback on its own thread; forward only the events that can
    // mean "run_results.json is complete" (a close after writing).
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<()>();
    let results_path = spec.target_dir.join("run_results.json");
    let watch_path = results_path.clone();
    let _watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && matches!(
                ev.kind,
                FsKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Write
                ))
            )
            && ev.paths.iter().any(|p| p == &watch_path)
        {
            let _ = fs_tx.send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&spec.target_dir, RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    // If watching fails (inotify limits), the read after exit still gets the results.

    let mut invocation_id: Option<String> = None;
    let mut ladder = Ladder::Idle;
    let mut deadline: Option<Instant> = None;
    let mut pipes_open = 2;
    let mut exit: Option<ExitInfo> = None;
    let mut ctl_open = true;

    while exit.is_none() {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => {
                exit = Some(match status {
                    Ok(s) => {
                        use std::os::unix::process::ExitStatusExt;
                        ExitInfo { code: s.code(), signal: s.signal() }
                    }
                    Err(_) => ExitInfo { code: None, signal: None },
                });
            }
            Some(p) = pipe_rx.recv(), if pipes_open > 0 => match p {
                Pipe::Line { stderr, text } => forward_line(key, stderr, text, &mut invocation_id, &send),
                Pipe::Closed => pipes_open -= 1,
            },
            Some(()) = fs_rx.recv() => {
                if let Some(inv) = &invocation_id
                    && let Ok(results) = run_results::read(&results_path, Some(inv))
                {
                    send(AttemptMsg::Results { key, results });
                }
            }
            c = ctl.recv(), if ctl_open => match c {
                None => ctl_open = false,
                Some(AttemptCtl::Suspend) => process::signal_group(pgid, Signal::SIGSTOP),
                Some(AttemptCtl::Resume) => process::signal_group(pgid, Signal::SIGCONT),
                Some(AttemptCtl::Stop) if ladder == Ladder::Idle => {
                    // A stopped group cannot act on SIGINT: wake it first.
                    process::signal_group(pgid, Signal::SIGCONT);
                    process::signal_group(pgid, Signal::SIGINT);
                    ladder = Ladder::SentInt;
                    deadline = Some(Instant::now() + spec.grace_int);
                }
                Some(AttemptCtl::Stop) => {}
                Some(AttemptCtl::Kill) => {
                    process::signal_group(pgid, Signal::SIGKILL);
                    process::signal_group(pgid, Signal::SIGCONT);
                    ladder = Ladder::SentKill;
                    deadline = None;
                }
            },
            () = sleep => {
                (ladder, deadline) = escalate(pgid, ladder, spec.grace_term);
            }
        }
    }
    let exit = exit.unwrap_or(ExitInfo {
        code: None,
        signal: None,
    });

    // The leader is reaped; members of its group may live on (a grandchild that
    // ignores SIGTERM, say). The attempt is over only when the group is empty.
    let group_clean = empty_group(pgid, spec.grace_term).await;
    process::unregister(pgid);

    // Drain what the pipes still hold. A process that escaped the group could keep
    // a pipe open forever, so this wait is bounded.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while pipes_open > 0 {
        match tokio::time::timeout_at(drain_until, pipe_rx.recv()).await {
            Ok(Some(Pipe::Line { stderr, text })) => {
                forward_line(key, stderr, text, &mut invocation_id, &send)
            }
            Ok(Some(Pipe::Closed)) => pipes_open -= 1,
            Ok(None) | Err(_) => break,
        }
    }
    for r in readers.into_iter().flatten() {
        r.abort();
    }

    let results = final_results(&results_path, invocation_id.as_deref(), started);
    send(AttemptMsg::Exited {
        key,
        exit,
        results,
        group_clean,
    });
}

fn forward_line(
    key: AttemptKey,
    stderr: bool,
    text: String,
    invocation_id: &mut Option<String>,
    send: &impl Fn(AttemptMsg),
) {
    let event = if stderr {
        None
    } else {
        events::parse_line(&text)
    };
    if let Some(ev) = &event
        && invocation_id.is_none()
    {
        invocation_id.clone_from(&ev.invocation_id);
    }
    send(AttemptMsg::Line {
        key,
        stderr,
        text,
        event,
    });
}

/// The next rung of the stop ladder: SIGINT → SIGTERM → SIGKILL.
fn escalate(pgid: i32, ladder: Ladder, grace_term: Duration) -> (Ladder, Option<Instant>) {
    match ladder {
        Ladder::SentInt => {
            process::signal_group(pgid, Signal::SIGTERM);
            (Ladder::SentTerm, Some(Instant::now() + grace_term))
        }
        Ladder::SentTerm | Ladder::Idle | Ladder::SentKill => {
            process::signal_group(pgid, Signal::SIGKILL);
            (Ladder::SentKill, None)
        }
    }
}

/// After the leader exits: SIGTERM what is left of the group, then SIGKILL, and
/// wait until no member is alive. False if something survived SIGKILL for 10 s.
async fn empty_group(pgid: i32, grace_term: Duration) -> bool {
    if !process::group_alive(pgid) {
        return true;
    }
    process::signal_group(pgid, Signal::SIGCONT);
    process::signal_group(pgid, Signal::SIGTERM);
    let poll = Duration::from_millis(50);
    let term_deadline = Instant::now() + grace_term;
    while Instant::now() < term_deadline {
        tokio::time::sleep(poll).await;
        if !process::group_alive(pgid) {
            return true;
        }
    }
    let kill_deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < kill_deadline {
        process::signal_group(pgid, Signal::SIGKILL);
        tokio::time::sleep(poll).await;
        if !process::group_alive(pgid) {
            return true;
        }
    }
    false
}

/// The authoritative read after exit. Without an invocation id from the events,
/// accept only a file written after the attempt started: an older one belongs to
/// an earlier attempt in the same target dir.
fn final_results(
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
    run_results::read(path, invocation_id)
}

/// Copies a pipe to its log file and cuts it into bounded lines.
async fn pump(
    mut src: impl AsyncRead + Unpin,
    stderr: bool,
    file: PathBuf,
    tx: mpsc::UnboundedSender<Pipe>,
) {
    let mut out = tokio::fs::File::create(&file).await.ok();
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(f) = out.as_mut()
            && f.write_all(&buf[..n]).await.is_err()
        {
            // A full disk must not stop us from draining the pipe (a blocked pipe
            // would block dbt); keep streaming without the copy.
            out = None;
        }
        for line in splitter.push(&buf[..n]) {
            let mut text = String::from_utf8_lossy(&line.bytes).into_owned();
            if line.truncated {
                text.push_str(" …[line cut]");
            }
            if tx.send(Pipe::Line { stderr, text }).is_err() {
                return;
            }
        }
    }
    if let Some(line) = splitter.finish() {
        let _ = tx.send(Pipe::Line {
            stderr,
            text: String::from_utf8_lossy(&line.bytes).into_owned(),
        });
    }
    if let Some(f) = out.as_mut() {
        let _ = f.flush().await;
    }
    let _ = tx.send(Pipe::Closed);
}
