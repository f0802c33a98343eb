//! `dbt-herd demo`: a real backfill of the bundled DuckDB project, from nothing.
//!
//! It creates the private dbt venv on first use, writes the demo project, builds its
//! read-only source database and daily landing files, and runs a backfill with one
//! worker-local DuckDB file per worker (DuckDB allows one writer per file). One
//! window's upstream file arrives late, so that window fails; the demo then
//! "delivers" the file, as the upstream system eventually would, and the batch's
//! retry succeeds.

use std::io::Write;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::cli::EnvTemplate;
use crate::cli::{DemoArgs, RunArgs};
use crate::engine::{BatchStatus, Event};
use crate::error::UsageResult;
use crate::plan::Window;
use crate::{report, server, start, tui, usage, venv};

static DEMO_ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/demo");

/// The window whose shipments file lands late.
pub const LATE_DAY: &str = "2024-01-13";

/// Writes the bundled project and source builder into `dir` (replacing older copies).
pub(crate) fn write_assets(dir: &Path) -> std::io::Result<()> {
    let project = dir.join("project");
    if project.exists() {
        std::fs::remove_dir_all(&project)?;
    }
    std::fs::create_dir_all(dir)?;
    DEMO_ASSETS.extract(dir)
}

/// Paths of a prepared demo.
pub struct DemoDirs {
    pub root: PathBuf,
    pub project: PathBuf,
    pub data: PathBuf,
    pub landing: PathBuf,
    pub warehouse: PathBuf,
}

impl DemoDirs {
    pub fn new(root: &Path) -> Self {
        let root = crate::config::absolute(root);
        Self {
            project: root.join("project"),
            data: root.join("data"),
            landing: root.join("data").join("landing"),
            warehouse: root.join("warehouse"),
            root,
        }
    }

    /// Where the late file waits until it is "delivered".
    pub fn late_file(&self, day: &str) -> PathBuf {
        self.landing
            .join("late")
            .join(format!("shipments_{day}.csv"))
    }

    /// Moves a late file into the landing dir. True if there was one to move.
    pub fn deliver_late(&self, day: &str) -> std::io::Result<bool> {
        let from = self.late_file(day);
        if !from.exists() {
            return Ok(false);
        }
        std::fs::rename(&from, self.landing.join(format!("shipments_{day}.csv")))?;
        Ok(true)
    }
}

/// Venv, project files, source data and an empty warehouse dir. Returns the dbt path.
pub fn prepare(dirs: &DemoDirs, out: &mut dyn Write) -> UsageResult<PathBuf> {
    let dbt = venv::ensure(out).map_err(|e| usage!("cannot set up dbt for the demo: {e}"))?;
    write_assets(&dirs.root).map_err(|e| {
        usage!(
            "cannot write the demo project to {}: {e}",
            dirs.root.display()
        )
    })?;
    let python = dbt.with_file_name("python");
    let status = std::process::Command::new(&python)
        .arg(dirs.root.join("make_source.py"))
        .arg(&dirs.data)
        .status()
        .map_err(|e| usage!("cannot run {}: {e}", python.display()))?;
    if !status.success() {
        return Err(usage!("building the demo source data failed ({status})"));
    }
    // A fresh warehouse each time, so every run backfills from scratch.
    let _ = std::fs::remove_dir_all(&dirs.warehouse);
    std::fs::create_dir_all(&dirs.warehouse)
        .map_err(|e| usage!("cannot create {}: {e}", dirs.warehouse.display()))?;
    Ok(dbt)
}

/// The run options of the demo backfill.
pub(crate) fn run_args(
    dirs: &DemoDirs,
    dbt: &Path,
    workers: u32,
    start: chrono::NaiveDate,
    days: u32,
    state_dir: PathBuf,
) -> RunArgs {
    let end = start + chrono::Days::new(u64::from(days.max(1)));
    let env = |key: &str, value: String| EnvTemplate {
        key: key.into(),
        value,
    };
    RunArgs {
        project_dir: Some(dirs.project.clone()),
        profiles_dir: Some(dirs.project.clone()),
        dbt: Some(dbt.to_path_buf()),
        backfill: Some(Window { start, end }),
        workers: Some(workers),
        threads: Some(1),
        retries: Some(1),
        env: vec![
            env(
                "DUCKDB_PATH",
                format!("{}/worker{{worker}}.duckdb", dirs.warehouse.display()),
            ),
            env(
                "HERD_DEMO_SOURCE",
                dirs.data.join("source.duckdb").display().to_string(),
            ),
            env("HERD_DEMO_LANDING", dirs.landing.display().to_string()),
        ],
        state_dir: Some(state_dir),
        ..Default::default()
    }
}

/// Runs the demo backfill, in the TUI when `interactive`.
pub(crate) fn run(args: &DemoArgs, interactive: bool) -> color_eyre::Result<i32> {
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| venv::cache_dir().join("demo"));
    let dirs = DemoDirs::new(&root);
    let start = args.start;
    let mut out = std::io::stdout();
    let dbt = prepare(&dirs, &mut out)?;
    if args.prepare_only {
        println!("{}", dbt.display());
        return Ok(0);
    }
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let state_dir = dirs.root.join("runs").join(stamp.to_string());
    let mut run_args = run_args(&dirs, &dbt, args.workers, start, args.days, state_dir);
    if interactive {
        // In the TUI the late window stays failed until someone presses R.
        run_args.retries = Some(0);
    }
    println!(
        "dbt-herd demo: backfilling {} daily windows from {start} with {} workers; the {LATE_DAY} shipments file arrives late",
        args.days, args.workers
    );
    if interactive {
        // As `dbt-herd run`: the run in a process of its own, the TUI a client
        // (so `d` detaches the demo too).
        return crate::entry::runtime()?.block_on(async move {
            let state_dir = match server::daemon::launch(&run_args, true, Some(&dirs.root)).await? {
                Ok(dir) => dir,
                Err(code) => return Ok(code),
            };
            let link = server::client::RemoteLink::connect(&state_dir, false)
                .await
                .map_err(|e| color_eyre::eyre::eyre!("the demo run does not answer: {e:?}"))?;
            let opts = tui::TuiOptions {
                mouse: !args.no_mouse,
                ..Default::default()
            };
            tui::attach(link, opts, &state_dir.display().to_string()).await
        });
    }
    let prepared = start::prepare(&run_args)?;
    crate::entry::runtime()?.block_on(async move {
        let handle = start::launch(prepared, false);
        let outcome = report::run_headless(
            handle,
            std::io::stdout(),
            Some(late_delivery(dirs, "the batch's retry will pick it up")),
            true,
        )
        .await?;
        Ok(outcome.exit_code())
    })
}

/// The late delivery of the demo in `root`, for a run served in the background:
/// its words reach every face as a notice.
pub(crate) fn late_delivery_for(root: &Path) -> report::Observer {
    late_delivery(DemoDirs::new(root), "press R to retry the failed batch")
}

/// Delivers the late file once its window has failed for want of it, the way an
/// upstream system would eventually land it; the batch's retry then succeeds.
fn late_delivery(dirs: DemoDirs, next: &'static str) -> report::Observer {
    let mut late_batch: Option<usize> = None;
    Box::new(move |ev: &Event, out: &mut dyn Write| match ev {
        Event::Started { batches, .. } => {
            late_batch = batches
                .iter()
                .find(|b| b.id.starts_with(LATE_DAY))
                .map(|b| b.index);
        }
        Event::BatchChanged(v)
            if Some(v.index) == late_batch
                && matches!(v.status, BatchStatus::Failed | BatchStatus::Pending)
                && v.attempts >= 1 =>
        {
            if let Ok(true) = dirs.deliver_late(LATE_DAY) {
                let _ = writeln!(
                    out,
                    "demo: the late shipments file for {LATE_DAY} has now landed in {}; {next}",
                    dirs.landing.display()
                );
            }
        }
        _ => {}
    })
}
