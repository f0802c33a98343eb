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

static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn registry() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    // A poisoned lock still holds a valid set; never panic on the way out.
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `inv` as the leader of a new process group with piped stdout/stderr.
pub fn spawn_in_group(inv: &Invocation) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&inv.program);
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
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        registry().insert(pid as i32);
    }
    Ok(child)
}

/// Signals every process in the group. A group that is already gone is not an error.
pub fn signal_group(pgid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// Processes (pids) in the group that are not zombies. On Linux this reads /proc,
/// because `kill(-pgid, 0)` also succeeds for zombies that init has not reaped yet.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        // No /proc: fall back to asking the kernel whether the group exists.
        return match killpg(Pid::from_raw(pgid), None) {
            Ok(()) => vec![pgid],
            Err(_) => Vec::new(),
        };
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat)
            && pgrp == pgid
            && state != 'Z'
            && state != 'X'
        {
            out.push(pid);
        }
    }
    out
}

/// (state, pgrp) from a /proc/<pid>/stat line. The command name may hold spaces
/// and parentheses, so fields are counted after the last ')'.
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

pub fn group_alive(pgid: i32) -> bool {
    !group_members(pgid).is_empty()
}

/// Forget a group once it is empty.
pub fn unregister(pgid: i32) {
    registry().remove(&pgid);
}

/// Last resort on the way out (panic, error exit): SIGCONT then SIGKILL every group
/// still registered. Normal shutdown never gets here with anything left.
pub fn kill_all_registered() -> usize {
    let groups: Vec<i32> = registry().iter().copied().collect();
    for &g in &groups {
        signal_group(g, Signal::SIGKILL);
        signal_group(g, Signal::SIGCONT);
    }
    groups.len()
}

pub fn registered_count() -> usize {
    registry().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let s = "1234 (dbt (worker) 1) S 1 1234 1234 0 -1 4194560 1 0";
        assert_eq!(parse_stat(s), Some(('S', 1234)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn a_group_with_a_grandchild_is_alive_until_killed() {
        let inv = Invocation {
            program: "/bin/sh".into(),
            // The grandchild ignores SIGTERM, like a stubborn subprocess of dbt.
            args: vec!["-c".into(), "trap '' TERM; sleep 30 & wait".into()],
            env: vec![],
        };
        let mut child = spawn_in_group(&inv).unwrap();
        let pgid = child.id().unwrap() as i32;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(group_members(pgid).len() >= 2, "leader and grandchild");
        signal_group(pgid, Signal::SIGTERM);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(group_alive(pgid), "SIGTERM is ignored by the group");
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
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
