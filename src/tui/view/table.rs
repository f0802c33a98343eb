//! Every batch in a table (filtered, sorted, marked), and below it what went
//! wrong with the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::columns::{Col, Columns, columns};
use super::pane::elapsed;
use super::text::{cells, fit};
use crate::engine::{BatchStatus, BatchView};
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::failure::{self, Part};
use crate::tui::layout::table_layout;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rows = app.rows();
    let selected = app.selected_row();
    let view = selected.and_then(|b| app.batches.get(b));
    let geo = table_layout(area, view);

    let longest = rows
        .iter()
        .map(|&b| Span::raw(app.batches[b].label.as_str()).width())
        .max()
        .unwrap_or(0);
    let cols = columns(geo.table.width, longest);
    let header = Row::new(cols.shown.iter().map(|c| c.header())).style(theme.bold());
    let table_rows = rows
        .iter()
        .map(|&b| row(app, &app.batches[b], theme, &cols));
    let widths: Vec<Constraint> = cols
        .shown
        .iter()
        .map(|c| match c {
            Col::Label => Constraint::Length(cells(cols.label)),
            Col::Error => Constraint::Min(cells(cols.error)),
            other => Constraint::Length(cells(other.fixed())),
        })
        .collect();
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

fn row<'a>(app: &App, v: &'a BatchView, theme: &Theme, cols: &Columns) -> Row<'a> {
    let cell = |c: Col| -> Cell<'a> {
        match c {
            Col::Index => {
                let mark = if app.table.marks.contains(&v.index) {
                    "●"
                } else {
                    " "
                };
                Cell::from(format!("{mark}{:>3}", v.index + 1)).style(theme.bold())
            }
            Col::Label => Cell::from(fit(&sanitize_plain(&v.label, 200), cols.label)),
            Col::Status => {
                Cell::from(app.status_text(v.index)).style(theme.status(v.status, v.suspended))
            }
            Col::Attempts => Cell::from(v.attempts.to_string()),
            Col::Time if v.attempts == 0 => Cell::from(""),
            Col::Time => Cell::from(fmt_duration(elapsed(app, v))),
            // Counts of a finished attempt; a running one's progress is in its pane.
            Col::Nodes if v.attempts == 0 || v.status == BatchStatus::Running => Cell::from(""),
            Col::Nodes => {
                let c = v.counts;
                Cell::from(format!(
                    "{}/{}/{}",
                    c.success + c.pass,
                    c.error + c.fail,
                    c.skipped
                ))
            }
            Col::Worker => Cell::from(v.worker.map_or_else(String::new, |w| w.to_string())),
            Col::Queue => Cell::from(
                app.queue
                    .iter()
                    .position(|&b| b == v.index)
                    .map_or_else(String::new, |p| (p + 1).to_string()),
            ),
            Col::Error => {
                let error = match (&v.error, app.wait(v.index)) {
                    (Some(e), _) => failure::one_line(e, 200),
                    (None, Some(w)) => app.wait_text(&w),
                    (None, None) => String::new(),
                };
                Cell::from(fit(&error, cols.error)).style(theme.error())
            }
        }
    };
    Row::new(cols.shown.iter().map(|&c| cell(c)).collect::<Vec<_>>())
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
