//! A plan resolved once is not resolved again when a run is resumed and
//! nothing it was resolved from has changed: the plan, the options that reach
//! it, every file of the project and of its profiles (size and modification
//! time), and the values of the environment variables that the project reads.
//! Anything else, or any doubt, resolves again: a resume after Ctrl-C then
//! starts without a `dbt ls`, and a resume after an edit sees the edit.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::resolve::PlanReport;
use crate::cli::SharedWarehouse;
use crate::config::RunSettings;
use crate::plan::Batch;

const FILE: &str = "resolved.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    /// The environment variables the project reads, with their values then.
    env: BTreeMap<String, Option<String>>,
    batches: Vec<Batch>,
    report: PlanReport,
}

/// What the resolution of `plan` depends on, as one string.
/// `state`: the run's state dir, left out where it lies in the project.
pub(crate) fn fingerprint(
    s: &RunSettings,
    plan: &[Batch],
    mode: SharedWarehouse,
    state: &Path,
) -> String {
    let mut files = Vec::new();
    signature(&s.project_dir, state, &mut files);
    for dir in s.profiles_dir.iter() {
        signature(dir, state, &mut files);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".dbt/profiles.yml");
        files.push(file_line(&p));
    }
    let doc = serde_json::json!({
        "plan": plan,
        "mode": mode,
        "dbt": s.dbt,
        "project": s.project_dir,
        "profiles": s.profiles_dir,
        "target": s.target,
        "command": s.command,
        "exclude": s.exclude,
        "selector": s.selector,
        "args": s.extra_args,
        "env": s.env,
        "threads": s.threads,
        "budget": s.budget,
        "allow_empty": s.allow_empty,
        "window_as": s.plan.window_as,
        "profiles_env": std::env::var("DBT_PROFILES_DIR").ok(),
        "files": files,
    });
    super::inputs::digest(&doc.to_string())
}

/// The resolution stored in `dir`, if it was made from `fingerprint` and the
/// variables it read still have the values they had.
pub(crate) fn load(dir: &Path, fingerprint: &str) -> Option<(Vec<Batch>, PlanReport)> {
    let stored: Stored = serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()?;
    let same_env = stored.env.iter().all(|(k, v)| std::env::var(k).ok() == *v);
    (stored.fingerprint == fingerprint && same_env).then_some((stored.batches, stored.report))
}

/// Keeps a resolution for the next resume. `env_read`: the variables the
/// project reads (`None`: it may read any, so the next resume resolves again).
pub(crate) fn store(
    dir: &Path,
    fingerprint: &str,
    env_read: Option<&[String]>,
    batches: &[Batch],
    report: &PlanReport,
) {
    let Some(names) = env_read else {
        let _ = std::fs::remove_file(dir.join(FILE));
        return;
    };
    let stored = Stored {
        fingerprint: fingerprint.to_string(),
        env: names
            .iter()
            .map(|k| (k.clone(), std::env::var(k).ok()))
            .collect(),
        batches: batches.to_vec(),
        report: report.clone(),
    };
    // Best effort: without it the next resume resolves again.
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(bytes) = serde_json::to_vec(&stored)
    {
        let _ = crate::state_dir::write_atomic(&dir.join(FILE), &bytes);
    }
}

/// Every file under `dir` (not dbt's output, not hidden dirs), as path, size
/// and modification time.
fn signature(dir: &Path, state: &Path, out: &mut Vec<String>) {
    let output = [dir.join("target"), dir.join("logs")];
    let files =
        super::project_files::files(dir, |p, _| p == state || output.iter().any(|o| o == p));
    out.extend(files.iter().map(|p| file_line(p)));
}

fn file_line(p: &Path) -> String {
    let meta = std::fs::metadata(p).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {modified}", p.display(), meta.map_or(0, |m| m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> RunSettings {
        let a = crate::cli::RunArgs {
            project_dir: Some(dir.to_path_buf()),
            dbt: Some("/bin/sh".into()),
            ..Default::default()
        };
        RunSettings::from_args(&a).unwrap()
    }

    #[test]
    fn a_stored_resolution_is_reused_only_while_nothing_it_read_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbt_project.yml"), "name: p\n").unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        std::fs::write(dir.path().join("models/a.sql"), "select 1").unwrap();
        let s = settings(dir.path());
        let plan = vec![Batch {
            id: "a".into(),
            ..Batch::default()
        }];
        let mode = SharedWarehouse::Auto;
        let state = dir.path().join("state");
        let fp = fingerprint(&s, &plan, mode, &state);
        let work = state.join("plan");
        let report = PlanReport::default();
        store(
            &work,
            &fp,
            Some(&["HERD_REUSE_TEST_UNSET".into()]),
            &plan,
            &report,
        );
        assert_eq!(load(&work, &fp), Some((plan.clone(), report.clone())));
        // The state dir in the project, and what a run writes in it, do not count.
        std::fs::write(state.join("journal.jsonl"), "{}").unwrap();
        assert_eq!(fingerprint(&s, &plan, mode, &state), fp);
        // dbt's own output does not count.
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/manifest.json"), "{}").unwrap();
        assert_eq!(fingerprint(&s, &plan, mode, &state), fp);
        // An edited model does; so does another plan.
        std::fs::write(dir.path().join("models/a.sql"), "select 22").unwrap();
        assert_ne!(fingerprint(&s, &plan, mode, &state), fp);
        assert_ne!(fingerprint(&s, &[], mode, &state), fp);
        // A project that may read any variable is never reused.
        store(&work, &fp, None, &plan, &report);
        assert_eq!(load(&work, &fp), None);
    }
}
