//! Child processes in their own process groups: spawning, signalling the whole
//! group, and knowing when a group is really empty.
//!
//! Every group we start is also recorded in a process-wide registry, so that the
//! last-resort paths (a panic, an early error exit) can SIGKILL whatever is left:
//! no dbt process may outlive dbt-herd.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::dbt::argv::Invocation;
use crate::procfs;

static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn registry() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    // A poisoned lock still holds a valid set; never panic on the way out.
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child that leads its own process group.
pub(crate) struct GroupChild {
    pub child: tokio::process::Child,
    /// The group's id: the child's pid. Never 0, so signalling it can never reach
    /// dbt-herd's own group.
    pub pgid: i32,
}

impl GroupChild {
    pub fn pid(&self) -> u32 {
        self.pgid.unsigned_abs()
    }
}

/// Starts `inv` as the leader of a new process group with piped stdout/stderr.
pub(crate) fn spawn_in_group(inv: &Invocation) -> std::io::Result<GroupChild> {
    spawn_with_fds(inv, None, &[])
}

/// As `spawn_in_group`, in directory `cwd` if given, and with each `(fd, at)`
/// of `fds` duplicated onto descriptor number `at` in the child (the pipes of
/// a warm worker's protocol).
pub(crate) fn spawn_with_fds(
    inv: &Invocation,
    cwd: Option<&std::path::Path>,
    fds: &[(std::os::fd::RawFd, std::os::fd::RawFd)],
) -> std::io::Result<GroupChild> {
    let mut cmd = tokio::process::Command::new(&inv.program);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // A safety net only: it kills the leader, not its group.
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (signal, sigprocmask) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // An ignored SIGINT is inherited across exec, and dbt cancels warehouse
            // queries only on SIGINT: give the child default dispositions and an
            // empty signal mask whatever context spawned it.
            for sig in [
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGPIPE,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let fds = fds.to_vec();
    if !fds.is_empty() {
        // SAFETY: dup2 is async-signal-safe; the copies it makes are not
        // close-on-exec, so the program finds them at the numbers it was told.
        unsafe {
            cmd.pre_exec(move || {
                for &(fd, at) in &fds {
                    if libc::dup2(fd, at) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn()?;
    // A child without a pid has already been reaped: there is no group to own.
    let pgid = match child.id().and_then(|p| i32::try_from(p).ok()) {
        Some(p) if p > 0 => p,
        _ => {
            let _ = child.start_kill();
            return Err(std::io::Error::other("the child has no process id"));
        }
    };
    registry().insert(pgid);
    Ok(GroupChild { child, pgid })
}

/// Signals every process in the group. A group that is already gone is not an error.
pub(crate) fn signal_group(pgid: i32, sig: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), sig);
    }
}

/// Whether any member of the group is alive (zombies do not count).
pub(crate) fn group_alive(pgid: i32) -> bool {
    if !procfs::available() {
        // No /proc: ask the kernel whether the group exists at all.
        return killpg(Pid::from_raw(pgid), None).is_ok();
    }
    !procfs::group_members(pgid).is_empty()
}

/// Forget a group once it is empty.
pub(crate) fn unregister(pgid: i32) {
    registry().remove(&pgid);
}

/// The groups started and not yet known to be empty.
pub(crate) fn registered() -> Vec<i32> {
    registry().iter().copied().collect()
}

/// What a group's leader is, in a word or two for people: `dbt ls`, `dbt parse`,
/// `dbt worker` (a warm worker), or its program's name.
pub(crate) fn describe(pgid: i32) -> String {
    let argv = procfs::cmdline(pgid);
    let name = |a: &String| {
        std::path::Path::new(a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if argv.iter().any(|a| name(a).starts_with("herd_worker")) {
        return "dbt worker".into();
    }
    if let Some(i) = argv.iter().position(|a| name(a) == "dbt") {
        return match argv.get(i + 1) {
            Some(sub) if !sub.starts_with('-') => format!("dbt {sub}"),
            _ => "dbt".into(),
        };
    }
    argv.first().map(name).unwrap_or_else(|| "a process".into())
}

/// Last resort on the way out (panic, error exit): SIGKILL every group still
/// registered, then SIGCONT so that stopped members act on it. Normal shutdown
/// never gets here with anything left.
pub(crate) fn kill_all_registered() {
    let groups: Vec<i32> = registry().iter().copied().collect();
    for &g in &groups {
        signal_group(g, Signal::SIGKILL);
        signal_group(g, Signal::SIGCONT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_with_a_grandchild_is_alive_until_killed() {
        let inv = Invocation {
            program: "/bin/sh".into(),
            // The grandchild ignores SIGTERM, like a stubborn subprocess of dbt.
            args: vec!["-c".into(), "trap '' TERM; sleep 30 & wait".into()],
            env: vec![],
        };
        let mut g = spawn_in_group(&inv).unwrap();
        let pgid = g.pgid;
        assert!(pgid > 0 && registry().contains(&pgid));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            procfs::group_members(pgid).len() >= 2,
            "leader and grandchild"
        );
        signal_group(pgid, Signal::SIGTERM);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(group_alive(pgid), "SIGTERM is ignored by the group");
        signal_group(pgid, Signal::SIGKILL);
        let _ = g.child.wait().await;
        for _ in 0..50 {
            if !group_alive(pgid) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!group_alive(pgid));
        unregister(pgid);
    }
}
