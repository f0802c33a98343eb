//! A batch's history as plain lines: the batch, each attempt and its command,
//! and the failure detail. Every piece of text read from the state dir goes
//! through the sanitiser on its way out.

use super::Shown;
use crate::engine::messages::AttemptView;
use crate::progress::fmt_duration;
use crate::report::clean;
use crate::text::sanitize::sanitize_plain;

/// A command or a path is printed whole (cut, it would not run or open).
const WHOLE: usize = 100_000;

pub(super) fn lines(s: &Shown) -> Vec<String> {
    let mut out = vec![format!("batch {} · {}", clean(&s.id), s.status)];
    if s.label != s.id {
        out.push(format!("label: {}", clean(&s.label)));
    }
    if s.history.is_empty() {
        out.push("no attempt on record".into());
    }
    for a in &s.history {
        out.push(attempt_line(a));
        out.push(match &a.command {
            // Indented only: the line pastes into a shell as it is.
            Some(c) => format!("    {}", sanitize_plain(c, WHOLE)),
            None => "    (no command on record: the run's journal predates it)".into(),
        });
    }
    if let Some(e) = &s.error {
        out.push(format!("error: {}", clean(e)));
    }
    // As the batch table shows them: the node, where its SQL is, its message.
    for n in &s.failing {
        out.push(format!(
            "{} {}",
            clean(&n.status.to_uppercase()),
            clean(&n.unique_id)
        ));
        if let Some(p) = &n.compiled_path {
            out.push(format!("  compiled SQL: {}", sanitize_plain(p, WHOLE)));
        }
        out.push(format!("  {}", clean(n.message.as_deref().unwrap_or("-"))));
    }
    out
}

/// `attempt 2 · retry · worker 1 · started 2024-05-01 10:00:03 +02:00 · 4.2s · failed`
fn attempt_line(a: &AttemptView) -> String {
    format!(
        "attempt {} · {} · worker {} · started {} · {} · {}",
        a.number,
        a.kind.as_str(),
        a.worker,
        local_time(a.started_at),
        a.duration_s.map_or_else(|| "-".into(), fmt_duration),
        a.outcome.as_str()
    ) + &a
        .failure_class
        .map(|c| format!(" ({} failure)", c.word()))
        .unwrap_or_default()
}

fn local_time(unix_s: f64) -> String {
    // Whole milliseconds since the epoch: far inside i64 for any real time.
    #[allow(clippy::cast_possible_truncation)]
    let ms = (unix_s * 1000.0).round() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|_| unix_s > 0.0)
        .map_or_else(
            || "-".into(),
            |t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            },
        )
}
