//! Screen geometry shared by drawing and key handling (moving focus needs to know
//! how the panes are laid out).

use ratatui::layout::Rect;

/// Lines of the header (counts and progress, budget gauge, machine).
pub const HEADER_HEIGHT: u16 = 3;
/// The status / key-hint line at the bottom.
pub const FOOTER_HEIGHT: u16 = 1;
/// Narrowest full pane; below this the grid turns into one line per worker.
const MIN_PANE_WIDTH: u16 = 34;
/// Border, status line, progress line and at least two log lines.
const MIN_PANE_HEIGHT: u16 = 6;
/// Width of one worker in the compact (one line per worker) grid.
const COMPACT_CELL_WIDTH: u16 = 38;
/// Panes look best about this many columns per row (terminal cells are ~2:1).
const PLEASING_ASPECT: f64 = 3.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridShape {
    pub cols: usize,
    pub rows: usize,
    /// One line per worker instead of bordered panes with logs.
    pub compact: bool,
}

/// The area left for the grid or table in a terminal of `width` × `height`.
pub fn body_area(width: u16, height: u16) -> Rect {
    Rect::new(
        0,
        HEADER_HEIGHT,
        width,
        height.saturating_sub(HEADER_HEIGHT + FOOTER_HEIGHT),
    )
}

/// How `n` worker panes fill `area`: the column count whose panes are closest to a
/// pleasant shape while tall enough for a few log lines, else the compact list.
pub fn grid_shape(n: usize, area: Rect) -> GridShape {
    let n = n.max(1);
    let max_cols = usize::from((area.width / MIN_PANE_WIDTH).max(1)).min(n);
    let mut best: Option<(f64, GridShape)> = None;
    for cols in 1..=max_cols {
        let rows = n.div_ceil(cols);
        let h = area.height / u16::try_from(rows).unwrap_or(u16::MAX);
        if h < MIN_PANE_HEIGHT {
            continue;
        }
        let w = area.width / u16::try_from(cols).unwrap_or(u16::MAX);
        // Empty cells in the last row make uneven rows (3 + 1): they cost
        // more than a pane a little off the pleasing shape.
        let empty = 3.0 * (cols * rows - n) as f64 / n as f64;
        let score = ((f64::from(w) / f64::from(h)) / PLEASING_ASPECT).ln().abs() + empty;
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((
                score,
                GridShape {
                    cols,
                    rows,
                    compact: false,
                },
            ));
        }
    }
    best.map(|(_, g)| g).unwrap_or_else(|| {
        let cols = usize::from((area.width / COMPACT_CELL_WIDTH).max(1)).min(n);
        GridShape {
            cols,
            rows: n.div_ceil(cols),
            compact: true,
        }
    })
}

/// How many lines the failure of batch `v` takes above its zoomed log.
pub fn pinned_lines(v: &crate::engine::BatchView) -> usize {
    crate::tui::failure::lines(v).len()
}

/// Below this many body rows the table leaves out the failure detail: rows
/// to choose from come first.
const MIN_BODY_FOR_DETAIL: u16 = 14;

/// Where the batch table and the selected batch's failure detail go in `body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLayout {
    pub table: Rect,
    pub detail: Rect,
    /// Data rows the table shows (inside its border, below its header).
    pub rows: usize,
}

pub fn table_layout(body: Rect, selected: Option<&crate::engine::BatchView>) -> TableLayout {
    let detail_h = match selected {
        Some(v) if body.height >= MIN_BODY_FOR_DETAIL => {
            let rows = detail_rows(v, body.width.saturating_sub(2));
            if rows == 0 {
                0
            } else {
                u16::try_from(rows + 2)
                    .unwrap_or(u16::MAX)
                    .min(body.height / 2)
            }
        }
        _ => 0,
    };
    let table = Rect::new(body.x, body.y, body.width, body.height - detail_h);
    let detail = Rect::new(body.x, table.bottom(), body.width, detail_h);
    TableLayout {
        table,
        detail,
        rows: usize::from(table.height.saturating_sub(3)),
    }
}

/// Rows the selected batch's detail needs inside its border at `width`: its
/// attempts, then what failed (wrapped).
pub fn detail_rows(v: &crate::engine::BatchView, width: u16) -> usize {
    let w = usize::from(width.max(1));
    let attempts: usize = crate::tui::attempts::lines(v, 0.0)
        .iter()
        .map(|l| l.chars().count().div_ceil(w).max(1))
        .sum();
    let failure = crate::tui::failure::lines(v);
    attempts + crate::tui::failure::wrapped_rows(&failure, width)
}

/// Table rows a page key moves, at terminal `size` (the detail left out).
pub fn table_rows(size: (u16, u16)) -> usize {
    table_layout(body_area(size.0, size.1), None).rows.max(1)
}

/// Rows of the zoomed log itself at terminal `size`: the screen minus the
/// header, the footer and the borders, minus the failure pinned above it (at
/// most a third).
pub fn zoom_log_rows(size: (u16, u16), pinned: usize) -> usize {
    let inner = usize::from(size.1.saturating_sub(6));
    (inner - pinned.min(inner / 3)).max(1)
}

/// The cell of pane `i` in `area` for `shape`.
/// Empty when the pane falls outside `area` (more workers than lines).
pub fn pane_rect(area: Rect, shape: GridShape, i: usize) -> Rect {
    // In u32: a huge worker count must not wrap around into the visible area.
    let wide = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let (row, col) = (wide(i / shape.cols), wide(i % shape.cols));
    let (cols, rows) = (wide(shape.cols), wide(shape.rows));
    let (area_w, area_h) = (u32::from(area.width), u32::from(area.height));
    let cell_h = if shape.compact {
        1
    } else {
        area_h / rows.max(1)
    };
    let base_w = area_w / cols.max(1);
    // The last column and row take the rounding remainder.
    let w = if col + 1 == cols {
        area_w - base_w * (cols - 1)
    } else {
        base_w
    };
    let y = cell_h * row;
    let h = if !shape.compact && row + 1 == rows {
        area_h.saturating_sub(cell_h * (rows - 1))
    } else {
        cell_h
    };
    if y >= area_h || h == 0 {
        return Rect::new(area.x, area.y, 0, 0);
    }
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    Rect::new(
        area.x + clamp(base_w * col),
        area.y + clamp(y),
        clamp(w),
        clamp(h.min(area_h - y)),
    )
    .intersection(area)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_workers_on_a_wide_screen_make_a_two_by_two_grid() {
        let g = grid_shape(4, body_area(160, 48));
        assert_eq!((g.cols, g.rows, g.compact), (2, 2, false));
    }

    #[test]
    fn four_workers_on_a_big_screen_do_not_make_three_and_one() {
        let g = grid_shape(4, body_area(200, 50));
        assert_eq!((g.cols, g.rows), (2, 2));
        // Three still sit side by side where they fit.
        let g = grid_shape(3, body_area(200, 50));
        assert_eq!(g.cols * g.rows, 3);
    }

    #[test]
    fn sixteen_workers_at_80x24_fall_back_to_one_line_each() {
        let area = body_area(80, 24);
        let g = grid_shape(16, area);
        assert!(g.compact);
        assert!(
            g.rows <= usize::from(area.height),
            "{g:?} must fit in {area:?}"
        );
    }

    #[test]
    fn absurd_worker_counts_do_not_overflow() {
        let area = body_area(60, 24);
        let g = grid_shape(70_000, area);
        assert!(g.compact);
        let last = pane_rect(area, g, 69_999);
        assert!(last.is_empty(), "{last:?}");
        assert!(!pane_rect(area, g, 0).is_empty());
    }

    #[test]
    fn panes_tile_the_area_exactly() {
        let area = body_area(101, 40);
        let g = grid_shape(3, area);
        let total: u32 = (0..3)
            .map(|i| pane_rect(area, g, i))
            .map(|r| u32::from(r.width) * u32::from(r.height))
            .sum();
        let cells = g.cols * g.rows;
        if cells == 3 {
            assert_eq!(total, u32::from(area.width) * u32::from(area.height));
        }
        for i in 0..3 {
            let r = pane_rect(area, g, i);
            assert!(area.contains(r.as_position()) && r.width > 0 && r.height > 0);
        }
    }
}
