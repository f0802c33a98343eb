//! One pane per worker slot, reflowing with the terminal size.

use ratatui::Frame;
use ratatui::layout::Rect;

use super::pane;
use crate::tui::app::App;
use crate::tui::layout::{grid_shape, pane_rect};
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if area.height == 0 || app.workers.is_empty() {
        return;
    }
    let shape = grid_shape(app.workers.len(), area);
    for i in 0..app.workers.len() {
        let rect = pane_rect(area, shape, i);
        if rect.is_empty() {
            // Beyond the last line: the ones after it are too.
            break;
        }
        if shape.compact {
            pane::draw_line(frame, rect, app, i, theme);
        } else {
            pane::draw(frame, rect, app, i, theme);
        }
    }
}
