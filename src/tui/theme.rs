//! Colours and emphasis in one place, so that `NO_COLOR` turns every colour off
//! while bold, reverse and the status words keep their meaning.

use ratatui::style::{Color, Modifier, Style};

use crate::dbt::events::{Level, StatusClass};
use crate::engine::BatchStatus;
use crate::text::sanitize::{self, TextStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty (no-color.org).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: !no_color }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The highlighted row or focused pane border.
    pub fn focus(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn selected_row(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn gauge(&self, fraction: f64) -> Style {
        if fraction >= 1.0 {
            self.fg(Color::Yellow)
        } else {
            self.fg(Color::Cyan)
        }
    }

    pub fn status(&self, status: BatchStatus, suspended: bool) -> Style {
        match status {
            BatchStatus::Running if suspended => self.warn().add_modifier(Modifier::BOLD),
            BatchStatus::Running => self.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            BatchStatus::Succeeded => self.good(),
            BatchStatus::Failed => self.error(),
            BatchStatus::Cancelled => self.warn(),
            BatchStatus::Pending | BatchStatus::Split => self.dim(),
        }
    }

    pub fn level(&self, level: Level) -> Style {
        match level {
            Level::Error => self.error(),
            Level::Warn => self.warn(),
            Level::Debug => self.dim(),
            Level::Info => Style::new(),
        }
    }

    /// A log line's base style: node status first, then level.
    pub fn log_line(&self, level: Level, class: Option<StatusClass>) -> Style {
        match class {
            Some(StatusClass::Good) => self.good(),
            Some(StatusClass::Warn) => self.warn(),
            Some(StatusClass::Skipped) => self.dim(),
            Some(StatusClass::Bad) => self.error(),
            None => self.level(level),
        }
    }

    /// Style of one sanitised segment over its line's base style. SGR colours from
    /// the child are kept (unless colour is off); attributes always are.
    pub fn segment(&self, base: Style, s: &TextStyle) -> Style {
        let mut style = base;
        if self.color {
            if let Some(c) = s.fg {
                style = style.fg(color(c));
            }
            if let Some(c) = s.bg {
                style = style.bg(color(c));
            }
        }
        let mut add = Modifier::empty();
        if s.bold {
            add |= Modifier::BOLD;
        }
        if s.dim {
            add |= Modifier::DIM;
        }
        if s.italic {
            add |= Modifier::ITALIC;
        }
        if s.underline {
            add |= Modifier::UNDERLINED;
        }
        if s.reverse {
            add |= Modifier::REVERSED;
        }
        style.add_modifier(add)
    }
}

fn color(c: sanitize::Color) -> Color {
    match c {
        sanitize::Color::Reset => Color::Reset,
        sanitize::Color::Indexed(i) => Color::Indexed(i),
        sanitize::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

/// The word shown for a batch's state; meaning never rests on colour alone.
pub fn status_word(status: BatchStatus, suspended: bool) -> &'static str {
    match status {
        BatchStatus::Running if suspended => "PAUSED",
        BatchStatus::Running => "RUNNING",
        BatchStatus::Pending => "PENDING",
        BatchStatus::Succeeded => "OK",
        BatchStatus::Failed => "FAILED",
        BatchStatus::Cancelled => "CANCELLED",
        BatchStatus::Split => "SPLIT",
    }
}
