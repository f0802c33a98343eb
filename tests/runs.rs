//! Runs as things of their own: one live run per state dir, secrets that never
//! reach it, private files whatever the umask, a control socket that bad clients
//! cannot hurt, and `run --detach`, `attach`, `stop` and `ls` on the real binary
//! with the fake `dbt`.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A process started in the background, its output read as it comes (so a full
/// pipe never blocks it).
struct Bg {
    child: Child,
    out: mpsc::Receiver<Vec<u8>>,
    err: mpsc::Receiver<Vec<u8>>,
}

/// How a background process ended.
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn spawn_bg(mut c: Command) -> Bg {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("start the process");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    Bg { child, out, err }
}

impl Bg {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to end (killing it and failing the test after
    /// `timeout`), then for its output.
    fn wait(mut self, timeout: Duration, what: &str) -> Done {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = text(
                    &self
                        .out
                        .recv_timeout(Duration::from_secs(2))
                        .unwrap_or_default(),
                );
                let stderr = text(
                    &self
                        .err
                        .recv_timeout(Duration::from_secs(2))
                        .unwrap_or_default(),
                );
                panic!(
                    "{what} did not end within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let grab = |rx: &mpsc::Receiver<Vec<u8>>, stream: &str| {
            text(
                &rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                    panic!("{what} ended but a process it left still holds its {stream}")
                }),
            )
        };
        Done {
            code: status.code(),
            stdout: grab(&self.out, "stdout"),
            stderr: grab(&self.err, "stderr"),
        }
    }
}

/// `dbt-herd <args>`, tagged (the process itself and anything it starts).
fn herd(tag: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).env("HERD_TEST_TAG", tag).stdin(Stdio::null());
    c
}

/// What `fake_run` runs, with another `dbt`.
fn run_with_dbt(dir: &Path, t: &str, dbt: &Path, extra: &[&str]) -> Command {
    let mut c = herd(
        t,
        &[
            "run",
            "--headless",
            "--grace-int",
            "1",
            "--grace-term",
            "1",
            "--shared-warehouse",
            "no",
            "--mode",
            "cold",
        ],
    );
    c.arg("--project-dir")
        .arg(dir)
        .arg("--dbt")
        .arg(dbt)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--env")
        .arg(format!("HERD_TEST_TAG={t}"))
        .args(extra);
    c
}

/// The journal's records, in order.
fn journal(state: &Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(state.join("journal.jsonl")).expect("journal.jsonl");
    // Whole records only: a live run may be mid-write of the last one.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text(&bytes[..whole])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a journal record is JSON"))
        .collect()
}

fn records<'a>(j: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    j.iter().filter(|r| r["record"] == kind).collect()
}

/// batch → the attempt numbers started for it, in journal order.
fn starts_per_batch(j: &[serde_json::Value]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in records(j, "attempt_started") {
        m.entry(r["batch"].as_str().unwrap().to_string())
            .or_default()
            .push(r["attempt"].as_u64().unwrap());
    }
    m
}

/// Everything under `root` (itself included), symlinks not followed.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A value no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// The run's control socket, reachable however long the path is (a socket path
/// holds at most 108 bytes: a long one goes through the directory's descriptor).
fn connect(state: &Path) -> UnixStream {
    let path = state.join("control.sock");
    if path.as_os_str().len() <= 100 {
        return UnixStream::connect(&path).expect("connect to control.sock");
    }
    let dir = std::fs::File::open(state).unwrap();
    let short = format!("/proc/self/fd/{}/control.sock", dir.as_raw_fd());
    UnixStream::connect(short).expect("connect to control.sock")
}

/// Reads until the server closes the connection. `Ok(bytes)` when it did
/// (end of stream, or a reset), `Err(bytes)` when `timeout` passed first.
fn read_until_closed(s: &mut UnixStream, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(got);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset (the server closed with our bytes unread) is a close too.
            Err(_) => return Ok(got),
        }
    }
}

fn sleepy_run(dir: &Path, t: &str, windows: &str) -> Command {
    let mut c = fake_run(
        dir,
        t,
        &["-s", "sleepy", "--backfill", windows, "--workers", "2"],
    );
    c.env("FAKE_SLEEP", "3").env("HERD_TEST_TAG", t);
    c
}

fn wait_for_socket(state: &Path) {
    assert!(
        wait_for(Duration::from_secs(15), || state
            .join("control.sock")
            .exists()),
        "the run never served {}",
        state.join("control.sock").display()
    );
}

// ---------------------------------------------------------------------------
// One run per state dir
// ---------------------------------------------------------------------------

#[test]
fn a_resume_of_a_live_run_is_refused_and_touches_nothing() {
    let dir = fake_project();
    let t = tag("live-resume");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let mut first = spawn_bg(sleepy_run(dir.path(), &t, "2024-03-01..2024-03-05"));
    assert!(
        wait_for(Duration::from_secs(15), || {
            state.join("lock").exists()
                && state.join("journal.jsonl").exists()
                && !records(&journal(&state), "attempt_spawned").is_empty()
        }),
        "the first run never spawned a batch"
    );
    let run_json = std::fs::read(state.join("run.json")).unwrap();
    let run_json_mtime = std::fs::metadata(state.join("run.json"))
        .unwrap()
        .modified()
        .unwrap();
    // The dbt processes the live run has spawned so far, from its journal.
    let spawned: Vec<(String, i32)> = records(&journal(&state), "attempt_spawned")
        .iter()
        .map(|r| {
            (
                r["batch"].as_str().unwrap().to_string(),
                i32::try_from(r["pid"].as_i64().unwrap()).unwrap(),
            )
        })
        .collect();

    let resume = spawn_bg(herd(
        &t,
        &["run", "--resume", state.to_str().unwrap(), "--headless"],
    ))
    .wait(Duration::from_secs(10), "the second --resume");
    assert_eq!(resume.code, Some(2), "{resume:?}");
    let err = resume.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{resume:?}");
    assert!(
        err.contains(&format!("run in progress (pid {})", first.pid())),
        "{resume:?}"
    );
    assert!(err.contains("dbt-herd attach"), "{resume:?}");
    assert!(!err.contains("left running"), "{resume:?}");
    assert!(resume.stdout.trim().is_empty(), "{resume:?}");

    // It touched nothing: the live run and its dbt processes go on, run.json is
    // as it was, and the lock still names the live run.
    assert!(first.running(), "the refused resume ended the live run");
    let j = journal(&state);
    let finished: Vec<&str> = records(&j, "attempt_finished")
        .iter()
        .map(|r| r["batch"].as_str().unwrap())
        .collect();
    for (batch, pid) in &spawned {
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(*pid, 0) } == 0;
        assert!(
            alive || finished.contains(&batch.as_str()),
            "dbt {pid} of {batch} is gone and its attempt never finished"
        );
    }
    assert_eq!(std::fs::read(state.join("run.json")).unwrap(), run_json);
    assert_eq!(
        std::fs::metadata(state.join("run.json"))
            .unwrap()
            .modified()
            .unwrap(),
        run_json_mtime
    );
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap().trim(),
        first.pid().to_string()
    );

    let done = first.wait(Duration::from_secs(30), "the first run");
    assert_eq!(done.code, Some(0), "{done:?}");
    let j = journal(&state);
    let starts = starts_per_batch(&j);
    assert_eq!(starts.len(), 4, "{starts:?}");
    for (b, attempts) in &starts {
        assert_eq!(attempts, &vec![1], "batch {b}: {starts:?}");
    }
    let finished = records(&j, "attempt_finished");
    assert_eq!(finished.len(), 4, "{finished:?}");
    for f in &finished {
        assert_eq!(f["attempt"], 1, "{f}");
        assert_eq!(f["outcome"], "succeeded", "{f}");
        assert_eq!(f["exit"]["code"], 0, "{f}");
    }
    let s = summary(&state);
    for b in s["batches"].as_array().unwrap() {
        assert_eq!(b["status"], "succeeded", "{b}");
        assert_eq!(b["attempts"], 1, "{b}");
    }
    assert!(
        wait_for(Duration::from_secs(10), || tagged_processes(&t).is_empty()),
        "{:?}",
        tagged_processes(&t)
    );
}

#[test]
fn two_fresh_runs_on_one_state_dir_run_the_plan_once() {
    let dir = fake_project();
    let t = tag("two-fresh");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let make = || {
        let mut c = fake_run(
            dir.path(),
            &t,
            &[
                "-s",
                "sleepy",
                "--backfill",
                "2024-03-01..2024-03-04",
                "--workers",
                "2",
            ],
        );
        c.env("FAKE_SLEEP", "1").env("HERD_TEST_TAG", &t);
        c
    };
    let a = spawn_bg(make());
    let b = spawn_bg(make());
    let a = a.wait(Duration::from_secs(30), "run A");
    let b = b.wait(Duration::from_secs(30), "run B");
    let (won, lost) = match (a.code, b.code) {
        (Some(0), Some(2)) => (a, b),
        (Some(2), Some(0)) => (b, a),
        _ => panic!("expected one exit 0 and one exit 2\nA: {a:?}\nB: {b:?}"),
    };
    let err = lost.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{lost:?}");
    assert!(
        err.contains("run in progress") || err.contains("already holds a run"),
        "{lost:?}"
    );
    assert!(won.stdout.contains("all batches succeeded"), "{won:?}");

    let starts = starts_per_batch(&journal(&state));
    assert_eq!(starts.len(), 3, "{starts:?}");
    for (b, attempts) in &starts {
        assert_eq!(
            attempts,
            &vec![1],
            "batch {b} started more than once: {starts:?}"
        );
    }
    // And the fake dbt ran each window once.
    for b in starts.keys() {
        let inv = std::fs::read_to_string(state.join("batches").join(b).join("invocations.jsonl"))
            .unwrap();
        assert_eq!(inv.lines().count(), 1, "{b}: {inv}");
    }
    assert!(
        wait_for(Duration::from_secs(10), || tagged_processes(&t).is_empty()),
        "{:?}",
        tagged_processes(&t)
    );
}

// ---------------------------------------------------------------------------
// Secrets and file modes
// ---------------------------------------------------------------------------

/// A `dbt` that notes the two secrets it was given in `log` (outside the state
/// dir), then is the fake dbt.
fn secret_noting_dbt(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("dbt-noting-secrets");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$DB_PASSWORD\" \"$DBT_ENV_SECRET_KEY\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            fake_dbt().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The files under `state` that hold any of `secrets`.
fn files_holding(state: &Path, secrets: &[&str]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for p in walk(state) {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if !meta.is_file() {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for s in secrets {
            if contains(&bytes, s.as_bytes()) {
                found.push((p.clone(), (*s).to_string()));
            }
        }
    }
    found
}

#[test]
fn secrets_never_reach_the_state_dir_and_a_resume_takes_them_from_the_environment() {
    let dir = fake_project();
    let aside = tempfile::tempdir().unwrap();
    let t = tag("secrets");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let password = unique("hunter2");
    let key = unique("s3cr3t");
    let plain = unique("visible");
    let seen = aside.path().join("seen.txt");
    let dbt = secret_noting_dbt(aside.path(), &seen);

    let mut c = run_with_dbt(
        dir.path(),
        &t,
        &dbt,
        &[
            "-s",
            "flaky",
            "--env",
            &format!("DB_PASSWORD={password}"),
            "--env",
            &format!("DBT_ENV_SECRET_KEY={key}"),
            "--env",
            &format!("PLAIN={plain}"),
        ],
    );
    c.env_remove("DB_PASSWORD").env_remove("DBT_ENV_SECRET_KEY");
    let first = spawn_bg(c).wait(Duration::from_secs(30), "the run");
    assert_eq!(first.code, Some(1), "{first:?}");

    // The child got the real values.
    let noted = std::fs::read_to_string(&seen).expect("the dbt wrapper ran");
    assert_eq!(
        noted.lines().next().unwrap(),
        format!("{password}|{key}"),
        "{noted}"
    );

    let secrets = [password.as_str(), key.as_str()];
    let leaks = files_holding(&state, &secrets);
    assert!(leaks.is_empty(), "secrets in the state dir: {leaks:?}");
    // The search does find an --env value that is not a secret.
    assert!(
        !files_holding(&state, &[plain.as_str()]).is_empty(),
        "the plain --env value is nowhere in the state dir: the search finds nothing"
    );
    for s in secrets {
        assert!(!first.stdout.contains(s), "printed a secret: {first:?}");
        assert!(!first.stderr.contains(s), "printed a secret: {first:?}");
    }
    let run_json = std::fs::read_to_string(state.join("run.json")).unwrap();
    assert!(run_json.contains("DB_PASSWORD=***"), "{run_json}");
    assert!(run_json.contains("DBT_ENV_SECRET_KEY=***"), "{run_json}");
    assert!(
        run_json.contains(&format!("PLAIN={plain}")),
        "a plain --env is kept as typed: {run_json}"
    );

    // A resume without the secrets in its environment: refused, naming the first.
    let journal_before = std::fs::read(state.join("journal.jsonl")).unwrap();
    let mut c = herd(
        &t,
        &["run", "--resume", state.to_str().unwrap(), "--headless"],
    );
    c.env_remove("DB_PASSWORD").env_remove("DBT_ENV_SECRET_KEY");
    let refused = spawn_bg(c).wait(Duration::from_secs(15), "the resume without secrets");
    assert_eq!(refused.code, Some(2), "{refused:?}");
    let err = refused.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{refused:?}");
    assert!(err.contains("DB_PASSWORD"), "{refused:?}");
    assert_eq!(
        std::fs::read(state.join("journal.jsonl")).unwrap(),
        journal_before,
        "a refused resume wrote to the journal"
    );
    assert_eq!(
        noted,
        std::fs::read_to_string(&seen).unwrap(),
        "a refused resume ran dbt"
    );

    // With both in the environment it goes on (`dbt retry` fixes the flaky batch).
    let mut c = herd(
        &t,
        &["run", "--resume", state.to_str().unwrap(), "--headless"],
    );
    c.env("DB_PASSWORD", &password)
        .env("DBT_ENV_SECRET_KEY", &key);
    let resumed = spawn_bg(c).wait(Duration::from_secs(30), "the resume with secrets");
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    let noted = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(noted.lines().count(), 2, "{noted}");
    assert_eq!(
        noted.lines().nth(1).unwrap(),
        format!("{password}|{key}"),
        "{noted}"
    );
    let s = summary(&state);
    assert_eq!(batch(&s, "flaky")["status"], "succeeded", "{s}");
    let leaks = files_holding(&state, &secrets);
    assert!(
        leaks.is_empty(),
        "secrets in the state dir after the resume: {leaks:?}"
    );
    for s in secrets {
        assert!(!resumed.stdout.contains(s), "printed a secret: {resumed:?}");
        assert!(!resumed.stderr.contains(s), "printed a secret: {resumed:?}");
    }
    let run_json = std::fs::read_to_string(state.join("run.json")).unwrap();
    assert!(run_json.contains("DB_PASSWORD=***"), "{run_json}");
    assert!(
        tagged_processes(&t).is_empty(),
        "{:?}",
        tagged_processes(&t)
    );
}

/// `c` run by a shell that sets the umask to 000 first.
fn with_umask_000(c: &Command) -> Command {
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(c.get_program())
        .args(c.get_args())
        .stdin(Stdio::null());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh
}

#[test]
fn everything_in_the_state_dir_is_private_whatever_the_umask() {
    let dir = fake_project();
    let t = tag("umask");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let mut c = fake_run(
        dir.path(),
        &t,
        &["-s", "ok", "-s", "fail", "-s", "flaky", "-s", "crash"],
    );
    c.env("HERD_TEST_TAG", &t);
    let first = spawn_bg(with_umask_000(&c)).wait(Duration::from_secs(30), "the run");
    assert_eq!(first.code, Some(1), "{first:?}");
    // A resume under umask 000 too: `dbt retry` and full reruns add files.
    let resume = herd(
        &t,
        &["run", "--resume", state.to_str().unwrap(), "--headless"],
    );
    let resumed = spawn_bg(with_umask_000(&resume)).wait(Duration::from_secs(30), "the resume");
    assert_eq!(resumed.code, Some(1), "{resumed:?}");
    assert!(
        state.join("batches/flaky/attempt-2.stdout.log").is_file(),
        "the resume did not run the flaky batch again"
    );

    let mut wrong = Vec::new();
    let mut files = 0;
    for p in walk(&state) {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            files += 1;
            0o600
        } else {
            continue;
        };
        if mode != want {
            wrong.push(format!("{:o} {}", mode, p.display()));
        }
    }
    assert!(files > 10, "too few files to say anything: {files}");
    assert!(
        wrong.is_empty(),
        "not private under umask 000:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The control socket
// ---------------------------------------------------------------------------

#[test]
fn garbage_on_the_control_socket_drops_only_that_client() {
    let dir = fake_project();
    let t = tag("garbage");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let run = spawn_bg(sleepy_run(dir.path(), &t, "2024-03-01..2024-03-05"));
    wait_for_socket(&state);

    // A watcher from the start: it must see the whole run through.
    let watcher = spawn_bg(herd(&t, &["attach", state.to_str().unwrap(), "--headless"]));

    // (a) Not JSON: closed (after a refusal, at most).
    let mut a = connect(&state);
    a.write_all(b"not json\n").unwrap();
    let got = read_until_closed(&mut a, Duration::from_secs(5))
        .unwrap_or_else(|got| panic!("a client that sent garbage was kept: {}", text(&got)));
    let got = text(&got);
    for line in got.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "refused", "{got}");
    }

    // (b) A line that never ends: dropped once it is over the limit.
    let mut b = connect(&state);
    let mut writer = b.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let got = read_until_closed(&mut b, Duration::from_secs(10))
        .unwrap_or_else(|got| panic!("a 64 MiB line was not dropped: {}", text(&got)));
    assert!(
        !text(&got).contains("\"hello\""),
        "greeted a client that never said hello: {}",
        text(&got)
    );
    let sent = flood.join().unwrap();
    assert!(sent < 64 << 20, "the server read all of a 64 MiB line");

    // (c) Says hello, then never reads: kept open to the end.
    let mut c = connect(&state);
    c.write_all(b"{\"type\":\"hello\",\"protocol\":1,\"read_only\":true}\n")
        .unwrap();

    // (e) A new client is still greeted.
    let mut e = connect(&state);
    e.write_all(b"{\"type\":\"hello\",\"protocol\":1,\"read_only\":true}\n")
        .unwrap();
    e.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut e), &mut first).unwrap();
    let hello: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(hello["type"], "hello", "{first}");
    assert_eq!(hello["pid"], run.pid(), "{first}");
    drop(e);

    let done = run.wait(Duration::from_secs(30), "the run");
    assert_eq!(done.code, Some(0), "{done:?}");
    let watched = watcher.wait(Duration::from_secs(15), "attach --headless");
    assert_eq!(watched.code, Some(0), "{watched:?}");
    assert!(
        !watched.stdout.contains("has ended"),
        "attach came too late to see the run live: {watched:?}"
    );
    for day in ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"] {
        assert!(
            watched
                .stdout
                .lines()
                .any(|l| l.contains("ok ") && l.contains(day)),
            "attach missed {day}: {watched:?}"
        );
    }
    assert!(
        watched.stdout.contains("all batches succeeded"),
        "{watched:?}"
    );
    drop(c);
    drop(a);
    drop(b);
    let s = summary(&state);
    for b in s["batches"].as_array().unwrap() {
        assert_eq!(b["status"], "succeeded", "{b}");
    }
}

/// The peer-uid check, seen by another user. Runs only as root (which can
/// become that user).
#[test]
fn another_user_gets_nothing_from_the_control_socket() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: another_user_gets_nothing_from_the_control_socket needs root");
        return;
    }
    let dir = fake_project();
    let t = tag("other-user");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let sock = state.join("control.sock");
    let run = spawn_bg(sleepy_run(dir.path(), &t, "2024-03-01..2024-03-05"));
    wait_for_socket(&state);

    // Let the kernel pass another user through, so only the server's check stands.
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let project_mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    mode(dir.path(), 0o711);
    mode(&state, 0o711);
    mode(&sock, 0o666);
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = r#"
import os, socket, sys
path = sys.argv[1]
if len(path) > 100:
    d = os.open(os.path.dirname(path), os.O_PATH)
    path = "/proc/self/fd/%d/%s" % (d, os.path.basename(path))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(path)
try:
    s.sendall(b'{"type":"hello","protocol":1,"read_only":true}\n')
except OSError:
    pass
data = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
except ConnectionResetError:
    pass
except socket.timeout:
    print("timeout after %d bytes" % len(data))
    sys.exit(0)
print(len(data))
"#;
    let out = Command::new(python)
        .args(["-I", "-c", script])
        .arg(&sock)
        .uid(65534)
        .gid(65534)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run python as uid 65534");
    mode(&sock, 0o600);
    mode(&state, 0o700);
    mode(dir.path(), project_mode);
    assert!(
        out.status.success(),
        "the other user's client failed (could it reach the socket?): {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "0",
        "another user got bytes from the control socket; stderr: {}",
        text(&out.stderr)
    );

    let done = run.wait(Duration::from_secs(30), "the run");
    assert_eq!(done.code, Some(0), "{done:?}");
}

// ---------------------------------------------------------------------------
// Detached runs
// ---------------------------------------------------------------------------

fn ls_json(t: &str, root: &Path) -> serde_json::Value {
    let done = spawn_bg(herd(t, &["ls", root.to_str().unwrap(), "--json"]))
        .wait(Duration::from_secs(15), "ls --json");
    assert_eq!(done.code, Some(0), "{done:?}");
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done:?}"))
}

#[test]
fn a_detached_run_is_listed_watched_and_stopped() {
    let dir = fake_project();
    let t = tag("detached");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let fake = fake_dbt();
    let mut c = herd(
        &t,
        &[
            "run",
            "--detach",
            "--dbt",
            fake.to_str().unwrap(),
            "--project-dir",
            dir.path().to_str().unwrap(),
            "-s",
            "sleepy",
            "--backfill",
            "2024-03-01..2024-03-11",
            "--workers",
            "2",
            "--shared-warehouse",
            "no",
            "--mode",
            "cold",
            "--state-dir",
            state.to_str().unwrap(),
            "--grace-int",
            "1",
            "--grace-term",
            "1",
            "--env",
            &format!("HERD_TEST_TAG={t}"),
        ],
    );
    c.env("FAKE_SLEEP", "3");
    let launched = spawn_bg(c).wait(Duration::from_secs(15), "run --detach");
    assert_eq!(launched.code, Some(0), "{launched:?}");
    let lines: Vec<&str> = launched.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{launched:?}");
    assert!(Path::new(lines[0]).is_absolute(), "{launched:?}");
    assert_eq!(
        std::fs::canonicalize(lines[0]).unwrap(),
        std::fs::canonicalize(&state).unwrap()
    );

    let ls = ls_json(&t, dir.path());
    let runs = ls["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{ls}");
    assert_eq!(runs[0]["live"], true, "{ls}");
    let pid = runs[0]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid: {ls}"));
    assert!(
        tagged_processes(&t).iter().any(|p| i64::from(p.pid) == pid),
        "ls names pid {pid}, which is not the run's: {:?}",
        tagged_processes(&t)
    );
    assert!(
        wait_for(Duration::from_secs(10), || tagged_processes(&t)
            .iter()
            .any(|p| p.argv.iter().any(|a| a.ends_with("fake_dbt.py")))),
        "no batch started"
    );

    let stopped = spawn_bg(herd(&t, &["stop", state.to_str().unwrap()]))
        .wait(Duration::from_secs(25), "stop");
    assert_eq!(stopped.code, Some(1), "{stopped:?}");
    assert!(stopped.stdout.contains("summary:"), "{stopped:?}");
    assert!(stopped.stdout.contains("cancelled"), "{stopped:?}");

    let s = summary(&state);
    assert_eq!(s["exit_code"], 1, "{s}");
    assert!(
        s["batches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["status"] == "cancelled"),
        "{s}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || ls_json(&t, dir.path())["runs"]
            [0]["live"]
            == false),
        "ls still says live: {}",
        ls_json(&t, dir.path())
    );

    let attach = spawn_bg(herd(&t, &["attach", state.to_str().unwrap(), "--headless"]))
        .wait(Duration::from_secs(10), "attach on a finished run");
    assert_eq!(attach.code, Some(1), "{attach:?}");
    assert!(attach.stdout.contains("has ended"), "{attach:?}");

    assert!(
        wait_for(Duration::from_secs(10), || tagged_processes(&t).is_empty()),
        "left behind: {:?}",
        tagged_processes(&t)
    );
}

// ---------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------

#[test]
fn exit_0_without_run_results_is_a_failure() {
    let dir = fake_project();
    let t = tag("no-results");
    let _reaper = Reaper(t.clone());
    let done = spawn_bg(fake_run(dir.path(), &t, &["-s", "nothing"]))
        .wait(Duration::from_secs(30), "the run");
    assert_eq!(done.code, Some(1), "{done:?}");
    let s = summary(&dir.path().join("state"));
    let b = batch(&s, "nothing");
    assert_eq!(b["status"], "failed", "{b}");
    assert_eq!(
        b["error"], "dbt exited 0 but wrote no run_results.json",
        "{b}"
    );

    // A `--dbt` that is not dbt at all.
    let other = fake_project();
    let state = other.path().join("state");
    let c = run_with_dbt(other.path(), &t, Path::new("/bin/true"), &["-s", "ok"]);
    let done = spawn_bg(c).wait(Duration::from_secs(30), "the run with /bin/true");
    assert_eq!(done.code, Some(1), "{done:?}");
    let s = summary(&state);
    let b = batch(&s, "ok");
    assert_eq!(b["status"], "failed", "{b}");
    assert_eq!(
        b["error"], "dbt exited 0 but wrote no run_results.json",
        "{b}"
    );
    assert!(
        tagged_processes(&t).is_empty(),
        "{:?}",
        tagged_processes(&t)
    );
}

/// A client that can steer the run keeps an idle run alive; one that stops
/// reading is dropped, and must then count as gone, or the run never ends.
#[test]
fn a_steering_client_that_stops_reading_does_not_keep_the_run_alive() {
    let dir = fake_project();
    let t = tag("stuck-client");
    let _reaper = Reaper(t.clone());
    let state = dir.path().join("state");
    let mut c = fake_run(
        dir.path(),
        &t,
        &["-s", "flood", "-s", "ok", "--workers", "1"],
    );
    // Enough log lines to fill the socket's buffer while the client reads nothing.
    c.env("FAKE_LINES", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_for_socket(&state);
    let mut stuck = connect(&state);
    writeln!(
        stuck,
        r#"{{"type":"hello","protocol":1,"read_only":false}}"#
    )
    .unwrap();
    // It never reads. The run finishes its batches and, once the server has
    // given up on this client, ends by itself.
    let ended = wait_for(Duration::from_secs(90), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(
        ended,
        "the run waited forever on a client that stopped reading"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    drop(stuck);
}
