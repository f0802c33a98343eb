//! Which columns the batch table shows at a width, and how wide the two that
//! hold free text (the batch label and the error) get. A narrow terminal drops
//! the least telling columns first, so that a label is never cut to "2024…".

/// The table's columns, left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Index,
    Label,
    Status,
    Attempts,
    Time,
    Nodes,
    Worker,
    Queue,
    Error,
}

impl Col {
    pub fn header(self) -> &'static str {
        match self {
            Col::Index => "",
            Col::Queue => "q",
            Col::Label => "batch",
            Col::Status => "status",
            Col::Attempts => "att",
            Col::Time => "time",
            Col::Nodes => "ok/err/skip",
            Col::Worker => "w",
            Col::Error => "error",
        }
    }

    /// The width of a column whose content has a fixed size (0 for the two
    /// that hold free text).
    pub fn fixed(self) -> usize {
        match self {
            Col::Index => 5,
            Col::Status => 9,
            Col::Attempts | Col::Queue => 3,
            Col::Time => 7,
            Col::Nodes => 11,
            Col::Worker => 2,
            Col::Label | Col::Error => 0,
        }
    }
}

const ALL: [Col; 9] = [
    Col::Index,
    Col::Label,
    Col::Status,
    Col::Attempts,
    Col::Time,
    Col::Nodes,
    Col::Worker,
    Col::Queue,
    Col::Error,
];
/// Dropped in this order when the width runs short.
const DROP: [Col; 5] = [
    Col::Queue,
    Col::Worker,
    Col::Nodes,
    Col::Attempts,
    Col::Time,
];
/// Widest the label column grows; longer labels end in an ellipsis.
pub const MAX_LABEL: usize = 28;
const MIN_ERROR: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub shown: Vec<Col>,
    pub label: usize,
    pub error: usize,
}

/// The columns for a table `width` cells wide (border included) whose longest
/// label is `longest` cells.
pub fn columns(width: u16, longest: usize) -> Columns {
    let want = longest.clamp(5, MAX_LABEL);
    let mut shown = ALL.to_vec();
    let mut drop = DROP.iter();
    loop {
        let room = room_for_text(usize::from(width), &shown);
        if room >= want + MIN_ERROR {
            break;
        }
        match drop.next() {
            Some(c) => shown.retain(|x| x != c),
            None => break,
        }
    }
    let room = room_for_text(usize::from(width), &shown);
    let label = want.min(room.saturating_sub(MIN_ERROR)).max(5);
    Columns {
        shown,
        label,
        error: room.saturating_sub(label).max(1),
    }
}

/// What the label and the error share: the width less the border, the
/// selection mark, one gap between columns and the fixed columns.
fn room_for_text(width: usize, shown: &[Col]) -> usize {
    let fixed: usize = shown.iter().map(|c| c.fixed()).sum();
    width.saturating_sub(2 + 1 + shown.len().saturating_sub(1) + fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_table_shows_every_column() {
        let c = columns(160, 10);
        assert_eq!(c.shown, ALL.to_vec());
        assert_eq!(c.label, 10);
    }

    #[test]
    fn a_narrow_table_drops_columns_before_cutting_the_label() {
        let c = columns(40, 10);
        assert_eq!(
            c.shown,
            vec![Col::Index, Col::Label, Col::Status, Col::Error]
        );
        assert_eq!(c.label, 10, "a date fits whole");
        let c = columns(80, 10);
        assert!(c.shown.contains(&Col::Nodes) && c.shown.contains(&Col::Queue));
    }
}
