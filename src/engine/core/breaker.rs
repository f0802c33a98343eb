//! The circuit breaker: when the last K finished attempts, across batches, all
//! failed with one systemic cause (the warehouse down, its directory missing,
//! a lock held, a profile that does not load), no batch can succeed now, and
//! running the rest of the plan would only burn it. The queue pauses with one
//! diagnosis; running batches finish; resuming the queue starts counting anew.

use std::collections::VecDeque;

use crate::dbt::class::{FailureClass, shape};

/// Attempts that fail alike before the queue pauses, unless `--breaker` says otherwise.
pub(crate) const DEFAULT_K: usize = 3;

/// One finished attempt, as the breaker counts it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Succeeded,
    Failed {
        class: FailureClass,
        shape: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Breaker {
    /// `None`: off (`--breaker off`).
    k: Option<usize>,
    recent: VecDeque<Seen>,
    /// Why the queue was paused, once it was.
    pub tripped: Option<String>,
}

impl Breaker {
    pub fn new(k: Option<usize>) -> Self {
        Self {
            k: k.filter(|&k| k > 0),
            ..Self::default()
        }
    }

    /// A finished attempt (a cancelled one is not counted). Returns the
    /// diagnosis when this one trips the breaker.
    pub fn note(&mut self, failed: Option<(FailureClass, &str)>) -> Option<String> {
        let k = self.k?;
        self.recent.push_back(match failed {
            None => Seen::Succeeded,
            Some((class, error)) => Seen::Failed {
                class,
                shape: shape(error),
                error: error.to_string(),
            },
        });
        while self.recent.len() > k {
            self.recent.pop_front();
        }
        if self.tripped.is_some() || self.recent.len() < k {
            return None;
        }
        let Some(Seen::Failed {
            class,
            shape: first,
            error,
        }) = self.recent.front()
        else {
            return None;
        };
        let alike = class.systemic()
            && self.recent.iter().all(|s| {
                matches!(s, Seen::Failed { class: c, shape, .. } if c == class && shape == first)
            });
        if !alike {
            return None;
        }
        // The cause first: on a narrow screen it is what stays.
        let why = format!(
            "{} — the last {k} attempts all failed alike ({} failure); the queue is paused",
            error.split_whitespace().collect::<Vec<_>>().join(" "),
            class.word(),
        );
        self.tripped = Some(why.clone());
        Some(why)
    }

    /// The queue was resumed by hand: count afresh.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.tripped = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: &str = "Database Error\n  connection to server at \"localhost\", port 5433 failed: Connection refused";

    #[test]
    fn k_systemic_failures_alike_trip_it_and_a_success_between_does_not() {
        let mut b = Breaker::new(Some(3));
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None);
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None);
        let why = b
            .note(Some((FailureClass::Connection, DOWN)))
            .expect("tripped");
        assert!(why.contains("last 3 attempts"), "{why}");
        assert!(why.contains("Connection refused"), "{why}");
        assert!(!why.contains('\n'), "one line: {why}");
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None, "once");

        let mut b = Breaker::new(Some(3));
        b.note(Some((FailureClass::Connection, DOWN)));
        b.note(None);
        b.note(Some((FailureClass::Connection, DOWN)));
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None);
        assert!(b.note(Some((FailureClass::Connection, DOWN))).is_some());
    }

    #[test]
    fn data_failures_and_different_causes_never_trip_it_and_off_is_off() {
        let mut b = Breaker::new(Some(2));
        let bad_row = "model.a: division by zero";
        assert_eq!(b.note(Some((FailureClass::Query, bad_row))), None);
        assert_eq!(b.note(Some((FailureClass::Query, bad_row))), None);
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None);
        assert_eq!(
            b.note(Some((FailureClass::Lock, "Could not set lock on file"))),
            None
        );
        let mut off = Breaker::new(None);
        for _ in 0..10 {
            assert_eq!(off.note(Some((FailureClass::Connection, DOWN))), None);
        }
    }

    #[test]
    fn resuming_counts_afresh() {
        let mut b = Breaker::new(Some(2));
        b.note(Some((FailureClass::Connection, DOWN)));
        assert!(b.note(Some((FailureClass::Connection, DOWN))).is_some());
        b.reset();
        assert_eq!(b.note(Some((FailureClass::Connection, DOWN))), None);
        assert!(b.note(Some((FailureClass::Connection, DOWN))).is_some());
    }
}
