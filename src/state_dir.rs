//! The state dir: where a run keeps its stored options, journal, summary and each
//! batch's dbt target and logs.
//!
//! ```text
//! <state dir>/run.json                 the run's options (for --resume)
//! <state dir>/journal.jsonl            append-only, fsynced record of attempts
//! <state dir>/summary.json             kept current while running
//! <state dir>/batches/<id>/target/     dbt --target-path (run_results.json, compiled SQL)
//! <state dir>/batches/<id>/logs/       dbt --log-path (dbt.log)
//! <state dir>/batches/<id>/attempt-<n>.stdout.log / .stderr.log   raw output
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;
use crate::dbt::run_results::NodeCounts;
use crate::error::UsageResult;
use crate::usage;

pub const RUN_FILE: &str = "run.json";
pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRun {
    pub format: u32,
    pub created_at: String,
    pub args: RunArgs,
}

impl StateDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// A fresh default location: `.dbt-herd/<timestamp>-<pid>`.
    pub fn default_path() -> PathBuf {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        PathBuf::from(".dbt-herd").join(format!("{stamp}-{}", std::process::id()))
    }

    pub fn batch_dir(&self, id: &str) -> PathBuf {
        self.root.join("batches").join(id)
    }
    pub fn target_dir(&self, id: &str) -> PathBuf {
        self.batch_dir(id).join("target")
    }
    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.batch_dir(id).join("logs")
    }
    pub fn attempt_output(&self, id: &str, attempt: u32, stream: &str) -> PathBuf {
        self.batch_dir(id)
            .join(format!("attempt-{attempt}.{stream}.log"))
    }
    pub fn journal_path(&self) -> PathBuf {
        self.root.join(JOURNAL_FILE)
    }
    pub fn summary_path(&self) -> PathBuf {
        self.root.join(SUMMARY_FILE)
    }

    /// Creates the dir for a new run and stores its options.
    pub fn create(&self, args: &RunArgs) -> UsageResult<()> {
        std::fs::create_dir_all(self.root.join("batches"))
            .map_err(|e| usage!("cannot create state dir '{}': {e}", self.root.display()))?;
        self.store_run(args)
    }

    pub fn store_run(&self, args: &RunArgs) -> UsageResult<()> {
        let run = StoredRun {
            format: 1,
            created_at: chrono::Utc::now().to_rfc3339(),
            args: args.clone(),
        };
        let json = serde_json::to_vec_pretty(&run).unwrap_or_default();
        write_atomic(&self.root.join(RUN_FILE), &json)
            .map_err(|e| usage!("cannot write '{}': {e}", self.root.join(RUN_FILE).display()))
    }

    /// Opens an existing state dir for `--resume`.
    pub fn open_for_resume(root: &Path) -> UsageResult<(Self, StoredRun)> {
        let file = root.join(RUN_FILE);
        if !root.is_dir() {
            return Err(usage!("--resume '{}': no such directory", root.display()));
        }
        let bytes = std::fs::read(&file).map_err(|_| {
            usage!(
                "--resume '{}' is not a dbt-herd state dir (no {RUN_FILE})",
                root.display()
            )
        })?;
        let run: StoredRun = serde_json::from_slice(&bytes).map_err(|e| {
            usage!(
                "--resume '{}': {RUN_FILE} is unreadable ({e})",
                root.display()
            )
        })?;
        Ok((Self::new(crate::config::absolute(root)), run))
    }
}

/// Writes `bytes` to `path` via a temp file, fsync and rename, so a reader (or a
/// crash) never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub batches: Vec<BatchSummary>,
    pub budget: u32,
    pub workers: usize,
    pub threads: u32,
    pub started_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub id: String,
    pub label: String,
    /// succeeded | failed | cancelled | pending
    pub status: String,
    pub attempts: u32,
    pub duration_s: f64,
    pub nodes: NodeCounts,
    pub error: Option<String>,
    /// dbt matched no node for this batch's selection (it still exits 0).
    pub nothing_selected: bool,
}
