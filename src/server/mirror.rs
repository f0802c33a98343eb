//! The run as the events so far describe it, kept by the server so that a client
//! attaching mid-run starts from the whole picture: the events a face would have
//! seen from the start, condensed (the latest state of each thing, and each
//! worker's last log lines).

use std::collections::{BTreeMap, VecDeque};

use crate::dbt::events::Level;
use crate::engine::{BatchView, Event, PrepView, Resources, RunInfo, WorkerView};

/// Log lines kept per worker for a client that attaches later.
const LOG_TAIL: usize = 200;
/// Notices kept for a client that attaches later.
const NOTICE_TAIL: usize = 20;

#[derive(Default)]
pub(crate) struct Mirror {
    /// The preparation, as last told (kept after it is done: it says when the run was launched).
    prep: Option<PrepView>,
    info: Option<RunInfo>,
    batches: Vec<BatchView>,
    workers: Vec<WorkerView>,
    queue: Option<Vec<usize>>,
    budget: Option<u32>,
    at_once: Option<usize>,
    /// The breaker's diagnosis while the queue it paused stays paused.
    breaker: Option<String>,
    paused: bool,
    resources: Option<Resources>,
    logs: BTreeMap<usize, VecDeque<Event>>,
    notices: VecDeque<(Level, String)>,
    /// Nothing runs and nothing more will start without a command.
    pub idle: bool,
    /// The engine has ended.
    pub stopped: bool,
}

impl Mirror {
    pub fn apply(&mut self, ev: &Event) {
        match ev {
            Event::Preparing(p) => self.prep = Some(p.clone()),
            Event::Started {
                info,
                batches,
                workers,
            } => {
                self.info = Some(info.clone());
                self.batches.clone_from(batches);
                self.workers.clone_from(workers);
            }
            Event::BatchChanged(b) => {
                if b.status == crate::engine::BatchStatus::Running {
                    self.idle = false;
                }
                match self.batches.get_mut(b.index) {
                    Some(slot) => *slot = b.clone(),
                    None => self.batches.push(b.clone()),
                }
            }
            Event::BatchesAdded(added) => {
                for b in added {
                    match self.batches.get_mut(b.index) {
                        Some(slot) => *slot = b.clone(),
                        None => self.batches.push(b.clone()),
                    }
                }
            }
            Event::Log { worker, .. } => {
                let tail = self.logs.entry(*worker).or_default();
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(ev.clone());
            }
            Event::WorkersChanged(w) => self.workers.clone_from(w),
            Event::QueueChanged(q) => self.queue = Some(q.clone()),
            Event::BudgetChanged(b) => self.budget = Some(*b),
            Event::AtOnce(n) => self.at_once = *n,
            Event::BreakerTripped(why) => self.breaker = Some(why.clone()),
            Event::ModeChanged { mode, reason } => {
                if let Some(info) = self.info.as_mut() {
                    info.mode.clone_from(mode);
                    info.mode_reason.clone_from(reason);
                }
            }
            Event::QueuePaused(p) => {
                self.paused = *p;
                if !p {
                    self.idle = false;
                    self.breaker = None;
                }
            }
            Event::Notice { level, text } => {
                if self.notices.len() == NOTICE_TAIL {
                    self.notices.pop_front();
                }
                self.notices.push_back((*level, text.clone()));
            }
            Event::Resources(r) => self.resources = Some(r.clone()),
            Event::Idle => self.idle = true,
            Event::Stopped => self.stopped = true,
            // Told as it happens; a later client sees the batch's counts.
            Event::NodeFinished { .. } => {}
        }
    }

    /// The events that bring a new face to the present: the preparation, then
    /// `Started` once the run has started; empty before anything was said.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut out: Vec<Event> = self.prep.iter().cloned().map(Event::Preparing).collect();
        let Some(info) = &self.info else {
            if self.stopped {
                out.push(Event::Stopped);
            }
            return out;
        };
        out.push(Event::Started {
            info: info.clone(),
            batches: self.batches.clone(),
            workers: self.workers.clone(),
        });
        if let Some(q) = &self.queue {
            out.push(Event::QueueChanged(q.clone()));
        }
        if let Some(b) = self.budget {
            out.push(Event::BudgetChanged(b));
        }
        if self.at_once.is_some() {
            out.push(Event::AtOnce(self.at_once));
        }
        if self.paused {
            out.push(Event::QueuePaused(true));
        }
        if let Some(why) = &self.breaker {
            out.push(Event::BreakerTripped(why.clone()));
        }
        if let Some(r) = &self.resources {
            out.push(Event::Resources(r.clone()));
        }
        out.extend(self.logs.values().flatten().cloned());
        out.extend(self.notices.iter().map(|(level, text)| Event::Notice {
            level: *level,
            text: text.clone(),
        }));
        if self.idle {
            out.push(Event::Idle);
        }
        if self.stopped {
            out.push(Event::Stopped);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BatchStatus, LogLine};

    fn batch(index: usize, status: BatchStatus) -> BatchView {
        let mut b: BatchView = serde_json::from_value(serde_json::json!({
            "index": index, "id": format!("b{index}"), "label": format!("b{index}"),
            "select": null, "vars": "", "status": "pending", "attempts": 0,
            "attempt_kind": null, "worker": null, "pid": null, "suspended": false,
            "duration_s": 0.0, "running_since": null, "nodes_done": 0, "nodes_total": null,
            "executing": 0, "counts": {"success":0,"error":0,"skipped":0,"pass":0,"fail":0,"warn":0},
            "nothing_selected": false, "error": null, "failing": [], "auto_retries_left": 0,
            "after": [], "locks": []
        }))
        .unwrap();
        b.status = status;
        b
    }

    fn log(worker: usize, text: &str) -> Event {
        Event::Log {
            batch: 0,
            worker,
            line: LogLine {
                level: Level::Info,
                class: None,
                text: text.into(),
                plain: true,
            },
        }
    }

    #[test]
    fn a_snapshot_starts_with_the_latest_state_and_keeps_a_bounded_log_tail() {
        let mut m = Mirror::default();
        assert!(m.snapshot().is_empty(), "nothing before Started");
        let info: RunInfo = serde_json::from_value(serde_json::json!({
            "workers": 2, "threads": 1, "budget": 4, "retries": 0,
            "state_dir": "/s", "command": "build"
        }))
        .unwrap();
        m.apply(&Event::Started {
            info,
            batches: vec![
                batch(0, BatchStatus::Pending),
                batch(1, BatchStatus::Pending),
            ],
            workers: Vec::new(),
        });
        m.apply(&Event::BatchChanged(batch(1, BatchStatus::Running)));
        m.apply(&Event::BudgetChanged(6));
        m.apply(&Event::QueueChanged(vec![0]));
        for i in 0..(LOG_TAIL + 50) {
            m.apply(&log(1, &format!("line {i}")));
        }
        m.apply(&Event::BatchesAdded(vec![batch(2, BatchStatus::Pending)]));
        let snap = m.snapshot();
        let Event::Started { batches, .. } = &snap[0] else {
            panic!("first is {:?}", snap[0]);
        };
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[1].status, BatchStatus::Running);
        assert!(snap.contains(&Event::BudgetChanged(6)));
        assert!(snap.contains(&Event::QueueChanged(vec![0])));
        let logs: Vec<&Event> = snap
            .iter()
            .filter(|e| matches!(e, Event::Log { .. }))
            .collect();
        assert_eq!(logs.len(), LOG_TAIL);
        assert_eq!(logs[0], &log(1, "line 50"));
        assert!(!snap.contains(&Event::Idle));
        m.apply(&Event::Idle);
        assert!(m.snapshot().contains(&Event::Idle));
        m.apply(&Event::BatchChanged(batch(0, BatchStatus::Running)));
        assert!(!m.idle, "a batch running again is not idle");
    }

    #[test]
    fn a_client_that_comes_while_the_run_prepares_sees_the_preparation_then_the_start() {
        let mut m = Mirror::default();
        let prep = |done: bool| PrepView {
            launched_at: 100.0,
            state_dir: "/s".into(),
            phases: vec![crate::engine::PrepPhase {
                phase: "resolve".into(),
                doing: "resolving the plan".into(),
                began_s: 0.1,
                seconds: done.then_some(3.0),
            }],
            waits_on: if done {
                vec![]
            } else {
                vec!["2 × dbt ls".into()]
            },
            done,
        };
        m.apply(&Event::Preparing(prep(false)));
        assert_eq!(m.snapshot(), vec![Event::Preparing(prep(false))]);
        m.apply(&Event::Preparing(prep(true)));
        let info: RunInfo = serde_json::from_value(serde_json::json!({
            "workers": 1, "threads": 1, "budget": 4, "retries": 0,
            "state_dir": "/s", "command": "build"
        }))
        .unwrap();
        m.apply(&Event::Started {
            info,
            batches: vec![batch(0, BatchStatus::Pending)],
            workers: Vec::new(),
        });
        let snap = m.snapshot();
        assert_eq!(
            snap[0],
            Event::Preparing(prep(true)),
            "the launch time stays known"
        );
        assert!(matches!(snap[1], Event::Started { .. }), "{snap:?}");
    }

    #[test]
    fn a_run_that_ended_while_preparing_says_so_to_a_late_client() {
        let mut m = Mirror::default();
        m.apply(&Event::Preparing(PrepView::default()));
        m.apply(&Event::Stopped);
        assert_eq!(
            m.snapshot(),
            vec![Event::Preparing(PrepView::default()), Event::Stopped]
        );
    }
}
