//! The bottom line: the latest notice, or what the run is doing and the main keys.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::dbt::events::Level;
use crate::tui::app::{App, Screen};
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut spans = Vec::new();
    if app.stopping {
        spans.push(Span::styled("STOPPING │ ", theme.warn()));
    } else if app.queue_paused && app.running() == 0 {
        spans.push(Span::styled("QUEUE PAUSED · P resumes │ ", theme.warn()));
    } else if app.idle && app.running() == 0 {
        let all_ok = app
            .batches
            .iter()
            .all(|b| b.status.is_terminal() && b.status != crate::engine::BatchStatus::Failed);
        spans.push(if all_ok {
            Span::styled("DONE · q quits │ ", theme.good())
        } else {
            Span::styled("IDLE · r/R retries, q quits │ ", theme.warn())
        });
    }
    if let Some(n) = &app.notice {
        let style = match n.level {
            Level::Error => theme.error(),
            Level::Warn => theme.warn(),
            _ => theme.bold(),
        };
        spans.push(Span::styled(n.text.clone(), style));
        // Esc clears it only where Esc does nothing else.
        if app.zoom.is_none() && app.screen == Screen::Grid {
            spans.push(Span::styled("  (Esc clears)", theme.dim()));
        }
    } else {
        let hints = match (app.zoom.is_some(), app.screen) {
            (true, _) => "Esc back · / search · n/N · f follow · c cancel · r retry · ? help",
            (false, Screen::Grid) => {
                "q quit · ? help · Tab table · Enter zoom · p pause · P queue · c cancel · r/R retry · +/- workers · b budget"
            }
            (false, Screen::Table) => {
                "q quit · ? help · Tab grid · Enter log · r retry · e edit · s split · K/J move · c cancel"
            }
        };
        spans.push(Span::styled(hints, theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
