//! `t`: the run so far in time, scaled to the width: a lane per worker, a bar per
//! attempt (green succeeded, red failed, yellow cancelled, blue running), as the
//! report draws it, and a warm worker's parse as its own span before them.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::engine::messages::AttemptOutcome;
use crate::progress::fmt_duration;
use crate::tui::app::App;
use crate::tui::theme::Theme;

/// Label column: "w12 ".
const LABEL: usize = 5;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let block = Block::bordered().title(" timeline · t back ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width).saturating_sub(LABEL).max(1);
    let attempts: Vec<_> = app
        .batches
        .iter()
        .flat_map(|b| b.history.iter().map(move |a| (b, a)))
        .collect();
    // Each warm worker's current process: its parse, from its start.
    let parses: Vec<(usize, f64, f64)> = app
        .workers
        .iter()
        .filter_map(|w| {
            let warm = w.warm.as_ref()?;
            let since = warm.since?;
            Some((w.number, since, warm.parse_s.map_or(app.now, |p| since + p)))
        })
        .collect();
    let Some(t0) = attempts
        .iter()
        .map(|(_, a)| a.started_at)
        .chain(parses.iter().map(|p| p.1))
        .min_by(f64::total_cmp)
    else {
        frame.render_widget(
            Paragraph::new("no attempt has started yet").style(theme.dim()),
            inner,
        );
        return;
    };
    let end_of = |a: &crate::engine::messages::AttemptView| {
        a.duration_s.map_or(app.now, |d| a.started_at + d)
    };
    let t1 = app.done_at.unwrap_or(app.now).max(t0 + 1.0);
    let col = |t: f64| {
        let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
        // Cells are few; rounding to the nearest one is the point.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let c = (f * width as f64).round() as usize;
        c.min(width)
    };
    let lanes = app
        .workers
        .len()
        .max(attempts.iter().map(|(_, a)| a.worker).max().unwrap_or(0));
    let mut lines = Vec::new();
    for lane in 1..=lanes {
        let mut cells: Vec<Option<Cell>> = vec![None; width];
        for &(_, from, to) in parses.iter().filter(|p| p.0 == lane) {
            let (x0, x1) = (col(from), col(to));
            for cell in cells.iter_mut().take(x1.max(x0 + 1).min(width)).skip(x0) {
                *cell = Some(Cell::Parse);
            }
        }
        for (_, a) in attempts.iter().filter(|(_, a)| a.worker == lane) {
            let (x0, x1) = (col(a.started_at), col(end_of(a)));
            for cell in cells.iter_mut().take(x1.max(x0 + 1).min(width)).skip(x0) {
                *cell = Some(Cell::Attempt(a.outcome));
            }
        }
        let mut spans = vec![Span::styled(
            format!("{:<LABEL$}", format!("w{lane}")),
            theme.dim(),
        )];
        spans.extend(cells.into_iter().map(|c| match c {
            None => Span::styled("·", theme.dim()),
            Some(Cell::Parse) => Span::styled("░", theme.dim()),
            Some(Cell::Attempt(o)) => Span::styled("█", style_of(o, theme)),
        }));
        lines.push(Line::from(spans));
    }
    let span = fmt_duration(t1 - t0);
    let gap = width.saturating_sub(span.len() + 1);
    lines.push(Line::styled(
        format!("{:<LABEL$}0{}{span}", "", " ".repeat(gap)),
        theme.dim(),
    ));
    lines.push(Line::from(vec![
        Span::styled("█ succeeded  ", theme.good()),
        Span::styled("█ failed  ", theme.error()),
        Span::styled("█ cancelled  ", theme.warn()),
        Span::styled("█ running", theme.focus()),
        Span::styled(
            if parses.is_empty() { "" } else { "  ░ parse" },
            theme.dim(),
        ),
        Span::styled(format!("  · {} attempts", attempts.len()), theme.dim()),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// What a cell of a lane shows.
#[derive(Clone, Copy)]
enum Cell {
    /// The worker parsing (no batch charged for it).
    Parse,
    Attempt(AttemptOutcome),
}

fn style_of(o: AttemptOutcome, theme: &Theme) -> Style {
    match o {
        AttemptOutcome::Succeeded => theme.good(),
        AttemptOutcome::Failed => theme.error(),
        AttemptOutcome::Cancelled => theme.warn(),
        AttemptOutcome::Running | AttemptOutcome::Unfinished => theme.focus(),
    }
}
