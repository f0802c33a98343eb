//! One batch's log on the whole body, with scrollback and search.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::pane::elapsed;
use super::table::failure_lines;
use super::text::{cells, log_line};
use crate::engine::BatchStatus;
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::{App, Zoom};
use crate::tui::theme::{Theme, status_word};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, z: &Zoom, theme: &Theme) {
    let Some(v) = app.batches.get(z.batch) else {
        return;
    };
    let empty = Default::default();
    let log = app.logs.get(z.batch).unwrap_or(&empty);
    let mut mode = if z.follow {
        "FOLLOW".to_string()
    } else {
        format!("SCROLLED ↑{}", z.offset)
    };
    if z.wrap {
        mode.push_str(" · WRAP");
    } else if z.hscroll > 0 {
        mode.push_str(&format!(" · →{}", z.hscroll));
    }
    let search = z
        .query
        .as_deref()
        .map(|q| format!(" · /{}", sanitize_plain(q, 40)))
        .unwrap_or_default();
    let block = Block::bordered()
        .border_style(theme.focus())
        .title(Line::from(vec![
            Span::styled(format!(" {} ", sanitize_plain(&v.label, 80)), theme.bold()),
            Span::styled(
                status_word(v.status, v.suspended),
                theme.status(v.status, v.suspended),
            ),
            Span::raw(format!(
                " · attempt {} · {} · {} lines · {mode}{search} ",
                v.attempts,
                fmt_duration(elapsed(app, v)),
                log.len()
            )),
        ]))
        .title_bottom(Line::styled(
            " Esc back · PgUp/PgDn · g/G · f follow · / search · n/N · w wrap · ←/→ ",
            theme.dim(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let failure = if v.status == BatchStatus::Failed {
        failure_lines(v, theme)
    } else {
        Vec::new()
    };
    let log_rows = crate::tui::layout::zoom_log_rows(app.size, failure.len());
    let failure_h = inner.height.saturating_sub(cells(log_rows));
    let [top, body] =
        Layout::vertical([Constraint::Length(failure_h), Constraint::Min(0)]).areas(inner);
    if failure_h > 0 {
        frame.render_widget(Paragraph::new(failure), top);
    }

    let height = usize::from(body.height);
    let needle = z.query.as_deref().unwrap_or("");
    let lines: Vec<Line> = log
        .window(height, z.offset)
        .map(|(seq, l)| {
            let extra = if Some(seq) == z.matched {
                Style::new().add_modifier(Modifier::REVERSED)
            } else if !needle.is_empty() && l.folded.contains(needle) {
                Style::new().add_modifier(Modifier::UNDERLINED)
            } else {
                Style::new()
            };
            shifted(
                log_line(l, theme, extra),
                if z.wrap { 0 } else { z.hscroll },
            )
        })
        .collect();
    // Wrapped, a long line takes several rows and the oldest lines of the window
    // scroll off the top: the newest stay in view.
    let width = usize::from(body.width).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let text = Paragraph::new(lines);
    let text = if z.wrap {
        text.wrap(Wrap { trim: false })
            .scroll((cells(rows.saturating_sub(height)), 0))
    } else {
        text
    };
    frame.render_widget(text, body);
}

/// A line with its first `n` chars scrolled off the left (as `less -S`).
fn shifted(line: Line<'_>, n: usize) -> Line<'_> {
    if n == 0 {
        return line;
    }
    let mut skip = n;
    let mut spans = Vec::new();
    for span in line.spans {
        let count = span.content.chars().count();
        if skip >= count {
            skip -= count;
            continue;
        }
        let rest: String = span.content.chars().skip(skip).collect();
        skip = 0;
        spans.push(Span::styled(rest, span.style));
    }
    Line::from(spans).style(line.style)
}
