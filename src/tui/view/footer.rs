//! The bottom line: what the run is doing, the latest notice, or the keys that
//! apply to what has the focus (as many whole ones as fit; none cut mid-word).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::dbt::events::Level;
use crate::engine::BatchStatus;
use crate::tui::app::{App, Screen};
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut spans = Vec::new();
    if let Some(why) = app
        .breaker
        .as_ref()
        .filter(|_| app.queue_paused && !app.stopping)
    {
        // The one diagnosis stays until the queue is resumed: later notices
        // do not push it off the screen.
        spans.push(Span::styled("STOPPED EARLY · P resumes │ ", theme.error()));
        spans.push(Span::styled(why.clone(), theme.error()));
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    if app.stopping {
        spans.push(Span::styled("STOPPING │ ", theme.warn()));
    } else if app.queue_paused && app.running() == 0 {
        spans.push(Span::styled("QUEUE PAUSED · P resumes │ ", theme.warn()));
    } else if app.idle && app.running() == 0 {
        let all_ok = app
            .batches
            .iter()
            .all(|b| b.status.is_terminal() && b.status != BatchStatus::Failed);
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
        let used: usize = spans.iter().map(Span::width).sum();
        let room = usize::from(area.width).saturating_sub(used);
        spans.push(Span::styled(fit_keys(&keys_for(app), room), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The keys for what has the focus, most useful first.
pub fn keys_for(app: &App) -> Vec<String> {
    let fixed = |keys: &[&str]| keys.iter().map(|k| (*k).to_string()).collect::<Vec<_>>();
    if app.info.is_none() {
        // Preparing: nothing to act on yet but the run itself.
        return fixed(&["q stop", "d detach", "? help"]);
    }
    if app.zoom.is_some() {
        return fixed(&[
            "? help",
            "Esc back",
            "/ search",
            "n/N next",
            "f follow",
            "w wrap",
            "r retry",
            "c cancel",
            "y command",
            "v pager",
        ]);
    }
    match app.screen {
        Screen::Table if !app.table.marks.is_empty() => {
            let mut keys = vec![format!("{} marked:", app.table.marks.len())];
            keys.extend(fixed(&[
                "r retry",
                "c cancel",
                "e edit",
                "s split",
                "K/J move",
                "Space unmark",
                "Esc unmark all",
            ]));
            keys
        }
        Screen::Table => fixed(&[
            "? help",
            "Enter log",
            "/ filter",
            "o sort",
            "Space mark",
            "] failed",
            "r retry",
            "e edit",
            "s split",
            "K/J move",
            "c cancel",
            "y command",
            "Tab grid",
        ]),
        Screen::Timeline => fixed(&["? help", "t back", "Tab table", "q quit"]),
        Screen::Grid => fixed(&[
            "? help",
            "q quit",
            "Tab table",
            "Enter zoom",
            "] failed",
            "p pause",
            "P queue",
            "c cancel",
            "r/R retry",
            "+/- workers",
            "b budget",
        ]),
    }
}

/// As many whole keys as fit in `room` columns, joined by " · ".
pub fn fit_keys(keys: &[String], room: usize) -> String {
    let mut out = String::new();
    for k in keys {
        let sep = if out.is_empty() { "" } else { " · " };
        if out.chars().count() + sep.chars().count() + k.chars().count() > room {
            break;
        }
        out.push_str(sep);
        out.push_str(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_left_out_whole_never_cut() {
        let keys: Vec<String> = ["? help", "q quit", "Tab table"]
            .iter()
            .map(|k| (*k).to_string())
            .collect();
        assert_eq!(fit_keys(&keys, 100), "? help · q quit · Tab table");
        assert_eq!(fit_keys(&keys, 16), "? help · q quit");
        assert_eq!(fit_keys(&keys, 15), "? help · q quit");
        assert_eq!(fit_keys(&keys, 14), "? help");
        assert_eq!(fit_keys(&keys, 3), "");
    }
}
