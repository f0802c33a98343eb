//! A dbt-herd process watched while it runs (its output collected on threads, a
//! signal sent to it, its exit awaited with a deadline), the state dir's journal,
//! and a small seeded PRNG for tests that pick random moments.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::text;

/// A running dbt-herd whose stdout and stderr are collected as it runs.
pub struct Running {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

/// How it ended: `code` is `None` when a signal ended it (`signal` says which).
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

fn collect(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Starts `cmd` (stdin from /dev/null) with its output collected.
pub fn start(mut cmd: Command) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run dbt-herd");
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let pumps = vec![
        collect(child.stdout.take().unwrap(), out.clone()),
        collect(child.stderr.take().unwrap(), err.clone()),
    ];
    Running {
        child,
        out,
        err,
        pumps,
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn stdout(&self) -> String {
        text(&self.out.lock().unwrap())
    }

    pub fn stderr(&self) -> String {
        text(&self.err.lock().unwrap())
    }

    /// Sends `sig` to the dbt-herd process itself (not its children).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the child this test started and has not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill {sig}");
    }

    /// True once it has exited (it is then reaped; `finish` returns at once).
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; kills it and fails the test if it takes too long.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        if !self.exited_within(timeout) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "dbt-herd did not exit within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
        }
        let status = self.child.wait().unwrap();
        // Its children may hold the pipes a little longer (a leftover is what
        // the tests look for): read what is there, without waiting on them.
        let end = Instant::now() + Duration::from_millis(300);
        while self.pumps.iter().any(|p| !p.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.pumps.iter().any(|p| !p.is_finished()) {
            eprintln!("note: a process other than dbt-herd still holds its stdout or stderr");
        }
        for p in self.pumps.drain(..) {
            if p.is_finished() {
                p.join().unwrap();
            }
        }
        Finished {
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test: no dbt-herd outlives it (the Reaper gets its children).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The journal's records, in order (a torn last line, from a kill mid-write, is
/// left out: the next resume cuts it).
pub fn journal(state: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(state.join("journal.jsonl")).unwrap_or_default();
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    let last = lines.len().saturating_sub(1);
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) if i == last && !text.ends_with('\n') => {
                eprintln!("journal: torn last line ignored ({e})");
                None
            }
            Err(e) => panic!("journal line {} is not JSON ({e}): {l}", i + 1),
        })
        .collect()
}

/// Whether the journal has a record of `kind` for `batch` (any attempt).
pub fn has_record(state: &Path, kind: &str, batch: &str) -> bool {
    journal(state)
        .iter()
        .any(|r| r["record"] == kind && r["batch"] == batch)
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `CHAOS_SEED` if set, else from the clock; the seed is printed
    /// so that a failing run can be repeated.
    pub fn from_env_or_time(what: &str) -> Self {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos());
                u64::try_from(nanos % u128::from(u64::MAX)).unwrap()
            });
        eprintln!("{what}: seed {seed} (CHAOS_SEED={seed} repeats it)");
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
