//! The state dir: where a run keeps its stored options, journal, summary and each
//! batch's dbt target and logs.
//!
//! ```text
//! <state dir>/lock                     held by the live run (its pid inside)
//! <state dir>/run.json                 the run's options (for --resume; secrets masked)
//! <state dir>/journal.jsonl            append-only, fsynced record of attempts
//! <state dir>/summary.json             kept current while running
//! <state dir>/batches/<id>/target/     dbt --target-path (run_results.json, compiled SQL)
//! <state dir>/batches/<id>/logs/       dbt --log-path (dbt.log)
//! <state dir>/batches/<id>/attempt-<n>.stdout.log / .stderr.log   raw output
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use color_eyre::eyre::WrapErr;
use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;
use crate::error::UsageResult;
use crate::usage;

pub(crate) const RUN_FILE: &str = "run.json";
pub(crate) const JOURNAL_FILE: &str = "journal.jsonl";
pub(crate) const SUMMARY_FILE: &str = "summary.json";

/// The layout of run.json; 1 stored numbers as text.
const RUN_FORMAT: u32 = 2;

#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    pub root: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRun {
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

    /// Creates `root` (and its parents) if need be and makes it private to this
    /// user, whatever the umask or an older dbt-herd left: it holds logs, compiled
    /// SQL and the run's options.
    pub fn make_private(root: &Path) -> color_eyre::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root)
            .wrap_err_with(|| format!("cannot create the state dir {}", root.display()))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .wrap_err_with(|| format!("cannot make the state dir {} private", root.display()))
    }

    /// Creates the dir for a new run and stores its options.
    pub fn create(&self, args: &RunArgs) -> color_eyre::Result<()> {
        std::fs::create_dir_all(self.root.join("batches"))
            .wrap_err_with(|| format!("cannot create the state dir {}", self.root.display()))?;
        self.store_run(args)
    }

    pub fn store_run(&self, args: &RunArgs) -> color_eyre::Result<()> {
        let run = StoredRun {
            format: RUN_FORMAT,
            created_at: chrono::Utc::now().to_rfc3339(),
            args: args.clone(),
        };
        let path = self.root.join(RUN_FILE);
        let json =
            serde_json::to_vec_pretty(&run).wrap_err("cannot serialise the run's options")?;
        write_atomic(&path, &json).wrap_err_with(|| format!("cannot write {}", path.display()))
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
/// On failure the old file stays as it was and no temp file is left behind.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
