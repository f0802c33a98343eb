//! The headless face: progress as lines on stdout, a final summary, and the exit
//! status. It only consumes engine events and sends commands.

pub(crate) mod json;
mod watch;

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::clock::now_secs;
use crate::engine::{
    BatchStatus, BatchView, Command, EngineHandle, EngineOutcome, Event, RunInfo, SummaryStatus,
};
use crate::error::exit;
use crate::progress::{Totals, eta_secs, fmt_duration};
use crate::text::plural::plural;
use crate::text::sanitize::sanitize_plain;
pub(crate) use watch::watch;

/// Longest untrusted text put on one line.
const MAX_TEXT: usize = 400;

/// How the run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    /// Stopped by a signal: SIGINT, SIGTERM or SIGHUP.
    Signalled(i32),
}

pub(crate) struct Outcome {
    pub engine: EngineOutcome,
    pub ending: Ending,
}

impl Outcome {
    /// 128 + signal when interrupted (130 for Ctrl-C); 3 when dbt-herd itself
    /// failed (journal or summary not written); 0 when every batch succeeded; 1
    /// when any failed, was cancelled or did not run.
    pub fn exit_code(&self) -> i32 {
        if self.refused() {
            return exit::USAGE;
        }
        match self.ending() {
            Ending::Signalled(sig) => exit::SIGNAL_BASE + sig,
            Ending::Completed if self.engine.fault.is_some() => exit::INTERNAL,
            Ending::Completed if self.engine.summary.all_ok() => exit::OK,
            Ending::Completed => exit::BATCHES_FAILED,
        }
    }

    /// What both faces print at the end: for a run that could not run as
    /// asked, the one line that says why.
    pub fn closing_lines(&self, state_dir: Option<&str>, wall_s: f64) -> Vec<String> {
        if let Some(crate::engine::EarlyEnd::Refused(why)) = &self.engine.early {
            return vec![format!("dbt-herd: {}", clean(why))];
        }
        summary_lines(&self.engine, self.ending(), state_dir, wall_s)
    }

    /// How it ended: a run stopped while it prepared was interrupted, whoever
    /// stopped it (Ctrl-C here, `q` in a TUI, `dbt-herd stop`).
    fn ending(&self) -> Ending {
        match (&self.engine.early, self.ending) {
            (Some(crate::engine::EarlyEnd::Stopped), Ending::Completed) => {
                Ending::Signalled(libc::SIGINT)
            }
            (_, ending) => ending,
        }
    }

    /// The run could not run as asked (its closing line is an error, for stderr).
    pub fn refused(&self) -> bool {
        matches!(self.engine.early, Some(crate::engine::EarlyEnd::Refused(_)))
    }
}

/// Hooks for callers that want to act on events too (the demo's late delivery).
pub(crate) type Observer = Box<dyn FnMut(&Event, &mut dyn Write) + Send>;

struct Reporter<W: Write> {
    out: W,
    info: Option<RunInfo>,
    batches: Vec<BatchView>,
    started: std::time::Instant,
    workers: usize,
    paused: bool,
    /// Phases of the preparation already said.
    phases_said: usize,
    /// The run's state dir, from its preparation (before `Started` says it).
    state_dir: Option<String>,
}

/// SIGINT, SIGTERM and SIGHUP, as one stream of signal numbers: what stops a
/// headless face.
pub(crate) struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of them to arrive.
    pub async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

impl<W: Write> Reporter<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            info: None,
            batches: Vec::new(),
            started: std::time::Instant::now(),
            workers: 0,
            paused: false,
            phases_said: 0,
            state_dir: None,
        }
    }
}

/// Untrusted text made safe and fit for one line: dbt's multi-line errors are
/// joined with spaces (the full text is in the batch's log files).
pub(crate) fn clean(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    sanitize_plain(&joined, MAX_TEXT)
}

impl<W: Write> Reporter<W> {
    fn stamp(&self) -> String {
        let s = self.started.elapsed().as_secs();
        format!("[{:02}:{:02}:{:02}]", s / 3600, (s / 60) % 60, s % 60)
    }

    fn line(&mut self, text: &str) {
        let stamp = self.stamp();
        let _ = writeln!(self.out, "{stamp} {text}");
        let _ = self.out.flush();
    }

    fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Preparing(prep) => {
                self.state_dir = Some(prep.state_dir.clone()).filter(|d| !d.is_empty());
                for p in prep.phases.iter().skip(self.phases_said) {
                    let text = format!("prepare   {}", clean(&p.doing));
                    self.line(&text);
                }
                self.phases_said = self.phases_said.max(prep.phases.len());
            }
            Event::Started {
                info,
                batches,
                workers,
            } => {
                self.workers = workers.len();
                let done = batches
                    .iter()
                    .filter(|b| b.status == BatchStatus::Succeeded)
                    .count();
                let resumed = if done > 0 {
                    format!(" ({done} already succeeded)")
                } else {
                    String::new()
                };
                self.line(&format!(
                    "dbt {} of {}{resumed} · {} × {} threads · budget {} connections · retries {}",
                    info.command,
                    plural(batches.len(), "batch", "batches"),
                    plural(info.workers, "worker", "workers"),
                    info.threads,
                    info.budget,
                    info.retries
                ));
                self.line(&format!("state dir: {}", clean(&info.state_dir)));
                self.line(&clean(&info.mode_line()));
                for line in &info.plan {
                    self.line(&clean(line));
                }
                self.info = Some(info.clone());
                self.batches = batches.clone();
            }
            Event::BatchChanged(v) => {
                let before = self.batches.get(v.index).map(|b| b.status);
                if let Some(slot) = self.batches.get_mut(v.index) {
                    *slot = v.clone();
                }
                if before != Some(v.status) {
                    self.on_status(v, before);
                }
            }
            Event::WorkersChanged(w) => {
                self.workers = w.iter().filter(|w| !w.retiring).count();
            }
            Event::Notice { level, text } => {
                // Only the level is lowercased: the text holds paths and key names.
                let level = format!("{level:?}").to_lowercase();
                self.line(&format!("{level}: {}", clean(text)));
            }
            Event::BudgetChanged(b) => self.line(&format!("budget is now {b}")),
            Event::QueuePaused(p) => {
                self.paused = *p;
                self.line(if *p { "queue paused" } else { "queue resumed" });
            }
            Event::ModeChanged { mode, reason } => {
                if let Some(info) = self.info.as_mut() {
                    info.mode.clone_from(mode);
                    info.mode_reason.clone_from(reason);
                }
            }
            Event::Log { .. }
            | Event::AtOnce(_)
            | Event::BreakerTripped(_)
            | Event::NodeFinished { .. }
            | Event::QueueChanged(_)
            | Event::Idle
            | Event::Stopped
            | Event::Resources(_) => {}
            Event::BatchesAdded(views) => self.batches.extend(views.iter().cloned()),
        }
    }

    fn on_status(&mut self, v: &BatchView, before: Option<BatchStatus>) {
        let label = clean(&v.label);
        let c = v.counts;
        let nodes = format!(
            "success {} error {} skipped {} pass {} fail {} warn {}",
            c.success, c.error, c.skipped, c.pass, c.fail, c.warn
        );
        let dur = fmt_duration(v.duration_s);
        let text = match v.status {
            BatchStatus::Running => {
                let how = match v.attempt_kind {
                    Some(crate::dbt::argv::AttemptKind::Retry) => " (dbt retry)",
                    _ if v.attempts > 1 => " (full rerun)",
                    _ => "",
                };
                format!(
                    "start     {label} · worker {} · attempt {}{how}",
                    v.worker.unwrap_or(0),
                    v.attempts
                )
            }
            BatchStatus::Succeeded if v.nothing_selected => {
                format!("EMPTY     {label} · {dur} · the selection matched no node")
            }
            BatchStatus::Succeeded => format!("ok        {label} · {dur} · {nodes}"),
            BatchStatus::Failed => format!(
                "FAILED    {label} · {dur} · {nodes} · {}{}",
                v.failure_class
                    .map(|c| format!("{} failure: ", c.word()))
                    .unwrap_or_default(),
                clean(v.error.as_deref().unwrap_or("failed"))
            ),
            BatchStatus::Cancelled => format!("CANCELLED {label} · {dur}"),
            BatchStatus::Split => format!("SPLIT     {label} · into one batch per model"),
            BatchStatus::Pending
                if before == Some(BatchStatus::Running)
                    && v.error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("not started")) =>
            {
                format!(
                    "unstarted {label} · {}",
                    clean(v.error.as_deref().unwrap_or_default())
                )
            }
            BatchStatus::Pending if before == Some(BatchStatus::Running) => format!(
                "retrying  {label} · attempt {} failed: {}",
                v.attempts,
                clean(v.error.as_deref().unwrap_or("failed"))
            ),
            BatchStatus::Pending => format!("queued    {label}"),
        };
        self.line(&text);
    }

    fn totals_line(&mut self) {
        let t = Totals::of(&self.batches);
        let now = now_secs();
        let eta = if self.paused {
            "paused".into()
        } else {
            eta_secs(&self.batches, self.workers, now)
                .map(fmt_duration)
                .unwrap_or_else(|| "?".into())
        };
        let budget = self.info.as_ref().map_or(0, |i| i.budget);
        let threads = self.info.as_ref().map_or(0, |i| i.threads);
        let text = format!(
            "progress  {}/{} done · {} ok · {} failed · {} running · {} pending · connections {}/{} · eta {eta}",
            t.done(),
            t.total,
            t.succeeded,
            t.failed,
            t.running,
            t.pending,
            u32::try_from(t.running)
                .unwrap_or(u32::MAX)
                .saturating_mul(threads),
            budget
        );
        self.line(&text);
    }

    fn final_report(&mut self, outcome: &Outcome) {
        if outcome.refused() {
            // An error, and the last word: nothing ran.
            for line in outcome.closing_lines(None, 0.0) {
                eprintln!("{line}");
            }
            return;
        }
        let _ = writeln!(self.out);
        let state_dir = self
            .info
            .as_ref()
            .map(|i| i.state_dir.as_str())
            .or(self.state_dir.as_deref());
        let wall = self.started.elapsed().as_secs_f64();
        for line in outcome.closing_lines(state_dir, wall) {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }
}

/// The closing lines both faces print: verdict and counts, batches that did not
/// succeed, a failure of dbt-herd itself, and where the summary and the resume
/// command are (only files that are really there are named).
fn summary_lines(
    engine: &EngineOutcome,
    ending: Ending,
    state_dir: Option<&str>,
    wall_s: f64,
) -> Vec<String> {
    let summary = &engine.summary;
    let count = |status| summary.count(status);
    let done_ok = summary.all_ok();
    let verdict = match ending {
        Ending::Signalled(_) => "interrupted",
        Ending::Completed if done_ok => "all batches succeeded",
        Ending::Completed => "some batches did not succeed",
    };
    let mut lines = Vec::new();
    if let Some(why) = &summary.breaker {
        // The one diagnosis first: every batch after these would have failed alike.
        lines.push(format!("stopped early: {}", clean(why)));
    }
    lines.push(format!(
        "summary: {verdict} · {} succeeded · {} failed · {} cancelled · {} not run · wall {}",
        count(SummaryStatus::Succeeded),
        count(SummaryStatus::Failed),
        count(SummaryStatus::Cancelled),
        count(SummaryStatus::Pending),
        fmt_duration(wall_s)
    ));
    let empty = summary
        .batches
        .iter()
        .filter(|b| b.nothing_selected)
        .count();
    if empty > 0 {
        lines.push(format!(
            "warning: {} selected no node (dbt exits 0 for that)",
            plural(empty, "batch", "batches")
        ));
    }
    for b in summary
        .batches
        .iter()
        .filter(|b| b.status == SummaryStatus::Failed)
    {
        lines.push(format!(
            "  failed {} (attempts {}): {}",
            clean(&b.label),
            b.attempts,
            clean(b.error.as_deref().unwrap_or("-"))
        ));
    }
    for b in summary.batches.iter().filter(|b| b.blocked) {
        lines.push(format!(
            "  blocked {}: waits on {}, which did not succeed",
            clean(&b.label),
            clean(b.waiting_on.as_deref().unwrap_or("-"))
        ));
    }
    if let Some(fault) = &engine.fault {
        lines.push(format!("dbt-herd failed: {}", clean(fault)));
    }
    lines.push(summary_file_line(engine, state_dir));
    if let Some(dir) = state_dir
        && !done_ok
    {
        lines.push(format!("resume with: dbt-herd run --resume {}", clean(dir)));
    }
    lines
}

/// Drives a run to the end with line output. The first SIGINT/SIGTERM/SIGHUP stops
/// every batch with the stop ladder; a second SIGINT goes straight to SIGKILL.
///
/// `stop_when_idle`: end the run when nothing more will start. Off when a control
/// server decides that (it keeps a run going while a client could retry).
pub(crate) async fn run_headless<W: Write>(
    mut handle: EngineHandle,
    out: W,
    mut observer: Option<Observer>,
    stop_when_idle: bool,
) -> color_eyre::Result<Outcome> {
    let mut signals = StopSignals::new()?;
    let mut r = Reporter::new(out);
    let mut ending = Ending::Completed;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        let sig = tokio::select! {
            ev = handle.next_event() => {
                let Some(ev) = ev else { break };
                r.on_event(&ev);
                if let Some(obs) = observer.as_mut() {
                    obs(&ev, &mut r.out);
                }
                match ev {
                    Event::Idle if stop_when_idle => {
                        handle.send(Command::Shutdown { force: false });
                    }
                    Event::Stopped => break,
                    _ => {}
                }
                continue;
            }
            _ = tick.tick() => {
                r.totals_line();
                continue;
            }
            sig = signals.next() => sig,
        };
        let force = matches!(ending, Ending::Signalled(_)) && sig == libc::SIGINT;
        if let Ending::Completed = ending {
            ending = Ending::Signalled(sig);
        }
        let running = r
            .batches
            .iter()
            .filter(|b| b.status == BatchStatus::Running)
            .count();
        r.line(&if force {
            "interrupted again: killing every dbt process group".to_string()
        } else if r.info.is_none() {
            "interrupted while preparing: stopping dbt (SIGINT, then SIGTERM, then SIGKILL); Ctrl-C again to kill now".to_string()
        } else {
            format!(
                "interrupted: stopping {} (SIGINT, then SIGTERM, then SIGKILL); Ctrl-C again to kill now",
                plural(running, "running batch", "running batches")
            )
        });
        handle.send(Command::Shutdown { force });
    }
    let outcome = Outcome {
        engine: handle.finish().await?,
        ending,
    };
    r.final_report(&outcome);
    Ok(outcome)
}

/// Where summary.json is. When its last write failed, an earlier whole copy may
/// be there (writes replace it atomically): it is named as what it is.
fn summary_file_line(engine: &EngineOutcome, state_dir: Option<&str>) -> String {
    if let Some(path) = &engine.summary_path {
        return format!("summary.json: {}", clean(&path.display().to_string()));
    }
    let earlier = state_dir
        .map(|d| std::path::Path::new(d).join(crate::state_dir::SUMMARY_FILE))
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok())
        });
    match earlier {
        Some(p) => format!(
            "summary.json: {} (an earlier copy: the last write failed, see above)",
            clean(&p.display().to_string())
        ),
        None => "summary.json: not written (see above)".into(),
    }
}
