//! Every batch in a table, and below it what went wrong with the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::pane::elapsed;
use super::text::cells;
use crate::engine::{BatchStatus, BatchView};
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::theme::{Theme, status_word};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let selected = app.batches.get(app.selected);
    let detail_height = selected.map_or(0, |v| {
        detail_height(v, theme, area.width.saturating_sub(2)).min(area.height / 2)
    });
    let [top, bottom] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(detail_height)]).areas(area);

    let header = Row::new([
        "",
        "batch",
        "status",
        "att",
        "time",
        "ok/err/skip",
        "w",
        "q",
        "first error",
    ])
    .style(theme.bold());
    let rows = app.batches.iter().map(|v| row(app, v, theme));
    let widths = [
        Constraint::Length(4),
        Constraint::Max(28),
        Constraint::Length(9),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(theme.selected_row())
        .highlight_symbol("▶")
        .block(Block::bordered().title(Line::styled(
            format!(" batches ({}) · Enter: log · Esc: grid ", app.batches.len()),
            theme.title(),
        )));
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, top, &mut state);

    if let Some(v) = selected
        && detail_height > 0
    {
        draw_detail(frame, bottom, v, theme);
    }
}

fn row<'a>(app: &App, v: &'a BatchView, theme: &Theme) -> Row<'a> {
    let c = v.counts;
    let queue = app
        .queue
        .iter()
        .position(|&b| b == v.index)
        .map_or_else(String::new, |p| (p + 1).to_string());
    let time = if v.attempts == 0 {
        String::new()
    } else {
        fmt_duration(elapsed(app, v))
    };
    let nodes = if v.attempts == 0 {
        String::new()
    } else if v.status == BatchStatus::Running {
        // Until dbt has counted its nodes there is nothing to show.
        v.nodes_total
            .map_or_else(|| "…".to_string(), |t| format!("{}/{t}", v.nodes_done))
    } else {
        format!("{}/{}/{}", c.success + c.pass, c.error + c.fail, c.skipped)
    };
    let wait = app.wait(v.index);
    let error = match (&v.error, &wait) {
        (Some(e), _) => sanitize_plain(&e.split_whitespace().collect::<Vec<_>>().join(" "), 200),
        (None, Some(w)) => app.wait_text(w),
        (None, None) => String::new(),
    };
    let mut status = match &wait {
        Some(w) if w.blocked => "BLOCKED",
        Some(_) => "WAITING",
        None => status_word(v.status, v.suspended),
    }
    .to_string();
    if v.nothing_selected {
        status = "EMPTY".into();
    }
    Row::new(vec![
        Cell::from(format!("{:>3}", v.index + 1)),
        Cell::from(sanitize_plain(&v.label, 60)),
        Cell::from(status).style(theme.status(v.status, v.suspended)),
        Cell::from(v.attempts.to_string()),
        Cell::from(time),
        Cell::from(nodes),
        Cell::from(v.worker.map_or_else(String::new, |w| w.to_string())),
        Cell::from(queue),
        Cell::from(error).style(theme.error()),
    ])
}

/// Rows the failure detail needs at `width` once wrapped, with its border.
fn detail_height(v: &BatchView, theme: &Theme, width: u16) -> u16 {
    if v.status != BatchStatus::Failed || width == 0 {
        return 0;
    }
    let rows: usize = failure_lines(v, theme)
        .iter()
        .map(|l| l.width().div_ceil(usize::from(width)).max(1))
        .sum();
    cells(rows + 2)
}

/// A failed batch's failing nodes, their messages and where their compiled SQL is.
pub fn failure_lines<'a>(v: &BatchView, theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    // The error repeats the first failing node's message; say it only when no
    // node is known (a crash, a parse error, a missing run_results.json).
    if let Some(e) = v.error.as_ref().filter(|_| v.failing.is_empty()) {
        lines.push(Line::styled(
            format!("error: {}", one_line(e, 400)),
            theme.error(),
        ));
    }
    // Node, then where its SQL is, then the message: a long message must not
    // push the path out of a small detail box.
    for n in &v.failing {
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", n.status.to_uppercase()), theme.error()),
            Span::styled(sanitize_plain(&n.unique_id, 200), theme.bold()),
        ]));
        if let Some(p) = &n.compiled_path {
            lines.push(Line::styled(
                format!("  compiled SQL: {}", sanitize_plain(p, 300)),
                theme.dim(),
            ));
        }
        lines.push(Line::raw(format!(
            "  {}",
            one_line(n.message.as_deref().unwrap_or("-"), 400)
        )));
    }
    debug_assert_eq!(lines.len(), crate::tui::layout::pinned_lines(v));
    lines
}

fn one_line(s: &str, max: usize) -> String {
    sanitize_plain(&s.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

fn draw_detail(frame: &mut Frame, area: Rect, v: &BatchView, theme: &Theme) {
    let block = Block::bordered().title(Line::styled(
        format!(
            " {} · r: retry · e: edit · s: split ",
            sanitize_plain(&v.label, 60)
        ),
        theme.error(),
    ));
    frame.render_widget(
        Paragraph::new(failure_lines(v, theme))
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}
