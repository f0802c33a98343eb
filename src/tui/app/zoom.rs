//! The zoomed log: scrolling, follow mode and search.

use super::{App, Effect, Input, Overlay, Purpose, editor::Field};
use crate::dbt::events::Level;
use crate::tui::keymap::Action;

/// A batch's log on the whole screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zoom {
    pub batch: usize,
    /// Lines between the newest line and the bottom of the view.
    pub offset: usize,
    /// Stick to the newest line as output arrives.
    pub follow: bool,
    /// Lower-cased search text.
    pub query: Option<String>,
    /// Sequence number of the current match.
    pub matched: Option<u64>,
    /// Long lines wrap; when they do not, `hscroll` chars are scrolled off the left.
    pub wrap: bool,
    pub hscroll: usize,
}

impl Zoom {
    pub fn new(batch: usize) -> Self {
        Self {
            batch,
            offset: 0,
            follow: true,
            query: None,
            matched: None,
            wrap: false,
            hscroll: 0,
        }
    }
}

/// Columns ← and → scroll a zoomed log sideways.
const HSTEP: usize = 8;

impl App {
    /// Keys with a meaning of their own in the zoomed log. `None`: not handled here.
    pub(super) fn on_zoom_key(&mut self, action: Action) -> Option<Vec<Effect>> {
        let page = self.page();
        let max_offset = self.max_offset(self.zoom.as_ref()?.batch);
        let z = self.zoom.as_mut()?;
        match action {
            Action::Back => self.zoom = None,
            Action::Up => {
                z.offset = (z.offset + 1).min(max_offset);
                z.follow = false;
            }
            Action::Down => z.offset = z.offset.saturating_sub(1),
            Action::PageUp => {
                z.offset = (z.offset + page).min(max_offset);
                z.follow = false;
            }
            Action::PageDown => z.offset = z.offset.saturating_sub(page),
            Action::Top => {
                z.offset = max_offset;
                z.follow = false;
            }
            Action::Bottom => {
                z.offset = 0;
                z.follow = true;
            }
            Action::Follow => {
                z.follow = !z.follow;
                if z.follow {
                    z.offset = 0;
                }
            }
            Action::Search => {
                self.overlay = Overlay::Input(Input {
                    purpose: Purpose::Search,
                    // A new search, not more of the last one (n / N repeat it).
                    fields: vec![Field::new("search", String::new())],
                    active: 0,
                });
            }
            Action::NextMatch => self.jump_to_match(true),
            Action::PrevMatch => self.jump_to_match(false),
            Action::Wrap => {
                z.wrap = !z.wrap;
                z.hscroll = 0;
            }
            Action::Left if !z.wrap => z.hscroll = z.hscroll.saturating_sub(HSTEP),
            Action::Right if !z.wrap => z.hscroll = (z.hscroll + HSTEP).min(10_000),
            Action::Left | Action::Right | Action::Zoom | Action::ToggleTable => {}
            _ => return None,
        }
        Some(Vec::new())
    }

    pub(super) fn jump_to_match(&mut self, forward: bool) {
        let page = self.page();
        let Some(z) = self.zoom.as_mut() else { return };
        let Some(query) = z.query.clone() else {
            self.say(Level::Info, "no search yet: press / to search");
            return;
        };
        let Some(buf) = self.logs.get(z.batch) else {
            return;
        };
        // Search from the current match, or from the bottom of the view.
        let from = z.matched.unwrap_or_else(|| {
            let bottom = buf.end_seq().saturating_sub(1 + z.offset as u64);
            if forward {
                bottom.saturating_sub(page as u64)
            } else {
                bottom + 1
            }
        });
        if let Some(seq) = buf.find(&query, from, forward) {
            z.matched = Some(seq);
            z.follow = false;
            // Put the match in the middle of the view.
            let from_end = usize::try_from(buf.end_seq() - 1 - seq).unwrap_or(usize::MAX);
            z.offset = from_end
                .saturating_sub(page / 2)
                .min(buf.len().saturating_sub(page));
        } else {
            z.matched = None;
            self.say(Level::Info, format!("not found: {query}"));
        }
    }
}
