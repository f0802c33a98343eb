//! The bundled demo project, prepared for a test: pinned dbt venv, project copy,
//! source data, and the run options that point dbt-herd at it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dbt_herd::demo::DemoDirs;

use super::bin;

/// A prepared demo (venv, project, source data, empty warehouse) in a temp dir.
pub fn demo() -> (tempfile::TempDir, DemoDirs, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = DemoDirs::new(tmp.path());
    let mut log = Vec::new();
    let dbt = dbt_herd::demo::prepare(&dirs, &mut log)
        .unwrap_or_else(|e| panic!("demo setup failed: {e}\n{}", String::from_utf8_lossy(&log)));
    (tmp, dirs, dbt)
}

/// `dbt-herd run` options for the demo project; dbt processes carry `HERD_TEST_TAG=tag`.
pub fn demo_args(dirs: &DemoDirs, dbt: &Path, state: &Path, tag: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |k: &str, v: OsString| {
        a.push(k.into());
        a.push(v);
    };
    push("--project-dir", dirs.project.clone().into());
    push("--profiles-dir", dirs.project.clone().into());
    push("--dbt", dbt.into());
    push("--state-dir", state.into());
    push(
        "--env",
        format!(
            "DUCKDB_PATH={}/worker{{worker}}.duckdb",
            dirs.warehouse.display()
        )
        .into(),
    );
    push(
        "--env",
        format!(
            "HERD_DEMO_SOURCE={}",
            dirs.data.join("source.duckdb").display()
        )
        .into(),
    );
    push(
        "--env",
        format!("HERD_DEMO_LANDING={}", dirs.landing.display()).into(),
    );
    push("--env", format!("HERD_TEST_TAG={tag}").into());
    a
}

/// A headless `dbt-herd run` on the demo project.
pub fn demo_run(dirs: &DemoDirs, dbt: &Path, state: &Path, tag: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--headless"])
        .args(demo_args(dirs, dbt, state, tag))
        .args(extra)
        .stdin(Stdio::null());
    c
}
