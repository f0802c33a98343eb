//! The run before its first batch: each phase of the preparation with its time,
//! what the one under way waits on, and how to stop it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::engine::PrepView;
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::theme::Theme;

/// Longest text of a phase on screen.
const MAX_TEXT: usize = 200;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, prep: &PrepView, theme: &Theme) {
    if area.height == 0 {
        return;
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.dim())
        .title(Span::styled(" preparing the run ", theme.title()));
    let mut lines = Vec::new();
    let now_s = (app.now - prep.launched_at).max(0.0);
    for p in &prep.phases {
        let doing = sanitize_plain(&p.doing, MAX_TEXT);
        match p.seconds {
            Some(s) => lines.push(Line::from(vec![
                Span::styled(" done ", theme.good()),
                Span::styled(format!("{:>7}  ", fmt_duration(s)), theme.dim()),
                Span::raw(doing),
            ])),
            None if prep.done => lines.push(Line::from(vec![
                Span::styled(" ended", theme.warn()),
                Span::raw(format!("{:9}", "")),
                Span::raw(doing),
            ])),
            None => lines.push(Line::from(vec![
                Span::styled(" now  ", theme.bold()),
                Span::styled(
                    format!("{:>7}  ", fmt_duration((now_s - p.began_s).max(0.0))),
                    theme.dim(),
                ),
                Span::raw(doing),
            ])),
        }
    }
    if !prep.waits_on.is_empty() {
        let on = prep
            .waits_on
            .iter()
            .map(|w| sanitize_plain(w, MAX_TEXT))
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(Line::from(vec![
            Span::styled(format!("{:15}waits on ", ""), theme.dim()),
            Span::raw(on),
        ]));
    }
    if prep.phases.is_empty() {
        lines.push(Line::from(" launched"));
    }
    lines.push(Line::default());
    let stop = if app.read_only {
        " q leaves (the run goes on)"
    } else if app.detachable {
        " q stops it (SIGINT, SIGTERM, then SIGKILL to each dbt process) · d detaches"
    } else {
        " q stops it (SIGINT, SIGTERM, then SIGKILL to each dbt process)"
    };
    lines.push(Line::styled(stop, theme.dim()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}
