//! Transient faults retry by themselves: a batch whose attempt failed because
//! the connection broke (reset, server closed it, a restart) waits a while and
//! runs again (`dbt retry` when it has results to go on), at most a few times,
//! without using up `--retries`. The wait doubles each time and is spread per
//! batch, so that batches hit by one restart do not all come back at once.

use super::EngineCore;
use crate::dbt::events::Level;
use crate::engine::messages::BatchStatus;
use crate::engine::protocol::Effect;

/// Retries of a transient fault per batch.
pub(crate) const TRANSIENT_RETRIES: u32 = 2;
/// The first wait, in seconds; each next one doubles it.
const FIRST_WAIT_S: f64 = 2.0;

/// The wait before retry `n` (1-based) of a batch: doubling from the first,
/// times 0.75–1.25 by a spread drawn from the batch's id (the engine's core
/// takes no randomness, so the spread is the same on every run).
pub(super) fn wait_s(batch_id: &str, n: u32) -> f64 {
    let spread = batch_id
        .bytes()
        .chain(n.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    #[allow(clippy::cast_precision_loss)]
    let unit = (spread % 1000) as f64 / 1000.0;
    FIRST_WAIT_S * 2f64.powi(i32::try_from(n.saturating_sub(1)).unwrap_or(0)) * (0.75 + 0.5 * unit)
}

impl EngineCore {
    /// Holds batch `b` back until `now` plus its wait; says so.
    pub(super) fn hold_back(&mut self, b: usize, now: f64) -> Effect {
        let st = &self.batches[b];
        let n = TRANSIENT_RETRIES - st.transient_left;
        let wait = wait_s(&st.batch.id, n);
        self.backoff.push((now + wait, b));
        Self::notice(
            Level::Warn,
            format!(
                "batch {}: a transient fault; it runs again in {wait:.1}s ({n} of {TRANSIENT_RETRIES})",
                st.batch.id
            ),
        )
    }

    /// When the next held-back batch is due (Unix seconds), if one waits.
    pub fn next_wake(&self) -> Option<f64> {
        self.backoff
            .iter()
            .map(|&(due, _)| due)
            .min_by(f64::total_cmp)
    }

    /// Time passed: held-back batches that are due go first in the queue.
    pub fn on_tick(&mut self, now: f64) -> Vec<Effect> {
        let (due, later): (Vec<_>, Vec<_>) = self.backoff.drain(..).partition(|&(t, _)| t <= now);
        self.backoff = later;
        if due.is_empty() {
            return Vec::new();
        }
        for &(_, b) in due.iter().rev() {
            // Cancelled (or retried by hand) while it waited: nothing to add.
            if self.batches[b].status == BatchStatus::Pending && !self.queue.contains(&b) {
                self.queue.push_front(b);
            }
        }
        self.wake();
        let mut fx = vec![self.queue_changed()];
        fx.extend(self.dispatch(now));
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_and_spread_between_batches() {
        let a1 = wait_s("2024-01-01", 1);
        let a2 = wait_s("2024-01-01", 2);
        assert!((1.5..=2.5).contains(&a1), "{a1}");
        assert!((3.0..=5.0).contains(&a2), "{a2}");
        let spread: Vec<f64> = (1..=8)
            .map(|d| wait_s(&format!("2024-01-0{d}"), 1))
            .collect();
        let distinct = spread
            .iter()
            .map(|w| format!("{w:.3}"))
            .collect::<std::collections::BTreeSet<_>>();
        assert!(
            distinct.len() >= 6,
            "batches come back at different times: {spread:?}"
        );
        assert_eq!(wait_s("x", 1), wait_s("x", 1), "the same on every run");
    }
}
