//! A worker pane: what the worker runs, how far it is, and the tail of its log.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::text::{bar, bytes, fit, log_line};
use crate::dbt::argv::AttemptKind;
use crate::engine::messages::WarmState;
use crate::engine::{BatchStatus, BatchView, WorkerView};
use crate::progress::fmt_duration;
use crate::text::sanitize::sanitize_plain;
use crate::tui::app::App;
use crate::tui::theme::{Theme, status_word};

/// Seconds the batch has run: the current attempt while running.
pub fn elapsed(app: &App, v: &BatchView) -> f64 {
    match v.running_since {
        Some(since) if v.status == BatchStatus::Running => (app.now - since).max(0.0),
        _ => v.duration_s,
    }
}

fn worker_word(w: &WorkerView) -> String {
    match (w.paused, w.retiring, &w.warm) {
        (true, _, _) => "PAUSED".into(),
        (_, true, _) => "RETIRING".into(),
        (_, _, Some(warm)) => match warm.state {
            WarmState::Starting => "STARTING dbt".into(),
            WarmState::Parsing => "PARSING".into(),
            WarmState::Idle | WarmState::Busy => match warm.parse_s {
                Some(p) => format!("WARM idle · parsed in {}", fmt_duration(p)),
                None => "WARM idle".into(),
            },
            WarmState::Failed => "FAILED to start dbt".into(),
            WarmState::Stopped => "STOPPED · nothing to run".into(),
        },
        _ => "idle".into(),
    }
}

/// The status spans of a pane's first line.
fn status_spans<'a>(
    app: &App,
    w: &WorkerView,
    v: Option<&BatchView>,
    theme: &Theme,
) -> Vec<Span<'a>> {
    let Some(v) = v else {
        let style = if w.paused { theme.warn() } else { theme.dim() };
        return vec![Span::styled(worker_word(w), style)];
    };
    let word = status_word(v.status, v.suspended);
    let mut spans = vec![Span::styled(word, theme.status(v.status, v.suspended))];
    if v.status != BatchStatus::Running {
        // The pane shows the batch this worker ran last; say what the worker does now.
        spans.push(Span::styled(
            format!(" (worker {})", worker_word(w)),
            if w.paused { theme.warn() } else { theme.dim() },
        ));
    } else if w.paused && !v.suspended {
        spans.push(Span::styled(" (worker pausing)", theme.warn()));
    } else if let Some(warm) = w
        .warm
        .as_ref()
        .filter(|m| matches!(m.state, WarmState::Starting | WarmState::Parsing))
    {
        // The batch waits for its warm worker to be ready.
        let what = if warm.state == WarmState::Parsing {
            " (worker PARSING)"
        } else {
            " (worker STARTING dbt)"
        };
        spans.push(Span::styled(what, theme.dim()));
    }
    let kind = match v.attempt_kind {
        Some(AttemptKind::Retry) => " dbt retry",
        _ if v.attempts > 1 => " rerun",
        _ => "",
    };
    spans.push(Span::raw(format!(
        " · attempt {}{kind} · {}",
        v.attempts,
        fmt_duration(elapsed(app, v))
    )));
    spans
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, pane: usize, theme: &Theme) {
    let w = &app.workers[pane];
    let focused = pane == app.focus;
    let view = app.pane_batch(pane).and_then(|b| app.batches.get(b));
    // Room in the top border: corners, the marker and worker number, spaces.
    let room = usize::from(area.width).saturating_sub(10);
    let label = view.map_or_else(String::new, |v| fit(&sanitize_plain(&v.label, 200), room));
    let marker = if focused { "▶" } else { " " };
    let border = if focused { theme.focus() } else { theme.dim() };
    let block = Block::bordered()
        .border_style(border)
        .title(Line::from(vec![
            Span::styled(format!("{marker}w{} ", w.number), border),
            Span::styled(format!("{label} "), theme.bold()),
        ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }

    let mut lines: Vec<Line> = vec![Line::from(status_spans(app, w, view, theme))];
    if let Some(v) = view {
        lines.push(progress_line(app, v, usize::from(inner.width), theme));
        if v.status == BatchStatus::Failed {
            let err = sanitize_plain(v.error.as_deref().unwrap_or("failed"), 300);
            let kind = v
                .failure_class
                .map_or_else(|| "error".to_string(), |c| format!("{} failure", c.word()));
            lines.push(Line::styled(format!("{kind}: {err}"), theme.error()));
        }
        let room = usize::from(inner.height).saturating_sub(lines.len());
        if let Some(log) = app.logs.get(v.index) {
            lines.extend(log.tail(room).map(|l| log_line(l, theme, Style::new())));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Nodes done with a bar, threads, CPU and RSS of the process tree; the bar and
/// then the threads give way when the pane is narrow.
fn progress_line<'a>(app: &App, v: &BatchView, width: usize, theme: &Theme) -> Line<'a> {
    const MIN_BAR: usize = 6;
    let total = v.nodes_total.unwrap_or(0);
    // Until dbt has counted its nodes it is still parsing (or starting).
    let counter = match v.nodes_total {
        None if v.status == BatchStatus::Running => "parsing…".to_string(),
        _ => format!("{}/{} nodes", v.nodes_done, total),
    };
    let threads = format!(" · {} thr", app.info.as_ref().map_or(1, |i| i.threads));
    let usage = app
        .resources
        .batches
        .iter()
        .find(|r| r.batch == v.index && v.status == BatchStatus::Running)
        .map(|r| format!(" · cpu {:.0}% · {}", r.cpu_percent, bytes(r.rss_bytes)))
        .unwrap_or_default();
    let text_len = |parts: &[&str]| parts.iter().map(|p| p.chars().count()).sum::<usize>();
    let mut parts = vec![counter.as_str(), threads.as_str(), usage.as_str()];
    if width < text_len(&parts) + MIN_BAR + 1 {
        parts.remove(1);
    }
    let room = width.saturating_sub(text_len(&parts) + 1);
    let mut spans = Vec::new();
    if room >= MIN_BAR {
        // A failed batch's bar is drawn as a failure, not as progress.
        let style = if v.status == BatchStatus::Failed {
            theme.error()
        } else {
            theme.gauge(0.0)
        };
        spans.push(Span::styled(bar(v.nodes_done, total, room.min(30)), style));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::raw(parts[0].to_string()));
    spans.push(Span::styled(parts[1..].concat(), theme.dim()));
    Line::from(spans)
}

/// The compact form when panes do not fit: one line per worker, label and status first.
pub fn draw_line(frame: &mut Frame, area: Rect, app: &App, pane: usize, theme: &Theme) {
    let w = &app.workers[pane];
    let focused = pane == app.focus;
    let view = app.pane_batch(pane).and_then(|b| app.batches.get(b));
    let marker = if focused { "▶" } else { " " };
    let mut spans = vec![Span::styled(
        format!("{marker}w{:<2} ", w.number),
        if focused { theme.focus() } else { theme.dim() },
    )];
    match view {
        Some(v) => {
            spans.push(Span::styled(
                format!("{} ", sanitize_plain(&v.label, 40)),
                theme.bold(),
            ));
            spans.push(Span::styled(
                status_word(v.status, v.suspended),
                theme.status(v.status, v.suspended),
            ));
            if w.paused && v.status != BatchStatus::Running {
                spans.push(Span::styled(" (worker PAUSED)", theme.warn()));
            }
            let nodes = match v.nodes_total {
                None if v.status == BatchStatus::Running => "parsing…".to_string(),
                t => format!("{}/{}", v.nodes_done, t.unwrap_or(0)),
            };
            spans.push(Span::raw(format!(
                " {nodes} {}",
                fmt_duration(elapsed(app, v))
            )));
        }
        None => spans.push(Span::styled(
            worker_word(w),
            if w.paused { theme.warn() } else { theme.dim() },
        )),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
