//! One worker slot in warm mode: a long-lived dbt process that parsed once and
//! runs one batch at a time. It reports each batch to the engine exactly as a
//! cold attempt does (`Spawned` first, output, `Exited` last), obeys the stop
//! ladder, and starts a fresh process when its process dies, breaks the
//! protocol or has run its share of batches.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::process::WorkerProcess;
use super::protocol::{PROTO, Reply, Request};
use crate::engine::attempt::ladder::{self, Ladder};
use crate::engine::attempt::output::{Lines, MAX_LINE_BYTES};
use crate::engine::attempt::{exit_info, final_results};
use crate::engine::messages::{WarmState, WarmView};
use crate::engine::process;
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec, ExitInfo};
use crate::text::lines::LineSplitter;

/// How long a worker may take to import dbt and say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(120);

/// What a slot needs to start its worker.
#[derive(Debug, Clone)]
pub(crate) struct SlotConfig {
    pub worker: usize,
    pub interpreter: Vec<String>,
    pub program: PathBuf,
    pub project_dir: PathBuf,
    /// The worker process's environment: `--env` with `{worker}` filled in,
    /// and the tags that let a resume find it.
    pub env: Vec<(String, String)>,
    /// The argv of its parse (after `dbt`), and the environment for it.
    pub parse_args: Vec<String>,
    pub parse_env: BTreeMap<String, Option<String>>,
    /// Where the worker's own output goes when no batch runs.
    pub log_dir: PathBuf,
    /// Batches a process runs before it is replaced by a fresh one.
    pub recycle: u32,
    pub grace_term: Duration,
    pub status: mpsc::Sender<(usize, WarmView)>,
}

/// One batch for the slot, as the engine launched it.
pub(crate) struct Job {
    pub spec: AttemptSpec,
    /// Set in the worker's environment for this batch only.
    pub env: BTreeMap<String, Option<String>>,
    pub ctl: mpsc::Receiver<AttemptCtl>,
    pub reports: mpsc::Sender<AttemptReport>,
}

/// A started, parsed worker.
pub(crate) struct Warm {
    proc: WorkerProcess,
    /// Lines the worker printed on stdout or stderr (not the protocol).
    printed: mpsc::Receiver<(bool, String)>,
    parse_s: f64,
    runs: u32,
}

impl Warm {
    fn pid(&self) -> u32 {
        self.proc.group.pid()
    }
}

/// What starting a worker gave, with the parse's digest when asked for.
pub(crate) type Started = (Warm, Option<serde_json::Map<String, serde_json::Value>>);

impl SlotConfig {
    fn status(&self, state: WarmState, parse_s: Option<f64>, runs: u32, pid: Option<u32>) {
        // Only the latest state matters; a full channel drops one.
        let _ = self.status.try_send((
            self.worker,
            WarmView {
                state,
                parse_s,
                runs,
                pid,
            },
        ));
    }

    /// Starts a worker and has it parse; `digest` asks for the parse-invariance
    /// digest. On failure, the reason (with what the worker printed).
    pub async fn start(&self, digest: bool) -> Result<Started, String> {
        self.status(WarmState::Starting, None, 0, None);
        let result = self.start_inner(digest).await;
        match &result {
            Ok((w, _)) => self.status(WarmState::Idle, Some(w.parse_s), 0, Some(w.pid())),
            Err(_) => self.status(WarmState::Failed, None, 0, None),
        }
        result
    }

    async fn start_inner(&self, digest: bool) -> Result<Started, String> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.log_dir.display()))?;
        let mut proc = WorkerProcess::spawn(
            &self.interpreter,
            &self.program,
            &self.project_dir,
            self.env.clone(),
            &format!("worker{}", self.worker),
        )
        .map_err(|e| format!("cannot start {}: {e}", self.interpreter.join(" ")))?;
        let (tx, mut printed) = mpsc::channel(1024);
        for (stream, stderr) in [
            (proc.group.child.stdout.take().map(box_reader), false),
            (proc.group.child.stderr.take().map(box_reader), true),
        ] {
            if let Some(s) = stream {
                tokio::spawn(pump(s, stderr, tx.clone()));
            }
        }
        let mut log = WorkerLog::open(&self.log_dir);
        let started = Instant::now();
        let outcome = async {
            match tokio::time::timeout(HELLO_WITHIN, next_reply(&mut proc, &mut printed, &mut log))
                .await
            {
                Ok(Some(Ok(Reply::Hello { proto, .. }))) if proto == PROTO => {}
                Ok(Some(Ok(Reply::Hello { proto, .. }))) => {
                    return Err(format!("the worker speaks protocol {proto}, not {PROTO}"));
                }
                Ok(Some(Ok(other))) => return Err(format!("unexpected first message {other:?}")),
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => return Err("the worker ended before it was ready".into()),
                Err(_) => {
                    return Err(format!(
                        "no word from the worker in {}s",
                        HELLO_WITHIN.as_secs()
                    ));
                }
            }
            self.status(WarmState::Parsing, None, 0, Some(proc.group.pid()));
            proc.send(&Request::Parse {
                args: self.parse_args.clone(),
                env: self.parse_env.clone(),
                digest,
            })
            .map_err(|e| format!("cannot talk to the worker: {e}"))?;
            loop {
                match next_reply(&mut proc, &mut printed, &mut log).await {
                    Some(Ok(Reply::Parsed {
                        ok: true,
                        elapsed_s,
                        digest,
                        ..
                    })) => {
                        return Ok((elapsed_s, digest));
                    }
                    Some(Ok(Reply::Parsed { error, .. })) => {
                        return Err(format!(
                            "dbt parse failed in the worker: {}",
                            error.unwrap_or_else(|| "no reason given".into())
                        ));
                    }
                    Some(Ok(Reply::Event { line, .. })) => log.line(&line),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Err("the worker ended while parsing".into()),
                }
            }
        }
        .await;
        match outcome {
            Ok((parse_s, digest)) => {
                let parse_s = if parse_s > 0.0 {
                    parse_s
                } else {
                    started.elapsed().as_secs_f64()
                };
                Ok((
                    Warm {
                        proc,
                        printed,
                        parse_s,
                        runs: 0,
                    },
                    digest,
                ))
            }
            Err(e) => {
                stop(proc, self.grace_term).await;
                Err(match log.tail() {
                    Some(tail) => format!("{e} ({tail})"),
                    None => e,
                })
            }
        }
    }
}

/// The next protocol message; what the worker prints meanwhile goes to its log.
async fn next_reply(
    proc: &mut WorkerProcess,
    printed: &mut mpsc::Receiver<(bool, String)>,
    log: &mut WorkerLog,
) -> Option<Result<Reply, String>> {
    loop {
        tokio::select! {
            r = proc.replies.recv() => return r,
            Some((_, line)) = printed.recv() => log.line(&line),
        }
    }
}

/// Serves jobs until the engine lets go of the slot. `warm` is a worker that
/// is already parsed, if one is.
pub(crate) async fn serve(cfg: SlotConfig, mut jobs: mpsc::Receiver<Job>, mut warm: Option<Warm>) {
    if warm.is_none() {
        warm = cfg.start(false).await.ok().map(|(w, _)| w);
    }
    loop {
        enum Next {
            Job(Option<Box<Job>>),
            Broken,
        }
        let next = match warm.as_mut() {
            Some(w) => tokio::select! {
                j = jobs.recv() => Next::Job(j.map(Box::new)),
                () = idle_until_broken(w, &cfg.log_dir) => Next::Broken,
            },
            None => Next::Job(jobs.recv().await.map(Box::new)),
        };
        let job = match next {
            Next::Broken => {
                // It died while idle: a fresh one for the next batch.
                if let Some(w) = warm.take() {
                    stop(w.proc, cfg.grace_term).await;
                }
                warm = cfg.start(false).await.ok().map(|(w, _)| w);
                continue;
            }
            Next::Job(job) => job,
        };
        let Some(job) = job else {
            if let Some(w) = warm.take() {
                retire(w, cfg.grace_term).await;
            }
            return;
        };
        let w = match warm.take() {
            Some(w) => w,
            None => match cfg.start(false).await {
                Ok((w, _)) => w,
                Err(error) => {
                    let key = job.spec.key;
                    let _ = job
                        .reports
                        .send(AttemptReport::SpawnFailed {
                            key,
                            error: format!("warm worker {}: {error}", cfg.worker),
                        })
                        .await;
                    continue;
                }
            },
        };
        cfg.status(WarmState::Busy, Some(w.parse_s), w.runs, Some(w.pid()));
        warm = run(&cfg, w, *job).await;
        match warm.take() {
            Some(w) if w.runs >= cfg.recycle => {
                // Bounded memory: a fresh process after so many batches.
                retire(w, cfg.grace_term).await;
                warm = cfg.start(false).await.ok().map(|(w, _)| w);
            }
            Some(w) => {
                cfg.status(WarmState::Idle, Some(w.parse_s), w.runs, Some(w.pid()));
                warm = Some(w);
            }
            None => warm = cfg.start(false).await.ok().map(|(w, _)| w),
        }
    }
}

/// Waits while idle until the worker dies or breaks its protocol.
async fn idle_until_broken(w: &mut Warm, log_dir: &std::path::Path) {
    let mut log = WorkerLog::open(log_dir);
    loop {
        tokio::select! {
            _ = w.proc.group.child.wait() => return,
            r = w.proc.replies.recv() => match r {
                None | Some(Err(_)) => return,
                Some(Ok(Reply::Event { line, .. })) => log.line(&line),
                Some(Ok(_)) => {}
            },
            Some((_, line)) = w.printed.recv() => log.line(&line),
        }
    }
}

/// Runs one batch. Returns the worker if it is still sound.
async fn run(cfg: &SlotConfig, mut w: Warm, job: Job) -> Option<Warm> {
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

/// Asks a worker to exit, then makes sure its group is gone.
pub(crate) async fn retire(mut w: Warm, grace: Duration) {
    let _ = w.proc.send(&Request::Exit);
    let _ = tokio::time::timeout(grace, w.proc.group.child.wait()).await;
    stop(w.proc, grace).await;
}

async fn stop(mut proc: WorkerProcess, grace: Duration) {
    let pgid = proc.pgid();
    process::signal_group(pgid, Signal::SIGKILL);
    let _ = proc.group.child.wait().await;
    ladder::empty_group(pgid, grace).await;
    process::unregister(pgid);
}

fn box_reader(r: impl AsyncRead + Unpin + Send + 'static) -> Box<dyn AsyncRead + Unpin + Send> {
    Box::new(r)
}

/// Cuts what the worker prints into bounded lines for the slot.
async fn pump(
    mut src: Box<dyn AsyncRead + Unpin + Send>,
    stderr: bool,
    tx: mpsc::Sender<(bool, String)>,
) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for line in splitter.push(&buf[..n]) {
            if tx.send((stderr, line.text())).await.is_err() {
                return;
            }
        }
    }
    if let Some(line) = splitter.finish() {
        let _ = tx.send((stderr, line.text())).await;
    }
}

/// A batch's raw output file (writes that fail are dropped: a full disk must not
/// stop the batch).
struct RawLog(Option<std::fs::File>);

impl RawLog {
    fn create(path: &std::path::Path) -> Self {
        Self(std::fs::File::create(path).ok())
    }

    fn line(&mut self, text: &str) {
        if let Some(f) = self.0.as_mut()
            && writeln!(f, "{text}").is_err()
        {
            self.0 = None;
        }
    }
}

/// The worker's own log, for what it says between batches, and the last lines
/// of it for an error message.
struct WorkerLog {
    file: RawLog,
    last: std::collections::VecDeque<String>,
}

impl WorkerLog {
    fn open(dir: &std::path::Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("worker.log"))
            .ok();
        Self {
            file: RawLog(file),
            last: std::collections::VecDeque::new(),
        }
    }

    fn line(&mut self, text: &str) {
        self.file.line(text);
        if self.last.len() == 3 {
            self.last.pop_front();
        }
        self.last.push_back(text.chars().take(300).collect());
    }

    /// The last thing the worker said, if it said anything.
    fn tail(&self) -> Option<String> {
        let t: Vec<&str> = self
            .last
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        (!t.is_empty()).then(|| t.join(" / "))
    }
}
