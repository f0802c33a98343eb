//! The stop ladder for one process group: SIGINT (dbt cancels its warehouse
//! queries on SIGINT only), then SIGTERM after a grace period, then SIGKILL. And
//! after the leader exits, making sure the rest of its group is gone too.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::engine::process;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rung {
    Idle,
    SentInt,
    SentTerm,
    SentKill,
}

#[derive(Debug)]
pub(crate) struct Ladder {
    pgid: i32,
    rung: Rung,
    deadline: Option<Instant>,
    grace_int: Duration,
    grace_term: Duration,
}

impl Ladder {
    pub fn new(pgid: i32, grace_int: Duration, grace_term: Duration) -> Self {
        Self {
            pgid,
            rung: Rung::Idle,
            deadline: None,
            grace_int,
            grace_term,
        }
    }

    #[cfg(test)]
    pub fn rung(&self) -> Rung {
        self.rung
    }

    /// When the next rung is due, if a stop is under way.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Starts the ladder (a second stop changes nothing).
    pub fn stop(&mut self) {
        if self.rung != Rung::Idle {
            return;
        }
        // A stopped group cannot act on SIGINT: wake it first.
        process::signal_group(self.pgid, Signal::SIGCONT);
        process::signal_group(self.pgid, Signal::SIGINT);
        self.rung = Rung::SentInt;
        self.deadline = Some(Instant::now() + self.grace_int);
    }

    /// Straight to SIGKILL.
    pub fn kill(&mut self) {
        process::signal_group(self.pgid, Signal::SIGKILL);
        process::signal_group(self.pgid, Signal::SIGCONT);
        self.rung = Rung::SentKill;
        self.deadline = None;
    }

    /// The deadline passed: the next rung.
    pub fn escalate(&mut self) {
        match self.rung {
            Rung::SentInt => {
                process::signal_group(self.pgid, Signal::SIGTERM);
                self.rung = Rung::SentTerm;
                self.deadline = Some(Instant::now() + self.grace_term);
            }
            Rung::SentTerm | Rung::Idle | Rung::SentKill => self.kill(),
        }
    }
}

/// After the leader exits: SIGTERM what is left of the group, then SIGKILL, and
/// wait until no member is alive. False if something survived SIGKILL for 10 s.
pub(crate) async fn empty_group(pgid: i32, grace_term: Duration) -> bool {
    if !process::group_alive(pgid) {
        return true;
    }
    process::signal_group(pgid, Signal::SIGCONT);
    process::signal_group(pgid, Signal::SIGTERM);
    let poll = Duration::from_millis(50);
    let term_deadline = Instant::now() + grace_term;
    while Instant::now() < term_deadline {
        tokio::time::sleep(poll).await;
        if !process::group_alive(pgid) {
            return true;
        }
    }
    let kill_deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < kill_deadline {
        process::signal_group(pgid, Signal::SIGKILL);
        tokio::time::sleep(poll).await;
        if !process::group_alive(pgid) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    //! The ladder against real `sh` children that record the signals they get.
    use super::*;
    use crate::dbt::argv::Invocation;

    /// A group whose leader traps INT and TERM as `script` says, writing each
    /// signal's name to a file as it arrives.
    fn child(script: &str) -> (tempfile::TempDir, std::path::PathBuf, process::GroupChild) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("signals");
        let inv = Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("SIGLOG".into(), log.display().to_string())],
        };
        let g = process::spawn_in_group(&inv).unwrap();
        (dir, log, g)
    }

    fn got(log: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Drives the ladder until the leader exits, as the attempt actor does.
    async fn drive(ladder: &mut Ladder, g: &mut process::GroupChild) -> Duration {
        let started = Instant::now();
        ladder.stop();
        loop {
            let due = ladder.deadline();
            tokio::select! {
                _ = g.child.wait() => break,
                () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => ladder.escalate(),
            }
        }
        assert!(empty_group(g.pgid, Duration::from_millis(200)).await);
        process::unregister(g.pgid);
        started.elapsed()
    }

    const WAIT: &str = "while :; do sleep 0.05; done";

    #[tokio::test]
    async fn a_child_that_honours_sigint_stops_at_the_first_rung() {
        let (_d, log, mut g) = child(&format!(
            "trap 'echo INT >> $SIGLOG; exit 2' INT; trap 'echo TERM >> $SIGLOG' TERM; echo ready >> $SIGLOG; {WAIT}"
        ));
        wait_ready(&log).await;
        let mut ladder = Ladder::new(g.pgid, Duration::from_secs(5), Duration::from_secs(5));
        let took = drive(&mut ladder, &mut g).await;
        assert_eq!(got(&log), ["ready", "INT"]);
        assert_eq!(ladder.rung(), Rung::SentInt);
        assert!(
            took < Duration::from_secs(5),
            "no escalation needed: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_child_ignoring_sigint_gets_sigterm_after_the_grace() {
        let (_d, log, mut g) = child(&format!(
            "trap 'echo INT >> $SIGLOG' INT; trap 'echo TERM >> $SIGLOG; exit 3' TERM; echo ready >> $SIGLOG; {WAIT}"
        ));
        wait_ready(&log).await;
        let mut ladder = Ladder::new(g.pgid, Duration::from_millis(300), Duration::from_secs(5));
        drive(&mut ladder, &mut g).await;
        assert_eq!(got(&log), ["ready", "INT", "TERM"]);
        assert_eq!(ladder.rung(), Rung::SentTerm);
    }

    #[tokio::test]
    async fn a_child_ignoring_both_is_killed() {
        let (_d, log, mut g) = child(&format!(
            "trap 'echo INT >> $SIGLOG' INT; trap 'echo TERM >> $SIGLOG' TERM; echo ready >> $SIGLOG; {WAIT}"
        ));
        wait_ready(&log).await;
        let mut ladder = Ladder::new(
            g.pgid,
            Duration::from_millis(200),
            Duration::from_millis(200),
        );
        drive(&mut ladder, &mut g).await;
        assert_eq!(got(&log), ["ready", "INT", "TERM"]);
        assert_eq!(ladder.rung(), Rung::SentKill);
        let status = g.child.wait().await.unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[tokio::test]
    async fn a_leftover_member_of_the_group_is_removed_after_the_leader_exits() {
        // The leader exits at once; its background child ignores SIGTERM.
        let (_d, log, mut g) = child(
            "(trap 'echo TERM >> $SIGLOG' TERM; echo ready >> $SIGLOG; while :; do sleep 0.05; done) & sleep 0.3",
        );
        wait_ready(&log).await;
        let _ = g.child.wait().await;
        assert!(
            process::group_alive(g.pgid),
            "the member outlives its leader"
        );
        assert!(empty_group(g.pgid, Duration::from_millis(300)).await);
        assert!(!process::group_alive(g.pgid));
        assert_eq!(got(&log), ["ready", "TERM"]);
        process::unregister(g.pgid);
    }

    async fn wait_ready(log: &std::path::Path) {
        for _ in 0..100 {
            if got(log).first().is_some_and(|l| l == "ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the child did not start");
    }
}
