//! The one reader of Linux's `/proc`: process state and group, CPU ticks, the
//! environment and the command line. The engine uses it to know when a process
//! group is empty and to find a dead run's leftovers; the tests use it to find the
//! processes they started.

use std::path::Path;

/// The fields of `/proc/<pid>/stat` that dbt-herd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie)…
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// CPU time in clock ticks (`getconf CLK_TCK`).
    pub utime: u64,
    pub stime: u64,
}

impl ProcStat {
    /// A zombie or dead entry: not a process that can still act.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every pid in `/proc` (empty where there is no `/proc`).
pub fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live (non-zombie) members of a process group. `kill(-pgid, 0)` cannot tell
/// this: it also succeeds while only zombies are left.
pub fn group_members(pgid: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid && !s.is_gone()))
        .collect()
}

/// Whether the process's environment holds exactly `KEY=VALUE`.
pub fn environ_contains(pid: i32, key_value: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == key_value.as_bytes()))
}

/// The process's argv (empty if it is gone or a kernel thread).
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this system has a `/proc` to read.
pub fn available() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let s = "1234 (dbt (worker) 1) S 1 1234 1234 0 -1 4194560 1 0 0 0 17 5 0 0 20 0 1";
        let st = parse_stat(s).unwrap();
        assert_eq!((st.state, st.ppid, st.pgrp), ('S', 1, 1234));
        assert_eq!((st.utime, st.stime), (17, 5));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let st = stat(me).unwrap();
        assert!(!st.is_gone());
        assert!(pids().contains(&me));
        assert!(!cmdline(me).is_empty());
        assert!(group_members(st.pgrp).contains(&me));
    }
}
