//! A run in the background: `dbt-herd run` starts its engine as a process of its
//! own session (so a closing terminal or SSH session does not reach it), waits
//! until it serves its control socket, and then either returns (`--detach`) or
//! opens the TUI on it as a client.
//!
//! The background process gets its options as JSON on stdin (never in its argv,
//! where other users could read secrets), reports through stderr until it is
//! ready, says "ready" on stdout, and from then on writes to `<state dir>/herd.log`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use color_eyre::eyre::{WrapErr, eyre};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};

use super::{ServeOptions, Server};
use crate::cli::RunArgs;
use crate::error::exit;
use crate::report::{self, Ending, Outcome};
use crate::start;

/// What the background process is told on stdin.
#[derive(Serialize, Deserialize)]
struct ServeRequest {
    args: RunArgs,
    /// A TUI will attach as soon as the run is served: an idle run waits for it.
    tui: bool,
    /// The demo's dir: the run delivers its late file as the demo does.
    demo: Option<PathBuf>,
}

const READY: &str = "ready";
pub(crate) const LOG_FILE: &str = "herd.log";
/// How long a run started for a TUI waits for it before an idle run may end.
const WAIT_FOR_TUI: Duration = Duration::from_secs(60);

/// Starts the run in the background. Returns its state dir once it is served,
/// or the exit status it ended with before that (a usage error, Ctrl-C while
/// it resolved the plan).
pub(crate) async fn launch(
    args: &RunArgs,
    tui: bool,
    demo: Option<&Path>,
) -> color_eyre::Result<Result<PathBuf, i32>> {
    let mut args = args.clone();
    let state_dir = crate::config::absolute(&match (&args.resume, &args.state_dir) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => crate::state_dir::StateDir::default_path(),
    });
    if args.resume.is_some() {
        args.resume = Some(state_dir.clone());
    } else {
        args.state_dir = Some(state_dir.clone());
    }
    let exe = std::env::current_exe().wrap_err("cannot find dbt-herd's own executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; it makes the child the leader of a
    // new session with no controlling terminal, so hang-ups do not reach it.
    unsafe {
        cmd.as_std_mut().pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .wrap_err("cannot start the run's background process")?;
    let request = serde_json::to_vec(&ServeRequest {
        args,
        tui,
        demo: demo.map(Path::to_path_buf),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&request)
            .await
            .wrap_err("cannot hand the run its options")?;
    }
    let stdout = child.stdout.take().ok_or_else(|| eyre!("no stdout pipe"))?;
    let stderr = child.stderr.take().ok_or_else(|| eyre!("no stderr pipe"))?;
    // What it says before it is ready is for the person waiting here.
    let relay = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut out = BufReader::new(stdout).lines();
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let ready = loop {
        let forward = tokio::select! {
            line = out.next_line() => break matches!(line, Ok(Some(l)) if l == READY),
            _ = sigint.recv() => libc::SIGINT,
            _ = sigterm.recv() => libc::SIGTERM,
            _ = sighup.recv() => libc::SIGTERM,
        };
        // Not started yet as far as the person knows: stopping here stops it.
        if let Some(pid) = pid {
            // SAFETY: a signal to our own child, which we have not reaped.
            unsafe {
                libc::kill(pid, forward);
            }
        }
    };
    if ready {
        // Its stderr is the log file now; what it said before is printed.
        let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
        return Ok(Ok(state_dir));
    }
    let status = child
        .wait()
        .await
        .wrap_err("lost the run's background process")?;
    let _ = tokio::time::timeout(Duration::from_secs(2), relay).await;
    Ok(Err(status
        .code()
        .or_else(|| status.signal().map(|s| exit::SIGNAL_BASE + s))
        .unwrap_or(exit::INTERNAL)))
}

/// The background process: reads its options, prepares and starts the run,
/// serves it, and prints progress lines to `herd.log` until it ends.
pub(crate) fn serve() -> color_eyre::Result<i32> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .wrap_err("cannot read the run's options")?;
    let request: ServeRequest =
        serde_json::from_slice(&input).wrap_err("the run's options are unreadable")?;
    let args = request.args;
    let started = std::time::Instant::now();
    let prepared = start::prepare(&args)?;
    let state_dir = prepared.state.root.clone();
    crate::entry::runtime()?.block_on(async move {
        let handle = start::launch(prepared, true);
        let opts = ServeOptions {
            wait_for_client: request.tui.then_some(WAIT_FOR_TUI),
            observer: request.demo.as_deref().map(crate::demo::late_delivery_for),
        };
        let (server, local) = Server::start(handle, &state_dir, opts)?;
        announce_ready(&state_dir)?;
        let outcome = report::run_headless(local, std::io::stdout(), None, false).await?;
        Ok(finish(server, outcome, &state_dir, started).await)
    })
}

/// Says "ready" to the process that started this one, then points stdout and
/// stderr at the run's log (that process stops reading) and stdin at /dev/null.
fn announce_ready(state_dir: &Path) -> color_eyre::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{READY}")?;
    out.flush()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(LOG_FILE))
        .wrap_err("cannot open the run's log")?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors, which stay open.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

/// The run's end, for everyone: its exit status (a client's Ctrl-C counts as
/// the run's own), kept in summary.json and sent to every client.
pub(crate) async fn finish(
    server: Server,
    outcome: Outcome,
    state_dir: &Path,
    started: std::time::Instant,
) -> i32 {
    let outcome = match server.interrupted() {
        Some(sig) if matches!(outcome.ending, Ending::Completed) => Outcome {
            ending: Ending::Signalled(sig),
            ..outcome
        },
        _ => outcome,
    };
    let code = outcome.exit_code();
    if let Some(path) = &outcome.engine.summary_path
        && let Err(e) = crate::engine::summary::record_exit_code(path, code)
    {
        eprintln!(
            "dbt-herd: cannot record the exit code in {}: {e}",
            path.display()
        );
    }
    let wall = started.elapsed().as_secs_f64();
    let lines = outcome.closing_lines(Some(&state_dir.display().to_string()), wall);
    server.end(code, lines).await;
    code
}
