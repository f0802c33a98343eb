//! The engine's events on their way to a face, over a bounded channel. The engine
//! never waits for a face: when the channel is full, log lines are counted per
//! batch instead of queued (the face later gets one "N lines not shown" line), and
//! state events wait in a backlog where a newer state of the same thing replaces
//! the older one, so the backlog is bounded by the size of the run, not by time.

use std::collections::{BTreeMap, VecDeque};
use std::mem::discriminant;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::engine::messages::Event;

pub(crate) struct Outbox {
    tx: mpsc::Sender<Event>,
    /// State events that did not fit, in order.
    backlog: VecDeque<Event>,
    /// Log lines not sent, per batch.
    shed: BTreeMap<usize, u64>,
    /// The face shows log lines (the headless reporter does not).
    logs: bool,
}

impl Outbox {
    pub fn new(tx: mpsc::Sender<Event>, logs: bool) -> Self {
        Self {
            tx,
            backlog: VecDeque::new(),
            shed: BTreeMap::new(),
            logs,
        }
    }

    pub fn push(&mut self, ev: Event) {
        if let Event::Log { batch, .. } = &ev {
            if !self.logs {
                return;
            }
            if !self.backlog.is_empty() {
                // Behind already: keep order, count the line.
                *self.shed.entry(*batch).or_default() += 1;
                return;
            }
        } else if !self.backlog.is_empty() {
            self.queue(ev);
            return;
        }
        match self.tx.try_send(ev) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(Event::Log { batch, .. })) => {
                *self.shed.entry(batch).or_default() += 1;
            }
            Err(TrySendError::Full(ev)) => self.queue(ev),
        }
    }

    /// Backlogs a state event; a newer state of the same thing replaces the older.
    fn queue(&mut self, ev: Event) {
        let same = |old: &Event| match (old, &ev) {
            (Event::BatchChanged(a), Event::BatchChanged(b)) => a.index == b.index,
            (
                Event::WorkersChanged(_)
                | Event::QueueChanged(_)
                | Event::BudgetChanged(_)
                | Event::QueuePaused(_)
                | Event::Resources(_),
                _,
            ) => discriminant(old) == discriminant(&ev),
            _ => false,
        };
        match self.backlog.iter_mut().find(|old| same(old)) {
            Some(slot) => *slot = ev,
            None => self.backlog.push_back(ev),
        }
    }

    #[cfg(test)]
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Something waits for room in the channel: backlogged events, or word of
    /// shed lines.
    pub fn waiting(&self) -> bool {
        !self.backlog.is_empty() || !self.shed.is_empty()
    }

    /// A clone of the sender, to wait for room in the channel with.
    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.tx.clone()
    }

    /// Sends backlogged events while the channel has room.
    pub fn flush(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Counts of shed log lines, once there is room to say so.
    pub fn take_shed(&mut self) -> Vec<(usize, u64)> {
        if self.shed.is_empty() || self.tx.capacity() == 0 {
            return Vec::new();
        }
        std::mem::take(&mut self.shed).into_iter().collect()
    }

    /// Puts an event before everything backlogged: word of lines that were shed
    /// before the backlog's state changes happened.
    pub fn push_first(&mut self, ev: Event) {
        self.backlog.push_front(ev);
    }

    /// The last events: everything backlogged, then `last`, waiting for the face
    /// (a face reads until the last event, or has dropped its receiver).
    pub async fn close(mut self, last: Event) {
        while let Some(ev) = self.backlog.pop_front() {
            if self.tx.send(ev).await.is_err() {
                return;
            }
        }
        let _ = self.tx.send(last).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::events::Level;
    use crate::engine::messages::{BatchView, LogLine};

    fn log(batch: usize) -> Event {
        Event::Log {
            batch,
            worker: 1,
            line: LogLine {
                level: Level::Info,
                class: None,
                text: "x".into(),
                plain: true,
            },
        }
    }

    fn changed(index: usize, attempts: u32) -> Event {
        Event::BatchChanged(BatchView {
            index,
            attempts,
            ..Default::default()
        })
    }

    #[test]
    fn a_full_channel_sheds_logs_and_coalesces_state() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut o = Outbox::new(tx, true);
        o.push(log(0));
        o.push(log(0));
        // Full from here on.
        o.push(log(0));
        o.push(changed(0, 1));
        o.push(log(1));
        o.push(changed(1, 1));
        o.push(changed(0, 2));
        o.push(Event::QueueChanged(vec![1]));
        o.push(Event::QueueChanged(vec![]));
        assert!(o.has_backlog());
        assert!(o.take_shed().is_empty(), "no room to say so yet");
        // The face reads two events; then the word of shed lines goes first and
        // the backlog follows in order.
        assert!(matches!(rx.try_recv(), Ok(Event::Log { .. })));
        assert!(matches!(rx.try_recv(), Ok(Event::Log { .. })));
        assert_eq!(o.take_shed(), vec![(0, 1), (1, 1)]);
        o.push_first(Event::Idle);
        o.flush();
        assert_eq!(rx.try_recv().unwrap(), Event::Idle, "the word goes first");
        assert_eq!(
            rx.try_recv().unwrap(),
            changed(0, 2),
            "the newest state of batch 0"
        );
        assert!(rx.try_recv().is_err());
        o.flush();
        assert_eq!(rx.try_recv().unwrap(), changed(1, 1));
        assert_eq!(rx.try_recv().unwrap(), Event::QueueChanged(vec![]));
        assert!(!o.has_backlog());
        assert!(!o.waiting());
    }

    #[test]
    fn a_face_without_logs_gets_none() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut o = Outbox::new(tx, false);
        o.push(log(0));
        o.push(changed(0, 1));
        assert_eq!(rx.try_recv().unwrap(), changed(0, 1));
        assert!(rx.try_recv().is_err());
        assert!(o.take_shed().is_empty());
    }
}
