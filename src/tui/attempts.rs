//! A batch's attempts as rows of text for the table's detail: number, kind,
//! worker, start (local time), duration and outcome. Only the last few show;
//! `show` and `y` reach every one.

use crate::engine::BatchView;
use crate::engine::messages::AttemptOutcome;
use crate::progress::fmt_duration;

/// Attempts listed in the detail at most (the latest ones).
pub const MAX_ROWS: usize = 4;

/// The rows for `v`, the oldest shown first; a first line counts the ones left out.
pub fn lines(v: &BatchView, now: f64) -> Vec<String> {
    let skipped = v.history.len().saturating_sub(MAX_ROWS);
    let mut out = Vec::new();
    if skipped > 0 {
        out.push(format!(
            "  … {skipped} earlier attempts (dbt-herd show lists all)"
        ));
    }
    for a in v.history.iter().skip(skipped) {
        let took = match (a.duration_s, a.outcome) {
            (Some(d), _) => fmt_duration(d),
            (None, AttemptOutcome::Running) => fmt_duration((now - a.started_at).max(0.0)),
            (None, _) => "?".into(),
        };
        let class = a
            .failure_class
            .map(|c| format!(" ({})", c.word()))
            .unwrap_or_default();
        out.push(format!(
            "#{:<2} {:<5} w{:<2} {}  {:>7}  {}{class}",
            a.number,
            a.kind.as_str(),
            a.worker,
            clock(a.started_at),
            took,
            a.outcome.as_str()
        ));
    }
    out
}

/// Unix seconds as the local wall-clock time.
fn clock(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let whole = secs.floor() as i64;
    chrono::DateTime::from_timestamp(whole, 0).map_or_else(
        || "--:--:--".into(),
        |t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        },
    )
}
