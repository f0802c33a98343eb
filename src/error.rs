//! The error that means "the user gave us something we cannot use": exit 2, one line.

use std::fmt;

/// A usage or configuration error. `main` prints it as one line on stderr and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for building a `UsageError` with `format!` arguments.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => { $crate::error::UsageError(format!($($arg)*)) };
}

pub type UsageResult<T> = Result<T, UsageError>;
