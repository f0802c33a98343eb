//! Turning sanitised text into styled ratatui lines, and small formatting helpers.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::tui::logbuf::ShownLine;
use crate::tui::theme::Theme;

/// A log line with its base style (from level / node status) under the SGR styles
/// the child asked for.
pub fn log_line<'a>(line: &'a ShownLine, theme: &Theme, extra: Style) -> Line<'a> {
    let base = theme.log_line(line.level, line.class).patch(extra);
    Line::from(
        line.segments
            .iter()
            .map(|s| Span::styled(s.text.as_str(), theme.segment(base, &s.style)))
            .collect::<Vec<_>>(),
    )
}

pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = n as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// A count of cells as a terminal coordinate: saturating, never wrapping.
pub fn cells(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// `text` in at most `width` columns, ending in "…" when it had to be cut.
pub fn fit(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// `[#####.....]` with `width` cells, for places a gauge widget would be too much.
pub fn bar(done: u32, total: u32, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    let filled = if total == 0 {
        0
    } else {
        // In integers: done × width / total, rounded.
        let (done, total) = (u64::from(done.min(total)), u64::from(total));
        usize::try_from((done * width as u64 + total / 2) / total).unwrap_or(width)
    };
    let filled = filled.min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sizes() {
        assert_eq!(bar(1, 2, 4), "██░░");
        assert_eq!(bar(0, 0, 3), "░░░");
        assert_eq!(bar(9, 3, 2), "██");
        assert_eq!(bytes(180 * 1024 * 1024), "180 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn cut_text_ends_in_an_ellipsis_within_its_width() {
        assert_eq!(fit("2024-01-01", 10), "2024-01-01");
        assert_eq!(fit("2024-01-01", 9), "2024-01-…");
        assert_eq!(fit("日本語の窓", 5), "日本…");
        assert_eq!(fit("abc", 0), "");
    }
}
