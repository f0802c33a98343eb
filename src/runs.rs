//! The runs in a directory, and the commands that act on one from outside:
//! `attach`, `stop` and `ls`. A run is live while its control socket answers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{AttachArgs, LsArgs, StopArgs};
use crate::engine::Command;
use crate::error::exit;
use crate::progress::fmt_duration;
use crate::report::clean;
use crate::server::client::{ConnectError, RemoteLink};
use crate::server::socket::{self, SOCKET_FILE};
use crate::state_dir::{RUN_FILE, SUMMARY_FILE};
use crate::usage;

/// Where runs go when `--state-dir` is not given.
const RUNS_DIR: &str = ".dbt-herd";

/// One run, as `ls` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct RunListing {
    pub state_dir: String,
    pub live: bool,
    /// Live, and still preparing (resolving the plan, starting dbt): no batch has started.
    pub preparing: bool,
    /// The pid of the process that runs (or last ran) it.
    pub pid: Option<u32>,
    /// Batches by status, from summary.json.
    pub batches: BTreeMap<String, usize>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub elapsed_s: Option<f64>,
    pub exit_code: Option<i32>,
}

/// Whether a run is served from `dir` now.
async fn is_live(dir: &Path) -> bool {
    socket::connect(&dir.join(SOCKET_FILE)).await.is_ok()
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether the run served from `dir` is still preparing, asked of the run
/// itself (the first thing it tells a client is its preparation).
async fn is_preparing(dir: &Path) -> bool {
    let Ok(mut link) = RemoteLink::connect(dir, true).await else {
        return false;
    };
    let first = tokio::time::timeout(std::time::Duration::from_secs(2), link.next_event()).await;
    let preparing = matches!(
        first,
        Ok(Some(crate::engine::Event::Preparing(ref p))) if !p.done
    );
    link.close().await;
    preparing
}

async fn listing(dir: &Path) -> RunListing {
    let live = is_live(dir).await;
    let preparing = live && is_preparing(dir).await;
    let summary = read_json(&dir.join(SUMMARY_FILE));
    let run = read_json(&dir.join(RUN_FILE));
    let text = |v: Option<&serde_json::Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(|s| s.as_str())
            .map(str::to_string)
    };
    let mut batches = BTreeMap::new();
    for b in summary
        .as_ref()
        .and_then(|s| s.get("batches"))
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        let status = b
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown");
        *batches.entry(status.to_string()).or_insert(0) += 1;
    }
    let started_at =
        text(summary.as_ref(), "started_at").or_else(|| text(run.as_ref(), "created_at"));
    let finished_at = text(summary.as_ref(), "finished_at");
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let elapsed_s = started_at.as_deref().and_then(parse).map(|start| {
        let end = finished_at
            .as_deref()
            .and_then(parse)
            .map_or_else(chrono::Utc::now, |e| e.with_timezone(&chrono::Utc));
        let ms = (end - start.with_timezone(&chrono::Utc)).num_milliseconds();
        (ms as f64 / 1000.0).max(0.0)
    });
    RunListing {
        state_dir: dir.display().to_string(),
        live,
        preparing,
        pid: crate::state_lock::last_holder(dir),
        batches,
        started_at,
        finished_at,
        elapsed_s,
        exit_code: summary
            .as_ref()
            .and_then(|s| s.get("exit_code"))
            .and_then(serde_json::Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
    }
}

/// The state dirs directly under `root`, oldest first (their names start with
/// the time they were made; otherwise by name).
fn state_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(RUN_FILE).is_file())
        .collect();
    dirs.sort_by_key(|p| {
        let made = std::fs::metadata(p.join(RUN_FILE))
            .and_then(|m| m.modified())
            .ok();
        (made, p.clone())
    });
    dirs
}

/// `dbt-herd ls [DIR] [--json]`.
pub(crate) async fn ls(args: &LsArgs, out: &mut dyn Write) -> color_eyre::Result<i32> {
    let root = args.dir.clone().unwrap_or_else(|| PathBuf::from(RUNS_DIR));
    if !root.is_dir() {
        return Err(usage!("ls: '{}' is not a directory", root.display()).into());
    }
    let mut runs = Vec::new();
    for dir in state_dirs(&root) {
        runs.push(listing(&dir).await);
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "runs": runs }))?;
        writeln!(out)?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        writeln!(out, "no runs under {}", clean(&root.display().to_string()))?;
        return Ok(exit::OK);
    }
    writeln!(
        out,
        "{:<9} {:>8} {:>9} {:<20} {:<40} STATE DIR",
        "STATE", "PID", "ELAPSED", "STARTED", "BATCHES"
    )?;
    for r in &runs {
        let state = match (r.live, r.exit_code) {
            (true, _) if r.preparing => "preparing".to_string(),
            (true, _) => "live".to_string(),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "stopped".to_string(),
        };
        let counts = r
            .batches
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let started = r
            .started_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<9} {:>8} {:>9} {:<20} {:<40} {}",
            state,
            r.pid.map(|p| p.to_string()).unwrap_or_default(),
            r.elapsed_s.map(fmt_duration).unwrap_or_default(),
            started,
            clean(&counts),
            clean(&r.state_dir)
        )?;
    }
    Ok(exit::OK)
}

/// The run `attach` means: the one named, or the newest live one under `.dbt-herd/`.
async fn chosen(dir: Option<&Path>) -> color_eyre::Result<PathBuf> {
    if let Some(dir) = dir {
        if !dir.join(RUN_FILE).is_file() {
            return Err(usage!(
                "'{}' is not a dbt-herd state dir (no {RUN_FILE})",
                dir.display()
            )
            .into());
        }
        return Ok(crate::config::absolute(dir));
    }
    for dir in state_dirs(Path::new(RUNS_DIR)).into_iter().rev() {
        if is_live(&dir).await {
            return Ok(crate::config::absolute(&dir));
        }
    }
    Err(usage!("no live run under {RUNS_DIR}/; name a state dir: dbt-herd attach DIR").into())
}

fn connect_error(dir: &Path, e: ConnectError) -> color_eyre::Report {
    match e {
        ConnectError::NotLive => usage!("no run in progress in {}", dir.display()).into(),
        ConnectError::Refused(why) => usage!("{}: {why}", dir.display()).into(),
        ConnectError::Io(e) => {
            color_eyre::eyre::eyre!("cannot reach the run in {}: {e}", dir.display())
        }
    }
}

/// A finished run, told from its state dir: its summary's closing lines, and
/// its exit status as it was recorded.
fn finished(dir: &Path, out: &mut dyn Write) -> color_eyre::Result<i32> {
    let summary = read_json(&dir.join(SUMMARY_FILE));
    let code = summary
        .as_ref()
        .and_then(|s| s.get("exit_code"))
        .and_then(serde_json::Value::as_i64)
        .and_then(|c| i32::try_from(c).ok());
    let shown = clean(&dir.display().to_string());
    match code {
        Some(code) => writeln!(out, "the run in {shown} has ended (exit {code})")?,
        None => writeln!(
            out,
            "the run in {shown} is not running (it was stopped or killed; resume with: dbt-herd run --resume {shown})"
        )?,
    }
    overview(summary.as_ref(), out)?;
    Ok(code.unwrap_or(exit::BATCHES_FAILED))
}

/// Batches by status, and each batch that did not succeed with its error.
fn overview(summary: Option<&serde_json::Value>, out: &mut dyn Write) -> std::io::Result<()> {
    let batches: &[serde_json::Value] = summary
        .and_then(|s| s.get("batches"))
        .and_then(|b| b.as_array())
        .map_or(&[], Vec::as_slice);
    let field = |b: &serde_json::Value, k: &str| {
        b.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for b in batches {
        *counts.entry(field(b, "status")).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(out, "batches: {}", clean(&counts.join(", ")))?;
    for b in batches.iter().filter(|b| field(b, "status") != "succeeded") {
        writeln!(
            out,
            "  {:<10} {}  {}",
            clean(&field(b, "status")),
            clean(&field(b, "label")),
            clean(&field(b, "error"))
        )?;
    }
    Ok(())
}

/// `dbt-herd attach [DIR] [--read-only] [--headless]`.
pub(crate) async fn attach(args: &AttachArgs, interactive: bool) -> color_eyre::Result<i32> {
    let dir = chosen(args.state_dir.as_deref()).await?;
    let headless = args.headless || !interactive;
    // A line watcher sends no command, and must not keep an idle run alive
    // while it waits for that run to end.
    let mut link = match RemoteLink::connect(&dir, args.read_only || headless).await {
        Ok(l) => l,
        Err(ConnectError::NotLive) => return finished(&dir, &mut std::io::stdout()),
        Err(e) => return Err(connect_error(&dir, e)),
    };
    let shown = dir.display().to_string();
    if headless {
        return crate::report::watch(&mut link, std::io::stdout(), &shown).await;
    }
    let opts = crate::tui::TuiOptions {
        mouse: !args.no_mouse,
        read_only: args.read_only,
        ..Default::default()
    };
    crate::tui::attach(link, opts, &shown).await
}

/// Waits until process `pid` has exited, at most `within`.
async fn gone(pid: u32, within: std::time::Duration) {
    let Ok(pid) = i32::try_from(pid) else { return };
    let deadline = tokio::time::Instant::now() + within;
    // A zombie has let its lock go: it counts as gone.
    let alive = || match crate::procfs::stat(pid) {
        Some(st) => !st.is_gone(),
        // SAFETY: signal 0 only asks whether the process exists.
        None => !crate::procfs::available() && unsafe { libc::kill(pid, 0) } == 0,
    };
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `dbt-herd stop DIR`: the stop ladder for every batch; waits for the run to
/// end and exits with its exit status.
pub(crate) async fn stop(args: &StopArgs, out: &mut dyn Write) -> color_eyre::Result<i32> {
    let dir = chosen(Some(&args.state_dir)).await?;
    let mut link = match RemoteLink::connect(&dir, false).await {
        Ok(l) => l,
        Err(ConnectError::NotLive) => return finished(&dir, out),
        Err(e) => return Err(connect_error(&dir, e)),
    };
    writeln!(
        out,
        "stopping the run in {} (pid {})…",
        clean(&dir.display().to_string()),
        link.pid
    )?;
    out.flush()?;
    link.send(Command::Shutdown { force: false });
    let pid = link.pid;
    match link.wait_end().await {
        Some(end) => {
            // Returned once the run's process is gone and its lock free: a
            // `--resume` right after the stop must find the state dir its own.
            gone(pid, std::time::Duration::from_secs(15)).await;
            for line in &end.lines {
                writeln!(out, "{line}")?;
            }
            Ok(end.exit_code)
        }
        None => Err(color_eyre::eyre::eyre!(
            "lost the connection to the run in {} before it ended",
            dir.display()
        )),
    }
}
