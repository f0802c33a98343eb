//! Clicks and the wheel: a click focuses the pane or selects the row under it,
//! a second click on the same place soon after zooms it, the wheel scrolls the
//! zoomed log and the table.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};

use super::{App, Effect, Overlay, Screen};
use crate::tui::keymap::Action;
use crate::tui::layout::{body_area, grid_shape, pane_rect};

/// Two clicks on one place within this many seconds are a double click.
const DOUBLE_CLICK_S: f64 = 0.4;
/// Lines one wheel notch scrolls the zoomed log.
const WHEEL_LINES: usize = 3;

impl App {
    pub(super) fn on_mouse(&mut self, m: MouseEvent, at: f64) -> Vec<Effect> {
        // A question or an editor keeps the keyboard's attention.
        if self.overlay != Overlay::None {
            return Vec::new();
        }
        match m.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = m.kind == MouseEventKind::ScrollUp;
                if self.zoom.is_some() {
                    let action = if up { Action::Up } else { Action::Down };
                    for _ in 0..WHEEL_LINES {
                        self.on_zoom_key(action);
                    }
                } else if self.screen == Screen::Table {
                    self.move_selection(if up { -1 } else { 1 });
                }
                Vec::new()
            }
            MouseEventKind::Down(MouseButton::Left) => self.click(m.column, m.row, at),
            _ => Vec::new(),
        }
    }

    fn click(&mut self, x: u16, y: u16, at: f64) -> Vec<Effect> {
        let double = self
            .last_click
            .is_some_and(|(t, cx, cy)| (cx, cy) == (x, y) && at - t <= DOUBLE_CLICK_S);
        self.last_click = Some((at, x, y));
        if self.zoom.is_some() {
            return Vec::new();
        }
        let hit = match self.screen {
            Screen::Grid => self.pane_at(x, y).map(|p| self.focus = p).is_some(),
            Screen::Table => self
                .batch_at_table_line(y)
                .map(|b| self.selected = b)
                .is_some(),
            Screen::Timeline => false,
        };
        if hit && double {
            self.last_click = None;
            return self.on_action(Action::Zoom);
        }
        Vec::new()
    }

    /// The pane under a terminal cell, if any.
    fn pane_at(&self, x: u16, y: u16) -> Option<usize> {
        let body = body_area(self.size.0, self.size.1);
        let shape = grid_shape(self.workers.len(), body);
        (0..self.workers.len()).find(|&i| {
            let r = pane_rect(body, shape, i);
            x >= r.x && x < r.right() && y >= r.y && y < r.bottom()
        })
    }
}
