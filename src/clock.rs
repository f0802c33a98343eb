//! The wall clock, read in one place. The engine core and the TUI's `update` never
//! read it themselves: time reaches them as a value, so they stay testable.

/// Seconds since the Unix epoch (0.0 if the clock is before 1970).
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
