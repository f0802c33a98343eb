//! Help, the quit confirmation and the one-line editors, drawn over the screen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::text::cells;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::{App, Input, Purpose};
use crate::tui::keymap::HELP;
use crate::tui::theme::Theme;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

pub fn help(frame: &mut Frame, area: Rect, app: &App, scroll: u16, theme: &Theme) {
    let rows_needed: usize = HELP.iter().map(|(_, rows)| rows.len() + 2).sum::<usize>() + 1;
    // Blank lines between groups only when there is room for them.
    let spaced = usize::from(area.height) >= rows_needed;
    let mut lines = Vec::new();
    // How batches run and what the plan decided, first: who waits on whom, and why.
    if let Some(info) = &app.info {
        lines.push(Line::styled("Plan", theme.title()));
        let mode = info.mode_line();
        for line in std::iter::once(&mode).chain(&info.plan) {
            let text = sanitize_plain(line.trim_start_matches("plan: "), 400);
            for (i, part) in wrap(&text, 72).into_iter().enumerate() {
                let lead = if i == 0 { "  " } else { "    " };
                lines.push(Line::raw(format!("{lead}{part}")));
            }
        }
    }
    for (group, rows) in HELP {
        if spaced && !lines.is_empty() {
            lines.push(Line::raw(""));
        }
        lines.push(Line::styled(*group, theme.title()));
        for (keys, what) in *rows {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<18}"), theme.bold()),
                Span::raw(*what),
            ]));
        }
    }
    let height = cells(lines.len()).saturating_add(2);
    let rect = centered(area, 78, height);
    // What does not fit scrolls (↑ ↓ PgUp PgDn), never further than the end.
    let hidden = height.saturating_sub(rect.height);
    let scroll = scroll.min(hidden);
    let title = if hidden > 0 {
        format!(" help · ↑↓ scroll ({}/{}) · Esc closes ", scroll, hidden)
    } else {
        " help · Esc or ? closes ".to_string()
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::bordered()
                .border_style(theme.focus())
                .title(Line::styled(title, theme.title())),
        ),
        rect,
    );
}

/// A y/n question in a box of its own.
pub fn question(frame: &mut Frame, area: Rect, text: &str, theme: &Theme) {
    let text = sanitize_plain(text, 200);
    let rect = centered(area, cells(text.chars().count()).saturating_add(4), 3);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Line::styled(text, theme.bold())).block(
            Block::bordered()
                .border_style(theme.warn())
                .title(" confirm "),
        ),
        rect,
    );
}

/// An attempt's command, whole (a copied command must not be cut), wrapped in
/// a box as wide as the screen allows.
pub fn command(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    batch: usize,
    attempt: usize,
    theme: &Theme,
) {
    let Some(v) = app.batches.get(batch) else {
        return;
    };
    let Some(a) = v.history.get(attempt) else {
        return;
    };
    let body = a.command.as_deref().map_or_else(
        || "(not recorded: the journal of this attempt predates commands)".to_string(),
        |c| sanitize_plain(c, 16_000),
    );
    let title = format!(
        " {} · attempt {} of {} ({}, {}) · ← → other attempts · any key closes ",
        sanitize_plain(&v.label, 40),
        a.number,
        v.history.len(),
        a.kind.as_str(),
        a.outcome.as_str()
    );
    let width = area.width.saturating_sub(4).clamp(20, 120);
    let inner_w = usize::from(width.saturating_sub(2)).max(1);
    let rows = body.chars().count().div_ceil(inner_w).max(1);
    let rect = centered(area, width, cells(rows).saturating_add(2));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(body).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_style(theme.focus())
                .title(Line::styled(title, theme.title()))
                // Copied from the screen, a wrapped line gains line breaks.
                .title_bottom(Line::styled(
                    " unwrapped: dbt-herd show STATE_DIR BATCH ",
                    theme.dim(),
                )),
        ),
        rect,
    );
}

/// Words into lines of at most `width` chars (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

pub fn confirm_quit(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    // The question can outlive the batches it was about.
    let text = match (app.running(), app.detachable) {
        (0, _) => "Nothing runs any more. Quit? (y / n)".to_string(),
        (n, false) => format!(
            "{} running. Stop them and quit? (y / n)",
            crate::text::plural::plural(n, "batch is", "batches are")
        ),
        (n, true) => format!(
            "{} running. Stop the run (y), detach (d), or go back (n)?",
            crate::text::plural::plural(n, "batch is", "batches are")
        ),
    };
    let rect = centered(area, cells(text.chars().count()).saturating_add(4), 3);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Line::styled(text, theme.bold()))
            .block(Block::bordered().border_style(theme.warn()).title(" quit ")),
        rect,
    );
}

pub fn input(frame: &mut Frame, area: Rect, app: &App, input: &Input, theme: &Theme) {
    let label = |b: usize| {
        app.batches
            .get(b)
            .map(|v| sanitize_plain(&v.label, 40))
            .unwrap_or_default()
    };
    let title = match &input.purpose {
        Purpose::Budget => " connection budget · Enter applies · Esc cancels ".to_string(),
        Purpose::Search => " search the log · Enter finds · Esc cancels ".to_string(),
        Purpose::Filter => {
            " filter the table (id, status or error) · Enter keeps · Esc clears ".to_string()
        }
        Purpose::EditBatch(b) => {
            // Applying an edit to a failed batch throws its retry state away.
            let rerun = app
                .batches
                .get(*b)
                .is_some_and(|v| v.status != crate::engine::BatchStatus::Pending);
            format!(
                " edit {}{} · Tab next field · Enter applies · Esc cancels ",
                label(*b),
                if rerun {
                    " (applying starts a full rerun)"
                } else {
                    ""
                }
            )
        }
        Purpose::EditMarked { batches, .. } => format!(
            " edit {} marked batches (a field left as it is stays each one's own) · Enter applies ",
            batches.len()
        ),
    };
    let width = area.width.saturating_sub(4).clamp(20, 100);
    let rect = centered(area, width, cells(input.fields.len()).saturating_add(2));
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .border_style(theme.focus())
        .title(Line::styled(title, theme.title()));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let label_w = input
        .fields
        .iter()
        .map(|f| f.label.len())
        .max()
        .unwrap_or(0)
        + 2;
    for (i, f) in input.fields.iter().enumerate() {
        let y = inner.y.saturating_add(cells(i));
        if y >= inner.bottom() {
            break;
        }
        let room = usize::from(inner.width).saturating_sub(label_w + 1).max(1);
        // Scroll long values so the cursor stays in view.
        let skip = f.cursor.saturating_sub(room - 1);
        let shown: String = f.value.chars().skip(skip).take(room).collect();
        let label_style = if i == input.active {
            theme.focus()
        } else {
            theme.dim()
        };
        let line = Line::from(vec![
            Span::styled(
                format!("{:<label_w$}", format!("{}:", f.label)),
                label_style,
            ),
            Span::raw(sanitize_plain(&shown, room)),
        ]);
        frame.render_widget(Paragraph::new(line), Rect::new(inner.x, y, inner.width, 1));
        if i == input.active {
            let x = inner.x.saturating_add(cells(label_w + f.cursor - skip));
            frame.set_cursor_position(Position::new(x.min(inner.right().saturating_sub(1)), y));
        }
    }
}
