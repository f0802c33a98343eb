//! The private Python venv with pinned dbt that the demo (and the tests) use, so
//! that nothing but a stock Python is needed on the machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// dbt-core 1.12 pulls a build dependency from outside the package registry; 1.11
/// installs from PyPI alone. DuckDB is the demo's warehouse; PostgreSQL is the
/// networked one the tests share between batches.
pub const PINS: &[&str] = &[
    "dbt-core~=1.11.0",
    "dbt-duckdb~=1.11.1",
    "dbt-postgres~=1.11.0",
];

/// `$DBT_HERD_HOME`, else `$XDG_CACHE_HOME/dbt-herd`, else `~/.cache/dbt-herd`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DBT_HERD_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("dbt-herd");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("dbt-herd")
}

pub fn venv_dir() -> PathBuf {
    cache_dir().join("venv-dbt-1.11")
}

const READY: &str = ".dbt-herd-ready";

/// Holds an exclusive lock on a file for as long as it lives, so that two
/// processes (parallel tests, two demos) never build the same venv at once.
struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { _file: f })
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Returns the venv's `dbt`, creating the venv on first use and saying what it does.
pub fn ensure(out: &mut dyn Write) -> Result<PathBuf, String> {
    let dir = venv_dir();
    let dbt = dir.join("bin").join("dbt");
    let pins = PINS.join(" ");
    let ready = |d: &Path| std::fs::read_to_string(d.join(READY)).is_ok_and(|s| s.trim() == pins);
    if ready(&dir) && dbt.exists() {
        return Ok(dbt);
    }
    std::fs::create_dir_all(cache_dir())
        .map_err(|e| format!("cannot create {}: {e}", cache_dir().display()))?;
    let _lock = FileLock::acquire(&cache_dir().join("venv.lock"))
        .map_err(|e| format!("cannot lock the venv: {e}"))?;
    if ready(&dir) && dbt.exists() {
        return Ok(dbt); // built by someone else while we waited for the lock
    }
    let python = std::env::var("DBT_HERD_PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        out,
        "dbt-herd: creating a private venv for dbt at {} ({python} -m venv)",
        dir.display()
    );
    run(
        Command::new(&python).args(["-m", "venv"]).arg(&dir),
        &format!("{python} -m venv"),
    )?;
    let _ = writeln!(
        out,
        "dbt-herd: installing {pins} into it (once; about a minute)"
    );
    let _ = out.flush();
    run(
        Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PINS),
        "pip install",
    )?;
    if !dbt.exists() {
        return Err(format!("pip finished but {} is missing", dbt.display()));
    }
    std::fs::write(dir.join(READY), &pins)
        .map_err(|e| format!("cannot mark the venv ready: {e}"))?;
    let _ = writeln!(out, "dbt-herd: dbt is ready at {}", dbt.display());
    Ok(dbt)
}
