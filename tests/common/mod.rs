//! Helpers shared by the integration tests: running the real binary, reading its
//! state dir, and finding the processes a test started (by a tag in their env).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod demo;
pub mod fixture;
pub mod postgres;
pub mod running;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dbt_herd::procfs;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dbt-herd"))
}

pub fn fake_dbt() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_dbt.py")
}

/// A unique tag for this test's processes: the test's name, this process, a
/// counter and the time, so that no two tests (or two runs) share one.
pub fn tag(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{n}-{nanos}", std::process::id())
}

/// A minimal dbt project dir (the fake dbt only needs it to exist).
pub fn fake_project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("dbt_project.yml"), "name: fake\n").unwrap();
    d
}

/// `dbt-herd run --headless` with the fake dbt, a state dir inside `dir`, short
/// stop-ladder graces, and the tag in every child's env. The fake dbt has no graph
/// to list and no Python API: its batches share no warehouse and run cold.
pub fn fake_run(dir: &Path, tag: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--headless", "--grace-int", "1", "--grace-term", "1"])
        .args(["--shared-warehouse", "no", "--mode", "cold"])
        .arg("--project-dir")
        .arg(dir)
        .arg("--dbt")
        .arg(fake_dbt())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--env")
        .arg(format!("HERD_TEST_TAG={tag}"))
        .args(extra)
        .stdin(Stdio::null());
    c
}

pub fn output(mut c: Command) -> Output {
    c.output().expect("run dbt-herd")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn summary(state: &Path) -> serde_json::Value {
    let bytes = std::fs::read(state.join("summary.json")).expect("summary.json");
    serde_json::from_slice(&bytes).expect("summary.json is JSON")
}

pub fn batch<'a>(summary: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    summary["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("no batch {id} in {summary}"))
}

/// Connections held by tagged dbt processes: the `--threads` of each process
/// group, counted once per group (a launcher shim and the dbt it execs share one).
pub fn threads_in_use(tag: &str) -> u32 {
    let mut per_group = std::collections::BTreeMap::new();
    for p in tagged_processes(tag) {
        if let Some(t) = threads_of(&p.argv) {
            let e = per_group.entry(p.pgid).or_insert(0);
            *e = t.max(*e);
        }
    }
    per_group.values().sum()
}

pub struct Proc {
    pub pid: i32,
    pub pgid: i32,
    /// `R`, `S`, `T` (stopped) … from /proc/PID/stat.
    pub state: String,
    pub argv: Vec<String>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (group {}): {}",
            self.pid,
            self.pgid,
            self.argv.join(" ")
        )
    }
}

/// Live (non-zombie) processes whose environment holds `HERD_TEST_TAG=<tag>`.
pub fn tagged_processes(tag: &str) -> Vec<Proc> {
    let needle = format!("HERD_TEST_TAG={tag}");
    procfs::pids()
        .into_iter()
        .filter(|&pid| procfs::environ_contains(pid, &needle))
        .filter_map(|pid| {
            let stat = procfs::stat(pid).filter(|s| !s.is_gone())?;
            Some(Proc {
                pid,
                pgid: stat.pgrp,
                state: stat.state.to_string(),
                argv: procfs::cmdline(pid),
            })
        })
        .collect()
}

/// The `--threads N` of a process's argv, if it has one (dbt leaders do).
pub fn threads_of(argv: &[String]) -> Option<u32> {
    let i = argv.iter().position(|a| a == "--threads")?;
    argv.get(i + 1)?.parse().ok()
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Kills whatever a failed test left behind, so no test leaks processes.
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for p in tagged_processes(&self.0) {
            // SAFETY: plain kill(2) on a pid we found tagged by this test.
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
    }
}
