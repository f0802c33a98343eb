//! Drawing: a pure function of the app state onto a ratatui frame.

mod columns;
mod footer;
mod grid;
mod header;
mod overlay;
mod pane;
mod preparing;
mod table;
mod text;
mod timeline;
mod zoom;

use ratatui::Frame;
use ratatui::layout::Rect;

use super::app::{App, Overlay, Screen};
use super::layout::{FOOTER_HEIGHT, HEADER_HEIGHT, body_area};
use super::theme::Theme;

pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    let header = Rect::new(area.x, area.y, area.width, HEADER_HEIGHT.min(area.height));
    let body = body_area(area.width, area.height);
    let footer = Rect::new(
        area.x,
        area.bottom().saturating_sub(FOOTER_HEIGHT),
        area.width,
        FOOTER_HEIGHT.min(area.height),
    );
    header::draw(frame, header, app, theme);
    if let (None, Some(prep)) = (&app.info, &app.preparing) {
        preparing::draw(frame, body, app, prep, theme);
    } else if let Some(z) = &app.zoom {
        zoom::draw(frame, body, app, z, theme);
    } else {
        match app.screen {
            Screen::Grid => grid::draw(frame, body, app, theme),
            Screen::Table => table::draw(frame, body, app, theme),
            Screen::Timeline => timeline::draw(frame, body, app, theme),
        }
    }
    footer::draw(frame, footer, app, theme);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help(scroll) => overlay::help(frame, area, app, *scroll, theme),
        Overlay::ConfirmQuit => overlay::confirm_quit(frame, area, app, theme),
        Overlay::Confirm(c) => overlay::question(frame, area, &c.question, theme),
        Overlay::Command { batch, attempt } => {
            overlay::command(frame, area, app, *batch, *attempt, theme);
        }
        Overlay::Input(input) => overlay::input(frame, area, app, input, theme),
    }
}

#[cfg(test)]
mod snapshot_tests;
