//! Every batch in a table (filtered, sorted, marked), and below it what went
//! wrong with the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::pane::elapsed;
use super::text::{cells, fit};
use crate::engine::{BatchStatus, BatchView};
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::failure::{self, Part};
use crate::tui::layout::table_layout;
use crate::tui::theme::Theme;

/// Widest the batch column grows; longer labels end in an ellipsis.
const LABEL_WIDTH: u16 = 28;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rows = app.rows();
    let selected = app.selected_row();
    let view = selected.and_then(|b| app.batches.get(b));
    let geo = table_layout(area, view);

    let header = Row::new([
        "",
        "batch",
        "status",
        "att",
        "time",
        "ok/err/skip",
        "w",
        "q",
        "error",
    ])
    .style(theme.bold());
    let (label_w, error_w) = column_widths(app, &rows, geo.table.width);
    let table_rows = rows
        .iter()
        .map(|&b| row(app, &app.batches[b], theme, label_w, error_w));
    let widths = [
        Constraint::Length(5),
        Constraint::Length(cells(label_w)),
        Constraint::Length(9),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Min(cells(error_w)),
    ];
    let table = Table::new(table_rows, widths)
        .header(header)
        .row_highlight_style(theme.selected_row())
        .highlight_symbol("▶")
        .block(Block::bordered().title(title(app, rows.len(), theme)));
    let at = selected.and_then(|b| rows.iter().position(|&r| r == b));
    let mut state = TableState::default()
        .with_offset(app.table.scroll.min(rows.len().saturating_sub(1)))
        .with_selected(at);
    frame.render_stateful_widget(table, geo.table, &mut state);

    if let Some(v) = view
        && geo.detail.height > 0
    {
        draw_detail(frame, geo.detail, app, v, theme);
    }
}

/// " batches 3/300 · /fail · sorted by status · 2 marked ".
fn title(app: &App, shown: usize, theme: &Theme) -> Line<'static> {
    let total = app.batches.len();
    let mut parts = vec![if shown == total {
        format!("batches ({total})")
    } else {
        format!("batches {shown}/{total}")
    }];
    if let Some(f) = &app.table.filter {
        parts.push(format!("/{}", sanitize_plain(f, 30)));
    }
    if app.table.sort != crate::tui::app::SortKey::Queue {
        parts.push(format!("by {}", app.table.sort.word()));
    }
    if !app.table.marks.is_empty() {
        parts.push(format!("{} marked", app.table.marks.len()));
    }
    Line::from(vec![
        Span::styled(format!(" {} ", parts.join(" · ")), theme.title()),
        Span::styled("· / filter · o sort · Space mark ", theme.dim()),
    ])
}

/// Columns whose width depends on the text: the labels (as wide as the longest,
/// up to `LABEL_WIDTH`) and the first error (the rest). Text cut to them ends in
/// an ellipsis.
fn column_widths(app: &App, rows: &[usize], table_width: u16) -> (usize, usize) {
    // Border, the selection mark, eight gaps and the fixed columns.
    const FIXED: usize = 2 + 1 + 8 + 5 + 9 + 3 + 7 + 11 + 2 + 3;
    const MIN_ERROR: usize = 10;
    let longest = rows
        .iter()
        .map(|&b| ratatui::text::Span::raw(app.batches[b].label.as_str()).width())
        .max()
        .unwrap_or(0);
    let room = usize::from(table_width).saturating_sub(FIXED);
    let label = longest
        .clamp(5, usize::from(LABEL_WIDTH))
        .min(room.saturating_sub(MIN_ERROR))
        .max(5);
    (label, room.saturating_sub(label).max(1))
}

fn row<'a>(app: &App, v: &'a BatchView, theme: &Theme, label_w: usize, error_w: usize) -> Row<'a> {
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
    // Counts of a finished attempt; a running one's progress is in its pane.
    let nodes = if v.attempts == 0 || v.status == BatchStatus::Running {
        String::new()
    } else {
        format!("{}/{}/{}", c.success + c.pass, c.error + c.fail, c.skipped)
    };
    let wait = app.wait(v.index);
    let error = match (&v.error, &wait) {
        (Some(e), _) => failure::one_line(e, 200),
        (None, Some(w)) => app.wait_text(w),
        (None, None) => String::new(),
    };
    let mark = if app.table.marks.contains(&v.index) {
        "●"
    } else {
        " "
    };
    Row::new(vec![
        Cell::from(format!("{mark}{:>3}", v.index + 1)).style(theme.bold()),
        Cell::from(fit(&sanitize_plain(&v.label, 200), label_w)),
        Cell::from(app.status_text(v.index)).style(theme.status(v.status, v.suspended)),
        Cell::from(v.attempts.to_string()),
        Cell::from(time),
        Cell::from(nodes),
        Cell::from(v.worker.map_or_else(String::new, |w| w.to_string())),
        Cell::from(queue),
        Cell::from(fit(&error, error_w)).style(theme.error()),
    ])
}

/// A failed batch's failure, styled.
pub fn failure_lines<'a>(v: &BatchView, theme: &Theme) -> Vec<Line<'a>> {
    failure::lines(v)
        .into_iter()
        .map(|parts| {
            Line::from(
                parts
                    .into_iter()
                    .map(|(part, text)| {
                        let style = match part {
                            Part::Error | Part::Status => theme.error(),
                            Part::Node => theme.bold(),
                            Part::Path => theme.dim(),
                            Part::Message => ratatui::style::Style::new(),
                        };
                        Span::styled(text, style)
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect()
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App, v: &BatchView, theme: &Theme) {
    let failed = v.status == BatchStatus::Failed;
    let keys = if failed {
        "r retry · e edit · s split · y command · v log · E sql"
    } else {
        "y command · v log"
    };
    let block = Block::bordered().title(Line::styled(
        format!(" {} · {keys} ", sanitize_plain(&v.label, 60)),
        if failed { theme.error() } else { theme.title() },
    ));
    let mut lines: Vec<Line> = crate::tui::attempts::lines(v, app.now)
        .into_iter()
        .map(|l| Line::styled(l, theme.dim()))
        .collect();
    lines.extend(failure_lines(v, theme));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}
