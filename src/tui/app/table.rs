//! The batch table's own state: which rows show (a filter), in what order (a
//! sort), which are marked for a bulk action, and moving the selection over the
//! rows that show. The selection is a batch index, so it stays on its batch
//! when rows come and go.

use std::collections::BTreeSet;

use super::{App, Screen};
use crate::engine::BatchStatus;
use crate::text::sanitize::sanitize_plain;
use crate::tui::layout::{body_area, table_layout};
use crate::tui::theme::status_word;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The plan's order, with pending batches in the order they will start.
    #[default]
    Queue,
    Id,
    /// Longest first: where the time went.
    Duration,
    /// What needs a look first: failed, running, waiting, then done.
    Status,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            SortKey::Queue => SortKey::Id,
            SortKey::Id => SortKey::Duration,
            SortKey::Duration => SortKey::Status,
            SortKey::Status => SortKey::Queue,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            SortKey::Queue => "queue order",
            SortKey::Id => "id",
            SortKey::Duration => "duration",
            SortKey::Status => "status",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableView {
    /// Lowercase text a row must contain (in its id, status word or error).
    pub filter: Option<String>,
    pub sort: SortKey,
    /// Marked batches (indices), for the actions that take several at once.
    pub marks: BTreeSet<usize>,
    /// The first row shown: the table scrolls only as far as the selection needs.
    pub scroll: usize,
}

impl App {
    /// The word the table shows for a batch's status: WAITING and BLOCKED for a
    /// pending batch held back, EMPTY for one that selected nothing.
    pub fn status_text(&self, b: usize) -> &'static str {
        let Some(v) = self.batches.get(b) else {
            return "";
        };
        if v.nothing_selected {
            return "EMPTY";
        }
        match self.wait(b) {
            Some(w) if w.blocked => "BLOCKED",
            Some(_) => "WAITING",
            None => status_word(v.status, v.suspended),
        }
    }

    fn row_matches(&self, b: usize, needle: &str) -> bool {
        let Some(v) = self.batches.get(b) else {
            return false;
        };
        let error = v.error.as_deref().unwrap_or_default();
        [v.label.as_str(), v.id.as_str(), self.status_text(b), error]
            .iter()
            .any(|hay| sanitize_plain(hay, 2000).to_lowercase().contains(needle))
    }

    /// The table's rows: batch indices that pass the filter, in the sort's order.
    pub fn rows(&self) -> Vec<usize> {
        let mut rows: Vec<usize> = (0..self.batches.len())
            .filter(|&b| {
                self.table
                    .filter
                    .as_deref()
                    .is_none_or(|f| self.row_matches(b, f))
            })
            .collect();
        match self.table.sort {
            SortKey::Queue => self.queue_order(&mut rows),
            SortKey::Id => rows.sort_by(|&a, &b| self.batches[a].id.cmp(&self.batches[b].id)),
            SortKey::Duration => rows.sort_by(|&a, &b| {
                self.batches[b]
                    .duration_s
                    .total_cmp(&self.batches[a].duration_s)
            }),
            SortKey::Status => rows.sort_by_key(|&b| self.status_rank(b)),
        }
        rows
    }

    /// Plan order, but the places pending batches hold are filled in the order
    /// the queue will start them (so K and J show).
    fn queue_order(&self, rows: &mut [usize]) {
        let queued: BTreeSet<usize> = self.queue.iter().copied().collect();
        let shown: BTreeSet<usize> = rows.iter().copied().collect();
        let mut in_queue = self.queue.iter().filter(|b| shown.contains(b));
        for r in rows.iter_mut() {
            if queued.contains(r)
                && let Some(&next) = in_queue.next()
            {
                *r = next;
            }
        }
    }

    fn status_rank(&self, b: usize) -> u8 {
        match (self.batches[b].status, self.status_text(b)) {
            (BatchStatus::Failed, _) => 0,
            (_, "BLOCKED") => 1,
            (BatchStatus::Cancelled, _) => 2,
            (BatchStatus::Running, _) => 3,
            (BatchStatus::Pending, _) => 4,
            _ => 5,
        }
    }

    /// The selected batch if its row shows, else the first row that does.
    pub fn selected_row(&self) -> Option<usize> {
        let rows = self.rows();
        rows.contains(&self.selected)
            .then_some(self.selected)
            .or_else(|| rows.first().copied())
    }

    /// Moves the selection `by` rows (negative: up), within the rows that show.
    pub(super) fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let at = rows.iter().position(|&b| b == self.selected).unwrap_or(0);
        let to = at.saturating_add_signed(by).min(rows.len() - 1);
        self.selected = rows[to];
    }

    pub(super) fn select_edge(&mut self, last: bool) {
        let rows = self.rows();
        let edge = if last { rows.last() } else { rows.first() };
        if let Some(&b) = edge {
            self.selected = b;
        }
    }

    /// The next (or previous) failed batch after the selection, among the rows
    /// that show, wrapping around.
    pub(super) fn next_failed_row(&self, forward: bool) -> Option<usize> {
        let mut rows = self.rows();
        if !forward {
            rows.reverse();
        }
        // Start just after the selection; the selection itself comes last.
        let start = rows
            .iter()
            .position(|&b| b == self.selected)
            .map_or(0, |p| p + 1);
        rows.iter()
            .cycle()
            .skip(start)
            .take(rows.len())
            .copied()
            .find(|&b| self.batches[b].status == BatchStatus::Failed)
    }

    /// Space: marks or unmarks the selected row and moves down, as in a file
    /// manager, so that a run of rows is marked by holding it.
    pub(super) fn toggle_mark(&mut self) {
        let Some(b) = self.selected_row() else {
            return;
        };
        if !self.table.marks.remove(&b) {
            self.table.marks.insert(b);
        }
        self.selected = b;
        self.move_selection(1);
    }

    /// V: marks every row that shows; if they all are already, unmarks them.
    pub(super) fn mark_visible(&mut self) -> usize {
        let rows = self.rows();
        if rows.iter().all(|b| self.table.marks.contains(b)) {
            for b in &rows {
                self.table.marks.remove(b);
            }
            0
        } else {
            self.table.marks.extend(rows.iter().copied());
            rows.len()
        }
    }

    /// Scrolls the table just enough to show the selected row.
    pub(super) fn keep_selection_in_view(&mut self) {
        if self.screen != Screen::Table || self.zoom.is_some() {
            return;
        }
        let rows = self.rows();
        let Some(b) = self.selected_row() else {
            self.table.scroll = 0;
            return;
        };
        let at = rows.iter().position(|&r| r == b).unwrap_or(0);
        let body = body_area(self.size.0, self.size.1);
        let visible = table_layout(body, self.batches.get(b)).rows.max(1);
        let s = &mut self.table.scroll;
        if at < *s {
            *s = at;
        } else if at >= *s + visible {
            *s = at + 1 - visible;
        }
        *s = (*s).min(rows.len().saturating_sub(visible));
    }

    /// The batch on table row `y` (a terminal line), if a data row is there.
    pub(super) fn batch_at_table_line(&self, y: u16) -> Option<usize> {
        let body = body_area(self.size.0, self.size.1);
        let b = self.selected_row();
        let geo = table_layout(body, b.and_then(|b| self.batches.get(b)));
        // Border, then the header line, then the rows.
        let first = geo.table.y + 2;
        if y < first || usize::from(y - first) >= geo.rows {
            return None;
        }
        self.rows()
            .get(self.table.scroll + usize::from(y - first))
            .copied()
    }
}
