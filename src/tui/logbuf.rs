//! A batch's recent output, sanitised once when it arrives and bounded in memory
//! (the full log stays in the state dir).

use std::collections::VecDeque;

use crate::dbt::events::{Level, StatusClass};
use crate::engine::LogLine;
use crate::text::sanitize::{Segment, sanitize};

/// Longest line kept, in characters; longer ones end in `…`.
pub const MAX_LINE_CHARS: usize = 2000;
/// Lines of scrollback kept per batch.
pub const SCROLLBACK: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub struct ShownLine {
    pub level: Level,
    pub class: Option<StatusClass>,
    pub segments: Vec<Segment>,
    /// The visible text, lower-cased, for search.
    pub folded: String,
}

impl ShownLine {
    /// One shown line per line of the text: dbt's error messages span several.
    pub fn split(line: &LogLine) -> impl Iterator<Item = ShownLine> + '_ {
        line.text
            .trim_end_matches(['\n', '\r'])
            .split('\n')
            .map(|part| Self::of(line, part.strip_suffix('\r').unwrap_or(part)))
    }

    /// A line of dbt-herd's own between a batch's lines (e.g. where an attempt starts).
    pub fn separator(text: &str) -> Self {
        Self::of(
            &LogLine {
                level: Level::Info,
                class: None,
                text: String::new(),
                plain: true,
            },
            text,
        )
    }

    #[cfg(test)]
    pub fn new(line: &LogLine) -> Self {
        Self::of(line, &line.text)
    }

    fn of(line: &LogLine, text: &str) -> Self {
        let safe = sanitize(text.as_bytes(), MAX_LINE_CHARS);
        let folded = safe.plain().to_lowercase();
        Self {
            level: line.level,
            class: line.class,
            segments: safe.segments,
            folded,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogBuffer {
    lines: VecDeque<ShownLine>,
    cap: usize,
    /// Sequence number of `lines[0]`: lines are addressed by sequence so that a
    /// search hit stays put while old lines fall off the front.
    first_seq: u64,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::with_capacity(SCROLLBACK)
    }
}

impl LogBuffer {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            cap: cap.max(1),
            first_seq: 0,
        }
    }

    pub fn push(&mut self, line: ShownLine) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
            self.first_seq += 1;
        }
        self.lines.push_back(line);
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    #[cfg(test)]
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.lines.len() as u64
    }

    #[cfg(test)]
    pub fn get(&self, seq: u64) -> Option<&ShownLine> {
        let i = seq.checked_sub(self.first_seq)?;
        self.lines.get(usize::try_from(i).ok()?)
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &ShownLine> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }

    /// `n` lines ending `from_bottom` lines above the newest, oldest first.
    pub fn window(&self, n: usize, from_bottom: usize) -> impl Iterator<Item = (u64, &ShownLine)> {
        let end = self.lines.len().saturating_sub(from_bottom);
        let start = end.saturating_sub(n);
        (start..end).map(move |i| (self.first_seq + i as u64, &self.lines[i]))
    }

    /// The nearest line after (`forward`) or before `from` whose text contains
    /// `needle` (already lower-cased); wraps around once. `from` may be one past
    /// either end, so a search can start at the newest or the oldest line.
    pub fn find(&self, needle: &str, from: u64, forward: bool) -> Option<u64> {
        if needle.is_empty() || self.lines.is_empty() {
            return None;
        }
        let n = i64::try_from(self.lines.len()).ok()?;
        // Relative to the oldest line kept; may be one outside either end.
        let start = i64::try_from(from).ok()? - i64::try_from(self.first_seq).ok()?;
        let step = if forward { 1 } else { -1 };
        (1..=n)
            .filter_map(|k| usize::try_from((start + k * step).rem_euclid(n)).ok())
            .find(|&i| self.lines[i].folded.contains(needle))
            .map(|i| i as u64 + self.first_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> ShownLine {
        ShownLine::new(&LogLine {
            level: Level::Info,
            class: None,
            text: text.into(),
            plain: false,
        })
    }

    #[test]
    fn keeps_only_the_newest_lines_and_numbers_them() {
        let mut b = LogBuffer::with_capacity(3);
        for i in 0..5 {
            b.push(line(&format!("line {i}")));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.first_seq(), 2);
        assert_eq!(b.get(2).unwrap().folded, "line 2");
        assert!(b.get(1).is_none());
        let tail: Vec<_> = b.tail(2).map(|l| l.folded.clone()).collect();
        assert_eq!(tail, ["line 3", "line 4"]);
        let win: Vec<_> = b.window(2, 1).map(|(s, _)| s).collect();
        assert_eq!(win, [2, 3]);
    }

    #[test]
    fn search_wraps_both_ways() {
        let mut b = LogBuffer::default();
        for t in ["ERROR a", "ok", "error b", "ok"] {
            b.push(line(t));
        }
        assert_eq!(b.find("error", 0, true), Some(2));
        assert_eq!(b.find("error", 2, true), Some(0));
        assert_eq!(b.find("error", 0, false), Some(2));
        assert_eq!(b.find("missing", 0, true), None);
        // From one past the newest line, backwards: the newest line comes first.
        b.push(line("error c"));
        assert_eq!(b.find("error", b.end_seq(), false), Some(4));
    }

    #[test]
    fn multi_line_messages_become_several_lines() {
        let log = LogLine {
            level: Level::Error,
            class: None,
            text: "Compilation Error\r\n  in model x\n".into(),
            plain: false,
        };
        let shown: Vec<_> = ShownLine::split(&log).map(|l| l.folded).collect();
        assert_eq!(shown, ["compilation error", "  in model x"]);
    }

    #[test]
    fn escape_sequences_are_gone_before_storage() {
        let l = line("\x1b]52;c;cHduZWQ=\x07\x1b]0;pwned\x07\x1b[31mred\x1b[0m tail");
        assert_eq!(l.folded, "red tail");
        assert!(l.segments.iter().all(|s| !s.text.contains('\x1b')));
    }
}
