//! One live engine per state dir: an exclusive `flock` on `<state dir>/lock`,
//! taken before anything in the dir is read or written and held until the
//! process ends (the kernel drops it when the process dies, however it dies).
//! A second `run` or `--resume` on a live state dir is refused, so the orphan
//! sweep can never kill a live run's processes, and two runs never write the
//! same journal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::UsageError;
use crate::usage;

pub(crate) const LOCK_FILE: &str = "lock";

/// Takes the state dir's lock for the rest of this process's life. The file
/// holds the owner's pid, for the message a second run prints.
pub(crate) fn hold(root: &Path) -> Result<(), UsageError> {
    let path = root.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| usage!("cannot open the state dir's lock {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(usage!("cannot lock {}: {err}", path.display()));
        }
        // The holder writes its pid just after taking the lock: a run that
        // started at the same instant may find the file still empty.
        let mut pid = String::new();
        for _ in 0..20 {
            pid.clear();
            let _ = file.rewind();
            let _ = file.read_to_string(&mut pid);
            if !pid.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let pid = pid.trim();
        let who = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        return Err(usage!(
            "run in progress{who}; attach with: dbt-herd attach {}",
            root.display()
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.sync_data();
    // The descriptor is close-on-exec (dbt children do not inherit the lock) and
    // stays open until the process exits: that is the hold.
    std::mem::forget(file);
    Ok(())
}

/// The pid written by the run that last held the lock, if any.
pub(crate) fn last_holder(root: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(root.join(LOCK_FILE))
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_hold_in_another_process_is_refused_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        hold(dir.path()).unwrap();
        assert_eq!(last_holder(dir.path()), Some(std::process::id()));
        // flock conflicts between open file descriptions, even in one process:
        // a second open of the file stands for a second run.
        let f = File::open(dir.path().join(LOCK_FILE)).unwrap();
        // SAFETY: as above.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(r, -1, "the lock must be held");
        let e = hold(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("run in progress (pid {})", std::process::id())),
            "{e}"
        );
        assert!(e.contains("dbt-herd attach"), "{e}");
    }
}
