//! A disk that fills up mid-run, on a real small tmpfs (where the test may mount
//! one: it needs root and CAP_SYS_ADMIN; elsewhere it says it was skipped, and the
//! journal-write failure stays covered with /dev/full in faults.rs).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Result<Mounted, String> {
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "herd-test",
        ])
        .arg(at)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(Mounted(at.to_path_buf()))
    } else {
        Err(text(&out.stderr).trim().to_string())
    }
}

/// The journal's records, a torn last line left out.
fn records(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_disk_that_fills_mid_run_starts_nothing_unrecorded_and_the_run_resumes() {
    let outside = tempfile::tempdir().unwrap();
    let mnt = outside.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let _mounted = match mount_tmpfs(&mnt, "1m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a small tmpfs here ({e})");
            return;
        }
    };
    // Most of the disk is taken: a few batches of log lines fill the rest.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024 - 192 * 1024]).unwrap();

    // dbt as a wrapper that notes, outside the full disk, every batch it starts.
    let spawned = outside.path().join("spawned");
    let wrapper = outside.path().join("dbt");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$DBT_ENV_CUSTOM_ENV_HERD_BATCH\" >> '{}'\nexec '{}' \"$@\"\n",
            spawned.display(),
            fake_dbt().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let project = fake_project();
    let state = mnt.join("state");
    let t = tag("full-disk");
    let _reaper = Reaper(t.clone());
    let run = |resume: bool| {
        let mut c = Command::new(bin());
        c.args(["run", "--headless", "--grace-int", "1", "--grace-term", "1"]);
        if resume {
            c.arg("--resume").arg(&state);
        } else {
            c.args(["--shared-warehouse", "no", "--mode", "cold", "-s", "flood"])
                .args(["--backfill", "2024-03-01..2024-03-31", "--workers", "1"])
                .arg("--project-dir")
                .arg(project.path())
                .arg("--dbt")
                .arg(&wrapper)
                .arg("--state-dir")
                .arg(&state)
                .arg("--env")
                .arg(format!("HERD_TEST_TAG={t}"));
        }
        c.env("FAKE_LINES", "300")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    let out = run(false);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 3)),
        "a full disk is not success: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // No process was started without its journal record on disk.
    let started: Vec<String> = std::fs::read_to_string(&spawned)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        !started.is_empty(),
        "the run started nothing:\n{stdout}\n{stderr}"
    );
    assert!(
        started.len() < 30,
        "the disk never filled: {} batches ran",
        started.len()
    );
    let journal = records(&state);
    for id in &started {
        assert!(
            journal
                .iter()
                .any(|r| r["record"] == "attempt_started" && r["batch"] == id.as_str()),
            "batch {id} was started with no journal record on disk"
        );
    }
    // The closing lines name summary.json only if a good copy is there.
    let named = stdout
        .lines()
        .find_map(|l| l.strip_prefix("summary.json: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    if named != "not written (see above)" {
        let named = named.split(" (an earlier copy").next().unwrap();
        let bytes = std::fs::read(named).unwrap_or_else(|e| panic!("{named}: {e}"));
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|e| panic!("{named} is not a whole summary: {e}"));
    }
    assert!(
        wait_for(std::time::Duration::from_secs(10), || tagged_processes(&t)
            .is_empty()),
        "processes left: {:?}",
        tagged_processes(&t)
    );

    // Room again (as when a disk is cleaned up or grown): the same state dir
    // resumes and finishes the plan.
    std::fs::remove_file(&filler).unwrap();
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(grown.status.success(), "{}", text(&grown.stderr));
    let again = run(true);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}\n{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    let s = summary(&state);
    let batches = s["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 30);
    assert!(batches.iter().all(|b| b["status"] == "succeeded"), "{s}");
}
