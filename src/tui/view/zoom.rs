//! One batch's log on the whole body, with scrollback and search.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

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
    let mode = if z.follow {
        "FOLLOW".to_string()
    } else {
        format!("SCROLLED ↑{}", z.offset)
    };
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
            " Esc back · PgUp/PgDn · g/G · f follow · / search · n/N ",
            theme.dim(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let failure = if v.status == BatchStatus::Failed {
        failure_lines(v, theme)
    } else {
        Vec::new()
    };
    let failure_h = cells(failure.len()).min(inner.height / 3);
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
            log_line(l, theme, extra)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
}
