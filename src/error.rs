//! The two kinds of failure and the exit statuses they lead to.
//!
//! - A [`UsageError`]: the user gave something dbt-herd cannot use (a bad flag
//!   value, a missing project, a state dir that is not one). One line on stderr
//!   naming the bad value, exit 2.
//! - Anything else that ends dbt-herd early is a failure of dbt-herd itself (a
//!   state dir it cannot write, a journal write error, a terminal it cannot set
//!   up). It travels as a `color_eyre::Report` with context at each step, is
//!   printed with its cause chain, and exits 3.

use std::fmt;

/// Exit statuses, as documented in the README.
pub mod exit {
    /// Every batch succeeded.
    pub const OK: i32 = 0;
    /// At least one batch failed, was cancelled or did not run.
    pub const BATCHES_FAILED: i32 = 1;
    /// Usage or configuration error: one line on stderr naming the bad value.
    pub const USAGE: i32 = 2;
    /// dbt-herd itself failed; stderr has the cause chain.
    pub const INTERNAL: i32 = 3;
    /// Ended by a signal: 128 + the signal (130 for SIGINT, 143 SIGTERM, 129 SIGHUP).
    pub const SIGNAL_BASE: i32 = 128;
}

/// A usage or configuration error. Printed as one line on stderr; exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds a `UsageError` with `format!` arguments.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => { $crate::error::UsageError(format!($($arg)*)) };
}

pub type UsageResult<T> = Result<T, UsageError>;
