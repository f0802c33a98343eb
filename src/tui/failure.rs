//! What went wrong with a failed batch, as lines of text without style: the
//! table's detail and the zoom's pinned lines draw them, and the layout counts
//! them, so the two can never disagree on how many there are.

use crate::engine::{BatchStatus, BatchView};
use crate::text::sanitize::sanitize_plain;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The batch's error, when no failing node is known (a crash, a parse error).
    Error,
    /// A failing node's status word.
    Status,
    /// A failing node's id.
    Node,
    /// Where a failing node's compiled SQL is.
    Path,
    /// A failing node's message.
    Message,
}

/// One line: its pieces, each with what it is (a node line has a status and an id).
pub type FailureLine = Vec<(Part, String)>;

/// A failed batch's failing nodes: node, then where its SQL is, then the
/// message, so that a long message cannot push the path out of a small box.
pub fn lines(v: &BatchView) -> Vec<FailureLine> {
    if v.status != BatchStatus::Failed {
        return Vec::new();
    }
    let mut out = Vec::new();
    // The error repeats the first failing node's message; say it only when no
    // node is known.
    // What kind of failure it is leads: a connection failure reads differently
    // from a query's.
    let kind = v
        .failure_class
        .map_or_else(|| "error".to_string(), |c| format!("{} failure", c.word()));
    if let Some(e) = v.error.as_ref().filter(|_| v.failing.is_empty()) {
        out.push(vec![(Part::Error, format!("{kind}: {}", one_line(e, 400)))]);
    } else if v
        .failure_class
        .is_some_and(crate::dbt::class::FailureClass::systemic)
    {
        out.push(vec![(Part::Error, kind)]);
    }
    for n in &v.failing {
        out.push(vec![
            (Part::Status, format!("{} ", n.status.to_uppercase())),
            (Part::Node, sanitize_plain(&n.unique_id, 200)),
        ]);
        if let Some(p) = &n.compiled_path {
            out.push(vec![(
                Part::Path,
                format!("  compiled SQL: {}", sanitize_plain(p, 300)),
            )]);
        }
        out.push(vec![(
            Part::Message,
            format!("  {}", one_line(n.message.as_deref().unwrap_or("-"), 400)),
        )]);
    }
    out
}

/// Rows the lines take once wrapped at `width` columns.
pub fn wrapped_rows(lines: &[FailureLine], width: u16) -> usize {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| {
            let chars: usize = l
                .iter()
                .map(|(_, t)| ratatui::text::Span::raw(t.as_str()).width())
                .sum();
            chars.div_ceil(width).max(1)
        })
        .sum()
}

/// Whitespace (newlines too) folded to single spaces, sanitised and cut.
pub fn one_line(s: &str, max: usize) -> String {
    sanitize_plain(&s.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::class::FailureClass;

    #[test]
    fn a_failure_says_what_kind_it_is_first() {
        let v = BatchView {
            status: BatchStatus::Failed,
            error: Some(
                "IO Error: Cannot open file \"/wh/1.duckdb\": No such file or directory".into(),
            ),
            failure_class: Some(FailureClass::Connection),
            ..Default::default()
        };
        let first = &lines(&v)[0][0].1;
        assert!(first.starts_with("connection failure: IO Error"), "{first}");
        let plain = BatchView {
            failure_class: None,
            ..v
        };
        assert!(lines(&plain)[0][0].1.starts_with("error: "));
    }
}
