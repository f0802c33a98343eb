//! The top three lines: progress and ETA, the connection budget, the machine.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};

use super::text::{bytes, cells};
use crate::progress::{Totals, eta_secs, fmt_duration};
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::theme::Theme;

/// The first line: the counts on the left, the clock on the right.
fn counts_and_clock(frame: &mut Frame, row: Rect, counts: Vec<Span<'_>>, clock: String) {
    let [left, right] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(cells(clock.chars().count())),
    ])
    .areas(row);
    frame.render_widget(Paragraph::new(Line::from(counts)), left);
    frame.render_widget(Paragraph::new(clock).right_aligned(), right);
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rows = Layout::vertical([Constraint::Length(1); 3]).split(area);
    let t = Totals::of(&app.batches);
    let command = app.info.as_ref().map_or("build", |i| i.command.as_str());

    let mut counts = vec![
        Span::styled(" dbt-herd ", theme.title()),
        Span::raw(format!("{command} · ")),
    ];
    if app.info.is_none()
        && let Some(prep) = &app.preparing
    {
        counts.push(Span::styled("preparing", theme.bold()));
        let clock = format!(" elapsed {} ", fmt_duration(app.now - app.started_at));
        if let Some(p) = prep.current() {
            // What it does, cut to what the line has left beside the clock.
            let used: usize = counts.iter().map(Span::width).sum();
            let room = usize::from(area.width).saturating_sub(used + clock.chars().count() + 2);
            let doing = sanitize_plain(&p.doing, usize::from(area.width));
            counts.push(Span::raw(format!(": {}", super::text::fit(&doing, room))));
        }
        counts_and_clock(frame, rows[0], counts, clock);
        let dir = sanitize_plain(&prep.state_dir, usize::from(area.width));
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" state dir: {dir}"), theme.dim())),
            rows[1],
        );
        return;
    }
    if app.read_only {
        counts.push(Span::styled("read-only", theme.warn()));
        counts.push(Span::raw(" · "));
    }
    counts.extend([
        Span::styled(format!("{}/{} done", t.done(), t.total), theme.bold()),
        Span::raw(" · "),
        Span::styled(format!("{} ok", t.succeeded), theme.good()),
    ]);
    if t.failed > 0 {
        counts.push(Span::raw(" · "));
        counts.push(Span::styled(format!("{} FAILED", t.failed), theme.error()));
    }
    if t.cancelled > 0 {
        counts.push(Span::raw(" · "));
        counts.push(Span::styled(
            format!("{} cancelled", t.cancelled),
            theme.warn(),
        ));
    }
    counts.push(Span::raw(format!(
        " · {} running · {} pending",
        t.running, t.pending
    )));
    let eta = if t.running + t.pending == 0 {
        "done".to_string()
    } else if app.queue_paused {
        "paused".to_string()
    } else {
        eta_secs(&app.batches, app.parallelism(), app.now)
            .map_or_else(|| "?".to_string(), fmt_duration)
    };
    // The clock gives way to the counts on a narrow terminal: first the elapsed
    // time, then the ETA.
    let counts_w: usize = counts.iter().map(Span::width).sum();
    let full = format!(
        "elapsed {} · eta {eta} ",
        fmt_duration(app.done_at.unwrap_or(app.now) - app.started_at)
    );
    let short = format!("eta {eta} ");
    let room = usize::from(area.width).saturating_sub(counts_w + 1);
    let clock = [full, short]
        .into_iter()
        .find(|c| c.chars().count() <= room)
        .unwrap_or_default();
    counts_and_clock(frame, rows[0], counts, clock);

    let [progress, budget] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .spacing(2)
            .areas(rows[1]);
    let ratio = if t.total == 0 {
        0.0
    } else {
        t.done() as f64 / t.total as f64
    };
    frame.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(format!(" progress {:>3.0}%", ratio * 100.0))
            .filled_style(theme.gauge(0.0)),
        progress,
    );
    let reserved = app.reserved();
    let budget_ratio = if app.budget == 0 {
        0.0
    } else {
        (f64::from(reserved) / f64::from(app.budget)).min(1.0)
    };
    // Reserved: the threads of running batches (what the budget counts);
    // active: nodes running now. Then why idle workers wait, if it is the budget.
    let active = app.active_connections();
    let held = app.held_by_budget();
    let mut held_text = match held {
        0 => String::new(),
        1 => " · 1 worker held by the budget".to_string(),
        n => format!(" · {n} workers held by the budget"),
    };
    if let Some(n) = app.at_once {
        // The warehouse refused connections: fewer run at once than workers.
        held_text.push_str(&format!(" · {n} at once (warehouse limit)"));
    }
    let long = format!(
        "reserved {reserved}/{} · active {active}{held_text}",
        app.budget
    );
    let short = format!(
        "conn {reserved}/{} · {active} act{}{}",
        app.budget,
        if held > 0 {
            format!(" · {held} held")
        } else {
            String::new()
        },
        app.at_once
            .map(|n| format!(" · {n} at once"))
            .unwrap_or_default()
    );
    // Leave the gauge a few cells of its own.
    let room = usize::from(budget.width).saturating_sub(6);
    let label = if long.chars().count() <= room {
        long
    } else {
        short
    };
    let label_style = if held > 0 || app.at_once.is_some() {
        theme.warn()
    } else {
        ratatui::style::Style::new()
    };
    frame.render_widget(
        LineGauge::default()
            .ratio(budget_ratio)
            .label(Span::styled(label, label_style))
            .filled_style(theme.gauge(budget_ratio)),
        budget,
    );

    let threads = app.info.as_ref().map_or(0, |i| i.threads);
    let paused = app.workers.iter().filter(|w| w.paused).count();
    let mut machine = vec![Span::raw(format!(
        " workers {} × {threads} threads",
        app.active_workers()
    ))];
    if paused > 0 {
        machine.push(Span::styled(format!(" ({paused} PAUSED)"), theme.warn()));
    }
    if let Some(info) = &app.info {
        // Warm or cold; when auto chose cold, `?` says why.
        let mode = match (info.mode.as_str(), &info.mode_reason) {
            ("warm", _) => " · warm".to_string(),
            (_, Some(_)) => " · cold (? says why)".to_string(),
            _ => " · cold".to_string(),
        };
        machine.push(Span::raw(mode));
    }
    machine.push(Span::raw(" · queue "));
    machine.push(if app.queue_paused {
        Span::styled("PAUSED", theme.warn())
    } else {
        Span::raw("dispatching")
    });
    let r = &app.resources;
    machine.push(Span::raw(format!(
        " · cpu {:.0}% · mem {} / {}",
        r.cpu_percent,
        bytes(r.mem_used_bytes),
        bytes(r.mem_total_bytes)
    )));
    if let Some(info) = &app.info {
        machine.push(Span::styled(
            format!(" · {}", sanitize_plain(&info.state_dir, 200)),
            theme.dim(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(machine)), rows[2]);
}
