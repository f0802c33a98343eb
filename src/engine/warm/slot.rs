//! One worker slot in warm mode: a long-lived dbt process that parsed once and
//! runs one batch at a time. It reports each batch to the engine exactly as a
//! cold attempt does (`Spawned` first, output, `Exited` last), obeys the stop
//! ladder, and starts a fresh process when its process dies, breaks the
//! protocol or has run its share of batches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::batch::RawLog;
use super::process::WorkerProcess;
use super::protocol::{PROTO, Reply, Request};
use crate::engine::attempt::ladder;
use crate::engine::attempt::output::MAX_LINE_BYTES;
use crate::engine::messages::{WarmState, WarmView};
use crate::engine::process;
use crate::engine::protocol::{AttemptCtl, AttemptReport, AttemptSpec};
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
    /// A partial parse with the parse's vars to start from (dbt decides
    /// whether it still fits: profile, target, env vars, files).
    pub seed: Option<crate::engine::parse::SharedParse>,
    /// Where the worker's own output goes when no batch runs (and its parse's
    /// target dir, `target/`).
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
    pub(super) proc: WorkerProcess,
    /// Lines the worker printed on stdout or stderr (not the protocol).
    pub(super) printed: mpsc::Receiver<(bool, String)>,
    parse_s: f64,
    /// When its process started (Unix seconds): its parse is its own span on the timeline.
    since: f64,
    /// Batches it has run (it is replaced after `--recycle` of them).
    pub(super) runs: u32,
}

impl Warm {
    pub(super) fn pid(&self) -> u32 {
        self.proc.group.pid()
    }
}

/// Word that the engine let go of the slot: a worker still starting or parsing
/// for it is stopped at once instead of finishing a parse nobody will use.
pub(crate) struct Leave {
    rx: Option<tokio::sync::oneshot::Receiver<()>>,
    left: bool,
}

impl Leave {
    /// For a worker that only the one who started it can stop (the mode check).
    pub fn never() -> Self {
        Self {
            rx: None,
            left: false,
        }
    }

    /// Left once the sender is dropped.
    pub fn on(rx: tokio::sync::oneshot::Receiver<()>) -> Self {
        Self {
            rx: Some(rx),
            left: false,
        }
    }

    async fn wait(&mut self) {
        if self.left {
            return;
        }
        match &mut self.rx {
            Some(rx) => {
                let _ = rx.await;
                self.left = true;
            }
            None => std::future::pending().await,
        }
    }
}

/// What starting a worker gave, with the parse's digest when asked for.
pub(crate) type Started = (Warm, Option<serde_json::Map<String, serde_json::Value>>);

impl SlotConfig {
    fn status(&self, state: WarmState, w: Option<&Warm>, since: Option<f64>) {
        // Only the latest state matters; a full channel drops one.
        let _ = self.status.try_send((
            self.worker,
            WarmView {
                state,
                parse_s: w.map(|w| w.parse_s),
                runs: w.map_or(0, |w| w.runs),
                pid: w.map(Warm::pid),
                since: w.map(|w| w.since).or(since),
            },
        ));
    }

    /// Starts a worker and has it parse; `digest` asks for the parse-invariance
    /// digest. On failure, the reason (with what the worker printed).
    pub async fn start(&self, digest: bool, leave: &mut Leave) -> Result<Started, String> {
        let since = crate::clock::now_secs();
        self.status(WarmState::Starting, None, Some(since));
        let result = self.start_inner(digest, leave, since).await;
        match &result {
            Ok((w, _)) => self.status(WarmState::Idle, Some(w), None),
            Err(_) if leave.left => self.status(WarmState::Stopped, None, None),
            Err(_) => self.status(WarmState::Failed, None, None),
        }
        result
    }

    async fn start_inner(
        &self,
        digest: bool,
        leave: &mut Leave,
        since: f64,
    ) -> Result<Started, String> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.log_dir.display()))?;
        if let Some(seed) = &self.seed {
            seed.seed(&self.log_dir.join("target"));
        }
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
            let _ = self.status.try_send((
                self.worker,
                WarmView {
                    state: WarmState::Parsing,
                    parse_s: None,
                    runs: 0,
                    pid: Some(proc.group.pid()),
                    since: Some(since),
                },
            ));
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
        };
        let outcome = tokio::select! {
            o = outcome => o,
            () = leave.wait() => Err("the run no longer needs this worker".into()),
        };
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
                        since,
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
pub(crate) async fn serve(
    cfg: SlotConfig,
    mut jobs: mpsc::Receiver<Job>,
    mut warm: Option<Warm>,
    mut leave: Leave,
) {
    if warm.is_none() {
        warm = cfg.start(false, &mut leave).await.ok().map(|(w, _)| w);
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
                warm = cfg.start(false, &mut leave).await.ok().map(|(w, _)| w);
                continue;
            }
            Next::Job(job) => job,
        };
        let Some(job) = job else {
            if let Some(w) = warm.take() {
                retire(w, cfg.grace_term).await;
            }
            cfg.status(WarmState::Stopped, None, None);
            return;
        };
        let w = match warm.take() {
            Some(w) => w,
            None => match cfg.start(false, &mut Leave::never()).await {
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
        cfg.status(WarmState::Busy, Some(&w), None);
        warm = super::batch::run(&cfg, w, *job).await;
        match warm.take() {
            Some(w) if w.runs >= cfg.recycle => {
                // Bounded memory: a fresh process after so many batches.
                retire(w, cfg.grace_term).await;
                warm = cfg.start(false, &mut leave).await.ok().map(|(w, _)| w);
            }
            Some(w) => {
                cfg.status(WarmState::Idle, Some(&w), None);
                warm = Some(w);
            }
            None => warm = cfg.start(false, &mut leave).await.ok().map(|(w, _)| w),
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
