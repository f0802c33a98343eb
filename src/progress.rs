//! Run-wide numbers both faces show: totals by status, ETA, durations for people.

use crate::engine::{BatchStatus, BatchView};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub running: usize,
    pub pending: usize,
    pub nothing_selected: usize,
}

impl Totals {
    pub fn of<'a>(batches: impl IntoIterator<Item = &'a BatchView>) -> Self {
        let mut t = Totals::default();
        for b in batches {
            if b.status == BatchStatus::Split {
                // Replaced by its parts, which are counted themselves.
                continue;
            }
            t.total += 1;
            match b.status {
                BatchStatus::Succeeded => t.succeeded += 1,
                BatchStatus::Failed => t.failed += 1,
                BatchStatus::Cancelled => t.cancelled += 1,
                BatchStatus::Running => t.running += 1,
                BatchStatus::Pending => t.pending += 1,
                BatchStatus::Split => {}
            }
            if b.nothing_selected {
                t.nothing_selected += 1;
            }
        }
        t
    }

    pub fn done(&self) -> usize {
        self.succeeded + self.failed + self.cancelled
    }
}

/// Seconds left, from the mean duration of the batches finished so far: the
/// pending ones at that pace over the worker slots, plus what the running ones
/// still need. `None` before any batch has finished.
pub fn eta_secs<'a>(
    batches: impl IntoIterator<Item = &'a BatchView>,
    workers: usize,
    now: f64,
) -> Option<f64> {
    let (mut sum, mut n, mut pending, mut running_left) = (0.0, 0usize, 0usize, Vec::new());
    let all: Vec<&BatchView> = batches.into_iter().collect();
    for b in &all {
        // Only what really ran: a batch carried over by a resume with no time
        // on record says nothing about how long one takes.
        if matches!(b.status, BatchStatus::Succeeded | BatchStatus::Failed)
            && b.attempts > 0
            && b.duration_s > 0.0
        {
            sum += b.duration_s / f64::from(b.attempts.max(1));
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    for b in &all {
        match b.status {
            BatchStatus::Pending => pending += 1,
            BatchStatus::Running => {
                let elapsed = b.running_since.map_or(0.0, |s| (now - s).max(0.0));
                running_left.push((mean - elapsed).max(0.0));
            }
            _ => {}
        }
    }
    let slots = workers.max(1) as f64;
    let running_max = running_left.iter().copied().fold(0.0, f64::max);
    let spread = (pending as f64 * mean + running_left.iter().sum::<f64>()) / slots;
    Some(spread.max(running_max))
}

/// 7.1s, 1m02s, 1h03m.
// Rounded, non-negative seconds: a value past u64 would be a bug upstream, and
// saturates rather than wraps.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn fmt_duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: BatchStatus, duration: f64, since: Option<f64>) -> BatchView {
        BatchView {
            id: "x".into(),
            label: "x".into(),
            status,
            attempts: u32::from(status != BatchStatus::Pending),
            duration_s: duration,
            running_since: since,
            ..Default::default()
        }
    }

    /// After a resume, batches carried over with no time on record say nothing
    /// about how long a batch takes.
    #[test]
    fn eta_ignores_batches_that_did_not_run_here() {
        let carried = view(BatchStatus::Succeeded, 0.0, None);
        let pending = view(BatchStatus::Pending, 0.0, None);
        assert_eq!(eta_secs(&[carried.clone(), pending.clone()], 2, 0.0), None);
        let ran = view(BatchStatus::Succeeded, 8.0, None);
        assert_eq!(eta_secs(&[carried, ran, pending], 2, 0.0), Some(4.0));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(7.14), "7.1s");
        assert_eq!(fmt_duration(62.0), "1m02s");
        assert_eq!(fmt_duration(3780.0), "1h03m");
    }

    #[test]
    fn eta_from_finished_batches() {
        let mut bs = vec![
            view(BatchStatus::Succeeded, 10.0, None),
            view(BatchStatus::Failed, 20.0, None),
        ];
        assert_eq!(
            eta_secs(&[view(BatchStatus::Pending, 0.0, None)], 2, 0.0),
            None
        );
        bs.extend((0..4).map(|_| view(BatchStatus::Pending, 0.0, None)));
        bs.push(view(BatchStatus::Running, 5.0, Some(95.0)));
        // mean 15 s; 4 pending × 15 + (15 - 5) for the running one, over 2 slots.
        assert_eq!(eta_secs(&bs, 2, 100.0), Some(35.0));
        let t = Totals::of(&bs);
        assert_eq!(
            (
                t.total,
                t.succeeded,
                t.failed,
                t.pending,
                t.running,
                t.done()
            ),
            (7, 1, 1, 4, 1, 2)
        );
    }
}
